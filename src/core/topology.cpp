#include <eplb/errors.hpp>
#include <eplb/topology.hpp>

#include <charconv>
#include <string>
#include <vector>

namespace eplb {
namespace {

std::string field_value(const char* name, std::int64_t value) {
    return std::string(name) + "=" + std::to_string(value);
}

void require_multiple(const char* name, std::int64_t value, const char* of_name, std::int64_t of) {
    if (value % of != 0)
        throw TopologyError(field_value(name, value) + " is not a multiple of " + field_value(of_name, of));
}

}  // namespace

Topology Topology::parse(std::string_view text) {
    std::vector<std::int64_t> fields;
    std::size_t start = 0;
    while (true) {
        const std::size_t slash = text.find('/', start);
        const std::string_view part = text.substr(start, slash == std::string_view::npos ? text.npos : slash - start);
        std::int64_t value = 0;
        const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), value);
        if (part.empty() || ec != std::errc() || end != part.data() + part.size() || value <= 0)
            throw UsageError("topology '" + std::string(text) +
                             "' is not R/groups/N/G (four positive integers, e.g. 288/8/4/32)");
        fields.push_back(value);
        if (slash == std::string_view::npos) break;
        start = slash + 1;
    }
    if (fields.size() != 4)
        throw UsageError("topology '" + std::string(text) + "' has " + std::to_string(fields.size()) +
                         " fields; expected R/groups/N/G, e.g. 288/8/4/32");
    Topology t{fields[0], fields[1], fields[2], fields[3]};
    t.validate();
    return t;
}

void Topology::validate() const {
    const std::pair<const char*, std::int64_t> fields[] = {
        {"num_replicas", num_replicas}, {"num_groups", num_groups}, {"num_nodes", num_nodes}, {"num_gpus", num_gpus}};
    for (const auto& [name, value] : fields)
        if (value <= 0) throw TopologyError(field_value(name, value) + " must be positive");
    require_multiple("num_replicas", num_replicas, "num_gpus", num_gpus);
    require_multiple("num_gpus", num_gpus, "num_nodes", num_nodes);
}

void Topology::validate(std::int64_t num_experts) const {
    validate();
    if (num_experts <= 0) throw TopologyError(field_value("num_experts", num_experts) + " must be positive");
    require_multiple("num_experts", num_experts, "num_groups", num_groups);
    if (num_replicas < num_experts)
        throw TopologyError(field_value("num_replicas", num_replicas) + " is smaller than " +
                            field_value("num_experts", num_experts) + ": every expert needs a slot");
}

Topology Topology::effective() const {
    if (is_hierarchical()) return *this;
    return Topology{num_replicas, 1, 1, num_gpus};
}

std::string Topology::to_string() const {
    return std::to_string(num_replicas) + "/" + std::to_string(num_groups) + "/" + std::to_string(num_nodes) +
           "/" + std::to_string(num_gpus);
}

}  // namespace eplb
