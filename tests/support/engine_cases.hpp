// Inputs on which every engine and device must give the native engine's plan, and the comparison.
// Shared by the GoogleTest suite (tests/unit/batched_test.cpp) and the stand-alone device check
// (tests/device/device_check.cpp) used where GoogleTest is missing.
#pragma once

#include "support/random_cases.hpp"

#include <eplb/plan.hpp>
#include <eplb/rebalance.hpp>

#include <ATen/ops/equal.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>

#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

namespace eplb::test {

struct EngineCase {
    std::string label;
    Topology topology;
    at::Tensor weight;  // [L, E] float32
};

/// The device the batched engine is tested on: $EPLB_TEST_DEVICE (auto, cpu, cuda, cuda:k), cpu
/// when unset. tests/device/gpu_check.sh sets it to cuda.
inline DeviceSpec test_device() {
    const char* text = std::getenv("EPLB_TEST_DEVICE");
    return DeviceSpec::parse(text && *text ? text : "cpu");
}

/// The batched engine on test_device().
inline Execution batched_execution() {
    return choose_execution(RebalanceOptions{test_device(), Engine::batched}, /*num_layers=*/0);
}

/// Empty when the plans are equal (shapes, dtypes and every entry), else where they first differ.
inline std::string plan_difference(const Plan& expected, const Plan& actual) {
    const std::pair<const char*, std::pair<at::Tensor, at::Tensor>> maps[] = {
        {"logcnt", {expected.logcnt, actual.logcnt}},
        {"phy2log", {expected.phy2log, actual.phy2log}},
        {"log2phy", {expected.log2phy, actual.log2phy}}};
    for (const auto& [name, pair] : maps) {
        const auto& [a, b] = pair;
        if (!b.device().is_cpu()) return std::string(name) + " is not on the CPU";
        if (a.sizes() != b.sizes() || a.scalar_type() != b.scalar_type())
            return std::string(name) + " has shape " + c10::str(b.sizes()) + " " + c10::toString(b.scalar_type()) +
                   ", expected " + c10::str(a.sizes()) + " " + c10::toString(a.scalar_type());
        if (at::equal(a, b)) continue;
        const at::Tensor diff = a.ne(b).flatten().nonzero();
        const std::int64_t flat = diff[0][0].item<std::int64_t>();
        return std::string(name) + " differs at flat index " + std::to_string(flat) + " (" +
               std::to_string(diff.size(0)) + " entries differ): expected " +
               std::to_string(a.flatten()[flat].item<std::int64_t>()) + ", got " +
               std::to_string(b.flatten()[flat].item<std::int64_t>());
    }
    return {};
}

namespace detail {

inline at::Tensor tensor_of(std::vector<float> values, std::int64_t layers, std::int64_t experts) {
    return at::from_blob(values.data(), {layers, experts}, at::TensorOptions().dtype(at::kFloat)).clone();
}

// The configurations of the golden vectors (tests/data/*.h5): L, E and the topology.
struct Shape {
    std::int64_t layers, experts;
    Topology topology;
};

inline const std::vector<Shape>& golden_shapes() {
    static const std::vector<Shape> shapes{
        {1, 16, {24, 4, 2, 4}},     {4, 256, {288, 8, 4, 32}},  {3, 32, {48, 4, 3, 6}},     {8, 64, {80, 8, 4, 16}},
        {3, 16, {24, 4, 2, 8}},     {1, 16, {48, 4, 2, 8}},     {1, 256, {256, 8, 4, 32}},  {1, 8, {12, 4, 2, 4}},
        {1, 8, {16, 2, 2, 16}},     {1, 8, {32, 2, 2, 4}},      {1, 8, {8, 1, 1, 8}},       {1, 8, {8, 2, 1, 4}},
        {3, 16, {16, 4, 4, 8}},     {3, 16, {20, 4, 2, 4}},     {3, 16, {24, 2, 4, 8}},     {3, 16, {32, 4, 2, 32}},
        {3, 256, {288, 1, 1, 32}},  {3, 256, {320, 8, 8, 64}},  {3, 64, {64, 1, 1, 64}},    {3, 8, {10, 1, 1, 5}},
        {3, 8, {12, 4, 2, 6}},      {58, 256, {288, 8, 4, 32}}, {8, 16, {18, 1, 1, 6}},     {8, 256, {256, 1, 1, 256}},
        {8, 256, {384, 16, 4, 64}}, {8, 256, {512, 8, 2, 16}},  {8, 64, {128, 8, 8, 128}},  {8, 64, {64, 8, 4, 16}},
        {8, 64, {72, 4, 3, 9}},     {8, 64, {72, 8, 2, 8}},     {8, 64, {80, 1, 1, 16}},    {8, 64, {96, 4, 4, 32}},
        {8, 8, {16, 8, 8, 8}},      {2, 12, {16, 4, 2, 8}},     {2, 12, {16, 3, 2, 8}},
    };
    return shapes;
}

}  // namespace detail

/// Every case: the golden configurations with several load patterns, DeepSeek's README example
/// (hierarchical and global fallback), hand-made edge cases (all equal, all zero, float32 pack
/// loads that overflow to infinity, -0 and subnormal loads), and `random_count` random
/// topologies and loads (about a third of them global fallbacks).
inline std::vector<EngineCase> engine_cases(int random_count, std::uint64_t seed = 0x5EED'BA7C) {
    std::vector<EngineCase> out;
    std::mt19937_64 rng(seed);
    for (const detail::Shape& s : detail::golden_shapes())
        for (const LoadPattern p : {LoadPattern::uniform, LoadPattern::small_integers, LoadPattern::skewed})
            out.push_back({"shape " + s.topology.to_string() + " L=" + std::to_string(s.layers) + " E=" +
                               std::to_string(s.experts) + " pattern " + std::to_string(static_cast<int>(p)),
                           s.topology, random_loads(rng, s.layers, s.experts, p)});

    const at::Tensor readme = detail::tensor_of({90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86,
                                                 20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27}, 2, 12);
    out.push_back({"readme", {16, 4, 2, 8}, readme});
    out.push_back({"readme global fallback", {16, 3, 2, 8}, readme});

    const Topology dsv3{288, 8, 4, 32}, global{288, 2, 4, 32};
    for (const Topology& t : {dsv3, global}) {
        const std::string on = " on " + t.to_string();
        out.push_back({"all ones" + on, t, at::full({3, 256}, 1.0f, at::TensorOptions().dtype(at::kFloat))});
        out.push_back({"all zero" + on, t, at::zeros({2, 256}, at::TensorOptions().dtype(at::kFloat))});
        // Sums of such loads overflow float32: pack loads become +inf and compare equal.
        out.push_back({"near FLT_MAX" + on, t, random_loads(rng, 3, 256, LoadPattern::uniform).mul(3.0e35)});
        at::Tensor tiny = random_loads(rng, 3, 256, LoadPattern::small_integers).mul(1.0e-44);  // subnormal
        tiny.select(1, 7).fill_(-0.0f);
        out.push_back({"subnormal and -0" + on, t, tiny});
    }

    for (int i = 0; i < random_count; ++i) {
        const auto [t, experts] = random_topology(rng);
        const auto pattern = all_patterns()[static_cast<std::size_t>(i) % all_patterns().size()];
        out.push_back({"random " + std::to_string(i) + " " + t.to_string() + " E=" + std::to_string(experts), t,
                       random_loads(rng, 1 + i % 5, experts, pattern)});
    }
    return out;
}

}  // namespace eplb::test
