#include "hierarchical.hpp"

#include <algorithm>

namespace eplb::core {
namespace {

std::int32_t narrow(std::int64_t v) { return static_cast<std::int32_t>(v); }

}  // namespace

HierarchicalPlanner::HierarchicalPlanner(const Topology& t, std::int64_t num_experts, Policy policy)
    : policy_(policy),
      num_experts_(narrow(num_experts)),
      num_groups_(narrow(t.num_groups)),
      num_nodes_(narrow(t.num_nodes)),
      group_size_(narrow(num_experts / t.num_groups)),
      groups_per_node_(narrow(t.num_groups / t.num_nodes)),
      experts_per_node_(narrow(num_experts / t.num_nodes)),
      slots_per_node_(narrow(t.slots_per_node())),
      gpus_per_node_(narrow(t.gpus_per_node())),
      slots_per_gpu_(narrow(t.slots_per_gpu())),
      group_load_(static_cast<std::size_t>(num_groups_)),
      group_node_(static_cast<std::size_t>(num_groups_)),
      group_rank_(static_cast<std::size_t>(num_groups_)),
      mlog2log_(static_cast<std::size_t>(num_experts_)),
      node_weight_(static_cast<std::size_t>(experts_per_node_)),
      replica_load_(static_cast<std::size_t>(slots_per_node_)),
      replica_expert_(static_cast<std::size_t>(slots_per_node_)),
      replica_rank_(static_cast<std::size_t>(slots_per_node_)),
      replica_count_(static_cast<std::size_t>(experts_per_node_)),
      replica_gpu_(static_cast<std::size_t>(slots_per_node_)),
      replica_slot_(static_cast<std::size_t>(slots_per_node_)) {
    pack_scratch_.reserve(std::max(slots_per_node_, num_groups_), std::max(gpus_per_node_, num_nodes_));
    replica_scratch_.reserve(experts_per_node_);
}

void HierarchicalPlanner::plan_layer(const float* weight, LayerOut out) {
    place_groups_on_nodes(weight);
    for (std::int32_t node = 0; node < num_nodes_; ++node) plan_node(node, weight, out);
}

// Step 1. Group loads are summed in float64 and rounded to float32 (this matches the reference's
// float32 `sum` on every golden case). Experts are then renumbered node-major: node n holds
// meta-logical ids [n E/N, (n+1) E/N), its groups in rank order, a group's experts contiguous.
void HierarchicalPlanner::place_groups_on_nodes(const float* weight) {
    for (std::int32_t g = 0; g < num_groups_; ++g) {
        double sum = 0.0;
        for (std::int32_t k = 0; k < group_size_; ++k) sum += weight[g * group_size_ + k];
        group_load_[g] = static_cast<float>(sum);
    }
    const PackOut where{group_node_.data(), group_rank_.data()};
    if (policy_ == Policy::deepseek)
        balanced_packing(group_load_.data(), num_groups_, num_nodes_, pack_scratch_, where);
    else
        capacity_packing(group_load_.data(), num_groups_, num_nodes_, /*refine_steps=*/1, pack_scratch_, where);
    for (std::int32_t g = 0; g < num_groups_; ++g) {
        const std::int32_t first = (group_node_[g] * groups_per_node_ + group_rank_[g]) * group_size_;
        for (std::int32_t k = 0; k < group_size_; ++k) mlog2log_[first + k] = g * group_size_ + k;
    }
}

// Steps 2-4 for one node.
void HierarchicalPlanner::plan_node(std::int32_t node, const float* weight, LayerOut out) {
    const std::int32_t* node_experts = mlog2log_.data() + node * experts_per_node_;
    for (std::int32_t j = 0; j < experts_per_node_; ++j) node_weight_[j] = weight[node_experts[j]];

    const ReplicaOut replicas{replica_expert_.data(), replica_rank_.data(), replica_count_.data()};
    if (policy_ == Policy::deepseek)
        replicate_dhondt(node_weight_.data(), experts_per_node_, slots_per_node_, replica_scratch_, replicas);
    else
        replicate_seed(node_weight_.data(), experts_per_node_, slots_per_node_, replica_scratch_, replicas);

    for (std::int32_t p = 0; p < slots_per_node_; ++p) {
        const std::int32_t j = replica_expert_[p];
        replica_load_[p] = node_weight_[j] / static_cast<float>(replica_count_[j]);
    }
    const PackOut where{replica_gpu_.data(), replica_slot_.data()};
    if (policy_ == Policy::deepseek)
        balanced_packing(replica_load_.data(), slots_per_node_, gpus_per_node_, pack_scratch_, where);
    else
        capacity_packing(replica_load_.data(), slots_per_node_, gpus_per_node_, /*refine_steps=*/2, pack_scratch_, where);

    const std::int64_t first_slot = std::int64_t{node} * slots_per_node_;
    for (std::int32_t p = 0; p < slots_per_node_; ++p) {
        const std::int64_t slot = first_slot + replica_gpu_[p] * slots_per_gpu_ + replica_slot_[p];
        out.phy2log[slot] = node_experts[replica_expert_[p]];
        out.rank[slot] = replica_rank_[p];
    }
    for (std::int32_t j = 0; j < experts_per_node_; ++j) out.logcnt[node_experts[j]] = replica_count_[j];
}

}  // namespace eplb::core
