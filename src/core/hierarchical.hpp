// The reference policies' four steps for one layer (DESIGN.md 3.1, 3.2).
#pragma once

#include "packing.hpp"
#include "replication.hpp"

#include <eplb/rebalance.hpp>
#include <eplb/topology.hpp>

#include <cstdint>
#include <vector>

namespace eplb::core {

/// Consecutive layers' plans in global slot order: `phy2log[l R + p]`, `rank[l R + p]` (replica
/// rank), `logcnt[l E + e]`.
struct LayersOut {
    std::int64_t* phy2log;  ///< [layers, R]
    std::int32_t* rank;     ///< [layers, R]
    std::int64_t* logcnt;   ///< [layers, E], or null where the counts are not wanted
};

/// Plans blocks of layers for a fixed (effective) topology and policy, reusing its buffers:
/// 1. groups to nodes (packing of group loads, groups/N per node);
/// 2. replication inside each node (E/N experts onto R/N slots);
/// 3. packing of each node's replicas onto its G/N GPUs (S slots each), all rows of the block in
///    lockstep (their dependency chains are independent, so they overlap);
/// 4. mapping back to global expert and slot ids.
class HierarchicalPlanner {
public:
    /// Layers planned together.
    static constexpr std::int32_t kBlockLayers = 4;

    /// `topology` must be hierarchical (callers pass Topology::effective()) and valid for E.
    HierarchicalPlanner(const Topology& topology, std::int64_t num_experts, Policy policy);

    /// Plans `layers` <= kBlockLayers consecutive layers from their float32 weights [layers, E].
    void plan_layers(const float* weight, std::int32_t layers, LayersOut out);

    /// Plans one layer as plan_layers does, but with step 1 given: group g goes to node
    /// `group_node[g]` ([groups], groups/N per node), each node holding its groups in ascending id
    /// order. Steps 2-4 are the policy's, exactly as in plan_layers.
    void plan_layer_on_split(const float* weight, const std::int32_t* group_node, LayersOut out);

    /// Step 1's result for layer `layer` of the last plan_layers call: the node of each group
    /// [groups]. Valid until the next call of either plan function.
    const std::int32_t* group_nodes(std::int32_t layer) const {
        return group_node_.data() + std::int64_t{layer} * num_groups_;
    }

private:
    void place_groups_on_nodes(std::int32_t layer, const float* weight);
    void renumber_node_major(std::int32_t layer);
    void plan_within_nodes(const float* weight, std::int32_t layers, LayersOut out);
    void replicate_within_node(std::int32_t row, const std::int32_t* experts, const float* weight);
    void pack_replicas_onto_gpus(std::int32_t rows);
    void write_node(std::int32_t row, const std::int32_t* experts, std::int32_t node, std::int64_t* phy2log,
                    std::int32_t* rank, std::int64_t* logcnt) const;

    Policy policy_;
    std::int32_t num_experts_, num_groups_, num_nodes_, group_size_, groups_per_node_;
    std::int32_t experts_per_node_, slots_per_node_, gpus_per_node_, slots_per_gpu_;

    // Step 1.
    std::vector<double> group_sum_;         // [groups]
    std::vector<float> group_load_;         // [groups]
    std::vector<std::int32_t> group_node_;  // [block, groups] (plan_layer_on_split: row 0)
    std::vector<std::int32_t> group_rank_;  // [block, groups]
    std::vector<std::int32_t> mlog2log_;    // [block, E] meta-logical (node-major) id -> logical id
    // Steps 2 and 3, one row per (layer of the block, node).
    std::vector<float> node_weight_;        // [rows, E/N]
    std::vector<std::int32_t> expert_order_;// [rows, E/N]
    std::vector<std::int32_t> replica_expert_, replica_rank_;  // [rows, R/N]
    std::vector<std::int32_t> replica_count_;                  // [rows, E/N]
    std::vector<float> replica_load_;       // [rows, R/N]
    std::vector<std::int32_t> replica_order_, replica_gpu_, replica_slot_;  // [rows, R/N]

    PackScratch pack_scratch_;
    ReplicaOrderScratch order_scratch_;
    ReplicaScratch replica_scratch_;
    OrderScratch sort_scratch_;
};

}  // namespace eplb::core
