// The balanced policy's planning load from a history of windows (issue 6, PlanOptions).
#pragma once

#include <eplb/rebalance.hpp>

#include <ATen/core/Tensor.h>

namespace eplb::core {

/// Combines `windows` [k, L, E] (float32, CPU, contiguous; window k-1 the newest) into the
/// planning load [L, E] (float64) as `options.aggregation` says (formulas at HistoryAggregation).
/// One window is returned as is, whatever the aggregation.
at::Tensor planning_load(const at::Tensor& windows, const PlanOptions& options);

}  // namespace eplb::core
