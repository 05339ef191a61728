// AgentNicRules against a fake NIC: the static rule sets, and the per-flow rules offered
// through the data path's ring (placement, withdrawal, aging, refusal, testpmd text).
#include "hostagent/nic_rules.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "common/stats_server.h"
#include "hostagent/rules.h"
#include "offload/rte_flow/fake_flow_api.h"
#include "offload/sw/fixture_builder.h"

#if !defined(SLUICE_RTE_FLOW_TESTDATA) || !defined(SLUICECTL_PATH)
#error "SLUICE_RTE_FLOW_TESTDATA must name offload/rte_flow/testdata, SLUICECTL_PATH sluicectl"
#endif

namespace sluice::agent {
namespace {

using fixture::Ip;
using fixture::Mac;

const uint32_t kVip = Ip("10.200.0.10");
const uint32_t kVip2 = Ip("10.200.0.20");
const uint32_t kDip = Ip("10.1.0.1");
const uint32_t kInternet = Ip("10.100.0.2");
const uint32_t kPeerHostPa = Ip("10.101.0.22");
const flow::MacAddr kRouterMac = Mac("02:00:00:00:00:01");
const flow::MacAddr kPeerMac = Mac("02:00:00:00:00:22");

// host1 as the lab has it, on e-switch-like port numbers: uplink 0, vm1 1, vm2 2 (so the
// testpmd text replays on three ports).
AgentConfig Config(int endpoints) {
  AgentConfig config;
  config.name = "host1";
  config.address = {.addr = Ip("10.101.0.21"), .length = 24};
  config.gateway = Ip("10.101.0.1");
  config.vms.push_back(VmConfig{.name = "vm1",
                                .port = "net_vhost0",
                                .mac = {2, 0, 0x0a, 1, 0, 1},
                                .dip = kDip,
                                .pa = Ip("10.101.0.31"),
                                .gateway = Ip("10.1.0.254")});
  config.vms.push_back(VmConfig{.name = "vm2",
                                .port = "net_vhost1",
                                .mac = {2, 0, 0x0a, 1, 0, 2},
                                .dip = Ip("10.1.0.2"),
                                .pa = Ip("10.101.0.32"),
                                .gateway = Ip("10.1.0.254")});
  for (int i = 0; i < endpoints; ++i) {
    config.endpoints.push_back(EndpointConfig{.vip = kVip,
                                              .port = static_cast<uint16_t>(80 + i),
                                              .proto = flow::kProtoTcp,
                                              .dip = kDip,
                                              .dip_port = static_cast<uint16_t>(8080 + i)});
  }
  config.nat.tcp_established_timeout_s = 300;
  config.nat.udp_timeout_s = 60;
  return config;
}

PortMap Ports() {
  return PortMap{.uplink_port = 0,
                 .uplink_mac = {2, 0, 0, 0, 0, 0x21},
                 .vm_ports = {1, 2},
                 .vm_port_macs = {{2, 0, 0, 0, 0, 0x31}, {2, 0, 0, 0, 0, 0x32}}};
}

std::vector<flow::Rule> Rules(int endpoints) {
  return BuildAgentRules(Config(endpoints), Ports(), kRouterMac);
}

NatFlow SnatFlow(uint16_t dip_port, uint16_t vip_port = 20000, uint8_t proto = flow::kProtoTcp) {
  return NatFlow{.dip = kDip,
                 .remote = kInternet,
                 .vip = kVip,
                 .dip_port = dip_port,
                 .remote_port = 9000,
                 .vip_port = vip_port,
                 .proto = proto,
                 .kind = static_cast<uint8_t>(NatFlowKind::kSnat),
                 .state = static_cast<uint8_t>(NatFlowState::kTcpEstablished)};
}

FlowOffer Offer(const NatFlow& f, uint8_t generation = 1) {
  return FlowOffer{.op = FlowOffer::Op::kOffer,
                   .generation = generation,
                   .fastpath = f.fastpath_pa != 0,
                   .next_hop_mac = f.fastpath_pa != 0 ? kPeerMac : kRouterMac,
                   .flow = f};
}

FlowOffer Withdraw(const NatFlow& f) {
  return FlowOffer{.op = FlowOffer::Op::kWithdraw, .flow = f};
}

std::vector<FlowOffloadNotice> Answers(AgentNicRules& rules) {
  std::vector<FlowOffloadNotice> out;
  FlowOffloadNotice n;
  while (rules.channel()->notices.Pop(&n)) out.push_back(n);
  return out;
}

class AgentNicRulesTest : public ::testing::Test {
 protected:
  // Rules in the fake NIC, not counting the close rules (FIN/RST to software) that stay
  // once the first flow was offered.
  size_t Live() const {
    size_t n = 0;
    for (const auto& [handle, f] : api_.live) {
      n += f.rule_id < kCloseRuleIdBase || f.rule_id >= kFlowRuleIdBase;
    }
    return n;
  }
  rte_flow* FirstFlowRule() const {
    for (const auto& [handle, f] : api_.live) {
      if (f.rule_id >= kFlowRuleIdBase) return handle;
    }
    return nullptr;
  }
  nic::FakeFlowApi api_;
  nic::NicExecutor executor_{&api_, {}};
  AgentNicRules rules_{&executor_, Config(1), Ports(), flow::kDefaultGuePort};
};

TEST_F(AgentNicRulesTest, SyncsWholeSetsAndLeaksNothing) {
  EXPECT_FALSE(rules_.Sync());  // nothing posted yet
  const std::vector<flow::Rule> three = Rules(3);
  rules_.Post(three);
  EXPECT_TRUE(rules_.Sync());
  EXPECT_FALSE(rules_.Sync());  // unchanged
  EXPECT_EQ(Live(), three.size());
  // Endpoints come and go 50 times: the NIC always holds exactly the current set.
  for (int cycle = 0; cycle < 50; ++cycle) {
    const std::vector<flow::Rule> set = Rules(cycle % 2 == 0 ? 1 : 3);
    rules_.Post(set);
    ASSERT_TRUE(rules_.Sync());
    ASSERT_EQ(Live(), set.size()) << "cycle " << cycle;
  }
  const std::string testpmd = rules_.Testpmd();
  EXPECT_NE(testpmd.find("# placement: nic"), std::string::npos) << testpmd;
  EXPECT_NE(testpmd.find("flow create 0"), std::string::npos) << testpmd;
}

TEST_F(AgentNicRulesTest, RefusingPortLeavesRulesInSoftwareWithTheReason) {
  api_.refuse = [](const nic::FlowSpec&) { return std::string("Function not implemented"); };
  rules_.Post(Rules(2));
  ASSERT_TRUE(rules_.Sync());
  EXPECT_TRUE(Live() == 0);
  JsonWriter j;
  j.BeginObject();
  rules_.WriteStats(j);
  j.EndObject();
  EXPECT_NE(j.str().find("Function not implemented"), std::string::npos) << j.str();
  EXPECT_NE(rules_.Testpmd().find("# placement: software"), std::string::npos) << rules_.Testpmd();
}

TEST_F(AgentNicRulesTest, EstablishedSnatFlowGetsItsTwoRulesAndWithdrawalRemovesThem) {
  ASSERT_TRUE(rules_.channel()->offers.Push(Offer(SnatFlow(40000))));
  EXPECT_EQ(rules_.SyncFlows(), 1u);
  ASSERT_EQ(Live(), 2u);
  // Outbound from vm1's port as VIP:20000, and the reply decapsulated back to DIP:40000;
  // both counted and aged with the established-TCP timeout.
  std::vector<FlowOffloadNotice> answers = Answers(rules_);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].kind, FlowOffloadNotice::Kind::kPlaced);
  EXPECT_EQ(answers[0].nic_rules, 2);
  EXPECT_EQ(answers[0].generation, 1);
  EXPECT_EQ(answers[0].ref, NatFlowRef::Of(SnatFlow(40000)));
  for (const auto& [handle, f] : api_.live) {
    if (f.rule_id >= kFlowRuleIdBase) {  // not the close rules
      EXPECT_NE(f.age_context, nullptr);
    }
  }
  const std::string testpmd = rules_.Testpmd();
  EXPECT_NE(testpmd.find("set_ipv4_src ipv4_addr 10.200.0.10 / set_tp_src port 20000"),
            std::string::npos)
      << testpmd;
  EXPECT_NE(testpmd.find("raw_decap index 0 / raw_encap index 0 / set_ipv4_dst ipv4_addr "
                         "10.1.0.1 / set_tp_dst port 40000"),
            std::string::npos)
      << testpmd;
  EXPECT_NE(testpmd.find("age timeout 300"), std::string::npos) << testpmd;
  EXPECT_EQ(rules_.flow_placement().nic.Get(), 2u);

