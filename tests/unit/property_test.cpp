// Properties every plan of every policy must have, on random topologies and loads.
#include "support/plan_checks.hpp"
#include "support/random_cases.hpp"

#include <eplb/metrics.hpp>
#include <eplb/rebalance.hpp>

#include <ATen/Parallel.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <gtest/gtest.h>


namespace eplb {
namespace {

class EveryPolicy : public ::testing::TestWithParam<Policy> {};

TEST_P(EveryPolicy, PlansAreValidOnRandomTopologiesAndLoads) {
    for (const test::RandomCase& c : test::random_cases(0xE9'1B + static_cast<int>(GetParam()), 300)) {
        const Plan plan = rebalance(c.weight, c.topology, GetParam());
        ASSERT_NO_THROW(plan.validate()) << c.label;
        EXPECT_EQ(plan.phy2log.size(1), c.topology.num_replicas) << c.label;
        EXPECT_TRUE(at::equal(plan.logcnt.sum(1), at::full({plan.num_layers()}, c.topology.num_replicas, at::kLong)))
            << c.label;
        if (c.topology.is_hierarchical()) test::expect_groups_stay_on_their_node(plan, c.topology, c.label);
    }
}

TEST_P(EveryPolicy, MaxGpuLoadNeverBeatsTheLowerBound) {
    for (const test::RandomCase& c : test::random_cases(0xB0'0D + static_cast<int>(GetParam()), 150)) {
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
    for (const test::RandomCase& c : test::random_cases(0xD5'7A, 60)) {
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
