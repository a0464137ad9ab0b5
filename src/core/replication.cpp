#include "replication.hpp"

#include "order.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace eplb::core {
namespace {

void one_copy_each(std::int32_t n, ReplicaOut out) {
    for (std::int32_t e = 0; e < n; ++e) {
        out.expert[e] = e;
        out.rank[e] = 0;
        out.count[e] = 1;
    }
}

void add_replica(std::int32_t column, std::int32_t expert, ReplicaOut out) {
    out.expert[column] = expert;
    out.rank[column] = out.count[expert]++;
}

// D'Hondt steps for columns [first, last): the largest float32 w / c among `candidates`, lowest id
// on ties (for D'Hondt the seed's tie rule, smaller average first, is the same thing). Each
// candidate's current w / c is kept and recomputed only when its count changes.
void dhondt_steps(const float* w, const std::int32_t* candidates, std::int32_t num_candidates,
                  std::int32_t first, std::int32_t last, ReplicaOut out) {
    constexpr std::int32_t kCached = 64;
    float cached[kCached];
    const bool use_cache = num_candidates <= kCached;
    auto value_of = [&](std::int32_t k) {
        return use_cache ? cached[k] : w[candidates[k]] / static_cast<float>(out.count[candidates[k]]);
    };
    if (use_cache)
        for (std::int32_t k = 0; k < num_candidates; ++k)
            cached[k] = w[candidates[k]] / static_cast<float>(out.count[candidates[k]]);
    for (std::int32_t column = first; column < last; ++column) {
        std::int32_t best_k = 0;
        float best_value = value_of(0);
        for (std::int32_t k = 1; k < num_candidates; ++k) {
            const float value = value_of(k);
            const bool better = value > best_value || (value == best_value && candidates[k] < candidates[best_k]);
            best_k = better ? k : best_k;
            best_value = better ? value : best_value;
        }
        const std::int32_t best = candidates[best_k];
        add_replica(column, best, out);
        if (use_cache) cached[best_k] = w[best] / static_cast<float>(out.count[best]);
    }
}

// Current averages w / c of every expert (one vectorisable pass).
void compute_averages(const float* w, const std::int32_t* count, std::int32_t n, float* average) {
    for (std::int32_t e = 0; e < n; ++e) average[e] = w[e] / static_cast<float>(count[e]);
}

bool pick_is_candidate(const std::int32_t* order, std::int32_t num_candidates, std::int32_t expert) {
    for (std::int32_t k = 0; k < num_candidates; ++k)
        if (order[k] == expert) return true;
    return false;
}

// The seed's tie rule for a priority: the larger benefit, then the smaller current average, then
// the lower id.
struct Priority {
    float benefit;
    float average;
    std::int32_t expert;

