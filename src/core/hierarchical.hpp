// The reference policies' four steps for one layer (DESIGN.md 3.1, 3.2).
#pragma once

#include "packing.hpp"
#include "replication.hpp"

#include <eplb/rebalance.hpp>
#include <eplb/topology.hpp>

#include <cstdint>
#include <vector>

namespace eplb::core {

/// One layer's plan in global slot order: `phy2log[p]`, `rank[p]` (replica rank), `logcnt[e]`.
struct LayerOut {
    std::int64_t* phy2log;  ///< [R]
    std::int64_t* rank;     ///< [R]
    std::int64_t* logcnt;   ///< [E]
};

/// Plans layers one at a time for a fixed (effective) topology and policy, reusing its buffers:
/// 1. groups to nodes (balanced packing of group loads, groups/N per node);
/// 2. replication inside each node (E/N experts onto R/N slots);
/// 3. packing of each node's replicas onto its G/N GPUs (S slots each);
/// 4. mapping back to global expert and slot ids.
class HierarchicalPlanner {
public:
    /// `topology` must be hierarchical (callers pass Topology::effective()) and valid for E.
    HierarchicalPlanner(const Topology& topology, std::int64_t num_experts, Policy policy);

    /// Plans one layer from its float32 weights [E].
    void plan_layer(const float* weight, LayerOut out);

private:
    void place_groups_on_nodes(const float* weight);
    void plan_node(std::int32_t node, const float* weight, LayerOut out);

    Policy policy_;
    std::int32_t num_experts_, num_groups_, num_nodes_, group_size_, groups_per_node_;
    std::int32_t experts_per_node_, slots_per_node_, gpus_per_node_, slots_per_gpu_;

    std::vector<float> group_load_;         // [groups]
    std::vector<std::int32_t> group_node_;  // [groups]
    std::vector<std::int32_t> group_rank_;  // [groups]
    std::vector<std::int32_t> mlog2log_;    // [E] meta-logical (node-major) id -> logical id
    std::vector<float> node_weight_;        // [E/N]
    std::vector<float> replica_load_;       // [R/N]
    std::vector<std::int32_t> replica_expert_, replica_rank_, replica_count_;
    std::vector<std::int32_t> replica_gpu_, replica_slot_;
    PackScratch pack_scratch_;
    ReplicaScratch replica_scratch_;
};

}  // namespace eplb::core
