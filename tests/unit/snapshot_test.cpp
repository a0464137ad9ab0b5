// Snapshot readers: every format round-trips, the read options and windows, and every bad input
// gives one line naming the file and the field.
#include "io/files.hpp"
#include "io/hdf5_file.hpp"
#include "io/sha256.hpp"
#include "support/golden.hpp"
#include "support/temp_dir.hpp"

#include <eplb/errors.hpp>
#include <eplb/snapshot.hpp>

#include <ATen/ops/equal.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/zeros.h>
#include <gtest/gtest.h>
#include <torch/version.h>

#include <filesystem>

namespace eplb {
namespace {

using test::TempDir;
using test::write_text;

// The counts of tests/data/snapshots/*.pt (see make_fixtures.py): [3 steps, 5 layers, 16 experts],
// layer 0 dense.
at::Tensor fixture_counts() {
    at::Tensor c = at::zeros({3, 5, 16}, at::TensorOptions().dtype(at::kDouble));
    for (std::int64_t t = 0; t < 3; ++t)
        for (std::int64_t l = 1; l < 5; ++l)
            for (std::int64_t e = 0; e < 16; ++e) c[t][l][e] = static_cast<double>((7 * t + 5 * l + 3 * e) % 23 + 1);
    return c;
}

std::string fixture(const std::string& name) { return test::test_data("snapshots/" + name); }

// Expects read_snapshot(path) to fail with one line that names the file and contains `fragments`.
void expect_format_error(const std::string& path, std::initializer_list<std::string> fragments,
                         const ReadOptions& options = {}) {
    try {
        read_snapshot(path, options);
        FAIL() << path << ": read without error";
    } catch (const FormatError& e) {
        const std::string message = e.what();
        EXPECT_EQ(message.find('\n'), std::string::npos) << message;
        EXPECT_EQ(message.rfind(path + ": ", 0), 0u) << "does not start with the file: " << message;
        for (const std::string& f : fragments) EXPECT_NE(message.find(f), std::string::npos) << message << " lacks " << f;
    }
}

void expect_moe_layers_of_fixture(const Snapshot& s, const at::Tensor& steps) {
    EXPECT_EQ(s.layer_ids, (std::vector<std::int64_t>{1, 2, 3, 4}));
    EXPECT_EQ(s.model_layers, 5);
    EXPECT_TRUE(at::equal(s.steps, steps.narrow(1, 1, 4))) << s.steps;
}

TEST(SglangTorchDump, ReadsTheRecorderDict) {
    const Snapshot s = read_snapshot(fixture("recorder.pt"));
    EXPECT_EQ(s.format, "sglang-torch");
    EXPECT_EQ(s.sha256, io::sha256_hex(io::read_file_bytes(fixture("recorder.pt"))));
    expect_moe_layers_of_fixture(s, fixture_counts());
}

TEST(SglangTorchDump, ReadsTwoDimensionalInt32AndBareTensors) {
    expect_moe_layers_of_fixture(read_snapshot(fixture("recorder_2d_int32.pt")), fixture_counts().narrow(0, 0, 1));
    expect_moe_layers_of_fixture(read_snapshot(fixture("bare_tensor.pt")), fixture_counts());
}

TEST(SglangTorchDump, SingleKeyDictNeedsAnotherKeyOnLibTorch1) {
#if TORCH_VERSION_MAJOR < 2
    expect_format_error(fixture("single_key.pt"), {"exactly one key", "torch.save({'logical_count': t, 'rank': 0}, f)"});
#else
    expect_moe_layers_of_fixture(read_snapshot(fixture("single_key.pt")), fixture_counts());
#endif
}

TEST(SglangTorchDump, LegacyFormatSaysHowToResave) {
    expect_format_error(fixture("legacy.pt"), {"legacy (non-zip)", "_use_new_zipfile_serialization=True"});
}

TEST(SglangTorchDump, BadCountsNameTheCell) {
    expect_format_error(fixture("nan.pt"), {"logical_count[1][2][3] = nan"});
    expect_format_error(fixture("inf.pt"), {"logical_count[1][2][3] = inf"});
    expect_format_error(fixture("negative.pt"), {"logical_count[1][2][3] = -5"});
    expect_format_error(fixture("wrong_rank.pt"), {"logical_count has shape [16]", "[steps, layers, experts]"});
    expect_format_error(fixture("no_logical_count.pt"), {"no key 'logical_count'", "rank, counts"});
}

TEST(JsonSnapshot, SglangStatisticsRoundTrip) {
    TempDir dir;
    const at::Tensor steps = fixture_counts().narrow(0, 0, 1);
    std::string json = "{\"logical_count\": [";
    for (std::int64_t l = 0; l < 5; ++l) {
        json += l ? ", [" : "[";
        for (std::int64_t e = 0; e < 16; ++e) json += (e ? "," : "") + std::to_string(steps[0][l][e].item<std::int64_t>());
        json += "]";
    }
    write_text(dir / "stats.json", json + "]}");
    const Snapshot s = read_snapshot(dir / "stats.json");
    EXPECT_EQ(s.format, "sglang-json");
    expect_moe_layers_of_fixture(s, steps);
}

TEST(JsonSnapshot, VllmHistoryKeepsSteps) {
    TempDir dir;
    write_text(dir / "history.json",
               R"({"load_history": [{"logical_expert_load": [[1, 2], [0, 0], [3, 4]]},
                                    {"logical_expert_load": [[5, 6], [0, 0], [7, 8.5]]}]})");
    const Snapshot s = read_snapshot(dir / "history.json");
    EXPECT_EQ(s.format, "vllm-json");
    EXPECT_EQ(s.num_steps(), 2);
    EXPECT_EQ(s.layer_ids, (std::vector<std::int64_t>{0, 2}));
    EXPECT_DOUBLE_EQ(s.steps[1][1][1].item<double>(), 8.5);
}

