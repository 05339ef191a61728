// vswitch mode without OVS: the bridge plan, the agent's rules as OpenFlow (GRE inbound,
// conntrack NAT for shared DIP:ports), one bundle per config change, miss classification.
#include "hostagent/vswitch_agent.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "common/strings.h"

namespace sluice::agent {
namespace {

// The lab's host2 in vswitch mode: VIP1 and VIP2 share vm3's and vm4's DIP:port 8080.
constexpr const char* kHost2 = R"(
agent:
  name: host2
  datapath: vswitch
  uplink: eth0
  address: 10.101.0.22/24
  gateway: 10.101.0.1
vswitch:
  bridge: br-sl
  run_dir: /run/test-ovs
vms:
  - { name: vm3, port: vm3, mac: "02:00:0a:01:00:03", dip: 10.1.0.3, pa: 10.101.0.33, gateway: 10.1.0.254 }
  - { name: vm4, port: vm4, mac: "02:00:0a:01:00:04", dip: 10.1.0.4, pa: 10.101.0.34, gateway: 10.1.0.254 }
endpoints:
  - { vip: 10.200.0.10, port: 80, protocol: tcp, dip: 10.1.0.3, dip_port: 8080 }
  - { vip: 10.200.0.10, port: 80, protocol: tcp, dip: 10.1.0.4, dip_port: 8080 }
  - { vip: 10.200.0.20, port: 80, protocol: tcp, dip: 10.1.0.3, dip_port: 8080 }
  - { vip: 10.200.0.20, port: 80, protocol: tcp, dip: 10.1.0.4, dip_port: 8080 }
  - { vip: 10.200.0.30, port: 53, protocol: udp, dip: 10.1.0.4, dip_port: 5353 }
snat_leases:
  - { dip: 10.1.0.3, vip: 10.200.0.10, protocol: tcp, port_start: 20128, port_count: 64 }
  - { dip: 10.1.0.4, vip: 10.200.0.10, protocol: tcp, port_start: 20192, port_count: 64 }
)";

const flow::MacAddr kBridgeMac = {2, 0, 0, 0, 0x22, 1};
const flow::MacAddr kRouterMac = {2, 0, 0x0a, 0x65, 0, 1};
const std::vector<flow::MacAddr> kVmPortMacs = {{2, 0, 0, 0, 0x33, 1}, {2, 0, 0, 0, 0x34, 1}};

class FakeChannel : public vswitch::OpenFlowChannel {
 public:
  absl::StatusOr<std::string> DumpFlows() override { return std::string(); }
  absl::Status Bundle(const std::string& lines) override {
    bundles.push_back(lines);
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> Diff(const std::string&) override { return std::string(); }
  std::vector<std::string> bundles;
};

AgentConfig Host2() {
  absl::StatusOr<AgentConfig> c = ParseAgentConfig(kHost2, "host2.yaml");
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

size_t Lines(const std::string& text) { return std::count(text.begin(), text.end(), '\n'); }

TEST(VswitchAgentTest, ConfigReadsTheVswitchSection) {
  AgentConfig c = Host2();
  EXPECT_EQ(c.datapath, Datapath::kVswitch);
  EXPECT_EQ(c.vswitch.bridge, "br-sl");
  EXPECT_EQ(c.vswitch.run_dir, "/run/test-ovs");
  EXPECT_TRUE(c.vswitch.start_ovs);
  EXPECT_EQ(c.vswitch.slow_path_port, "sl-slowpath");

  std::string yaml = kHost2;
  yaml.replace(yaml.find("uplink: eth0"), 12, "uplink: \"net_af_packet0,iface=eth0\"");
  absl::StatusOr<AgentConfig> bad = ParseAgentConfig(yaml, "host2.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("agent.uplink"), std::string_view::npos)
      << bad.status().message();
  yaml = kHost2;
  yaml.replace(yaml.find("datapath: vswitch"), 17, "datapath: dpdk");
  bad = ParseAgentConfig(yaml, "host2.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("only with agent.datapath: vswitch"),
            std::string_view::npos)
      << bad.status().message();
}

TEST(VswitchAgentTest, ConfigReadsPmdSettingsOnlyWithDpdk) {
  std::string yaml = kHost2;
  const std::string run_dir = "  run_dir: /run/test-ovs\n";
  yaml.replace(yaml.find(run_dir), run_dir.size(),
               run_dir + "  dpdk: true\n  pmd_cpu_mask: \"0x2\"\n  pmd_max_sleep_us: 1000\n");
  absl::StatusOr<AgentConfig> c = ParseAgentConfig(yaml, "host2.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->vswitch.dpdk);
  EXPECT_EQ(c->vswitch.pmd_cpu_mask, "0x2");
  EXPECT_EQ(c->vswitch.pmd_max_sleep_us, 1000u);

  struct Bad {
    std::string from, to, message;
  };
  for (const Bad& bad : std::vector<Bad>{
           {"pmd_cpu_mask: \"0x2\"", "pmd_cpu_mask: \"0x0\"", "'0x0' is not a CPU mask"},
           {"pmd_cpu_mask: \"0x2\"", "pmd_cpu_mask: core1", "'core1' is not a CPU mask"},
           {"pmd_max_sleep_us: 1000", "pmd_max_sleep_us: 20000", "vswitch.pmd_max_sleep_us"},
           {"dpdk: true", "dpdk: false", "only with dpdk: true"}}) {
    std::string y = yaml;
    y.replace(y.find(bad.from), bad.from.size(), bad.to);
    absl::StatusOr<AgentConfig> r = ParseAgentConfig(y, "host2.yaml");
    ASSERT_FALSE(r.ok()) << bad.to;
    EXPECT_NE(r.status().message().find(bad.message), std::string_view::npos)
        << r.status().message();
  }
}

TEST(VswitchAgentTest, BootVmOnVhostUserBecomesDpdkVhostUserClientPort) {
  std::string yaml = kHost2;
  const std::string vm3_port = "port: vm3,";
  yaml.replace(yaml.find(vm3_port), vm3_port.size(),
               "port: \"net_vhost_vm3,iface=/run/lab/vm3.sock,client=1\",");
  absl::StatusOr<AgentConfig> c = ParseAgentConfig(yaml, "host2.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  const VswitchPlan plan = PlanVswitch(*c, kBridgeMac, kVmPortMacs);
  ASSERT_EQ(plan.bridge.ports.size(), 5u);
  const vswitch::PortSpec& vm3 = plan.bridge.ports[1];
  EXPECT_EQ(vm3.name, "net_vhost_vm3");
  EXPECT_EQ(vm3.type, "dpdkvhostuserclient");
  EXPECT_EQ(vm3.ofport, kVswitchFirstVmOfport);
  EXPECT_EQ(vm3.options.at("vhost-server-path"), "/run/lab/vm3.sock");
  EXPECT_EQ(plan.bridge.ports[2].type, "");  // vm4 stays a kernel interface

  // OVS as the vhost-user server (QEMU the client) and relative socket paths are refused.
  for (const std::string port : {"net_vhost_vm3,iface=/run/lab/vm3.sock",
                                 "net_vhost_vm3,iface=vm3.sock,client=1",
                                 "net_af_packet_vm3,iface=vm3"}) {
    std::string y = kHost2;
    y.replace(y.find(vm3_port), vm3_port.size(), "port: \"" + port + "\",");
    absl::StatusOr<AgentConfig> bad = ParseAgentConfig(y, "host2.yaml");
    ASSERT_FALSE(bad.ok()) << port;
    EXPECT_NE(bad.status().message().find("vms[0].port: with datapath: vswitch"),
              std::string_view::npos)
        << bad.status().message();
  }
}

TEST(VswitchAgentTest, PlanHasPortsArpAnswersAndTaggedMisses) {
  const VswitchPlan plan = PlanVswitch(Host2(), kBridgeMac, kVmPortMacs);
  ASSERT_EQ(plan.bridge.ports.size(), 5u);  // uplink, vm3, vm4, GRE, slow path
  EXPECT_EQ(plan.bridge.ports[0].name, "eth0");
  EXPECT_EQ(plan.bridge.ports[2].ofport, kVswitchFirstVmOfport + 1);
  EXPECT_EQ(plan.bridge.ports[3].type, "gre");
  EXPECT_EQ(plan.bridge.ports[4].type, "internal");
  EXPECT_EQ(plan.bridge.hwaddr, "02:00:00:00:22:01");
  // The GRE tunnel endpoints: the host PA and both VMs' PAs.
  EXPECT_EQ(plan.executor.base.tunnel_endpoints,
            (std::vector<uint32_t>{0x0a650016, 0x0a650021, 0x0a650022}));
  std::string extra;
  for (const vswitch::OvsFlow& f : plan.executor.extra_flows) extra += f.Text() + "\n";
  EXPECT_NE(extra.find("arp,in_port=3,arp_tpa=10.1.0.254,arp_op=1 actions=move:NXM_OF_ETH_SRC[]"
                       "->NXM_OF_ETH_DST[],set_field:02:00:00:00:34:01->eth_src"),
            std::string::npos)
      << extra;
  EXPECT_NE(extra.find("priority=1,cookie=0xfff00000000112c1,in_port=300 actions=push_vlan:"
                       "0x8100,set_field:4396->vlan_vid,output:301"),
            std::string::npos)
      << extra;
  EXPECT_NE(extra.find("table=1,priority=0"), std::string::npos) << extra;
  // Fastpath redirects to any of the tunnel endpoints go to the agent, tagged.
  EXPECT_NE(extra.find("udp,in_port=1,nw_dst=10.101.0.33,tp_dst=6090,nw_frag=no actions="
                       "push_vlan:0x8100,set_field:8098->vlan_vid,output:301"),
            std::string::npos)
      << extra;
}

TEST(VswitchAgentTest, RulesAreGreWithConntrackForSharedDipPorts) {
  const AgentConfig config = Host2();
  const VswitchPlan plan = PlanVswitch(config, kBridgeMac, kVmPortMacs);
  FakeChannel channel;
  vswitch::OvsExecutor executor(&channel, plan.executor);
  EXPECT_EQ(StageAgentRules(config, plan.ports, kRouterMac, &executor), 0u);
  ASSERT_TRUE(executor.Commit().ok());
  ASSERT_EQ(channel.bundles.size(), 1u);
  const std::string& b = channel.bundles[0];
  // 5 endpoints: 5 GRE inbound rules; returns: one per shared DIP:port (conntrack: 2 flows
  // each) and the UDP endpoint's stateless DSR rule.
  size_t rules = 0;
  for (const vswitch::OvsRuleStatus& st : executor.Statuses()) {
    EXPECT_EQ(st.error, "") << st.name;
    ++rules;
  }
  EXPECT_EQ(rules, 5u + 3u);
  EXPECT_NE(b.find("add table=0,priority=100,cookie=0xb,tcp,in_port=300,tun_dst=10.101.0.33,"
                   "nw_dst=10.200.0.20,tp_dst=80,nw_frag=no actions=ct(commit,zone=1,nat(dst="
                   "10.1.0.3:8080)),dec_ttl,set_field:02:00:00:00:33:01->eth_src,set_field:02:00:"
                   "0a:01:00:03->eth_dst,output:2\n"),
            std::string::npos)
      << b;
  // vm3's return rule (endpoint 0): un-NAT by conntrack, then DSR to the router.
  EXPECT_NE(b.find("cookie=0x2,tcp,in_port=2,nw_src=10.1.0.3,tp_src=8080,nw_frag=no actions="
                   "set_field:0x2->reg0,ct(zone=1,nat,table=1)"),
            std::string::npos)
      << b;
  EXPECT_NE(b.find("table=1,priority=100,cookie=0x2,ct_state=+trk+rpl,reg0=0x2,tcp actions="
                   "dec_ttl,set_field:02:00:00:00:22:01->eth_src,set_field:02:00:0a:65:00:01->"
                   "eth_dst,output:1"),
            std::string::npos)
      << b;
  // The UDP endpoint (not shared): stateless.
  EXPECT_NE(b.find("cookie=0x12,udp,in_port=3,nw_src=10.1.0.4,tp_src=5353,nw_frag=no actions="
                   "set_field:10.200.0.30->ip_src,set_field:53->udp_src,dec_ttl"),
            std::string::npos)
      << b;
  EXPECT_EQ(b.find("ipip"), std::string::npos);
}

TEST(VswitchAgentTest, AConfigChangeIsOneBundleOfTheDifference) {
  AgentConfig config = Host2();
  const VswitchPlan plan = PlanVswitch(config, kBridgeMac, kVmPortMacs);
  FakeChannel channel;
  vswitch::OvsExecutor executor(&channel, plan.executor);
  StageAgentRules(config, plan.ports, kRouterMac, &executor);
  ASSERT_TRUE(executor.Commit().ok());
  // Drop the UDP endpoint: its inbound and return rules go, nothing else is rewritten.
  config.endpoints.pop_back();
  StageAgentRules(config, plan.ports, kRouterMac, &executor);
  ASSERT_TRUE(executor.Commit().ok());
  ASSERT_EQ(channel.bundles.size(), 2u);
  EXPECT_EQ(Lines(channel.bundles[1]), 2u) << channel.bundles[1];
  EXPECT_NE(channel.bundles[1].find("delete_strict table=0,priority=100,udp,in_port=300"),
            std::string::npos)
      << channel.bundles[1];
}

TEST(VswitchAgentTest, SnatThroughConntrackPerLease) {
  const AgentConfig config = Host2();
  const VswitchPlan plan = PlanVswitch(config, kBridgeMac, kVmPortMacs);
  std::string text;
  for (const vswitch::OvsFlow& f : SnatFlows(config, plan, kRouterMac)) text += f.Text() + "\n";
  // Per VM: outbound SNAT to its lease, the exhaustion counter and delivery of un-NATed
  // replies; one GRE entry per VIP; table 4's way to the router.
  EXPECT_EQ(Lines(text), 8u) << text;
  EXPECT_NE(text.find("table=0,priority=50,cookie=0xfff0000000020001,tcp,in_port=3,nw_src="
                      "10.1.0.4,nw_frag=no actions=ct(commit,zone=2,nat(src=10.200.0.10:20192-"
                      "20255),table=4)\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("table=4,priority=10,cookie=0xfff0000000070000,ip actions=dec_ttl,"
                      "set_field:02:00:00:00:22:01->eth_src,set_field:02:00:0a:65:00:01->eth_dst,"
                      "output:1\n"),
            std::string::npos)
      << text;
  // Still the DIP after ct(nat): conntrack had no free port in vm4's lease (cookie: ofport 3
  // << 1, tcp).
  EXPECT_NE(text.find("table=4,priority=100,cookie=0xfff0000000060006,tcp,nw_src=10.1.0.4 "
                      "actions=drop\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("table=0,priority=40,cookie=0xfff0000000030000,tcp,in_port=300,tun_dst="
                      "10.101.0.22,nw_dst=10.200.0.10,nw_frag=no actions=ct(zone=2,nat,table=2)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("table=2,priority=100,cookie=0xfff0000000040000,ct_state=+trk+rpl,tcp,"
                      "nw_dst=10.1.0.3 actions=dec_ttl,set_field:02:00:00:00:33:01->eth_src,"
                      "set_field:02:00:0a:01:00:03->eth_dst,output:2"),
            std::string::npos)
      << text;
}

const std::vector<uint32_t> kOfports = {kVswitchFirstVmOfport, kVswitchFirstVmOfport + 1};

packet::FastpathRedirect Redirect(uint32_t flow_src_port, uint32_t dst_pa, uint32_t src_host_pa,
                                  uint32_t flow_dst = 0x0ac80014) {
  return {.flow_src = 0x0ac8000a,  // VIP1, the source VM's SNAT VIP
          .flow_dst = flow_dst,
          .flow_src_port = static_cast<uint16_t>(flow_src_port),
          .flow_dst_port = 80,
          .proto = 6,
          .dip = dst_pa == 0x0a650021 ? 0x0a010003u : 0x0a010001u,
          .dst_pa = dst_pa,
          .src_host_pa = src_host_pa};
}

TEST(VswitchAgentTest, FastpathSourceSideSendsTheSnatFlowInGreToTheDipsHost) {
  AgentConfig config = Host2();
  config.nat.tcp_established_timeout_s = 300;
  std::vector<vswitch::OvsFlow> flows;
  // vm4 (lease 20192-20255) connected to a VIP whose DIP 10.1.0.1 is on host1 (PA .31).
  ASSERT_EQ(FastpathFlows(config, kOfports, Redirect(20200, 0x0a65001f, 0x0a650016), 0x77, &flows),
            RedirectOutcome::kAppliedSource);
  ASSERT_EQ(flows.size(), 1u);
  EXPECT_EQ(flows[0].Text(),
            "table=4,priority=200,cookie=0x77,idle_timeout=300,tcp,nw_src=10.200.0.10,"
            "tp_src=20200,nw_dst=10.200.0.20,tp_dst=80 actions=dec_ttl,set_field:10.101.0.22->"
            "tun_src,set_field:10.101.0.31->tun_dst,output:300");
  // A port no lease of ours covers: not ours.
  EXPECT_EQ(FastpathFlows(config, kOfports, Redirect(20000, 0x0a65001f, 0x0a650016), 0x77, &flows),
            RedirectOutcome::kNotOurs);
  EXPECT_TRUE(flows.empty());
}

TEST(VswitchAgentTest, FastpathDestinationSideSendsRepliesInGreToTheSourceHost) {
  AgentConfig config = Host2();
  std::vector<vswitch::OvsFlow> flows;
  // host1 (PA .21) SNAT'd its VM to VIP1:20001 and connected to VIP2:80, served by vm3
  // (PA .33). vm3's 8080 serves VIP1 and VIP2: the replies come out of conntrack in table 1.
  ASSERT_EQ(FastpathFlows(config, kOfports, Redirect(20001, 0x0a650021, 0x0a650015), 0x78, &flows),
            RedirectOutcome::kAppliedDestination);
  ASSERT_EQ(flows.size(), 1u);
  EXPECT_EQ(flows[0].Text(),
            "table=1,priority=200,cookie=0x78,idle_timeout=" +
                std::to_string(config.nat.tcp_established_timeout_s) +
                ",ct_state=+trk+rpl,tcp,in_port=2,nw_src=10.200.0.20,tp_src=80,nw_dst=10.200.0.10,"
                "tp_dst=20001 actions=dec_ttl,set_field:10.101.0.33->tun_src,set_field:"
                "10.101.0.21->tun_dst,output:300");
  // Without the second VIP, vm3's 8080 is stateless: table 0 rewrites the source itself.
  std::erase_if(config.endpoints, [](const EndpointConfig& e) { return e.vip == 0x0ac8000a; });
  ASSERT_EQ(FastpathFlows(config, kOfports, Redirect(20001, 0x0a650021, 0x0a650015), 0x78, &flows),
            RedirectOutcome::kAppliedDestination);
  ASSERT_EQ(flows.size(), 1u);
  EXPECT_NE(flows[0].Text().find(
                "table=0,priority=200,cookie=0x78,idle_timeout=" +
                std::to_string(config.nat.tcp_established_timeout_s) +
                ",tcp,in_port=2,nw_src=10.1.0.3,tp_src=8080,nw_dst=10.200.0.10,tp_dst=20001,"
                "nw_frag=no actions=set_field:10.200.0.20->ip_src,set_field:80->tcp_src,"
                "dec_ttl,set_field:10.101.0.33->tun_src,set_field:10.101.0.21->tun_dst,"
                "output:300"),
            std::string::npos)
      << flows[0].Text();
  // Another VM's PA, a DIP that is not the VM at that PA, or a redirect between two of our
  // own VMs: not ours.
  EXPECT_EQ(FastpathFlows(config, kOfports, Redirect(20001, 0x0a650023, 0x0a650015), 0x78, &flows),
            RedirectOutcome::kNotOurs);
  packet::FastpathRedirect wrong_dip = Redirect(20001, 0x0a650021, 0x0a650015);
  wrong_dip.dip = 0x0a010004;
  EXPECT_EQ(FastpathFlows(config, kOfports, wrong_dip, 0x78, &flows), RedirectOutcome::kNotOurs);
  EXPECT_EQ(FastpathFlows(config, kOfports, Redirect(20200, 0x0a650021, 0x0a650016), 0x78, &flows),
            RedirectOutcome::kNotOurs);
}

// Fastpath flows as OVS prints them back (its field order, ct_state flags sorted).
constexpr const char* kFastpathDump =
    "NXST_FLOW reply (xid=0x4):\n"
    " cookie=0xfff0000000080007, duration=2.345s, table=4, n_packets=7, n_bytes=420, "
    "idle_timeout=300, idle_age=1, priority=200,tcp,nw_src=10.200.0.10,nw_dst=10.200.0.20,"
    "tp_src=20200,tp_dst=80 actions=dec_ttl,set_field:10.101.0.22->tun_src,"
    "set_field:10.101.0.31->tun_dst,output:300\n"
    " cookie=0xfff0000000080008, duration=2.1s, table=1, n_packets=9, n_bytes=900, "
    "idle_timeout=300, idle_age=0, priority=200,ct_state=+rpl+trk,tcp,in_port=2,"
    "nw_src=10.200.0.20,nw_dst=10.200.0.10,tp_src=80,tp_dst=20001 actions=dec_ttl,"
    "set_field:10.101.0.33->tun_src,set_field:10.101.0.21->tun_dst,output:300\n"
    " cookie=0xfff0000000080009, duration=2.1s, table=0, n_packets=1, n_bytes=60, "
    "idle_timeout=120, idle_age=0, priority=200,udp,in_port=3,nw_src=10.1.0.4,"
    "nw_dst=10.200.0.10,tp_src=5353,tp_dst=20002,nw_frag=no actions=set_field:10.200.0.30->ip_src,"
    "set_field:53->udp_src,dec_ttl,set_field:10.101.0.34->tun_src,"
    "set_field:10.101.0.21->tun_dst,output:300\n"
    " cookie=0xfff0000000010020, duration=9.1s, table=0, n_packets=0, n_bytes=0, "
    "priority=64500,arp,in_port=2 actions=drop\n";

TEST(VswitchAgentTest, FastpathFlowsOnTheBridgeAreAdoptedWhenTheConfigStillInstallsThem) {
  AgentConfig config = Host2();
  DumpedFlow f;
  ASSERT_TRUE(ParseDumpedFlow(SplitString(kFastpathDump, '\n')[1], &f));
  EXPECT_EQ(f.cookie, kFastpathCookie | 7);
  EXPECT_EQ(f.table, 4);
  EXPECT_EQ(f.priority, 200);
  EXPECT_EQ(f.idle_timeout, 300);
  EXPECT_EQ(f.packets, 7u);
  EXPECT_EQ(f.match, "tcp,nw_src=10.200.0.10,nw_dst=10.200.0.20,tp_src=20200,tp_dst=80");
  EXPECT_FALSE(ParseDumpedFlow("NXST_FLOW reply (xid=0x4):", &f));

  FastpathAdoption a = AdoptFastpathFlows(kFastpathDump, config, kOfports);
  ASSERT_EQ(a.adopted.size(), 3u);
  EXPECT_TRUE(a.stale.empty());
  EXPECT_EQ(a.next_sequence, 10);
  // What each flow says about its connection.
  EXPECT_TRUE(a.adopted[0].source);
  EXPECT_EQ(a.adopted[0].redirect.flow_src_port, 20200);
  EXPECT_EQ(a.adopted[0].peer_pa, 0x0a65001fu);
  EXPECT_FALSE(a.adopted[1].source);
  EXPECT_EQ(a.adopted[1].redirect.dip, 0x0a010003u);  // vm3, at OpenFlow port 2
  EXPECT_EQ(a.adopted[1].redirect.flow_dst, 0x0ac80014u);
  EXPECT_EQ(a.adopted[1].redirect.flow_src_port, 20001);
  EXPECT_EQ(a.adopted[1].peer_pa, 0x0a650015u);
  EXPECT_EQ(a.adopted[2].redirect.dip, 0x0a010004u);
  EXPECT_EQ(a.adopted[2].redirect.flow_dst, 0x0ac8001eu);
  EXPECT_EQ(a.adopted[2].redirect.flow_dst_port, 53);
  // A flow as the agent wrote it and as OVS prints it is one flow.
  std::vector<vswitch::OvsFlow> flows;
  ASSERT_EQ(FastpathFlows(config, kOfports, Redirect(20001, 0x0a650021, 0x0a650015), 0x78, &flows),
            RedirectOutcome::kAppliedDestination);
  EXPECT_EQ(FromOvsFlow(flows[0]).Identity(), a.adopted[1].flow.Identity());
  EXPECT_EQ(a.adopted[1].flow.Identity(),
            "table=1,priority=200,ct_state=+rpl+trk,in_port=2,nw_dst=10.200.0.10,"
            "nw_src=10.200.0.20,tcp,tp_dst=20001,tp_src=80");
}

TEST(VswitchAgentTest, FastpathFlowsTheConfigNoLongerInstallsAreRemovedByReason) {
  auto reasons = [](const AgentConfig& config, std::string_view dump = kFastpathDump) {
    FastpathAdoption a = AdoptFastpathFlows(dump, config, kOfports);
    std::string out;
    for (size_t r = 0; r < kNumFastpathStale; ++r) {
      if (a.stale_by_reason[r] != 0) out += StrCat(kFastpathStaleNames[r], "=", a.stale_by_reason[r], " ");
    }
    return StrCat(out, "adopted=", a.adopted.size());
  };
  AgentConfig config = Host2();
  EXPECT_EQ(reasons(config), "adopted=3");
  // VIP 10.200.0.30 gone (vm4's UDP endpoint).
  AgentConfig c = config;
  std::erase_if(c.endpoints, [](const EndpointConfig& e) { return e.vip == 0x0ac8001e; });
  EXPECT_EQ(reasons(c), "endpoint_gone=1 adopted=2");
  // vm4's SNAT lease gone (the source-side flow's VIP:port).
  c = config;
  std::erase_if(c.snat_leases, [](const SnatLeaseConfig& l) { return l.dip == 0x0a010004; });
  EXPECT_EQ(reasons(c), "snat_lease_gone=1 adopted=2");
  // vm4's PA changed: its flow's GRE source is no address of ours.
  c = config;
  c.vms[1].pa = 0x0a650044;
  EXPECT_EQ(reasons(c), "local_pa_gone=1 adopted=2");
  // The host PA changed: the source side's GRE source.
  c = config;
  c.address.addr = 0x0a650017;
  EXPECT_EQ(reasons(c), "local_pa_gone=1 adopted=2");
  // VIP 10.200.0.10 gone from vm3: VIP2 on its 8080 is no longer shared, the reply flow
  // would be a stateless one in table 0 now.
  c = config;
  std::erase_if(c.endpoints, [](const EndpointConfig& e) {
    return e.vip == 0x0ac8000a && e.dip == 0x0a010003;
  });
  EXPECT_EQ(reasons(c), "changed=1 adopted=2");
  // Not a flow FastpathFlows makes.
  EXPECT_EQ(reasons(config, " cookie=0xfff0000000080001, table=0, priority=200,arp "
                            "actions=drop\n"),
            "unreadable=1 adopted=0");

  FastpathAdoption a = AdoptFastpathFlows(kFastpathDump, c, kOfports);
  ASSERT_EQ(a.stale.size(), 1u);
  EXPECT_EQ(DeleteStrictLines(a.stale),
            "delete_strict table=1,priority=200,cookie=0xfff0000000080008/-1,ct_state=+rpl+trk,"
            "tcp,in_port=2,nw_src=10.200.0.20,nw_dst=10.200.0.10,tp_src=80,tp_dst=20001\n");
}

TEST(VswitchAgentTest, FastpathConnectionsShowInTheAgentsFlows) {
  AgentConfig config = Host2();
  FastpathAdoption a = AdoptFastpathFlows(kFastpathDump, config, kOfports);
  // vm3's inbound connection through conntrack (shared DIP:port) and vm4's SNAT connection.
  std::vector<NatFlow> flows = ConntrackFlows(
      "tcp,orig=(src=10.200.0.10,dst=10.200.0.20,sport=20001,dport=80),reply=(src=10.1.0.3,"
      "dst=10.200.0.10,sport=8080,dport=20001),zone=1,protoinfo=(state=ESTABLISHED)\n"
      "tcp,orig=(src=10.1.0.4,dst=10.200.0.20,sport=40000,dport=80),reply=(src=10.200.0.20,"
      "dst=10.200.0.10,sport=80,dport=20200),zone=2,protoinfo=(state=ESTABLISHED)\n"
      "tcp,orig=(src=10.1.0.4,dst=10.200.0.20,sport=40001,dport=80),reply=(src=10.200.0.20,"
      "dst=10.200.0.10,sport=80,dport=20201),zone=2,protoinfo=(state=ESTABLISHED)\n",
      config);
  ASSERT_EQ(flows.size(), 3u);
  AnnotateFastpath(config, a.adopted, &flows);
  ASSERT_EQ(flows.size(), 4u) << "vm4's stateless UDP endpoint: its Fastpath flow on its own";
  EXPECT_EQ(flows[0].fastpath_pa, 0x0a650015u);
  EXPECT_EQ(flows[1].fastpath_pa, 0x0a65001fu);
  EXPECT_EQ(flows[2].fastpath_pa, 0u) << "no Fastpath flow: via the router";
  EXPECT_EQ(flows[3].kind, static_cast<uint8_t>(NatFlowKind::kInbound));
  EXPECT_EQ(flows[3].dip, 0x0a010004u);
  EXPECT_EQ(flows[3].dip_port, 5353);
  EXPECT_EQ(flows[3].vip, 0x0ac8001eu);
  EXPECT_EQ(flows[3].vip_port, 53);
  EXPECT_EQ(flows[3].remote_port, 20002);
  EXPECT_EQ(flows[3].vm_index, 1);
  EXPECT_EQ(flows[3].fastpath_pa, 0x0a650015u);
}

TEST(VswitchAgentTest, MissesAreClassifiedByTheirTag) {
  EXPECT_EQ(ClassifyMiss(kSnatReplyMissVlan), VswitchMiss::kSnatReplyNoState);
  EXPECT_EQ(ClassifyMiss(kVswitchUplinkOfport), VswitchMiss::kUplinkNoRule);
  EXPECT_EQ(ClassifyMiss(kVswitchGreOfport), VswitchMiss::kTunnelNoEndpoint);
  EXPECT_EQ(ClassifyMiss(kVswitchFirstVmOfport + 1), VswitchMiss::kVmNoRule);
  EXPECT_EQ(ClassifyMiss(kVswitchLastVmOfport), VswitchMiss::kVmNoRule);  // attached later
  EXPECT_EQ(ClassifyMiss(kVswitchSlowPathOfport), VswitchMiss::kUnknownPort);
  EXPECT_EQ(ClassifyMiss(kReplyMissVlan), VswitchMiss::kReplyNoConntrackState);
  EXPECT_EQ(ClassifyMiss(0), VswitchMiss::kUnknownPort);
}

}  // namespace
}  // namespace sluice::agent

namespace sluice::agent {
namespace {

// vm4 with a static lease and two dynamic chunks (one of another size), as the SNAT lease
// client leaves them: each range becomes its own ct nat flow behind a weighted hash.
TEST(VswitchAgentTest, SeveralSnatChunksArePickedByHashWeightedBySize) {
  AgentConfig config = Host2();
  config.snat_leases.push_back({.dip = 0x0a010004, .vip = 0x0ac8000a, .proto = 6,
                                .port_start = 21064, .port_count = 32, .dynamic = true});
  config.snat_leases.push_back({.dip = 0x0a010004, .vip = 0x0ac8000a, .proto = 6,
                                .port_start = 21000, .port_count = 32, .dynamic = true});
  const std::vector<SnatRange> ranges = SnatRangesOf(config, 0x0a010004, 6);
  ASSERT_EQ(ranges.size(), 3u);
  EXPECT_EQ(ranges[0], (SnatRange{.vip = 0x0ac8000a, .first = 20192, .last = 20255, .weight = 2}));
  EXPECT_EQ(ranges[1], (SnatRange{.vip = 0x0ac8000a, .first = 21000, .last = 21031, .weight = 1}));
  EXPECT_EQ(ranges[2], (SnatRange{.vip = 0x0ac8000a, .first = 21064, .last = 21095, .weight = 1}));
  EXPECT_TRUE(SnatRangesOf(config, 0x0a010004, 17).empty());

  const VswitchPlan plan = PlanVswitch(config, kBridgeMac, kVmPortMacs);
  std::string text;
  for (const vswitch::OvsFlow& f : SnatFlows(config, plan, kRouterMac)) text += f.Text() + "\n";
  // vm3: one flow as before; vm4: the hash flow + 4 links; deliveries; exhaustion counters;
  // one GRE entry; the way to the router.
  EXPECT_EQ(Lines(text), 12u) << text;
  EXPECT_NE(text.find("table=0,priority=50,cookie=0xfff0000000020001,tcp,in_port=3,nw_src="
                      "10.1.0.4,nw_frag=no actions=multipath(symmetric_l4,0,hrw,4,0,"
                      "NXM_NX_REG1[0..15]),resubmit(,3)\n"),
            std::string::npos)
      << text;
  const std::string router = "table=4)\n";
  for (const auto& [link, range] : std::vector<std::pair<int, std::string>>{
           {0, "20192-20255"}, {1, "20192-20255"}, {2, "21000-21031"}, {3, "21064-21095"}}) {
    EXPECT_NE(text.find(StrCat(",tcp,in_port=3,nw_src=10.1.0.4,nw_frag=no,reg1=", link,
                               " actions=ct(commit,zone=2,nat(src=10.200.0.10:", range, "),",
                               router)),
              std::string::npos)
        << link << "\n"
        << text;
  }
  // Taking a chunk away changes only vm4's hash and link flows (one bundle): vm3, the
  // deliveries and the GRE entry stay as they were.
  AgentConfig fewer = config;
  fewer.snat_leases.pop_back();
  std::string after;
  for (const vswitch::OvsFlow& f : SnatFlows(fewer, plan, kRouterMac)) after += f.Text() + "\n";
  EXPECT_EQ(Lines(after), 11u) << after;
  EXPECT_NE(after.find("hrw,3,0"), std::string::npos) << after;
  EXPECT_EQ(after.find("21000-21031"), std::string::npos) << after;
}

// Chunks a growing VM got one after the other sit side by side: one range, so conntrack finds
// a free port anywhere in it (a hash pick of one full chunk would refuse the connection).
TEST(VswitchAgentTest, AdjacentSnatChunksBecomeOneRange) {
  AgentConfig config = Host2();
  for (uint16_t start : {21032, 21000, 21064, 21128}) {
    config.snat_leases.push_back({.dip = 0x0a010004, .vip = 0x0ac8000a, .proto = 6,
                                  .port_start = start, .port_count = 32, .dynamic = true});
  }
  const std::vector<SnatRange> ranges = SnatRangesOf(config, 0x0a010004, 6);
  ASSERT_EQ(ranges.size(), 3u);
  EXPECT_EQ(ranges[0], (SnatRange{.vip = 0x0ac8000a, .first = 20192, .last = 20255, .weight = 2}));
  EXPECT_EQ(ranges[1], (SnatRange{.vip = 0x0ac8000a, .first = 21000, .last = 21095, .weight = 3}));
  EXPECT_EQ(ranges[2], (SnatRange{.vip = 0x0ac8000a, .first = 21128, .last = 21159, .weight = 1}));
  // Only the dynamic chunks, all adjacent: one ct nat flow, no hash.
  AgentConfig dynamic_only = Host2();
  for (uint16_t start : {21032, 21000}) {
    dynamic_only.snat_leases.push_back({.dip = 0x0a010003, .vip = 0x0ac8000a, .proto = 6,
                                        .port_start = start, .port_count = 32, .dynamic = true});
  }
  std::erase_if(dynamic_only.snat_leases, [](const SnatLeaseConfig& l) {
    return l.dip == 0x0a010003 && !l.dynamic;
  });
  const VswitchPlan plan = PlanVswitch(dynamic_only, kBridgeMac, kVmPortMacs);
  std::string text;
  for (const vswitch::OvsFlow& f : SnatFlows(dynamic_only, plan, kRouterMac)) {
    text += f.Text() + "\n";
  }
  EXPECT_NE(text.find("nw_src=10.1.0.3,nw_frag=no actions=ct(commit,zone=2,nat(src=10.200.0.10:"
                      "21000-21063),table=4)"),
            std::string::npos)
      << text;
}

// A VIP the allocator leases from keeps its GRE reply entry with no chunk held: connections
// of a chunk being drained still get their replies.
TEST(VswitchAgentTest, AllocatorVipsKeepTheirReplyEntry) {
  AgentConfig config = Host2();
  config.snat_leases.clear();
  config.snat_allocator = SnatAllocatorClientConfig{};
  config.snat_allocator->leases.push_back({.dip = 0x0a010004, .vip = 0x0ac80014, .proto = 17});
  const VswitchPlan plan = PlanVswitch(config, kBridgeMac, kVmPortMacs);
  std::string text;
  for (const vswitch::OvsFlow& f : SnatFlows(config, plan, kRouterMac)) text += f.Text() + "\n";
  EXPECT_EQ(Lines(text), 1u) << text;
  EXPECT_NE(text.find("udp,in_port=300,tun_dst=10.101.0.22,nw_dst=10.200.0.20,nw_frag=no "
                      "actions=ct(zone=2,nat,table=2)"),
            std::string::npos)
      << text;
}

TEST(VswitchAgentTest, ConntrackEntriesAreTheAgentsFlows) {
  const AgentConfig config = Host2();
  const std::string dump =
      "tcp,orig=(src=10.1.0.4,dst=10.100.0.2,sport=40000,dport=9000),reply=(src=10.100.0.2,"
      "dst=10.200.0.10,sport=9000,dport=20193),zone=2,protoinfo=(state=ESTABLISHED)\n"
      "tcp,orig=(src=10.1.0.3,dst=10.100.0.2,sport=40001,dport=9000),reply=(src=10.100.0.2,"
      "dst=10.200.0.10,sport=9000,dport=20130),zone=2,protoinfo=(state=TIME_WAIT)\n"
      "udp,orig=(src=10.1.0.4,dst=10.100.0.2,sport=5000,dport=53),reply=(src=10.100.0.2,"
      "dst=10.200.0.10,sport=53,dport=20200),zone=2\n"
      "tcp,orig=(src=198.51.100.7,dst=10.200.0.20,sport=5555,dport=80),reply=(src=10.1.0.3,"
      "dst=198.51.100.7,sport=8080,dport=5555),zone=1,protoinfo=(state=SYN_SENT)\n"
      // Not the agent's: zone 0, an unknown DIP, ICMP, garbage.
      "tcp,orig=(src=10.1.0.4,dst=10.100.0.2,sport=1,dport=2),reply=(src=10.100.0.2,"
      "dst=10.1.0.4,sport=2,dport=1),protoinfo=(state=ESTABLISHED)\n"
      "tcp,orig=(src=10.1.0.9,dst=10.100.0.2,sport=1,dport=2),reply=(src=10.100.0.2,"
      "dst=10.200.0.10,sport=2,dport=20000),zone=2\n"
      "icmp,orig=(src=10.1.0.4,dst=10.100.0.2,id=1,type=8,code=0),reply=(src=10.100.0.2,"
      "dst=10.200.0.10,id=1,type=0,code=0),zone=2\n"
      "tcp,orig=(src=10.1.0.4,dst=bogus,sport=1,dport=2),zone=2\n";
  const std::vector<NatFlow> flows = ConntrackFlows(dump, config);
  ASSERT_EQ(flows.size(), 4u);
  EXPECT_EQ(flows[0].kind, static_cast<uint8_t>(NatFlowKind::kSnat));
  EXPECT_EQ(flows[0].dip, 0x0a010004u);
  EXPECT_EQ(flows[0].dip_port, 40000);
  EXPECT_EQ(flows[0].vip, 0x0ac8000au);
  EXPECT_EQ(flows[0].vip_port, 20193);
  EXPECT_EQ(flows[0].remote_port, 9000);
  EXPECT_EQ(flows[0].vm_index, 1);
  EXPECT_EQ(flows[0].state, static_cast<uint8_t>(NatFlowState::kTcpEstablished));
  EXPECT_EQ(flows[1].vip_port, 20130);
  EXPECT_EQ(flows[1].vm_index, 0);
  EXPECT_EQ(flows[1].state, static_cast<uint8_t>(NatFlowState::kClosed));
  EXPECT_EQ(flows[2].proto, 17);
  EXPECT_EQ(flows[2].state, static_cast<uint8_t>(NatFlowState::kUdp));
  EXPECT_EQ(flows[3].kind, static_cast<uint8_t>(NatFlowKind::kInbound));
  EXPECT_EQ(flows[3].dip, 0x0a010003u);
  EXPECT_EQ(flows[3].dip_port, 8080);
  EXPECT_EQ(flows[3].vip, 0x0ac80014u);
  EXPECT_EQ(flows[3].vip_port, 80);
  EXPECT_EQ(flows[3].remote, 0xc6336407u);
  EXPECT_EQ(flows[3].state, static_cast<uint8_t>(NatFlowState::kTcpSyn));
}

}  // namespace
}  // namespace sluice::agent
