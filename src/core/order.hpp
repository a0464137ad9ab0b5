// Stable descending order of float32 weights: the tie rule every eplb algorithm uses.
#pragma once

#include <cstdint>
#include <vector>

namespace eplb::core {

/// Reusable space for stable_descending_order, grown as needed.
struct OrderScratch {
    std::vector<std::int32_t> counts;
    std::vector<float> padded;
    std::vector<std::uint64_t> keys;
};

/// Writes to `order[0..n)` the item ids sorted by weight descending, ties by lower id
/// (a stable descending argsort). Weights must be finite and not NaN; -0 equals +0.
void stable_descending_order(const float* weight, std::int32_t n, std::int32_t* order, OrderScratch& scratch);

}  // namespace eplb::core
