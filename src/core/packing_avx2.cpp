// The greedy packing loop compiled for AVX2 (this file alone is built with -mavx2; it is called
// only after a run-time check). Eight pack loads of a row sit in one register (float) or two
// (double); wider rows take one pass for their minimum and one for its first lane. Nothing here
// but the loop and its lane operations, so that no AVX2 code can stand in for a shared inline
// function elsewhere.
#include "packing_lockstep.hpp"

#include <algorithm>
#include <cstdint>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace eplb::core {

#if defined(__AVX2__)
namespace {

// The minimum of all lanes of m, in every lane.
__m256 all_lanes_min(__m256 m) {
    m = _mm256_min_ps(m, _mm256_permute_ps(m, _MM_SHUFFLE(2, 3, 0, 1)));
    m = _mm256_min_ps(m, _mm256_permute_ps(m, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm256_min_ps(m, _mm256_permute2f128_ps(m, m, 1));
}

__m256d all_lanes_min(__m256d m) {
    m = _mm256_min_pd(m, _mm256_permute_pd(m, 0b0101));
    return _mm256_min_pd(m, _mm256_permute2f128_pd(m, m, 1));
}

struct Avx2FloatLanes {
    static std::int32_t first_min(const float* l, std::int32_t) {
        const __m256 v = _mm256_loadu_ps(l);
        const __m256 m = all_lanes_min(v);
        return __builtin_ctz(static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(v, m, _CMP_EQ_OQ))));
    }
    static void add(float* l, std::int32_t p, float value) {
        const __m256i lane = _mm256_cmpeq_epi32(_mm256_set1_epi32(p), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        const __m256 added = _mm256_and_ps(_mm256_castsi256_ps(lane), _mm256_set1_ps(value));
        _mm256_storeu_ps(l, _mm256_add_ps(_mm256_loadu_ps(l), added));
    }
};

struct Avx2DoubleLanes {
    static std::int32_t first_min(const double* l, std::int32_t) {
        const __m256d lo = _mm256_loadu_pd(l), hi = _mm256_loadu_pd(l + 4);
        const __m256d m = all_lanes_min(_mm256_min_pd(lo, hi));
        const int mask = _mm256_movemask_pd(_mm256_cmp_pd(lo, m, _CMP_EQ_OQ)) |
                         (_mm256_movemask_pd(_mm256_cmp_pd(hi, m, _CMP_EQ_OQ)) << 4);
        return __builtin_ctz(static_cast<unsigned>(mask));
    }
    static void add(double* l, std::int32_t p, double value) {
        const __m256i lane = _mm256_set1_epi64x(p);
        const __m256d v = _mm256_set1_pd(value);
        const __m256d lo = _mm256_castsi256_pd(_mm256_cmpeq_epi64(lane, _mm256_setr_epi64x(0, 1, 2, 3)));
        const __m256d hi = _mm256_castsi256_pd(_mm256_cmpeq_epi64(lane, _mm256_setr_epi64x(4, 5, 6, 7)));
        _mm256_storeu_pd(l, _mm256_add_pd(_mm256_loadu_pd(l), _mm256_and_pd(lo, v)));
        _mm256_storeu_pd(l + 4, _mm256_add_pd(_mm256_loadu_pd(l + 4), _mm256_and_pd(hi, v)));
    }
};

// One AVX2 register of pack loads: 8 floats or 4 doubles.
struct FloatRegister {
    using Acc = float;
    static constexpr std::int32_t kLanes = 8;
    static __m256 load(const float* p) { return _mm256_loadu_ps(p); }
    static __m256 min(__m256 a, __m256 b) { return _mm256_min_ps(a, b); }
    static unsigned equal_lanes(__m256 a, __m256 b) {
        return static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_EQ_OQ)));
    }
};

struct DoubleRegister {
    using Acc = double;
    static constexpr std::int32_t kLanes = 4;
    static __m256d load(const double* p) { return _mm256_loadu_pd(p); }
    static __m256d min(__m256d a, __m256d b) { return _mm256_min_pd(a, b); }
    static unsigned equal_lanes(__m256d a, __m256d b) {
        return static_cast<unsigned>(_mm256_movemask_pd(_mm256_cmp_pd(a, b, _CMP_EQ_OQ)));
    }
};

// Rows of any multiple of 8 packs (more than 8: global plans, or nodes of more than 8 GPUs). The
// minimum is found first (no NaN can occur, and +0 and -0 compare equal), then its first lane from
// the lanes equal to it, 64 at a time: no branch on where the minimum is.
template <typename Register>
struct Avx2WideLanes {
    using Acc = typename Register::Acc;
    static std::int32_t first_min(const Acc* l, std::int32_t width) {
        constexpr std::int32_t lanes = Register::kLanes;
        auto m = Register::load(l);
        for (std::int32_t p = lanes; p < width; p += lanes) m = Register::min(m, Register::load(l + p));
        m = all_lanes_min(m);
        for (std::int32_t first = 0;; first += 64) {
            std::uint64_t equal = 0;
            for (std::int32_t p = first; p < std::min(first + 64, width); p += lanes)
                equal |= std::uint64_t{Register::equal_lanes(Register::load(l + p), m)} << (p - first);
            if (equal) return first + __builtin_ctzll(equal);
        }
    }
    static void add(Acc* l, std::int32_t p, Acc value) { l[p] += value; }
};

bool have_avx2() { return __builtin_cpu_supports("avx2"); }

}  // namespace

bool greedy_packing_avx2(const PackRows& rows, std::int32_t width, float* load, std::int32_t* count) {
    if (!have_avx2()) return false;
    if (width == kLockstepLanes)
        greedy_lockstep<float, Avx2FloatLanes>(rows, width, load, count);
    else
        greedy_lockstep<float, Avx2WideLanes<FloatRegister>>(rows, width, load, count);
    return true;
}

bool greedy_packing_avx2(const PackRows& rows, std::int32_t width, double* load, std::int32_t* count) {
    if (!have_avx2()) return false;
    if (width == kLockstepLanes)
        greedy_lockstep<double, Avx2DoubleLanes>(rows, width, load, count);
    else
        greedy_lockstep<double, Avx2WideLanes<DoubleRegister>>(rows, width, load, count);
    return true;
}
#else
bool greedy_packing_avx2(const PackRows&, std::int32_t, float*, std::int32_t*) { return false; }
bool greedy_packing_avx2(const PackRows&, std::int32_t, double*, std::int32_t*) { return false; }
#endif

}  // namespace eplb::core
