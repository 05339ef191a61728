// The relay between two ring-backed ports: both directions, bytes unchanged, counters, and
// a refusing port's packets counted as dropped.
#include "tests/support/vhost_relay.h"

#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include "tests/support/ring_port.h"

namespace sluice::testing {
namespace {

class VhostRelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_ = rte_pktmbuf_pool_create("relay_test_pool", 4095, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
    ASSERT_NE(pool_, nullptr);
  }
  void TearDown() override { rte_mempool_free(pool_); }

  // Frames as the port "received" them: rte_eth_rx_burst on the ring port returns them.
  void Receive(rte_ring* rx, const std::vector<std::vector<uint8_t>>& frames) {
    for (const auto& f : frames) {
      rte_mbuf* m = MbufFrom(pool_, f);
      ASSERT_NE(m, nullptr);
      ASSERT_EQ(rte_ring_enqueue(rx, m), 0);
    }
  }

  rte_mempool* pool_ = nullptr;
};

std::vector<uint8_t> Frame(uint8_t tag, size_t len) {
  std::vector<uint8_t> f(len, tag);
  f[0] = 0x02;  // a unicast MAC; the relay does not look at it anyway
  return f;
}

TEST_F(VhostRelayTest, ForwardsBothWaysUnchangedAndCounts) {
  RingPort vhost("relay_t1_vhost", pool_);
  RingPort kernel("relay_t1_kernel", pool_);
  ASSERT_TRUE(vhost.ok() && kernel.ok());
  PortRelay relay(vhost.port_id(), kernel.port_id());

  Receive(vhost.rx_ring(), {Frame(1, 60), Frame(2, 1514)});
  Receive(kernel.rx_ring(), {Frame(3, 98)});
  EXPECT_EQ(relay.PollOnce(), 3u);

  std::vector<std::vector<uint8_t>> to_kernel = kernel.Sent();
  std::vector<std::vector<uint8_t>> to_vhost = vhost.Sent();
  ASSERT_EQ(to_kernel.size(), 2u);
  EXPECT_EQ(to_kernel[0], Frame(1, 60));
  EXPECT_EQ(to_kernel[1], Frame(2, 1514));
  ASSERT_EQ(to_vhost.size(), 1u);
  EXPECT_EQ(to_vhost[0], Frame(3, 98));

  EXPECT_EQ(relay.side(0).rx_packets.Get(), 2u);
  EXPECT_EQ(relay.side(0).rx_bytes.Get(), 60u + 1514u);
  EXPECT_EQ(relay.side(1).tx_packets.Get(), 2u);
  EXPECT_EQ(relay.side(1).tx_bytes.Get(), 60u + 1514u);
  EXPECT_EQ(relay.side(1).rx_packets.Get(), 1u);
  EXPECT_EQ(relay.side(0).tx_packets.Get(), 1u);
  EXPECT_EQ(relay.side(0).tx_dropped.Get() + relay.side(1).tx_dropped.Get(), 0u);

  EXPECT_EQ(relay.PollOnce(), 0u);  // nothing more
}

TEST_F(VhostRelayTest, RefusedPacketsAreFreedAndCounted) {
  RingPort vhost("relay_t2_vhost", pool_);
  RingPort kernel("relay_t2_kernel", pool_);
  ASSERT_TRUE(vhost.ok() && kernel.ok());
  PortRelay relay(vhost.port_id(), kernel.port_id());
  // A stopped port refuses to send (like a vhost-user port whose peer has not connected).
  ASSERT_EQ(rte_eth_dev_stop(kernel.port_id()), 0);
  const unsigned free_before = rte_mempool_avail_count(pool_);
  Receive(vhost.rx_ring(), {Frame(1, 60), Frame(2, 60), Frame(3, 60)});
  relay.PollOnce();
  EXPECT_EQ(relay.side(0).rx_packets.Get(), 3u);
  EXPECT_EQ(relay.side(1).tx_packets.Get(), 0u);
  EXPECT_EQ(relay.side(1).tx_dropped.Get(), 3u);
  EXPECT_EQ(rte_mempool_avail_count(pool_), free_before);  // nothing leaked
  ASSERT_EQ(rte_eth_dev_start(kernel.port_id()), 0);
}

TEST_F(VhostRelayTest, RunStopsWhenAskedAndCountsEmptyPolls) {
  RingPort vhost("relay_t3_vhost", pool_);
  RingPort kernel("relay_t3_kernel", pool_);
  ASSERT_TRUE(vhost.ok() && kernel.ok());
  PortRelay relay(vhost.port_id(), kernel.port_id(), /*max_sleep_us=*/100);
  std::atomic<bool> stop{false};
  Receive(kernel.rx_ring(), {Frame(7, 64)});
  std::thread runner([&] { relay.Run(stop); });
  // Wait (bounded) until the frame crossed, then ask it to stop.
  for (int i = 0; i < 5000 && relay.side(0).tx_packets.Get() == 0; ++i) usleep(1000);
  stop.store(true);
  runner.join();
  EXPECT_EQ(relay.side(0).tx_packets.Get(), 1u);
  EXPECT_GT(relay.empty_polls(), 0u);
  EXPECT_EQ(vhost.Sent().size(), 1u);
}

}  // namespace
}  // namespace sluice::testing
