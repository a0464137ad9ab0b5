// Reads the golden test vectors (tests/data/<policy>.h5): the reference programs' outputs.
#pragma once

#include <eplb/topology.hpp>

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace eplb::test {

struct GoldenCase {
    std::string name;
    Topology topology;
    bool has_ties = false;
    double agg_gpu_balancedness = 0.0;
    std::int64_t duplicates = 0;
    at::Tensor weight;          // [L, E] float32
    at::Tensor phy2log, log2phy, logcnt;  // the reference program's own output
    at::Tensor gpu_load;        // [L, G] float64
    at::Tensor stable_phy2log, stable_log2phy, stable_logcnt;  // ties broken by the lower index
};

/// Path of a file under tests/data.
std::string test_data(const std::string& name);

/// Every case of tests/data/<reference>.h5 ("deepseek" or "seed").
std::vector<GoldenCase> load_golden(const std::string& reference);

}  // namespace eplb::test
