#include "batched_packing.hpp"

#include "batched_ops.hpp"

#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>

#include <vector>

namespace eplb::core::batched {
namespace {

Packing identity_packing(const at::Tensor& weight) {
    const std::int64_t B = weight.size(0), n = weight.size(1);
    return {column_ids(n, weight).unsqueeze(0).expand({B, n}).contiguous(),
            at::zeros({B, n}, weight.options().dtype(at::kLong))};
}

// The greedy shared by both packers: items in `order` [B, n], each to the lightest pack that still
// has room, lowest pack id on ties. Pack loads accumulate in `acc` (float32 or float64), one
// addition per item as in the scalar code. The rank is the arrival order.
Packing greedy_packing(const at::Tensor& weight, const at::Tensor& order, std::int64_t m, at::ScalarType acc) {
    const std::int64_t B = weight.size(0), n = weight.size(1), capacity = n / m;
    const auto long_options = weight.options().dtype(at::kLong);
    const at::Tensor sorted = weight.gather(1, order).to(acc);
    const at::Tensor pack_ids = index_ids(m, weight);
    at::Tensor load = at::zeros({B, m}, weight.options().dtype(acc));
    at::Tensor count = at::zeros({B, m}, long_options);
    std::vector<at::Tensor> pack_by_position, rank_by_position;  // stacked once at the end
    for (std::int64_t k = 0; k < n; ++k) {
        const at::Tensor best = first_argmin(load, count < capacity, pack_ids);
        const at::Tensor filled = pick(count, best);
        pack_by_position.push_back(best);
        rank_by_position.push_back(filled);
        put(load, best, pick(load, best) + sorted.select(1, k));
        put(count, best, filled + 1);
    }
    return {at::empty({B, n}, long_options).scatter_(1, order, at::stack(pack_by_position, 1)),
            at::empty({B, n}, long_options).scatter_(1, order, at::stack(rank_by_position, 1))};
}

// [B, n]: the items of each row ordered by (pack, id); pack p's items sit at [p c, (p + 1) c) for
// capacity c, since every pack holds exactly c items.
at::Tensor items_by_pack(const at::Tensor& pack) {
    const std::int64_t n = pack.size(1);
    return std::get<1>((pack * n + column_ids(n, pack)).sort(/*dim=*/1));
}

// The rank of each item inside its pack by ascending item id.
at::Tensor ranks_by_item_id(const at::Tensor& pack, std::int64_t m) {
    const std::int64_t B = pack.size(0), n = pack.size(1), capacity = n / m;
    const at::Tensor position_rank = column_ids(n, pack).remainder(capacity).unsqueeze(0).expand({B, n});
    return at::empty_like(pack).scatter_(1, items_by_pack(pack), position_rank);
}

// Pack loads in float32, each pack's items added in ascending id order (as the seed recomputes
// them), starting from 0.
at::Tensor float_pack_loads(const at::Tensor& weight, const at::Tensor& pack, std::int64_t m) {
    const std::int64_t B = weight.size(0), n = weight.size(1), capacity = n / m;
    const at::Tensor member_weight = weight.gather(1, items_by_pack(pack)).view({B, m, capacity});
    at::Tensor load = at::zeros({B, m}, weight.options());
    for (std::int64_t j = 0; j < capacity; ++j) load = load + member_weight.select(2, j);
    return load;
}

// The two items of pack `p` [B] with the largest (or smallest) weight, ties by lower id.
std::pair<at::Tensor, at::Tensor> extreme_two(const at::Tensor& weight, const at::Tensor& pack, const at::Tensor& p,
                                              bool largest) {
    const at::Tensor in_pack = pack == p.unsqueeze(1);
    const auto select = largest ? first_argmax : first_argmin;
    const at::Tensor ids = index_ids(weight.size(1), weight);
    const at::Tensor first = select(weight, in_pack, ids);
    const at::Tensor second = select(weight, in_pack.logical_and(all_but(first, weight.size(1))), ids);
    return {first, second};
}

// The best swap found so far in one refinement step, per row.
struct SwapCandidate {
    at::Tensor found;      // [B] bool
    at::Tensor new_delta;  // [B] float64
    at::Tensor old_delta;  // [B] float64
    at::Tensor heavy_item, light_item, light_pack;  // [B] int64
};

// Offers the best swap between the heaviest pack `h` and light pack `l` (see the scalar
// best_swap_with): |delta - 2 (w_heavy - w_light)| in float32 over the 2 x 2 candidates, first
// minimum in row-major order, taken when the pack difference exceeds 1e-9 and the result beats
// the swap found so far.
void offer_swap(const at::Tensor& weight, const at::Tensor& pack, const at::Tensor& load, const at::Tensor& h,
                const at::Tensor heavy[2], const at::Tensor& l, SwapCandidate& best) {
    const auto [light0, light1] = extreme_two(weight, pack, l, /*largest=*/false);
    const at::Tensor light[2] = {light0, light1};
    const at::Tensor delta = pick(load, h) - pick(load, l);
    const at::Tensor delta_d = delta.to(at::kDouble);
    at::Tensor value, heavy_item, light_item;
    for (int ih = 0; ih < 2; ++ih) {
        for (int jl = 0; jl < 2; ++jl) {
            const at::Tensor twice = (pick(weight, heavy[ih]) - pick(weight, light[jl])) * 2;
            const at::Tensor v = (delta - twice).abs();
            if (!value.defined()) {
                value = v;
                heavy_item = heavy[ih];
                light_item = light[jl];
                continue;
            }
            const at::Tensor better = v < value;
            value = at::where(better, v, value);
            heavy_item = at::where(better, heavy[ih], heavy_item);
            light_item = at::where(better, light[jl], light_item);
        }
    }
    const at::Tensor new_delta = value.to(at::kDouble);
    const at::Tensor accept = (delta_d <= 1e-9).logical_not().logical_and(
        best.found.logical_not().logical_or(new_delta < best.new_delta));
    best.found = best.found.logical_or(accept);
    best.new_delta = at::where(accept, new_delta, best.new_delta);
    best.old_delta = at::where(accept, delta_d, best.old_delta);
    best.heavy_item = at::where(accept, heavy_item, best.heavy_item);
    best.light_item = at::where(accept, light_item, best.light_item);
    best.light_pack = at::where(accept, l, best.light_pack);
}

// Exchanges the chosen items of the rows where `apply` holds, updating float32 loads as the
// scalar code does: load[h] = (load[h] - w_i) + w_j, load[l] = (load[l] - w_j) + w_i.
void apply_swap(const at::Tensor& weight, at::Tensor& pack, at::Tensor& load, const at::Tensor& h,
                const SwapCandidate& s, const at::Tensor& apply) {
    put(pack, s.heavy_item, at::where(apply, s.light_pack, pick(pack, s.heavy_item)));
    put(pack, s.light_item, at::where(apply, h, pick(pack, s.light_item)));
    const at::Tensor wi = pick(weight, s.heavy_item), wj = pick(weight, s.light_item);
    const at::Tensor load_h = pick(load, h), load_l = pick(load, s.light_pack);
    const at::Tensor new_h = (load_h - wi) + wj, new_l = (load_l - wj) + wi;
    put(load, h, at::where(apply, new_h, load_h));
    put(load, s.light_pack, at::where(apply, new_l, pick(load, s.light_pack)));
}

// The seed's _refine_single_layer for every row (see the scalar refine_packing). A row stops at
// the first step without an improving swap, or after a first swap that cuts the difference by at
// least 20 % when refining twice.
void refine_packing(const at::Tensor& weight, at::Tensor& pack, std::int64_t m, std::int64_t refine_steps) {
    const std::int64_t B = weight.size(0);
    at::Tensor load = float_pack_loads(weight, pack, m);
    at::Tensor active = at::ones({B}, weight.options().dtype(at::kBool));
    const auto long_options = weight.options().dtype(at::kLong);
    for (std::int64_t step = 0; step < refine_steps; ++step) {
        const at::Tensor h = first_argmax(load);
        const at::Tensor others = all_but(h, m);
        const at::Tensor light0 = first_argmin(load, others);
        const auto [heavy0, heavy1] = extreme_two(weight, pack, h, /*largest=*/true);
        const at::Tensor heavy[2] = {heavy0, heavy1};

        SwapCandidate best{at::zeros({B}, weight.options().dtype(at::kBool)),
                           at::zeros({B}, weight.options().dtype(at::kDouble)),
                           at::zeros({B}, weight.options().dtype(at::kDouble)),
                           at::zeros({B}, long_options), at::zeros({B}, long_options), at::zeros({B}, long_options)};
        offer_swap(weight, pack, load, h, heavy, light0, best);
        if (m > 2) {
            const at::Tensor light1 = first_argmin(load, others.logical_and(all_but(light0, m)));
            offer_swap(weight, pack, load, h, heavy, light1, best);
        }
        const at::Tensor apply = active.logical_and(best.found).logical_and(best.new_delta < best.old_delta - 1e-9);
        apply_swap(weight, pack, load, h, best, apply);
        active = apply;
        if (step == 0 && refine_steps >= 2) active = active.logical_and((best.new_delta <= best.old_delta * 0.8).logical_not());
    }
}

}  // namespace

Packing balanced_packing(const at::Tensor& weight, std::int64_t m) {
    if (weight.size(1) == m) return identity_packing(weight);
    return greedy_packing(weight, stable_descending_order(weight), m, at::kFloat);
}

Packing capacity_packing(const at::Tensor& weight, std::int64_t m, std::int64_t refine_steps) {
    if (weight.size(1) == m) return identity_packing(weight);
    at::Tensor pack = greedy_packing(weight, stable_descending_order(weight), m, at::kDouble).pack;
    if (m > 1) refine_packing(weight, pack, m, refine_steps);
    return {pack, ranks_by_item_id(pack, m)};
}

}  // namespace eplb::core::batched
