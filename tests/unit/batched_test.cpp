// The batched engine gives exactly the native engine's plans, on the CPU and (with
// EPLB_TEST_DEVICE=cuda) on a GPU; engine and device choice; batch planning.
#include "support/engine_cases.hpp"

#include <eplb/errors.hpp>
#include <eplb/rebalance.hpp>

#include <ATen/Parallel.h>
#include <ATen/ops/ones.h>
#include <gtest/gtest.h>

namespace eplb {
namespace {

class BatchedEngine : public ::testing::TestWithParam<Policy> {};

TEST_P(BatchedEngine, GivesTheNativePlanOnEveryCase) {
    const Execution batched = test::batched_execution();
    for (const test::EngineCase& c : test::engine_cases(/*random_count=*/400)) {
        const Plan native = rebalance(c.weight, c.topology, GetParam());
        const Plan plan = rebalance(c.weight, c.topology, GetParam(), batched);
        EXPECT_EQ(test::plan_difference(native, plan), "") << c.label << " on " << batched.to_string();
    }
}

TEST_P(BatchedEngine, GivesTheNativePlanOnADeepSeekV3Batch) {
    std::mt19937_64 rng(11);
    const Topology t{288, 8, 4, 32};
    for (const test::LoadPattern p : test::all_patterns()) {
        const at::Tensor w = test::random_loads(rng, 232, 256, p);
        EXPECT_EQ(test::plan_difference(rebalance(w, t, GetParam()), rebalance(w, t, GetParam(), test::batched_execution())),
                  "")
            << "pattern " << static_cast<int>(p);
    }
}

TEST_P(BatchedEngine, ThreadCountDoesNotChangeThePlan) {
    std::mt19937_64 rng(5);
    const Topology t{288, 8, 4, 32};
    const at::Tensor w = test::random_loads(rng, 64, 256, test::LoadPattern::skewed);
    const Execution cpu{Engine::batched, c10::Device(c10::kCPU)};
    const int threads = at::get_num_threads();
    at::set_num_threads(1);
    const Plan one = rebalance(w, t, GetParam(), cpu);
    at::set_num_threads(4);
    const Plan four = rebalance(w, t, GetParam(), cpu);
    at::set_num_threads(threads);
    EXPECT_EQ(test::plan_difference(one, four), "");
}

TEST_P(BatchedEngine, BatchOfWindowsEqualsPlansOneByOne) {
    std::mt19937_64 rng(9);
    const Topology t{96, 8, 4, 32};
    // Parts of different sizes and different replica spreads, so that deepseek's log2phy widths
    // differ between them.
    const std::vector<at::Tensor> windows{test::random_loads(rng, 3, 64, test::LoadPattern::one_hot),
                                          test::random_loads(rng, 1, 64, test::LoadPattern::uniform),
                                          test::random_loads(rng, 5, 64, test::LoadPattern::all_zero_layer)};
    for (const Execution& e : {Execution{Engine::native, c10::Device(c10::kCPU)}, test::batched_execution()}) {
        const std::vector<Plan> plans = rebalance_batch(windows, t, GetParam(), e);
        ASSERT_EQ(plans.size(), windows.size());
        for (std::size_t i = 0; i < windows.size(); ++i)
            EXPECT_EQ(test::plan_difference(rebalance(windows[i], t, GetParam()), plans[i]), "")
                << "window " << i << " with " << e.to_string();
    }
    EXPECT_TRUE(rebalance_batch({}, t, GetParam(), test::batched_execution()).empty());
}

TEST_P(BatchedEngine, RejectsBadLoadsLikeTheNativeEngine) {
    const Topology t{24, 4, 2, 8};
    at::Tensor w = at::ones({2, 16}, at::kFloat);
    w[1][5] = -1.0f;
    const Execution batched = test::batched_execution();
    try {
        rebalance(w, t, GetParam(), batched);
        ADD_FAILURE() << "no exception";
    } catch (const LoadError& e) {
        EXPECT_EQ(std::string(e.what()), "weight[1][5] = -1.000000: loads must be finite and non-negative");
    }
    EXPECT_THROW(rebalance(at::ones({2, 16}, at::kFloat), Topology{12, 4, 2, 4}, GetParam(), batched), TopologyError);
    EXPECT_THROW(rebalance_batch({at::ones({2, 16}, at::kFloat), at::ones({2, 8}, at::kFloat)}, t, GetParam(), batched),
                 LoadError);
}

INSTANTIATE_TEST_SUITE_P(Policies, BatchedEngine, ::testing::ValuesIn(engine_policies(Engine::batched)),
                         [](const ::testing::TestParamInfo<Policy>& info) { return to_string(info.param); });

TEST(DeviceSpec, ParsesTheFourForms) {
    EXPECT_EQ(DeviceSpec::parse("auto").kind, DeviceSpec::Kind::automatic);
    EXPECT_EQ(DeviceSpec::parse("cpu").kind, DeviceSpec::Kind::cpu);
    EXPECT_EQ(DeviceSpec::parse("cuda").kind, DeviceSpec::Kind::cuda);
    EXPECT_EQ(DeviceSpec::parse("cuda").index, -1);
    EXPECT_EQ(DeviceSpec::parse("cuda:3").index, 3);
    for (const char* text : {"auto", "cpu", "cuda", "cuda:0", "cuda:12"})
        EXPECT_EQ(DeviceSpec::parse(text).to_string(), text);
}

TEST(DeviceSpec, RejectsAnythingElseWithAUsageError) {
    for (const char* text : {"", "gpu", "CPU", "cuda:", "cuda:-1", "cuda:x", "cuda:1x", "cuda0", "cuda:99999", "auto:0"}) {
        try {
            DeviceSpec::parse(text);
            ADD_FAILURE() << "accepted '" << text << "'";
        } catch (const UsageError& e) {
            EXPECT_EQ(std::string(e.what()),
                      "device '" + std::string(text) + "' is not one of auto, cpu, cuda, cuda:k (k = 0, 1, ...)");
        }
    }
}

TEST(Engine, ParsesNamesAndRejectsOthers) {
    EXPECT_EQ(parse_engine("native"), Engine::native);
    EXPECT_EQ(parse_engine("batched"), Engine::batched);
    EXPECT_THROW(parse_engine("gpu"), UsageError);
}

TEST(ChooseExecution, CpuIsNativeUnlessBatchedIsAsked) {
    const Execution native = choose_execution({DeviceSpec::parse("cpu"), std::nullopt}, 1'000'000);
    EXPECT_EQ(native.engine, Engine::native);
    EXPECT_TRUE(native.device.is_cpu());
    const Execution batched = choose_execution({DeviceSpec::parse("cpu"), Engine::batched}, 10);
    EXPECT_EQ(batched.to_string(), "batched on cpu");
}

TEST(ChooseExecution, AutoUsesCudaOnlyForLargeBatchesWhenPresent) {
    const Execution small = choose_execution({}, kAutoCudaMinLayers - 1);
    EXPECT_EQ(small.to_string(), "native on cpu");
    const Execution large = choose_execution({}, kAutoCudaMinLayers);
    EXPECT_EQ(large.to_string(), cuda_device_count() > 0 ? "batched on cuda" : "native on cpu");
    EXPECT_EQ(choose_execution({DeviceSpec{}, Engine::native}, kAutoCudaMinLayers).to_string(), "native on cpu");
}

TEST(ChooseExecution, NativeEngineOnCudaIsAUsageError) {
    EXPECT_THROW(choose_execution({DeviceSpec::parse("cuda"), Engine::native}, 1), UsageError);
    EXPECT_THROW(rebalance(at::ones({1, 8}, at::kFloat), Topology{8, 1, 1, 8}, Policy::deepseek,
                           Execution{Engine::native, c10::Device(c10::kCUDA, 0)}),
                 UsageError);
}

TEST(ChooseExecution, MissingCudaIsADeviceErrorThatSaysWhy) {
    const std::int64_t count = cuda_device_count();
    const std::string beyond = "cuda:" + std::to_string(count);
    try {
        choose_execution({DeviceSpec::parse(beyond), std::nullopt}, 1);
        ADD_FAILURE() << "no exception for " << beyond;
    } catch (const DeviceError& e) {
        const std::string m = e.what();
        EXPECT_EQ(m.find('\n'), std::string::npos);
        EXPECT_NE(m.find("'" + beyond + "'"), std::string::npos) << m;
        const char* why = !cuda_supported() ? "CPU-only LibTorch" : count == 0 ? "no CUDA device is visible" : "visible";
        EXPECT_NE(m.find(why), std::string::npos) << m;
    }
    if (count == 0) {
        EXPECT_THROW(choose_execution({DeviceSpec::parse("cuda"), std::nullopt}, 1), DeviceError);
    }
}

}  // namespace
}  // namespace eplb
