// `eplb sweep` end to end under mpiexec with $EPLB_TEST_RANKS ranks (ctest runs it with 1, 2 and
// 4): configuration file and flags, exit codes agreed by every rank, one line per error, progress
// and summary, and a sweep killed (SIGKILL, every process of the job) and resumed to the same
// archive as an uninterrupted run.
#include "support/archive_compare.hpp"
#include "support/run_command.hpp"
#include "support/temp_dir.hpp"

#include <eplb/archive.hpp>
#include <eplb/snapshot.hpp>

#include <ATen/ops/empty.h>
#include <gtest/gtest.h>

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace eplb {
namespace {

namespace fs = std::filesystem;
using test::TempDir;
using test::write_text;

int ranks() {
    const char* text = std::getenv("EPLB_TEST_RANKS");
    return text ? std::atoi(text) : 2;
}

using Result = test::CommandResult;

// The mpiexec command line that runs eplb on ranks() ranks.
std::vector<std::string> launcher() {
    return {EPLB_MPIEXEC, "-n", std::to_string(ranks()), "--oversubscribe", EPLB_BINARY};
}

Result run(std::vector<std::string> args, const TempDir& dir) {
    std::vector<std::string> argv = launcher();
    argv.insert(argv.end(), args.begin(), args.end());
    return test::run_command(argv, dir);
}

std::vector<std::string> lines_with(const std::string& text, const std::string& part) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        if (line.find(part) != std::string::npos) out.push_back(line);
    return out;
}

// An HDF5 snapshot of `steps` steps, `layers` layers, 64 experts.
void write_series(const std::string& path, std::int64_t steps, std::int64_t layers, std::int64_t seed) {
    at::Tensor c = at::empty({steps, layers, 64}, at::TensorOptions().dtype(at::kDouble));
    double* p = c.data_ptr<double>();
    for (std::int64_t i = 0; i < c.numel(); ++i) p[i] = static_cast<double>((i * 7919 + seed * 104729) % 1009 + 1);
    write_hdf5_snapshot(make_snapshot(path, "test", c), path);
}

std::string differences(const std::string& a, const std::string& b) {
    std::string all;
    for (const std::string& d : test::archive_differences(a, b)) all += d + "\n";
    return all;
}

TEST(SweepCommand, ConfigFileFlagsAndDumpConfig) {
    TempDir dir;
    fs::create_directories(dir / "data");
    fs::create_directories(dir / "conf");
    write_series(dir / "data/one.h5", 2, 3, 1);
    write_text(dir / "conf/sweep.ini",
               "# a sweep\n"
               "input = ds/prefill=../data/*.h5\n"
               "input = other=../data/one.h5\n"
               "topology = 72/8/2/8\n"
               "topology = 64/4/1/4\n"
               "policy = all\n"
               "windows = each\n"
               "zero-columns = 3,5\n"
               "output = plans.h5\n");
    const Result dump = run({"sweep", "--config", dir / "conf/sweep.ini", "--dump-config", "-t", "128/8/4/16"}, dir);
    ASSERT_EQ(dump.code, 0) << dump.err;
    // Printed once (by rank 0), paths of the file relative to it, flags over the file.
    EXPECT_EQ(lines_with(dump.out, "input = ").size(), 2u) << dump.out;
    EXPECT_NE(dump.out.find("input = ds/prefill=" + (dir / "data/*.h5") + "\n"), std::string::npos) << dump.out;
    EXPECT_NE(dump.out.find("output = " + (dir / "conf/plans.h5") + "\n"), std::string::npos) << dump.out;
    EXPECT_EQ(lines_with(dump.out, "topology = "), std::vector<std::string>{"topology = 128/8/4/16"});
    EXPECT_NE(dump.out.find("zero-columns = 3,5\n"), std::string::npos) << dump.out;
    EXPECT_NE(dump.out.find("resume = false\n"), std::string::npos) << dump.out;

    const Result models = run({"sweep", "-c", dir / "conf/sweep.ini", "--list-models"}, dir);
    EXPECT_EQ(models.code, 0);
    EXPECT_EQ(models.out, "ds\nother\n");

    // The file's sweep: `other` names a file `ds` already matched; it is planned once.
    const Result sweep = run({"sweep", "-c", dir / "conf/sweep.ini", "--zero-columns", "63"}, dir);
    ASSERT_EQ(sweep.code, 0) << sweep.err;
    const ArchiveReader archive(dir / "conf/plans.h5");
    EXPECT_EQ(archive.plans().size(), 2u * 2u * 3u);  // inputs x topologies x the three policies
    const PlanRecord r = archive.read_plan(archive.plans()[0].id);
    EXPECT_EQ(r.source.model, "ds");
    EXPECT_EQ(r.source.checkpoint, "prefill");
    EXPECT_EQ(r.source.read_options, "windows=each;experts=all;zero=63");
}

TEST(SweepCommand, EveryRankExitsWithTheSameCodeAndErrorsArePrintedOnce) {
    TempDir dir;
    write_series(dir / "good.h5", 3, 4, 1);
    write_text(dir / "bad.json", "{\"logical_count\": [[1, 2], [3]]}");
    write_text(dir / "unknown.ini", "topology = 72/8/2/8\nfrobnicate = 1\n");
    const std::vector<std::string> common{"sweep", "-t", "72/8/2/8", "-w", "each", "-o", dir / "out.h5"};
    auto with = [&](std::vector<std::string> more) {
        std::vector<std::string> args = common;
        args.insert(args.end(), more.begin(), more.end());
        return args;
    };
    // A bad value, a pattern that matches nothing, a malformed input, an unknown key in the file.
    for (const std::vector<std::string>& wrong :
         {with({"-i", "m=" + (dir / "good.h5"), "-t", "72/8/3/8"}), with({"-i", "m=" + (dir / "nothing-*.h5")}),
          with({"-i", "no-pattern"}), with({"-i", "m=" + (dir / "good.h5"), "-c", dir / "unknown.ini"})}) {
        const Result r = run(wrong, dir);
        EXPECT_EQ(r.code, 2) << r.err;
        EXPECT_EQ(lines_with(r.err, "eplb: error: ").size(), 1u) << r.err;
        EXPECT_FALSE(fs::exists(dir / "out.h5.parts"));
    }

    const Result partial = run(with({"-i", "good=" + (dir / "good.h5"), "-i", "bad=" + (dir / "bad.json"), "--progress"}), dir);
    EXPECT_EQ(partial.code, 3) << partial.err;
    EXPECT_EQ(lines_with(partial.err, "eplb: error: ").size(), 1u) << partial.err;
    EXPECT_NE(partial.err.find("bad.json: logical_count[1] has 1 entries"), std::string::npos) << partial.err;
    EXPECT_FALSE(lines_with(partial.err, "plans/s").empty()) << partial.err;
    const std::vector<std::string> summary = lines_with(partial.out, "plans=");
    ASSERT_EQ(summary.size(), 1u) << partial.out;
    for (const char* key : {"plans=3 ", "failures=1 ", " wall_s=", " plans_per_s=", " rank_imbalance=", " write_share=",
                            " exit_code=3"})
        EXPECT_NE(summary[0].find(key), std::string::npos) << key << " in " << summary[0];
    EXPECT_NE(summary[0].find("ranks=" + std::to_string(ranks()) + " "), std::string::npos) << summary[0];
    const ArchiveReader archive(dir / "out.h5");
    EXPECT_EQ(archive.plans().size(), 3u);
    ASSERT_EQ(archive.failures().size(), 1u);
    EXPECT_EQ(archive.failures()[0].input, dir / "bad.json");

    const Result nothing = run(with({"-i", "bad=" + (dir / "bad.json")}), dir);
    EXPECT_EQ(nothing.code, 1) << nothing.err;
}

// Every process of session `sid` (mpiexec and the ranks it started), killed at once.
void kill_session(pid_t sid) {
    for (int round = 0; round < 50; ++round) {
        bool any = false;
        for (const auto& entry : fs::directory_iterator("/proc")) {
            const std::string name = entry.path().filename().string();
            if (name.find_first_not_of("0123456789") != std::string::npos) continue;
            const pid_t pid = static_cast<pid_t>(std::stol(name));
            if (pid != getpid() && getsid(pid) == sid) {
                kill(pid, SIGKILL);
                any = true;
            }
        }
        if (!any) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

TEST(SweepCommand, KilledSweepResumesToTheSameArchiveAsAnUninterruptedOne) {
    TempDir dir;
    for (int i = 0; i < 3; ++i) write_series(dir / ("long" + std::to_string(i) + ".h5"), 120, 8, i);
    write_text(dir / "sweep.ini",
               "input = long=long*.h5\n"
               "topology = 72/8/2/8\n"
               "policy = all\n"
               "windows = each\n"
               "checkpoint-seconds = 0.2\n");
    const std::vector<std::string> sweep{"sweep", "-c", dir / "sweep.ini", "-o", dir / "killed.h5"};

    // The reference: one rank (no mpiexec), never interrupted.
    const Result reference = test::run_command({EPLB_BINARY, "sweep", "-c", dir / "sweep.ini", "-o", dir / "reference.h5"}, dir);
    ASSERT_EQ(reference.code, 0) << reference.err;

    std::vector<std::string> argv = launcher();
    argv.insert(argv.end(), sweep.begin(), sweep.end());
    const pid_t pid = test::start_in_background(argv);
    ASSERT_GE(pid, 0);
    // Killed once some checkpoints are on disk (or when it is done, if it is faster than us).
    int status = 0;
    const bool exited = test::exits_before(
        pid, [&] { return test::parts_in(dir / "killed.h5.parts") >= 2; }, std::chrono::seconds(120), status);
    EXPECT_FALSE(exited) << "the sweep ended before it could be killed";
    if (!exited) {
        kill_session(pid);
        waitpid(pid, &status, 0);
        EXPECT_FALSE(fs::exists(dir / "killed.h5")) << "the archive appeared before the sweep finished";
        const Result refused = run(sweep, dir);
        EXPECT_EQ(refused.code, 2);
        EXPECT_NE(refused.err.find("--resume"), std::string::npos) << refused.err;
    }
    std::vector<std::string> resume = sweep;
    resume.push_back("--resume");
    const Result resumed = run(resume, dir);
    ASSERT_EQ(resumed.code, 0) << resumed.err;
    if (!exited) {
        EXPECT_EQ(resumed.out.find("already_done=0 "), std::string::npos) << resumed.out;
    }
    EXPECT_FALSE(fs::exists(dir / "killed.h5.parts"));
    EXPECT_EQ(ArchiveReader(dir / "killed.h5").plans().size(), 3u * 120u * 3u);
    EXPECT_EQ(differences(dir / "killed.h5", dir / "reference.h5"), "");
}

}  // namespace
}  // namespace eplb
