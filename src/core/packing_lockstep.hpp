// The greedy packing loop shared by packing.cpp and packing_avx2.cpp (compiled for AVX2).
// Internal linkage on purpose: each file gets its own copy, built for its own instruction set.
#pragma once

#include "packing.hpp"

#include <cstdint>

namespace eplb::core {

/// Packs per row handled by the fixed-width lane operations.
constexpr std::int32_t kLockstepLanes = 8;

/// The AVX2 build of the greedy for rows of at most 8 packs (packing_avx2.cpp). Returns false,
/// doing nothing, where the processor or the build has no AVX2.
bool greedy_packing_avx2(const PackRows& rows, float* load, std::int32_t* count);
bool greedy_packing_avx2(const PackRows& rows, double* load, std::int32_t* count);

namespace {

// Items in order, each to the lightest pack with room, lowest pack id on ties. `Acc` is the type
// of the running pack loads (float32 for deepseek, float64 for the seed). A full pack's load is
// set to +inf so that the choice is a plain first-minimum (callers check that real loads stay
// finite); the rows of one call are advanced in lockstep because their dependency chains are
// independent. `Lanes::first_min(l, m)` gives the lowest pack holding the minimum of a row's
// `width` loads and `Lanes::add(l, p, v)` adds v to pack p (other lanes get +0, bit-identical).
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
            const std::int32_t p = Lanes::first_min(l, m);
            pack[item] = p;
            rank[item] = c[p];
            Lanes::add(l, p, ++c[p] == capacity ? full : static_cast<Acc>(weight[item]));
        }
    }
}

}  // namespace
}  // namespace eplb::core
