#include "balanced.hpp"

#include "balanced_history.hpp"
#include "balanced_migration.hpp"
#include "balanced_search.hpp"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>

#include <algorithm>

namespace eplb::core {
namespace {

// Relative slack on "not above the reference": GPU loads are float64 sums of the same slot loads
// in different orders.
constexpr double kSameLoad = 1e-12;
// Iterated local search runs on a set of GPUs whose heaviest stays this far above their mean
// load after the local search, for at most this many improving rounds: on a dense set until it is
// within this much of the mean (and not above the reference), on a sparse one until it reaches
// the mean. On dense sets, stopping there rather than at the mean takes 7 % off a plan of the
// synthetic DeepSeek-V3 window (hierarchical) for 0.0001 of in-sample balancedness over the
// synthetic series; sparse sets, where the target is hardest to reach (SGLang's prefill
// statistics: 0.9982 of W/G in global plans, 0.9981 with the early stop), go on to the mean.
constexpr double kEscapeAbove = 2e-3;
constexpr std::int32_t kEscapeRounds = 6;
// The count search on a sparse domain stops after this many improving rounds (on SGLang's
// prefill statistics it takes at most 12).
constexpr std::int32_t kCountRounds = 50;
// Changes of the local search after each count move the count search tries. On the prefill
// statistics with 128 GPUs (512/8/8/128, global) 64 give 0.9942 of W/G in 14 s for the 58 layers,
// against 0.9941 in 34 s without a limit (and 0.979 in 0.23 s without the count search); on 16
// and 32 GPUs the plans are those without a limit.
constexpr std::int32_t kCountLookahead = 64;
// Targets tried by pack_to_target (the floor, then a bisection).
constexpr std::int32_t kTargetSteps = 10;

// True when the domain's peak is still more than kEscapeAbove above `stop`, where its local
// search stops.
bool stalled(const Placement& pl, const Domain& d, double stop) {
    return domain_max(pl, d) > stop * (1.0 + kEscapeAbove);
}

}  // namespace

BalancedPlanner::BalancedPlanner(const Topology& t, std::int64_t E, const PlanOptions& options)
    : shape_(LayerShape::make(t, E, options.mode, !options.allow_duplicates)),
      options_(options),
      reference_planner_(shape_.start_topology(t), E, Policy::deepseek),
      placement_(shape_),
      weight_f_(static_cast<std::size_t>(kBlockLayers * E)),
      reference_phy2log_(static_cast<std::size_t>(kBlockLayers * t.num_replicas)),
      reference_rank_(static_cast<std::size_t>(kBlockLayers * t.num_replicas)),
      reference_split_(static_cast<std::size_t>(kBlockLayers * shape_.groups)),
      start_phy2log_(static_cast<std::size_t>(t.num_replicas)),
      start_rank_(static_cast<std::size_t>(t.num_replicas)),
      start_count_(static_cast<std::size_t>(E)),
      expected_(static_cast<std::size_t>(E)) {
    options_.previous = nullptr;  // the driver passes rows; the pointer is not kept
}

void BalancedPlanner::plan_layers(const double* weight, std::int32_t layers, const LayerHistory& history,
                                  const std::int64_t* previous, LayersOut out, LayerNotes* notes) {
    const std::int64_t E = shape_.experts, R = shape_.slots;
    // Step 1 for the whole block: deepseek's plans of the layers (their counts are not needed).
    for (std::int64_t i = 0; i < layers * E; ++i) weight_f_[i] = static_cast<float>(weight[i]);
    reference_planner_.plan_layers(weight_f_.data(), layers,
                                   LayersOut{reference_phy2log_.data(), reference_rank_.data(), nullptr});
    for (std::int32_t b = 0; b < layers; ++b)  // kept apart: plan_layer_on_split overwrites the planner's
        std::copy_n(reference_planner_.group_nodes(b), shape_.groups, reference_split_.data() + b * shape_.groups);
    for (std::int32_t b = 0; b < layers; ++b) {
        const LayerHistory h{history.windows + b * E, history.count, history.stride};
        notes[b] = plan_layer(b, weight + b * E, h, previous ? previous + b * R : nullptr,
                              LayersOut{out.phy2log + b * R, out.rank + b * R, out.logcnt + b * E});
    }
}

// Step 1: the layer's reference plan (row `row` of the block), loaded into the placement.
// Returns its max GPU load.
double BalancedPlanner::load_reference(std::int32_t row, const double* weight) {
    reference_row_ = reference_phy2log_.data() + std::int64_t{row} * shape_.slots;
    reference_rank_row_ = reference_rank_.data() + std::int64_t{row} * shape_.slots;
    weight_f_row_ = weight_f_.data() + std::int64_t{row} * shape_.experts;
    reference_split_row_ = reference_split_.data() + std::int64_t{row} * shape_.groups;
    placement_.reset(weight, reference_row_, reference_rank_row_);
    return placement_.max_load();
}

// Step 2: replaces the reference in the placement by a better start where the mode has one.
// Returns true when it did.
bool BalancedPlanner::load_start(const double* weight, const LayerHistory& history) {
    if (shape_.mode == PlacementMode::global || shape_.nodes == 1) return false;
    split_.assign(reference_split_row_, reference_split_row_ + shape_.groups);
    const bool new_split = history.count > 1 ? robust_group_split(history, shape_, split_, start_scratch_)
                                             : improve_group_split(weight, shape_, split_, start_scratch_);
    if (shape_.mode == PlacementMode::relaxed)
        relaxed_start(weight, shape_, split_, start_phy2log_.data(), start_rank_.data(), start_scratch_);
    else if (new_split)
        reference_planner_.plan_layer_on_split(weight_f_row_, split_.data(),
                                               LayersOut{start_phy2log_.data(), start_rank_.data(), nullptr});
    else
        return false;
    placement_.reset(weight, start_phy2log_.data(), start_rank_.data());
    return true;
}

// Steps 3 and 4 on the placement loaded with the planning loads `weight` [E].
void BalancedPlanner::repair_and_improve(const double* weight, RepairOrder order, double reference) {
    if (shape_.no_duplicates) forced_duplicates_ = repair_duplicates(placement_, order, scratch_);
    improve(weight, reference);
}

// Step 4, in phases of rising cost: (a) swaps on every domain down to its mean GPU load (or
// the largest domain mean, below which the layer's peak cannot go);
// then (b) iterated local search (count-move perturbations followed by swaps) on the domain
// holding the layer's heaviest GPU only (the others cannot change the layer's peak) when it is
// more than kEscapeAbove above its mean or above the reference (a dense domain down to within
// kEscapeAbove of its mean, a sparse one down to its mean), and where that domain is sparse
// and still that far above, (c) packing to a target (balanced_fill) and (d) in hierarchical and
// global plans, the count search (search_sparse_domain); each domain at most once.
void BalancedPlanner::improve(const double* weight, double reference) {
    const std::int32_t domains = placement_.num_domains();
    const std::int32_t max_steps = search_steps();
    // A domain can never get below its mean GPU load, and no domain needs to get below the
    // largest of the means (the layer's peak cannot): each stops at the larger of the two.
    stop_.assign(static_cast<std::size_t>(domains), 0.0);
    double floor = 0.0;
    for (std::int32_t k = 0; k < domains; ++k) {
        const Domain d = placement_.domain(k);
        double total = 0.0;
        for (std::int32_t g = d.first_gpu; g < d.last_gpu; ++g) total += placement_.gpu_load(g);
        stop_[k] = total / (d.last_gpu - d.first_gpu) * (1.0 + kSameLoad);
        floor = std::max(floor, stop_[k]);
    }
    for (std::int32_t k = 0; k < domains; ++k) {
        stop_[k] = std::max(stop_[k], floor);
        // Relaxed plans need replicas to change nodes, which takes count moves.
        improve_placement(placement_, placement_.domain(k), stop_[k],
                          /*count_moves=*/shape_.mode == PlacementMode::relaxed, max_steps, scratch_);
    }
    std::vector<bool> done(static_cast<std::size_t>(domains), false);
    while (true) {
        const std::int32_t heaviest = placement_.heaviest_gpu(0, shape_.gpus);
        const std::int32_t k = placement_.domain_index(heaviest);
        const Domain d = placement_.domain(k);
        if (done[k]) break;
        done[k] = true;
        const bool sparse = sparse_domain(placement_, d);
        if (stalled(placement_, d, stop_[k]) || domain_max(placement_, d) > reference) {
            // A dense domain is searched until it is within kEscapeAbove of its stop and not above
            // the reference; a sparse one until it reaches its stop, as the later steps are.
            const double until = sparse ? stop_[k] : std::min(stop_[k] * (1.0 + kEscapeAbove), reference);
            escape_local_optimum(placement_, d, until, kEscapeRounds, max_steps, scratch_);
        }
        // Sparse domains still that far above: a packing built for a target below the stalled
        // peak, then (hierarchical and global plans) the count search.
        if (!sparse || !stalled(placement_, d, stop_[k])) continue;
        if (pack_to_target(placement_, weight, d, stop_[k], kTargetSteps, fill_scratch_))
            improve_placement(placement_, d, stop_[k], /*count_moves=*/true, max_steps, scratch_);
        if (shape_.mode != PlacementMode::relaxed && stalled(placement_, d, stop_[k]))
            search_sparse_domain(weight, d, stop_[k]);
    }
}

// Step 4 (d) on a sparse domain: the count search (balanced_search: search_counts), then the same
// searches from a proportional repack (balanced_fill: repack_proportionally); the lighter of the
// two results is kept (the first on ties).
void BalancedPlanner::search_sparse_domain(const double* weight, const Domain& d, double stop) {
    const std::int32_t max_steps = search_steps();
    search_counts(placement_, d, stop, kCountRounds, kCountLookahead, max_steps, scratch_);
    if (!stalled(placement_, d, stop)) return;
    const double kept = domain_max(placement_, d);
    if (!repack_proportionally(placement_, weight, d, fill_scratch_)) return;
    // Swaps only before the count search: greedy count moves would first undo the repack's counts
    // (on layer 56 of the prefill statistics they left it 0.1 % above the plan kept, against 0.7 %
    // below it without them).
    improve_placement(placement_, d, stop, /*count_moves=*/false, max_steps, scratch_);
    search_counts(placement_, d, stop, kCountRounds, kCountLookahead, max_steps, scratch_);
    if (!(domain_max(placement_, d) < kept)) restore_before_repack(placement_, weight, fill_scratch_);
}

// Step 8: the placement as plan rows; primaries are replica 0, the others follow in slot order.
void BalancedPlanner::write(LayersOut out) {
    std::vector<std::int32_t>& next_rank = next_rank_;
    next_rank.assign(static_cast<std::size_t>(shape_.experts), 1);
    for (std::int32_t p = 0; p < shape_.slots; ++p) {
        const std::int32_t e = placement_.expert(p);
        out.phy2log[p] = e;
        out.rank[p] = placement_.primary(p) ? 0 : next_rank[e]++;
    }
    for (std::int32_t e = 0; e < shape_.experts; ++e) out.logcnt[e] = placement_.count(e);
}

// Step 5, where repairs left duplicates: plan again from spread_start, keep it when it has fewer
// (or as few and a lighter peak).
void BalancedPlanner::spread_out(const double* weight, double reference) {
    const Placement repaired = placement_;
    split_.assign(static_cast<std::size_t>(shape_.groups), 0);
    for (std::int32_t g = 0; g < shape_.groups; ++g) split_[g] = placement_.home_node(g * shape_.group_size);
    spread_start(weight, shape_, split_, start_phy2log_.data(), start_rank_.data(), start_scratch_);
    placement_.reset(weight, start_phy2log_.data(), start_rank_.data());
    repair_and_improve(weight, RepairOrder::release_first, reference);
    const std::int64_t before = repaired.duplicates(), after = placement_.duplicates();
    if (after > before || (after == before && placement_.max_load() >= repaired.max_load())) placement_ = repaired;
}

LayerHistory BalancedPlanner::with_expected_window(const LayerHistory& history) {
    const std::int64_t E = shape_.experts, k = history.count;
    step6_windows_.resize(static_cast<std::size_t>((k + 1) * E));
    for (std::int64_t t = 0; t < k; ++t)
        std::copy_n(history.windows + t * history.stride, E, step6_windows_.data() + t * E);
    std::copy(expected_.begin(), expected_.end(), step6_windows_.begin() + k * E);  // as float
    return LayerHistory{step6_windows_.data(), k + 1, E};
}

// True when every domain's mean GPU load is within `budget`.
bool BalancedPlanner::node_loads_fit(double budget) const {
    for (std::int32_t k = 0; k < placement_.num_domains(); ++k) {
        const Domain d = placement_.domain(k);
        double total = 0.0;
        for (std::int32_t g = d.first_gpu; g < d.last_gpu; ++g) total += placement_.gpu_load(g);
        if (total / (d.last_gpu - d.first_gpu) > budget) return false;
    }
    return true;
}

double BalancedPlanner::balance_budget(double best) const { return best / (1.0 - options_.max_balance_loss); }

// Step 7: the fewer-moves candidate within the budget of the best max GPU load `best`; `out`
// holds the plan made from scratch.
bool BalancedPlanner::migrate(const double* weight, const std::int64_t* previous, double best, LayersOut out) {
    const double budget = balance_budget(best) * (1.0 + kSameLoad);
    relabel_to_previous(shape_, out.phy2log, out.rank, previous, migration_scratch_);
    const std::int64_t relabelled_moves = moved_slots(out.phy2log, previous, shape_.slots);
    if (relabelled_moves == 0 || !previous_ranks(shape_, previous, start_rank_.data(), migration_scratch_))
        return false;
    placement_.reset(weight, previous, start_rank_.data());
    if (shape_.mode == PlacementMode::hierarchical && shape_.nodes > 1 && !node_loads_fit(budget)) {
        // The previous split cannot meet the budget: move the fewest groups that lets it.
        if (!nearest_feasible_split(weight, shape_, previous_split(migration_scratch_), budget, split_)) return false;
        rebuild_for_split(weight, shape_, previous_split(migration_scratch_), split_, previous, start_phy2log_.data(),
                          start_rank_.data());
        placement_.reset(weight, start_phy2log_.data(), start_rank_.data());
    }
    if (shape_.no_duplicates) repair_duplicates(placement_, RepairOrder::swap_first, scratch_);
    const std::int32_t max_steps = search_steps();
    for (std::int32_t k = 0; k < placement_.num_domains(); ++k) {
        const Domain d = placement_.domain(k);
        improve_placement(placement_, d, budget, /*count_moves=*/true, max_steps, scratch_);
        if (domain_max(placement_, d) > budget)
            escape_local_optimum(placement_, d, budget, kEscapeRounds, max_steps, scratch_);
    }
    if (placement_.max_load() > budget || placement_.duplicates() > forced_duplicates_) return false;
    write(LayersOut{start_phy2log_.data(), start_rank_.data(), start_count_.data()});
    keep_slots(shape_, start_phy2log_.data(), start_rank_.data(), previous, migration_scratch_);
    if (moved_slots(start_phy2log_.data(), previous, shape_.slots) >= relabelled_moves) return false;
    std::copy(start_phy2log_.begin(), start_phy2log_.end(), out.phy2log);
    std::copy(start_rank_.begin(), start_rank_.end(), out.rank);
    std::copy(start_count_.begin(), start_count_.end(), out.logcnt);
    return true;
}

LayerNotes BalancedPlanner::plan_layer(std::int32_t row, const double* weight, const LayerHistory& history,
                                       const std::int64_t* previous, LayersOut out) {
    LayerNotes notes;
    const double reference = load_reference(row, weight);
    load_start(weight, history);
    repair_and_improve(weight, RepairOrder::swap_first, reference);
    if (placement_.max_load() > reference * (1.0 + kSameLoad)) {
        // Step 5: plan again from the reference, releasing duplicates; keep the better result.
        const Placement first = placement_;
        const std::int64_t first_forced = forced_duplicates_;
        placement_.reset(weight, reference_row_, reference_rank_row_);
        repair_and_improve(weight, RepairOrder::release_first, reference);
        if (first.max_load() <= placement_.max_load()) {
            placement_ = first;
            forced_duplicates_ = first_forced;
        }
    }
    if (shape_.no_duplicates && placement_.duplicates() > 0) spread_out(weight, reference);
    forced_duplicates_ = shape_.no_duplicates ? placement_.duplicates() : 0;
    // Step 6, planning from several windows: lower their own peaks and the expected next
    // window's, first without raising the peak on the planning load (which may lower it: the best
    // balance reached), then giving up at most max_balance_loss of that balance, never going above
    // the reference. From one window, lower the expected next window's peak, without raising the
    // peak on it.
    // The expected next window is p w + (1 - p) mean(w), p = options_.persistence (default 0.5;
    // the lag-1 regression of expert loads on recorded DeepSeek-V2-Lite windows is 0.40);
    // persistence 1 expects the planning load itself: no steering.
    const bool steer = options_.persistence < 1.0;
    if (steer) expected_next_loads(weight, shape_.experts, options_.persistence, expected_.data());
    double best = 0.0;
    if (history.count > 1) {
        const LayerHistory windows = steer ? with_expected_window(history) : history;
        lower_window_peaks(placement_, windows, placement_.max_load(), search_steps(), window_scratch_);
        best = placement_.max_load();
        if (const double loose = std::min(reference, balance_budget(best)); loose > best)
            lower_window_peaks(placement_, windows, loose, search_steps(), window_scratch_);
    } else {
        if (steer) lower_expected_peak(placement_, expected_.data(), placement_.max_load(), search_steps(), window_scratch_);
        best = placement_.max_load();
    }
    notes.above_reference = placement_.max_load() > reference * (1.0 + kSameLoad);
    write(out);
    if (previous) notes.kept_previous = migrate(weight, previous, best, out);
    notes.forced_duplicates = forced_duplicates_;
    return notes;
}

void plan_balanced(const at::Tensor& windows, const Topology& topology, const PlanOptions& options,
                   at::Tensor& phy2log, std::vector<std::int32_t>& rank, at::Tensor& logcnt, PlanReport& report) {
    const at::Tensor w = planning_load(windows, options);
    const std::int64_t L = w.size(0), E = w.size(1), R = topology.num_replicas;
    const auto long_options = at::TensorOptions().dtype(at::kLong);
    phy2log = at::empty({L, R}, long_options);
    rank.assign(static_cast<std::size_t>(L * R), 0);
    logcnt = at::empty({L, E}, long_options);
    const double* wp = w.data_ptr<double>();
    std::int64_t* pp = phy2log.data_ptr<std::int64_t>();
    std::int32_t* rp = rank.data();
    std::int64_t* cp = logcnt.data_ptr<std::int64_t>();
    at::Tensor previous;
    if (options.previous) previous = options.previous->phy2log.contiguous();
    const std::int64_t* prev = previous.defined() ? previous.data_ptr<std::int64_t>() : nullptr;

    std::vector<LayerNotes> notes(static_cast<std::size_t>(L));
    // Layers are independent and each writes its own rows: the same result for any thread count.
    constexpr std::int64_t kBlock = BalancedPlanner::kBlockLayers;
    at::parallel_for(0, (L + kBlock - 1) / kBlock, /*grain_size=*/2, [&](std::int64_t begin, std::int64_t end) {
        BalancedPlanner planner(topology, E, options);
        for (std::int64_t l = begin * kBlock; l < std::min(end * kBlock, L); l += kBlock) {
            const LayerHistory history{windows.data_ptr<float>() + l * E, windows.size(0), L * E};
            planner.plan_layers(wp + l * E, static_cast<std::int32_t>(std::min(kBlock, L - l)), history,
                                prev ? prev + l * R : nullptr, LayersOut{pp + l * R, rp + l * R, cp + l * E},
                                notes.data() + l);
        }
    });

    report = PlanReport{};
    for (std::int64_t l = 0; l < L; ++l) {
        const LayerNotes& n = notes[static_cast<std::size_t>(l)];
        if (n.above_reference) report.above_reference.push_back(l);
        if (n.kept_previous) report.kept_previous.push_back(l);
        report.forced_duplicates += n.forced_duplicates;
    }
}

}  // namespace eplb::core
