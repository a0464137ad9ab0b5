// Tensor shapes in messages.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace eplb::io {

/// "[d0,d1,...]", e.g. "[3,61,256]".
inline std::string shape_text(const at::Tensor& t) {
    std::string s = "[";
    for (std::int64_t d = 0; d < t.dim(); ++d) s += (d ? "," : "") + std::to_string(t.size(d));
    return s + "]";
}

}  // namespace eplb::io
