// Recorded expert loads ("load snapshots"), the readers for them, and planning windows.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <string_view>
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
    std::string sha256;                  ///< SHA-256 of the file's bytes (hex), empty when not read from a file
    at::Tensor steps;                    ///< [T, L, E] float64 token counts, MoE layers only
    std::vector<std::int64_t> layer_ids; ///< [L] model layer index of each row
    std::int64_t model_layers = 0;       ///< layers of the model, dense ones included
    std::string model;                   ///< model name, where the file gives one
    std::string checkpoint;              ///< checkpoint name, where the file gives one

    std::int64_t num_steps() const { return steps.size(0); }
    std::int64_t num_layers() const { return steps.size(1); }
    std::int64_t num_experts() const { return steps.size(2); }
};

/// How the T recorded steps of a snapshot become planning windows (a window is the sum of
/// consecutive steps; a plan is made from window i and, deployed, lives during window i + 1).
struct Windowing {
    enum class Kind {
        sum,          ///< one window: the sum of all steps (the default)
        each,         ///< every step is a window
        consecutive,  ///< windows of `steps` consecutive steps; the last one may be shorter
    };
    Kind kind = Kind::sum;
    std::int64_t steps = 0;  ///< k, for `consecutive`

    /// Parses "sum", "each" or a positive integer k; throws UsageError otherwise.
    static Windowing parse(std::string_view text);
    /// "sum", "each" or k.
    std::string to_string() const;
};

/// How a file's loads are read: windows, and the columns that are expert counts.
///
/// Real dumps carry columns that are not expert counts (SGLang builds that append the fused shared
/// expert as column E; decode dumps whose last column collects padded top-k slots), so the
/// columns are first cut to the first `num_experts` (0 keeps all), then `zero_columns` are set to
/// zero, and only then are all-zero (dense) layers dropped.
struct ReadOptions {
    Windowing windowing;
    std::int64_t num_experts = 0;
    std::vector<std::int64_t> zero_columns;

    /// A canonical one-line form, part of every plan's key: "windows=sum;experts=all;zero=255".
    std::string to_string() const;
};

/// Reads a snapshot, choosing the reader by the file's content (HDF5 signature, zip archive of
/// `torch.save`, JSON text) and, where the content does not decide, by its extension:
/// - SGLang recorder dumps (`.pt`): `torch.save` of a dict with `logical_count` [T, L_all, E]
///   (a bare tensor is accepted too); LibTorch 1.13 cannot read a dict with exactly one key nor the
///   legacy (non-zip) format, and the error says how to re-save such files;
/// - JSON: SGLang's `{"logical_count": [L_all][E]}` or vLLM's
///   `{"load_history": [{"logical_expert_load": [L][E]}, ...]}`;
/// - eplb's HDF5 snapshot: dataset `logical_count` [T, L, E] or [L, E], optional attributes
///   `model`, `checkpoint`, `layer_ids` [L] and `num_model_layers` (see write_hdf5_snapshot).
/// Applies `options` (columns; the windowing is applied by make_windows) and drops dense layers.
/// Throws FormatError naming the file and the field: missing or empty file, truncated file,
/// missing dataset, wrong rank, ragged rows, NaN/Inf/negative counts, no MoE layer at all.
Snapshot read_snapshot(const std::string& path, const ReadOptions& options = {});

/// Reads a JSON snapshot (see read_snapshot) with default options.
Snapshot read_json_snapshot(const std::string& path);

/// Writes `snapshot` in eplb's HDF5 snapshot layout: `logical_count` [T, L, E] (int64 when every
/// count is an integer, else float64) and root attributes `layer_ids` [L], `num_model_layers`,
/// `model`, `checkpoint`, `format`. The file is written under a temporary name and renamed.
void write_hdf5_snapshot(const Snapshot& snapshot, const std::string& path);

/// Drops the layers that are zero in every step of `steps` [T, L_all, E] and returns the snapshot
/// with `layer_ids` set (row l of `steps` is model layer l); throws FormatError naming `source`
/// when every layer is zero.
Snapshot make_snapshot(std::string source, std::string format, const at::Tensor& steps);

/// One planning window: the sum of steps [first_step, last_step] of a snapshot.
struct Window {
    std::int64_t index = 0;
    std::int64_t first_step = 0;
    std::int64_t last_step = 0;  ///< inclusive
    at::Tensor loads;            ///< [L, E] float64
};

/// The windows of `snapshot` under `windowing`, in step order.
std::vector<Window> make_windows(const Snapshot& snapshot, const Windowing& windowing);

}  // namespace eplb