TEST(Hdf5Snapshot, RoundTripKeepsLayerIdsAndNames) {
    TempDir dir;
    Snapshot s = read_snapshot(fixture("recorder.pt"));
    s.model = "tiny-moe";
    s.checkpoint = "step-100";
    write_hdf5_snapshot(s, dir / "snap.h5");
    const Snapshot back = read_snapshot(dir / "snap.h5");
    EXPECT_EQ(back.format, "eplb-hdf5");
    EXPECT_TRUE(at::equal(back.steps, s.steps));
    EXPECT_EQ(back.layer_ids, s.layer_ids);
    EXPECT_EQ(back.model_layers, 5);
    EXPECT_EQ(back.model, "tiny-moe");
    EXPECT_EQ(back.checkpoint, "step-100");
}

TEST(Hdf5Snapshot, ReadsPlainMatricesWithoutAttributes) {
    TempDir dir;
    {
        const H5::H5File f = io::create_hdf5(dir / "plain.h5");
        io::write_tensor(f, "logical_count", at::tensor({1.5, 0.0, 2.0, 0.0, 0.0, 0.0, 3.0, 1.0}).view({4, 2}), "plain.h5");
    }
    const Snapshot s = read_snapshot(dir / "plain.h5");
    EXPECT_EQ(s.num_steps(), 1);
    EXPECT_EQ(s.layer_ids, (std::vector<std::int64_t>{0, 1, 3}));
    EXPECT_EQ(s.model_layers, 4);
}

TEST(Hdf5Snapshot, LayerIdsAttributeMapsRowsToModelLayers) {
    TempDir dir;
    {
        const H5::H5File f = io::create_hdf5(dir / "ids.h5");
        io::write_tensor(f, "logical_count", at::tensor({1.0, 2.0, 0.0, 0.0, 3.0, 4.0}).view({1, 3, 2}), "ids.h5");
        io::write_attribute(f, "layer_ids", std::vector<std::int64_t>{3, 5, 9}, "ids.h5");
        io::write_attribute(f, "num_model_layers", std::int64_t{12}, "ids.h5");
    }
    const Snapshot s = read_snapshot(dir / "ids.h5");
    EXPECT_EQ(s.layer_ids, (std::vector<std::int64_t>{3, 9}));
    EXPECT_EQ(s.model_layers, 12);
}

TEST(ReadOptions, KeepFirstColumnsThenZeroColumnsThenDropDenseLayers) {
    ReadOptions o;
    o.num_experts = 15;
    o.zero_columns = {14, 2};
    const Snapshot s = read_snapshot(fixture("recorder.pt"), o);
    EXPECT_EQ(s.num_experts(), 15);
    at::Tensor expected = fixture_counts().narrow(1, 1, 4).narrow(2, 0, 15).clone();
    expected.select(2, 14).zero_();
    expected.select(2, 2).zero_();
    EXPECT_TRUE(at::equal(s.steps, expected));
    EXPECT_EQ(o.to_string(), "windows=sum;experts=15;zero=2,14");
    EXPECT_EQ(ReadOptions{}.to_string(), "windows=sum;experts=all;zero=");
}

TEST(ReadOptions, ColumnsOutOfRangeAreErrors) {
    ReadOptions wide;
    wide.num_experts = 17;
    expect_format_error(fixture("recorder.pt"), {"logical_count has 16 columns", "17"}, wide);
    ReadOptions zero;
    zero.zero_columns = {16};
    expect_format_error(fixture("recorder.pt"), {"cannot zero column 16", "16 expert columns"}, zero);
}

