// The reference planner's entry point with a given split of groups over nodes
// (src/core/hierarchical.hpp, HierarchicalPlanner::plan_layer_on_split).
#include "core/hierarchical.hpp"
#include "support/random_cases.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <vector>

namespace eplb::core {
namespace {

struct LayerMaps {
    std::vector<std::int64_t> phy2log, logcnt;
    std::vector<std::int32_t> rank;

    LayerMaps(std::int64_t slots, std::int64_t experts)
        : phy2log(static_cast<std::size_t>(slots)), logcnt(static_cast<std::size_t>(experts)),
          rank(static_cast<std::size_t>(slots)) {}
    LayersOut out() { return LayersOut{phy2log.data(), rank.data(), logcnt.data()}; }
};

// A random split: groups / N groups per node.
std::vector<std::int32_t> random_split(std::mt19937_64& rng, std::int64_t groups, std::int64_t nodes) {
    std::vector<std::int32_t> split(static_cast<std::size_t>(groups));
    for (std::int64_t g = 0; g < groups; ++g) split[g] = static_cast<std::int32_t>(g / (groups / nodes));
    std::shuffle(split.begin(), split.end(), rng);
    return split;
}

// On a given split, node n's slots hold exactly what the policy's own planner makes of that node
// alone: one group of the node's experts (its groups in ascending id order) on R/N slots and G/N
// GPUs, where step 1 has nothing to decide.
TEST(HierarchicalPlanner, PlanOnSplitIsThePolicysPlanOfEachNodeAlone) {
    std::mt19937_64 rng(17);
    int checked = 0;
    for (int trial = 0; trial < 400; ++trial) {
        const auto [t, E] = test::random_topology(rng);
        if (!t.is_hierarchical() || t.num_nodes == 1) continue;
        const Policy policy = trial % 2 ? Policy::seed : Policy::deepseek;
        const auto pattern = test::all_patterns()[static_cast<std::size_t>(trial) % test::all_patterns().size()];
        const at::Tensor w = test::random_loads(rng, 1, E, pattern);
        const std::vector<std::int32_t> split = random_split(rng, t.num_groups, t.num_nodes);
        LayerMaps whole(t.num_replicas, E);
        HierarchicalPlanner(t, E, policy).plan_layer_on_split(w.data_ptr<float>(), split.data(), whole.out());

        const std::int64_t N = t.num_nodes, per_node = E / N, slots = t.slots_per_node(), group_size = E / t.num_groups;
        const Topology alone{slots, 1, 1, t.gpus_per_node()};
        HierarchicalPlanner node_planner(alone, per_node, policy);
        for (std::int64_t n = 0; n < N; ++n) {
            std::vector<std::int32_t> experts;
            for (std::int64_t g = 0; g < t.num_groups; ++g)
                if (split[g] == n)
                    for (std::int64_t e = g * group_size; e < (g + 1) * group_size; ++e)
                        experts.push_back(static_cast<std::int32_t>(e));
            std::vector<float> node_weight;
            for (const std::int32_t e : experts) node_weight.push_back(w.data_ptr<float>()[e]);
            LayerMaps part(slots, per_node);
            node_planner.plan_layers(node_weight.data(), 1, part.out());
            for (std::int64_t p = 0; p < slots; ++p) {
                ASSERT_EQ(whole.phy2log[n * slots + p], experts[part.phy2log[p]])
                    << "trial " << trial << " " << t.to_string() << " node " << n << " slot " << p;
                ASSERT_EQ(whole.rank[n * slots + p], part.rank[p]) << "trial " << trial;
            }
            for (std::int64_t j = 0; j < per_node; ++j) ASSERT_EQ(whole.logcnt[experts[j]], part.logcnt[j]);
        }
        ++checked;
    }
    EXPECT_GT(checked, 50);
}

// The split deepseek chooses itself reproduces its plan when each node's groups arrive in
// ascending id order (group loads descending by id, so the greedy takes them in id order).
TEST(HierarchicalPlanner, PlanOnDeepseeksOwnSplitIsDeepseeksPlan) {
    const Topology t{24, 4, 2, 4};
    std::vector<float> w(16);
    for (std::int32_t e = 0; e < 16; ++e) w[e] = static_cast<float>(100 - 5 * e + (e * 7) % 3);
    LayerMaps own(24, 16), on_split(24, 16);
    HierarchicalPlanner planner(t, 16, Policy::deepseek);
    planner.plan_layers(w.data(), 1, own.out());
    std::vector<std::int32_t> split(4);
    for (std::int32_t g = 0; g < 4; ++g)  // the node (12 slots) of the group's first expert
        split[g] = static_cast<std::int32_t>((std::find(own.phy2log.begin(), own.phy2log.end(), 4 * g) - own.phy2log.begin()) / 12);
    EXPECT_EQ(split, (std::vector<std::int32_t>{0, 1, 1, 0}));
    planner.plan_layer_on_split(w.data(), split.data(), on_split.out());
    EXPECT_EQ(own.phy2log, on_split.phy2log);
    EXPECT_EQ(own.rank, on_split.rank);
    EXPECT_EQ(own.logcnt, on_split.logcnt);
}

}  // namespace
}  // namespace eplb::core
