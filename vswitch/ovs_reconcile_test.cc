// Restart reconciliation against a live private ovs-vswitchd: a second executor with the
// desired state (some rules changed, one gone, one new) finds a bridge that also lost a base
// flow and gained a stray one; Reconcile keeps what is right (counters and age untouched),
// fixes the rest in one bundle, and traffic keeps flowing through the kept flows.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>

#include "common/strings.h"
#include "offload/sw/fixture_builder.h"
#include "vswitch/executor.h"
#include "vswitch/ovs_test_env.h"
#include "vswitch/process.h"

namespace sluice::vswitch {
namespace {

using fixture::Eth;
using fixture::Gre;
using fixture::Ipv4;
using fixture::Payload;
using fixture::Tcp;
using flow::Action;
using flow::Ipv4Match;
using flow::PortMatch;
using flow::Rule;
using testing::DummyBridge;
using testing::OfportOf;
using namespace fixture::addr;

DummyBridge* g_bridge = nullptr;

OvsFlow ProbeFlow() {
  return {.cookie = 0x5eed,
          .priority = 65535,
          .match = "dl_type=0x88b5",
          .actions = "output:" + std::to_string(testing::kProbeOfport)};
}

OvsExecutorConfig Config() {
  return {
      .ports = g_bridge->Ports(), .base = g_bridge->Base(kHostPa), .extra_flows = {ProbeFlow()}};
}

Rule Inbound() {
  return Rule{.id = 1,
              .priority = 100,
              .match = {.in_port = kUplinkPort,
                        .tunnel = flow::Tunnel::kGre,
                        .outer_dst = Ipv4Match::Exact(kHostPa),
                        .dst = Ipv4Match::Exact(kVip),
                        .proto = flow::kProtoTcp,
                        .dst_port = PortMatch::Exact(80)},
              .actions = {Action::Decap(), Action::SetIpv4Dst(kDip), Action::SetL4Dst(8080),
                          Action::DecTtl(), Action::SetMac(kVmPortMac, kVmMac), Action::Count(),
                          Action::Output(kVmPort)}};
}

Rule Dsr(uint16_t vip_port) {
  return Rule{.id = 2,
              .priority = 100,
              .match = {.in_port = kVmPort,
                        .src = Ipv4Match::Exact(kDip),
                        .proto = flow::kProtoTcp,
                        .src_port = PortMatch::Exact(8080)},
              .actions = {Action::SetIpv4Src(kVip), Action::SetL4Src(vip_port), Action::DecTtl(),
                          Action::SetMac(kHostMac, kRouterMac), Action::Count(),
                          Action::Output(kUplinkPort)}};
}

Rule Block(uint64_t id, uint32_t src) {
  return Rule{.id = id,
              .priority = 200,
              .match = {.src = Ipv4Match::Exact(src)},
              .actions = {Action::Count(), Action::Drop()}};
}

std::vector<uint8_t> GreSyn() {
  return (Eth{.dst = kHostMac, .src = kRouterMac} / Ipv4{.src = kMuxPa, .dst = kHostPa} / Gre{} /
          Ipv4{.src = kClient, .dst = kVip, .ttl = 60} /
          Tcp{.sport = kClientPort, .dport = 80, .flags = fixture::kSyn} / Payload{"hi"})
      .Bytes();
}

std::string DumpLine(const std::string& dump, const std::string& cookie) {
  for (std::string_view line : sluice::SplitString(dump, '\n')) {
    if (line.find("cookie=" + cookie + ",") != std::string_view::npos) return std::string(line);
  }
  return "";
}

TEST(OvsReconcileTest, RestartKeepsWhatIsRightAndFixesTheRest) {
  OfctlChannel channel(&g_bridge->ovs(), testing::kBridge);
  {
    // The agent before the restart.
    OvsExecutor before(&channel, Config());
    ASSERT_TRUE(before.Add(Inbound()).ok);
    ASSERT_TRUE(before.Add(Dsr(80)).ok);
    ASSERT_TRUE(before.Add(Block(3, 0x01020304)).ok);
    ASSERT_TRUE(before.Reconcile().ok());
  }
  ASSERT_TRUE(g_bridge->PurgeDatapath().ok());
  auto sent = g_bridge->Send(OfportOf(kUplinkPort), GreSyn());
  ASSERT_TRUE(sent.ok()) << sent.status();
  ASSERT_EQ(sent->size(), 1u);
  ASSERT_TRUE(g_bridge->ovs().Appctl({"revalidator/wait"}).ok());

  // While the agent is down: someone deletes the ARP base flow and adds a stray flow.
  const std::string mgmt = g_bridge->ovs().MgmtSocket(testing::kBridge);
  ASSERT_TRUE(
      g_bridge->ovs().Ofctl({"del-flows", "--strict", mgmt, "priority=64000,arp,in_port=1"}).ok());
  ASSERT_TRUE(
      g_bridge->ovs().Ofctl({"add-flow", mgmt, "priority=300,cookie=0x77,ip actions=drop"}).ok());
  absl::StatusOr<std::string> dump_before = channel.DumpFlows();
  ASSERT_TRUE(dump_before.ok());
  const std::string inbound_before = DumpLine(*dump_before, "0x1");
  ASSERT_NE(inbound_before.find("n_packets=1,"), std::string::npos) << inbound_before;

  // The restarted agent: rule 1 unchanged, rule 2 changed, rule 3 gone, rule 4 new.
  OvsExecutor after(&channel, Config());
  ASSERT_TRUE(after.Add(Inbound()).ok);
  ASSERT_TRUE(after.Add(Dsr(8000)).ok);
  ASSERT_TRUE(after.Add(Block(4, 0x05060708)).ok);
  absl::StatusOr<ReconcileReport> report = after.Reconcile();
  ASSERT_TRUE(report.ok()) << report.status();
  // Desired: 5 base flows (GRE steering, ARP, LOCAL→uplink, miss, probe) + 3 rules.
  EXPECT_EQ(report->desired, 8u);
  EXPECT_EQ(report->added, 3u) << "ARP base flow, changed rule 2, new rule 4";
  EXPECT_EQ(report->kept, 5u);
  EXPECT_EQ(report->removed, 2u) << "rule 3 and the stray flow";

  // The kept inbound flow was not touched: same counters, not re-created (age goes on).
  absl::StatusOr<std::string> dump_after = channel.DumpFlows();
  ASSERT_TRUE(dump_after.ok());
  const std::string inbound_after = DumpLine(*dump_after, "0x1");
  EXPECT_NE(inbound_after.find("n_packets=1,"), std::string::npos) << inbound_after;
  EXPECT_EQ(DumpLine(*dump_after, "0x3"), "");
  EXPECT_EQ(DumpLine(*dump_after, "0x77"), "");
  EXPECT_NE(DumpLine(*dump_after, "0x2").find("set_field:8000->tcp_src"), std::string::npos);
  EXPECT_NE(DumpLine(*dump_after, "0xfff0000000000001").find("arp"), std::string::npos);

  // The bridge now equals the desired state, and a second reconcile changes nothing.
  absl::StatusOr<std::string> diff = channel.Diff(after.DesiredFlows());
  ASSERT_TRUE(diff.ok());
  EXPECT_EQ(*diff, "");
  report = after.Reconcile();
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->kept, 8u);
  EXPECT_EQ(report->added + report->removed, 0u);

  // Traffic still takes the kept flow.
  sent = g_bridge->Send(OfportOf(kUplinkPort), GreSyn());
  ASSERT_TRUE(sent.ok()) << sent.status();
  ASSERT_EQ(sent->size(), 1u);
  EXPECT_EQ((*sent)[0].first, OfportOf(kVmPort));
  ASSERT_TRUE(g_bridge->ovs().Appctl({"revalidator/wait"}).ok());
  ASSERT_TRUE(after.QueryCounters().ok());
  EXPECT_EQ(after.Status(1)->packets, 2u);
}

}  // namespace
}  // namespace sluice::vswitch

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
  sluice::vswitch::g_bridge = bridge->get();
  return RUN_ALL_TESTS();
}
