#include "batched_planner.hpp"

#include "batched_ops.hpp"
#include "batched_packing.hpp"
#include "batched_replication.hpp"

#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>

namespace eplb::core::batched {
namespace {

// The three policy-specific steps of the reference policies' shared procedure.
struct ReferenceSteps {
    Packing (*pack_groups)(const at::Tensor& group_load, std::int64_t num_nodes);
    Replicas (*replicate)(const at::Tensor& node_weight, std::int64_t slots_per_node);
    Packing (*pack_replicas)(const at::Tensor& replica_load, std::int64_t gpus_per_node);
};

ReferenceSteps deepseek_steps() {
    return {balanced_packing, replicate_dhondt, balanced_packing};
}

ReferenceSteps seed_steps() {
    return {[](const at::Tensor& w, std::int64_t m) { return capacity_packing(w, m, /*refine_steps=*/1); },
            replicate_seed,
            [](const at::Tensor& w, std::int64_t m) { return capacity_packing(w, m, /*refine_steps=*/2); }};
}

// Group loads [L, groups] float32: each group's experts summed in float64 in id order, then
// rounded (as the scalar place_groups_on_nodes).
at::Tensor group_loads(const at::Tensor& weight, std::int64_t num_groups) {
    const std::int64_t L = weight.size(0), group_size = weight.size(1) / num_groups;
    const at::Tensor w = weight.to(at::kDouble).view({L, num_groups, group_size});
    at::Tensor sum = at::zeros({L, num_groups}, w.options());
    for (std::int64_t k = 0; k < group_size; ++k) sum = sum + w.select(2, k);
    return sum.to(at::kFloat);
}

// Step 1. Returns mlog2log [L, E]: the logical id of each meta-logical (node-major) position;
// node n holds positions [n E/N, (n+1) E/N), its groups in rank order, a group's experts
// contiguous.
at::Tensor place_groups_on_nodes(const at::Tensor& weight, const Topology& t, const ReferenceSteps& steps) {
    const std::int64_t L = weight.size(0), E = weight.size(1), groups = t.num_groups;
    const std::int64_t group_size = E / groups, groups_per_node = groups / t.num_nodes;
    const at::Tensor group_ids = column_ids(groups, weight).unsqueeze(0).expand({L, groups});
    at::Tensor meta_group = group_ids;  // identity when every node holds one group
    if (groups != t.num_nodes) {
        const Packing where = steps.pack_groups(group_loads(weight, groups), t.num_nodes);
        const at::Tensor position = where.pack * groups_per_node + where.rank;
        meta_group = at::empty({L, groups}, position.options()).scatter_(1, position, group_ids);
    }
    return (meta_group.unsqueeze(2) * group_size + column_ids(group_size, weight)).reshape({L, E});
}

LayerMaps plan_reference(const at::Tensor& weight, const Topology& t, const ReferenceSteps& steps) {
    const std::int64_t L = weight.size(0), E = weight.size(1), N = t.num_nodes;
    const std::int64_t experts_per_node = E / N, slots_per_node = t.slots_per_node();
    const at::Tensor mlog2log = place_groups_on_nodes(weight, t, steps);

    // Steps 2 and 3 on B = L * N rows, one per (layer, node).
    const at::Tensor node_experts = mlog2log.view({L * N, experts_per_node});
    const at::Tensor node_weight = weight.gather(1, mlog2log).view({L * N, experts_per_node});
    const Replicas replicas = steps.replicate(node_weight, slots_per_node);
    const at::Tensor replica_load =
        node_weight.gather(1, replicas.expert) / replicas.count.gather(1, replicas.expert).to(at::kFloat);
    const Packing where = steps.pack_replicas(replica_load, t.gpus_per_node());

    // Step 4: back to global slot and expert ids (slot = node * R/N + gpu * S + rank in GPU).
    const at::Tensor local_slot = where.pack * t.slots_per_gpu() + where.rank;
    const auto long_options = weight.options().dtype(at::kLong);
    LayerMaps maps;
    maps.phy2log = at::empty({L * N, slots_per_node}, long_options)
                       .scatter_(1, local_slot, node_experts.gather(1, replicas.expert))
                       .view({L, t.num_replicas});
    maps.rank = at::empty({L * N, slots_per_node}, long_options)
                    .scatter_(1, local_slot, replicas.rank)
                    .view({L, t.num_replicas});
    maps.logcnt = at::empty({L, E}, long_options).scatter_(1, mlog2log, replicas.count.view({L, E}));
    return maps;
}

}  // namespace

LayerMaps plan_layers(const at::Tensor& weight, const Topology& topology, Policy policy) {
    const Topology t = topology.effective();
    switch (policy) {
        case Policy::deepseek: return plan_reference(weight, t, deepseek_steps());
        case Policy::seed: return plan_reference(weight, t, seed_steps());
        case Policy::balanced: break;
    }
    TORCH_CHECK(false, "policy '", to_string(policy), "' has no batched implementation");
}

at::Tensor build_log2phy(const at::Tensor& phy2log, const at::Tensor& rank, std::int64_t num_experts,
                         std::int64_t width) {
    const std::int64_t L = phy2log.size(0), R = phy2log.size(1);
    const at::Tensor slots = column_ids(R, phy2log).unsqueeze(0).expand({L, R});
    return at::full({L, num_experts * width}, -1, phy2log.options())
        .scatter_(1, phy2log * width + rank, slots)
        .view({L, num_experts, width});
}

}  // namespace eplb::core::batched
