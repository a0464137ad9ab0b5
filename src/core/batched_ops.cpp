#include "batched_ops.hpp"

#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/where.h>

#include <limits>

namespace eplb::core::batched {
namespace {

constexpr std::int64_t kLow32 = std::int64_t{1} << 32;

at::Tensor masked(const at::Tensor& values, const at::Tensor& allowed, double fill) {
    return allowed.defined() ? at::where(allowed, values, fill) : values;
}

// Keys: weight order in the high 32 bits, the inverted id in the low ones, so that a larger key
// means a larger weight or, on equal weights, a lower id. All keys of a row differ.
at::Tensor descending_keys(const at::Tensor& weight) {
    const std::int64_t n = weight.size(1);
    return order_key(weight) * kLow32 + ((kLow32 - 1) - column_ids(n, weight));
}

}  // namespace

at::Tensor column_ids(std::int64_t n, const at::Tensor& like) {
    return at::arange(n, like.options().dtype(at::kLong));
}

at::Tensor order_key(const at::Tensor& values) {
    TORCH_CHECK(values.scalar_type() == at::kFloat, "order_key needs float32 values");
    // -0 becomes +0; then the IEEE bits, read as int32, order non-negative floats, and flipping
    // the magnitude bits of negative ones puts them below in the right order.
    const at::Tensor v = at::where(values == 0, 0.0, values).contiguous();
    const at::Tensor bits = v.view(at::kInt);
    return at::where(bits < 0, bits.bitwise_xor(0x7FFFFFFF), bits).to(at::kLong);
}

at::Tensor stable_descending_order(const at::Tensor& weight) {
    return std::get<1>(descending_keys(weight).sort(/*dim=*/1, /*descending=*/true));
}

at::Tensor top_ids_ascending(const at::Tensor& weight, std::int64_t k) {
    const at::Tensor top = std::get<1>(descending_keys(weight).topk(k, /*dim=*/1));
    return std::get<0>(top.sort(/*dim=*/1));
}

at::Tensor index_ids(std::int64_t n, const at::Tensor& like) {
    // int32: LibTorch's int64 min-reductions are several times slower on the CPU.
    return at::arange(n, like.options().dtype(at::kInt));
}

at::Tensor first_true(const at::Tensor& mask, const at::Tensor& ids) {
    const std::int64_t n = mask.size(1);
    const at::Tensor column = ids.defined() ? ids : index_ids(n, mask);
    return at::where(mask, column, static_cast<int>(n)).amin(1).to(at::kLong);
}

at::Tensor first_argmin(const at::Tensor& values, const at::Tensor& allowed, const at::Tensor& ids) {
    const at::Tensor v = masked(values, allowed, std::numeric_limits<double>::infinity());
    at::Tensor hit = v == v.amin(1, /*keepdim=*/true);
    if (allowed.defined()) hit = hit.logical_and(allowed);  // masked columns tie with +inf
    return first_true(hit, ids);
}

at::Tensor first_argmax(const at::Tensor& values, const at::Tensor& allowed, const at::Tensor& ids) {
    const at::Tensor v = masked(values, allowed, -std::numeric_limits<double>::infinity());
    at::Tensor hit = v == v.amax(1, /*keepdim=*/true);
    if (allowed.defined()) hit = hit.logical_and(allowed);
    return first_true(hit, ids);
}

at::Tensor pick(const at::Tensor& t, const at::Tensor& index) {
    return t.gather(1, index.unsqueeze(1)).squeeze(1);
}

void put(at::Tensor& t, const at::Tensor& index, const at::Tensor& value) {
    t.scatter_(1, index.unsqueeze(1), value.unsqueeze(1).to(t.scalar_type()));
}

at::Tensor all_but(const at::Tensor& index, std::int64_t n) {
    return column_ids(n, index).unsqueeze(0) != index.unsqueeze(1);
}

}  // namespace eplb::core::batched
