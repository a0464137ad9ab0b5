#include "balanced_search.hpp"

#include "balanced_repartition.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

namespace eplb::core {
namespace {

// A change counts as an improvement only when it lowers a load by more than this relative
// amount: rounding noise can never make the search cycle.
constexpr double kRelativeGain = 1e-12;
// Count moves that take a replica from the heaviest GPU try this many receiving experts: those
// whose new replica would be lightest.
constexpr std::int32_t kReceivers = 4;
// Once a swap is found, the swap search tries this many more GPUs (lightest first: a pair can
// never do better than the mean of its two loads, so the lightest GPUs are the most promising).
constexpr std::int32_t kSwapPartners = 4;
// The iterated local search tries this many perturbations per round, least harmful first.
constexpr std::int32_t kTrials = 3;
// Exchanges of two slots are searched from GPUs with at most this many loaded slots (plus two
// without load): sparse layers, where few loaded replicas per GPU leave single swaps stuck.
constexpr std::int32_t kExchangeSlots = 6;
// lower_window_peaks takes a swap only when it lowers the sum of the window peaks by this
// relative amount.
constexpr double kWindowGain = 1e-4;
// lower_expected_peak takes a swap only when it lowers the expected peak by this relative amount.
constexpr double kExpectedGain = 1e-4;

struct Swap {
    std::int32_t a = -1, b = -1;  // slots on the heavy and on the other GPU
    double peak = 0.0;            // larger of the two new loads
};

std::int32_t first_slot(const Placement& pl, std::int32_t gpu) { return gpu * pl.shape().slots_per_gpu; }

// May the replicas in slots a (on GPU ga) and b (on GPU gb) trade places?
bool swappable(const Placement& pl, std::int32_t a, std::int32_t ga, std::int32_t b, std::int32_t gb) {
    const std::int32_t ea = pl.expert(a), eb = pl.expert(b);
    if (ea == eb || !pl.may_host(a, gb) || !pl.may_host(b, ga)) return false;
    return !pl.shape().no_duplicates || (pl.held(ea, gb) == 0 && pl.held(eb, ga) == 0);
}

// The order of the search's GPU lists: ascending load, lower id on ties.
bool lighter_gpu(const Placement& pl, std::int32_t a, std::int32_t b) {
    return pl.gpu_load(a) < pl.gpu_load(b) || (pl.gpu_load(a) == pl.gpu_load(b) && a < b);
}

void gpus_by_load(const Placement& pl, const Domain& d, std::vector<std::int32_t>& out) {
    out.clear();
    for (std::int32_t g = d.first_gpu; g < d.last_gpu; ++g) out.push_back(g);
    std::sort(out.begin(), out.end(), [&](std::int32_t a, std::int32_t b) { return lighter_gpu(pl, a, b); });
}

// One GPU pair of best_swap: GPU h (load_h) with GPU j (load_j). Every mode lets a replica move
// within its node, so only a pair on two nodes can hold slots that may not trade places.
struct SwapPair {
    std::int32_t h, j, first_h, first_j, slots;
    double load_h, load_j;
    bool crosses_nodes;
};

// Takes the swap of slot a (GPU h) with slot b (GPU j) as `best` when it is allowed and its larger
// new load is below best's.
void consider_swap(const Placement& pl, const SwapPair& pair, std::int32_t a, std::int32_t b, Swap& best) {
    const double d = pl.slot_load(a) - pl.slot_load(b);
    if (d <= 0.0) return;
    const double peak = std::max(pair.load_h - d, pair.load_j + d);
    if (peak >= best.peak || !swappable(pl, a, pair.h, b, pair.j)) return;
    best = Swap{a, b, peak};
}

// Rounding is monotone: no slot of j can give a peak below the best when the extreme
// differences cannot.
bool may_beat(const SwapPair& pair, double la, double lightest_j, double heaviest_j, double best) {
    return pair.load_h - (la - lightest_j) < best && pair.load_j + (la - heaviest_j) < best;
}

// May the replica in slot a (GPU h) move to GPU j of the pair?
bool may_move(const Placement& pl, const SwapPair& pair, std::int32_t a) {
    return !pair.crosses_nodes || pl.may_host(a, pair.j);
}

// Every swap of the pair, slots of h then slots of j in ascending order (a slot of h that may not
// move to j is skipped at once: no swap of it is allowed).
void scan_pair(const Placement& pl, const SwapPair& pair, Swap& best) {
    const double* loads = pl.slot_loads();
    const auto [lightest_j, heaviest_j] = std::minmax_element(loads + pair.first_j, loads + pair.first_j + pair.slots);
    for (std::int32_t a = pair.first_h; a < pair.first_h + pair.slots; ++a) {
        if (!may_beat(pair, loads[a], *lightest_j, *heaviest_j, best.peak) || !may_move(pl, pair, a)) continue;
        for (std::int32_t b = pair.first_j; b < pair.first_j + pair.slots; ++b) consider_swap(pl, pair, a, b, best);
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
// scan_pair with four slots of j at a time: a vector pass marks the slots whose swap could beat
// the best (the same float64 operations as consider_swap), which are then considered in order,
// so the result is scan_pair's.
__attribute__((target("avx2"))) void scan_pair_avx2(const Placement& pl, const SwapPair& pair, Swap& best) {
    const double* loads = pl.slot_loads();
    const auto [lightest_j, heaviest_j] = std::minmax_element(loads + pair.first_j, loads + pair.first_j + pair.slots);
    const __m256d load_h = _mm256_set1_pd(pair.load_h), load_j = _mm256_set1_pd(pair.load_j);
    const __m256d zero = _mm256_setzero_pd();
    for (std::int32_t a = pair.first_h; a < pair.first_h + pair.slots; ++a) {
        if (!may_beat(pair, loads[a], *lightest_j, *heaviest_j, best.peak) || !may_move(pl, pair, a)) continue;
        const __m256d la = _mm256_set1_pd(loads[a]);
        for (std::int32_t b0 = pair.first_j; b0 < pair.first_j + pair.slots; b0 += 4) {
            const std::int32_t n = std::min(4, pair.first_j + pair.slots - b0);
            const __m256i lanes = _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
            const __m256d d = _mm256_sub_pd(la, _mm256_maskload_pd(loads + b0, lanes));
            const __m256d peak = _mm256_max_pd(_mm256_sub_pd(load_h, d), _mm256_add_pd(load_j, d));
            const __m256d beats = _mm256_and_pd(_mm256_cmp_pd(d, zero, _CMP_GT_OQ),
                                                _mm256_cmp_pd(peak, _mm256_set1_pd(best.peak), _CMP_LT_OQ));
            for (unsigned bits = static_cast<unsigned>(_mm256_movemask_pd(beats)) & ((1u << n) - 1); bits;
                 bits &= bits - 1)
                consider_swap(pl, pair, a, b0 + __builtin_ctz(bits), best);
        }
    }
}

bool cpu_has_avx2() {
    static const bool avx2 = __builtin_cpu_supports("avx2");
    return avx2;
}
#else
void scan_pair_avx2(const Placement& pl, const SwapPair& pair, Swap& best) { scan_pair(pl, pair, best); }
bool cpu_has_avx2() { return false; }
#endif

std::atomic<bool> vector_scan_allowed{true};

bool have_avx2() { return vector_scan_allowed.load(std::memory_order_relaxed) && cpu_has_avx2(); }

// The best swap between GPU h and another GPU of the domain whose larger new load is below
// `limit`. GPUs come lightest first; the scan stops where the mean of the pair's loads reaches the
// best peak found (no later GPU can beat it) or kSwapPartners GPUs after the first swap found.
Swap best_swap(const Placement& pl, std::int32_t h, const std::vector<std::int32_t>& gpus, double limit) {
    const std::int32_t S = pl.shape().slots_per_gpu;
    const double load_h = pl.gpu_load(h);
    const std::int32_t node_h = pl.node_of_gpu(h);
    const bool avx2 = have_avx2();
    Swap best;
    best.peak = limit;
    std::int32_t partners_after_found = 0;
    for (const std::int32_t j : gpus) {
        const double load_j = pl.gpu_load(j);
        if (0.5 * (load_h + load_j) >= best.peak) break;
        if (best.a >= 0 && partners_after_found++ == kSwapPartners) break;
        if (j == h) continue;
        const SwapPair pair{h, j, first_slot(pl, h), first_slot(pl, j), S, load_h, load_j, pl.node_of_gpu(j) != node_h};
        if (avx2)
            scan_pair_avx2(pl, pair, best);
        else
            scan_pair(pl, pair, best);
    }
    return best;
}

// An exchange of two slots of GPU h (a) with two slots of another GPU j (b): a[0] <-> b[0] and
// a[1] <-> b[1]. A slot of an expert without load on either side makes it a move of one replica
// against two, or of one replica alone.
struct Exchange {
    std::int32_t a[2] = {-1, -1}, b[2] = {-1, -1};
    double peak = 0.0;  // larger of the two new loads
};

// The slots of GPU g an exchange may take: its loaded slots and up to two slots without load.
void exchange_slots(const Placement& pl, std::int32_t g, std::vector<std::int32_t>& out) {
    out.clear();
    std::int32_t empty = 0;
    for (std::int32_t p = first_slot(pl, g); p < first_slot(pl, g + 1); ++p)
        if (pl.slot_load(p) > 0.0 || empty++ < 2) out.push_back(p);
}

// Replicas left on GPU `to` of the expert in `slot` once the slots `leaving` [2] have left it.
std::int32_t held_after(const Placement& pl, std::int32_t slot, std::int32_t to, const std::int32_t* leaving) {
    const std::int32_t e = pl.expert(slot);
    return pl.held(e, to) - (pl.expert(leaving[0]) == e) - (pl.expert(leaving[1]) == e);
}

// May slots a [2] of GPU h and b [2] of GPU j trade places?
bool exchangeable(const Placement& pl, const std::int32_t* a, std::int32_t h, const std::int32_t* b, std::int32_t j) {
    for (std::int32_t k = 0; k < 2; ++k) {
        if (pl.expert(a[k]) == pl.expert(b[k]) || !pl.may_host(a[k], j) || !pl.may_host(b[k], h)) return false;
        if (pl.shape().no_duplicates && (held_after(pl, a[k], j, b) > 0 || held_after(pl, b[k], h, a) > 0)) return false;
    }
    return pl.expert(a[0]) != pl.expert(a[1]) && pl.expert(b[0]) != pl.expert(b[1]);
}

// The best exchange of two slots between GPU h and another GPU of the domain (lightest first)
// whose larger new load is below `limit`; for when no single swap helps. With
// `skip_repartitioned`, pairs that best_repartition searched are left out. Each pair of GPUs costs
// O(k^4) for k loaded slots per GPU, which is small on the sparse layers where swaps get stuck.
Exchange best_exchange(const Placement& pl, std::int32_t h, const std::vector<std::int32_t>& gpus, double limit,
                       bool skip_repartitioned, SearchScratch& scratch) {
    const double load_h = pl.gpu_load(h);
    std::vector<std::int32_t>& mine = scratch.candidates;
    std::vector<std::int32_t>& theirs = scratch.slots;
    exchange_slots(pl, h, mine);
    Exchange best;
    best.peak = limit;
    if (static_cast<std::int32_t>(mine.size()) > kExchangeSlots) return best;
    for (const std::int32_t j : gpus) {
        const double load_j = pl.gpu_load(j);
        if (0.5 * (load_h + load_j) >= best.peak) break;
        if (j == h || (skip_repartitioned && repartition_covers(pl, h, j))) continue;
        exchange_slots(pl, j, theirs);
        const std::size_t m = mine.size(), t = theirs.size();
        for (std::size_t i0 = 0; i0 < m; ++i0)
            for (std::size_t i1 = i0 + 1; i1 < m; ++i1) {
                const std::int32_t a[2] = {mine[i0], mine[i1]};
                const double out = pl.slot_load(a[0]) + pl.slot_load(a[1]);
                for (std::size_t k0 = 0; k0 < t; ++k0)
                    for (std::size_t k1 = k0 + 1; k1 < t; ++k1) {
                        const std::int32_t b[2] = {theirs[k0], theirs[k1]};
                        const double d = out - pl.slot_load(b[0]) - pl.slot_load(b[1]);
                        if (d <= 0.0) continue;
                        const double peak = std::max(load_h - d, load_j + d);
                        if (peak >= best.peak || !exchangeable(pl, a, h, b, j)) continue;
                        best = Exchange{{a[0], a[1]}, {b[0], b[1]}, peak};
                    }
            }
    }
    return best;
}

// Experts of the domain that GPU `gpu` accepts and that may grow, lightest new replica first
// (w / (c + 1), lower id on ties); at most `limit` of them.
void lightest_receivers(const Placement& pl, const Domain& d, std::int32_t gpu, std::int32_t limit,
                        std::vector<std::int32_t>& out) {
    out.clear();
    auto lighter = [&](std::int32_t a, std::int32_t b) {
        const double la = pl.next_replica_load(a), lb = pl.next_replica_load(b);
        return la < lb || (la == lb && a < b);
    };
    for (std::int32_t k = 0; k < d.num_experts; ++k) {
        const std::int32_t b = d.experts[k];
        if (!pl.accepts(b, gpu) || !pl.may_grow(b)) continue;
        if (static_cast<std::int32_t>(out.size()) < limit) {
            out.insert(std::upper_bound(out.begin(), out.end(), b, lighter), b);
        } else if (lighter(b, out.back())) {
            out.pop_back();
            out.insert(std::upper_bound(out.begin(), out.end(), b, lighter), b);
        }
    }
}

// Count moves that lower GPU h: (i) an expert b on h gets one more replica in a slot elsewhere
// in the domain (all of b's replicas get lighter); (ii) a replica on h is given to one of the
// experts whose new replica would be lightest (none of them is on h: h does not accept them).
CountMove best_count_move(const Placement& pl, std::int32_t h, const Domain& d, double limit,
                          SearchScratch& scratch) {
    const std::int32_t S = pl.shape().slots_per_gpu;
    const double load_h = pl.gpu_load(h);
    CountMove best;
    best.peak = limit;
    auto consider = [&](std::int32_t slot, std::int32_t to) {
        const double peak = pl.retarget_peak(slot, to, best.peak);
        if (peak < best.peak) best = CountMove{slot, to, peak};
    };
    std::vector<std::int32_t>& givers = scratch.slots;  // slots of the domain that may change hands
    givers.clear();
    for (std::int32_t slot = first_slot(pl, d.first_gpu); slot < first_slot(pl, d.last_gpu); ++slot)
        if (pl.count(pl.expert(slot)) >= 2 && pl.gpu_of(slot) != h && pl.may_release(slot)) givers.push_back(slot);
    for (std::int32_t s = first_slot(pl, h); s < first_slot(pl, h) + S; ++s) {  // (i)
        const std::int32_t b = pl.expert(s);
        if (pl.held(b, h) != 1 || !pl.may_grow(b)) continue;
        const double grown = pl.next_replica_load(b);
        if (load_h - (pl.slot_load(s) - grown) >= best.peak) continue;
        for (const std::int32_t slot : givers) {
            const std::int32_t j = pl.gpu_of(slot);
            if (pl.gpu_load(j) - pl.slot_load(slot) + grown >= best.peak) continue;
            if (pl.expert(slot) == b || !pl.accepts(b, j)) continue;
            consider(slot, b);
        }
    }
    lightest_receivers(pl, d, h, kReceivers, scratch.candidates);
    for (std::int32_t slot = first_slot(pl, h); slot < first_slot(pl, h) + S; ++slot) {  // (ii)
        if (!pl.may_release(slot)) continue;
        for (const std::int32_t b : scratch.candidates) consider(slot, b);
    }
    return best;
}

// The perturbations tried on GPU h: for each of its releasable slots the least harmful new
// expert, and for each of its experts the least harmful slot of the domain to grow into.
void perturbations(const Placement& pl, std::int32_t h, const Domain& d, SearchScratch& scratch,
                   std::vector<CountMove>& out) {
    const std::int32_t S = pl.shape().slots_per_gpu;
    const double inf = std::numeric_limits<double>::infinity();
    out.clear();
    // The kReceivers lightest other than a slot's own expert are among the kReceivers + 1 lightest.
    lightest_receivers(pl, d, h, kReceivers + 1, scratch.candidates);
    for (std::int32_t s = first_slot(pl, h); s < first_slot(pl, h) + S; ++s) {
        if (!pl.may_release(s)) continue;
        CountMove best;
        best.peak = inf;
        std::int32_t tried = 0;
        for (const std::int32_t b : scratch.candidates) {
            if (b == pl.expert(s)) continue;
            if (tried++ == kReceivers) break;
            const double peak = pl.retarget_peak(s, b, best.peak);
            if (peak < best.peak) best = CountMove{s, b, peak};
        }
        if (best.slot >= 0) out.push_back(best);
    }
    for (std::int32_t s = first_slot(pl, h); s < first_slot(pl, h) + S; ++s) {
        const std::int32_t b = pl.expert(s);
        if (pl.held(b, h) != 1 || !pl.may_grow(b)) continue;
        CountMove best;
        best.peak = inf;
        for (std::int32_t slot = first_slot(pl, d.first_gpu); slot < first_slot(pl, d.last_gpu); ++slot) {
            const std::int32_t j = pl.gpu_of(slot);
            if (j == h || pl.expert(slot) == b || !pl.accepts(b, j) || !pl.may_release(slot)) continue;
            const double peak = pl.retarget_peak(slot, b, best.peak);
            if (peak < best.peak) best = CountMove{slot, b, peak};
        }
        if (best.slot >= 0) out.push_back(best);
    }
}

}  // namespace

namespace {

// GPU g's share of window t: its slots' shares summed in slot order.
void refresh_window_gpu(const Placement& pl, WindowScratch& s, std::int64_t t, std::int32_t g) {
    const std::int32_t R = pl.shape().slots, S = pl.shape().slots_per_gpu;
    double sum = 0.0;
    for (std::int32_t p = g * S; p < (g + 1) * S; ++p) sum += s.slot[static_cast<std::size_t>(t * R + p)];
    s.gpu[static_cast<std::size_t>(t * pl.shape().gpus + g)] = sum;
}

// The shares of window t (1 / W_t) and of every slot, and the GPU sums in slot order.
void load_window_shares(const Placement& pl, const LayerHistory& h, WindowScratch& s) {
    const std::int32_t R = pl.shape().slots, E = pl.shape().experts;
    s.share.assign(static_cast<std::size_t>(h.count), 0.0);
    s.slot.resize(static_cast<std::size_t>(h.count * R));
    s.gpu.resize(static_cast<std::size_t>(h.count * pl.shape().gpus));
    for (std::int64_t t = 0; t < h.count; ++t) {
        const float* w = h.windows + t * h.stride;
        double total = 0.0;
        for (std::int32_t e = 0; e < E; ++e) total += w[e];
        const double share = total > 0.0 ? 1.0 / total : 0.0;
        s.share[static_cast<std::size_t>(t)] = share;
        for (std::int32_t p = 0; p < R; ++p) {
            const std::int32_t e = pl.expert(p);
            s.slot[static_cast<std::size_t>(t * R + p)] = static_cast<double>(w[e]) / pl.count(e) * share;
        }
        for (std::int32_t g = 0; g < pl.shape().gpus; ++g) refresh_window_gpu(pl, s, t, g);
    }
}

// The three heaviest GPUs of every window [k, 3] (-1 where there are fewer GPUs); returns the
// sum of the window peaks.
double window_peaks(const Placement& pl, std::int64_t k, WindowScratch& s) {
    const std::int32_t G = pl.shape().gpus;
    s.top.assign(static_cast<std::size_t>(k * 3), -1);
    double sum = 0.0;
    for (std::int64_t t = 0; t < k; ++t) {
        const double* gpu = s.gpu.data() + t * G;
        std::int32_t* top = s.top.data() + t * 3;
        for (std::int32_t g = 0; g < G; ++g) {
            std::int32_t i = 3;
            while (i > 0 && (top[i - 1] < 0 || gpu[g] > gpu[top[i - 1]])) --i;
            if (i == 3) continue;
            for (std::int32_t m = 2; m > i; --m) top[m] = top[m - 1];
            top[i] = g;
        }
        sum += gpu[top[0]];
    }
    return sum;
}

// Window t's largest GPU share other than GPUs h and j (0 when there is none).
double peak_without(const WindowScratch& s, std::int64_t t, std::int32_t G, std::int32_t h, std::int32_t j) {
    for (std::int32_t i = 0; i < 3; ++i) {
        const std::int32_t g = s.top[static_cast<std::size_t>(t * 3 + i)];
        if (g < 0) break;
        if (g != h && g != j) return s.gpu[static_cast<std::size_t>(t * G + g)];
    }
    return 0.0;
}

void window_pair_terms(const Placement& pl, WindowScratch& s, std::int64_t k, std::int32_t h, std::int32_t j) {
    const std::int32_t G = pl.shape().gpus;
    s.pair.clear();
    s.pair_floor = 0.0;
    // Windows whose peak is on h or j first: only they can fall; in the others the peak stays.
    for (const bool peak_on_pair : {true, false}) {
        for (std::int64_t t = 0; t < k; ++t) {
            const std::int32_t top = s.top[static_cast<std::size_t>(t * 3)];
            if (s.share[static_cast<std::size_t>(t)] == 0.0 || (top == h || top == j) != peak_on_pair) continue;
            const double* gpu = s.gpu.data() + t * G;
            const double others = peak_without(s, t, G, h, j);
            const double floor = std::max(others, 0.5 * (gpu[h] + gpu[j]));
            s.pair.push_back(WindowPair{t, others, gpu[h], gpu[j], gpu[top], floor, top == h});
            if (peak_on_pair) s.pair_floor += floor - gpu[top];
        }
        if (peak_on_pair) s.falling = s.pair.size();
    }
}

// At least window_peaks_change for every swap of the pair that moves slot a off GPU h: in a
// window whose peak is on h, the new peak is also at least h's share less a's.
double slot_floor(const WindowScratch& s, std::int32_t R, std::int32_t a) {
    double floor = s.pair_floor;
    for (std::size_t i = 0; i < s.falling; ++i) {
        const WindowPair& w = s.pair[i];
        if (!w.peak_on_h) continue;
        const double without_a = w.h - s.slot[static_cast<std::size_t>(w.t * R + a)];
        if (without_a > w.floor) floor += without_a - w.floor;
    }
    return floor;
}

// The change of the sum of window peaks if slots a (GPU h) and b (GPU j) of the pair traded
// places, or a value >= `bound` once it cannot be below it.
double window_peaks_change(const Placement& pl, const WindowScratch& s, std::int32_t a, std::int32_t b, double bound) {
    const std::int32_t R = pl.shape().slots;
    double change = 0.0;
    for (std::size_t i = 0; i < s.pair.size(); ++i) {
        if (i == s.falling && change >= bound) return change;  // the other windows add >= 0
        const WindowPair& w = s.pair[i];
        const double x = s.slot[static_cast<std::size_t>(w.t * R + a)] - s.slot[static_cast<std::size_t>(w.t * R + b)];
        change += std::max({w.others, w.h - x, w.j + x}) - w.peak;
    }
    return change;
}

// The kSwapPartners GPUs of domain d other than g with the least `score` [G] (lower id on ties),
// into s.partners.
const std::vector<std::int32_t>& least_scored(const Domain& d, std::int32_t g, const double* score, WindowScratch& s) {
    auto lighter = [&](std::int32_t a, std::int32_t b) { return score[a] < score[b] || (score[a] == score[b] && a < b); };
    // The kSwapPartners least so far, in order: each GPU is inserted where it belongs, and the
    // list keeps its first kSwapPartners (the order is total, so this is the sorted prefix).
    s.partners.clear();
    for (std::int32_t j = d.first_gpu; j < d.last_gpu; ++j) {
        if (j == g) continue;
        const bool full = s.partners.size() == static_cast<std::size_t>(kSwapPartners);
        if (full && !lighter(j, s.partners.back())) continue;
        if (full) s.partners.pop_back();
        auto at = s.partners.end();
        while (at != s.partners.begin() && lighter(j, *(at - 1))) --at;
        s.partners.insert(at, j);
    }
    return s.partners;
}

// The kSwapPartners GPUs of the domain other than g with the least share summed over the windows
// (lower id on ties).
const std::vector<std::int32_t>& lightest_in_windows(const Placement& pl, const Domain& d, std::int32_t g,
                                                     std::int64_t k, WindowScratch& s) {
    const std::int32_t G = pl.shape().gpus;
    s.summed.assign(static_cast<std::size_t>(G), 0.0);
    for (std::int32_t j = d.first_gpu; j < d.last_gpu; ++j)
        for (std::int64_t t = 0; j != g && t < k; ++t) s.summed[j] += s.gpu[static_cast<std::size_t>(t * G + j)];
    return least_scored(d, g, s.summed.data(), s);
}

}  // namespace

std::int32_t lower_window_peaks(Placement& pl, const LayerHistory& h, double cap, std::int32_t max_steps,
                                WindowScratch& s) {
    if (h.count < 2) return 0;
    const std::int32_t R = pl.shape().slots, S = pl.shape().slots_per_gpu;
    load_window_shares(pl, h, s);
    std::int32_t steps = 0;
    while (steps < max_steps) {
        const double current = window_peaks(pl, h.count, s);
        s.heavy.clear();  // the windows' heaviest GPUs, each once, ascending
        for (std::int64_t t = 0; t < h.count; ++t)
            if (s.share[static_cast<std::size_t>(t)] > 0.0) s.heavy.push_back(s.top[static_cast<std::size_t>(t * 3)]);
        std::sort(s.heavy.begin(), s.heavy.end());
        s.heavy.erase(std::unique(s.heavy.begin(), s.heavy.end()), s.heavy.end());
        double best_change = -kWindowGain * current;
        // The floors skip pairs and slots that cannot beat the best change; the margin covers
        // their rounding, so that the swaps chosen are those of the full scan.
        const double margin = 1e-12 * current;
        std::int32_t best_a = -1, best_b = -1;
        for (const std::int32_t g : s.heavy) {
            const Domain d = pl.domain(pl.domain_index(g));
            for (const std::int32_t j : lightest_in_windows(pl, d, g, h.count, s)) {
                window_pair_terms(pl, s, h.count, g, j);
                if (s.pair_floor > best_change + margin) continue;
                for (std::int32_t a = g * S; a < (g + 1) * S; ++a) {
                    if (slot_floor(s, R, a) > best_change + margin) continue;
                    for (std::int32_t b = j * S; b < (j + 1) * S; ++b) {
                        const double diff = pl.slot_load(a) - pl.slot_load(b);
                        if (std::max(pl.gpu_load(g) - diff, pl.gpu_load(j) + diff) > cap * (1.0 - kRelativeGain)) continue;
                        const double change = window_peaks_change(pl, s, a, b, best_change);
                        if (change >= best_change || !swappable(pl, a, g, b, j)) continue;
                        best_change = change;
                        best_a = a;
                        best_b = b;
                    }
                }
            }
        }
        if (best_a < 0) break;
        pl.swap_slots(best_a, best_b);
        for (std::int64_t t = 0; t < h.count; ++t) {
            std::swap(s.slot[static_cast<std::size_t>(t * R + best_a)], s.slot[static_cast<std::size_t>(t * R + best_b)]);
            refresh_window_gpu(pl, s, t, pl.gpu_of(best_a));
            refresh_window_gpu(pl, s, t, pl.gpu_of(best_b));
        }
        ++steps;
    }
    return steps;
}

namespace {

// GPU g's expected load, summed in slot order.
void refresh_expected_gpu(const Placement& pl, WindowScratch& s, std::int32_t g) {
    const std::int32_t S = pl.shape().slots_per_gpu;
    double sum = 0.0;
    for (std::int32_t p = g * S; p < (g + 1) * S; ++p) sum += s.slot[p];
    s.gpu[g] = sum;
}

// lower_expected_peak's terms: each slot's expected load m_e / c_e (s.slot [R]) and their sums
// per GPU (s.gpu [G]).
void load_expected_shares(const Placement& pl, const double* expected, WindowScratch& s) {
    const std::int32_t E = pl.shape().experts, R = pl.shape().slots, G = pl.shape().gpus;
    s.replica.resize(static_cast<std::size_t>(E));  // per expert, where the divisions vectorise
    double* __restrict replica = s.replica.data();
    for (std::int32_t e = 0; e < E; ++e) replica[e] = expected[e] / pl.count(e);
    s.slot.resize(static_cast<std::size_t>(R));
    for (std::int32_t p = 0; p < R; ++p) s.slot[p] = replica[pl.expert(p)];
    s.gpu.resize(static_cast<std::size_t>(G));
    for (std::int32_t g = 0; g < G; ++g) refresh_expected_gpu(pl, s, g);
}

struct ExpectedSwap {
    std::int32_t a = -1, b = -1;  // slots on GPUs h and j
    double peak = 0.0;            // max(M_h, M_j) after the swap
};

// One GPU pair of lower_expected_peak: GPU h (loads L_h on w, M_h expected) with GPU j. A swap
// can keep the GPU whose load rises <= limit only when L_a - L_b lies in
// [-(limit - L_h), limit - L_j], i.e. |L_a - L_b - centre| <= half_width (widened for rounding).
struct ExpectedPair {
    std::int32_t h, j, slots;
    double lh, lj, mh, mj, limit, centre, half_width;

    ExpectedPair(const Placement& pl, const WindowScratch& s, std::int32_t h_, std::int32_t j_, double limit_)
        : h(h_), j(j_), slots(pl.shape().slots_per_gpu), lh(pl.gpu_load(h_)), lj(pl.gpu_load(j_)),
          mh(s.gpu[h_]), mj(s.gpu[j_]), limit(limit_) {
        const double margin = 1e-12 * limit;
        const double lowest = -std::max(limit - lh, 0.0) - margin, highest = std::max(limit - lj, 0.0) + margin;
        centre = 0.5 * (lowest + highest);
        half_width = 0.5 * (highest - lowest);
    }
};

// Takes the swap of slot a (GPU h) with slot b (GPU j) as `best` when the GPU whose load rises
// stays <= limit, it moves expected load from h to j (moved = m_a - m_b > 0) and its larger new
// expected load max(M_h - moved, M_j + moved) is below best's.
void consider_expected_swap(const Placement& pl, const WindowScratch& s, const ExpectedPair& pair, std::int32_t a,
                            std::int32_t b, ExpectedSwap& best) {
    const double diff = pl.slot_load(a) - pl.slot_load(b);
    if (diff != 0.0 && (diff > 0.0 ? pair.lj + diff : pair.lh - diff) > pair.limit) return;
    const double moved = s.slot[a] - s.slot[b];
    const double peak = std::max(pair.mh - moved, pair.mj + moved);
    if (moved <= 0.0 || peak >= best.peak || !swappable(pl, a, pair.h, b, pair.j)) return;
    best = ExpectedSwap{a, b, peak};
}

// Every swap of the pair, slots of h then slots of j in ascending order; the load test, which
// rules out nearly every swap, first, as one predictable branch.
void scan_expected_pair(const Placement& pl, const WindowScratch& s, const ExpectedPair& pair, ExpectedSwap& best) {
    for (std::int32_t a = pair.h * pair.slots; a < (pair.h + 1) * pair.slots; ++a)
        for (std::int32_t b = pair.j * pair.slots; b < (pair.j + 1) * pair.slots; ++b)
            if (std::abs(pl.slot_load(a) - pl.slot_load(b) - pair.centre) <= pair.half_width)
                consider_expected_swap(pl, s, pair, a, b, best);
}

#if defined(__x86_64__) && defined(__GNUC__)
// scan_expected_pair with four slots of j at a time: a vector pass marks the swaps that pass the
// load test and could beat the best one, which are then considered in order (the same swaps). j's
// loads are copied into s.lanes, padded to a multiple of four with NaN, which fails every test.
__attribute__((target("avx2"))) void scan_expected_pair_avx2(const Placement& pl, WindowScratch& s,
                                                             const ExpectedPair& pair, ExpectedSwap& best) {
    const std::int32_t first_j = pair.j * pair.slots, padded = (pair.slots + 3) / 4 * 4;
    s.lanes.assign(static_cast<std::size_t>(2 * padded), std::numeric_limits<double>::quiet_NaN());
    double* lb = s.lanes.data();
    double* mb = lb + padded;
    for (std::int32_t k = 0; k < pair.slots; ++k) {
        lb[k] = pl.slot_load(first_j + k);
        mb[k] = s.slot[first_j + k];
    }
    const __m256d centre = _mm256_set1_pd(pair.centre), half_width = _mm256_set1_pd(pair.half_width);
    const __m256d mh = _mm256_set1_pd(pair.mh), mj = _mm256_set1_pd(pair.mj);
    const __m256d zero = _mm256_setzero_pd(), sign = _mm256_set1_pd(-0.0);
    for (std::int32_t a = pair.h * pair.slots; a < (pair.h + 1) * pair.slots; ++a) {
        const __m256d la = _mm256_set1_pd(pl.slot_load(a)), ma = _mm256_set1_pd(s.slot[a]);
        for (std::int32_t k0 = 0; k0 < padded; k0 += 4) {
            const __m256d off = _mm256_andnot_pd(sign, _mm256_sub_pd(_mm256_sub_pd(la, _mm256_loadu_pd(lb + k0)), centre));
            const __m256d moved = _mm256_sub_pd(ma, _mm256_loadu_pd(mb + k0));
            const __m256d peak = _mm256_max_pd(_mm256_sub_pd(mh, moved), _mm256_add_pd(mj, moved));
            const __m256d fits = _mm256_and_pd(_mm256_cmp_pd(off, half_width, _CMP_LE_OQ),
                                               _mm256_and_pd(_mm256_cmp_pd(moved, zero, _CMP_GT_OQ),
                                                             _mm256_cmp_pd(peak, _mm256_set1_pd(best.peak), _CMP_LT_OQ)));
            for (unsigned bits = static_cast<unsigned>(_mm256_movemask_pd(fits)); bits; bits &= bits - 1)
                consider_expected_swap(pl, s, pair, a, first_j + k0 + __builtin_ctz(bits), best);
        }
    }
}
#else
void scan_expected_pair_avx2(const Placement& pl, WindowScratch& s, const ExpectedPair& pair, ExpectedSwap& best) {
    scan_expected_pair(pl, s, pair, best);
}
#endif

}  // namespace

void expected_next_loads(const double* w, std::int32_t E, double persistence, double* m) {
    // Four running sums, so that the additions do not wait on each other.
    double sum[4] = {0.0, 0.0, 0.0, 0.0};
    std::int32_t e = 0;
    for (; e + 4 <= E; e += 4)
        for (std::int32_t k = 0; k < 4; ++k) sum[k] += w[e + k];
    for (; e < E; ++e) sum[0] += w[e];
    const double mean = ((sum[0] + sum[1]) + (sum[2] + sum[3])) / static_cast<double>(E);
    for (e = 0; e < E; ++e) m[e] = persistence * w[e] + (1.0 - persistence) * mean;
}

std::int32_t lower_expected_peak(Placement& pl, const double* expected, double cap, std::int32_t max_steps,
                                 WindowScratch& s) {
    load_expected_shares(pl, expected, s);  // a layer without load has no swap that moves any
    const double limit = cap * (1.0 - kRelativeGain);
    const bool avx2 = have_avx2();
    std::int32_t steps = 0;
    while (steps < max_steps) {
        const auto h = static_cast<std::int32_t>(std::max_element(s.gpu.begin(), s.gpu.end()) - s.gpu.begin());
        ExpectedSwap best{-1, -1, s.gpu[h] * (1.0 - kExpectedGain)};
        for (const std::int32_t j : least_scored(pl.domain(pl.domain_index(h)), h, s.gpu.data(), s)) {
            const ExpectedPair pair(pl, s, h, j, limit);
            if (avx2)
                scan_expected_pair_avx2(pl, s, pair, best);
            else
                scan_expected_pair(pl, s, pair, best);
        }
        if (best.a < 0) break;
        pl.swap_slots(best.a, best.b);
        std::swap(s.slot[best.a], s.slot[best.b]);
        refresh_expected_gpu(pl, s, pl.gpu_of(best.a));
        refresh_expected_gpu(pl, s, pl.gpu_of(best.b));
        ++steps;
    }
    return steps;
}

void allow_vector_swap_scan(bool allowed) { vector_scan_allowed.store(allowed, std::memory_order_relaxed); }

double domain_max(const Placement& pl, const Domain& d) { return pl.gpu_load(pl.heaviest_gpu(d.first_gpu, d.last_gpu)); }

// Moves GPUs a and b to their places in `gpus` (ascending load, lower id on ties) after their
// loads changed: both leave first, so that each goes back into a sorted list.
void reposition(const Placement& pl, std::vector<std::int32_t>& gpus, std::int32_t a, std::int32_t b) {
    auto before = [&](std::int32_t x, std::int32_t y) { return lighter_gpu(pl, x, y); };
    gpus.erase(std::remove_if(gpus.begin(), gpus.end(), [&](std::int32_t g) { return g == a || g == b; }), gpus.end());
    for (const std::int32_t g : {a, b}) gpus.insert(std::lower_bound(gpus.begin(), gpus.end(), g, before), g);
}

// Swaps slots a0 and b0 (and a1 and b1 unless negative) of GPU h and another GPU, keeping
// `gpus` sorted.
void trade(Placement& pl, std::vector<std::int32_t>& gpus, std::int32_t h, std::int32_t a0, std::int32_t b0,
           std::int32_t a1 = -1, std::int32_t b1 = -1) {
    pl.swap_slots(a0, b0);
    if (a1 >= 0) pl.swap_slots(a1, b1);
    reposition(pl, gpus, h, pl.gpu_of(b0));
}

std::int32_t improve_placement(Placement& pl, const Domain& d, double stop_load, bool count_moves,
                               std::int32_t max_steps, SearchScratch& scratch) {
    if (domain_max(pl, d) <= stop_load) return 0;
    std::vector<std::int32_t>& gpus = scratch.gpus;
    gpus_by_load(pl, d, gpus);
    const bool repartitions = repartitions_allowed(pl);
    std::int32_t steps = 0;
    while (steps < max_steps) {
        const double load_h = pl.gpu_load(gpus.back());
        if (load_h <= stop_load) break;
        // The heaviest GPU with the lowest id among those tied at the top.
        auto top = std::lower_bound(gpus.begin(), gpus.end(), load_h,
                                    [&](std::int32_t g, double v) { return pl.gpu_load(g) < v; });
        const std::int32_t h = *top;
        const double limit = load_h * (1.0 - kRelativeGain);
        const Swap swap = best_swap(pl, h, gpus, limit);
        if (swap.a >= 0) {
            trade(pl, gpus, h, swap.a, swap.b);
        } else if (const Repartition split = repartitions ? best_repartition(pl, h, gpus, limit) : Repartition{};
                   split.j >= 0) {
            apply_repartition(pl, split);
            reposition(pl, gpus, h, split.j);
        } else if (const Exchange ex = best_exchange(pl, h, gpus, limit, repartitions, scratch); ex.a[0] >= 0) {
            trade(pl, gpus, h, ex.a[0], ex.b[0], ex.a[1], ex.b[1]);
        } else {
            const CountMove move = count_moves ? best_count_move(pl, h, d, limit, scratch) : CountMove{};
            if (move.slot < 0) break;
            pl.retarget(move.slot, move.expert);
            gpus_by_load(pl, d, gpus);
        }
        ++steps;
    }
    return steps;
}

namespace {

// One pass over the GPUs of the domain, heaviest first: each GPU that a swap with a lighter GPU
// can lower (both new loads below its old load) takes the best such swap. It lowers the GPUs
// below the peak, which gives the heaviest new partners afterwards; each change lowers the
// sorted vector of loads.
std::int32_t flatten_placement(Placement& pl, const Domain& d, SearchScratch& scratch) {
    std::vector<std::int32_t>& gpus = scratch.gpus;
    std::vector<std::int32_t>& order = scratch.candidates;
    gpus_by_load(pl, d, gpus);
    order.assign(gpus.rbegin(), gpus.rend());
    std::int32_t steps = 0;
    for (const std::int32_t i : order) {
        const Swap swap = best_swap(pl, i, gpus, pl.gpu_load(i) * (1.0 - kRelativeGain));
        if (swap.a < 0) continue;
        trade(pl, gpus, i, swap.a, swap.b);
        ++steps;
    }
    return steps;
}

// Applies a count move, then the local search with count moves; returns the domain's new peak.
double search_after(Placement& pl, const Domain& d, const CountMove& move, double stop_load, std::int32_t max_steps,
                    SearchScratch& scratch) {
    pl.retarget(move.slot, move.expert);
    improve_placement(pl, d, stop_load, /*count_moves=*/true, max_steps, scratch);
    return domain_max(pl, d);
}

}  // namespace

std::int32_t escape_local_optimum(Placement& pl, const Domain& d, double stop_load, std::int32_t rounds,
                                  std::int32_t max_steps, SearchScratch& scratch) {
    std::int32_t improved = 0;
    for (std::int32_t round = 0; round < rounds; ++round) {
        const double before = domain_max(pl, d);
        if (before <= stop_load) break;
        bool kept = false;
        std::vector<CountMove>& moves = scratch.moves;
        perturbations(pl, pl.heaviest_gpu(d.first_gpu, d.last_gpu), d, scratch, moves);
        std::stable_sort(moves.begin(), moves.end(), [](const CountMove& a, const CountMove& b) { return a.peak < b.peak; });
        if (moves.size() > static_cast<std::size_t>(kTrials)) moves.resize(static_cast<std::size_t>(kTrials));
        const std::size_t mark = pl.checkpoint();
        for (const CountMove& move : moves) {
            if (search_after(pl, d, move, stop_load, max_steps, scratch) < before * (1.0 - kRelativeGain)) {
                kept = true;
                break;
            }
            pl.rollback(mark);
        }
        if (!kept && flatten_placement(pl, d, scratch) > 0) {
            improve_placement(pl, d, stop_load, /*count_moves=*/true, max_steps, scratch);
            kept = domain_max(pl, d) < before * (1.0 - kRelativeGain);
            if (!kept) pl.rollback(mark);
        }
        pl.commit();
        if (!kept) break;
        ++improved;
    }
    return improved;
}

namespace {

// For each expert b on GPU h with one replica there that may grow, and each other expert a of
// the domain with two replicas or more: the slot of a (off h, on a GPU that accepts b) whose
// change to b keeps the loads it touches lowest.
void count_candidates(const Placement& pl, std::int32_t h, const Domain& d, std::vector<CountMove>& out) {
    const std::int32_t S = pl.shape().slots_per_gpu;
    const double inf = std::numeric_limits<double>::infinity();
    out.clear();
    for (std::int32_t s = first_slot(pl, h); s < first_slot(pl, h) + S; ++s) {
        const std::int32_t b = pl.expert(s);
        if (pl.slot_load(s) <= 0.0 || pl.held(b, h) != 1 || !pl.may_grow(b)) continue;
        const std::size_t first = out.size();
        for (std::int32_t slot = first_slot(pl, d.first_gpu); slot < first_slot(pl, d.last_gpu); ++slot) {
            const std::int32_t a = pl.expert(slot), j = pl.gpu_of(slot);
            if (a == b || j == h || pl.count(a) < 2 || !pl.accepts(b, j) || !pl.may_release(slot)) continue;
            auto it = std::find_if(out.begin() + first, out.end(),
                                   [&](const CountMove& m) { return pl.expert(m.slot) == a; });
            const double peak = pl.retarget_peak(slot, b, it == out.end() ? inf : it->peak);
            if (it == out.end())
                out.push_back(CountMove{slot, b, peak});
            else if (peak < it->peak)
                *it = CountMove{slot, b, peak};
        }
    }
}

}  // namespace

std::int32_t search_counts(Placement& pl, const Domain& d, double stop_load, std::int32_t rounds,
                           std::int32_t lookahead_steps, std::int32_t max_steps, SearchScratch& scratch) {
    std::int32_t improved = 0;
    for (std::int32_t round = 0; round < rounds; ++round) {
        const double before = domain_max(pl, d);
        if (before <= stop_load) break;
        std::vector<CountMove>& moves = scratch.moves;
        count_candidates(pl, pl.heaviest_gpu(d.first_gpu, d.last_gpu), d, moves);
        const std::size_t mark = pl.checkpoint();
        CountMove best;
        double best_peak = before * (1.0 - kRelativeGain);
        for (const CountMove& move : moves) {
            const double peak = search_after(pl, d, move, stop_load, std::min(lookahead_steps, max_steps), scratch);
            if (peak < best_peak) {
                best_peak = peak;
                best = move;
            }
            pl.rollback(mark);
        }
        pl.commit();
        if (best.slot < 0) break;
        search_after(pl, d, best, stop_load, max_steps, scratch);  // lands at or below best_peak
        ++improved;
    }
    return improved;
}

namespace {

// Swaps the extra replica in `slot` (GPU g) away, keeping the larger of the two loads lowest.
bool swap_away(Placement& pl, const Domain& d, std::int32_t slot, std::int32_t g) {
    Swap best;
    best.peak = std::numeric_limits<double>::infinity();
    for (std::int32_t t = first_slot(pl, d.first_gpu); t < first_slot(pl, d.last_gpu); ++t) {
        const std::int32_t j = pl.gpu_of(t);
        if (j == g) continue;
        const double diff = pl.slot_load(slot) - pl.slot_load(t);
        const double peak = std::max(pl.gpu_load(g) - diff, pl.gpu_load(j) + diff);
        if (peak < best.peak && swappable(pl, slot, g, t, j)) best = Swap{slot, t, peak};
    }
    if (best.a < 0) return false;
    pl.swap_slots(best.a, best.b);
    return true;
}

// Gives `slot` (GPU g) to the receiver, among those whose new replica would be lightest, that
// keeps the largest load it touches lowest.
bool release(Placement& pl, const Domain& d, std::int32_t slot, std::int32_t g, SearchScratch& scratch) {
    if (!pl.may_release(slot)) return false;
    lightest_receivers(pl, d, g, kReceivers, scratch.candidates);
    CountMove best;
    best.peak = std::numeric_limits<double>::infinity();
    for (const std::int32_t b : scratch.candidates) {
        const double peak = pl.retarget_peak(slot, b, best.peak);
        if (peak < best.peak) best = CountMove{slot, b, peak};
    }
    if (best.slot < 0) return false;
    pl.retarget(best.slot, best.expert);
    return true;
}

}  // namespace

std::int64_t repair_duplicates(Placement& pl, RepairOrder order, SearchScratch& scratch) {
    const LayerShape& shape = pl.shape();
    const std::int32_t S = shape.slots_per_gpu;
    for (std::int32_t k = 0; k < pl.num_domains(); ++k) {
        const Domain d = pl.domain(k);
        for (std::int32_t g = d.first_gpu; g < d.last_gpu; ++g) {
            for (std::int32_t s = g * S; s < (g + 1) * S && pl.duplicates_on(g) > 0; ++s) {  // until g has none
                const std::int32_t e = pl.expert(s);
                if (pl.held(e, g) < 2 || (pl.primary(s) && shape.mode == PlacementMode::relaxed)) continue;
                if (order == RepairOrder::swap_first) {
                    if (!swap_away(pl, d, s, g)) release(pl, d, s, g, scratch);
                } else {
                    if (!release(pl, d, s, g, scratch)) swap_away(pl, d, s, g);
                }
            }
        }
    }
    return pl.duplicates();
}

}  // namespace eplb::core
