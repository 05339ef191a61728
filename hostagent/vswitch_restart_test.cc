// vswitch mode, agent restart against a real private ovs-vswitchd (vswitch/ovs_test_env.h):
// the Fastpath flows an agent installed survive the next agent's start (ReconcileAtStart,
// what VswitchAgent::Setup runs) with the same flow text and counters that keep rising, while
// the one whose VIP was removed while the agent was down is deleted and counted. Needs root
// and Open vSwitch (else skip).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>

#include "common/strings.h"
#include "hostagent/vswitch_agent.h"
#include "hostagent/vswitch_fastpath.h"
#include "offload/sw/fixture_builder.h"
#include "vswitch/ovs_test_env.h"
#include "vswitch/process.h"

namespace sluice::agent {
namespace {

using vswitch::testing::DummyBridge;
using vswitch::testing::OfportOf;

DummyBridge* g_bridge = nullptr;

// Host PA 10.0.1.1 (the test bridge's tunnel address); vm1 serves VIP 10.200.0.10:80 alone
// (a stateless endpoint: its Fastpath flow is in table 0), vm2 serves UDP 10.200.0.30:53 and
// has a SNAT lease of 10.200.0.10 (its Fastpath flows: table 0 and the source side, table 4).
constexpr const char* kConfig = R"(
agent:
  name: hostx
  datapath: vswitch
  uplink: p0
  address: 10.0.1.1/24
  gateway: 10.0.1.254
vswitch:
  bridge: svfix
  run_dir: /run/unused
vms:
  - { name: vm1, port: p1, mac: "02:00:00:00:03:01", dip: 10.1.0.1, pa: 10.0.1.11, gateway: 10.1.0.254 }
  - { name: vm2, port: p2, mac: "02:00:00:00:03:02", dip: 10.1.0.2, pa: 10.0.1.12, gateway: 10.1.0.254 }
endpoints:
  - { vip: 10.200.0.10, port: 80, protocol: tcp, dip: 10.1.0.1, dip_port: 8080 }
  - { vip: 10.200.0.30, port: 53, protocol: udp, dip: 10.1.0.2, dip_port: 5353 }
snat_leases:
  - { dip: 10.1.0.2, vip: 10.200.0.10, protocol: tcp, port_start: 20192, port_count: 64 }
)";

AgentConfig Config() {
  absl::StatusOr<AgentConfig> c = ParseAgentConfig(kConfig, "hostx.yaml");
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

const std::vector<uint32_t> kVmOfports = {OfportOf(1), OfportOf(2)};
constexpr uint32_t kPeerHostPa = 0x0a000115;  // 10.0.1.21
constexpr uint32_t kRemoteVip = 0x0ac80063;   // 10.200.0.99, the peer's SNAT VIP

vswitch::OvsExecutorConfig ExecutorConfig() {
  return {.ports = g_bridge->Ports(),
          .base = g_bridge->Base(fixture::addr::kHostPa),
          .extra_flows = {{.cookie = 0x5eed,
                           .priority = 65535,
                           .match = "dl_type=0x88b5",
                           .actions = StrCat("output:", vswitch::testing::kProbeOfport)}},
          .unmanaged_cookie = kFastpathCookie,
          .unmanaged_cookie_mask = kFastpathCookieMask};
}

// A redirect for a connection from a VM behind kPeerHostPa (SNAT'd to kRemoteVip:port) to
// `vip`:`vip_port`, served by our `dip` at `dip_pa`.
packet::FastpathRedirect ToUs(uint16_t port, uint32_t vip, uint16_t vip_port, uint8_t proto,
                              uint32_t dip, uint32_t dip_pa) {
  return {.flow_src = kRemoteVip,
          .flow_dst = vip,
          .flow_src_port = port,
          .flow_dst_port = vip_port,
          .proto = proto,
          .dip = dip,
          .dst_pa = dip_pa,
          .src_host_pa = kPeerHostPa};
}

std::vector<uint8_t> ReplyOfVm1() {
  using namespace fixture;
  return (Eth{.dst = addr::kVmPortMac, .src = addr::kVmMac} /
          Ipv4{.src = 0x0a010001, .dst = kRemoteVip} / Tcp{.sport = 8080, .dport = 20001} /
          Payload{"data"})
      .Bytes();
}

// The bridge's Fastpath flows by cookie, as OVS prints them.
std::map<uint64_t, DumpedFlow> FastpathOnBridge() {
  std::map<uint64_t, DumpedFlow> out;
  absl::StatusOr<std::string> dump =
      g_bridge->ovs().Ofctl({"dump-flows", g_bridge->ovs().MgmtSocket(vswitch::testing::kBridge)});
  EXPECT_TRUE(dump.ok()) << dump.status();
  for (std::string_view line : SplitString(dump.ok() ? *dump : "", '\n')) {
    DumpedFlow f;
    if (ParseDumpedFlow(line, &f) && IsFastpathCookie(f.cookie)) out[f.cookie] = f;
  }
  return out;
}

TEST(VswitchRestartTest, FastpathFlowsSurviveARestartAndStaleOnesAreRemoved) {
  vswitch::OfctlChannel channel(&g_bridge->ovs(), vswitch::testing::kBridge);
  const AgentConfig before = Config();
  {
    // The agent before the restart: its flows, then three redirects applied.
    vswitch::OvsExecutor executor(&channel, ExecutorConfig());
    ASSERT_TRUE(ReconcileAtStart(&channel, &executor, before, kVmOfports).ok());
    const std::vector<packet::FastpathRedirect> redirects = {
        ToUs(20001, 0x0ac8000a, 80, flow::kProtoTcp, 0x0a010001, 0x0a00010b),  // vm1, table 0
        ToUs(20002, 0x0ac8001e, 53, flow::kProtoUdp, 0x0a010002, 0x0a00010c),  // vm2, table 0
        {.flow_src = 0x0ac8000a,  // vm2 as VIP 10.200.0.10:20200 to a VIP on the peer host
         .flow_dst = 0x0ac80028,
         .flow_src_port = 20200,
         .flow_dst_port = 80,
         .proto = flow::kProtoTcp,
         .dst_pa = 0x0a00011f,
         .src_host_pa = 0x0a000101}};
    std::string lines;
    for (size_t i = 0; i < redirects.size(); ++i) {
      std::vector<vswitch::OvsFlow> flows;
      ASSERT_NE(FastpathFlows(before, kVmOfports, redirects[i], kFastpathCookie | (i + 1), &flows),
                RedirectOutcome::kNotOurs);
      for (const vswitch::OvsFlow& f : flows) lines += "add " + f.Text() + "\n";
    }
    ASSERT_TRUE(channel.Bundle(lines).ok());
  }
  ASSERT_TRUE(g_bridge->PurgeDatapath().ok());
  ASSERT_TRUE(g_bridge->Send(OfportOf(1), ReplyOfVm1()).ok());
  ASSERT_TRUE(g_bridge->ovs().Appctl({"revalidator/wait"}).ok());
  const std::map<uint64_t, DumpedFlow> was = FastpathOnBridge();
  ASSERT_EQ(was.size(), 3u);
  ASSERT_EQ(was.at(kFastpathCookie | 1).packets, 1u);

  // The agent is down; the UDP VIP is removed from its config meanwhile. The next agent:
  AgentConfig after = Config();
  std::erase_if(after.endpoints, [](const EndpointConfig& e) { return e.vip == 0x0ac8001e; });
  vswitch::OvsExecutor executor(&channel, ExecutorConfig());
  absl::StatusOr<StartReconcile> start = ReconcileAtStart(&channel, &executor, after, kVmOfports);
  ASSERT_TRUE(start.ok()) << start.status();
  EXPECT_EQ(start->fastpath.adopted.size(), 2u);
  ASSERT_EQ(start->fastpath.stale.size(), 1u);
  EXPECT_EQ(start->fastpath.stale[0].cookie, kFastpathCookie | 2);
  EXPECT_EQ(start->fastpath.stale_by_reason[static_cast<size_t>(FastpathStale::kEndpointGone)], 1u);
  EXPECT_EQ(start->fastpath.next_sequence, 4u);
  EXPECT_EQ(start->flows.added + start->flows.removed, 0u) << "the agent's own flows were right";
  EXPECT_EQ(start->flows.unmanaged, 2u);

  // The kept flows are the same flows: same text as OVS prints it, counters kept.
  std::map<uint64_t, DumpedFlow> now = FastpathOnBridge();
  ASSERT_EQ(now.size(), 2u);
  EXPECT_EQ(now.count(kFastpathCookie | 2), 0u) << "the removed VIP's flow";
  for (uint64_t cookie : {kFastpathCookie | 1, kFastpathCookie | 3}) {
    ASSERT_EQ(now.count(cookie), 1u);
    EXPECT_EQ(now.at(cookie).Identity(), was.at(cookie).Identity());
    EXPECT_EQ(now.at(cookie).actions, was.at(cookie).actions);
    EXPECT_EQ(now.at(cookie).idle_timeout, was.at(cookie).idle_timeout);
    EXPECT_EQ(now.at(cookie).packets, was.at(cookie).packets);
  }
  // ... and still carry the connection: its counter rises.
  ASSERT_TRUE(g_bridge->Send(OfportOf(1), ReplyOfVm1()).ok());
  ASSERT_TRUE(g_bridge->ovs().Appctl({"revalidator/wait"}).ok());
  EXPECT_EQ(FastpathOnBridge().at(kFastpathCookie | 1).packets, 2u);

  // The adopted connections are what the flows say.
  for (const FastpathConnection& c : start->fastpath.adopted) {
    if (c.source) {
      EXPECT_EQ(c.redirect.flow_src_port, 20200);
      EXPECT_EQ(c.peer_pa, 0x0a00011fu);
    } else {
      EXPECT_EQ(c.redirect.dip, 0x0a010001u);
      EXPECT_EQ(c.redirect.flow_dst, 0x0ac8000au);
      EXPECT_EQ(c.peer_pa, kPeerHostPa);
    }
  }

  // A second start with the same config changes nothing.
  vswitch::OvsExecutor again(&channel, ExecutorConfig());
  start = ReconcileAtStart(&channel, &again, after, kVmOfports);
  ASSERT_TRUE(start.ok()) << start.status();
  EXPECT_EQ(start->fastpath.adopted.size(), 2u);
  EXPECT_TRUE(start->fastpath.stale.empty());
  EXPECT_EQ(FastpathOnBridge().size(), 2u);
}

}  // namespace
}  // namespace sluice::agent

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (geteuid() != 0 || sluice::vswitch::RunCommand({"ovs-vswitchd", "--version"}).exit_code != 0) {
    fprintf(stderr, "SKIP: needs root and ovs-vswitchd\n");
    return 77;
  }
  auto bridge = sluice::vswitch::testing::DummyBridge::Start("02:00:00:00:01:01",
                                                             sluice::fixture::addr::kHostPa);
  if (!bridge.ok()) {
    fprintf(stderr, "cannot start OVS: %s\n", std::string(bridge.status().message()).c_str());
    return 1;
  }
  sluice::agent::g_bridge = bridge->get();
  return RUN_ALL_TESTS();
}
