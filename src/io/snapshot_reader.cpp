// read_snapshot: picks the reader, applies the read options, drops dense layers; and windows.
#include "io/files.hpp"
#include "io/raw_snapshot.hpp"
#include "io/sha256.hpp"
#include "io/shape_text.hpp"

#include <eplb/errors.hpp>
#include <eplb/snapshot.hpp>

#include <ATen/ops/index_select.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>

namespace eplb {
namespace io {
namespace {

enum class FileKind { hdf5, torch, json };

bool starts_with(const std::string& bytes, std::size_t at, std::string_view magic) {
    return bytes.size() >= at + magic.size() && bytes.compare(at, magic.size(), magic) == 0;
}

bool has_hdf5_signature(const std::string& bytes) {
    // The superblock is at byte 0, or after a user block of 512, 1024, 2048, ... bytes.
    const std::string_view magic("\x89HDF\r\n\x1a\n", 8);
    for (std::size_t at = 0; at + magic.size() <= bytes.size(); at = at ? 2 * at : 512)
        if (starts_with(bytes, at, magic)) return true;
    return false;
}

std::string extension_of(const std::string& path) {
    std::string ext = std::filesystem::path(path).extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    return ext;
}

// By content first; the extension decides only what the content does not.
FileKind detect_kind(const std::string& path, const std::string& bytes) {
    if (bytes.empty()) throw FormatError(path + ": the file is empty");
    if (has_hdf5_signature(bytes)) return FileKind::hdf5;
    if (starts_with(bytes, 0, "PK\x03\x04") || static_cast<unsigned char>(bytes[0]) == 0x80) return FileKind::torch;
    const std::size_t first = bytes.find_first_not_of(" \t\r\n");
    if (first != std::string::npos && (bytes[first] == '{' || bytes[first] == '[')) return FileKind::json;
    const std::string ext = extension_of(path);
    if (ext == ".json") return FileKind::json;
    if (ext == ".h5" || ext == ".hdf5" || ext == ".he5")
        throw FormatError(path + ": not an HDF5 file (no HDF5 signature: truncated or not HDF5)");
    if (ext == ".pt" || ext == ".pth") return FileKind::torch;
    throw FormatError(path + ": unknown snapshot format: expected JSON (.json), eplb's HDF5 snapshot (.h5) or a "
                             "torch.save file (.pt)");
}

RawSnapshot read_raw(const std::string& path, const std::string& bytes) {
    switch (detect_kind(path, bytes)) {
        case FileKind::hdf5: return read_hdf5_raw(path);
        case FileKind::torch: return read_torch_raw(path, bytes);
        case FileKind::json: break;
    }
    return read_json_raw(path);
}

std::string cell_name(const RawSnapshot& raw, std::int64_t index) {
    const std::int64_t L = raw.steps.size(1), C = raw.steps.size(2);
    const std::int64_t t = index / (L * C), l = index / C % L, c = index % C;
    return raw.field + (raw.has_step_axis ? "[" + std::to_string(t) + "]" : "") + "[" + std::to_string(l) + "][" +
           std::to_string(c) + "]";
}

at::Tensor select_columns(const std::string& path, const RawSnapshot& raw, const ReadOptions& options) {
    const std::int64_t C = raw.steps.size(2);
    at::Tensor steps = raw.steps;
    if (options.num_experts > 0) {
        if (options.num_experts > C)
            throw FormatError(path + ": " + raw.field + " has " + std::to_string(C) + " columns; cannot keep the first " +
                              std::to_string(options.num_experts) + " as experts");
        steps = steps.narrow(2, 0, options.num_experts);
    }
    steps = steps.contiguous().clone();
    const std::int64_t E = steps.size(2);
    for (const std::int64_t c : options.zero_columns) {
        if (c < 0 || c >= E)
            throw FormatError(path + ": cannot zero column " + std::to_string(c) + ": " + raw.field + " has " +
                              std::to_string(E) + " expert columns");
        steps.select(2, c).zero_();
    }
    return steps;
}

std::vector<std::int64_t> checked_row_ids(const std::string& path, const RawSnapshot& raw) {
    const std::int64_t L = raw.steps.size(1);
    if (raw.row_ids.empty()) {
        std::vector<std::int64_t> ids(static_cast<std::size_t>(L));
        for (std::int64_t l = 0; l < L; ++l) ids[l] = l;
        return ids;
    }
    if (static_cast<std::int64_t>(raw.row_ids.size()) != L)
        throw FormatError(path + ": layer_ids has " + std::to_string(raw.row_ids.size()) + " entries; " + raw.field +
                          " has " + std::to_string(L) + " layers");
    for (std::size_t i = 0; i < raw.row_ids.size(); ++i)
        if (raw.row_ids[i] < 0 || (i > 0 && raw.row_ids[i] <= raw.row_ids[i - 1]))
            throw FormatError(path + ": layer_ids[" + std::to_string(i) + "] = " + std::to_string(raw.row_ids[i]) +
                              "; expected non-negative, strictly increasing model layer indices");
    return raw.row_ids;
}

}  // namespace

RawSnapshot raw_counts(const std::string& path, const std::string& format, const at::Tensor& counts) {
    if (counts.dim() != 2 && counts.dim() != 3)
        throw FormatError(path + ": logical_count has shape " + shape_text(counts) +
                          "; expected [steps, layers, experts] or [layers, experts]");
    if (counts.numel() == 0)
        throw FormatError(path + ": logical_count has shape " + shape_text(counts) + "; it holds no counts");
    const at::ScalarType type = counts.scalar_type();
    if (!(at::isFloatingType(type) || at::isIntegralType(type, /*includeBool=*/false)))
        throw FormatError(path + ": logical_count has dtype " + std::string(c10::toString(type)) +
                          "; expected integer or floating-point counts");
    RawSnapshot raw;
    raw.format = format;
    raw.has_step_axis = counts.dim() == 3;
    raw.steps = (counts.dim() == 3 ? counts : counts.unsqueeze(0)).to(at::kCPU).to(at::kDouble).contiguous();
    return raw;
}

void require_valid_counts(const std::string& path, const RawSnapshot& raw) {
    const at::Tensor s = raw.steps;
    const double* p = s.data_ptr<double>();
    for (std::int64_t i = 0, n = s.numel(); i < n; ++i) {
        if (std::isfinite(p[i]) && p[i] >= 0.0) continue;
        const std::string value = std::isnan(p[i]) ? "nan" : std::isinf(p[i]) ? (p[i] > 0 ? "inf" : "-inf")
                                                                              : std::to_string(p[i]);
        throw FormatError(path + ": " + cell_name(raw, i) + " = " + value + "; counts must be finite and non-negative");
    }
}

Snapshot finish_snapshot(const std::string& path, RawSnapshot raw, const ReadOptions& options) {
    raw.steps = raw.steps.to(at::kCPU).to(at::kDouble).contiguous();
    require_valid_counts(path, raw);
    const at::Tensor s = select_columns(path, raw, options);
    const std::vector<std::int64_t> row_ids = checked_row_ids(path, raw);
    const std::int64_t T = s.size(0), L = s.size(1), E = s.size(2);
    if (raw.model_layers != 0 && raw.model_layers <= row_ids.back())
        throw FormatError(path + ": num_model_layers = " + std::to_string(raw.model_layers) +
                          " but layer_ids reaches " + std::to_string(row_ids.back()));
    std::vector<std::int64_t> moe_rows, moe_ids;
    const double* p = s.data_ptr<double>();
    for (std::int64_t l = 0; l < L; ++l) {
        bool any = false;
        for (std::int64_t t = 0; t < T && !any; ++t)
            for (std::int64_t e = 0; e < E && !any; ++e) any = p[(t * L + l) * E + e] != 0.0;
        if (!any) continue;
        moe_rows.push_back(l);
        moe_ids.push_back(row_ids[l]);
    }
    if (moe_rows.empty()) throw FormatError(path + ": " + raw.field + ": every layer is zero in every step: no MoE layer to plan");
    Snapshot snap;
    snap.source = path;
    snap.format = std::move(raw.format);
    snap.model_layers = raw.model_layers != 0 ? raw.model_layers : row_ids.back() + 1;
    snap.layer_ids = std::move(moe_ids);
    snap.model = std::move(raw.model);
    snap.checkpoint = std::move(raw.checkpoint);
    const at::Tensor index = at::tensor(moe_rows, at::TensorOptions().dtype(at::kLong));
    snap.steps = static_cast<std::int64_t>(moe_rows.size()) == L ? s : at::index_select(s, 1, index).contiguous();
    return snap;
}

}  // namespace io

Snapshot read_snapshot(const std::string& path, const ReadOptions& options) {
    const std::string bytes = io::read_file_bytes(path);
    Snapshot snap = io::finish_snapshot(path, io::read_raw(path, bytes), options);
    snap.sha256 = io::sha256_hex(bytes);
    return snap;
}

Snapshot read_json_snapshot(const std::string& path) {
    Snapshot snap = io::finish_snapshot(path, io::read_json_raw(path), {});
    snap.sha256 = io::sha256_hex(io::read_file_bytes(path));
    return snap;
}

Snapshot make_snapshot(std::string source, std::string format, const at::Tensor& steps) {
    io::RawSnapshot raw;
    raw.format = std::move(format);
    raw.steps = steps;
    return io::finish_snapshot(source, std::move(raw), {});
}

Windowing Windowing::parse(std::string_view text) {
    if (text == "sum") return Windowing{Kind::sum, 0};
    if (text == "each") return Windowing{Kind::each, 0};
    std::int64_t k = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), k);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size() || k <= 0)
        throw UsageError("windows '" + std::string(text) +
                         "' is not 'sum', 'each' or a positive number of consecutive steps");
    return Windowing{Kind::consecutive, k};
}

