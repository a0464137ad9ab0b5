// The eplb command end to end: the bad-input matrix, exit codes, and plan -> inspect -> verify ->
// export -> merge on real archives, including a writer killed mid-run and resumed.
#include "support/golden.hpp"
#include "support/run_command.hpp"
#include "support/temp_dir.hpp"

#include <eplb/archive.hpp>
#include <eplb/snapshot.hpp>

#include <ATen/ops/empty.h>
#include <H5Cpp.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/version.h>
#include <yaml-cpp/yaml.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <thread>

namespace eplb {
namespace {

namespace fs = std::filesystem;
using test::TempDir;
using test::write_text;

using Result = test::CommandResult;

Result eplb(std::vector<std::string> args, const TempDir& dir) {
    args.insert(args.begin(), EPLB_BINARY);
    return test::run_command(args, dir);
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

// SGLang statistics: 5 layers (0 dense) x `experts`, counts (3l + 5e) % 13 + 1.
std::string sglang_json(std::int64_t experts) {
    std::string s = "{\"logical_count\": [";
    for (std::int64_t l = 0; l < 5; ++l) {
        s += l ? ", [" : "[";
        for (std::int64_t e = 0; e < experts; ++e) s += (e ? "," : "") + std::to_string(l ? (3 * l + 5 * e) % 13 + 1 : 0);
        s += "]";
    }
    return s + "]}";
}

// An HDF5 snapshot of `steps` steps, 4 layers, 16 experts.
void write_series(const std::string& path, std::int64_t steps) {
    at::Tensor c = at::empty({steps, 4, 16}, at::TensorOptions().dtype(at::kDouble));
    double* p = c.data_ptr<double>();
    for (std::int64_t i = 0; i < c.numel(); ++i) p[i] = static_cast<double>((i * 7919) % 101 + 1);
    write_hdf5_snapshot(make_snapshot(path, "test", c), path);
}

std::set<std::string> sources_of(const ArchiveReader& archive) {
    std::set<std::string> out;
    for (const PlanSummary& p : archive.plans()) out.insert(fs::path(p.source).filename().string());
    return out;
}

TEST(PlanCommand, BadInputMatrix) {
    TempDir dir;
    // Good inputs.
    write_text(dir / "good.json", sglang_json(16));
    fs::copy_file(test::test_data("snapshots/recorder.pt"), dir / "good.pt");
    // Bad inputs, each with what its one-line error must say.
    std::map<std::string, std::string> bad{
        {"missing.json", "cannot open the file"},
        {"empty.json", "the file is empty"},
        {"truncated.h5", "truncated or damaged"},
        {"no_dataset.h5", "no dataset 'logical_count'"},
        {"wrong_rank.h5", "logical_count has shape [4]"},
        {"wrong_shape.json", "load_history[1].logical_expert_load has 2 rows"},
        {"too_many_experts.json", "logical_count [4 MoE layers x 32 experts] cannot be planned for topology 24/4/2/4"},
        {"nan.pt", "logical_count[1][2][3] = nan"},
        {"inf.pt", "logical_count[1][2][3] = inf"},
        {"negative.json", "logical_count[2][3] = -3"},
        {"legacy.pt", "legacy (non-zip) torch.save format"},
        {"ragged.json", "logical_count[1] has 2 entries"},
    };
#if TORCH_VERSION_MAJOR < 2
    bad.emplace("single_key.pt", "exactly one key");
    fs::copy_file(test::test_data("snapshots/single_key.pt"), dir / "single_key.pt");
#endif
    write_text(dir / "empty.json", "");
    write_hdf5_snapshot(read_snapshot(dir / "good.pt"), dir / "full.h5");
    const std::string h5 = test::read_text(dir / "full.h5");
    write_text(dir / "truncated.h5", h5.substr(0, h5.size() / 2));
    {
        H5::H5File f(dir / "no_dataset.h5", H5F_ACC_TRUNC);
        f.createGroup("counts");
        const hsize_t n = 4;
        H5::H5File g(dir / "wrong_rank.h5", H5F_ACC_TRUNC);
        const std::int64_t counts[4] = {1, 2, 3, 4};
        g.createDataSet("logical_count", H5::PredType::NATIVE_INT64, H5::DataSpace(1, &n))
            .write(counts, H5::PredType::NATIVE_INT64);
    }
    write_text(dir / "wrong_shape.json", R"({"load_history": [{"logical_expert_load": [[1, 2]]},
                                                               {"logical_expert_load": [[1, 2], [3, 4]]}]})");
    write_text(dir / "too_many_experts.json", sglang_json(32));
    for (const char* name : {"nan.pt", "inf.pt", "legacy.pt"}) fs::copy_file(test::test_data("snapshots/") + name, dir / name);
    write_text(dir / "negative.json", R"({"logical_count": [[0, 0, 0, 0], [1, 2, 3, 4], [1, 2, 3, -3]]})");
    write_text(dir / "ragged.json", R"({"logical_count": [[1, 2, 3], [4, 5]]})");

