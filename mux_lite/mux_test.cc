#include "mux_lite/mux.h"
#include "mux_lite/workers.h"

#include <gtest/gtest.h>
#include <rte_mbuf.h>

#include <map>
#include <random>
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
using fixture::Udp;

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

const packet::FastpathKey kKey = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                  17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

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
  // Intra-cloud VIP whose backend's host decapsulates GUE.
  c.vips.push_back({.vip = Ip("10.200.0.20"), .port = 80, .proto = 6,
                    .backends = {{.dip = Ip("10.1.0.3"), .host = kHost2,
                                  .encap = flow::Tunnel::kGue}}});
  c.snat_ranges.push_back({.vip = kVip, .proto = 0, .port_start = 20000, .port_count = 128,
                           .host = kHost1});
  c.fastpath = true;
  c.fastpath_key = kKey;
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
    mux_ = MuxDataPath::Create(LabConfig(), 0, kMuxMac, pool_, &error);
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
    uint16_t n = mux_->ResolveNextHops(now_ns_, requests, 8);
    EXPECT_EQ(n, 2);  // one ARP request per backend (and SNAT) host
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

// A burst (with the flow-table prefetch running ahead) leaves every packet exactly as Process
// one at a time would, odd packets included: a second mux gets the same frames one by one.
TEST_F(MuxDataPathTest, BurstMatchesOneByOne) {
  ResolveHosts();
  std::string error;
  auto single = MuxDataPath::Create(LabConfig(), 0, kMuxMac, pool_, &error);
  ASSERT_NE(single, nullptr) << error;
  std::vector<fixture::Packet> frames;
  for (uint16_t port = 31000; port < 31020; ++port) frames.push_back(ClientSyn(port));
  frames.push_back(ClientSyn(31000));  // the same flow again, inside the burst
  frames.push_back(ClientSyn(2).TruncatedTo(20));
  frames.push_back(ClientSyn(3).TruncatedTo(40));
  frames.push_back(Eth{.dst = kMuxMac, .src = kRouterMac} /
                   Ipv4{.src = kClient, .dst = kVip, .ihl = 6} / Tcp{.sport = 4, .dport = 80});
  frames.push_back(Eth{.dst = kMuxMac, .src = kRouterMac} / Ipv4{.src = kVip, .dst = kClient} /
                   Tcp{.sport = 80, .dport = 40000});
  // The second mux resolves the same neighbours.
  rte_mbuf* requests[8];
  rte_pktmbuf_free_bulk(requests, single->ResolveNextHops(now_ns_, requests, 8));
  for (auto [ip, mac] : {std::pair{kHost1, kHost1Mac}, std::pair{kHost2, kHost2Mac}}) {
    rte_mbuf* m = testing::MbufFrom(pool_, (Eth{.dst = kMuxMac, .src = mac} /
                                            Arp{.op = 2, .sender_mac = mac, .sender_ip = ip,
                                                .target_mac = kMuxMac, .target_ip = kMuxPa})
                                               .Bytes());
    single->Process(m, now_ns_);
    rte_pktmbuf_free(m);
  }
  std::vector<rte_mbuf*> burst;
  for (const auto& f : frames) burst.push_back(testing::MbufFrom(pool_, f.Bytes()));
  std::vector<MuxDataPath::Outcome> outcomes(burst.size());
  mux_->ProcessBurst(burst.data(), static_cast<uint16_t>(burst.size()), now_ns_, outcomes.data());
  for (size_t i = 0; i < frames.size(); ++i) {
    rte_mbuf* m = testing::MbufFrom(pool_, frames[i].Bytes());
    EXPECT_EQ(single->Process(m, now_ns_), outcomes[i]) << "frame " << i;
    const auto* a = rte_pktmbuf_mtod(m, const uint8_t*);
    const auto* b = rte_pktmbuf_mtod(burst[i], const uint8_t*);
    EXPECT_EQ(std::vector<uint8_t>(a, a + rte_pktmbuf_data_len(m)),
              std::vector<uint8_t>(b, b + rte_pktmbuf_data_len(burst[i])))
        << "frame " << i;
    rte_pktmbuf_free(m);
    rte_pktmbuf_free(burst[i]);
  }
  EXPECT_EQ(mux_->counters().new_flows.Get(), 20u);
  EXPECT_EQ(mux_->counters().cached_flow_packets.Get(), 1u);
  EXPECT_EQ(Drops(DropReason::kNoRule), 1u);
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

TEST_F(MuxDataPathTest, SnatRepliesGoToTheLesseeHost) {
  ResolveHosts();
  std::vector<uint8_t> out;
  ASSERT_EQ(Run(Eth{.dst = kMuxMac, .src = kRouterMac} /
                    Ipv4{.src = Ip("10.100.0.2"), .dst = kVip} /
                    Tcp{.sport = 9000, .dport = 20005} / Payload{"r"},
                &out),
            MuxDataPath::Outcome::kTransmit);
  EXPECT_EQ(fixture::internal::Get32(out, 14 + 16), kHost1);
  EXPECT_EQ(mux_->counters().snat_return_packets.Get(), 1u);
  EXPECT_EQ(mux_->counters().new_flows.Get(), 0u);  // stateless
  // Outside every range: not ours.
  EXPECT_EQ(Run(Eth{.dst = kMuxMac, .src = kRouterMac} / Ipv4{.src = kClient, .dst = kVip} /
                Tcp{.sport = 9000, .dport = 30000}),
            MuxDataPath::Outcome::kDropped);
  EXPECT_EQ(Drops(DropReason::kNoRule), 1u);
}

TEST_F(MuxDataPathTest, GueBackendGetsGueWithAFlowHashSourcePort) {
  ResolveHosts();
  std::vector<uint8_t> out;
  ASSERT_EQ(Run(ClientSyn(40000, Ip("10.200.0.20")), &out), MuxDataPath::Outcome::kTransmit);
  EXPECT_EQ(out[14 + 9], flow::kProtoUdp);
  uint16_t sport = fixture::internal::Get16(out, 34);
  EXPECT_GE(sport, 49152);
  EXPECT_EQ(fixture::internal::Get16(out, 36), flow::kDefaultGuePort);
  EXPECT_EQ(fixture::VerifyChecksums(out), "");
}

// A host behind OVS asks for GRE: basic header, protocol IPv4, the client's packet unchanged.
TEST_F(MuxDataPathTest, GreBackendGetsBasicGreCarryingTheClientPacket) {
  MuxConfig config = LabConfig();
  config.vips.push_back({.vip = Ip("10.200.0.21"), .port = 80, .proto = 6,
                         .backends = {{.dip = Ip("10.1.0.4"), .host = kHost2,
                                       .encap = flow::Tunnel::kGre}}});
  std::string error;
  mux_ = MuxDataPath::Create(config, 0, kMuxMac, pool_, &error);
  ASSERT_NE(mux_, nullptr) << error;
  ResolveHosts();
  const fixture::Packet syn = ClientSyn(40000, Ip("10.200.0.21"));
  const std::vector<uint8_t> in = syn.Bytes();
  std::vector<uint8_t> out;
  ASSERT_EQ(Run(syn, &out), MuxDataPath::Outcome::kTransmit);
  ASSERT_EQ(out.size(), in.size() + 24);
  EXPECT_TRUE(std::equal(kHost2Mac.begin(), kHost2Mac.end(), out.begin()));
  EXPECT_EQ(out[14 + 9], flow::kProtoGre);
  EXPECT_EQ(fixture::internal::Get32(out, 14 + 16), kHost2);
  EXPECT_EQ(fixture::internal::Get16(out, 34), 0);       // no checksum, key, sequence
  EXPECT_EQ(fixture::internal::Get16(out, 36), 0x0800);  // IPv4 inside
  EXPECT_TRUE(std::equal(in.begin() + 14, in.end(), out.begin() + 38));
  EXPECT_EQ(fixture::VerifyChecksums(out), "");
}

TEST_F(MuxDataPathTest, IntraCloudFlowIsRedirectedOnceAfterTheHandshake) {
  ResolveHosts();
  const uint32_t vip2 = Ip("10.200.0.20");
  auto from_vm = [&](uint8_t flags) {
    return Eth{.dst = kMuxMac, .src = kRouterMac} / Ipv4{.src = kVip, .dst = vip2} /
           Tcp{.sport = 20001, .dport = 80, .flags = flags};
  };
  rte_mbuf* ctl[4];
  ASSERT_EQ(Run(from_vm(fixture::kSyn)), MuxDataPath::Outcome::kTransmit);
  EXPECT_EQ(mux_->TakeControlPackets(ctl, 4), 0);  // SYN: not yet
  ASSERT_EQ(Run(from_vm(fixture::kAck)), MuxDataPath::Outcome::kTransmit);
  uint16_t n = mux_->TakeControlPackets(ctl, 4);
  ASSERT_EQ(n, 2);  // to the SNAT owner (host1) and to the backend's host (host2)
  std::set<uint32_t> targets;
  for (uint16_t i = 0; i < n; ++i) {
    const uint8_t* d = rte_pktmbuf_mtod(ctl[i], const uint8_t*);
    std::vector<uint8_t> frame(d, d + rte_pktmbuf_data_len(ctl[i]));
    targets.insert(fixture::internal::Get32(frame, 14 + 16));
    packet::FastpathRedirect r;
    ASSERT_EQ(packet::DecodeFastpathRedirect(frame.data() + 42, frame.size() - 42, kKey, &r),
              packet::RedirectCheck::kOk);
    EXPECT_EQ(r.flow_src, kVip);
    EXPECT_EQ(r.flow_src_port, 20001);
    EXPECT_EQ(r.dip, Ip("10.1.0.3"));
    EXPECT_EQ(r.dst_pa, kHost2);
    EXPECT_EQ(r.src_host_pa, kHost1);
    EXPECT_EQ(r.dst_encap, flow::Tunnel::kGue);  // the backend's encap
    EXPECT_EQ(r.src_encap, flow::Tunnel::kIpip);  // the SNAT range's
    rte_pktmbuf_free(ctl[i]);
  }
  EXPECT_EQ(targets, (std::set<uint32_t>{kHost1, kHost2}));
  ASSERT_EQ(Run(from_vm(fixture::kAck)), MuxDataPath::Outcome::kTransmit);
  EXPECT_EQ(mux_->TakeControlPackets(ctl, 4), 0);  // only once
  // A client from outside the cloud is never redirected.
  ASSERT_EQ(Run(ClientSyn(5000)), MuxDataPath::Outcome::kTransmit);
  fixture::Packet ack = ClientSyn(5000);
  std::get<Tcp>(ack.layers[2]).flags = fixture::kAck;
  ASSERT_EQ(Run(ack), MuxDataPath::Outcome::kTransmit);
  EXPECT_EQ(mux_->TakeControlPackets(ctl, 4), 0);
  EXPECT_EQ(mux_->counters().fastpath_redirects_sent.Get(), 2u);
}

// Records offers (the seam's fake).
class RecordingSink : public FlowOffloadSink {
 public:
  bool Offer(const OffloadRequest& r) override {
    offers.push_back(r);
    return true;
  }
  bool TakeActive(FlowKey* key) override {
    if (active.empty()) return false;
    *key = active.back();
    active.pop_back();
    return true;
  }
  std::vector<OffloadRequest> offers;
  std::vector<FlowKey> active;  ///< What the NIC's COUNT says is still carried.
};

// A flow the NIC carries sends nothing through the mux's CPU; its COUNT readings keep its
// flow-table entry (and so its backend) alive past the idle timeout.
TEST_F(MuxDataPathTest, FlowsTheNicCarriesDoNotIdleOutOfTheFlowTable) {
  ResolveHosts();
  RecordingSink sink;
  mux_->SetOffloadSink(&sink);
  fixture::Packet ack = ClientSyn(8100);
  std::get<Tcp>(ack.layers[2]).flags = fixture::kAck;
  fixture::Packet other = ClientSyn(8101);
  std::get<Tcp>(other.layers[2]).flags = fixture::kAck;
  ASSERT_EQ(Run(ClientSyn(8100)), MuxDataPath::Outcome::kTransmit);
  ASSERT_EQ(Run(ClientSyn(8101)), MuxDataPath::Outcome::kTransmit);
  ASSERT_EQ(Run(ack), MuxDataPath::Outcome::kTransmit);
  ASSERT_EQ(Run(other), MuxDataPath::Outcome::kTransmit);
  ASSERT_EQ(sink.offers.size(), 2u);
  const uint64_t new_flows = mux_->counters().new_flows.Get();
  const uint64_t idle_ns = uint64_t{mux_->config().flow_timeouts.tcp_idle_s} * 1'000'000'000;
  for (int step = 0; step < 4; ++step) {  // twice the idle timeout, in halves
    now_ns_ += idle_ns / 2;
    sink.active.push_back(sink.offers[0].key);  // only 8100's rule counted packets
    EXPECT_EQ(mux_->TakeOffloadActivity(now_ns_), 1u);
  }
  EXPECT_EQ(mux_->counters().nic_refreshed_flows.Get(), 4u);
  ASSERT_EQ(Run(ack), MuxDataPath::Outcome::kTransmit);
  EXPECT_EQ(mux_->counters().new_flows.Get(), new_flows) << "8100 kept its entry";
  ASSERT_EQ(Run(other), MuxDataPath::Outcome::kTransmit);
  EXPECT_EQ(mux_->counters().new_flows.Get(), new_flows + 1) << "8101 idled out";
  // The client's FIN (handed to the mux by the NIC's close rule) withdraws the flow's rule.
  fixture::Packet fin = ack;
  std::get<Tcp>(fin.layers[2]).flags = fixture::kFin | fixture::kAck;
  ASSERT_EQ(Run(fin), MuxDataPath::Outcome::kTransmit);
  ASSERT_FALSE(sink.offers.empty());
  EXPECT_TRUE(sink.offers.back().withdraw);
  EXPECT_EQ(sink.offers.back().key.src_port, 8100);
}

TEST_F(MuxDataPathTest, EstablishedFlowsAreOfferedForOffloadOnce) {
  ResolveHosts();
  RecordingSink sink;
  mux_->SetOffloadSink(&sink);
  ASSERT_EQ(Run(ClientSyn(8000)), MuxDataPath::Outcome::kTransmit);
  EXPECT_TRUE(sink.offers.empty());  // first packet: the slow path only
  fixture::Packet ack = ClientSyn(8000);
  std::get<Tcp>(ack.layers[2]).flags = fixture::kAck;
  ASSERT_EQ(Run(ack), MuxDataPath::Outcome::kTransmit);
  ASSERT_EQ(Run(ack), MuxDataPath::Outcome::kTransmit);
  ASSERT_EQ(sink.offers.size(), 1u);
  EXPECT_EQ(sink.offers[0].key.src_port, 8000);
  EXPECT_TRUE(sink.offers[0].host_pa == kHost1 || sink.offers[0].host_pa == kHost2);
  EXPECT_EQ(sink.offers[0].next_hop_mac,
            sink.offers[0].host_pa == kHost1 ? kHost1Mac : kHost2Mac);
}

TEST_F(MuxDataPathTest, FinOrRstMarksTheFlowClosing) {
  ResolveHosts();
  ASSERT_EQ(Run(ClientSyn(7000)), MuxDataPath::Outcome::kTransmit);
  fixture::Packet fin = ClientSyn(7000);
  std::get<Tcp>(fin.layers[2]).flags = fixture::kFin | fixture::kAck;
  ASSERT_EQ(Run(fin), MuxDataPath::Outcome::kTransmit);
  ASSERT_EQ(Run(fin), MuxDataPath::Outcome::kTransmit);  // retransmission: counted once
  EXPECT_EQ(mux_->counters().closing_flows.Get(), 1u);
  // The client reuses the port for a new connection while the old one lingers: new flow.
  const uint64_t new_flows = mux_->counters().new_flows.Get();
  ASSERT_EQ(Run(ClientSyn(7000)), MuxDataPath::Outcome::kTransmit);
  EXPECT_EQ(mux_->counters().reopened_flows.Get(), 1u);
  EXPECT_EQ(mux_->counters().new_flows.Get(), new_flows + 1);
  // A retransmitted SYN of a live connection is not a new one.
  ASSERT_EQ(Run(ClientSyn(7000)), MuxDataPath::Outcome::kTransmit);
  EXPECT_EQ(mux_->counters().reopened_flows.Get(), 1u);
  EXPECT_EQ(mux_->counters().new_flows.Get(), new_flows + 1);
}

TEST_F(MuxDataPathTest, TrafficToTheMuxItselfIsLeftToTheKernel) {
  ResolveHosts();
  EXPECT_EQ(Run(Eth{.dst = kMuxMac, .src = kRouterMac} / Ipv4{.src = Ip("10.101.0.1"), .dst = kMuxPa} /
                Tcp{.sport = 179, .dport = 40000}),
            MuxDataPath::Outcome::kFree);
  EXPECT_EQ(mux_->counters().local_packets.Get(), 1u);
  EXPECT_EQ(Drops(DropReason::kNoRule), 0u);
}

TEST(MuxSchedulerTest, WeightedRoundRobinAndSourceHash) {
  static int n = 0;
  rte_mempool* pool = rte_pktmbuf_pool_create(("mux_sched_" + std::to_string(n++)).c_str(), 255,
                                              0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
  ASSERT_NE(pool, nullptr);
  for (Scheduler scheduler : {Scheduler::kWeightedRoundRobin, Scheduler::kSourceHash}) {
    MuxConfig c = LabConfig();
    c.vips[0].scheduler = scheduler;
    c.vips[0].backends[0].weight = 3;
    std::string error;
    auto mux = MuxDataPath::Create(c, 0, kMuxMac, pool, &error);
    ASSERT_NE(mux, nullptr) << error;
    rte_mbuf* req[4];
    rte_pktmbuf_free_bulk(req, mux->ResolveNextHops(1, req, 4));
    for (auto [ip, mac] : {std::pair{kHost1, kHost1Mac}, std::pair{kHost2, kHost2Mac}}) {
      rte_mbuf* m = testing::MbufFrom(pool, (Eth{.dst = kMuxMac, .src = mac} /
                                             Arp{.op = 2, .sender_mac = mac, .sender_ip = ip,
                                                 .target_mac = kMuxMac, .target_ip = kMuxPa})
                                                .Bytes());
      mux->Process(m, 1);
      rte_pktmbuf_free(m);
    }
    std::map<uint32_t, int> per_host;
    for (uint16_t port = 1; port <= 400; ++port) {
      // Source-hash: 4 clients, 100 connections each; WRR: one client.
      uint32_t client = scheduler == Scheduler::kSourceHash ? kClient + port % 4 : kClient;
      rte_mbuf* m = testing::MbufFrom(
          pool, (Eth{.dst = kMuxMac, .src = kRouterMac} / Ipv4{.src = client, .dst = kVip} /
                 Tcp{.sport = port, .dport = 80, .flags = fixture::kSyn})
                    .Bytes());
      ASSERT_EQ(mux->Process(m, 1), MuxDataPath::Outcome::kTransmit);
      std::vector<uint8_t> out(rte_pktmbuf_mtod(m, uint8_t*),
                               rte_pktmbuf_mtod(m, uint8_t*) + rte_pktmbuf_data_len(m));
      per_host[fixture::internal::Get32(out, 14 + 16)]++;
      rte_pktmbuf_free(m);
    }
    if (scheduler == Scheduler::kWeightedRoundRobin) {
      EXPECT_EQ(per_host[kHost1], 300);  // exactly 3:1
      EXPECT_EQ(per_host[kHost2], 100);
    } else {
      for (auto [host, count] : per_host) EXPECT_EQ(count % 100, 0) << "a client was split";
    }
  }
  rte_mempool_free(pool);
}

TEST_F(MuxDataPathTest, ReloadSwapsTablesEstablishedFlowsKeepTheirHost) {
  ResolveHosts();
  std::vector<uint8_t> out;
  // Find a flow on host2, then drain host2's backend.
  uint16_t port = 30000;
  for (;; ++port) {
    ASSERT_EQ(Run(ClientSyn(port), &out), MuxDataPath::Outcome::kTransmit);
    if (fixture::internal::Get32(out, 14 + 16) == kHost2) break;
  }
  MuxConfig changed = LabConfig();
  changed.vips[0].backends[1].weight = 0;
  std::string error;
  ASSERT_TRUE(mux_->Reload(changed, &error)) << error;
  EXPECT_EQ(mux_->generation(), 2u);
  EXPECT_EQ(mux_->ReclaimRetired(), 1u);  // the data path has not moved past it yet
  mux_->Quiesce();
  EXPECT_EQ(mux_->ReclaimRetired(), 0u);
  fixture::Packet ack = ClientSyn(port);
  std::get<Tcp>(ack.layers[2]).flags = fixture::kAck;
  ASSERT_EQ(Run(ack, &out), MuxDataPath::Outcome::kTransmit);
  EXPECT_EQ(fixture::internal::Get32(out, 14 + 16), kHost2);  // established: same host
  EXPECT_EQ(mux_->counters().reopened_flows.Get(), 0u);
  // A new SYN on that 4-tuple is a new connection (the client reused its port): it must not
  // go to the drained backend.
  ASSERT_EQ(Run(ClientSyn(port), &out), MuxDataPath::Outcome::kTransmit);
  EXPECT_EQ(fixture::internal::Get32(out, 14 + 16), kHost1);
  EXPECT_EQ(mux_->counters().reopened_flows.Get(), 1u);
  ASSERT_EQ(Run(ack, &out), MuxDataPath::Outcome::kTransmit);
  EXPECT_EQ(fixture::internal::Get32(out, 14 + 16), kHost1);  // and it stays there
  for (uint16_t p = 40000; p < 40050; ++p) {  // new flows: never the drained backend
    ASSERT_EQ(Run(ClientSyn(p), &out), MuxDataPath::Outcome::kTransmit);
    EXPECT_EQ(fixture::internal::Get32(out, 14 + 16), kHost1);
  }
}

TEST_F(MuxDataPathTest, ReloadRefusesBadOrRestartOnlyChangesAndKeepsRunning) {
  MuxConfig moved = LabConfig();
  moved.address.addr = Ip("10.101.0.99");
  std::string error;
  EXPECT_FALSE(mux_->Reload(moved, &error));
  EXPECT_EQ(error, "mux.address cannot change while running (restart the mux)");
  MuxConfig duplicate = LabConfig();
  duplicate.vips[0].backends[1].dip = duplicate.vips[0].backends[0].dip;
  EXPECT_FALSE(mux_->Reload(duplicate, &error));
  EXPECT_NE(error.find("appears twice"), std::string::npos) << error;
  EXPECT_EQ(mux_->generation(), 1u);
  ResolveHosts();
  EXPECT_EQ(Run(ClientSyn(1)), MuxDataPath::Outcome::kTransmit);
}

TEST_F(MuxDataPathTest, ReadyOnlyWhenEveryBackendHostIsResolved) {
  EXPECT_FALSE(mux_->NextHopsResolved());
  ResolveHosts();
  EXPECT_TRUE(mux_->NextHopsResolved());
}

// Workers of one port: each has its own flow table and counters, but an ARP reply that
// lands on one worker's queue resolves the next hop for all, a reload reaches every worker
// at once, and every worker sends a flow to the same backend (same Maglev table).
TEST_F(MuxDataPathTest, WorkersShareNeighboursAndTablesButNotFlows) {
  MuxConfig config = LabConfig();
  config.workers = 3;
  std::string error;
  std::unique_ptr<MuxWorkers> workers =
      MuxWorkers::Create(config, 0, kMuxMac, pool_, nullptr, &error);
  ASSERT_NE(workers, nullptr) << error;
  ASSERT_EQ(workers->size(), 3u);
  auto run = [&](size_t w, const fixture::Packet& p, std::vector<uint8_t>* out = nullptr) {
    rte_mbuf* m = testing::MbufFrom(pool_, p.Bytes());
    MuxDataPath::Outcome outcome = workers->worker(w).Process(m, now_ns_);
    if (out != nullptr) {
      const uint8_t* d = rte_pktmbuf_mtod(m, const uint8_t*);
      out->assign(d, d + rte_pktmbuf_data_len(m));
    }
    rte_pktmbuf_free(m);
    return outcome;
  };
  // Worker 0 asks; the replies arrive on worker 2's queue.
  rte_mbuf* requests[8];
  rte_pktmbuf_free_bulk(requests, workers->worker(0).ResolveNextHops(now_ns_, requests, 8));
  for (auto [ip, mac] : {std::pair{kHost1, kHost1Mac}, std::pair{kHost2, kHost2Mac}}) {
    EXPECT_EQ(run(2, Eth{.dst = kMuxMac, .src = mac} /
                         Arp{.op = 2, .sender_mac = mac, .sender_ip = ip, .target_mac = kMuxMac,
                             .target_ip = kMuxPa}),
              MuxDataPath::Outcome::kFree);
  }
  EXPECT_TRUE(workers->worker(0).NextHopsResolved());
  EXPECT_TRUE(workers->worker(1).NextHopsResolved());

  // The same SYN through any worker goes to the same host.
  std::vector<uint8_t> first, out;
  ASSERT_EQ(run(0, ClientSyn(40000), &first), MuxDataPath::Outcome::kTransmit);
  for (size_t w = 1; w < 3; ++w) {
    ASSERT_EQ(run(w, ClientSyn(40000), &out), MuxDataPath::Outcome::kTransmit) << w;
    EXPECT_EQ(out, first) << "worker " << w;
  }
  for (size_t w = 0; w < 3; ++w) {
    EXPECT_EQ(workers->worker(w).counters().new_flows.Get(), 1u) << "own flow table, worker " << w;
  }
  MuxTotals totals;
  workers->Totals(now_ns_, &totals);
  EXPECT_EQ(totals.counters.new_flows.Get(), 3u);
  EXPECT_EQ(totals.flow_table_capacity, 3 * workers->worker(0).flow_table().capacity());
  ASSERT_EQ(totals.worker_packets.size(), 3u);

  // A reload reaches every worker; a change of the worker count needs a restart.
  config.vips.pop_back();
  ASSERT_TRUE(workers->Reload(config, &error)) << error;
  for (size_t w = 0; w < 3; ++w) EXPECT_EQ(workers->worker(w).generation(), 2u);
  config.workers = 2;
  EXPECT_FALSE(workers->Reload(config, &error));
  EXPECT_NE(error.find("mux.workers"), std::string::npos) << error;
  for (size_t w = 0; w < 3; ++w) EXPECT_EQ(workers->worker(w).generation(), 2u);
}

// Records what the data path offers for offload, to compare two muxes' offers.
class RecordingOffloadSink : public FlowOffloadSink {
 public:
  bool Offer(const OffloadRequest& r) override {
    offers.push_back({r.key.src, r.key.dst, r.key.src_port, r.key.dst_port, r.key.proto,
                      r.host_pa, static_cast<uint32_t>(r.tunnel)});
    return true;
  }
  std::vector<std::vector<uint32_t>> offers;
};

// Everything a mux counts, as one list (for EXPECT_EQ between two muxes).
std::vector<uint64_t> AllCounters(const MuxDataPath& mux) {
  const MuxCounters& c = mux.counters();
  std::vector<uint64_t> v = {c.rx_packets.Get(),          c.vip_packets.Get(),
                             c.new_flows.Get(),           c.cached_flow_packets.Get(),
                             c.closing_flows.Get(),       c.reopened_flows.Get(),
                             c.snat_return_packets.Get(), c.fastpath_redirects_sent.Get(),
                             c.local_packets.Get(),       c.arp_requests_sent.Get(),
                             mux.flow_table().inserts.Get(), mux.flow_table().evictions.Get(),
                             mux.arp().replies_sent.Get()};
  for (const Counter& d : c.drops) v.push_back(d.Get());
  mux.ReadTable([&](const VipTable& table) {
    for (const auto& vip : table.vips) {
      v.push_back(vip->packets.Get());
      for (size_t b = 0; b < vip->config.backends.size(); ++b) {
        v.push_back(vip->backend_packets[b].Get());
        v.push_back(vip->backend_flows[b].Get());
      }
    }
  });
  return v;
}

// The burst path (direct parse, batched lookups, encapsulation without the IR) against
// Process one packet at a time, on randomised traffic: TCP and UDP flows to VIPs with every
// tunnel type, SNAT replies and Fastpath sources, all TCP flag mixes, IP options, fragments,
// VLAN tags, padding, truncation, corrupted bytes, too little headroom, other MACs, ARP that
// moves a next hop, flows expiring. Every packet must leave byte for byte the same, with the
// same outcome, and every counter and offload offer must match.
TEST_F(MuxDataPathTest, BurstMatchesOneByOneOnRandomTraffic) {
  const uint32_t kUdpVip = Ip("10.200.0.30");
  MuxConfig config = LabConfig();
  config.vips.push_back({.vip = kUdpVip, .port = 53, .proto = 17,
                         .backends = {{.dip = Ip("10.1.0.4"), .host = kHost1,
                                       .encap = flow::Tunnel::kGre},
                                      {.dip = Ip("10.1.0.5"), .host = kHost2,
                                       .encap = flow::Tunnel::kGue}}});
  config.flow_table_size = 64;  // small: buckets fill, flows get evicted
  config.flow_timeouts = {.tcp_idle_s = 20, .udp_idle_s = 5, .closing_s = 2};
  std::string error;
  auto burst_mux = MuxDataPath::Create(config, 0, kMuxMac, pool_, &error);
  ASSERT_NE(burst_mux, nullptr) << error;
  auto single_mux = MuxDataPath::Create(config, 0, kMuxMac, pool_, &error);
  ASSERT_NE(single_mux, nullptr) << error;
  RecordingOffloadSink burst_offers, single_offers;
  burst_mux->SetOffloadSink(&burst_offers);
  single_mux->SetOffloadSink(&single_offers);

  std::mt19937 rng(20261123);
  auto pick = [&](uint32_t n) { return static_cast<uint32_t>(rng() % n); };
  auto chance = [&](uint32_t percent) { return pick(100) < percent; };
  uint64_t now_ns = now_ns_;

  auto arp_reply = [&](uint32_t ip, flow::MacAddr mac) {
    return (Eth{.dst = kMuxMac, .src = mac} /
            Arp{.op = 2, .sender_mac = mac, .sender_ip = ip, .target_mac = kMuxMac,
                .target_ip = kMuxPa})
        .Bytes();
  };
  // Both muxes learn the next hops (the gateway stays unresolved: hosts are on-link).
  for (MuxDataPath* mux : {burst_mux.get(), single_mux.get()}) {
    rte_mbuf* requests[8];
    rte_pktmbuf_free_bulk(requests, mux->ResolveNextHops(now_ns, requests, 8));
    for (auto [ip, mac] : {std::pair{kHost1, kHost1Mac}, std::pair{kHost2, kHost2Mac}}) {
      rte_mbuf* m = testing::MbufFrom(pool_, arp_reply(ip, mac));
      mux->Process(m, now_ns);
      rte_pktmbuf_free(m);
    }
  }

  struct Tuple {
    uint32_t src, dst;
    uint16_t sport, dport;
    uint8_t proto;
  };
  std::vector<Tuple> tuples;
  const std::pair<uint32_t, uint16_t> tcp_dsts[] = {
      {kVip, 80}, {Ip("10.200.0.20"), 80}, {Ip("10.200.0.11"), 80}, {kVip, 20005},
      {Ip("10.200.0.99"), 80}, {kMuxPa, 179}, {kVip, 81}};
  for (uint32_t i = 0; i < 60; ++i) {
    auto [dst, dport] = tcp_dsts[i % std::size(tcp_dsts)];
    const bool fastpath_source = i % 3 == 0;  // a VIP:port leased for SNAT
    tuples.push_back({.src = fastpath_source ? kVip : kClient + i % 7,
                      .dst = dst,
                      .sport = static_cast<uint16_t>(fastpath_source ? 20000 + i : 1000 + i),
                      .dport = dport,
                      .proto = 6});
  }
  for (uint32_t i = 0; i < 24; ++i) {
    tuples.push_back({.src = kClient + i % 5, .dst = i % 4 == 3 ? kVip : kUdpVip,
                      .sport = static_cast<uint16_t>(i % 6 == 5 ? 6080 : 3000 + i),
                      .dport = static_cast<uint16_t>(i % 8 == 7 ? flow::kDefaultGuePort
                                                     : i % 4 == 3 ? 20001 : 53),
                      .proto = 17});
  }
  const uint8_t tcp_flags[] = {fixture::kAck, fixture::kAck, fixture::kAck | fixture::kPsh,
                               fixture::kSyn, fixture::kSyn | fixture::kAck,
                               fixture::kFin | fixture::kAck, fixture::kRst, 0};

  auto random_frame = [&]() -> std::vector<uint8_t> {
    if (chance(1)) {  // a next hop answers ARP, sometimes from a new MAC
      const bool host1 = chance(50);
      flow::MacAddr mac = host1 ? kHost1Mac : kHost2Mac;
      if (chance(50)) mac[5] = static_cast<uint8_t>(0x40 + pick(4));
      return arp_reply(host1 ? kHost1 : kHost2, mac);
    }
    const Tuple& t = tuples[pick(static_cast<uint32_t>(tuples.size()))];
    Eth eth{.dst = chance(97) ? kMuxMac : chance(50) ? kBroadcast : kHost1Mac, .src = kRouterMac};
    Ipv4 ip{.src = t.src, .dst = t.dst, .ttl = static_cast<uint8_t>(1 + pick(64)),
            .tos = static_cast<uint8_t>(chance(20) ? pick(256) : 0), .id = 7,
            .df = chance(50)};
    if (chance(3)) ip.mf = true;
    if (chance(3)) ip.frag_offset = static_cast<uint16_t>(1 + pick(100));
    if (chance(3)) ip.options = {1, 1, 1, 0};
    std::string payload(pick(3) == 0 ? 0 : pick(40), 'p');
    fixture::Packet p;
    if (t.proto == 6) {
      Tcp tcp{.sport = t.sport, .dport = t.dport, .flags = tcp_flags[pick(std::size(tcp_flags))]};
      if (chance(3)) tcp.data_offset = static_cast<uint8_t>(pick(16));
      p = eth / ip / tcp / Payload{payload};
    } else {
      Udp udp{.sport = t.sport, .dport = t.dport, .zero_checksum = chance(30)};
      if (chance(3)) udp.len = static_cast<uint16_t>(pick(64));
      p = eth / ip / udp / Payload{payload};
    }
    if (chance(3)) std::get<Ipv4>(p.layers[1]).total_len = static_cast<uint16_t>(pick(120));
    std::vector<uint8_t> bytes = p.Bytes();
    if (chance(5)) bytes.insert(bytes.end(), 1 + pick(30), 0xee);  // Ethernet padding
    if (chance(3)) {  // an 802.1Q tag
      const uint8_t tag[] = {0x81, 0x00, 0x00, 0x05};
      bytes.insert(bytes.begin() + 12, std::begin(tag), std::end(tag));
    }
    if (chance(4)) bytes[pick(std::min<uint32_t>(64, static_cast<uint32_t>(bytes.size())))] ^=
        static_cast<uint8_t>(1 + pick(255));
    if (chance(4)) bytes.resize(pick(static_cast<uint32_t>(bytes.size()) + 1));
    return bytes;
  };
  // An mbuf with `headroom` bytes in front of the frame (the default, or too few to encap).
  auto mbuf = [&](const std::vector<uint8_t>& bytes, uint16_t headroom) {
    rte_mbuf* m = rte_pktmbuf_alloc(pool_);
    if (m == nullptr) return m;
    m->data_off = headroom;
    char* dst = rte_pktmbuf_append(m, static_cast<uint16_t>(bytes.size()));
    if (dst == nullptr) {
      rte_pktmbuf_free(m);
      return static_cast<rte_mbuf*>(nullptr);
    }
    if (!bytes.empty()) memcpy(dst, bytes.data(), bytes.size());
    return m;
  };

  uint64_t transmitted = 0, established_sent = 0;
  for (int round = 0; round < 400; ++round) {
    const uint16_t n = static_cast<uint16_t>(1 + pick(70));  // across the 32-packet batches
    std::vector<std::vector<uint8_t>> frames;
    std::vector<uint16_t> headrooms;
    for (uint16_t i = 0; i < n; ++i) {
      frames.push_back(random_frame());
      headrooms.push_back(chance(3) ? static_cast<uint16_t>(pick(28)) : RTE_PKTMBUF_HEADROOM);
    }
    std::vector<rte_mbuf*> burst;
    for (uint16_t i = 0; i < n; ++i) {
      burst.push_back(mbuf(frames[i], headrooms[i]));
      ASSERT_NE(burst.back(), nullptr);
    }
    const uint64_t established_before = burst_mux->counters().cached_flow_packets.Get();
    std::vector<MuxDataPath::Outcome> outcomes(n);
    burst_mux->ProcessBurst(burst.data(), n, now_ns, outcomes.data());
    for (uint16_t i = 0; i < n; ++i) {
      rte_mbuf* m = mbuf(frames[i], headrooms[i]);
      ASSERT_NE(m, nullptr);
      const MuxDataPath::Outcome single = single_mux->Process(m, now_ns);
      EXPECT_EQ(outcomes[i], single) << "round " << round << " frame " << i;
      const auto* a = rte_pktmbuf_mtod(m, const uint8_t*);
      const auto* b = rte_pktmbuf_mtod(burst[i], const uint8_t*);
      EXPECT_EQ(std::vector<uint8_t>(a, a + rte_pktmbuf_data_len(m)),
                std::vector<uint8_t>(b, b + rte_pktmbuf_data_len(burst[i])))
          << "round " << round << " frame " << i;
      EXPECT_EQ(rte_pktmbuf_pkt_len(m), rte_pktmbuf_pkt_len(burst[i]));
      EXPECT_EQ(m->data_off, burst[i]->data_off);
      transmitted += single == MuxDataPath::Outcome::kTransmit;
      rte_pktmbuf_free(m);
      rte_pktmbuf_free(burst[i]);
    }
    established_sent += burst_mux->counters().cached_flow_packets.Get() - established_before;
    ASSERT_EQ(AllCounters(*burst_mux), AllCounters(*single_mux)) << "round " << round;
    ASSERT_EQ(burst_offers.offers, single_offers.offers) << "round " << round;
    for (MuxDataPath* mux : {burst_mux.get(), single_mux.get()}) {
      rte_mbuf* control[16];
      rte_pktmbuf_free_bulk(control, mux->TakeControlPackets(control, 16));
    }
    now_ns += chance(10) ? 3'000'000'000ull * (1 + pick(4)) : pick(200'000'000);
  }
  // The traffic exercised what it is meant to: established flows, new ones, drops, redirects.
  const MuxCounters& c = single_mux->counters();
  EXPECT_GT(established_sent, 1000u);
  EXPECT_GT(c.new_flows.Get(), 200u);
  EXPECT_GT(c.fastpath_redirects_sent.Get(), 0u);
  EXPECT_GT(c.snat_return_packets.Get(), 0u);
  EXPECT_GT(c.reopened_flows.Get(), 0u);
  EXPECT_GT(burst_mux->flow_table().evictions.Get(), 0u);
  EXPECT_GT(single_offers.offers.size(), 10u);
  for (DropReason r : {DropReason::kMalformed, DropReason::kTruncated, DropReason::kFragment,
                       DropReason::kNotIpv4, DropReason::kNoRule, DropReason::kNotForUs,
                       DropReason::kNoBackend, DropReason::kNoHeadroom}) {
    EXPECT_GT(c.drops[static_cast<size_t>(r)].Get(), 0u) << DropReasonName(r);
  }
  EXPECT_GT(transmitted, 2000u);
}

}  // namespace
}  // namespace sluice::mux
