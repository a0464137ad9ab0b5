#include "io/archive_format.hpp"
#include "io/metric_fields.hpp"

#include <ATen/ops/tensor.h>

#include <algorithm>
#include <limits>

namespace eplb::io {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr std::int64_t kNone = -1;

// One column of a table: `field` of every row.
template <typename Row, typename T>
std::vector<T> column(const std::vector<Row>& rows, T Row::*field) {
    std::vector<T> out;
    out.reserve(rows.size());
    for (const Row& row : rows) out.push_back(row.*field);
    return out;
}

// ---- aggregates: the same seven fields in-sample ("") and next-window ("next_") -------------

void write_aggregates(const H5::Group& g, const std::string& prefix, const std::optional<Aggregates>& a,
                      const std::string& path) {
    for (const auto& f : kAggregateDoubles) write_attribute(g, prefix + f.name, a ? (*a).*f.field : kNaN, path);
    write_attribute(g, prefix + kDuplicates, a ? a->duplicates : kNone, path);
}

Aggregates read_aggregates(const H5::Group& g, const std::string& prefix, const std::string& path) {
    Aggregates a;
    for (const auto& f : kAggregateDoubles) a.*f.field = read_double_attribute(g, prefix + f.name, path);
    a.duplicates = read_int_attribute(g, prefix + kDuplicates, path);
    return a;
}

void add_aggregate_columns(Table& t, const std::string& prefix, const std::vector<std::optional<Aggregates>>& rows) {
    for (const auto& f : kAggregateDoubles) {
        std::vector<double> v;
        for (const auto& a : rows) v.push_back(a ? (*a).*f.field : kNaN);
        t.add(prefix + f.name, std::move(v));
    }
    std::vector<std::int64_t> dups;
    for (const auto& a : rows) dups.push_back(a ? a->duplicates : kNone);
    t.add(prefix + kDuplicates, std::move(dups));
}

Aggregates aggregates_at(const Table& t, const std::string& prefix, std::size_t r) {
    Aggregates a;
    for (const auto& f : kAggregateDoubles) a.*f.field = t.doubles(prefix + f.name)[r];
    a.duplicates = t.ints(prefix + kDuplicates)[r];
    return a;
}

// ---- per-layer metrics table -------------------------------------------------------------------

void add_layer_metric_columns(Table& t, const std::string& prefix, const PlanMetrics* m, std::size_t layers) {
    for (const auto& f : kLayerDoubles) t.add(prefix + f.name, m ? (*m).*f.field : std::vector<double>(layers, kNaN));
    t.add(prefix + kDuplicates, m ? m->duplicates : std::vector<std::int64_t>(layers, kNone));
}

PlanMetrics layer_metrics_from(const Table& t, const std::string& prefix, const Aggregates& a, BoundKind kind) {
    PlanMetrics m;
    for (const auto& f : kLayerDoubles) m.*f.field = t.doubles(prefix + f.name);
    m.duplicates = t.ints(prefix + kDuplicates);
    m.aggregate_balancedness = a.balancedness;
    m.mean_balancedness = a.mean_balancedness;
    m.aggregate_imbalance_ratio = a.imbalance_ratio;
    m.aggregate_node_balancedness = a.node_balancedness;
    m.bound_ratio = a.bound_ratio;
    m.aggregate_gap = a.gap;
    m.total_duplicates = a.duplicates;
    m.aggregate_node_locality = a.node_locality;
    m.bound_kind = kind;
    return m;
}

Table layer_table(const PlanRecord& r) {
    const std::size_t L = r.layer_ids.size();
    Table t;
    t.add("layer", r.layer_ids);
    add_layer_metric_columns(t, "", &r.metrics, L);
    add_layer_metric_columns(t, "next_", r.next_metrics ? &*r.next_metrics : nullptr, L);
    const std::vector<std::int64_t> none(L, kNone);
    t.add("moved_slots", r.migration ? r.migration->moved_slots : none);
    t.add("gpu_transfers", r.migration ? r.migration->gpu_transfers : none);
    t.add("node_transfers", r.migration ? r.migration->node_transfers : none);
    return t;
}

// ---- window attributes ---------------------------------------------------------------------------

void write_window(const H5::Group& g, const std::string& prefix, const Window* w, const std::string& path) {
    write_attribute(g, prefix + "window", w ? w->index : kNone, path);
    write_attribute(g, prefix + "first_step", w ? w->first_step : kNone, path);
    write_attribute(g, prefix + "last_step", w ? w->last_step : kNone, path);
}

Window read_window(const H5::Group& g, const std::string& prefix, const std::string& path) {
    Window w;
    w.index = read_int_attribute(g, prefix + "window", path);
    w.first_step = read_int_attribute(g, prefix + "first_step", path);
    w.last_step = read_int_attribute(g, prefix + "last_step", path);
    return w;
}

std::vector<std::int64_t> int_vector(const at::Tensor& t) {
    const at::Tensor c = t.to(at::kLong).contiguous();
    return std::vector<std::int64_t>(c.data_ptr<std::int64_t>(), c.data_ptr<std::int64_t>() + c.numel());
}

std::string where(const std::string& path, const std::string& id) { return path + ": plan " + id; }

H5::Group open_plan(const H5::Group& plans, const std::string& id, const std::string& path) {
    if (!has_child(plans, id)) throw FormatError(path + ": no plan '" + id + "' under /plans");
    return hdf5_call(path, "opening plan " + id, [&] { return plans.openGroup(id); });
}

}  // namespace

