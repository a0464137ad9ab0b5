// run_sweep: validate everywhere, start the archive session on rank 0, describe the inputs, share
// the work, plan, checkpoint, and commit on rank 0.
#include "dist/mpi_util.hpp"
#include "dist/plan_slices.hpp"
#include "dist/progress.hpp"
#include "dist/work.hpp"

#include <eplb/archive.hpp>
#include <eplb/errors.hpp>
#include <eplb/sweep.hpp>

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <optional>
#include <sstream>

namespace eplb {
namespace {

namespace fs = std::filesystem;
using dist::InputInfo;
using dist::Progress;
using dist::WorkItem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string message_of(const std::exception& e) {
    if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
    return e.what();
}

// What one rank did.
struct RankStats {
    std::int64_t planned = 0;    // items planned and written
    std::int64_t processed = 0;  // items planned or given up on (for progress)
    std::int64_t failures = 0;   // failure records made
    double busy = 0.0;           // seconds of work: reading, planning, scoring, writing
    double write = 0.0;          // seconds spent writing parts
    bool fatal = false;          // an error stopped this rank's work (e.g. the disk is full)
};

// Bytes of a record's own tensors (its loads are shared with the input's windows).
std::int64_t plan_bytes(const Plan& plan) {
    std::int64_t bytes = 0;
    for (const at::Tensor* t : {&plan.phy2log, &plan.log2phy, &plan.logcnt})
        bytes += t->numel() * static_cast<std::int64_t>(t->element_size());
    return bytes;
}

// Writes this rank's finished records as one part at least every `interval` seconds (and when
// many are waiting), so that a kill loses at most that much work.
class Checkpointer {
public:
    Checkpointer(ArchiveWriter& writer, double interval, RankStats& stats)
        : writer_(writer), interval_(interval), stats_(stats), last_(Clock::now()) {}

    void add(PlanRecord record) {
        pending_bytes_ += plan_bytes(record.plan);
        pending_.push_back(std::move(record));
        if (seconds_since(last_) >= interval_ || pending_bytes_ >= kMostPendingBytes) flush();
    }

    void flush() {
        if (!pending_.empty()) {
            const auto start = Clock::now();
            writer_.add(pending_);
            stats_.write += seconds_since(start);
            stats_.planned += static_cast<std::int64_t>(pending_.size());
            pending_.clear();
            pending_bytes_ = 0;
        }
        last_ = Clock::now();
    }

private:
    static constexpr std::int64_t kMostPendingBytes = std::int64_t{256} << 20;  // memory held between checkpoints
    ArchiveWriter& writer_;
    double interval_;
    RankStats& stats_;
    Clock::time_point last_;
    std::vector<PlanRecord> pending_;
    std::int64_t pending_bytes_ = 0;
};

// Reports a failure on stderr and records it in the archive.
void record_failure(ArchiveWriter& writer, const FailureRecord& failure, RankStats& stats) {
    dist::print_error_lines(failure.message);
    writer.add_failure(failure);
    ++stats.failures;
}

// One rank's share of a sweep, and what it needs to do it.
class RankWork {
public:
    RankWork(const SweepConfig& config, const SweepSetup& setup, const std::vector<InputInfo>& inputs, ArchiveWriter& writer,
             Progress& progress, RankStats& stats)
        : config_(config),
          setup_(setup),
          inputs_(inputs),
          writer_(writer),
          progress_(progress),
          stats_(stats),
          checkpoints_(writer, config.checkpoint_seconds, stats),
          rank_(dist::rank_of(MPI_COMM_WORLD)),
          size_(dist::size_of(MPI_COMM_WORLD)),
          local_rank_(dist::local_rank()) {}

