#include "bounds.hpp"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <numeric>
#include <queue>
#include <unordered_map>
#include <utility>
#include <vector>

namespace eplb::core {

double dhondt_peak(const double* weight, std::int64_t n, std::int64_t slots) {
    if (n == 0) return 0.0;
    // Max-heap of (w / c, expert); only the extra slots need to be handed out.
    using Entry = std::pair<double, std::int64_t>;
    std::vector<std::int64_t> count(static_cast<std::size_t>(n), 1);
    std::priority_queue<Entry> heap;
    for (std::int64_t e = 0; e < n; ++e) heap.emplace(weight[e], e);
    for (std::int64_t extra = slots - n; extra > 0; --extra) {
        const std::int64_t e = heap.top().second;
        heap.pop();
        ++count[e];
        heap.emplace(weight[e] / static_cast<double>(count[e]), e);
    }
    return heap.top().first;
}

double global_layer_bound(const double* weight, std::int64_t num_experts, const Topology& t) {
    const double total = std::accumulate(weight, weight + num_experts, 0.0);
    return std::max(total / static_cast<double>(t.num_gpus), dhondt_peak(weight, num_experts, t.num_replicas));
}

namespace {

// Exact min over assignments of groups to nodes (groups/N each) of the worst node cost, where a
// node's cost is max(its load / (G/N), D'Hondt peak of its experts on R/N slots). Branch and bound:
// groups in descending load order, empty nodes tried once (nodes are interchangeable), a branch
// cut as soon as a node's partial load or a completed node's cost reaches the best found.
class GroupAssignmentSearch {
public:
    GroupAssignmentSearch(const double* weight, std::int64_t num_experts, const Topology& t)
        : weight_(weight),
          groups_(static_cast<int>(t.num_groups)),
          nodes_(static_cast<int>(t.num_nodes)),
          per_node_(static_cast<int>(t.num_groups / t.num_nodes)),
          group_size_(num_experts / t.num_groups),
          gpus_per_node_(static_cast<double>(t.gpus_per_node())),
          slots_per_node_(t.slots_per_node()),
          group_load_(static_cast<std::size_t>(groups_)),
          order_(static_cast<std::size_t>(groups_)),
          node_mask_(static_cast<std::size_t>(nodes_), 0),
          node_count_(static_cast<std::size_t>(nodes_), 0),
          node_load_(static_cast<std::size_t>(nodes_), 0.0) {
        for (int g = 0; g < groups_; ++g)
            group_load_[g] = std::accumulate(weight + g * group_size_, weight + (g + 1) * group_size_, 0.0);
        std::iota(order_.begin(), order_.end(), 0);
        std::stable_sort(order_.begin(), order_.end(), [&](int a, int b) { return group_load_[a] > group_load_[b]; });
    }

    /// The exact bound, or `fallback` when the search would take too long.
    double solve(double fallback) {
        best_ = std::numeric_limits<double>::infinity();
        visits_ = 0;
        search(0, 0.0);
        return aborted_ ? fallback : best_;
    }

private:
    static constexpr std::int64_t kMaxVisits = 2'000'000;

    double node_cost(std::uint64_t mask) {
        const auto hit = cost_.find(mask);
        if (hit != cost_.end()) return hit->second;
        experts_.clear();
        double load = 0.0;
        for (int g = 0; g < groups_; ++g) {
            if (!(mask >> g & 1)) continue;
            experts_.insert(experts_.end(), weight_ + g * group_size_, weight_ + (g + 1) * group_size_);
            load += group_load_[g];
        }
        const double cost = std::max(load / gpus_per_node_,
                                     dhondt_peak(experts_.data(), static_cast<std::int64_t>(experts_.size()), slots_per_node_));
        cost_.emplace(mask, cost);
        return cost;
    }

    void search(int k, double worst_complete) {
        if (aborted_ || ++visits_ > kMaxVisits) {
            aborted_ = true;
            return;
        }
        if (k == groups_) {
            best_ = std::min(best_, worst_complete);
            return;
        }
        const int g = order_[k];
        bool tried_empty = false;
        for (int n = 0; n < nodes_; ++n) {
            if (node_count_[n] == per_node_) continue;
            if (node_count_[n] == 0) {
                if (tried_empty) continue;
                tried_empty = true;
            }
            const double load = node_load_[n] + group_load_[g];
            if (load / gpus_per_node_ >= best_) continue;
            node_mask_[n] |= std::uint64_t{1} << g;
            node_load_[n] = load;
            ++node_count_[n];
            double worst = worst_complete;
            if (node_count_[n] == per_node_) worst = std::max(worst, node_cost(node_mask_[n]));
            if (worst < best_) search(k + 1, worst);
            --node_count_[n];
            node_load_[n] -= group_load_[g];
            node_mask_[n] &= ~(std::uint64_t{1} << g);
        }
    }

    const double* weight_;
    int groups_, nodes_, per_node_;
    std::int64_t group_size_;
    double gpus_per_node_;
    std::int64_t slots_per_node_;
    std::vector<double> group_load_;
    std::vector<int> order_;
    std::vector<std::uint64_t> node_mask_;
    std::vector<int> node_count_;
    std::vector<double> node_load_;
    std::unordered_map<std::uint64_t, double> cost_;
    std::vector<double> experts_;
    double best_ = 0.0;
    std::int64_t visits_ = 0;
    bool aborted_ = false;
};

}  // namespace

double hierarchical_layer_bound(const double* weight, std::int64_t num_experts, const Topology& t) {
    const double global = global_layer_bound(weight, num_experts, t);
    if (!t.is_hierarchical() || t.num_groups > 64) return global;
    // A hierarchical plan is also a global plan, so the global bound still holds where the exact
    // search gives up; the search can only raise it.
    return std::max(global, GroupAssignmentSearch(weight, num_experts, t).solve(global));
}

}  // namespace eplb::core
