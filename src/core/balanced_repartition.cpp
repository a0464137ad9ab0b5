#include "balanced_repartition.hpp"

#include <algorithm>

namespace eplb::core {
namespace {

// The loaded slots of GPU g, appended to `out` from index `n`; returns the new count, or -1 when
// more than kRepartitionItems slots would be pooled.
std::int32_t pool_loaded_slots(const Placement& pl, std::int32_t g, std::int32_t* out, std::int32_t n) {
    const std::int32_t S = pl.shape().slots_per_gpu;
    for (std::int32_t p = g * S; p < (g + 1) * S; ++p) {
        if (pl.slot_load(p) <= 0.0) continue;
        if (n == kRepartitionItems) return -1;
        out[n++] = p;
    }
    return n;
}

// True when the slot without load `p` may go to GPU `to` in exchange for a loaded replica.
bool filler_fits(const Placement& pl, std::int32_t p, std::int32_t to) {
    return pl.slot_load(p) <= 0.0 && pl.may_host(p, to) && !(pl.shape().no_duplicates && pl.held(pl.expert(p), to) > 0);
}

// Slots without load of GPU `from` that may go to GPU `to` together: without duplicates, one per
// expert.
std::int32_t count_fillers(const Placement& pl, std::int32_t from, std::int32_t to) {
    const std::int32_t S = pl.shape().slots_per_gpu;
    std::int32_t fits = 0;
    for (std::int32_t p = from * S; p < (from + 1) * S; ++p) {
        if (!filler_fits(pl, p, to)) continue;
        bool seen = false;  // only an expert with two replicas or more can have two here
        for (std::int32_t q = from * S; q < p && pl.count(pl.expert(p)) > 1 && pl.shape().no_duplicates && !seen; ++q)
            seen = pl.expert(q) == pl.expert(p);
        fits += !seen;
    }
    return fits;
}

// Set bits of x (without the library call that __builtin_popcount becomes for CPUs without a
// popcount instruction).
constexpr std::int32_t bit_count(std::uint32_t x) {
    x = x - ((x >> 1) & 0x55555555u);
    x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
    return static_cast<std::int32_t>((((x + (x >> 4)) & 0x0F0F0F0Fu) * 0x01010101u) >> 24);
}
static_assert(bit_count(0u) == 0 && bit_count(0x3FFu) == 10 && bit_count(0x80000001u) == 2);

// The rules of one pair's splits as bit masks over the pooled slots.
struct SplitRules {
    std::uint32_t of_h = 0;    // slots now on h
    std::uint32_t keep_h = 0;  // slots that must end on h (may not live on j)
    std::uint32_t keep_j = 0;  // slots that must end on j
    // Experts with two pooled slots or more: their slots, and how many may end on h and on j
    // (one each, or as many as are there already: a split adds no duplicate).
    struct Shared {
        std::uint32_t slots = 0;
        std::int32_t most_h = 1, most_j = 1;
    };
    Shared shared[kRepartitionItems / 2] = {};
    std::int32_t num_shared = 0;
    std::int32_t fillers_h = 0, fillers_j = 0;  // slots without load each GPU may give the other
    std::int32_t slots_per_gpu = 0;

