// Plans the windows of a snapshot and scores them: the records the archive stores.
#include "io/sha256.hpp"

#include <eplb/archive.hpp>
#include <eplb/errors.hpp>

#include <ATen/ops/stack.h>
#include <ATen/ops/tensor.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <tuple>

namespace eplb {
namespace {

PlanRecord record_for(const Snapshot& snapshot, const ReadOptions& options, const PlanRequest& request,
                      const Window& window, std::int64_t num_windows) {
    PlanRecord r;
    const PlanIdentity identity = plan_identity(snapshot, options, request, window.index);
    r.id = identity.id();
    r.key = identity.key();
    r.source = PlanSource{snapshot.source, snapshot.sha256,       snapshot.format, snapshot.model,
                          snapshot.checkpoint, snapshot.model_layers, options.to_string(), num_windows};
    r.window = window;
    r.topology = request.topology;
    r.policy = to_string(request.policy);
    r.policy_options = request.policy_options;
    r.layer_ids = snapshot.layer_ids;
    r.eplb_version = EPLB_VERSION;
    return r;
}

// The deployed plan's rows for the snapshot's MoE layers [first, first + count).
Plan deployed_rows(const DeployedPlan& deployed, const Snapshot& snapshot, std::int64_t first, std::int64_t count) {
    const std::int64_t rows = deployed.phy2log.size(0), L = snapshot.num_layers();
    at::Tensor moe;
    if (rows == L) {
        moe = deployed.phy2log;
    } else if (rows == snapshot.model_layers && rows > L) {
        const at::Tensor ids = at::tensor(snapshot.layer_ids, at::TensorOptions().dtype(at::kLong));
        moe = deployed.phy2log.index_select(0, ids);
    } else {
        throw PlanError("previous plan (" + deployed.identity + ") has " + std::to_string(rows) + " layers; " +
                        snapshot.source + " has " + std::to_string(L) + " MoE layers of " +
                        std::to_string(snapshot.model_layers) + " model layers");
    }
    return plan_from_phy2log(moe.narrow(0, first, count), snapshot.num_experts());
}

}  // namespace

std::string RunInfo::utc_now() {
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return text;
}

std::string to_string(BoundKind kind) { return kind == BoundKind::hierarchical ? "hierarchical" : "global"; }

BoundKind parse_bound_kind(const std::string& text) {
    if (text == "hierarchical") return BoundKind::hierarchical;
    if (text == "global") return BoundKind::global;
    throw FormatError("bound kind '" + text + "' is not 'hierarchical' or 'global'");
}

Aggregates Aggregates::of(const PlanMetrics& m) {
    return Aggregates{m.aggregate_balancedness, m.mean_balancedness, m.aggregate_imbalance_ratio,
                      m.aggregate_node_balancedness, m.bound_ratio, m.aggregate_gap, m.total_duplicates,
                      m.aggregate_node_locality};
}

MigrationTotals MigrationTotals::of(const Migration& m) {
    return MigrationTotals{m.total_moved_slots(), m.total_gpu_transfers(), m.total_node_transfers()};
}

std::string PlanIdentity::key() const {
    return "input=sha256:" + input_sha256 + ";read=" + read_options + ";window=" + std::to_string(window) +
           ";topology=" + topology.to_string() + ";policy=" + policy + ";policy_options=" + policy_options;
}

std::string PlanIdentity::id() const { return io::sha256_hex(key()).substr(0, 16); }

PlanIdentity PlanRecord::identity() const {
    return PlanIdentity{source.sha256, source.read_options, window.index, topology, policy, policy_options};
}

bool operator<(const FailureRecord& a, const FailureRecord& b) {
    return std::tie(a.input, a.topology, a.policy, a.message) < std::tie(b.input, b.topology, b.policy, b.message);
}

PlanSummary PlanSummary::of(const PlanRecord& r) {
    PlanSummary s;
    s.id = r.id;
    s.source = r.source.path;
    s.window = r.window.index;
    s.first_step = r.window.first_step;
    s.last_step = r.window.last_step;
    s.num_windows = r.source.num_windows;
    s.topology = r.topology.to_string();
    s.policy = r.policy;
    s.policy_options = r.policy_options;
    s.num_layers = r.plan.num_layers();
    s.num_experts = r.plan.num_experts();
    s.bound_kind = to_string(r.metrics.bound_kind);
    s.in_sample = Aggregates::of(r.metrics);
    if (r.next_metrics) s.next = Aggregates::of(*r.next_metrics);
    if (r.migration) s.migration = MigrationTotals::of(*r.migration);
    return s;
}

PlanIdentity plan_identity(const Snapshot& snapshot, const ReadOptions& options, const PlanRequest& request,
                           std::int64_t window) {
    return PlanIdentity{snapshot.sha256,        options.to_string(), window, request.topology,
                        to_string(request.policy), request.policy_options};
}

PlanRequest plan_request(const Topology& topology, Policy policy, const RebalanceOptions& execution,
                         const PolicySettings& settings) {
    const std::vector<std::string> problems = settings.problems({policy});
    if (!problems.empty()) throw UsageError(problems.front());
    PlanRequest r;
    r.topology = topology;
    r.policy = policy;
    r.policy_options = settings.to_json(policy);
    r.execution = execution;
    r.options.policy = policy;
    r.options.mode = parse_placement_mode(settings.mode);
    if (policy == Policy::balanced) {
        r.options.aggregation = parse_history_aggregation(settings.aggregation);
        r.options.ema_decay = settings.ema_decay;
        r.options.allow_duplicates = settings.allow_duplicates;
        r.options.max_balance_loss = settings.max_balance_loss;
        r.options.persistence = settings.persistence;
        r.deployed = settings.deployed;
    }
    r.history = settings.history;
    // Hierarchical plans keep every group on one node when the topology allows it; global and
    // relaxed plans are compared with W / G.
    r.bound_kind = r.options.mode == PlacementMode::hierarchical ? reference_bound_kind(topology) : BoundKind::global;
    return r;
}

bool PlanRequest::plans_windows_alone() const {
    return policy != Policy::balanced && history == 1 && options.mode == PlacementMode::hierarchical;
}

Plan plan_window(const Snapshot& snapshot, const std::vector<Window>& windows, std::int64_t index,
                 const PlanRequest& request, const Execution& execution, std::int64_t first, std::int64_t count) {
    const at::Tensor& loads = windows[static_cast<std::size_t>(index)].loads;
    if (count < 0) count = loads.size(0) - first;
    if (request.plans_windows_alone())
        return rebalance(loads.narrow(0, first, count), request.topology, request.policy, execution);
    std::vector<at::Tensor> history;
    for (std::int64_t w = std::max<std::int64_t>(index - request.history + 1, 0); w <= index; ++w)
        history.push_back(windows[static_cast<std::size_t>(w)].loads.narrow(0, first, count).to(at::kFloat));
    const at::Tensor stacked = at::stack(history);
    if (request.policy != Policy::balanced && execution.engine != Engine::native) {
        // The references plan the sum of the windows in the mode's topology on any engine.
        const Topology& t = request.topology;
        const Topology planned = request.options.mode == PlacementMode::global ? Topology{t.num_replicas, 1, 1, t.num_gpus} : t;
        return rebalance(stacked.to(at::kDouble).sum(0).to(at::kFloat), planned, request.policy, execution);
    }
    PlanOptions options = request.options;
    options.policy = request.policy;
    Plan previous;
    if (request.deployed) {
        previous = deployed_rows(*request.deployed, snapshot, first, count);
        options.previous = &previous;
    }
    return rebalance(stacked, request.topology, options);
}

PlanRecord make_plan_record(const Snapshot& snapshot, const ReadOptions& options, const PlanRequest& request,
                            const std::vector<Window>& windows, std::int64_t index, Plan plan, const Plan* previous,
                            RunInfo run) {
    const auto n = static_cast<std::int64_t>(windows.size());
    if (index < 0 || index >= n) throw UsageError("window " + std::to_string(index) + " of " + std::to_string(n) + " windows");
    if (index > 0 && !previous)
        throw UsageError("the record of window " + std::to_string(index) + " needs the plan of window " +
                         std::to_string(index - 1));
    PlanRecord r = record_for(snapshot, options, request, windows[index], n);
    r.plan = std::move(plan);
    r.run = std::move(run);
    r.metrics = evaluate(r.plan, r.window.loads, request.topology, request.bound_kind);
    if (index + 1 < n) {
        r.next_window = windows[index + 1];
        r.next_metrics = evaluate(r.plan, r.next_window->loads, request.topology, request.bound_kind);
    }
    if (request.deployed) {
        const Plan deployed = deployed_rows(*request.deployed, snapshot, 0, snapshot.num_layers());
        r.previous_plan = request.deployed->identity;
        r.deployed_phy2log = deployed.phy2log;
        r.migration = migration(deployed, r.plan, request.topology);
    } else if (index > 0) {
        r.previous_plan = plan_identity(snapshot, options, request, index - 1).id();
        r.migration = migration(*previous, r.plan, request.topology);
    }
    return r;
}

std::vector<PlanRecord> plan_windows(const Snapshot& snapshot, const ReadOptions& options, const PlanRequest& request,
                                     const std::string& command_line) {
    request.topology.validate(snapshot.num_experts());
    const std::vector<Window> windows = make_windows(snapshot, options.windowing);
    std::vector<PlanRecord> records;
    for (std::size_t i = 0; i < windows.size(); ++i) {
        const Execution execution = choose_execution(request.execution, windows[i].loads.size(0), request.policy);
        const auto start = std::chrono::steady_clock::now();
        Plan plan = plan_window(snapshot, windows, static_cast<std::int64_t>(i), request, execution);
        const RunInfo run{command_line, RunInfo::utc_now(),
                          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                          execution.to_string()};
        records.push_back(make_plan_record(snapshot, options, request, windows, static_cast<std::int64_t>(i),
                                           std::move(plan), i > 0 ? &records.back().plan : nullptr, run));
    }
    return records;
}

}  // namespace eplb
