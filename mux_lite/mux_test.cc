#include "mux_lite/mux.h"

#include <gtest/gtest.h>
#include <rte_mbuf.h>

#include <set>

#include "offload/sw/fixture_builder.h"
#include "tests/support/ring_port.h"

namespace sluice::mux {
namespace {

using fixture::Arp;
using fixture::Eth;
using fixture::Ip;
using fixture::Ipv4;
using fixture::Mac;
using fixture::Payload;
using fixture::Tcp;

const flow::MacAddr kMuxMac = Mac("02:00:00:00:00:11");
const flow::MacAddr kRouterMac = Mac("02:00:00:00:00:01");
const flow::MacAddr kHost1Mac = Mac("02:00:00:00:00:21");
const flow::MacAddr kHost2Mac = Mac("02:00:00:00:00:22");
const flow::MacAddr kBroadcast = Mac("ff:ff:ff:ff:ff:ff");
const uint32_t kMuxPa = Ip("10.101.0.11");
const uint32_t kHost1 = Ip("10.101.0.31");
const uint32_t kHost2 = Ip("10.101.0.32");
const uint32_t kVip = Ip("10.200.0.10");
const uint32_t kClient = Ip("10.100.0.2");

MuxConfig LabConfig() {
  MuxConfig c;
  c.name = "mux-test";
  c.address = {.addr = kMuxPa, .length = 24};
  c.gateway = Ip("10.101.0.1");
  c.flow_table_size = 1024;
  c.vips.push_back({.vip = kVip, .port = 80, .proto = 6,
                    .backends = {{.dip = Ip("10.1.0.1"), .host = kHost1},
                                 {.dip = Ip("10.1.0.2"), .host = kHost2}}});
  c.vips.push_back({.vip = Ip("10.200.0.11"), .port = 80, .proto = 6,
                    .backends = {{.dip = Ip("10.1.0.9"), .host = kHost1, .weight = 0}}});
  return c;
}

class MuxDataPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int n = 0;
    pool_ = rte_pktmbuf_pool_create(("mux_test_" + std::to_string(n++)).c_str(), 1023, 0, 0,
                                    RTE_MBUF_DEFAULT_BUF_SIZE, 0);
    ASSERT_NE(pool_, nullptr);
    std::string error;
    mux_ = MuxDataPath::Create(LabConfig(), 0, kMuxMac, &error);
    ASSERT_NE(mux_, nullptr) << error;
  }
  void TearDown() override { rte_mempool_free(pool_); }

  // Runs one frame through Process; returns the outcome and the frame as it left.
  MuxDataPath::Outcome Run(const fixture::Packet& p, std::vector<uint8_t>* out = nullptr) {
    rte_mbuf* m = testing::MbufFrom(pool_, p.Bytes());
    MuxDataPath::Outcome outcome = mux_->Process(m, now_ns_);
    if (out != nullptr) {
      const uint8_t* d = rte_pktmbuf_mtod(m, const uint8_t*);
      out->assign(d, d + rte_pktmbuf_data_len(m));
    }
    rte_pktmbuf_free(m);
    return outcome;
  }

  void ResolveHosts() {
    rte_mbuf* requests[8];
    uint16_t n = mux_->ResolveNextHops(pool_, now_ns_, requests, 8);
    EXPECT_EQ(n, 2);  // one ARP request per backend host
    rte_pktmbuf_free_bulk(requests, n);
    for (auto [ip, mac] : {std::pair{kHost1, kHost1Mac}, std::pair{kHost2, kHost2Mac}}) {
      EXPECT_EQ(Run(Eth{.dst = kMuxMac, .src = mac} /
                    Arp{.op = 2, .sender_mac = mac, .sender_ip = ip, .target_mac = kMuxMac,
                        .target_ip = kMuxPa}),
                MuxDataPath::Outcome::kFree);
    }
    EXPECT_TRUE(mux_->NextHopsResolved());
  }

  static fixture::Packet ClientSyn(uint16_t sport, uint32_t vip = Ip("10.200.0.10")) {
    return Eth{.dst = kMuxMac, .src = kRouterMac} / Ipv4{.src = kClient, .dst = vip, .ttl = 63} /
           Tcp{.sport = sport, .dport = 80, .flags = fixture::kSyn} / Payload{"x"};
  }

  uint64_t Drops(DropReason r) { return mux_->counters().drops[static_cast<size_t>(r)].Get(); }

  rte_mempool* pool_ = nullptr;
  std::unique_ptr<MuxDataPath> mux_;
  uint64_t now_ns_ = 5'000'000'000;
};

TEST_F(MuxDataPathTest, AnswersArpForItsAddressOnly) {
  std::vector<uint8_t> out;
  ASSERT_EQ(Run(Eth{.dst = kBroadcast, .src = kRouterMac} /
                    Arp{.op = 1, .sender_mac = kRouterMac, .sender_ip = Ip("10.101.0.1"),
                        .target_ip = kMuxPa},
                &out),
            MuxDataPath::Outcome::kTransmit);
  std::vector<uint8_t> expected =
      (Eth{.dst = kRouterMac, .src = kMuxMac} /
       Arp{.op = 2, .sender_mac = kMuxMac, .sender_ip = kMuxPa, .target_mac = kRouterMac,
           .target_ip = Ip("10.101.0.1")})
          .Bytes();
  EXPECT_EQ(out, expected);
  EXPECT_EQ(Run(Eth{.dst = kBroadcast, .src = kRouterMac} /
                Arp{.op = 1, .sender_mac = kRouterMac, .sender_ip = Ip("10.101.0.1"),
                    .target_ip = Ip("10.101.0.99")}),
            MuxDataPath::Outcome::kFree);
}

