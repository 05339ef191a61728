// The agent's per-flow NIC offload end to end inside one process: the data path (on net_ring
// ports) offers its NAT flows through the rings, AgentNicRules places them in a fake NIC,
// and the answers (placement, AGE) come back to the data path.
#include <gtest/gtest.h>
#include <rte_mbuf.h>

#include <memory>
#include <string>
#include <vector>

#include "common/json_writer.h"
#include "hostagent/agent.h"
#include "hostagent/nic_rules.h"
#include "offload/packet/fastpath_redirect.h"
#include "offload/rte_flow/fake_flow_api.h"
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
using fixture::Tcp;
using fixture::Udp;
using namespace sluice::testing::lab;

const uint32_t kVip2 = Ip("10.200.0.20");
const uint32_t kVm2Dip = Ip("10.1.0.2");
const uint32_t kVm2Pa = Ip("10.101.0.32");
const flow::MacAddr kVm2Mac = Mac("02:00:0a:01:00:02");
const uint32_t kInternet = Ip("10.100.0.2");
const uint32_t kPeerVmPa = Ip("10.101.0.33");
const flow::MacAddr kPeerMac = Mac("02:00:00:00:00:22");
const char* kKeyHex = "5c1ce0f5a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071829304152";
constexpr uint64_t kSecond = 1'000'000'000;

// host1: vm1 serves VIP:80 and VIP2:80 on :8080 (shared) and has 2 TCP + 1 UDP SNAT ports;
// vm2 serves VIP:80 alone.
AgentConfig Config() {
  packet::FastpathKey key;
  EXPECT_TRUE(packet::ParseFastpathKey(kKeyHex, &key));
  return AgentConfig{
      .name = "host-nic",
      .address = {.addr = kHostPa, .length = 24},
      .gateway = kRouter,
      .vms = {{.name = "vm1", .mac = kVmMac, .dip = kDip, .pa = kVmPa, .gateway = Ip("10.1.0.254")},
              {.name = "vm2",
               .mac = kVm2Mac,
               .dip = kVm2Dip,
               .pa = kVm2Pa,
               .gateway = Ip("10.1.0.254")}},
      .endpoints = {{.vip = kVip, .port = 80, .proto = 6, .dip = kDip, .dip_port = 8080},
                    {.vip = kVip2, .port = 80, .proto = 6, .dip = kDip, .dip_port = 8080},
                    {.vip = kVip, .port = 80, .proto = 6, .dip = kVm2Dip, .dip_port = 8080}},
      .snat_leases =
          {{.dip = kDip, .vip = kVip, .proto = 6, .port_start = 20000, .port_count = 2},
           {.dip = kDip, .vip = kVip, .proto = 17, .port_start = 20000, .port_count = 1}},
      .nat = {.flow_capacity = 64,
              .tcp_syn_timeout_s = 5,
              .tcp_established_timeout_s = 100,
              .tcp_closing_timeout_s = 20,
              .tcp_closed_timeout_s = 1,
              .udp_timeout_s = 10,
              .snat_port_reuse_delay_s = 3},
      .fastpath_key = key};
}

class AgentNicFlowsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int n = 0;
    const std::string suffix = std::to_string(n++);
    pool_ = rte_pktmbuf_pool_create(("nic_flows_" + suffix).c_str(), 1023, 0, 0,
                                    RTE_MBUF_DEFAULT_BUF_SIZE, 0);
    ASSERT_NE(pool_, nullptr);
    config_ = Config();
    uplink_ = std::make_unique<testing::RingPort>("nicf_up" + suffix, pool_);
    ASSERT_TRUE(uplink_->ok());
    uplink_mac_ = port::PortMac(uplink_->port_id());
    ports_ = PortMap{.uplink_port = uplink_->port_id(), .uplink_mac = uplink_mac_};
    for (size_t v = 0; v < config_.vms.size(); ++v) {
      vms_.push_back(
          std::make_unique<testing::RingPort>("nicf_vm" + std::to_string(v) + "_" + suffix, pool_));
      ASSERT_TRUE(vms_.back()->ok());
      ports_.vm_ports.push_back(vms_.back()->port_id());
      ports_.vm_port_macs.push_back(port::PortMac(vms_.back()->port_id()));
    }
    executor_ = std::make_unique<nic::NicExecutor>(
        &api_, nic::NicExecutorConfig{.default_port = ports_.uplink_port});
    nic_rules_ =
        std::make_unique<AgentNicRules>(executor_.get(), config_, ports_, flow::kDefaultGuePort);
    agent_ = std::make_unique<AgentDataPath>(config_, ports_);
    agent_->SetFlowOffload(nic_rules_->channel());
  }
  void TearDown() override {
    agent_.reset();
    nic_rules_.reset();
    executor_.reset();
    EXPECT_TRUE(api_.live.empty()) << "the executor left rules in the NIC";
    vms_.clear();
    uplink_.reset();
    rte_mempool_free(pool_);
  }

  void Receive(size_t port_index, const fixture::Packet& p) {
    rte_mbuf* m = testing::MbufFrom(pool_, p.Bytes());
    ASSERT_NE(m, nullptr);
    agent_->ProcessBurst(port_index, &m, 1, now_ns_);
    agent_->FlushAll();
  }
  void Housekeeping() {
    agent_->Housekeeping(pool_, now_ns_);
    agent_->FlushAll();
  }
  // One control-thread tick, then the data path's housekeeping takes the answers.
  void Tick() {
    nic_rules_->SyncFlows();
    Housekeeping();
  }
  void BecomeReady() {
    Housekeeping();  // asks for the router's MAC
    uplink_->Sent();
    Receive(0, Eth{.dst = uplink_mac_, .src = kRouterMac} / Arp{.op = 2,
                                                                .sender_mac = kRouterMac,
                                                                .sender_ip = kRouter,
                                                                .target_mac = uplink_mac_,
                                                                .target_ip = kHostPa});
    Housekeeping();
    ASSERT_TRUE(agent_->ready());
  }
  void FromVm(size_t v, const fixture::Packet& p) {
    fixture::Packet frame =
        Eth{.dst = ports_.vm_port_macs[v], .src = v == 0 ? kVmMac : kVm2Mac} / Ipv4{};
    frame.layers.pop_back();
    for (const auto& layer : p.layers) frame.layers.push_back(layer);
    Receive(1 + v, frame);
  }
  void FromUnderlay(uint32_t outer_src, uint32_t outer_dst, const fixture::Packet& inner,
                    const flow::MacAddr& src_mac = kMuxMac) {
    fixture::Packet frame =
        Eth{.dst = uplink_mac_, .src = src_mac} / Ipv4{.src = outer_src, .dst = outer_dst};
    for (const auto& layer : inner.layers) frame.layers.push_back(layer);
    Receive(0, frame);
  }
  void Drain() {
    uplink_->Sent();
    for (auto& vm : vms_) vm->Sent();
  }
  // vm1 opens sport -> dst:dport and the remote answers: an established SNAT flow. Returns
  // the SNAT port.
  uint16_t EstablishSnat(uint16_t sport, uint32_t dst = kInternet, uint16_t dport = 9000) {
    FromVm(0, Ipv4{.src = kDip, .dst = dst} /
                  Tcp{.sport = sport, .dport = dport, .flags = fixture::kSyn});
    auto out = uplink_->Sent();
    EXPECT_EQ(out.size(), 1u);
    if (out.size() != 1) return 0;
    const uint16_t port = static_cast<uint16_t>(out[0][34] << 8 | out[0][35]);
    FromUnderlay(kMuxPa, kHostPa,
                 Ipv4{.src = dst, .dst = kVip} /
                     Tcp{.sport = dport, .dport = port, .flags = fixture::kSyn | fixture::kAck});
    Drain();
    return port;
  }
  void CloseSnat(uint16_t sport, uint16_t port, uint32_t dst = kInternet, uint16_t dport = 9000) {
    FromVm(0, Ipv4{.src = kDip, .dst = dst} /
                  Tcp{.sport = sport, .dport = dport, .flags = fixture::kFin | fixture::kAck});
    FromUnderlay(kMuxPa, kHostPa,
                 Ipv4{.src = dst, .dst = kVip} /
                     Tcp{.sport = dport, .dport = port, .flags = fixture::kFin | fixture::kAck});
    Drain();
  }
  // The fake NIC's rules on `port`.
  // (Not counting the close rules, which stay once the first flow was offered.)
  static bool IsCloseRule(uint64_t id) { return id >= kCloseRuleIdBase && id < kFlowRuleIdBase; }
  size_t LiveOn(uint16_t port) const {
    size_t n = 0;
    for (const auto& [handle, f] : api_.live) n += f.port == port && !IsCloseRule(f.rule_id);
    return n;
  }
  size_t Live() const {
    size_t n = 0;
    for (const auto& [handle, f] : api_.live) n += !IsCloseRule(f.rule_id);
    return n;
  }
  // vm1's SNAT flow from `sport` to the internet server.
  NatFlow* Flow(uint16_t sport) {
    return const_cast<NatFlowTable&>(agent_->flows()).FindInside(6, kDip, sport, kInternet, 9000);
  }
  size_t CloseRulesLive() const { return api_.live.size() - Live(); }
  // Handles of the per-flow rules, oldest first.
  std::vector<rte_flow*> FlowHandles() const {
    std::vector<rte_flow*> handles;
    for (const auto& [handle, f] : api_.live) {
      if (f.rule_id >= kFlowRuleIdBase) handles.push_back(handle);
    }
    return handles;
  }
  // The frames the NIC would see.
  fixture::Packet VmFrame(size_t v, const fixture::Packet& p) const {
    fixture::Packet frame =
        Eth{.dst = ports_.vm_port_macs[v], .src = v == 0 ? kVmMac : kVm2Mac} / Ipv4{};
    frame.layers.pop_back();
    for (const auto& layer : p.layers) frame.layers.push_back(layer);
    return frame;
  }
  fixture::Packet UnderlayFrame(uint32_t outer_src, uint32_t outer_dst,
                                const fixture::Packet& inner) const {
    fixture::Packet frame =
        Eth{.dst = uplink_mac_, .src = kMuxMac} / Ipv4{.src = outer_src, .dst = outer_dst};
    for (const auto& layer : inner.layers) frame.layers.push_back(layer);
    return frame;
  }

  rte_mempool* pool_ = nullptr;
  AgentConfig config_;
  PortMap ports_;
  flow::MacAddr uplink_mac_{};
  std::unique_ptr<testing::RingPort> uplink_;
  std::vector<std::unique_ptr<testing::RingPort>> vms_;
  nic::FakeFlowApi api_;
  std::unique_ptr<nic::NicExecutor> executor_;
  std::unique_ptr<AgentNicRules> nic_rules_;
  std::unique_ptr<AgentDataPath> agent_;
  uint64_t now_ns_ = 1'000 * kSecond;
};

