// A placement plan: which logical expert each physical slot holds, per MoE layer.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace eplb {

/// A placement plan for L layers, E logical experts and R slots. All tensors are int64 on the CPU.
///
/// - `phy2log` [L, R]: logical expert held by slot p (GPU of slot p = p / S, S = R / G);
/// - `log2phy` [L, E, X]: `log2phy[l, e, k]` = slot of replica k of expert e, -1 for
///   k >= logcnt[l, e]; X is the policy's width (`deepseek`: max of `logcnt`; `seed`: R - E + 1);
/// - `logcnt`  [L, E]: replica count of each expert, >= 1, summing to R over each layer.
struct Plan {
    at::Tensor phy2log;
    at::Tensor log2phy;
    at::Tensor logcnt;

    std::int64_t num_layers() const { return phy2log.size(0); }
    std::int64_t num_replicas() const { return phy2log.size(1); }
    std::int64_t num_experts() const { return logcnt.size(1); }

    /// Checks every invariant: shapes and dtypes, ids in range, every expert has a replica,
    /// counts sum to R and match `phy2log`, and `log2phy` lists exactly the slots of each expert.
    /// Throws PlanError naming the layer, expert or slot that breaks a rule.
    void validate() const;
};

/// The plan a `phy2log` table [L, R] (any integer dtype) describes for E logical experts: `logcnt`
/// counts each expert's slots, `log2phy` lists them in slot order (replica k = the k-th slot holding
/// the expert), width = the largest count. Throws PlanError naming the layer and slot of an id
/// outside [0, E), or the layer and expert without a slot.
Plan plan_from_phy2log(const at::Tensor& phy2log, std::int64_t num_experts);

}  // namespace eplb
