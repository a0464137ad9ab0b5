// What each snapshot reader hands to read_snapshot before the read options are applied.
#pragma once

#include <eplb/snapshot.hpp>

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace eplb::io {

/// Loads as found in a file: every recorded layer (dense ones included) and every column.
struct RawSnapshot {
    std::string format;                ///< e.g. "sglang-json", "sglang-torch", "eplb-hdf5"
    std::string field = "logical_count";///< the field the counts came from, for messages
    at::Tensor steps;                  ///< [T, L_all, C] float64
    bool has_step_axis = true;         ///< false when the file holds one [L][C] matrix
    std::vector<std::int64_t> row_ids; ///< model layer of each row; empty: row l is layer l
    std::int64_t model_layers = 0;     ///< layers of the model; 0: one past the last row id
    std::string model;
    std::string checkpoint;
};

/// A RawSnapshot of `format` holding `logical_count` [T, L, C] or [L, C] (any real dtype); throws
/// FormatError naming the file when it has another rank, no element, or a non-numeric dtype.
RawSnapshot raw_counts(const std::string& path, const std::string& format, const at::Tensor& counts);

/// JSON: SGLang's `logical_count` [L][E] or vLLM's `load_history`.
RawSnapshot read_json_raw(const std::string& path);

/// `torch.save` zip archive (its bytes already read): a dict with `logical_count`, or a tensor.
RawSnapshot read_torch_raw(const std::string& path, const std::string& bytes);

/// eplb's HDF5 snapshot layout.
RawSnapshot read_hdf5_raw(const std::string& path);

/// Checks that every count is finite and non-negative; throws FormatError naming the first bad
/// cell, e.g. "<path>: logical_count[2][5][17] = nan; counts must be finite and non-negative".
void require_valid_counts(const std::string& path, const RawSnapshot& raw);

/// Applies `options` (columns), checks the row ids and drops all-zero layers.
Snapshot finish_snapshot(const std::string& path, RawSnapshot raw, const ReadOptions& options);

}  // namespace eplb::io
