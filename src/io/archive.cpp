// ArchiveWriter, ArchiveReader and merge_archives: sessions of durable parts, assembled atomically.
#include "io/archive_format.hpp"
#include "io/files.hpp"
#include "io/sha256.hpp"

#include <eplb/archive.hpp>
#include <eplb/errors.hpp>

#include <ATen/ops/equal.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

namespace eplb {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPartsSuffix = ".parts";
constexpr const char* kBaseFile = "base";        // "append" or "replace": what commit() starts from
constexpr const char* kFailurePrefix = "failure-";
constexpr const char* kBatchPrefix = "batch-";   // a part holding several plans

bool is_part(const fs::path& p) { return p.extension() == ".h5"; }
bool is_failure_part(const fs::path& p) { return is_part(p) && p.filename().string().rfind(kFailurePrefix, 0) == 0; }
bool is_plan_part(const fs::path& p) { return is_part(p) && !is_failure_part(p); }

std::vector<fs::path> parts_where(const std::string& dir, bool (*keep)(const fs::path&)) {
    std::vector<fs::path> out;
    for (const auto& entry : fs::directory_iterator(dir))
        if (entry.is_regular_file() && keep(entry.path())) out.push_back(entry.path());
    std::sort(out.begin(), out.end());
    return out;
}

std::string parent_of(const std::string& path) {
    const std::string parent = fs::path(path).parent_path().string();
    return parent.empty() ? "." : parent;
}

bool is_batch_part(const fs::path& p) { return p.filename().string().rfind(kBatchPrefix, 0) == 0; }

// The ids of the plans a part holds: its name for a one-plan part, its /plans for a batch.
std::vector<std::string> plan_ids_of_part(const fs::path& part) {
    if (!is_batch_part(part)) return {part.stem().string()};
    return ArchiveReader(part.string()).plan_ids();
}

// Writes `record` as /plans/<id> of `plans`: first to a file of its own (in memory), then copied
// over. HDF5 copies keep their source's layout, and a plan written alone always gets the same
// one, so a plan's group has the same bytes however plans were grouped into parts, and so does
// the archive assembled from them.
void write_plan_of_part(const H5::Group& plans, const PlanRecord& record, const std::string& part) {
    const H5::H5File single = io::create_hdf5_in_memory(part + "/" + record.id);
    const H5::Group single_plans = io::start_archive(single, part);
    io::write_plan_group(single_plans, record, part);
    io::copy_object(single_plans, record.id, plans, part);
}

// An archive of a few plans or of one failure, written under a temporary name and renamed into place.
void write_part(const std::string& part, const std::vector<const PlanRecord*>& plans_in_part, const FailureRecord* failure) {
    const std::string tmp = io::temporary_path(part);
    try {
        {
            const H5::H5File file = io::create_hdf5(tmp);
            const H5::Group plans = io::start_archive(file, part);
            std::vector<PlanSummary> index;
            for (const PlanRecord* plan : plans_in_part) {
                write_plan_of_part(plans, *plan, part);
                index.push_back(PlanSummary::of(*plan));
            }
            io::write_index(file, index, part);
            io::write_failures(file, failure ? std::vector<FailureRecord>{*failure} : std::vector<FailureRecord>{}, part);
        }
        io::durable_rename(tmp, part);
    } catch (...) {
        std::remove(tmp.c_str());
        throw;
    }
}

H5::H5File open_archive(const std::string& path) {
    H5::H5File file = io::open_hdf5_for_reading(path);
    io::require_archive(file, path);
    return file;
}

void require_same_maps(const std::string& first, const std::string& second, const std::string& id) {
    const H5::H5File a = open_archive(first), b = open_archive(second);
    const H5::Group pa = a.openGroup("plans").openGroup(id), pb = b.openGroup("plans").openGroup(id);
    for (const char* name : {"phy2log", "log2phy", "logcnt"})
        if (!at::equal(io::read_tensor(pa, name, first), io::read_tensor(pb, name, second)))
            throw FormatError(second + ": plan " + id + " has a different " + name + " than in " + first +
                              " (same key, different plans: made by different eplb versions?)");
}

// Writes `output` from the plans of `sources` (the first copy of each id wins) and `failures`.
// Plans are copied in id order and the failures sorted, so that the same plans and failures give
// the same bytes however they were split among sources. The index rows of the plans in `known`
// are taken from there (the index of parts this session wrote); the others are read back from
// the copied plans.
void assemble(const std::vector<std::string>& sources, std::vector<FailureRecord> failures, const std::string& output,
              bool check_duplicates, const std::map<std::string, PlanSummary>& known = {}) {
    std::map<std::string, std::string> origin;  // plan id -> the source it is copied from
    for (const std::string& source : sources) {
        const H5::H5File in = open_archive(source);
        for (const std::string& id : io::child_names(in.openGroup("plans"), source)) {
            const auto [seen, added] = origin.emplace(id, source);
            if (!added && check_duplicates) require_same_maps(seen->second, source, id);
        }
    }
    const std::string tmp = io::temporary_path(output);
    try {
        {
            const H5::H5File out = io::create_hdf5(tmp);
            const H5::Group out_plans = io::start_archive(out, output);
            std::vector<PlanSummary> index;
            std::string open_source;
            H5::H5File in;
            for (const auto& [id, source] : origin) {
                if (source != open_source) {
                    in = open_archive(source);
                    open_source = source;
                }
                io::copy_object(in.openGroup("plans"), id, out_plans, output);
                const auto summary = known.find(id);
                index.push_back(summary != known.end() ? summary->second : io::read_plan_summary(out_plans, id, output));
            }
            io::write_index(out, index, output);
            std::sort(failures.begin(), failures.end());
            failures.erase(std::unique(failures.begin(), failures.end()), failures.end());
            io::write_failures(out, failures, output);
        }
        io::durable_rename(tmp, output);
    } catch (...) {
        std::remove(tmp.c_str());
        throw;
    }
}

std::string read_base(const std::string& parts) {
    const std::string file = parts + "/" + kBaseFile;
    if (!fs::exists(file)) return "append";
    const std::string base = io::read_file_bytes(file);
    return base == "replace" ? "replace" : "append";
}

}  // namespace

