#include "balanced_migration.hpp"

#include <algorithm>
#include <limits>

namespace eplb::core {
namespace {

// Minimum-cost perfect assignment of an n x n integer cost matrix (row-major), rows to columns:
// the Hungarian method with potentials, O(n^3). Ties resolve the same way on every run.
void assign_min_cost(const std::int64_t* cost, std::int32_t n, std::int32_t* row_to_column) {
    const std::int64_t inf = std::numeric_limits<std::int64_t>::max() / 4;
    std::vector<std::int64_t> u(static_cast<std::size_t>(n) + 1, 0), v(u), minv(u);
    std::vector<std::int32_t> p(static_cast<std::size_t>(n) + 1, 0), way(p);
    std::vector<std::uint8_t> used(static_cast<std::size_t>(n) + 1);
    for (std::int32_t i = 1; i <= n; ++i) {
        p[0] = i;
        std::int32_t j0 = 0;
        std::fill(minv.begin(), minv.end(), inf);
        std::fill(used.begin(), used.end(), 0);
        do {
            used[j0] = 1;
            const std::int32_t i0 = p[j0];
            std::int64_t delta = inf;
            std::int32_t j1 = 0;
            for (std::int32_t j = 1; j <= n; ++j) {
                if (used[j]) continue;
                const std::int64_t cur = cost[(i0 - 1) * n + (j - 1)] - u[i0] - v[j];
                if (cur < minv[j]) {
                    minv[j] = cur;
                    way[j] = j0;
                }
                if (minv[j] < delta) {
                    delta = minv[j];
                    j1 = j;
                }
            }
            for (std::int32_t j = 0; j <= n; ++j) {
                if (used[j]) {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
        } while (p[j0] != 0);
        do {
            const std::int32_t j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
        } while (j0);
    }
    for (std::int32_t j = 1; j <= n; ++j) row_to_column[p[j] - 1] = j - 1;
}

// Best GPU renaming between node `from` of the row and node `to` of the previous row (from
// s.shared): writes the target GPU of each of from's GPUs into target[from's GPUs] and returns
// the pairs shared.
std::int64_t match_node(const LayerShape& shape, std::int32_t from, std::int32_t to, std::int32_t* target,
                        MigrationScratch& s) {
    const std::int32_t n = shape.gpus_per_node, G = shape.gpus;
    s.cost.resize(static_cast<std::size_t>(n) * n);
    for (std::int32_t a = 0; a < n; ++a)
        for (std::int32_t b = 0; b < n; ++b)
            s.cost[a * n + b] = -s.shared[static_cast<std::size_t>(from * n + a) * G + (to * n + b)];
    s.assignment.resize(static_cast<std::size_t>(n));
    assign_min_cost(s.cost.data(), n, s.assignment.data());
    std::int64_t shared = 0;
    for (std::int32_t a = 0; a < n; ++a) {
        target[from * n + a] = to * n + s.assignment[a];
        shared -= s.cost[a * n + s.assignment[a]];
    }
    return shared;
}

// Depth-first search over labelled splits, each group trying its previous node first; a branch
// stops when a node exceeds the budget's load or when it moves as many groups as the best found.
class NearestSplit {
public:
    NearestSplit(const std::vector<double>& group_load, const std::vector<std::int32_t>& previous, std::int32_t nodes,
                 double node_budget)
        : load_(group_load), previous_(previous), nodes_(nodes),
          per_(static_cast<std::int32_t>(group_load.size()) / nodes), budget_(node_budget),
          node_load_(static_cast<std::size_t>(nodes), 0.0), node_count_(static_cast<std::size_t>(nodes), 0),
          split_(group_load.size(), -1) {}

    bool run(std::vector<std::int32_t>& best) {
        search(0, 0, 0.0, best);
        return found_;
    }

private:
    static constexpr std::int64_t kMaxVisits = 200000;

    void search(std::size_t g, std::int32_t moved, double peak, std::vector<std::int32_t>& best) {
        if (++visits_ > kMaxVisits) return;
        if (g == load_.size()) {
            if (!found_ || moved < best_moved_ || (moved == best_moved_ && peak < best_peak_)) {
                found_ = true;
                best_moved_ = moved;
                best_peak_ = peak;
                best = split_;
            }
            return;
        }
        for (std::int32_t k = -1; k < nodes_; ++k) {
            const std::int32_t n = k < 0 ? previous_[g] : k;
            if (k == previous_[g] || node_count_[n] == per_) continue;
            const std::int32_t m = moved + (n != previous_[g]);
            const double load = node_load_[n] + load_[g];
            if (load > budget_ || (found_ && m > best_moved_)) continue;
            node_load_[n] = load;
            ++node_count_[n];
            split_[g] = n;
            search(g + 1, m, std::max(peak, load), best);
            --node_count_[n];
            node_load_[n] -= load_[g];
        }
    }

    const std::vector<double>& load_;
    const std::vector<std::int32_t>& previous_;
    std::int32_t nodes_, per_;
    double budget_;
    std::vector<double> node_load_;
    std::vector<std::int32_t> node_count_, split_;
    bool found_ = false;
    std::int32_t best_moved_ = 0;
    double best_peak_ = 0.0;
    std::int64_t visits_ = 0;
};

// Moves the replicas of each GPU g of the row to GPU target[g], those the target held in
// `previous` into their old slots, the others into the free slots in their current order.
void place_on_targets(const LayerShape& shape, std::int64_t* phy2log, std::int32_t* rank, const std::int64_t* previous,
                      const std::vector<std::int32_t>& target, MigrationScratch& s) {
    const std::int32_t G = shape.gpus, S = shape.slots_per_gpu, R = shape.slots;
    s.row.assign(static_cast<std::size_t>(R), -1);
    s.row_rank.assign(static_cast<std::size_t>(R), -1);
    for (std::int32_t g = 0; g < G; ++g) {
        const std::int32_t t = target[g];
        s.used.assign(static_cast<std::size_t>(S), 0);  // replicas of g already placed
        for (std::int32_t k = 0; k < S; ++k)
            for (std::int32_t i = 0; i < S; ++i)
                if (!s.used[i] && phy2log[g * S + i] == previous[t * S + k]) {
                    s.used[i] = 1;
                    s.row[t * S + k] = phy2log[g * S + i];
                    s.row_rank[t * S + k] = rank[g * S + i];
                    break;
                }
        std::int32_t free = t * S;
        for (std::int32_t i = 0; i < S; ++i) {
            if (s.used[i]) continue;
            while (s.row[free] >= 0) ++free;
            s.row[free] = phy2log[g * S + i];
            s.row_rank[free] = rank[g * S + i];
        }
    }
    std::copy(s.row.begin(), s.row.end(), phy2log);
    std::copy(s.row_rank.begin(), s.row_rank.end(), rank);
}

}  // namespace

const std::vector<std::int32_t>& previous_split(const MigrationScratch& scratch) { return scratch.group_home; }

bool nearest_feasible_split(const double* weight, const LayerShape& shape, const std::vector<std::int32_t>& previous,
                            double budget, std::vector<std::int32_t>& split) {
    std::vector<double> group_load(static_cast<std::size_t>(shape.groups), 0.0);
    for (std::int32_t e = 0; e < shape.experts; ++e) group_load[e / shape.group_size] += weight[e];
    return NearestSplit(group_load, previous, shape.nodes, budget * shape.gpus_per_node).run(split);
}

void rebuild_for_split(const double* w, const LayerShape& shape, const std::vector<std::int32_t>& previous_split,
                       const std::vector<std::int32_t>& split, const std::int64_t* previous, std::int64_t* row,
                       std::int32_t* rank) {
    const std::int32_t E = shape.experts, S = shape.slots_per_gpu, SN = shape.slots_per_node;
    const std::int32_t gpn = shape.gpus_per_node;
    std::vector<std::int32_t> target(static_cast<std::size_t>(E), 0), kept(target);
    std::vector<double> replica_load(static_cast<std::size_t>(E), 0.0);  // w_e / target_e
    std::vector<double> gpu_load(static_cast<std::size_t>(gpn));
    std::vector<std::uint8_t> holds(static_cast<std::size_t>(E) * gpn);
    std::vector<std::int32_t> node_experts;
    for (std::int32_t n = 0; n < shape.nodes; ++n) {
        // D'Hondt counts of the node's experts (lower id on ties), at most G / N each.
        node_experts.clear();
        for (std::int32_t g = 0; g < shape.groups; ++g)
            if (split[g] == n)
                for (std::int32_t e = g * shape.group_size; e < (g + 1) * shape.group_size; ++e) node_experts.push_back(e);
        for (const std::int32_t e : node_experts) {
            target[e] = 1;
            replica_load[e] = w[e] / target[e];
        }
        for (std::int32_t extra = SN - static_cast<std::int32_t>(node_experts.size()); extra > 0; --extra) {
            std::int32_t best = -1;
            for (const std::int32_t e : node_experts)
                if (target[e] < gpn && (best < 0 || replica_load[e] > replica_load[best])) best = e;
            const std::int32_t grown = best < 0 ? node_experts.front() : best;
            ++target[grown];
            replica_load[grown] = w[grown] / target[grown];
        }
        // Keep the replicas of staying groups, up to the new counts.
        std::fill(holds.begin(), holds.end(), 0);
        std::fill(gpu_load.begin(), gpu_load.end(), 0.0);
        for (std::int32_t p = n * SN; p < (n + 1) * SN; ++p) {
            const std::int32_t e = static_cast<std::int32_t>(previous[p]);
            const bool stays = previous_split[e / shape.group_size] == n && split[e / shape.group_size] == n;
            if (stays && kept[e] < target[e]) {
                ++kept[e];
                row[p] = e;
                holds[static_cast<std::size_t>(e) * gpn + (p - n * SN) / S] = 1;
                gpu_load[(p - n * SN) / S] += replica_load[e];
            } else {
                row[p] = -1;
            }
        }
        // The missing replicas, heaviest first, onto the lightest GPU with room.
        std::vector<std::int32_t> missing;
        for (const std::int32_t e : node_experts)
            for (std::int32_t k = kept[e]; k < target[e]; ++k) missing.push_back(e);
        std::stable_sort(missing.begin(), missing.end(), [&](std::int32_t a, std::int32_t b) {
            return replica_load[a] > replica_load[b] || (replica_load[a] == replica_load[b] && a < b);
        });
        std::vector<std::int32_t> free_in(static_cast<std::size_t>(gpn), 0);
        for (std::int32_t p = n * SN; p < (n + 1) * SN; ++p) free_in[(p - n * SN) / S] += row[p] < 0;
        for (const std::int32_t e : missing) {
            std::int32_t best = -1;
            for (bool strict : {true, false}) {
                for (std::int32_t g = 0; g < gpn; ++g) {
                    if (free_in[g] == 0 || (strict && holds[static_cast<std::size_t>(e) * gpn + g])) continue;
                    if (best < 0 || gpu_load[g] < gpu_load[best]) best = g;
                }
                if (best >= 0) break;
            }
            std::int32_t p = n * SN + best * S;
            while (row[p] >= 0) ++p;
            row[p] = e;
            --free_in[best];
            holds[static_cast<std::size_t>(e) * gpn + best] = 1;
            gpu_load[best] += replica_load[e];
        }
    }
    std::vector<std::uint8_t> seen(static_cast<std::size_t>(E), 0);
    std::vector<std::int32_t> next(static_cast<std::size_t>(E), 1);
    for (std::int32_t p = 0; p < shape.slots; ++p) {
        const std::int32_t e = static_cast<std::int32_t>(row[p]);
        rank[p] = seen[e] ? next[e]++ : 0;
        seen[e] = 1;
    }
}

std::int64_t moved_slots(const std::int64_t* a, const std::int64_t* b, std::int32_t slots) {
    std::int64_t moved = 0;
    for (std::int32_t p = 0; p < slots; ++p) moved += a[p] != b[p];
    return moved;
}

// The previous slots are grouped by expert first, so that each expert of a row GPU meets only the
// GPUs that held it.
void count_shared_pairs(const LayerShape& shape, const std::int64_t* row, const std::int64_t* previous,
                        MigrationScratch& s) {
    const std::int32_t G = shape.gpus, S = shape.slots_per_gpu, E = shape.experts, R = shape.slots;
    std::vector<std::int32_t>& begin = s.expert_begin;  // [E + 1]: e's previous GPUs, ascending
    begin.assign(static_cast<std::size_t>(E) + 1, 0);
    for (std::int32_t p = 0; p < R; ++p) ++begin[previous[p] + 1];
    for (std::int32_t e = 0; e < E; ++e) begin[e + 1] += begin[e];
    s.expert_gpus.resize(static_cast<std::size_t>(R));
    s.cursor.assign(begin.begin(), begin.end() - 1);
    for (std::int32_t p = 0; p < R; ++p) s.expert_gpus[s.cursor[previous[p]]++] = p / S;
    s.shared.assign(static_cast<std::size_t>(G) * G, 0);
    for (std::int32_t a = 0; a < G; ++a) {
        const std::int64_t* slots = row + std::int64_t{a} * S;
        for (std::int32_t k = 0; k < S; ++k) {
            if (std::find(slots, slots + k, slots[k]) != slots + k) continue;  // counted at its first slot
            const std::int32_t e = static_cast<std::int32_t>(slots[k]);
            const std::int64_t on_a = std::count(slots + k, slots + S, slots[k]);
            for (std::int32_t q = begin[e]; q < begin[e + 1];) {
                const std::int32_t b = s.expert_gpus[q];
                std::int64_t on_b = 0;
                for (; q < begin[e + 1] && s.expert_gpus[q] == b; ++q) ++on_b;
                s.shared[static_cast<std::size_t>(a) * G + b] += std::min(on_a, on_b);
            }
        }
    }
}

void relabel_to_previous(const LayerShape& shape, std::int64_t* phy2log, std::int32_t* rank,
                         const std::int64_t* previous, MigrationScratch& s) {
    const std::int32_t N = shape.nodes, G = shape.gpus;
    // Target GPU of every GPU: the best renaming inside each pair of nodes, then of the nodes.
    std::vector<std::int32_t>& target = s.gpu_target;
    target.assign(static_cast<std::size_t>(G), 0);
    std::vector<std::int32_t> pair_target(static_cast<std::size_t>(N) * N * G);
    s.overlap.resize(static_cast<std::size_t>(N) * N);
    count_shared_pairs(shape, phy2log, previous, s);
    for (std::int32_t a = 0; a < N; ++a)
        for (std::int32_t b = 0; b < N; ++b)
            s.overlap[a * N + b] = -match_node(shape, a, b, pair_target.data() + (a * N + b) * G, s);
    s.node_assignment.resize(static_cast<std::size_t>(N));
    assign_min_cost(s.overlap.data(), N, s.node_assignment.data());
    for (std::int32_t a = 0; a < N; ++a) {
        const std::int32_t* t = pair_target.data() + (a * N + s.node_assignment[a]) * G;
        for (std::int32_t g = a * shape.gpus_per_node; g < (a + 1) * shape.gpus_per_node; ++g) target[g] = t[g];
    }
    place_on_targets(shape, phy2log, rank, previous, target, s);
}

void keep_slots(const LayerShape& shape, std::int64_t* phy2log, std::int32_t* rank, const std::int64_t* previous,
                MigrationScratch& s) {
    s.gpu_target.resize(static_cast<std::size_t>(shape.gpus));
    for (std::int32_t g = 0; g < shape.gpus; ++g) s.gpu_target[g] = g;
    place_on_targets(shape, phy2log, rank, previous, s.gpu_target, s);
}

bool previous_ranks(const LayerShape& shape, const std::int64_t* previous, std::int32_t* rank, MigrationScratch& s) {
    const std::int32_t R = shape.slots, E = shape.experts, N = shape.nodes, SN = shape.slots_per_node;
    std::vector<std::int32_t>& home = s.group_home;
    home.assign(static_cast<std::size_t>(shape.groups), -1);
    if (shape.mode != PlacementMode::global && N > 1) {
        // Replicas of each group's experts on each node: [groups, N]; experts of a group present
        // on a node: [E, N] through `used`.
        std::vector<std::int32_t> present(static_cast<std::size_t>(shape.groups) * N, 0);
        s.used.assign(static_cast<std::size_t>(E) * N, 0);
        for (std::int32_t p = 0; p < R; ++p) {
            const std::int32_t e = static_cast<std::int32_t>(previous[p]), n = p / SN;
            if (!s.used[e * N + n]) {
                s.used[e * N + n] = 1;
                ++present[(e / shape.group_size) * N + n];
            }
        }
        std::vector<std::int32_t> groups_on(static_cast<std::size_t>(N), 0);
        for (std::int32_t g = 0; g < shape.groups; ++g) {
            for (std::int32_t n = 0; n < N; ++n)
                if (present[g * N + n] == shape.group_size) {
                    if (shape.mode == PlacementMode::hierarchical && home[g] >= 0) return false;  // spread
                    if (home[g] < 0) home[g] = n;
                } else if (shape.mode == PlacementMode::hierarchical && present[g * N + n] > 0) {
                    return false;  // part of the group lives elsewhere
                }
            if (home[g] < 0) return false;
            ++groups_on[home[g]];
        }
        for (std::int32_t n = 0; n < N; ++n)
            if (groups_on[n] != shape.groups / N) return false;
    }
    // Ranks: the first replica of each expert on its home node is the primary.
    std::vector<std::int32_t> next(static_cast<std::size_t>(E), 1);
    std::vector<std::uint8_t> has_primary(static_cast<std::size_t>(E), 0);
    for (std::int32_t p = 0; p < R; ++p) {
        const std::int32_t e = static_cast<std::int32_t>(previous[p]);
        const std::int32_t h = home[e / shape.group_size];
        if (!has_primary[e] && (h < 0 || p / SN == h)) {
            has_primary[e] = 1;
            rank[p] = 0;
        } else {
            rank[p] = -1;
        }
    }
    for (std::int32_t p = 0; p < R; ++p)
        if (rank[p] < 0) rank[p] = next[previous[p]]++;
    return true;
}

}  // namespace eplb::core
