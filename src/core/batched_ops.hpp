// Row-wise building blocks of the batched engine. Every one is exact on every device: no float
// reduction other than min/max, no reliance on a sort's stability or on which of several equal
// values a reduction returns.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace eplb::core::batched {

/// int64 keys in the order of float32 `values` (any shape): a < b exactly when key(a) < key(b);
/// -0 and +0 get the same key. NaN is not allowed.
at::Tensor order_key(const at::Tensor& values);

/// [B, n] int64: each row's item ids by float32 weight descending, ties by lower id (a stable
/// descending argsort). Sorts unique int64 keys, so the result is the same on every device.
at::Tensor stable_descending_order(const at::Tensor& weight);

/// [B, k] int64: the ids of each row's k largest float32 weights by (weight desc, id asc), in
/// ascending id order.
at::Tensor top_ids_ascending(const at::Tensor& weight, std::int64_t k);

/// [n] int32 0, 1, ..., n-1 on the device of `like`: the column ids that first_true reduces over
/// (made once by a loop's caller, so that each step launches no extra kernel).
at::Tensor index_ids(std::int64_t n, const at::Tensor& like);

/// [B]: the lowest column j with mask[b, j] true; every row must have one. `ids` = index_ids(n)
/// (made here when undefined).
at::Tensor first_true(const at::Tensor& mask, const at::Tensor& ids = {});

/// [B]: the lowest column holding the smallest (largest) value of a floating [B, n] tensor among
/// the columns where `allowed` [B, n] holds (all columns when `allowed` is undefined). Every row
/// needs an allowed column; values may be infinite but not NaN. `ids` as for first_true.
at::Tensor first_argmin(const at::Tensor& values, const at::Tensor& allowed = {}, const at::Tensor& ids = {});
at::Tensor first_argmax(const at::Tensor& values, const at::Tensor& allowed = {}, const at::Tensor& ids = {});

/// [B]: `t[b, index[b]]` for a [B, n] tensor.
at::Tensor pick(const at::Tensor& t, const at::Tensor& index);

/// t[b, index[b]] = value[b] for a [B, n] tensor (in place).
void put(at::Tensor& t, const at::Tensor& index, const at::Tensor& value);

/// [B, n] bool: column j differs from index[b] (a row mask that leaves one column out).
at::Tensor all_but(const at::Tensor& index, std::int64_t n);

/// [n] int64 0, 1, ..., n-1 on the device of `like`.
at::Tensor column_ids(std::int64_t n, const at::Tensor& like);

}  // namespace eplb::core::batched
