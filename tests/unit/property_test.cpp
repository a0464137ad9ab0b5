// Properties every plan of every policy must have, on random topologies and loads.
#include "support/random_cases.hpp"

#include <eplb/metrics.hpp>
#include <eplb/rebalance.hpp>

#include <ATen/Parallel.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <gtest/gtest.h>

#include <set>

namespace eplb {
namespace {

struct RandomCase {
    Topology topology;
    at::Tensor weight;
    std::string label;
};

std::vector<RandomCase> random_cases(std::uint64_t seed, int count) {
    std::mt19937_64 rng(seed);
    std::vector<RandomCase> out;
    for (int i = 0; i < count; ++i) {
        const auto [t, experts] = test::random_topology(rng);
        const auto pattern = test::all_patterns()[static_cast<std::size_t>(i) % test::all_patterns().size()];
        const std::int64_t layers = 1 + i % 4;
        out.push_back({t, test::random_loads(rng, layers, experts, pattern),
                       "case " + std::to_string(i) + " topology " + t.to_string() + " E=" + std::to_string(experts)});
    }
    return out;
}

// Each expert's replicas sit on the node its group was given, and each node holds groups/N groups.
void expect_groups_stay_on_their_node(const Plan& plan, const Topology& t, const std::string& label) {
    const std::int64_t L = plan.num_layers(), R = plan.num_replicas(), E = plan.num_experts();
    const std::int64_t group_size = E / t.num_groups, per_node = t.slots_per_node();
    const at::Tensor p2l = plan.phy2log.contiguous();
    for (std::int64_t l = 0; l < L; ++l) {
        std::vector<std::int64_t> node_of_group(static_cast<std::size_t>(t.num_groups), -1);
        std::vector<std::set<std::int64_t>> groups_on_node(static_cast<std::size_t>(t.num_nodes));
        for (std::int64_t p = 0; p < R; ++p) {
            const std::int64_t g = p2l.data_ptr<std::int64_t>()[l * R + p] / group_size, n = p / per_node;
            if (node_of_group[g] < 0) node_of_group[g] = n;
            ASSERT_EQ(node_of_group[g], n) << label << ": group " << g << " spans nodes in layer " << l;
            groups_on_node[n].insert(g);
        }
        for (const auto& groups : groups_on_node)
            EXPECT_EQ(static_cast<std::int64_t>(groups.size()), t.num_groups / t.num_nodes) << label;
    }
}

class EveryPolicy : public ::testing::TestWithParam<Policy> {};

TEST_P(EveryPolicy, PlansAreValidOnRandomTopologiesAndLoads) {
    for (const RandomCase& c : random_cases(0xE9'1B + static_cast<int>(GetParam()), 300)) {
        const Plan plan = rebalance(c.weight, c.topology, GetParam());
        ASSERT_NO_THROW(plan.validate()) << c.label;
        EXPECT_EQ(plan.phy2log.size(1), c.topology.num_replicas) << c.label;
        EXPECT_TRUE(at::equal(plan.logcnt.sum(1), at::full({plan.num_layers()}, c.topology.num_replicas, at::kLong)))
            << c.label;
        if (c.topology.is_hierarchical()) expect_groups_stay_on_their_node(plan, c.topology, c.label);
    }
}

TEST_P(EveryPolicy, MaxGpuLoadNeverBeatsTheLowerBound) {
    for (const RandomCase& c : random_cases(0xB0'0D + static_cast<int>(GetParam()), 150)) {
        const Plan plan = rebalance(c.weight, c.topology, GetParam());
        const PlanMetrics m = evaluate(plan, c.weight, c.topology, reference_bound_kind(c.topology));
        for (std::size_t l = 0; l < m.max_gpu_load.size(); ++l)
            EXPECT_LE(m.lower_bound[l], m.max_gpu_load[l] * (1 + 1e-12)) << c.label << " layer " << l;
        EXPECT_LE(m.aggregate_balancedness, m.bound_ratio * (1 + 1e-12)) << c.label;
        const at::Tensor global = global_lower_bound(c.weight, c.topology);
        for (std::size_t l = 0; l < m.lower_bound.size(); ++l)
            EXPECT_LE(global.data_ptr<double>()[l], m.lower_bound[l] * (1 + 1e-12)) << c.label;
    }
}

TEST_P(EveryPolicy, RepeatedRunsGiveByteIdenticalMaps) {
    for (const RandomCase& c : random_cases(0xD5'7A, 60)) {
        const Plan a = rebalance(c.weight, c.topology, GetParam());
        const Plan b = rebalance(c.weight, c.topology, GetParam());
        EXPECT_TRUE(at::equal(a.phy2log, b.phy2log) && at::equal(a.log2phy, b.log2phy) && at::equal(a.logcnt, b.logcnt))
            << c.label;
    }
}

TEST_P(EveryPolicy, ThreadCountDoesNotChangeThePlan) {
    std::mt19937_64 rng(7);
    const Topology t{288, 8, 4, 32};
    const at::Tensor w = test::random_loads(rng, 58, 256, test::LoadPattern::skewed);
    const int threads = at::get_num_threads();
    at::set_num_threads(1);
    const Plan one = rebalance(w, t, GetParam());
    at::set_num_threads(4);
    const Plan four = rebalance(w, t, GetParam());
    at::set_num_threads(threads);
    EXPECT_TRUE(at::equal(one.phy2log, four.phy2log) && at::equal(one.log2phy, four.log2phy));
}

TEST_P(EveryPolicy, ZeroLoadExpertsAndLayersGetValidPlans) {
    const Topology t{24, 4, 2, 8};
    const at::Tensor w = at::zeros({3, 16}, at::kFloat);
    w[1][3] = 5.0f;
    const Plan plan = rebalance(w, t, GetParam());
    EXPECT_NO_THROW(plan.validate());
}

TEST_P(EveryPolicy, AcceptsAnyRealDtype) {
    std::mt19937_64 rng(3);
    const at::Tensor w = test::random_loads(rng, 4, 64, test::LoadPattern::small_integers);
    const Topology t{80, 8, 4, 16};
    const Plan from_float = rebalance(w, t, GetParam());
    const Plan from_long = rebalance(w.to(at::kLong), t, GetParam());
    const Plan from_double = rebalance(w.to(at::kDouble), t, GetParam());
    EXPECT_TRUE(at::equal(from_float.phy2log, from_long.phy2log));
    EXPECT_TRUE(at::equal(from_float.phy2log, from_double.phy2log));
}

INSTANTIATE_TEST_SUITE_P(Policies, EveryPolicy, ::testing::ValuesIn(all_policies()),
                         [](const ::testing::TestParamInfo<Policy>& info) { return to_string(info.param); });

}  // namespace
}  // namespace eplb
