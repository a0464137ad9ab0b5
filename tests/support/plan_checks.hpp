// Checks on plans shared by several test programs.
#pragma once

#include <eplb/plan.hpp>
#include <eplb/topology.hpp>

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

namespace eplb::test {

/// Each expert's replicas sit on the node its group was given, and each node holds groups/N groups.
inline void expect_groups_stay_on_their_node(const Plan& plan, const Topology& t, const std::string& label) {
    const std::int64_t L = plan.num_layers(), R = plan.num_replicas(), E = plan.num_experts();
    const std::int64_t group_size = E / t.num_groups, per_node = t.slots_per_node();
    const at::Tensor p2l = plan.phy2log.contiguous();
    for (std::int64_t l = 0; l < L; ++l) {
        std::vector<std::int64_t> node_of_group(static_cast<std::size_t>(t.num_groups), -1);
        std::vector<std::set<std::int64_t>> groups_on_node(static_cast<std::size_t>(t.num_nodes));
        for (std::int64_t p = 0; p < R; ++p) {
            const std::int64_t g = p2l.data_ptr<std::int64_t>()[l * R + p] / group_size, n = p / per_node;
            if (node_of_group[g] < 0) node_of_group[g] = n;
            ASSERT_EQ(node_of_group[g], n) << label << ": group " << g << " spans nodes in layer " << l;
            groups_on_node[n].insert(g);
        }
        for (const auto& groups : groups_on_node)
            EXPECT_EQ(static_cast<std::int64_t>(groups.size()), t.num_groups / t.num_nodes) << label;
    }
}

/// Every expert's primary replica (log2phy[l, e, 0]) sits on one node per group, each node being
/// home to groups/N groups.
inline void expect_primaries_on_their_home_node(const Plan& plan, const Topology& t, const std::string& label) {
    const std::int64_t L = plan.num_layers(), E = plan.num_experts(), X = plan.log2phy.size(2);
    const std::int64_t group_size = E / t.num_groups, per_node = t.slots_per_node();
    const at::Tensor l2p = plan.log2phy.contiguous();
    for (std::int64_t l = 0; l < L; ++l) {
        std::vector<std::int64_t> home(static_cast<std::size_t>(t.num_groups), -1);
        std::vector<std::int64_t> groups_on_node(static_cast<std::size_t>(t.num_nodes), 0);
        for (std::int64_t e = 0; e < E; ++e) {
            const std::int64_t g = e / group_size, n = l2p.data_ptr<std::int64_t>()[(l * E + e) * X] / per_node;
            if (home[g] < 0) {
                home[g] = n;
                ++groups_on_node[n];
            }
            ASSERT_EQ(home[g], n) << label << ": primaries of group " << g << " span nodes in layer " << l;
        }
        for (const std::int64_t groups : groups_on_node) EXPECT_EQ(groups, t.num_groups / t.num_nodes) << label;
    }
}

}  // namespace eplb::test
