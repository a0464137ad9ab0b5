#include "balanced_fill.hpp"

#include "balanced_search.hpp"

#include <algorithm>
#include <cmath>

namespace eplb::core {
namespace {

// Relative slack on "at most T": GPU loads are float64 sums in slot order.
constexpr double kFits = 1e-12;
// Extra replicas tried for each of the kTop heaviest experts: (kExtra + 1)^kTop count choices.
constexpr std::int32_t kTop = 4;
constexpr std::int32_t kExtra = 3;
// Loaded experts per GPU up to which a domain counts as sparse, and the most GPUs a domain may
// have (each target costs (kExtra + 1)^kTop packings of P S replicas onto P GPUs).
constexpr std::int32_t kSparseExperts = 4;
constexpr std::int32_t kMaxGpus = 16;

// One domain's packing for a target.
struct Target {
    const Placement& pl;
    const Domain& d;
    std::int32_t gpus, slots_per_gpu, cap;  // cap: replicas an expert may have
    FillScratch& s;

    double weight(std::int32_t k) const { return pl.weight(d.experts[k]); }
    double replica_load(std::int32_t k) const { return weight(k) / s.count[k]; }

    // The fewest replicas that keep each at or below T, into s.base. False when an expert would
    // need more than `cap`.
    bool fewest_counts(double T) {
        s.base.resize(static_cast<std::size_t>(d.num_experts));
        for (std::int32_t k = 0; k < d.num_experts; ++k) {
            const double c = weight(k) > 0.0 ? std::ceil(weight(k) / T * (1.0 - kFits)) : 1.0;
            if (c > cap) return false;
            s.base[k] = std::max(1, static_cast<std::int32_t>(c));
        }
        return true;
    }

    // Step 1 for the choice `extra` (base kExtra + 1 digits, one per top expert) on top of
    // s.base. False when the slots do not suffice.
    bool choose_counts(std::int32_t extra) {
        const std::int32_t n = d.num_experts;
        s.count = s.base;
        std::int64_t total = 0;
        for (std::int32_t t = 0; t < std::min(kTop, n); ++t, extra /= kExtra + 1) {
            std::int32_t& c = s.count[s.by_weight[t]];
            c = std::min(cap, c + extra % (kExtra + 1));
        }
        for (std::int32_t k = 0; k < n; ++k) total += s.count[k];
        std::int64_t spare = std::int64_t{gpus} * slots_per_gpu - total;
        if (spare < 0) return false;
        // The slots left over, one at a time, to the lightest experts.
        while (spare > 0) {
            const std::int64_t before = spare;
            for (std::int32_t i = n - 1; i >= 0 && spare > 0; --i) {
                std::int32_t& c = s.count[s.by_weight[i]];
                if (c < cap) ++c, --spare;
            }
            if (spare == before) return false;
        }
        return true;
    }

    // Step 2: best-fit decreasing into s.row / s.rank. False when a replica fits nowhere.
    bool pack(double T) {
        const std::int32_t n = d.num_experts, P = gpus, S = slots_per_gpu;
        s.items.clear();
        for (std::int32_t k = 0; k < n; ++k) s.items.insert(s.items.end(), static_cast<std::size_t>(s.count[k]), k);
        std::stable_sort(s.items.begin(), s.items.end(), [&](std::int32_t a, std::int32_t b) {
            const double la = replica_load(a), lb = replica_load(b);
            return la > lb || (la == lb && d.experts[a] < d.experts[b]);
        });
        s.room.assign(static_cast<std::size_t>(P), T * (1.0 + kFits));
        s.used.assign(static_cast<std::size_t>(P), 0);
        s.holds.assign(static_cast<std::size_t>(n) * static_cast<std::size_t>(P), 0);
        std::int32_t previous = -1;
        for (const std::int32_t k : s.items) {
            const double load = replica_load(k);
            std::uint8_t* holds = s.holds.data() + static_cast<std::size_t>(k) * P;
            std::int32_t best = -1;
            for (std::int32_t g = 0; g < P; ++g) {
                if (s.used[g] == S || holds[g] || s.room[g] < load) continue;
                if (best < 0 || s.room[g] < s.room[best]) best = g;
            }
            if (best < 0) return false;
            const std::int32_t slot = (d.first_gpu + best) * S + s.used[best]++;
            s.row[slot] = d.experts[k];
            s.rank[slot] = k == previous ? 1 : 0;  // an expert's replicas are consecutive items
            previous = k;
            s.room[best] -= load;
            holds[best] = 1;
        }
        return true;
    }

    // True when some count choice packs under T (s.row / s.rank then hold it).
    bool reachable(double T) {
        std::int32_t choices = 1;
        for (std::int32_t t = 0; t < std::min(kTop, d.num_experts); ++t) choices *= kExtra + 1;
        if (!fewest_counts(T)) return false;
        for (std::int32_t extra = 0; extra < choices; ++extra)
            if (choose_counts(extra) && pack(T)) return true;
        return false;
    }
};

}  // namespace

bool sparse_domain(const Placement& pl, const Domain& d) {
    if (d.last_gpu - d.first_gpu > kMaxGpus) return false;
    std::int32_t loaded = 0;
    for (std::int32_t k = 0; k < d.num_experts; ++k) loaded += pl.weight(d.experts[k]) > 0.0;
    return loaded <= kSparseExperts * (d.last_gpu - d.first_gpu);
}

bool pack_to_target(Placement& pl, const double* weight, const Domain& d, double floor, std::int32_t steps,
                    FillScratch& s) {
    const LayerShape& shape = pl.shape();
    const double peak = domain_max(pl, d);
    if (shape.mode == PlacementMode::relaxed || !(floor < peak)) return false;
    const std::int32_t P = d.last_gpu - d.first_gpu, S = shape.slots_per_gpu;
    Target target{pl, d, P, S, shape.no_duplicates ? P : P * S, s};
    s.by_weight.resize(static_cast<std::size_t>(d.num_experts));
    for (std::int32_t k = 0; k < d.num_experts; ++k) s.by_weight[k] = k;
    std::stable_sort(s.by_weight.begin(), s.by_weight.end(), [&](std::int32_t a, std::int32_t b) {
        return target.weight(a) > target.weight(b) || (target.weight(a) == target.weight(b) && d.experts[a] < d.experts[b]);
    });
    s.row.resize(static_cast<std::size_t>(shape.slots));
    s.rank.resize(static_cast<std::size_t>(shape.slots));
    for (std::int32_t p = 0; p < shape.slots; ++p) {
        s.row[p] = pl.expert(p);
        s.rank[p] = pl.primary(p) ? 0 : 1;
    }
    s.original_row = s.row;
    s.original_rank = s.rank;
    bool found = false;
    double lo = floor, hi = peak;
    for (std::int32_t i = 0; i < steps; ++i) {
        const double T = i == 0 ? floor : 0.5 * (lo + hi);
        if (target.reachable(T)) {
            hi = T;
            s.best_row = s.row;
            s.best_rank = s.rank;
            found = true;
            if (i == 0) break;
        } else {
            lo = T;
        }
    }
    if (!found) return false;
    pl.reset(weight, s.best_row.data(), s.best_rank.data());
    if (domain_max(pl, d) < peak) return true;
    pl.reset(weight, s.original_row.data(), s.original_rank.data());
    return false;
}

}  // namespace eplb::core
