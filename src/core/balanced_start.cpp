#include "balanced_start.hpp"

#include <algorithm>
#include <limits>
#include <numeric>

namespace eplb::core {
namespace {

// Splits with at most this many alternatives are searched exhaustively (8 groups on 4 nodes: 105).
constexpr double kMaxSplits = 20000;
constexpr double kSplitGain = 1e-9;
// Relative slack on the lowest peak of two-groups-per-node splits (see improve_group_split).
constexpr double kPairSlack = kSplitGain / 2;

double splits_count(std::int32_t groups, std::int32_t nodes) {
    // groups! / ((groups / nodes)!^nodes nodes!)
    const std::int32_t per = groups / nodes;
    double v = 1.0;
    std::int32_t left = groups;
    for (std::int32_t n = 0; n < nodes; ++n) {
        for (std::int32_t k = 0; k < per; ++k) v *= static_cast<double>(left - k) / (k + 1);
        left -= per;
        v /= (n + 1);
    }
    return v;
}

double max_node_load(const std::vector<double>& group_load, const std::vector<std::int32_t>& split, std::int32_t nodes,
                     std::vector<double>& load) {
    load.assign(static_cast<std::size_t>(nodes), 0.0);
    for (std::size_t g = 0; g < split.size(); ++g) load[split[g]] += group_load[g];
    return *std::max_element(load.begin(), load.end());
}

// With two groups per node, the lowest peak of any split as SplitSearch computes node loads
// (0 + a + b, that is a + b rounded once): pairing the heaviest group with the lightest, the
// second heaviest with the second lightest and so on minimises the largest exact pair sum, and
// rounding is monotone, so it minimises the largest rounded one too.
double paired_peak(const std::vector<double>& group_load, std::vector<double>& sorted) {
    sorted.assign(group_load.begin(), group_load.end());
    std::sort(sorted.begin(), sorted.end());
    double peak = 0.0;
    for (std::size_t i = 0, j = sorted.size() - 1; i < j; ++i, --j) peak = std::max(peak, sorted[i] + sorted[j]);
    return peak;
}

// Exhaustive search: groups in id order, each to a node with room; of the empty nodes only the
// first is tried (nodes are interchangeable); a branch stops when a node reaches the best peak.
class SplitSearch {
public:
    SplitSearch(const std::vector<double>& group_load, std::int32_t nodes, double bound)
        : load_(group_load), nodes_(nodes), per_(static_cast<std::int32_t>(group_load.size()) / nodes),
          best_(bound), node_load_(static_cast<std::size_t>(nodes), 0.0), node_count_(static_cast<std::size_t>(nodes), 0),
          split_(group_load.size(), -1) {}

    /// True when a split with a peak below the bound exists; it is then in `best_split`.
    bool run(std::vector<std::int32_t>& best_split) {
        found_ = false;
        search(0, 0.0, best_split);
        return found_;
    }

private:
    void search(std::size_t g, double peak, std::vector<std::int32_t>& best_split) {
        if (g == load_.size()) {
            best_ = peak;
            best_split = split_;
            found_ = true;
            return;
        }
        bool tried_empty = false;
        for (std::int32_t n = 0; n < nodes_; ++n) {
            if (node_count_[n] == per_) continue;
            if (node_count_[n] == 0) {
                if (tried_empty) continue;
                tried_empty = true;
            }
            const double load = node_load_[n] + load_[g];
            if (load >= best_) continue;
            node_load_[n] = load;
            ++node_count_[n];
            split_[g] = n;
            search(g + 1, std::max(peak, load), best_split);
            --node_count_[n];
            node_load_[n] -= load_[g];
        }
    }

