#include "batched_replication.hpp"

#include "batched_ops.hpp"

#include <ATen/TensorOperators.h>
#include <ATen/ops/maximum.h>
#include <ATen/ops/minimum.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <limits>
#include <vector>

namespace eplb::core::batched {
namespace {

Replicas one_copy_each(const at::Tensor& weight, std::int64_t slots) {
    const std::int64_t B = weight.size(0), n = weight.size(1);
    const auto long_options = weight.options().dtype(at::kLong);
    Replicas r{at::zeros({B, slots}, long_options), at::zeros({B, slots}, long_options), at::ones({B, n}, long_options)};
    r.expert.narrow(1, 0, n).copy_(column_ids(n, weight).unsqueeze(0).expand({B, n}));
    return r;
}

// Column `column` becomes a replica of `expert` [B].
void add_replica(Replicas& r, std::int64_t column, const at::Tensor& expert) {
    const at::Tensor count = pick(r.count, expert);
    r.expert.select(1, column).copy_(expert);
    r.rank.select(1, column).copy_(count);
    put(r.count, expert, count + 1);
}

// D'Hondt for columns [first, last): the largest float32 w / c, lowest id on ties. Only a row's top
// `num_candidates` experts by (weight desc, id asc) can win (DESIGN.md 3.4), so only they are
// scanned; they are kept in ascending id order so that the first maximum is the lowest id.
void dhondt_steps(const at::Tensor& weight, std::int64_t num_candidates, std::int64_t first, std::int64_t last,
                  Replicas& r) {
    const at::Tensor candidates = top_ids_ascending(weight, num_candidates);
    const at::Tensor candidate_weight = weight.gather(1, candidates);
    const at::Tensor positions = index_ids(num_candidates, weight);
    at::Tensor candidate_count = r.count.gather(1, candidates);
    std::vector<at::Tensor> chosen, ranks;  // stacked into the columns once at the end
    for (std::int64_t column = first; column < last; ++column) {
        const at::Tensor position = first_argmax(candidate_weight / candidate_count.to(at::kFloat), {}, positions);
        const at::Tensor count = pick(candidate_count, position);
        chosen.push_back(position);
        ranks.push_back(count);
        put(candidate_count, position, count + 1);
    }
    if (chosen.empty()) return;
    r.expert.narrow(1, first, last - first).copy_(candidates.gather(1, at::stack(chosen, 1)));
    r.rank.narrow(1, first, last - first).copy_(at::stack(ranks, 1));
    r.count.scatter_(1, candidates, candidate_count);
}

// The seed's tie-aware argmax: the largest benefit, then the smaller current average, then the
// lower id.
at::Tensor tie_aware_argmax(const at::Tensor& benefit, const at::Tensor& average) {
    const at::Tensor top = benefit == benefit.amax(1, /*keepdim=*/true);
    return first_argmin(average, top);
}

// One tail column per row: Sainte-Lague or Huntington-Hill, whichever predicts the lower peak
// (float32, as the scalar tail_pick).
at::Tensor tail_pick(const at::Tensor& weight, const at::Tensor& count) {
    const std::int64_t n = weight.size(1);
    const at::Tensor c = count.to(at::kFloat);
    const at::Tensor average = weight / c;
    const at::Tensor top = first_argmax(average);
    // The second largest average (a repeated maximum counts twice); the maximum itself when n = 1.
    const at::Tensor second = n > 1 ? at::where(all_but(top, n), average, -std::numeric_limits<double>::infinity()).amax(1)
                                    : pick(average, top);
    const at::Tensor pick_s = tie_aware_argmax(weight / (c * 2 - 1), average);
    const at::Tensor pick_h = tie_aware_argmax(weight / (c * (c + 1)).sqrt(), average);
    const at::Tensor new_s = pick(weight, pick_s) / (pick(c, pick_s) + 1);
    const at::Tensor new_h = pick(weight, pick_h) / (pick(c, pick_h) + 1);
    const at::Tensor peak_s = at::maximum(second, new_s), peak_h = at::maximum(second, new_h);
    const at::Tensor sec_s = at::minimum(second, new_s), sec_h = at::minimum(second, new_h);
    const double eps = static_cast<double>(1e-12f);  // exactly the scalar code's float eps
    const at::Tensor better = (peak_s + eps) < peak_h;
    const at::Tensor equal = (peak_s - peak_h).abs() <= eps;
    return at::where(better.logical_or(equal.logical_and(sec_s <= sec_h)), pick_s, pick_h);
}

// The seed's fix-up (see the scalar donor_receiver_fixup): of the moves from the top-2 donors to
// the bottom-2 receivers by average, the one (float64 arithmetic) that lowers the peak average
// the most, ties within 1e-12 to the lower second-highest of the three contributors; applied
// when it strictly lowers the peak.
void donor_receiver_fixup(const at::Tensor& weight, Replicas& r) {
    const std::int64_t n = weight.size(1);
    const at::Tensor average = weight / r.count.to(at::kFloat);
    const at::Tensor donor0 = first_argmax(average), donor1 = first_argmax(average, all_but(donor0, n));
    const at::Tensor receiver0 = first_argmin(average), receiver1 = first_argmin(average, all_but(receiver0, n));
    const at::Tensor cur_max = pick(average, donor0).to(at::kDouble);
    const at::Tensor second_top = pick(average, donor1).to(at::kDouble);
    const at::Tensor weight_d = weight.to(at::kDouble);
    const double eps = 1e-12;

    at::Tensor found = at::zeros_like(cur_max, cur_max.options().dtype(at::kBool));
    at::Tensor best_peak = at::zeros_like(cur_max), best_second = at::zeros_like(cur_max);
    at::Tensor best_d = at::zeros_like(donor0), best_r = at::zeros_like(donor0);
    const std::pair<at::Tensor, at::Tensor> donors[] = {{donor0, second_top}, {donor1, cur_max}};
    for (const auto& [d, a] : donors) {
        const at::Tensor cd = pick(r.count, d);
        for (const at::Tensor& rc : {receiver0, receiver1}) {
            const at::Tensor cr = pick(r.count, rc);
            const at::Tensor b = pick(weight_d, d) / (cd - 1).to(at::kDouble);
            const at::Tensor c = pick(weight_d, rc) / (cr + 1).to(at::kDouble);
            const at::Tensor peak = at::maximum(at::maximum(a, b), c);
            const at::Tensor low = at::minimum(at::minimum(a, b), c);
            const at::Tensor second = ((a + b) + c) - low - peak;
            const at::Tensor valid = (cd > 1).logical_and(d != rc).logical_and((peak + eps) < cur_max);
            const at::Tensor wins = found.logical_not()
                                        .logical_or(peak < best_peak)
                                        .logical_or(((peak - best_peak).abs() <= eps).logical_and(second < best_second));
            const at::Tensor accept = valid.logical_and(wins);
            found = found.logical_or(accept);
            best_peak = at::where(accept, peak, best_peak);
            best_second = at::where(accept, second, best_second);
            best_d = at::where(accept, d, best_d);
            best_r = at::where(accept, rc, best_r);
        }
    }
    // The donor gives up its highest-rank replica (always an extra column); the receiver takes it.
    const at::Tensor donor_count = pick(r.count, best_d), receiver_count = pick(r.count, best_r);
    const at::Tensor column = r.expert.eq(best_d.unsqueeze(1))
                                  .logical_and(r.rank.eq((donor_count - 1).unsqueeze(1)))
                                  .logical_and(found.unsqueeze(1));
    r.expert = at::where(column, best_r.unsqueeze(1), r.expert);
    r.rank = at::where(column, receiver_count.unsqueeze(1), r.rank);
    put(r.count, best_d, donor_count - found.to(at::kLong));
    put(r.count, best_r, pick(r.count, best_r) + found.to(at::kLong));
}

}  // namespace

Replicas replicate_dhondt(const at::Tensor& weight, std::int64_t slots) {
    const std::int64_t n = weight.size(1), extra = slots - n;
    Replicas r = one_copy_each(weight, slots);
    if (extra > 0) dhondt_steps(weight, std::min(extra, n), n, slots, r);
    return r;
}

Replicas replicate_seed(const at::Tensor& weight, std::int64_t slots) {
    const std::int64_t n = weight.size(1), extra = slots - n;
    Replicas r = one_copy_each(weight, slots);
    if (extra == 0) return r;
    const std::int64_t tail = std::max<std::int64_t>(1, (extra + 9) / 10);
    const std::int64_t bulk = extra - tail;
    if (bulk > 0) dhondt_steps(weight, std::min(extra, n), n, n + bulk, r);
    for (std::int64_t column = n + bulk; column < slots; ++column) add_replica(r, column, tail_pick(weight, r.count));
    if (n > 1) donor_receiver_fixup(weight, r);
    return r;
}

}  // namespace eplb::core::batched
