// Stand-alone equality check of the batched engine against the native one, for machines without
// GoogleTest (tests/device/gpu_check.sh falls back to it). Same cases as tests/unit/batched_test.cpp.
//
//   eplb_device_check [--device cpu|cuda|cuda:k] [--random N] [--seed S]
//   eplb_device_check --time B1,B2,... [--device D] [--repetitions K]
//
// Prints one line per policy and the first differences; exit code 0 when every plan is equal,
// 1 when one differs, 2 on a usage error. With --time it instead times rebalance on B
// DeepSeek-V3-shaped layers (native on the CPU, batched on D), printing one line per run as
// `plan/<policy>/<native|batched-cpu|batched-cuda>/<B> <median ms> <layers per second>`: the
// stand-in for tests/bench/batched_bench.cpp where Google Benchmark is missing.
#include "support/engine_cases.hpp"

#include <eplb/errors.hpp>
#include <eplb/rebalance.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <sstream>
#include <string>

namespace {

int check(const eplb::Execution& batched, int random_count, std::uint64_t seed) {
    const std::vector<eplb::test::EngineCase> cases = eplb::test::engine_cases(random_count, seed);
    int passed = 0, failed = 0;
    for (const eplb::Policy policy : eplb::engine_policies(eplb::Engine::batched)) {
        int differ = 0;
        for (const eplb::test::EngineCase& c : cases) {
            const eplb::Plan native = eplb::rebalance(c.weight, c.topology, policy);
            const std::string diff = eplb::test::plan_difference(native, eplb::rebalance(c.weight, c.topology, policy, batched));
            if (diff.empty()) continue;
            if (++differ <= 5) std::printf("  DIFFERS %s / %s: %s\n", eplb::to_string(policy).c_str(), c.label.c_str(), diff.c_str());
        }
        std::printf("%s: %zu cases, %d equal, %d differ (%s vs native on cpu)\n", eplb::to_string(policy).c_str(),
                    cases.size(), static_cast<int>(cases.size()) - differ, differ, batched.to_string().c_str());
        passed += static_cast<int>(cases.size()) - differ;
        failed += differ;
    }
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}

double median_ms(const at::Tensor& w, eplb::Policy policy, const eplb::Execution& e, int repetitions) {
    const eplb::Topology t{288, 8, 4, 32};
    eplb::rebalance(w.narrow(0, 0, std::min<std::int64_t>(w.size(0), 58)), t, policy, e);  // warm-up
    std::vector<double> ms;
    for (int r = 0; r < repetitions; ++r) {
        const auto start = std::chrono::steady_clock::now();
        eplb::rebalance(w, t, policy, e);
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
}

int time_plans(const std::string& layer_list, const eplb::Execution& batched, int repetitions) {
    const std::string batched_name = batched.device.is_cuda() ? "batched-cuda" : "batched-cpu";
    std::stringstream in(layer_list);
    for (std::string item; std::getline(in, item, ',');) {
        const std::int64_t layers = std::stoll(item);
        std::mt19937_64 rng(2024);
        const at::Tensor w = eplb::test::random_loads(rng, layers, 256, eplb::test::LoadPattern::skewed);
        for (const eplb::Policy policy : eplb::engine_policies(eplb::Engine::batched))
            for (const auto& [name, e] : {std::pair<std::string, eplb::Execution>{"native", {eplb::Engine::native, c10::Device(c10::kCPU)}},
                                          std::pair<std::string, eplb::Execution>{batched_name, batched}}) {
                const double ms = median_ms(w, policy, e, repetitions);
                std::printf("plan/%s/%s/%lld %.3f %.1f\n", eplb::to_string(policy).c_str(), name.c_str(),
                            static_cast<long long>(layers), ms, static_cast<double>(layers) / ms * 1e3);
                std::fflush(stdout);
            }
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        std::string device = eplb::test::test_device().to_string();
        int random_count = 400, repetitions = 5;
        std::uint64_t seed = 0x5EED'BA7C;
        std::string time_layers;
        for (int i = 1; i < argc; ++i) {
            const std::string arg = argv[i];
            if (arg == "--device" && i + 1 < argc)
                device = argv[++i];
            else if (arg == "--random" && i + 1 < argc)
                random_count = std::stoi(argv[++i]);
            else if (arg == "--seed" && i + 1 < argc)
                seed = std::stoull(argv[++i]);
            else if (arg == "--time" && i + 1 < argc)
                time_layers = argv[++i];
            else if (arg == "--repetitions" && i + 1 < argc)
                repetitions = std::max(1, std::stoi(argv[++i]));
            else
                throw eplb::UsageError("unknown argument '" + arg +
                                       "'; usage: eplb_device_check [--device D] [--random N] [--seed S] [--time B1,B2,... [--repetitions K]]");
        }
        const eplb::RebalanceOptions options{eplb::DeviceSpec::parse(device), eplb::Engine::batched};
        const eplb::Execution batched = eplb::choose_execution(options, 0);
        return time_layers.empty() ? check(batched, random_count, seed) : time_plans(time_layers, batched, repetitions);
    } catch (const eplb::UsageError& e) {
        std::fprintf(stderr, "eplb_device_check: error: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "eplb_device_check: error: %s\n", e.what());
        return 1;
    }
}
