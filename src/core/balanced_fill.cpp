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
// have for the count choices (each target costs (kExtra + 1)^kTop packings of P S replicas onto
// P GPUs).
constexpr std::int32_t kSparseExperts = 4;
constexpr std::int32_t kMaxGpus = 16;
// The depth-first packing search visits at most kSearchWork / P nodes per target on P GPUs (a
// node costs O(P)): 750 on a node of 8 GPUs, 187 on a layer of 32. On SGLang's DeepSeek-R1
// prefill statistics, global plans gain nothing beyond 125 nodes; hierarchical ones gain 0.05 %
// of the bound from 200 to 750 nodes and 0.02 % more up to 2,000, for 24 % and 45 % more
// instructions.
constexpr std::int64_t kSearchWork = 6000;

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
    bool pack(double T, bool lightest = false) {
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
                if (best < 0 || (lightest ? s.room[g] > s.room[best] : s.room[g] < s.room[best])) best = g;
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

    // Counts in proportion to the loads: one replica per expert, and the spare slots one at a
    // time to the loaded expert with the heaviest replica (lower id on ties) that may grow.
    // False when no loaded expert may take them.
    bool proportional_counts() {
        const std::int32_t n = d.num_experts;
        s.count.assign(static_cast<std::size_t>(n), 1);
        for (std::int64_t spare = std::int64_t{gpus} * slots_per_gpu - n; spare > 0; --spare) {
            std::int32_t best = -1;
            for (std::int32_t k = 0; k < n; ++k) {
                if (weight(k) <= 0.0 || s.count[k] == cap) continue;
                if (best < 0 || replica_load(k) > replica_load(best) ||
                    (replica_load(k) == replica_load(best) && d.experts[k] < d.experts[best]))
                    best = k;
            }
            if (best < 0) return false;
            ++s.count[best];
        }
        return true;
    }

    // True when the depth-first search, or else some count choice, packs under T (s.row /
    // s.rank then hold the packing).
    bool reachable(double T);
};

// Depth-first search for a packing under T, within a budget of kSearchWork / P nodes (the exact
// search of tests/bench/exact_optimum.py, in float64 and without its table of failed states):
// loaded experts heaviest first, each given k >= its fewest replicas (the spare loaded slots shared
// out as the search goes, fewest first) on k distinct GPUs with a free slot and room for w / k.
// GPUs with equal (load, slots used) are interchangeable, so a choice takes m GPUs of each such
// class, lightest classes first and the most of each first. Pruned where the load left exceeds the
// room left. Every GPU must end with at least S - Z loaded replicas, Z the experts without load,
// which then fill the free slots.
struct PackingSearch {
    PackingSearch(Target& target, double cap) : t(target), T(cap), b(target.s.search) {}

    Target& t;
    double T;
    PackingBuffers& b;
    std::int64_t nodes = 0, budget = 0;
    std::int32_t n = 0, need_fill = 0;
    bool exhausted = false;

    bool run();
    void order_open_gpus(std::int32_t i);
    bool place_expert(std::int32_t i, std::int32_t spare);
    bool place_replicas(std::int32_t i, std::int32_t spare, std::int32_t from, std::int32_t taken);
    void write_rows();
};

// The packing found into s.row / s.rank: on each GPU its loaded replicas in expert order, then
// the experts without load in turn (at most Z free slots per GPU, so no two of one on a GPU).
void PackingSearch::write_rows() {
    const std::int32_t P = t.gpus, S = t.slots_per_gpu;
    std::fill(b.used.begin(), b.used.end(), 0);
    for (std::int32_t i = 0; i < n; ++i)
        for (std::int32_t j = 0; j < b.count[i]; ++j) {
            const std::int32_t g = b.gpus_of[static_cast<std::size_t>(i) * P + j];
            const std::int32_t slot = (t.d.first_gpu + g) * S + b.used[g]++;
            t.s.row[slot] = t.d.experts[b.loaded[i]];
            t.s.rank[slot] = j == 0 ? 0 : 1;
        }
    std::int64_t next = 0;  // b.zeros is not empty when a slot is left: with Z = 0 every GPU ends full
    for (std::int32_t g = 0; g < P; ++g)
        for (; b.used[g] < S; ++b.used[g], ++next) {
            const std::int32_t slot = (t.d.first_gpu + g) * S + b.used[g];
            t.s.row[slot] = t.d.experts[b.zeros[static_cast<std::size_t>(next % static_cast<std::int64_t>(b.zeros.size()))]];
            t.s.rank[slot] = next < static_cast<std::int64_t>(b.zeros.size()) ? 0 : 1;
        }
}

