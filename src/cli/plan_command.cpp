// eplb plan: plan one snapshot and print its metrics.
#include "cli/commands.hpp"

#include <eplb/errors.hpp>
#include <eplb/metrics.hpp>
#include <eplb/rebalance.hpp>
#include <eplb/snapshot.hpp>

#include "io/sglang_expert_location.hpp"

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include <ATen/ops/index_select.h>
#include <ATen/ops/slice.h>
#include <ATen/ops/tensor.h>

#include <chrono>
#include <optional>
#include <cstdio>
#include <iostream>
#include <string>

namespace eplb::cli {
namespace {

namespace po = boost::program_options;

struct PlanArgs {
    std::string input;
    std::string topology;
    std::string policy;
    std::string mode;
    std::int64_t history = 0;
    std::string aggregation;
    double ema_decay = 0.5;
    std::string previous;
    double max_balance_loss = 0.01;
    bool allow_duplicates = false;
    bool json = false;
};

po::options_description plan_options(PlanArgs& a) {
    po::options_description d("eplb plan --input FILE --topology R/groups/N/G [options]");
    d.add_options()
        ("help,h", "show this help")
        ("input,i", po::value(&a.input)->required(),
         "load snapshot: JSON with logical_count [layers][experts] or load_history [windows]")
        ("topology,t", po::value(&a.topology)->required(), "R/groups/N/G, e.g. 288/8/4/32")
        ("policy,p", po::value(&a.policy)->default_value("balanced"), "balanced | deepseek | seed")
        ("mode", po::value(&a.mode)->default_value("hierarchical"),
         "hierarchical | global | relaxed: where replicas may go (relaxed: balanced only)")
        ("history", po::value(&a.history)->default_value(0),
         "plan from the last K windows of the input (0: all windows summed into one)")
        ("aggregation", po::value(&a.aggregation)->default_value("mean"),
         "mean | ema: how the balanced policy combines the history windows")
        ("ema-decay", po::value(&a.ema_decay)->default_value(0.5), "decay of --aggregation ema, in (0, 1]")
        ("previous", po::value(&a.previous),
         "the plan now deployed, an SGLang expert-location JSON (physical_to_logical_map): the balanced "
         "policy then moves as few replicas as it can")
        ("max-balance-loss", po::value(&a.max_balance_loss)->default_value(0.01),
         "balancedness a layer may give up to move fewer replicas (with --previous)")
        ("allow-duplicates", po::bool_switch(&a.allow_duplicates),
         "let the balanced policy put several replicas of one expert on one GPU")
        ("json", po::bool_switch(&a.json), "print machine-readable JSON instead of a table");
    return d;
}

struct PlanRun {
    Snapshot snapshot;
    Topology topology;
    PlanOptions options;
    std::int64_t windows = 1;  // windows planned from
    PlanReport report;
    PlanMetrics metrics;
    std::optional<Migration> moved;
    double seconds = 0.0;
};

// The windows to plan from: the last `history` steps of the snapshot, or all of them summed.
at::Tensor planning_windows(const Snapshot& s, std::int64_t history) {
    if (history < 0) throw UsageError("--history " + std::to_string(history) + " must be >= 0");
    if (history == 0) return s.steps.sum(0);
    const std::int64_t T = s.num_steps(), k = std::min(history, T);
    return s.steps.slice(0, T - k, T);
}

// The previous plan's rows for the snapshot's MoE layers: a map with one row per MoE layer is
// taken as is; one with a row per model layer (SGLang's layout) is indexed by the layer ids.
Plan read_previous_plan(const std::string& path, const Snapshot& s, const Topology& t) {
    at::Tensor map = io::read_sglang_expert_location(path);
    const std::int64_t rows = map.size(0);
    if (rows != s.num_layers()) {
        if (rows != s.model_layers)
            throw FormatError(path + ": physical_to_logical_map has " + std::to_string(rows) + " rows; expected " +
                              std::to_string(s.num_layers()) + " (MoE layers) or " + std::to_string(s.model_layers) +
                              " (model layers) of " + s.source);
        map = at::index_select(map, 0, at::tensor(s.layer_ids, at::TensorOptions().dtype(at::kLong)));
    }
    if (map.size(1) != t.num_replicas)
        throw FormatError(path + ": physical_to_logical_map rows have " + std::to_string(map.size(1)) +
                          " slots; topology " + t.to_string() + " has " + std::to_string(t.num_replicas));
    try {
        return plan_from_phy2log(map, s.num_experts());
    } catch (const PlanError& e) {
        throw FormatError(path + ": " + e.what());
    }
}

PlanOptions plan_settings(const PlanArgs& a) {
    PlanOptions o;
    o.policy = parse_policy(a.policy);
    o.mode = parse_placement_mode(a.mode);
    o.aggregation = parse_history_aggregation(a.aggregation);
    o.ema_decay = a.ema_decay;
    o.max_balance_loss = a.max_balance_loss;
    o.allow_duplicates = a.allow_duplicates;
    return o;
}

BoundKind bound_for(const PlanOptions& o, const Topology& t) {
    return o.mode == PlacementMode::hierarchical && t.is_hierarchical() ? BoundKind::hierarchical : BoundKind::global;
}

PlanRun plan_snapshot(const PlanArgs& a) {
    PlanRun run{read_json_snapshot(a.input), Topology::parse(a.topology), plan_settings(a), 1, {}, {}, {}, 0.0};
    run.options.validate();
    const at::Tensor windows = planning_windows(run.snapshot, a.history);
    run.windows = windows.dim() == 3 ? windows.size(0) : 1;
    const at::Tensor loads = windows.dim() == 3 ? windows.sum(0) : windows;
    run.topology.validate(loads.size(1));
    std::optional<Plan> previous;
    if (!a.previous.empty()) {
        previous = read_previous_plan(a.previous, run.snapshot, run.topology);
        run.options.previous = &*previous;
    }
    const auto start = std::chrono::steady_clock::now();
    const Plan plan = rebalance(windows, run.topology, run.options, &run.report);
    run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    run.metrics = evaluate(plan, loads, run.topology, bound_for(run.options, run.topology));
    if (previous) run.moved = migration(*previous, plan, run.topology);
    run.options.previous = nullptr;
    return run;
}

std::string layer_list(const std::vector<std::int64_t>& rows, const Snapshot& s) {
    std::string out;
    for (const std::int64_t r : rows) out += (out.empty() ? "" : " ") + std::to_string(s.layer_ids[r]);
    return out.empty() ? "none" : out;
}

const char* bound_name(BoundKind k) { return k == BoundKind::hierarchical ? "hierarchical" : "global"; }

void print_table(const PlanRun& r) {
    const PlanMetrics& m = r.metrics;
    std::printf("eplb plan: %s\n", r.snapshot.source.c_str());
    std::printf("  %lld MoE layers of %lld experts (%lld layers recorded), topology %s (%s), policy %s, mode %s\n",
                static_cast<long long>(r.snapshot.num_layers()), static_cast<long long>(r.snapshot.num_experts()),
                static_cast<long long>(r.snapshot.model_layers), r.topology.to_string().c_str(),
                r.topology.is_hierarchical() ? "hierarchical" : "global fallback", to_string(r.options.policy).c_str(),
                to_string(r.options.mode).c_str());
    std::printf("  planned from %lld window(s)%s\n", static_cast<long long>(r.windows),
                r.windows > 1 && r.options.policy == Policy::balanced
                    ? (", combined by " + to_string(r.options.aggregation)).c_str()
                    : "");
    std::printf("\n%6s %12s %14s %14s %14s %8s %10s %5s\n", "layer", "balancedness", "max_gpu_load", "mean_gpu_load",
                "lower_bound", "gap", "imbalance", "dups");
    for (std::size_t l = 0; l < m.balancedness.size(); ++l)
        std::printf("%6lld %12.6f %14.1f %14.1f %14.1f %8.5f %10.5f %5lld\n",
                    static_cast<long long>(r.snapshot.layer_ids[l]), m.balancedness[l], m.max_gpu_load[l],
                    m.mean_gpu_load[l], m.lower_bound[l], m.gap[l], m.imbalance_ratio[l],
                    static_cast<long long>(m.duplicates[l]));
    std::printf("\naggregate balancedness   %.6f   (sum of mean GPU loads / sum of max GPU loads)\n",
                m.aggregate_balancedness);
    std::printf("mean of layers           %.6f\n", m.mean_balancedness);
    std::printf("imbalance ratio          %.6f   ((max - mean) / mean, aggregated)\n", m.aggregate_imbalance_ratio);
    std::printf("node balancedness        %.6f\n", m.aggregate_node_balancedness);
    std::printf("bound ratio (%s) %.6f   (best reachable by any such plan)\n", bound_name(m.bound_kind), m.bound_ratio);
    std::printf("gap                      %.6f   (1 = provably optimal)\n", m.aggregate_gap);
    std::printf("duplicates               %lld\n", static_cast<long long>(m.total_duplicates));
    std::printf("node locality            %.6f   (share of tokens served on their group's home node)\n",
                m.aggregate_node_locality);
    if (r.options.policy == Policy::balanced) {
        std::printf("layers above deepseek    %s\n", layer_list(r.report.above_reference, r.snapshot).c_str());
        if (r.report.forced_duplicates)
            std::printf("forced duplicates        %lld   (the topology leaves no other choice)\n",
                        static_cast<long long>(r.report.forced_duplicates));
    }
    if (r.moved) {
        std::printf("moved replicas           %lld   (slots whose expert changes)\n",
                    static_cast<long long>(r.moved->total_moved_slots()));
        std::printf("GPU transfers            %lld\n", static_cast<long long>(r.moved->total_gpu_transfers()));
        std::printf("node transfers           %lld\n", static_cast<long long>(r.moved->total_node_transfers()));
        std::printf("previous plan repaired   %zu of %lld layers\n", r.report.kept_previous.size(),
                    static_cast<long long>(r.snapshot.num_layers()));
    }
    std::printf("planning time            %.3f ms\n", r.seconds * 1e3);
}

void print_json(const PlanRun& r) {
    const PlanMetrics& m = r.metrics;
    nlohmann::json layers = nlohmann::json::array();
    for (std::size_t l = 0; l < m.balancedness.size(); ++l)
        layers.push_back({{"layer", r.snapshot.layer_ids[l]},
                          {"balancedness", m.balancedness[l]},
                          {"max_gpu_load", m.max_gpu_load[l]},
                          {"mean_gpu_load", m.mean_gpu_load[l]},
                          {"node_balancedness", m.node_balancedness[l]},
                          {"lower_bound", m.lower_bound[l]},
                          {"gap", m.gap[l]},
                          {"imbalance_ratio", m.imbalance_ratio[l]},
                          {"duplicates", m.duplicates[l]},
                          {"node_locality", m.node_locality[l]}});
    nlohmann::json above = nlohmann::json::array(), repaired = nlohmann::json::array();
    for (const std::int64_t row : r.report.above_reference) above.push_back(r.snapshot.layer_ids[row]);
    for (const std::int64_t row : r.report.kept_previous) repaired.push_back(r.snapshot.layer_ids[row]);
    nlohmann::json out = {
        {"input", r.snapshot.source},
        {"format", r.snapshot.format},
        {"topology", r.topology.to_string()},
        {"hierarchical", r.topology.is_hierarchical()},
        {"policy", to_string(r.options.policy)},
        {"mode", to_string(r.options.mode)},
        {"windows", r.windows},
        {"num_layers", r.snapshot.num_layers()},
        {"num_experts", r.snapshot.num_experts()},
        {"aggregate", {{"balancedness", m.aggregate_balancedness},
                       {"mean_balancedness", m.mean_balancedness},
                       {"imbalance_ratio", m.aggregate_imbalance_ratio},
                       {"node_balancedness", m.aggregate_node_balancedness},
                       {"bound_kind", bound_name(m.bound_kind)},
                       {"bound_ratio", m.bound_ratio},
                       {"gap", m.aggregate_gap},
                       {"duplicates", m.total_duplicates},
                       {"node_locality", m.aggregate_node_locality}}},
        {"layers_above_deepseek", above},
        {"forced_duplicates", r.report.forced_duplicates},
        {"planning_seconds", r.seconds},
        {"layers", layers},
    };
    if (r.moved)
        out["migration"] = {{"moved_replicas", r.moved->total_moved_slots()},
                            {"gpu_transfers", r.moved->total_gpu_transfers()},
                            {"node_transfers", r.moved->total_node_transfers()},
                            {"layers_repaired_from_previous", repaired}};
    std::cout << out.dump(2) << "\n";
}

}  // namespace

int run_plan(const std::vector<std::string>& args) {
    PlanArgs a;
    const po::options_description options = plan_options(a);
    po::variables_map vm;
    po::store(po::command_line_parser(args).options(options).run(), vm);
    if (vm.count("help")) {
        std::cout << options;
        return kSuccess;
    }
    po::notify(vm);
    const PlanRun run = plan_snapshot(a);
    if (a.json)
        print_json(run);
    else
        print_table(run);
    return kSuccess;
}

}  // namespace eplb::cli
