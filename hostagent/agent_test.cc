#include "hostagent/agent.h"

#include <unistd.h>

#include <gtest/gtest.h>
#include <rte_mbuf.h>

#include "offload/packet/fastpath_redirect.h"
#include "offload/sw/fixture_builder.h"
#include "tests/support/lab_addresses.h"
#include "tests/support/ring_port.h"

namespace sluice::agent {
namespace {

using fixture::Arp;
using fixture::Eth;
using fixture::Gre;
using fixture::Ip;
using fixture::Ipv4;
using fixture::Mac;
using fixture::Payload;
using fixture::Tcp;
using fixture::Udp;

using namespace sluice::testing::lab;  // the lab addresses, tests/support/lab_addresses.h

// The base lab host: one VM serving VIP:80 on DIP:8080, no SNAT leases, no Fastpath key.
AgentConfig BaseConfig() {
  return AgentConfig{
      .name = "host-test",
      .address = {.addr = kHostPa, .length = 24},
      .gateway = kRouter,
      .vms = {{.name = "vm1", .mac = kVmMac, .dip = kDip, .pa = kVmPa,
               .gateway = Ip("10.1.0.254")}},
      .endpoints = {{.vip = kVip, .port = 80, .proto = 6, .dip = kDip, .dip_port = 8080}}};
}

class FakeWallClock : public WallClock {
 public:
  uint64_t UnixSeconds() const override { return now_s; }
  uint64_t now_s = 1'700'000'000;
};

class AgentDataPathTest : public ::testing::Test {
 protected:
  virtual AgentConfig MakeConfig() { return BaseConfig(); }

  void SetUp() override {
    static int n = 0;
    suffix_ = std::to_string(n++);
    pool_ = rte_pktmbuf_pool_create(("agent_test_" + suffix_).c_str(), 1023, 0, 0,
                                    RTE_MBUF_DEFAULT_BUF_SIZE, 0);
    ASSERT_NE(pool_, nullptr);
    config_ = MakeConfig();
    uplink_ = std::make_unique<testing::RingPort>("agent_up" + suffix_, pool_);
    ASSERT_TRUE(uplink_->ok());
    uplink_mac_ = port::PortMac(uplink_->port_id());
    ports_ = PortMap{.uplink_port = uplink_->port_id(), .uplink_mac = uplink_mac_};
    for (size_t v = 0; v < config_.vms.size(); ++v) {
      vms_.push_back(std::make_unique<testing::RingPort>(
          "agent_vm" + std::to_string(v) + "_" + suffix_, pool_));
      ASSERT_TRUE(vms_.back()->ok());
      ports_.vm_ports.push_back(vms_.back()->port_id());
      ports_.vm_port_macs.push_back(port::PortMac(vms_.back()->port_id()));
    }
    vm_port_mac_ = ports_.vm_port_macs[0];
    agent_ = std::make_unique<AgentDataPath>(config_, ports_, nullptr, &clock_);
  }
  void TearDown() override {
    agent_.reset();
    vms_.clear();
    uplink_.reset();
    rte_mempool_free(pool_);
  }

  testing::RingPort& vm(size_t v = 0) { return *vms_[v]; }

  void Receive(size_t port_index, const fixture::Packet& p) {
    rte_mbuf* m = testing::MbufFrom(pool_, p.Bytes());
    ASSERT_NE(m, nullptr);
    agent_->ProcessBurst(port_index, &m, 1, now_ns_);
    agent_->FlushAll();
  }
  void ReceiveBytes(size_t port_index, const std::vector<uint8_t>& bytes) {
    rte_mbuf* m = testing::MbufFrom(pool_, bytes);
    ASSERT_NE(m, nullptr);
    agent_->ProcessBurst(port_index, &m, 1, now_ns_);
    agent_->FlushAll();
  }

  // Resolves the router (the agent asks, the router answers) and installs the rules.
  void BecomeReady() {
    agent_->Housekeeping(pool_, now_ns_);
    agent_->FlushAll();
    auto sent = uplink_->Sent();
    ASSERT_EQ(sent.size(), 1u);  // ARP request for the gateway
    EXPECT_EQ(sent[0], (Eth{.dst = kBroadcast, .src = uplink_mac_} /
                        Arp{.op = 1, .sender_mac = uplink_mac_, .sender_ip = kHostPa,
                            .target_ip = kRouter})
                           .Bytes());
    Receive(0, Eth{.dst = uplink_mac_, .src = kRouterMac} /
                   Arp{.op = 2, .sender_mac = kRouterMac, .sender_ip = kRouter,
                       .target_mac = uplink_mac_, .target_ip = kHostPa});
    agent_->Housekeeping(pool_, now_ns_);
    ASSERT_TRUE(agent_->ready());
  }

  void Housekeeping() {
    agent_->Housekeeping(pool_, now_ns_);
    agent_->FlushAll();
  }

  uint64_t Drops(DropReason r) { return agent_->Drops(r); }
  uint64_t Drops(AgentDrop r) { return agent_->Drops(r); }