    bool allow(std::uint32_t on_h, std::int32_t n) const {
        if ((on_h & keep_h) != keep_h || (on_h & keep_j) != 0) return false;
        for (std::int32_t t = 0; t < num_shared; ++t) {
            const std::int32_t ends_h = bit_count(on_h & shared[t].slots);
            if (ends_h > shared[t].most_h || bit_count(shared[t].slots) - ends_h > shared[t].most_j) return false;
        }
        const std::int32_t on_h_count = bit_count(on_h);
        if (on_h_count > slots_per_gpu || n - on_h_count > slots_per_gpu) return false;
        const std::int32_t to_h = bit_count(on_h & ~of_h), to_j = bit_count(~on_h & of_h);
        return to_h - to_j <= fillers_h && to_j - to_h <= fillers_j;
    }
};

// The rules for experts with two pooled slots or more.
void shared_experts(const Placement& pl, const Repartition& r, SplitRules& rules) {
    std::uint32_t seen = 0;
    for (std::int32_t i = 0; i < r.n; ++i) {
        if (seen >> i & 1u) continue;
        const std::int32_t e = pl.expert(r.slot[i]);
        SplitRules::Shared group;
        for (std::int32_t k = i; k < r.n; ++k)
            if (pl.expert(r.slot[k]) == e) group.slots |= 1u << k;
        seen |= group.slots;
        if (bit_count(group.slots) < 2) continue;
        group.most_h = std::max(1, pl.held(e, r.h));
        group.most_j = std::max(1, pl.held(e, r.j));
        rules.shared[rules.num_shared++] = group;
    }
}

SplitRules split_rules(const Placement& pl, const Repartition& r, std::int32_t from_h) {
    SplitRules rules;
    rules.slots_per_gpu = pl.shape().slots_per_gpu;
    for (std::int32_t i = 0; i < r.n; ++i) {
        const bool on_h = i < from_h;
        if (on_h) rules.of_h |= 1u << i;
        if (on_h && !pl.may_host(r.slot[i], r.j)) rules.keep_h |= 1u << i;
        if (!on_h && !pl.may_host(r.slot[i], r.h)) rules.keep_j |= 1u << i;
    }
    if (pl.shape().no_duplicates) shared_experts(pl, r, rules);
    rules.fillers_h = count_fillers(pl, r.h, r.j);
    rules.fillers_j = count_fillers(pl, r.j, r.h);
    return rules;
}

// Load of the pooled slots whose bit is set, summed in slot order (as the Placement would).
double load_on(const Placement& pl, const Repartition& r, std::uint32_t on_h) {
    double load = 0.0;
    for (std::int32_t i = 0; i < r.n; ++i)
        if (on_h >> i & 1u) load += pl.slot_load(r.slot[i]);
    return load;
}

// The loads of the subsets of `count` slots: sums[m] = sum over the bits i of m of the load of
// slots[i] (m < 2^count).
void subset_loads(const Placement& pl, const std::int32_t* slots, std::int32_t count, double* sums) {
    sums[0] = 0.0;
    for (std::uint32_t m = 1; m < (1u << count); ++m)
        sums[m] = sums[m & (m - 1)] + pl.slot_load(slots[__builtin_ctz(m)]);
}

// The subsets of h's loaded slots, as the part of them that stays on h, by load (ascending;
// lower mask on ties). Filled once per best_repartition call, for the first pair it scans.
struct KeptSubsets {
    struct Subset {
        double load;
        std::uint32_t mask;
        bool operator<(const Subset& o) const { return load < o.load || (load == o.load && mask < o.mask); }
    };
    std::int32_t count = -1;                  // -1 until filled
    double total = 0.0;                       // load of all of h's loaded slots
    Subset by_load[1u << kRepartitionItems];  // left uninitialised until filled

