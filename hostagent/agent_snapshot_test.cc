// Runtime config changes of the agent's data path: PublishConfig builds a snapshot off the
// data path, AdoptConfig switches to it between bursts, ReclaimRetired frees what the data
// path has moved past.
#include <gtest/gtest.h>
#include <rte_mbuf.h>

#include "hostagent/agent.h"
#include "offload/sw/fixture_builder.h"
#include "tests/support/lab_addresses.h"
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

using namespace sluice::testing::lab;  // the lab addresses, tests/support/lab_addresses.h

AgentConfig Config() {
  return AgentConfig{
      .name = "host-snapshot-test",
      .address = {.addr = kHostPa, .length = 24},
      .gateway = kRouter,
      .vms =
          {{.name = "vm1", .mac = kVmMac, .dip = kDip, .pa = kVmPa, .gateway = Ip("10.1.0.254")}},
      .endpoints = {{.vip = kVip, .port = 80, .proto = 6, .dip = kDip, .dip_port = 8080}},
      .snat_leases = {
          {.dip = kDip, .vip = kVip, .proto = 6, .port_start = 20000, .port_count = 2}}};
}

class AgentSnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int n = 0;
    const std::string suffix = std::to_string(n++);
    pool_ = rte_pktmbuf_pool_create(("agent_snap_" + suffix).c_str(), 1023, 0, 0,
                                    RTE_MBUF_DEFAULT_BUF_SIZE, 0);
    ASSERT_NE(pool_, nullptr);
    uplink_ = std::make_unique<testing::RingPort>("snap_up" + suffix, pool_);
    vm_ = std::make_unique<testing::RingPort>("snap_vm" + suffix, pool_);
    ASSERT_TRUE(uplink_->ok() && vm_->ok());
    uplink_mac_ = port::PortMac(uplink_->port_id());
    vm_port_mac_ = port::PortMac(vm_->port_id());
    ports_ = PortMap{.uplink_port = uplink_->port_id(),
                     .uplink_mac = uplink_mac_,
                     .vm_ports = {vm_->port_id()},
                     .vm_port_macs = {vm_port_mac_}};
    agent_ = std::make_unique<AgentDataPath>(Config(), ports_);
    // Resolve the router so the rules go in.
    agent_->Housekeeping(pool_, now_ns_);
    agent_->FlushAll();
    uplink_->Sent();
    Receive(0, Eth{.dst = uplink_mac_, .src = kRouterMac} / Arp{.op = 2,
                                                                .sender_mac = kRouterMac,
                                                                .sender_ip = kRouter,
                                                                .target_mac = uplink_mac_,
                                                                .target_ip = kHostPa});
    agent_->Housekeeping(pool_, now_ns_);
    ASSERT_TRUE(agent_->ready());
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
  // A client's SYN to VIP:port as a mux sends it; returns what reached the VM.
  std::vector<std::vector<uint8_t>> InboundSyn(uint16_t vip_port, uint16_t client_port) {
    Receive(0, Eth{.dst = uplink_mac_, .src = kMuxMac} / Ipv4{.src = kMuxPa, .dst = kVmPa} /
                   Ipv4{.src = kClient, .dst = kVip, .ttl = 63} /
                   Tcp{.sport = client_port, .dport = vip_port, .flags = fixture::kSyn});
    return vm_->Sent();
  }

  rte_mempool* pool_ = nullptr;
  std::unique_ptr<testing::RingPort> uplink_, vm_;
  flow::MacAddr uplink_mac_{}, vm_port_mac_{};
  PortMap ports_;
  std::unique_ptr<AgentDataPath> agent_;
  uint64_t now_ns_ = 1'000'000'000;
};

TEST_F(AgentSnapshotTest, NewEndpointIsServedOnceTheDataPathAdoptsIt) {
  EXPECT_EQ(agent_->published_generation(), 1u);
  ASSERT_TRUE(InboundSyn(81, 40000).empty());  // not an endpoint yet

  AgentConfig next = Config();
  next.endpoints.push_back({.vip = kVip, .port = 81, .proto = 6, .dip = kDip, .dip_port = 8081});
  std::string error;
  ASSERT_TRUE(agent_->PublishConfig(next, &error)) << error;
  EXPECT_EQ(agent_->published_generation(), 2u);
  EXPECT_EQ(agent_->adopted_generation(), 1u);
  EXPECT_TRUE(InboundSyn(81, 40001).empty());  // published, not adopted: old tables

  agent_->AdoptConfig();
  EXPECT_EQ(agent_->adopted_generation(), 2u);
  auto delivered = InboundSyn(81, 40002);
  ASSERT_EQ(delivered.size(), 1u);
  EXPECT_EQ(delivered[0], (Eth{.dst = kVmMac, .src = vm_port_mac_} /
                           Ipv4{.src = kClient, .dst = kDip, .ttl = 62} /
                           Tcp{.sport = 40002, .dport = 8081, .flags = fixture::kSyn})
                              .Bytes());
  EXPECT_EQ(InboundSyn(80, 40003).size(), 1u);  // the old endpoint still served
  EXPECT_EQ(agent_->installed_rules(), 6u);     // 3 walks x 2 endpoints
  EXPECT_EQ(agent_->ReclaimRetired(), 0u);      // generation 1 freed

  // Removing it again: traffic to it stops at the next adoption.
  ASSERT_TRUE(agent_->PublishConfig(Config(), &error)) << error;
  agent_->AdoptConfig();
  EXPECT_TRUE(InboundSyn(81, 40004).empty());
  EXPECT_EQ(InboundSyn(80, 40005).size(), 1u);
}

