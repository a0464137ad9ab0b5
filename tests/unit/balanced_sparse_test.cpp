// The balanced policy's searches for sparse layers: pair repartitions (balanced_repartition), the
// count search (balanced_search: search_counts) and the proportional repack (balanced_fill).
#include "core/balanced_fill.hpp"
#include "core/balanced_placement.hpp"
#include "core/balanced_repartition.hpp"
#include "core/balanced_search.hpp"
#include "support/placements.hpp"
#include "support/random_cases.hpp"

#include <eplb/rebalance.hpp>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <vector>

namespace eplb {
namespace {

constexpr std::int32_t kGpus = 8, kSlots = 9, kExperts = 64;  // 72 slots

struct SparseLayer {
    std::vector<double> weight;
    core::Placement placement;
};

// Sparse layers shaped like SGLang's prefill statistics: 24 of 64 experts carry load, two to
// four of them several times a GPU's mean load and the others a tenth to a half of it.
at::Tensor prefill_like_loads(std::mt19937_64& rng, std::int64_t layers) {
    at::Tensor w = at::zeros({layers, kExperts}, at::kFloat);
    std::uniform_real_distribution<float> heavy(100.0f, 400.0f), light(5.0f, 30.0f);
    std::uniform_int_distribution<int> heavies(2, 4);
    for (std::int64_t l = 0; l < layers; ++l) {
        std::vector<std::int64_t> experts(kExperts);
        std::iota(experts.begin(), experts.end(), 0);
        std::shuffle(experts.begin(), experts.end(), rng);
        const int h = heavies(rng);
        for (int k = 0; k < 24; ++k) w[l][experts[k]] = k < h ? heavy(rng) : light(rng);
    }
    return w;
}

// Such layers as deepseek places them globally on 8 GPUs of 9 slots, with their duplicates
// swapped away: where the searches start.
std::vector<SparseLayer> sparse_layers(std::uint64_t seed, std::int64_t layers) {
    std::mt19937_64 rng(seed);
    const Topology t{kGpus * kSlots, 1, 1, kGpus};
    const at::Tensor w = prefill_like_loads(rng, layers);
    PlanOptions o;
    o.policy = Policy::deepseek;
    o.mode = PlacementMode::global;
    const Plan start = rebalance(w, t, o);
    std::vector<SparseLayer> out;
    core::SearchScratch scratch;
    for (std::int64_t l = 0; l < layers; ++l) {
        const at::Tensor row = w[l].to(at::kDouble).contiguous();
        std::vector<double> weight(row.data_ptr<double>(), row.data_ptr<double>() + row.numel());
        core::Placement pl = test::placement_of(start, l, weight, t);
        core::repair_duplicates(pl, core::RepairOrder::swap_first, scratch);
        out.push_back({std::move(weight), std::move(pl)});
    }
    return out;
}

// sparse_layers after the local search (improve_placement down to the mean, with or without
// count moves): where the repartitions have done their work.
std::vector<SparseLayer> searched_layers(std::uint64_t seed, std::int64_t layers, bool count_moves) {
    std::vector<SparseLayer> out = sparse_layers(seed, layers);
    core::SearchScratch scratch;
    for (SparseLayer& layer : out)
        core::improve_placement(layer.placement, layer.placement.domain(0), 0.0, count_moves, 1000, scratch);
    return out;
}

std::vector<std::int32_t> slots_of(std::int32_t gpu, bool loaded, const core::Placement& pl) {
    std::vector<std::int32_t> out;
    for (std::int32_t p = gpu * kSlots; p < (gpu + 1) * kSlots; ++p)
        if ((pl.slot_load(p) > 0.0) == loaded) out.push_back(p);
    return out;
}

// Slots without load of GPU `from` whose experts GPU `to` may take together (one per expert, none
// it holds already).
std::int32_t free_fillers(const core::Placement& pl, std::int32_t from, std::int32_t to) {
    std::set<std::int32_t> experts;
    for (const std::int32_t p : slots_of(from, false, pl))
        if (pl.held(pl.expert(p), to) == 0) experts.insert(pl.expert(p));
    return static_cast<std::int32_t>(experts.size());
}

// The lowest larger load of GPUs h and j over every split of their loaded replicas that keeps
// kSlots slots on each, puts no two replicas of an expert on one GPU and fills each GPU's slots
// left with slots without load (its own first, then the other's): an enumeration independent
// of best_repartition's.
double lightest_split(const core::Placement& pl, std::int32_t h, std::int32_t j) {
    std::vector<std::int32_t> items = slots_of(h, true, pl);
    const std::vector<std::int32_t> theirs = slots_of(j, true, pl);
    items.insert(items.end(), theirs.begin(), theirs.end());
    const std::int32_t own_h = kSlots - static_cast<std::int32_t>(slots_of(h, true, pl).size());
    const std::int32_t own_j = kSlots - static_cast<std::int32_t>(theirs.size());
    double best = std::numeric_limits<double>::infinity();
    for (std::uint32_t mask = 0; mask < (1u << items.size()); ++mask) {
        std::multiset<std::int32_t> on_h, on_j;
        double load_h = 0.0, load_j = 0.0;
        for (std::size_t i = 0; i < items.size(); ++i) {
            const bool to_h = mask >> i & 1u;
            (to_h ? on_h : on_j).insert(pl.expert(items[i]));
            (to_h ? load_h : load_j) += pl.slot_load(items[i]);
        }
        const auto size_h = static_cast<std::int32_t>(on_h.size()), size_j = static_cast<std::int32_t>(on_j.size());
        if (size_h > kSlots || size_j > kSlots) continue;
        if (std::set<std::int32_t>(on_h.begin(), on_h.end()).size() != on_h.size()) continue;
        if (std::set<std::int32_t>(on_j.begin(), on_j.end()).size() != on_j.size()) continue;
        if (kSlots - size_h > own_h && kSlots - size_h - own_h > free_fillers(pl, j, h)) continue;
        if (kSlots - size_j > own_j && kSlots - size_j - own_j > free_fillers(pl, h, j)) continue;
        best = std::min(best, std::max(load_h, load_j));
    }
    return best;
}

TEST(BalancedRepartition, FindsTheLightestSplitOfTwoGpusAndAppliesIt) {
    std::int32_t pairs = 0, lowered = 0;
    for (SparseLayer& layer : sparse_layers(17, 30)) {
        const core::Placement& pl = layer.placement;
        const std::int32_t h = pl.heaviest_gpu(0, kGpus);
        for (std::int32_t j = 0; j < kGpus; ++j) {
            if (j == h || !core::repartition_covers(pl, h, j)) continue;
            ++pairs;
            const double expected = lightest_split(pl, h, j);
            const core::Repartition split = core::best_repartition(pl, h, {j}, std::numeric_limits<double>::infinity());
            ASSERT_EQ(split.j, j);
            EXPECT_NEAR(split.peak, expected, expected * 1e-12) << "GPUs " << h << ", " << j;
            core::Placement after = pl;
            core::apply_repartition(after, split);
            EXPECT_NEAR(std::max(after.gpu_load(h), after.gpu_load(j)), split.peak, split.peak * 1e-12);
            EXPECT_EQ(after.duplicates(), 0);
            for (std::int32_t g = 0; g < kGpus; ++g) {
                if (g != h && g != j) {
                    EXPECT_EQ(after.gpu_load(g), pl.gpu_load(g));
                }
            }
            for (std::int32_t e = 0; e < kExperts; ++e) EXPECT_EQ(after.count(e), pl.count(e));
            lowered += split.peak < pl.gpu_load(h) * (1.0 - 1e-12);
        }
    }
    EXPECT_GT(pairs, 50);
    EXPECT_GT(lowered, 10);
}

TEST(BalancedRepartition, LeavesNoSplitOfTheHeaviestGpuThatLowersItAfterTheLocalSearch) {
    std::int32_t checked = 0;
    for (SparseLayer& layer : searched_layers(7, 40, /*count_moves=*/false)) {
        const core::Placement& pl = layer.placement;
        const std::int32_t h = pl.heaviest_gpu(0, kGpus);
        for (std::int32_t j = 0; j < kGpus; ++j) {
            if (j == h || !core::repartition_covers(pl, h, j)) continue;
            ++checked;
            EXPECT_GE(lightest_split(pl, h, j), pl.gpu_load(h) * (1.0 - 1e-12)) << "GPUs " << h << ", " << j;
        }
    }
    EXPECT_GT(checked, 50);
}

TEST(BalancedRepartition, AddsNoDuplicateWhereTheTopologyForcesSome) {
    // Expert 0 has four replicas on two GPUs: each GPU must hold two of them.
    const Topology t{8, 1, 1, 2};  // 2 GPUs of 4 slots
    const std::vector<double> weight{12.0, 1.0, 2.0, 3.0, 0.0};
    const std::vector<std::int64_t> row{0, 0, 1, 4, /* GPU 1 */ 2, 3, 0, 0};
    const std::vector<std::int32_t> rank{0, 1, 0, 0, 0, 0, 1, 1};
    core::Placement pl(core::LayerShape::make(t, 5, PlacementMode::global, true));
    pl.reset(weight.data(), row.data(), rank.data());
    ASSERT_EQ(pl.gpu_load(0), 7.0);
    ASSERT_EQ(pl.gpu_load(1), 11.0);
    // Both GPUs keep their two replicas of expert 0 (3 each); experts 1-3 split as {3} | {1, 2}.
    const core::Repartition split = core::best_repartition(pl, 1, {0}, pl.gpu_load(1));
    ASSERT_EQ(split.j, 0);
    EXPECT_EQ(split.peak, 9.0);
    core::apply_repartition(pl, split);
    EXPECT_EQ(pl.gpu_load(0), 9.0);
    EXPECT_EQ(pl.gpu_load(1), 9.0);
    EXPECT_EQ(pl.held(0, 0), 2);
    EXPECT_EQ(pl.held(0, 1), 2);
    EXPECT_EQ(pl.duplicates(), 2);
}

TEST(BalancedCountSearch, NeverRaisesThePeakAndKeepsThePlanValid) {
    std::int32_t improved = 0;
    core::SearchScratch scratch;
    for (SparseLayer& layer : searched_layers(23, 30, /*count_moves=*/true)) {
        core::Placement& pl = layer.placement;
        const double before = pl.max_load();
        double total = 0.0;
        for (std::int32_t g = 0; g < kGpus; ++g) total += pl.gpu_load(g);
        improved += core::search_counts(pl, pl.domain(0), total / kGpus, 50, 64, 1000, scratch) > 0;
        EXPECT_LE(pl.max_load(), before);
        EXPECT_EQ(pl.duplicates(), 0);
        std::int32_t replicas = 0;
        for (std::int32_t e = 0; e < kExperts; ++e) {
            EXPECT_GE(pl.count(e), 1);
            replicas += pl.count(e);
        }
        EXPECT_EQ(replicas, kGpus * kSlots);
    }
    EXPECT_GT(improved, 0);
}

TEST(BalancedRepack, GivesTheSpareSlotsToTheHeaviestReplicasAndRestores) {
    for (SparseLayer& layer : sparse_layers(29, 20)) {
        core::Placement& pl = layer.placement;
        std::vector<std::int32_t> before(kGpus * kSlots);
        for (std::int32_t p = 0; p < kGpus * kSlots; ++p) before[p] = pl.expert(p);
        core::FillScratch scratch;
        ASSERT_TRUE(core::repack_proportionally(pl, layer.weight.data(), pl.domain(0), scratch));
        EXPECT_EQ(pl.duplicates(), 0);
        // D'Hondt: no replica of a loaded expert that may grow (it has fewer replicas than GPUs) is
        // heavier than any other's would be with one replica fewer; experts without load keep one.
        double heaviest = 0.0, lightest_fewer = std::numeric_limits<double>::infinity();
        for (std::int32_t e = 0; e < kExperts; ++e) {
            if (layer.weight[e] <= 0.0) {
                EXPECT_EQ(pl.count(e), 1) << "expert " << e;
                continue;
            }
            if (pl.count(e) < kGpus) heaviest = std::max(heaviest, layer.weight[e] / pl.count(e));
            if (pl.count(e) >= 2) lightest_fewer = std::min(lightest_fewer, layer.weight[e] / (pl.count(e) - 1));
        }
        EXPECT_LE(heaviest, lightest_fewer);
        core::restore_before_repack(pl, layer.weight.data(), scratch);
        for (std::int32_t p = 0; p < kGpus * kSlots; ++p) EXPECT_EQ(pl.expert(p), before[p]);
    }
}

}  // namespace
}  // namespace eplb
