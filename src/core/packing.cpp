#include "packing.hpp"

#include "order.hpp"

#include <cmath>
#include <limits>

namespace eplb::core {
namespace {

void identity_packing(std::int32_t n, PackOut out) {
    for (std::int32_t i = 0; i < n; ++i) {
        out.pack[i] = i;
        out.rank[i] = 0;
    }
}

// The greedy shared by both packers: items in `order`, each to the lightest pack with room,
// lowest pack id on ties. `Acc` is the type of the running pack loads (float32 or float64).
template <typename Acc>
void greedy_packing(const float* weight, const std::int32_t* order, std::int32_t n, std::int32_t m,
                    std::int32_t* count, Acc* load, PackOut out) {
    const std::int32_t capacity = n / m;
    for (std::int32_t p = 0; p < m; ++p) {
        count[p] = 0;
        load[p] = Acc(0);
    }
    for (std::int32_t k = 0; k < n; ++k) {
        const std::int32_t item = order[k];
        std::int32_t best = -1;
        Acc best_load = std::numeric_limits<Acc>::infinity();
        for (std::int32_t p = 0; p < m; ++p) {
            const bool better = count[p] < capacity && (best < 0 || load[p] < best_load);
            best = better ? p : best;
            best_load = better ? load[p] : best_load;
        }
        out.pack[item] = best;
        out.rank[item] = count[best]++;
        load[best] += static_cast<Acc>(weight[item]);
    }
}

// ---- the seed's refinement -------------------------------------------------------------

// Lists each pack's items in ascending id order into `members` ([m, capacity]).
void list_members(const std::int32_t* pack, std::int32_t n, std::int32_t m, std::int32_t capacity,
                  std::int32_t* count, std::int32_t* members) {
    for (std::int32_t p = 0; p < m; ++p) count[p] = 0;
    for (std::int32_t i = 0; i < n; ++i) {
        const std::int32_t p = pack[i];
        members[p * capacity + count[p]++] = i;
    }
}

// The two items of a pack with the largest (or smallest) weight, ties by lower id, best first.
void extreme_two(const float* weight, const std::int32_t* items, std::int32_t count, bool largest,
                 std::int32_t* pick) {
    auto before = [&](std::int32_t a, std::int32_t b) {
        // `items` are ascending, so on equal weights the earlier one (lower id) stays first.
        return largest ? weight[a] > weight[b] : weight[a] < weight[b];
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

// The lightest two packs other than `heavy`, in ascending load order, ties by lower pack id.
std::int32_t light_candidates(const float* pack_load, std::int32_t m, std::int32_t heavy,
                              std::int32_t* light) {
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
bool best_swap_with(const float* weight, const float* pack_load, const std::int32_t* heavy_pick,
                    const std::int32_t* members, std::int32_t capacity, std::int32_t h,
                    std::int32_t l, Swap& best) {
    std::int32_t light_pick[2];
    extreme_two(weight, members + l * capacity, capacity, /*largest=*/false, light_pick);
    const float delta = pack_load[h] - pack_load[l];
    if (static_cast<double>(delta) <= 1e-9) return false;
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
    if (best.heavy_item >= 0 && !(new_delta < best.new_delta)) return false;
    best = Swap{new_delta, static_cast<double>(delta), heavy_pick[best_ih], light_pick[best_jl], l};
    return true;
}

void refine_packing(const float* weight, std::int32_t n, std::int32_t m, std::int32_t refine_steps,
                    PackScratch& s, std::int32_t* pack) {
    const std::int32_t capacity = n / m;
    float* pack_load = s.load_f.data();
    for (std::int32_t p = 0; p < m; ++p) pack_load[p] = 0.0f;
    for (std::int32_t i = 0; i < n; ++i) pack_load[pack[i]] += weight[i];
    for (std::int32_t step = 0; step < refine_steps; ++step) {
        const std::int32_t h = first_argmax(pack_load, m);
        std::int32_t light[2];
        const std::int32_t num_light = light_candidates(pack_load, m, h, light);
        if (num_light == 0) break;
        list_members(pack, n, m, capacity, s.count.data(), s.members.data());
        std::int32_t heavy_pick[2];
        extreme_two(weight, s.members.data() + h * capacity, capacity, /*largest=*/true, heavy_pick);
        Swap best;
        for (std::int32_t k = 0; k < num_light; ++k)
            best_swap_with(weight, pack_load, heavy_pick, s.members.data(), capacity, h, light[k], best);
        if (best.heavy_item < 0 || !(best.new_delta < best.old_delta - 1e-9)) break;
        const float wi = weight[best.heavy_item];
        const float wj = weight[best.light_item];
        pack[best.heavy_item] = best.light_pack;
        pack[best.light_item] = h;
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

}  // namespace

void PackScratch::reserve(std::int32_t items, std::int32_t packs) {
    order.resize(static_cast<std::size_t>(items));
    count.resize(static_cast<std::size_t>(packs));
    load_f.resize(static_cast<std::size_t>(packs));
    load_d.resize(static_cast<std::size_t>(packs));
    members.resize(static_cast<std::size_t>(items));
}

void balanced_packing(const float* weight, std::int32_t n, std::int32_t m, PackScratch& s, PackOut out) {
    if (n == m) return identity_packing(n, out);
    stable_descending_order(weight, n, s.order.data(), s.sort_keys);
    greedy_packing<float>(weight, s.order.data(), n, m, s.count.data(), s.load_f.data(), out);
}

void capacity_packing(const float* weight, std::int32_t n, std::int32_t m, std::int32_t refine_steps,
                      PackScratch& s, PackOut out) {
    if (n == m) return identity_packing(n, out);
    stable_descending_order(weight, n, s.order.data(), s.sort_keys);
    greedy_packing<double>(weight, s.order.data(), n, m, s.count.data(), s.load_d.data(), out);
    if (m > 1) refine_packing(weight, n, m, refine_steps, s, out.pack);
    ranks_by_item_id(out.pack, n, m, s.count.data(), out.rank);
}

}  // namespace eplb::core