  std::string suffix_;
  rte_mempool* pool_ = nullptr;
  AgentConfig config_;
  PortMap ports_;
  std::unique_ptr<testing::RingPort> uplink_;
  std::vector<std::unique_ptr<testing::RingPort>> vms_;
  flow::MacAddr uplink_mac_{}, vm_port_mac_{};
  FakeWallClock clock_;
  std::unique_ptr<AgentDataPath> agent_;
  uint64_t now_ns_ = 1'000'000'000;
};

TEST_F(AgentDataPathTest, NotReadyUntilTheGatewayAnswers) {
  EXPECT_FALSE(agent_->ready());
  BecomeReady();
  EXPECT_EQ(agent_->installed_rules(), 3u);  // inbound IPIP, inbound GUE, DSR return
}

TEST_F(AgentDataPathTest, AnswersArpForVmPaOnUplinkAndGatewayOnVmPort) {
  Receive(0, Eth{.dst = kBroadcast, .src = kMuxMac} /
                 Arp{.op = 1, .sender_mac = kMuxMac, .sender_ip = kMuxPa, .target_ip = kVmPa});
  auto up = uplink_->Sent();
  ASSERT_EQ(up.size(), 1u);
  EXPECT_EQ(up[0], (Eth{.dst = kMuxMac, .src = uplink_mac_} /
                    Arp{.op = 2, .sender_mac = uplink_mac_, .sender_ip = kVmPa,
                        .target_mac = kMuxMac, .target_ip = kMuxPa})
                       .Bytes());
  Receive(1, Eth{.dst = kBroadcast, .src = kVmMac} /
                 Arp{.op = 1, .sender_mac = kVmMac, .sender_ip = kDip,
                     .target_ip = Ip("10.1.0.254")});
  auto to_vm = vm().Sent();
  ASSERT_EQ(to_vm.size(), 1u);
  EXPECT_EQ(to_vm[0], (Eth{.dst = kVmMac, .src = vm_port_mac_} /
                    Arp{.op = 2, .sender_mac = vm_port_mac_, .sender_ip = Ip("10.1.0.254"),
                        .target_mac = kVmMac, .target_ip = kDip})
                       .Bytes());
}

TEST_F(AgentDataPathTest, InboundIsDecappedNattedAndDeliveredReturnGoesStraightToRouter) {
  BecomeReady();
  const auto client_syn = Ipv4{.src = kClient, .dst = kVip, .ttl = 63};
  Receive(0, Eth{.dst = uplink_mac_, .src = kMuxMac} / Ipv4{.src = kMuxPa, .dst = kVmPa} /
                 client_syn / Tcp{.sport = 40000, .dport = 80, .flags = fixture::kSyn} /
                 Payload{"hi"});
  auto delivered = vm().Sent();
  ASSERT_EQ(delivered.size(), 1u);
  EXPECT_EQ(delivered[0], (Eth{.dst = kVmMac, .src = vm_port_mac_} /
                           Ipv4{.src = kClient, .dst = kDip, .ttl = 62} /
                           Tcp{.sport = 40000, .dport = 8080, .flags = fixture::kSyn} /
                           Payload{"hi"})
                              .Bytes());
  Receive(1, Eth{.dst = vm_port_mac_, .src = kVmMac} / Ipv4{.src = kDip, .dst = kClient} /
                 Tcp{.sport = 8080, .dport = 40000, .flags = fixture::kSyn | fixture::kAck} /
                 Payload{"ok"});
  auto returned = uplink_->Sent();
  ASSERT_EQ(returned.size(), 1u);
  EXPECT_EQ(returned[0], (Eth{.dst = kRouterMac, .src = uplink_mac_} /
                          Ipv4{.src = kVip, .dst = kClient, .ttl = 63} /
                          Tcp{.sport = 80, .dport = 40000,
                              .flags = fixture::kSyn | fixture::kAck} /
                          Payload{"ok"})
                             .Bytes());
  EXPECT_EQ(agent_->WalkPackets(RuleKind::kInboundIpip), 1u);
  EXPECT_EQ(agent_->WalkPackets(RuleKind::kDsrReturn), 1u);
}

TEST_F(AgentDataPathTest, BadTrafficIsDroppedWithANamedReason) {
  BecomeReady();
  // A VM sending from an address that is not its DIP (outer or tunnelled inner source).
  Receive(1, Eth{.dst = vm_port_mac_, .src = kVmMac} / Ipv4{.src = Ip("10.9.9.9"), .dst = kClient} /
                 Tcp{.sport = 8080, .dport = 40000});
  Receive(1, Eth{.dst = vm_port_mac_, .src = kVmMac} / Ipv4{.src = kDip, .dst = kClient} /
                 Ipv4{.src = Ip("10.9.9.9"), .dst = kClient} / Tcp{.sport = 8080, .dport = 1});
  EXPECT_EQ(Drops(AgentDrop::kSpoofedSource), 2u);
  // Tunnelled traffic for a PA this host does not own.
  Receive(0, Eth{.dst = uplink_mac_, .src = kMuxMac} / Ipv4{.src = kMuxPa, .dst = Ip("10.101.0.99")} /
                 Ipv4{.src = kClient, .dst = kVip} / Tcp{.sport = 1, .dport = 80});
  EXPECT_EQ(Drops(DropReason::kNoRule), 1u);
  // A frame for another MAC flooded by the bridge.
  Receive(0, Eth{.dst = kMuxMac, .src = kRouterMac} / Ipv4{.src = kClient, .dst = kVip} /
                 Tcp{.sport = 1, .dport = 80});
  EXPECT_EQ(Drops(DropReason::kNotForUs), 1u);
  // TTL would expire on delivery.
  Receive(0, Eth{.dst = uplink_mac_, .src = kMuxMac} / Ipv4{.src = kMuxPa, .dst = kVmPa} /
                 Ipv4{.src = kClient, .dst = kVip, .ttl = 1} / Tcp{.sport = 1, .dport = 80});
  EXPECT_EQ(Drops(DropReason::kTtlExceeded), 1u);
  // Truncated frames.
  Receive(0, (Eth{.dst = uplink_mac_, .src = kMuxMac} / Ipv4{.src = kMuxPa, .dst = kVmPa} /
              Ipv4{.src = kClient, .dst = kVip} / Tcp{.sport = 1, .dport = 80})
                 .TruncatedTo(40));
  Receive(0, (Eth{.dst = uplink_mac_, .src = kMuxMac} / Payload{"x"}).TruncatedTo(8));
  EXPECT_EQ(Drops(DropReason::kTruncated), 2u);
  // Without leases, a VM's own connection gets a RST, counted.
  Receive(1, Eth{.dst = vm_port_mac_, .src = kVmMac} / Ipv4{.src = kDip, .dst = kClient} /
                 Tcp{.sport = 33000, .dport = 443, .flags = fixture::kSyn});
  EXPECT_EQ(Drops(AgentDrop::kSnatNoLease), 1u);
  auto rst = vm().Sent();
  ASSERT_EQ(rst.size(), 1u);
  EXPECT_EQ(rst[0][47], fixture::kRst | fixture::kAck);
  EXPECT_TRUE(vm().Sent().empty());
  EXPECT_TRUE(uplink_->Sent().empty());
}

// ---------------------------------------------------------------------------------------
// Per-flow NAT: SNAT, shared DIP:ports, aging, Fastpath, restart.

const uint32_t kVip2 = Ip("10.200.0.20");
const uint32_t kVm2Dip = Ip("10.1.0.2");
const uint32_t kVm2Pa = Ip("10.101.0.32");
const flow::MacAddr kVm2Mac = Mac("02:00:0a:01:00:02");
const uint32_t kInternet = Ip("10.100.0.2");
const uint32_t kGatewayIp = Ip("10.1.0.254");
const uint32_t kPeerHostPa = Ip("10.101.0.22");
const uint32_t kPeerVmPa = Ip("10.101.0.33");
const flow::MacAddr kPeerMac = Mac("02:00:00:00:00:22");
const char* kKeyHex = "5c1ce0f5a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071829304152";
constexpr uint64_t kSecond = 1'000'000'000;

packet::FastpathKey Key(const char* hex = kKeyHex) {
  packet::FastpathKey key;
  EXPECT_TRUE(packet::ParseFastpathKey(hex, &key));
  return key;
}

// vm1 serves VIP:80 and VIP2:80 on one port (8080) and has 2 TCP + 1 UDP SNAT ports;
// vm2 serves VIP:80 alone and has no SNAT lease.
AgentConfig NatConfig() {
  AgentConfig c = BaseConfig();
  c.vms.push_back({.name = "vm2", .mac = kVm2Mac, .dip = kVm2Dip, .pa = kVm2Pa,
                   .gateway = kGatewayIp});
  c.endpoints.push_back({.vip = kVip2, .port = 80, .proto = 6, .dip = kDip, .dip_port = 8080});
  c.endpoints.push_back({.vip = kVip, .port = 80, .proto = 6, .dip = kVm2Dip, .dip_port = 8080});
  c.snat_leases = {
      {.dip = kDip, .vip = kVip, .proto = 6, .port_start = 20000, .port_count = 2},
      {.dip = kDip, .vip = kVip, .proto = 17, .port_start = 20000, .port_count = 1}};
  c.nat = {.flow_capacity = 64,
           .tcp_syn_timeout_s = 5,
           .tcp_established_timeout_s = 100,
           .tcp_closing_timeout_s = 20,
           .tcp_closed_timeout_s = 1,
           .udp_timeout_s = 10,
           .snat_port_reuse_delay_s = 3};
  c.fastpath_key = Key();
  return c;
}

class AgentNatTest : public AgentDataPathTest {
 protected:
  AgentConfig MakeConfig() override { return NatConfig(); }

