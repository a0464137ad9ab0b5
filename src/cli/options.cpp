#include "cli/options.hpp"

#include <iostream>
#include <sstream>

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

po::options_description policy_setting_options(PolicySettings& s) {
    po::options_description d("policy settings (the reference policies use mode and history)");
    d.add_options()
        ("mode", po::value(&s.mode)->default_value(s.mode),
         "hierarchical | global | relaxed: where replicas may go (relaxed: balanced only; primaries stay home)")
        ("history", po::value(&s.history)->default_value(s.history),
         "k: plan window i from windows i-k+1 .. i (the references plan their sum)")
        ("aggregation", po::value(&s.aggregation)->default_value(s.aggregation),
         "mean | ema: how the balanced policy combines the history")
        ("ema-decay", po::value(&s.ema_decay)->default_value(s.ema_decay), "decay of ema, in (0, 1]")
        ("allow-duplicates", po::value(&s.allow_duplicates)->default_value(false)->implicit_value(true),
         "let the balanced policy put two replicas of one expert on one GPU")
        ("max-balance-loss", po::value(&s.max_balance_loss)->default_value(s.max_balance_loss),
         "the balancedness on the planning load a layer may give up, in [0, 1): with --previous to move "
         "fewer replicas, with --history k >= 2 to lower the peaks of the windows and of the expected next one")
        ("persistence", po::value(&s.persistence)->default_value(s.persistence),
         "the share of each expert's load the balanced policy expects to persist into the next window, "
         "in [0, 1]; the rest drifts to the mean (1: plan for the windows alone)")
        ("previous", po::value(&s.previous),
         "the plan now deployed: ARCHIVE:PLAN_ID (a plan of an eplb archive, ID or unique prefix) or an "
         "SGLang expert-location JSON file; the balanced policy moves as few replicas as it can");
    return d;
}

std::string policy_settings_text(const PolicySettings& s) {
    std::ostringstream out;
    out << "mode = " << s.mode << "\n"
        << "history = " << s.history << "\n"
        << "aggregation = " << s.aggregation << "\n"
        << "ema-decay = " << s.ema_decay << "\n"
        << "allow-duplicates = " << (s.allow_duplicates ? "true" : "false") << "\n"
        << "max-balance-loss = " << s.max_balance_loss << "\n"
        << "persistence = " << s.persistence << "\n";
    if (!s.previous.empty()) out << "previous = " << s.previous << "\n";
    return out.str();
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
