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
///   donor-receiver fix-up; greedy packing followed by bounded swap refinement).
enum class Policy { deepseek, seed };

/// "deepseek", "seed".
std::string to_string(Policy policy);
/// Parses a policy name; throws UsageError listing the known names.
Policy parse_policy(std::string_view name);
/// Every policy, in a fixed order.
const std::vector<Policy>& all_policies();

/// Plans every layer of `weight` [L, E] (any real dtype, any device; converted to float32 on the
/// CPU as the reference programs do) for `topology` with `policy`, on the CPU with the native
/// engine (see Engine).
///
/// Requires L >= 1, E >= 1, finite non-negative loads, and `topology.validate(E)`; throws
/// LoadError / TopologyError otherwise. Layers are independent; an all-zero layer still gets a
/// valid plan. The result is deterministic: the same input gives byte-identical maps on any run.
Plan rebalance(const at::Tensor& weight, const Topology& topology, Policy policy);

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
/// DeepSeek-V3-shaped layers, README.md): CUDA is faster from 1,160 layers for `deepseek` and from
/// 580 for `seed`; the larger crossover is taken.
constexpr std::int64_t kAutoCudaMinLayers = 1160;

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