  // A packet from VM `v` (0: vm1, 1: vm2) through its port.
  void FromVm(size_t v, const fixture::Packet& p) {
    fixture::Packet frame =
        Eth{.dst = ports_.vm_port_macs[v], .src = v == 0 ? kVmMac : kVm2Mac} / Ipv4{};
    frame.layers.pop_back();
    for (const auto& layer : p.layers) frame.layers.push_back(layer);
    Receive(1 + v, frame);
  }
  // A packet encapsulated to `outer_dst` by `outer_src` (a mux or a Fastpath peer).
  void FromUnderlay(uint32_t outer_src, uint32_t outer_dst, const fixture::Packet& inner,
                    const flow::MacAddr& src_mac = kMuxMac) {
    fixture::Packet frame = Eth{.dst = uplink_mac_, .src = src_mac} /
                            Ipv4{.src = outer_src, .dst = outer_dst};
    for (const auto& layer : inner.layers) frame.layers.push_back(layer);
    Receive(0, frame);
  }
  std::vector<std::vector<uint8_t>> Uplink() { return uplink_->Sent(); }

  void Redirect(const packet::FastpathRedirect& r, uint32_t to,
                const packet::FastpathKey& key = Key()) {
    std::vector<uint8_t> frame(packet::kFastpathRedirectFrameLen);
    packet::BuildFastpathRedirectFrame(frame.data(), kMuxMac, uplink_mac_, kMuxPa, to, r, key);
    ReceiveBytes(0, frame);
  }
  void PeerAnswersArp(uint32_t peer) {
    Receive(0, Eth{.dst = uplink_mac_, .src = kPeerMac} /
                   Arp{.op = 2, .sender_mac = kPeerMac, .sender_ip = peer,
                       .target_mac = uplink_mac_, .target_ip = kHostPa});
  }
  fixture::Packet ArpRequestFor(uint32_t ip) {
    return Eth{.dst = kBroadcast, .src = uplink_mac_} /
           Arp{.op = 1, .sender_mac = uplink_mac_, .sender_ip = kHostPa, .target_ip = ip};
  }

  // vm1 opens TCP 10.1.0.1:sport -> dst:dport; returns the SNAT port it got.
  uint16_t OpenSnat(uint16_t sport, uint32_t dst = kInternet, uint16_t dport = 9000) {
    FromVm(0, Ipv4{.src = kDip, .dst = dst} /
                  Tcp{.sport = sport, .dport = dport, .flags = fixture::kSyn, .seq = 100});
    auto out = Uplink();
    EXPECT_EQ(out.size(), 1u);
    if (out.size() != 1) return 0;
    return static_cast<uint16_t>(out[0][34] << 8 | out[0][35]);
  }
};

TEST_F(AgentNatTest, SnatOutboundLeavesWithALeasedPortAndTheReplyComesBack) {
  BecomeReady();
  EXPECT_EQ(agent_->installed_rules(), 7u);  // 3 × 2 inbound + vm2's DSR; vm1's port is shared
  FromVm(0, Ipv4{.src = kDip, .dst = kInternet} /
                Tcp{.sport = 40000, .dport = 9000, .flags = fixture::kSyn, .seq = 7} /
                Payload{"x"});
  auto out = Uplink();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], (Eth{.dst = kRouterMac, .src = uplink_mac_} /
                     Ipv4{.src = kVip, .dst = kInternet, .ttl = 63} /
                     Tcp{.sport = 20000, .dport = 9000, .flags = fixture::kSyn, .seq = 7} /
                     Payload{"x"})
                        .Bytes());
  EXPECT_EQ(fixture::VerifyChecksums(out[0]), "");
  // The reply, sent to VIP:20000, comes from a mux encapsulated to the host PA.
  FromUnderlay(kMuxPa, kHostPa,
               Ipv4{.src = kInternet, .dst = kVip, .ttl = 60} /
                   Tcp{.sport = 9000, .dport = 20000, .flags = fixture::kSyn | fixture::kAck});
  auto in = vm().Sent();
  ASSERT_EQ(in.size(), 1u);
  EXPECT_EQ(in[0], (Eth{.dst = kVmMac, .src = vm_port_mac_} /
                    Ipv4{.src = kInternet, .dst = kDip, .ttl = 59} /
                    Tcp{.sport = 9000, .dport = 40000, .flags = fixture::kSyn | fixture::kAck})
                       .Bytes());
  EXPECT_EQ(agent_->counters().snat_out_packets.Get(), 1u);
  EXPECT_EQ(agent_->counters().snat_in_packets.Get(), 1u);
  EXPECT_EQ(agent_->flows().size(), 1u);
  EXPECT_EQ(agent_->snat_ports().InUse(0, 6), 1u);
  // Same connection, same port; UDP gets its own port space.
  FromVm(0, Ipv4{.src = kDip, .dst = kInternet} / Tcp{.sport = 40000, .dport = 9000});
  FromVm(0, Ipv4{.src = kDip, .dst = kInternet} / Udp{.sport = 5353, .dport = 53});
  out = Uplink();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0][34] << 8 | out[0][35], 20000);
  EXPECT_EQ(out[1], (Eth{.dst = kRouterMac, .src = uplink_mac_} /
                     Ipv4{.src = kVip, .dst = kInternet, .ttl = 63} /
                     Udp{.sport = 20000, .dport = 53})
                        .Bytes());
}

