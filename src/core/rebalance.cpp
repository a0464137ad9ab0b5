#include "hierarchical.hpp"
#include "log2phy_width.hpp"

#include <eplb/errors.hpp>
#include <eplb/rebalance.hpp>

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

namespace eplb {
namespace {

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
    const std::int64_t* c = logcnt.data_ptr<std::int64_t>();
    return *std::max_element(c, c + logcnt.numel());
}

std::string to_string(Policy policy) {
    switch (policy) {
        case Policy::deepseek: return "deepseek";
        case Policy::seed: return "seed";
    }
    return "unknown";
}

const std::vector<Policy>& all_policies() {
    static const std::vector<Policy> policies{Policy::deepseek, Policy::seed};
    return policies;
}

Policy parse_policy(std::string_view name) {
    std::string known;
    for (const Policy p : all_policies()) {
        if (name == to_string(p)) return p;
        known += (known.empty() ? "" : ", ") + to_string(p);
    }
    throw UsageError("unknown policy '" + std::string(name) + "'; expected one of: " + known);
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

Plan rebalance(const at::Tensor& weight, const Topology& topology, Policy policy) {
    const at::Tensor w = checked_loads(weight);
    const std::int64_t L = w.size(0), E = w.size(1), R = topology.num_replicas;
    topology.validate(E);
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

}  // namespace eplb
