// The batched engine: every layer's plan at once, as tensor operations on the device of the
// weights (DESIGN.md 3.1, 3.2, 6). Gives exactly the native engine's plans.
#pragma once

#include <eplb/rebalance.hpp>
#include <eplb/topology.hpp>

#include <ATen/core/Tensor.h>

namespace eplb::core::batched {

/// A plan in global slot order, on the device it was computed on.
struct LayerMaps {
    at::Tensor phy2log;  ///< [L, R] int64
    at::Tensor rank;     ///< [L, R] int64: replica rank of each slot
    at::Tensor logcnt;   ///< [L, E] int64
};

/// Plans every layer of `weight` [L, E] (float32, checked, on any device) with `policy` for
/// `topology` (validated for E; the global fallback is applied here).
LayerMaps plan_layers(const at::Tensor& weight, const Topology& topology, Policy policy);

/// log2phy [L, E, X] (int64, on the maps' device): slot of replica k of each expert, -1 beyond its
/// count.
at::Tensor build_log2phy(const at::Tensor& phy2log, const at::Tensor& rank, std::int64_t num_experts,
                         std::int64_t width);

}  // namespace eplb::core::batched