TEST_F(AgentSnapshotTest, OnlyTheNewestOfSeveralPublishedConfigsIsAdopted) {
  std::string error;
  AgentConfig a = Config();
  a.endpoints.push_back({.vip = kVip, .port = 81, .proto = 6, .dip = kDip, .dip_port = 8081});
  AgentConfig b = Config();
  b.endpoints.push_back({.vip = kVip, .port = 82, .proto = 6, .dip = kDip, .dip_port = 8082});
  ASSERT_TRUE(agent_->PublishConfig(a, &error));
  ASSERT_TRUE(agent_->PublishConfig(b, &error));
  EXPECT_EQ(agent_->ReclaimRetired(), 2u);  // nothing adopted yet: both older ones wait
  agent_->AdoptConfig();
  EXPECT_EQ(agent_->adopted_generation(), 3u);
  EXPECT_TRUE(InboundSyn(81, 40000).empty());
  EXPECT_EQ(InboundSyn(82, 40001).size(), 1u);
  EXPECT_EQ(agent_->ReclaimRetired(), 0u);
}

TEST_F(AgentSnapshotTest, RestartOnlyFieldsAndUnknownDipsAreRefusedAndNothingChanges) {
  std::string error;
  AgentConfig mac = Config();
  mac.vms[0].mac = Mac("02:00:0a:01:00:99");
  EXPECT_FALSE(agent_->PublishConfig(mac, &error));
  EXPECT_EQ(error, "vms cannot change while running (restart the agent)");
  AgentConfig gateway = Config();
  gateway.gateway = Ip("10.101.0.2");
  EXPECT_FALSE(agent_->PublishConfig(gateway, &error));
  EXPECT_EQ(error, "agent.gateway cannot change while running (restart the agent)");
  AgentConfig nat = Config();
  nat.nat.udp_timeout_s = 1;
  EXPECT_FALSE(agent_->PublishConfig(nat, &error));
  EXPECT_EQ(error, "nat cannot change while running (restart the agent)");
  AgentConfig unknown = Config();
  unknown.endpoints[0].dip = Ip("10.1.0.9");
  EXPECT_FALSE(agent_->PublishConfig(unknown, &error));
  EXPECT_EQ(error, "endpoints[0].dip: 10.1.0.9 is not the DIP of any VM on this host");
  AgentConfig lease = Config();
  lease.snat_leases[0].dip = Ip("10.1.0.9");
  EXPECT_FALSE(agent_->PublishConfig(lease, &error));
  EXPECT_EQ(error, "snat_leases[0].dip: 10.1.0.9 is not the DIP of any VM on this host");
  EXPECT_EQ(agent_->published_generation(), 1u);
  agent_->AdoptConfig();
  EXPECT_EQ(InboundSyn(80, 40000).size(), 1u);
}

TEST_F(AgentSnapshotTest, LeaseChangeKeepsThePortsOfLiveFlows) {
  // vm1 opens a connection to the internet: SNAT takes one of its 2 leased ports.
  Receive(1, Eth{.dst = vm_port_mac_, .src = kVmMac} / Ipv4{.src = kDip, .dst = kClient} /
                 Tcp{.sport = 33000, .dport = 443, .flags = fixture::kSyn});
  auto out = uplink_->Sent();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(agent_->snat_ports().InUse(0, 6), 1u);

  // The lease grows to 4 ports: the live flow keeps its port, 3 are free.
  AgentConfig next = Config();
  next.snat_leases[0].port_count = 4;
  std::string error;
  ASSERT_TRUE(agent_->PublishConfig(next, &error)) << error;
  agent_->AdoptConfig();
  EXPECT_EQ(agent_->snat_ports().Leased(0, 6), 4u);
  EXPECT_EQ(agent_->snat_ports().InUse(0, 6), 1u);
  // The connection still translates with the same VIP port.
  Receive(1, Eth{.dst = vm_port_mac_, .src = kVmMac} / Ipv4{.src = kDip, .dst = kClient} /
                 Tcp{.sport = 33000, .dport = 443, .flags = fixture::kAck} / Payload{"x"});
  auto again = uplink_->Sent();
  ASSERT_EQ(again.size(), 1u);
  // Same source port bytes (offset 34: Ethernet 14 + IPv4 20) as the first packet.
  EXPECT_EQ(again[0][34], out[0][34]);
  EXPECT_EQ(again[0][35], out[0][35]);
  // Three more connections fit now; a fifth is refused for want of a port.
  for (uint16_t p = 33001; p <= 33004; ++p) {
    Receive(1, Eth{.dst = vm_port_mac_, .src = kVmMac} / Ipv4{.src = kDip, .dst = kClient} /
                   Tcp{.sport = p, .dport = 443, .flags = fixture::kSyn});
  }
  EXPECT_EQ(agent_->snat_ports().InUse(0, 6), 4u);
  EXPECT_EQ(agent_->Drops(AgentDrop::kSnatPortsExhausted), 1u);
}

}  // namespace
}  // namespace sluice::agent
