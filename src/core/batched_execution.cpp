// Engine and device choice, and the rebalance entry points that take them.
#include "batched_planner.hpp"
#include "log2phy_width.hpp"

#include <eplb/errors.hpp>
#include <eplb/rebalance.hpp>

#include <ATen/Context.h>
#include <ATen/ops/cat.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <algorithm>
#include <charconv>
#include <string>

namespace eplb {
namespace {

std::string device_name(const DeviceSpec& spec) { return "'" + spec.to_string() + "'"; }

// Throws DeviceError unless `spec` (kind cuda) names a usable CUDA device.
void require_cuda(const DeviceSpec& spec) {
    if (!cuda_supported())
        throw DeviceError("device " + device_name(spec) +
                          " requested, but eplb was built against a CPU-only LibTorch; use --device cpu or auto, "
                          "or rebuild against a CUDA LibTorch (see README)");
    const std::int64_t count = cuda_device_count();
    if (count == 0)
        throw DeviceError("device " + device_name(spec) +
                          " requested, but no CUDA device is visible (no GPU, no driver, or CUDA_VISIBLE_DEVICES "
                          "hides them); use --device cpu or auto");
    if (spec.index >= count)
        throw DeviceError("device " + device_name(spec) + " requested, but only " + std::to_string(count) +
                          " CUDA device" + (count == 1 ? " is" : "s are") + " visible (cuda:0.." +
                          std::to_string(count - 1) + ")");
}

c10::Device cuda_device(const DeviceSpec& spec) {
    return spec.index < 0 ? c10::Device(c10::kCUDA) : c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(spec.index));
}

Plan batched_plan(const at::Tensor& loads, const Topology& topology, Policy policy, const c10::Device& device) {
    const std::int64_t E = loads.size(1);
    const core::batched::LayerMaps maps = core::batched::plan_layers(loads.to(device), topology, policy);
    // Back on the CPU for the (small) rest: the width needs the counts there anyway.
    const at::Tensor phy2log = maps.phy2log.cpu(), rank = maps.rank.cpu(), logcnt = maps.logcnt.cpu();
    const std::int64_t X = core::log2phy_width(logcnt, topology, E, policy);
    return Plan{phy2log, core::batched::build_log2phy(phy2log, rank, E, X), logcnt};
}

// Rows [begin, begin + L) of `whole` as a plan of its own: log2phy keeps the width the policy
// gives these layers alone (entries past any count are -1, so narrowing loses nothing).
Plan plan_rows(const Plan& whole, std::int64_t begin, std::int64_t L, const Topology& topology, Policy policy) {
    const at::Tensor logcnt = whole.logcnt.narrow(0, begin, L).clone();
    const std::int64_t X = core::log2phy_width(logcnt, topology, whole.num_experts(), policy);
    return Plan{whole.phy2log.narrow(0, begin, L).clone(), whole.log2phy.narrow(0, begin, L).narrow(2, 0, X).clone(),
                logcnt};
}

}  // namespace

std::string to_string(Engine engine) {
    switch (engine) {
        case Engine::native: return "native";
        case Engine::batched: return "batched";
    }
    return "unknown";
}

const std::vector<Policy>& engine_policies(Engine engine) {
    static const std::vector<Policy> batched{Policy::deepseek, Policy::seed};
    return engine == Engine::batched ? batched : all_policies();
}

Engine parse_engine(std::string_view name) {
    for (const Engine e : {Engine::native, Engine::batched})
        if (name == to_string(e)) return e;
    throw UsageError("unknown engine '" + std::string(name) + "'; expected one of: native, batched");
}

DeviceSpec DeviceSpec::parse(std::string_view text) {
    if (text == "auto") return DeviceSpec{Kind::automatic, -1};
    if (text == "cpu") return DeviceSpec{Kind::cpu, -1};
    if (text == "cuda") return DeviceSpec{Kind::cuda, -1};
    constexpr std::string_view prefix = "cuda:";
    if (text.substr(0, prefix.size()) == prefix) {
        const std::string_view digits = text.substr(prefix.size());
        std::int64_t index = -1;
        const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
        if (!digits.empty() && ec == std::errc() && end == digits.data() + digits.size() && index >= 0 && index < 1024)
            return DeviceSpec{Kind::cuda, index};
    }
    throw UsageError("device '" + std::string(text) + "' is not one of auto, cpu, cuda, cuda:k (k = 0, 1, ...)");
}

std::string DeviceSpec::to_string() const {
    switch (kind) {
        case Kind::automatic: return "auto";
        case Kind::cpu: return "cpu";
        case Kind::cuda: return index < 0 ? "cuda" : "cuda:" + std::to_string(index);
    }
    return "unknown";
}

