// Recorded expert loads ("load snapshots") and the readers for them.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace eplb {

/// Loads recorded for one model/checkpoint: T recorded steps of L MoE layers and E experts.
///
/// Layers that are zero in every step are dense (non-MoE) layers: they are dropped from `steps`,
/// while `layer_ids` keeps the model layer index of every remaining row, so that exported plans
/// land on the right layers of the serving engine.
struct Snapshot {
    std::string source;                  ///< the file it was read from
    std::string format;                  ///< the reader that understood it, e.g. "sglang-json"
    at::Tensor steps;                    ///< [T, L, E] float64 token counts, MoE layers only
    std::vector<std::int64_t> layer_ids; ///< [L] model layer index of each row
    std::int64_t model_layers = 0;       ///< layers recorded in the file, dense ones included
    std::string model;                   ///< model name, where the file gives one
    std::string checkpoint;              ///< checkpoint name, where the file gives one

    std::int64_t num_steps() const { return steps.size(0); }
    std::int64_t num_layers() const { return steps.size(1); }
    std::int64_t num_experts() const { return steps.size(2); }
};

/// Reads a JSON snapshot: SGLang's `{"logical_count": [L_all][E]}` statistics file or a vLLM-style
/// `{"load_history": [{"logical_expert_load": [L][E]}, ...]}` history. Throws FormatError naming
/// the file and the field (missing key, ragged rows, non-numbers, negative or non-finite counts,
/// no MoE layer at all).
Snapshot read_json_snapshot(const std::string& path);

/// Drops the layers that are zero in every step of `steps` [T, L_all, E] and returns the snapshot
/// with `layer_ids` set; throws FormatError naming `source` when every layer is zero.
Snapshot make_snapshot(std::string source, std::string format, const at::Tensor& steps);

}  // namespace eplb
