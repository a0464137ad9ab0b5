#include "balanced_placement.hpp"

#include <eplb/errors.hpp>

#include <algorithm>
#include <limits>
#include <numeric>
#include <string>

namespace eplb::core {
namespace {

std::int32_t narrow(std::int64_t v) { return static_cast<std::int32_t>(v); }

}  // namespace

LayerShape LayerShape::make(const Topology& t, std::int64_t experts, PlacementMode mode, bool no_duplicates) {
    const std::int64_t most_on_one_gpu = std::min(t.slots_per_gpu(), t.num_replicas - experts + 1);
    if (most_on_one_gpu > std::numeric_limits<HeldCount>::max())
        throw TopologyError("topology " + t.to_string() + " with " + std::to_string(experts) +
                            " experts: the balanced policy holds at most " +
                            std::to_string(std::numeric_limits<HeldCount>::max()) +
                            " replicas of one expert on one GPU, and this one allows " +
                            std::to_string(most_on_one_gpu));
    LayerShape s;
    s.mode = t.is_hierarchical() ? mode : PlacementMode::global;
    const bool grouped = s.mode != PlacementMode::global;
    s.experts = narrow(experts);
    s.slots = narrow(t.num_replicas);
    s.gpus = narrow(t.num_gpus);
    s.nodes = grouped ? narrow(t.num_nodes) : 1;
    s.groups = grouped ? narrow(t.num_groups) : 1;
    s.slots_per_gpu = narrow(t.slots_per_gpu());
    s.gpus_per_node = s.gpus / s.nodes;
    s.slots_per_node = s.slots / s.nodes;
    s.group_size = s.experts / s.groups;
    s.no_duplicates = no_duplicates;
    return s;
}

Topology LayerShape::start_topology(const Topology& t) const {
    return Topology{t.num_replicas, groups, nodes, t.num_gpus};
}

Placement::Placement(const LayerShape& shape)
    : shape_(shape),
      words_((shape.gpus + 63) / 64),
      weight_(static_cast<std::size_t>(shape.experts)),
      expert_(static_cast<std::size_t>(shape.slots)),
      primary_(static_cast<std::size_t>(shape.slots)),
      slot_load_(static_cast<std::size_t>(shape.slots)),
      count_(static_cast<std::size_t>(shape.experts)),
      next_load_(static_cast<std::size_t>(shape.experts)),
      replica_load_(static_cast<std::size_t>(shape.experts)),
      home_(static_cast<std::size_t>(shape.experts)),
      gpu_load_(static_cast<std::size_t>(shape.gpus)),
      held_(static_cast<std::size_t>(shape.experts) * static_cast<std::size_t>(shape.gpus)),
      mask_(static_cast<std::size_t>(shape.experts) * static_cast<std::size_t>(words_)),
      by_node_(static_cast<std::size_t>(shape.experts)),
      node_begin_(static_cast<std::size_t>(shape.nodes) + 1),
      gpu_duplicates_(static_cast<std::size_t>(shape.gpus)) {}

// Plain local pointers throughout: a store through primary_ (a byte type) may alias anything,
// so loops on the members themselves would reload every table pointer after each slot.
void Placement::reset(const double* weight, const std::int64_t* phy2log, const std::int32_t* rank) {
    const std::int32_t E = shape_.experts, G = shape_.gpus, S = shape_.slots_per_gpu, words = words_;
    const std::int32_t gpus_per_node = shape_.gpus_per_node;
    std::int32_t* __restrict expert = expert_.data();
    std::int32_t* __restrict count = count_.data();
    std::int32_t* __restrict home = home_.data();
    HeldCount* __restrict held = held_.data();
    std::uint64_t* __restrict mask = mask_.data();
    std::uint8_t* __restrict primary = primary_.data();
    // Clear the replica table through the previous layer's slots: O(R), not O(E G).
    if (loaded_)
        for (std::int32_t g = 0, p = 0; g < G; ++g)
            for (std::int32_t k = 0; k < S; ++k, ++p) held[g * E + expert[p]] = 0;
    std::fill(mask_.begin(), mask_.end(), 0);
    loaded_ = true;
    commit();
    std::copy(weight, weight + E, weight_.begin());
    std::fill(count_.begin(), count_.end(), 0);
    std::fill(home_.begin(), home_.end(), 0);
    std::int64_t duplicates = 0;
    std::int32_t* __restrict gpu_duplicates = gpu_duplicates_.data();
    std::fill(gpu_duplicates, gpu_duplicates + G, 0);
    for (std::int32_t g = 0, p = 0; g < G; ++g) {
        const std::int32_t node = g / gpus_per_node;
        const std::uint64_t bit = std::uint64_t{1} << (g % 64);
        for (std::int32_t k = 0; k < S; ++k, ++p) {
            const std::int32_t e = narrow(phy2log[p]);
            const bool first = rank[p] == 0;
            expert[p] = e;
            primary[p] = first;
            ++count[e];
            const bool extra = held[g * E + e]++ > 0;
            duplicates += extra;
            gpu_duplicates[g] += extra;
            mask[static_cast<std::size_t>(e) * words + g / 64] |= bit;
            if (first) home[e] = node;
        }
    }
    duplicates_ = duplicates;
    const double* __restrict w = weight_.data();
    double* __restrict slot_load = slot_load_.data();
    double* __restrict gpu_load = gpu_load_.data();
    double* __restrict replica_load = replica_load_.data();
    // Per expert, where the divisions vectorise; then gathered into the slots.
    for (std::int32_t e = 0; e < E; ++e) replica_load[e] = w[e] / count[e];
    next_loads_ready_ = false;
    for (std::int32_t p = 0; p < shape_.slots; ++p) slot_load[p] = replica_load[expert[p]];
    for (std::int32_t g = 0, p = 0; g < G; ++g) {  // as refresh_gpu sums them
        double load = 0.0;
        for (std::int32_t k = 0; k < S; ++k, ++p) load += slot_load[p];
        gpu_load[g] = load;
    }
    order_by_home_node();
}

// by_node_ and node_begin_ from home_: experts by home node, ascending ids within a node (a stable
// counting sort). Where every group's experts share a home node (always so in the grouped modes,
// whose primaries stay on their group's node), whole groups are sorted instead of experts.
void Placement::order_by_home_node() {
    const std::int32_t E = shape_.experts, N = shape_.nodes, groups = shape_.groups, size = shape_.group_size;
    const std::int32_t* __restrict home = home_.data();
    std::int32_t* __restrict begin = node_begin_.data();
    std::int32_t* __restrict by_node = by_node_.data();
    std::fill(begin, begin + N + 1, 0);
    if (groups_share_home()) {
        for (std::int32_t g = 0; g < groups; ++g) begin[home[g * size] + 1] += size;
        for (std::int32_t n = 0; n < N; ++n) begin[n + 1] += begin[n];
        for (std::int32_t g = 0; g < groups; ++g) {
            const std::int32_t at = begin[home[g * size]];
            std::iota(by_node + at, by_node + at + size, g * size);
            begin[home[g * size]] = at + size;
        }
    } else {
        for (std::int32_t e = 0; e < E; ++e) ++begin[home[e] + 1];
        for (std::int32_t n = 0; n < N; ++n) begin[n + 1] += begin[n];
        for (std::int32_t e = 0; e < E; ++e) by_node[begin[home[e]]++] = e;
    }
    for (std::int32_t n = N; n > 0; --n) begin[n] = begin[n - 1];
    begin[0] = 0;
}

bool Placement::groups_share_home() const {
    const std::int32_t size = shape_.group_size;
    const std::int32_t* home = home_.data();
    bool shared = shape_.groups * size == shape_.experts;
    for (std::int32_t e = 0; e < shape_.experts && shared; e += size)
        for (std::int32_t k = 1; k < size; ++k) shared &= home[e + k] == home[e];
    return shared;
}

std::int32_t Placement::num_domains() const {
    return shape_.mode == PlacementMode::hierarchical ? shape_.nodes : 1;
}

Domain Placement::domain(std::int32_t index) const {
    if (shape_.mode != PlacementMode::hierarchical) return Domain{0, shape_.gpus, by_node_.data(), shape_.experts};
    const std::int32_t first = index * shape_.gpus_per_node;
    return Domain{first, first + shape_.gpus_per_node, by_node_.data() + node_begin_[index],
                  node_begin_[index + 1] - node_begin_[index]};
}

bool Placement::may_release(std::int32_t slot) const {
    const std::int32_t e = expert_[slot];
    if (count_[e] < 2) return false;
    if (!primary_[slot] || shape_.mode != PlacementMode::relaxed) return true;
    const std::int32_t first = home_[e] * shape_.gpus_per_node;
    std::int32_t at_home = 0;
    for (std::int32_t g = first; g < first + shape_.gpus_per_node; ++g) at_home += held(e, g);
    return at_home >= 2;
}

// A GPU's load is always the sum of its slots' loads in slot order, recomputed after each change,
// so that it never drifts from what the metrics compute.
void Placement::refresh_gpu(std::int32_t gpu) {
    double load = 0.0;
    for (std::int32_t p = gpu * shape_.slots_per_gpu; p < (gpu + 1) * shape_.slots_per_gpu; ++p) load += slot_load_[p];
    gpu_load_[gpu] = load;
}

// Only the GPUs holding e (its mask) can hold its slots.
void Placement::refresh_slot_loads(std::int32_t e) {
    const double load = replica_load_[e] = weight_[e] / count_[e];
    const std::int32_t S = shape_.slots_per_gpu;
    for_each_gpu_of(e, [&](std::int32_t g) {
        for (std::int32_t p = g * S; p < (g + 1) * S; ++p)
            if (expert_[p] == e) slot_load_[p] = load;
    });
}

void Placement::set_held(std::int32_t e, std::int32_t gpu, std::int32_t delta) {
    HeldCount& held = held_[gpu * shape_.experts + e];
    const std::int32_t extra_before = held > 1 ? held - 1 : 0;
    const std::int32_t m = held + delta;
    held = static_cast<HeldCount>(m);
    const std::int32_t extra_change = (m > 1 ? m - 1 : 0) - extra_before;
    duplicates_ += extra_change;
    gpu_duplicates_[gpu] += extra_change;
    std::uint64_t& word = mask_[static_cast<std::size_t>(e) * words_ + gpu / 64];
    const std::uint64_t bit = std::uint64_t{1} << (gpu % 64);
    word = m > 0 ? (word | bit) : (word & ~bit);
}

void Placement::swap_slots(std::int32_t a, std::int32_t b) {
    if (recording_) journal_.push_back(Change{true, a, b, -1, -1});
    const std::int32_t ga = gpu_of(a), gb = gpu_of(b);
    const std::int32_t ea = expert_[a], eb = expert_[b];
    set_held(ea, ga, -1);
    set_held(ea, gb, 1);
    set_held(eb, gb, -1);
    set_held(eb, ga, 1);
    std::swap(expert_[a], expert_[b]);
    std::swap(primary_[a], primary_[b]);
    std::swap(slot_load_[a], slot_load_[b]);
    refresh_gpu(ga);
    refresh_gpu(gb);
}

// The slot, other than `slot`, that becomes expert e's primary when `slot` is released.
// The first such slot in slot order: GPUs holding e in ascending order, then their slots.
std::int32_t Placement::next_primary(std::int32_t slot) const {
    const std::int32_t e = expert_[slot], S = shape_.slots_per_gpu;
    const std::uint64_t* words = mask_.data() + static_cast<std::size_t>(e) * words_;
    for (std::int32_t w = 0; w < words_; ++w)
        for (std::uint64_t bits = words[w]; bits; bits &= bits - 1) {
            const std::int32_t g = w * 64 + __builtin_ctzll(bits);
            if (shape_.mode == PlacementMode::relaxed && node_of_gpu(g) != home_[e]) continue;
            for (std::int32_t p = g * S; p < (g + 1) * S; ++p)
                if (p != slot && expert_[p] == e) return p;
        }
    return -1;
}

void Placement::fill_next_loads() const {
    const std::int32_t E = shape_.experts;
    const double* __restrict w = weight_.data();
    const std::int32_t* __restrict count = count_.data();
    double* __restrict next_load = next_load_.data();
    for (std::int32_t e = 0; e < E; ++e) next_load[e] = w[e] / (count[e] + 1);
    next_loads_ready_ = true;
}

// Moves one replica in `slot` from expert `from` to expert `to` (counts, tables and loads).
void Placement::move_replica(std::int32_t slot, std::int32_t from, std::int32_t to) {
    const std::int32_t g = gpu_of(slot);
    set_held(from, g, -1);
    --count_[from];
    set_held(to, g, 1);
    ++count_[to];
    expert_[slot] = to;
    if (next_loads_ready_) {
        next_load_[from] = weight_[from] / (count_[from] + 1);
        next_load_[to] = weight_[to] / (count_[to] + 1);
    }
    refresh_slot_loads(from);
    refresh_slot_loads(to);
    refresh_gpu(g);
    for_each_gpu_of(from, [&](std::int32_t k) { refresh_gpu(k); });
    for_each_gpu_of(to, [&](std::int32_t k) {
        if (k != g) refresh_gpu(k);
    });
}

void Placement::retarget(std::int32_t slot, std::int32_t e) {
    const std::int32_t from = expert_[slot];
    std::int32_t heir = -1;
    if (primary_[slot]) {
        heir = next_primary(slot);
        primary_[heir] = 1;
        primary_[slot] = 0;
    }
    if (recording_) journal_.push_back(Change{false, slot, -1, from, heir});
    move_replica(slot, from, e);
}

std::size_t Placement::checkpoint() {
    recording_ = true;
    return journal_.size();
}

void Placement::rollback(std::size_t mark) {
    const bool was_recording = recording_;
    recording_ = false;
    while (journal_.size() > mark) {
        const Change c = journal_.back();
        journal_.pop_back();
        if (c.swap) {
            swap_slots(c.a, c.b);
            continue;
        }
        move_replica(c.a, expert_[c.a], c.from);
        if (c.primary >= 0) {
            primary_[c.primary] = 0;
            primary_[c.a] = 1;
        }
    }
    recording_ = was_recording;
}

void Placement::commit() {
    recording_ = false;
    journal_.clear();
}

double Placement::retarget_peak(std::int32_t slot, std::int32_t to, double bound) const {
    const std::int32_t from = expert_[slot], j = gpu_of(slot);
    // The replica loads w / c and w / (c + 1) are kept; only w / (c - 1) is divided here.
    const double old_from = replica_load_[from], new_from = weight_[from] / (count_[from] - 1);
    const double old_to = replica_load_[to], new_to = next_replica_load(to);
    // j loses one replica of `from` and gains one of `to`; the others change per replica.
    double peak = gpu_load_[j] - old_from + new_to + (held(from, j) - 1) * (new_from - old_from) +
                  held(to, j) * (new_to - old_to);
    if (peak >= bound) return peak;
    const std::uint64_t* from_words = mask_.data() + static_cast<std::size_t>(from) * words_;
    const std::uint64_t* to_words = mask_.data() + static_cast<std::size_t>(to) * words_;
    for (std::int32_t w = 0; w < words_; ++w)
        for (std::uint64_t bits = from_words[w]; bits; bits &= bits - 1) {
            const std::int32_t g = w * 64 + __builtin_ctzll(bits);
            if (g == j) continue;
            peak = std::max(peak, gpu_load_[g] + held(from, g) * (new_from - old_from) + held(to, g) * (new_to - old_to));
            if (peak >= bound) return peak;
        }
    // GPUs holding `to` but not `from`.
    for (std::int32_t w = 0; w < words_; ++w)
        for (std::uint64_t bits = to_words[w] & ~from_words[w]; bits; bits &= bits - 1) {
            const std::int32_t g = w * 64 + __builtin_ctzll(bits);
            if (g != j) peak = std::max(peak, gpu_load_[g] + held(to, g) * (new_to - old_to));
        }
    return peak;
}

std::int32_t Placement::heaviest_gpu(std::int32_t first, std::int32_t last) const {
    std::int32_t best = first;
    for (std::int32_t g = first + 1; g < last; ++g)
        if (gpu_load_[g] > gpu_load_[best]) best = g;
    return best;
}

double Placement::max_load() const { return *std::max_element(gpu_load_.begin(), gpu_load_.end()); }

std::int64_t Placement::duplicates() const { return duplicates_; }

}  // namespace eplb::core
