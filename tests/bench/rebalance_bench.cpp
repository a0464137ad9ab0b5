// rebalance() on DeepSeek-V3-shaped inputs: 58 layers x 256 experts, topology 288/8/4/32.
//   build/tests/bench/eplb_bench --benchmark_repetitions=10 --benchmark_report_aggregates_only=true
#include "support/random_cases.hpp"

#include <eplb/rebalance.hpp>

#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>

namespace {

void BM_Rebalance(benchmark::State& state, eplb::Policy policy) {
    at::set_num_threads(1);
    std::mt19937_64 rng(2024);
    const at::Tensor w = eplb::test::random_loads(rng, 58, 256, eplb::test::LoadPattern::skewed);
    const eplb::Topology t{288, 8, 4, 32};
    for (auto _ : state) benchmark::DoNotOptimize(eplb::rebalance(w, t, policy));
    state.SetItemsProcessed(state.iterations() * 58);
    state.SetLabel("58x256 288/8/4/32, 1 thread");
}

BENCHMARK_CAPTURE(BM_Rebalance, deepseek, eplb::Policy::deepseek)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Rebalance, seed, eplb::Policy::seed)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