TEST_F(AgentNatTest, ExhaustedTcpPortsAnswerTheVmWithARst) {
  BecomeReady();
  EXPECT_EQ(OpenSnat(40001), 20000);
  EXPECT_EQ(OpenSnat(40002), 20001);
  FromVm(0, Ipv4{.src = kDip, .dst = kInternet} /
                Tcp{.sport = 40003, .dport = 9000, .flags = fixture::kSyn, .seq = 1000});
  EXPECT_TRUE(Uplink().empty());
  auto rst = vm().Sent();
  ASSERT_EQ(rst.size(), 1u);
  EXPECT_EQ(rst[0], (Eth{.dst = kVmMac, .src = vm_port_mac_} /
                     Ipv4{.src = kInternet, .dst = kDip, .ttl = 64, .df = true} /
                     Tcp{.sport = 9000, .dport = 40003, .flags = fixture::kRst | fixture::kAck,
                         .seq = 0, .ack = 1001, .window = 0})
                        .Bytes());
  EXPECT_EQ(fixture::VerifyChecksums(rst[0]), "");
  EXPECT_EQ(Drops(AgentDrop::kSnatPortsExhausted), 1u);
  EXPECT_EQ(agent_->ports()[1]->snat_ports_exhausted.Get(), 1u);
  EXPECT_EQ(agent_->counters().rejects_sent.Get(), 1u);
  // vm2 has no lease at all: also a RST, counted apart.
  FromVm(1, Ipv4{.src = kVm2Dip, .dst = kInternet} /
                Tcp{.sport = 40000, .dport = 9000, .flags = fixture::kSyn});
  EXPECT_EQ(Drops(AgentDrop::kSnatNoLease), 1u);
  EXPECT_EQ(vm(1).Sent().size(), 1u);
}

TEST_F(AgentNatTest, ExhaustedUdpPortsAnswerTheVmWithIcmpUnreachable) {
  BecomeReady();
  FromVm(0, Ipv4{.src = kDip, .dst = kInternet} / Udp{.sport = 5000, .dport = 53});
  ASSERT_EQ(Uplink().size(), 1u);
  const fixture::Packet second =
      Eth{.dst = vm_port_mac_, .src = kVmMac} / Ipv4{.src = kDip, .dst = kInternet, .id = 9} /
      Udp{.sport = 5001, .dport = 53} / Payload{"query"};
  Receive(1, second);
  const std::vector<uint8_t> original = second.Bytes();
  auto icmp = vm().Sent();
  ASSERT_EQ(icmp.size(), 1u);
  EXPECT_EQ(icmp[0],
            (Eth{.dst = kVmMac, .src = vm_port_mac_} /
             Ipv4{.src = kGatewayIp, .dst = kDip, .ttl = 64, .df = true} /
             fixture::Icmp{.type = 3, .code = 13} /
             Payload{std::string(original.begin() + 14, original.begin() + 14 + 28)})
                .Bytes());
  EXPECT_EQ(Drops(AgentDrop::kSnatPortsExhausted), 1u);
}

TEST_F(AgentNatTest, APortIsReusedOnlyAfterItsFlowClosedAndTheDelayPassed) {
  BecomeReady();
  ASSERT_EQ(OpenSnat(40001), 20000);
  FromUnderlay(kMuxPa, kHostPa, Ipv4{.src = kInternet, .dst = kVip} /
                                    Tcp{.sport = 9000, .dport = 20000,
                                        .flags = fixture::kSyn | fixture::kAck});
  ASSERT_EQ(OpenSnat(40002), 20001);
  // Close 40001 <-> 20000: FIN both ways.
  FromVm(0, Ipv4{.src = kDip, .dst = kInternet} /
                Tcp{.sport = 40001, .dport = 9000, .flags = fixture::kFin | fixture::kAck});
  FromUnderlay(kMuxPa, kHostPa, Ipv4{.src = kInternet, .dst = kVip} /
                                    Tcp{.sport = 9000, .dport = 20000,
                                        .flags = fixture::kFin | fixture::kAck});
  // The last ACK still passes.
  FromVm(0, Ipv4{.src = kDip, .dst = kInternet} / Tcp{.sport = 40001, .dport = 9000});
  EXPECT_EQ(Uplink().size(), 2u);
  EXPECT_EQ(vm().Sent().size(), 2u);
  now_ns_ += 2 * kSecond;  // < the reuse delay (3 s)
  Housekeeping();
  FromVm(0, Ipv4{.src = kDip, .dst = kInternet} /
                Tcp{.sport = 40003, .dport = 9000, .flags = fixture::kSyn});
  EXPECT_EQ(Drops(AgentDrop::kSnatPortsExhausted), 1u);
  vm().Sent();
  now_ns_ += 2 * kSecond;
  Housekeeping();
  EXPECT_EQ(agent_->counters().flows_expired.Get(), 1u);
  EXPECT_EQ(OpenSnat(40003), 20000);
}

TEST_F(AgentNatTest, FlowsAgeOutByTheirTcpStateAndUdpIdleTimer) {
  BecomeReady();
  ASSERT_EQ(OpenSnat(40001), 20000);  // stays in SYN
  ASSERT_EQ(OpenSnat(40002), 20001);  // becomes established
  FromUnderlay(kMuxPa, kHostPa, Ipv4{.src = kInternet, .dst = kVip} /
                                    Tcp{.sport = 9000, .dport = 20001,
                                        .flags = fixture::kSyn | fixture::kAck});
  FromVm(0, Ipv4{.src = kDip, .dst = kInternet} / Udp{.sport = 5000, .dport = 53});
  Uplink();
  vm().Sent();
  EXPECT_EQ(agent_->flows().size(), 3u);
  // SYN timeout 5 s: the half-open flow closes, then its port waits the reuse delay (3 s).
  now_ns_ += 6 * kSecond;
  Housekeeping();
  EXPECT_EQ(agent_->flows().size(), 3u);
  EXPECT_EQ(agent_->snat_ports().InUse(0, 6), 2u);
  // UDP idle 10 s: closed at 11 s, freed 3 s later; the SYN flow is freed at 9 s.
  now_ns_ += 5 * kSecond;
  Housekeeping();
  EXPECT_EQ(agent_->snat_ports().InUse(0, 6), 1u);
  now_ns_ += 4 * kSecond;
  Housekeeping();
  EXPECT_EQ(agent_->flows().size(), 1u);  // only the established one
  EXPECT_EQ(agent_->snat_ports().InUse(0, 17), 0u);
  // Traffic keeps it alive; 100 s idle ends it.
  now_ns_ += 90 * kSecond;
  FromVm(0, Ipv4{.src = kDip, .dst = kInternet} / Tcp{.sport = 40002, .dport = 9000});
  ASSERT_EQ(Uplink().size(), 1u);
  now_ns_ += 90 * kSecond;
  Housekeeping();
  EXPECT_EQ(agent_->flows().size(), 1u);
  now_ns_ += 11 * kSecond;
  Housekeeping();
  now_ns_ += 4 * kSecond;
  Housekeeping();
  EXPECT_EQ(agent_->flows().size(), 0u);
  EXPECT_EQ(agent_->snat_ports().InUse(0, 6), 0u);
  EXPECT_EQ(agent_->counters().flows_expired.Get(), 3u);
}

