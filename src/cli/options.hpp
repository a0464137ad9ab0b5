// Command-line helpers shared by the subcommands.
#pragma once

#include <eplb/archive.hpp>

#include <boost/program_options.hpp>

#include <string>
#include <vector>

namespace eplb::cli {

namespace po = boost::program_options;

/// Parses `args` into `vm`. Returns false after printing `usage` and the options when --help is
/// given; otherwise checks required options (po::notify) and returns true.
bool parse_arguments(const std::vector<std::string>& args, const std::string& usage, const po::options_description& options,
                     const po::positional_options_description& positional, po::variables_map& vm);

/// As above, for a command whose positional arguments are up to `max_positional` values
/// (-1: any number) of the option `positional_name`.
bool parse_arguments(const std::vector<std::string>& args, const std::string& usage, const po::options_description& options,
                     const char* positional_name, int max_positional);

/// "eplb <command> <args...>", each argument quoted for a POSIX shell where it needs it.
std::string command_line(const std::string& command, const std::vector<std::string>& args);

/// The policy settings as options: flags of `eplb plan`, keys and flags of `eplb sweep`.
po::options_description policy_setting_options(PolicySettings& settings);

/// The settings as configuration lines, "key = value\n" each (`eplb sweep --dump-config`).
std::string policy_settings_text(const PolicySettings& settings);

/// Splits "a,b,,c" at commas, dropping empty parts.
std::vector<std::string> split_list(const std::string& text);

}  // namespace eplb::cli
