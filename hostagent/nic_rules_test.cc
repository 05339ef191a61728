#include "hostagent/nic_rules.h"

#include <gtest/gtest.h>

#include "hostagent/rules.h"
#include "offload/rte_flow/fake_flow_api.h"

namespace sluice::agent {
namespace {

std::vector<flow::Rule> Rules(int endpoints) {
  AgentConfig config;
  config.name = "host1";
  config.address = {.addr = 0x0a650015, .length = 24};  // 10.101.0.21/24
  config.gateway = 0x0a650001;
  config.vms.push_back(VmConfig{.name = "vm1",
                                .port = "net_vhost0",
                                .mac = {2, 0, 0x0a, 1, 0, 1},
                                .dip = 0x0a010001,
                                .pa = 0x0a65001f,
                                .gateway = 0x0a0100fe});
  for (int i = 0; i < endpoints; ++i) {
    config.endpoints.push_back(EndpointConfig{.vip = 0x0ac8000a,
                                              .port = static_cast<uint16_t>(80 + i),
                                              .proto = flow::kProtoTcp,
                                              .dip = 0x0a010001,
                                              .dip_port = static_cast<uint16_t>(8080 + i)});
  }
  PortMap ports{.uplink_port = 0, .uplink_mac = {2, 0, 0, 0, 0, 0x21}, .vm_ports = {1},
                .vm_port_macs = {{2, 0, 0, 0, 0, 0x31}}};
  return BuildAgentRules(config, ports, {2, 0, 0, 0, 0, 1});
}

TEST(AgentNicRulesTest, SyncsWholeSetsAndLeaksNothing) {
  nic::FakeFlowApi api;
  nic::NicExecutor executor(&api, {});
  AgentNicRules rules(&executor, 0, flow::kDefaultGuePort);
  EXPECT_FALSE(rules.Sync());  // nothing posted yet
  const std::vector<flow::Rule> three = Rules(3);
  rules.Post(three);
  EXPECT_TRUE(rules.Sync());
  EXPECT_FALSE(rules.Sync());  // unchanged
  EXPECT_EQ(api.live.size(), three.size());
  // Endpoints come and go 50 times: the NIC always holds exactly the current set.
  for (int cycle = 0; cycle < 50; ++cycle) {
    const std::vector<flow::Rule> set = Rules(cycle % 2 == 0 ? 1 : 3);
    rules.Post(set);
    ASSERT_TRUE(rules.Sync());
    ASSERT_EQ(api.live.size(), set.size()) << "cycle " << cycle;
  }
  const std::string testpmd = rules.Testpmd();
  EXPECT_NE(testpmd.find("# placement: nic"), std::string::npos) << testpmd;
  EXPECT_NE(testpmd.find("flow create 0"), std::string::npos) << testpmd;
}

TEST(AgentNicRulesTest, RefusingPortLeavesRulesInSoftwareWithTheReason) {
  nic::FakeFlowApi api;
  api.refuse = [](const nic::FlowSpec&) { return std::string("Function not implemented"); };
  nic::NicExecutor executor(&api, {});
  AgentNicRules rules(&executor, 0, flow::kDefaultGuePort);
  rules.Post(Rules(2));
  ASSERT_TRUE(rules.Sync());
  EXPECT_TRUE(api.live.empty());
  JsonWriter j;
  j.BeginObject();
  rules.WriteStats(j);
  j.EndObject();
  EXPECT_NE(j.str().find("Function not implemented"), std::string::npos) << j.str();
  EXPECT_NE(rules.Testpmd().find("# placement: software"), std::string::npos) << rules.Testpmd();
}

}  // namespace
}  // namespace sluice::agent
