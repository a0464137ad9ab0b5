// eplb merge: several archives into one.
#include "cli/commands.hpp"
#include "cli/options.hpp"

#include <eplb/archive.hpp>

#include <cstdio>

namespace eplb::cli {

int run_merge(const std::vector<std::string>& args) {
    std::vector<std::string> inputs;
    std::string out;
    po::options_description options("options");
    options.add_options()
        ("help,h", "show this help")
        ("archive", po::value(&inputs)->required(), "archives to merge (positional)")
        ("output,o", po::value(&out)->required(), "the merged archive (written whole, then renamed into place)");
    if (!parse_arguments(args,
                         "usage: eplb merge ARCHIVE... -o OUT\n\n"
                         "Writes every plan and failure of the archives into OUT. Plans are identified by what\n"
                         "they were made from, so a plan in several archives is kept once.",
                         options, "archive", -1))
        return kSuccess;
    merge_archives(inputs, out);
    const ArchiveReader merged(out);
    std::printf("wrote %s: %zu plans, %zu failures from %zu archives\n", out.c_str(), merged.plans().size(),
                merged.failures().size(), inputs.size());
    return kSuccess;
}

}  // namespace eplb::cli
