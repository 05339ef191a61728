#include "mux_lite/flow_table.h"

#include <gtest/gtest.h>

namespace sluice::mux {
namespace {

FlowKey Key(uint32_t i) { return FlowKey{.src = i, .dst = 0x0ac8000a, .src_port = 1000,
                                         .dst_port = 80, .proto = 6}; }

TEST(FlowTableTest, FindsWhatWasInserted) {
  FlowTable t(1024, 300);
  FlowEntry* e = t.Insert(Key(1), 7, 10);
  e->dip = 42;
  FlowEntry* f = t.Find(Key(1), 7, 11);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->dip, 42u);
  EXPECT_EQ(t.Find(Key(2), 7, 11), nullptr);
  EXPECT_EQ(t.CountLive(11), 1u);
  EXPECT_EQ(FlowTable::BytesPerFlow(), 32u);
}

TEST(FlowTableTest, IdleFlowsExpire) {
  FlowTable t(64, 5);
  t.Insert(Key(1), 3, 10);
  EXPECT_NE(t.Find(Key(1), 3, 15), nullptr);  // refreshes to 15
  EXPECT_EQ(t.Find(Key(1), 3, 21), nullptr);
  EXPECT_EQ(t.CountLive(21), 0u);
}

TEST(FlowTableTest, FullBucketEvictsLeastRecentlyUsed) {
  FlowTable t(8, 300);  // a single bucket of 8 ways
  for (uint32_t i = 0; i < 8; ++i) t.Insert(Key(i), 0, 100 + i);
  ASSERT_NE(t.Find(Key(0), 0, 200), nullptr);  // key 0 becomes most recent
  t.Insert(Key(99), 0, 201);                     // evicts key 1 (last seen 101)
  EXPECT_EQ(t.evictions.Get(), 1u);
  EXPECT_EQ(t.Find(Key(1), 0, 202), nullptr);
  EXPECT_NE(t.Find(Key(0), 0, 202), nullptr);
  EXPECT_NE(t.Find(Key(99), 0, 202), nullptr);
}

TEST(FlowTableTest, CapacityRoundsUp) {
  FlowTable t(1000, 300);
  EXPECT_EQ(t.capacity(), 1024u);
}

}  // namespace
}  // namespace sluice::mux
