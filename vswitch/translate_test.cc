// Golden OpenFlow text for the host agent's packet walks and the refusals OVS must give.
// Regenerate the golden file: SLUICE_UPDATE_GOLDEN=1 vswitch_translate_test.
#include "vswitch/translate.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "hostagent/rules.h"

namespace sluice::vswitch {
namespace {

using flow::Action;
using flow::Ipv4Match;
using flow::PortMatch;
using flow::Rule;
using flow::Tunnel;

uint32_t Ip(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return uint32_t{a} << 24 | uint32_t{b} << 16 | uint32_t{c} << 8 | d;
}
const flow::MacAddr kBridgeMac = {2, 0, 0, 0, 1, 1};
const flow::MacAddr kVmMac = {2, 0, 0, 0, 3, 1};
const flow::MacAddr kRouterMac = {2, 0, 0, 0, 0, 1};

// Ports: IR 0 = uplink (OpenFlow 1), IR 1 = vm1 (2), IR 2 = vm2 (3); GRE port 20; slow path 10.
OvsPorts Ports() {
  return {.ofport = {{0, 1}, {1, 2}, {2, 3}}, .gre_port = 20, .slow_path_port = 10};
}

Rule InboundGre() {
  return Rule{.id = 1,
              .priority = 100,
              .match = {.in_port = 0,
                        .tunnel = Tunnel::kGre,
                        .outer_dst = Ipv4Match::Exact(Ip(10, 0, 1, 1)),
                        .dst = Ipv4Match::Exact(Ip(10, 200, 0, 10)),
                        .proto = flow::kProtoTcp,
                        .dst_port = PortMatch::Exact(80)},
              .actions = {Action::Decap(), Action::SetIpv4Dst(Ip(10, 1, 0, 1)),
                          Action::SetL4Dst(8080), Action::DecTtl(),
                          Action::SetMac(kBridgeMac, kVmMac), Action::Count(), Action::Output(1)},
              .name = "inbound-gre vip=10.200.0.10:80/tcp dip=10.1.0.1:8080"};
}

Rule DsrReturn() {
  return Rule{
      .id = 2,
      .priority = 100,
      .match = {.in_port = 1,
                .src = Ipv4Match::Exact(Ip(10, 1, 0, 1)),
                .proto = flow::kProtoTcp,
                .src_port = PortMatch::Exact(8080)},
      .actions = {Action::SetIpv4Src(Ip(10, 200, 0, 10)), Action::SetL4Src(80), Action::DecTtl(),
                  Action::SetMac(kBridgeMac, kRouterMac), Action::Count(), Action::Output(0)},
      .name = "dsr-return dip=10.1.0.1:8080 as vip=10.200.0.10:80"};
}

std::string Golden(const std::vector<Rule>& rules) {
  std::string text;
  for (const Rule& rule : rules) {
    absl::StatusOr<OvsFlow> flow = Translate(rule, Ports());
    text += "# " + flow::ToString(rule) + "\n";
    text += flow.ok() ? flow->Text() : "# refused: " + std::string(flow.status().message());
    text += "\n";
  }
  for (const OvsFlow& f : BaseFlows(
           {.uplink_ofport = 1, .tunnel_endpoints = {Ip(10, 0, 1, 1)}, .slow_path_port = 10})) {
    text += f.Text() + "\n";
  }
  return text;
}

void ExpectGolden(const std::string& name, const std::string& got) {
  const std::string path = std::string(SLUICE_VSWITCH_TESTDATA) + "/" + name;
  if (getenv("SLUICE_UPDATE_GOLDEN") != nullptr) {
    std::ofstream(path) << got;
    return;
  }
  std::ifstream in(path);
  ASSERT_TRUE(in.good()) << "missing " << path << " (SLUICE_UPDATE_GOLDEN=1 writes it)";
  std::stringstream want;
  want << in.rdbuf();
  EXPECT_EQ(got, want.str()) << "golden file " << path;
}

TEST(TranslateTest, InboundGreDecapDnat) {
  absl::StatusOr<OvsFlow> flow = Translate(InboundGre(), Ports());
  ASSERT_TRUE(flow.ok()) << flow.status();
  EXPECT_EQ(flow->Text(),
            "table=0,priority=100,cookie=0x1,tcp,in_port=20,tun_dst=10.0.1.1,nw_dst=10.200.0.10,"
            "tp_dst=80,nw_frag=no actions=set_field:10.1.0.1->ip_dst,set_field:8080->tcp_dst,"
            "dec_ttl,set_field:02:00:00:00:01:01->eth_src,set_field:02:00:00:00:03:01->eth_dst,"
            "output:2");
}

TEST(TranslateTest, DsrReturnRewritesSource) {
  absl::StatusOr<OvsFlow> flow = Translate(DsrReturn(), Ports());
  ASSERT_TRUE(flow.ok()) << flow.status();
  EXPECT_EQ(flow->match, "tcp,in_port=2,nw_src=10.1.0.1,tp_src=8080,nw_frag=no");
  EXPECT_EQ(flow->actions,
            "set_field:10.200.0.10->ip_src,set_field:80->tcp_src,dec_ttl,"
            "set_field:02:00:00:00:01:01->eth_src,set_field:02:00:00:00:00:01->eth_dst,output:1");
}

TEST(TranslateTest, TcpFlagsAsOvsWritesThem) {
  Rule fin = DsrReturn();
  fin.match.tcp_flags = flow::kTcpFlagFin;
  fin.match.tcp_flags_mask = flow::kTcpFlagFin | flow::kTcpFlagSyn;
  absl::StatusOr<OvsFlow> flow = Translate(fin, Ports());
  ASSERT_TRUE(flow.ok()) << flow.status();
  EXPECT_EQ(flow->match, "tcp,in_port=2,nw_src=10.1.0.1,tp_src=8080,tcp_flags=+fin-syn,nw_frag=no");
}

TEST(TranslateTest, MasksUdpAgeDropSlowPathAndHairpin) {
  Rule udp{.id = 7,
           .priority = 5,
           .match = {.in_port = 0,
                     .src = Ipv4Match{.addr = Ip(198, 51, 100, 0), .mask = 0xffffff00u},
                     .dst = Ipv4Match{.addr = Ip(10, 0, 0, 1), .mask = 0xff00ff00u},
                     .proto = flow::kProtoUdp,
                     .dst_port = PortMatch{.port = 0x1000, .mask = 0xf000}},
           .actions = {Action::SetL4Dst(53), Action::Age(30), Action::Output(0)}};
  absl::StatusOr<OvsFlow> flow = Translate(udp, Ports());
  ASSERT_TRUE(flow.ok()) << flow.status();
  EXPECT_EQ(flow->Text(),
            "table=0,priority=5,cookie=0x7,idle_timeout=30,udp,in_port=1,nw_src=198.51.100.0/24,"
            "nw_dst=10.0.0.0/255.0.255.0,tp_dst=0x1000/0xf000,nw_frag=no "
            "actions=set_field:53->udp_dst,in_port");

  Rule drop{.id = 8, .actions = {Action::Count(), Action::Drop()}};
  EXPECT_EQ(Translate(drop, Ports())->Text(),
            "table=0,priority=0,cookie=0x8,ip,nw_frag=no actions=drop");
  Rule slow{.id = 9, .match = {.proto = 47}, .actions = {Action::ToSoftware()}};
  EXPECT_EQ(Translate(slow, Ports())->actions, "output:10");
  EXPECT_EQ(Translate(slow, Ports())->match, "ip,nw_proto=47,nw_frag=no");
  OvsPorts no_slow_path = Ports();
  no_slow_path.slow_path_port = 0;
  EXPECT_EQ(Translate(slow, no_slow_path)->actions, "controller");
}

TEST(TranslateTest, RefusesWhatOvsCannotExpressWithReasons) {
  Rule ipip = InboundGre();
  ipip.match.tunnel = Tunnel::kIpip;
  absl::StatusOr<OvsFlow> r = Translate(ipip, Ports());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(r.status().message().find("IPv4-in-IPv4"), std::string_view::npos);
  EXPECT_NE(r.status().message().find("rule 1"), std::string_view::npos);

  Rule gue = InboundGre();
  gue.match.tunnel = Tunnel::kGue;
  EXPECT_EQ(Translate(gue, Ports()).status().code(), absl::StatusCode::kUnimplemented);

  Rule no_mac = InboundGre();
  no_mac.actions = {Action::Decap(), Action::Output(1)};
  r = Translate(no_mac, Ports());
  EXPECT_NE(r.status().message().find("set_mac"), std::string_view::npos) << r.status();

  Rule encap{.id = 3,
             .actions = {Action::Encap({.type = Tunnel::kGre, .outer_dst = Ip(10, 0, 1, 1)}),
                         Action::Output(0)}};
  EXPECT_EQ(Translate(encap, Ports()).status().code(), absl::StatusCode::kUnimplemented);

  Rule unmapped = DsrReturn();
  unmapped.actions.back() = Action::Output(9);
  r = Translate(unmapped, Ports());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("output port 9"), std::string_view::npos);

