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
// on ties (for D'Hondt the seed's tie rule, smaller average first, is the same thing).
void dhondt_steps(const float* w, const std::int32_t* candidates, std::int32_t num_candidates,
                  std::int32_t first, std::int32_t last, ReplicaOut out) {
    for (std::int32_t column = first; column < last; ++column) {
        std::int32_t best = candidates[0];
        float best_value = w[best] / static_cast<float>(out.count[best]);
        for (std::int32_t k = 1; k < num_candidates; ++k) {
            const std::int32_t e = candidates[k];
            const float value = w[e] / static_cast<float>(out.count[e]);
            if (value > best_value || (value == best_value && e < best)) {
                best = e;
                best_value = value;
            }
        }
        add_replica(column, best, out);
    }
}

// Candidates for replication: the top `extra` experts by (weight desc, id asc), or all of them.
std::int32_t replication_candidates(const float* w, std::int32_t n, std::int32_t extra,
                                    ReplicaScratch& s) {
    stable_descending_order(w, n, s.order.data(), s.sort_keys);
    return std::min(extra, n);
}

float average(const float* w, const std::int32_t* count, std::int32_t e) {
    return w[e] / static_cast<float>(count[e]);
}

// The seed's tie-aware argmax over all experts: the largest benefit, then the smaller current
// average w / c, then the lower id.
template <typename Benefit>
std::int32_t tie_aware_argmax(const float* w, const std::int32_t* count, std::int32_t n, Benefit benefit) {
    std::int32_t best = 0;
    float best_benefit = benefit(0);
    float best_avg = average(w, count, 0);
    for (std::int32_t e = 1; e < n; ++e) {
        const float b = benefit(e);
        const float avg = average(w, count, e);
        if (b > best_benefit || (b == best_benefit && avg < best_avg)) {
            best = e;
            best_benefit = b;
            best_avg = avg;
        }
    }
    return best;
}

// Largest and second largest value of the current averages (a repeated maximum counts twice).
void top_two_averages(const float* w, const std::int32_t* count, std::int32_t n, float* top) {
    top[0] = average(w, count, 0);
    top[1] = -std::numeric_limits<float>::infinity();
    for (std::int32_t e = 1; e < n; ++e) {
        const float avg = average(w, count, e);
        if (avg > top[0]) {
            top[1] = top[0];
            top[0] = avg;
        } else if (avg > top[1]) {
            top[1] = avg;
        }
    }
}

// One tail slot: Sainte-Lague or Huntington-Hill, whichever predicts the lower peak.
std::int32_t tail_pick(const float* w, const std::int32_t* count, std::int32_t n) {
    float top[2];
    top_two_averages(w, count, n, top);
    const float second = n > 1 ? top[1] : top[0];
    const std::int32_t pick_s = tie_aware_argmax(w, count, n, [&](std::int32_t e) {
        const float c = static_cast<float>(count[e]);
        return w[e] / (2.0f * c - 1.0f);
    });
    const std::int32_t pick_h = tie_aware_argmax(w, count, n, [&](std::int32_t e) {
        const float c = static_cast<float>(count[e]);
        return w[e] / std::sqrt(c * (c + 1.0f));
    });
    const float new_s = w[pick_s] / (static_cast<float>(count[pick_s]) + 1.0f);
    const float new_h = w[pick_h] / (static_cast<float>(count[pick_h]) + 1.0f);
    const float peak_s = std::max(second, new_s), peak_h = std::max(second, new_h);
    const float sec_s = std::min(second, new_s), sec_h = std::min(second, new_h);
    const float eps = 1e-12f;
    const bool better = peak_s + eps < peak_h;
    const bool equal = std::fabs(peak_s - peak_h) <= eps;
    return (better || (equal && sec_s <= sec_h)) ? pick_s : pick_h;
}

// The two experts with the largest (or smallest) current average, ties by lower id, best first.
void extreme_two_averages(const float* w, const std::int32_t* count, std::int32_t n, bool largest,
                          std::int32_t* pick, float* value) {
    auto before = [&](float a, float b) { return largest ? a > b : a < b; };
    pick[0] = 0;
    value[0] = average(w, count, 0);
    pick[1] = -1;
    for (std::int32_t e = 1; e < n; ++e) {
        const float avg = average(w, count, e);
        if (before(avg, value[0])) {
            pick[1] = pick[0];
            value[1] = value[0];
            pick[0] = e;
            value[0] = avg;
        } else if (pick[1] < 0 || before(avg, value[1])) {
            pick[1] = e;
            value[1] = avg;
        }
    }
}

// The seed's fix-up: the single donor -> receiver move (float64 arithmetic) that lowers the peak
// average the most, ties (within 1e-12) to the lower second-highest of the three contributors.
void donor_receiver_fixup(const float* w, std::int32_t n, std::int32_t slots, ReplicaOut out) {
    std::int32_t donors[2], receivers[2];
    float top[2], bottom[2];
    extreme_two_averages(w, out.count, n, /*largest=*/true, donors, top);
    extreme_two_averages(w, out.count, n, /*largest=*/false, receivers, bottom);
    const double cur_max = top[0];
    const double eps = 1e-12;
    bool found = false;
    double best_peak = 0.0, best_second = 0.0;
    std::int32_t best_d = -1, best_r = -1;
    for (const std::int32_t d : donors) {
        const std::int32_t cd = out.count[d];
        if (cd <= 1) continue;
        for (const std::int32_t r : receivers) {
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

void replicate_dhondt(const float* weight, std::int32_t n, std::int32_t slots, ReplicaScratch& s,
                      ReplicaOut out) {
    one_copy_each(n, out);
    const std::int32_t extra = slots - n;
    if (extra == 0) return;
    const std::int32_t num_candidates = replication_candidates(weight, n, extra, s);
    dhondt_steps(weight, s.order.data(), num_candidates, n, slots, out);
}

void replicate_seed(const float* weight, std::int32_t n, std::int32_t slots, ReplicaScratch& s,
                    ReplicaOut out) {
    one_copy_each(n, out);
    const std::int32_t extra = slots - n;
    if (extra == 0) return;
    const std::int32_t tail = std::max(1, (extra + 9) / 10);
    const std::int32_t bulk = extra - tail;
    if (bulk > 0) {
        const std::int32_t num_candidates = replication_candidates(weight, n, extra, s);
        dhondt_steps(weight, s.order.data(), num_candidates, n, n + bulk, out);
    }
    for (std::int32_t column = n + bulk; column < slots; ++column)
        add_replica(column, tail_pick(weight, out.count, n), out);
    if (n > 1) donor_receiver_fixup(weight, n, slots, out);
}

}  // namespace eplb::core
