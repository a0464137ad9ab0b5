// The plan archive: one HDF5 file per job holding every plan made, its per-layer metrics, where
// its loads came from, and an index with one row per plan. The layout is documented in the README
// and readable with h5dump, h5py or pandas without eplb.
//
// Plans are identified by a key derived from what they were made from (input file contents, read
// options, window, topology, policy and its options), never from the order they were written, so
// that archives can be appended to, resumed and merged. Writes are crash-safe: each finished plan
// is committed to disk on its own before the call returns, and the archive file itself is only
// ever replaced whole, by an atomic rename.
#pragma once

#include <eplb/metrics.hpp>
#include <eplb/plan.hpp>
#include <eplb/rebalance.hpp>
#include <eplb/snapshot.hpp>
#include <eplb/topology.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace eplb {

/// "hierarchical" or "global".
std::string to_string(BoundKind kind);
/// Parses "hierarchical" or "global"; throws FormatError otherwise.
BoundKind parse_bound_kind(const std::string& text);

/// The aggregate metrics of a plan on one load matrix (see PlanMetrics).
struct Aggregates {
    double balancedness = 1.0;       ///< sum_l mean_l / sum_l max_l
    double mean_balancedness = 1.0;  ///< mean of b_l
    double imbalance_ratio = 0.0;    ///< (sum max - sum mean) / sum mean
    double node_balancedness = 1.0;
    double bound_ratio = 1.0;        ///< sum mean / sum LB: the best reachable balancedness
    double gap = 1.0;                ///< balancedness / bound_ratio (1 = provably optimal)
    std::int64_t duplicates = 0;
    double node_locality = 1.0;      ///< share of tokens served on their group's home node

    static Aggregates of(const PlanMetrics& metrics);
};

/// Replica movement totals from one plan to the next (see Migration).
struct MigrationTotals {
    std::int64_t moved_slots = 0;
    std::int64_t gpu_transfers = 0;
    std::int64_t node_transfers = 0;

    static MigrationTotals of(const Migration& migration);
};

/// What a plan is made from. Equal identities give bit-identical plans and metrics.
struct PlanIdentity {
    std::string input_sha256;       ///< SHA-256 of the input file's bytes
    std::string read_options;       ///< ReadOptions::to_string()
    std::int64_t window = 0;        ///< window index under the read options' windowing
    Topology topology;
    std::string policy;             ///< policy name
    std::string policy_options = "{}";  ///< the policy's options as a canonical JSON object

    /// "input=sha256:<hex>;read=<options>;window=<i>;topology=R/g/N/G;policy=<name>;policy_options=<json>"
    std::string key() const;
    /// The plan's ID: the first 16 hex digits of SHA-256(key()).
    std::string id() const;
};

/// Where a plan's loads came from.
struct PlanSource {
    std::string path;               ///< the input file, as given
    std::string sha256;             ///< of its bytes
    std::string format;             ///< the reader that understood it, e.g. "sglang-json"
    std::string model;
    std::string checkpoint;
    std::int64_t model_layers = 0;  ///< layers of the model, dense ones included
    std::string read_options;       ///< ReadOptions::to_string()
    std::int64_t num_windows = 1;   ///< windows of the input under those options
};

/// Facts about the run that made a plan. They differ from run to run, so they are stored apart
/// from the plan and its metrics and left out of every identity or determinism check.
struct RunInfo {
    std::string command_line;
    std::string created;            ///< UTC, ISO 8601
    double planning_seconds = 0.0;  ///< wall time of rebalance() over all layers
    std::string execution;          ///< engine and device that planned, e.g. "native on cpu"

    /// The current time, UTC, ISO 8601 (for `created`).
    static std::string utc_now();
};

