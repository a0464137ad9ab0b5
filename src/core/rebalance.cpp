#include "balanced.hpp"
#include "hierarchical.hpp"
#include "log2phy_width.hpp"

#include <eplb/errors.hpp>
#include <eplb/rebalance.hpp>

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/stack.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

namespace eplb {
namespace {

// The value of `all` whose to_string is `name`; UsageError listing the names otherwise.
template <typename T>
T parse_name(std::string_view name, const std::vector<T>& all, const char* what) {
    std::string known;
    for (const T v : all) {
        if (name == to_string(v)) return v;
        known += (known.empty() ? "" : ", ") + to_string(v);
    }
    throw UsageError(std::string("unknown ") + what + " '" + std::string(name) + "'; expected one of: " + known);
}

std::string shape_of(const at::Tensor& t) {
    std::string s = "[";
    for (std::int64_t d = 0; d < t.dim(); ++d) s += (d ? "," : "") + std::to_string(t.size(d));
    return s + "]";
}

// True when every value is finite and non-negative (a NaN fails both comparisons).
bool all_plannable(const float* p, std::int64_t n) {
    std::int32_t bad = 0;  // counted, not and-ed, so that the loop vectorises
    for (std::int64_t i = 0; i < n; ++i) bad += !((p[i] >= 0.0f) & (p[i] <= std::numeric_limits<float>::max()));
    return bad == 0;
}

// Finds the first entry that is NaN, infinite or negative; throws LoadError naming it.
void require_plannable_values(const at::Tensor& w, const std::string& what) {
    const float* p = w.data_ptr<float>();
    const std::int64_t E = w.size(1), n = w.numel();
    if (all_plannable(p, n)) return;
    for (std::int64_t i = 0; i < n; ++i) {
        if (std::isfinite(p[i]) && p[i] >= 0.0f) continue;
        const std::string at_ = what + "[" + std::to_string(i / E) + "][" + std::to_string(i % E) + "]";
        const std::string value = std::isnan(p[i]) ? "NaN" : std::to_string(p[i]);
        throw LoadError(at_ + " = " + value + ": loads must be finite and non-negative" +
                        (std::isinf(p[i]) ? " (and fit in float32)" : ""));
    }
}

// The largest of n >= 1 values: a plain reduction, which vectorises (max_element does not), with
// AVX2 where the CPU has it (64-bit compares).
__attribute__((target_clones("avx2", "default"))) std::int64_t largest(const std::int64_t* v, std::int64_t n) {
    std::int64_t m = v[0];
    for (std::int64_t i = 1; i < n; ++i) m = std::max(m, v[i]);
    return m;
}

// log2phy[l, e, k] = slot of replica k of expert e; -1 beyond its count.
at::Tensor build_log2phy(const at::Tensor& phy2log, const std::vector<std::int32_t>& rank, std::int64_t E,
                         std::int64_t X) {
    const std::int64_t L = phy2log.size(0), R = phy2log.size(1);
    at::Tensor log2phy = at::empty({L, E, X}, at::TensorOptions().dtype(at::kLong));
    std::int64_t* out = log2phy.data_ptr<std::int64_t>();
    const std::int64_t* p2l = phy2log.data_ptr<std::int64_t>();
    // Layer by layer, so that the -1 fill is still in cache when the slots are scattered into it
    // (a single large memset may bypass the cache with streaming stores).
    for (std::int64_t l = 0; l < L; ++l) {
        std::int64_t* layer = out + l * E * X;
        std::memset(layer, 0xFF, static_cast<std::size_t>(E * X) * sizeof(std::int64_t));  // all -1
        for (std::int64_t p = 0; p < R; ++p) layer[p2l[l * R + p] * X + rank[l * R + p]] = p;
    }
    return log2phy;
}

}  // namespace

std::int64_t core::log2phy_width(const at::Tensor& logcnt, const Topology& t, std::int64_t E, Policy policy) {
    if (policy == Policy::seed) return t.num_replicas - E + 1;
    if (logcnt.numel() == 0) return 1;
    if (!logcnt.device().is_cpu() || !logcnt.is_contiguous()) return logcnt.max().item<std::int64_t>();
    return largest(logcnt.data_ptr<std::int64_t>(), logcnt.numel());
}

std::string to_string(Policy policy) {
    switch (policy) {
        case Policy::deepseek: return "deepseek";
        case Policy::seed: return "seed";
        case Policy::balanced: return "balanced";
    }
    return "unknown";
}

const std::vector<Policy>& all_policies() {
    static const std::vector<Policy> policies{Policy::deepseek, Policy::seed, Policy::balanced};
    return policies;
}

Policy parse_policy(std::string_view name) {
    return parse_name(name, all_policies(), "policy");
}

std::string to_string(PlacementMode mode) {
    switch (mode) {
        case PlacementMode::hierarchical: return "hierarchical";
        case PlacementMode::global: return "global";
        case PlacementMode::relaxed: return "relaxed";
    }
    return "unknown";
}

PlacementMode parse_placement_mode(std::string_view name) {
    static const std::vector<PlacementMode> modes{PlacementMode::hierarchical, PlacementMode::global,
                                                  PlacementMode::relaxed};
    return parse_name(name, modes, "placement mode");
}

std::string to_string(HistoryAggregation aggregation) {
    switch (aggregation) {
        case HistoryAggregation::mean: return "mean";
        case HistoryAggregation::ema: return "ema";
    }
    return "unknown";
}

HistoryAggregation parse_history_aggregation(std::string_view name) {
    static const std::vector<HistoryAggregation> all{HistoryAggregation::mean, HistoryAggregation::ema};
    return parse_name(name, all, "history aggregation");
}

void PlanOptions::validate() const {
    if (!(ema_decay > 0.0 && ema_decay <= 1.0))
        throw UsageError("ema_decay=" + std::to_string(ema_decay) + " is outside (0, 1]");
    if (!(max_balance_loss >= 0.0 && max_balance_loss < 1.0))
        throw UsageError("max_balance_loss=" + std::to_string(max_balance_loss) + " is outside [0, 1)");
    if (!(persistence >= 0.0 && persistence <= 1.0))
        throw UsageError("persistence=" + std::to_string(persistence) + " is outside [0, 1]");
    if (policy == Policy::balanced) return;
    if (mode == PlacementMode::relaxed)
        throw UsageError("placement mode relaxed is the balanced policy's; policy " + to_string(policy) +
                         " plans hierarchical or global");
    if (previous)
        throw UsageError("migration-aware planning (a previous plan) is the balanced policy's; policy " +
                         to_string(policy) + " plans from scratch");
}

at::Tensor checked_loads(const at::Tensor& weight, const std::string& what) {
    if (!weight.defined()) throw LoadError(what + " is undefined");
    if (weight.dim() != 2)
        throw LoadError(what + " has shape " + shape_of(weight) + "; expected [layers, experts]");
    if (weight.size(0) == 0 || weight.size(1) == 0)
        throw LoadError(what + " has shape " + shape_of(weight) + "; it needs at least one layer and one expert");
    if (!(at::isFloatingType(weight.scalar_type()) || at::isIntegralType(weight.scalar_type(), /*includeBool=*/false)))
        throw LoadError(what + " has dtype " + std::string(c10::toString(weight.scalar_type())) +
                        "; expected a real number type");
    const bool ready = weight.device().is_cpu() && weight.scalar_type() == at::kFloat && weight.is_contiguous();
    at::Tensor w = ready ? weight : weight.to(at::kCPU).to(at::kFloat).contiguous();
    require_plannable_values(w, what);
    return w;
}

namespace {

// The windows of a [L, E] or [k, L, E] load tensor as a checked [k, L, E] float32 CPU tensor.
at::Tensor checked_windows(const at::Tensor& weight) {
    if (!weight.defined() || weight.dim() != 3) return checked_loads(weight).unsqueeze(0);
    if (weight.size(0) == 0) throw LoadError("weight has shape " + shape_of(weight) + "; it needs at least one window");
    std::vector<at::Tensor> windows;
    for (std::int64_t t = 0; t < weight.size(0); ++t)
        windows.push_back(checked_loads(weight[t], "weight[" + std::to_string(t) + "]"));
    return at::stack(windows).contiguous();
}

void require_previous_shape(const Plan& previous, std::int64_t L, std::int64_t E, const Topology& t) {
    previous.validate();
    if (previous.num_layers() != L || previous.num_experts() != E || previous.num_replicas() != t.num_replicas)
        throw PlanError("previous plan has " + std::to_string(previous.num_layers()) + " layers, " +
                        std::to_string(previous.num_experts()) + " experts and " +
                        std::to_string(previous.num_replicas()) + " slots; expected " + std::to_string(L) + ", " +
                        std::to_string(E) + " and " + std::to_string(t.num_replicas));
}

// deepseek or seed on one load matrix, in the mode's topology.
Plan reference_plan(const at::Tensor& w, const Topology& topology, Policy policy) {
    const std::int64_t L = w.size(0), E = w.size(1), R = topology.num_replicas;
    const Topology eff = topology.effective();

    const auto long_options = at::TensorOptions().dtype(at::kLong);
    at::Tensor phy2log = at::empty({L, R}, long_options);
    std::vector<std::int32_t> rank(static_cast<std::size_t>(L * R));  // replica rank of each slot
    at::Tensor logcnt = at::empty({L, E}, long_options);
    const float* wp = w.data_ptr<float>();
    std::int64_t* pp = phy2log.data_ptr<std::int64_t>();
    std::int32_t* rp = rank.data();
    std::int64_t* cp = logcnt.data_ptr<std::int64_t>();

    // Layers are independent and each writes its own rows: the result is the same for any
    // number of threads.
    constexpr std::int64_t kBlock = core::HierarchicalPlanner::kBlockLayers;
    at::parallel_for(0, (L + kBlock - 1) / kBlock, /*grain_size=*/4, [&](std::int64_t begin, std::int64_t end) {
        core::HierarchicalPlanner planner(eff, E, policy);
        for (std::int64_t l = begin * kBlock; l < std::min(end * kBlock, L); l += kBlock)
            planner.plan_layers(wp + l * E, static_cast<std::int32_t>(std::min(kBlock, L - l)),
                                core::LayersOut{pp + l * R, rp + l * R, cp + l * E});
    });

    const std::int64_t X = core::log2phy_width(logcnt, topology, E, policy);
    return Plan{phy2log, build_log2phy(phy2log, rank, E, X), logcnt};
}

}  // namespace

Plan rebalance(const at::Tensor& weight, const Topology& topology, Policy policy) {
    PlanOptions options;
    options.policy = policy;
    return rebalance(checked_loads(weight), topology, options);
}

Plan rebalance(const at::Tensor& weight, const Topology& topology, const PlanOptions& options, PlanReport* report) {
    options.validate();
    const at::Tensor windows = checked_windows(weight);
    const std::int64_t L = windows.size(1), E = windows.size(2);
    topology.validate(E);
    if (options.previous) require_previous_shape(*options.previous, L, E, topology);
    if (report) *report = PlanReport{};
    if (options.policy != Policy::balanced) {
        const Topology planned = options.mode == PlacementMode::global
                                     ? Topology{topology.num_replicas, 1, 1, topology.num_gpus}
                                     : topology;
        const at::Tensor w = windows.size(0) == 1 ? windows[0] : windows.to(at::kDouble).sum(0).to(at::kFloat);
        return reference_plan(w.contiguous(), planned, options.policy);
    }
    at::Tensor phy2log, logcnt;
    std::vector<std::int32_t> rank;
    PlanReport notes;
    core::plan_balanced(windows, topology, options, phy2log, rank, logcnt, notes);
    if (report) *report = std::move(notes);
    const std::int64_t X = core::log2phy_width(logcnt, topology, E, Policy::balanced);
    return Plan{phy2log, build_log2phy(phy2log, rank, E, X), logcnt};
}

}  // namespace eplb
