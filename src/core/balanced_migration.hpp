// Migration-aware planning of the balanced policy (issue 6, PlanOptions::previous).
//
// Two candidates per layer, both measured in moved replicas (slots whose expert changes against
// the previous plan's row):
// - A, the plan made from scratch with its GPUs (and, for hierarchical and relaxed plans, its
//   nodes) renamed to overlap the previous plan most: any such renaming keeps the balance; the
//   renaming maximises the number of (GPU, expert) pairs both plans share (assignment problems,
//   solved exactly), and every expert staying on a GPU keeps its slot there;
// - B, the previous plan repaired: duplicates removed and local search run only until every GPU is
//   within the budget (balanced.cpp). For hierarchical plans whose previous split of groups over
//   nodes cannot meet the budget, the nearest split that can (fewest groups moved) is taken first
//   and only the nodes whose groups change are rebuilt.
#pragma once

#include "balanced_placement.hpp"

#include <cstdint>
#include <vector>

namespace eplb::core {

struct MigrationScratch {
    std::vector<std::int64_t> overlap, cost;
    std::vector<std::int32_t> assignment, node_assignment, gpu_target;
    std::vector<std::int64_t> row;
    std::vector<std::int32_t> row_rank;
    std::vector<std::int32_t> group_home;
    std::vector<std::uint8_t> used;
    std::vector<std::int64_t> shared;                            // [G, G] (GPU, expert) pairs shared
    std::vector<std::int32_t> expert_begin, expert_gpus, cursor;  // previous slots grouped by expert
};

/// Slots whose expert differs between two rows of R slots.
std::int64_t moved_slots(const std::int64_t* a, const std::int64_t* b, std::int32_t slots);

/// scratch.shared [G, G]: the (GPU, expert) pairs GPU a of the plan row `row` [R] shares with GPU b
/// of `previous` [R], sum over experts e of min(replicas of e on a, replicas of e on b).
void count_shared_pairs(const LayerShape& shape, const std::int64_t* row, const std::int64_t* previous,
                        MigrationScratch& scratch);

/// Renames the GPUs (within nodes, and the nodes, unless the shape is global) of the plan row
/// `phy2log`/`rank` [R] to share the most (GPU, expert) pairs with `previous` [R], and orders each
/// GPU's slots so that an expert it held before keeps its slot (the others fill the free slots in
/// their current order). Ranks travel with their replicas.
void relabel_to_previous(const LayerShape& shape, std::int64_t* phy2log, std::int32_t* rank,
                         const std::int64_t* previous, MigrationScratch& scratch);

/// Orders each GPU's slots of the row so that an expert the GPU held in `previous` keeps (one of)
/// its old slot(s); the others fill the free slots in their current order. Ranks travel along.
void keep_slots(const LayerShape& shape, std::int64_t* phy2log, std::int32_t* rank, const std::int64_t* previous,
                MigrationScratch& scratch);

/// Replica ranks for the previous row that make it a plan of the shape's mode: the first replica
/// of each expert (on its group's home node for relaxed plans) becomes the primary. Returns false
/// when the row breaks the mode's rule (hierarchical: a group spread over nodes, or a node with
/// other than groups / N groups; relaxed: no node holding a replica of every expert of a group
/// with groups / N groups per node).
bool previous_ranks(const LayerShape& shape, const std::int64_t* previous, std::int32_t* rank,
                    MigrationScratch& scratch);

/// The node of each group in a previous row that previous_ranks accepted (hierarchical plans).
const std::vector<std::int32_t>& previous_split(const MigrationScratch& scratch);

/// For hierarchical plans: the split (groups / N groups per node, nodes as in the previous plan)
/// that moves the fewest groups away from `previous` [groups] while every node's load divided by
/// its G / N GPUs is at most `budget`, ties to the lower largest node load. Returns false when no
/// split meets the budget (or the search gives up, after a bounded number of steps).
bool nearest_feasible_split(const double* weight, const LayerShape& shape, const std::vector<std::int32_t>& previous,
                            double budget, std::vector<std::int32_t>& split);

/// The previous row [R] adapted to `split`: on each node, replicas of groups that stay keep their
/// slots up to the node's D'Hondt replica counts (float64, at most G / N replicas each); the freed
/// slots take the missing replicas, heaviest first, each on the lightest GPU of the node with a
/// free slot that does not hold the expert yet. Writes `row` and `rank` [R] (the first replica of
/// an expert in slot order is its primary).
void rebuild_for_split(const double* weight, const LayerShape& shape, const std::vector<std::int32_t>& previous_split,
                       const std::vector<std::int32_t>& split, const std::int64_t* previous, std::int64_t* row,
                       std::int32_t* rank);

}  // namespace eplb::core
