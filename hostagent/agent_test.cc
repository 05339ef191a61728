#include "hostagent/agent.h"

#include <gtest/gtest.h>
#include <rte_mbuf.h>

#include "offload/sw/fixture_builder.h"
#include "tests/support/ring_port.h"

namespace sluice::agent {
namespace {

using fixture::Arp;
using fixture::Eth;
using fixture::Ip;
using fixture::Ipv4;
using fixture::Mac;
using fixture::Payload;
using fixture::Tcp;

const flow::MacAddr kRouterMac = Mac("02:00:00:00:00:01");
const flow::MacAddr kMuxMac = Mac("02:00:00:00:00:11");
const flow::MacAddr kVmMac = Mac("02:00:0a:01:00:01");
const flow::MacAddr kBroadcast = Mac("ff:ff:ff:ff:ff:ff");
const uint32_t kRouter = Ip("10.101.0.1");
const uint32_t kHostPa = Ip("10.101.0.21");
const uint32_t kVmPa = Ip("10.101.0.31");
const uint32_t kMuxPa = Ip("10.101.0.11");
const uint32_t kVip = Ip("10.200.0.10");
const uint32_t kDip = Ip("10.1.0.1");
const uint32_t kClient = Ip("10.100.0.2");

class AgentDataPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int n = 0;
    std::string suffix = std::to_string(n++);
    pool_ = rte_pktmbuf_pool_create(("agent_test_" + suffix).c_str(), 1023, 0, 0,
                                    RTE_MBUF_DEFAULT_BUF_SIZE, 0);
    ASSERT_NE(pool_, nullptr);
    uplink_ = std::make_unique<testing::RingPort>("agent_up" + suffix, pool_);
    vm_ = std::make_unique<testing::RingPort>("agent_vm" + suffix, pool_);
    ASSERT_TRUE(uplink_->ok() && vm_->ok());
    AgentConfig config{
        .name = "host-test",
        .address = {.addr = kHostPa, .length = 24},
        .gateway = kRouter,
        .vms = {{.name = "vm1", .mac = kVmMac, .dip = kDip, .pa = kVmPa,
                 .gateway = Ip("10.1.0.254")}},
        .endpoints = {{.vip = kVip, .port = 80, .proto = 6, .dip = kDip, .dip_port = 8080}}};
    uplink_mac_ = port::PortMac(uplink_->port_id());
    vm_port_mac_ = port::PortMac(vm_->port_id());
    PortMap ports{.uplink_port = uplink_->port_id(),
                  .uplink_mac = uplink_mac_,
                  .vm_ports = {vm_->port_id()},
                  .vm_port_macs = {vm_port_mac_}};
    agent_ = std::make_unique<AgentDataPath>(config, ports);
  }
  void TearDown() override {
    agent_.reset();
    vm_.reset();
    uplink_.reset();
    rte_mempool_free(pool_);
  }

  void Receive(size_t port_index, const fixture::Packet& p) {
    rte_mbuf* m = testing::MbufFrom(pool_, p.Bytes());
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

  uint64_t Drops(DropReason r) { return agent_->Drops(r); }

  rte_mempool* pool_ = nullptr;
  std::unique_ptr<testing::RingPort> uplink_, vm_;
  flow::MacAddr uplink_mac_{}, vm_port_mac_{};
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
  auto vm = vm_->Sent();
  ASSERT_EQ(vm.size(), 1u);
  EXPECT_EQ(vm[0], (Eth{.dst = kVmMac, .src = vm_port_mac_} /
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
  auto delivered = vm_->Sent();
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
  // A VM sending from an address that is not its DIP.
  Receive(1, Eth{.dst = vm_port_mac_, .src = kVmMac} / Ipv4{.src = Ip("10.9.9.9"), .dst = kClient} /
                 Tcp{.sport = 8080, .dport = 40000});
  EXPECT_EQ(Drops(DropReason::kNoRule), 1u);
  // Tunnelled traffic for a PA this host does not own.
  Receive(0, Eth{.dst = uplink_mac_, .src = kMuxMac} / Ipv4{.src = kMuxPa, .dst = Ip("10.101.0.99")} /
                 Ipv4{.src = kClient, .dst = kVip} / Tcp{.sport = 1, .dport = 80});
  EXPECT_EQ(Drops(DropReason::kNoRule), 2u);
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
  EXPECT_TRUE(vm_->Sent().empty());
  EXPECT_TRUE(uplink_->Sent().empty());
}

}  // namespace
}  // namespace sluice::agent
