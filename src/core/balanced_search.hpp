// The balanced policy's repair and local search on one layer's Placement (issue 6).
//
// Both only make changes the mode allows (Placement::may_host / accepts), and never create a
// duplicate when duplicates are forbidden. Two kinds of change:
// - a *swap* exchanges the replicas of two slots on different GPUs (replica counts unchanged);
// - a *count move* gives a slot holding a replica of expert a (c_a >= 2) to expert b instead:
//   c_a - 1, c_b + 1, and every GPU holding a or b changes load.
// The search works on one Domain at a time (a node's GPUs and experts for hierarchical plans).
#pragma once

#include "balanced_placement.hpp"

#include <cstdint>
#include <vector>

namespace eplb::core {

/// A count move: `slot` given to `expert`; `peak` is the largest new load among the GPUs it touches.
struct CountMove {
    std::int32_t slot = -1, expert = -1;
    double peak = 0.0;
};

/// Reusable buffers of the search.
struct SearchScratch {
    std::vector<CountMove> moves;          // perturbations of the iterated local search
    std::vector<std::int32_t> gpus;        // a domain's GPUs by ascending load
    std::vector<std::int32_t> candidates;  // experts to try in a count move
    std::vector<std::int32_t> slots;       // slots that may change hands in a count move
};

/// Window t's terms for the swaps between two GPUs h and j (shares of the window's total): the
/// largest of the other GPUs, those of h and j, and the window's peak.
struct WindowPair {
    std::int64_t t = 0;
    double others = 0.0, h = 0.0, j = 0.0, peak = 0.0;
    /// At least the window's new peak after any swap of the pair: max(others, (h + j) / 2).
    double floor = 0.0;
    bool peak_on_h = false;
};

/// Reusable buffers of lower_window_peaks.
struct WindowScratch {
    std::vector<double> share;      // [k]: 1 / W_t, or 0 for a window without load
    std::vector<double> slot;       // [k, R]: each slot's share of window t
    std::vector<double> gpu;        // [k, G]: each GPU's share of window t
    std::vector<std::int32_t> top;  // [k, 3]: the three heaviest GPUs of each window
    std::vector<std::int32_t> heavy;  // GPUs that are the heaviest of some window
    std::vector<WindowPair> pair;     // per window with load: terms of the GPU pair searched
    std::size_t falling = 0;          // pair[0, falling): the windows whose peak is on the pair
    double pair_floor = 0.0;          // sum over pair[0, falling) of floor - peak
    std::vector<std::int32_t> partners;
    std::vector<double> summed;       // [G]: share summed over the windows
    std::vector<double> replica;      // [E]: m_e / c_e, the expected load of each replica (lower_expected_peak)
    std::vector<double> lanes;        // a partner GPU's slot loads, padded (lower_expected_peak's vector scan)
};

/// How repair_duplicates removes an extra replica of an expert on a GPU.
enum class RepairOrder {
    swap_first,     ///< swap it with a replica of another GPU; a count move only where no swap is allowed
    release_first,  ///< give its slot to another expert (count move); a swap only where that is not allowed
};

/// Removes duplicates, each change chosen to keep the largest load it touches lowest (count
/// moves go to the experts whose new replica would be lightest). Returns the duplicates left
/// (only when the topology makes them unavoidable).
std::int64_t repair_duplicates(Placement& placement, RepairOrder order, SearchScratch& scratch);

/// Local search on a domain: while its heaviest GPU h (first index on ties) is above
/// `stop_load`, apply the swap (or, when no swap helps and `count_moves` is set, the count move)
/// that lowers h and keeps every GPU it touches below h's old load, choosing the change whose
/// largest new load is smallest. Stops when nothing helps or after `max_steps` changes. Every
/// change strictly lowers the sorted vector of GPU loads, so the search cannot cycle. Returns the
/// number of changes made.
std::int32_t improve_placement(Placement& placement, const Domain& domain, double stop_load, bool count_moves,
                               std::int32_t max_steps, SearchScratch& scratch);

/// Iterated local search on a domain, for when improve_placement is stuck above `stop_load`: for
/// up to `rounds` rounds, takes the count moves that take a replica from the heaviest GPU or give
/// one of its experts another replica (for each, the least harmful one, even when it raises the
/// peak), tries the three least harmful, each followed by improve_placement (with count moves),
/// and keeps the first result whose heaviest GPU is lighter than before; otherwise rolls the
/// placement back (Placement::rollback). Returns the rounds that improved.
std::int32_t escape_local_optimum(Placement& placement, const Domain& domain, double stop_load, std::int32_t rounds,
                                  std::int32_t max_steps, SearchScratch& scratch);

/// Count search on a sparse domain, for when escape_local_optimum is stuck above `stop_load`:
/// for up to `rounds` rounds, tries every count move that gives an expert b of the heaviest GPU
/// another replica in a slot of an expert a with two replicas or more (one slot per pair (b, a),
/// the one whose change keeps the loads it touches lowest), each followed by at most
/// `lookahead_steps` changes of improve_placement (with count moves), and applies the one whose
/// domain peak ends lowest (the first on ties) when that is below the peak before, followed by up
/// to `max_steps` changes (which only lower it further). Each candidate costs a local search, so
/// it is for sparse domains (a few loaded replicas per GPU), where few experts have two replicas.
/// Returns the rounds that improved.
std::int32_t search_counts(Placement& placement, const Domain& domain, double stop_load, std::int32_t rounds,
                           std::int32_t lookahead_steps, std::int32_t max_steps, SearchScratch& scratch);

/// With two windows or more: swaps that lower the sum over the history windows of the largest
/// GPU share, sum_t max_g L_t(g) / W_t, where L_t(g) = sum over g's slots of w_t(e) / c_e and W_t
/// the window's total (windows without load left out), as SGLang's `deepseek_vec` plans on the
/// per-window peaks. Every GPU's load on the planning weights stays <= `cap` (the caller's balance
/// budget on them). Each step takes the best swap between a GPU g that is the heaviest of some
/// window and one of the four GPUs of g's domain with the least share summed over the windows
/// (lower id on ties), until none lowers the sum by a relative 1e-4 or after `max_steps` swaps.
/// Returns the swaps made.
std::int32_t lower_window_peaks(Placement& placement, const LayerHistory& history, double cap, std::int32_t max_steps,
                                WindowScratch& scratch);

/// The expected next-window loads m [E] of the planning loads w [E]: loads drift back towards their
/// mean, m_e = p w_e + (1 - p) W / E (W = sum_e w_e, p = `persistence`, in [0, 1]).
void expected_next_loads(const double* weight, std::int32_t experts, double persistence, double* expected);

/// With one window w only: swaps that lower the peak of the expected next window m [E]
/// (`expected`, from expected_next_loads). GPU g's expected load is M_g = sum over g's slots of
/// m_e / c_e = p L_g + (1 - p) (W / E) sum over g's slots of 1 / c_e, so among plans of the same
/// peak on w it prefers those whose GPUs hold the same number of replicas in the prior's terms (a
/// replica of an expert with c replicas counts 1 / c). Each step
/// takes the GPU h with the largest M (first on ties) and the swap between h and one of the four
/// GPUs of h's domain with the least M (lower id on ties) that gives the lowest max(M_h, M_j),
/// when that is below M_h by a relative 1e-4; a GPU whose load on w rises stays <= `cap`.
/// Stops when no swap qualifies or after `max_steps` swaps. Returns the swaps made.
std::int32_t lower_expected_peak(Placement& placement, const double* expected, double cap, std::int32_t max_steps,
                                 WindowScratch& scratch);

/// Whether the swap search may use its AVX2 scan on CPUs that have it (default true). Both scans
/// choose the same swaps; the switch lets a test compare them.
void allow_vector_swap_scan(bool allowed);

/// Largest GPU load of a domain.
double domain_max(const Placement& placement, const Domain& domain);

}  // namespace eplb::core
