// eplb sweep: the distributed sweep, driven by a configuration file whose keys are also flags.
#include "cli/commands.hpp"
#include "cli/options.hpp"

#include <eplb/errors.hpp>
#include <eplb/sweep.hpp>

#include <c10/util/Exception.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace eplb::cli {
namespace {

namespace fs = std::filesystem;

const char* const kUsageText =
    "usage: [mpirun -n N | srun --mpi=pmix] eplb sweep [--config FILE] [options]\n"
    "\n"
    "Plans every window of every input for every topology and policy, shared among the MPI ranks\n"
    "of the job, into one HDF5 plan archive that is checkpointed as the sweep goes. Every key of\n"
    "the configuration file (INI: key = value, one per line, repeated for lists) is also a flag;\n"
    "flags win over the file. Paths in the file are relative to the file's directory.\n"
    "\n"
    "exit codes (the same on every rank): 0 all planned, 1 nothing usable (or an I/O error; the\n"
    "finished plans are kept for --resume), 2 configuration error (nothing started), 3 some inputs\n"
    "failed (recorded in the archive), the rest planned.";

struct SweepArgs {
    SweepConfig config;
    std::vector<std::string> inputs;  // NAME=PATTERN, parsed into config.inputs
    std::string config_file;
    bool dump_config = false;
    bool list_models = false;
};

// The keys of the configuration file; each is also a flag.
po::options_description config_keys(SweepArgs& a) {
    SweepConfig& c = a.config;
    po::options_description d("configuration (file keys and flags)");
    d.add_options()
        ("input,i", po::value(&a.inputs), "NAME=PATTERN (repeatable): NAME is model or model/checkpoint, PATTERN a "
                                          "snapshot file or a glob; all its files are planned")
        ("models", po::value(&c.models), "plan only the inputs of these models (repeatable; default: all)")
        ("topology,t", po::value(&c.topologies), "R/groups/N/G, e.g. 288/8/4/32 (repeatable)")
        ("policy,p", po::value(&c.policies), "balanced | deepseek | seed | all (repeatable; default balanced)")
        ("windows,w", po::value(&c.windows)->default_value(c.windows), "sum | each | K (as eplb plan)")
        ("experts,e", po::value(&c.experts)->default_value(c.experts), "keep only the first E columns (0: all)")
        ("zero-columns,z", po::value(&c.zero_columns), "columns to set to zero, e.g. 255 (comma-separated, repeatable)")
        ("device,d", po::value(&c.device)->default_value(c.device),
         "auto | cpu | cuda | cuda:k; cuda (and auto, when it picks CUDA) takes GPU local-rank mod GPUs")
        ("engine", po::value(&c.engine)->default_value(c.engine), "auto | native | batched")
        ("threads", po::value(&c.threads)->default_value(c.threads), "CPU threads per rank (0: LibTorch's default)")
        ("batch-layers", po::value(&c.batch_layers)->default_value(c.batch_layers),
         "most layers planned in one call (windows of one input, topology and policy go together)")
        ("checkpoint-seconds", po::value(&c.checkpoint_seconds)->default_value(c.checkpoint_seconds),
         "each rank writes its finished plans to disk at least this often")
        ("output,o", po::value(&c.output), "the plan archive to write")
        ("resume", po::value(&c.resume)->default_value(false)->implicit_value(true),
         "keep the plans already in the output (and in an interrupted run of it); plan only the rest")
        ("progress", po::value(&c.progress)->default_value(c.progress)->implicit_value("always"),
         "auto | always | never: done/total, plans/s and ETA on stderr (auto: when it is a terminal)")
        ("progress-seconds", po::value(&c.progress_seconds)->default_value(c.progress_seconds),
         "seconds between progress reports");
    d.add(policy_setting_options(c.policy_settings));
    return d;
}

po::options_description flags_only(SweepArgs& a) {
    po::options_description d("options");
    d.add_options()
        ("help,h", "show this help")
        ("config,c", po::value(&a.config_file), "configuration file (INI)")
        ("dump-config", po::bool_switch(&a.dump_config), "print the effective configuration and exit")
        ("list-models", po::bool_switch(&a.list_models), "print the inputs' models, one a line, and exit");
    return d;
}

// A relative path in the configuration file is relative to the file's directory.
std::string from_config_dir(const std::string& path, const std::string& config_file) {
    if (path.empty() || fs::path(path).is_absolute()) return path;
    return (fs::path(config_file).parent_path() / path).lexically_normal().string();
}

// Parses the command line and the configuration file; returns false after --help.
bool parse(const std::vector<std::string>& args, SweepArgs& a, std::string& help) {
    const po::options_description keys = config_keys(a);
    po::options_description all;
    all.add(flags_only(a)).add(keys);
    po::variables_map vm;
    po::store(po::command_line_parser(args).options(all).run(), vm);
    const bool paths_from_command_line[3] = {vm.count("input") > 0, vm.count("output") > 0 && !vm["output"].defaulted(),
                                             vm.count("previous") > 0};
    if (vm.count("help")) {
        std::ostringstream text;
        text << kUsageText << "\n\n" << all << "\n";
        help = text.str();
        return false;
    }
    if (vm.count("config")) {
        const std::string file = vm["config"].as<std::string>();
        std::ifstream in(file);
        if (!in) throw UsageError("config = '" + file + "': cannot open the file");
        po::store(po::parse_config_file(in, keys), vm);  // the command line's values stay
    }
    po::notify(vm);
    for (const std::string& text : a.inputs) {
        SweepInput input = SweepInput::parse(text);
        if (!paths_from_command_line[0]) input.pattern = from_config_dir(input.pattern, a.config_file);
        a.config.inputs.push_back(std::move(input));
    }
    if (!paths_from_command_line[1]) a.config.output = from_config_dir(a.config.output, a.config_file);
    std::string& previous = a.config.policy_settings.previous;  // ARCHIVE:PLAN_ID or a file
    if (!paths_from_command_line[2]) previous = from_config_dir(previous, a.config_file);
    return true;
}

std::string config_text(const SweepConfig& c) {
    std::ostringstream out;
    out << "# eplb sweep: effective configuration (every key is also a flag)\n";
    for (const SweepInput& input : c.inputs) out << "input = " << input.to_string() << "\n";
    for (const std::string& m : c.models) out << "models = " << m << "\n";
    for (const std::string& t : c.topologies) out << "topology = " << t << "\n";
    for (const std::string& p : c.policies) out << "policy = " << p << "\n";
    out << policy_settings_text(c.policy_settings);
    out << "windows = " << c.windows << "\n" << "experts = " << c.experts << "\n";
    for (const std::string& z : c.zero_columns) out << "zero-columns = " << z << "\n";
    out << "device = " << c.device << "\n"
        << "engine = " << c.engine << "\n"
        << "threads = " << c.threads << "\n"
        << "batch-layers = " << c.batch_layers << "\n"
        << "checkpoint-seconds = " << c.checkpoint_seconds << "\n"
        << "output = " << c.output << "\n"
        << "resume = " << (c.resume ? "true" : "false") << "\n"
        << "progress = " << c.progress << "\n"
        << "progress-seconds = " << c.progress_seconds << "\n";
    return out.str();
}

std::string models_text(const SweepConfig& c) {
    std::string out;
    std::set<std::string> seen;
    for (const SweepInput& input : c.inputs)
        if (seen.insert(input.model()).second) out += input.model() + "\n";
    return out;
}

std::string message_of(const std::exception& e) {
    if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
    return e.what();
}

}  // namespace