TEST_F(AgentNatTest, RstClosesAndASynReopensTheSameTranslation) {
  BecomeReady();
  ASSERT_EQ(OpenSnat(40001), 20000);
  FromUnderlay(kMuxPa, kHostPa, Ipv4{.src = kInternet, .dst = kVip} /
                                    Tcp{.sport = 9000, .dport = 20000, .flags = fixture::kRst});
  ASSERT_EQ(vm().Sent().size(), 1u);
  EXPECT_EQ(OpenSnat(40001), 20000);
  now_ns_ += 4 * kSecond;  // not freed: it reopened
  Housekeeping();
  EXPECT_EQ(agent_->flows().size(), 1u);
}

TEST_F(AgentNatTest, RepliesOfASharedDipPortLeaveWithTheVipTheirConnectionCameTo) {
  BecomeReady();
  const uint32_t client_b = Ip("10.100.0.3");
  FromUnderlay(kMuxPa, kVmPa, Ipv4{.src = kClient, .dst = kVip} /
                                  Tcp{.sport = 50000, .dport = 80, .flags = fixture::kSyn});
  FromUnderlay(kMuxPa, kVmPa, Ipv4{.src = client_b, .dst = kVip2} /
                                  Tcp{.sport = 50000, .dport = 80, .flags = fixture::kSyn});
  auto delivered = vm().Sent();
  ASSERT_EQ(delivered.size(), 2u);  // both to DIP:8080 by the static inbound rules
  EXPECT_EQ(agent_->WalkPackets(RuleKind::kInboundIpip), 2u);
  EXPECT_EQ(agent_->flows().size(), 2u);
  FromVm(0, Ipv4{.src = kDip, .dst = client_b} /
                Tcp{.sport = 8080, .dport = 50000, .flags = fixture::kSyn | fixture::kAck});
  FromVm(0, Ipv4{.src = kDip, .dst = kClient} /
                Tcp{.sport = 8080, .dport = 50000, .flags = fixture::kSyn | fixture::kAck});
  auto out = Uplink();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], (Eth{.dst = kRouterMac, .src = uplink_mac_} /
                     Ipv4{.src = kVip2, .dst = client_b, .ttl = 63} /
                     Tcp{.sport = 80, .dport = 50000, .flags = fixture::kSyn | fixture::kAck})
                        .Bytes());
  EXPECT_EQ(out[1], (Eth{.dst = kRouterMac, .src = uplink_mac_} /
                     Ipv4{.src = kVip, .dst = kClient, .ttl = 63} /
                     Tcp{.sport = 80, .dport = 50000, .flags = fixture::kSyn | fixture::kAck})
                        .Bytes());
  EXPECT_EQ(agent_->counters().stateful_return_packets.Get(), 2u);
  // A reply from the shared port for a connection nobody knows: which VIP? Dropped.
  FromVm(0, Ipv4{.src = kDip, .dst = Ip("10.100.0.9")} / Tcp{.sport = 8080, .dport = 1});
  EXPECT_EQ(Drops(AgentDrop::kNatNoFlow), 1u);
  // vm2's port serves one VIP: stateless, no flow.
  FromUnderlay(kMuxPa, kVm2Pa, Ipv4{.src = kClient, .dst = kVip} /
                                   Tcp{.sport = 50001, .dport = 80, .flags = fixture::kSyn});
  FromVm(1, Ipv4{.src = kVm2Dip, .dst = kClient} / Tcp{.sport = 8080, .dport = 50001});
  EXPECT_EQ(Uplink().size(), 1u);
  EXPECT_EQ(agent_->WalkPackets(RuleKind::kDsrReturn), 1u);
  EXPECT_EQ(agent_->flows().size(), 2u);
  // A mid-connection packet (flow aged out while idle) restores the flow.
  FromUnderlay(kMuxPa, kVmPa, Ipv4{.src = Ip("10.100.0.4"), .dst = kVip2} /
                                  Tcp{.sport = 50000, .dport = 80});
  FromVm(0, Ipv4{.src = kDip, .dst = Ip("10.100.0.4")} / Tcp{.sport = 8080, .dport = 50000});
  out = Uplink();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0][26] << 24 | out[0][27] << 16 | out[0][28] << 8 | out[0][29], kVip2);
  // Closed inbound flows go after the closed timeout (1 s).
  FromUnderlay(kMuxPa, kVmPa, Ipv4{.src = kClient, .dst = kVip} /
                                  Tcp{.sport = 50000, .dport = 80, .flags = fixture::kRst});
  now_ns_ += 2 * kSecond;
  Housekeeping();
  EXPECT_EQ(agent_->flows().size(), 2u);
}

TEST_F(AgentNatTest, BadInputIsCounted) {
  BecomeReady();
  // A TCP segment that is not a SYN cannot open a SNAT flow.
  FromVm(0, Ipv4{.src = kDip, .dst = kInternet} / Tcp{.sport = 40000, .dport = 9000});
  EXPECT_EQ(Drops(AgentDrop::kNatNoFlow), 1u);
  // A reply to a leased port with no flow.
  FromUnderlay(kMuxPa, kHostPa, Ipv4{.src = kInternet, .dst = kVip} /
                                    Tcp{.sport = 9000, .dport = 20001});
  EXPECT_EQ(Drops(AgentDrop::kNatNoFlow), 2u);
  // A reply from a different remote than the flow's.
  ASSERT_EQ(OpenSnat(40000), 20000);
  FromUnderlay(kMuxPa, kHostPa, Ipv4{.src = Ip("10.100.0.66"), .dst = kVip} /
                                    Tcp{.sport = 9000, .dport = 20000});
  EXPECT_EQ(Drops(AgentDrop::kNatNoFlow), 3u);
  // To the host PA but no lease there: no rule.
  FromUnderlay(kMuxPa, kHostPa, Ipv4{.src = kInternet, .dst = kVip} /
                                    Tcp{.sport = 9000, .dport = 30000});
  EXPECT_EQ(Drops(DropReason::kNoRule), 1u);
  // Spoofed source.
  FromVm(0, Ipv4{.src = kVm2Dip, .dst = kInternet} /
                Tcp{.sport = 40000, .dport = 9000, .flags = fixture::kSyn});
  EXPECT_EQ(Drops(AgentDrop::kSpoofedSource), 1u);
  EXPECT_TRUE(vm().Sent().empty());
  EXPECT_TRUE(Uplink().empty());
}