H5::Group start_archive(const H5::H5File& file, const std::string& path) {
    write_attribute(file, "format", kArchiveFormat, path);
    write_attribute(file, "format_version", kArchiveFormatVersion, path);
    write_attribute(file, "eplb_version", EPLB_VERSION, path);
    return create_group(file, "plans", path);
}

void require_archive(const H5::H5File& file, const std::string& path) {
    if (!has_attribute(file, "format") || read_string_attribute(file, "format", path) != kArchiveFormat)
        throw FormatError(path + ": not an eplb plan archive (the root attribute 'format' is not '" +
                          std::string(kArchiveFormat) + "')");
    const std::int64_t version = read_int_attribute(file, "format_version", path);
    if (version != kArchiveFormatVersion) {
        const std::string writer =
            has_attribute(file, "eplb_version") ? read_string_attribute(file, "eplb_version", path) : "unknown";
        throw FormatError(path + ": archive format_version " + std::to_string(version) + " (written by eplb " + writer +
                          "); this eplb reads format_version " + std::to_string(kArchiveFormatVersion) +
                          (version < kArchiveFormatVersion
                               ? ", which added node locality and deployed plans: plan the inputs again with this eplb"
                               : ": use an eplb at least as new as the one that wrote it"));
    }
    for (const char* name : {"plans", "index", "failures"})
        if (!has_child(file, name)) throw FormatError(path + ": no '/" + std::string(name) + "' in the archive");
}

void write_plan_group(const H5::Group& plans, const PlanRecord& r, const std::string& path) {
    const H5::Group g = create_group(plans, r.id, path);
    // Identity and provenance.
    write_attribute(g, "id", r.id, path);
    write_attribute(g, "key", r.key, path);
    write_attribute(g, "source", r.source.path, path);
    write_attribute(g, "source_sha256", r.source.sha256, path);
    write_attribute(g, "source_format", r.source.format, path);
    write_attribute(g, "model", r.source.model, path);
    write_attribute(g, "checkpoint", r.source.checkpoint, path);
    write_attribute(g, "num_model_layers", r.source.model_layers, path);
    write_attribute(g, "read_options", r.source.read_options, path);
    write_attribute(g, "num_windows", r.source.num_windows, path);
    write_window(g, "", &r.window, path);
    write_window(g, "next_", r.next_window ? &*r.next_window : nullptr, path);
    write_attribute(g, "topology", r.topology.to_string(), path);
    write_attribute(g, "num_replicas", r.topology.num_replicas, path);
    write_attribute(g, "num_groups", r.topology.num_groups, path);
    write_attribute(g, "num_nodes", r.topology.num_nodes, path);
    write_attribute(g, "num_gpus", r.topology.num_gpus, path);
    write_attribute(g, "policy", r.policy, path);
    write_attribute(g, "policy_options", r.policy_options, path);
    write_attribute(g, "num_layers", r.plan.num_layers(), path);
    write_attribute(g, "num_experts", r.plan.num_experts(), path);
    write_attribute(g, "bound_kind", to_string(r.metrics.bound_kind), path);
    write_attribute(g, "previous_plan", r.previous_plan, path);
    write_attribute(g, "eplb_version", r.eplb_version, path);
    // Aggregates.
    write_aggregates(g, "", Aggregates::of(r.metrics), path);
    write_aggregates(g, "next_", r.next_metrics ? std::optional(Aggregates::of(*r.next_metrics)) : std::nullopt, path);
    const MigrationTotals moves = r.migration ? MigrationTotals::of(*r.migration) : MigrationTotals{kNone, kNone, kNone};
    write_attribute(g, "moved_slots", moves.moved_slots, path);
    write_attribute(g, "gpu_transfers", moves.gpu_transfers, path);
    write_attribute(g, "node_transfers", moves.node_transfers, path);
    // The maps, the loads they were planned and scored on, and the per-layer metrics.
    write_tensor(g, "phy2log", r.plan.phy2log, path);
    write_tensor(g, "log2phy", r.plan.log2phy, path);
    write_tensor(g, "logcnt", r.plan.logcnt, path);
    if (r.deployed_phy2log.defined()) write_tensor(g, "deployed_phy2log", r.deployed_phy2log, path);
    write_tensor(g, "layer_ids", at::tensor(r.layer_ids, at::TensorOptions().dtype(at::kLong)), path);
    write_tensor(g, "loads", r.window.loads, path);
    if (r.next_window) write_tensor(g, "next_loads", r.next_window->loads, path);
    layer_table(r).write(g, "metrics", path);
    // Run-specific facts, apart from the plan.
    const H5::Group run = create_group(g, "run", path);
    write_attribute(run, "command_line", r.run.command_line, path);
    write_attribute(run, "created", r.run.created, path);
    write_attribute(run, "planning_seconds", r.run.planning_seconds, path);
    write_attribute(run, "execution", r.run.execution, path);
    write_attribute(run, "planning_seconds_per_layer",
                    r.run.planning_seconds / static_cast<double>(std::max<std::int64_t>(1, r.plan.num_layers())), path);
}