    std::vector<std::string> args{"plan", dir / "good.json"};
    for (const auto& [name, _] : bad) args.push_back(dir / name);
    args.push_back(dir / "good.pt");
    for (const char* a : {"-t", "24/4/2/4", "-p", "seed", "-w", "each", "-o"}) args.push_back(a);
    args.push_back(dir / "out.h5");
    const Result r = eplb(args, dir);

    EXPECT_EQ(r.code, 3) << r.err;
    const std::vector<std::string> errors = lines_of(r.err);
    EXPECT_EQ(errors.size(), bad.size()) << r.err;
    const ArchiveReader archive(dir / "out.h5");
    EXPECT_EQ(sources_of(archive), (std::set<std::string>{"good.json", "good.pt"}));
    EXPECT_EQ(archive.plans().size(), 1u + 3u);  // one window of good.json, three of good.pt
    const std::vector<FailureRecord> failures = archive.failures();
    EXPECT_EQ(failures.size(), bad.size());
    for (const auto& [name, expected] : bad) {
        const std::string path = dir / name;
        const auto line = std::find_if(errors.begin(), errors.end(), [&](const std::string& l) {
            return l.rfind("eplb: error: " + path + ": ", 0) == 0;
        });
        ASSERT_NE(line, errors.end()) << "no error line for " << name << " in\n" << r.err;
        EXPECT_NE(line->find(expected), std::string::npos) << *line;
        const auto failure = std::find_if(failures.begin(), failures.end(), [&](const FailureRecord& f) { return f.input == path; });
        ASSERT_NE(failure, failures.end()) << name << " is not listed in /failures";
        EXPECT_EQ("eplb: error: " + failure->message, *line);
    }
    EXPECT_EQ(eplb({"verify", dir / "out.h5"}, dir).code, 0);
}

TEST(PlanCommand, ExitCodesAndUsageErrors) {
    TempDir dir;
    write_text(dir / "good.json", sglang_json(16));
    write_text(dir / "bad.json", "{");
    EXPECT_EQ(eplb({"plan", dir / "good.json", "-t", "24/4/2/4"}, dir).code, 0);
    const Result only_bad = eplb({"plan", dir / "bad.json", "-t", "24/4/2/4"}, dir);
    EXPECT_EQ(only_bad.code, 1);
    EXPECT_EQ(lines_of(only_bad.err).size(), 1u) << only_bad.err;
    EXPECT_EQ(eplb({"plan", dir / "good.json", "dir/bad.json", "-t", "24/4/2/4"}, dir).code, 3);
    for (const std::vector<std::string>& usage :
         {std::vector<std::string>{"plan", dir / "good.json", "-t", "24/4/2"},
          {"plan", dir / "good.json", "-t", "24/4/2/4", "-p", "greedy"},
          {"plan", dir / "good.json", "-t", "24/4/2/4", "--append"},
          {"plan", dir / "good.json", "-t", "24/4/2/4", "-w", "0"},
          {"plan", dir / "good.json", "-t", "24/4/2/4", "-p", "deepseek", "--mode", "relaxed"},
          {"plan", dir / "good.json", "-t", "24/4/2/4", "--history", "0"},
          {"plan", dir / "good.json", "-t", "24/4/2/4", "--mode", "sideways"},
          {"plan", dir / "good.json", "-t", "24/4/2/4", "--max-balance-loss", "1"},
          {"plan", dir / "good.json", "-t", "24/4/2/4", "--persistence", "1.5"},
          {"plan", dir / "good.json", "-t", "24/4/2/4", "--previous", dir / "missing.json"},
          {"plan", dir / "good.json", "-t", "24/4/2/4", "-p", "seed", "--previous", dir / "good.json"},
          {"plan", dir / "good.json", "-t", "24/4/2/4", "--engine", "batched"},
          {"plan", dir / "good.json", "-t", "24/4/2/4", "-p", "deepseek,balanced", "--device", "cuda"},
          {"plan", dir / "good.json"},
          {"frobnicate"}}) {
        const Result r = eplb(usage, dir);
        EXPECT_EQ(r.code, 2) << usage[usage.size() - 1] << ": " << r.err;
        EXPECT_EQ(lines_of(r.err).size(), 1u) << r.err;
    }
}

TEST(PlanCommand, PrintsTablesAndJsonWithoutAnArchive) {
    TempDir dir;
    write_text(dir / "good.json", sglang_json(16));
    const Result table = eplb({"plan", dir / "good.json", "-t", "24/4/2/4", "-p", "seed"}, dir);
    EXPECT_EQ(table.code, 0);
    EXPECT_NE(table.out.find("aggregate balancedness"), std::string::npos) << table.out;
    EXPECT_NE(table.out.find("4 MoE layers of 16 experts (5 layers in the model)"), std::string::npos) << table.out;
    const auto one = nlohmann::json::parse(eplb({"plan", dir / "good.json", "-t", "24/4/2/4", "--json"}, dir).out);
    EXPECT_EQ(one["layers"].size(), 4u);
    EXPECT_EQ(one["layers"][0]["layer"], 1);
    EXPECT_TRUE(one["aggregate"].contains("bound_ratio"));
    fs::copy_file(test::test_data("snapshots/recorder.pt"), dir / "series.pt");
    const auto series = nlohmann::json::parse(eplb({"plan", dir / "series.pt", "-t", "24/4/2/4", "-w", "each", "--json"}, dir).out);
    ASSERT_EQ(series.size(), 3u);
    EXPECT_TRUE(series[0].contains("next_window"));
    EXPECT_TRUE(series[2].contains("migration"));
    EXPECT_FALSE(series[2].contains("next_window"));
    EXPECT_FALSE(fs::exists(dir / "out.h5"));
}

TEST(ArchiveCommands, InspectVerifyExportMerge) {
    TempDir dir;
    fs::copy_file(test::test_data("snapshots/recorder.pt"), dir / "series.pt");
    ASSERT_EQ(eplb({"plan", dir / "series.pt", "-t", "24/4/2/4", "-p", "all", "-w", "each", "-o", dir / "a.h5"}, dir).code, 0);
    const ArchiveReader archive(dir / "a.h5");
    ASSERT_EQ(archive.plans().size(), 9u);
    const std::string id = archive.plans()[0].id;

    const Result summary = eplb({"inspect", dir / "a.h5"}, dir);
    EXPECT_EQ(summary.code, 0);
    EXPECT_NE(summary.out.find(id), std::string::npos);
    EXPECT_NE(summary.out.find("next_window"), std::string::npos);
    const Result plan = eplb({"inspect", dir / "a.h5", "--plan", id.substr(0, 8), "--layers"}, dir);
    EXPECT_EQ(plan.code, 0);
    EXPECT_NE(plan.out.find("next window (what the plan achieves deployed)"), std::string::npos) << plan.out;
    EXPECT_NE(plan.out.find(" layer balancedness"), std::string::npos) << plan.out;
    EXPECT_EQ(nlohmann::json::parse(eplb({"inspect", dir / "a.h5", "--json"}, dir).out)["plans"].size(), 9u);
    EXPECT_EQ(eplb({"inspect", dir / "a.h5", "--plan", "nope"}, dir).code, 2);
    EXPECT_EQ(eplb({"inspect", dir / "missing.h5"}, dir).code, 1);

    EXPECT_EQ(eplb({"verify", dir / "a.h5"}, dir).code, 0);

    ASSERT_EQ(eplb({"export", "--format", "sglang", "--plan", id, dir / "a.h5", "-o", dir / "loc.json"}, dir).code, 0);
    const auto location = nlohmann::json::parse(test::read_text(dir / "loc.json"));
    EXPECT_EQ(location["physical_to_logical_map"].size(), 5u);
    EXPECT_EQ(location["physical_to_logical_map"][0].size(), 24u);
    ASSERT_EQ(eplb({"export", "-f", "trtllm", "-p", id, dir / "a.h5", "-o", dir / "lb.yaml"}, dir).code, 0);
    EXPECT_EQ(YAML::LoadFile(dir / "lb.yaml")["initial_global_assignments"].size(), 4u);
    EXPECT_EQ(eplb({"export", "-f", "vllm", "-p", id, dir / "a.h5", "-o", dir / "x"}, dir).code, 2);

    // Appending the same work adds nothing; a second topology adds its plans.
    const Result again = eplb({"plan", dir / "series.pt", "-t", "24/4/2/4", "-p", "all", "-w", "each", "-o", dir / "a.h5", "--append"}, dir);
    EXPECT_EQ(again.code, 0);
    EXPECT_NE(again.out.find("9 plans (0 made now)"), std::string::npos) << again.out;
    ASSERT_EQ(eplb({"plan", dir / "series.pt", "-t", "32/4/2/4", "-w", "each", "-o", dir / "b.h5"}, dir).code, 0);
    ASSERT_EQ(eplb({"merge", dir / "a.h5", dir / "b.h5", "-o", dir / "m.h5"}, dir).code, 0);
    EXPECT_EQ(ArchiveReader(dir / "m.h5").plans().size(), 12u);
    EXPECT_EQ(eplb({"verify", dir / "m.h5"}, dir).code, 0);

    {  // A stored metric that no longer matches the maps.
        H5::H5File file(dir / "m.h5", H5F_ACC_RDWR);
        const double wrong = 0.25;
        file.openGroup("plans").openGroup(id).openAttribute("gap").write(H5::PredType::NATIVE_DOUBLE, &wrong);
    }
    const Result tampered = eplb({"verify", dir / "m.h5"}, dir);
    EXPECT_EQ(tampered.code, 1);
    EXPECT_NE(tampered.err.find("plan " + id + ": gap = 0.25 stored"), std::string::npos) << tampered.err;
}

// The balanced policy is the default; its settings are recorded with each plan, checked by
// verify, and a deployed plan comes from an archive or from an SGLang expert-location file.
TEST(PlanCommand, BalancedSettingsAndThePlanNowDeployed) {
    TempDir dir;
    fs::copy_file(test::test_data("snapshots/recorder.pt"), dir / "series.pt");
    const Result bad_engine = eplb({"plan", dir / "series.pt", "-t", "24/4/2/4", "--engine", "batched"}, dir);
    EXPECT_EQ(bad_engine.code, 2);
    EXPECT_NE(bad_engine.err.find("policy 'balanced' has no batched engine"), std::string::npos) << bad_engine.err;
    const Result bad_mode = eplb({"plan", dir / "series.pt", "-t", "24/4/2/4", "-p", "all", "--mode", "relaxed"}, dir);
    EXPECT_NE(bad_mode.err.find("mode = 'relaxed': policy deepseek plans hierarchical or global"), std::string::npos)
        << bad_mode.err;

    ASSERT_EQ(eplb({"plan", dir / "series.pt", "-t", "24/4/2/4", "-w", "each", "--history", "2", "--mode", "global",
                    "-o", dir / "a.h5"}, dir).code, 0);
    const std::vector<PlanSummary> plans = ArchiveReader(dir / "a.h5").plans();
    ASSERT_EQ(plans.size(), 3u);
    for (const PlanSummary& p : plans) {
        EXPECT_EQ(p.policy, "balanced");
        EXPECT_EQ(p.policy_options, R"({"history":2,"max_balance_loss":0.01,"mode":"global"})");
        EXPECT_EQ(p.bound_kind, "global");
        EXPECT_EQ(p.in_sample.duplicates, 0);
        EXPECT_GE(p.in_sample.node_locality, 0.0);
        EXPECT_LE(p.in_sample.node_locality, 1.0);
    }
    const Result inspected = eplb({"inspect", dir / "a.h5"}, dir);
    EXPECT_NE(inspected.out.find(R"({"history":2,"max_balance_loss":0.01,"mode":"global"})"), std::string::npos) << inspected.out;
    EXPECT_EQ(eplb({"verify", dir / "a.h5"}, dir).code, 0);

    // The plan now deployed: a plan of the archive, then the same plan as SGLang's file.
    const std::string deployed = plans[0].id;
    ASSERT_EQ(eplb({"plan", dir / "series.pt", "-t", "24/4/2/4", "-w", "each", "--previous",
                    dir / "a.h5" + ":" + deployed.substr(0, 6), "-o", dir / "b.h5"}, dir).code, 0);
    const ArchiveReader b(dir / "b.h5");
    for (const PlanSummary& p : b.plans()) {
        EXPECT_EQ(p.policy_options, R"({"max_balance_loss":0.01,"previous":"plan:)" + deployed + R"("})");
        ASSERT_TRUE(p.migration.has_value());  // every window's plan against the deployed one
        const PlanRecord r = b.read_plan(p.id);
        EXPECT_EQ(r.previous_plan, "plan:" + deployed);
        EXPECT_EQ(p.migration->moved_slots, migration(plan_from_phy2log(r.deployed_phy2log, 16), r.plan, r.topology).total_moved_slots());
    }
    EXPECT_EQ(eplb({"verify", dir / "b.h5"}, dir).code, 0);
    const Result shown = eplb({"inspect", dir / "b.h5", "--plan", b.plans()[0].id}, dir);
    EXPECT_NE(shown.out.find("migration from the deployed plan (plan:" + deployed + ")"), std::string::npos) << shown.out;
    ASSERT_EQ(eplb({"export", "-f", "sglang", "-p", deployed, dir / "a.h5", "-o", dir / "loc.json"}, dir).code, 0);
    const Result from_sglang = eplb({"plan", dir / "series.pt", "-t", "24/4/2/4", "--mode", "global", "--previous",
                                     dir / "loc.json", "--max-balance-loss", "0.05", "--persistence", "0.8", "--json"}, dir);
    ASSERT_EQ(from_sglang.code, 0) << from_sglang.err;
    const auto options = nlohmann::json::parse(from_sglang.out)["policy_options"];
    EXPECT_EQ(options["max_balance_loss"], 0.05);
    EXPECT_EQ(options["persistence"], 0.8);  // a setting other than the default is part of the plan's identity
    EXPECT_EQ(options["previous"].get<std::string>().rfind("sglang:sha256:", 0), 0u) << options;
    const Result wrong_shape = eplb({"plan", dir / "series.pt", "-t", "32/4/2/4", "--previous", dir / "loc.json"}, dir);
    EXPECT_EQ(wrong_shape.code, 1);
    EXPECT_NE(wrong_shape.err.find("previous plan"), std::string::npos) << wrong_shape.err;
}

TEST(ArchiveCommands, KilledWriterNeverLeavesAHalfWrittenArchiveAndResumes) {
    TempDir dir;
    write_series(dir / "long.h5", 150);
    const std::vector<std::string> args{"plan", dir / "long.h5", "-t", "24/4/2/4", "-w", "each", "-o", dir / "a.h5"};
    std::vector<std::string> argv{EPLB_BINARY};
    argv.insert(argv.end(), args.begin(), args.end());
    const pid_t pid = test::start_in_background(argv);
    ASSERT_GE(pid, 0);
    // Kill it once some plans are committed (or when it is done, if it is faster than us).
    int status = 0;
    const bool exited =
        test::exits_before(pid, [&] { return test::parts_in(dir / "a.h5.parts") >= 10; }, std::chrono::seconds(60), status);
    EXPECT_FALSE(exited) << "eplb ended before it could be killed";
    if (!exited) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        EXPECT_FALSE(fs::exists(dir / "a.h5")) << "the archive appeared before the run finished";
        const Result replace = eplb(args, dir);
        EXPECT_EQ(replace.code, 2);
        EXPECT_NE(replace.err.find("--append"), std::string::npos) << replace.err;
    }
    std::vector<std::string> resume = args;
    resume.push_back("--append");
    ASSERT_EQ(eplb(resume, dir).code, 0);
    EXPECT_FALSE(fs::exists(dir / "a.h5.parts"));
    EXPECT_EQ(eplb({"verify", dir / "a.h5"}, dir).code, 0);

    std::vector<std::string> clean = args;
    clean.back() = dir / "clean.h5";
    ASSERT_EQ(eplb(clean, dir).code, 0);
    const std::vector<PlanSummary> resumed = ArchiveReader(dir / "a.h5").plans(), fresh = ArchiveReader(dir / "clean.h5").plans();
    ASSERT_EQ(resumed.size(), 150u);
    ASSERT_EQ(resumed.size(), fresh.size());
    for (std::size_t i = 0; i < fresh.size(); ++i) {
        EXPECT_EQ(resumed[i].id, fresh[i].id);
        EXPECT_EQ(resumed[i].in_sample.balancedness, fresh[i].in_sample.balancedness);
        EXPECT_EQ(resumed[i].migration.has_value(), fresh[i].migration.has_value());
    }
}

}  // namespace
}  // namespace eplb
