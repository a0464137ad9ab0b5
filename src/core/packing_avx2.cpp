// The greedy packing loop compiled for AVX2 (this file alone is built with -mavx2; it is called
// only after a run-time check). Eight pack loads of a row sit in one register (float) or two
// (double). Nothing here but the loop and its lane operations, so that no AVX2 code can stand in
// for a shared inline function elsewhere.
#include "packing_lockstep.hpp"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace eplb::core {

#if defined(__AVX2__)
namespace {

struct Avx2FloatLanes {
    static std::int32_t first_min(const float* l, std::int32_t) {
        const __m256 v = _mm256_loadu_ps(l);
        __m256 m = _mm256_min_ps(v, _mm256_permute_ps(v, _MM_SHUFFLE(2, 3, 0, 1)));
        m = _mm256_min_ps(m, _mm256_permute_ps(m, _MM_SHUFFLE(1, 0, 3, 2)));
        m = _mm256_min_ps(m, _mm256_permute2f128_ps(m, m, 1));
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
        __m256d m = _mm256_min_pd(lo, hi);
        m = _mm256_min_pd(m, _mm256_permute_pd(m, 0b0101));
        m = _mm256_min_pd(m, _mm256_permute2f128_pd(m, m, 1));
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

bool have_avx2() { return __builtin_cpu_supports("avx2"); }

}  // namespace

bool greedy_packing_avx2(const PackRows& rows, float* load, std::int32_t* count) {
    if (!have_avx2()) return false;
    greedy_lockstep<float, Avx2FloatLanes>(rows, kLockstepLanes, load, count);
    return true;
}

bool greedy_packing_avx2(const PackRows& rows, double* load, std::int32_t* count) {
    if (!have_avx2()) return false;
    greedy_lockstep<double, Avx2DoubleLanes>(rows, kLockstepLanes, load, count);
    return true;
}
#else
bool greedy_packing_avx2(const PackRows&, float*, std::int32_t*) { return false; }
bool greedy_packing_avx2(const PackRows&, double*, std::int32_t*) { return false; }
#endif

}  // namespace eplb::core
