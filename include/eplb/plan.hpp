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

}  // namespace eplb