TEST(Windows, SumEachAndConsecutiveSteps) {
    const Snapshot s = read_snapshot(fixture("recorder.pt"));
    const at::Tensor steps = s.steps;
    const std::vector<Window> sum = make_windows(s, Windowing::parse("sum"));
    ASSERT_EQ(sum.size(), 1u);
    EXPECT_TRUE(at::equal(sum[0].loads, steps.sum(0)));
    const std::vector<Window> each = make_windows(s, Windowing::parse("each"));
    ASSERT_EQ(each.size(), 3u);
    EXPECT_TRUE(at::equal(each[2].loads, steps[2]));
    const std::vector<Window> pairs = make_windows(s, Windowing::parse("2"));
    ASSERT_EQ(pairs.size(), 2u);  // steps 0-1 and the shorter tail, step 2
    EXPECT_EQ(pairs[0].last_step, 1);
    EXPECT_EQ(pairs[1].first_step, 2);
    EXPECT_EQ(pairs[1].last_step, 2);
    EXPECT_TRUE(at::equal(pairs[0].loads, steps[0].add(steps[1])));
    EXPECT_THROW(Windowing::parse("0"), UsageError);
    EXPECT_THROW(Windowing::parse("two"), UsageError);
    EXPECT_EQ(Windowing::parse("4").to_string(), "4");
}

TEST(BadInput, MissingEmptyAndUnknownFiles) {
    TempDir dir;
    expect_format_error(dir / "missing.json", {"cannot open the file"});
    write_text(dir / "empty.pt", "");
    expect_format_error(dir / "empty.pt", {"the file is empty"});
    write_text(dir / "junk.bin", "\x01\x02 not a snapshot");
    expect_format_error(dir / "junk.bin", {"unknown snapshot format"});
    expect_format_error(dir.path(), {"is a directory"});
}

TEST(BadInput, TruncatedAndIncompleteHdf5) {
    TempDir dir;
    write_hdf5_snapshot(read_snapshot(fixture("recorder.pt")), dir / "full.h5");
    const std::string bytes = test::read_text(dir / "full.h5");
    write_text(dir / "truncated.h5", bytes.substr(0, bytes.size() / 2));
    expect_format_error(dir / "truncated.h5", {"truncated or damaged"});
    write_text(dir / "stub.h5", bytes.substr(0, 4));
    expect_format_error(dir / "stub.h5", {"not an HDF5 file"});
    {
        const H5::H5File f = io::create_hdf5(dir / "no_dataset.h5");
        io::write_tensor(f, "counts", at::zeros({2, 2}), "no_dataset.h5");
    }
    expect_format_error(dir / "no_dataset.h5", {"no dataset 'logical_count'"});
    {
        const H5::H5File f = io::create_hdf5(dir / "rank1.h5");
        io::write_tensor(f, "logical_count", at::zeros({4}), "rank1.h5");
    }
    expect_format_error(dir / "rank1.h5", {"logical_count has shape [4]"});
    {
        const H5::H5File f = io::create_hdf5(dir / "bad_ids.h5");
        io::write_tensor(f, "logical_count", at::ones({2, 3}), "bad_ids.h5");
        io::write_attribute(f, "layer_ids", std::vector<std::int64_t>{0, 1, 2}, "bad_ids.h5");
    }
    expect_format_error(dir / "bad_ids.h5", {"layer_ids has 3 entries", "2 layers"});
}

TEST(BadInput, JsonShapesAndValues) {
    TempDir dir;
    write_text(dir / "ragged.json", R"({"logical_count": [[1, 2, 3], [4, 5]]})");
    expect_format_error(dir / "ragged.json", {"logical_count[1] has 2 entries", "ragged"});
    write_text(dir / "flat.json", R"({"logical_count": [1, 2, 3]})");
    expect_format_error(dir / "flat.json", {"logical_count[0] is 1", "list of numbers"});
    write_text(dir / "negative.json", R"({"logical_count": [[1, -2]]})");
    expect_format_error(dir / "negative.json", {"logical_count[0][1] = -2", "non-negative"});
    write_text(dir / "text.json", R"({"logical_count": [[1, "x"]]})");
    expect_format_error(dir / "text.json", {"logical_count[0][1] is \"x\""});
    write_text(dir / "steps.json", R"({"load_history": [{"logical_expert_load": [[1, 2]]},
                                                          {"logical_expert_load": [[1, 2], [3, 4]]}]})");
    expect_format_error(dir / "steps.json", {"load_history[1].logical_expert_load has 2 rows", "expected 1"});
    write_text(dir / "dense.json", R"({"logical_count": [[0, 0], [0, 0]]})");
    expect_format_error(dir / "dense.json", {"every layer is zero"});
    write_text(dir / "other.json", R"({"counts": [[1]]})");
    expect_format_error(dir / "other.json", {"no field 'logical_count' or 'load_history'"});
    write_text(dir / "broken.json", R"({"logical_count": [[1, 2)");
    expect_format_error(dir / "broken.json", {"not valid JSON"});
}

}  // namespace
}  // namespace eplb
