// Starting placements of the balanced policy other than `deepseek`'s own plan (issue 6).
//
// - improve_group_split: a better split of groups over nodes (hierarchical and relaxed plans);
// - relaxed_start: node-aware replica counts and a greedy packing in which each expert's primary
//   stays on its group's home node while its other replicas go anywhere.
// Each writes a plan row (phy2log [R], rank [R]; rank 0 marks the primary) for Placement::reset.
#pragma once

#include "balanced_placement.hpp"

#include <cstdint>
#include <vector>

namespace eplb::core {

/// Buffers reused across layers.
struct StartScratch {
    std::vector<double> group_load, node_load, sorted_group_load;
    std::vector<std::int32_t> visited_split, best_split, count, next_rank;
    std::vector<std::int32_t> items, gpu_fill, node_free, node_pending;
    std::vector<double> gpu_load, node_primary, replica_load, lighten_value, dhondt_value;
    std::vector<std::int32_t> expert_node, sorted_experts;
    std::vector<std::uint8_t> on_gpu;
};

/// Lowers the largest node load sum_{g on n} W_g of the split `split` [groups] (groups/N groups
/// per node): exact search over all splits when there are at most kMaxSplits of them, otherwise
/// swaps of two groups between the heaviest node and another while that helps. Keeps `split`
/// unless the new one is lighter by more than a relative 1e-9. Returns true when it changed.
bool improve_group_split(const double* weight, const LayerShape& shape, std::vector<std::int32_t>& split,
                         StartScratch& scratch);

/// With two windows or more: the split (groups / N per node) that minimises the mean over the
/// windows of the largest node share, max_n (load of n in window t) / W_t (windows without load
/// left out), by exhaustive search when there are at most kMaxSplits splits. Keeps `split` unless
/// another is better by more than a relative 1e-9. Returns true when it changed.
bool robust_group_split(const LayerHistory& history, const LayerShape& shape, std::vector<std::int32_t>& split,
                        StartScratch& scratch);

/// The relaxed start for the given split.
/// Counts: one replica each, then each extra replica goes, while some node's primary load
/// P_n = sum_{e home on n} w_e / c_e exceeds the mean node load W / N, to the expert of the
/// heaviest such node whose replicas lighten it most (w_e / (c_e (c_e + 1))), otherwise to the
/// expert with the largest w_e / c_e (D'Hondt); lower id on ties; no expert beyond G replicas.
/// Packing: replicas by load descending (ties: lower expert id, primary first), each to the
/// lightest GPU with room that may take it (a primary: its home node; no duplicates; a node keeps
/// room for its primaries still to come), lowest GPU id on ties.
void relaxed_start(const double* weight, const LayerShape& shape, const std::vector<std::int32_t>& split,
                   std::int64_t* phy2log, std::int32_t* rank, StartScratch& scratch);

/// A start without duplicates wherever one exists, for when repairs leave some: in each domain (a
/// node's groups for hierarchical plans, the whole layer otherwise) D'Hondt counts (float64, lower
/// id on ties) capped at the GPUs an expert may use, then the experts by count descending (ties:
/// heavier, lower id) each onto its count of distinct GPUs with the most free slots (ties: lighter,
/// lower id); a relaxed primary first takes the best GPU of its home node. Placing the largest
/// demands first on the emptiest GPUs realises any counts that fit (Gale-Ryser), so only relaxed
/// plans can be left with duplicates, in corner cases.
void spread_start(const double* weight, const LayerShape& shape, const std::vector<std::int32_t>& split,
                  std::int64_t* phy2log, std::int32_t* rank, StartScratch& scratch);

}  // namespace eplb::core
