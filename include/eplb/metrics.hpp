// Plan quality metrics (free functions), exactly as the design defines them.
//
// Notation, for a plan and an evaluation load matrix w [L, E] (float64):
//   slot load   sl[l, p] = w[l, phy2log[l, p]] / logcnt[l, phy2log[l, p]]
//   GPU load    gl[l, g] = sum of sl[l, p] over the S = R / G slots of GPU g
//   node load   nl[l, n] = sum of sl[l, p] over the R / N slots of node n
//   W_l = sum_e w[l, e], mean_l = W_l / G, max_l = max_g gl[l, g]
// All-zero layers have balancedness 1 and are left out of every aggregate.
#pragma once

#include <eplb/plan.hpp>
#include <eplb/topology.hpp>

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace eplb {

/// sl [L, R] (float64): `w[l, phy2log[l, p]] / logcnt[l, phy2log[l, p]]`.
at::Tensor slot_loads(const Plan& plan, const at::Tensor& loads);

/// gl [L, G] (float64): sum of the slot loads of each GPU's S consecutive slots.
at::Tensor gpu_loads(const Plan& plan, const at::Tensor& loads, const Topology& topology);

/// nl [L, N] (float64): sum of the slot loads of each node's R / N consecutive slots.
at::Tensor node_loads(const Plan& plan, const at::Tensor& loads, const Topology& topology);

/// b_l [L] = mean_g gl / max_g gl for any [L, K] load table (GPUs or nodes); 1 for a zero layer.
at::Tensor layer_balancedness(const at::Tensor& unit_loads);

/// sum_l mean_g gl / sum_l max_g gl over the non-zero layers (vLLM's figure; 1 if all are zero).
double aggregate_balancedness(const at::Tensor& unit_loads);

/// Mean of b_l over the non-zero layers (SGLang's utilisation rate; 1 if all are zero).
double mean_balancedness(const at::Tensor& unit_loads);

/// (max_l - mean_l) / mean_l per layer [L] (TensorRT-LLM's imbalance ratio; 0 for a zero layer).
at::Tensor layer_imbalance_ratio(const at::Tensor& unit_loads);

/// (sum_l max_l - sum_l mean_l) / sum_l mean_l over the non-zero layers (0 if all are zero).
double aggregate_imbalance_ratio(const at::Tensor& unit_loads);

/// The kinds of plans a lower bound holds for.
enum class BoundKind {
    global,        ///< any valid plan
    hierarchical,  ///< every group with all its replicas on one node, groups/N groups per node
};

/// Global lower bound on max_g gl [L]: LB_l = max(W_l / G, D_l), where
/// D_l = min over integer counts (c_e >= 1, sum_e c_e = R) of max_e w_e / c_e (greedy D'Hondt).
at::Tensor global_lower_bound(const at::Tensor& loads, const Topology& topology);

/// Hierarchical lower bound [L]: the minimum, over assignments A of groups to nodes with
/// groups/N groups each, of max_n max(nl_n(A) / (G/N), D_n(A)), where nl_n is the node's total
/// load and D_n the D'Hondt term over its experts with R/N slots. Exact (branch and bound over
/// assignments; 8 groups on 4 nodes is 105 of them). Equals the global bound when the topology
/// is not hierarchical (the reference policies then plan globally).
at::Tensor hierarchical_lower_bound(const at::Tensor& loads, const Topology& topology);

/// global_lower_bound or hierarchical_lower_bound.
at::Tensor lower_bound(const at::Tensor& loads, const Topology& topology, BoundKind kind);

/// sum_l (W_l / G) / sum_l LB_l over the non-zero layers: the best aggregate balancedness any
/// plan of the bound's kind can reach (1 if all layers are zero).
double bound_ratio(const at::Tensor& loads, const at::Tensor& layer_bounds, const Topology& topology);

/// Duplicates per layer [L] (int64): sum over (GPU, expert) of max(0, replicas of the expert on
/// that GPU - 1). Such replicas add memory but no balance.
at::Tensor layer_duplicates(const Plan& plan, const Topology& topology);

/// Node locality per layer [L] (float64): the share of the layer's tokens served on the home node
/// of their expert's group,
///   loc_l = sum_p [node(p) == home(group(phy2log[l, p]))] sl[l, p] / W_l   (1 for a zero layer),
/// where group(e) = e / (E / num_groups) and home(g) is the node holding the most primary replicas
/// (replica 0, `log2phy[l, e, 0]`) of g's experts, the lowest such node on ties. Hierarchical plans
/// score 1; a relaxed plan scores the share its primaries serve. Throws TopologyError when E is
/// not a multiple of num_groups.
at::Tensor layer_node_locality(const Plan& plan, const at::Tensor& loads, const Topology& topology);

/// sum_l loc_l W_l / sum_l W_l over the non-zero layers (1 if all are zero).
double node_locality(const Plan& plan, const at::Tensor& loads, const Topology& topology);

/// Replica movement from a plan now deployed (`before`) to a new one (`after`), per layer [L]:
/// - `moved_slots`: slots p whose expert changes (phy2log differs);
/// - `gpu_transfers`: (GPU, expert) pairs where `after` places the expert on a GPU that held no
///   replica of it in `before`: its weights must cross into that GPU;
/// - `node_transfers`: those transfers whose node held no replica of the expert in `before`:
///   the weights must cross nodes.
struct Migration {
    std::vector<std::int64_t> moved_slots;
    std::vector<std::int64_t> gpu_transfers;
    std::vector<std::int64_t> node_transfers;

    std::int64_t total_moved_slots() const;
    std::int64_t total_gpu_transfers() const;
    std::int64_t total_node_transfers() const;
};

/// Compares two plans of the same shape on `topology`; throws PlanError when shapes differ.
Migration migration(const Plan& before, const Plan& after, const Topology& topology);

/// Every metric of one plan on one load matrix, per layer and aggregated.
struct PlanMetrics {
    // Per layer [L].
    std::vector<double> total_load;       ///< W_l
    std::vector<double> mean_gpu_load;    ///< W_l / G
    std::vector<double> max_gpu_load;     ///< max_g gl
    std::vector<double> balancedness;     ///< b_l = mean / max (1 for a zero layer)
    std::vector<double> imbalance_ratio;  ///< (max - mean) / mean
    std::vector<double> max_node_load;    ///< max_n nl
    std::vector<double> node_balancedness;///< mean_n nl / max_n nl
    std::vector<double> lower_bound;      ///< LB_l of `bound_kind`
    std::vector<double> gap;              ///< LB_l / max_l = b_l / (mean_l / LB_l) (1 = optimal)
    std::vector<std::int64_t> duplicates; ///< layer_duplicates
    std::vector<double> node_locality;    ///< layer_node_locality

    // Aggregates over the non-zero layers.
    double aggregate_balancedness = 1.0;
    double mean_balancedness = 1.0;
    double aggregate_imbalance_ratio = 0.0;
    double aggregate_node_balancedness = 1.0;
    double bound_ratio = 1.0;             ///< sum mean / sum LB
    double aggregate_gap = 1.0;           ///< aggregate_balancedness / bound_ratio
    std::int64_t total_duplicates = 0;
    double aggregate_node_locality = 1.0; ///< node_locality
    BoundKind bound_kind = BoundKind::global;
};

/// Evaluates `plan` on `loads` [L, E] (any real dtype; used as float64) for `topology`.
PlanMetrics evaluate(const Plan& plan, const at::Tensor& loads, const Topology& topology,
                     BoundKind bound_kind);

/// The bound kind a reference policy's plans obey on `topology`: hierarchical when
/// `topology.is_hierarchical()`, else global.
BoundKind reference_bound_kind(const Topology& topology);

}  // namespace eplb
