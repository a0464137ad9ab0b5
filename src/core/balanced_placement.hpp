// One layer's placement while the balanced policy improves it (DESIGN.md 3.3, issue 6).
//
// The state every step of the balanced policy works on: which expert each slot holds, which slot
// is each expert's primary replica, replica counts, GPU loads and which GPUs hold each expert,
// plus the placement rules of the mode. Slot p lives on GPU p / S and node p / (R / N).
#pragma once

#include <eplb/rebalance.hpp>
#include <eplb/topology.hpp>

#include <cstdint>
#include <vector>

namespace eplb::core {

/// Replicas of one expert on one GPU (at most min(S, R - E + 1)); narrow, so that the [G, E]
/// table of them stays in the first-level cache.
using HeldCount = std::uint16_t;

/// Sizes of one layer's problem and the mode it is planned in (after the fallback rule:
/// a topology that is not hierarchical plans globally, with one group and one node).
struct LayerShape {
    std::int32_t experts = 0, slots = 0, gpus = 0, nodes = 1, groups = 1;
    std::int32_t slots_per_gpu = 0, gpus_per_node = 0, slots_per_node = 0, group_size = 0;
    PlacementMode mode = PlacementMode::hierarchical;
    bool no_duplicates = true;

    /// The shape `topology` and `mode` give for E experts (falls back to global when the topology
    /// is not hierarchical). Throws TopologyError where one GPU could hold more replicas of an
    /// expert than HeldCount counts.
    static LayerShape make(const Topology& topology, std::int64_t experts, PlacementMode mode, bool no_duplicates);
    /// The topology the greedy start (`deepseek`) runs on: the topology itself for hierarchical and
    /// relaxed plans, groups = nodes = 1 for global ones.
    Topology start_topology(const Topology& topology) const;
    /// GPUs an expert's replicas may use: G / N for hierarchical plans, G otherwise.
    std::int32_t gpus_per_expert() const { return mode == PlacementMode::hierarchical ? gpus_per_node : gpus; }
};

/// A history of windows for one layer: window t's loads [E] start at windows + t * stride.
struct LayerHistory {
    const float* windows = nullptr;
    std::int64_t count = 0;
    std::int64_t stride = 0;
};

/// A set of GPUs searched together and the experts that may live on them: one node's GPUs and
/// experts for hierarchical plans, everything otherwise.
struct Domain {
    std::int32_t first_gpu = 0, last_gpu = 0;
    const std::int32_t* experts = nullptr;
    std::int32_t num_experts = 0;
};

class Placement {
public:
    explicit Placement(const LayerShape& shape);

    /// Loads a plan row: `phy2log` [R] and `rank` [R] (replica 0 becomes the primary), with
    /// planning weights `weight` [E] (float64). Home nodes are the nodes of the primaries.
    void reset(const double* weight, const std::int64_t* phy2log, const std::int32_t* rank);

    const LayerShape& shape() const { return shape_; }
    std::int32_t expert(std::int32_t slot) const { return expert_[slot]; }
    bool primary(std::int32_t slot) const { return primary_[slot] != 0; }
    std::int32_t count(std::int32_t e) const { return count_[e]; }
    double weight(std::int32_t e) const { return weight_[e]; }
    /// w_e / (c_e + 1): the load of each of e's replicas were it given one more (computed for
    /// every expert on first use after a reset: only count moves need it).
    double next_replica_load(std::int32_t e) const {
        if (!next_loads_ready_) fill_next_loads();
        return next_load_[e];
    }
    /// w_e / c_e of the expert in `slot`.
    double slot_load(std::int32_t slot) const { return slot_load_[slot]; }
    /// slot_load of every slot [R].
    const double* slot_loads() const { return slot_load_.data(); }
    double gpu_load(std::int32_t gpu) const { return gpu_load_[gpu]; }
    /// Replicas of expert e on `gpu`.
    std::int32_t held(std::int32_t e, std::int32_t gpu) const { return held_[gpu * shape_.experts + e]; }
    /// The node of expert e's primary replica (its group's home node).
    std::int32_t home_node(std::int32_t e) const { return home_[e]; }
    std::int32_t gpu_of(std::int32_t slot) const { return slot / shape_.slots_per_gpu; }
    std::int32_t node_of_gpu(std::int32_t gpu) const { return gpu / shape_.gpus_per_node; }

    /// The search domains of the mode: one per node for hierarchical plans, one otherwise.
    std::int32_t num_domains() const;
    Domain domain(std::int32_t index) const;
    /// The index of the domain holding `gpu`.
    std::int32_t domain_index(std::int32_t gpu) const { return num_domains() == 1 ? 0 : node_of_gpu(gpu); }

