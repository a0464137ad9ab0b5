// The planning entry point, and where planning runs (engine and device).
#pragma once

#include <eplb/plan.hpp>
#include <eplb/topology.hpp>

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace eplb {

/// Planning algorithms.
///
/// - `deepseek`: DeepSeek's open-source EPLB (groups to nodes, D'Hondt replication per node,
///   greedy balanced packing), every tie broken by the lower index;
/// - `seed`: the seed algorithm (tie-aware D'Hondt with a Sainte-Lague / Huntington-Hill tail and a
///   donor-receiver fix-up; greedy packing followed by bounded swap refinement);
/// - `balanced`: eplb's own policy (see PlanOptions): the `deepseek` plan as a greedy start, then
///   local search, with no two replicas of one expert on one GPU, placement modes, planning from a
///   history of windows and migration-aware planning against the plan now deployed.
enum class Policy { deepseek, seed, balanced };

/// "deepseek", "seed", "balanced".
std::string to_string(Policy policy);
/// Parses a policy name; throws UsageError listing the known names.
Policy parse_policy(std::string_view name);
/// Every policy, in a fixed order.
const std::vector<Policy>& all_policies();

/// Where replicas may go. With N nodes and `groups` expert groups (group of expert e:
/// e / (E / groups)), a group's *home node* is the node it is given (groups / N groups per node).
///
/// - `hierarchical`: every group with all its replicas on its home node (the references' rule);
/// - `global`: any replica on any GPU (the references' rule with groups = nodes = 1);
/// - `relaxed`: each expert's primary replica (replica 0, `log2phy[l, e, 0]`) on its group's home
///   node; its redundant replicas on any node.
///
/// When the topology is not hierarchical (`groups % N != 0`) every mode plans globally, as the
/// references do.
enum class PlacementMode { hierarchical, global, relaxed };

/// "hierarchical", "global", "relaxed".
std::string to_string(PlacementMode mode);
/// Parses a mode name; throws UsageError listing the known names.
PlacementMode parse_placement_mode(std::string_view name);

/// How a history of k windows h_0 .. h_{k-1} (h_{k-1} the newest, each [L, E]) becomes the
/// planning load w [L, E] of the balanced policy:
///
/// - `mean`: w = (1 / k) sum_t h_t;
/// - `ema`:  w = sum_t a^(k-1-t) h_t / sum_t a^(k-1-t), a = PlanOptions::ema_decay in (0, 1].
///
/// Besides, hierarchical and relaxed plans split the groups over nodes for the history itself:
/// the split minimises the mean over the windows of the largest node share
/// max_n (load of node n in h_t) / W_t (as SGLang's `deepseek_vec` minimises per-window peaks),
/// where that does not raise the max GPU load above `deepseek`'s on w. After planning on w, swaps
/// lower the sum over the windows, and over the expected next window (below), of the largest GPU
/// share, sum_t max_g (load of GPU g in h_t) / W_t, giving up at most
/// `PlanOptions::max_balance_loss` of the balance on w (no GPU above P / (1 - max_balance_loss),
/// P the max GPU load reached on w) and never rising above `deepseek`'s max GPU load on w.
/// The references always plan from the plain sum of the windows.
///
/// The expected next window: expert loads drift back towards their mean from one window to the
/// next, so the next window is expected to be p w_e + (1 - p) W / E (W the layer's total of w,
/// p = PlanOptions::persistence, 0.5 by default; 1 turns this off). A
/// single window w [L, E] is planned on as is; then swaps lower the max GPU load of the expected
/// next window without raising any GPU above the max GPU load reached on w: of the plans that
/// balance w equally, one whose GPUs hold replicas of the less replicated experts evenly.
enum class HistoryAggregation { mean, ema };

/// "mean", "ema".
std::string to_string(HistoryAggregation aggregation);
/// Parses an aggregation name; throws UsageError listing the known names.
HistoryAggregation parse_history_aggregation(std::string_view name);

/// Settings of one planning call. The references (`deepseek`, `seed`) read only `policy` and
/// `mode` (hierarchical or global); everything else is the balanced policy's.
struct PlanOptions {
    Policy policy = Policy::balanced;
    PlacementMode mode = PlacementMode::hierarchical;

    /// false (default): no two replicas of one expert on one GPU — a hard constraint. The only
    /// exception is a topology where it cannot hold (more replicas of an expert than GPUs it may
    /// use, e.g. R > E * G); PlanReport::forced_duplicates counts those.
    bool allow_duplicates = false;

    /// How a [k, L, E] load tensor is combined (see HistoryAggregation); unused for [L, E].
    HistoryAggregation aggregation = HistoryAggregation::mean;
    /// The decay a of `ema`, in (0, 1]: the window before the newest weighs a, the one before a^2.
    double ema_decay = 0.5;

    /// The plan now deployed (same L, E, R), or null. With it, among the plans whose max GPU load
    /// is at most (best max GPU load) / (1 - max_balance_loss) on every layer, the balanced policy
    /// picks one that moves the fewest replicas (slots whose expert changes), and an expert that
    /// stays on a GPU keeps its slot there.
    const Plan* previous = nullptr;
    /// The balancedness on the planning load a layer may give up, in [0, 1): to move fewer
    /// replicas (with `previous`) and, planning from two windows or more, to lower the windows'
    /// own peaks (see HistoryAggregation). 0 keeps the best balance on the planning load.
    double max_balance_loss = 0.01;
    /// The share p of each expert's planning load w_e expected to persist into the next window,
    /// in [0, 1]: the balanced policy expects p w_e + (1 - p) W / E there (see HistoryAggregation).
    /// 1 expects the planning load itself and turns that steering off.
    double persistence = 0.5;

    /// Throws UsageError naming a value out of range, or a setting the policy cannot honour
    /// (a reference policy with mode relaxed or a previous plan).
    void validate() const;
};

/// What a balanced planning call noticed besides the plan (all layer indices are 0-based rows).
struct PlanReport {
    /// Layers whose plan made from scratch has a higher max GPU load on the planning load than
    /// `deepseek` in the same mode (hierarchical for relaxed plans): `deepseek`'s plan holds
    /// duplicates there and no duplicate-free plan found is as good. (With a previous plan, the
    /// plan returned may give up to `max_balance_loss` more.)
    std::vector<std::int64_t> above_reference;
    /// Duplicates the topology made unavoidable (see PlanOptions::allow_duplicates), all layers.
    std::int64_t forced_duplicates = 0;
    /// With a previous plan: layers whose plan was reached by repairing the previous plan rather
    /// than by relabelling a plan made from scratch.
    std::vector<std::int64_t> kept_previous;
};

/// Plans every layer of `weight` [L, E] (any real dtype, any device; converted to float32 on the
/// CPU as the reference programs do) for `topology` with `policy` and default options, on the
/// CPU with the native engine (see Engine).
///
/// Requires L >= 1, E >= 1, finite non-negative loads, and `topology.validate(E)`; throws
/// LoadError / TopologyError otherwise. Layers are independent; an all-zero layer still gets a
/// valid plan. The result is deterministic: the same input gives byte-identical maps on any run.
Plan rebalance(const at::Tensor& weight, const Topology& topology, Policy policy);

/// Plans with explicit options. `weight` is one window [L, E] or a history [k, L, E] of the k
/// most recent windows, oldest first (combined as `options.aggregation` says). A previous plan
/// must have shape [L, R] / [L, E] (PlanError otherwise). `report`, when given, is filled in.
/// The plan's `log2phy` width is the largest replica count (as `deepseek`).
Plan rebalance(const at::Tensor& weight, const Topology& topology, const PlanOptions& options,
               PlanReport* report = nullptr);

/// Checks that `weight` is a plannable [L, E] load tensor (see rebalance) and returns it as a
/// contiguous float32 CPU tensor. `what` names the input in error messages.
at::Tensor checked_loads(const at::Tensor& weight, const std::string& what = "weight");

// ---- where planning runs -------------------------------------------------------------------

/// How a plan is computed. Both engines give byte-identical plans for every policy: same tie
/// rule (lower index), same float32 / float64 arithmetic in the same order.
///
/// - `native`: per-layer loops on the CPU, layers spread over the CPU threads;
/// - `batched`: tensor operations over all rows at once (B = layers x nodes rows of [B, E/N]
///   experts), on the CPU or a CUDA device; the loops left run over item ranks and replica
///   columns, never over layers.
enum class Engine { native, batched };

/// "native", "batched".
std::string to_string(Engine engine);
/// The policies an engine implements, in all_policies() order: `native` every policy, `batched`
/// `deepseek` and `seed` (the balanced policy's local search is sequential per layer).
const std::vector<Policy>& engine_policies(Engine engine);
/// Parses an engine name; throws UsageError listing the known names.
Engine parse_engine(std::string_view name);

/// A device as a user names it: `auto`, `cpu`, `cuda` (the current CUDA device) or `cuda:k`.
struct DeviceSpec {
    enum class Kind { automatic, cpu, cuda };
    Kind kind = Kind::automatic;
    std::int64_t index = -1;  ///< k of `cuda:k`; -1 for plain `cuda`

    /// Parses `auto|cpu|cuda|cuda:k`; throws UsageError naming the text otherwise.
    static DeviceSpec parse(std::string_view text);
    /// `auto`, `cpu`, `cuda` or `cuda:k`.
    std::string to_string() const;
};

/// `auto` plans on CUDA (batched engine) when a CUDA device is visible and the call plans at
/// least this many layers; below it, the native CPU engine is faster: a batched call costs a
/// fixed few thousand tensor operations (kernel launches) whatever B is. Measured with
/// tests/device/gpu_check.sh on an NVIDIA H200 host (16 cores, native engine on 16 threads,
/// DeepSeek-V3-shaped layers, README.md): CUDA is faster from 2,900 layers for `deepseek` and from
/// 580-1,160 for `seed` (two hosts); the larger crossover is taken.
constexpr std::int64_t kAutoCudaMinLayers = 2900;

/// What the caller asks for. `engine` unset: native on the CPU, batched on CUDA.
struct RebalanceOptions {
    DeviceSpec device;
    std::optional<Engine> engine;
};

/// A resolved choice: which engine, on which device.
struct Execution {
    Engine engine = Engine::native;
    c10::Device device = c10::Device(c10::kCPU);

    /// e.g. "native on cpu", "batched on cuda:0".
    std::string to_string() const;
};

/// CUDA devices visible to this process (0 with a CPU-only LibTorch or without a GPU).
std::int64_t cuda_device_count();

/// True when eplb's LibTorch was built with CUDA (whether or not a GPU is visible).
bool cuda_supported();

/// Resolves `options` for a call that plans `num_layers` layers in total (all windows and
/// snapshots of one call together):
/// - `cpu`: the CPU, engine `native` unless `batched` is asked for;
/// - `cuda`, `cuda:k`: that CUDA device, engine `batched`;
/// - `auto`: `cuda` (the current device) when a CUDA device is visible, the engine is not forced
///   to `native` and `num_layers >= kAutoCudaMinLayers`; otherwise the CPU as for `cpu`.
/// Throws DeviceError when CUDA is asked for but this build has no CUDA support, no CUDA device
/// is visible, or `k` is out of range; UsageError for the native engine on CUDA.
Execution choose_execution(const RebalanceOptions& options, std::int64_t num_layers);

/// choose_execution(options, num_layers) for `policy`: a policy without a batched engine
/// (engine_policies) plans natively on the CPU when `options` leave the choice (`auto`); asking
/// for the batched engine or a CUDA device for it throws UsageError naming the policy and engine.
Execution choose_execution(const RebalanceOptions& options, std::int64_t num_layers, Policy policy);

/// Throws the UsageError of choose_execution(options, n, policy) when `options` force an engine
/// that does not implement `policy`; checks nothing else (no device is probed).
void require_engine_for(const RebalanceOptions& options, Policy policy);

/// rebalance(weight, topology, policy) with the given engine and device. The plan is always
/// returned on the CPU and is byte-identical to the native engine's.
Plan rebalance(const at::Tensor& weight, const Topology& topology, Policy policy, const Execution& execution);

/// choose_execution(options, L), then rebalance.
Plan rebalance(const at::Tensor& weight, const Topology& topology, Policy policy, const RebalanceOptions& options);

/// Plans several load tensors `weights[i]` [L_i, E] (e.g. windows or snapshots of one model, same
/// E) in one call, so that the batched engine sees all their layers at once. `plans[i]` equals
/// rebalance(weights[i], topology, policy) exactly, including the width of its log2phy.
/// Error messages name the input as `weights[i]`.
std::vector<Plan> rebalance_batch(const std::vector<at::Tensor>& weights, const Topology& topology, Policy policy,
                                  const Execution& execution);

}  // namespace eplb
