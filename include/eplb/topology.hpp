// The cluster shape a plan is made for.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace eplb {

/// Cluster shape, written `R/groups/N/G` (e.g. `288/8/4/32` for DeepSeek-V3 prefill).
///
/// - `num_replicas` R: physical expert slots per layer, over all GPUs;
/// - `num_groups`: expert groups of the router (E must be a multiple of it);
/// - `num_nodes` N and `num_gpus` G (G a multiple of N).
///
/// Slot p lives on GPU `p / S` with S = R / G, and on node `p / (R / N)`.
/// A topology is *hierarchical* when `num_groups % num_nodes == 0`: whole groups are placed on
/// nodes. Otherwise the reference policies fall back to global planning (groups = nodes = 1).
struct Topology {
    std::int64_t num_replicas = 0;
    std::int64_t num_groups = 1;
    std::int64_t num_nodes = 1;
    std::int64_t num_gpus = 1;

    /// Parses `R/groups/N/G`; throws UsageError naming the text when it is malformed.
    static Topology parse(std::string_view text);

    /// Checks the rules that need no expert count: every field > 0, R % G == 0, G % N == 0.
    /// Throws TopologyError naming the value and the rule.
    void validate() const;

    /// validate(), plus the rules for E logical experts: E % num_groups == 0 and R >= E.
    void validate(std::int64_t num_experts) const;

    /// S = R / G, slots on each GPU.
    std::int64_t slots_per_gpu() const { return num_replicas / num_gpus; }
    /// R / N, slots on each node.
    std::int64_t slots_per_node() const { return num_replicas / num_nodes; }
    /// G / N, GPUs on each node.
    std::int64_t gpus_per_node() const { return num_gpus / num_nodes; }
    /// True when whole groups can be placed on nodes (`num_groups % num_nodes == 0`).
    bool is_hierarchical() const { return num_groups % num_nodes == 0; }
    /// The topology the reference policies actually run: itself when hierarchical, else the
    /// global fallback with groups = nodes = 1 (G and R unchanged).
    Topology effective() const;

    /// `R/groups/N/G`.
    std::string to_string() const;

    friend bool operator==(const Topology& a, const Topology& b) {
        return a.num_replicas == b.num_replicas && a.num_groups == b.num_groups &&
               a.num_nodes == b.num_nodes && a.num_gpus == b.num_gpus;
    }
    friend bool operator!=(const Topology& a, const Topology& b) { return !(a == b); }
};

}  // namespace eplb
