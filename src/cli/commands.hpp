// The `eplb` subcommands. Each takes the arguments after its name and returns the exit code.
#pragma once

#include <string>
#include <vector>

namespace eplb::cli {

/// Exit codes, documented in the README.
enum ExitCode : int {
    kSuccess = 0,        ///< everything done
    kFailure = 1,        ///< nothing usable was produced (bad input, I/O error, ...)
    kUsage = 2,          ///< the command line or configuration is wrong
    kPartialFailure = 3, ///< some inputs failed; the others were planned and written
};

int run_plan(const std::vector<std::string>& args);
int run_inspect(const std::vector<std::string>& args);
int run_verify(const std::vector<std::string>& args);
int run_export(const std::vector<std::string>& args);
int run_merge(const std::vector<std::string>& args);
int run_sweep_command(const std::vector<std::string>& args);

}  // namespace eplb::cli
