// Bad topologies and bad loads give typed exceptions with clear, one-line messages.
#include <eplb/errors.hpp>
#include <eplb/rebalance.hpp>

#include <ATen/ops/full.h>
#include <ATen/ops/ones.h>
#include <gtest/gtest.h>

#include <limits>

namespace eplb {
namespace {

// Runs f, expects exception E, and returns its message.
template <typename E, typename F>
std::string message_of(F f) {
    try {
        f();
    } catch (const E& e) {
        const std::string m = e.what();
        EXPECT_EQ(m.find('\n'), std::string::npos) << "message is not one line: " << m;
        return m;
    } catch (const std::exception& e) {
        ADD_FAILURE() << "wrong exception type: " << e.what();
        return {};
    }
    ADD_FAILURE() << "no exception";
    return {};
}

TEST(Topology, ParsesTheFourFields) {
    const Topology t = Topology::parse("288/8/4/32");
    EXPECT_EQ(t, (Topology{288, 8, 4, 32}));
    EXPECT_EQ(t.to_string(), "288/8/4/32");
    EXPECT_EQ(t.slots_per_gpu(), 9);
    EXPECT_EQ(t.slots_per_node(), 72);
    EXPECT_EQ(t.gpus_per_node(), 8);
    EXPECT_TRUE(t.is_hierarchical());
}

TEST(Topology, MalformedTextIsAUsageError) {
    for (const char* text : {"", "288", "288/8/4", "288/8/4/32/1", "288/x/4/32", "288//4/32", "-288/8/4/32", "2.5/1/1/1"})
        EXPECT_NE(message_of<UsageError>([&] { Topology::parse(text); }).find("R/groups/N/G"), std::string::npos) << text;
}

TEST(Topology, NamesTheValueAndTheRule) {
    EXPECT_EQ(message_of<TopologyError>([] { Topology{300, 8, 4, 32}.validate(); }),
              "num_replicas=300 is not a multiple of num_gpus=32");
    EXPECT_EQ(message_of<TopologyError>([] { Topology{288, 8, 5, 30}.validate(); }),
              "num_replicas=288 is not a multiple of num_gpus=30");
    EXPECT_EQ(message_of<TopologyError>([] { Topology{280, 8, 3, 28}.validate(); }),
              "num_gpus=28 is not a multiple of num_nodes=3");
    EXPECT_EQ(message_of<TopologyError>([] { Topology{288, 0, 4, 32}.validate(); }), "num_groups=0 must be positive");
    EXPECT_EQ(message_of<TopologyError>([] { Topology{288, 7, 4, 32}.validate(256); }),
              "num_experts=256 is not a multiple of num_groups=7");
    EXPECT_EQ(message_of<TopologyError>([] { Topology{128, 8, 4, 32}.validate(256); }),
              "num_replicas=128 is smaller than num_experts=256: every expert needs a slot");
}

TEST(Topology, FallsBackToGlobalWhenGroupsDoNotSplitOverNodes) {
    EXPECT_EQ(Topology({72, 4, 3, 9}).effective(), (Topology{72, 1, 1, 9}));
    EXPECT_EQ(Topology({288, 8, 4, 32}).effective(), (Topology{288, 8, 4, 32}));
}

TEST(Rebalance, RejectsTopologiesThatDoNotFitTheLoads) {
    const at::Tensor w = at::ones({2, 256});
    EXPECT_NE(message_of<TopologyError>([&] { rebalance(w, Topology{300, 8, 4, 32}, Policy::deepseek); })
                  .find("num_replicas=300"),
              std::string::npos);
    EXPECT_NE(message_of<TopologyError>([&] { rebalance(w, Topology{128, 8, 4, 32}, Policy::seed); })
                  .find("smaller than num_experts=256"),
              std::string::npos);
}

TEST(Rebalance, RejectsBadLoadValuesNamingTheEntry) {
    const Topology t{24, 4, 2, 8};
    auto with = [](float v) {
        at::Tensor w = at::ones({3, 16});
        w[2][5] = v;
        return w;
    };
    EXPECT_EQ(message_of<LoadError>([&] { rebalance(with(std::nanf("")), t, Policy::deepseek); }),
              "weight[2][5] = NaN: loads must be finite and non-negative");
    EXPECT_NE(message_of<LoadError>([&] { rebalance(with(std::numeric_limits<float>::infinity()), t, Policy::seed); })
                  .find("weight[2][5] = inf"),
              std::string::npos);
    EXPECT_NE(message_of<LoadError>([&] { rebalance(with(-1.0f), t, Policy::deepseek); }).find("weight[2][5] = -1"),
              std::string::npos);
    at::Tensor too_big = at::ones({3, 16}, at::kDouble);
    too_big[0][0] = 1e300;
    EXPECT_NE(message_of<LoadError>([&] { rebalance(too_big, t, Policy::deepseek); }).find("fit in float32"),
              std::string::npos);
}

TEST(Rebalance, RejectsEmptyAndWrongRankTensors) {
    const Topology t{24, 4, 2, 8};
    EXPECT_NE(message_of<LoadError>([&] { rebalance(at::ones({16}), t, Policy::deepseek); }).find("shape [16]"),
              std::string::npos);
    EXPECT_NE(message_of<LoadError>([&] { rebalance(at::ones({2, 3, 16}), t, Policy::deepseek); })
                  .find("expected [layers, experts]"),
              std::string::npos);
    EXPECT_NE(message_of<LoadError>([&] { rebalance(at::ones({0, 16}), t, Policy::seed); }).find("at least one layer"),
              std::string::npos);
    EXPECT_NE(message_of<LoadError>([&] { rebalance(at::Tensor(), t, Policy::seed); }).find("undefined"),
              std::string::npos);
    EXPECT_NE(message_of<LoadError>([&] { rebalance(at::ones({2, 16}, at::kBool), t, Policy::seed); }).find("dtype"),
              std::string::npos);
}

TEST(Policy, ParsesKnownNamesAndListsThemOtherwise) {
    EXPECT_EQ(parse_policy("deepseek"), Policy::deepseek);
    EXPECT_EQ(parse_policy("seed"), Policy::seed);
    EXPECT_NE(message_of<UsageError>([] { parse_policy("best"); }).find("expected one of: deepseek, seed"),
              std::string::npos);
}

}  // namespace
}  // namespace eplb
