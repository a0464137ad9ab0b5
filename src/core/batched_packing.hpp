// Packing of every row of [B, n] item weights into m packs of n / m items at once: the batched
// form of packing.hpp (DESIGN.md 3.1, 3.2), with identical results.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace eplb::core::batched {

/// Where each item went: `pack` [B, n] in [0, m) and `rank` [B, n], its position in the pack.
struct Packing {
    at::Tensor pack;
    at::Tensor rank;
};

/// DeepSeek's balanced packing of float32 `weight` [B, n] into m packs (see
/// core::balanced_packing): identity when n == m; otherwise items in stable descending order,
/// each to the lightest pack with room (lowest pack id on ties), float32 pack loads summed in item
/// order, rank = arrival order. A loop over the n item ranks, each step one argmin per row.
Packing balanced_packing(const at::Tensor& weight, std::int64_t m);

/// The seed's CapacityPacker(refine_steps) (see core::capacity_packing): the same greedy with
/// float64 loads, then `refine_steps` swap steps evaluated for all rows at once (float32
/// arithmetic, rows stop independently), then ranks by ascending item id.
Packing capacity_packing(const at::Tensor& weight, std::int64_t m, std::int64_t refine_steps);

}  // namespace eplb::core::batched
