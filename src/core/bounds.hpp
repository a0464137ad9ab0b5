// Lower bounds on a layer's maximum GPU load (DESIGN.md section 4).
#pragma once

#include <eplb/topology.hpp>

#include <cstdint>
#include <vector>

namespace eplb::core {

/// min over integer counts c_e >= 1 with sum_e c_e = slots of max_e w_e / c_e (greedy D'Hondt,
/// which is optimal for this min-max problem). `slots` >= n; 0 for n = 0.
double dhondt_peak(const double* weight, std::int64_t n, std::int64_t slots);

/// max(W / G, D) for one layer of E float64 loads.
double global_layer_bound(const double* weight, std::int64_t num_experts, const Topology& topology);

/// The hierarchical bound of one layer (see eplb::hierarchical_lower_bound).
double hierarchical_layer_bound(const double* weight, std::int64_t num_experts, const Topology& topology);

}  // namespace eplb::core
