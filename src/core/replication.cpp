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

// The seed's tie-aware argmax: the largest benefit, then the smaller current average, then the
// lower id.
std::int32_t tie_aware_argmax(const float* benefit, const float* average, std::int32_t n) {
    std::int32_t best = 0;
    for (std::int32_t e = 1; e < n; ++e) {
        const bool better = benefit[e] > benefit[best] || (benefit[e] == benefit[best] && average[e] < average[best]);
        best = better ? e : best;
    }
    return best;
}

// Largest and second largest of `value` (a repeated maximum counts twice).
void top_two(const float* value, std::int32_t n, float* top) {
    top[0] = value[0];
    top[1] = -std::numeric_limits<float>::infinity();
    for (std::int32_t e = 1; e < n; ++e) {
        const float v = value[e];
        top[1] = v > top[0] ? top[0] : std::max(top[1], v);
        top[0] = std::max(top[0], v);
    }
}

// One tail slot: Sainte-Lague or Huntington-Hill, whichever predicts the lower peak.
std::int32_t tail_pick(const float* w, const std::int32_t* count, std::int32_t n, ReplicaScratch& s) {
    float* average = s.average.data();
    float* benefit = s.benefit.data();
    compute_averages(w, count, n, average);
    float top[2];
    top_two(average, n, top);
    const float second = n > 1 ? top[1] : top[0];
    for (std::int32_t e = 0; e < n; ++e) benefit[e] = w[e] / (2.0f * static_cast<float>(count[e]) - 1.0f);
    const std::int32_t pick_s = tie_aware_argmax(benefit, average, n);
    for (std::int32_t e = 0; e < n; ++e) {
        const float c = static_cast<float>(count[e]);
        benefit[e] = w[e] / std::sqrt(c * (c + 1.0f));
    }
    const std::int32_t pick_h = tie_aware_argmax(benefit, average, n);
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

// The seed's fix-up: the single donor -> receiver move (float64 arithmetic) that lowers the peak
// average the most, ties (within 1e-12) to the lower second-highest of the three contributors.
void donor_receiver_fixup(const float* w, std::int32_t n, std::int32_t slots, ReplicaScratch& s, ReplicaOut out) {
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
    if (!found) return;
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
}

}  // namespace

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
    scratch.average.resize(static_cast<std::size_t>(n));
    scratch.benefit.resize(static_cast<std::size_t>(n));
    const std::int32_t tail = std::max(1, (extra + 9) / 10);
    const std::int32_t bulk = extra - tail;
    if (bulk > 0) dhondt_steps(weight, order, std::min(extra, n), n, n + bulk, out);
    for (std::int32_t column = n + bulk; column < slots; ++column)
        add_replica(column, tail_pick(weight, out.count, n, scratch), out);
    if (n > 1) donor_receiver_fixup(weight, n, slots, scratch, out);
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