  ASSERT_TRUE(rules_.channel()->offers.Push(Withdraw(SnatFlow(40000))));
  rules_.SyncFlows();
  EXPECT_TRUE(Live() == 0);
  EXPECT_EQ(rules_.offloaded_flows(), 0u);
  // What stays: the close rules, FIN and RST on both VM ports and in IPIP/GUE on the uplink.
  EXPECT_EQ(executor_.totals().nic, 8u);
  EXPECT_EQ(api_.live.size(), 8u);
}

TEST_F(AgentNicRulesTest, CreateDeleteCyclesLeakNothing) {
  rules_.Post(Rules(1));
  rules_.Sync();
  const size_t static_rules = Live();
  for (int cycle = 0; cycle < 200; ++cycle) {
    for (uint16_t p = 0; p < 10; ++p) {
      ASSERT_TRUE(rules_.channel()->offers.Push(Offer(SnatFlow(40000 + p, 20000 + p))));
    }
    rules_.SyncFlows();
    ASSERT_EQ(Live(), static_rules + 20) << "cycle " << cycle;
    // A re-offer (new next hop) replaces, it does not add.
    NatFlow moved = SnatFlow(40000, 20000);
    moved.fastpath_pa = kPeerHostPa;
    ASSERT_TRUE(rules_.channel()->offers.Push(Offer(moved, 2)));
    rules_.SyncFlows();
    ASSERT_EQ(Live(), static_rules + 20) << "cycle " << cycle;
    for (uint16_t p = 0; p < 10; ++p) {
      ASSERT_TRUE(rules_.channel()->offers.Push(Withdraw(SnatFlow(40000 + p, 20000 + p))));
    }
    rules_.SyncFlows();
    Answers(rules_);
    ASSERT_EQ(Live(), static_rules) << "cycle " << cycle;
  }
  EXPECT_EQ(executor_.totals().nic, static_rules + 8);  // + the close rules
  EXPECT_EQ(rules_.offloaded_flows(), 0u);
  // Static re-syncs leave per-flow rules alone, and the other way round.
  ASSERT_TRUE(rules_.channel()->offers.Push(Offer(SnatFlow(41000))));
  rules_.SyncFlows();
  rules_.Post(Rules(2));
  rules_.Sync();
  EXPECT_EQ(Live(), Rules(2).size() + 2);
}

