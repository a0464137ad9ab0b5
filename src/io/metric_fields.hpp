// The index fields and metric fields an archive stores, by name: one list shared by the writer, the reader and
// `eplb verify`, so that a field added to Aggregates or PlanMetrics is added everywhere at once.
#pragma once

#include <eplb/archive.hpp>

namespace eplb::io {

/// The floating-point aggregates (attributes of a plan, columns of the index); `duplicates` is
/// the one integer aggregate and is handled next to these.
struct AggregateDouble {
    const char* name;
    double Aggregates::*field;
};
inline constexpr AggregateDouble kAggregateDoubles[] = {
    {"balancedness", &Aggregates::balancedness},       {"mean_balancedness", &Aggregates::mean_balancedness},
    {"imbalance_ratio", &Aggregates::imbalance_ratio}, {"node_balancedness", &Aggregates::node_balancedness},
    {"bound_ratio", &Aggregates::bound_ratio},         {"gap", &Aggregates::gap},
    {"node_locality", &Aggregates::node_locality},
};

/// The floating-point per-layer columns of a plan's metrics table ([L] each); `duplicates` is
/// the one integer column.
struct LayerDoubles {
    const char* name;
    std::vector<double> PlanMetrics::*field;
};
inline constexpr LayerDoubles kLayerDoubles[] = {
    {"total_load", &PlanMetrics::total_load},
    {"mean_gpu_load", &PlanMetrics::mean_gpu_load},
    {"max_gpu_load", &PlanMetrics::max_gpu_load},
    {"balancedness", &PlanMetrics::balancedness},
    {"imbalance_ratio", &PlanMetrics::imbalance_ratio},
    {"max_node_load", &PlanMetrics::max_node_load},
    {"node_balancedness", &PlanMetrics::node_balancedness},
    {"lower_bound", &PlanMetrics::lower_bound},
    {"gap", &PlanMetrics::gap},
    {"node_locality", &PlanMetrics::node_locality},
};

/// The identity columns of the index, in their order: each is text or a number.
struct SummaryField {
    const char* name;
    std::string PlanSummary::*text;     ///< or nullptr
    std::int64_t PlanSummary::*number;  ///< or nullptr
};
inline constexpr SummaryField kSummaryFields[] = {
    {"id", &PlanSummary::id, nullptr},
    {"source", &PlanSummary::source, nullptr},
    {"window", nullptr, &PlanSummary::window},
    {"first_step", nullptr, &PlanSummary::first_step},
    {"last_step", nullptr, &PlanSummary::last_step},
    {"num_windows", nullptr, &PlanSummary::num_windows},
    {"topology", &PlanSummary::topology, nullptr},
    {"policy", &PlanSummary::policy, nullptr},
    {"policy_options", &PlanSummary::policy_options, nullptr},
    {"num_layers", nullptr, &PlanSummary::num_layers},
    {"num_experts", nullptr, &PlanSummary::num_experts},
    {"bound_kind", &PlanSummary::bound_kind, nullptr},
};

inline constexpr const char* kDuplicates = "duplicates";

}  // namespace eplb::io
