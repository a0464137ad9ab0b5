// The plan archive: records, round trips, determinism, crash safety, resume, merge and verify.
#include "io/archive_format.hpp"
#include "io/hdf5_file.hpp"
#include "support/golden.hpp"
#include "support/temp_dir.hpp"

#include <eplb/archive.hpp>
#include <eplb/errors.hpp>

#include <ATen/ops/equal.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

namespace eplb {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

const Topology kTopology{24, 4, 2, 4};

ReadOptions each_step() {
    ReadOptions o;
    o.windowing = Windowing::parse("each");
    return o;
}

std::vector<PlanRecord> fixture_records(Policy policy = Policy::deepseek) {
    const ReadOptions options = each_step();
    const Snapshot s = read_snapshot(test::test_data("snapshots/recorder.pt"), options);
    return plan_windows(s, options, plan_request(kTopology, policy), "eplb plan test");
}

void expect_same_metrics(const PlanMetrics& a, const PlanMetrics& b) {
    EXPECT_EQ(a.total_load, b.total_load);
    EXPECT_EQ(a.max_gpu_load, b.max_gpu_load);
    EXPECT_EQ(a.balancedness, b.balancedness);
    EXPECT_EQ(a.lower_bound, b.lower_bound);
    EXPECT_EQ(a.gap, b.gap);
    EXPECT_EQ(a.duplicates, b.duplicates);
    EXPECT_EQ(a.aggregate_balancedness, b.aggregate_balancedness);
    EXPECT_EQ(a.bound_ratio, b.bound_ratio);
    EXPECT_EQ(a.aggregate_gap, b.aggregate_gap);
    EXPECT_EQ(a.bound_kind, b.bound_kind);
}

void expect_same_record(const PlanRecord& a, const PlanRecord& b) {
    EXPECT_EQ(a.id, b.id);
    EXPECT_EQ(a.key, b.key);
    EXPECT_EQ(a.source.path, b.source.path);
    EXPECT_EQ(a.source.sha256, b.source.sha256);
    EXPECT_EQ(a.source.format, b.source.format);
    EXPECT_EQ(a.source.model_layers, b.source.model_layers);
    EXPECT_EQ(a.source.read_options, b.source.read_options);
    EXPECT_EQ(a.source.num_windows, b.source.num_windows);
    EXPECT_EQ(a.window.index, b.window.index);
    EXPECT_TRUE(at::equal(a.window.loads, b.window.loads));
    ASSERT_EQ(a.next_window.has_value(), b.next_window.has_value());
    if (a.next_window) {
        EXPECT_TRUE(at::equal(a.next_window->loads, b.next_window->loads));
    }
    EXPECT_EQ(a.topology, b.topology);
    EXPECT_EQ(a.policy, b.policy);
    EXPECT_EQ(a.policy_options, b.policy_options);
    EXPECT_EQ(a.layer_ids, b.layer_ids);
    EXPECT_TRUE(at::equal(a.plan.phy2log, b.plan.phy2log));
    EXPECT_TRUE(at::equal(a.plan.log2phy, b.plan.log2phy));
    EXPECT_TRUE(at::equal(a.plan.logcnt, b.plan.logcnt));
    expect_same_metrics(a.metrics, b.metrics);
    ASSERT_EQ(a.next_metrics.has_value(), b.next_metrics.has_value());
    if (a.next_metrics) expect_same_metrics(*a.next_metrics, *b.next_metrics);
    EXPECT_EQ(a.previous_plan, b.previous_plan);
    ASSERT_EQ(a.migration.has_value(), b.migration.has_value());
    if (a.migration) {
        EXPECT_EQ(a.migration->moved_slots, b.migration->moved_slots);
    }
    EXPECT_EQ(a.eplb_version, b.eplb_version);
    EXPECT_EQ(a.run.command_line, b.run.command_line);
    EXPECT_EQ(a.run.created, b.run.created);
}

void write_archive(const std::string& path, const std::vector<PlanRecord>& records,
                   const std::vector<FailureRecord>& failures = {}) {
    ArchiveWriter w(path, ArchiveWriter::Mode::replace);
    for (const PlanRecord& r : records) w.add(r);
    for (const FailureRecord& f : failures) w.add_failure(f);
    w.commit();
}

std::vector<std::string> ids_of(const std::vector<PlanSummary>& plans) {
    std::vector<std::string> ids;
    for (const PlanSummary& p : plans) ids.push_back(p.id);
    return ids;
}

TEST(PlanWindows, ScoresEachPlanOnTheNextWindowAndAgainstThePrevious) {
    const std::vector<PlanRecord> r = fixture_records();
    ASSERT_EQ(r.size(), 3u);
    for (const PlanRecord& x : r) EXPECT_NO_THROW(x.plan.validate());
    ASSERT_TRUE(r[0].next_metrics.has_value());
    expect_same_metrics(*r[0].next_metrics, evaluate(r[0].plan, r[1].window.loads, kTopology, BoundKind::hierarchical));
    EXPECT_FALSE(r[2].next_metrics.has_value());
    EXPECT_FALSE(r[0].migration.has_value());
    ASSERT_TRUE(r[2].migration.has_value());
    EXPECT_EQ(r[2].migration->moved_slots, migration(r[1].plan, r[2].plan, kTopology).moved_slots);
    EXPECT_EQ(r[2].previous_plan, r[1].id);
}

TEST(PlanWindows, IdsComeFromWhatThePlanIsMadeOf) {
    const std::vector<PlanRecord> a = fixture_records(), b = fixture_records();
    const std::vector<PlanRecord> seed = fixture_records(Policy::seed);
    for (std::size_t i = 0; i < a.size(); ++i) {
        EXPECT_EQ(a[i].id, b[i].id);
        EXPECT_EQ(a[i].id, a[i].identity().id());
        EXPECT_EQ(a[i].id.size(), 16u);
        EXPECT_NE(a[i].id, seed[i].id);
    }
    EXPECT_NE(a[0].id, a[1].id);
    EXPECT_NE(a[0].key.find("window=0;topology=24/4/2/4;policy=deepseek;policy_options={}"), std::string::npos) << a[0].key;
}

TEST(Archive, RoundTripsEveryField) {
    TempDir dir;
    const std::vector<PlanRecord> records = fixture_records();
    write_archive(dir / "a.h5", records, {{"bad.json", "", "", "bad.json: the file is empty"}});
    EXPECT_FALSE(fs::exists(dir / "a.h5.parts"));
    const ArchiveReader archive(dir / "a.h5");
    EXPECT_EQ(archive.format_version(), io::kArchiveFormatVersion);
    for (const PlanRecord& r : records) expect_same_record(archive.read_plan(r.id), r);
    const std::vector<PlanSummary> index = archive.plans();
    ASSERT_EQ(index.size(), 3u);
    EXPECT_TRUE(std::is_sorted(index.begin(), index.end(), [](auto& x, auto& y) { return x.id < y.id; }));
    for (const PlanSummary& row : index) {
        const auto r = std::find_if(records.begin(), records.end(), [&](const PlanRecord& x) { return x.id == row.id; });
        const PlanSummary expected = PlanSummary::of(*r);
        EXPECT_EQ(row.in_sample.balancedness, expected.in_sample.balancedness);
        EXPECT_EQ(row.next.has_value(), expected.next.has_value());
        EXPECT_EQ(row.migration.has_value(), expected.migration.has_value());
        EXPECT_EQ(row.topology, "24/4/2/4");
    }
    ASSERT_EQ(archive.failures().size(), 1u);
    EXPECT_EQ(archive.failures()[0].message, "bad.json: the file is empty");
    EXPECT_TRUE(verify_archive(dir / "a.h5").ok());
}

TEST(Archive, BytesDoNotDependOnTheOrderPlansWereAdded) {
    TempDir dir;
    std::vector<PlanRecord> records = fixture_records();
    write_archive(dir / "forward.h5", records);
    std::reverse(records.begin(), records.end());
    write_archive(dir / "backward.h5", records);
    EXPECT_EQ(test::read_text(dir / "forward.h5"), test::read_text(dir / "backward.h5"));
}

TEST(Archive, KilledWriterLeavesTheOldArchiveAndAResumableSession) {
    TempDir dir;
    const std::vector<PlanRecord> records = fixture_records();
    write_archive(dir / "a.h5", {records[0]});
    const std::string before = test::read_text(dir / "a.h5");
    {
        ArchiveWriter w(dir / "a.h5", ArchiveWriter::Mode::append);
        w.add(records[1]);
        // Killed here: no commit, and a plan half-written under its temporary name.
        test::write_text(dir / "a.h5.parts/deadbeef.h5.tmp.12345", "half a plan");
    }
    EXPECT_EQ(test::read_text(dir / "a.h5"), before);
    EXPECT_THROW(ArchiveWriter(dir / "a.h5", ArchiveWriter::Mode::replace), UsageError);
    ArchiveWriter resumed(dir / "a.h5", ArchiveWriter::Mode::append);
    EXPECT_TRUE(resumed.contains(records[0].id));
    EXPECT_TRUE(resumed.contains(records[1].id));
    EXPECT_FALSE(resumed.contains(records[2].id));
    resumed.add(records[2]);
    resumed.commit();
    EXPECT_FALSE(fs::exists(dir / "a.h5.parts"));
    std::vector<std::string> expected{records[0].id, records[1].id, records[2].id};
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(ids_of(ArchiveReader(dir / "a.h5").plans()), expected);
    EXPECT_TRUE(verify_archive(dir / "a.h5").ok());
}

TEST(PlanWindows, ARecordMadeFromAPlanMadeElsewhereIsTheSame) {
    const ReadOptions options = each_step();
    const Snapshot s = read_snapshot(test::test_data("snapshots/recorder.pt"), options);
    const PlanRequest request = plan_request(kTopology, Policy::seed);
    const std::vector<PlanRecord> whole = plan_windows(s, options, request, "eplb plan test");
    const std::vector<Window> windows = make_windows(s, options.windowing);
    // Window 2 alone, given the plan of window 1: as plan_windows made it.
    const Plan plan = rebalance(windows[2].loads, kTopology, Policy::seed);
    const PlanRecord r = make_plan_record(s, options, request, windows, 2, plan, &whole[1].plan, whole[2].run);
    expect_same_record(r, whole[2]);
    EXPECT_THROW(make_plan_record(s, options, request, windows, 2, plan, nullptr, {}), UsageError);
    EXPECT_THROW(make_plan_record(s, options, request, windows, 3, plan, &plan, {}), UsageError);
}

TEST(Archive, PlansAddedTogetherShareOnePartAndGiveTheSameArchive) {
    TempDir dir;
    const std::vector<PlanRecord> records = fixture_records();
    write_archive(dir / "one_by_one.h5", records);
    {
        ArchiveWriter w(dir / "batched.h5", ArchiveWriter::Mode::replace);
        w.add(std::vector<PlanRecord>{records[0], records[2]});
        std::size_t parts = 0;
        for (const auto& entry : fs::directory_iterator(dir / "batched.h5.parts")) parts += entry.path().extension() == ".h5";
        EXPECT_EQ(parts, 1u);
        EXPECT_TRUE(w.contains(records[0].id));
        EXPECT_TRUE(w.contains(records[2].id));
        // Killed here; the resumed session finds both plans of the batch.
    }
    ArchiveWriter resumed(dir / "batched.h5", ArchiveWriter::Mode::append);
    EXPECT_TRUE(resumed.contains(records[0].id));
    EXPECT_TRUE(resumed.contains(records[2].id));
    EXPECT_FALSE(resumed.contains(records[1].id));
    resumed.add(std::vector<PlanRecord>{records[0], records[1]});  // records[0] is left out: already there
    resumed.commit();
    EXPECT_EQ(test::read_text(dir / "batched.h5"), test::read_text(dir / "one_by_one.h5"));
}

TEST(Archive, WritersThatJoinASessionAddPartsTheStarterCommits) {
    TempDir dir;
    const std::vector<PlanRecord> records = fixture_records();
    EXPECT_THROW(ArchiveWriter(dir / "a.h5", ArchiveWriter::Mode::join), UsageError);
    ArchiveWriter starter(dir / "a.h5", ArchiveWriter::Mode::replace);
    ArchiveWriter joined(dir / "a.h5", ArchiveWriter::Mode::join);
    starter.add(records[0]);
    EXPECT_FALSE(joined.contains(records[0].id));
    joined.add(std::vector<PlanRecord>{records[1], records[2]});
    joined.add_failure({"bad.json", "", "", "bad.json: the file is empty"});
    EXPECT_THROW(joined.commit(), UsageError);
    starter.commit();
    const ArchiveReader archive(dir / "a.h5");
    EXPECT_EQ(archive.plans().size(), 3u);
    EXPECT_EQ(archive.failures().size(), 1u);
    EXPECT_TRUE(verify_archive(dir / "a.h5").ok());
}

TEST(Archive, ReplaceKeepsTheOldArchiveUntilCommit) {
    TempDir dir;
    const std::vector<PlanRecord> records = fixture_records();
    write_archive(dir / "a.h5", {records[0]});
    {
        ArchiveWriter w(dir / "a.h5", ArchiveWriter::Mode::replace);
        EXPECT_FALSE(w.contains(records[0].id));
        w.add(records[1]);
        EXPECT_EQ(ids_of(ArchiveReader(dir / "a.h5").plans()), std::vector<std::string>{records[0].id});
        w.commit();
    }
    EXPECT_EQ(ids_of(ArchiveReader(dir / "a.h5").plans()), std::vector<std::string>{records[1].id});
}

TEST(Archive, AppendingToAnotherKindOfFileChangesNothing) {
    TempDir dir;
    test::write_text(dir / "a.h5", "not an archive");
    EXPECT_THROW(ArchiveWriter(dir / "a.h5", ArchiveWriter::Mode::append), FormatError);
    EXPECT_FALSE(fs::exists(dir / "a.h5.parts"));
    EXPECT_EQ(test::read_text(dir / "a.h5"), "not an archive");
}

TEST(Archive, AppendingReplacesTheFailuresOfInputsPlannedAgain) {
    TempDir dir;
    const std::vector<PlanRecord> records = fixture_records();
    const std::string input = records[0].source.path;
    write_archive(dir / "a.h5", {}, {{input, "", "", "was broken"}, {"other.json", "", "", "still broken"}});
    ArchiveWriter w(dir / "a.h5", ArchiveWriter::Mode::append);
    w.add(records[0]);
    w.commit();
    const std::vector<FailureRecord> failures = ArchiveReader(dir / "a.h5").failures();
    ASSERT_EQ(failures.size(), 1u);
    EXPECT_EQ(failures[0].input, "other.json");
}

TEST(Archive, MergeKeepsEachPlanOnceAndRejectsConflicts) {
    TempDir dir;
    const std::vector<PlanRecord> r = fixture_records();
    write_archive(dir / "a.h5", {r[0], r[1]}, {{"x.json", "", "", "x"}});
    write_archive(dir / "b.h5", {r[1], r[2]}, {{"y.json", "", "", "y"}});
    merge_archives({dir / "a.h5", dir / "b.h5"}, dir / "m.h5");
    const ArchiveReader merged(dir / "m.h5");
    EXPECT_EQ(merged.plans().size(), 3u);
    EXPECT_EQ(merged.failures().size(), 2u);
    EXPECT_TRUE(verify_archive(dir / "m.h5").ok());
    // The same plans and failures give the same bytes, however they were split.
    write_archive(dir / "all.h5", r, {{"y.json", "", "", "y"}, {"x.json", "", "", "x"}});
    EXPECT_EQ(test::read_text(dir / "m.h5"), test::read_text(dir / "all.h5"));

    PlanRecord changed = r[1];
    changed.plan.phy2log = changed.plan.phy2log.clone();
    changed.plan.phy2log[0][0] = (changed.plan.phy2log[0][0].item<std::int64_t>() + 1) % 16;
    write_archive(dir / "c.h5", {changed});
    try {
        merge_archives({dir / "a.h5", dir / "c.h5"}, dir / "bad.h5");
        FAIL() << "conflicting plans merged";
    } catch (const FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("different phy2log"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(dir / "bad.h5"));
}

// Opens plan `id` of `path` for writing, to tamper with it.
template <typename F>
void tamper(const std::string& path, const std::string& id, F f) {
    H5::H5File file(path, H5F_ACC_RDWR);
    f(file.openGroup("plans").openGroup(id));
}

TEST(Verify, CatchesEveryKindOfTampering) {
    TempDir dir;
    const std::vector<PlanRecord> r = fixture_records();
    const std::string id = r[1].id;
    auto fresh = [&](const std::string& name) {
        write_archive(dir / name, r);
        return dir / name;
    };
    auto problems_of = [&](const std::string& path) {
        std::string all;
        for (const std::string& p : verify_archive(path).problems) all += p + "\n";
        return all;
    };

    const std::string agg = fresh("agg.h5");
    tamper(agg, id, [](const H5::Group& g) { io::write_attribute(g, "balancedness", 0.5, "agg"); });
    EXPECT_NE(problems_of(agg).find("plan " + id + ": balancedness = 0.5 stored"), std::string::npos) << problems_of(agg);

    const std::string map = fresh("map.h5");
    tamper(map, id, [&](const H5::Group& g) {
        at::Tensor p2l = r[1].plan.phy2log.clone();
        p2l[0][0] = (p2l[0][0].item<std::int64_t>() + 1) % 16;  // the counts no longer match
        g.unlink("phy2log");
        io::write_tensor(g, "phy2log", p2l, "map");
    });
    EXPECT_NE(problems_of(map).find("plan " + id + ": layer"), std::string::npos) << problems_of(map);

    const std::string loads = fresh("loads.h5");
    tamper(loads, id, [&](const H5::Group& g) {
        g.unlink("next_loads");
        io::write_tensor(g, "next_loads", r[1].next_window->loads.mul(2).add(1), "loads");
    });
    EXPECT_NE(problems_of(loads).find("metrics.next_total_load"), std::string::npos) << problems_of(loads);

    const std::string index = fresh("index.h5");
    {
        H5::H5File file(index, H5F_ACC_RDWR);
        file.unlink("index");
        io::write_index(file, {PlanSummary::of(r[0])}, index);
    }
    const std::string index_problems = problems_of(index);
    EXPECT_NE(index_problems.find("missing from the index"), std::string::npos) << index_problems;

    EXPECT_TRUE(verify_archive(fresh("clean.h5")).ok());
}

TEST(ArchiveReader, ResolvesPrefixesAndRejectsOtherFiles) {
    TempDir dir;
    const std::vector<PlanRecord> r = fixture_records();
    write_archive(dir / "a.h5", r);
    const ArchiveReader archive(dir / "a.h5");
    EXPECT_EQ(archive.resolve(r[0].id), r[0].id);
    EXPECT_EQ(archive.resolve(r[0].id.substr(0, 12)), r[0].id);
    EXPECT_THROW(archive.resolve("zzzz"), UsageError);
    EXPECT_THROW(archive.resolve(""), UsageError);
    write_hdf5_snapshot(read_snapshot(test::test_data("snapshots/recorder.pt")), dir / "snapshot.h5");
    try {
        ArchiveReader not_archive(dir / "snapshot.h5");
        FAIL() << "a snapshot opened as an archive";
    } catch (const FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("not an eplb plan archive"), std::string::npos) << e.what();
    }
}

TEST(ArchiveReader, RefusesOtherFormatVersionsSayingWhy) {
    TempDir dir;
    write_archive(dir / "a.h5", fixture_records());
    for (const std::int64_t version : {io::kArchiveFormatVersion - 1, io::kArchiveFormatVersion + 1}) {
        {
            H5::H5File file(dir / "a.h5", H5F_ACC_RDWR);
            file.removeAttr("format_version");
            io::write_attribute(file, "format_version", version, "a.h5");
        }
        try {
            ArchiveReader old(dir / "a.h5");
            FAIL() << "format_version " << version << " was read";
        } catch (const FormatError& e) {
            const std::string what = e.what();
            EXPECT_NE(what.find("format_version " + std::to_string(version) + " (written by eplb "), std::string::npos) << what;
            EXPECT_NE(what.find(version < io::kArchiveFormatVersion ? "plan the inputs again" : "at least as new"),
                      std::string::npos)
                << what;
        }
    }
}

}  // namespace
}  // namespace eplb
