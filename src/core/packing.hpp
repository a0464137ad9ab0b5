// Packing n weighted items into m packs of exactly n / m items (DESIGN.md 3.1 and 3.2).
#pragma once

#include "order.hpp"

#include <cstdint>
#include <vector>

namespace eplb::core {

/// Scratch space reused across calls so that packing allocates nothing per row.
struct PackScratch {
    std::vector<std::int32_t> order;
    OrderScratch order_scratch;
    std::vector<std::int32_t> count;
    std::vector<float> load_f;
    std::vector<double> load_d;
    std::vector<std::int32_t> members;  // [m, capacity]: items of each pack, ascending ids
};

/// `rows` independent rows, each packing `n` items into `m` packs of capacity n / m.
/// Item i of row r has weight `weight[r n + i]` and goes to pack `pack[r n + i]` at position
/// `rank[r n + i]` inside it; `order[r n + k]` is the k-th item to place (stable descending weight).
struct PackRows {
    std::int32_t rows, n, m;
    const float* weight;
    const std::int32_t* order;
    std::int32_t* pack;
    std::int32_t* rank;
};

/// DeepSeek's balanced packing of every row. Capacity 1 is the identity (item i to pack i).
/// Otherwise items in `order` each go to the lightest pack that still has room (lowest pack id on
/// ties); pack loads are float32 sums in item order; the rank is the arrival order.
void balanced_packing(const PackRows& rows, PackScratch& scratch);

/// The seed's CapacityPacker(refine_steps) on every row: the same greedy with float64 pack
/// loads, then `refine_steps` bounded swap steps (the two heaviest items of the heaviest pack
/// against the two lightest items of the lightest and second-lightest packs, float32 arithmetic,
/// applied when the pack difference drops by more than 1e-9; after a first swap that cuts it by at
/// least 20 % a two-step refinement stops), then ranks inside each pack by ascending item id.
void capacity_packing(const PackRows& rows, std::int32_t refine_steps, PackScratch& scratch);

/// Single-row convenience: orders the items of `weight` [n] itself, then packs them as above.
struct PackOut {
    std::int32_t* pack;
    std::int32_t* rank;
};
void balanced_packing(const float* weight, std::int32_t n, std::int32_t m, PackScratch& scratch, PackOut out);
void capacity_packing(const float* weight, std::int32_t n, std::int32_t m, std::int32_t refine_steps,
                      PackScratch& scratch, PackOut out);

/// Whether the greedy may use its AVX2 lane operations on CPUs that have them (default true).
/// Both give the same packs; the switch lets a test compare them.
void allow_vector_packing(bool allowed);

}  // namespace eplb::core
