#include "cli/report.hpp"

#include <algorithm>
#include <filesystem>
#include <tuple>
#include <string>

namespace eplb::cli {
namespace {

using nlohmann::json;

std::string window_text(const Window& w) {
    return w.first_step == w.last_step ? "step " + std::to_string(w.first_step)
                                       : "steps " + std::to_string(w.first_step) + "-" + std::to_string(w.last_step);
}

void print_aggregates(std::FILE* out, const PlanMetrics& m, const char* title) {
    const std::string bound = "bound ratio (" + to_string(m.bound_kind) + ")";
    std::fprintf(out, "%s\n", title);
    std::fprintf(out, "  %-26s %.6f   (sum of mean GPU loads / sum of max GPU loads)\n", "aggregate balancedness",
                 m.aggregate_balancedness);
    std::fprintf(out, "  %-26s %.6f\n", "mean of layers", m.mean_balancedness);
    std::fprintf(out, "  %-26s %.6f   ((max - mean) / mean, aggregated)\n", "imbalance ratio", m.aggregate_imbalance_ratio);
    std::fprintf(out, "  %-26s %.6f\n", "node balancedness", m.aggregate_node_balancedness);
    std::fprintf(out, "  %-26s %.6f   (best reachable by any such plan)\n", bound.c_str(), m.bound_ratio);
    std::fprintf(out, "  %-26s %.6f   (1 = provably optimal)\n", "gap", m.aggregate_gap);
    std::fprintf(out, "  %-26s %lld\n", "duplicates", static_cast<long long>(m.total_duplicates));
    std::fprintf(out, "  %-26s %.6f   (share of tokens served on their group's home node)\n", "node locality",
                 m.aggregate_node_locality);
}

void print_layers(std::FILE* out, const PlanRecord& r) {
    const PlanMetrics& m = r.metrics;
    const bool next = r.next_metrics.has_value();
    std::fprintf(out, "\n%6s %12s %14s %14s %14s %8s %10s %5s", "layer", "balancedness", "max_gpu_load", "mean_gpu_load",
                 "lower_bound", "gap", "imbalance", "dups");
    std::fprintf(out, " %8s", "locality");
    if (next) std::fprintf(out, " %12s", "next_bal");
    if (r.migration) std::fprintf(out, " %6s", "moved");
    std::fprintf(out, "\n");
    for (std::size_t l = 0; l < m.balancedness.size(); ++l) {
        std::fprintf(out, "%6lld %12.6f %14.1f %14.1f %14.1f %8.5f %10.5f %5lld",
                     static_cast<long long>(r.layer_ids[l]), m.balancedness[l], m.max_gpu_load[l], m.mean_gpu_load[l],
                     m.lower_bound[l], m.gap[l], m.imbalance_ratio[l], static_cast<long long>(m.duplicates[l]));
        std::fprintf(out, " %8.5f", m.node_locality[l]);
        if (next) std::fprintf(out, " %12.6f", r.next_metrics->balancedness[l]);
        if (r.migration) std::fprintf(out, " %6lld", static_cast<long long>(r.migration->moved_slots[l]));
        std::fprintf(out, "\n");
    }
}

json aggregates_json(const PlanMetrics& m) {
    return {{"balancedness", m.aggregate_balancedness},
            {"mean_balancedness", m.mean_balancedness},
            {"imbalance_ratio", m.aggregate_imbalance_ratio},
            {"node_balancedness", m.aggregate_node_balancedness},
            {"bound_kind", to_string(m.bound_kind)},
            {"bound_ratio", m.bound_ratio},
            {"gap", m.aggregate_gap},
            {"duplicates", m.total_duplicates},
            {"node_locality", m.aggregate_node_locality}};
}

json aggregates_json(const Aggregates& a) {
    return {{"balancedness", a.balancedness},     {"mean_balancedness", a.mean_balancedness},
            {"imbalance_ratio", a.imbalance_ratio}, {"node_balancedness", a.node_balancedness},
            {"bound_ratio", a.bound_ratio},         {"gap", a.gap},
            {"duplicates", a.duplicates},           {"node_locality", a.node_locality}};
}

json migration_json(const MigrationTotals& m) {
    return {{"moved_slots", m.moved_slots}, {"gpu_transfers", m.gpu_transfers}, {"node_transfers", m.node_transfers}};
}

std::string optional_number(const std::optional<Aggregates>& a, double Aggregates::*field) {
    if (!a) return "-";
    char text[32];
    std::snprintf(text, sizeof text, "%.6f", (*a).*field);
    return text;
}

}  // namespace

void print_plan(std::FILE* out, const PlanRecord& r, bool layers) {
    const PlanMetrics& m = r.metrics;
    std::fprintf(out, "eplb plan: %s\n", r.source.path.c_str());
    std::fprintf(out, "  %lld MoE layers of %lld experts (%lld layers in the model), topology %s (%s), policy %s\n",
                 static_cast<long long>(r.plan.num_layers()), static_cast<long long>(r.plan.num_experts()),
                 static_cast<long long>(r.source.model_layers), r.topology.to_string().c_str(),
                 r.topology.is_hierarchical() ? "hierarchical" : "global fallback", r.policy.c_str());
    const std::string next = r.next_window ? ", scored next on " + window_text(*r.next_window) : "";
    std::fprintf(out, "  plan %s: window %lld (%s; %lld window%s)%s\n", r.id.c_str(),
                 static_cast<long long>(r.window.index), window_text(r.window).c_str(),
                 static_cast<long long>(r.source.num_windows), r.source.num_windows == 1 ? "" : "s", next.c_str());
    if (r.policy_options != "{}") std::fprintf(out, "  policy options %s\n", r.policy_options.c_str());
    const json options = json::parse(r.policy_options, nullptr, /*allow_exceptions=*/false);
    if (options.is_object() && options.contains("history")) {  // windows i-k+1 .. i, as far as they go
        const std::int64_t k = options["history"].get<std::int64_t>();
        std::fprintf(out, "  planned from windows %lld-%lld (history %lld)\n",
                     static_cast<long long>(std::max<std::int64_t>(r.window.index - k + 1, 0)),
                     static_cast<long long>(r.window.index), static_cast<long long>(k));
    }
    if (layers) print_layers(out, r);
    std::fprintf(out, "\n");
    print_aggregates(out, m, "in-sample (the window planned)");
    if (r.next_metrics) print_aggregates(out, *r.next_metrics, "next window (what the plan achieves deployed)");
    if (r.migration) {
        const MigrationTotals t = MigrationTotals::of(*r.migration);
        const bool deployed = r.deployed_phy2log.defined();
        std::fprintf(out, "migration from %s (%s)\n", deployed ? "the deployed plan" : "the previous window's plan",
                     r.previous_plan.c_str());
        std::fprintf(out, "  moved slots %lld, GPU transfers %lld, node transfers %lld\n",
                     static_cast<long long>(t.moved_slots), static_cast<long long>(t.gpu_transfers),
                     static_cast<long long>(t.node_transfers));
    }
    std::fprintf(out, "%-28s %.3f ms (%s)\n", "planning time", r.run.planning_seconds * 1e3, r.run.execution.c_str());
}

json plan_json(const PlanRecord& r, bool layers) {
    json out = {
        {"id", r.id},
        {"input", r.source.path},
        {"format", r.source.format},
        {"topology", r.topology.to_string()},
        {"hierarchical", r.topology.is_hierarchical()},
        {"policy", r.policy},
        {"policy_options", json::parse(r.policy_options, nullptr, /*allow_exceptions=*/false)},
        {"window", r.window.index},
        {"first_step", r.window.first_step},
        {"last_step", r.window.last_step},
        {"num_windows", r.source.num_windows},
        {"num_layers", r.plan.num_layers()},
        {"num_experts", r.plan.num_experts()},
        {"aggregate", aggregates_json(r.metrics)},
        {"planning_seconds", r.run.planning_seconds},
        {"execution", r.run.execution},
    };
    if (r.next_metrics) out["next_window"] = aggregates_json(*r.next_metrics);
    if (r.migration) out["migration"] = migration_json(MigrationTotals::of(*r.migration));
    if (!layers) return out;
    const PlanMetrics& m = r.metrics;
    json rows = json::array();
    for (std::size_t l = 0; l < m.balancedness.size(); ++l) {
        json row = {{"layer", r.layer_ids[l]},
                    {"balancedness", m.balancedness[l]},
                    {"max_gpu_load", m.max_gpu_load[l]},
                    {"mean_gpu_load", m.mean_gpu_load[l]},
                    {"node_balancedness", m.node_balancedness[l]},
                    {"lower_bound", m.lower_bound[l]},
                    {"gap", m.gap[l]},
                    {"imbalance_ratio", m.imbalance_ratio[l]},
                    {"duplicates", m.duplicates[l]}};
        if (r.next_metrics) row["next_balancedness"] = r.next_metrics->balancedness[l];
        if (r.migration) row["moved_slots"] = r.migration->moved_slots[l];
        rows.push_back(std::move(row));
    }
    out["layers"] = std::move(rows);
    return out;
}

void print_summaries(std::FILE* out, std::vector<PlanSummary> plans) {
    // Grouped for reading: by input, topology, policy, then window.
    std::stable_sort(plans.begin(), plans.end(), [](const PlanSummary& a, const PlanSummary& b) {
        return std::tie(a.source, a.topology, a.policy, a.window) < std::tie(b.source, b.topology, b.policy, b.window);
    });
    std::fprintf(out, "%-16s  %-32s %7s  %-13s %-9s %6s %12s %12s %11s %8s %5s %6s %8s  %s\n", "id", "source", "window",
                 "topology", "policy", "layers", "balancedness", "next_window", "bound_ratio", "gap", "dups", "moved",
                 "locality", "options");
    for (const PlanSummary& p : plans) {
        const std::string window = std::to_string(p.window) + "/" + std::to_string(p.num_windows);
        std::string source = std::filesystem::path(p.source).filename().string();
        if (source.size() > 32) source = "..." + source.substr(source.size() - 29);
        std::fprintf(out, "%-16s  %-32s %7s  %-13s %-9s %6lld %12.6f %12s %11.6f %8.5f %5lld %6s %8.5f  %s\n", p.id.c_str(),
                     source.c_str(), window.c_str(), p.topology.c_str(), p.policy.c_str(),
                     static_cast<long long>(p.num_layers), p.in_sample.balancedness,
                     optional_number(p.next, &Aggregates::balancedness).c_str(), p.in_sample.bound_ratio,
                     p.in_sample.gap, static_cast<long long>(p.in_sample.duplicates),
                     p.migration ? std::to_string(p.migration->moved_slots).c_str() : "-", p.in_sample.node_locality,
                     p.policy_options == "{}" ? "-" : p.policy_options.c_str());
    }
}

json summaries_json(const std::vector<PlanSummary>& plans) {
    json out = json::array();
    for (const PlanSummary& p : plans) {
        json row = {{"id", p.id},
                    {"input", p.source},
                    {"window", p.window},
                    {"first_step", p.first_step},
                    {"last_step", p.last_step},
                    {"num_windows", p.num_windows},
                    {"topology", p.topology},
                    {"policy", p.policy},
                    {"policy_options", json::parse(p.policy_options, nullptr, false)},
                    {"num_layers", p.num_layers},
                    {"num_experts", p.num_experts},
                    {"bound_kind", p.bound_kind},
                    {"aggregate", aggregates_json(p.in_sample)}};
        if (p.next) row["next_window"] = aggregates_json(*p.next);
        if (p.migration) row["migration"] = migration_json(*p.migration);
        out.push_back(std::move(row));
    }
    return out;
}

void print_failures(std::FILE* out, const std::vector<FailureRecord>& failures) {
    if (failures.empty()) return;
    std::fprintf(out, "\nfailed inputs (%zu):\n", failures.size());
    for (const FailureRecord& f : failures) std::fprintf(out, "  %s\n", f.message.c_str());
}

}  // namespace eplb::cli