/// One plan and everything the archive keeps about it. L MoE layers, E experts, R slots.
struct PlanRecord {
    std::string id;                       ///< identity().id()
    std::string key;                      ///< identity().key()
    PlanSource source;
    Window window;                        ///< the window planned; `loads` [L, E] float64
    std::optional<Window> next_window;    ///< window + 1, when the input has one
    Topology topology;
    std::string policy;
    std::string policy_options = "{}";
    std::vector<std::int64_t> layer_ids;  ///< [L] model layer of each row
    Plan plan;
    PlanMetrics metrics;                  ///< the plan on window.loads
    std::optional<PlanMetrics> next_metrics;  ///< the plan on next_window->loads (what it really achieves)
    /// id of the plan of window - 1 ("" for the first window); with a deployed plan
    /// (PolicySettings::previous), its identity ("plan:<id>" or "sglang:sha256:<hex>")
    std::string previous_plan;
    std::optional<Migration> migration;   ///< moves from the previous plan (above) to this one
    at::Tensor deployed_phy2log;          ///< [L, R] the deployed plan's map, when planned against one
    std::string eplb_version;             ///< the eplb version that made it
    RunInfo run;

    PlanIdentity identity() const;
};

/// The plan now deployed, for migration-aware planning (PolicySettings::previous).
struct DeployedPlan {
    at::Tensor phy2log;    ///< [rows, R] int64: one row per MoE layer, or per model layer (dense ones included)
    std::string identity;  ///< "plan:<id>" (a plan of an archive) or "sglang:sha256:<hex>" (an expert-location file)
};

/// A policy's settings: the flags of `eplb plan` and the keys (and flags) of `eplb sweep`, by the
/// names given first in the comments. Values are kept as written so that problems() can quote
/// them. The reference policies honour `mode` (hierarchical or global) and `history` (they plan
/// the sum of the windows); everything else is the balanced policy's (see PlanOptions).
struct PolicySettings {
    std::string mode = "hierarchical";  ///< `mode`: hierarchical | global | relaxed
    std::int64_t history = 1;           ///< `history`: window i is planned from windows max(0, i-k+1) .. i
    std::string aggregation = "mean";   ///< `aggregation`: mean | ema, how those windows are combined
    double ema_decay = 0.5;             ///< `ema-decay`: the decay of `ema`, in (0, 1]
    bool allow_duplicates = false;      ///< `allow-duplicates`: allow two replicas of one expert on one GPU
    double max_balance_loss = 0.01;     ///< `max-balance-loss`: the balance `previous` may cost, in [0, 1)
    double persistence = 0.5;           ///< `persistence`: the share of a load expected to persist, in [0, 1]
    std::string previous;               ///< `previous`: ARCHIVE:PLAN_ID or an SGLang expert-location JSON file
    std::shared_ptr<const DeployedPlan> deployed;  ///< `previous` once read (read_previous)

    /// Every problem of the values, each "<key> = '<value>': <what is wrong>", and of using them
    /// with `policies` (relaxed mode and a previous plan are the balanced policy's). Reads nothing.
    std::vector<std::string> problems(const std::vector<Policy>& policies) const;
    /// Reads `previous` (when set) into `deployed`. Throws UsageError/FormatError naming
    /// `previous`, the file and what is wrong.
    void read_previous();
    /// The options that differ from the defaults, as a canonical JSON object ("{}" when none): the
    /// `policy_options` of the plans of `policy`.
    std::string to_json(Policy policy) const;
};

/// How to plan: topology, policy and the bound the metrics compare against.
struct PlanRequest {
    Topology topology;
    Policy policy = Policy::deepseek;
    std::string policy_options = "{}";  ///< canonical JSON object, stored with the plan
    BoundKind bound_kind = BoundKind::global;
    /// Where to plan. Not part of the plan's identity: every engine and device gives the same plan.
    RebalanceOptions execution;
    PlanOptions options;                ///< mode and the balanced policy's options (`policy` above wins; no `previous`)
    std::int64_t history = 1;           ///< windows planned together (PolicySettings::history)
    std::shared_ptr<const DeployedPlan> deployed;  ///< the plan now deployed, or null

    /// True when each window is planned alone, in the reference policy's own topology: the
    /// engines' rebalance_batch() plans it (and its layer slices) as plan_window() would.
    bool plans_windows_alone() const;
};