TEST_F(AgentNicFlowsTest, AnEstablishedSnatFlowGetsTwoNicRulesAndClosingRemovesThem) {
  BecomeReady();
  FromVm(0, Ipv4{.src = kDip, .dst = kInternet} /
                Tcp{.sport = 40000, .dport = 9000, .flags = fixture::kSyn});
  Tick();
  EXPECT_TRUE(Live() == 0) << "a half-open flow stays in software";
  FromUnderlay(kMuxPa, kHostPa,
               Ipv4{.src = kInternet, .dst = kVip} /
                   Tcp{.sport = 9000, .dport = 20000, .flags = fixture::kSyn | fixture::kAck});
  Drain();
  Tick();
  ASSERT_EQ(Live(), 2u);
  EXPECT_EQ(LiveOn(ports_.vm_ports[0]), 1u);  // outbound: from vm1's port, SNATed
  EXPECT_EQ(LiveOn(ports_.uplink_port), 1u);  // the reply: decap + back to DIP:40000
  EXPECT_EQ(agent_->counters().flows_offered.Get(), 1u);
  const std::string testpmd = nic_rules_->Testpmd();
  EXPECT_NE(testpmd.find("snat-out tcp 10.1.0.1:40000 as 10.200.0.10:20000 -> "
                         "10.100.0.2:9000"),
            std::string::npos)
      << testpmd;
  EXPECT_NE(testpmd.find("snat-in tcp 10.100.0.2:9000 -> 10.200.0.10:20000 to 10.1.0.1:40000"),
            std::string::npos)
      << testpmd;
  EXPECT_NE(testpmd.find("age timeout 100"), std::string::npos) << testpmd;
  // More packets of the flow offer nothing new.
  FromVm(0, Ipv4{.src = kDip, .dst = kInternet} / Tcp{.sport = 40000, .dport = 9000});
  Tick();
  EXPECT_EQ(agent_->counters().flows_offered.Get(), 1u);
  // The first FIN takes the flow out of the NIC (software sees the close to its end).
  FromVm(0, Ipv4{.src = kDip, .dst = kInternet} /
                Tcp{.sport = 40000, .dport = 9000, .flags = fixture::kFin | fixture::kAck});
  Tick();
  EXPECT_TRUE(Live() == 0);
  EXPECT_EQ(agent_->counters().flows_withdrawn.Get(), 1u);
  EXPECT_EQ(executor_->totals().nic, CloseRulesLive());  // only the close rules stay
}

