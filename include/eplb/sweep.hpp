// The distributed sweep: many inputs x topologies x policies x windows, planned by the ranks of an
// MPI job (e.g. a Slurm job) and gathered into one plan archive, checkpointed as it goes.
//
// Work items are (input window x topology x policy). With at least as many items as ranks, each
// rank plans a contiguous run of items (in input, topology, policy, window order) of about equal
// estimated cost; with fewer items than ranks, each item gets a group of ranks that plan its
// layers in slices, which the group's first rank joins. Every rank writes the records of the
// plans it finishes as durable parts of one archive session (ArchiveWriter, `join` mode); rank 0
// starts the session and commits the archive at the end. Plans are identified by what they are
// made of, so the archive's plans and metrics are byte-identical whatever the number of ranks,
// and `resume` skips what an interrupted run finished.
#pragma once

#include <eplb/archive.hpp>
#include <eplb/rebalance.hpp>
#include <eplb/snapshot.hpp>
#include <eplb/topology.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace eplb {

/// A named input of a sweep (config key `input = NAME=PATTERN`).
struct SweepInput {
    std::string name;     ///< "model" or "model/checkpoint"; fills in what the files do not say
    std::string pattern;  ///< a file, or a glob (`*`, `?`, `[...]`) that must match at least one file

    /// Parses "NAME=PATTERN"; throws UsageError naming the text when either part is empty.
    static SweepInput parse(std::string_view text);
    /// "NAME=PATTERN".
    std::string to_string() const;
    /// `name` up to its first '/'.
    std::string model() const;
    /// `name` after its first '/' ("" when it has none).
    std::string checkpoint() const;
};

/// A sweep as configured. Every field is a key of the configuration file and a command-line flag
/// of `eplb sweep` with the name given first in its comment. Values are kept as written, so that
/// validate_sweep() can quote them.
struct SweepConfig {
    std::vector<SweepInput> inputs;          ///< `input`: named inputs, planned in this order
    std::vector<std::string> models;         ///< `models`: plan only the inputs of these models (empty: all)
    std::vector<std::string> topologies;     ///< `topology`: R/groups/N/G, at least one
    std::vector<std::string> policies;       ///< `policy`: names, or `all` (empty: balanced)
    PolicySettings policy_settings;          ///< `mode`, `history`, `aggregation`, `ema-decay`,
                                             ///< `allow-duplicates`, `max-balance-loss`,
                                             ///< `persistence`, `previous`
    std::string windows = "sum";             ///< `windows`: sum | each | K (Windowing)
    std::int64_t experts = 0;                ///< `experts`: keep only the first E columns (0: all)
    std::vector<std::string> zero_columns;   ///< `zero-columns`: comma-separated columns set to zero
    std::string device = "auto";             ///< `device`: auto | cpu | cuda | cuda:k; a plain `cuda`
                                             ///< (and `auto` on CUDA) is GPU (local rank mod GPUs seen)
    std::string engine = "auto";             ///< `engine`: auto | native | batched
    std::int64_t threads = 1;                ///< `threads`: CPU threads per rank (0: LibTorch's default)
    std::int64_t batch_layers = 8192;        ///< `batch-layers`: most layers per planning call (windows of
                                             ///< one input, topology and policy are planned together)
    double checkpoint_seconds = 2.0;         ///< `checkpoint-seconds`: a rank writes its finished plans
                                             ///< to disk at least this often (a kill loses no more)
    std::string output;                      ///< `output`: the plan archive
    bool resume = false;                     ///< `resume`: keep what `output` (and an interrupted run of
                                             ///< it) already holds and plan only the rest
    std::string progress = "auto";           ///< `progress`: auto (when stderr is a terminal) | always | never
    double progress_seconds = 2.0;           ///< `progress-seconds`: between two progress reports
    std::string command_line;                ///< recorded with every plan (its `run` group)
};

/// One input file of a sweep and the name of the input whose pattern matched it.
struct SweepFile {
    std::string path;
    std::string name;
};

/// A configuration checked and converted to the types planning uses.
struct SweepSetup {
    std::vector<SweepFile> files;        ///< every matched file once: inputs in order, a glob's matches sorted
    std::vector<Topology> topologies;
    std::vector<Policy> policies;
    PolicySettings policy_settings;      ///< checked, with `previous` read
    ReadOptions read_options;
    RebalanceOptions execution;
    bool progress_always = false;        ///< `progress = always`
    bool progress_never = false;         ///< `progress = never`
    std::vector<std::string> problems;   ///< one line each, naming the key and the value