/// The request to plan with `policy` for `topology` under `settings` (checked: UsageError as
/// PolicySettings::problems): the policy's options (canonical JSON), and the lower bound its
/// plans are compared with (hierarchical mode: the node-split bound where the topology is
/// hierarchical; global and relaxed: W / G). Every front end (`eplb plan`, `eplb sweep`) builds
/// its requests here, so that the same work gets the same identity and metrics.
PlanRequest plan_request(const Topology& topology, Policy policy, const RebalanceOptions& execution = {},
                         const PolicySettings& settings = {});

/// The plan of window `index` of `windows` (all the windows of `snapshot`, in order) under
/// `request`: from the windows of its history, against its deployed plan (whose rows are the
/// snapshot's MoE layers, or all its model layers), layers [first, first + count) only (count -1:
/// all the rest), with `execution` (choose_execution with the request's policy).
Plan plan_window(const Snapshot& snapshot, const std::vector<Window>& windows, std::int64_t index,
                 const PlanRequest& request, const Execution& execution, std::int64_t first = 0, std::int64_t count = -1);

/// Plans every window of `snapshot` (windows from `options.windowing`) and scores each plan on
/// its own window, on the next window (next-window metrics) and against the previous window's
/// plan (migration). One record per window, in window order. Throws LoadError/TopologyError
/// when the loads do not fit the request.
std::vector<PlanRecord> plan_windows(const Snapshot& snapshot, const ReadOptions& options, const PlanRequest& request,
                                     const std::string& command_line);

/// The record of `plan`, made (elsewhere, e.g. on another MPI rank) from window `index` of
/// `windows`, which are all the windows of `snapshot` under `options`, in order: its identity and
/// source, its metrics on its window and on window index + 1 (when there is one), and the
/// migration from `previous`, the plan of window index - 1 (required when index > 0), or from the
/// request's deployed plan when it has one (the plan every window replaces). This is
/// what plan_windows() stores for each window, so a plan gives the same record wherever it was made.
PlanRecord make_plan_record(const Snapshot& snapshot, const ReadOptions& options, const PlanRequest& request,
                            const std::vector<Window>& windows, std::int64_t index, Plan plan, const Plan* previous,
                            RunInfo run);

/// The identity of window `window` of `snapshot` under `options` and `request`, without planning.
PlanIdentity plan_identity(const Snapshot& snapshot, const ReadOptions& options, const PlanRequest& request,
                           std::int64_t window);

/// An input (or input x topology x policy) that could not be planned.
struct FailureRecord {
    std::string input;     ///< the input file, as given
    std::string topology;  ///< "" when the input itself could not be read
    std::string policy;    ///< likewise
    std::string message;   ///< the one-line error

    friend bool operator==(const FailureRecord& a, const FailureRecord& b) {
        return a.input == b.input && a.topology == b.topology && a.policy == b.policy && a.message == b.message;
    }
    friend bool operator<(const FailureRecord& a, const FailureRecord& b);
};

/// One row of the archive's index: a plan's identity and aggregate metrics.
struct PlanSummary {
    std::string id;
    std::string source;
    std::int64_t window = 0, first_step = 0, last_step = 0, num_windows = 1;
    std::string topology;
    std::string policy;
    std::string policy_options;
    std::int64_t num_layers = 0, num_experts = 0;
    std::string bound_kind;
    Aggregates in_sample;
    std::optional<Aggregates> next;            ///< on the next window, when there is one
    std::optional<MigrationTotals> migration;  ///< from the previous window's plan

    static PlanSummary of(const PlanRecord& record);
};

