// Exports: golden files, and both formats parsed back to the plan's maps.
#include "support/golden.hpp"
#include "support/temp_dir.hpp"

#include <eplb/errors.hpp>
#include <eplb/export.hpp>

#include <ATen/ops/zeros.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include <cstdlib>

namespace eplb {
namespace {

// A fixed record: 5 model layers (0 and 2 dense), 8 experts, topology 12/4/2/4, deepseek.
PlanRecord golden_record() {
    at::Tensor steps = at::zeros({1, 5, 8}, at::TensorOptions().dtype(at::kDouble));
    for (std::int64_t l : {1, 3, 4})
        for (std::int64_t e = 0; e < 8; ++e) steps[0][l][e] = static_cast<double>((5 * l + 3 * e) % 11 + 1);
    Snapshot s = make_snapshot("snapshot.json", "sglang-json", steps);
    s.sha256 = std::string(64, '0');
    const Topology t{12, 4, 2, 4};
    return plan_windows(s, ReadOptions{}, plan_request(t, Policy::deepseek), "test").at(0);
}

std::vector<std::int64_t> row_of(const PlanRecord& r, std::int64_t row) {
    std::vector<std::int64_t> out;
    for (std::int64_t p = 0; p < r.plan.num_replicas(); ++p) out.push_back(r.plan.phy2log[row][p].item<std::int64_t>());
    return out;
}

// Compares with tests/data/export/<name>; EPLB_UPDATE_GOLDEN=1 rewrites the file instead.
void expect_golden(const std::string& name, const std::string& text) {
    const std::string path = test::test_data("export/" + name);
    if (std::getenv("EPLB_UPDATE_GOLDEN")) test::write_text(path, text);
    EXPECT_EQ(text, test::read_text(path)) << "differs from " << path;
}

TEST(Export, SglangMatchesGoldenFile) { expect_golden("sglang_expert_location.json", sglang_expert_location(golden_record())); }

TEST(Export, TrtllmMatchesGoldenFile) { expect_golden("moe_load_balancer.yaml", trtllm_load_balancer_yaml(golden_record())); }

TEST(Export, SglangRoundTripCoversEveryModelLayer) {
    const PlanRecord r = golden_record();
    test::TempDir dir;
    export_plan(r, ExportFormat::sglang, dir / "location.json");
    const auto doc = nlohmann::json::parse(test::read_text(dir / "location.json"));
    ASSERT_EQ(doc.size(), 1u);  // SGLang passes every key to init_by_mapping
    const auto& map = doc.at("physical_to_logical_map");
    ASSERT_EQ(map.size(), 5u);
    const std::vector<std::int64_t> trivial{0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3};
    EXPECT_EQ(map[0].get<std::vector<std::int64_t>>(), trivial);
    EXPECT_EQ(map[2].get<std::vector<std::int64_t>>(), trivial);
    for (std::int64_t row = 0; row < 3; ++row)
        EXPECT_EQ(map[r.layer_ids[row]].get<std::vector<std::int64_t>>(), row_of(r, row));
    EXPECT_EQ(nlohmann::json::parse(sglang_expert_location(r, 7))["physical_to_logical_map"].size(), 7u);
    EXPECT_THROW(sglang_expert_location(r, 4), UsageError);
}

TEST(Export, TrtllmRoundTripListsTheMoeLayers) {
    const PlanRecord r = golden_record();
    test::TempDir dir;
    export_plan(r, ExportFormat::trtllm, dir / "moe_load_balancer.yaml");
    const YAML::Node doc = YAML::LoadFile(dir / "moe_load_balancer.yaml");
    EXPECT_EQ(doc["num_slots"].as<std::int64_t>(), 12);
    EXPECT_EQ(doc["layer_updates_per_iter"].as<std::int64_t>(), 0);
    const YAML::Node assignments = doc["initial_global_assignments"];
    ASSERT_EQ(assignments.size(), 3u);
    for (std::int64_t row = 0; row < 3; ++row)
        EXPECT_EQ(assignments[r.layer_ids[row]].as<std::vector<std::int64_t>>(), row_of(r, row));
    EXPECT_THROW(parse_export_format("vllm"), UsageError);
}

}  // namespace
}  // namespace eplb
