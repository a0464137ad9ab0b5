// The planning entry point.
#pragma once

#include <eplb/plan.hpp>
#include <eplb/topology.hpp>

#include <ATen/core/Tensor.h>

#include <string>
#include <string_view>
#include <vector>

namespace eplb {

/// Planning algorithms.
///
/// - `deepseek`: DeepSeek's open-source EPLB (groups to nodes, D'Hondt replication per node,
///   greedy balanced packing), every tie broken by the lower index;
/// - `seed`: the seed algorithm (tie-aware D'Hondt with a Sainte-Lague / Huntington-Hill tail and a
///   donor-receiver fix-up; greedy packing followed by bounded swap refinement).
enum class Policy { deepseek, seed };

/// "deepseek", "seed".
std::string to_string(Policy policy);
/// Parses a policy name; throws UsageError listing the known names.
Policy parse_policy(std::string_view name);
/// Every policy, in a fixed order.
const std::vector<Policy>& all_policies();

/// Plans every layer of `weight` [L, E] (any real dtype, any device; converted to float32 on the
/// CPU as the reference programs do) for `topology` with `policy`.
///
/// Requires L >= 1, E >= 1, finite non-negative loads, and `topology.validate(E)`; throws
/// LoadError / TopologyError otherwise. Layers are independent; an all-zero layer still gets a
/// valid plan. The result is deterministic: the same input gives byte-identical maps on any run.
Plan rebalance(const at::Tensor& weight, const Topology& topology, Policy policy);

/// Checks that `weight` is a plannable [L, E] load tensor (see rebalance) and returns it as a
/// contiguous float32 CPU tensor. `what` names the input in error messages.
at::Tensor checked_loads(const at::Tensor& weight, const std::string& what = "weight");

}  // namespace eplb