TEST_F(AgentNatTest, FastpathSourceHostEncapsulatesToThePeerAfterTheRedirect) {
  BecomeReady();
  // vm1 -> VIP2:80, SNAT'd to VIP:20000; the first packets go by the router and a mux.
  ASSERT_EQ(OpenSnat(40000, kVip2, 80), 20000);
  FromUnderlay(kMuxPa, kHostPa, Ipv4{.src = kVip2, .dst = kVip} /
                                    Tcp{.sport = 80, .dport = 20000,
                                        .flags = fixture::kSyn | fixture::kAck});
  ASSERT_EQ(vm().Sent().size(), 1u);
  packet::FastpathRedirect r{.flow_src = kVip,
                             .flow_dst = kVip2,
                             .flow_src_port = 20000,
                             .flow_dst_port = 80,
                             .proto = 6,
                             .dip = Ip("10.1.0.3"),
                             .dst_pa = kPeerVmPa,
                             .src_host_pa = kHostPa,
                             .timestamp_s = clock_.now_s};
  Redirect(r, kHostPa);
  EXPECT_EQ(agent_->counters().fastpath_redirects_source.Get(), 1u);
  // The agent asks for the peer's MAC at once; until it answers, packets take the router.
  auto out = Uplink();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], ArpRequestFor(kPeerVmPa).Bytes());
  FromVm(0, Ipv4{.src = kDip, .dst = kVip2} / Tcp{.sport = 40000, .dport = 80});
  out = Uplink();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0][0], kRouterMac[0]);
  EXPECT_EQ(agent_->counters().fastpath_packets.Get(), 0u);
  PeerAnswersArp(kPeerVmPa);
  FromVm(0, Ipv4{.src = kDip, .dst = kVip2} / Tcp{.sport = 40000, .dport = 80} /
                Payload{"GET /"});
  out = Uplink();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], (Eth{.dst = kPeerMac, .src = uplink_mac_} /
                     Ipv4{.src = kHostPa, .dst = kPeerVmPa, .ttl = 64, .df = true} /
                     Ipv4{.src = kVip, .dst = kVip2, .ttl = 63} /
                     Tcp{.sport = 20000, .dport = 80} / Payload{"GET /"})
                        .Bytes());
  EXPECT_EQ(agent_->counters().fastpath_packets.Get(), 1u);
  // The peer's replies come encapsulated to the host PA: the SNAT reverse path as usual.
  FromUnderlay(kPeerVmPa, kHostPa,
               Ipv4{.src = kVip2, .dst = kVip} / Tcp{.sport = 80, .dport = 20000},
               kPeerMac);
  EXPECT_EQ(vm().Sent().size(), 1u);
  // A replay of the same redirect changes nothing.
  Redirect(r, kHostPa);
  EXPECT_EQ(agent_->counters().fastpath_redirects_source.Get(), 2u);
  EXPECT_TRUE(Uplink().empty());  // MAC known: no ARP
}

TEST_F(AgentNatTest, FastpathToAnOpenVswitchPeerIsGre) {
  BecomeReady();
  ASSERT_EQ(OpenSnat(40000, kVip2, 80), 20000);
  // The mux says the DIP's host decapsulates GRE (its backend is `encap: gre`).
  packet::FastpathRedirect r{.flow_src = kVip, .flow_dst = kVip2, .flow_src_port = 20000,
                             .flow_dst_port = 80, .proto = 6, .dip = Ip("10.1.0.3"),
                             .dst_pa = kPeerVmPa, .src_host_pa = kHostPa,
                             .timestamp_s = clock_.now_s, .dst_encap = flow::Tunnel::kGre};
  Redirect(r, kHostPa);
  ASSERT_EQ(agent_->counters().fastpath_redirects_source.Get(), 1u);
  Uplink();
  PeerAnswersArp(kPeerVmPa);
  FromVm(0, Ipv4{.src = kDip, .dst = kVip2} / Tcp{.sport = 40000, .dport = 80} /
                Payload{"GET /"});
  auto out = Uplink();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], (Eth{.dst = kPeerMac, .src = uplink_mac_} /
                     Ipv4{.src = kHostPa, .dst = kPeerVmPa, .ttl = 64, .df = true} / Gre{} /
                     Ipv4{.src = kVip, .dst = kVip2, .ttl = 63} /
                     Tcp{.sport = 20000, .dport = 80} / Payload{"GET /"})
                        .Bytes());
  // The OVS peer's replies come in GRE to the host PA: reverse SNAT as for IPIP.
  fixture::Packet reply = Eth{.dst = uplink_mac_, .src = kPeerMac} /
                          Ipv4{.src = kPeerVmPa, .dst = kHostPa} / Gre{} /
                          Ipv4{.src = kVip2, .dst = kVip} / Tcp{.sport = 80, .dport = 20000};
  Receive(0, reply);
  ASSERT_EQ(vm().Sent().size(), 1u);
  EXPECT_EQ(agent_->counters().snat_in_packets.Get(), 1u);
}