    bool ok() const { return problems.empty(); }
};

/// Checks the whole configuration before any work starts: at least one input, every pattern
/// matches readable files, every topology parses, policies are known, the policy settings are
/// valid for them (and `previous` reads), windowing, columns, device
/// (CUDA present when asked for), engine, threads and intervals are valid, the output's directory
/// is writable, and an interrupted run of it is only taken up with `resume` (an archive to resume
/// must be an eplb archive). Reports every problem, each as "<key> = '<value>': <what is wrong>".
/// Touches nothing, so every rank can run it and all reach the same verdict.
SweepSetup validate_sweep(const SweepConfig& config);

/// Exit codes of `eplb sweep` (and of run_sweep), the same on every rank.
namespace sweep_exit {
inline constexpr int ok = 0;       ///< every item planned and written
inline constexpr int failure = 1;  ///< nothing usable: every input failed, or an I/O error stopped the run
inline constexpr int usage = 2;    ///< the configuration is wrong (nothing was started)
inline constexpr int partial = 3;  ///< some inputs failed (recorded in the archive); the rest is written
}  // namespace sweep_exit

/// What a sweep did. Rank 0's copy holds every rank's figures; the exit code is everyone's.
struct SweepSummary {
    std::string output;
    std::int64_t ranks = 1;
    std::int64_t items = 0;                  ///< work items of the sweep, finished ones included
    std::int64_t already_done = 0;           ///< items finished before this run (resume)
    std::int64_t planned = 0;                ///< items planned and written by this run
    std::int64_t failures = 0;               ///< failure records made by this run
    std::int64_t plans_in_archive = 0;       ///< after the commit
    double wall_seconds = 0.0;               ///< from the start of the sweep to the committed archive
    std::vector<double> rank_busy_seconds;   ///< per rank: reading, planning, scoring, writing parts
    double write_seconds = 0.0;              ///< writing parts, summed over ranks
    double commit_seconds = 0.0;             ///< rank 0 assembling the archive from the parts
    int exit_code = sweep_exit::ok;

    /// planned / wall_seconds.
    double plans_per_second() const;
    /// max / mean of rank_busy_seconds (1 = perfectly balanced; 1 for an idle sweep).
    double rank_imbalance() const;
    /// (write_seconds + commit_seconds) / (sum of rank_busy_seconds + commit_seconds).
    double write_share() const;
    /// One line of key=value pairs: archive, plans, planned, already_done, failures, wall_s,
    /// plans_per_s, ranks, rank_busy_s (comma-separated), rank_imbalance, write_s, commit_s,
    /// write_share, exit_code.
    std::string to_line() const;
};

/// Runs the sweep on every rank of MPI_COMM_WORLD (MPI must be initialised, e.g. by MpiSession).
/// Collective: every rank calls it with the same configuration, and every rank returns the same
/// exit code. Configuration problems are printed once (by the lowest rank that found them), each
/// failed input by the rank that met it, progress by rank 0, all on stderr; no rank is left
/// waiting for another after an error.
SweepSummary run_sweep(const SweepConfig& config);

/// This process's rank as the MPI launcher (mpirun, mpiexec, srun) announces it in the
/// environment, read without initialising MPI; 0 when no launcher started it.
int rank_from_launcher();

/// MPI for the lifetime of the object: MPI_Init unless MPI is initialised, MPI_Finalize at the end
/// unless it is finalised.
class MpiSession {
public:
    MpiSession();
    ~MpiSession();
    MpiSession(const MpiSession&) = delete;
    MpiSession& operator=(const MpiSession&) = delete;

    int rank() const;
    int size() const;

    /// The highest `code` of all ranks (collective). When it is not 0, the lowest rank with that
    /// code prints its `message` (one "eplb: error: " line per line of it) on stderr.
    int agree(int code, const std::string& message) const;

    /// Ends every rank of the job with `code`: the last resort when this rank cannot go on and
    /// others may be waiting for it.
    [[noreturn]] void abort(int code) const;

private:
    bool finalize_ = false;
};

}  // namespace eplb