bool Target::reachable(double T) {
    if (!fewest_counts(T)) return false;
    PackingSearch search{*this, T};
    if (search.run()) return true;
    if (gpus <= kMaxGpus) {
        std::int32_t choices = 1;
        for (std::int32_t t = 0; t < std::min(kTop, d.num_experts); ++t) choices *= kExtra + 1;
        for (std::int32_t extra = 0; extra < choices; ++extra)
            if (choose_counts(extra) && pack(T)) return true;
    }
    return false;
}

bool PackingSearch::run() {
    const std::int32_t P = t.gpus, S = t.slots_per_gpu;
    b.loaded.clear();
    b.zeros.clear();
    for (std::int32_t r = 0; r < t.d.num_experts; ++r)
        (t.weight(t.s.by_weight[r]) > 0.0 ? b.loaded : b.zeros).push_back(t.s.by_weight[r]);
    std::sort(b.zeros.begin(), b.zeros.end());  // ascending domain index
    n = static_cast<std::int32_t>(b.loaded.size());
    budget = kSearchWork / P;
    const std::int32_t num_zeros = static_cast<std::int32_t>(b.zeros.size());
    need_fill = std::max(0, S - num_zeros);
    b.suffix_load.assign(static_cast<std::size_t>(n) + 1, 0.0);
    b.suffix_base.assign(static_cast<std::size_t>(n) + 1, 0);
    for (std::int32_t i = n - 1; i >= 0; --i) {
        b.suffix_load[i] = b.suffix_load[i + 1] + t.weight(b.loaded[i]);
        b.suffix_base[i] = b.suffix_base[i + 1] + t.s.base[b.loaded[i]];
    }
    const std::int32_t spare = P * S - num_zeros - b.suffix_base[0];
    if (spare < 0) return false;
    b.load.assign(static_cast<std::size_t>(P), 0.0);
    b.used.assign(static_cast<std::size_t>(P), 0);
    b.gpus_of.assign(static_cast<std::size_t>(n) * P, 0);
    b.load_before.assign(static_cast<std::size_t>(n) * P, 0.0);
    b.count.assign(static_cast<std::size_t>(n), 0);
    b.fits.assign(static_cast<std::size_t>(n), 0);
    b.is_moved.assign(static_cast<std::size_t>(P), 0);
    b.candidates.resize(static_cast<std::size_t>(n));
    if (!place_expert(0, spare)) return false;
    write_rows();
    return true;
}

bool PackingSearch::place_expert(std::int32_t i, std::int32_t spare) {
    const std::int32_t P = t.gpus, S = t.slots_per_gpu;
    if (exhausted || ++nodes > budget) {  // leaves count too: picks can be many
        exhausted = true;
        return false;
    }
    if (i == n) return std::all_of(b.used.begin(), b.used.end(), [&](std::int32_t u) { return u >= need_fill; });
    double room = 0.0;
    std::int32_t missing = 0;
    for (std::int32_t g = 0; g < P; ++g) {
        if (b.used[g] < S) room += T - b.load[g];
        missing += std::max(0, need_fill - b.used[g]);
    }
    if (b.suffix_load[i] > room * (1.0 + kFits) || missing > b.suffix_base[i] + spare) return false;
    // The GPUs with a free slot by (load, used, id): those that may take a replica of size w / k
    // are a prefix of it, longer as k grows.
    order_open_gpus(i);
    const std::vector<std::int32_t>& open = b.candidates[i];
    const std::int32_t base = t.s.base[b.loaded[i]];
    const double w = t.weight(b.loaded[i]);
    std::int32_t fit = 0;
    for (std::int32_t k = base; k <= std::min(P, base + spare); ++k) {
        const double size = w / k;
        while (fit < static_cast<std::int32_t>(open.size()) && b.load[open[fit]] + size <= T * (1.0 + kFits)) ++fit;
        if (fit < k) continue;
        b.count[i] = k;
        b.fits[i] = fit;
        if (place_replicas(i, spare - (k - base), 0, 0)) return true;
        if (exhausted) return false;
    }
    return false;
}

