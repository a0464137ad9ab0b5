// Stand-alone equality check of the batched engine against the native one, for machines without
// GoogleTest (tests/device/gpu_check.sh falls back to it). Same cases as tests/unit/batched_test.cpp.
//
//   eplb_device_check [--device cpu|cuda|cuda:k] [--random N]
//
// Prints one line per policy and the first differences; exit code 0 when every plan is equal,
// 1 when one differs, 2 on a usage error.
#include "support/engine_cases.hpp"

#include <eplb/errors.hpp>
#include <eplb/rebalance.hpp>

#include <cstdio>
#include <exception>
#include <string>

namespace {

int check(const eplb::Execution& batched, int random_count) {
    const std::vector<eplb::test::EngineCase> cases = eplb::test::engine_cases(random_count);
    int passed = 0, failed = 0;
    for (const eplb::Policy policy : eplb::all_policies()) {
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

}  // namespace

int main(int argc, char** argv) {
    try {
        std::string device = eplb::test::test_device().to_string();
        int random_count = 400;
        for (int i = 1; i < argc; ++i) {
            const std::string arg = argv[i];
            if (arg == "--device" && i + 1 < argc)
                device = argv[++i];
            else if (arg == "--random" && i + 1 < argc)
                random_count = std::stoi(argv[++i]);
            else
                throw eplb::UsageError("unknown argument '" + arg + "'; usage: eplb_device_check [--device D] [--random N]");
        }
        const eplb::RebalanceOptions options{eplb::DeviceSpec::parse(device), eplb::Engine::batched};
        return check(eplb::choose_execution(options, 0), random_count);
    } catch (const eplb::UsageError& e) {
        std::fprintf(stderr, "eplb_device_check: error: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "eplb_device_check: error: %s\n", e.what());
        return 1;
    }
}
