// Synthetic DeepSeek-V3-like load time series with drift (deterministic for a given seed).
//
// For layer l and expert e, the log-popularity in window t is
//   z[t, l, e] = mu[l, e] + x[t, l, e] + n[t, l, e]
// with a stable part mu ~ N(0, base_sigma^2), a slow drift x (AR(1): x[0] ~ N(0, drift_sigma^2),
// x[t] = rho x[t-1] + sqrt(1 - rho^2) N(0, drift_sigma^2)) and a per-window fluctuation
// n ~ N(0, noise_sigma^2) (what the requests of one window happen to ask for). Window t routes
// tokens_per_window * top_k tokens of a layer to its experts in proportion to exp(z), with
// Poisson noise: counts[t, l, e] ~ Poisson(tokens_per_window * top_k * softmax_e(z)).
// The defaults give about the skew of SGLang's DeepSeek-R1 statistics (coefficient of variation
// of expert loads ~1.6-2) and, like the recorded DeepSeek-V2-Lite windows, consecutive windows
// that agree only in part (correlation of consecutive windows ~0.7), so that averaging recent
// windows predicts the next one better than the last window alone.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/from_blob.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace eplb::test {

struct SeriesShape {
    std::int64_t windows = 24, layers = 58, experts = 256;
    double base_sigma = 1.1, drift_sigma = 0.4, rho = 0.9, noise_sigma = 0.4;
    double tokens_per_window = 8192, top_k = 8;
    std::uint64_t seed = 20250101;
};

/// counts [windows, layers, experts] (float64) as described above.
inline at::Tensor synthetic_series(const SeriesShape& s) {
    std::mt19937_64 rng(s.seed);
    std::normal_distribution<double> normal(0.0, 1.0);
    const std::int64_t T = s.windows, L = s.layers, E = s.experts;
    std::vector<double> mu(static_cast<std::size_t>(L * E)), x(mu.size()), z(mu.size());
    std::vector<double> out(static_cast<std::size_t>(T * L * E));
    for (double& m : mu) m = s.base_sigma * normal(rng);
    for (double& v : x) v = s.drift_sigma * normal(rng);
    const double innovation = std::sqrt(1.0 - s.rho * s.rho) * s.drift_sigma;
    for (std::int64_t t = 0; t < T; ++t) {
        if (t > 0)
            for (double& v : x) v = s.rho * v + innovation * normal(rng);
        for (std::size_t i = 0; i < z.size(); ++i) z[i] = mu[i] + x[i] + s.noise_sigma * normal(rng);
        for (std::int64_t l = 0; l < L; ++l) {
            double total = 0.0;
            for (std::int64_t e = 0; e < E; ++e) total += std::exp(z[l * E + e]);
            for (std::int64_t e = 0; e < E; ++e) {
                const double mean = s.tokens_per_window * s.top_k * std::exp(z[l * E + e]) / total;
                std::poisson_distribution<std::int64_t> poisson(mean);
                out[(t * L + l) * E + e] = static_cast<double>(poisson(rng));
            }
        }
    }
    return at::from_blob(out.data(), {T, L, E}, at::TensorOptions().dtype(at::kDouble)).clone();
}

}  // namespace eplb::test