  Rule high = DsrReturn();
  high.priority = 70000;
  EXPECT_EQ(Translate(high, Ports()).status().code(), absl::StatusCode::kInvalidArgument);

  Rule icmp_ports{.id = 4,
                  .match = {.proto = flow::kProtoIcmp, .dst_port = PortMatch::Exact(7)},
                  .actions = {Action::Drop()}};
  EXPECT_EQ(Translate(icmp_ports, Ports()).status().code(), absl::StatusCode::kUnimplemented);

  Rule invalid{.id = 5, .actions = {}};
  EXPECT_EQ(Translate(invalid, Ports()).status().code(), absl::StatusCode::kInvalidArgument);

  Rule no_gre_port = InboundGre();
  OvsPorts ports = Ports();
  ports.gre_port = 0;
  EXPECT_EQ(Translate(no_gre_port, ports).status().code(), absl::StatusCode::kFailedPrecondition);
}

// A DIP:port serving several VIPs: DNAT recorded in conntrack, replies un-NATed from it.
TEST(TranslateTest, ConntrackForPerFlowNatState) {
  absl::StatusOr<std::vector<OvsFlow>> in =
      TranslateRule(InboundGre(), Ports(), {.conntrack = true, .ct_zone = 7});
  ASSERT_TRUE(in.ok()) << in.status();
  ASSERT_EQ(in->size(), 1u);
  EXPECT_EQ((*in)[0].actions,
            "ct(commit,zone=7,nat(dst=10.1.0.1:8080)),dec_ttl,"
            "set_field:02:00:00:00:01:01->eth_src,set_field:02:00:00:00:03:01->eth_dst,output:2");
  absl::StatusOr<std::vector<OvsFlow>> back =
      TranslateRule(DsrReturn(), Ports(), {.conntrack = true, .ct_zone = 7});
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), 2u);
  EXPECT_EQ((*back)[0].Text(),
            "table=0,priority=100,cookie=0x2,tcp,in_port=2,nw_src=10.1.0.1,tp_src=8080,nw_frag=no "
            "actions=set_field:0x2->reg0,ct(zone=7,nat,table=1)");
  EXPECT_EQ((*back)[1].Text(),
            "table=1,priority=100,cookie=0x2,ct_state=+trk+rpl,reg0=0x2,tcp actions=dec_ttl,"
            "set_field:02:00:00:00:01:01->eth_src,set_field:02:00:00:00:00:01->eth_dst,output:1");
  Rule both = DsrReturn();
  both.actions.insert(both.actions.begin(), Action::SetIpv4Dst(Ip(1, 2, 3, 4)));
  EXPECT_EQ(TranslateRule(both, Ports(), {.conntrack = true}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TranslateTest, GoldenWalks) { ExpectGolden("walks.txt", Golden({InboundGre(), DsrReturn()})); }

// The agent's own rule builder: its IPIP/GUE inbound rules are refused with the reason, the
// DSR return rules translate.
TEST(TranslateTest, GoldenAgentRules) {
  agent::AgentConfig config;
  config.vms.push_back(
      {.name = "vm1", .mac = kVmMac, .dip = Ip(10, 1, 0, 1), .pa = Ip(10, 0, 1, 1)});
  config.endpoints.push_back({.vip = Ip(10, 200, 0, 10),
                              .port = 80,
                              .proto = flow::kProtoTcp,
                              .dip = Ip(10, 1, 0, 1),
                              .dip_port = 8080});
  agent::PortMap ports{
      .uplink_port = 0, .uplink_mac = kBridgeMac, .vm_ports = {1}, .vm_port_macs = {kBridgeMac}};
  ExpectGolden("agent_rules.txt", Golden(agent::BuildAgentRules(config, ports, kRouterMac)));
}

}  // namespace
}  // namespace sluice::vswitch
