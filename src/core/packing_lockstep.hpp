// The greedy packing loop shared by packing.cpp and packing_avx2.cpp (compiled for AVX2).
// Internal linkage on purpose: each file gets its own copy, built for its own instruction set.
#pragma once

#include "packing.hpp"

#include <cstdint>

namespace eplb::core {

/// Packs per row handled by the fixed-width lane operations; wider rows are padded to a multiple
/// of it.
constexpr std::int32_t kLockstepLanes = 8;

/// The row width of m packs: m rounded up to a multiple of kLockstepLanes.
constexpr std::int32_t lockstep_width(std::int32_t m) {
    return (m + kLockstepLanes - 1) / kLockstepLanes * kLockstepLanes;
}

/// The AVX2 build of the greedy (packing_avx2.cpp) for rows of `width` = lockstep_width(m) packs.
/// Returns false, doing nothing, where the processor or the build has no AVX2.
bool greedy_packing_avx2(const PackRows& rows, std::int32_t width, float* load, std::int32_t* count);
bool greedy_packing_avx2(const PackRows& rows, std::int32_t width, double* load, std::int32_t* count);

namespace {

// Items in order, each to the lightest pack with room, lowest pack id on ties. `Acc` is the type
// of the running pack loads (float32 for deepseek, float64 for the seed). A full pack's load is
// set to +inf so that the choice is a plain first-minimum (callers check that real loads stay
// finite); so are the padding lanes m..width-1, which never hold the minimum. The rows of one
// call are advanced in lockstep because their dependency chains are independent.
// `Lanes::first_min(l, width)` gives the lowest pack holding the minimum of a row's `width` loads
// and `Lanes::add(l, p, v)` adds v to pack p (any other lane it touches gets +0, bit-identical).
template <typename Acc, typename Lanes>
inline void greedy_lockstep(const PackRows& r, std::int32_t width, Acc* __restrict load,
                            std::int32_t* __restrict count) {
    // Locals, not r's fields: stores through `pack` and `rank` could otherwise alias them.
    const std::int32_t rows = r.rows, n = r.n, m = r.m, capacity = n / m;
    const float* __restrict weight = r.weight;
    const std::int32_t* __restrict order = r.order;
    std::int32_t* __restrict pack = r.pack;
    std::int32_t* __restrict rank = r.rank;
    const Acc full = static_cast<Acc>(__builtin_inf());
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
            const std::int32_t p = Lanes::first_min(l, width);
            pack[item] = p;
            rank[item] = c[p];
            Lanes::add(l, p, ++c[p] == capacity ? full : static_cast<Acc>(weight[item]));
        }
    }
}

}  // namespace
}  // namespace eplb::core
