// Layers planned per second at B DeepSeek-V3-shaped layers (256 experts, topology 288/8/4/32),
// native vs batched engine, on the CPU and (when one is visible) on CUDA, both policies.
//
//   eplb_batched_bench [--layers=58,5800,58000] [--engines=native,batched-cpu,batched-cuda]
//                      [Google Benchmark flags]
//
// items_per_second is layers per second. Timings are wall-clock (UseRealTime): the native engine
// uses every CPU thread, the batched one LibTorch's intra-op threads or the GPU; a plan is back on
// the CPU when rebalance returns, so GPU work is included. B layers are one rebalance call.
#include "support/random_cases.hpp"

#include <eplb/rebalance.hpp>

#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

const eplb::Topology kTopology{288, 8, 4, 32};
constexpr std::int64_t kExperts = 256;

// One load tensor per B, made once: B layers of skewed loads (the same seed for every B).
const at::Tensor& loads(std::int64_t layers) {
    static std::map<std::int64_t, at::Tensor> cache;
    auto it = cache.find(layers);
    if (it == cache.end()) {
        std::mt19937_64 rng(2024);
        it = cache.emplace(layers, eplb::test::random_loads(rng, layers, kExperts, eplb::test::LoadPattern::skewed)).first;
    }
    return it->second;
}

void BM_Plan(benchmark::State& state, eplb::Policy policy, eplb::Execution execution, std::int64_t layers) {
    const at::Tensor& w = loads(layers);
    benchmark::DoNotOptimize(eplb::rebalance(w.narrow(0, 0, std::min<std::int64_t>(layers, 58)), kTopology, policy,
                                             execution));  // warm-up: CUDA context, allocator
    for (auto _ : state) benchmark::DoNotOptimize(eplb::rebalance(w, kTopology, policy, execution));
    state.SetItemsProcessed(state.iterations() * layers);
    state.counters["layers"] = static_cast<double>(layers);
    state.SetLabel(execution.to_string() + ", " + std::to_string(at::get_num_threads()) + " CPU threads");
}

std::vector<std::string> split(const std::string& text) {
    std::vector<std::string> out;
    std::stringstream in(text);
    for (std::string part; std::getline(in, part, ',');)
        if (!part.empty()) out.push_back(part);
    return out;
}

// Takes our own `--name=value` flags out of argv; returns the value or `fallback`.
std::string take_flag(int& argc, char** argv, const char* name, const std::string& fallback) {
    const std::string prefix = std::string("--") + name + "=";
    std::string value = fallback;
    int kept = 1;
    for (int i = 1; i < argc; ++i) {
        if (std::strncmp(argv[i], prefix.c_str(), prefix.size()) == 0)
            value = argv[i] + prefix.size();
        else
            argv[kept++] = argv[i];
    }
    argc = kept;
    return value;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string layer_list = take_flag(argc, argv, "layers", "58,5800,58000");
    const std::string default_engines = eplb::cuda_device_count() > 0 ? "native,batched-cpu,batched-cuda" : "native,batched-cpu";
    const std::string engine_list = take_flag(argc, argv, "engines", default_engines);
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;

    const std::map<std::string, eplb::Execution> executions{
        {"native", {eplb::Engine::native, c10::Device(c10::kCPU)}},
        {"batched-cpu", {eplb::Engine::batched, c10::Device(c10::kCPU)}},
        {"batched-cuda", {eplb::Engine::batched, c10::Device(c10::kCUDA)}},
    };
    for (const eplb::Policy policy : eplb::engine_policies(eplb::Engine::batched))
        for (const std::string& name : split(engine_list)) {
            const auto it = executions.find(name);
            if (it == executions.end()) {
                std::fprintf(stderr, "unknown engine '%s' (native, batched-cpu, batched-cuda)\n", name.c_str());
                return 2;
            }
            for (const std::string& b : split(layer_list)) {
                const std::int64_t layers = std::stoll(b);
                benchmark::RegisterBenchmark(("plan/" + eplb::to_string(policy) + "/" + name + "/" + b).c_str(), BM_Plan,
                                             policy, it->second, layers)
                    ->Unit(benchmark::kMillisecond)
                    ->UseRealTime();
            }
        }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
