// The balanced policy's pair repartition (issue 6): the best split of the loaded replicas of two
// GPUs between them, for sparse layers where swaps of one or two slots get stuck.
//
// On a sparse layer a GPU holds three or four loaded replicas (SGLang's DeepSeek-R1 prefill
// statistics: 72 of 256 experts carry load), and the best change between the heaviest GPU h and
// another GPU j often moves three of them at once. A repartition pools the loaded slots of h and
// j (at most kRepartitionItems) and tries every way to split them between the two GPUs; slots
// without load fill what each GPU has left, so each keeps its S slots.
#pragma once

#include "balanced_placement.hpp"

#include <cstdint>
#include <vector>

namespace eplb::core {

/// Loaded slots of a GPU pair a repartition pools at most (2^10 splits).
inline constexpr std::int32_t kRepartitionItems = 10;

/// Whether the local search repartitions pairs of GPUs in the placement's mode: hierarchical and
/// global plans. Relaxed plans keep swaps, exchanges of two slots and count moves: with
/// repartitions their balance on the next window fell on both recorded series (DS-V2-Lite and
/// OLMoE) and their in-sample balance hardly moved (prefill statistics 0.9712 to 0.9719 of W/G,
/// DS-V2-Lite 0.9973 to 0.9972, OLMoE 0.9978 to 0.9971).
inline bool repartitions_allowed(const Placement& placement) {
    return placement.shape().mode != PlacementMode::relaxed;
}

/// A split of the loaded slots of GPUs h and j: slot[i] (i < n; h's slots first) ends on h when
/// bit i of `on_h` is set, on j otherwise.
struct Repartition {
    std::int32_t h = -1, j = -1, n = 0;
    std::int32_t slot[kRepartitionItems] = {};
    std::uint32_t on_h = 0;
    double peak = 0.0;  ///< the larger of the two new loads
};

/// The repartition of GPU h with one of `gpus` (ascending load; the scan stops where the mean of
/// a pair's loads reaches the best peak found) whose larger new load is lowest and below `limit`
/// (j = -1 when none is). A split is allowed when every slot that changes GPU may live on its
/// new one (Placement::may_host), it puts no more replicas of an expert on a GPU than one or than
/// the GPU holds already (unless duplicates are allowed), and each GPU has enough slots without
/// load (whose experts its partner accepts) for the loaded replicas it gives away. Pairs with more
/// than kRepartitionItems loaded slots are skipped. Among equal peaks the first split found wins (partners in `gpus`
/// order, then the subsets of j's slots that go to h by mask, then those of h's that stay by load).
Repartition best_repartition(const Placement& placement, std::int32_t h, const std::vector<std::int32_t>& gpus,
                             double limit);

/// True when best_repartition searches the pair (h, j): they hold at most kRepartitionItems
/// loaded slots together. Every swap and every exchange of two slots between them is one of its
/// splits.
bool repartition_covers(const Placement& placement, std::int32_t h, std::int32_t j);

/// Applies `split` (from best_repartition on the same placement) as swaps of h's and j's slots:
/// loaded replicas that change GPU are swapped with each other, and the rest with slots without
/// load of the other GPU (the first in slot order whose expert the GPU accepts).
void apply_repartition(Placement& placement, const Repartition& split);

}  // namespace eplb::core
