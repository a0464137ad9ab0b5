// Loading a plan's layer into the balanced policy's Placement, for tests of its searches.
#pragma once

#include "core/balanced_placement.hpp"

#include <eplb/plan.hpp>
#include <eplb/topology.hpp>

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace eplb::test {

/// Layer `l` of `plan` in a Placement of `mode` (duplicates forbidden), with planning loads
/// `weight` [E]; each expert's replica 0 is its primary.
inline core::Placement placement_of(const Plan& plan, std::int64_t l, const std::vector<double>& weight,
                                    const Topology& t, PlacementMode mode = PlacementMode::global) {
    core::Placement pl(core::LayerShape::make(t, plan.logcnt.size(1), mode, true));
    const at::Tensor row = plan.phy2log[l].contiguous();
    std::vector<std::int32_t> rank(static_cast<std::size_t>(t.num_replicas), 1);
    for (std::int64_t e = 0; e < plan.logcnt.size(1); ++e) rank[plan.log2phy[l][e][0].item<std::int64_t>()] = 0;
    pl.reset(weight.data(), row.data_ptr<std::int64_t>(), rank.data());
    return pl;
}

}  // namespace eplb::test