    /// True when the replica in `slot` may live on `gpu` under the mode's rule (duplicates aside).
    bool may_host(std::int32_t slot, std::int32_t gpu) const {
        switch (shape_.mode) {
            case PlacementMode::global: return true;
            case PlacementMode::hierarchical: return node_of_gpu(gpu) == home_[expert_[slot]];
            case PlacementMode::relaxed: return !primary_[slot] || node_of_gpu(gpu) == home_[expert_[slot]];
        }
        return false;
    }
    /// True when a new replica of expert e may live on `gpu` under the mode's rule.
    bool may_host_expert(std::int32_t e, std::int32_t gpu) const {
        return shape_.mode != PlacementMode::hierarchical || node_of_gpu(gpu) == home_[e];
    }
    /// True when `gpu` may take a replica of e: the mode allows it and, unless duplicates are
    /// allowed, it holds none yet.
    bool accepts(std::int32_t e, std::int32_t gpu) const {
        return may_host_expert(e, gpu) && !(shape_.no_duplicates && held(e, gpu) > 0);
    }
    /// True when expert e may get another replica (fewer replicas than GPUs it may use, unless
    /// duplicates are allowed).
    bool may_grow(std::int32_t e) const { return !shape_.no_duplicates || count_[e] < shape_.gpus_per_expert(); }
    /// True when the replica in `slot` may be given to another expert: its expert keeps >= 1
    /// replica and, in relaxed mode, a primary can hand its role to a replica on the home node.
    bool may_release(std::int32_t slot) const;

    /// Exchanges the replicas of two slots (on different GPUs).
    void swap_slots(std::int32_t a, std::int32_t b);
    /// Gives `slot` (may_release) to expert `e`; a primary hands its role to the first other
    /// replica of its expert that the mode allows as primary.
    void retarget(std::int32_t slot, std::int32_t e);

    /// Starts recording changes so that rollback() can undo them; returns the mark to roll back to.
    std::size_t checkpoint();
    /// Undoes every change recorded since `mark` (from checkpoint()), newest first.
    void rollback(std::size_t mark);
    /// Stops recording and forgets the recorded changes.
    void commit();

    /// First GPU of [first, last) with the largest load.
    std::int32_t heaviest_gpu(std::int32_t first, std::int32_t last) const;
    double max_load() const;
    /// Duplicates: sum over (expert, GPU) of max(0, replicas - 1), kept up to date.
    std::int64_t duplicates() const;
    /// Duplicates on one GPU: sum over experts of max(0, replicas on `gpu` - 1).
    std::int32_t duplicates_on(std::int32_t gpu) const { return gpu_duplicates_[gpu]; }

    /// Calls f(gpu) for every GPU holding a replica of expert e, in ascending order.
    template <typename F>
    void for_each_gpu_of(std::int32_t e, F f) const;
    /// Largest GPU load after giving `slot` to expert `to`, over the GPUs that change; once that
    /// reaches `bound`, some load >= `bound` (the search only asks whether it is below).
    double retarget_peak(std::int32_t slot, std::int32_t to, double bound) const;

private:
    /// One recorded change: a swap of slots a and b, or slot a given from expert `from` to
    /// another one (primary: the slot that became `from`'s primary then, or -1).
    struct Change {
        bool swap;
        std::int32_t a, b, from, primary;
    };

    void move_replica(std::int32_t slot, std::int32_t from, std::int32_t to);
    void fill_next_loads() const;
    void refresh_gpu(std::int32_t gpu);
    void order_by_home_node();
    bool groups_share_home() const;
    void refresh_slot_loads(std::int32_t e);
    void set_held(std::int32_t e, std::int32_t gpu, std::int32_t delta);
    std::int32_t next_primary(std::int32_t slot) const;

    LayerShape shape_;
    bool loaded_ = false;                   // a layer was loaded (reset clears through it)
    std::int32_t words_;                    // 64-bit words per expert in mask_
    std::vector<double> weight_;            // [E]
    std::vector<std::int32_t> expert_;      // [R]
    std::vector<std::uint8_t> primary_;     // [R]
    std::vector<double> slot_load_;         // [R]: w_e / c_e of each slot's expert
    std::vector<std::int32_t> count_;       // [E]
    mutable std::vector<double> next_load_;  // [E]: w_e / (c_e + 1), once next_loads_ready_
    mutable bool next_loads_ready_ = false;
    std::vector<double> replica_load_;      // [E]: w_e / c_e
    std::vector<std::int32_t> home_;        // [E]
    std::vector<double> gpu_load_;          // [G]
    std::vector<HeldCount> held_;           // [G, E] replicas of e on g (a GPU's row is contiguous)
    std::vector<std::uint64_t> mask_;       // [E, words]: bit g set when g holds e
    std::vector<std::int32_t> by_node_;     // [E]: experts ordered by home node (stable)
    std::vector<std::int32_t> node_begin_;  // [N + 1]: offsets into by_node_
    std::int64_t duplicates_ = 0;
    std::vector<std::int32_t> gpu_duplicates_;  // [G]
    bool recording_ = false;
    std::vector<Change> journal_;
};

template <typename F>
void Placement::for_each_gpu_of(std::int32_t e, F f) const {
    const std::uint64_t* words = mask_.data() + static_cast<std::size_t>(e) * words_;
    for (std::int32_t w = 0; w < words_; ++w)
        for (std::uint64_t bits = words[w]; bits; bits &= bits - 1) f(w * 64 + __builtin_ctzll(bits));
}

}  // namespace eplb::core
