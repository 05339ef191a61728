#include "mux_lite/maglev.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>

namespace sluice::mux {
namespace {

std::vector<MaglevBackend> Backends(int n) {
  std::vector<MaglevBackend> b;
  for (int i = 0; i < n; ++i) b.push_back({.key = "10.1." + std::to_string(i / 250) + "." +
                                                  std::to_string(i % 250 + 1),
                                           .weight = 1});
  return b;
}

TEST(MaglevTest, RejectsBadInput) {
  MaglevTable t;
  std::string error;
  EXPECT_FALSE(t.Build(Backends(3), 65536, &error));
  EXPECT_NE(error.find("not a prime"), std::string::npos);
  EXPECT_FALSE(t.Build({{.key = "a", .weight = 0}}, 65537, &error));
  EXPECT_NE(error.find("no backend"), std::string::npos);
  EXPECT_FALSE(t.Build({{.key = "a"}, {.key = "a"}}, 65537, &error));
  EXPECT_NE(error.find("twice"), std::string::npos);
}

TEST(MaglevTest, EqualWeightsSpreadEvenly) {
  MaglevTable t;
  std::string error;
  ASSERT_TRUE(t.Build(Backends(4), 65537, &error)) << error;
  std::map<uint32_t, int> count;
  for (uint32_t s : t.slots()) count[s]++;
  ASSERT_EQ(count.size(), 4u);
  for (auto [b, c] : count) EXPECT_NEAR(c, 65537 / 4, 2) << b;
}

TEST(MaglevTest, SameBackendsInAnyOrderBuildTheSameTable) {
  std::vector<MaglevBackend> a = Backends(10);
  std::vector<MaglevBackend> b(a.rbegin(), a.rend());
  MaglevTable ta, tb;
  std::string error;
  ASSERT_TRUE(ta.Build(a, 65537, &error));
  ASSERT_TRUE(tb.Build(b, 65537, &error));
  for (uint32_t i = 0; i < 65537; ++i) {
    ASSERT_EQ(a[ta.slots()[i]].key, b[tb.slots()[i]].key) << "slot " << i;
  }
}

TEST(MaglevTest, WeightsAreHonoured) {
  std::vector<MaglevBackend> b = {{.key = "a", .weight = 1}, {.key = "b", .weight = 3}};
  MaglevTable t;
  std::string error;
  ASSERT_TRUE(t.Build(b, 65537, &error));
  int count_b = 0;
  for (uint32_t s : t.slots()) count_b += s == 1;
  EXPECT_NEAR(count_b / 65537.0, 0.75, 0.01);
}

// 40 backends with weights 1..8: every backend's share of the table is within 1 % (relative)
// of weight / total weight.
TEST(MaglevTest, ManyWeightedBackendsEachWithinOnePercent) {
  std::vector<MaglevBackend> b = Backends(40);
  uint64_t total = 0;
  for (size_t i = 0; i < b.size(); ++i) total += b[i].weight = static_cast<uint32_t>(i % 8 + 1);
  MaglevTable t;
  std::string error;
  ASSERT_TRUE(t.Build(b, 65537, &error)) << error;
  std::vector<int> count(b.size());
  for (uint32_t s : t.slots()) count[s]++;
  double worst = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    const double want = 65537.0 * b[i].weight / static_cast<double>(total);
    const double error_rel = std::abs(count[i] - want) / want;
    worst = std::max(worst, error_rel);
    EXPECT_LE(error_rel, 0.01) << b[i].key << " weight " << b[i].weight << ": " << count[i]
                               << " slots, want " << want;
  }
  RecordProperty("worst_relative_error", std::to_string(worst));
}

TEST(MaglevTest, RemovingOneBackendMovesFewFlows) {
  std::vector<MaglevBackend> before = Backends(100);
  std::vector<MaglevBackend> after = before;
  after[42].weight = 0;
  MaglevTable tb, ta;
  std::string error;
  ASSERT_TRUE(tb.Build(before, 65537, &error));
  ASSERT_TRUE(ta.Build(after, 65537, &error));
  int moved = 0, not_on_removed = 0;
  for (uint32_t i = 0; i < 65537; ++i) {
    if (tb.slots()[i] == 42) continue;
    ++not_on_removed;
    moved += tb.slots()[i] != ta.slots()[i];
  }
  EXPECT_LE(static_cast<double>(moved) / not_on_removed, 0.015);
}

}  // namespace
}  // namespace sluice::mux
