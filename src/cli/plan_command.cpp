// eplb plan: plan snapshots for topologies and policies; print the metrics or write an archive.
#include "cli/commands.hpp"
#include "cli/options.hpp"
#include "cli/report.hpp"

#include <eplb/archive.hpp>
#include <eplb/errors.hpp>
#include <eplb/rebalance.hpp>
#include <eplb/snapshot.hpp>

#include <c10/util/Exception.h>

#include <charconv>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>

namespace eplb::cli {
namespace {

const char* const kUsageText =
    "usage: eplb plan [--input] FILE... --topology R/groups/N/G... [--policy NAME...] [--out ARCHIVE] [options]\n"
    "\n"
    "Plans every window of every input for every topology and policy. Without --out, prints each\n"
    "plan's per-layer and aggregate metrics; with --out, writes them all to one HDF5 archive and\n"
    "prints its summary. Inputs that fail are reported and skipped (exit code 3).";

struct PlanArgs {
    std::vector<std::string> inputs;
    std::vector<std::string> topologies;
    std::vector<std::string> policies;
    std::string windows = "sum";
    std::int64_t experts = 0;
    std::vector<std::string> zero_columns;
    std::string out;
    bool append = false;
    std::string device = "auto";
    std::string engine = "auto";
    bool json = false;
    PolicySettings settings;
};

po::options_description plan_options(PlanArgs& a) {
    po::options_description d("options");
    d.add_options()
        ("help,h", "show this help")
        ("input,i", po::value(&a.inputs)->composing(),
         "load snapshot (repeatable, or positional): SGLang recorder dump (.pt) or statistics (JSON), "
         "vLLM load_history (JSON), eplb HDF5 snapshot (.h5)")
        ("topology,t", po::value(&a.topologies)->required()->composing(), "R/groups/N/G, e.g. 288/8/4/32 (repeatable)")
        ("policy,p", po::value(&a.policies)->composing(), "balanced | deepseek | seed | all (repeatable; default balanced)")
        ("windows,w", po::value(&a.windows)->default_value("sum"),
         "sum | each | K: plan the sum of all recorded steps, every step, or sums of K consecutive steps")
        ("experts,e", po::value(&a.experts)->default_value(0), "keep only the first E columns as experts (0: all)")
        ("zero-columns,z", po::value(&a.zero_columns)->composing(),
         "columns to set to zero before planning, e.g. 255 (comma-separated, repeatable)")
        ("out,o", po::value(&a.out), "write every plan to this HDF5 archive (replaced whole when done)")
        ("append", po::bool_switch(&a.append),
         "keep the plans already in --out and add the new ones (also resumes an interrupted run)")
        ("device,d", po::value(&a.device)->default_value("auto"),
         "auto | cpu | cuda | cuda:k: auto plans on CUDA when a GPU is visible and the batch is large enough")
        ("engine", po::value(&a.engine)->default_value("auto"),
         "auto | native | batched: native CPU loops or batched tensor operations (CUDA is always batched)")
        ("json", po::bool_switch(&a.json), "print machine-readable JSON instead of tables");
    d.add(policy_setting_options(a.settings));
    return d;
}

std::int64_t parse_column(const std::string& text) {
    std::int64_t v = -1;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || end != text.data() + text.size() || v < 0)
        throw UsageError("--zero-columns: '" + text + "' is not a column index (a non-negative integer)");
    return v;
}

RebalanceOptions execution_options(const PlanArgs& a) {
    RebalanceOptions options{DeviceSpec::parse(a.device), std::nullopt};
    if (a.engine != "auto") options.engine = parse_engine(a.engine);
    return options;
}

ReadOptions read_options(const PlanArgs& a) {
    ReadOptions o;
    o.windowing = Windowing::parse(a.windows);
    if (a.experts < 0) throw UsageError("--experts " + std::to_string(a.experts) + " must be 0 (all) or positive");
    o.num_experts = a.experts;
    for (const std::string& list : a.zero_columns)
        for (const std::string& c : split_list(list)) o.zero_columns.push_back(parse_column(c));
    return o;
}

std::vector<Policy> parse_policies(const std::vector<std::string>& names) {
    if (names.empty()) return {Policy::balanced};
    std::vector<Policy> out;
    for (const std::string& list : names)
        for (const std::string& name : split_list(list)) {
            if (name == "all") return all_policies();
            out.push_back(parse_policy(name));
        }
    return out;
}

std::string message_of(const std::exception& e) {
    if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
    return e.what();
}

// Plans the inputs one by one; a failing input (or input x topology x policy) is reported,
// recorded, and skipped.
class PlanRunner {
public:
    PlanRunner(const PlanArgs& a, std::string command_line)
        : args_(a),
          options_(read_options(a)),
          execution_(execution_options(a)),
          policies_(parse_policies(a.policies)),
          settings_(a.settings),
          command_line_(std::move(command_line)) {
        for (const std::string& t : a.topologies) topologies_.push_back(Topology::parse(t));
        // Everything is checked before any work starts.
        if (const std::vector<std::string> problems = settings_.problems(policies_); !problems.empty())
            throw UsageError(problems.front());
        for (const Policy p : policies_) require_engine_for(execution_, p);
        settings_.read_previous();
        if (!a.out.empty())
            writer_.emplace(a.out, a.append ? ArchiveWriter::Mode::append : ArchiveWriter::Mode::replace);
    }