// ---- ArchiveWriter -------------------------------------------------------------------------------

struct ArchiveWriter::State {
    std::string path;
    std::string parts;
    bool keep_existing = false;  // commit() starts from the archive already at `path`
    bool joined = false;         // Mode::join: another writer started the session and commits it
    std::set<std::string> finished;
};

ArchiveWriter::ArchiveWriter(std::string path, Mode mode) : state_(std::make_unique<State>()) {
    State& s = *state_;
    s.path = std::move(path);
    s.parts = s.path + kPartsSuffix;
    s.joined = mode == Mode::join;
    std::error_code ec;
    const bool resuming = fs::exists(s.parts, ec);
    if (s.joined) {
        if (!fs::is_directory(s.parts, ec))
            throw UsageError(s.parts + ": no session to join (it is started by another writer, e.g. rank 0 of a sweep, "
                                       "and must be on a file system every writer shares)");
        return;
    }
    if (resuming && mode == Mode::replace)
        throw UsageError(s.parts + " holds the plans of an interrupted run: resume it (--append), or delete that "
                                   "directory to start afresh");
    s.keep_existing = resuming ? read_base(s.parts) == "append" : mode == Mode::append;
    // An archive to append to is read before anything is written, so a bad one changes nothing.
    if (s.keep_existing && fs::exists(s.path))
        for (const std::string& id : ArchiveReader(s.path).plan_ids()) s.finished.insert(id);
    if (resuming) {
        for (const auto& entry : fs::directory_iterator(s.parts))  // leftovers of a killed writer
            if (entry.path().string().find(".tmp.") != std::string::npos) fs::remove(entry.path(), ec);
        for (const fs::path& part : parts_where(s.parts, is_plan_part))
            for (const std::string& id : plan_ids_of_part(part)) s.finished.insert(id);
        return;
    }
    if (!fs::create_directories(s.parts, ec) && ec)
        throw IoError(s.parts + ": cannot create the directory: " + ec.message());
    io::write_file_atomically(s.parts + "/" + kBaseFile, s.keep_existing ? "append" : "replace");
    io::sync_directory(parent_of(s.parts));
}

ArchiveWriter::~ArchiveWriter() = default;
ArchiveWriter::ArchiveWriter(ArchiveWriter&&) noexcept = default;
ArchiveWriter& ArchiveWriter::operator=(ArchiveWriter&&) noexcept = default;

const std::string& ArchiveWriter::path() const { return state_->path; }

bool ArchiveWriter::contains(const std::string& id) const { return state_->finished.count(id) > 0; }

std::vector<std::string> ArchiveWriter::finished() const {
    return std::vector<std::string>(state_->finished.begin(), state_->finished.end());
}

void ArchiveWriter::add(const PlanRecord& record) {
    if (contains(record.id)) return;
    write_part(state_->parts + "/" + record.id + ".h5", {&record}, nullptr);
    state_->finished.insert(record.id);
}

void ArchiveWriter::add(const std::vector<PlanRecord>& records) {
    std::vector<const PlanRecord*> fresh;
    std::set<std::string> ids;
    for (const PlanRecord& r : records)
        if (!contains(r.id) && ids.insert(r.id).second) fresh.push_back(&r);
    if (fresh.empty()) return;
    if (fresh.size() == 1) return add(*fresh.front());
    std::string all_ids;
    for (const std::string& id : ids) all_ids += id;
    write_part(state_->parts + "/" + kBatchPrefix + io::sha256_hex(all_ids).substr(0, 16) + ".h5", fresh, nullptr);
    state_->finished.insert(ids.begin(), ids.end());
}

