// The policy settings shared by `eplb plan` and `eplb sweep`: checks, the deployed plan, and the
// canonical JSON stored with each plan.
#include "io/sglang_expert_location.hpp"
#include "io/sha256.hpp"

#include <eplb/archive.hpp>
#include <eplb/errors.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

namespace eplb {
namespace {

bool plans_balanced(const std::vector<Policy>& policies) {
    return std::find(policies.begin(), policies.end(), Policy::balanced) != policies.end();
}

std::string number_text(double v) {
    std::ostringstream out;
    out << v;
    return out.str();
}

std::string file_sha256(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return io::sha256_hex(bytes);
}

// "ARCHIVE:PLAN_ID" -> {ARCHIVE, PLAN_ID} when ARCHIVE is an existing file and PLAN_ID is not
// empty; {} otherwise (an SGLang expert-location file).
std::pair<std::string, std::string> archive_and_plan(const std::string& text) {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string::npos || colon + 1 == text.size()) return {};
    std::string archive = text.substr(0, colon);
    if (!std::filesystem::is_regular_file(archive)) return {};
    return {std::move(archive), text.substr(colon + 1)};
}

}  // namespace

std::vector<std::string> PolicySettings::problems(const std::vector<Policy>& policies) const {
    std::vector<std::string> out;
    auto add = [&](const std::string& key, const std::string& value, const std::string& what) {
        out.push_back(key + " = '" + value + "': " + what);
    };
    try {
        const PlacementMode m = parse_placement_mode(mode);
        for (const Policy p : policies)
            if (m == PlacementMode::relaxed && p != Policy::balanced)
                add("mode", mode, "policy " + to_string(p) + " plans hierarchical or global; relaxed is the balanced policy's");
    } catch (const UsageError& e) {
        add("mode", mode, e.what());
    }
    if (history < 1) add("history", std::to_string(history), "must be at least 1 (windows planned together)");
    try {
        parse_history_aggregation(aggregation);
    } catch (const UsageError& e) {
        add("aggregation", aggregation, e.what());
    }
    if (!(ema_decay > 0.0 && ema_decay <= 1.0)) add("ema-decay", number_text(ema_decay), "must be in (0, 1]");
    if (!(max_balance_loss >= 0.0 && max_balance_loss < 1.0))
        add("max-balance-loss", number_text(max_balance_loss), "must be in [0, 1)");
    if (!(persistence >= 0.0 && persistence <= 1.0)) add("persistence", number_text(persistence), "must be in [0, 1]");
    if (!previous.empty()) {
        for (const Policy p : policies)
            if (p != Policy::balanced)
                add("previous", previous, "policy " + to_string(p) + " plans from scratch; planning against the deployed plan is the balanced policy's");
        if (archive_and_plan(previous).first.empty() && !std::filesystem::is_regular_file(previous))
            add("previous", previous, "is neither ARCHIVE:PLAN_ID (an existing archive) nor an SGLang expert-location file");
    }
    if (!plans_balanced(policies)) {
        if (aggregation != "mean") add("aggregation", aggregation, "only the balanced policy combines windows otherwise than by their sum");
        if (allow_duplicates) add("allow-duplicates", "true", "only the balanced policy forbids duplicates");
    }
    return out;
}

void PolicySettings::read_previous() {
    if (previous.empty()) {
        deployed.reset();
        return;
    }
    const auto [archive, plan] = archive_and_plan(previous);
    auto loaded = std::make_shared<DeployedPlan>();
    try {
        if (!archive.empty()) {
            const ArchiveReader reader(archive);
            const std::string id = reader.resolve(plan);
            loaded->phy2log = reader.read_plan(id).plan.phy2log;
            loaded->identity = "plan:" + id;
        } else {
            loaded->phy2log = io::read_sglang_expert_location(previous);
            loaded->identity = "sglang:sha256:" + file_sha256(previous);
        }
    } catch (const Error& e) {
        throw UsageError("previous = '" + previous + "': " + e.what());
    }
    deployed = std::move(loaded);
}

std::string PolicySettings::to_json(Policy policy) const {
    nlohmann::json j = nlohmann::json::object();
    if (mode != "hierarchical") j["mode"] = mode;
    if (history != 1) j["history"] = history;
    if (policy == Policy::balanced) {
        if (aggregation != "mean") j["aggregation"] = aggregation;
        if (aggregation == "ema") j["ema_decay"] = ema_decay;
        if (allow_duplicates) j["allow_duplicates"] = true;
        if (deployed) j["previous"] = deployed->identity;
        // It shapes the plan with a previous plan or a history of windows.
        if (deployed || history > 1) j["max_balance_loss"] = max_balance_loss;
        if (persistence != PlanOptions{}.persistence) j["persistence"] = persistence;
    }
    return j.dump();
}

}  // namespace eplb
