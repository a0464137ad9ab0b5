// The work of a sweep: what each input holds, the work items, their estimated cost, and how they
// are shared among the ranks. Everything here is deterministic and computed identically on every
// rank from the same inputs, so that no rank needs to be told what to do.
#pragma once

#include <eplb/sweep.hpp>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace eplb::dist {

/// What reading one input file showed (the same whichever rank read it).
struct InputInfo {
    std::string error;             ///< the one-line error when it could not be read ("" otherwise)
    std::string sha256;            ///< of the file's bytes
    std::int64_t num_steps = 0;    ///< T
    std::int64_t num_layers = 0;   ///< L, MoE layers
    std::int64_t num_experts = 0;  ///< E, after the read options
    std::int64_t num_windows = 0;  ///< under the read options' windowing

    bool ok() const { return error.empty(); }
    std::string to_json() const;
    static InputInfo from_json(const std::string& text);
};

/// Reads `path` with `options` and describes it; never throws (errors go into `error`).
InputInfo describe_input(const std::string& path, const ReadOptions& options);

/// One unit of work: window `window` of input `input`, planned for topology `topology` with policy
/// `policy` (indices into SweepSetup's files, topologies and policies).
struct WorkItem {
    std::int64_t input = 0;
    std::int64_t topology = 0;
    std::int64_t policy = 0;
    std::int64_t window = 0;
    std::int64_t num_layers = 0;
    std::int64_t cost = 0;  ///< estimated_cost()
    std::string id;         ///< the plan's id

    /// Same input, topology and policy: consecutive windows of one chain share their plans for
    /// migration metrics and can be planned in one call.
    bool same_chain(const WorkItem& other) const {
        return input == other.input && topology == other.topology && policy == other.policy;
    }
    /// Whether this item is the window right after `before` in the same chain (its plan is the
    /// previous plan of this item's migration metrics).
    bool follows(const WorkItem& before) const { return same_chain(before) && window == before.window + 1; }
};

/// An estimate of the work of planning, scoring and writing one window of L layers, E experts and
/// R slots (and a share of reading its input), in arbitrary units: scoring and writing the maps
/// grow with L * (R + 2E), and they dominate planning. Only ratios matter.
std::int64_t estimated_cost(std::int64_t layers, std::int64_t experts, const Topology& topology,
                            std::int64_t input_values_per_item);

/// An input that cannot be read, or an input x topology x policy that cannot be planned (known
/// before any planning: the topology does not fit the input's experts).
struct KnownFailure {
    std::int64_t input = 0;
    std::int64_t topology = -1;  ///< -1: the input itself could not be read
    std::int64_t policy = -1;
    std::string message;
};

/// The items of a sweep in (input, topology, policy, window) order.
struct WorkList {
    std::vector<WorkItem> todo;           ///< items to plan now
    std::int64_t total = 0;               ///< all items, finished ones included
    std::vector<KnownFailure> failures;   ///< unreadable inputs; topologies an input does not fit
};

/// Every item of every readable input for every topology it fits and every policy; items whose id
/// is in `finished` are counted but not listed.
WorkList make_work_list(const SweepSetup& setup, const std::vector<InputInfo>& inputs,
                        const std::set<std::string>& finished);

/// Splits items 0..n-1 (with these costs) into `parts` contiguous ranges of about equal cost:
/// returns the boundaries b_0 = 0 <= b_1 <= ... <= b_parts = n (range r is [b_r, b_{r+1})).
/// Each boundary is the item boundary closest to its ideal share r * total / parts; when
/// n >= parts, every range holds at least one item.
std::vector<std::size_t> contiguous_ranges(const std::vector<std::int64_t>& costs, int parts);

/// For fewer items than ranks: how many ranks plan each item's layers, each item at least one and
/// never more than its layers, the others given out by D'Hondt on cost (most cost per rank first,
/// lower item on ties). The sum is at most `ranks`.
std::vector<int> ranks_per_item(const std::vector<WorkItem>& items, int ranks);

/// Layers [first, first + count) of `layers` that member `member` of `members` plans.
struct LayerSlice {
    std::int64_t first = 0;
    std::int64_t count = 0;
};
LayerSlice layer_slice(std::int64_t layers, int members, int member);

}  // namespace eplb::dist
