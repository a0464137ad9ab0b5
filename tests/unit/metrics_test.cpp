// Metrics on hand-computed plans, and the lower bounds against brute force.
#include "support/random_cases.hpp"

#include <eplb/errors.hpp>
#include <eplb/metrics.hpp>
#include <eplb/rebalance.hpp>

#include <ATen/ops/empty.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/full.h>
#include <ATen/ops/tensor.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <limits>

namespace eplb {
namespace {

const auto kLong = at::TensorOptions().dtype(at::kLong);
const auto kDouble = at::TensorOptions().dtype(at::kDouble);

// A plan from phy2log alone ([L, R]): counts and log2phy derived in slot order.
Plan plan_from(const std::vector<std::vector<std::int64_t>>& rows, std::int64_t experts) {
    const std::int64_t L = static_cast<std::int64_t>(rows.size()), R = static_cast<std::int64_t>(rows[0].size());
    at::Tensor p2l = at::empty({L, R}, kLong), cnt = at::zeros({L, experts}, kLong);
    for (std::int64_t l = 0; l < L; ++l)
        for (std::int64_t p = 0; p < R; ++p) {
            p2l[l][p] = rows[l][p];
            cnt[l][rows[l][p]] += 1;
        }
    const std::int64_t X = cnt.max().item<std::int64_t>();
    at::Tensor l2p = at::full({L, experts, X}, -1, kLong);
    for (std::int64_t l = 0; l < L; ++l) {
        std::vector<std::int64_t> seen(static_cast<std::size_t>(experts), 0);
        for (std::int64_t p = 0; p < R; ++p) l2p[l][rows[l][p]][seen[rows[l][p]]++] = p;
    }
    return Plan{p2l, l2p, cnt};
}

at::Tensor loads(const std::vector<std::vector<double>>& rows) {
    at::Tensor t = at::empty({static_cast<std::int64_t>(rows.size()), static_cast<std::int64_t>(rows[0].size())}, kDouble);
    for (std::size_t l = 0; l < rows.size(); ++l)
        for (std::size_t e = 0; e < rows[l].size(); ++e) t[l][e] = rows[l][e];
    return t;
}

TEST(Metrics, HandComputedLayer) {
    // 4 experts on 2 GPUs of 2 slots, one node: GPU loads 7 and 3.
    const Plan plan = plan_from({{0, 1, 2, 3}}, 4);
    const Topology t{4, 1, 1, 2};
    const at::Tensor w = loads({{4, 3, 2, 1}});
    const at::Tensor gl = gpu_loads(plan, w, t);
    EXPECT_TRUE(at::equal(gl, at::tensor({7.0, 3.0}, kDouble).view({1, 2})));
    EXPECT_DOUBLE_EQ(aggregate_balancedness(gl), 5.0 / 7.0);
    EXPECT_DOUBLE_EQ(mean_balancedness(gl), 5.0 / 7.0);
    EXPECT_DOUBLE_EQ(aggregate_imbalance_ratio(gl), 0.4);
    const PlanMetrics m = evaluate(plan, w, t, BoundKind::global);
    EXPECT_DOUBLE_EQ(m.lower_bound[0], 5.0);  // max(W/G = 5, D = 4)
    EXPECT_DOUBLE_EQ(m.bound_ratio, 1.0);
    EXPECT_DOUBLE_EQ(m.aggregate_gap, 5.0 / 7.0);
    EXPECT_DOUBLE_EQ(m.gap[0], 5.0 / 7.0);
    EXPECT_EQ(m.total_duplicates, 0);
}

TEST(Metrics, SplitsAnExpertsLoadEvenlyOverItsReplicas) {
    // Expert 0 (load 6) has two replicas, on GPUs 0 and 1.
    const Plan plan = plan_from({{0, 1, 0, 2}}, 3);
    const at::Tensor sl = slot_loads(plan, loads({{6, 1, 2}}));
    EXPECT_TRUE(at::equal(sl, at::tensor({3.0, 1.0, 3.0, 2.0}, kDouble).view({1, 4})));
    const at::Tensor nl = node_loads(plan, loads({{6, 1, 2}}), Topology{4, 1, 2, 2});
    EXPECT_TRUE(at::equal(nl, at::tensor({4.0, 5.0}, kDouble).view({1, 2})));
}

TEST(Metrics, ZeroLayersAreLeftOutOfAggregates) {
    const Plan plan = plan_from({{0, 1, 2, 3}, {0, 1, 2, 3}}, 4);
    const Topology t{4, 1, 1, 2};
    const at::Tensor gl = gpu_loads(plan, loads({{0, 0, 0, 0}, {4, 3, 2, 1}}), t);
    EXPECT_DOUBLE_EQ(layer_balancedness(gl)[0].item<double>(), 1.0);
    EXPECT_DOUBLE_EQ(mean_balancedness(gl), 5.0 / 7.0);
    EXPECT_DOUBLE_EQ(aggregate_balancedness(gl), 5.0 / 7.0);
    EXPECT_DOUBLE_EQ(layer_imbalance_ratio(gl)[0].item<double>(), 0.0);
}

TEST(Metrics, CountsExtraReplicasOfAnExpertOnOneGpu) {
    // GPU 0 holds expert 0 three times (2 duplicates), GPU 1 holds expert 1 twice (1 duplicate).
    const Plan plan = plan_from({{0, 0, 0, 1, 1, 2}}, 3);
    EXPECT_EQ(layer_duplicates(plan, Topology{6, 1, 1, 2})[0].item<std::int64_t>(), 3);
    EXPECT_EQ(layer_duplicates(plan, Topology{6, 1, 1, 6})[0].item<std::int64_t>(), 0);
}

TEST(Metrics, MigrationCountsSlotsGpuAndNodeTransfers) {
    // 2 nodes x 2 GPUs x 2 slots.
    const Topology t{8, 1, 2, 4};
    const Plan before = plan_from({{0, 1, 2, 3, 4, 5, 6, 7}}, 8);
    // Swap slots inside GPU 0 (no transfer), move expert 2 onto GPU 0's node peer GPU 1 from GPU 1
    // (same GPU: none), bring expert 7 (node 1) onto GPU 0 replacing expert 1.
    const Plan after = plan_from({{7, 0, 2, 3, 4, 5, 6, 1}}, 8);
    const Migration m = migration(before, after, t);
    EXPECT_EQ(m.moved_slots[0], 3);     // slots 0, 1, 7 changed
    EXPECT_EQ(m.gpu_transfers[0], 2);   // 7 onto GPU 0, 1 onto GPU 3
    EXPECT_EQ(m.node_transfers[0], 2);  // both come from the other node
    const Plan within_node = plan_from({{2, 1, 0, 3, 4, 5, 6, 7}}, 8);
    const Migration w = migration(before, within_node, t);
    EXPECT_EQ(w.total_moved_slots(), 2);
    EXPECT_EQ(w.total_gpu_transfers(), 2);
    EXPECT_EQ(w.total_node_transfers(), 0);
    EXPECT_EQ(migration(before, before, t).total_moved_slots(), 0);
    EXPECT_THROW(migration(before, plan_from({{0, 1, 2, 3}}, 4), Topology{4, 1, 1, 2}), PlanError);
}

TEST(Metrics, NodeLocalityIsTheShareServedOnTheGroupsHomeNode) {
    // 4 experts in 2 groups ({0,1}, {2,3}), 2 nodes x 1 GPU x 3 slots: node 0 holds 0, 1, 1 and
    // node 1 holds 2, 3, 0. Primaries (first slot of each expert) put group 0 at home on node 0
    // and group 1 on node 1; expert 0's second replica serves from node 1.
    const Plan plan = plan_from({{0, 1, 1, 2, 3, 0}}, 4);
    const Topology t{6, 2, 2, 2};
    const at::Tensor w = loads({{8, 2, 4, 6}});  // expert 0: 4 per replica, expert 1: 1 per replica
    EXPECT_DOUBLE_EQ(layer_node_locality(plan, w, t)[0].item<double>(), 16.0 / 20.0);
    EXPECT_DOUBLE_EQ(node_locality(plan, w, t), 16.0 / 20.0);
    EXPECT_DOUBLE_EQ(evaluate(plan, w, t, BoundKind::global).aggregate_node_locality, 16.0 / 20.0);
    // A zero layer scores 1 and is left out of the aggregate.
    const Plan two = plan_from({{0, 1, 1, 2, 3, 0}, {0, 1, 1, 2, 3, 0}}, 4);
    EXPECT_DOUBLE_EQ(node_locality(two, loads({{0, 0, 0, 0}, {8, 2, 4, 6}}), t), 16.0 / 20.0);
    EXPECT_DOUBLE_EQ(layer_node_locality(two, loads({{0, 0, 0, 0}, {8, 2, 4, 6}}), t)[0].item<double>(), 1.0);
    // A tie in primaries goes to the lower node: group 1's primaries split 1-1 over the nodes.
    const Plan tie = plan_from({{0, 1, 3, 2, 3, 0}}, 4);
    EXPECT_DOUBLE_EQ(node_locality(tie, w, t), 9.0 / 20.0);  // only node 0's 0, 1 and 3 are home
}

TEST(Plan, FromPhy2logCountsAndListsSlotsInOrder) {
    const Plan plan = plan_from_phy2log(at::tensor({2, 0, 2, 1}, kLong).view({1, 4}), 3);
    ASSERT_NO_THROW(plan.validate());
    EXPECT_TRUE(at::equal(plan.logcnt, at::tensor({1, 1, 2}, kLong).view({1, 3})));
    EXPECT_TRUE(at::equal(plan.log2phy, at::tensor({1, -1, 3, -1, 0, 2}, kLong).view({1, 3, 2})));
    EXPECT_THROW(plan_from_phy2log(at::tensor({0, 3}, kLong).view({1, 2}), 3), PlanError);
    EXPECT_THROW(plan_from_phy2log(at::tensor({0, 0}, kLong).view({1, 2}), 2), PlanError);
    EXPECT_THROW(plan_from_phy2log(at::tensor({0.0, 1.0}, kDouble).view({1, 2}), 2), PlanError);
}

// ---- lower bounds against brute force ----------------------------------------------------

// min over counts c_e >= 1 summing to `slots` of max w_e / c_e, by exhaustive enumeration.
double brute_dhondt(const std::vector<double>& w, std::int64_t slots) {
    double best = std::numeric_limits<double>::infinity();
    std::vector<std::int64_t> c(w.size(), 1);
    std::function<void(std::size_t, std::int64_t)> rec = [&](std::size_t i, std::int64_t left) {
        if (i + 1 == w.size()) {
            c[i] = 1 + left;
            double peak = 0;
            for (std::size_t k = 0; k < w.size(); ++k) peak = std::max(peak, w[k] / static_cast<double>(c[k]));
            best = std::min(best, peak);
            return;
        }
        for (std::int64_t extra = 0; extra <= left; ++extra) {
            c[i] = 1 + extra;
            rec(i + 1, left - extra);
        }
    };
    rec(0, slots - static_cast<std::int64_t>(w.size()));
    return best;
}

// Every assignment of groups to nodes (groups/N each), brute force.
double brute_hierarchical(const std::vector<double>& w, const Topology& t) {
    const std::int64_t gs = static_cast<std::int64_t>(w.size()) / t.num_groups, per_node = t.num_groups / t.num_nodes;
    std::vector<std::int64_t> node(static_cast<std::size_t>(t.num_groups));
    double best = std::numeric_limits<double>::infinity();
    std::function<void(std::int64_t)> rec = [&](std::int64_t g) {
        if (g == t.num_groups) {
            double worst = 0;
            for (std::int64_t n = 0; n < t.num_nodes; ++n) {
                std::vector<double> experts;
                std::int64_t groups = 0;
                for (std::int64_t k = 0; k < t.num_groups; ++k)
                    if (node[k] == n) {
                        ++groups;
                        experts.insert(experts.end(), w.begin() + k * gs, w.begin() + (k + 1) * gs);
                    }
                if (groups != per_node) return;
                double load = 0;
                for (double x : experts) load += x;
                worst = std::max({worst, load / static_cast<double>(t.gpus_per_node()),
                                  brute_dhondt(experts, t.slots_per_node())});
            }
            best = std::min(best, worst);
            return;
        }
        for (std::int64_t n = 0; n < t.num_nodes; ++n) {
            node[g] = n;
            rec(g + 1);
        }
    };
    rec(0);
    return best;
}

TEST(LowerBounds, MatchBruteForceOnSmallLayers) {
    std::mt19937_64 rng(11);
    const Topology shapes[] = {{8, 4, 2, 4}, {12, 4, 2, 4}, {12, 6, 3, 6}, {16, 4, 2, 8}, {10, 2, 1, 5}, {18, 6, 2, 6}};
    for (const Topology& t : shapes) {
        const std::int64_t experts = t.num_groups * (t.num_groups == 2 ? 4 : 2);
        for (const auto pattern : test::all_patterns()) {
            const at::Tensor w = test::random_loads(rng, 3, experts, pattern).to(at::kDouble);
            const at::Tensor hier = hierarchical_lower_bound(w, t), glob = global_lower_bound(w, t);
            for (std::int64_t l = 0; l < 3; ++l) {
                std::vector<double> row(w[l].data_ptr<double>(), w[l].data_ptr<double>() + experts);
                double total = 0;
                for (double x : row) total += x;
                EXPECT_DOUBLE_EQ(glob[l].item<double>(),
                                 std::max(total / static_cast<double>(t.num_gpus), brute_dhondt(row, t.num_replicas)))
                    << t.to_string();
                EXPECT_DOUBLE_EQ(hier[l].item<double>(), brute_hierarchical(row, t)) << t.to_string();
            }
        }
    }
}

TEST(LowerBounds, HierarchicalEqualsGlobalForTheFallbackTopology) {
    std::mt19937_64 rng(5);
    const at::Tensor w = test::random_loads(rng, 4, 64, test::LoadPattern::skewed);
    const Topology t{72, 4, 3, 9};
    EXPECT_TRUE(at::equal(hierarchical_lower_bound(w, t), global_lower_bound(w, t)));
}

TEST(LowerBounds, DeepSeekShapedSearchFinishesAndHolds) {
    std::mt19937_64 rng(9);
    const Topology t{288, 8, 4, 32};
    const at::Tensor w = test::random_loads(rng, 58, 256, test::LoadPattern::skewed);
    const at::Tensor hier = hierarchical_lower_bound(w, t), glob = global_lower_bound(w, t);
    for (std::int64_t l = 0; l < 58; ++l) EXPECT_GE(hier[l].item<double>(), glob[l].item<double>());
    const Plan plan = rebalance(w, t, Policy::deepseek);
    const at::Tensor max_gl = std::get<0>(gpu_loads(plan, w, t).max(1));
    for (std::int64_t l = 0; l < 58; ++l) EXPECT_LE(hier[l].item<double>(), max_gl[l].item<double>() * (1 + 1e-12));
}

}  // namespace
}  // namespace eplb