PlanSummary read_plan_summary(const H5::Group& plans, const std::string& id, const std::string& path) {
    const H5::Group g = open_plan(plans, id, path);
    const std::string file = where(path, id);
    PlanSummary s;
    s.id = read_string_attribute(g, "id", file);
    s.source = read_string_attribute(g, "source", file);
    const Window w = read_window(g, "", file);
    s.window = w.index;
    s.first_step = w.first_step;
    s.last_step = w.last_step;
    s.num_windows = read_int_attribute(g, "num_windows", file);
    s.topology = read_string_attribute(g, "topology", file);
    s.policy = read_string_attribute(g, "policy", file);
    s.policy_options = read_string_attribute(g, "policy_options", file);
    s.num_layers = read_int_attribute(g, "num_layers", file);
    s.num_experts = read_int_attribute(g, "num_experts", file);
    s.bound_kind = read_string_attribute(g, "bound_kind", file);
    s.in_sample = read_aggregates(g, "", file);
    if (read_int_attribute(g, "next_window", file) >= 0) s.next = read_aggregates(g, "next_", file);
    const std::int64_t moved = read_int_attribute(g, "moved_slots", file);
    if (moved >= 0)
        s.migration = MigrationTotals{moved, read_int_attribute(g, "gpu_transfers", file),
                                      read_int_attribute(g, "node_transfers", file)};
    return s;
}

std::string read_plan_source(const H5::Group& plans, const std::string& id, const std::string& path) {
    return read_string_attribute(open_plan(plans, id, path), "source", where(path, id));
}