TEST_F(AgentNatTest, FastpathDestinationHostSendsRepliesToTheSourceHost) {
  BecomeReady();
  const uint32_t remote_vip_port_host = kPeerHostPa;
  // Host 10.101.0.22 SNATs its VM to VIP:20130 and connects to VIP2:80, served by vm1 here
  // (a shared port), and to VIP:80 served by vm2 (not shared, so stateless until now).
  FromUnderlay(kMuxPa, kVmPa, Ipv4{.src = kVip, .dst = kVip2} /
                                  Tcp{.sport = 20130, .dport = 80, .flags = fixture::kSyn});
  FromUnderlay(kMuxPa, kVm2Pa, Ipv4{.src = kVip, .dst = kVip} /
                                   Tcp{.sport = 20131, .dport = 80, .flags = fixture::kSyn});
  ASSERT_EQ(vm(0).Sent().size(), 1u);
  ASSERT_EQ(vm(1).Sent().size(), 1u);
  EXPECT_EQ(agent_->flows().size(), 1u);
  packet::FastpathRedirect r{.flow_src = kVip, .flow_dst = kVip2, .flow_src_port = 20130,
                             .flow_dst_port = 80, .proto = 6, .dip = kDip, .dst_pa = kVmPa,
                             .src_host_pa = remote_vip_port_host,
                             .timestamp_s = clock_.now_s};
  Redirect(r, kVmPa);
  packet::FastpathRedirect r2{.flow_src = kVip, .flow_dst = kVip, .flow_src_port = 20131,
                              .flow_dst_port = 80, .proto = 6, .dip = kVm2Dip,
                              .dst_pa = kVm2Pa, .src_host_pa = remote_vip_port_host,
                              .timestamp_s = clock_.now_s};
  Redirect(r2, kVm2Pa);
  EXPECT_EQ(agent_->counters().fastpath_redirects_destination.Get(), 2u);
  EXPECT_EQ(agent_->flows().size(), 2u);
  auto out = Uplink();
  ASSERT_EQ(out.size(), 1u);  // one ARP request; the second waits for housekeeping
  EXPECT_EQ(out[0], ArpRequestFor(kPeerHostPa).Bytes());
  PeerAnswersArp(kPeerHostPa);
  FromVm(0, Ipv4{.src = kDip, .dst = kVip} /
                Tcp{.sport = 8080, .dport = 20130, .flags = fixture::kSyn | fixture::kAck});
  FromVm(1, Ipv4{.src = kVm2Dip, .dst = kVip} /
                Tcp{.sport = 8080, .dport = 20131, .flags = fixture::kSyn | fixture::kAck});
  out = Uplink();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], (Eth{.dst = kPeerMac, .src = uplink_mac_} /
                     Ipv4{.src = kVmPa, .dst = kPeerHostPa, .ttl = 64, .df = true} /
                     Ipv4{.src = kVip2, .dst = kVip, .ttl = 63} /
                     Tcp{.sport = 80, .dport = 20130, .flags = fixture::kSyn | fixture::kAck})
                        .Bytes());
  EXPECT_EQ(out[1], (Eth{.dst = kPeerMac, .src = uplink_mac_} /
                     Ipv4{.src = kVm2Pa, .dst = kPeerHostPa, .ttl = 64, .df = true} /
                     Ipv4{.src = kVip, .dst = kVip, .ttl = 63} /
                     Tcp{.sport = 80, .dport = 20131, .flags = fixture::kSyn | fixture::kAck})
                        .Bytes());
  EXPECT_EQ(agent_->counters().fastpath_packets.Get(), 2u);
  // Packets from the peer host arrive encapsulated to the VM PA: the static inbound rule.
  FromUnderlay(kPeerHostPa, kVmPa, Ipv4{.src = kVip, .dst = kVip2} /
                                       Tcp{.sport = 20130, .dport = 80}, kPeerMac);
  EXPECT_EQ(vm(0).Sent().size(), 1u);
}

TEST_F(AgentNatTest, RedirectsThatAreForgedStaleOrNotOursAreCountedAndIgnored) {
  BecomeReady();
  ASSERT_EQ(OpenSnat(40000, kVip2, 80), 20000);
  packet::FastpathRedirect r{.flow_src = kVip, .flow_dst = kVip2, .flow_src_port = 20000,
                             .flow_dst_port = 80, .proto = 6, .dip = Ip("10.1.0.3"),
                             .dst_pa = kPeerVmPa, .src_host_pa = kHostPa,
                             .timestamp_s = clock_.now_s};
  // Signed with another key (what a VM could do).
  Redirect(r, kHostPa, Key("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"));
  EXPECT_EQ(Drops(AgentDrop::kFastpathRedirectBadAuth), 1u);
  // Right key, but 61 s old, or from the future.
  packet::FastpathRedirect old = r;
  old.timestamp_s = clock_.now_s - 61;
  Redirect(old, kHostPa);
  old.timestamp_s = clock_.now_s + 61;
  Redirect(old, kHostPa);
  EXPECT_EQ(Drops(AgentDrop::kFastpathRedirectStale), 2u);
  // Within 60 s but older than the flow (created now): meant for an earlier flow.
  old.timestamp_s = clock_.now_s - 30;
  Redirect(old, kHostPa);
  EXPECT_EQ(Drops(AgentDrop::kFastpathRedirectStale), 3u);
  // A flow this host does not have.
  packet::FastpathRedirect other = r;
  other.flow_src_port = 20001;
  Redirect(other, kHostPa);
  // Destination side: DIP is not the VM behind dst_pa.
  packet::FastpathRedirect wrong_dip = r;
  wrong_dip.src_host_pa = kPeerHostPa;
  wrong_dip.dst_pa = kVmPa;
  wrong_dip.dip = kVm2Dip;
  Redirect(wrong_dip, kVmPa);
  EXPECT_EQ(Drops(AgentDrop::kFastpathRedirectNotOurs), 2u);
  // PAs outside the underlay; a payload that is not a redirect.
  packet::FastpathRedirect outside = r;
  outside.dst_pa = Ip("192.0.2.1");
  Redirect(outside, kHostPa);
  std::vector<uint8_t> frame(packet::kFastpathRedirectFrameLen);
  packet::BuildFastpathRedirectFrame(frame.data(), kMuxMac, uplink_mac_, kMuxPa, kHostPa, r,
                                     Key());
  frame[14 + 20 + 8] = 'X';  // magic
  ReceiveBytes(0, frame);
  EXPECT_EQ(Drops(AgentDrop::kFastpathRedirectMalformed), 2u);
  EXPECT_EQ(agent_->counters().fastpath_redirects_source.Get(), 0u);
  EXPECT_EQ(agent_->counters().fastpath_redirects_received.Get(), 8u);
  EXPECT_TRUE(Uplink().empty());
}

TEST_F(AgentDataPathTest, WithoutAFastpathKeyEveryRedirectIsUnauthenticated) {
  BecomeReady();
  std::vector<uint8_t> frame(packet::kFastpathRedirectFrameLen);
  packet::BuildFastpathRedirectFrame(frame.data(), kMuxMac, uplink_mac_, kMuxPa, kHostPa,
                                     packet::FastpathRedirect{}, packet::FastpathKey{});
  ReceiveBytes(0, frame);
  EXPECT_EQ(Drops(AgentDrop::kFastpathRedirectBadAuth), 1u);
}