    // Items [begin, end), in order, in batches of consecutive windows of one chain (a resumed
    // sweep leaves gaps where windows were finished before: a batch stops at a gap, so that each
    // plan's previous plan is the window right before it).
    void run_range(const std::vector<WorkItem>& items, std::size_t begin, std::size_t end) {
        std::size_t i = begin;
        while (i < end && !stats_.fatal) {
            std::size_t j = i + 1;
            std::int64_t layers = items[i].num_layers;
            while (j < end && items[j].follows(items[j - 1]) && layers + items[j].num_layers <= config_.batch_layers)
                layers += items[j++].num_layers;
            const bool planned = plan_batch(items, i, j);
            // After a failure, the rest of the chain fails the same way: it is not tried again.
            if (!planned)
                while (j < end && items[j].same_chain(items[i])) ++j;
            stats_.processed += static_cast<std::int64_t>(j - i);
            progress_.update(stats_.processed);
            i = j;
        }
        checkpoints_.flush();
    }

    // Fewer items than ranks: this rank plans a slice of the layers of one item, with the other
    // ranks of its group; the group's first rank joins the slices and writes the record.
    void run_split(const std::vector<WorkItem>& items) {
        const std::vector<int> members = dist::ranks_per_item(items, size_);
        int first = 0, item = -1;
        for (std::size_t k = 0; k < members.size(); first += members[k++])
            if (rank_ >= first && rank_ < first + members[k]) {
                item = static_cast<int>(k);
                break;
            }
        MPI_Comm group;  // collective: every rank takes part, idle ones with MPI_UNDEFINED
        MPI_Comm_split(MPI_COMM_WORLD, item < 0 ? MPI_UNDEFINED : item, rank_, &group);
        if (item < 0) {
            progress_.update(0);
            return;
        }
        try {
            plan_slice(items[static_cast<std::size_t>(item)], members[static_cast<std::size_t>(item)], group);
        } catch (const std::exception& e) {
            dist::print_error_lines("MPI rank " + std::to_string(rank_) + ": " + message_of(e));
            stats_.fatal = true;
        }
        MPI_Comm_free(&group);
        stats_.processed += rank_ == first ? 1 : 0;
        progress_.update(stats_.processed);
    }

private:
    struct Chain {
        std::int64_t input = -1, topology = -1, policy = -1, window = -1;
        Plan plan;
    };

    // Reads input `i` (once for consecutive items); throws on failure.
    void load_input(std::int64_t i) {
        if (loaded_ == i) return;
        loaded_ = -1;
        const SweepFile& file = setup_.files[static_cast<std::size_t>(i)];
        snapshot_ = read_snapshot(file.path, setup_.read_options);
        if (snapshot_.sha256 != inputs_[static_cast<std::size_t>(i)].sha256)
            throw FormatError(file.path + ": the file changed while the sweep ran (its SHA-256 differs)");
        const SweepInput named{file.name, ""};
        if (snapshot_.model.empty()) snapshot_.model = named.model();
        if (snapshot_.checkpoint.empty()) snapshot_.checkpoint = named.checkpoint();
        windows_ = make_windows(snapshot_, setup_.read_options.windowing);
        loaded_ = i;
    }

    Execution execution_for(std::int64_t layers, Policy policy) const {
        RebalanceOptions options = setup_.execution;
        const std::int64_t gpus = cuda_device_count();
        if (gpus > 0 && options.device.kind == DeviceSpec::Kind::cuda && options.device.index < 0)
            options.device.index = local_rank_ % gpus;
        Execution e = choose_execution(options, layers, policy);
        if (gpus > 0 && e.device.is_cuda() && options.device.kind == DeviceSpec::Kind::automatic)
            e.device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(local_rank_ % gpus));
        return e;
    }

    PlanRequest request_for(const WorkItem& item) const {
        return plan_request(setup_.topologies[static_cast<std::size_t>(item.topology)],
                            setup_.policies[static_cast<std::size_t>(item.policy)], setup_.execution,
                            setup_.policy_settings);
    }

