// verify_archive: every plan re-checked and every stored metric recomputed from the stored maps.
#include "io/metric_fields.hpp"
#include "io/shape_text.hpp"

#include <eplb/archive.hpp>
#include <eplb/errors.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

namespace eplb {
namespace {

bool same(double stored, double recomputed) {
    if (std::isnan(stored) || std::isnan(recomputed)) return std::isnan(stored) && std::isnan(recomputed);
    return std::fabs(stored - recomputed) <= 1e-12 * std::max({1.0, std::fabs(stored), std::fabs(recomputed)});
}

std::string number(double v) {
    std::ostringstream s;
    s.precision(17);
    s << v;
    return s.str();
}

// Collects "plan <id>: ..." lines.
class Problems {
public:
    Problems(std::vector<std::string>& out, std::string id) : out_(out), prefix_("plan " + std::move(id) + ": ") {}

    void add(const std::string& what) { out_.push_back(prefix_ + what); }

    void value(const std::string& name, double stored, double recomputed) {
        if (!same(stored, recomputed))
            add(name + " = " + number(stored) + " stored, " + number(recomputed) + " recomputed");
    }
    void value(const std::string& name, std::int64_t stored, std::int64_t recomputed) {
        if (stored != recomputed)
            add(name + " = " + std::to_string(stored) + " stored, " + std::to_string(recomputed) + " recomputed");
    }
    void value(const std::string& name, const std::string& stored, const std::string& expected) {
        if (stored != expected) add(name + " = '" + stored + "' stored, '" + expected + "' expected");
    }
    template <typename T>
    void layers(const std::string& name, const std::vector<T>& stored, const std::vector<T>& recomputed,
                const std::vector<std::int64_t>& layer_ids) {
        if (stored.size() != recomputed.size()) {
            add(name + " has " + std::to_string(stored.size()) + " layers; expected " + std::to_string(recomputed.size()));
            return;
        }
        for (std::size_t l = 0; l < stored.size(); ++l) {
            const std::size_t before = out_.size();
            value(name + "[layer " + std::to_string(layer_ids[l]) + "]", stored[l], recomputed[l]);
            if (out_.size() != before) return;  // the first differing layer is enough
        }
    }

private:
    std::vector<std::string>& out_;
    std::string prefix_;
};

void compare_aggregates(Problems& p, const std::string& prefix, const Aggregates& stored, const Aggregates& recomputed) {
    for (const auto& f : io::kAggregateDoubles) p.value(prefix + f.name, stored.*f.field, recomputed.*f.field);
    p.value(prefix + io::kDuplicates, stored.duplicates, recomputed.duplicates);
}

void compare_metrics(Problems& p, const std::string& prefix, const PlanMetrics& s, const PlanMetrics& r,
                     const std::vector<std::int64_t>& ids) {
    const std::string m = "metrics." + prefix;
    for (const auto& f : io::kLayerDoubles) p.layers(m + f.name, s.*f.field, r.*f.field, ids);
    p.layers(m + io::kDuplicates, s.duplicates, r.duplicates, ids);
    compare_aggregates(p, prefix, Aggregates::of(s), Aggregates::of(r));
}

void compare_summaries(Problems& p, const std::string& prefix, const PlanSummary& s, const PlanSummary& e) {
    for (const io::SummaryField& f : io::kSummaryFields) {
        if (f.text)
            p.value(prefix + f.name, s.*f.text, e.*f.text);
        else
            p.value(prefix + f.name, s.*f.number, e.*f.number);
    }
    compare_aggregates(p, prefix, s.in_sample, e.in_sample);
    if (s.next.has_value() != e.next.has_value())
        p.add(prefix + "next-window metrics are " + (s.next ? "present" : "missing"));
    else if (s.next)
        compare_aggregates(p, prefix + "next_", *s.next, *e.next);
    if (s.migration.has_value() != e.migration.has_value())
        p.add(prefix + "migration totals are " + (s.migration ? "present" : "missing"));
    else if (s.migration) {
        p.value(prefix + "moved_slots", s.migration->moved_slots, e.migration->moved_slots);
        p.value(prefix + "gpu_transfers", s.migration->gpu_transfers, e.migration->gpu_transfers);
        p.value(prefix + "node_transfers", s.migration->node_transfers, e.migration->node_transfers);
    }
}

// Shapes and ids; false when the plan is too broken to recompute anything.
bool check_structure(Problems& p, const PlanRecord& r, const std::string& group_name) {
    p.value("id", r.id, group_name);
    p.value("id (from its key)", r.id, r.identity().id());
    p.value("key", r.key, r.identity().key());
    try {
        r.plan.validate();
        r.topology.validate(r.plan.num_experts());
    } catch (const Error& e) {
        p.add(e.what());
        return false;
    }
    const std::int64_t L = r.plan.num_layers(), E = r.plan.num_experts();
    bool ok = true;
    auto require = [&](bool condition, const std::string& what) {
        if (!condition) p.add(what);
        ok = ok && condition;
    };
    require(r.plan.num_replicas() == r.topology.num_replicas,
            "phy2log has " + std::to_string(r.plan.num_replicas()) + " slots per layer; topology " +
                r.topology.to_string() + " has " + std::to_string(r.topology.num_replicas));
    require(static_cast<std::int64_t>(r.layer_ids.size()) == L,
            "layer_ids has " + std::to_string(r.layer_ids.size()) + " entries; the plan has " + std::to_string(L) + " layers");
    for (const Window* w : {&r.window, r.next_window ? &*r.next_window : nullptr})
        if (w) require(w->loads.dim() == 2 && w->loads.size(0) == L && w->loads.size(1) == E,
                       "loads have shape " + io::shape_text(w->loads) + "; expected [" + std::to_string(L) + "," +
                           std::to_string(E) + "]");
    for (std::size_t i = 0; i < r.layer_ids.size(); ++i)
        if (r.layer_ids[i] < 0 || r.layer_ids[i] >= r.source.model_layers || (i && r.layer_ids[i] <= r.layer_ids[i - 1])) {
            p.add("layer_ids[" + std::to_string(i) + "] = " + std::to_string(r.layer_ids[i]) +
                  " is not increasing within [0, num_model_layers = " + std::to_string(r.source.model_layers) + ")");
            ok = false;
            break;
        }
    return ok;
}

void check_migration(Problems& p, const PlanRecord& r, const ArchiveReader& archive, const std::vector<std::string>& ids) {
    if (r.previous_plan.empty()) {
        if (r.migration) p.add("has migration metrics but no previous plan");
        return;
    }
    if (!r.migration) {
        p.add("has a previous plan (" + r.previous_plan + ") but no migration metrics");
        return;
    }
    Plan before;
    if (r.deployed_phy2log.defined()) {  // the deployed plan the policy planned against, stored with it
        before = plan_from_phy2log(r.deployed_phy2log, r.plan.num_experts());
    } else if (std::binary_search(ids.begin(), ids.end(), r.previous_plan)) {
        before = archive.read_plan(r.previous_plan).plan;
    } else {
        p.add("previous plan " + r.previous_plan + " is not in the archive: its migration metrics cannot be checked");
        return;
    }
    const Migration m = migration(before, r.plan, r.topology);
    p.layers("metrics.moved_slots", r.migration->moved_slots, m.moved_slots, r.layer_ids);
    p.layers("metrics.gpu_transfers", r.migration->gpu_transfers, m.gpu_transfers, r.layer_ids);
    p.layers("metrics.node_transfers", r.migration->node_transfers, m.node_transfers, r.layer_ids);
}

void check_plan(Problems& p, const PlanRecord& r, const std::string& group_name, const ArchiveReader& archive,
                const std::vector<std::string>& ids) {
    if (!check_structure(p, r, group_name)) return;
    const BoundKind kind = r.metrics.bound_kind;
    compare_metrics(p, "", r.metrics, evaluate(r.plan, r.window.loads, r.topology, kind), r.layer_ids);
    if (r.next_window.has_value() != r.next_metrics.has_value())
        p.add("next-window loads and metrics do not come together");
    else if (r.next_window)
        compare_metrics(p, "next_", *r.next_metrics, evaluate(r.plan, r.next_window->loads, r.topology, kind), r.layer_ids);
    check_migration(p, r, archive, ids);
}

}  // namespace

VerifyReport verify_archive(const std::string& path) {
    const ArchiveReader archive(path);
    VerifyReport report;
    const std::vector<std::string> ids = archive.plan_ids();
    std::map<std::string, PlanSummary> index;
    for (const PlanSummary& row : archive.plans())
        if (!index.emplace(row.id, row).second) report.problems.push_back("index: plan " + row.id + " is listed twice");
    for (const auto& [id, row] : index)
        if (!std::binary_search(ids.begin(), ids.end(), id))
            report.problems.push_back("index: plan " + id + " is listed but not stored under /plans");
    for (const std::string& id : ids) {
        ++report.plans_checked;
        Problems p(report.problems, id);
        try {
            const PlanRecord record = archive.read_plan(id);
            check_plan(p, record, id, archive, ids);
            const PlanSummary expected = PlanSummary::of(record);
            compare_summaries(p, "attribute ", archive.read_plan_summary(id), expected);
            const auto row = index.find(id);
            if (row == index.end())
                p.add("missing from the index");
            else
                compare_summaries(p, "index ", row->second, expected);
        } catch (const Error& e) {
            p.add(e.what());
        }
    }
    return report;
}

}  // namespace eplb