    bool beats(const Priority& o) const {
        return benefit > o.benefit ||
               (benefit == o.benefit && (average < o.average || (average == o.average && expert < o.expert)));
    }
};

// Largest and second largest of a stream of values (a repeated maximum counts twice).
struct TopTwo {
    float first = -std::numeric_limits<float>::infinity();
    float second = -std::numeric_limits<float>::infinity();
    void add(float v) {
        if (v > first) {
            second = first;
            first = v;
        } else if (v > second) {
            second = v;
        }
    }
};

float sainte_lague(float w, std::int32_t c) { return w / (2.0f * static_cast<float>(c) - 1.0f); }
float huntington_hill(float w, std::int32_t c) {
    const float cf = static_cast<float>(c);
    return w / std::sqrt(cf * (cf + 1.0f));
}

// Which experts a tail step must look at. Experts outside the D'Hondt candidates (order[k..n)) all
// have one replica while `outsiders_single`: among them the first in weight order has the largest
// average and Sainte-Lague priority, and the Huntington-Hill winner is found in the run of equal
// priorities that starts there. Otherwise (an outsider won a tail slot) every expert is scanned.
struct TailScope {
    const std::int32_t* order;
    std::int32_t num_candidates;
    std::int32_t n;
    bool outsiders_single;
};

// Huntington-Hill's best outsider: the largest priority, then the smallest weight, then lowest id.
Priority best_outsider_huntington_hill(const float* w, const TailScope& scope) {
    const std::int32_t first = scope.order[scope.num_candidates];
    Priority best{huntington_hill(w[first], 1), w[first], first};
    for (std::int32_t k = scope.num_candidates + 1; k < scope.n; ++k) {
        const std::int32_t e = scope.order[k];
        const Priority p{huntington_hill(w[e], 1), w[e], e};
        if (p.benefit != best.benefit) break;  // priorities fall along the weight order
        if (p.beats(best)) best = p;
    }
    return best;
}

// One tail slot: Sainte-Lague or Huntington-Hill, whichever predicts the lower peak.
std::int32_t tail_pick(const float* w, const std::int32_t* count, const TailScope& scope) {
    const bool restricted = scope.outsiders_single && scope.num_candidates < scope.n;
    const std::int32_t scanned = restricted ? scope.num_candidates : scope.n;
    TopTwo averages;
    Priority best_s{-1.0f, 0.0f, -1}, best_h{-1.0f, 0.0f, -1};
    for (std::int32_t k = 0; k < scanned; ++k) {
        const std::int32_t e = restricted ? scope.order[k] : k;
        const float average = w[e] / static_cast<float>(count[e]);
        averages.add(average);
        const Priority s{sainte_lague(w[e], count[e]), average, e}, h{huntington_hill(w[e], count[e]), average, e};
        if (best_s.expert < 0 || s.beats(best_s)) best_s = s;
        if (best_h.expert < 0 || h.beats(best_h)) best_h = h;
    }
    if (restricted) {
        const std::int32_t first = scope.order[scope.num_candidates];
        averages.add(w[first]);
        if (scope.num_candidates + 1 < scope.n) averages.add(w[scope.order[scope.num_candidates + 1]]);
        const Priority s{w[first], w[first], first};
        if (s.beats(best_s)) best_s = s;
        const Priority h = best_outsider_huntington_hill(w, scope);
        if (h.beats(best_h)) best_h = h;
    }
    const float second = scope.n > 1 ? averages.second : averages.first;
    const std::int32_t pick_s = best_s.expert, pick_h = best_h.expert;
    const float new_s = w[pick_s] / (static_cast<float>(count[pick_s]) + 1.0f);
    const float new_h = w[pick_h] / (static_cast<float>(count[pick_h]) + 1.0f);
    const float peak_s = std::max(second, new_s), peak_h = std::max(second, new_h);
    const float sec_s = std::min(second, new_s), sec_h = std::min(second, new_h);
    const float eps = 1e-12f;
    const bool better = peak_s + eps < peak_h;
    const bool equal = std::fabs(peak_s - peak_h) <= eps;
    return (better || (equal && sec_s <= sec_h)) ? pick_s : pick_h;
}

// The two experts with the largest and the two with the smallest average, ties by lower id,
// best first (as the seed's topk(2) calls pick them).
struct ExtremeAverages {
    std::int32_t top[2], bottom[2];
    float top_value[2];
};

ExtremeAverages extreme_averages(const float* average, std::int32_t n) {
    ExtremeAverages x{{0, -1}, {0, -1}, {average[0], 0.0f}};
    for (std::int32_t e = 1; e < n; ++e) {
        const float v = average[e];
        if (v > average[x.top[0]]) {
            x.top[1] = x.top[0];
            x.top[0] = e;
        } else if (x.top[1] < 0 || v > average[x.top[1]]) {
            x.top[1] = e;
        }
        if (v < average[x.bottom[0]]) {
            x.bottom[1] = x.bottom[0];
            x.bottom[0] = e;
        } else if (x.bottom[1] < 0 || v < average[x.bottom[1]]) {
            x.bottom[1] = e;
        }
    }
    x.top_value[0] = average[x.top[0]];
    x.top_value[1] = average[x.top[1]];
    return x;
}

}  // namespace

// The seed's fix-up: the single donor -> receiver move (float64 arithmetic) that lowers the peak
// average the most, ties (within 1e-12) to the lower second-highest of the three contributors.
bool donor_receiver_fixup(const float* w, std::int32_t n, std::int32_t slots, ReplicaScratch& s, ReplicaOut out) {
    s.average.resize(static_cast<std::size_t>(n));
    compute_averages(w, out.count, n, s.average.data());
    const ExtremeAverages x = extreme_averages(s.average.data(), n);
    const std::int32_t* donors = x.top;
    const std::int32_t* receivers = x.bottom;
    const float* top = x.top_value;
    const double cur_max = top[0];
    const double eps = 1e-12;
    bool found = false;
    double best_peak = 0.0, best_second = 0.0;
    std::int32_t best_d = -1, best_r = -1;
    for (std::int32_t di = 0; di < 2; ++di) {
        const std::int32_t d = donors[di];
        const std::int32_t cd = out.count[d];
        if (cd <= 1) continue;
        for (std::int32_t ri = 0; ri < 2; ++ri) {
            const std::int32_t r = receivers[ri];
            if (d == r) continue;
            const std::int32_t cr = out.count[r];
            const double a = d == donors[0] ? static_cast<double>(top[1]) : cur_max;
            const double b = static_cast<double>(w[d]) / static_cast<double>(cd - 1);
            const double c = static_cast<double>(w[r]) / static_cast<double>(cr + 1);
            const double peak = std::max({a, b, c});
            const double second = (a + b + c) - std::min({a, b, c}) - peak;
            if (!(peak + eps < cur_max)) continue;
            if (!found || peak < best_peak || (std::fabs(peak - best_peak) <= eps && second < best_second)) {
                found = true;
                best_peak = peak;
                best_second = second;
                best_d = d;
                best_r = r;
            }
        }
    }
    if (!found) return false;
    // The donor gives up its highest-rank replica; the receiver takes that column.
    for (std::int32_t column = n; column < slots; ++column) {
        if (out.expert[column] == best_d && out.rank[column] == out.count[best_d] - 1) {
            out.expert[column] = best_r;
            out.rank[column] = out.count[best_r];
            break;
        }
    }
    --out.count[best_d];
    ++out.count[best_r];
    return true;
}