    void fill(const Placement& pl, const std::int32_t* slots, std::int32_t n) {
        double sums[1u << kRepartitionItems];
        subset_loads(pl, slots, n, sums);
        for (std::uint32_t m = 0; m < (1u << n); ++m) by_load[m] = Subset{sums[m], m};
        std::sort(by_load, by_load + (1u << n));
        count = n;
        total = sums[(1u << n) - 1];
    }
};

// Every split of pair r, met in the middle: for each subset of j's loaded slots moving to h, the
// subsets of h's that may stay with it form a range of KeptSubsets::by_load (the load on h must
// leave both GPUs below best.peak). Keeps the first split found whose larger load is below
// best.peak (j's subsets by mask, then h's by load).
void scan_splits(const Placement& pl, Repartition r, std::int32_t from_h, KeptSubsets& kept, Repartition& best) {
    double largest = 0.0;
    for (std::int32_t i = 0; i < r.n; ++i) largest = std::max(largest, pl.slot_load(r.slot[i]));
    if (largest >= best.peak) return;  // its GPU keeps at least that much
    if (kept.count < 0) kept.fill(pl, r.slot, from_h);
    const std::int32_t from_j = r.n - from_h;
    double moved[1u << kRepartitionItems];
    subset_loads(pl, r.slot + from_h, from_j, moved);
    const double total = kept.total + moved[(1u << from_j) - 1];
    const KeptSubsets::Subset* begin = kept.by_load;
    const KeptSubsets::Subset* end = begin + (1u << from_h);
    SplitRules rules;
    bool have_rules = false;
    for (std::uint32_t to_h = 0; to_h < (1u << from_j); ++to_h) {
        // A margin over the subset sums' rounding; the exact loads decide.
        const double margin = best.peak * (1.0 + 1e-9);
        const double low = total - margin - moved[to_h], high = margin - moved[to_h];
        const KeptSubsets::Subset* it = std::upper_bound(begin, end, KeptSubsets::Subset{low, ~0u});
        for (; it != end && it->load < high; ++it) {
            const double on_h_load = it->load + moved[to_h];
            if (std::max(on_h_load, total - on_h_load) >= best.peak * (1.0 + 1e-9)) continue;
            const std::uint32_t on_h = it->mask | to_h << from_h;
            if (!have_rules) rules = split_rules(pl, r, from_h), have_rules = true;
            if (!rules.allow(on_h, r.n)) continue;
            const double peak = std::max(load_on(pl, r, on_h), load_on(pl, r, ~on_h & ((1u << r.n) - 1)));
            if (peak >= best.peak) continue;
            r.on_h = on_h;
            r.peak = peak;
            best = r;
        }
    }
}

// Swaps each slot of `from` in `leaving` with a slot without load of `to` that `from` accepts.
void swap_with_fillers(Placement& pl, const std::int32_t* leaving, std::int32_t count, std::int32_t from,
                       std::int32_t to) {
    const std::int32_t S = pl.shape().slots_per_gpu;
    // best_repartition counted enough of them (count_fillers).
    for (std::int32_t k = 0, p = to * S; k < count && p < (to + 1) * S; ++p)
        if (filler_fits(pl, p, from)) pl.swap_slots(leaving[k++], p);
}


}  // namespace

bool repartition_covers(const Placement& pl, std::int32_t h, std::int32_t j) {
    std::int32_t slots[kRepartitionItems];
    const std::int32_t from_h = pool_loaded_slots(pl, h, slots, 0);
    return from_h >= 0 && pool_loaded_slots(pl, j, slots, from_h) >= 0;
}

Repartition best_repartition(const Placement& pl, std::int32_t h, const std::vector<std::int32_t>& gpus, double limit) {
    Repartition best;
    best.peak = limit;
    Repartition r;
    r.h = h;
    const std::int32_t from_h = pool_loaded_slots(pl, h, r.slot, 0);
    if (from_h < 0) return best;
    KeptSubsets kept;
    const double load_h = pl.gpu_load(h);
    for (const std::int32_t j : gpus) {
        if (0.5 * (load_h + pl.gpu_load(j)) >= best.peak) break;
        if (j == h) continue;
        r.j = j;
        r.n = pool_loaded_slots(pl, j, r.slot, from_h);
        if (r.n < 0) continue;
        scan_splits(pl, r, from_h, kept, best);
    }
    return best;
}

void apply_repartition(Placement& pl, const Repartition& split) {
    std::int32_t to_j[kRepartitionItems], to_h[kRepartitionItems];
    std::int32_t n_to_j = 0, n_to_h = 0;
    for (std::int32_t i = 0; i < split.n; ++i) {
        const bool ends_on_h = split.on_h >> i & 1u;
        const bool starts_on_h = pl.gpu_of(split.slot[i]) == split.h;
        if (starts_on_h && !ends_on_h) to_j[n_to_j++] = split.slot[i];
        if (!starts_on_h && ends_on_h) to_h[n_to_h++] = split.slot[i];
    }
    const std::int32_t paired = std::min(n_to_j, n_to_h);
    for (std::int32_t k = 0; k < paired; ++k) pl.swap_slots(to_j[k], to_h[k]);
    swap_with_fillers(pl, to_j + paired, n_to_j - paired, split.h, split.j);
    swap_with_fillers(pl, to_h + paired, n_to_h - paired, split.j, split.h);
}

}  // namespace eplb::core