int run_sweep_command(const std::vector<std::string>& args) {
    SweepArgs a;
    std::string help, error;
    int code = kSuccess;
    bool parsed = false;
    try {
        parsed = parse(args, a, help);
    } catch (const po::error& e) {
        std::tie(code, error) = std::pair(int{kUsage}, std::string(e.what()));
    } catch (const UsageError& e) {
        std::tie(code, error) = std::pair(int{kUsage}, std::string(e.what()));
    }
    // Help, the configuration and the models need no MPI (array.sbatch asks for the models in a
    // batch script, outside srun); under a launcher, only its rank 0 prints them.
    if (code == kSuccess && (!parsed || a.dump_config || a.list_models)) {
        const std::string text = !parsed ? help : a.dump_config ? config_text(a.config) : models_text(a.config);
        if (rank_from_launcher() == 0) std::fputs(text.c_str(), stdout);
        return kSuccess;
    }
    const MpiSession mpi;
    const bool root = mpi.rank() == 0;
    if ((code = mpi.agree(code, error))) return code;
    a.config.command_line = command_line("sweep", args);
    try {
        const SweepSummary summary = run_sweep(a.config);
        if (root && summary.exit_code != kUsage) std::printf("%s\n", summary.to_line().c_str());
        return summary.exit_code;
    } catch (const std::exception& e) {
        // A failure run_sweep did not agree on: the other ranks may be waiting for this one.
        std::fprintf(stderr, "eplb: error: MPI rank %d: %s\n", mpi.rank(), message_of(e).c_str());
        if (mpi.size() > 1) mpi.abort(kFailure);
        return kFailure;
    }
}

}  // namespace eplb::cli
