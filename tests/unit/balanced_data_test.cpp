// The balanced policy on real recorded loads (the Apache-2.0 data in the repository): SGLang's
// DeepSeek-R1 statistics (jobs/data/sglang-ds-r1-h20) and OLMoE's per-domain counts
// (jobs/data/olmoe-domains); and the reader of SGLang's expert-location files.
#include "io/sglang_expert_location.hpp"

#include <eplb/errors.hpp>
#include <eplb/metrics.hpp>
#include <eplb/rebalance.hpp>
#include <eplb/snapshot.hpp>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>
#include <stdexcept>

namespace eplb {
namespace {

struct DataSet {
    std::string name;
    Topology topology;
    at::Tensor loads;  // [L, E]
};

DataSet sglang(const std::string& file, bool zero_last_column) {
    const Snapshot s = read_json_snapshot(std::string(EPLB_JOBS_DATA_DIR) + "/sglang-ds-r1-h20/" + file);
    at::Tensor w = s.steps[0].clone();
    if (zero_last_column) w.select(1, w.size(1) - 1).zero_();
    return {file + (zero_last_column ? " (column 255 zeroed)" : ""), Topology{288, 8, 4, 32}, w};
}

// Rows [layers.size(), E] of SGLang's DeepSeek-R1 prefill statistics, by model layer id.
at::Tensor prefill_layers(const std::vector<std::int64_t>& layers) {
    const Snapshot s = read_json_snapshot(std::string(EPLB_JOBS_DATA_DIR) + "/sglang-ds-r1-h20/prefill_ep16_3500_1500.json");
    std::vector<at::Tensor> rows;
    for (const std::int64_t layer : layers) {
        const auto row = std::find(s.layer_ids.begin(), s.layer_ids.end(), layer);
        if (row == s.layer_ids.end()) throw std::runtime_error("no layer " + std::to_string(layer) + " in the prefill file");
        rows.push_back(s.steps[0][row - s.layer_ids.begin()]);
    }
    return at::stack(rows);
}

// Each OLMoE domain of the olmoe model: [3, 64] loads.
std::vector<DataSet> olmoe_domains() {
    std::ifstream in(std::string(EPLB_JOBS_DATA_DIR) + "/olmoe-domains/expert_counts.json");
    const nlohmann::json j = nlohmann::json::parse(in);
    std::vector<DataSet> out;
    for (const auto& [domain, rows] : j.at("olmoe").at("expert_counts").items()) {
        std::vector<double> v;
        for (const auto& row : rows)
            for (const auto& x : row) v.push_back(x.get<double>());
        out.push_back({"olmoe " + domain, Topology{80, 8, 2, 16},
                       at::from_blob(v.data(), {3, 64}, at::TensorOptions().dtype(at::kDouble)).clone()});
    }
    return out;
}

std::vector<DataSet> all_data() {
    std::vector<DataSet> sets{sglang("decode_ep32_3500_1500.json", false), sglang("decode_ep32_3500_1500.json", true),
                              sglang("prefill_ep16_3500_1500.json", false)};
    for (DataSet& d : olmoe_domains()) sets.push_back(std::move(d));
    return sets;
}

PlanOptions mode(PlacementMode m, Policy p = Policy::balanced) {
    PlanOptions o;
    o.policy = p;
    o.mode = m;
    return o;
}

// Balanced plans in every mode: no duplicates, never above deepseek in the same mode except on
// reported layers where deepseek's plan holds duplicates, and a better aggregate balance.
TEST(BalancedOnRealData, NoDuplicatesAndNeverAboveDeepseekExceptWhereReported) {
    std::int64_t exceptions = 0, layers = 0;
    for (const DataSet& d : all_data())
        for (const PlacementMode m : {PlacementMode::hierarchical, PlacementMode::global, PlacementMode::relaxed}) {
            const std::string label = d.name + " " + to_string(m);
            PlanReport report;
            const Plan plan = rebalance(d.loads, d.topology, mode(m), &report);
            const Plan reference = rebalance(
                d.loads, d.topology, mode(m == PlacementMode::global ? m : PlacementMode::hierarchical, Policy::deepseek));
            const PlanMetrics ours = evaluate(plan, d.loads, d.topology, BoundKind::global);
            const PlanMetrics theirs = evaluate(reference, d.loads, d.topology, BoundKind::global);
            EXPECT_EQ(ours.total_duplicates, 0) << label;
            EXPECT_GT(ours.aggregate_balancedness, theirs.aggregate_balancedness) << label;
            const std::set<std::int64_t> reported(report.above_reference.begin(), report.above_reference.end());
            for (std::size_t l = 0; l < ours.max_gpu_load.size(); ++l) {
                const bool above = ours.max_gpu_load[l] > theirs.max_gpu_load[l] * (1.0 + 1e-9);
                EXPECT_EQ(above, reported.count(static_cast<std::int64_t>(l)) == 1) << label << " layer " << l;
                if (above) {
                    EXPECT_GT(theirs.duplicates[l], 0) << label << " layer " << l;
                }
                exceptions += above;
                ++layers;
            }
        }
    std::cout << "[          ] layers above deepseek (its plan holds duplicates there): " << exceptions << " of "
              << layers << "\n";
    RecordProperty("layers_above_deepseek", static_cast<int>(exceptions));
}

// The in-sample target on SGLang's decode statistics (column 255 zeroed): within 0.2 % of the
// bound of the mode.
TEST(BalancedOnRealData, DecodePlansReachTheBoundOfTheirMode) {
    const DataSet d = sglang("decode_ep32_3500_1500.json", true);
    const PlanMetrics h = evaluate(rebalance(d.loads, d.topology, mode(PlacementMode::hierarchical)), d.loads,
                                   d.topology, BoundKind::hierarchical);
    const PlanMetrics g =
        evaluate(rebalance(d.loads, d.topology, mode(PlacementMode::global)), d.loads, d.topology, BoundKind::global);
    EXPECT_GE(h.aggregate_gap, 0.998);
    EXPECT_GE(g.aggregate_gap, 0.998);
}

// The in-sample target on SGLang's prefill statistics, where 72 of 256 experts carry load: global
// plans within 0.2 % of W/G over the file (0.9982; 0.9952 before the count search and the
// proportional repack of sparse layers). No hierarchical plan gets there
// (tests/bench/exact_optimum.py proves at most 0.9958 of the node-split bound over the file);
// `balanced` reaches 0.9931 (0.9913 before).
TEST(BalancedOnRealData, PrefillPlansReachTheTargetWhereAnyPlanCan) {
    const DataSet d = sglang("prefill_ep16_3500_1500.json", false);
    const PlanMetrics g =
        evaluate(rebalance(d.loads, d.topology, mode(PlacementMode::global)), d.loads, d.topology, BoundKind::global);
    const PlanMetrics h = evaluate(rebalance(d.loads, d.topology, mode(PlacementMode::hierarchical)), d.loads,
                                   d.topology, BoundKind::hierarchical);
    EXPECT_GE(g.aggregate_gap, 0.998);
    EXPECT_GE(h.aggregate_gap, 0.993);
    EXPECT_EQ(g.total_duplicates + h.total_duplicates, 0);
}

// Layer 43 of the prefill statistics: three experts carry 28 M of the 35 M tokens of the heaviest
// node, which has 8 spare slots; tests/bench/exact_optimum.py proves that no hierarchical plan
// gets its max GPU load below 4,450,432 tokens (0.975 x the node-split bound 4,339,136). Swaps and
// count moves stall at 4,963,488 there; the packing to a target (search, or chosen replica counts)
// reaches the optimum. Layer 22: the exact search proves the optimum within [3,845,355.5,
// 3,845,606.4] (bound 3,803,728); the packing search reaches 3,845,606.4 (3,869,472 at a budget
// of 500 nodes per target; 0.947 of the bound before the search).
TEST(BalancedOnRealData, SparsePrefillLayersReachTheirProvenOptimum) {
    struct Proven {
        std::int64_t layer;
        double bound, optimum;
    };
    for (const Proven p : {Proven{43, 4339136.0, 4450432.0}, Proven{22, 3803728.0, 3845606.4}}) {
        const at::Tensor w = prefill_layers({p.layer});
        const Topology t{288, 8, 4, 32};
        const PlanMetrics m =
            evaluate(rebalance(w, t, mode(PlacementMode::hierarchical)), w, t, BoundKind::hierarchical);
        EXPECT_DOUBLE_EQ(m.lower_bound[0], p.bound) << "layer " << p.layer;
        EXPECT_LE(m.max_gpu_load[0], p.optimum * (1.0 + 1e-9)) << "layer " << p.layer;
        EXPECT_EQ(m.total_duplicates, 0);
    }
}

// Global plans of the prefill statistics' sparsest layers: a few experts carry most of the load
// (layer 56: 9.1, 5.3 and 4.7 times the mean GPU load), and swaps and count moves stalled 0.7-2 %
// above the best plans known. The packing search must reach the best plans that
// `tests/bench/exact_optimum.py SNAPSHOT -t 288/8/4/32 --mode global --layers 52-56
// --time-limit 40` found (it proves no bound on 32 GPUs, only finds plans); with the count search
// and the proportional repack, the plans are 0.6-1.2 % lighter than those.
TEST(BalancedOnRealData, SparseGlobalPrefillLayersReachTheBestPlansKnown) {
    const std::vector<std::pair<std::int64_t, double>> best{
        {52, 4535744.0}, {53, 3292571.4285714286}, {54, 4508672.0}, {55, 5358592.0}, {56, 3650602.6666666665}};
    std::vector<std::int64_t> layers;
    for (const auto& [layer, max_load] : best) layers.push_back(layer);
    const at::Tensor w = prefill_layers(layers);
    const Topology t{288, 8, 4, 32};
    const PlanMetrics m = evaluate(rebalance(w, t, mode(PlacementMode::global)), w, t, BoundKind::global);
    for (std::size_t i = 0; i < best.size(); ++i)
        EXPECT_LE(m.max_gpu_load[i], best[i].second * (1.0 + 1e-9)) << "layer " << best[i].first;
    EXPECT_EQ(m.total_duplicates, 0);
}

// ---- SGLang expert-location files ---------------------------------------------------------

std::string write_temp(const std::string& name, const std::string& text) {
    const std::string path = ::testing::TempDir() + "/" + name;
    std::ofstream(path) << text;
    return path;
}

std::string error_of(const std::string& path) {
    try {
        io::read_sglang_expert_location(path);
    } catch (const FormatError& e) {
        return e.what();
    }
    return "no error";
}

TEST(SglangExpertLocation, ReadsThePhysicalToLogicalMap) {
    const std::string path = write_temp("location.json", R"({"physical_to_logical_map": [[0, 1, 2, 0], [2, 1, 0, 1]]})");
    const at::Tensor map = io::read_sglang_expert_location(path);
    EXPECT_TRUE(at::equal(map, at::tensor({0, 1, 2, 0, 2, 1, 0, 1}, at::kLong).view({2, 4})));
    const Plan plan = plan_from_phy2log(map, 3);
    EXPECT_NO_THROW(plan.validate());
}

TEST(SglangExpertLocation, NamesTheFileAndFieldOfBadInput) {
    EXPECT_NE(error_of(write_temp("a.json", R"({"logical_count": [[1]]})")).find("physical_to_logical_map"),
              std::string::npos);
    EXPECT_NE(error_of(write_temp("b.json", R"({"physical_to_logical_map": [[0, 1], [0]]})")).find("ragged"),
              std::string::npos);
    const std::string bad = error_of(write_temp("c.json", R"({"physical_to_logical_map": [[0, -1]]})"));
    EXPECT_NE(bad.find("physical_to_logical_map[0][1]"), std::string::npos) << bad;
    EXPECT_NE(error_of(write_temp("d.json", "{")).find("not valid JSON"), std::string::npos);
    EXPECT_NE(error_of("/nonexistent/location.json").find("cannot open"), std::string::npos);
}

}  // namespace
}  // namespace eplb
