// Replicating n logical experts into `slots` >= n physical slots (DESIGN.md 3.1 step 2, 3.2).
#pragma once

#include <cstdint>
#include <vector>

namespace eplb::core {

/// Result of one row's replication, in the reference programs' column layout: columns 0..n-1
/// hold one copy of each expert (rank 0), columns n..slots-1 the extra replicas in the order they
/// were added. `rank` of a replica is the expert's count before it was added.
struct ReplicaOut {
    std::int32_t* expert;  ///< [slots] expert of each column
    std::int32_t* rank;    ///< [slots] replica rank of each column
    std::int32_t* count;   ///< [n] replicas of each expert
};

/// DeepSeek's replication: each extra slot goes to the expert with the largest float32
/// `w / count`, lowest id on ties. Only the top `slots - n` experts by (weight desc, id asc) can
/// ever win, so only they are scanned: `order` [n] is the experts' stable descending weight order.
void replicate_dhondt(const float* weight, const std::int32_t* order, std::int32_t n, std::int32_t slots,
                      ReplicaOut out);

/// The seed's replication (seed document, `replicate_experts`): D'Hondt for all but the last
/// `tail = max(1, ceil(extra / 10))` extra slots; each tail slot picks Sainte-Lague
/// `w / (2c - 1)` or Huntington-Hill `w / sqrt(c (c + 1))` by the lower predicted peak (ties to the
/// lower second-highest average), argmax ties to the smaller current average then lower id; then one
/// donor -> receiver move (top-2 donors, bottom-2 receivers by average) when it strictly lowers the
/// peak. Nothing happens when slots == n.
/// Scratch space for replicate_seed.
struct ReplicaScratch {
    std::vector<float> average;  // [n] current w / c (for the fix-up)
};

void replicate_seed(const float* weight, const std::int32_t* order, std::int32_t n, std::int32_t slots,
                    ReplicaScratch& scratch, ReplicaOut out);

/// The seed's donor -> receiver fix-up on a replicated row: among the top-2 donors and bottom-2
/// receivers by average, the single move that strictly lowers the peak average (float64), ties
/// within 1e-12 to the lower second-highest; applies it and returns true, or returns false.
/// replicate_seed skips it below 2^23 slots, where no move can qualify (see there); tests check it.
bool donor_receiver_fixup(const float* weight, std::int32_t n, std::int32_t slots, ReplicaScratch& scratch,
                          ReplicaOut out);

/// Scratch space for replica_packing_order.
struct ReplicaOrderScratch {
    std::vector<std::int32_t> replicated;  // columns of experts with more than one replica
    std::vector<std::int32_t> singles;     // experts with one copy, in weight order
};

/// The columns of a replicated row in packing order: stable descending by (`item_load[column]`,
/// column), where item_load[c] = w[expert[c]] / count[expert[c]]. Equivalent to a stable sort of
/// all `slots` items, but only the replicas of experts with count > 1 are sorted; they are merged
/// into `expert_order` (the weight order), which already orders the experts with one copy.
void replica_packing_order(const float* item_load, const std::int32_t* expert_order, std::int32_t n,
                           std::int32_t slots, const ReplicaOut& replicas, ReplicaOrderScratch& scratch,
                           std::int32_t* order);

}  // namespace eplb::core
