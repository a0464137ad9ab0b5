#include "bounds.hpp"

#include <eplb/errors.hpp>
#include <eplb/metrics.hpp>

#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <numeric>
#include <string>

namespace eplb {
namespace {

const auto kDouble = at::TensorOptions().dtype(at::kDouble);

// Loads as a contiguous float64 CPU tensor of the plan's [L, E] shape.
at::Tensor loads_for(const Plan& plan, const at::Tensor& loads) {
    if (!loads.defined() || loads.dim() != 2 || loads.size(0) != plan.num_layers() ||
        loads.size(1) != plan.num_experts())
        throw PlanError("loads of shape [" + (loads.defined() && loads.dim() == 2
                                                  ? std::to_string(loads.size(0)) + "," + std::to_string(loads.size(1))
                                                  : std::string("?")) +
                        "] do not match the plan's [" + std::to_string(plan.num_layers()) + "," +
                        std::to_string(plan.num_experts()) + "]");
    return loads.to(at::kCPU).to(at::kDouble).contiguous();
}

void require_plan_topology(const Plan& plan, const Topology& t) {
    t.validate();
    if (plan.num_replicas() != t.num_replicas)
        throw PlanError("plan has " + std::to_string(plan.num_replicas()) + " slots per layer but topology " +
                        t.to_string() + " has num_replicas=" + std::to_string(t.num_replicas));
}

// Sums consecutive runs of `width` columns of a [L, C] table into [L, C / width].
at::Tensor sum_runs(const at::Tensor& table, std::int64_t width) {
    const std::int64_t L = table.size(0), C = table.size(1), K = C / width;
    at::Tensor out = at::zeros({L, K}, kDouble);
    const double* in = table.data_ptr<double>();
    double* o = out.data_ptr<double>();
    for (std::int64_t l = 0; l < L; ++l)
        for (std::int64_t c = 0; c < C; ++c) o[l * K + c / width] += in[l * C + c];
    return out;
}

struct RowStats {
    double mean = 0.0;
    double max = 0.0;
};

RowStats row_stats(const double* row, std::int64_t k) {
    RowStats s;
    for (std::int64_t i = 0; i < k; ++i) {
        s.mean += row[i];
        s.max = std::max(s.max, row[i]);
    }
    s.mean /= static_cast<double>(k);
    return s;
}

template <typename F>
void for_each_row(const at::Tensor& unit_loads, F f) {
    const at::Tensor t = unit_loads.to(at::kDouble).contiguous();
    const std::int64_t L = t.size(0), K = t.size(1);
    const double* p = t.data_ptr<double>();
    for (std::int64_t l = 0; l < L; ++l) f(l, row_stats(p + l * K, K));
}

at::Tensor per_layer_bound(const at::Tensor& loads, const Topology& t,
                           double (*layer_bound)(const double*, std::int64_t, const Topology&)) {
    t.validate();
    const at::Tensor w = loads.to(at::kCPU).to(at::kDouble).contiguous();
    const std::int64_t L = w.size(0), E = w.size(1);
    at::Tensor out = at::empty({L}, kDouble);
    for (std::int64_t l = 0; l < L; ++l) out.data_ptr<double>()[l] = layer_bound(w.data_ptr<double>() + l * E, E, t);
    return out;
}

template <typename T>
std::vector<T> to_vector(const at::Tensor& t) {
    const at::Tensor c = t.contiguous();
    return std::vector<T>(c.data_ptr<T>(), c.data_ptr<T>() + c.numel());
}

}  // namespace

at::Tensor slot_loads(const Plan& plan, const at::Tensor& loads) {
    const at::Tensor w = loads_for(plan, loads);
    const at::Tensor p2l = plan.phy2log.contiguous(), cnt = plan.logcnt.contiguous();
    const std::int64_t L = plan.num_layers(), R = plan.num_replicas(), E = plan.num_experts();
    at::Tensor out = at::empty({L, R}, kDouble);
    const double* wp = w.data_ptr<double>();
    const std::int64_t* pp = p2l.data_ptr<std::int64_t>();
    const std::int64_t* cp = cnt.data_ptr<std::int64_t>();
    double* o = out.data_ptr<double>();
    for (std::int64_t l = 0; l < L; ++l)
        for (std::int64_t p = 0; p < R; ++p) {
            const std::int64_t e = pp[l * R + p];
            o[l * R + p] = wp[l * E + e] / static_cast<double>(cp[l * E + e]);
        }
    return out;
}

at::Tensor gpu_loads(const Plan& plan, const at::Tensor& loads, const Topology& topology) {
    require_plan_topology(plan, topology);
    return sum_runs(slot_loads(plan, loads), topology.slots_per_gpu());
}

at::Tensor node_loads(const Plan& plan, const at::Tensor& loads, const Topology& topology) {
    require_plan_topology(plan, topology);
    return sum_runs(slot_loads(plan, loads), topology.slots_per_node());
}

at::Tensor layer_balancedness(const at::Tensor& unit_loads) {
    at::Tensor out = at::empty({unit_loads.size(0)}, kDouble);
    for_each_row(unit_loads, [&](std::int64_t l, RowStats s) {
        out.data_ptr<double>()[l] = s.max > 0.0 ? s.mean / s.max : 1.0;
    });
    return out;
}

double aggregate_balancedness(const at::Tensor& unit_loads) {
    double sum_mean = 0.0, sum_max = 0.0;
    for_each_row(unit_loads, [&](std::int64_t, RowStats s) {
        sum_mean += s.mean;
        sum_max += s.max;
    });
    return sum_max > 0.0 ? sum_mean / sum_max : 1.0;
}

double mean_balancedness(const at::Tensor& unit_loads) {
    double sum = 0.0;
    std::int64_t layers = 0;
    for_each_row(unit_loads, [&](std::int64_t, RowStats s) {
        if (s.max <= 0.0) return;
        sum += s.mean / s.max;
        ++layers;
    });
    return layers ? sum / static_cast<double>(layers) : 1.0;
}

at::Tensor layer_imbalance_ratio(const at::Tensor& unit_loads) {
    at::Tensor out = at::empty({unit_loads.size(0)}, kDouble);
    for_each_row(unit_loads, [&](std::int64_t l, RowStats s) {
        out.data_ptr<double>()[l] = s.mean > 0.0 ? (s.max - s.mean) / s.mean : 0.0;
    });
    return out;
}

double aggregate_imbalance_ratio(const at::Tensor& unit_loads) {
    double sum_mean = 0.0, sum_max = 0.0;
    for_each_row(unit_loads, [&](std::int64_t, RowStats s) {
        sum_mean += s.mean;
        sum_max += s.max;
    });
    return sum_mean > 0.0 ? (sum_max - sum_mean) / sum_mean : 0.0;
}

at::Tensor global_lower_bound(const at::Tensor& loads, const Topology& topology) {
    return per_layer_bound(loads, topology, core::global_layer_bound);
}

at::Tensor hierarchical_lower_bound(const at::Tensor& loads, const Topology& topology) {
    return per_layer_bound(loads, topology, core::hierarchical_layer_bound);
}

at::Tensor lower_bound(const at::Tensor& loads, const Topology& topology, BoundKind kind) {
    return kind == BoundKind::hierarchical ? hierarchical_lower_bound(loads, topology)
                                           : global_lower_bound(loads, topology);
}

double bound_ratio(const at::Tensor& loads, const at::Tensor& layer_bounds, const Topology& topology) {
    const at::Tensor w = loads.to(at::kDouble).contiguous();
    const at::Tensor lb = layer_bounds.to(at::kDouble).contiguous();
    const std::int64_t L = w.size(0), E = w.size(1);
    double sum_mean = 0.0, sum_bound = 0.0;
    for (std::int64_t l = 0; l < L; ++l) {
        const double* row = w.data_ptr<double>() + l * E;
        sum_mean += std::accumulate(row, row + E, 0.0) / static_cast<double>(topology.num_gpus);
        sum_bound += lb.data_ptr<double>()[l];
    }
    return sum_bound > 0.0 ? sum_mean / sum_bound : 1.0;
}

at::Tensor layer_duplicates(const Plan& plan, const Topology& topology) {
    require_plan_topology(plan, topology);
    const at::Tensor p2l = plan.phy2log.contiguous();
    const std::int64_t L = plan.num_layers(), R = plan.num_replicas(), S = topology.slots_per_gpu();
    std::vector<std::int64_t> seen_on(static_cast<std::size_t>(plan.num_experts()), -1);
    at::Tensor out = at::zeros({L}, at::TensorOptions().dtype(at::kLong));
    const std::int64_t* pp = p2l.data_ptr<std::int64_t>();
    for (std::int64_t l = 0; l < L; ++l)
        for (std::int64_t p = 0; p < R; ++p) {
            const std::int64_t gpu_key = l * topology.num_gpus + p / S;
            std::int64_t& seen = seen_on[pp[l * R + p]];
            if (seen == gpu_key) ++out.data_ptr<std::int64_t>()[l];
            seen = gpu_key;
        }
    return out;
}

namespace {

// Tokens of each layer served on their group's home node, and each layer's total: [L] each.
void home_node_tokens(const Plan& plan, const at::Tensor& loads, const Topology& t, std::vector<double>& local,
                      std::vector<double>& total) {
    require_plan_topology(plan, t);
    t.validate(plan.num_experts());
    const at::Tensor sl = slot_loads(plan, loads);
    const at::Tensor p2l = plan.phy2log.contiguous(), l2p = plan.log2phy.contiguous();
    const std::int64_t L = plan.num_layers(), R = plan.num_replicas(), E = plan.num_experts(), X = l2p.size(2);
    const std::int64_t group_size = E / t.num_groups, per_node = t.slots_per_node();
    const std::int64_t* pp = p2l.data_ptr<std::int64_t>();
    const std::int64_t* lp = l2p.data_ptr<std::int64_t>();
    const double* sp = sl.data_ptr<double>();
    local.assign(static_cast<std::size_t>(L), 0.0);
    total.assign(static_cast<std::size_t>(L), 0.0);
    std::vector<std::int64_t> primaries(static_cast<std::size_t>(t.num_groups * t.num_nodes));
    std::vector<std::int64_t> home(static_cast<std::size_t>(t.num_groups));
    for (std::int64_t l = 0; l < L; ++l) {
        std::fill(primaries.begin(), primaries.end(), 0);
        for (std::int64_t e = 0; e < E; ++e)
            ++primaries[(e / group_size) * t.num_nodes + lp[(l * E + e) * X] / per_node];
        for (std::int64_t g = 0; g < t.num_groups; ++g) {
            const auto row = primaries.begin() + g * t.num_nodes;
            home[g] = std::max_element(row, row + t.num_nodes) - row;
        }
        for (std::int64_t p = 0; p < R; ++p) {
            const double load = sp[l * R + p];
            total[l] += load;
            if (p / per_node == home[pp[l * R + p] / group_size]) local[l] += load;
        }
    }
}

}  // namespace

at::Tensor layer_node_locality(const Plan& plan, const at::Tensor& loads, const Topology& topology) {
    std::vector<double> local, total;
    home_node_tokens(plan, loads, topology, local, total);
    at::Tensor out = at::empty({plan.num_layers()}, kDouble);
    for (std::size_t l = 0; l < local.size(); ++l)
        out.data_ptr<double>()[l] = total[l] > 0.0 ? local[l] / total[l] : 1.0;
    return out;
}

double node_locality(const Plan& plan, const at::Tensor& loads, const Topology& topology) {
    std::vector<double> local, total;
    home_node_tokens(plan, loads, topology, local, total);
    const double sum_total = std::accumulate(total.begin(), total.end(), 0.0);
    return sum_total > 0.0 ? std::accumulate(local.begin(), local.end(), 0.0) / sum_total : 1.0;
}

std::int64_t Migration::total_moved_slots() const {
    return std::accumulate(moved_slots.begin(), moved_slots.end(), std::int64_t{0});
}
std::int64_t Migration::total_gpu_transfers() const {
    return std::accumulate(gpu_transfers.begin(), gpu_transfers.end(), std::int64_t{0});
}
std::int64_t Migration::total_node_transfers() const {
    return std::accumulate(node_transfers.begin(), node_transfers.end(), std::int64_t{0});
}

Migration migration(const Plan& before, const Plan& after, const Topology& topology) {
    require_plan_topology(before, topology);
    require_plan_topology(after, topology);
    if (before.num_layers() != after.num_layers() || before.num_experts() != after.num_experts())
        throw PlanError("plans cannot be compared: [" + std::to_string(before.num_layers()) + " layers, " +
                        std::to_string(before.num_experts()) + " experts] vs [" + std::to_string(after.num_layers()) +
                        " layers, " + std::to_string(after.num_experts()) + " experts]");
    const at::Tensor old_map = before.phy2log.contiguous(), new_map = after.phy2log.contiguous();
    const std::int64_t* op = old_map.data_ptr<std::int64_t>();
    const std::int64_t* np = new_map.data_ptr<std::int64_t>();
    const std::int64_t L = after.num_layers(), R = after.num_replicas(), E = after.num_experts();
    const std::int64_t S = topology.slots_per_gpu(), SN = topology.slots_per_node();
    Migration m;
    m.moved_slots.assign(static_cast<std::size_t>(L), 0);
    m.gpu_transfers.assign(static_cast<std::size_t>(L), 0);
    m.node_transfers.assign(static_cast<std::size_t>(L), 0);
    // Stamps mark "expert present before on this GPU / node" and "already counted on this GPU".
    std::vector<std::int64_t> on_old_gpu(static_cast<std::size_t>(E), -1), on_old_node(on_old_gpu), counted(on_old_gpu);
    for (std::int64_t l = 0; l < L; ++l) {
        const std::int64_t* o = op + l * R;
        const std::int64_t* n = np + l * R;
        for (std::int64_t p = 0; p < R; ++p) m.moved_slots[l] += o[p] != n[p];
        for (std::int64_t node_first = 0; node_first < R; node_first += SN) {
            const std::int64_t node_key = l * R + node_first;
            for (std::int64_t p = node_first; p < node_first + SN; ++p) on_old_node[o[p]] = node_key;
            for (std::int64_t gpu_first = node_first; gpu_first < node_first + SN; gpu_first += S) {
                const std::int64_t gpu_key = l * R + gpu_first;
                for (std::int64_t p = gpu_first; p < gpu_first + S; ++p) on_old_gpu[o[p]] = gpu_key;
                for (std::int64_t p = gpu_first; p < gpu_first + S; ++p) {
                    const std::int64_t e = n[p];
                    if (on_old_gpu[e] == gpu_key || counted[e] == gpu_key) continue;
                    counted[e] = gpu_key;
                    ++m.gpu_transfers[l];
                    m.node_transfers[l] += on_old_node[e] != node_key;
                }
            }
        }
    }
    return m;
}

BoundKind reference_bound_kind(const Topology& topology) {
    return topology.is_hierarchical() ? BoundKind::hierarchical : BoundKind::global;
}

PlanMetrics evaluate(const Plan& plan, const at::Tensor& loads, const Topology& topology, BoundKind bound_kind) {
    const at::Tensor w = loads_for(plan, loads);
    const at::Tensor gl = gpu_loads(plan, w, topology);
    const at::Tensor nl = node_loads(plan, w, topology);
    const at::Tensor lb = lower_bound(w, topology, bound_kind);
    PlanMetrics m;
    m.bound_kind = bound_kind;
    m.lower_bound = to_vector<double>(lb);
    m.balancedness = to_vector<double>(layer_balancedness(gl));
    m.imbalance_ratio = to_vector<double>(layer_imbalance_ratio(gl));
    m.node_balancedness = to_vector<double>(layer_balancedness(nl));
    m.duplicates = to_vector<std::int64_t>(layer_duplicates(plan, topology));
    m.node_locality = to_vector<double>(layer_node_locality(plan, w, topology));
    m.aggregate_node_locality = node_locality(plan, w, topology);
    const std::int64_t E = plan.num_experts();
    for_each_row(gl, [&](std::int64_t l, RowStats s) {
        const double* row = w.data_ptr<double>() + l * E;
        m.total_load.push_back(std::accumulate(row, row + E, 0.0));
        m.mean_gpu_load.push_back(s.mean);
        m.max_gpu_load.push_back(s.max);
        m.gap.push_back(s.max > 0.0 ? m.lower_bound[l] / s.max : 1.0);
    });
    for_each_row(nl, [&](std::int64_t, RowStats s) { m.max_node_load.push_back(s.max); });
    m.aggregate_balancedness = aggregate_balancedness(gl);
    m.mean_balancedness = mean_balancedness(gl);
    m.aggregate_imbalance_ratio = aggregate_imbalance_ratio(gl);
    m.aggregate_node_balancedness = aggregate_balancedness(nl);
    m.bound_ratio = bound_ratio(w, lb, topology);
    m.aggregate_gap = m.aggregate_balancedness / m.bound_ratio;
    m.total_duplicates = std::accumulate(m.duplicates.begin(), m.duplicates.end(), std::int64_t{0});
    return m;
}

}  // namespace eplb