// On a NIC that serves both directions, software would never see the close: the close rules
// send FIN and RST to software, which updates the flow and takes its rules out.
TEST_F(AgentNicFlowsTest, AFinOfAnOffloadedFlowReachesSoftwareWhichWithdrawsItsRules) {
  BecomeReady();
  ASSERT_EQ(EstablishSnat(40000), 20000);
  Tick();
  ASSERT_EQ(Live(), 2u);
  // FIN and RST on each VM port (plain TCP) and on the uplink (inside IPIP and GUE).
  EXPECT_EQ(CloseRulesLive(), 2 * config_.vms.size() + 4);
  const std::string testpmd = nic_rules_->Testpmd();
  EXPECT_NE(testpmd.find("# placement: nic, closes to software"), std::string::npos) << testpmd;
  EXPECT_NE(testpmd.find("tcp flags spec 0x1 flags mask 0x1 / end actions count / queue index 0"),
            std::string::npos)
      << testpmd;

  // Data of the connection: the NIC serves it, software sees nothing.
  const fixture::Packet data = VmFrame(0, Ipv4{.src = kDip, .dst = kInternet} /
                                              Tcp{.sport = 40000, .dport = 9000});
  nic::FakeFlowApi::Hit hit = api_.Inject(ports_.vm_ports[0], data.Bytes());
  ASSERT_NE(hit.flow, nullptr);
  EXPECT_GE(hit.rule_id, kFlowRuleIdBase);
  EXPECT_FALSE(hit.to_software);
  // The VM's FIN: the close rule wins over the flow's rule and hands it to software.
  const fixture::Packet fin =
      VmFrame(0, Ipv4{.src = kDip, .dst = kInternet} /
                     Tcp{.sport = 40000, .dport = 9000, .flags = fixture::kFin | fixture::kAck});
  hit = api_.Inject(ports_.vm_ports[0], fin.Bytes());
  ASSERT_NE(hit.flow, nullptr);
  EXPECT_TRUE(IsCloseRule(hit.rule_id));
  ASSERT_TRUE(hit.to_software);
  Receive(1, fin);  // where the NIC sent it
  auto out = uplink_->Sent();
  ASSERT_EQ(out.size(), 1u) << "software translates the FIN like any packet of the flow";
  EXPECT_EQ(out[0][34] << 8 | out[0][35], 20000);
  Tick();
  EXPECT_EQ(Live(), 0u) << "the closing flow's rules left the NIC";
  EXPECT_EQ(agent_->counters().flows_withdrawn.Get(), 1u);
  EXPECT_EQ(CloseRulesLive(), 2 * config_.vms.size() + 4) << "close rules stay";
  nic_rules_->QueryCounters();
  EXPECT_EQ(nic_rules_->closes_to_software.Get(), 1u);

  // The remote's RST of another offloaded connection, inside IPIP on the uplink.
  ASSERT_EQ(EstablishSnat(40001), 20001);
  Tick();
  ASSERT_EQ(Live(), 2u);
  const fixture::Packet rst = UnderlayFrame(
      kMuxPa, kHostPa,
      Ipv4{.src = kInternet, .dst = kVip} / Tcp{.sport = 9000, .dport = 20001, .flags = fixture::kRst});
  hit = api_.Inject(ports_.uplink_port, rst.Bytes());
  ASSERT_TRUE(IsCloseRule(hit.rule_id));
  ASSERT_TRUE(hit.to_software);
  Receive(0, rst);
  EXPECT_EQ(vms_[0]->Sent().size(), 1u) << "the RST reaches the VM, translated";
  Tick();
  EXPECT_EQ(Live(), 0u);
  EXPECT_EQ(agent_->counters().flows_withdrawn.Get(), 2u);
  nic_rules_->QueryCounters();
  EXPECT_EQ(nic_rules_->closes_to_software.Get(), 2u);
  Drain();
}

