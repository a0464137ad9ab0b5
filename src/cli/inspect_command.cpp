// eplb inspect: the summary of an archive, or one plan in detail.
#include "cli/commands.hpp"
#include "cli/options.hpp"
#include "cli/report.hpp"

#include <eplb/archive.hpp>

#include <cstdio>
#include <iostream>

namespace eplb::cli {
namespace {

const char* const kUsageText =
    "usage: eplb inspect ARCHIVE [--plan ID] [--layers] [--json]\n"
    "\n"
    "Prints one line per plan of an archive (policy, topology, in-sample and next-window\n"
    "balancedness, bound ratio, gap, duplicates, moved slots) and the inputs that failed; with\n"
    "--plan, that plan in detail (ID or a unique prefix of it).";

struct InspectArgs {
    std::string archive;
    std::string plan;
    bool layers = false;
    bool json = false;
};

}  // namespace

int run_inspect(const std::vector<std::string>& args) {
    InspectArgs a;
    po::options_description options("options");
    options.add_options()
        ("help,h", "show this help")
        ("archive", po::value(&a.archive)->required(), "the plan archive (positional)")
        ("plan,p", po::value(&a.plan), "show this plan: its ID or a unique prefix of it")
        ("layers,l", po::bool_switch(&a.layers), "add the per-layer metrics")
        ("json", po::bool_switch(&a.json), "print machine-readable JSON");
    if (!parse_arguments(args, kUsageText, options, "archive", 1)) return kSuccess;

    const ArchiveReader archive(a.archive);
    if (!a.plan.empty()) {
        const PlanRecord record = archive.read_plan(archive.resolve(a.plan));
        if (a.json)
            std::cout << plan_json(record, a.layers).dump(2) << "\n";
        else
            print_plan(stdout, record, a.layers);
        return kSuccess;
    }
    const std::vector<PlanSummary> plans = archive.plans();
    if (a.json) {
        nlohmann::json out = {{"archive", a.archive}, {"plans", summaries_json(plans)}, {"failures", nlohmann::json::array()}};
        for (const FailureRecord& f : archive.failures())
            out["failures"].push_back({{"input", f.input}, {"topology", f.topology}, {"policy", f.policy}, {"message", f.message}});
        if (a.layers)
            for (std::size_t i = 0; i < plans.size(); ++i)
                out["plans"][i]["layers"] = plan_json(archive.read_plan(plans[i].id), true)["layers"];
        std::cout << out.dump(2) << "\n";
        return kSuccess;
    }
    std::printf("%s: %zu plans, %zu failures\n\n", a.archive.c_str(), plans.size(), archive.failures().size());
    print_summaries(stdout, plans);
    print_failures(stdout, archive.failures());
    if (a.layers)
        for (const PlanSummary& p : plans) {
            std::printf("\n");
            print_plan(stdout, archive.read_plan(p.id), /*layers=*/true);
        }
    return kSuccess;
}

}  // namespace eplb::cli
