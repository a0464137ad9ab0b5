#include "hierarchical.hpp"

#include "order.hpp"

#include <algorithm>

namespace eplb::core {
namespace {

std::int32_t narrow(std::int64_t v) { return static_cast<std::int32_t>(v); }

template <typename T>
std::vector<T> sized(std::int32_t rows, std::int32_t columns) {
    return std::vector<T>(static_cast<std::size_t>(rows) * static_cast<std::size_t>(columns));
}

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
      group_load_(sized<float>(1, num_groups_)),
      group_node_(sized<std::int32_t>(kBlockLayers, num_groups_)),
      group_rank_(sized<std::int32_t>(kBlockLayers, num_groups_)),
      mlog2log_(sized<std::int32_t>(kBlockLayers, num_experts_)),
      node_weight_(sized<float>(kBlockLayers * num_nodes_, experts_per_node_)),
      expert_order_(sized<std::int32_t>(kBlockLayers * num_nodes_, experts_per_node_)),
      replica_expert_(sized<std::int32_t>(kBlockLayers * num_nodes_, slots_per_node_)),
      replica_rank_(sized<std::int32_t>(kBlockLayers * num_nodes_, slots_per_node_)),
      replica_count_(sized<std::int32_t>(kBlockLayers * num_nodes_, experts_per_node_)),
      replica_load_(sized<float>(kBlockLayers * num_nodes_, slots_per_node_)),
      replica_order_(sized<std::int32_t>(kBlockLayers * num_nodes_, slots_per_node_)),
      replica_gpu_(sized<std::int32_t>(kBlockLayers * num_nodes_, slots_per_node_)),
      replica_slot_(sized<std::int32_t>(kBlockLayers * num_nodes_, slots_per_node_)) {}

void HierarchicalPlanner::plan_layers(const float* weight, std::int32_t layers, LayersOut out) {
    for (std::int32_t b = 0; b < layers; ++b) place_groups_on_nodes(b, weight + std::int64_t{b} * num_experts_);
    plan_within_nodes(weight, layers, out);
}

void HierarchicalPlanner::plan_layer_on_split(const float* weight, const std::int32_t* group_node, LayersOut out) {
    for (std::int32_t g = 0; g < num_groups_; ++g) {  // rank in the node: its lower-id groups there
        group_node_[g] = group_node[g];
        group_rank_[g] = static_cast<std::int32_t>(std::count(group_node, group_node + g, group_node[g]));
    }
    renumber_node_major(0);
    plan_within_nodes(weight, 1, out);
}

// Steps 2-4 for `layers` layers whose step 1 (mlog2log_) is done.
void HierarchicalPlanner::plan_within_nodes(const float* weight, std::int32_t layers, LayersOut out) {
    const std::int64_t R = std::int64_t{num_nodes_} * slots_per_node_, E = num_experts_;
    for (std::int32_t b = 0; b < layers; ++b) {
        for (std::int32_t node = 0; node < num_nodes_; ++node)
            replicate_within_node(b * num_nodes_ + node, mlog2log_.data() + b * E + node * experts_per_node_,
                                  weight + b * E);
    }
    pack_replicas_onto_gpus(layers * num_nodes_);
    for (std::int32_t b = 0; b < layers; ++b)
        for (std::int32_t node = 0; node < num_nodes_; ++node)
            write_node(b * num_nodes_ + node, mlog2log_.data() + b * E + node * experts_per_node_, node,
                       out.phy2log + b * R, out.rank + b * R, out.logcnt ? out.logcnt + b * E : nullptr);
}

// Step 1. Group loads are summed in float64 and rounded to float32 (this matches the reference's
// float32 `sum` on every golden case). Experts are then renumbered node-major: node n holds
// meta-logical ids [n E/N, (n+1) E/N), its groups in rank order, a group's experts contiguous.
void HierarchicalPlanner::place_groups_on_nodes(std::int32_t layer, const float* weight) {
    // Each group is summed in expert order; the groups advance together (independent chains).
    group_sum_.assign(static_cast<std::size_t>(num_groups_), 0.0);
    for (std::int32_t k = 0; k < group_size_; ++k)
        for (std::int32_t g = 0; g < num_groups_; ++g) group_sum_[g] += weight[g * group_size_ + k];
    for (std::int32_t g = 0; g < num_groups_; ++g) group_load_[g] = static_cast<float>(group_sum_[g]);
    const PackOut where{group_node_.data() + layer * num_groups_, group_rank_.data() + layer * num_groups_};
    if (policy_ == Policy::deepseek)
        balanced_packing(group_load_.data(), num_groups_, num_nodes_, pack_scratch_, where);
    else
        capacity_packing(group_load_.data(), num_groups_, num_nodes_, /*refine_steps=*/1, pack_scratch_, where);
    renumber_node_major(layer);
}

// Meta-logical ids of `layer` from group_node_ and group_rank_.
void HierarchicalPlanner::renumber_node_major(std::int32_t layer) {
    std::int32_t* mlog2log = mlog2log_.data() + layer * num_experts_;
    const std::int32_t* node = group_node_.data() + layer * num_groups_;
    const std::int32_t* rank = group_rank_.data() + layer * num_groups_;
    for (std::int32_t g = 0; g < num_groups_; ++g) {
        const std::int32_t first = (node[g] * groups_per_node_ + rank[g]) * group_size_;
        for (std::int32_t k = 0; k < group_size_; ++k) mlog2log[first + k] = g * group_size_ + k;
    }
}

// Step 2 for one node (row) holding `experts`, and the replicas' packing order for step 3.
void HierarchicalPlanner::replicate_within_node(std::int32_t row, const std::int32_t* experts, const float* weight) {
    float* w = node_weight_.data() + row * experts_per_node_;
    std::int32_t* order = expert_order_.data() + row * experts_per_node_;
    for (std::int32_t j = 0; j < experts_per_node_; ++j) w[j] = weight[experts[j]];
    stable_descending_order(w, experts_per_node_, order, sort_scratch_);

    const ReplicaOut replicas{replica_expert_.data() + row * slots_per_node_,
                              replica_rank_.data() + row * slots_per_node_,
                              replica_count_.data() + row * experts_per_node_};
    if (policy_ == Policy::deepseek)
        replicate_dhondt(w, order, experts_per_node_, slots_per_node_, replicas);
    else
        replicate_seed(w, order, experts_per_node_, slots_per_node_, replica_scratch_, replicas);

    // Columns 0..E/N-1 hold one copy of each expert; the extra columns follow.
    float* load = replica_load_.data() + row * slots_per_node_;
    for (std::int32_t j = 0; j < experts_per_node_; ++j) load[j] = w[j] / static_cast<float>(replicas.count[j]);
    for (std::int32_t p = experts_per_node_; p < slots_per_node_; ++p) {
        const std::int32_t j = replicas.expert[p];
        load[p] = w[j] / static_cast<float>(replicas.count[j]);
    }
    replica_packing_order(load, order, experts_per_node_, slots_per_node_, replicas, order_scratch_,
                          replica_order_.data() + row * slots_per_node_);
}

// Step 3 for every row of the block at once.
void HierarchicalPlanner::pack_replicas_onto_gpus(std::int32_t num_rows) {
    const PackRows rows{num_rows, slots_per_node_, gpus_per_node_, replica_load_.data(), replica_order_.data(),
                        replica_gpu_.data(), replica_slot_.data()};
    if (policy_ == Policy::deepseek)
        balanced_packing(rows, pack_scratch_);
    else
        capacity_packing(rows, /*refine_steps=*/2, pack_scratch_);
}

// Step 4 for one row (a node of a layer): slot = node (R/N) + gpu S + rank in gpu; counts where wanted.
// Plain local pointers and sizes: a store through `rank` (std::int32_t) could otherwise alias the
// planner's std::int32_t fields, which would be reloaded after every slot.
void HierarchicalPlanner::write_node(std::int32_t row, const std::int32_t* experts, std::int32_t node,
                                     std::int64_t* phy2log, std::int32_t* rank, std::int64_t* logcnt) const {
    const std::int32_t slots = slots_per_node_, S = slots_per_gpu_;
    const std::int32_t base = row * slots, first_slot = node * slots;
    const std::int32_t* __restrict gpu = replica_gpu_.data() + base;
    const std::int32_t* __restrict in_gpu = replica_slot_.data() + base;
    const std::int32_t* __restrict expert = replica_expert_.data() + base;
    const std::int32_t* __restrict replica_rank = replica_rank_.data() + base;
    std::int64_t* __restrict out_expert = phy2log + first_slot;
    std::int32_t* __restrict out_rank = rank + first_slot;
    for (std::int32_t p = 0; p < slots; ++p) {
        const std::int32_t slot = gpu[p] * S + in_gpu[p];
        out_expert[slot] = experts[expert[p]];
        out_rank[slot] = replica_rank[p];
    }
    if (!logcnt) return;
    const std::int32_t* count = replica_count_.data() + row * experts_per_node_;
    for (std::int32_t j = 0; j < experts_per_node_; ++j) logcnt[experts[j]] = count[j];
}

}  // namespace eplb::core