PlanRecord read_plan_group(const H5::Group& plans, const std::string& id, const std::string& path) {
    const PlanSummary s = read_plan_summary(plans, id, path);
    const H5::Group g = open_plan(plans, id, path);
    const std::string file = where(path, id);
    PlanRecord r;
    r.id = s.id;
    r.key = read_string_attribute(g, "key", file);
    r.source = PlanSource{s.source,
                          read_string_attribute(g, "source_sha256", file),
                          read_string_attribute(g, "source_format", file),
                          read_string_attribute(g, "model", file),
                          read_string_attribute(g, "checkpoint", file),
                          read_int_attribute(g, "num_model_layers", file),
                          read_string_attribute(g, "read_options", file),
                          s.num_windows};
    r.window = read_window(g, "", file);
    r.window.loads = read_tensor(g, "loads", file);
    if (s.next) {
        r.next_window = read_window(g, "next_", file);
        r.next_window->loads = read_tensor(g, "next_loads", file);
    }
    r.topology = Topology{read_int_attribute(g, "num_replicas", file), read_int_attribute(g, "num_groups", file),
                          read_int_attribute(g, "num_nodes", file), read_int_attribute(g, "num_gpus", file)};
    r.policy = s.policy;
    r.policy_options = s.policy_options;
    r.layer_ids = int_vector(read_tensor(g, "layer_ids", file));
    r.plan = Plan{read_tensor(g, "phy2log", file), read_tensor(g, "log2phy", file), read_tensor(g, "logcnt", file)};
    const BoundKind kind = parse_bound_kind(s.bound_kind);
    const Table layers = Table::read(g, "metrics", file);
    if (layers.rows() != r.layer_ids.size())
        throw FormatError(file + ": metrics has " + std::to_string(layers.rows()) + " rows; expected one per layer (" +
                          std::to_string(r.layer_ids.size()) + ")");
    r.metrics = layer_metrics_from(layers, "", s.in_sample, kind);
    if (s.next) r.next_metrics = layer_metrics_from(layers, "next_", *s.next, kind);
    r.previous_plan = read_string_attribute(g, "previous_plan", file);
    if (has_child(g, "deployed_phy2log")) r.deployed_phy2log = read_tensor(g, "deployed_phy2log", file);
    if (s.migration)
        r.migration = Migration{layers.ints("moved_slots"), layers.ints("gpu_transfers"), layers.ints("node_transfers")};
    r.eplb_version = read_string_attribute(g, "eplb_version", file);
    if (has_child(g, "run")) {
        const H5::Group run = g.openGroup("run");
        r.run = RunInfo{read_string_attribute(run, "command_line", file), read_string_attribute(run, "created", file),
                        read_double_attribute(run, "planning_seconds", file),
                        has_attribute(run, "execution") ? read_string_attribute(run, "execution", file) : ""};
    }
    return r;
}

void write_index(const H5::Group& root, const std::vector<PlanSummary>& plans, const std::string& path) {
    Table t;
    for (const SummaryField& f : kSummaryFields) {
        if (f.text)
            t.add(f.name, column(plans, f.text));
        else
            t.add(f.name, column(plans, f.number));
    }
    const std::vector<Aggregates> in_sample = column(plans, &PlanSummary::in_sample);
    add_aggregate_columns(t, "", std::vector<std::optional<Aggregates>>(in_sample.begin(), in_sample.end()));
    add_aggregate_columns(t, "next_", column(plans, &PlanSummary::next));
    const std::vector<std::optional<MigrationTotals>> migration = column(plans, &PlanSummary::migration);
    for (const auto& [name, field] : {std::pair{"moved_slots", &MigrationTotals::moved_slots},
                                      std::pair{"gpu_transfers", &MigrationTotals::gpu_transfers},
                                      std::pair{"node_transfers", &MigrationTotals::node_transfers}}) {
        std::vector<std::int64_t> v;
        for (const auto& m : migration) v.push_back(m ? (*m).*field : kNone);
        t.add(name, std::move(v));
    }
    t.write(root, "index", path);
}

std::vector<PlanSummary> read_index(const H5::Group& root, const std::string& path) {
    const Table t = Table::read(root, "index", path);
    std::vector<PlanSummary> out;
    for (std::size_t r = 0; r < t.rows(); ++r) {
        PlanSummary s;
        for (const SummaryField& f : kSummaryFields) {
            if (f.text)
                s.*f.text = t.strings(f.name)[r];
            else
                s.*f.number = t.ints(f.name)[r];
        }
        s.in_sample = aggregates_at(t, "", r);
        if (t.ints("next_duplicates")[r] >= 0) s.next = aggregates_at(t, "next_", r);
        if (t.ints("moved_slots")[r] >= 0)
            s.migration = MigrationTotals{t.ints("moved_slots")[r], t.ints("gpu_transfers")[r], t.ints("node_transfers")[r]};
        out.push_back(std::move(s));
    }
    return out;
}

void write_failures(const H5::Group& root, const std::vector<FailureRecord>& failures, const std::string& path) {
    Table t;
    t.add("input", column(failures, &FailureRecord::input));
    t.add("topology", column(failures, &FailureRecord::topology));
    t.add("policy", column(failures, &FailureRecord::policy));
    t.add("message", column(failures, &FailureRecord::message));
    t.write(root, "failures", path);
}

std::vector<FailureRecord> read_failures(const H5::Group& root, const std::string& path) {
    const Table t = Table::read(root, "failures", path);
    std::vector<FailureRecord> out;
    for (std::size_t r = 0; r < t.rows(); ++r)
        out.push_back(FailureRecord{t.strings("input")[r], t.strings("topology")[r], t.strings("policy")[r],
                                    t.strings("message")[r]});
    return out;
}

}  // namespace eplb::io
