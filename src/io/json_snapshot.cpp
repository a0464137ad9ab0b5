#include <eplb/errors.hpp>
#include <eplb/snapshot.hpp>

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/index_select.h>
#include <ATen/ops/tensor.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <sstream>

namespace eplb {
namespace {

using nlohmann::json;

json parse_json_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw FormatError(path + ": cannot open the file (missing or unreadable)");
    try {
        return json::parse(in);
    } catch (const json::parse_error& e) {
        throw FormatError(path + ": not valid JSON (byte " + std::to_string(e.byte) + ")");
    }
}

std::string describe(const json& v) {
    std::string s = v.dump();
    return s.size() > 40 ? s.substr(0, 37) + "..." : s;
}

// Appends the numbers of a [L][E] JSON matrix to `out`; `field` names it in messages and `width`
// (E) is fixed by the first row seen (-1 when unknown).
void append_matrix(const json& m, const std::string& path, const std::string& field, std::int64_t& rows,
                   std::int64_t& width, std::vector<double>& out) {
    if (!m.is_array() || m.empty())
        throw FormatError(path + ": " + field + " is " + describe(m) + "; expected a non-empty list of rows");
    if (rows >= 0 && static_cast<std::int64_t>(m.size()) != rows)
        throw FormatError(path + ": " + field + " has " + std::to_string(m.size()) + " rows; expected " +
                          std::to_string(rows) + " like the first entry");
    rows = static_cast<std::int64_t>(m.size());
    for (std::size_t l = 0; l < m.size(); ++l) {
        const json& row = m[l];
        const std::string row_name = field + "[" + std::to_string(l) + "]";
        if (!row.is_array()) throw FormatError(path + ": " + row_name + " is " + describe(row) + "; expected a list of numbers");
        if (width < 0) width = static_cast<std::int64_t>(row.size());
        if (static_cast<std::int64_t>(row.size()) != width || width == 0)
            throw FormatError(path + ": " + row_name + " has " + std::to_string(row.size()) + " entries; expected " +
                              std::to_string(width) + " like the first row (ragged rows)");
        for (std::size_t e = 0; e < row.size(); ++e) {
            const json& v = row[e];
            const std::string cell = row_name + "[" + std::to_string(e) + "]";
            if (!v.is_number()) throw FormatError(path + ": " + cell + " is " + describe(v) + "; expected a number");
            const double x = v.get<double>();
            if (!std::isfinite(x) || x < 0.0)
                throw FormatError(path + ": " + cell + " = " + describe(v) + "; counts must be finite and non-negative");
            out.push_back(x);
        }
    }
}

at::Tensor to_steps(std::vector<double>& values, std::int64_t steps, std::int64_t rows, std::int64_t width) {
    return at::from_blob(values.data(), {steps, rows, width}, at::TensorOptions().dtype(at::kDouble)).clone();
}

}  // namespace

Snapshot make_snapshot(std::string source, std::string format, const at::Tensor& steps) {
    const at::Tensor s = steps.to(at::kDouble).contiguous();
    const std::int64_t T = s.size(0), L = s.size(1), E = s.size(2);
    std::vector<std::int64_t> moe;
    const double* p = s.data_ptr<double>();
    for (std::int64_t l = 0; l < L; ++l) {
        bool any = false;
        for (std::int64_t t = 0; t < T && !any; ++t)
            for (std::int64_t e = 0; e < E && !any; ++e) any = p[(t * L + l) * E + e] != 0.0;
        if (any) moe.push_back(l);
    }
    if (moe.empty()) throw FormatError(source + ": every layer is zero in every step: no MoE layer to plan");
    Snapshot snap;
    snap.source = std::move(source);
    snap.format = std::move(format);
    snap.model_layers = L;
    snap.layer_ids = moe;
    const at::Tensor index = at::tensor(moe, at::TensorOptions().dtype(at::kLong));
    snap.steps = static_cast<std::int64_t>(moe.size()) == L ? s : at::index_select(s, 1, index).contiguous();
    return snap;
}

Snapshot read_json_snapshot(const std::string& path) {
    const json doc = parse_json_file(path);
    if (!doc.is_object())
        throw FormatError(path + ": top level is " + describe(doc) +
                          "; expected an object with 'logical_count' or 'load_history'");
    std::vector<double> values;
    std::int64_t rows = -1, width = -1;
    if (doc.contains("logical_count")) {
        append_matrix(doc["logical_count"], path, "logical_count", rows, width, values);
        return make_snapshot(path, "sglang-json", to_steps(values, 1, rows, width));
    }
    if (doc.contains("load_history")) {
        const json& history = doc["load_history"];
        if (!history.is_array() || history.empty())
            throw FormatError(path + ": load_history is " + describe(history) + "; expected a non-empty list");
        for (std::size_t t = 0; t < history.size(); ++t) {
            const std::string field = "load_history[" + std::to_string(t) + "].logical_expert_load";
            if (!history[t].is_object() || !history[t].contains("logical_expert_load"))
                throw FormatError(path + ": " + field + " is missing");
            append_matrix(history[t]["logical_expert_load"], path, field, rows, width, values);
        }
        return make_snapshot(path, "vllm-json", to_steps(values, static_cast<std::int64_t>(history.size()), rows, width));
    }
    throw FormatError(path + ": no field 'logical_count' or 'load_history' (expected SGLang's "
                      "{\"logical_count\": [[...]]} or {\"load_history\": [{\"logical_expert_load\": [[...]]}]})");
}

}  // namespace eplb
