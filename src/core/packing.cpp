#include "packing.hpp"

#include "order.hpp"
#include "packing_lockstep.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

namespace eplb::core {
namespace {

void identity_packing(const PackRows& r) {
    for (std::int32_t i = 0; i < r.rows * r.n; ++i) {
        r.pack[i] = i % r.n;
        r.rank[i] = 0;
    }
}

// ---- the greedy shared by both packers (packing_lockstep.hpp) ---------------------------

std::atomic<bool> vector_packing_allowed{true};

// Lane operations on one row's pack loads `l` (m packs padded with +inf to `width`, a multiple of
// 8): `first_min` returns the lowest pack holding the minimum, `add` adds `value` to pack p.

// Any width, plain loops.
template <typename Acc>
struct AnyWidthLanes {
    static std::int32_t first_min(const Acc* l, std::int32_t width) {
        std::int32_t best = 0;
        for (std::int32_t p = 1; p < width; ++p) best = l[p] < l[best] ? p : best;
        return best;
    }
    static void add(Acc* l, std::int32_t p, Acc value) { l[p] += value; }
};

// Eight packs with baseline instructions: a tournament in which the lower pack wins ties
// (packing_avx2.cpp has the AVX2 version, chosen at run time).
template <typename Acc>
struct Tournament8Lanes {
    static std::int32_t first_min(const Acc* l, std::int32_t) {
        struct Entry {
            Acc value;
            std::int32_t index;
        };
        auto pick = [](Entry a, Entry b) { return b.value < a.value ? b : a; };
        const Entry e[8] = {{l[0], 0}, {l[1], 1}, {l[2], 2}, {l[3], 3}, {l[4], 4}, {l[5], 5}, {l[6], 6}, {l[7], 7}};
        return pick(pick(pick(e[0], e[1]), pick(e[2], e[3])), pick(pick(e[4], e[5]), pick(e[6], e[7]))).index;
    }
    static void add(Acc* l, std::int32_t p, Acc value) { l[p] += value; }
};

// True when no pack load can reach +inf (n times the largest weight stays finite), so +inf can
// mark full packs.
template <typename Acc>
bool loads_stay_finite(const PackRows& r) {
    float largest = 0.0f;
    for (std::int32_t i = 0; i < r.rows * r.n; ++i) largest = std::max(largest, r.weight[i]);
    return static_cast<double>(largest) * r.n < static_cast<double>(std::numeric_limits<Acc>::max()) * 0.5;
}

// The reference's own formulation, for loads that could overflow to +inf.
template <typename Acc>
void greedy_rows_checked(const PackRows& r, Acc* load, std::int32_t* count) {
    const std::int32_t capacity = r.n / r.m;
    for (std::int32_t row = 0; row < r.rows; ++row) {
        Acc* l = load + row * r.m;
        std::int32_t* c = count + row * r.m;
        for (std::int32_t p = 0; p < r.m; ++p) l[p] = Acc(0), c[p] = 0;
        for (std::int32_t k = 0; k < r.n; ++k) {
            const std::int32_t item = r.order[row * r.n + k];
            std::int32_t best = -1;
            for (std::int32_t p = 0; p < r.m; ++p)
                if (c[p] < capacity && (best < 0 || l[p] < l[best])) best = p;
            r.pack[row * r.n + item] = best;
            r.rank[row * r.n + item] = c[best]++;
            l[best] += static_cast<Acc>(r.weight[row * r.n + item]);
        }
    }
}

template <typename Acc>
void greedy_packing(const PackRows& r, std::vector<Acc>& load, std::vector<std::int32_t>& count) {
    const std::int32_t width = lockstep_width(r.m);
    load.resize(static_cast<std::size_t>(r.rows * width));
    count.resize(static_cast<std::size_t>(r.rows * width));
    if (!loads_stay_finite<Acc>(r)) return greedy_rows_checked(r, load.data(), count.data());
    if (vector_packing_allowed.load(std::memory_order_relaxed) &&
        greedy_packing_avx2(r, width, load.data(), count.data()))
        return;
    if (width != kLockstepLanes) return greedy_lockstep<Acc, AnyWidthLanes<Acc>>(r, width, load.data(), count.data());
    greedy_lockstep<Acc, Tournament8Lanes<Acc>>(r, kLockstepLanes, load.data(), count.data());
}

// ---- the seed's refinement -------------------------------------------------------------

// Lists each pack's items into `members` ([m, capacity]) at their greedy rank.
void list_members(const std::int32_t* pack, const std::int32_t* rank, std::int32_t n, std::int32_t capacity,
                  std::int32_t* members) {
    for (std::int32_t i = 0; i < n; ++i) members[pack[i] * capacity + rank[i]] = i;
}

// The two items of a pack with the largest (or smallest) weight, ties by lower id, best first.
void extreme_two(const float* weight, const std::int32_t* items, std::int32_t count, bool largest,
                 std::int32_t* pick) {
    auto before = [&](std::int32_t a, std::int32_t b) {
        const bool heavier = largest ? weight[a] > weight[b] : weight[a] < weight[b];
        return heavier || (weight[a] == weight[b] && a < b);
    };
    std::int32_t first = items[0], second = -1;
    for (std::int32_t k = 1; k < count; ++k) {
        const std::int32_t it = items[k];
        if (before(it, first)) {
            second = first;
            first = it;
        } else if (second < 0 || before(it, second)) {
            second = it;
        }
    }
    pick[0] = first;
    pick[1] = second;
}

// Replaces `from` by `to` in a pack's member list.
void replace_member(std::int32_t* items, std::int32_t count, std::int32_t from, std::int32_t to) {
    for (std::int32_t k = 0; k < count; ++k)
        if (items[k] == from) items[k] = to;
}

// The lightest two packs other than `heavy`, in ascending load order, ties by lower pack id.
std::int32_t light_candidates(const float* pack_load, std::int32_t m, std::int32_t heavy, std::int32_t* light) {
    std::int32_t found = 0;
    light[0] = light[1] = -1;
    for (std::int32_t p = 0; p < m; ++p) {
        if (p == heavy) continue;
        if (light[0] < 0 || pack_load[p] < pack_load[light[0]]) {
            light[1] = light[0];
            light[0] = p;
        } else if (light[1] < 0 || pack_load[p] < pack_load[light[1]]) {
            light[1] = p;
        }
        ++found;
    }
    return found < 2 ? found : 2;
}

std::int32_t first_argmax(const float* v, std::int32_t m) {
    std::int32_t best = 0;
    for (std::int32_t p = 1; p < m; ++p)
        if (v[p] > v[best]) best = p;
    return best;
}

struct Swap {
    double new_delta = 0.0;
    double old_delta = 0.0;
    std::int32_t heavy_item = -1;
    std::int32_t light_item = -1;
    std::int32_t light_pack = -1;
};

// Best swap between the heaviest pack `h` and one light pack `l`, as the seed evaluates it:
// |delta - 2 (hw - lw)| in float32 over the 2 x 2 candidates, first minimum in row-major order.
void best_swap_with(const float* weight, const float* pack_load, const std::int32_t* heavy_pick,
                    const std::int32_t* members, std::int32_t capacity, std::int32_t h, std::int32_t l,
                    Swap& best) {
    std::int32_t light_pick[2];
    extreme_two(weight, members + l * capacity, capacity, /*largest=*/false, light_pick);
    const float delta = pack_load[h] - pack_load[l];
    if (static_cast<double>(delta) <= 1e-9) return;
    float best_value = 0.0f;
    std::int32_t best_ih = -1, best_jl = -1;
    for (std::int32_t ih = 0; ih < 2; ++ih) {
        for (std::int32_t jl = 0; jl < 2; ++jl) {
            const float diff = weight[heavy_pick[ih]] - weight[light_pick[jl]];
            const float twice = 2.0f * diff;
            const float value = std::fabs(delta - twice);
            if (best_ih < 0 || value < best_value) {
                best_value = value;
                best_ih = ih;
                best_jl = jl;
            }
        }
    }
    const double new_delta = best_value;
    if (best.heavy_item >= 0 && !(new_delta < best.new_delta)) return;
    best = Swap{new_delta, static_cast<double>(delta), heavy_pick[best_ih], light_pick[best_jl], l};
}

void refine_row(const float* weight, const std::int32_t* rank, std::int32_t n, std::int32_t m,
                std::int32_t refine_steps, PackScratch& s, std::int32_t* pack) {
    const std::int32_t capacity = n / m;
    s.load_f.resize(static_cast<std::size_t>(m));
    s.members.resize(static_cast<std::size_t>(n));
    float* pack_load = s.load_f.data();
    std::int32_t* members = s.members.data();
    for (std::int32_t p = 0; p < m; ++p) pack_load[p] = 0.0f;
    for (std::int32_t i = 0; i < n; ++i) pack_load[pack[i]] += weight[i];
    list_members(pack, rank, n, capacity, members);
    for (std::int32_t step = 0; step < refine_steps; ++step) {
        const std::int32_t h = first_argmax(pack_load, m);
        std::int32_t light[2];
        const std::int32_t num_light = light_candidates(pack_load, m, h, light);
        if (num_light == 0) break;
        std::int32_t heavy_pick[2];
        extreme_two(weight, members + h * capacity, capacity, /*largest=*/true, heavy_pick);
        Swap best;
        for (std::int32_t k = 0; k < num_light; ++k)
            best_swap_with(weight, pack_load, heavy_pick, members, capacity, h, light[k], best);
        if (best.heavy_item < 0 || !(best.new_delta < best.old_delta - 1e-9)) break;
        const float wi = weight[best.heavy_item];
        const float wj = weight[best.light_item];
        pack[best.heavy_item] = best.light_pack;
        pack[best.light_item] = h;
        replace_member(members + h * capacity, capacity, best.heavy_item, best.light_item);
        replace_member(members + best.light_pack * capacity, capacity, best.light_item, best.heavy_item);
        pack_load[h] = (pack_load[h] - wi) + wj;
        pack_load[best.light_pack] = (pack_load[best.light_pack] - wj) + wi;
        if (step == 0 && refine_steps >= 2 && best.new_delta <= 0.8 * best.old_delta) break;
    }
}

void ranks_by_item_id(const std::int32_t* pack, std::int32_t n, std::int32_t m, std::int32_t* count,
                      std::int32_t* rank) {
    for (std::int32_t p = 0; p < m; ++p) count[p] = 0;
    for (std::int32_t i = 0; i < n; ++i) rank[i] = count[pack[i]]++;
}

PackRows single_row(const float* weight, std::int32_t n, std::int32_t m, PackScratch& s, PackOut out) {
    s.order.resize(static_cast<std::size_t>(n));
    if (n != m) stable_descending_order(weight, n, s.order.data(), s.order_scratch);
    return PackRows{1, n, m, weight, s.order.data(), out.pack, out.rank};
}

}  // namespace

void balanced_packing(const PackRows& r, PackScratch& s) {
    if (r.n == r.m) return identity_packing(r);
    greedy_packing<float>(r, s.load_f, s.count);
}

void capacity_packing(const PackRows& r, std::int32_t refine_steps, PackScratch& s) {
    if (r.n == r.m) return identity_packing(r);
    greedy_packing<double>(r, s.load_d, s.count);
    for (std::int32_t row = 0; row < r.rows; ++row) {
        if (r.m > 1) refine_row(r.weight + row * r.n, r.rank + row * r.n, r.n, r.m, refine_steps, s, r.pack + row * r.n);
        ranks_by_item_id(r.pack + row * r.n, r.n, r.m, s.count.data(), r.rank + row * r.n);
    }
}

void balanced_packing(const float* weight, std::int32_t n, std::int32_t m, PackScratch& s, PackOut out) {
    balanced_packing(single_row(weight, n, m, s, out), s);
}

void capacity_packing(const float* weight, std::int32_t n, std::int32_t m, std::int32_t refine_steps,
                      PackScratch& s, PackOut out) {
    capacity_packing(single_row(weight, n, m, s, out), refine_steps, s);
}

void allow_vector_packing(bool allowed) { vector_packing_allowed.store(allowed, std::memory_order_relaxed); }

}  // namespace eplb::core
