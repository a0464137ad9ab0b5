#include "packing.hpp"

#include "order.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <type_traits>

namespace eplb::core {
namespace {

void identity_packing(const PackRows& r) {
    for (std::int32_t i = 0; i < r.rows * r.n; ++i) {
        r.pack[i] = i % r.n;
        r.rank[i] = 0;
    }
}

// ---- the greedy shared by both packers ---------------------------------------------------
//
// Items in order, each to the lightest pack with room, lowest pack id on ties. `Acc` is the type
// of the running pack loads (float32 for deepseek, float64 for the seed). A full pack's load is
// set to +inf so that the choice is a plain first-minimum; the rows of one call are advanced in
// lockstep because their dependency chains are independent.

constexpr std::int32_t kLanes = 8;  // packs handled by the fixed-width minimum

#if defined(__SSE2__)
// Eight pack loads live in SSE registers; the pack chosen for an item gets `add` in its lane
// (other lanes get +0, which leaves them bit-identical), so every store is a whole vector.
// first_min8 returns the lowest lane holding the minimum.
inline std::int32_t first_min8(const float* l) {
    const __m128 a = _mm_load_ps(l), b = _mm_load_ps(l + 4);
    __m128 m = _mm_min_ps(a, b);
    m = _mm_min_ps(m, _mm_shuffle_ps(m, m, _MM_SHUFFLE(2, 3, 0, 1)));
    m = _mm_min_ps(m, _mm_shuffle_ps(m, m, _MM_SHUFFLE(1, 0, 3, 2)));
    return __builtin_ctz(static_cast<unsigned>(_mm_movemask_ps(_mm_cmpeq_ps(a, m)) |
                                               (_mm_movemask_ps(_mm_cmpeq_ps(b, m)) << 4)));
}

inline void add_to_lane8(float* l, std::int32_t p, float add) {
    const __m128i lane = _mm_set1_epi32(p);
    const __m128 value = _mm_set1_ps(add);
    const __m128 lo = _mm_castsi128_ps(_mm_cmpeq_epi32(lane, _mm_setr_epi32(0, 1, 2, 3)));
    const __m128 hi = _mm_castsi128_ps(_mm_cmpeq_epi32(lane, _mm_setr_epi32(4, 5, 6, 7)));
    _mm_store_ps(l, _mm_add_ps(_mm_load_ps(l), _mm_and_ps(lo, value)));
    _mm_store_ps(l + 4, _mm_add_ps(_mm_load_ps(l + 4), _mm_and_ps(hi, value)));
}

inline std::int32_t first_min8(const double* l) {
    const __m128d a = _mm_load_pd(l), b = _mm_load_pd(l + 2), c = _mm_load_pd(l + 4), d = _mm_load_pd(l + 6);
    __m128d m = _mm_min_pd(_mm_min_pd(a, b), _mm_min_pd(c, d));
    m = _mm_min_pd(m, _mm_shuffle_pd(m, m, 1));
    const int mask = _mm_movemask_pd(_mm_cmpeq_pd(a, m)) | (_mm_movemask_pd(_mm_cmpeq_pd(b, m)) << 2) |
                     (_mm_movemask_pd(_mm_cmpeq_pd(c, m)) << 4) | (_mm_movemask_pd(_mm_cmpeq_pd(d, m)) << 6);
    return __builtin_ctz(static_cast<unsigned>(mask));
}

inline void add_to_lane8(double* l, std::int32_t p, double add) { l[p] += add; }
#else
template <typename Acc>
inline std::int32_t first_min8(const Acc* l) {
    struct Entry {
        Acc value;
        std::int32_t index;
    };
    auto pick = [](Entry a, Entry b) { return b.value < a.value ? b : a; };
    const Entry e[8] = {{l[0], 0}, {l[1], 1}, {l[2], 2}, {l[3], 3}, {l[4], 4}, {l[5], 5}, {l[6], 6}, {l[7], 7}};
    return pick(pick(pick(e[0], e[1]), pick(e[2], e[3])), pick(pick(e[4], e[5]), pick(e[6], e[7]))).index;
}

template <typename Acc>
inline void add_to_lane8(Acc* l, std::int32_t p, Acc add) {
    l[p] += add;
}
#endif

#if defined(__x86_64__)
// The same with one AVX2 register per row of eight pack loads (runtime-selected).
__attribute__((target("avx2"))) inline std::int32_t first_min8_avx2(__m256 v) {
    __m256 m = _mm256_min_ps(v, _mm256_permute_ps(v, _MM_SHUFFLE(2, 3, 0, 1)));
    m = _mm256_min_ps(m, _mm256_permute_ps(m, _MM_SHUFFLE(1, 0, 3, 2)));
    m = _mm256_min_ps(m, _mm256_permute2f128_ps(m, m, 1));
    return __builtin_ctz(static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(v, m, _CMP_EQ_OQ))));
}

