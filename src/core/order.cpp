#include "order.hpp"

#include <algorithm>
#include <cstring>

namespace eplb::core {
namespace {

// Rows up to this size are ordered by counting, for each item, the items that precede it:
// O(n^2) compares without branches, which the compiler vectorises; beyond it, a sort.
constexpr std::int32_t kCountingOrderMax = 160;

void counting_order(const float* w, std::int32_t n, std::int32_t* order) {
    for (std::int32_t i = 0; i < n; ++i) {
        const float wi = w[i];
        std::int32_t rank = 0;
        for (std::int32_t j = 0; j < i; ++j) rank += (w[j] >= wi);
        for (std::int32_t j = i + 1; j < n; ++j) rank += (w[j] > wi);
        order[rank] = i;
    }
}

// Maps a float to an unsigned integer of the same order (-0 and +0 map alike).
std::uint32_t order_bits(float x) {
    if (x == 0.0f) x = 0.0f;
    std::uint32_t bits = 0;
    std::memcpy(&bits, &x, sizeof bits);
    return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

void sorting_order(const float* w, std::int32_t n, std::int32_t* order,
                   std::vector<std::uint64_t>& keys) {
    keys.resize(static_cast<std::size_t>(n));
    // Larger key first: weight bits high, inverted id low so that a lower id wins ties.
    for (std::int32_t i = 0; i < n; ++i)
        keys[i] = (std::uint64_t{order_bits(w[i])} << 32) | (0xFFFFFFFFu - static_cast<std::uint32_t>(i));
    std::sort(keys.begin(), keys.end(), [](std::uint64_t a, std::uint64_t b) { return a > b; });
    for (std::int32_t k = 0; k < n; ++k)
        order[k] = static_cast<std::int32_t>(0xFFFFFFFFu - static_cast<std::uint32_t>(keys[k]));
}

}  // namespace

void stable_descending_order(const float* weight, std::int32_t n, std::int32_t* order,
                             std::vector<std::uint64_t>& keys) {
    if (n <= kCountingOrderMax)
        counting_order(weight, n, order);
    else
        sorting_order(weight, n, order, keys);
}

}  // namespace eplb::core
