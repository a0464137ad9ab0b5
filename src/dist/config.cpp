// SweepInput and validate_sweep: the whole configuration checked before any work starts.
#include <eplb/archive.hpp>
#include <eplb/errors.hpp>
#include <eplb/sweep.hpp>

#include <glob.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <set>

namespace eplb {
namespace {

namespace fs = std::filesystem;

// Collects "<key> = '<value>': <what>" lines.
class Problems {
public:
    void add(const std::string& key, const std::string& value, const std::string& what) {
        lines_.push_back(key + " = '" + value + "': " + what);
    }
    void missing(const std::string& key, const std::string& what) { lines_.push_back(key + ": " + what); }
    /// A problem already worded "<key> = '<value>': <what>".
    void line(const std::string& text) { lines_.push_back(text); }
    std::vector<std::string> take() { return std::move(lines_); }

    /// Runs `f`; an eplb::Error it throws becomes a problem of `key` = `value`.
    template <typename F>
    void check(const std::string& key, const std::string& value, F&& f) {
        try {
            f();
        } catch (const Error& e) {
            add(key, value, e.what());
        }
    }

private:
    std::vector<std::string> lines_;
};

// "a,b,,c" -> a, b, c.
std::vector<std::string> comma_parts(const std::string& text) {
    std::vector<std::string> parts;
    std::size_t start = 0;
    while (start <= text.size()) {
        const std::size_t comma = std::min(text.find(',', start), text.size());
        if (comma > start) parts.push_back(text.substr(start, comma - start));
        start = comma + 1;
    }
    return parts;
}

bool has_glob_characters(const std::string& pattern) { return pattern.find_first_of("*?[") != std::string::npos; }

// Why `path` cannot be read as an input file ("" when it can).
std::string unreadable_because(const std::string& path) {
    std::error_code ec;
    const fs::file_status status = fs::status(path, ec);
    if (ec || !fs::exists(status)) return "no such file";
    if (fs::is_directory(status)) return path + " is a directory, not a file";
    if (!std::ifstream(path, std::ios::binary).good()) return path + " cannot be opened for reading";
    return "";
}

// The files `pattern` names: itself, or a glob's matches (sorted).
std::vector<std::string> expand(const std::string& pattern) {
    if (!has_glob_characters(pattern)) return {pattern};
    glob_t matches{};
    std::vector<std::string> out;
    if (::glob(pattern.c_str(), GLOB_ERR, nullptr, &matches) == 0)
        for (std::size_t i = 0; i < matches.gl_pathc; ++i) out.emplace_back(matches.gl_pathv[i]);
    ::globfree(&matches);
    return out;
}

void check_inputs(const SweepConfig& c, SweepSetup& setup, Problems& problems) {
    if (c.inputs.empty()) problems.missing("input", "no input: give at least one NAME=FILE or NAME=GLOB");
    std::set<std::string> models_seen;
    for (const SweepInput& input : c.inputs) models_seen.insert(input.model());
    for (const std::string& model : c.models)
        if (!models_seen.count(model))
            problems.add("models", model, "no input has this model (inputs are NAME=PATTERN with NAME = model[/checkpoint])");
    std::set<std::string> files_seen;
    for (const SweepInput& input : c.inputs) {
        if (!c.models.empty() && std::find(c.models.begin(), c.models.end(), input.model()) == c.models.end()) continue;
        const std::vector<std::string> files = expand(input.pattern);
        if (files.empty()) problems.add("input", input.to_string(), "the pattern matches no file");
        for (const std::string& file : files) {
            const std::string path = fs::path(file).lexically_normal().string();
            if (const std::string why = unreadable_because(path); !why.empty()) {
                problems.add("input", input.to_string(), why);
            } else if (files_seen.insert(path).second) {
                setup.files.push_back(SweepFile{path, input.name});
            }
        }
    }
}

void check_planning(const SweepConfig& c, SweepSetup& setup, Problems& problems) {
    if (c.topologies.empty()) problems.missing("topology", "no topology: give at least one R/groups/N/G, e.g. 288/8/4/32");
    std::set<std::string> topologies_seen;
    for (const std::string& text : c.topologies)
        problems.check("topology", text, [&] {
            const Topology t = Topology::parse(text);
            t.validate();
            if (topologies_seen.insert(t.to_string()).second) setup.topologies.push_back(t);
        });
    std::set<Policy> policies_seen;
    auto add_policy = [&](Policy p) {
        if (policies_seen.insert(p).second) setup.policies.push_back(p);
    };
    for (const std::string& text : c.policies)
        problems.check("policy", text, [&] {
            for (const std::string& name : comma_parts(text)) {
                if (name == "all")
                    for (const Policy p : all_policies()) add_policy(p);
                else
                    add_policy(parse_policy(name));
            }
        });
    if (c.policies.empty()) add_policy(Policy::balanced);
}

void check_policy_settings(const SweepConfig& c, SweepSetup& setup, Problems& problems) {
    setup.policy_settings = c.policy_settings;
    const std::vector<std::string> found = c.policy_settings.problems(setup.policies);
    for (const std::string& line : found) problems.line(line);
    if (found.empty() && !c.policy_settings.previous.empty())
        problems.check("previous", c.policy_settings.previous, [&] { setup.policy_settings.read_previous(); });
}

void check_read_options(const SweepConfig& c, SweepSetup& setup, Problems& problems) {
    problems.check("windows", c.windows, [&] { setup.read_options.windowing = Windowing::parse(c.windows); });
    if (c.experts < 0) problems.add("experts", std::to_string(c.experts), "must be 0 (all columns) or positive");
    setup.read_options.num_experts = std::max<std::int64_t>(c.experts, 0);
    for (const std::string& list : c.zero_columns)
        for (const std::string& column : comma_parts(list)) {
            std::int64_t v = -1;
            const auto [end, ec] = std::from_chars(column.data(), column.data() + column.size(), v);
            if (ec != std::errc() || end != column.data() + column.size() || v < 0)
                problems.add("zero-columns", list, "'" + column + "' is not a column index (a non-negative integer)");
            else
                setup.read_options.zero_columns.push_back(v);
        }
}

void check_execution(const SweepConfig& c, SweepSetup& setup, Problems& problems) {
    bool device_ok = true;
    problems.check("device", c.device, [&] {
        device_ok = false;
        setup.execution.device = DeviceSpec::parse(c.device);
        device_ok = true;
    });
    bool engine_ok = true;
    if (c.engine != "auto")
        problems.check("engine", c.engine, [&] {
            engine_ok = false;
            setup.execution.engine = parse_engine(c.engine);
            engine_ok = true;
        });
    // CUDA asked for but absent, the native engine on CUDA, or a policy the engine lacks.
    if (device_ok && engine_ok)
        problems.check("device", c.device + (c.engine == "auto" ? "" : "' with engine = '" + c.engine), [&] {
            choose_execution(setup.execution, kAutoCudaMinLayers);
            for (const Policy p : setup.policies) require_engine_for(setup.execution, p);
        });
    if (c.threads < 0) problems.add("threads", std::to_string(c.threads), "must be 0 (LibTorch's default) or positive");
    if (c.batch_layers < 1) problems.add("batch-layers", std::to_string(c.batch_layers), "must be at least 1");
    if (!(c.checkpoint_seconds > 0))
        problems.add("checkpoint-seconds", std::to_string(c.checkpoint_seconds), "must be more than 0");
    if (!(c.progress_seconds > 0))
        problems.add("progress-seconds", std::to_string(c.progress_seconds), "must be more than 0");
    if (c.progress != "auto" && c.progress != "always" && c.progress != "never")
        problems.add("progress", c.progress, "must be auto, always or never");
    setup.progress_always = c.progress == "always";
    setup.progress_never = c.progress == "never";
}

void check_output(const SweepConfig& c, Problems& problems) {
    if (c.output.empty()) {
        problems.missing("output", "no output: name the plan archive to write");
        return;
    }
    const fs::path out(c.output);
    const std::string dir = out.parent_path().empty() ? "." : out.parent_path().string();
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
        problems.add("output", c.output, "the directory " + dir + " does not exist");
        return;
    }
    if (::access(dir.c_str(), W_OK | X_OK) != 0) {
        problems.add("output", c.output, "the directory " + dir + " is not writable");
        return;
    }
    if (fs::is_directory(out, ec)) {
        problems.add("output", c.output, "is a directory; name the archive file");
        return;
    }
    const std::string parts = c.output + ".parts";
    if (fs::exists(parts, ec) && !c.resume)
        problems.add("output", c.output,
                     parts + " holds the plans of an interrupted run: finish it with --resume (resume = true), "
                             "or delete that directory to start afresh");
    if (c.resume && fs::exists(out, ec)) problems.check("output", c.output, [&] { ArchiveReader{c.output}; });
}

}  // namespace

SweepInput SweepInput::parse(std::string_view text) {
    const std::size_t eq = text.find('=');
    if (eq == std::string_view::npos || eq == 0 || eq + 1 == text.size())
        throw UsageError("input '" + std::string(text) +
                         "' is not NAME=PATTERN (e.g. deepseek-r1/decode=data/decode_*.json)");
    return SweepInput{std::string(text.substr(0, eq)), std::string(text.substr(eq + 1))};
}

std::string SweepInput::to_string() const { return name + "=" + pattern; }

std::string SweepInput::model() const { return name.substr(0, name.find('/')); }

std::string SweepInput::checkpoint() const {
    const std::size_t slash = name.find('/');
    return slash == std::string::npos ? "" : name.substr(slash + 1);
}

SweepSetup validate_sweep(const SweepConfig& config) {
    SweepSetup setup;
    Problems problems;
    check_inputs(config, setup, problems);
    check_planning(config, setup, problems);
    check_policy_settings(config, setup, problems);
    check_read_options(config, setup, problems);
    check_execution(config, setup, problems);
    check_output(config, problems);
    setup.problems = problems.take();
    return setup;
}

}  // namespace eplb