__attribute__((target("avx2"))) inline __m256 add_to_lane8_avx2(__m256 v, std::int32_t p, float add) {
    const __m256i lane = _mm256_cmpeq_epi32(_mm256_set1_epi32(p), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_add_ps(v, _mm256_and_ps(_mm256_castsi256_ps(lane), _mm256_set1_ps(add)));
}

// greedy_rows<float, true> for AVX2 machines: same decisions, bit for bit.
__attribute__((target("avx2"))) void greedy_rows_f32x8_avx2(const PackRows& r, float* __restrict load,
                                                            std::int32_t* __restrict count) {
    const std::int32_t rows = r.rows, n = r.n, capacity = n / r.m;
    const float* __restrict weight = r.weight;
    const std::int32_t* __restrict order = r.order;
    std::int32_t* __restrict pack = r.pack;
    std::int32_t* __restrict rank = r.rank;
    const float full = std::numeric_limits<float>::infinity();
    for (std::int32_t row = 0; row < rows; ++row)
        for (std::int32_t p = 0; p < kLanes; ++p) {
            load[row * kLanes + p] = p < r.m ? 0.0f : full;
            count[row * kLanes + p] = 0;
        }
    for (std::int32_t k = 0; k < n; ++k) {
        for (std::int32_t row = 0; row < rows; ++row) {
            float* l = load + row * kLanes;
            std::int32_t* c = count + row * kLanes;
            const __m256 v = _mm256_loadu_ps(l);
            const std::int32_t item = row * n + order[row * n + k];
            const std::int32_t p = first_min8_avx2(v);
            pack[item] = p;
            rank[item] = c[p];
            const float add = ++c[p] == capacity ? full : weight[item];
            _mm256_storeu_ps(l, add_to_lane8_avx2(v, p, add));
        }
    }
}

__attribute__((target("avx2"))) inline std::int32_t first_min8_avx2(__m256d lo, __m256d hi) {
    __m256d m = _mm256_min_pd(lo, hi);
    m = _mm256_min_pd(m, _mm256_permute_pd(m, 0b0101));
    m = _mm256_min_pd(m, _mm256_permute2f128_pd(m, m, 1));
    const int mask = _mm256_movemask_pd(_mm256_cmp_pd(lo, m, _CMP_EQ_OQ)) |
                     (_mm256_movemask_pd(_mm256_cmp_pd(hi, m, _CMP_EQ_OQ)) << 4);
    return __builtin_ctz(static_cast<unsigned>(mask));
}

// greedy_rows<double, true> for AVX2 machines: same decisions, bit for bit.
__attribute__((target("avx2"))) void greedy_rows_f64x8_avx2(const PackRows& r, double* __restrict load,
                                                            std::int32_t* __restrict count) {
    const std::int32_t rows = r.rows, n = r.n, capacity = n / r.m;
    const float* __restrict weight = r.weight;
    const std::int32_t* __restrict order = r.order;
    std::int32_t* __restrict pack = r.pack;
    std::int32_t* __restrict rank = r.rank;
    const double full = std::numeric_limits<double>::infinity();
    for (std::int32_t row = 0; row < rows; ++row)
        for (std::int32_t p = 0; p < kLanes; ++p) {
            load[row * kLanes + p] = p < r.m ? 0.0 : full;
            count[row * kLanes + p] = 0;
        }
    const __m256i lanes_lo = _mm256_setr_epi64x(0, 1, 2, 3), lanes_hi = _mm256_setr_epi64x(4, 5, 6, 7);
    for (std::int32_t k = 0; k < n; ++k) {
        for (std::int32_t row = 0; row < rows; ++row) {
            double* l = load + row * kLanes;
            std::int32_t* c = count + row * kLanes;
            const __m256d lo = _mm256_loadu_pd(l), hi = _mm256_loadu_pd(l + 4);
            const std::int32_t item = row * n + order[row * n + k];
            const std::int32_t p = first_min8_avx2(lo, hi);
            pack[item] = p;
            rank[item] = c[p];
            const __m256d add = _mm256_set1_pd(++c[p] == capacity ? full : static_cast<double>(weight[item]));
            const __m256i lane = _mm256_set1_epi64x(p);
            _mm256_storeu_pd(l, _mm256_add_pd(lo, _mm256_and_pd(_mm256_castsi256_pd(_mm256_cmpeq_epi64(lane, lanes_lo)), add)));
            _mm256_storeu_pd(l + 4, _mm256_add_pd(hi, _mm256_and_pd(_mm256_castsi256_pd(_mm256_cmpeq_epi64(lane, lanes_hi)), add)));
        }
    }
}
#endif

template <typename Acc>
inline std::int32_t first_min(const Acc* l, std::int32_t m) {
    std::int32_t best = 0;
    for (std::int32_t p = 1; p < m; ++p) best = l[p] < l[best] ? p : best;
    return best;
}

// True when no pack load can reach +inf (n times the largest weight stays finite), so +inf can
// mark full packs.
template <typename Acc>
bool loads_stay_finite(const PackRows& r) {
    float largest = 0.0f;
    for (std::int32_t i = 0; i < r.rows * r.n; ++i) largest = std::max(largest, r.weight[i]);
    return static_cast<double>(largest) * r.n < static_cast<double>(std::numeric_limits<Acc>::max()) * 0.5;
}

template <typename Acc, bool Fixed8>
void greedy_rows(const PackRows& r, Acc* __restrict load, std::int32_t* __restrict count) {
    // Locals, not r's fields: stores through `pack` and `rank` could otherwise alias them.
    const std::int32_t rows = r.rows, n = r.n, m = r.m, capacity = n / m, width = Fixed8 ? kLanes : m;
    const float* __restrict weight = r.weight;
    const std::int32_t* __restrict order = r.order;
    std::int32_t* __restrict pack = r.pack;
    std::int32_t* __restrict rank = r.rank;
    const Acc full = std::numeric_limits<Acc>::infinity();
    for (std::int32_t row = 0; row < rows; ++row)
        for (std::int32_t p = 0; p < width; ++p) {
            load[row * width + p] = p < m ? Acc(0) : full;
            count[row * width + p] = 0;
        }
    for (std::int32_t k = 0; k < n; ++k) {
        for (std::int32_t row = 0; row < rows; ++row) {
            Acc* l = load + row * width;
            std::int32_t* c = count + row * width;
            const std::int32_t item = row * n + order[row * n + k];
            const std::int32_t p = Fixed8 ? first_min8(l) : first_min(l, m);
            pack[item] = p;
            rank[item] = c[p];
            const Acc add = ++c[p] == capacity ? full : static_cast<Acc>(weight[item]);
            if (Fixed8)
                add_to_lane8(l, p, add);
            else
                l[p] += add;
        }
    }
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
    const std::int32_t width = r.m <= kLanes ? kLanes : r.m;
    load.resize(static_cast<std::size_t>(r.rows * width));
    count.resize(static_cast<std::size_t>(r.rows * width));
    if (!loads_stay_finite<Acc>(r)) return greedy_rows_checked(r, load.data(), count.data());
    if (width != kLanes) return greedy_rows<Acc, false>(r, load.data(), count.data());
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2")) {
        if constexpr (std::is_same_v<Acc, float>) return greedy_rows_f32x8_avx2(r, load.data(), count.data());
        if constexpr (std::is_same_v<Acc, double>) return greedy_rows_f64x8_avx2(r, load.data(), count.data());
    }
#endif
    greedy_rows<Acc, true>(r, load.data(), count.data());
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

}  // namespace eplb::core