TEST_F(AgentNicRulesTest, AFlowAgesWhenEveryOneOfItsNicRulesHas) {
  ASSERT_TRUE(rules_.channel()->offers.Push(Offer(SnatFlow(40000), 5)));
  rules_.SyncFlows();
  Answers(rules_);
  ASSERT_EQ(Live(), 2u);
  // The reply direction idles (a one-way stream): its rule goes, the flow stays.
  api_.AgeOut(FirstFlowRule());
  rules_.SyncFlows();
  EXPECT_TRUE(Answers(rules_).empty());
  EXPECT_EQ(Live(), 1u);
  EXPECT_EQ(rules_.offloaded_flows(), 1u);
  api_.AgeOut(FirstFlowRule());
  rules_.SyncFlows();
  std::vector<FlowOffloadNotice> answers = Answers(rules_);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].kind, FlowOffloadNotice::Kind::kAged);
  EXPECT_EQ(answers[0].generation, 5);
  EXPECT_EQ(answers[0].ref, NatFlowRef::Of(SnatFlow(40000)));
  EXPECT_TRUE(Live() == 0);
  EXPECT_EQ(rules_.offloaded_flows(), 0u);
  EXPECT_EQ(rules_.flows_aged.Get(), 1u);
  EXPECT_EQ(executor_.totals().aged, 2u);
  // A withdrawal that crossed the AGE event finds nothing to remove.
  ASSERT_TRUE(rules_.channel()->offers.Push(Withdraw(SnatFlow(40000))));
  rules_.SyncFlows();
  EXPECT_EQ(executor_.totals().destroy_errors, 0u);
}