void ArchiveWriter::add_failure(const FailureRecord& failure) {
    const std::string name = io::sha256_hex(failure.input + "\n" + failure.topology + "\n" + failure.policy).substr(0, 16);
    write_part(state_->parts + "/" + kFailurePrefix + name + ".h5", {}, &failure);
}

void ArchiveWriter::commit() {
    const State& s = *state_;
    if (s.joined) throw UsageError(s.parts + ": a writer that joined a session cannot commit it");
    std::vector<std::string> sources;
    const bool existing = s.keep_existing && fs::exists(s.path);
    if (existing) sources.push_back(s.path);
    std::set<std::string> inputs_seen;  // inputs this session planned or failed on
    std::map<std::string, PlanSummary> summaries;  // of the plans in parts, from their indexes
    for (const fs::path& part : parts_where(s.parts, is_plan_part)) {
        sources.push_back(part.string());
        for (PlanSummary& summary : ArchiveReader(part.string()).plans()) {
            inputs_seen.insert(summary.source);
            summaries.emplace(summary.id, std::move(summary));
        }
    }
    std::vector<FailureRecord> failures;
    for (const fs::path& part : parts_where(s.parts, is_failure_part))
        for (const FailureRecord& f : ArchiveReader(part.string()).failures()) {
            failures.push_back(f);
            inputs_seen.insert(f.input);
        }
    if (existing)
        for (const FailureRecord& f : ArchiveReader(s.path).failures())
            if (!inputs_seen.count(f.input)) failures.push_back(f);
    assemble(sources, std::move(failures), s.path, /*check_duplicates=*/false, summaries);
    std::error_code ec;
    fs::remove_all(s.parts, ec);
    if (ec) throw IoError(s.parts + ": cannot remove the directory after writing " + s.path + ": " + ec.message());
    io::sync_directory(parent_of(s.path));
}

// ---- ArchiveReader -------------------------------------------------------------------------------

struct ArchiveReader::State {
    std::string path;
    H5::H5File file;
};

ArchiveReader::ArchiveReader(std::string path) : state_(std::make_unique<State>()) {
    state_->path = std::move(path);
    state_->file = open_archive(state_->path);
}

ArchiveReader::~ArchiveReader() = default;
ArchiveReader::ArchiveReader(ArchiveReader&&) noexcept = default;
ArchiveReader& ArchiveReader::operator=(ArchiveReader&&) noexcept = default;

const std::string& ArchiveReader::path() const { return state_->path; }

std::int64_t ArchiveReader::format_version() const {
    return io::read_int_attribute(state_->file, "format_version", state_->path);
}

std::vector<PlanSummary> ArchiveReader::plans() const { return io::read_index(state_->file, state_->path); }

std::vector<FailureRecord> ArchiveReader::failures() const { return io::read_failures(state_->file, state_->path); }

std::vector<std::string> ArchiveReader::plan_ids() const {
    const H5::Group plans = io::hdf5_call(state_->path, "opening /plans", [&] { return state_->file.openGroup("plans"); });
    std::vector<std::string> ids = io::child_names(plans, state_->path);
    std::sort(ids.begin(), ids.end());
    return ids;
}

std::string ArchiveReader::resolve(const std::string& id_or_prefix) const {
    std::vector<std::string> matches;
    for (const std::string& id : plan_ids()) {
        if (id == id_or_prefix) return id;
        if (!id_or_prefix.empty() && id.rfind(id_or_prefix, 0) == 0) matches.push_back(id);
    }
    if (matches.size() == 1) return matches.front();
    if (matches.empty())
        throw UsageError(state_->path + ": no plan '" + id_or_prefix + "' (eplb inspect " + state_->path +
                         " lists the plans)");
    throw UsageError(state_->path + ": plan prefix '" + id_or_prefix + "' is ambiguous: it matches " +
                     std::to_string(matches.size()) + " plans (" + matches[0] + ", " + matches[1] + ", ...)");
}

PlanRecord ArchiveReader::read_plan(const std::string& id) const {
    return io::read_plan_group(state_->file.openGroup("plans"), id, state_->path);
}

PlanSummary ArchiveReader::read_plan_summary(const std::string& id) const {
    return io::read_plan_summary(state_->file.openGroup("plans"), id, state_->path);
}

// ---- merge -----------------------------------------------------------------------------------------

void merge_archives(const std::vector<std::string>& inputs, const std::string& output) {
    if (inputs.empty()) throw UsageError("merge needs at least one archive");
    std::vector<FailureRecord> failures;
    for (const std::string& input : inputs)
        for (const FailureRecord& f : ArchiveReader(input).failures()) failures.push_back(f);
    assemble(inputs, std::move(failures), output, /*check_duplicates=*/true);
}

}  // namespace eplb