TEST_F(AgentNicFlowsTest, CountsOfTheNicFeedTheFlowsStatsAndKeepItFromIdling) {
  BecomeReady();
  ASSERT_EQ(EstablishSnat(40000), 20000);
  Tick();
  ASSERT_EQ(Live(), 2u);
  now_ns_ += 150 * kSecond;  // longer than the idle timeout; the NIC carries the flow
  const fixture::Packet out_frame = VmFrame(0, Ipv4{.src = kDip, .dst = kInternet} /
                                                   Tcp{.sport = 40000, .dport = 9000});
  const fixture::Packet in_frame =
      UnderlayFrame(kMuxPa, kHostPa,
                    Ipv4{.src = kInternet, .dst = kVip} / Tcp{.sport = 9000, .dport = 20000});
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(api_.Inject(ports_.vm_ports[0], out_frame.Bytes()).to_software);
  for (int i = 0; i < 2; ++i) EXPECT_FALSE(api_.Inject(ports_.uplink_port, in_frame.Bytes()).to_software);
  EXPECT_GE(nic_rules_->QueryCounters(), 2u);
  NicFlowReading reading;
  ASSERT_TRUE(nic_rules_->FlowReading(NatFlowRef::Of(*Flow(40000)), &reading));
  EXPECT_EQ(reading.rules_nic, 2u);
  EXPECT_EQ(reading.packets, 5u);
  EXPECT_EQ(reading.bytes, 3 * out_frame.Bytes().size() + 2 * in_frame.Bytes().size());
  EXPECT_EQ(nic_rules_->offloaded_packets(), 5u);
  EXPECT_EQ(nic_rules_->flows_active.Get(), 1u);  // one answer for the flow, not per rule
  Housekeeping();  // the data path takes the answer: the flow was seen now
  // Both rules age later, having been hit 150 s after software last saw the flow: the flow
  // is not idle, so it stays (and goes back to the NIC) instead of closing.
  now_ns_ += 10 * kSecond;
  for (rte_flow* handle : FlowHandles()) api_.AgeOut(handle);
  Tick();
  EXPECT_EQ(agent_->counters().flows_aged_in_nic.Get(), 1u);
  EXPECT_EQ(agent_->flows().size(), 1u);
  ASSERT_NE(Flow(40000), nullptr);
  EXPECT_EQ(StateOf(*Flow(40000)), NatFlowState::kTcpEstablished);
  EXPECT_EQ(agent_->counters().flows_expired.Get(), 0u);
  Tick();
  Tick();
  EXPECT_EQ(Live(), 2u);
  // Nothing moved since: no answer, and a reading of a flow that is gone is not kept.
  nic_rules_->QueryCounters();
  EXPECT_EQ(nic_rules_->flows_active.Get(), 1u);
  JsonWriter j;
  j.BeginObject();
  nic_rules_->WriteStats(j);
  j.EndObject();
  EXPECT_NE(j.str().find("\"nic_packets\":5"), std::string::npos) << j.str();
  EXPECT_NE(j.str().find("\"count_query_errors\":0"), std::string::npos) << j.str();
}

TEST_F(AgentNicFlowsTest, FailedCountQueriesAreCountedAndChangeNothing) {
  BecomeReady();
  ASSERT_EQ(EstablishSnat(40000), 20000);
  Tick();
  api_.refuse_query = [](uint64_t) { return std::string("Operation not supported (errno 95)"); };
  api_.Inject(ports_.vm_ports[0], VmFrame(0, Ipv4{.src = kDip, .dst = kInternet} /
                                                 Tcp{.sport = 40000, .dport = 9000})
                                      .Bytes());
  nic_rules_->QueryCounters();
  EXPECT_EQ(nic_rules_->flows_active.Get(), 0u);
  EXPECT_EQ(nic_rules_->offloaded_packets(), 0u);
  JsonWriter j;
  j.BeginObject();
  nic_rules_->WriteStats(j);
  j.EndObject();
  EXPECT_NE(j.str().find("\"rte_flow_query: Operation not supported (errno 95)\":"),
            std::string::npos)
      << j.str();
}

