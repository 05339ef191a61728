#include "mux_lite/flow_table.h"

#include <gtest/gtest.h>

namespace sluice::mux {
namespace {

FlowKey Key(uint32_t i, uint8_t proto = 6) {
  return FlowKey{.src = i, .dst = 0x0ac8000a, .src_port = 1000, .dst_port = 80, .proto = proto};
}

constexpr FlowTimeouts kTimeouts = {.tcp_idle_s = 300, .udp_idle_s = 30, .closing_s = 10};

TEST(FlowTableTest, FindsWhatWasInserted) {
  FlowTable t(1024, kTimeouts);
  FlowEntry* e = t.Insert(Key(1), 7, 10);
  e->host_pa = 42;
  FlowEntry* f = t.Find(Key(1), 7, 11);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->host_pa, 42u);
  EXPECT_EQ(t.Find(Key(2), 7, 11), nullptr);
  EXPECT_EQ(t.CountLive(11), 1u);
  EXPECT_EQ(FlowTable::BytesPerFlow(), 34u);  // entry + tag
}

TEST(FlowTableTest, IdleFlowsExpirePerProtocol) {
  FlowTable t(64, kTimeouts);
  t.Insert(Key(1), 3, 10);
  t.Insert(Key(2, 17), 3, 10);
  EXPECT_NE(t.Find(Key(1), 3, 300), nullptr);  // refreshed: now expires at 600
  EXPECT_EQ(t.Find(Key(2, 17), 3, 41), nullptr);  // UDP idle 30 s
  EXPECT_NE(t.Find(Key(1), 3, 600), nullptr);
  EXPECT_EQ(t.Find(Key(1), 3, 901), nullptr);
  EXPECT_EQ(t.CountLive(901), 0u);
}

TEST(FlowTableTest, FinOrRstLingersThenFrees) {
  FlowTable t(64, kTimeouts);
  FlowEntry* e = t.Insert(Key(1), 3, 10);
  t.MarkClosing(e, 20);
  EXPECT_NE(t.Find(Key(1), 3, 25), nullptr);  // retransmissions still find it
  EXPECT_NE(t.Find(Key(1), 3, 30), nullptr);  // ... but do not extend the linger
  EXPECT_EQ(t.Find(Key(1), 3, 31), nullptr);
}

TEST(FlowTableTest, FullBucketEvictsTheEntryClosestToExpiry) {
  FlowTable t(8, kTimeouts);  // a single bucket of 8 ways
  for (uint32_t i = 0; i < 8; ++i) t.Insert(Key(i), 0, 100 + i);
  ASSERT_NE(t.Find(Key(0), 0, 200), nullptr);  // key 0 is refreshed
  t.Insert(Key(99), 0, 201);                     // evicts key 1 (expires first)
  EXPECT_EQ(t.evictions.Get(), 1u);
  EXPECT_EQ(t.Find(Key(1), 0, 202), nullptr);
  EXPECT_NE(t.Find(Key(0), 0, 202), nullptr);
  EXPECT_NE(t.Find(Key(99), 0, 202), nullptr);
}

TEST(FlowTableTest, CapacityRoundsUp) {
  FlowTable t(1000, kTimeouts);
  EXPECT_EQ(t.capacity(), 1024u);
}

}  // namespace
}  // namespace sluice::mux