std::string Windowing::to_string() const {
    switch (kind) {
        case Kind::sum: return "sum";
        case Kind::each: return "each";
        case Kind::consecutive: break;
    }
    return std::to_string(steps);
}

std::string ReadOptions::to_string() const {
    std::vector<std::int64_t> zero = zero_columns;
    std::sort(zero.begin(), zero.end());
    zero.erase(std::unique(zero.begin(), zero.end()), zero.end());
    std::string zero_text;
    for (const std::int64_t c : zero) zero_text += (zero_text.empty() ? "" : ",") + std::to_string(c);
    return "windows=" + windowing.to_string() + ";experts=" + (num_experts > 0 ? std::to_string(num_experts) : "all") +
           ";zero=" + zero_text;
}

std::vector<Window> make_windows(const Snapshot& snapshot, const Windowing& windowing) {
    const at::Tensor s = snapshot.steps.to(at::kDouble).contiguous();
    const std::int64_t T = s.size(0), L = s.size(1), E = s.size(2);
    const std::int64_t width = windowing.kind == Windowing::Kind::sum    ? T
                               : windowing.kind == Windowing::Kind::each ? 1
                                                                         : windowing.steps;
    if (width <= 0) throw UsageError("a window needs at least one step");
    std::vector<Window> windows;
    const double* p = s.data_ptr<double>();
    for (std::int64_t first = 0; first < T; first += width) {
        Window w;
        w.index = static_cast<std::int64_t>(windows.size());
        w.first_step = first;
        w.last_step = std::min(T, first + width) - 1;
        w.loads = at::zeros({L, E}, at::TensorOptions().dtype(at::kDouble));
        double* out = w.loads.data_ptr<double>();
        // Summed in step order: the same input gives the same bits everywhere.
        for (std::int64_t t = w.first_step; t <= w.last_step; ++t)
            for (std::int64_t i = 0; i < L * E; ++i) out[i] += p[t * L * E + i];
        windows.push_back(std::move(w));
    }
    return windows;
}

}  // namespace eplb