    // The plans of `windows` (indices into windows_), layers [first, first + count) (count -1:
    // all): in one batch where each window is planned alone, else each from its history.
    std::vector<Plan> plan_windows_of(const std::vector<std::int64_t>& windows, const PlanRequest& request,
                                      const Execution& execution, std::int64_t first = 0, std::int64_t count = -1) const {
        std::vector<Plan> plans;
        if (request.plans_windows_alone()) {
            std::vector<at::Tensor> loads;
            for (const std::int64_t w : windows) {
                const at::Tensor& all = windows_[static_cast<std::size_t>(w)].loads;
                loads.push_back(count < 0 ? all : all.narrow(0, first, count));
            }
            return rebalance_batch(loads, request.topology, request.policy, execution);
        }
        for (const std::int64_t w : windows)
            plans.push_back(plan_window(snapshot_, windows_, w, request, execution, first, count));
        return plans;
    }

    RunInfo run_info(double seconds, const Execution& execution, const std::string& ranks) const {
        return RunInfo{config_.command_line, RunInfo::utc_now(), seconds, execution.to_string() + ", " + ranks};
    }

    std::string this_rank() const { return "MPI rank " + std::to_string(rank_) + " of " + std::to_string(size_); }

    // Plans items [i, j) (one chain) in one call, scores them and hands them to the checkpointer.
    // Returns false when the chain failed (recorded).
    bool plan_batch(const std::vector<WorkItem>& items, std::size_t i, std::size_t j) {
        const WorkItem& head = items[i];
        const PlanRequest request = request_for(head);
        try {
            load_input(head.input);
            // The plan of the window before the first one, for its migration metrics: kept from
            // the previous batch when this rank made it, else planned again here.
            const bool have_previous = last_.input == head.input && last_.topology == head.topology &&
                                       last_.policy == head.policy && last_.window == head.window - 1;
            const bool halo = head.window > 0 && !have_previous;
            std::vector<std::int64_t> planned;
            if (halo) planned.push_back(head.window - 1);
            std::int64_t layers = 0;
            for (std::size_t k = i; k < j; ++k) {
                planned.push_back(items[k].window);
                layers += items[k].num_layers;
            }
            const Execution execution = execution_for(layers + (halo ? head.num_layers : 0), request.policy);
            const auto start = Clock::now();
            std::vector<Plan> plans = plan_windows_of(planned, request, execution);
            const double seconds = seconds_since(start);
            Plan previous = halo ? plans.front() : last_.plan;
            for (std::size_t k = i; k < j; ++k) {
                Plan plan = plans[k - i + (halo ? 1 : 0)];
                const double share = seconds * static_cast<double>(items[k].num_layers) / static_cast<double>(layers);
                checkpoints_.add(make_plan_record(snapshot_, setup_.read_options, request, windows_, items[k].window, plan,
                                                  items[k].window > 0 ? &previous : nullptr,
                                                  run_info(share, execution, this_rank())));
                previous = std::move(plan);
            }
            last_ = Chain{head.input, head.topology, head.policy, items[j - 1].window, std::move(previous)};
            return true;
        } catch (const IoError&) {
            throw;  // writing failed: this rank cannot go on
        } catch (const std::exception& e) {
            last_ = Chain{};
            fail(head, message_of(e));
            return false;
        }
    }