TEST_F(MuxDataPathTest, UnresolvedNextHopIsCountedNotSent) {
  EXPECT_EQ(Run(ClientSyn(40000)), MuxDataPath::Outcome::kDropped);
  EXPECT_EQ(Drops(DropReason::kNeighborUnresolved), 1u);
}

TEST_F(MuxDataPathTest, EncapsulatesNewFlowToTheMaglevChoiceAndKeepsIt) {
  ResolveHosts();
  std::vector<uint8_t> out;
  ASSERT_EQ(Run(ClientSyn(40000), &out), MuxDataPath::Outcome::kTransmit);
  // Outer header: mux PA → one of the backend hosts, IPIP; inner packet unchanged.
  std::vector<uint8_t> inner = ClientSyn(40000).Bytes();
  ASSERT_EQ(out.size(), inner.size() + 20);
  uint32_t outer_dst = fixture::internal::Get32(out, 14 + 16);
  ASSERT_TRUE(outer_dst == kHost1 || outer_dst == kHost2);
  flow::MacAddr expected_mac = outer_dst == kHost1 ? kHost1Mac : kHost2Mac;
  EXPECT_TRUE(std::equal(expected_mac.begin(), expected_mac.end(), out.begin()));
  EXPECT_EQ(out[14 + 9], flow::kProtoIpip);
  EXPECT_EQ(fixture::internal::Get32(out, 14 + 12), kMuxPa);
  EXPECT_TRUE(std::equal(inner.begin() + 14, inner.end(), out.begin() + 34));
  EXPECT_EQ(fixture::VerifyChecksums(out), "");
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(Run(ClientSyn(40000), &out), MuxDataPath::Outcome::kTransmit);
    EXPECT_EQ(fixture::internal::Get32(out, 14 + 16), outer_dst);
  }
  EXPECT_EQ(mux_->counters().new_flows.Get(), 1u);
  EXPECT_EQ(mux_->counters().cached_flow_packets.Get(), 5u);
}

TEST_F(MuxDataPathTest, ManyFlowsReachEveryBackend) {
  ResolveHosts();
  std::set<uint32_t> hosts;
  std::vector<uint8_t> out;
  for (uint16_t port = 30000; port < 30100; ++port) {
    ASSERT_EQ(Run(ClientSyn(port), &out), MuxDataPath::Outcome::kTransmit);
    hosts.insert(fixture::internal::Get32(out, 14 + 16));
  }
  EXPECT_EQ(hosts.size(), 2u);
  EXPECT_EQ(mux_->counters().new_flows.Get(), 100u);
}

TEST_F(MuxDataPathTest, BadTrafficIsNamed) {
  ResolveHosts();
  // Not a VIP (a reply that should have bypassed the mux).
  EXPECT_EQ(Run(Eth{.dst = kMuxMac, .src = kRouterMac} /
                Ipv4{.src = kVip, .dst = kClient} / Tcp{.sport = 80, .dport = 40000}),
            MuxDataPath::Outcome::kDropped);
  EXPECT_EQ(Drops(DropReason::kNoRule), 1u);
  // Somebody else's frame flooded by the bridge.
  fixture::Packet other = ClientSyn(1);
  std::get<Eth>(other.layers[0]).dst = kHost1Mac;
  EXPECT_EQ(Run(other), MuxDataPath::Outcome::kDropped);
  EXPECT_EQ(Drops(DropReason::kNotForUs), 1u);
  // A VIP whose only backend is drained.
  EXPECT_EQ(Run(ClientSyn(1, Ip("10.200.0.11"))), MuxDataPath::Outcome::kDropped);
  EXPECT_EQ(Drops(DropReason::kNoBackend), 1u);
  // Truncated and malformed packets.
  EXPECT_EQ(Run(ClientSyn(1).TruncatedTo(30)), MuxDataPath::Outcome::kDropped);
  EXPECT_EQ(Drops(DropReason::kTruncated), 1u);
  EXPECT_EQ(Run(Eth{.dst = kMuxMac, .src = kRouterMac} /
                Ipv4{.src = kClient, .dst = kVip, .ihl = 3} / Tcp{.sport = 1, .dport = 80}),
            MuxDataPath::Outcome::kDropped);
  EXPECT_EQ(Drops(DropReason::kMalformed), 1u);
}

TEST_F(MuxDataPathTest, ReadyOnlyWhenEveryBackendHostIsResolved) {
  EXPECT_FALSE(mux_->NextHopsResolved());
  ResolveHosts();
  EXPECT_TRUE(mux_->NextHopsResolved());
}

}  // namespace
}  // namespace sluice::mux
