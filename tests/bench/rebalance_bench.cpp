// rebalance() on DeepSeek-V3-shaped inputs: 58 layers x 256 experts, topology 288/8/4/32.
//   build/tests/bench/eplb_bench --benchmark_repetitions=10 --benchmark_report_aggregates_only=true
// The skewed random loads are one window; the synthetic series (tests/support/synthetic_series.hpp)
// gives realistic DeepSeek-V3-like windows, and history cases plan from its last 4 windows.
#include "support/random_cases.hpp"
#include "support/synthetic_series.hpp"

#include <eplb/rebalance.hpp>

#include <ATen/Parallel.h>
#include <ATen/ops/slice.h>
#include <benchmark/benchmark.h>

namespace {

const eplb::Topology kTopology{288, 8, 4, 32};

at::Tensor skewed_loads() {
    std::mt19937_64 rng(2024);
    return eplb::test::random_loads(rng, 58, 256, eplb::test::LoadPattern::skewed);
}

// Windows of the synthetic DeepSeek-V3 series: [8, 58, 256].
const at::Tensor& series() {
    static const at::Tensor s = [] {
        eplb::test::SeriesShape shape;
        shape.windows = 8;
        return eplb::test::synthetic_series(shape);
    }();
    return s;
}

void run(benchmark::State& state, const at::Tensor& w, const eplb::PlanOptions& options, const char* label) {
    at::set_num_threads(1);
    for (auto _ : state) benchmark::DoNotOptimize(eplb::rebalance(w, kTopology, options));
    state.SetItemsProcessed(state.iterations() * 58);
    state.SetLabel(label);
}

eplb::PlanOptions options(eplb::Policy policy, eplb::PlacementMode mode = eplb::PlacementMode::hierarchical) {
    eplb::PlanOptions o;
    o.policy = policy;
    o.mode = mode;
    return o;
}

void BM_Skewed(benchmark::State& state, eplb::Policy policy, eplb::PlacementMode mode) {
    run(state, skewed_loads(), options(policy, mode), "58x256 288/8/4/32 skewed, 1 thread");
}

void BM_Synthetic(benchmark::State& state, eplb::Policy policy, eplb::PlacementMode mode) {
    run(state, series()[7], options(policy, mode), "58x256 288/8/4/32 synthetic window, 1 thread");
}

void BM_SyntheticHistory4(benchmark::State& state, eplb::Policy policy, eplb::PlacementMode mode) {
    run(state, series().slice(0, 4, 8), options(policy, mode), "4 windows 58x256 288/8/4/32, 1 thread");
}

void BM_SyntheticMigration(benchmark::State& state, eplb::PlacementMode mode) {
    const eplb::PlanOptions o = options(eplb::Policy::balanced, mode);
    const eplb::Plan previous = eplb::rebalance(series()[6], kTopology, o);
    eplb::PlanOptions m = o;
    m.previous = &previous;
    run(state, series()[7], m, "window 7 after window 6's plan, 1 thread");
}

using eplb::PlacementMode;
using eplb::Policy;
BENCHMARK_CAPTURE(BM_Skewed, deepseek, Policy::deepseek, PlacementMode::hierarchical)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Skewed, seed, Policy::seed, PlacementMode::hierarchical)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Skewed, balanced, Policy::balanced, PlacementMode::hierarchical)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Synthetic, deepseek, Policy::deepseek, PlacementMode::hierarchical)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Synthetic, balanced, Policy::balanced, PlacementMode::hierarchical)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Synthetic, deepseek_global, Policy::deepseek, PlacementMode::global)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Synthetic, balanced_global, Policy::balanced, PlacementMode::global)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Synthetic, balanced_relaxed, Policy::balanced, PlacementMode::relaxed)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_SyntheticHistory4, balanced, Policy::balanced, PlacementMode::hierarchical)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_SyntheticMigration, hierarchical, PlacementMode::hierarchical)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
