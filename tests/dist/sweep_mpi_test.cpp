// The sweep on the MPI ranks this program runs on (ctest runs it with 1, 2 and 4 ranks): work
// sharing, layer slices, and whole sweeps whose archives must equal, byte for byte, the archive
// the serial API makes of the same work, whatever the number of ranks.
#include "dist/mpi_util.hpp"
#include "dist/plan_slices.hpp"
#include "dist/work.hpp"
#include "support/archive_compare.hpp"
#include "support/temp_dir.hpp"

#include <eplb/archive.hpp>
#include <eplb/errors.hpp>
#include <eplb/sweep.hpp>

#include <ATen/ops/empty.h>
#include <ATen/ops/equal.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <numeric>

namespace eplb {
namespace {

namespace fs = std::filesystem;

int world_rank() { return dist::rank_of(MPI_COMM_WORLD); }
int world_size() { return dist::size_of(MPI_COMM_WORLD); }

// A directory every rank sees: rank 0 makes (and at the end removes) it and tells the others.
class SharedDir {
public:
    SharedDir() {
        if (world_rank() == 0) owned_ = std::make_unique<test::TempDir>();
        path_ = dist::broadcast_string(owned_ ? owned_->path() : "", 0, MPI_COMM_WORLD);
    }
    ~SharedDir() { MPI_Barrier(MPI_COMM_WORLD); }
    std::string operator/(const std::string& name) const { return (fs::path(path_) / name).string(); }

private:
    std::unique_ptr<test::TempDir> owned_;
    std::string path_;
};

// Skewed loads [T, L, E], different in every layer, so that replica counts (deepseek's log2phy
// width) differ between layers.
at::Tensor skewed_counts(std::int64_t steps, std::int64_t layers, std::int64_t experts, std::uint64_t seed) {
    at::Tensor c = at::empty({steps, layers, experts}, at::TensorOptions().dtype(at::kDouble));
    double* p = c.data_ptr<double>();
    std::uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
    for (std::int64_t i = 0; i < c.numel(); ++i) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        const double u = static_cast<double>(x % 1000003) / 1000003.0;
        p[i] = std::floor(1 + 5000 * u * u * u * u * ((i / experts) % 5 + 1));
    }
    return c;
}

// Rank 0 writes the inputs of a sweep; every rank waits for them.
void write_inputs(const SharedDir& dir) {
    if (world_rank() == 0) {
        write_hdf5_snapshot(make_snapshot(dir / "a.h5", "test", skewed_counts(4, 6, 32, 1)), dir / "a.h5");
        write_hdf5_snapshot(make_snapshot(dir / "b.h5", "test", skewed_counts(3, 5, 32, 2)), dir / "b.h5");
        write_hdf5_snapshot(make_snapshot(dir / "wide.h5", "test", skewed_counts(2, 4, 64, 3)), dir / "wide.h5");
        test::write_text(dir / "broken.json", "{\"logical_count\": [[1, 2], [3]]}");
    }
    MPI_Barrier(MPI_COMM_WORLD);
}

SweepConfig base_config(const SharedDir& dir) {
    SweepConfig c;
    c.inputs = {SweepInput{"alpha/one", dir / "a.h5"}, SweepInput{"beta", dir / "b.h5"},
                SweepInput{"gamma", dir / "wide.h5"}, SweepInput{"broken", dir / "broken.json"}};
    c.topologies = {"72/4/2/8", "40/4/4/8"};
    c.policies = {"all"};
    c.windows = "each";
    c.output = dir / "sweep.h5";
    // $EPLB_TEST_DEVICE (e.g. cuda: every rank plans on the GPU) when set, else the default.
    if (const char* device = std::getenv("EPLB_TEST_DEVICE"); device && *device) c.device = device;
    c.command_line = "sweep test";
    c.progress = "never";
    c.checkpoint_seconds = 0.05;
    return c;
}

// What the serial API (plan_windows, one ArchiveWriter) makes of the same configuration: the
// archive every sweep must equal. Rank 0 writes it.
void write_reference(const SweepConfig& config, const std::string& path) {
    if (world_rank() != 0) return;
    const SweepSetup setup = validate_sweep(config);
    ASSERT_TRUE(setup.ok());
    ArchiveWriter writer(path, ArchiveWriter::Mode::replace);
    for (const SweepFile& file : setup.files) {
        Snapshot s;
        try {
            s = read_snapshot(file.path, setup.read_options);
        } catch (const Error& e) {
            writer.add_failure(FailureRecord{file.path, "", "", e.what()});
            continue;
        }
        const SweepInput named{file.name, ""};
        s.model = named.model();
        s.checkpoint = named.checkpoint();
        for (const Topology& t : setup.topologies)
            for (const Policy p : setup.policies) {
                try {
                    const PlanRequest request = plan_request(t, p, {}, setup.policy_settings);
                    for (const PlanRecord& r : plan_windows(s, setup.read_options, request, "reference"))
                        writer.add(r);
                } catch (const Error& e) {
                    writer.add_failure(FailureRecord{file.path, t.to_string(), to_string(p), "-"});
                }
            }
    }
    writer.commit();
}

std::string differences(const std::string& a, const std::string& b) {
    std::string all;
    for (const std::string& d : test::archive_differences(a, b)) all += d + "\n";
    return all;
}

std::vector<std::string> failed_inputs(const std::string& archive) {
    std::vector<std::string> out;
    for (const FailureRecord& f : ArchiveReader(archive).failures())
        out.push_back(fs::path(f.input).filename().string() + "|" + f.topology + "|" + f.policy);
    return out;
}

// ---- work sharing -----------------------------------------------------------------------------------

TEST(WorkSharing, ContiguousRangesAreOrderedNonEmptyAndBalanced) {
    const std::vector<std::int64_t> costs{5, 1, 1, 1, 9, 2, 2, 2, 2, 3, 1, 7};
    for (int parts = 1; parts <= 12; ++parts) {
        const std::vector<std::size_t> b = dist::contiguous_ranges(costs, parts);
        ASSERT_EQ(b.size(), static_cast<std::size_t>(parts) + 1);
        EXPECT_EQ(b.front(), 0u);
        EXPECT_EQ(b.back(), costs.size());
        const std::int64_t total = std::accumulate(costs.begin(), costs.end(), std::int64_t{0});
        for (int r = 0; r < parts; ++r) {
            ASSERT_LT(b[r], b[r + 1]) << parts << " parts";
            const std::int64_t cost = std::accumulate(costs.begin() + b[r], costs.begin() + b[r + 1], std::int64_t{0});
            EXPECT_LE(cost, total / parts + 2 * 9) << "range " << r << " of " << parts;  // ideal + two largest items
        }
    }
    EXPECT_EQ(dist::contiguous_ranges({4, 4, 4, 4}, 2), (std::vector<std::size_t>{0, 2, 4}));
    EXPECT_EQ(dist::contiguous_ranges({1, 1}, 4), (std::vector<std::size_t>{0, 0, 1, 1, 2}));
}

TEST(WorkSharing, RanksPerItemFollowCostAndLayers) {
    std::vector<dist::WorkItem> items(3);
    items[0].cost = 300, items[0].num_layers = 58;
    items[1].cost = 100, items[1].num_layers = 58;
    items[2].cost = 300, items[2].num_layers = 2;
    EXPECT_EQ(dist::ranks_per_item(items, 3), (std::vector<int>{1, 1, 1}));
    EXPECT_EQ(dist::ranks_per_item(items, 5), (std::vector<int>{2, 1, 2}));
    EXPECT_EQ(dist::ranks_per_item(items, 8), (std::vector<int>{4, 2, 2}));  // item 2 has only 2 layers
    std::int64_t covered = 0;
    for (int m = 0; m < 4; ++m) {
        const dist::LayerSlice s = dist::layer_slice(58, 4, m);
        EXPECT_EQ(s.first, covered);
        covered += s.count;
    }
    EXPECT_EQ(covered, 58);
}

// ---- layer slices ------------------------------------------------------------------------------------

TEST(LayerSlices, JoinedSlicesAreThePlanOfAllLayers) {
    const at::Tensor loads = skewed_counts(1, 9, 32, 7)[0];
    const Topology t{48, 4, 2, 8};
    for (const Policy policy : all_policies()) {
        const Plan whole = rebalance(loads, t, policy);
        std::vector<Plan> slices;
        std::set<std::int64_t> widths;
        for (const auto& [first, count] : std::vector<std::pair<int, int>>{{0, 2}, {2, 4}, {6, 3}}) {
            slices.push_back(rebalance(loads.narrow(0, first, count), t, policy));
            widths.insert(slices.back().log2phy.size(2));
        }
        if (policy == Policy::deepseek) {
            EXPECT_GT(widths.size(), 1u) << "the slices should need different widths";
        }
        const Plan joined = dist::join_layer_slices(slices);
        EXPECT_TRUE(at::equal(joined.phy2log, whole.phy2log)) << to_string(policy);
        EXPECT_TRUE(at::equal(joined.log2phy, whole.log2phy)) << to_string(policy);
        EXPECT_TRUE(at::equal(joined.logcnt, whole.logcnt)) << to_string(policy);
        // And through the bytes ranks exchange.
        const dist::DecodedPlans sent = dist::decode_plans(dist::encode_plans(slices));
        ASSERT_TRUE(sent.ok());
        EXPECT_TRUE(at::equal(dist::join_layer_slices(sent.plans).log2phy, whole.log2phy));
    }
    EXPECT_EQ(dist::decode_plans(dist::encode_error("x.json: broken")).error, "x.json: broken");
}

// ---- whole sweeps ------------------------------------------------------------------------------------

TEST(Sweep, ArchiveEqualsTheSerialOneByteForByte) {
    SharedDir dir;
    write_inputs(dir);
    const SweepConfig config = base_config(dir);
    write_reference(config, dir / "reference.h5");
    const SweepSummary summary = run_sweep(config);
    // wide.h5 has 64 experts, more than 40 slots; broken.json cannot be read.
    EXPECT_EQ(summary.exit_code, sweep_exit::partial);
    if (world_rank() != 0) return;
    const std::int64_t policies = static_cast<std::int64_t>(all_policies().size());
    EXPECT_EQ(summary.items, (4 + 3) * 2 * policies + 2 * 1 * policies);
    EXPECT_EQ(summary.planned, summary.items);
    EXPECT_EQ(summary.failures, 1 + policies);
    EXPECT_EQ(summary.plans_in_archive, summary.items);
    EXPECT_EQ(summary.rank_busy_seconds.size(), static_cast<std::size_t>(world_size()));
    EXPECT_FALSE(fs::exists(dir / "sweep.h5.parts"));
    EXPECT_TRUE(verify_archive(dir / "sweep.h5").ok());
    // Everything but the failures' messages (the reference's are its own) is the same.
    std::string other_differences;
    for (const std::string& d : test::archive_differences(dir / "sweep.h5", dir / "reference.h5"))
        if (d != "failures: column message differs") other_differences += d + "\n";
    EXPECT_EQ(other_differences, "");
    EXPECT_EQ(failed_inputs(dir / "sweep.h5"), failed_inputs(dir / "reference.h5"));
}

TEST(Sweep, FewerItemsThanRanksSplitLayersAndGiveTheSamePlans) {
    SharedDir dir;
    write_inputs(dir);
    SweepConfig config = base_config(dir);
    config.inputs = {SweepInput{"alpha/one", dir / "a.h5"}};
    config.topologies = {"48/4/2/8"};
    // One item, whose 6 layers are split among all ranks; then two windows of two steps, each on
    // half of the ranks, the second needing the plan of the first for its migration metrics. The
    // balanced policy plans the second window from both (history 2), in relaxed mode.
    for (const char* policy : {"deepseek", "balanced"}) {
        config.policies = {policy};
        config.policy_settings.history = config.policies[0] == "balanced" ? 2 : 1;
        config.policy_settings.mode = config.policies[0] == "balanced" ? "relaxed" : "hierarchical";
        for (const char* windows : {"sum", "2"}) {
            config.windows = windows;
            write_reference(config, dir / "reference.h5");
            const SweepSummary summary = run_sweep(config);
            EXPECT_EQ(summary.exit_code, sweep_exit::ok);
            if (world_rank() != 0) continue;
            EXPECT_EQ(summary.plans_in_archive, config.windows == "sum" ? 1 : 2);
            EXPECT_TRUE(verify_archive(dir / "sweep.h5").ok());
            EXPECT_EQ(differences(dir / "sweep.h5", dir / "reference.h5"), "") << policy << ", windows " << windows;
        }
    }
}

TEST(Sweep, ResumeFinishesAnInterruptedRunAndSkipsWhatItFinished) {
    SharedDir dir;
    write_inputs(dir);
    SweepConfig config = base_config(dir);
    config.inputs.resize(2);  // a.h5 and b.h5: no failures this time
    config.topologies = {"48/4/2/8"};
    write_reference(config, dir / "reference.h5");
    if (world_rank() == 0) {  // an interrupted run: some plans finished, nothing committed
        ArchiveWriter interrupted(config.output, ArchiveWriter::Mode::replace);
        std::vector<PlanRecord> some;
        for (const SweepFile& f : validate_sweep(config).files) {
            Snapshot s = read_snapshot(f.path, ReadOptions{Windowing::parse("each"), 0, {}});
            s.model = SweepInput{f.name, ""}.model();
            s.checkpoint = SweepInput{f.name, ""}.checkpoint();
            const std::vector<PlanRecord> r = plan_windows(s, ReadOptions{Windowing::parse("each"), 0, {}},
                                                           plan_request(Topology{48, 4, 2, 8}, Policy::seed), "killed");
            // Windows in the middle of each input, so that what is left has gaps (a.h5: 0 and 3;
            // b.h5: 0 and 2) and window 3's previous plan is window 2's, not 0's.
            some.push_back(r[1]);
            if (r.size() > 3) some.push_back(r[2]);
        }
        interrupted.add(some);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    const SweepSummary refused = run_sweep(config);  // not without resume
    EXPECT_EQ(refused.exit_code, sweep_exit::usage);
    config.resume = true;
    const SweepSummary resumed = run_sweep(config);
    EXPECT_EQ(resumed.exit_code, sweep_exit::ok);
    if (world_rank() != 0) return;
    EXPECT_EQ(resumed.already_done, 3);
    EXPECT_EQ(resumed.planned, resumed.items - 3);
    EXPECT_EQ(differences(dir / "sweep.h5", dir / "reference.h5"), "");
}

TEST(Sweep, ConfigurationErrorsStopEveryRankBeforeAnyWork) {
    SharedDir dir;
    write_inputs(dir);
    SweepConfig config = base_config(dir);
    config.topologies.push_back("48/4/3/8");
    config.inputs.push_back(SweepInput{"ghost", dir / "missing-*.json"});
    const SweepSetup setup = validate_sweep(config);
    ASSERT_EQ(setup.problems.size(), 2u);
    EXPECT_NE(setup.problems[0].find("input = 'ghost="), std::string::npos) << setup.problems[0];
    EXPECT_NE(setup.problems[0].find("matches no file"), std::string::npos) << setup.problems[0];
    EXPECT_NE(setup.problems[1].find("topology = '48/4/3/8'"), std::string::npos) << setup.problems[1];
    const SweepSummary summary = run_sweep(config);
    EXPECT_EQ(summary.exit_code, sweep_exit::usage);
    EXPECT_FALSE(fs::exists(dir / "sweep.h5.parts"));
    EXPECT_FALSE(fs::exists(dir / "sweep.h5"));
}

TEST(Sweep, RanksAgreeOnTheWorstCode) {
    const int mine = world_rank() == world_size() - 1 ? sweep_exit::usage : sweep_exit::ok;
    EXPECT_EQ(dist::agree_on_code(mine, "", MPI_COMM_WORLD), sweep_exit::usage);
    EXPECT_EQ(dist::agree_on_code(sweep_exit::ok, "", MPI_COMM_WORLD), sweep_exit::ok);
}

// Prints failures of ranks other than 0 (whose output GoogleTest's printer shows).
class RankFailurePrinter : public testing::EmptyTestEventListener {
    void OnTestPartResult(const testing::TestPartResult& r) override {
        if (r.failed())
            std::fprintf(stderr, "[rank %d] %s:%d: %s\n", world_rank(), r.file_name() ? r.file_name() : "?", r.line_number(),
                         r.summary());
    }
};

}  // namespace
}  // namespace eplb

int main(int argc, char** argv) {
    const eplb::MpiSession mpi;
    testing::InitGoogleTest(&argc, argv);
    if (mpi.rank() != 0) {
        testing::TestEventListeners& listeners = testing::UnitTest::GetInstance()->listeners();
        delete listeners.Release(listeners.default_result_printer());
        listeners.Append(new eplb::RankFailurePrinter);
    }
    const int failed = RUN_ALL_TESTS();
    return mpi.agree(failed, "");
}
