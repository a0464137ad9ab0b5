// The reference policies against the reference programs' outputs (tests/data/*.h5).
#include "support/golden.hpp"

#include <eplb/metrics.hpp>
#include <eplb/rebalance.hpp>

#include <ATen/ops/allclose.h>
#include <ATen/ops/equal.h>
#include <gtest/gtest.h>

#include <cmath>

namespace eplb {
namespace {

struct GoldenParam {
    Policy policy;
    test::GoldenCase golden;
};

std::vector<GoldenParam> all_cases() {
    std::vector<GoldenParam> out;
    for (const Policy p : {Policy::deepseek, Policy::seed})
        for (auto& c : test::load_golden(to_string(p))) out.push_back({p, std::move(c)});
    return out;
}

void PrintTo(const GoldenParam& p, std::ostream* os) { *os << to_string(p.policy) << "/" << p.golden.name; }

class Golden : public ::testing::TestWithParam<GoldenParam> {};

double relative_error(double a, double b) { return std::fabs(a - b) / std::max(std::fabs(b), 1e-300); }

TEST_P(Golden, MatchesReference) {
    const GoldenParam& p = GetParam();
    const test::GoldenCase& g = p.golden;
    const Plan plan = rebalance(g.weight, g.topology, p.policy);
    ASSERT_NO_THROW(plan.validate());

    // logcnt, GPU loads and the aggregate metrics equal the reference's on every case.
    EXPECT_TRUE(at::equal(plan.logcnt, g.logcnt)) << "logcnt differs";
    const at::Tensor gl = gpu_loads(plan, g.weight, g.topology);
    EXPECT_TRUE(at::allclose(gl, g.gpu_load, /*rtol=*/1e-9, /*atol=*/0.0)) << "GPU loads differ";
    EXPECT_LE(relative_error(aggregate_balancedness(gl), g.agg_gpu_balancedness), 1e-9);
    // Duplicates depend on the exact slots, which ties may reorder: comparable without ties.
    if (!g.has_ties) {
        EXPECT_EQ(layer_duplicates(plan, g.topology).sum().item<std::int64_t>(), g.duplicates);
    }

    // Our tie rule is the stable one: maps equal `stable/` exactly (at least where the input has no
    // ties; in fact on every case).
    EXPECT_TRUE(at::equal(plan.logcnt, g.stable_logcnt));
    if (!g.has_ties) {
        EXPECT_TRUE(at::equal(plan.phy2log, g.stable_phy2log)) << "phy2log differs from stable/";
        EXPECT_TRUE(at::equal(plan.log2phy, g.stable_log2phy)) << "log2phy differs from stable/";
    }
}

TEST_P(Golden, WidthOfLog2phyFollowsThePolicy) {
    const GoldenParam& p = GetParam();
    const Plan plan = rebalance(p.golden.weight, p.golden.topology, p.policy);
    EXPECT_EQ(plan.log2phy.size(2), p.golden.log2phy.size(2));
}

INSTANTIATE_TEST_SUITE_P(Vectors, Golden, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<GoldenParam>& info) {
                             return to_string(info.param.policy) + "_" + info.param.golden.name;
                         });

}  // namespace
}  // namespace eplb