std::string Execution::to_string() const { return eplb::to_string(engine) + " on " + device.str(); }

bool cuda_supported() { return c10::impl::hasDeviceGuardImpl(c10::DeviceType::CUDA); }

std::int64_t cuda_device_count() { return cuda_supported() ? static_cast<std::int64_t>(at::getNumGPUs()) : 0; }

Execution choose_execution(const RebalanceOptions& options, std::int64_t num_layers) {
    const DeviceSpec& spec = options.device;
    switch (spec.kind) {
        case DeviceSpec::Kind::cpu:
            return Execution{options.engine.value_or(Engine::native), c10::Device(c10::kCPU)};
        case DeviceSpec::Kind::cuda:
            if (options.engine == Engine::native)
                throw UsageError("engine 'native' runs on the CPU only; device " + device_name(spec) +
                                 " needs engine 'batched'");
            require_cuda(spec);
            return Execution{Engine::batched, cuda_device(spec)};
        case DeviceSpec::Kind::automatic:
            if (options.engine != Engine::native && num_layers >= kAutoCudaMinLayers && cuda_device_count() > 0)
                return Execution{Engine::batched, c10::Device(c10::kCUDA)};
            return Execution{options.engine.value_or(Engine::native), c10::Device(c10::kCPU)};
    }
    throw UsageError("unknown device kind");
}

namespace {

bool has_batched_engine(Policy policy) {
    const std::vector<Policy>& supported = engine_policies(Engine::batched);
    return std::find(supported.begin(), supported.end(), policy) != supported.end();
}

[[noreturn]] void throw_no_batched_engine(Policy policy, const std::string& asked) {
    throw UsageError("policy '" + to_string(policy) + "' has no batched engine (" + asked +
                     "); it plans with engine 'native' on the CPU: use --engine native or auto and --device cpu or auto");
}

}  // namespace

void require_engine_for(const RebalanceOptions& options, Policy policy) {
    if (has_batched_engine(policy)) return;
    if (options.engine == Engine::batched) throw_no_batched_engine(policy, "engine 'batched' was asked for");
    if (options.device.kind == DeviceSpec::Kind::cuda)
        throw_no_batched_engine(policy, "device '" + options.device.to_string() + "' was asked for, which plans batched");
}

Execution choose_execution(const RebalanceOptions& options, std::int64_t num_layers, Policy policy) {
    require_engine_for(options, policy);
    if (!has_batched_engine(policy)) return Execution{Engine::native, c10::Device(c10::kCPU)};
    return choose_execution(options, num_layers);
}

Plan rebalance(const at::Tensor& weight, const Topology& topology, Policy policy, const Execution& execution) {
    if (execution.engine == Engine::native) {
        if (!execution.device.is_cpu())
            throw UsageError("engine 'native' runs on the CPU only, not on " + execution.device.str());
        return rebalance(weight, topology, policy);
    }
    if (!has_batched_engine(policy)) throw_no_batched_engine(policy, "engine 'batched' on " + execution.device.str());
    const at::Tensor loads = checked_loads(weight);
    topology.validate(loads.size(1));
    return batched_plan(loads, topology, policy, execution.device);
}

Plan rebalance(const at::Tensor& weight, const Topology& topology, Policy policy, const RebalanceOptions& options) {
    const std::int64_t layers = weight.defined() && weight.dim() >= 1 ? weight.size(0) : 0;
    return rebalance(weight, topology, policy, choose_execution(options, layers));
}

std::vector<Plan> rebalance_batch(const std::vector<at::Tensor>& weights, const Topology& topology, Policy policy,
                                  const Execution& execution) {
    if (weights.empty()) return {};
    std::vector<at::Tensor> loads;
    for (std::size_t i = 0; i < weights.size(); ++i) {
        const std::string what = "weights[" + std::to_string(i) + "]";
        loads.push_back(checked_loads(weights[i], what));
        if (loads[i].size(1) != loads[0].size(1))
            throw LoadError(what + " has " + std::to_string(loads[i].size(1)) + " experts; weights[0] has " +
                            std::to_string(loads[0].size(1)));
    }
    const Plan whole = rebalance(at::cat(loads, 0), topology, policy, execution);
    std::vector<Plan> plans;
    std::int64_t begin = 0;
    for (const at::Tensor& part : loads) {
        plans.push_back(plan_rows(whole, begin, part.size(0), topology, policy));
        begin += part.size(0);
    }
    return plans;
}

}  // namespace eplb
