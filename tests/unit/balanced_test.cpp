// The balanced policy: no duplicates, never above deepseek in the same mode, the modes' rules,
// planning from a history, migration-aware planning and determinism.
#include "core/balanced_history.hpp"
#include "core/balanced_migration.hpp"
#include "core/balanced_placement.hpp"
#include "core/balanced_search.hpp"
#include "support/placements.hpp"
#include "support/plan_checks.hpp"
#include "support/random_cases.hpp"
#include "support/synthetic_series.hpp"

#include <eplb/errors.hpp>
#include <eplb/metrics.hpp>
#include <eplb/rebalance.hpp>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <limits>
#include <numeric>
#include <set>
#include <utility>

namespace eplb {
namespace {

const std::vector<PlacementMode> kModes{PlacementMode::hierarchical, PlacementMode::global, PlacementMode::relaxed};

PlanOptions balanced(PlacementMode mode) {
    PlanOptions o;
    o.mode = mode;
    return o;
}

// deepseek in the mode a balanced plan is compared with: relaxed plans with hierarchical ones
// (every hierarchical plan is a relaxed plan).
Plan deepseek_in(const at::Tensor& w, const Topology& t, PlacementMode mode) {
    PlanOptions o;
    o.policy = Policy::deepseek;
    o.mode = mode == PlacementMode::global ? PlacementMode::global : PlacementMode::hierarchical;
    return rebalance(w, t, o);
}

bool same_maps(const Plan& a, const Plan& b) {
    return at::equal(a.phy2log, b.phy2log) && at::equal(a.log2phy, b.log2phy) && at::equal(a.logcnt, b.logcnt);
}

// True when a plan without duplicates exists: every expert fits on distinct GPUs it may use.
bool duplicate_free_possible(const Topology& t, std::int64_t experts, PlacementMode mode) {
    if (mode == PlacementMode::hierarchical && t.is_hierarchical())
        return t.slots_per_node() <= experts / t.num_nodes * t.gpus_per_node();
    return t.num_replicas <= experts * t.num_gpus;
}

std::string where(const test::RandomCase& c, PlacementMode mode) { return c.label + " mode " + to_string(mode); }

TEST(Balanced, HoldsNoDuplicatesWhereTheTopologyAllows) {
    for (const test::RandomCase& c : test::random_cases(0xD0'0B, 200))
        for (const PlacementMode mode : kModes) {
            PlanReport report;
            const Plan plan = rebalance(c.weight, c.topology, balanced(mode), &report);
            ASSERT_NO_THROW(plan.validate()) << where(c, mode);
            const std::int64_t dups = layer_duplicates(plan, c.topology).sum().item<std::int64_t>();
            EXPECT_EQ(dups, report.forced_duplicates) << where(c, mode);
            if (duplicate_free_possible(c.topology, c.weight.size(1), mode)) {
                EXPECT_EQ(dups, 0) << where(c, mode);
            }
        }
}

// Every layer whose max GPU load exceeds deepseek's is reported, and only layers where deepseek's
// plan holds duplicates can be.
void expect_not_above_deepseek(const at::Tensor& w, const Topology& t, PlacementMode mode, const std::string& label,
                               std::int64_t& exceptions) {
    PlanReport report;
    const Plan plan = rebalance(w, t, balanced(mode), &report);
    const Plan reference = deepseek_in(w, t, mode);
    const PlanMetrics ours = evaluate(plan, w, t, BoundKind::global);
    const PlanMetrics theirs = evaluate(reference, w, t, BoundKind::global);
    const std::set<std::int64_t> reported(report.above_reference.begin(), report.above_reference.end());
    for (std::size_t l = 0; l < ours.max_gpu_load.size(); ++l) {
        const bool above = ours.max_gpu_load[l] > theirs.max_gpu_load[l] * (1.0 + 1e-9);
        EXPECT_EQ(above, reported.count(static_cast<std::int64_t>(l)) == 1)
            << label << " layer " << l << ": " << ours.max_gpu_load[l] << " vs deepseek " << theirs.max_gpu_load[l];
        if (above) {
            EXPECT_GT(theirs.duplicates[l], 0) << label << " layer " << l;
        }
        exceptions += above;
    }
}

TEST(Balanced, NeverAboveDeepseekInTheSameModeExceptWhereDuplicatesHelpIt) {
    std::int64_t exceptions = 0, layers = 0;
    for (const test::RandomCase& c : test::random_cases(0xA8'0E, 200))
        for (const PlacementMode mode : kModes) {
            expect_not_above_deepseek(c.weight, c.topology, mode, where(c, mode), exceptions);
            layers += c.weight.size(0);
        }
    std::cout << "[          ] layers above deepseek (its plan holds duplicates there): " << exceptions << " of "
              << layers << "\n";
    RecordProperty("layers_above_deepseek", static_cast<int>(exceptions));
}

TEST(Balanced, GroupsStayHomeInHierarchicalModeAndPrimariesInRelaxedMode) {
    for (const test::RandomCase& c : test::random_cases(0x40'4E, 150)) {
        if (!c.topology.is_hierarchical()) continue;
        const Plan h = rebalance(c.weight, c.topology, balanced(PlacementMode::hierarchical));
        test::expect_groups_stay_on_their_node(h, c.topology, c.label);
        const at::Tensor w = c.weight.to(at::kDouble);
        EXPECT_DOUBLE_EQ(node_locality(h, w, c.topology), 1.0) << c.label;
        const Plan r = rebalance(c.weight, c.topology, balanced(PlacementMode::relaxed));
        test::expect_primaries_on_their_home_node(r, c.topology, c.label);
    }
}

TEST(Balanced, EveryModePlansGloballyWhenTheTopologyIsNotHierarchical) {
    int seen = 0;
    for (const test::RandomCase& c : test::random_cases(0x61'0B, 150)) {
        if (c.topology.is_hierarchical()) continue;
        ++seen;
        const Plan global = rebalance(c.weight, c.topology, balanced(PlacementMode::global));
        EXPECT_TRUE(same_maps(global, rebalance(c.weight, c.topology, balanced(PlacementMode::hierarchical)))) << c.label;
        EXPECT_TRUE(same_maps(global, rebalance(c.weight, c.topology, balanced(PlacementMode::relaxed)))) << c.label;
    }
    EXPECT_GT(seen, 10);
}

TEST(Balanced, RelaxedPlansServeTokensAwayFromHomeWhereItHelps) {
    // Group 0 (node 0) carries almost all the load: relaxed plans offload it, hierarchical cannot.
    const Topology t{24, 2, 2, 4};
    at::Tensor w = at::ones({1, 16}, at::kFloat);
    for (int e = 0; e < 8; ++e) w[0][e] = 100.0f;
    const PlanMetrics h = evaluate(rebalance(w, t, balanced(PlacementMode::hierarchical)), w, t, BoundKind::global);
    const PlanMetrics r = evaluate(rebalance(w, t, balanced(PlacementMode::relaxed)), w, t, BoundKind::global);
    EXPECT_LT(r.max_gpu_load[0], h.max_gpu_load[0] * 0.8);
    EXPECT_LT(r.aggregate_node_locality, 1.0);
    EXPECT_DOUBLE_EQ(h.aggregate_node_locality, 1.0);
}

TEST(Balanced, AllowDuplicatesGivesValidPlansNeverAboveDeepseek) {
    for (const test::RandomCase& c : test::random_cases(0xA1'10, 100)) {
        PlanOptions o = balanced(PlacementMode::hierarchical);
        o.allow_duplicates = true;
        PlanReport report;
        const Plan plan = rebalance(c.weight, c.topology, o, &report);
        ASSERT_NO_THROW(plan.validate()) << c.label;
        EXPECT_TRUE(report.above_reference.empty()) << c.label;
        EXPECT_EQ(report.forced_duplicates, 0) << c.label;
    }
}

// The in-sample target on synthetic DeepSeek-V3 windows: within 0.2 % of the bound of the mode,
// window by window. The iterated local search is what gets hierarchical plans there (0.9954 of
// the node-split bound over the series without it, 0.9991 with it); on these dense nodes it stops
// once the node holding the peak is within 0.2 % of its mean.
TEST(Balanced, SyntheticWindowsReachTheInSampleTarget) {
    test::SeriesShape shape;
    shape.windows = 4;
    const at::Tensor series = test::synthetic_series(shape).to(at::kFloat);
    const Topology t{288, 8, 4, 32};
    for (std::int64_t i = 0; i < shape.windows; ++i) {
        const at::Tensor w = series[i];
        const PlanMetrics h =
            evaluate(rebalance(w, t, balanced(PlacementMode::hierarchical)), w, t, BoundKind::hierarchical);
        const PlanMetrics g = evaluate(rebalance(w, t, balanced(PlacementMode::global)), w, t, BoundKind::global);
        EXPECT_GE(h.aggregate_gap, 0.998) << "window " << i;
        EXPECT_GE(g.aggregate_gap, 0.998) << "window " << i;
    }
}

TEST(Balanced, IsDeterministicAcrossRunsAndThreadCounts) {
    test::SeriesShape shape;
    shape.windows = 3;
    const at::Tensor series = test::synthetic_series(shape);
    const Topology t{288, 8, 4, 32};
    const int threads = at::get_num_threads();
    for (const PlacementMode mode : kModes) {
        PlanOptions o = balanced(mode);
        const Plan previous = rebalance(series[0], t, o);
        o.previous = &previous;
        at::set_num_threads(1);
        const Plan one = rebalance(series.slice(0, 1, 3), t, o);
        at::set_num_threads(4);
        const Plan four = rebalance(series.slice(0, 1, 3), t, o);
        const Plan again = rebalance(series.slice(0, 1, 3), t, o);
        EXPECT_TRUE(same_maps(one, four)) << to_string(mode);
        EXPECT_TRUE(same_maps(four, again)) << to_string(mode);
    }
    at::set_num_threads(threads);
}

TEST(BalancedSearch, TheVectorSwapScanChoosesTheSwapsOfTheScalarOne) {
    test::SeriesShape shape;
    shape.windows = 1;
    const at::Tensor series = test::synthetic_series(shape)[0].to(at::kFloat);
    std::vector<test::RandomCase> cases = test::random_cases(0x5CA7, 60);
    cases.push_back(test::RandomCase{Topology{288, 8, 4, 32}, series, "synthetic series"});
    for (const test::RandomCase& c : cases)
        for (const PlacementMode mode : kModes) {
            core::allow_vector_swap_scan(false);
            const Plan scalar = rebalance(c.weight, c.topology, balanced(mode));
            core::allow_vector_swap_scan(true);
            EXPECT_TRUE(same_maps(scalar, rebalance(c.weight, c.topology, balanced(mode)))) << where(c, mode);
        }
}

// ---- history -----------------------------------------------------------------------------


// The largest new load when slots `a` of GPU h and `b` of GPU j trade places, or +inf when the
// trade would put two replicas of one expert on one GPU.
double exchange_peak(const core::Placement& pl, const std::vector<std::int32_t>& a, std::int32_t h,
                     const std::vector<std::int32_t>& b, std::int32_t j) {
    const double inf = std::numeric_limits<double>::infinity();
    auto leaves = [&](const std::vector<std::int32_t>& slots, std::int32_t e) {
        std::int32_t n = 0;
        for (const std::int32_t p : slots) n += pl.expert(p) == e;
        return n;
    };
    std::set<std::int32_t> to_j, to_h;
    double d = 0.0;
    for (const std::int32_t p : a) {
        if (pl.held(pl.expert(p), j) - leaves(b, pl.expert(p)) > 0 || !to_j.insert(pl.expert(p)).second) return inf;
        d += pl.slot_load(p);
    }
    for (const std::int32_t p : b) {
        if (pl.held(pl.expert(p), h) - leaves(a, pl.expert(p)) > 0 || !to_h.insert(pl.expert(p)).second) return inf;
        d -= pl.slot_load(p);
    }
    return std::max(pl.gpu_load(h) - d, pl.gpu_load(j) + d);
}

TEST(BalancedSearch, EndsWhereNoSwapOrExchangeOfTwoSlotsLowersASparseHeaviestGpu) {
    std::mt19937_64 rng(7);
    const Topology t{48, 1, 1, 8};  // 6 slots per GPU
    const at::Tensor w = test::random_loads(rng, 40, 32, test::LoadPattern::sparse);
    PlanOptions o;
    o.policy = Policy::deepseek;
    o.mode = PlacementMode::global;
    const Plan start = rebalance(w, t, o);
    std::int32_t checked = 0;
    for (std::int64_t l = 0; l < w.size(0); ++l) {
        const at::Tensor row = w[l].to(at::kDouble).contiguous();
        const std::vector<double> weight(row.data_ptr<double>(), row.data_ptr<double>() + row.numel());
        core::Placement pl = test::placement_of(start, l, weight, t);
        core::SearchScratch scratch;
        core::improve_placement(pl, pl.domain(0), 0.0, /*count_moves=*/false, 1000, scratch);
        const std::int32_t h = pl.heaviest_gpu(0, 8);
        std::vector<std::int32_t> slots_h, loaded_h;
        for (std::int32_t p = 6 * h; p < 6 * h + 6; ++p) (pl.slot_load(p) > 0.0 ? loaded_h : slots_h).push_back(p);
        if (loaded_h.size() > 4) continue;
        ++checked;
        const double limit = pl.gpu_load(h) * (1.0 - 1e-12);
        for (std::int32_t j = 0; j < 8; ++j) {
            if (j == h) continue;
            for (std::int32_t a0 = 6 * h; a0 < 6 * h + 6; ++a0)
                for (std::int32_t b0 = 6 * j; b0 < 6 * j + 6; ++b0) {
                    EXPECT_GE(exchange_peak(pl, {a0}, h, {b0}, j), limit) << "layer " << l << " swap " << a0 << " " << b0;
                    for (std::int32_t a1 = a0 + 1; a1 < 6 * h + 6; ++a1)
                        for (std::int32_t b1 = b0 + 1; b1 < 6 * j + 6; ++b1)
                            EXPECT_GE(exchange_peak(pl, {a0, a1}, h, {b0, b1}, j), limit)
                                << "layer " << l << " exchange " << a0 << "," << a1 << " / " << b0 << "," << b1;
                }
        }
    }
    EXPECT_GT(checked, 10);
}

TEST(BalancedHistory, TheMeanOfWindowsPlansLikeTheirMean) {
    std::mt19937_64 rng(11);
    const at::Tensor w = at::round(test::random_loads(rng, 6, 64, test::LoadPattern::uniform));
    const at::Tensor d = at::round(w / 4);
    const at::Tensor windows = at::stack({w + d, w - d});  // mean exactly w
    const at::Tensor same = at::stack({w, w});             // a history whose windows are all w
    const Topology t{80, 8, 2, 16};
    for (const PlacementMode mode : kModes) {
        // No balance to give up: the windows' own peaks cannot be lowered on these loads. (A plan
        // from w alone differs: one window is planned for the expected next window, step 6.)
        PlanOptions mean = balanced(mode);
        mean.max_balance_loss = 0.0;
        const Plan from_w = rebalance(same, t, mean);
        EXPECT_TRUE(same_maps(rebalance(windows, t, mean), from_w)) << to_string(mode);
        PlanOptions ema = mean;
        ema.aggregation = HistoryAggregation::ema;
        ema.ema_decay = 1.0;  // equal weights: the mean again
        EXPECT_TRUE(same_maps(rebalance(windows, t, ema), from_w)) << to_string(mode);
    }
    EXPECT_TRUE(same_maps(rebalance(w.unsqueeze(0), t, balanced(PlacementMode::global)),
                          rebalance(w, t, balanced(PlacementMode::global))));
}

TEST(BalancedHistory, AggregationsFollowTheirFormulas) {
    // Two windows of one layer, three experts; window 1 is the newest.
    const at::Tensor windows = at::tensor({1.0f, 4.0f, 0.0f, 3.0f, 0.0f, 1.0f}).view({2, 1, 3});
    PlanOptions o;
    o.aggregation = HistoryAggregation::mean;
    EXPECT_TRUE(at::equal(core::planning_load(windows, o), at::tensor({2.0, 2.0, 0.5}, at::kDouble).view({1, 3})));
    o.aggregation = HistoryAggregation::ema;
    o.ema_decay = 0.5;  // weights 0.5 (older) and 1 (newer), over 1.5
    EXPECT_TRUE(at::allclose(core::planning_load(windows, o),
                             at::tensor({7.0 / 3, 4.0 / 3, 2.0 / 3}, at::kDouble).view({1, 3})));
}

TEST(BalancedHistory, ReferencePoliciesPlanTheSumOfTheWindows) {
    std::mt19937_64 rng(5);
    const at::Tensor a = at::round(test::random_loads(rng, 3, 64, test::LoadPattern::uniform));
    const at::Tensor b = at::round(test::random_loads(rng, 3, 64, test::LoadPattern::skewed));
    const Topology t{80, 8, 2, 16};
    for (const Policy p : {Policy::deepseek, Policy::seed}) {
        PlanOptions o;
        o.policy = p;
        EXPECT_TRUE(same_maps(rebalance(at::stack({a, b}), t, o), rebalance(a + b, t, p))) << to_string(p);
    }
}

TEST(Balanced, RejectsATopologyWithMoreReplicasOfOneExpertPerGpuThanItCounts) {
    const Topology t{70000, 1, 1, 1};
    try {
        rebalance(at::ones({1, 2}), t, PlanOptions{});
        ADD_FAILURE() << "no exception";
    } catch (const TopologyError& e) {
        EXPECT_NE(std::string(e.what()).find("69999"), std::string::npos) << e.what();
    }
    EXPECT_NO_THROW(core::LayerShape::make(Topology{65536, 1, 1, 1}, 2, PlacementMode::global, true));
    EXPECT_THROW(core::LayerShape::make(Topology{65537, 1, 1, 1}, 2, PlacementMode::global, true), TopologyError);
}

// Each window's GPU shares [k, G] of a placement: sum over a GPU's slots of w_t(e) / c_e / W_t.
std::vector<std::vector<double>> window_gpu_shares(const core::Placement& pl, const at::Tensor& windows) {
    const std::int64_t k = windows.size(0);
    std::vector<std::vector<double>> out(static_cast<std::size_t>(k), std::vector<double>(pl.shape().gpus, 0.0));
    for (std::int64_t t = 0; t < k; ++t) {
        const double total = windows[t].sum().item<double>();
        for (std::int32_t p = 0; p < pl.shape().slots; ++p) {
            const std::int32_t e = pl.expert(p);
            out[t][pl.gpu_of(p)] += windows[t][e].item<double>() / pl.count(e) / total;
        }
    }
    return out;
}

double sum_of_peaks(const std::vector<std::vector<double>>& shares) {
    double sum = 0.0;
    for (const auto& w : shares) sum += *std::max_element(w.begin(), w.end());
    return sum;
}

// Four windows of the synthetic DeepSeek-V3 series [4, layers, 256] (float32, contiguous).
at::Tensor four_windows(std::int64_t layers) {
    test::SeriesShape shape;
    shape.windows = 4;
    shape.layers = layers;
    return test::synthetic_series(shape).to(at::kFloat).contiguous();
}

// No allowed swap between a window's heaviest GPU and a GPU of its node lowers the sum of the
// windows' peak shares (`windows` [k, E]) by lower_window_peaks's threshold while keeping every
// GPU within `cap`.
void expect_no_swap_lowers_window_peaks(const core::Placement& pl, const at::Tensor& windows, double cap,
                                        const std::string& where) {
    const auto shares = window_gpu_shares(pl, windows);
    const double after = sum_of_peaks(shares);
    const std::int32_t S = pl.shape().slots_per_gpu;
    for (const auto& window : shares) {
        const std::int32_t g = static_cast<std::int32_t>(std::max_element(window.begin(), window.end()) - window.begin());
        const std::int32_t first = pl.node_of_gpu(g) * pl.shape().gpus_per_node;
        for (std::int32_t j = first; j < first + pl.shape().gpus_per_node; ++j)
            for (std::int32_t a = g * S; j != g && a < (g + 1) * S; ++a)
                for (std::int32_t b = j * S; b < (j + 1) * S; ++b) {
                    const std::int32_t ea = pl.expert(a), eb = pl.expert(b);
                    if (ea == eb || pl.held(ea, j) > 0 || pl.held(eb, g) > 0) continue;
                    const double d = pl.slot_load(a) - pl.slot_load(b);
                    if (std::max(pl.gpu_load(g) - d, pl.gpu_load(j) + d) > cap * (1.0 - 1e-12)) continue;
                    auto swapped = shares;
                    for (std::int64_t k = 0; k < windows.size(0); ++k) {
                        const double x = (windows[k][ea].item<double>() / pl.count(ea) -
                                          windows[k][eb].item<double>() / pl.count(eb)) /
                                         windows[k].sum().item<double>();
                        swapped[k][g] -= x;
                        swapped[k][j] += x;
                    }
                    EXPECT_GE(sum_of_peaks(swapped), after * (1.0 - 1e-4) * (1.0 - 1e-9))
                        << where << " slots " << a << " " << b;
                }
    }
}

TEST(BalancedHistory, WindowPeaksFallWithoutRaisingThePlanningPeakUntilNoSwapLowersThem) {
    const at::Tensor windows = four_windows(12);  // [4, L, E]
    const Topology t{288, 8, 8, 32};  // four GPUs per node: the search tries every partner of a GPU
    const std::int64_t E = windows.size(2);
    const at::Tensor mean = windows.to(at::kDouble).mean(0);
    const Plan from_mean = rebalance(mean.to(at::kFloat), t, balanced(PlacementMode::hierarchical));
    core::WindowScratch scratch;
    std::int32_t lowered = 0;
    for (std::int64_t l = 0; l < windows.size(1); ++l) {
        const at::Tensor row = mean[l].contiguous();
        const std::vector<double> w(row.data_ptr<double>(), row.data_ptr<double>() + E);
        core::Placement pl = test::placement_of(from_mean, l, w, t, PlacementMode::hierarchical);
        const at::Tensor layer_windows = windows.select(1, l).contiguous();  // [4, E]
        const double cap = pl.max_load(), before = sum_of_peaks(window_gpu_shares(pl, layer_windows));
        const core::LayerHistory history{windows.data_ptr<float>() + l * E, 4, windows.size(1) * E};
        lowered += core::lower_window_peaks(pl, history, cap, 4 * t.num_replicas, scratch) > 0;
        ASSERT_LE(pl.max_load(), cap) << "layer " << l;
        ASSERT_EQ(pl.duplicates(), 0) << "layer " << l;
        const auto shares = window_gpu_shares(pl, layer_windows);
        const double after = sum_of_peaks(shares);
        EXPECT_LE(after, before * (1.0 + 1e-12)) << "layer " << l;
        expect_no_swap_lowers_window_peaks(pl, layer_windows, cap, "layer " + std::to_string(l));
    }
    EXPECT_GT(lowered, 0);
}

// GPU g's expected next-window load under lower_expected_peak's prior, recomputed from its formula:
// M_g = sum over g's slots of (rho w_e + (1 - rho) W / E) / c_e.
std::vector<double> expected_gpu_loads(const core::Placement& pl, const std::vector<double>& w, double rho) {
    double total = 0.0;
    for (const double x : w) total += x;
    std::vector<double> out(static_cast<std::size_t>(pl.shape().gpus), 0.0);
    for (std::int32_t p = 0; p < pl.shape().slots; ++p) {
        const std::int32_t e = pl.expert(p);
        out[pl.gpu_of(p)] += (rho * w[e] + (1.0 - rho) * total / static_cast<double>(w.size())) / pl.count(e);
    }
    return out;
}

TEST(BalancedSearch, ExpectedPeakMovesReplicasOfTheLeastReplicatedExpertsApart) {
    // Three GPUs of two slots; experts 0 and 1 hold two replicas each (load 2), 2 and 3 one (load 1):
    // every slot carries 1 token, but GPU 2 holds both single replicas, which the prior expects to
    // grow. One swap gives every GPU the same load and the expected peak its least value.
    const Topology t{6, 1, 1, 3};
    const std::vector<double> w{2.0, 2.0, 1.0, 1.0};
    core::Placement pl(core::LayerShape::make(t, 4, PlacementMode::global, true));
    const std::vector<std::int64_t> phy2log{0, 1, 0, 1, 2, 3};
    const std::vector<std::int32_t> rank{0, 0, 1, 1, 0, 0};
    pl.reset(w.data(), phy2log.data(), rank.data());
    core::WindowScratch scratch;
    std::vector<double> expected(w.size());
    core::expected_next_loads(w.data(), 4, 0.5, expected.data());
    EXPECT_EQ(core::lower_expected_peak(pl, expected.data(), pl.max_load(), 100, scratch), 1);
    for (std::int32_t g = 0; g < 3; ++g) EXPECT_EQ(pl.gpu_load(g), 2.0) << "GPU " << g;
    EXPECT_EQ(pl.duplicates(), 0);
    const std::vector<double> m = expected_gpu_loads(pl, w, 0.5);
    // rho * 2 + (1 - rho) * 1.5 * (1 + 1 / 2) on the two GPUs holding one single replica each.
    EXPECT_DOUBLE_EQ(*std::max_element(m.begin(), m.end()), 0.5 * 2.0 + 0.5 * 1.5 * 1.5);
}

// Persistence 1 expects the planning load itself: no steering. The default steers one-window
// plans without raising any layer's peak on the window, and changes some of them.
TEST(Balanced, PersistenceOneTurnsTheSteeringTowardsTheNextWindowOff) {
    test::SeriesShape shape;
    shape.windows = 1;
    shape.layers = 12;
    const at::Tensor w = test::synthetic_series(shape)[0].to(at::kFloat);
    const Topology t{288, 8, 4, 32};
    for (const PlacementMode mode : kModes) {
        PlanOptions off = balanced(mode);
        off.persistence = 1.0;
        const Plan steered = rebalance(w, t, balanced(mode)), plain = rebalance(w, t, off);
        const PlanMetrics a = evaluate(steered, w, t, BoundKind::global), b = evaluate(plain, w, t, BoundKind::global);
        for (std::size_t l = 0; l < a.max_gpu_load.size(); ++l)
            EXPECT_LE(a.max_gpu_load[l], b.max_gpu_load[l] * (1.0 + 1e-9)) << to_string(mode) << " layer " << l;
        EXPECT_FALSE(same_maps(steered, plain)) << to_string(mode);
    }
}

TEST(BalancedSearch, ExpectedPeakFallsWithinTheCapUntilNoSwapOfItsGpuLowersIt) {
    test::SeriesShape shape;
    shape.windows = 1;
    shape.layers = 12;
    const at::Tensor loads = test::synthetic_series(shape)[0].to(at::kFloat).contiguous();  // [L, E]
    const Topology t{288, 8, 8, 32};  // four GPUs per node: the search tries every partner of a GPU
    PlanOptions reference;
    reference.policy = Policy::deepseek;
    const Plan start = rebalance(loads, t, reference);
    constexpr double kRho = 0.5;
    core::WindowScratch scratch;
    std::int32_t lowered = 0;
    for (std::int64_t l = 0; l < loads.size(0); ++l) {
        const at::Tensor row = loads[l].to(at::kDouble).contiguous();
        const std::vector<double> w(row.data_ptr<double>(), row.data_ptr<double>() + row.numel());
        const double mean = std::accumulate(w.begin(), w.end(), 0.0) / static_cast<double>(w.size());
        core::Placement pl = test::placement_of(start, l, w, t, PlacementMode::hierarchical);
        const double cap = pl.max_load();
        const std::int64_t duplicates = pl.duplicates();
        const std::vector<double> before = expected_gpu_loads(pl, w, kRho);
        std::vector<double> expected(w.size());
        core::expected_next_loads(w.data(), static_cast<std::int32_t>(w.size()), kRho, expected.data());
        lowered += core::lower_expected_peak(pl, expected.data(), cap, 4 * t.num_replicas, scratch) > 0;
        ASSERT_LE(pl.max_load(), cap) << "layer " << l;
        ASSERT_LE(pl.duplicates(), duplicates) << "layer " << l;
        const std::vector<double> m = expected_gpu_loads(pl, w, kRho);
        const auto h = static_cast<std::int32_t>(std::max_element(m.begin(), m.end()) - m.begin());
        EXPECT_LE(m[h], *std::max_element(before.begin(), before.end()) * (1.0 + 1e-12)) << "layer " << l;
        // No allowed swap of the expected-heaviest GPU with another GPU of its node lowers the
        // pair's larger expected load by the search's threshold, keeping the GPU loads within the cap.
        const std::int32_t S = pl.shape().slots_per_gpu, first = pl.node_of_gpu(h) * pl.shape().gpus_per_node;
        for (std::int32_t j = first; j < first + pl.shape().gpus_per_node; ++j)
            for (std::int32_t a = h * S; j != h && a < (h + 1) * S; ++a)
                for (std::int32_t b = j * S; b < (j + 1) * S; ++b) {
                    const std::int32_t ea = pl.expert(a), eb = pl.expert(b);
                    if (ea == eb || pl.held(ea, j) > 0 || pl.held(eb, h) > 0) continue;
                    const double d = pl.slot_load(a) - pl.slot_load(b);  // the GPU whose load rises stays within the cap
                    if (d != 0.0 && (d > 0.0 ? pl.gpu_load(j) + d : pl.gpu_load(h) - d) > cap * (1.0 - 1e-12)) continue;
                    const double x = kRho * d + (1.0 - kRho) * mean * (1.0 / pl.count(ea) - 1.0 / pl.count(eb));
                    EXPECT_GE(std::max(m[h] - x, m[j] + x), m[h] * (1.0 - 1e-4) * (1.0 - 1e-9))
                        << "layer " << l << " slots " << a << " " << b;
                }
    }
    EXPECT_GT(lowered, 0);
}

// Planning from windows, step 6 lowers the peaks of the windows and of the expected next window,
// 0.5 w + 0.5 mean(w) of the planning load w, until no swap within the balance budget lowers their
// sum (the budget: P / (1 - loss), P the peak of the plan without loss, and deepseek's peak).
TEST(BalancedHistory, PlansFromWindowsLowerThePeaksOfTheWindowsAndOfTheExpectedNextOne) {
    const at::Tensor windows = four_windows(12);  // [4, L, E]
    const Topology t{288, 8, 8, 32};  // four GPUs per node: the search tries every partner of a GPU
    constexpr double kLoss = 0.02;
    PlanOptions tight = balanced(PlacementMode::hierarchical), loose = tight;
    tight.max_balance_loss = 0.0;
    loose.max_balance_loss = kLoss;
    const Plan best = rebalance(windows, t, tight), plan = rebalance(windows, t, loose);
    const at::Tensor mean = windows.to(at::kDouble).mean(0);
    const Plan reference = deepseek_in(mean.to(at::kFloat), t, PlacementMode::hierarchical);
    for (std::int64_t l = 0; l < windows.size(1); ++l) {
        const at::Tensor row = mean[l].contiguous();
        const std::vector<double> w(row.data_ptr<double>(), row.data_ptr<double>() + row.numel());
        const double budget = std::min(test::placement_of(best, l, w, t, PlacementMode::hierarchical).max_load() / (1.0 - kLoss),
                                       test::placement_of(reference, l, w, t, PlacementMode::hierarchical).max_load());
        const core::Placement pl = test::placement_of(plan, l, w, t, PlacementMode::hierarchical);
        const at::Tensor expected = 0.5 * row + 0.5 * row.mean();
        const at::Tensor layer_windows = at::cat({windows.select(1, l).to(at::kDouble), expected.unsqueeze(0)});
        expect_no_swap_lowers_window_peaks(pl, layer_windows, budget * (1.0 - 1e-9), "layer " + std::to_string(l));
    }
}

// Planning from windows, a plan may give up max_balance_loss of its balance on the mean to lower
// the windows' own peaks: on every layer its peak on the mean stays within that budget of the plan
// that gives up nothing and never rises above deepseek's, and the sum of the window peaks falls.
TEST(BalancedHistory, LowerWindowPeaksCostAtMostTheBalanceLossAndNeverMoreThanDeepseek) {
    const at::Tensor windows = four_windows(10);  // [4, L, E]
    const Topology t{288, 8, 4, 32};
    const at::Tensor mean = windows.to(at::kDouble).mean(0);
    const at::Tensor mean_f = mean.to(at::kFloat);
    constexpr double kLoss = 0.02;
    for (const PlacementMode mode : kModes) {
        PlanOptions tight = balanced(mode), loose = balanced(mode);
        tight.max_balance_loss = 0.0;
        loose.max_balance_loss = kLoss;
        const Plan a = rebalance(windows, t, tight), b = rebalance(windows, t, loose);
        const PlanMetrics ma = evaluate(a, mean_f, t, BoundKind::global), mb = evaluate(b, mean_f, t, BoundKind::global);
        const PlanMetrics reference = evaluate(deepseek_in(mean_f, t, mode), mean_f, t, BoundKind::global);
        double peaks_a = 0.0, peaks_b = 0.0;
        for (std::int64_t l = 0; l < windows.size(1); ++l) {
            const auto i = static_cast<std::size_t>(l);
            EXPECT_LE(mb.max_gpu_load[i], ma.max_gpu_load[i] / (1.0 - kLoss) * (1.0 + 1e-6)) << to_string(mode) << " layer " << l;
            EXPECT_LE(mb.max_gpu_load[i], std::max(ma.max_gpu_load[i], reference.max_gpu_load[i]) * (1.0 + 1e-6))
                << to_string(mode) << " layer " << l;
            EXPECT_EQ(mb.duplicates[i], 0) << to_string(mode) << " layer " << l;
            const at::Tensor row = mean[l].contiguous();
            const std::vector<double> w(row.data_ptr<double>(), row.data_ptr<double>() + row.numel());
            const at::Tensor layer_windows = windows.select(1, l).contiguous();
            peaks_a += sum_of_peaks(window_gpu_shares(test::placement_of(a, l, w, t, mode), layer_windows));
            peaks_b += sum_of_peaks(window_gpu_shares(test::placement_of(b, l, w, t, mode), layer_windows));
        }
        EXPECT_LT(peaks_b, peaks_a) << to_string(mode);
    }
}

TEST(BalancedHistory, RejectsBadWindows) {
    const Topology t{80, 8, 2, 16};
    EXPECT_THROW(rebalance(at::ones({0, 2, 64}), t, PlanOptions{}), LoadError);
    at::Tensor w = at::ones({2, 2, 64});
    w[1][0][3] = -1.0;
    try {
        rebalance(w, t, PlanOptions{});
        ADD_FAILURE() << "no exception";
    } catch (const LoadError& e) {
        EXPECT_NE(std::string(e.what()).find("weight[1][0][3]"), std::string::npos) << e.what();
    }
}

// ---- migration ---------------------------------------------------------------------------

TEST(BalancedMigration, APlanThatIsStillBestMovesNothing) {
    std::mt19937_64 rng(21);
    const at::Tensor w = test::random_loads(rng, 4, 64, test::LoadPattern::skewed);
    const Topology t{80, 8, 2, 16};
    for (const PlacementMode mode : kModes) {
        PlanOptions o = balanced(mode);
        const Plan first = rebalance(w, t, o);
        o.previous = &first;
        const Plan second = rebalance(w, t, o);
        EXPECT_EQ(migration(first, second, t).total_moved_slots(), 0) << to_string(mode);
    }
}

// The synthetic drifting series: `windows` windows of `layers` layers x 64 experts.
at::Tensor series_of_64_experts(std::int64_t windows, std::int64_t layers) {
    test::SeriesShape shape;
    shape.windows = windows;
    shape.layers = layers;
    shape.experts = 64;
    return test::synthetic_series(shape);
}

// Consecutive plans of a drifting series, each from its last 4 windows: at most half the moved
// replicas of planning from scratch, every layer within the allowed balance loss, and experts that
// stay on a GPU keep their slots.
TEST(BalancedMigration, ConsecutiveWindowsMoveFarFewerReplicasWithinTheBalanceBudget) {
    const std::int64_t windows = 9;
    const at::Tensor series = series_of_64_experts(windows, 6);
    const Topology t{80, 8, 2, 16};
    for (const PlacementMode mode : kModes) {
        PlanOptions o = balanced(mode);
        Plan deployed = rebalance(series.slice(0, 0, 4), t, o);
        std::int64_t scratch_moves = 0, aware_moves = 0;
        for (std::int64_t i = 4; i < windows; ++i) {
            const at::Tensor history = series.slice(0, i - 3, i + 1), w = history.mean(0);
            o.previous = nullptr;
            const Plan scratch = rebalance(history, t, o);
            o.previous = &deployed;
            const Plan aware = rebalance(history, t, o);
            ASSERT_NO_THROW(aware.validate());
            EXPECT_EQ(layer_duplicates(aware, t).sum().item<std::int64_t>(), 0);
            const PlanMetrics s = evaluate(scratch, w, t, BoundKind::global);
            const PlanMetrics a = evaluate(aware, w, t, BoundKind::global);
            for (std::size_t l = 0; l < s.max_gpu_load.size(); ++l)
                EXPECT_LE(a.max_gpu_load[l], s.max_gpu_load[l] / (1.0 - o.max_balance_loss) * (1.0 + 1e-9))
                    << to_string(mode) << " window " << i << " layer " << l;
            scratch_moves += migration(deployed, scratch, t).total_moved_slots();
            aware_moves += migration(deployed, aware, t).total_moved_slots();
            if (mode == PlacementMode::hierarchical) test::expect_groups_stay_on_their_node(aware, t, "migration");
            if (mode == PlacementMode::relaxed) test::expect_primaries_on_their_home_node(aware, t, "migration");
            // An expert on the same GPU before and after holds a slot it held before.
            const std::int64_t R = t.num_replicas, S = t.slots_per_gpu();
            for (std::int64_t l = 0; l < aware.num_layers(); ++l)
                for (std::int64_t p = 0; p < R; ++p) {
                    const std::int64_t e = aware.phy2log[l][p].item<std::int64_t>();
                    bool before_on_gpu = false, kept_slot = false;
                    for (std::int64_t q = p / S * S; q < p / S * S + S; ++q) {
                        before_on_gpu |= deployed.phy2log[l][q].item<std::int64_t>() == e;
                        kept_slot |= deployed.phy2log[l][q].item<std::int64_t>() == e &&
                                     aware.phy2log[l][q].item<std::int64_t>() == e;
                    }
                    if (before_on_gpu) {
                        EXPECT_TRUE(kept_slot) << "layer " << l << " slot " << p << " expert " << e;
                    }
                }
            deployed = aware;
        }
        EXPECT_LE(aware_moves * 2, scratch_moves) << to_string(mode);
    }
}

// The shared (GPU, expert) pairs of two rows against a direct count, sum_e min(replicas of e on a,
// replicas of e on b), on rows with many duplicates (few experts) and with none.
TEST(BalancedMigration, CountsTheSharedPairsOfEveryTwoGpusAsMultisets) {
    std::mt19937_64 rng(12);
    for (const std::int32_t experts : {3, 8, 40}) {
        const Topology t{40, 1, 1, 8};
        const core::LayerShape shape = core::LayerShape::make(t, experts, PlacementMode::global, false);
        std::vector<std::int64_t> row(40), previous(40);
        for (int trial = 0; trial < 20; ++trial) {
            for (std::int64_t p = 0; p < 40; ++p) {
                row[p] = static_cast<std::int64_t>(rng() % experts);
                previous[p] = static_cast<std::int64_t>(rng() % experts);
            }
            core::MigrationScratch scratch;
            core::count_shared_pairs(shape, row.data(), previous.data(), scratch);
            for (std::int32_t a = 0; a < 8; ++a)
                for (std::int32_t b = 0; b < 8; ++b) {
                    std::int64_t expected = 0;
                    for (std::int64_t e = 0; e < experts; ++e)
                        expected += std::min(std::count(row.begin() + a * 5, row.begin() + a * 5 + 5, e),
                                             std::count(previous.begin() + b * 5, previous.begin() + b * 5 + 5, e));
                    EXPECT_EQ(scratch.shared[a * 8 + b], expected) << experts << " experts, GPUs " << a << ", " << b;
                }
        }
    }
}

// `plan` with its GPUs renamed (the nodes in reverse order, the GPUs of each node in reverse
// order) and each GPU's slots rotated by one.
Plan renamed_gpus(const Plan& plan, const Topology& t) {
    const std::int64_t S = t.slots_per_gpu(), G = t.num_gpus, per_node = t.gpus_per_node();
    at::Tensor p2l = plan.phy2log.clone();
    for (std::int64_t g = 0; g < G; ++g) {
        const std::int64_t node = g / per_node;
        const std::int64_t to = (t.num_nodes - 1 - node) * per_node + (per_node - 1 - g % per_node);
        for (std::int64_t k = 0; k < S; ++k)
            p2l.select(1, to * S + (k + 1) % S).copy_(plan.phy2log.select(1, g * S + k));
    }
    return plan_from_phy2log(p2l, plan.num_experts());
}

// A deployed plan that is the new plan with its GPUs renamed is recognised: the GPUs are renamed
// back and no replica moves, also where the topology forces duplicates (the shared (GPU, expert)
// pairs are counted as multisets).
TEST(BalancedMigration, RecognisesTheSamePlanOnRenamedGpus) {
    const at::Tensor series = series_of_64_experts(1, 4);
    std::mt19937_64 rng(11);
    const at::Tensor four_experts = test::random_loads(rng, 3, 4, test::LoadPattern::skewed);
    const struct {
        at::Tensor w;
        Topology t;
        PlacementMode mode;
    } cases[] = {{series[0], Topology{80, 8, 2, 16}, PlacementMode::hierarchical},
                 {series[0], Topology{80, 8, 2, 16}, PlacementMode::global},
                 {four_experts, Topology{16, 1, 1, 2}, PlacementMode::global}};
    for (const auto& c : cases) {
        PlanOptions o = balanced(c.mode);
        o.allow_duplicates = c.t.num_replicas > 4 * c.t.num_gpus;
        const Plan plan = rebalance(c.w, c.t, o);
        const Plan deployed = renamed_gpus(plan, c.t);
        ASSERT_GT(migration(deployed, plan, c.t).total_moved_slots(), 0) << c.t.to_string();
        o.previous = &deployed;
        const Plan aware = rebalance(c.w, c.t, o);
        EXPECT_EQ(migration(deployed, aware, c.t).total_moved_slots(), 0) << c.t.to_string();
        if (o.allow_duplicates) {
            EXPECT_GT(layer_duplicates(aware, c.t).sum().item<std::int64_t>(), 0) << c.t.to_string();
        }
    }
}

TEST(BalancedMigration, WithoutBalanceLossThePlanIsAsBalancedAsFromScratch) {
    const at::Tensor series = series_of_64_experts(2, 4);
    const Topology t{80, 8, 2, 16};
    PlanOptions o = balanced(PlacementMode::hierarchical);
    const Plan previous = rebalance(series[0], t, o);
    const Plan scratch = rebalance(series[1], t, o);
    o.previous = &previous;
    o.max_balance_loss = 0.0;
    const Plan aware = rebalance(series[1], t, o);
    const PlanMetrics s = evaluate(scratch, series[1], t, BoundKind::global);
    const PlanMetrics a = evaluate(aware, series[1], t, BoundKind::global);
    for (std::size_t l = 0; l < s.max_gpu_load.size(); ++l)
        EXPECT_LE(a.max_gpu_load[l], s.max_gpu_load[l] * (1.0 + 1e-9)) << "layer " << l;
    EXPECT_LE(migration(previous, aware, t).total_moved_slots(), migration(previous, scratch, t).total_moved_slots());
}

TEST(BalancedMigration, RejectsPreviousPlansThatDoNotFit) {
    std::mt19937_64 rng(2);
    const at::Tensor w = test::random_loads(rng, 2, 64, test::LoadPattern::uniform);
    const Topology t{80, 8, 2, 16};
    const Plan other_layers = rebalance(test::random_loads(rng, 3, 64, test::LoadPattern::uniform), t, Policy::balanced);
    PlanOptions o;
    o.previous = &other_layers;
    EXPECT_THROW(rebalance(w, t, o), PlanError);
    const Plan fitting = rebalance(w, t, Policy::balanced);
    o.previous = &fitting;
    o.policy = Policy::deepseek;
    EXPECT_THROW(rebalance(w, t, o), UsageError);
}

TEST(Balanced, ValidatesItsOptions) {
    std::mt19937_64 rng(3);
    const at::Tensor w = test::random_loads(rng, 2, 64, test::LoadPattern::uniform);
    const Topology t{80, 8, 2, 16};
    PlanOptions o;
    o.ema_decay = 0.0;
    EXPECT_THROW(rebalance(w, t, o), UsageError);
    o = PlanOptions{};
    o.max_balance_loss = 1.0;
    EXPECT_THROW(rebalance(w, t, o), UsageError);
    for (const double persistence : {-0.1, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
        o = PlanOptions{};
        o.persistence = persistence;
        EXPECT_THROW(rebalance(w, t, o), UsageError) << persistence;
    }
    o = PlanOptions{};
    o.policy = Policy::seed;
    o.mode = PlacementMode::relaxed;
    EXPECT_THROW(rebalance(w, t, o), UsageError);
    EXPECT_EQ(parse_placement_mode("relaxed"), PlacementMode::relaxed);
    EXPECT_EQ(parse_history_aggregation("ema"), HistoryAggregation::ema);
    EXPECT_THROW(parse_placement_mode("local"), UsageError);
    EXPECT_THROW(parse_history_aggregation("median"), UsageError);
}

}  // namespace
}  // namespace eplb
