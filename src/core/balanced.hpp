// eplb's own policy, `balanced` (issue 6): the steps for one layer, and the driver for all.
//
// Per layer, on the planning load w [E] (float64, from balanced_history):
// 1. reference: the `deepseek` plan of the layer in the mode's topology (hierarchical and relaxed
//    plans: the hierarchical plan; global plans: groups = nodes = 1), made for a block of layers at
//    once (HierarchicalPlanner's lockstep packing); its max GPU load is what the result must not
//    exceed;
// 2. start (balanced_start): hierarchical plans look for a lighter split of groups over nodes (or,
//    planning from several windows, one with a lower mean peak over them) and start from
//    `deepseek`'s steps 2-4 on it when there is one (HierarchicalPlanner::plan_layer_on_split),
//    else from the reference; relaxed plans start from
//    node-aware replica counts packed with primaries at home; global plans start from the
//    reference;
// 3. repair: no two replicas of one expert on one GPU (balanced_search: repair_duplicates);
// 4. improve: swaps on every domain (a node's GPUs for hierarchical plans, all GPUs otherwise),
//    then iterated local search on the domain holding the layer's peak (balanced_search) and, where
//    that domain is sparse and still above its bound, packing to a target (balanced_fill) and, in
//    hierarchical and global plans, a count search (balanced_search: search_counts), also from a
//    proportional repack (balanced_fill: repack_proportionally), keeping the lighter result;
// 5. fallback: a result above the reference is planned again from the reference, its duplicates
//    released to other experts instead of swapped away, and the better plan is kept; where repairs
//    leave duplicates, the layer is planned again from a duplicate-free start (spread_start);
// 6. history (planning from several windows): swaps lower the sum of the peak shares of the
//    windows and of the expected next window, p w + (1 - p) mean(w) with p the options'
//    persistence (balanced_search: expected_next_loads, lower_window_peaks), while no GPU rises
//    above the balance budget of the peak P on w, P / (1 - max_balance_loss), nor above the
//    reference; planning from one window, swaps lower the peak of the expected next window
//    (balanced_search: lower_expected_peak) while no GPU rises above P;
// 7. migrate (with a previous plan, balanced_migration): within the balance budget of P, the
//    plan that moves the fewest replicas;
// 8. output: primaries get replica rank 0, the other replicas ranks 1, 2, ... in slot order.
#pragma once

#include "balanced_fill.hpp"
#include "balanced_migration.hpp"
#include "balanced_placement.hpp"
#include "balanced_search.hpp"
#include "balanced_start.hpp"
#include "hierarchical.hpp"

#include <eplb/rebalance.hpp>
#include <eplb/topology.hpp>

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace eplb::core {

/// What happened to one layer.
struct LayerNotes {
    bool above_reference = false;    ///< the plan from scratch: max GPU load above deepseek's
    std::int64_t forced_duplicates = 0;
    bool kept_previous = false;      ///< the plan repairs the previous one
};

/// Plans one layer at a time for a fixed topology and options, reusing its buffers.
class BalancedPlanner {
public:
    BalancedPlanner(const Topology& topology, std::int64_t num_experts, const PlanOptions& options);

    /// Layers planned together (their reference plans are made in lockstep).
    static constexpr std::int32_t kBlockLayers = HierarchicalPlanner::kBlockLayers;

    /// Plans `layers` <= kBlockLayers consecutive layers from their planning loads `weight`
    /// [layers, E] and the windows they came from (`history` of the first layer; layer b's windows
    /// start b E further); `previous` is the deployed plan's phy2log rows [layers, R] or null.
    /// Writes phy2log, rank and logcnt of the layers to `out` and what happened to `notes` [layers].
    void plan_layers(const double* weight, std::int32_t layers, const LayerHistory& history,
                     const std::int64_t* previous, LayersOut out, LayerNotes* notes);

private:
    LayerNotes plan_layer(std::int32_t row, const double* weight, const LayerHistory& history,
                          const std::int64_t* previous, LayersOut out);
    double load_reference(std::int32_t row, const double* weight);
    bool load_start(const double* weight, const LayerHistory& history);
    void repair_and_improve(const double* weight, RepairOrder order, double reference);
    void improve(const double* weight, double reference);
    void search_sparse_domain(const double* weight, const Domain& domain, double stop);
    void write(LayersOut out);
    bool migrate(const double* weight, const std::int64_t* previous, double best, LayersOut out);
    /// The highest max GPU load within max_balance_loss of `best`: best / (1 - max_balance_loss).
    double balance_budget(double best) const;
    bool node_loads_fit(double budget) const;
    void spread_out(const double* weight, double reference);
    /// The windows of `history` [k, E] followed by the expected next window expected_:
    /// [k + 1, E] in step6_windows_.
    LayerHistory with_expected_window(const LayerHistory& history);
    /// Changes a local search may make on one layer: 4 R.
    std::int32_t search_steps() const { return 4 * shape_.slots; }

    LayerShape shape_;
    PlanOptions options_;
    HierarchicalPlanner reference_planner_;
    Placement placement_;
    std::vector<float> weight_f_;                 // [block, E]
    std::vector<std::int64_t> reference_phy2log_; // [block, R]
    std::vector<std::int32_t> reference_rank_;    // [block, R]
    std::vector<std::int32_t> reference_split_;   // [block, groups]: node of each group
    const std::int64_t* reference_row_ = nullptr; // the row of the layer being planned
    const std::int32_t* reference_rank_row_ = nullptr;
    const float* weight_f_row_ = nullptr;
    const std::int32_t* reference_split_row_ = nullptr;
    std::vector<std::int64_t> start_phy2log_;     // [R]
    std::vector<std::int32_t> start_rank_;        // [R]
    std::vector<std::int64_t> start_count_;       // [E]
    std::vector<std::int32_t> split_;             // [groups]
    std::vector<double> stop_;                    // per domain: where its local search stops
    std::vector<std::int32_t> next_rank_;         // [E] scratch of write()
    std::vector<double> expected_;                // [E]: the layer's expected next window (step 6)
    std::vector<float> step6_windows_;            // [k + 1, E]: with_expected_window
    SearchScratch scratch_;
    StartScratch start_scratch_;
    MigrationScratch migration_scratch_;
    FillScratch fill_scratch_;
    WindowScratch window_scratch_;
    std::int64_t forced_duplicates_ = 0;
};

/// Plans every layer of `windows` [k, L, E] (float32, CPU, checked) with the balanced policy:
/// writes phy2log [L, R] and logcnt [L, E] (int64), the replica rank of each slot `rank` [L R], and
/// fills `report`.
void plan_balanced(const at::Tensor& windows, const Topology& topology, const PlanOptions& options,
                   at::Tensor& phy2log, std::vector<std::int32_t>& rank, at::Tensor& logcnt, PlanReport& report);

}  // namespace eplb::core