TEST_F(AgentNicFlowsTest, CreateCloseCyclesLeaveNoRuleBehind) {
  BecomeReady();
  for (int cycle = 0; cycle < 30; ++cycle) {
    const uint16_t a = static_cast<uint16_t>(41000 + 2 * cycle);
    const uint16_t b = static_cast<uint16_t>(a + 1);
    const uint16_t port_a = EstablishSnat(a);
    const uint16_t port_b = EstablishSnat(b);
    ASSERT_NE(port_a, 0);
    ASSERT_NE(port_b, 0);
    Tick();
    ASSERT_EQ(Live(), 4u) << "cycle " << cycle;
    CloseSnat(a, port_a);
    CloseSnat(b, port_b);
    Tick();
    ASSERT_TRUE(Live() == 0) << "cycle " << cycle;
    now_ns_ += 4 * kSecond;  // the ports' reuse delay
    Housekeeping();
    ASSERT_EQ(agent_->flows().size(), 0u) << "cycle " << cycle;
  }
  EXPECT_EQ(executor_->totals().nic, CloseRulesLive());  // only the close rules stay
  EXPECT_EQ(nic_rules_->offloaded_flows(), 0u);
  EXPECT_EQ(nic_rules_->flow_placement().nic.Get(), 120u);
  EXPECT_EQ(agent_->counters().offload_withdrawals_lost.Get(), 0u);
}

TEST_F(AgentNicFlowsTest, TheNicsAgeDecidesWhenAnOffloadedFlowIsIdleAndItsPortComesBack) {
  BecomeReady();
  ASSERT_EQ(EstablishSnat(40000), 20000);
  Tick();  // placed; the answer reaches the data path
  ASSERT_EQ(Live(), 2u);
  // Its packets go through the NIC now: software sees nothing for 3 idle timeouts, and
  // must not expire it.
  now_ns_ += 300 * kSecond;
  Housekeeping();
  Housekeeping();
  EXPECT_EQ(agent_->flows().size(), 1u);
  EXPECT_EQ(agent_->counters().flows_expired.Get(), 0u);
  EXPECT_EQ(Live(), 2u);
  // The NIC finds both directions idle.
  for (rte_flow* handle : FlowHandles()) api_.AgeOut(handle);
  Tick();
  EXPECT_TRUE(Live() == 0);
  EXPECT_EQ(nic_rules_->flows_aged.Get(), 1u);
  EXPECT_EQ(agent_->counters().flows_aged_in_nic.Get(), 1u);
  // The flow is closed; its port waits out the reuse delay (3 s) like any idle flow's.
  EXPECT_EQ(agent_->snat_ports().InUse(0, 6), 1u);
  FromVm(0, Ipv4{.src = kDip, .dst = kInternet} /
                Tcp{.sport = 40001, .dport = 9000, .flags = fixture::kSyn});
  auto out = uplink_->Sent();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0][34] << 8 | out[0][35], 20001);
  FromVm(0, Ipv4{.src = kDip, .dst = kInternet} /
                Tcp{.sport = 40002, .dport = 9000, .flags = fixture::kSyn});
  EXPECT_EQ(agent_->Drops(AgentDrop::kSnatPortsExhausted), 1u);
  Drain();
  now_ns_ += 2 * kSecond;
  Housekeeping();
  EXPECT_EQ(agent_->snat_ports().InUse(0, 6), 2u);
  now_ns_ += 2 * kSecond;
  Housekeeping();
  EXPECT_EQ(agent_->flows().size(), 1u);  // only 40001's (its SYN times out at 5 s)
  EXPECT_EQ(agent_->snat_ports().InUse(0, 6), 1u);
  FromVm(0, Ipv4{.src = kDip, .dst = kInternet} /
                Tcp{.sport = 40003, .dport = 9000, .flags = fixture::kSyn});
  out = uplink_->Sent();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0][34] << 8 | out[0][35], 20000);  // the aged flow's port, reused
}

TEST_F(AgentNicFlowsTest, AnAgedFlowThatSoftwareSawRecentlyStaysAndGoesBackToTheNic) {
  BecomeReady();
  ASSERT_EQ(EstablishSnat(40000), 20000);
  Tick();
  now_ns_ += 150 * kSecond;
  // The reply direction's rule aged earlier (one-way traffic) and its packets reach software.
  FromUnderlay(kMuxPa, kHostPa,
               Ipv4{.src = kInternet, .dst = kVip} / Tcp{.sport = 9000, .dport = 20000});
  Drain();
  for (rte_flow* handle : FlowHandles()) api_.AgeOut(handle);
  Tick();
  EXPECT_EQ(agent_->counters().flows_aged_in_nic.Get(), 1u);
  EXPECT_EQ(agent_->flows().size(), 1u);
  EXPECT_EQ(agent_->snat_ports().InUse(0, 6), 1u);
  // Still established and busy: the aging scan offers it again.
  Tick();
  EXPECT_EQ(agent_->counters().flows_offered.Get(), 2u);
  Tick();
  EXPECT_EQ(Live(), 2u);
}

