// Packing n weighted items into m packs of exactly n / m items (DESIGN.md 3.1 and 3.2).
#pragma once

#include <cstdint>
#include <vector>

namespace eplb::core {

/// Scratch space reused across rows so that packing allocates nothing per row.
struct PackScratch {
    std::vector<std::int32_t> order;
    std::vector<std::uint64_t> sort_keys;
    std::vector<std::int32_t> count;
    std::vector<float> load_f;
    std::vector<double> load_d;
    std::vector<std::int32_t> members;  // [m, capacity]: items of each pack, ascending ids

    void reserve(std::int32_t items, std::int32_t packs);
};

/// Where each item went: `pack[i]` in [0, m) and `rank[i]`, its position inside the pack.
struct PackOut {
    std::int32_t* pack;
    std::int32_t* rank;
};

/// DeepSeek's balanced packing. Capacity 1 is the identity (item i to pack i). Otherwise items in
/// stable descending weight order each go to the lightest pack that still has room (lowest pack
/// id on ties); pack loads are float32 sums in item order; the rank is the arrival order.
void balanced_packing(const float* weight, std::int32_t n, std::int32_t m, PackScratch& scratch,
                      PackOut out);

/// The seed's CapacityPacker(refine_steps): the same greedy with float64 pack loads, then
/// `refine_steps` bounded swap steps (the two heaviest items of the heaviest pack against the two
/// lightest items of the lightest and second-lightest packs, float32 arithmetic, applied when
/// the pack difference drops by more than 1e-9; after a first swap that cuts it by at least 20 %
/// a two-step refinement stops), then ranks inside each pack by ascending item id.
void capacity_packing(const float* weight, std::int32_t n, std::int32_t m,
                      std::int32_t refine_steps, PackScratch& scratch, PackOut out);

}  // namespace eplb::core