/// Adds plans to an archive, one durable step at a time.
///
/// Each add() writes its plans as a small self-contained archive in `<path>.parts/`: `<id>.h5`
/// for one plan, `batch-<hash>.h5` for several (under a temporary name, flushed, then renamed:
/// its presence is the completeness marker of every plan in it), and commit() assembles `<path>`
/// from them (and, when appending, from the archive already there) under a temporary name and
/// renames it into place. A killed writer therefore loses at most the plans in flight; `<path>`
/// is never half-written; and a later writer in `append` mode resumes where it stopped,
/// skipping the plans already finished.
///
/// Several processes may add to one session (e.g. the ranks of an MPI sweep, on a file system
/// they share): one starts it (`replace` or `append`) before the others `join` it, every one
/// adds its own plans, and the starter commits once all have finished adding.
class ArchiveWriter {
public:
    enum class Mode {
        replace,  ///< commit() replaces `path` with the plans added in this session
        append,   ///< commit() keeps the plans already in `path`, and resumes an interrupted session
        join,     ///< adds parts to a session another writer started and will commit: reads nothing
                  ///< there; contains() and finished() know only this writer's plans; no commit()
    };

    /// Starts (or joins) a session. Throws UsageError in `replace` mode when `<path>.parts` is
    /// left from an interrupted session (resume it with `append`, or delete the directory), and in
    /// `join` mode when there is no `<path>.parts` to join; IoError when the directory cannot be
    /// created.
    ArchiveWriter(std::string path, Mode mode);
    ~ArchiveWriter();
    ArchiveWriter(ArchiveWriter&&) noexcept;
    ArchiveWriter& operator=(ArchiveWriter&&) noexcept;

    const std::string& path() const;
    /// True when plan `id` is finished: in the archive (append mode) or added in this session.
    bool contains(const std::string& id) const;
    /// The finished plan ids, sorted.
    std::vector<std::string> finished() const;

    /// Stores a finished plan durably; does nothing when `contains(record.id)`.
    void add(const PlanRecord& record);
    /// Stores several finished plans durably, in one part (one flush to disk for all of them);
    /// those already contained are left out.
    void add(const std::vector<PlanRecord>& records);
    /// Stores a failure durably. On commit, failures of an input replace those an earlier session
    /// recorded for it.
    void add_failure(const FailureRecord& failure);

    /// Writes the archive (atomically) and removes `<path>.parts`; throws UsageError in `join` mode.
    void commit();

private:
    struct State;
    std::unique_ptr<State> state_;
};

/// Reads an archive written by ArchiveWriter (or by merge_archives).
class ArchiveReader {
public:
    /// Opens `path`; throws FormatError when it is missing or not an eplb plan archive.
    explicit ArchiveReader(std::string path);
    ~ArchiveReader();
    ArchiveReader(ArchiveReader&&) noexcept;
    ArchiveReader& operator=(ArchiveReader&&) noexcept;

    const std::string& path() const;
    std::int64_t format_version() const;
    /// The index, one row per plan, in id order.
    std::vector<PlanSummary> plans() const;
    std::vector<FailureRecord> failures() const;
    /// The full id of the one plan whose id starts with `id_or_prefix`; throws UsageError naming
    /// the archive when none or several match.
    std::string resolve(const std::string& id_or_prefix) const;
    /// Reads a whole plan back; throws FormatError naming the archive, plan and field.
    PlanRecord read_plan(const std::string& id) const;
    /// The summary stored with plan `id` (its attributes), independent of the index.
    PlanSummary read_plan_summary(const std::string& id) const;
    /// The plan ids stored under /plans, sorted.
    std::vector<std::string> plan_ids() const;

private:
    struct State;
    std::unique_ptr<State> state_;
};

/// Writes `output` (atomically) with every plan and failure of `inputs`. A plan present in several
/// inputs is taken from the first; throws FormatError when two inputs hold different maps for one id.
void merge_archives(const std::vector<std::string>& inputs, const std::string& output);

/// What `verify_archive` found.
struct VerifyReport {
    std::int64_t plans_checked = 0;
    std::vector<std::string> problems;  ///< one line each: "plan <id>: <what differs>"

    bool ok() const { return problems.empty(); }
};

/// Re-checks an archive: every plan's invariants (Plan::validate, shapes against its topology and
/// layer ids, its id against its key), every stored metric recomputed from the stored maps and
/// loads (in-sample, next-window, migration), and the index against the plans. Throws
/// FormatError only when the file is not an archive at all.
VerifyReport verify_archive(const std::string& path);

}  // namespace eplb