TEST_F(AgentNicFlowsTest, DetachingAVmTakesItsFlowsOutOfTheNic) {
  BecomeReady();
  ASSERT_EQ(EstablishSnat(40000), 20000);
  // A client's connection to VIP2:80 on vm1's shared port: its replies need per-flow state.
  FromUnderlay(kMuxPa, kVmPa,
               Ipv4{.src = kClient, .dst = kVip2} /
                   Tcp{.sport = 50000, .dport = 80, .flags = fixture::kSyn});
  FromVm(0, Ipv4{.src = kDip, .dst = kClient} /
                Tcp{.sport = 8080, .dport = 50000, .flags = fixture::kSyn | fixture::kAck});
  FromUnderlay(kMuxPa, kVmPa,
               Ipv4{.src = kClient, .dst = kVip2} /
                   Tcp{.sport = 50000, .dport = 80, .flags = fixture::kAck});
  FromVm(0, Ipv4{.src = kDip, .dst = kClient} / Tcp{.sport = 8080, .dport = 50000});
  Drain();
  Tick();
  ASSERT_EQ(Live(), 3u);  // SNAT both ways + the stateful return
  EXPECT_NE(nic_rules_->Testpmd().find("stateful-return tcp 10.1.0.1:8080 as 10.200.0.20:80"),
            std::string::npos);
  // DetachVm vm1: its endpoints and leases go.
  AgentConfig detached = config_;
  std::erase_if(detached.endpoints, [](const EndpointConfig& ep) { return ep.dip == kDip; });
  std::erase_if(detached.snat_leases, [](const SnatLeaseConfig& l) { return l.dip == kDip; });
  std::string error;
  ASSERT_TRUE(agent_->PublishConfig(detached, &error)) << error;
  agent_->AdoptConfig();
  Tick();
  EXPECT_TRUE(Live() == 0);
  EXPECT_EQ(agent_->counters().flows_withdrawn.Get(), 2u);
  // Nothing offers them again while they are not the VM's any more.
  now_ns_ += kSecond;
  Tick();
  Tick();
  EXPECT_TRUE(Live() == 0);
}

// vm1's :8080 serves VIP:80 and VIP2:80: its inbound packets must reach the flow layer (they
// create the flows its replies are translated by), so those static rules stay in software;
// vm2's endpoint goes to the NIC whole.
TEST_F(AgentNicFlowsTest, InboundRulesOfASharedDipPortStayInSoftware) {
  agent_->SetRuleListener(
      [this](const std::vector<flow::Rule>& rules) { nic_rules_->Post(rules); });
  BecomeReady();
  EXPECT_EQ(agent_->installed_rules(), 7u);
  ASSERT_TRUE(nic_rules_->Sync());
  ASSERT_EQ(Live(), 3u);  // vm2: inbound IPIP, inbound GUE, DSR return
  EXPECT_EQ(LiveOn(ports_.uplink_port), 2u);
  EXPECT_EQ(LiveOn(ports_.vm_ports[1]), 1u);
  const std::string testpmd = nic_rules_->Testpmd();
  EXPECT_EQ(testpmd.find("dip=10.1.0.1:8080"), std::string::npos) << testpmd;
}

TEST_F(AgentNicFlowsTest, UdpIsOfferedOnceTheRemoteAnswers) {
  BecomeReady();
  FromVm(0, Ipv4{.src = kDip, .dst = kInternet} / Udp{.sport = 5353, .dport = 53});
  FromVm(0, Ipv4{.src = kDip, .dst = kInternet} / Udp{.sport = 5353, .dport = 53});
  Tick();
  EXPECT_TRUE(Live() == 0);
  FromUnderlay(kMuxPa, kHostPa,
               Ipv4{.src = kInternet, .dst = kVip} / Udp{.sport = 53, .dport = 20000});
  Drain();
  Tick();
  ASSERT_EQ(Live(), 2u);
  EXPECT_NE(nic_rules_->Testpmd().find("age timeout 10"), std::string::npos);  // udp_timeout_s
  // The UDP idle timeout in software does not apply while the NIC serves it.
  now_ns_ += 30 * kSecond;
  Tick();
  Tick();
  EXPECT_EQ(Live(), 2u);
  EXPECT_EQ(agent_->counters().flows_withdrawn.Get(), 0u);
  EXPECT_EQ(agent_->snat_ports().InUse(0, 17), 1u);
}

