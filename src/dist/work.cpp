#include "dist/work.hpp"

#include <eplb/archive.hpp>

#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <numeric>

namespace eplb::dist {
namespace {

std::string message_of(const std::exception& e) {
    if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
    return e.what();
}

std::int64_t windows_of(std::int64_t steps, const Windowing& w) {
    switch (w.kind) {
        case Windowing::Kind::sum: return 1;
        case Windowing::Kind::each: return steps;
        case Windowing::Kind::consecutive: return (steps + w.steps - 1) / w.steps;
    }
    return 1;
}

// The message `eplb plan` gives for an input that does not fit a topology.
std::string does_not_fit(const std::string& path, const InputInfo& info, const Topology& t, Policy policy,
                         const std::string& why) {
    return path + ": logical_count [" + std::to_string(info.num_layers) + " MoE layers x " +
           std::to_string(info.num_experts) + " experts] cannot be planned for topology " + t.to_string() +
           " with policy " + to_string(policy) + ": " + why;
}

}  // namespace

std::string InputInfo::to_json() const {
    return nlohmann::json{{"error", error},           {"sha256", sha256},
                          {"steps", num_steps},       {"layers", num_layers},
                          {"experts", num_experts},   {"windows", num_windows}}
        .dump();
}

InputInfo InputInfo::from_json(const std::string& text) {
    const nlohmann::json j = nlohmann::json::parse(text);
    return InputInfo{j.at("error"), j.at("sha256"), j.at("steps"), j.at("layers"), j.at("experts"), j.at("windows")};
}

InputInfo describe_input(const std::string& path, const ReadOptions& options) {
    InputInfo info;
    try {
        const Snapshot s = read_snapshot(path, options);
        info.sha256 = s.sha256;
        info.num_steps = s.num_steps();
        info.num_layers = s.num_layers();
        info.num_experts = s.num_experts();
        info.num_windows = windows_of(s.num_steps(), options.windowing);
    } catch (const std::exception& e) {
        info.error = message_of(e);
    }
    return info;
}

std::int64_t estimated_cost(std::int64_t layers, std::int64_t experts, const Topology& topology,
                            std::int64_t input_values_per_item) {
    // Reading a value costs about a quarter of a unit here (measured on DeepSeek-shaped inputs).
    return layers * (topology.num_replicas + 2 * experts) + input_values_per_item / 4;
}

WorkList make_work_list(const SweepSetup& setup, const std::vector<InputInfo>& inputs,
                        const std::set<std::string>& finished) {
    WorkList list;
    const std::string read = setup.read_options.to_string();
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        const InputInfo& info = inputs[i];
        const auto input = static_cast<std::int64_t>(i);
        if (!info.ok()) {
            list.failures.push_back(KnownFailure{input, -1, -1, info.error});
            continue;
        }
        const std::int64_t items_of_input =
            info.num_windows * static_cast<std::int64_t>(setup.topologies.size() * setup.policies.size());
        const std::int64_t values_per_item = info.num_steps * info.num_layers * info.num_experts / std::max<std::int64_t>(1, items_of_input);
        for (std::size_t t = 0; t < setup.topologies.size(); ++t) {
            const Topology& topology = setup.topologies[t];
            std::string why;
            try {
                topology.validate(info.num_experts);
            } catch (const std::exception& e) {
                why = message_of(e);
            }
            for (std::size_t p = 0; p < setup.policies.size(); ++p) {
                const Policy policy = setup.policies[p];
                if (!why.empty()) {
                    list.failures.push_back(KnownFailure{input, static_cast<std::int64_t>(t), static_cast<std::int64_t>(p),
                                                         does_not_fit(setup.files[i].path, info, topology, policy, why)});
                    continue;
                }
                const PlanRequest request = plan_request(topology, policy, setup.execution, setup.policy_settings);
                for (std::int64_t w = 0; w < info.num_windows; ++w) {
                    ++list.total;
                    WorkItem item{input, static_cast<std::int64_t>(t), static_cast<std::int64_t>(p), w, info.num_layers,
                                  estimated_cost(info.num_layers, info.num_experts, topology, values_per_item),
                                  PlanIdentity{info.sha256, read, w, topology, to_string(policy), request.policy_options}.id()};
                    if (!finished.count(item.id)) list.todo.push_back(std::move(item));
                }
            }
        }
    }
    return list;
}

std::vector<std::size_t> contiguous_ranges(const std::vector<std::int64_t>& costs, int parts) {
    const std::size_t n = costs.size();
    std::vector<std::int64_t> prefix(n + 1, 0);
    std::partial_sum(costs.begin(), costs.end(), prefix.begin() + 1);
    const std::int64_t total = prefix[n];
    std::vector<std::size_t> bounds(static_cast<std::size_t>(parts) + 1, 0);
    bounds.back() = n;
    for (int r = 1; r < parts; ++r) {
        const std::int64_t ideal = total / parts * r + total % parts * r / parts;
        // The first boundary at or past the ideal share, or the one before it if that is closer.
        std::size_t b = static_cast<std::size_t>(std::lower_bound(prefix.begin(), prefix.end(), ideal) - prefix.begin());
        if (b > 0 && ideal - prefix[b - 1] < prefix[b] - ideal) --b;
        // Keep the ranges in order and, when there are enough items, none empty.
        const std::size_t lowest = bounds[static_cast<std::size_t>(r) - 1] + (n >= static_cast<std::size_t>(parts) ? 1 : 0);
        const std::size_t highest = n >= static_cast<std::size_t>(parts) ? n - static_cast<std::size_t>(parts - r) : n;
        bounds[static_cast<std::size_t>(r)] = std::clamp(b, std::min(lowest, highest), highest);
    }
    return bounds;
}

std::vector<int> ranks_per_item(const std::vector<WorkItem>& items, int ranks) {
    std::vector<int> count(items.size(), 1);
    for (int left = ranks - static_cast<int>(items.size()); left > 0; --left) {
        // D'Hondt: the item with the most cost per rank (lower index on ties) that has a layer to spare.
        std::size_t best = items.size();
        for (std::size_t i = 0; i < items.size(); ++i) {
            if (count[i] >= items[i].num_layers) continue;
            if (best == items.size() || items[i].cost * count[best] > items[best].cost * count[i]) best = i;
        }
        if (best == items.size()) break;
        ++count[best];
    }
    return count;
}

LayerSlice layer_slice(std::int64_t layers, int members, int member) {
    const std::int64_t first = layers * member / members, end = layers * (member + 1) / members;
    return LayerSlice{first, end - first};
}

}  // namespace eplb::dist
