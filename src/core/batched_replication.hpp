// Replication of every row of [B, n] expert weights onto `slots` >= n slots at once: the batched
// form of replication.hpp (DESIGN.md 3.1 step 2, 3.2), with identical results.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace eplb::core::batched {

/// The replicas of each row, in the reference column layout (see core::ReplicaOut): columns
/// 0..n-1 hold one copy of each expert, columns n..slots-1 the extra replicas in the order they
/// were added.
struct Replicas {
    at::Tensor expert;  ///< [B, slots] int64: expert of each column
    at::Tensor rank;    ///< [B, slots] int64: the expert's count before that replica was added
    at::Tensor count;   ///< [B, n] int64: replicas of each expert
};

/// DeepSeek's D'Hondt replication (see core::replicate_dhondt): one loop over the extra columns,
/// each an argmax of float32 w / count per row over the row's top `slots - n` experts.
Replicas replicate_dhondt(const at::Tensor& weight, std::int64_t slots);

/// The seed's replication (see core::replicate_seed): D'Hondt bulk, Sainte-Lague /
/// Huntington-Hill tail, then the donor -> receiver fix-up, each vectorised across rows.
Replicas replicate_seed(const at::Tensor& weight, std::int64_t slots);

}  // namespace eplb::core::batched