    // This rank's slice of `item`'s layers (and of the window before, for the migration metrics).
    void plan_slice(const WorkItem& item, int members, MPI_Comm group) {
        const int member = dist::rank_of(group);
        const dist::LayerSlice slice = dist::layer_slice(item.num_layers, members, member);
        const PlanRequest request = request_for(item);
        const auto start = Clock::now();
        std::string sent;
        Execution execution;
        try {
            if (stats_.fatal) throw IoError("MPI rank " + std::to_string(rank_) + " stopped on an earlier error");
            load_input(item.input);
            std::vector<std::int64_t> planned;
            for (std::int64_t w = std::max<std::int64_t>(item.window - 1, 0); w <= item.window; ++w) planned.push_back(w);
            execution = execution_for(slice.count * static_cast<std::int64_t>(planned.size()), request.policy);
            sent = dist::encode_plans(plan_windows_of(planned, request, execution, slice.first, slice.count));
        } catch (const std::exception& e) {
            sent = dist::encode_error(message_of(e));
        }
        const std::vector<std::string> slices = dist::gather_strings(sent, 0, group);
        if (member != 0) return;
        std::vector<Plan> previous, current;
        for (const std::string& bytes : slices) {
            const dist::DecodedPlans decoded = dist::decode_plans(bytes);
            if (!decoded.ok()) return fail(item, decoded.error);
            if (decoded.plans.size() == 2) previous.push_back(decoded.plans[0]);
            current.push_back(decoded.plans.back());
        }
        try {
            const Plan before = previous.empty() ? Plan{} : dist::join_layer_slices(previous);
            const std::string ranks = "MPI ranks " + std::to_string(rank_) + "-" + std::to_string(rank_ + members - 1) +
                                      " of " + std::to_string(size_);
            checkpoints_.add(make_plan_record(snapshot_, setup_.read_options, request, windows_, item.window,
                                              dist::join_layer_slices(current), previous.empty() ? nullptr : &before,
                                              run_info(seconds_since(start), execution, ranks)));
            checkpoints_.flush();
        } catch (const IoError&) {
            throw;
        } catch (const std::exception& e) {
            fail(item, message_of(e));
        }
    }

    void fail(const WorkItem& item, const std::string& why) {
        const std::string& path = setup_.files[static_cast<std::size_t>(item.input)].path;
        const Topology& t = setup_.topologies[static_cast<std::size_t>(item.topology)];
        const Policy p = setup_.policies[static_cast<std::size_t>(item.policy)];
        const std::string message = why.rfind(path + ":", 0) == 0
                                        ? why
                                        : path + ": window " + std::to_string(item.window) + " cannot be planned for topology " +
                                              t.to_string() + " with policy " + to_string(p) + ": " + why;
        record_failure(writer_, FailureRecord{path, t.to_string(), to_string(p), message}, stats_);
    }