    void run_input(const std::string& input) {
        std::optional<Snapshot> snapshot;
        try {
            snapshot = read_snapshot(input, options_);
        } catch (const std::exception& e) {
            fail(FailureRecord{input, "", "", message_of(e)});
            return;
        }
        for (const Topology& topology : topologies_)
            for (const Policy policy : policies_)
                run_plan(*snapshot, plan_request(topology, policy, execution_, settings_));
    }

    int finish() {
        if (writer_) {
            writer_->commit();
            const ArchiveReader archive(args_.out);
            if (args_.json) {
                std::cout << nlohmann::json{{"archive", args_.out}, {"plans", summaries_json(archive.plans())}}.dump(2) << "\n";
            } else {
                print_summaries(stdout, archive.plans());
                print_failures(stdout, archive.failures());
                std::printf("\nwrote %s: %zu plans (%lld made now), %zu failures\n", args_.out.c_str(),
                            archive.plans().size(), static_cast<long long>(planned_), archive.failures().size());
            }
        } else if (args_.json) {
            std::cout << (printed_.size() == 1 ? printed_.front() : nlohmann::json(printed_)).dump(2) << "\n";
        }
        if (failed_ == 0) return kSuccess;
        return planned_ + skipped_ > 0 ? kPartialFailure : kFailure;
    }

private:
    void run_plan(const Snapshot& snapshot, const PlanRequest& request) {
        if (writer_ && all_finished(snapshot, request)) {
            skipped_ += 1;
            return;
        }
        try {
            for (const PlanRecord& r : plan_windows(snapshot, options_, request, command_line_)) {
                emit(r);
                planned_ += 1;
            }
        } catch (const std::exception& e) {
            fail(FailureRecord{snapshot.source, request.topology.to_string(), to_string(request.policy),
                               snapshot.source + ": logical_count [" + std::to_string(snapshot.num_layers()) + " MoE layers x " +
                                   std::to_string(snapshot.num_experts()) + " experts] cannot be planned for topology " +
                                   request.topology.to_string() + " with policy " + to_string(request.policy) + ": " +
                                   message_of(e)});
        }
    }

    bool all_finished(const Snapshot& snapshot, const PlanRequest& request) const {
        const auto n = static_cast<std::int64_t>(make_windows(snapshot, options_.windowing).size());
        for (std::int64_t w = 0; w < n; ++w)
            if (!writer_->contains(plan_identity(snapshot, options_, request, w).id())) return false;
        return true;
    }

    void emit(const PlanRecord& r) {
        if (writer_) {
            writer_->add(r);
        } else if (args_.json) {
            printed_.push_back(plan_json(r, /*layers=*/true));
        } else {
            if (tables_printed_++) std::printf("\n");
            print_plan(stdout, r, /*layers=*/true);
        }
    }

    void fail(const FailureRecord& f) {
        std::fflush(stdout);
        std::fprintf(stderr, "eplb: error: %s\n", f.message.c_str());
        if (writer_) writer_->add_failure(f);
        failed_ += 1;
    }

    const PlanArgs& args_;
    ReadOptions options_;
    RebalanceOptions execution_;
    std::vector<Policy> policies_;
    PolicySettings settings_;
    std::vector<Topology> topologies_;
    std::string command_line_;
    std::optional<ArchiveWriter> writer_;
    std::vector<nlohmann::json> printed_;
    std::int64_t planned_ = 0, skipped_ = 0, failed_ = 0, tables_printed_ = 0;
};

}  // namespace

int run_plan(const std::vector<std::string>& args) {
    PlanArgs a;
    const po::options_description options = plan_options(a);
    if (!parse_arguments(args, kUsageText, options, "input", -1)) return kSuccess;
    if (a.inputs.empty()) throw UsageError("no input: give one or more snapshot files (eplb plan --help)");
    if (a.append && a.out.empty()) throw UsageError("--append needs --out ARCHIVE");
    PlanRunner runner(a, command_line("plan", args));
    for (const std::string& input : a.inputs) runner.run_input(input);
    return runner.finish();
}

}  // namespace eplb::cli
