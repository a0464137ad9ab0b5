// The stable descending order of weights (src/core/order.hpp) at every size, and the greedy
// packing's AVX2 lane operations against its portable ones (src/core/packing.hpp).
#include "core/order.hpp"
#include "core/packing.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace eplb::core {
namespace {

// Sizes on both sides of the switch from counting to sorting, weights with ties, +0 and -0.
TEST(Order, IsTheStableDescendingArgsortAtEverySize) {
    std::mt19937_64 rng(17);
    OrderScratch scratch;
    for (const std::int32_t n : {1, 7, 8, 9, 100, 256, 767, 768, 769, 1000, 2048}) {
        for (const bool ties : {false, true}) {
            std::vector<float> w(static_cast<std::size_t>(n));
            std::exponential_distribution<float> spread(1.0f);
            for (float& x : w) x = !ties ? spread(rng) : rng() % 4 == 0 ? -0.0f : static_cast<float>(rng() % 3);
            std::vector<std::int32_t> expected(w.size()), order(w.size());
            std::iota(expected.begin(), expected.end(), 0);
            std::stable_sort(expected.begin(), expected.end(),
                             [&](std::int32_t a, std::int32_t b) { return w[a] > w[b]; });
            stable_descending_order(w.data(), n, order.data(), scratch);
            EXPECT_EQ(order, expected) << "n=" << n << (ties ? ", ties" : "");
        }
    }
}

struct Packed {
    std::vector<std::int32_t> pack, rank;
    bool operator==(const Packed& o) const { return pack == o.pack && rank == o.rank; }
};

// Rows of n = m * capacity items; weights drawn from few values (ties, zeros) or a wide range.
struct Rows {
    std::int32_t rows, n, m;
    std::vector<float> weight;
    std::vector<std::int32_t> order;
};

Rows random_rows(std::mt19937_64& rng, std::int32_t m) {
    const std::int32_t rows = 1 + static_cast<std::int32_t>(rng() % 5);
    const std::int32_t n = m * (1 + static_cast<std::int32_t>(rng() % 10));
    Rows r{rows, n, m, std::vector<float>(static_cast<std::size_t>(rows * n)),
           std::vector<std::int32_t>(static_cast<std::size_t>(rows * n))};
    const bool ties = rng() % 2 == 0;
    std::uniform_real_distribution<float> wide(0.0f, 1000.0f);
    for (float& w : r.weight) w = ties ? static_cast<float>(rng() % 4) : wide(rng);
    OrderScratch scratch;
    for (std::int32_t row = 0; row < rows; ++row)
        stable_descending_order(r.weight.data() + row * n, n, r.order.data() + row * n, scratch);
    return r;
}

Packed pack_rows(const Rows& r, bool seed, bool vector) {
    Packed out{std::vector<std::int32_t>(r.weight.size()), std::vector<std::int32_t>(r.weight.size())};
    PackScratch scratch;
    const PackRows rows{r.rows, r.n, r.m, r.weight.data(), r.order.data(), out.pack.data(), out.rank.data()};
    allow_vector_packing(vector);
    if (seed)
        capacity_packing(rows, /*refine_steps=*/2, scratch);
    else
        balanced_packing(rows, scratch);
    allow_vector_packing(true);
    return out;
}

// Widths of one lane block (m <= 8) and of several (global plans, nodes of more than 8 GPUs), with
// and without padding lanes.
TEST(Packing, TheVectorGreedyPacksAsThePortableOne) {
    std::mt19937_64 rng(808);
    std::int32_t checked = 0;
    for (const std::int32_t m : {2, 3, 7, 8, 9, 12, 16, 24, 31, 32, 33, 64, 72}) {
        for (int trial = 0; trial < 40; ++trial) {
            const Rows r = random_rows(rng, m);
            for (const bool seed : {false, true}) {
                const std::string where = std::string(seed ? "seed" : "deepseek") + ", m=" + std::to_string(m) +
                                          ", n=" + std::to_string(r.n) + ", trial " + std::to_string(trial);
                EXPECT_TRUE(pack_rows(r, seed, false) == pack_rows(r, seed, true)) << where;
                ++checked;
            }
        }
    }
    EXPECT_EQ(checked, 13 * 40 * 2);
}

}  // namespace
}  // namespace eplb::core
