// Printing plans and archive summaries: shared by `eplb plan` and `eplb inspect`.
#pragma once

#include <eplb/archive.hpp>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <vector>

namespace eplb::cli {

/// A plan: header (source, shape, window, topology, policy), the per-layer table when `layers`,
/// then the in-sample aggregates, next-window aggregates and migration where present.
void print_plan(std::FILE* out, const PlanRecord& record, bool layers);

/// A plan as JSON: identity, aggregates (and next-window, migration) and, when `layers`, per layer.
nlohmann::json plan_json(const PlanRecord& record, bool layers);

/// One line per plan, grouped by input, topology, policy and window: id, source, window, topology,
/// policy, in-sample and next-window balancedness, bound ratio, gap, duplicates, moved slots.
void print_summaries(std::FILE* out, std::vector<PlanSummary> plans);

/// The summaries as a JSON array.
nlohmann::json summaries_json(const std::vector<PlanSummary>& plans);

/// "failed inputs:" and one line per failure (nothing when there is none).
void print_failures(std::FILE* out, const std::vector<FailureRecord>& failures);

}  // namespace eplb::cli
