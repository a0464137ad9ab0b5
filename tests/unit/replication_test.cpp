// Internal properties of the replication step (src/core/replication.hpp).
#include "core/order.hpp"
#include "core/replication.hpp"
#include "support/random_cases.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace eplb::core {
namespace {

struct Row {
    std::vector<std::int32_t> expert, rank, count;
    ReplicaOut out() { return ReplicaOut{expert.data(), rank.data(), count.data()}; }
};

// replicate_seed leaves out the seed's donor -> receiver fix-up below 2^23 slots, because no move
// can lower the peak there. Check that claim with the real fix-up on many replicated rows,
// including rows full of ties and zeros.
TEST(SeedReplication, FixupNeverFindsAMoveAfterTheTail) {
    std::mt19937_64 rng(41);
    ReplicaScratch scratch;
    OrderScratch order_scratch;
    std::int64_t rows = 0;
    for (int trial = 0; trial < 3000; ++trial) {
        const std::int32_t n = 1 + static_cast<std::int32_t>(rng() % 80);
        const std::int32_t slots = n + static_cast<std::int32_t>(rng() % (2 * n + 3));
        const auto pattern = test::all_patterns()[trial % test::all_patterns().size()];
        const at::Tensor w = test::random_loads(rng, 1, n, pattern);
        const float* weight = w.data_ptr<float>();
        std::vector<std::int32_t> order(static_cast<std::size_t>(n));
        stable_descending_order(weight, n, order.data(), order_scratch);
        Row row{std::vector<std::int32_t>(slots), std::vector<std::int32_t>(slots), std::vector<std::int32_t>(n)};
        replicate_seed(weight, order.data(), n, slots, scratch, row.out());
        const std::vector<std::int32_t> before = row.expert;
        if (n > 1) {
            EXPECT_FALSE(donor_receiver_fixup(weight, n, slots, scratch, row.out())) << "trial " << trial;
        }
        EXPECT_EQ(row.expert, before);
        ++rows;
    }
    EXPECT_EQ(rows, 3000);
}

// Hand-made counts that no replication would produce still give no move: the donor is either the
// peak (giving up a replica raises its average above the peak) or the peak stays as "other".
TEST(SeedReplication, FixupFindsNoMoveEvenForHandMadeCounts) {
    // Expert 0 (w 10) has 1 replica: the peak is 10. Expert 1 (w 8) has 3 replicas (average 2.67),
    // expert 2 (w 9) has 1. Only the largest two averages are donors: experts 0 and 2 (count 1),
    // so nothing can move: donors need a count above 1.
    const float w[3] = {10.0f, 8.0f, 9.0f};
    Row row{{0, 1, 2, 1, 1}, {0, 0, 0, 1, 2}, {1, 3, 1}};
    ReplicaScratch scratch;
    EXPECT_FALSE(donor_receiver_fixup(w, 3, 5, scratch, row.out()));
    // With expert 0 holding 2 replicas (average 5) and expert 2 as the peak (9), the second donor
    // is expert 0 with baseline "other" = 9: still no strict improvement.
    Row row2{{0, 1, 2, 0, 1}, {0, 0, 0, 1, 1}, {2, 2, 1}};
    EXPECT_FALSE(donor_receiver_fixup(w, 3, 5, scratch, row2.out()));
}

}  // namespace
}  // namespace eplb::core