    const SweepConfig& config_;
    const SweepSetup& setup_;
    const std::vector<InputInfo>& inputs_;
    ArchiveWriter& writer_;
    Progress& progress_;
    RankStats& stats_;
    Checkpointer checkpoints_;
    int rank_ = 0, size_ = 1, local_rank_ = 0;
    std::int64_t loaded_ = -1;
    Snapshot snapshot_;
    std::vector<Window> windows_;
    Chain last_;
};

// Every input described, each by one rank (round robin), the descriptions shared with all.
std::vector<InputInfo> describe_inputs(const SweepSetup& setup, MPI_Comm comm) {
    const int rank = dist::rank_of(comm), size = dist::size_of(comm);
    nlohmann::json mine = nlohmann::json::array();
    for (std::size_t i = static_cast<std::size_t>(rank); i < setup.files.size(); i += static_cast<std::size_t>(size))
        mine.push_back({{"input", i}, {"info", dist::describe_input(setup.files[i].path, setup.read_options).to_json()}});
    std::vector<InputInfo> all(setup.files.size());
    dist::idle_barrier(comm);  // some inputs take longer to read than others
    for (const std::string& text : dist::allgather_strings(mine.dump(), comm))
        for (const nlohmann::json& entry : nlohmann::json::parse(text))
            all[entry.at("input").get<std::size_t>()] = InputInfo::from_json(entry.at("info").get<std::string>());
    return all;
}

std::set<std::string> finished_plans(const std::optional<ArchiveWriter>& writer, MPI_Comm comm) {
    std::string text;
    if (dist::rank_of(comm) == 0)
        for (const std::string& id : writer->finished()) text += id + "\n";
    std::set<std::string> ids;
    std::istringstream lines(dist::broadcast_string(text, 0, comm));
    for (std::string id; std::getline(lines, id);) ids.insert(id);
    return ids;
}

// Rank 0 starts the archive session; then the others join it. Returns the agreed exit code.
int start_session(const SweepConfig& config, std::optional<ArchiveWriter>& writer, MPI_Comm comm) {
    const int rank = dist::rank_of(comm);
    const std::string parts = config.output + ".parts";
    std::error_code ec;
    const bool fresh = !fs::exists(parts, ec);
    int code = sweep_exit::ok;
    std::string error;
    if (rank == 0) {
        try {
            writer.emplace(config.output, config.resume ? ArchiveWriter::Mode::append : ArchiveWriter::Mode::replace);
        } catch (const UsageError& e) {
            std::tie(code, error) = std::pair(sweep_exit::usage, std::string(e.what()));
        } catch (const std::exception& e) {
            std::tie(code, error) = std::pair(sweep_exit::failure, message_of(e));
        }
    }
    if ((code = dist::agree_on_code(code, error, comm))) return code;
    if (rank != 0) {
        try {
            writer.emplace(config.output, ArchiveWriter::Mode::join);
        } catch (const std::exception& e) {
            char host[256] = "?";
            gethostname(host, sizeof host - 1);
            std::tie(code, error) = std::pair(sweep_exit::failure, "MPI rank " + std::to_string(rank) + " on " + host + ": " +
                                                                       message_of(e));
        }
    }
    if ((code = dist::agree_on_code(code, error, comm)) && rank == 0 && fresh) fs::remove_all(parts, ec);
    return code;
}

// Rank 0 records what is known to fail before planning: unreadable inputs, topologies they do not fit.
void record_known_failures(const SweepSetup& setup, const dist::WorkList& work, ArchiveWriter& writer, RankStats& stats) {
    for (const dist::KnownFailure& f : work.failures) {
        const std::string& path = setup.files[static_cast<std::size_t>(f.input)].path;
        const std::string topology = f.topology < 0 ? "" : setup.topologies[static_cast<std::size_t>(f.topology)].to_string();
        const std::string policy = f.policy < 0 ? "" : to_string(setup.policies[static_cast<std::size_t>(f.policy)]);
        record_failure(writer, FailureRecord{path, topology, policy, f.message}, stats);
    }
}

// Every rank's figures, on rank 0 (in rank order).
std::vector<RankStats> gather_stats(const RankStats& mine, MPI_Comm comm) {
    const int size = dist::size_of(comm);
    const double row[6] = {static_cast<double>(mine.planned), static_cast<double>(mine.processed),
                           static_cast<double>(mine.failures), mine.busy, mine.write, mine.fatal ? 1.0 : 0.0};
    std::vector<double> all(dist::rank_of(comm) == 0 ? 6 * static_cast<std::size_t>(size) : 0);
    MPI_Gather(row, 6, MPI_DOUBLE, all.data(), 6, MPI_DOUBLE, 0, comm);
    std::vector<RankStats> out;
    for (std::size_t r = 0; r * 6 < all.size(); ++r) {
        const double* x = &all[6 * r];
        out.push_back(RankStats{static_cast<std::int64_t>(x[0]), static_cast<std::int64_t>(x[1]),
                                static_cast<std::int64_t>(x[2]), x[3], x[4], x[5] != 0.0});
    }
    return out;
}

// Rank 0: commits the archive and decides the exit code.
int commit_archive(const SweepConfig& config, ArchiveWriter& writer, const std::vector<RankStats>& ranks,
                   SweepSummary& summary) {
    for (const RankStats& r : ranks) {
        summary.planned += r.planned;
        summary.failures += r.failures;
        summary.write_seconds += r.write;
        summary.rank_busy_seconds.push_back(r.busy);
    }
    if (std::any_of(ranks.begin(), ranks.end(), [](const RankStats& r) { return r.fatal; })) {
        dist::print_error_lines("the sweep stopped on the errors above; its finished plans are kept in " + config.output +
                                ".parts: run it again with --resume to finish it");
        return sweep_exit::failure;
    }
    try {
        const auto start = Clock::now();
        writer.commit();
        summary.commit_seconds = seconds_since(start);
        summary.plans_in_archive = static_cast<std::int64_t>(ArchiveReader(config.output).plan_ids().size());
    } catch (const std::exception& e) {
        dist::print_error_lines(message_of(e));
        return sweep_exit::failure;
    }
    if (summary.failures == 0) return sweep_exit::ok;
    return summary.plans_in_archive > 0 ? sweep_exit::partial : sweep_exit::failure;
}

}  // namespace

