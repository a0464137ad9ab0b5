// Random topologies and load matrices for property tests (deterministic seeds).
#pragma once

#include <eplb/topology.hpp>

#include <ATen/core/Tensor.h>
#include <ATen/ops/from_blob.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace eplb::test {

enum class LoadPattern { uniform, small_integers, skewed, sparse, all_zero_layer, one_hot };

inline const std::vector<LoadPattern>& all_patterns() {
    static const std::vector<LoadPattern> p{LoadPattern::uniform, LoadPattern::small_integers, LoadPattern::skewed,
                                            LoadPattern::sparse, LoadPattern::all_zero_layer, LoadPattern::one_hot};
    return p;
}

/// A random valid topology and expert count; about a third of them are not hierarchical.
inline std::pair<Topology, std::int64_t> random_topology(std::mt19937_64& rng) {
    auto pick = [&](std::initializer_list<std::int64_t> v) {
        return *(v.begin() + std::uniform_int_distribution<std::size_t>(0, v.size() - 1)(rng));
    };
    while (true) {
        const std::int64_t nodes = pick({1, 2, 3, 4, 8});
        const std::int64_t gpus = nodes * pick({1, 2, 3, 4, 8});
        const std::int64_t slots = pick({1, 2, 3, 4, 9});
        const std::int64_t groups = pick({1, 2, 3, 4, 6, 8, 12, 16});
        const std::int64_t experts = groups * pick({1, 2, 4, 8, 16});
        const Topology t{gpus * slots, groups, nodes, gpus};
        if (t.num_replicas >= experts && t.num_replicas <= 4 * experts + 64) return {t, experts};
    }
}

/// [L, E] float32 loads of the given pattern.
inline at::Tensor random_loads(std::mt19937_64& rng, std::int64_t layers, std::int64_t experts, LoadPattern pattern) {
    std::vector<float> w(static_cast<std::size_t>(layers * experts));
    std::uniform_real_distribution<float> uniform(1.0f, 1000.0f);
    std::uniform_int_distribution<int> small(0, 3);
    std::exponential_distribution<double> expo(1.0);
    std::uniform_int_distribution<std::int64_t> any_expert(0, experts - 1);
    for (std::int64_t l = 0; l < layers; ++l) {
        const std::int64_t hot = any_expert(rng);
        for (std::int64_t e = 0; e < experts; ++e) {
            float& x = w[l * experts + e];
            switch (pattern) {
                case LoadPattern::uniform: x = uniform(rng); break;
                case LoadPattern::small_integers: x = static_cast<float>(small(rng)); break;
                case LoadPattern::skewed: x = static_cast<float>(std::floor(std::exp(4.0 * expo(rng)))); break;
                case LoadPattern::sparse: x = small(rng) == 0 ? uniform(rng) : 0.0f; break;
                case LoadPattern::all_zero_layer: x = l == 0 ? 0.0f : uniform(rng); break;
                case LoadPattern::one_hot: x = e == hot ? 1e6f : 1.0f; break;
            }
        }
    }
    return at::from_blob(w.data(), {layers, experts}, at::TensorOptions().dtype(at::kFloat)).clone();
}

/// A random topology with loads for it.
struct RandomCase {
    Topology topology;
    at::Tensor weight;  ///< [L, E] float32, 1 to 4 layers
    std::string label;
};

/// `count` random cases cycling through every load pattern (deterministic for a seed).
inline std::vector<RandomCase> random_cases(std::uint64_t seed, int count) {
    std::mt19937_64 rng(seed);
    std::vector<RandomCase> out;
    for (int i = 0; i < count; ++i) {
        const auto [t, experts] = random_topology(rng);
        const auto pattern = all_patterns()[static_cast<std::size_t>(i) % all_patterns().size()];
        const std::int64_t layers = 1 + i % 4;
        out.push_back({t, random_loads(rng, layers, experts, pattern),
                       "case " + std::to_string(i) + " topology " + t.to_string() + " E=" + std::to_string(experts)});
    }
    return out;
}

}  // namespace eplb::test
