#include "balanced_history.hpp"

#include <ATen/ops/empty.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace eplb::core {
namespace {

// sum_t f_t h_t / sum_t f_t with the given window factors.
void weighted_mean(const float* h, std::int64_t k, std::int64_t n, const std::vector<double>& factor, double* out) {
    double total = 0.0;
    for (const double f : factor) total += f;
    for (std::int64_t t = 0; t < k; ++t)
        for (std::int64_t i = 0; i < n; ++i) out[i] += factor[static_cast<std::size_t>(t)] * h[t * n + i];
    for (std::int64_t i = 0; i < n; ++i) out[i] /= total;
}

}  // namespace

at::Tensor planning_load(const at::Tensor& windows, const PlanOptions& options) {
    const std::int64_t k = windows.size(0), L = windows.size(1), E = windows.size(2), n = L * E;
    at::Tensor out = at::empty({L, E}, at::TensorOptions().dtype(at::kDouble));
    const float* h = windows.data_ptr<float>();
    double* o = out.data_ptr<double>();
    if (k == 1) {
        std::copy(h, h + n, o);
        return out;
    }
    std::fill(o, o + n, 0.0);
    std::vector<double> factor(static_cast<std::size_t>(k), 1.0);
    switch (options.aggregation) {
        case HistoryAggregation::mean: weighted_mean(h, k, n, factor, o); break;
        case HistoryAggregation::ema:
            for (std::int64_t t = 0; t < k; ++t) factor[static_cast<std::size_t>(t)] = std::pow(options.ema_decay, static_cast<double>(k - 1 - t));
            weighted_mean(h, k, n, factor, o);
            break;
    }
    return out;
}

}  // namespace eplb::core