TEST_F(AgentNicRulesTest, RefusedFlowRulesAreCountedWithTheReasonAndNotKept) {
  api_.refuse = [](const nic::FlowSpec&) {
    return std::string("Function not implemented (errno 38)");
  };
  for (uint16_t p = 0; p < 3; ++p) {
    ASSERT_TRUE(rules_.channel()->offers.Push(Offer(SnatFlow(40000 + p, 20000 + p))));
  }
  rules_.SyncFlows();
  EXPECT_TRUE(Live() == 0);
  EXPECT_EQ(rules_.offloaded_flows(), 0u);
  EXPECT_EQ(executor_.totals().software, 0u);  // not kept: the flow table serves them
  EXPECT_EQ(rules_.flow_placement().software.Get(), 6u);
  const auto reasons = rules_.flow_placement().reasons();
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_NE(reasons.begin()->first.find("Function not implemented"), std::string::npos);
  EXPECT_EQ(reasons.begin()->second, 6u);
  for (const FlowOffloadNotice& n : Answers(rules_)) {
    EXPECT_EQ(n.kind, FlowOffloadNotice::Kind::kPlaced);
    EXPECT_EQ(n.nic_rules, 0);
  }
  EXPECT_NE(rules_.Testpmd().find("# per-flow rules refused by the NIC and left to the flow "
                                  "table: 6"),
            std::string::npos)
      << rules_.Testpmd();
  JsonWriter j;
  j.BeginObject();
  rules_.WriteStats(j);
  j.EndObject();
  EXPECT_NE(j.str().find("\"rules_software\":6"), std::string::npos) << j.str();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// What `sluicectl get nic-rules --testpmd` prints for an agent with one endpoint and three
// established flows in the NIC: a SNAT flow, a SNAT flow on the Fastpath, and a connection
// to a DIP:port that serves several VIPs (its replies need per-flow state). The agent's
// text is compared with the golden file, then the real sluicectl reads it from a stats
// socket as it reads a running agent's.
TEST_F(AgentNicRulesTest, TestpmdTextOfStaticAndPerFlowRules) {
  rules_.Post(Rules(1));
  rules_.Sync();
  NatFlow snat = SnatFlow(33000, 20001);
  NatFlow fastpath = SnatFlow(33001, 20002);
  fastpath.remote = kVip2;
  fastpath.remote_port = 80;
  fastpath.fastpath_pa = kPeerHostPa;
  NatFlow shared{.dip = kDip,
                 .remote = Ip("10.100.0.3"),
                 .vip = kVip2,
                 .dip_port = 8080,
                 .remote_port = 50000,
                 .vip_port = 80,
                 .proto = flow::kProtoTcp,
                 .kind = static_cast<uint8_t>(NatFlowKind::kInbound),
                 .state = static_cast<uint8_t>(NatFlowState::kTcpEstablished)};
  for (const NatFlow& f : {snat, fastpath, shared}) {
    ASSERT_TRUE(rules_.channel()->offers.Push(Offer(f)));
  }
  rules_.SyncFlows();
  const std::string text =
      "# sluicectl get nic-rules --testpmd: host1 with one endpoint and "
      "three flows (SNAT, SNAT on the Fastpath, shared-endpoint return).\n"
      "# Generated by agent_nic_test (SLUICE_UPDATE_GOLDEN=1).\n" +
      rules_.Testpmd();
  const std::string path = std::string(SLUICE_RTE_FLOW_TESTDATA) + "/agent_nic_rules.txt";
  if (getenv("SLUICE_UPDATE_GOLDEN") != nullptr) {
    std::ofstream(path) << text;
    return;
  }
  ASSERT_TRUE(std::ifstream(path).good()) << path << " is missing; run with SLUICE_UPDATE_GOLDEN=1";
  const std::string want = ReadFile(path);
  EXPECT_EQ(text, want) << "golden file " << path
                        << " differs; if intended, rerun with SLUICE_UPDATE_GOLDEN=1";

  StatsServer stats;
  const std::string socket =
      ::testing::TempDir() + "/nic_rules_test." + std::to_string(getpid()) + ".sock";
  ASSERT_TRUE(stats
                  .Start(socket,
                         [this](const std::string& request) {
                           return request == "nic-rules" ? rules_.Testpmd()
                                                         : std::string("{\"error\":\"?\"}");
                         })
                  .ok());
  const std::string command =
      std::string(SLUICECTL_PATH) + " get nic-rules --testpmd --stats-socket " + socket + " 2>&1";
  FILE* out = popen(command.c_str(), "r");
  ASSERT_NE(out, nullptr);
  std::string printed;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof(buf), out)) > 0;) printed.append(buf, n);
  EXPECT_EQ(pclose(out), 0) << printed;
  stats.Stop();
  // The golden file less its two header lines.
  const std::string body = want.substr(want.find('\n', want.find('\n') + 1) + 1);
  EXPECT_EQ(printed, body);
  EXPECT_NE(printed.find(", per flow\n# rule"), std::string::npos);
}

}  // namespace
}  // namespace sluice::agent
