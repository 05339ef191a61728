#include "offload/port/neighbor.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "offload/packet/parse.h"

namespace sluice::port {
namespace {

constexpr flow::MacAddr kOurMac = {0x02, 0, 0, 0, 0, 0x11};
constexpr flow::MacAddr kRouterMac = {0x02, 0, 0, 0, 0, 0x01};
constexpr uint32_t kOurIp = 0x0a65000b;     // 10.101.0.11
constexpr uint32_t kRouterIp = 0x0a650001;  // 10.101.0.1

TEST(NeighborTableTest, LearnLookupAndRequestPacing) {
  NeighborTable table;
  flow::MacAddr mac;
  EXPECT_FALSE(table.Lookup(kRouterIp, &mac));
  EXPECT_TRUE(table.ShouldRequest(kRouterIp, 0));
  EXPECT_FALSE(table.ShouldRequest(kRouterIp, 500'000'000));  // paced: 1 per second
  EXPECT_TRUE(table.ShouldRequest(kRouterIp, 1'000'000'001));
  uint64_t gen = table.generation();
  table.Learn(kRouterIp, kRouterMac, 2'000'000'000);
  EXPECT_GT(table.generation(), gen);
  ASSERT_TRUE(table.Lookup(kRouterIp, &mac));
  EXPECT_EQ(mac, kRouterMac);
  EXPECT_FALSE(table.ShouldRequest(kRouterIp, 9'000'000'000));
}

TEST(NeighborTableTest, FullTableReplacesOldest) {
  NeighborTable table(2);
  table.Learn(1, kRouterMac, 10);
  table.Learn(2, kRouterMac, 20);
  table.Learn(3, kRouterMac, 30);
  flow::MacAddr mac;
  EXPECT_FALSE(table.Lookup(1, &mac));
  EXPECT_TRUE(table.Lookup(2, &mac));
  EXPECT_TRUE(table.Lookup(3, &mac));
  EXPECT_EQ(table.size(), 2u);
}

// Workers of one port share the table: one learns (and evicts, the table being small) while
// others look up. A lookup may miss, but it must never pair an address with another's MAC.
TEST(NeighborTableTest, ConcurrentLearnAndLookupNeverMixUpEntries) {
  NeighborTable table(8);
  auto mac_of = [](uint32_t ip) {
    return flow::MacAddr{0x02, 0x5c, static_cast<uint8_t>(ip >> 24), static_cast<uint8_t>(ip >> 16),
                         static_cast<uint8_t>(ip >> 8), static_cast<uint8_t>(ip)};
  };
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> hits{0}, wrong{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&, r] {
      flow::MacAddr mac;
      for (uint32_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        const uint32_t ip = kRouterIp + (i * 7 + r) % 16;
        if (!table.Lookup(ip, &mac)) continue;
        hits.fetch_add(1, std::memory_order_relaxed);
        if (mac != mac_of(ip)) wrong.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  std::thread writer([&] {
    for (uint64_t i = 0; i < 200'000; ++i) {
      const uint32_t ip = kRouterIp + static_cast<uint32_t>(i % 16);  // 16 addresses, 8 slots
      table.Learn(ip, mac_of(ip), i);
      table.ShouldRequest(ip + 100, i);
    }
  });
  writer.join();
  // Let the readers see the final table too before stopping them.
  for (uint32_t ip = kRouterIp; ip < kRouterIp + 8; ++ip) table.Learn(ip, mac_of(ip), 1u << 30);
  while (hits.load() < 1000) std::this_thread::yield();
  stop.store(true);
  for (auto& t : readers) t.join();
  EXPECT_EQ(wrong.load(), 0u);
  EXPECT_LE(table.size(), 8u);
}

TEST(ArpResponderTest, AnswersRequestsForOwnedAddressAndLearnsSender) {
  NeighborTable table;
  ArpResponder arp(kOurMac, {kOurIp}, &table);
  uint8_t frame[64] = {};
  constexpr flow::MacAddr kBroadcast = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  uint32_t len = packet::BuildArp(frame, 1, kBroadcast, kRouterMac, kRouterIp, {}, kOurIp);
  DropReason reason;
  uint32_t reply_len = 0;
  ASSERT_EQ(arp.Handle(frame, len, 1, &reason, &reply_len), ArpOutcome::kReply);
  packet::ArpPacket reply;
  ASSERT_TRUE(packet::ParseArp(frame, reply_len, &reply, &reason));
  EXPECT_EQ(reply.op, 2);
  EXPECT_EQ(reply.sender_ip, kOurIp);
  EXPECT_EQ(reply.sender_mac, kOurMac);
  EXPECT_EQ(reply.target_ip, kRouterIp);
  EXPECT_EQ(reply.target_mac, kRouterMac);
  EXPECT_EQ(0, memcmp(frame, kRouterMac.data(), 6));  // unicast back to the asker
  flow::MacAddr mac;
  EXPECT_TRUE(table.Lookup(kRouterIp, &mac));
  EXPECT_EQ(arp.replies_sent.Get(), 1u);
}

TEST(ArpResponderTest, IgnoresRequestsForOthers) {
  NeighborTable table;
  ArpResponder arp(kOurMac, {kOurIp}, &table);
  uint8_t frame[64] = {};
  uint32_t len = packet::BuildArp(frame, 1, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, kRouterMac,
                                  kRouterIp, {}, kOurIp + 1);
  DropReason reason;
  uint32_t reply_len = 0;
  EXPECT_EQ(arp.Handle(frame, len, 1, &reason, &reply_len), ArpOutcome::kConsumed);
  flow::MacAddr mac;
  EXPECT_FALSE(table.Lookup(kRouterIp, &mac));  // not aimed at us, not tracked: not learned
}

TEST(ArpResponderTest, TruncatedArpIsDroppedWithReason) {
  NeighborTable table;
  ArpResponder arp(kOurMac, {kOurIp}, &table);
  uint8_t frame[64] = {};
  uint32_t len = packet::BuildArp(frame, 1, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, kRouterMac,
                                  kRouterIp, {}, kOurIp);
  DropReason reason = DropReason::kNoRule;
  uint32_t reply_len = 0;
  EXPECT_EQ(arp.Handle(frame, len - 10, 1, &reason, &reply_len), ArpOutcome::kDrop);
  EXPECT_EQ(reason, DropReason::kTruncated);
}

}  // namespace
}  // namespace sluice::port
