// eplb: expert-parallel load balancing plans for Mixture-of-Experts serving fleets.
#include "cli/commands.hpp"

#include <eplb/errors.hpp>

#include <boost/program_options/errors.hpp>
#include <c10/util/Exception.h>

#include <malloc.h>

#include <exception>
#include <iostream>
#include <string>
#include <vector>

namespace {

constexpr const char* kUsage = R"(usage: eplb <command> [options]

Plans where the experts of a Mixture-of-Experts model go on a GPU cluster, from recorded
per-expert token loads, so that the busiest GPU carries as little as possible.

commands:
  plan      plan load snapshots for topologies and policies; print the metrics or
            write them all to an HDF5 plan archive (--out)
  inspect   summarise an archive, or show one plan (--plan ID [--layers])
  verify    re-check every plan of an archive and recompute its metrics
  export    write a plan as SGLang's or TensorRT-LLM's deployment file
  merge     merge several archives into one
  sweep     plan many inputs x topologies x policies on the MPI ranks of a job (mpirun,
            srun) into one archive, checkpointed and resumable; driven by a config file

options:
  -h, --help     show this help (or `eplb <command> --help` for a command's options)
  -V, --version  show the version

exit codes: 0 success, 1 failure, 2 usage error, 3 some inputs failed (the rest completed)
)";

// Writing a plan allocates and frees filter buffers of several MB per dataset (a seed plan's
// log2phy is [L, E, R - E + 1]); glibc would map each afresh and give it back, and the page
// faults took a third of the time of writing an archive. Kept in the heap, they are reused.
void keep_large_buffers_in_the_heap() {
#ifdef __GLIBC__
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
}

struct Command {
    const char* name;
    int (*run)(const std::vector<std::string>&);
};

const Command kCommands[] = {
    {"plan", eplb::cli::run_plan},
    {"inspect", eplb::cli::run_inspect},
    {"verify", eplb::cli::run_verify},
    {"export", eplb::cli::run_export},
    {"merge", eplb::cli::run_merge},
    {"sweep", eplb::cli::run_sweep_command},
};

int dispatch(int argc, char** argv) {
    if (argc < 2) {
        std::cerr << kUsage;
        return eplb::cli::kUsage;
    }
    const std::string first = argv[1];
    if (first == "-h" || first == "--help" || first == "help") {
        std::cout << kUsage;
        return eplb::cli::kSuccess;
    }
    if (first == "-V" || first == "--version") {
        std::cout << "eplb " << EPLB_VERSION << "\n";
        return eplb::cli::kSuccess;
    }
    const std::vector<std::string> rest(argv + 2, argv + argc);
    for (const Command& c : kCommands)
        if (first == c.name) return c.run(rest);
    throw eplb::UsageError("unknown command '" + first + "' (try eplb --help)");
}

}  // namespace

int main(int argc, char** argv) {
    keep_large_buffers_in_the_heap();
    // Every failure ends as one line on stderr and an exit code that tells the truth.
    try {
        return dispatch(argc, argv);
    } catch (const eplb::UsageError& e) {
        std::cerr << "eplb: error: " << e.what() << "\n";
        return eplb::cli::kUsage;
    } catch (const boost::program_options::error& e) {
        std::cerr << "eplb: error: " << e.what() << "\n";
        return eplb::cli::kUsage;
    } catch (const c10::Error& e) {
        std::cerr << "eplb: error: " << e.what_without_backtrace() << "\n";
        return eplb::cli::kFailure;
    } catch (const std::exception& e) {
        std::cerr << "eplb: error: " << e.what() << "\n";
        return eplb::cli::kFailure;
    } catch (...) {
        std::cerr << "eplb: error: unknown failure\n";
        return eplb::cli::kFailure;
    }
}
