// Plans (or an error) as bytes between ranks, and the plans of layer slices joined into one.
#pragma once

#include <eplb/plan.hpp>

#include <string>
#include <vector>

namespace eplb::dist {

/// Several plans as bytes: 'P', their count, then per plan its shape [L, R, E, X] and the int64
/// contents of phy2log, log2phy and logcnt.
std::string encode_plans(const std::vector<Plan>& plans);

/// An error instead of plans: 'E' and the one-line message.
std::string encode_error(const std::string& message);

/// What encode_plans or encode_error wrote.
struct DecodedPlans {
    std::vector<Plan> plans;
    std::string error;  ///< "" for plans

    bool ok() const { return error.empty(); }
};
DecodedPlans decode_plans(const std::string& bytes);

/// The plan of consecutive layer slices of one window, planned apart: `phy2log` and `logcnt`
/// concatenated in slice order, `log2phy` padded with -1 to the widest slice's X, then concatenated.
/// That is the plan of all the layers planned at once, because layers are planned independently
/// and a policy's width X is the maximum over layers of a per-layer width (deepseek: the largest
/// replica count) or the same for every layer (seed: R - E + 1).
Plan join_layer_slices(const std::vector<Plan>& slices);

}  // namespace eplb::dist
