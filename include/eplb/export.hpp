// Deployment files for serving engines, from an archived plan.
#pragma once

#include <eplb/archive.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace eplb {

enum class ExportFormat {
    sglang,  ///< SGLang's `--init-expert-location` JSON: {"physical_to_logical_map": [model layers][R]}
    trtllm,  ///< TensorRT-LLM's `moe_load_balancer.yaml`: num_slots, initial_global_assignments, layer_updates_per_iter
};

/// Parses "sglang" or "trtllm"; throws UsageError otherwise.
ExportFormat parse_export_format(std::string_view name);

/// SGLang's `--init-expert-location` file. SGLang indexes the map by model layer, dense layers
/// included (its ModelConfigForExpertLocation takes num_layers = num_hidden_layers), and reads
/// every row; rows of layers without a plan get SGLang's own trivial map, slot p -> expert p % E.
/// `model_layers` (0: the snapshot's) must exceed every planned layer id; throws UsageError otherwise.
std::string sglang_expert_location(const PlanRecord& record, std::int64_t model_layers = 0);

/// TensorRT-LLM's `moe_load_balancer.yaml` for a static placement: `num_slots` R,
/// `initial_global_assignments` {model layer id: [R expert ids]} for the MoE layers only, and
/// `layer_updates_per_iter: 0`.
std::string trtllm_load_balancer_yaml(const PlanRecord& record);

/// Writes the export of `record` to `path` (under a temporary name, then renamed).
void export_plan(const PlanRecord& record, ExportFormat format, const std::string& path, std::int64_t model_layers = 0);

}  // namespace eplb