void replicate_dhondt(const float* weight, const std::int32_t* order, std::int32_t n, std::int32_t slots,
                      ReplicaOut out) {
    one_copy_each(n, out);
    const std::int32_t extra = slots - n;
    if (extra == 0) return;
    dhondt_steps(weight, order, std::min(extra, n), n, slots, out);
}

void replicate_seed(const float* weight, const std::int32_t* order, std::int32_t n, std::int32_t slots,
                    ReplicaScratch& scratch, ReplicaOut out) {
    one_copy_each(n, out);
    const std::int32_t extra = slots - n;
    if (extra == 0) return;
    const std::int32_t tail = std::max(1, (extra + 9) / 10);
    const std::int32_t bulk = extra - tail;
    if (bulk > 0) dhondt_steps(weight, order, std::min(extra, n), n, n + bulk, out);
    TailScope scope{order, std::min(extra, n), n, true};
    for (std::int32_t column = n + bulk; column < slots; ++column) {
        const std::int32_t pick = tail_pick(weight, out.count, scope);
        add_replica(column, pick, out);
        scope.outsiders_single = scope.outsiders_single && pick_is_candidate(order, scope.num_candidates, pick);
    }
    // The fix-up moves a replica only when the new peak max(other, w_d / (c_d - 1), w_r / (c_r + 1))
    // falls below the current peak. The donor is one of the two largest averages: if it is the
    // largest, w_d / (c_d - 1) > w_d / c_d = the peak; otherwise "other" is the peak itself. So no
    // move ever qualifies while 1 / (c_d - 1) exceeds float32's rounding of w_d / c_d (2^-24
    // relative), i.e. for any count below 2^23: the reference's loop is then skipped.
    constexpr std::int32_t kFixupCannotFireBelow = 1 << 23;
    if (n > 1 && slots >= kFixupCannotFireBelow) donor_receiver_fixup(weight, n, slots, scratch, out);
}


namespace {

// Stable descending (load, column) order of items.
struct ItemBefore {
    const float* load;
    bool operator()(std::int32_t a, std::int32_t b) const {
        return load[a] > load[b] || (load[a] == load[b] && a < b);
    }
};

void insertion_sort(std::int32_t* items, std::int32_t count, ItemBefore before) {
    for (std::int32_t i = 1; i < count; ++i) {
        const std::int32_t item = items[i];
        std::int32_t j = i;
        for (; j > 0 && before(item, items[j - 1]); --j) items[j] = items[j - 1];
        items[j] = item;
    }
}

}  // namespace

void replica_packing_order(const float* item_load, const std::int32_t* expert_order, std::int32_t n,
                           std::int32_t slots, const ReplicaOut& replicas, ReplicaOrderScratch& s,
                           std::int32_t* order) {
    // The replicas of every expert with count > 1: its extra columns and its first copy (column e),
    // and the experts that kept one copy, in weight order (a branch-free compaction).
    s.replicated.resize(static_cast<std::size_t>(slots));
    s.singles.resize(static_cast<std::size_t>(n));
    std::int32_t num_replicated = 0, num_singles = 0;
    for (std::int32_t column = n; column < slots; ++column) s.replicated[num_replicated++] = column;
    for (std::int32_t k = 0; k < n; ++k) {
        const std::int32_t e = expert_order[k];
        const bool single = replicas.count[e] == 1;
        s.singles[num_singles] = e;
        s.replicated[num_replicated] = e;
        num_singles += single;
        num_replicated += !single;
    }
    const ItemBefore before{item_load};
    std::int32_t* replicated = s.replicated.data();
    if (num_replicated <= 32)
        insertion_sort(replicated, num_replicated, before);
    else
        std::sort(replicated, replicated + num_replicated, before);
    // Branch-free merge of the two ordered lists.
    const std::int32_t* singles = s.singles.data();
    std::int32_t i = 0, j = 0, out = 0;
    while (i < num_singles && j < num_replicated) {
        const bool take_replica = before(replicated[j], singles[i]);
        order[out++] = take_replica ? replicated[j] : singles[i];
        j += take_replica;
        i += !take_replica;
    }
    while (i < num_singles) order[out++] = singles[i++];
    while (j < num_replicated) order[out++] = replicated[j++];
}

}  // namespace eplb::core