TEST_F(AgentNicFlowsTest, AFastpathRedirectMovesTheFlowsRulesOntoTheEncapsulation) {
  BecomeReady();
  ASSERT_EQ(EstablishSnat(40000, kVip2, 80), 20000);
  Tick();
  ASSERT_EQ(Live(), 2u);
  EXPECT_EQ(nic_rules_->Testpmd().find("fastpath via"), std::string::npos);
  std::vector<uint8_t> frame(packet::kFastpathRedirectFrameLen);
  packet::FastpathKey key;
  ASSERT_TRUE(packet::ParseFastpathKey(kKeyHex, &key));
  SystemWallClock clock;
  packet::BuildFastpathRedirectFrame(frame.data(), kMuxMac, uplink_mac_, kMuxPa, kHostPa,
                                     packet::FastpathRedirect{.flow_src = kVip,
                                                              .flow_dst = kVip2,
                                                              .flow_src_port = 20000,
                                                              .flow_dst_port = 80,
                                                              .proto = 6,
                                                              .dip = Ip("10.1.0.3"),
                                                              .dst_pa = kPeerVmPa,
                                                              .src_host_pa = kHostPa,
                                                              .timestamp_s = clock.UnixSeconds()},
                                     key);
  rte_mbuf* m = testing::MbufFrom(pool_, frame);
  ASSERT_NE(m, nullptr);
  agent_->ProcessBurst(0, &m, 1, now_ns_);
  agent_->FlushAll();
  ASSERT_EQ(agent_->counters().fastpath_redirects_source.Get(), 1u);
  // Not before the peer's MAC is known (the NIC would keep using the router).
  Tick();
  Tick();
  EXPECT_EQ(agent_->counters().flows_offered.Get(), 1u);
  Receive(0, Eth{.dst = uplink_mac_, .src = kPeerMac} / Arp{.op = 2,
                                                            .sender_mac = kPeerMac,
                                                            .sender_ip = kPeerVmPa,
                                                            .target_mac = uplink_mac_,
                                                            .target_ip = kHostPa});
  Drain();
  // No packet needed: the flow may be served by the NIC; the aging scan replaces its rules.
  Tick();
  Tick();
  EXPECT_EQ(agent_->counters().flows_offered.Get(), 2u);
  ASSERT_EQ(Live(), 2u);
  const std::string testpmd = nic_rules_->Testpmd();
  EXPECT_NE(testpmd.find("snat-out tcp 10.1.0.1:40000 as 10.200.0.10:20000 -> 10.200.0.20:80 "
                         "fastpath via 10.101.0.33"),
            std::string::npos)
      << testpmd;
  EXPECT_NE(testpmd.find("encap(ipip 10.101.0.21->10.101.0.33"), std::string::npos) << testpmd;
}

TEST_F(AgentNicFlowsTest, APortThatRefusesRulesLeavesEveryFlowToSoftwareCountedPerRule) {
  api_.refuse = [](const nic::FlowSpec&) {
    return std::string("Function not implemented (errno 38)");
  };
  BecomeReady();
  ASSERT_EQ(EstablishSnat(40000), 20000);
  ASSERT_EQ(EstablishSnat(40001), 20001);
  Tick();
  EXPECT_TRUE(Live() == 0);
  EXPECT_EQ(nic_rules_->flow_placement().software.Get(), 4u);
  EXPECT_EQ(nic_rules_->flow_placement().reasons().begin()->second, 4u);
  // Software still translates, and ages them with its own timer.
  FromVm(0, Ipv4{.src = kDip, .dst = kInternet} / Tcp{.sport = 40000, .dport = 9000});
  EXPECT_EQ(uplink_->Sent().size(), 1u);
  now_ns_ += 101 * kSecond;
  Housekeeping();
  now_ns_ += 4 * kSecond;
  Housekeeping();
  EXPECT_EQ(agent_->flows().size(), 0u);
  EXPECT_EQ(agent_->snat_ports().InUse(0, 6), 0u);
}

}  // namespace
}  // namespace sluice::agent
