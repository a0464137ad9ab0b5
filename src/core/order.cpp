#include "order.hpp"

#include <algorithm>
#include <cstring>

namespace eplb::core {
namespace {

// Rows up to this size are ordered by counting, for each item, the items that precede it
// (branch-free compares that vectorise, 8 per AVX2 instruction); beyond it, a sort. The counting
// costs O(n^2 / 8) but no mispredicted branch: on exponentially distributed weights it takes
// 2.7 us for 256 items against 7.2 us for the sort, and the two meet at about 800 items.
constexpr std::int32_t kCountingOrderMax = 768;

constexpr std::int32_t kBlock = 8;
using FloatBlock = float __attribute__((vector_size(kBlock * sizeof(float))));
using CountBlock = std::int32_t __attribute__((vector_size(kBlock * sizeof(std::int32_t))));

// rank[i] = #{j : w[j] > w[i]} + #{j < i : w[j] == w[i]}: the position of item i in the stable
// descending order. Eight items at a time share one vector of counters, compared against each
// w[j] in turn: items before the block count when >=, items after it when >, and inside the
// block the ids decide ties. `padded` holds w rounded up to whole blocks.
__attribute__((target_clones("avx2", "default")))
void stable_ranks(const float* w, const float* padded, std::int32_t n, std::int32_t* rank) {
    const CountBlock lane_ids = {0, 1, 2, 3, 4, 5, 6, 7};
    for (std::int32_t first = 0; first < n; first += kBlock) {
        FloatBlock block;
        std::memcpy(&block, padded + first, sizeof block);
        CountBlock count = {};
        const std::int32_t block_end = std::min(first + kBlock, n);
        // (A vector initialised from one value compiles to a broadcast load.)
#pragma GCC unroll 4
        for (std::int32_t j = 0; j < first; ++j) {
            const float x = w[j];
            count -= FloatBlock{x, x, x, x, x, x, x, x} >= block;
        }
        for (std::int32_t j = first; j < block_end; ++j) {
            const float x = w[j];
            const FloatBlock wj = {x, x, x, x, x, x, x, x};
            count -= (wj > block) | ((wj == block) & ((CountBlock{} + (j - first)) < lane_ids));
        }
#pragma GCC unroll 4
        for (std::int32_t j = block_end; j < n; ++j) {
            const float x = w[j];
            count -= FloatBlock{x, x, x, x, x, x, x, x} > block;
        }
        for (std::int32_t lane = 0; lane < kBlock && first + lane < n; ++lane) rank[first + lane] = count[lane];
    }
}

void counting_order(const float* w, std::int32_t n, std::int32_t* order, std::int32_t* rank, float* padded) {
    if (n % kBlock != 0) {
        std::copy(w, w + n, padded);
        std::fill(padded + n, padded + (n + kBlock - 1) / kBlock * kBlock, 0.0f);
    }
    stable_ranks(w, n % kBlock ? padded : w, n, rank);
    for (std::int32_t i = 0; i < n; ++i) order[rank[i]] = i;
}

// Maps a float to an unsigned integer of the same order (-0 and +0 map alike).
std::uint32_t order_bits(float x) {
    if (x == 0.0f) x = 0.0f;
    std::uint32_t bits = 0;
    std::memcpy(&bits, &x, sizeof bits);
    return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

// A sort of unique keys whose descending order is (weight descending, id ascending).
void sorting_order(const float* w, std::int32_t n, std::int32_t* order, std::uint64_t* keys) {
    for (std::int32_t i = 0; i < n; ++i)
        keys[i] = (std::uint64_t{order_bits(w[i])} << 32) | (0xFFFFFFFFu - static_cast<std::uint32_t>(i));
    std::sort(keys, keys + n, [](std::uint64_t a, std::uint64_t b) { return a > b; });
    for (std::int32_t k = 0; k < n; ++k)
        order[k] = static_cast<std::int32_t>(0xFFFFFFFFu - static_cast<std::uint32_t>(keys[k]));
}

}  // namespace

void stable_descending_order(const float* weight, std::int32_t n, std::int32_t* order, OrderScratch& scratch) {
    if (n <= kCountingOrderMax) {
        scratch.counts.resize(static_cast<std::size_t>(n));
        scratch.padded.resize(static_cast<std::size_t>(n + kBlock));
        counting_order(weight, n, order, scratch.counts.data(), scratch.padded.data());
    } else {
        scratch.keys.resize(static_cast<std::size_t>(n));
        sorting_order(weight, n, order, scratch.keys.data());
    }
}

}  // namespace eplb::core
