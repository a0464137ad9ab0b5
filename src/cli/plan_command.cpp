// eplb plan: plan one snapshot and print its metrics.
#include "cli/commands.hpp"

#include <eplb/errors.hpp>
#include <eplb/metrics.hpp>
#include <eplb/rebalance.hpp>
#include <eplb/snapshot.hpp>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
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
    std::string device;
    std::string engine;
    bool json = false;
};

po::options_description plan_options(PlanArgs& a) {
    po::options_description d("eplb plan --input FILE --topology R/groups/N/G [options]");
    d.add_options()
        ("help,h", "show this help")
        ("input,i", po::value(&a.input)->required(), "load snapshot: JSON with logical_count [layers][experts]")
        ("topology,t", po::value(&a.topology)->required(), "R/groups/N/G, e.g. 288/8/4/32")
        ("policy,p", po::value(&a.policy)->default_value("deepseek"), "deepseek | seed")
        ("device,d", po::value(&a.device)->default_value("auto"),
         "auto | cpu | cuda | cuda:k; auto plans on CUDA when a GPU is visible and the snapshot is large enough")
        ("engine", po::value(&a.engine)->default_value("auto"),
         "auto | native | batched: native CPU loops or batched tensor operations (identical plans); "
         "auto: native on the CPU, batched on CUDA")
        ("json", po::bool_switch(&a.json), "print machine-readable JSON instead of a table");
    return d;
}

struct PlanRun {
    Snapshot snapshot;
    Topology topology;
    Policy policy;
    Execution execution;
    PlanMetrics metrics;
    double seconds = 0.0;
};

RebalanceOptions execution_options(const PlanArgs& a) {
    RebalanceOptions options{DeviceSpec::parse(a.device), std::nullopt};
    if (a.engine != "auto") options.engine = parse_engine(a.engine);
    return options;
}

PlanRun plan_snapshot(const PlanArgs& a) {
    const RebalanceOptions options = execution_options(a);  // usage errors before reading the input
    PlanRun run{read_json_snapshot(a.input), Topology::parse(a.topology), parse_policy(a.policy), {}, {}, 0.0};
    const at::Tensor loads = run.snapshot.steps.sum(0);
    run.topology.validate(loads.size(1));
    run.execution = choose_execution(options, loads.size(0));
    const auto start = std::chrono::steady_clock::now();
    const Plan plan = rebalance(loads, run.topology, run.policy, run.execution);
    run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    run.metrics = evaluate(plan, loads, run.topology, reference_bound_kind(run.topology));
    return run;
}

const char* bound_name(BoundKind k) { return k == BoundKind::hierarchical ? "hierarchical" : "global"; }

void print_table(const PlanRun& r) {
    const PlanMetrics& m = r.metrics;
    std::printf("eplb plan: %s\n", r.snapshot.source.c_str());
    std::printf("  %lld MoE layers of %lld experts (%lld layers recorded), topology %s (%s), policy %s\n",
                static_cast<long long>(r.snapshot.num_layers()), static_cast<long long>(r.snapshot.num_experts()),
                static_cast<long long>(r.snapshot.model_layers), r.topology.to_string().c_str(),
                r.topology.is_hierarchical() ? "hierarchical" : "global fallback", to_string(r.policy).c_str());
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
    std::printf("planning time            %.3f ms (%s)\n", r.seconds * 1e3, r.execution.to_string().c_str());
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
                          {"duplicates", m.duplicates[l]}});
    const nlohmann::json out = {
        {"input", r.snapshot.source},
        {"format", r.snapshot.format},
        {"topology", r.topology.to_string()},
        {"hierarchical", r.topology.is_hierarchical()},
        {"policy", to_string(r.policy)},
        {"num_layers", r.snapshot.num_layers()},
        {"num_experts", r.snapshot.num_experts()},
        {"aggregate", {{"balancedness", m.aggregate_balancedness},
                       {"mean_balancedness", m.mean_balancedness},
                       {"imbalance_ratio", m.aggregate_imbalance_ratio},
                       {"node_balancedness", m.aggregate_node_balancedness},
                       {"bound_kind", bound_name(m.bound_kind)},
                       {"bound_ratio", m.bound_ratio},
                       {"gap", m.aggregate_gap},
                       {"duplicates", m.total_duplicates}}},
        {"planning_seconds", r.seconds},
        {"engine", to_string(r.execution.engine)},
        {"device", r.execution.device.str()},
        {"layers", layers},
    };
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