// candidates[i]: the GPUs with a free slot by (load, used, id). From the previous expert's list,
// where only that expert's GPUs changed: the others stay in order, and its GPUs are merged in.
void PackingSearch::order_open_gpus(std::int32_t i) {
    const std::int32_t P = t.gpus, S = t.slots_per_gpu;
    const auto before = [&](std::int32_t x, std::int32_t y) {
        return b.load[x] < b.load[y] || (b.load[x] == b.load[y] && (b.used[x] < b.used[y] || (b.used[x] == b.used[y] && x < y)));
    };
    std::vector<std::int32_t>& open = b.candidates[i];
    open.clear();
    if (i == 0) {
        for (std::int32_t g = 0; g < P; ++g) open.push_back(g);
        std::sort(open.begin(), open.end(), before);
        return;
    }
    const std::int32_t* placed = b.gpus_of.data() + static_cast<std::size_t>(i - 1) * P;
    const std::int32_t k = b.count[i - 1];
    b.moved.assign(placed, placed + k);
    std::sort(b.moved.begin(), b.moved.end(), before);
    for (const std::int32_t g : b.moved) b.is_moved[g] = 1;
    std::size_t m = 0;
    for (const std::int32_t g : b.candidates[i - 1]) {
        if (b.is_moved[g]) continue;
        for (; m < b.moved.size() && before(b.moved[m], g); ++m)
            if (b.used[b.moved[m]] < S) open.push_back(b.moved[m]);
        open.push_back(g);
    }
    for (; m < b.moved.size(); ++m)
        if (b.used[b.moved[m]] < S) open.push_back(b.moved[m]);
    for (const std::int32_t g : b.moved) b.is_moved[g] = 0;
}

// Takes the remaining replicas of expert i from the classes of candidates[i] from index `from`.
bool PackingSearch::place_replicas(std::int32_t i, std::int32_t spare, std::int32_t from, std::int32_t taken) {
    const std::int32_t k = b.count[i];
    if (taken == k) return place_expert(i + 1, spare);
    const std::vector<std::int32_t>& c = b.candidates[i];
    const std::int32_t size_c = b.fits[i];
    if (from == size_c) return false;
    std::int32_t to = from + 1;
    while (to < size_c && b.load[c[to]] == b.load[c[from]] && b.used[c[to]] == b.used[c[from]]) ++to;
    const double size = t.weight(b.loaded[i]) / k;  // as place_expert tested it
    const std::int32_t most = std::min(to - from, k - taken), least = std::max(0, k - taken - (size_c - to));
    const std::int32_t P = t.gpus;
    for (std::int32_t m = most; m >= least; --m) {
        for (std::int32_t j = 0; j < m; ++j) {
            const std::int32_t g = c[from + j];
            const std::size_t at = static_cast<std::size_t>(i) * P + taken + j;
            b.gpus_of[at] = g;
            b.load_before[at] = b.load[g];  // restored exactly when the choice is undone
            b.load[g] += size;
            ++b.used[g];
        }
        const bool ok = place_replicas(i, spare, to, taken + m);
        for (std::int32_t j = 0; j < m; ++j) {
            const std::int32_t g = c[from + j];
            b.load[g] = b.load_before[static_cast<std::size_t>(i) * P + taken + j];
            --b.used[g];
        }
        if (ok) return true;
        if (exhausted) return false;
    }
    return false;
}

// The placement's slots as plan rows, into s.row / s.rank (the packing's start) and
// s.original_row / s.original_rank (restore_before_repack).
void copy_rows(const Placement& pl, FillScratch& s) {
    const std::int32_t R = pl.shape().slots;
    s.row.resize(static_cast<std::size_t>(R));
    s.rank.resize(static_cast<std::size_t>(R));
    for (std::int32_t p = 0; p < R; ++p) {
        s.row[p] = pl.expert(p);
        s.rank[p] = pl.primary(p) ? 0 : 1;
    }
    s.original_row = s.row;
    s.original_rank = s.rank;
}

}  // namespace

bool sparse_domain(const Placement& pl, const Domain& d) {
    std::int32_t loaded = 0;
    for (std::int32_t k = 0; k < d.num_experts; ++k) loaded += pl.weight(d.experts[k]) > 0.0;
    return loaded <= kSparseExperts * (d.last_gpu - d.first_gpu);
}

bool repack_proportionally(Placement& pl, const double* weight, const Domain& d, FillScratch& s) {
    const LayerShape& shape = pl.shape();
    if (shape.mode == PlacementMode::relaxed) return false;
    const std::int32_t P = d.last_gpu - d.first_gpu, S = shape.slots_per_gpu;
    Target target{pl, d, P, S, shape.no_duplicates ? P : P * S, s};
    if (!target.proportional_counts()) return false;
    copy_rows(pl, s);
    double total = 0.0;
    for (std::int32_t k = 0; k < d.num_experts; ++k) total += target.weight(k);
    if (!target.pack(total, /*lightest=*/true)) return false;
    pl.reset(weight, s.row.data(), s.rank.data());
    return true;
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
    copy_rows(pl, s);
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
    restore_before_repack(pl, weight, s);
    return false;
}

void restore_before_repack(Placement& pl, const double* weight, FillScratch& s) {
    pl.reset(weight, s.original_row.data(), s.original_rank.data());
}

}  // namespace eplb::core
