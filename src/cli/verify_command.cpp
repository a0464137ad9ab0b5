// eplb verify: re-check every plan of an archive and recompute its metrics.
#include "cli/commands.hpp"
#include "cli/options.hpp"

#include <eplb/archive.hpp>

#include <cstdio>

namespace eplb::cli {

int run_verify(const std::vector<std::string>& args) {
    std::string path;
    po::options_description options("options");
    options.add_options()
        ("help,h", "show this help")
        ("archive", po::value(&path)->required(), "the plan archive (positional)");
    if (!parse_arguments(args,
                         "usage: eplb verify ARCHIVE\n\n"
                         "Re-checks every plan's invariants, recomputes every stored metric from the stored maps\n"
                         "and loads, and checks the index; exits 1 on any mismatch.",
                         options, "archive", 1))
        return kSuccess;
    const VerifyReport report = verify_archive(path);
    for (const std::string& problem : report.problems) std::fprintf(stderr, "eplb: verify: %s: %s\n", path.c_str(), problem.c_str());
    if (!report.ok()) {
        std::printf("%s: %zu problems in %lld plans\n", path.c_str(), report.problems.size(),
                    static_cast<long long>(report.plans_checked));
        return kFailure;
    }
    std::printf("%s: %lld plans verified: invariants hold, every stored metric matches its recomputation\n", path.c_str(),
                static_cast<long long>(report.plans_checked));
    return kSuccess;
}

}  // namespace eplb::cli
