#include "io/raw_snapshot.hpp"

#include <eplb/errors.hpp>

#include <ATen/ops/from_blob.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

namespace eplb::io {
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

RawSnapshot read_json_raw(const std::string& path) {
    const json doc = parse_json_file(path);
    if (!doc.is_object())
        throw FormatError(path + ": top level is " + describe(doc) +
                          "; expected an object with 'logical_count' or 'load_history'");
    std::vector<double> values;
    std::int64_t rows = -1, width = -1;
    if (doc.contains("logical_count")) {
        append_matrix(doc["logical_count"], path, "logical_count", rows, width, values);
        RawSnapshot raw;
        raw.format = "sglang-json";
        raw.steps = to_steps(values, 1, rows, width);
        raw.has_step_axis = false;
        return raw;
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
        RawSnapshot raw;
        raw.format = "vllm-json";
        raw.field = "load_history";
        raw.steps = to_steps(values, static_cast<std::int64_t>(history.size()), rows, width);
        return raw;
    }
    throw FormatError(path + ": no field 'logical_count' or 'load_history' (expected SGLang's "
                      "{\"logical_count\": [[...]]} or {\"load_history\": [{\"logical_expert_load\": [[...]]}]})");
}

}  // namespace eplb::io
