#include "cli/options.hpp"

#include <iostream>

namespace eplb::cli {
namespace {

std::string shell_quoted(const std::string& arg) {
    if (!arg.empty() && arg.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") ==
                            std::string::npos)
        return arg;
    std::string out = "'";
    for (const char c : arg) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}

}  // namespace

bool parse_arguments(const std::vector<std::string>& args, const std::string& usage, const po::options_description& options,
                     const po::positional_options_description& positional, po::variables_map& vm) {
    po::store(po::command_line_parser(args).options(options).positional(positional).run(), vm);
    if (vm.count("help")) {
        std::cout << usage << "\n\n" << options << "\n";
        return false;
    }
    po::notify(vm);
    return true;
}

bool parse_arguments(const std::vector<std::string>& args, const std::string& usage, const po::options_description& options,
                     const char* positional_name, int max_positional) {
    po::positional_options_description positional;
    positional.add(positional_name, max_positional);
    po::variables_map vm;
    return parse_arguments(args, usage, options, positional, vm);
}

std::string command_line(const std::string& command, const std::vector<std::string>& args) {
    std::string out = "eplb " + command;
    for (const std::string& a : args) out += " " + shell_quoted(a);
    return out;
}

std::vector<std::string> split_list(const std::string& text) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= text.size()) {
        const std::size_t comma = text.find(',', start);
        const std::string part = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        if (!part.empty()) out.push_back(part);
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return out;
}

}  // namespace eplb::cli
