// SGLang's expert-location file: the plan a server was started with (--init-expert-location).
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace eplb::io {

/// Reads `{"physical_to_logical_map": [rows][R]}` (SGLang's expert-location JSON; one row per
/// model layer, dense layers included, or per MoE layer) as an int64 tensor [rows, R]. Throws
/// FormatError naming the file and the field when it is missing, ragged or holds a non-integer
/// or negative id.
at::Tensor read_sglang_expert_location(const std::string& path);

}  // namespace eplb::io
