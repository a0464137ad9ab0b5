// Exports for SGLang and TensorRT-LLM.
//
// SGLang (python/sglang/srt/eplb/expert_location.py, sgl-project/sglang):
// compute_initial_expert_location_metadata() loads `--init-expert-location` (.json or .pt) into a
// dict and, when it has "physical_to_logical_map", calls
// ExpertLocationMetadata.init_by_mapping(server_args, model_config, **data_dict): the file must
// hold that one key and nothing else. The map is (layers, num_physical_experts) with
// layers = ModelConfigForExpertLocation.num_layers, which the DeepSeek models set to
// config.num_hidden_layers (python/sglang/srt/models/deepseek_v2.py,
// get_model_config_for_expert_location): every model layer, dense ones included, indexed by model
// layer id. _compute_logical_to_all_physical_map() reads every row, so dense rows must hold valid
// expert ids; we give them SGLang's own trivial map (init_trivial: arange(R) % E).
//
// TensorRT-LLM (tests/integration/defs/accuracy/test_llm_api_pytorch.py, NVIDIA/TensorRT-LLM,
// static EPLB test): MoeLoadBalancerConfig(num_slots=..., initial_global_assignments={layer: [num_slots
// expert ids]}, layer_updates_per_iter=0), with keys the model layer ids of the MoE layers only
// (range(first_k_dense_replace, num_hidden_layers)).
#include "io/files.hpp"

#include <eplb/errors.hpp>
#include <eplb/export.hpp>

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

namespace eplb {
namespace {

std::vector<std::int64_t> slots_of_layer(const PlanRecord& r, std::int64_t row) {
    const at::Tensor p2l = r.plan.phy2log.contiguous();
    const std::int64_t R = r.plan.num_replicas();
    const std::int64_t* p = p2l.data_ptr<std::int64_t>() + row * R;
    return std::vector<std::int64_t>(p, p + R);
}

std::string json_row(const std::vector<std::int64_t>& row) {
    std::string s = "[";
    for (std::size_t i = 0; i < row.size(); ++i) s += (i ? ", " : "") + std::to_string(row[i]);
    return s + "]";
}

}  // namespace

ExportFormat parse_export_format(std::string_view name) {
    if (name == "sglang") return ExportFormat::sglang;
    if (name == "trtllm") return ExportFormat::trtllm;
    throw UsageError("unknown export format '" + std::string(name) + "'; expected sglang or trtllm");
}

std::string sglang_expert_location(const PlanRecord& record, std::int64_t model_layers) {
    const std::int64_t layers = model_layers > 0 ? model_layers : record.source.model_layers;
    const std::int64_t last = record.layer_ids.empty() ? -1 : record.layer_ids.back();
    if (layers <= last)
        throw UsageError("plan " + record.id + " covers model layer " + std::to_string(last) + ", but the model has " +
                         std::to_string(layers) + " layers");
    const std::int64_t R = record.plan.num_replicas(), E = record.plan.num_experts();
    std::vector<std::int64_t> trivial(static_cast<std::size_t>(R));
    for (std::int64_t p = 0; p < R; ++p) trivial[p] = p % E;
    std::string out = "{\n  \"physical_to_logical_map\": [\n";
    std::size_t row = 0;
    for (std::int64_t layer = 0; layer < layers; ++layer) {
        const bool planned = row < record.layer_ids.size() && record.layer_ids[row] == layer;
        out += "    " + json_row(planned ? slots_of_layer(record, static_cast<std::int64_t>(row++)) : trivial);
        out += layer + 1 < layers ? ",\n" : "\n";
    }
    return out + "  ]\n}\n";
}

std::string trtllm_load_balancer_yaml(const PlanRecord& record) {
    YAML::Emitter out;
    out << YAML::Comment("eplb plan " + record.id + ": " + record.source.path + ", window " +
                         std::to_string(record.window.index) + ", topology " + record.topology.to_string() +
                         ", policy " + record.policy);
    out << YAML::BeginMap;
    out << YAML::Key << "num_slots" << YAML::Value << record.plan.num_replicas();
    out << YAML::Key << "initial_global_assignments" << YAML::Value << YAML::BeginMap;
    for (std::size_t row = 0; row < record.layer_ids.size(); ++row)
        out << YAML::Key << record.layer_ids[row] << YAML::Value << YAML::Flow
            << slots_of_layer(record, static_cast<std::int64_t>(row));
    out << YAML::EndMap;
    out << YAML::Key << "layer_updates_per_iter" << YAML::Value << 0;
    out << YAML::EndMap;
    if (!out.good()) throw Error("cannot build the TensorRT-LLM YAML: " + out.GetLastError());
    return std::string(out.c_str()) + "\n";
}

void export_plan(const PlanRecord& record, ExportFormat format, const std::string& path, std::int64_t model_layers) {
    io::write_file_atomically(path, format == ExportFormat::sglang ? sglang_expert_location(record, model_layers)
                                                                   : trtllm_load_balancer_yaml(record));
}

}  // namespace eplb
