// The width X of a plan's log2phy, which the policy defines (DESIGN.md 3.1 step 5, 3.2).
#pragma once

#include <eplb/rebalance.hpp>
#include <eplb/topology.hpp>

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace eplb::core {

/// `deepseek`: the max of `logcnt` [L, E] over all layers (1 when empty); `seed`: R - E + 1.
std::int64_t log2phy_width(const at::Tensor& logcnt, const Topology& topology, std::int64_t num_experts,
                           Policy policy);

}  // namespace eplb::core