SweepSummary run_sweep(const SweepConfig& config) {
    const auto start = Clock::now();
    const MPI_Comm comm = MPI_COMM_WORLD;
    const int rank = dist::rank_of(comm), size = dist::size_of(comm);
    SweepSummary summary;
    summary.output = config.output;
    summary.ranks = size;

    const SweepSetup setup = validate_sweep(config);
    std::string problems;
    for (const std::string& p : setup.problems) problems += p + "\n";
    if ((summary.exit_code = dist::agree_on_code(setup.ok() ? 0 : sweep_exit::usage, problems, comm))) return summary;
    if (config.threads > 0) at::set_num_threads(static_cast<int>(config.threads));

    std::optional<ArchiveWriter> writer;
    if ((summary.exit_code = start_session(config, writer, comm))) return summary;
    const std::set<std::string> finished = finished_plans(writer, comm);

    const std::vector<InputInfo> inputs = describe_inputs(setup, comm);
    const dist::WorkList work = dist::make_work_list(setup, inputs, finished);
    summary.items = work.total;
    summary.already_done = work.total - static_cast<std::int64_t>(work.todo.size());
    const bool terminal = isatty(STDERR_FILENO) != 0;
    Progress progress(comm, static_cast<std::int64_t>(work.todo.size()),
                      setup.progress_always || (terminal && !setup.progress_never), terminal, config.progress_seconds);

    // From here on every rank reaches the same collective calls, whatever happens to its own work.
    RankStats stats;
    const auto work_start = Clock::now();
    try {
        if (rank == 0) record_known_failures(setup, work, *writer, stats);
    } catch (const std::exception& e) {
        dist::print_error_lines(message_of(e));
        stats.fatal = true;
    }
    RankWork mine(config, setup, inputs, *writer, progress, stats);
    if (work.todo.size() >= static_cast<std::size_t>(size)) {
        std::vector<std::int64_t> costs;
        for (const WorkItem& item : work.todo) costs.push_back(item.cost);
        const std::vector<std::size_t> bounds = dist::contiguous_ranges(costs, size);
        try {
            mine.run_range(work.todo, bounds[static_cast<std::size_t>(rank)], bounds[static_cast<std::size_t>(rank) + 1]);
        } catch (const std::exception& e) {
            dist::print_error_lines("MPI rank " + std::to_string(rank) + ": " + message_of(e));
            stats.fatal = true;
        }
    } else {
        mine.run_split(work.todo);
    }
    stats.busy = seconds_since(work_start);
    progress.finish(stats.processed);

    // Ranks that finished early wait idly, leaving the cores to those still planning (and to
    // rank 0's commit).
    dist::idle_barrier(comm);
    const std::vector<RankStats> ranks = gather_stats(stats, comm);
    int code = sweep_exit::ok;
    if (rank == 0) code = commit_archive(config, *writer, ranks, summary);
    MPI_Request request;
    MPI_Ibcast(&code, 1, MPI_INT, 0, comm, &request);
    dist::wait_idly(request);
    summary.exit_code = code;
    summary.wall_seconds = seconds_since(start);
    return summary;
}

}  // namespace eplb