// The agent restarts (a new AgentDataPath maps the same state file): established flows keep
// their translation, their SNAT ports stay taken, flows that no longer fit the config go.
class AgentRestartTest : public AgentNatTest {
 protected:
  AgentConfig MakeConfig() override {
    AgentConfig c = NatConfig();
    c.nat.flow_state_file = "/tmp/sluice-agent-test-" + std::to_string(getpid()) + ".flows";
    unlink(c.nat.flow_state_file.c_str());
    return c;
  }
  void TearDown() override {
    unlink(config_.nat.flow_state_file.c_str());
    AgentNatTest::TearDown();
  }
  void Restart(const AgentConfig& config) {
    agent_.reset();  // as if killed: nothing is written at exit
    std::string note;
    auto table = NatFlowTable::OpenFile(config.nat.flow_state_file, config.nat.flow_capacity,
                                        &note);
    ASSERT_TRUE(table.ok()) << table.status();
    agent_ = std::make_unique<AgentDataPath>(config, ports_, std::move(*table), &clock_);
    uplink_->Sent();
    BecomeReady();
  }
};

TEST_F(AgentRestartTest, EstablishedFlowsSurviveARestart) {
  Restart(config_);
  ASSERT_EQ(OpenSnat(40000), 20000);
  FromUnderlay(kMuxPa, kHostPa, Ipv4{.src = kInternet, .dst = kVip} /
                                    Tcp{.sport = 9000, .dport = 20000,
                                        .flags = fixture::kSyn | fixture::kAck});
  FromUnderlay(kMuxPa, kVmPa, Ipv4{.src = kClient, .dst = kVip2} /
                                  Tcp{.sport = 50000, .dport = 80, .flags = fixture::kSyn});
  vm().Sent();
  EXPECT_EQ(agent_->flows().size(), 2u);

  Restart(config_);
  EXPECT_EQ(agent_->flows_restored(), 2u);
  EXPECT_EQ(agent_->flows_kept(), 2u);
  EXPECT_EQ(agent_->snat_ports().InUse(0, 6), 1u);
  FromUnderlay(kMuxPa, kHostPa, Ipv4{.src = kInternet, .dst = kVip} /
                                    Tcp{.sport = 9000, .dport = 20000} / Payload{"data"});
  auto in = vm().Sent();
  ASSERT_EQ(in.size(), 1u);
  EXPECT_EQ(in[0], (Eth{.dst = kVmMac, .src = vm_port_mac_} /
                    Ipv4{.src = kInternet, .dst = kDip, .ttl = 63} /
                    Tcp{.sport = 9000, .dport = 40000} / Payload{"data"})
                       .Bytes());
  FromVm(0, Ipv4{.src = kDip, .dst = kInternet} / Tcp{.sport = 40000, .dport = 9000});
  FromVm(0, Ipv4{.src = kDip, .dst = kClient} / Tcp{.sport = 8080, .dport = 50000});
  auto out = Uplink();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0][34] << 8 | out[0][35], 20000);
  EXPECT_EQ(out[1][26] << 24 | out[1][27] << 16 | out[1][28] << 8 | out[1][29], kVip2);
  // The restored flow's port is not handed out again.
  EXPECT_EQ(OpenSnat(40001), 20001);

  // Restart with vm1's TCP lease gone: its SNAT flows go, the inbound flow stays.
  AgentConfig no_lease = config_;
  no_lease.snat_leases.erase(no_lease.snat_leases.begin());
  Restart(no_lease);
  EXPECT_EQ(agent_->flows_restored(), 3u);
  EXPECT_EQ(agent_->flows_kept(), 1u);
}

// A Fastpath connection to an Open vSwitch peer (GRE) crosses a restart: the flow comes back
// from the state file, the peer's encapsulation (not in it) from the peer's next packet, and
// from then on the VM's packets go host to host again, in GRE, not through the router.
TEST_F(AgentRestartTest, FastpathPeerEncapsulationIsLearntAgainFromThePeersPackets) {
  Restart(config_);
  ASSERT_EQ(OpenSnat(40000, kVip2, 80), 20000);
  packet::FastpathRedirect r{.flow_src = kVip, .flow_dst = kVip2, .flow_src_port = 20000,
                             .flow_dst_port = 80, .proto = 6, .dip = Ip("10.1.0.3"),
                             .dst_pa = kPeerVmPa, .src_host_pa = kHostPa,
                             .timestamp_s = clock_.now_s, .dst_encap = flow::Tunnel::kGre};
  Redirect(r, kHostPa);
  ASSERT_EQ(agent_->counters().fastpath_redirects_source.Get(), 1u);

  Restart(config_);
  ASSERT_EQ(agent_->flows_kept(), 1u);
  PeerAnswersArp(kPeerVmPa);
  const fixture::Packet from_vm = Ipv4{.src = kDip, .dst = kVip2} /
                                  Tcp{.sport = 40000, .dport = 80} / Payload{"GET /"};
  // Before the peer has sent anything: its encapsulation is unknown, so via the router.
  FromVm(0, from_vm);
  auto out = Uplink();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0][0], kRouterMac[0]);
  EXPECT_EQ(agent_->counters().fastpath_packets.Get(), 0u);
  // The peer's GRE packet of the connection: delivered, and its encapsulation learnt.
  Receive(0, Eth{.dst = uplink_mac_, .src = kPeerMac} / Ipv4{.src = kPeerVmPa, .dst = kHostPa} /
                 Gre{} / Ipv4{.src = kVip2, .dst = kVip} / Tcp{.sport = 80, .dport = 20000});
  ASSERT_EQ(vm().Sent().size(), 1u);
  EXPECT_EQ(agent_->counters().fastpath_peers_relearned.Get(), 1u);
  FromVm(0, from_vm);
  out = Uplink();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], (Eth{.dst = kPeerMac, .src = uplink_mac_} /
                     Ipv4{.src = kHostPa, .dst = kPeerVmPa, .ttl = 64, .df = true} / Gre{} /
                     Ipv4{.src = kVip, .dst = kVip2, .ttl = 63} /
                     Tcp{.sport = 20000, .dport = 80} / Payload{"GET /"})
                        .Bytes());
  EXPECT_EQ(agent_->counters().fastpath_packets.Get(), 1u);
  // A packet from anyone else (a mux) teaches nothing.
  FromUnderlay(kMuxPa, kHostPa, Ipv4{.src = kVip2, .dst = kVip} / Tcp{.sport = 80, .dport = 20000});
  EXPECT_EQ(agent_->counters().fastpath_peers_relearned.Get(), 1u);
}

}  // namespace
}  // namespace sluice::agent
