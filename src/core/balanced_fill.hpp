// The balanced policy's packing to a target load (issue 6), for sparse, skewed domains on which
// swaps and count moves stall far above the bound: a few experts carry most of a node's load and
// the replica counts the search holds leave no packing near the bound (SGLang's DeepSeek-R1
// prefill statistics, layer 43: 11 % above the best plan before this step).
//
// A target T on a Domain of P GPUs with S slots each is reached by the first of two packings that
// succeeds:
// (a) a depth-first search over replica counts and GPUs, heaviest expert first, with a budget of
//    nodes (balanced_fill.cpp, PackingSearch);
// (b) where P <= 16, for every choice of extra replicas x in {0, .., kExtra}^m of the m = kTop
//    heaviest experts:
//    1. counts: c_e = min(P, max(1, ceil(w_e / T)) + x_e), the slots left over given one at a
//       time to the lightest experts (lower id on ties; experts without load first), so that P S
//       replicas fill the domain;
//    2. best-fit decreasing: replicas heaviest first (lower expert on ties), each onto the GPU
//       with the least room left under T that can still take it (a free slot, no replica of the
//       expert yet; lower GPU on ties); the first replica of an expert placed is its primary.
// On the prefill statistics, (a) brings the global plans (32 GPUs, where (b) is too costly) from
// 0.9940 to 0.9952 of the bound, and (a) and (b) bring the hierarchical ones from 0.9878 to
// 0.9913.
// T is bisected between a floor (the domain's bound) and the domain's current peak; the lowest T
// reached replaces the domain's slots when its peak is lower.
#pragma once

#include "balanced_placement.hpp"

#include <cstdint>
#include <vector>

namespace eplb::core {

/// Reusable buffers of pack_to_target's depth-first search (balanced_fill.cpp, PackingSearch); n
/// loaded experts of the domain, P GPUs.
struct PackingBuffers {
    std::vector<std::int32_t> loaded;       // domain expert indices with load, heaviest first
    std::vector<std::int32_t> zeros;        // domain expert indices without load, ascending
    std::vector<double> suffix_load;        // [n + 1]
    std::vector<std::int32_t> suffix_base;  // [n + 1]
    std::vector<double> load;               // [P]
    std::vector<std::int32_t> used;         // [P]
    std::vector<std::int32_t> gpus_of;      // [n, P]: the GPUs of each placed expert
    std::vector<double> load_before;        // [n, P]: their loads before it
    std::vector<std::int32_t> count;        // [n]
    std::vector<std::int32_t> fits;         // [n]: GPUs of candidates[i] that may take a replica
    std::vector<std::vector<std::int32_t>> candidates;  // per depth: GPUs with a free slot by (load, used)
    std::vector<std::int32_t> moved;        // the previous expert's GPUs, by (load, used, id)
    std::vector<std::uint8_t> is_moved;     // [P]
};

/// Reusable buffers of pack_to_target.
struct FillScratch {
    std::vector<std::int32_t> by_weight;  // domain expert indices, heaviest first (lower id on ties)
    std::vector<std::int32_t> base;       // [domain experts]: the fewest replicas under the target
    std::vector<std::int32_t> count;      // [domain experts]: replicas per expert
    std::vector<std::int32_t> items;      // domain expert index of each replica, heaviest first
    std::vector<double> room;             // [P]: T minus the GPU's load
    std::vector<std::int32_t> used;       // [P]: slots filled
    std::vector<std::uint8_t> holds;      // [domain experts, P]
    std::vector<std::int64_t> row, best_row, original_row;    // [R]: phy2log rows (the domain repacked)
    std::vector<std::int32_t> rank, best_rank, original_rank;  // [R]: 0 for primaries, 1 otherwise
    PackingBuffers search;
};

/// True for the domains pack_to_target is for: at most four loaded experts per GPU.
bool sparse_domain(const Placement& placement, const Domain& domain);

/// Replaces the slots of `domain` by a greedy packing of counts in proportion to the loads: one
/// replica per expert, the spare slots one at a time to the loaded expert with the heaviest
/// replica; replicas heaviest first, each onto the lightest GPU of the domain with a free slot and
/// no replica of its expert yet. Returns false (placement unchanged) for relaxed plans or when
/// no such packing exists. The placement before is kept in `scratch` for restore_before_repack.
bool repack_proportionally(Placement& placement, const double* weight, const Domain& domain, FillScratch& scratch);

/// Loads the placement as it was before the last repack_proportionally or pack_to_target on
/// `scratch` (planning loads `weight` [E]).
void restore_before_repack(Placement& placement, const double* weight, FillScratch& scratch);

/// Repacks the slots of `domain` of `placement` (planning loads `weight` [E], those it was loaded
/// with) for the lowest target T in [floor, current domain peak) reached as described above
/// (T = floor first, then bisection: `steps` targets in all). Returns true when it changed the
/// placement, whose domain peak is then lower. Not for relaxed plans (primaries must stay home).
bool pack_to_target(Placement& placement, const double* weight, const Domain& domain, double floor,
                    std::int32_t steps, FillScratch& scratch);

}  // namespace eplb::core