    const std::vector<double>& load_;
    std::int32_t nodes_, per_;
    double best_;
    std::vector<double> node_load_;
    std::vector<std::int32_t> node_count_, split_;
    bool found_ = false;
};

// Swaps two groups between the heaviest node and another while the larger of the two drops.
bool descend_split(const std::vector<double>& group_load, std::int32_t nodes, std::vector<std::int32_t>& split) {
    const std::int32_t G = static_cast<std::int32_t>(split.size());
    std::vector<double> load(static_cast<std::size_t>(nodes), 0.0);
    for (std::int32_t g = 0; g < G; ++g) load[split[g]] += group_load[g];
    bool changed = false;
    while (true) {
        const std::int32_t h = static_cast<std::int32_t>(std::max_element(load.begin(), load.end()) - load.begin());
        double best_peak = load[h] * (1.0 - kSplitGain);
        std::int32_t best_a = -1, best_b = -1;
        for (std::int32_t a = 0; a < G; ++a) {
            if (split[a] != h) continue;
            for (std::int32_t b = 0; b < G; ++b) {
                const std::int32_t m = split[b];
                if (m == h) continue;
                const double d = group_load[a] - group_load[b];
                const double peak = std::max(load[h] - d, load[m] + d);
                if (d > 0.0 && peak < best_peak) {
                    best_peak = peak;
                    best_a = a;
                    best_b = b;
                }
            }
        }
        if (best_a < 0) return changed;
        const std::int32_t m = split[best_b];
        const double d = group_load[best_a] - group_load[best_b];
        load[h] -= d;
        load[m] += d;
        std::swap(split[best_a], split[best_b]);
        changed = true;
    }
}

void place(std::int64_t* phy2log, std::int32_t* rank, std::int32_t slot, std::int32_t expert, std::int32_t replica_rank) {
    phy2log[slot] = expert;
    rank[slot] = replica_rank;
}

}  // namespace

bool improve_group_split(const double* weight, const LayerShape& shape, std::vector<std::int32_t>& split,
                         StartScratch& s) {
    if (shape.nodes == 1 || shape.groups == shape.nodes) return false;
    s.group_load.assign(static_cast<std::size_t>(shape.groups), 0.0);
    for (std::int32_t g = 0, e = 0; g < shape.groups; ++g)
        for (std::int32_t k = 0; k < shape.group_size; ++k, ++e) s.group_load[g] += weight[e];
    const double current = max_node_load(s.group_load, split, shape.nodes, s.node_load);
    const double bound = current * (1.0 - kSplitGain);
    if (splits_count(shape.groups, shape.nodes) <= kMaxSplits) {
        // The search finds a split only when one has a peak below the bound, so none is found when
        // the lowest peak (paired_peak: P) is not. The search's node loads differ from exact sums
        // by the rounding of its additions and undoing subtractions: at most 2 G kMaxSplits of them
        // (G <= 12 here), each under 2^-53 of a node load <= 2 P, so by less than 1.1e-10 P.
        if (shape.groups == 2 * shape.nodes &&
            paired_peak(s.group_load, s.sorted_group_load) * (1.0 - kPairSlack) >= bound)
            return false;
        SplitSearch search(s.group_load, shape.nodes, bound);
        if (!search.run(s.best_split)) return false;
        split = s.best_split;
        return true;
    }
    return descend_split(s.group_load, shape.nodes, split);
}

namespace {

// Calls visit() for every split of the groups (groups / N per node); of the empty nodes only the
// first is tried (nodes are interchangeable).
template <typename Visit>
void for_each_split(std::int32_t g, std::int32_t nodes, std::int32_t per, std::vector<std::int32_t>& split,
                    std::vector<std::int32_t>& count, Visit& visit) {
    if (g == static_cast<std::int32_t>(split.size())) {
        visit();
        return;
    }
    bool tried_empty = false;
    for (std::int32_t n = 0; n < nodes; ++n) {
        if (count[n] == per || (count[n] == 0 && tried_empty)) continue;
        tried_empty |= count[n] == 0;
        split[g] = n;
        ++count[n];
        for_each_split(g + 1, nodes, per, split, count, visit);
        --count[n];
    }
}

}  // namespace

bool robust_group_split(const LayerHistory& h, const LayerShape& shape, std::vector<std::int32_t>& split,
                        StartScratch& s) {
    const std::int32_t G = shape.groups, N = shape.nodes;
    if (h.count < 2 || N == 1 || G == N || splits_count(G, N) > kMaxSplits) return false;
    // Group shares of every window: [count, G].
    s.group_load.assign(static_cast<std::size_t>(h.count * G), 0.0);
    for (std::int64_t t = 0; t < h.count; ++t) {
        double total = 0.0;
        for (std::int32_t e = 0; e < shape.experts; ++e) {
            s.group_load[t * G + e / shape.group_size] += h.windows[t * h.stride + e];
            total += h.windows[t * h.stride + e];
        }
        for (std::int32_t g = 0; g < G; ++g) s.group_load[t * G + g] = total > 0.0 ? s.group_load[t * G + g] / total : 0.0;
    }
    s.node_primary.resize(static_cast<std::size_t>(N));
    auto mean_peak = [&](const std::vector<std::int32_t>& sp) {
        double sum = 0.0;
        for (std::int64_t t = 0; t < h.count; ++t) {
            std::fill(s.node_primary.begin(), s.node_primary.end(), 0.0);
            for (std::int32_t g = 0; g < G; ++g) s.node_primary[sp[g]] += s.group_load[t * G + g];
            sum += *std::max_element(s.node_primary.begin(), s.node_primary.end());
        }
        return sum;
    };
    double best = mean_peak(split) * (1.0 - kSplitGain);
    bool found = false;
    s.visited_split.assign(static_cast<std::size_t>(G), 0);  // the split being visited
    s.count.assign(static_cast<std::size_t>(N), 0);
    auto visit = [&]() {
        const double v = mean_peak(s.visited_split);
        if (v < best) {
            best = v;
            s.best_split = s.visited_split;
            found = true;
        }
    };
    for_each_split(0, N, G / N, s.visited_split, s.count, visit);
    if (found) split = s.best_split;
    return found;
}

namespace {

// Node-aware replica counts of relaxed_start, into s.count [E]. Each expert's two candidate values
// (w / (c (c + 1)) to lighten its node, w / c otherwise) are kept and recomputed only for the
// expert that gains a replica.
void relaxed_counts(const double* w, const LayerShape& shape, const std::vector<std::int32_t>& split, StartScratch& s) {
    const std::int32_t E = shape.experts, N = shape.nodes;
    s.count.assign(static_cast<std::size_t>(E), 1);
    s.node_primary.assign(static_cast<std::size_t>(N), 0.0);
    s.expert_node.resize(static_cast<std::size_t>(E));
    s.lighten_value.resize(static_cast<std::size_t>(E));
    s.dhondt_value.resize(static_cast<std::size_t>(E));
    auto set_values = [&](std::int32_t e) {
        const double c = s.count[e];
        s.lighten_value[e] = w[e] / (c * (c + 1));
        s.dhondt_value[e] = w[e] / c;
    };
    double total = 0.0;
    for (std::int32_t e = 0; e < E; ++e) {
        s.expert_node[e] = split[e / shape.group_size];
        s.node_primary[s.expert_node[e]] += w[e];
        total += w[e];
        set_values(e);
    }
    const double node_mean = total / N;
    for (std::int32_t extra = shape.slots - E; extra > 0; --extra) {
        const std::int32_t hot =
            static_cast<std::int32_t>(std::max_element(s.node_primary.begin(), s.node_primary.end()) - s.node_primary.begin());
        const bool lighten_node = s.node_primary[hot] > node_mean;
        const std::vector<double>& value = lighten_node ? s.lighten_value : s.dhondt_value;
        std::int32_t best = -1;
        double best_value = -1.0;
        for (std::int32_t e = 0; e < E; ++e) {
            if (s.count[e] >= shape.gpus || (lighten_node && s.expert_node[e] != hot)) continue;
            if (value[e] > best_value) {
                best_value = value[e];
                best = e;
            }
        }
        if (best < 0) {  // every expert of the hot node is on every GPU: fall back to D'Hondt
            for (std::int32_t e = 0; e < E; ++e)
                if (s.count[e] < shape.gpus && s.dhondt_value[e] > best_value) {
                    best_value = s.dhondt_value[e];
                    best = e;
                }
        }
        if (best < 0) best = 0;  // only when R > E G: duplicates are unavoidable
        const double replica_before = s.dhondt_value[best];
        ++s.count[best];
        set_values(best);
        s.node_primary[s.expert_node[best]] += s.dhondt_value[best] - replica_before;
    }
}

}  // namespace

void relaxed_start(const double* w, const LayerShape& shape, const std::vector<std::int32_t>& split,
                   std::int64_t* phy2log, std::int32_t* rank, StartScratch& s) {
    const std::int32_t E = shape.experts, G = shape.gpus, N = shape.nodes, S = shape.slots_per_gpu;
    relaxed_counts(w, shape, split, s);
    // Items: replica k of expert e as e * K + k with K = R + 1 (k = 0 is the primary).
    const std::int32_t K = shape.slots + 1;
    s.replica_load.resize(static_cast<std::size_t>(E));
    for (std::int32_t e = 0; e < E; ++e) s.replica_load[e] = w[e] / s.count[e];
    // Items are listed by ascending id, and the replicas of one expert have one load: a stable sort
    // of the experts by descending load, each expanded into its replicas, is the items' order.
    s.sorted_experts.resize(static_cast<std::size_t>(E));
    std::iota(s.sorted_experts.begin(), s.sorted_experts.end(), 0);
    std::stable_sort(s.sorted_experts.begin(), s.sorted_experts.end(),
                     [&](std::int32_t a, std::int32_t b) { return s.replica_load[a] > s.replica_load[b]; });
    s.items.clear();
    for (const std::int32_t e : s.sorted_experts)
        for (std::int32_t k = 0; k < s.count[e]; ++k) s.items.push_back(e * K + k);
    auto load_of = [&](std::int32_t item) { return s.replica_load[item / K]; };
    s.gpu_fill.assign(static_cast<std::size_t>(G), 0);
    s.gpu_load.assign(static_cast<std::size_t>(G), 0.0);
    s.node_free.assign(static_cast<std::size_t>(N), shape.slots_per_node);
    s.node_pending.assign(static_cast<std::size_t>(N), E / N);
    s.on_gpu.assign(static_cast<std::size_t>(E) * static_cast<std::size_t>(G), 0);
    std::vector<std::int32_t>& next_rank = s.next_rank;
    next_rank.assign(static_cast<std::size_t>(E), 1);
    for (const std::int32_t item : s.items) {
        const std::int32_t e = item / K, home = split[e / shape.group_size];
        const bool primary = item % K == 0;
        // The lightest GPU that may take the item; `strict` also forbids duplicates.
        auto pick = [&](bool strict) {
            std::int32_t best = -1;
            for (std::int32_t g = 0; g < G; ++g) {
                const std::int32_t n = g / shape.gpus_per_node;
                if (s.gpu_fill[g] == S || (primary && n != home)) continue;
                if (!primary && s.node_free[n] - 1 < s.node_pending[n]) continue;
                if (strict && s.on_gpu[static_cast<std::size_t>(e) * G + g]) continue;
                if (best < 0 || s.gpu_load[g] < s.gpu_load[best]) best = g;
            }
            return best;
        };
        std::int32_t g = pick(shape.no_duplicates);
        if (g < 0) g = pick(false);
        const std::int32_t n = g / shape.gpus_per_node;
        place(phy2log, rank, g * S + s.gpu_fill[g], e, primary ? 0 : next_rank[e]++);
        ++s.gpu_fill[g];
        s.gpu_load[g] += load_of(item);
        s.on_gpu[static_cast<std::size_t>(e) * G + g] = 1;
        --s.node_free[n];
        if (primary) --s.node_pending[n];
    }
}

void spread_start(const double* w, const LayerShape& shape, const std::vector<std::int32_t>& split,
                  std::int64_t* phy2log, std::int32_t* rank, StartScratch& s) {
    const std::int32_t S = shape.slots_per_gpu, G = shape.gpus;
    const bool per_node = shape.mode == PlacementMode::hierarchical;
    const std::int32_t domains = per_node ? shape.nodes : 1, width = G / domains, cap = width;
    auto home = [&](std::int32_t e) { return shape.mode == PlacementMode::global ? 0 : split[e / shape.group_size]; };
    s.gpu_fill.assign(static_cast<std::size_t>(G), 0);
    s.gpu_load.assign(static_cast<std::size_t>(G), 0.0);
    s.count.assign(static_cast<std::size_t>(shape.experts), 1);
    for (std::int32_t k = 0; k < domains; ++k) {
        s.items.clear();  // the domain's experts
        for (std::int32_t e = 0; e < shape.experts; ++e)
            if (!per_node || home(e) == k) s.items.push_back(e);
        // D'Hondt counts, capped.
        for (std::int32_t extra = width * S - static_cast<std::int32_t>(s.items.size()); extra > 0; --extra) {
            std::int32_t best = -1;
            for (const std::int32_t e : s.items)
                if (s.count[e] < cap && (best < 0 || w[e] / s.count[e] > w[best] / s.count[best])) best = e;
            ++s.count[best < 0 ? s.items.front() : best];
        }
        std::stable_sort(s.items.begin(), s.items.end(), [&](std::int32_t a, std::int32_t b) {
            return s.count[a] > s.count[b] || (s.count[a] == s.count[b] && w[a] > w[b]);
        });
        const std::int32_t first = k * width;
        for (const std::int32_t e : s.items) {
            const double load = w[e] / s.count[e];
            auto better = [&](std::int32_t a, std::int32_t b) {  // a before b: more room, lighter, lower id
                if (s.gpu_fill[a] != s.gpu_fill[b]) return s.gpu_fill[a] < s.gpu_fill[b];
                return s.gpu_load[a] < s.gpu_load[b] || (s.gpu_load[a] == s.gpu_load[b] && a < b);
            };
            s.on_gpu.assign(static_cast<std::size_t>(width), 0);  // GPUs chosen for e
            std::int32_t chosen = 0;
            auto take = [&](std::int32_t lo, std::int32_t hi) {
                std::int32_t best = -1;
                for (std::int32_t g = lo; g < hi; ++g)
                    if (s.gpu_fill[g] < S && !s.on_gpu[g - first] && (best < 0 || better(g, best))) best = g;
                if (best < 0) return false;
                s.on_gpu[best - first] = 1;
                const std::int32_t slot = best * S + s.gpu_fill[best]++;
                phy2log[slot] = e;
                rank[slot] = chosen++;
                s.gpu_load[best] += load;
                return true;
            };
            if (shape.mode == PlacementMode::relaxed)
                take(home(e) * shape.gpus_per_node, (home(e) + 1) * shape.gpus_per_node);
            while (chosen < s.count[e])
                if (!take(first, first + width)) break;
            for (; chosen < s.count[e]; ++chosen) {  // no distinct GPU left: only in corner cases
                std::int32_t g = first;
                while (s.gpu_fill[g] == S) ++g;
                const std::int32_t slot = g * S + s.gpu_fill[g]++;
                phy2log[slot] = e;
                rank[slot] = chosen;
                s.gpu_load[g] += load;
            }
        }
    }
}

}  // namespace eplb::core
