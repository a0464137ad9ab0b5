#include "io/sglang_expert_location.hpp"

#include <eplb/errors.hpp>

#include <ATen/ops/from_blob.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <vector>

namespace eplb::io {

at::Tensor read_sglang_expert_location(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw FormatError(path + ": cannot open the file (missing or unreadable)");
    nlohmann::json doc;
    try {
        doc = nlohmann::json::parse(in);
    } catch (const nlohmann::json::parse_error& e) {
        throw FormatError(path + ": not valid JSON (byte " + std::to_string(e.byte) + ")");
    }
    const char* field = "physical_to_logical_map";
    if (!doc.is_object() || !doc.contains(field))
        throw FormatError(path + ": no field 'physical_to_logical_map' (expected SGLang's expert-location file "
                                 "{\"physical_to_logical_map\": [[...]]})");
    const nlohmann::json& map = doc[field];
    if (!map.is_array() || map.empty())
        throw FormatError(path + ": physical_to_logical_map is not a non-empty list of rows");
    std::vector<std::int64_t> ids;
    std::size_t width = 0;
    for (std::size_t l = 0; l < map.size(); ++l) {
        const std::string row_name = std::string(field) + "[" + std::to_string(l) + "]";
        if (!map[l].is_array() || map[l].empty())
            throw FormatError(path + ": " + row_name + " is not a non-empty list of expert ids");
        if (l == 0) width = map[l].size();
        if (map[l].size() != width)
            throw FormatError(path + ": " + row_name + " has " + std::to_string(map[l].size()) + " entries; expected " +
                              std::to_string(width) + " like the first row (ragged rows)");
        for (std::size_t p = 0; p < width; ++p) {
            const nlohmann::json& v = map[l][p];
            if (!v.is_number_integer() || v.get<std::int64_t>() < 0)
                throw FormatError(path + ": " + row_name + "[" + std::to_string(p) + "] = " + v.dump() +
                                  "; expected a logical expert id (integer >= 0)");
            ids.push_back(v.get<std::int64_t>());
        }
    }
    return at::from_blob(ids.data(), {static_cast<std::int64_t>(map.size()), static_cast<std::int64_t>(width)},
                         at::TensorOptions().dtype(at::kLong))
        .clone();
}

}  // namespace eplb::io
