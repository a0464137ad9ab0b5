// Stable descending order of float32 weights: the tie rule every eplb algorithm uses.
#pragma once

#include <cstdint>
#include <vector>

namespace eplb::core {

/// Writes to `order[0..n)` the item ids sorted by weight descending, ties by lower id
/// (a stable descending argsort). Weights must be finite and not NaN; -0 equals +0.
/// `keys` is scratch space, grown as needed.
void stable_descending_order(const float* weight, std::int32_t n, std::int32_t* order,
                             std::vector<std::uint64_t>& keys);

}  // namespace eplb::core
