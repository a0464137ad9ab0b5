// The batched engine on the golden vectors: the native engine's plan exactly, hence the
// reference's counts everywhere and its stable maps on every tie-free case.
#include "support/engine_cases.hpp"
#include "support/golden.hpp"

#include <eplb/rebalance.hpp>

#include <ATen/ops/equal.h>
#include <gtest/gtest.h>

namespace eplb {
namespace {

class BatchedGolden : public ::testing::TestWithParam<Policy> {};

TEST_P(BatchedGolden, EqualsTheNativePlanAndTheStableReference) {
    const Execution batched = test::batched_execution();
    for (const test::GoldenCase& g : test::load_golden(to_string(GetParam()))) {
        const Plan plan = rebalance(g.weight, g.topology, GetParam(), batched);
        EXPECT_EQ(test::plan_difference(rebalance(g.weight, g.topology, GetParam()), plan), "") << g.name;
        EXPECT_TRUE(at::equal(plan.logcnt, g.logcnt)) << g.name;
        EXPECT_EQ(plan.log2phy.size(2), g.log2phy.size(2)) << g.name;
        if (!g.has_ties) {
            EXPECT_TRUE(at::equal(plan.phy2log, g.stable_phy2log)) << g.name;
            EXPECT_TRUE(at::equal(plan.log2phy, g.stable_log2phy)) << g.name;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Policies, BatchedGolden, ::testing::ValuesIn(engine_policies(Engine::batched)),
                         [](const ::testing::TestParamInfo<Policy>& info) { return to_string(info.param); });

}  // namespace
}  // namespace eplb
