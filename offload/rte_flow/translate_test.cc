// IR → rte_flow translation: structure checks, and golden testpmd text for the rules of every
// packet walk (offload/rte_flow/testdata/*.txt; regenerate with SLUICE_UPDATE_GOLDEN=1).
#include "offload/rte_flow/translate.h"

#include <gtest/gtest.h>
#include <rte_byteorder.h>
#include <rte_ip.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "hostagent/flow_rules.h"
#include "hostagent/rules.h"
#include "offload/packet/parse.h"
#include "offload/rte_flow/per_flow.h"
#include "offload/sw/fixture_builder.h"

#ifndef SLUICE_RTE_FLOW_TESTDATA
#error "SLUICE_RTE_FLOW_TESTDATA must name offload/rte_flow/testdata"
#endif

namespace sluice::nic {
namespace {

using flow::Action;
using flow::Ipv4Match;
using flow::PortMatch;
using flow::Rule;
using flow::Tunnel;
using namespace fixture::addr;

constexpr uint16_t kSnatPort = 20001;
constexpr uint16_t kVmSourcePort = 33000;
const uint32_t kOtherHostPa = fixture::Ip("10.0.2.1");
const uint32_t kVip2 = fixture::Ip("10.200.0.20");
const flow::MacAddr kPeerHostMac = fixture::Mac("02:00:00:00:01:02");

// One VM behind one VIP endpoint; ports as on an e-switch: uplink 0, the VM's representor 2.
std::vector<Rule> AgentRules(agent::PortMap ports = {.uplink_port = kUplinkPort,
                                                      .uplink_mac = kHostMac,
                                                      .vm_ports = {kVmPort},
                                                      .vm_port_macs = {kVmPortMac}}) {
  agent::AgentConfig config;
  config.name = "host1";
  config.address = {.addr = kHostPa, .length = 24};
  config.gateway = fixture::Ip("10.0.1.254");
  config.vms.push_back(agent::VmConfig{.name = "vm1",
                                       .port = "net_vhost0",
                                       .mac = kVmMac,
                                       .dip = kDip,
                                       .pa = kHostPa,
                                       .gateway = fixture::Ip("10.1.0.254")});
  config.endpoints.push_back(agent::EndpointConfig{
      .vip = kVip, .port = 80, .proto = flow::kProtoTcp, .dip = kDip, .dip_port = 8080});
  return agent::BuildAgentRules(config, ports, kRouterMac);
}

Rule AgentRule(const std::vector<Rule>& rules, agent::RuleKind kind) {
  for (const Rule& r : rules) {
    if (agent::KindOf(r) == kind) return r;
  }
  abort();
}

// The mux's per-flow rule: one client connection to the VIP, encapsulated to the DIP's host.
Rule MuxFlowRule(Tunnel tunnel, bool aging) {
  Rule rule{.id = 1000 + static_cast<uint64_t>(tunnel),
            .priority = 200,
            .match = {.in_port = kUplinkPort,
                      .src = Ipv4Match::Exact(kClient),
                      .dst = Ipv4Match::Exact(kVip),
                      .proto = flow::kProtoTcp,
                      .src_port = PortMatch::Exact(kClientPort),
                      .dst_port = PortMatch::Exact(80)},
            .actions = {Action::Encap({.type = tunnel, .outer_src = kMuxPa, .outer_dst = kHostPa}),
                        Action::SetMac(kMuxMac, kHostMac)},
            .name = std::string("mux-flow ") + (tunnel == Tunnel::kIpip  ? "ipip"
                                                : tunnel == Tunnel::kGue ? "gue"
                                                                         : "gre")};
  if (aging) {
    rule.actions.push_back(Action::Count());
    rule.actions.push_back(Action::Age(30));
    rule.name += " aged";
  }
  rule.actions.push_back(Action::Output(kUplinkPort));
  return rule;
}

// The agent's per-flow rules (hostagent/flow_rules.h) on the same host: one VM (its
// representor is port 2) with a SNAT lease, serving VIP:80 on :8080.
agent::AgentConfig FlowConfig() {
  agent::AgentConfig config;
  config.name = "host1";
  config.address = {.addr = kHostPa, .length = 24};
  config.gateway = fixture::Ip("10.0.1.254");
  config.vms.push_back(agent::VmConfig{.name = "vm1",
                                       .port = "net_vhost0",
                                       .mac = kVmMac,
                                       .dip = kDip,
                                       .pa = fixture::Ip("10.0.1.31"),
                                       .gateway = fixture::Ip("10.1.0.254")});
  return config;
}

agent::PortMap FlowPorts() {
  return agent::PortMap{.uplink_port = kUplinkPort,
                        .uplink_mac = kHostMac,
                        .vm_ports = {kVmPort},
                        .vm_port_macs = {kVmPortMac}};
}

// SNAT: the VM's DIP:33000 → client:443 leaves as VIP:20001, and the reply (encapsulated by
// a mux to the host PA) comes back. `fastpath`: the client is VIP2, redirected to its host.
std::vector<Rule> SnatRules(bool fastpath) {
  agent::NatFlow f{.dip = kDip,
                   .remote = fastpath ? kVip2 : kClient,
                   .vip = kVip,
                   .fastpath_pa = fastpath ? kOtherHostPa : 0,
                   .dip_port = kVmSourcePort,
                   .remote_port = 443,
                   .vip_port = kSnatPort,
                   .proto = flow::kProtoTcp,
                   .kind = static_cast<uint8_t>(agent::NatFlowKind::kSnat)};
  return agent::BuildFlowRules(f, FlowConfig(), FlowPorts(),
                               {.mac = fastpath ? kPeerHostMac : kRouterMac, .fastpath = fastpath},
                               2000);
}

// An inbound flow's return: the client reached DIP:8080 through VIP:80 (a DIP:port serving
// several VIPs keeps state); `fastpath`: the client is a VM on another host, redirected.
std::vector<Rule> ReturnRules(bool fastpath) {
  agent::NatFlow f{.dip = kDip,
                   .remote = fastpath ? kOtherVip : kClient,
                   .vip = kVip,
                   .fastpath_pa = fastpath ? kOtherHostPa : 0,
                   .dip_port = 8080,
                   .remote_port = fastpath ? uint16_t{20130} : kClientPort,
                   .vip_port = 80,
                   .proto = flow::kProtoTcp,
                   .kind = static_cast<uint8_t>(agent::NatFlowKind::kInbound)};
  return agent::BuildFlowRules(f, FlowConfig(), FlowPorts(),
                               {.mac = fastpath ? kPeerHostMac : kRouterMac, .fastpath = fastpath},
                               3000);
}

TranslateOptions Transfer() {
  return TranslateOptions{.port_id = kUplinkPort, .transfer = true, .group = 1};
}

std::vector<rte_flow_item_type> ItemTypes(const FlowSpec& spec) {
  std::vector<rte_flow_item_type> types;
  for (size_t i = 0; i < spec.num_items(); ++i) types.push_back(spec.pattern()[i].type);
  EXPECT_EQ(spec.pattern()[spec.num_items()].type, RTE_FLOW_ITEM_TYPE_END);
  return types;
}

std::vector<rte_flow_action_type> ActionTypes(const FlowSpec& spec) {
  std::vector<rte_flow_action_type> types;
  for (size_t i = 0; i < spec.num_actions(); ++i) types.push_back(spec.actions()[i].type);
  EXPECT_EQ(spec.actions()[spec.num_actions()].type, RTE_FLOW_ACTION_TYPE_END);
  return types;
}

template <typename T>
const T* ActionConf(const FlowSpec& spec, size_t i) {
  return static_cast<const T*>(spec.actions()[i].conf);
}

TEST(TranslateTest, InboundIpipIsDecapNatAndRepresentedPortOutput) {
  FlowSpec spec;
  const Rule rule = AgentRule(AgentRules(), agent::RuleKind::kInboundIpip);
  ASSERT_EQ(Translate(rule, Transfer(), &spec), "");

  EXPECT_TRUE(spec.attr().transfer);
  EXPECT_FALSE(spec.attr().ingress);
  EXPECT_EQ(spec.attr().group, 1u);
  EXPECT_EQ(spec.attr().priority, 255u - agent::kEndpointPriority);
  EXPECT_EQ(spec.port_id(), kUplinkPort);
  EXPECT_EQ(ItemTypes(spec),
            (std::vector<rte_flow_item_type>{RTE_FLOW_ITEM_TYPE_REPRESENTED_PORT,
                                             RTE_FLOW_ITEM_TYPE_ETH, RTE_FLOW_ITEM_TYPE_IPV4,
                                             RTE_FLOW_ITEM_TYPE_IPV4, RTE_FLOW_ITEM_TYPE_TCP}));
  // Outer IPv4: dst = host PA, proto 4. Inner: dst = VIP, proto TCP. TCP dst 80.
  const auto* outer = static_cast<const rte_flow_item_ipv4*>(spec.pattern()[2].spec);
  const auto* outer_mask = static_cast<const rte_flow_item_ipv4*>(spec.pattern()[2].mask);
  EXPECT_EQ(rte_be_to_cpu_32(outer->hdr.dst_addr), kHostPa);
  EXPECT_EQ(outer_mask->hdr.dst_addr, 0xffffffffu);
  EXPECT_EQ(outer_mask->hdr.src_addr, 0u);
  EXPECT_EQ(outer->hdr.next_proto_id, flow::kProtoIpip);
  const auto* inner = static_cast<const rte_flow_item_ipv4*>(spec.pattern()[3].spec);
  EXPECT_EQ(rte_be_to_cpu_32(inner->hdr.dst_addr), kVip);
  EXPECT_EQ(inner->hdr.next_proto_id, flow::kProtoTcp);
  const auto* tcp = static_cast<const rte_flow_item_tcp*>(spec.pattern()[4].spec);
  EXPECT_EQ(rte_be_to_cpu_16(tcp->hdr.dst_port), 80);

  EXPECT_EQ(ActionTypes(spec),
            (std::vector<rte_flow_action_type>{
                RTE_FLOW_ACTION_TYPE_RAW_DECAP, RTE_FLOW_ACTION_TYPE_RAW_ENCAP,
                RTE_FLOW_ACTION_TYPE_SET_IPV4_DST, RTE_FLOW_ACTION_TYPE_SET_TP_DST,
                RTE_FLOW_ACTION_TYPE_DEC_TTL, RTE_FLOW_ACTION_TYPE_COUNT,
                RTE_FLOW_ACTION_TYPE_REPRESENTED_PORT}));
  // RAW_DECAP strips eth + outer IPv4; RAW_ENCAP puts back an Ethernet header carrying the
  // rule's set_mac.
  const auto* decap = ActionConf<rte_flow_action_raw_decap>(spec, 0);
  EXPECT_EQ(decap->size, 14u + 20u);
  EXPECT_EQ(decap->data[14 + 9], flow::kProtoIpip);
  const auto* encap = ActionConf<rte_flow_action_raw_encap>(spec, 1);
  ASSERT_EQ(encap->size, 14u);
  EXPECT_EQ(memcmp(encap->data, kVmMac.data(), 6), 0);          // dst
  EXPECT_EQ(memcmp(encap->data + 6, kVmPortMac.data(), 6), 0);  // src
  EXPECT_EQ(encap->data[12], 0x08);
  EXPECT_EQ(encap->data[13], 0x00);
  EXPECT_EQ(rte_be_to_cpu_32(ActionConf<rte_flow_action_set_ipv4>(spec, 2)->ipv4_addr), kDip);
  EXPECT_EQ(rte_be_to_cpu_16(ActionConf<rte_flow_action_set_tp>(spec, 3)->port), 8080);
  EXPECT_EQ(ActionConf<rte_flow_action_ethdev>(spec, 6)->port_id, kVmPort);
}

TEST(TranslateTest, InboundGueMatchesOuterUdpPortAndStripsIt) {
  FlowSpec spec;
  TranslateOptions options = Transfer();
  options.gue_port = 7777;
  ASSERT_EQ(Translate(AgentRule(AgentRules(), agent::RuleKind::kInboundGue), options, &spec), "");
  EXPECT_EQ(ItemTypes(spec), (std::vector<rte_flow_item_type>{
                                 RTE_FLOW_ITEM_TYPE_REPRESENTED_PORT, RTE_FLOW_ITEM_TYPE_ETH,
                                 RTE_FLOW_ITEM_TYPE_IPV4, RTE_FLOW_ITEM_TYPE_UDP,
                                 RTE_FLOW_ITEM_TYPE_IPV4, RTE_FLOW_ITEM_TYPE_TCP}));
  const auto* udp = static_cast<const rte_flow_item_udp*>(spec.pattern()[3].spec);
  EXPECT_EQ(rte_be_to_cpu_16(udp->hdr.dst_port), 7777);
  const auto* decap = ActionConf<rte_flow_action_raw_decap>(spec, 0);
  EXPECT_EQ(decap->size, 14u + 20u + 8u);
}

TEST(TranslateTest, NonTransferRuleGoesToInPortAndOutputsByPortId) {
  FlowSpec spec;
  const Rule rule = AgentRule(AgentRules(), agent::RuleKind::kDsrReturn);
  ASSERT_EQ(Translate(rule, TranslateOptions{}, &spec), "");
  EXPECT_TRUE(spec.attr().ingress);
  EXPECT_FALSE(spec.attr().transfer);
  EXPECT_EQ(spec.port_id(), kVmPort);
  EXPECT_EQ(ItemTypes(spec),
            (std::vector<rte_flow_item_type>{RTE_FLOW_ITEM_TYPE_ETH, RTE_FLOW_ITEM_TYPE_IPV4,
                                             RTE_FLOW_ITEM_TYPE_TCP}));
  EXPECT_EQ(ActionTypes(spec),
            (std::vector<rte_flow_action_type>{
                RTE_FLOW_ACTION_TYPE_SET_IPV4_SRC, RTE_FLOW_ACTION_TYPE_SET_TP_SRC,
                RTE_FLOW_ACTION_TYPE_DEC_TTL, RTE_FLOW_ACTION_TYPE_SET_MAC_SRC,
                RTE_FLOW_ACTION_TYPE_SET_MAC_DST, RTE_FLOW_ACTION_TYPE_COUNT,
                RTE_FLOW_ACTION_TYPE_PORT_ID}));
  EXPECT_EQ(ActionConf<rte_flow_action_port_id>(spec, 6)->id, kUplinkPort);
  EXPECT_EQ(memcmp(ActionConf<rte_flow_action_set_mac>(spec, 4)->mac_addr, kRouterMac.data(), 6),
            0);
}

TEST(TranslateTest, GueEncapComputesTheSoftwareFlowHashSourcePort) {
  FlowSpec spec;
  ASSERT_EQ(Translate(MuxFlowRule(Tunnel::kGue, false), Transfer(), &spec), "");
  EXPECT_EQ(ActionTypes(spec), (std::vector<rte_flow_action_type>{
                                   RTE_FLOW_ACTION_TYPE_RAW_DECAP, RTE_FLOW_ACTION_TYPE_RAW_ENCAP,
                                   RTE_FLOW_ACTION_TYPE_REPRESENTED_PORT}));
  EXPECT_EQ(ActionConf<rte_flow_action_raw_decap>(spec, 0)->size, 14u);
  const auto* encap = ActionConf<rte_flow_action_raw_encap>(spec, 1);
  ASSERT_EQ(encap->size, 14u + 20u + 8u);
  const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(encap->data + 14);
  EXPECT_EQ(ip->version_ihl, 0x45);
  EXPECT_EQ(ip->next_proto_id, flow::kProtoUdp);
  EXPECT_EQ(ip->time_to_live, 64);
  EXPECT_EQ(rte_be_to_cpu_16(ip->fragment_offset), 0x4000);  // DF, as software sets it
  EXPECT_EQ(rte_be_to_cpu_32(ip->src_addr), kMuxPa);
  EXPECT_EQ(rte_be_to_cpu_32(ip->dst_addr), kHostPa);
  const auto* udp = reinterpret_cast<const rte_udp_hdr*>(encap->data + 34);
  EXPECT_EQ(rte_be_to_cpu_16(udp->src_port), packet::GueSourcePort(packet::FlowHash(
                                                 kClient, kVip, flow::kProtoTcp, kClientPort, 80)));
  EXPECT_EQ(rte_be_to_cpu_16(udp->dst_port), flow::kDefaultGuePort);
}

TEST(TranslateTest, GueFlowHashNeedsAnExactFiveTuple) {
  Rule rule = MuxFlowRule(Tunnel::kGue, false);
  rule.match.src = Ipv4Match{};
  FlowSpec spec;
  EXPECT_NE(Translate(rule, Transfer(), &spec).find("flow hash"), std::string::npos);
  rule.actions[0].encap.gue_src_port = 4242;  // a fixed port needs no hash
  EXPECT_EQ(Translate(rule, Transfer(), &spec), "");
}

TEST(TranslateTest, AgeCarriesTimeoutAndContext) {
  FlowSpec spec;
  int context = 0;
  TranslateOptions options = Transfer();
  options.age_context = &context;
  ASSERT_EQ(Translate(MuxFlowRule(Tunnel::kIpip, true), options, &spec), "");
  ASSERT_TRUE(spec.HasAction(RTE_FLOW_ACTION_TYPE_AGE));
  const auto* age = ActionConf<rte_flow_action_age>(spec, 3);
  EXPECT_EQ(age->timeout, 30u);
  EXPECT_EQ(age->context, &context);
}

TEST(TranslateTest, PartialModeIsMarkAndQueueOnTheIngressPort) {
  FlowSpec spec;
  TranslateOptions options = Transfer();
  options.mode = OffloadMode::kPartial;
  options.mark_id = 77;
  options.queue = 3;
  Rule rule = AgentRule(AgentRules(), agent::RuleKind::kInboundIpip);
  rule.actions.back() = Action::ToSoftware();  // untranslatable in full
  ASSERT_NE(Translate(rule, Transfer(), &spec), "");
  ASSERT_EQ(Translate(rule, options, &spec), "");
  EXPECT_TRUE(spec.attr().ingress);
  EXPECT_FALSE(spec.attr().transfer);
  EXPECT_EQ(spec.attr().group, 0u);
  EXPECT_EQ(spec.port_id(), kUplinkPort);
  EXPECT_EQ(ItemTypes(spec)[0], RTE_FLOW_ITEM_TYPE_ETH);  // no represented_port item
  ASSERT_EQ(ActionTypes(spec), (std::vector<rte_flow_action_type>{RTE_FLOW_ACTION_TYPE_MARK,
                                                                  RTE_FLOW_ACTION_TYPE_QUEUE}));
  EXPECT_EQ(ActionConf<rte_flow_action_mark>(spec, 0)->id, 77u);
  EXPECT_EQ(ActionConf<rte_flow_action_queue>(spec, 1)->index, 3u);
}

TEST(TranslateTest, TcpFlagsAndToSoftware) {
  FlowSpec spec;
  std::vector<Rule> rules = CloseToSoftwareRules(kUplinkPort, {Tunnel::kIpip}, 40);
  ASSERT_EQ(rules.size(), 2u);
  const Rule& fin = rules[0];
  ASSERT_EQ(Translate(fin, Transfer(), &spec), "");
  EXPECT_EQ(ItemTypes(spec),
            (std::vector<rte_flow_item_type>{RTE_FLOW_ITEM_TYPE_REPRESENTED_PORT,
                                             RTE_FLOW_ITEM_TYPE_ETH, RTE_FLOW_ITEM_TYPE_IPV4,
                                             RTE_FLOW_ITEM_TYPE_IPV4, RTE_FLOW_ITEM_TYPE_TCP}));
  const auto* tcp_spec = static_cast<const rte_flow_item_tcp*>(spec.pattern()[4].spec);
  const auto* tcp_mask = static_cast<const rte_flow_item_tcp*>(spec.pattern()[4].mask);
  EXPECT_EQ(tcp_spec->hdr.tcp_flags, RTE_TCP_FIN_FLAG);
  EXPECT_EQ(tcp_mask->hdr.tcp_flags, RTE_TCP_FIN_FLAG);
  EXPECT_EQ(tcp_mask->hdr.src_port, 0);
  // Above the per-flow rules (which are above the static ones).
  EXPECT_LT(spec.attr().priority, 255u - agent::kFlowRulePriority);
  // E-switch: back to the application through the ethdev the packet came in on.
  ASSERT_EQ(ActionTypes(spec),
            (std::vector<rte_flow_action_type>{RTE_FLOW_ACTION_TYPE_COUNT,
                                               RTE_FLOW_ACTION_TYPE_PORT_REPRESENTOR}));
  EXPECT_EQ(ActionConf<rte_flow_action_ethdev>(spec, 1)->port_id, kUplinkPort);
  EXPECT_NE(spec.ToTestpmd().find("tcp flags spec 0x1 flags mask 0x1 / end actions count / "
                                  "port_representor port_id 0 / end"),
            std::string::npos)
      << spec.ToTestpmd();

  // Plain ingress: to the Rx queue software polls.
  TranslateOptions ingress{.queue = 2};
  ASSERT_EQ(Translate(rules[1], ingress, &spec), "");
  ASSERT_EQ(ActionTypes(spec), (std::vector<rte_flow_action_type>{RTE_FLOW_ACTION_TYPE_COUNT,
                                                                  RTE_FLOW_ACTION_TYPE_QUEUE}));
  EXPECT_EQ(ActionConf<rte_flow_action_queue>(spec, 1)->index, 2u);
  EXPECT_NE(spec.ToTestpmd().find("tcp flags spec 0x4 flags mask 0x4 / end actions count / "
                                  "queue index 2 / end"),
            std::string::npos);

  // A full-mask flags match prints as "is"; the flags are part of the template shape.
  Rule exact = fin;
  exact.match.tcp_flags_mask = 0xff;
  ASSERT_EQ(Translate(exact, Transfer(), &spec), "");
  EXPECT_NE(spec.ToTestpmd().find("tcp flags is 0x1 /"), std::string::npos);
  FlowSpec other;
  ASSERT_EQ(Translate(fin, Transfer(), &other), "");
  EXPECT_NE(spec.ShapeKey(), other.ShapeKey());
}

TEST(TranslateTest, UntranslatableRulesSayWhy) {
  FlowSpec spec;
  Rule to_software{.id = 9,
                   .match = {.dst = Ipv4Match::Exact(kVip)},
                   .actions = {Action::Count(), Action::DecTtl(), Action::ToSoftware()}};
  EXPECT_NE(Translate(to_software, Transfer(), &spec)
                .find("action 3 (to_software) follows action 2 (dec_ttl); the NIC can hand "
                      "software only the packet as it arrived"),
            std::string::npos);
  Rule flags_udp{.id = 10,
                 .match = {.proto = flow::kProtoUdp, .tcp_flags_mask = flow::kTcpFlagFin},
                 .actions = {Action::Drop()}};
  EXPECT_EQ(Translate(flags_udp, Transfer(), &spec), "matches TCP flags without proto tcp");

  Rule decap_no_mac = AgentRule(AgentRules(), agent::RuleKind::kInboundIpip);
  std::erase_if(decap_no_mac.actions,
                [](const Action& a) { return a.type == flow::ActionType::kSetMac; });
  EXPECT_NE(Translate(decap_no_mac, Transfer(), &spec).find("set_mac"), std::string::npos);

  Rule nat_before_decap = AgentRule(AgentRules(), agent::RuleKind::kInboundIpip);
  std::swap(nat_before_decap.actions[0], nat_before_decap.actions[1]);
  EXPECT_NE(Translate(nat_before_decap, Transfer(), &spec).find("tunnelled"), std::string::npos);

  Rule too_many = AgentRule(AgentRules(), agent::RuleKind::kDsrReturn);
  too_many.actions.insert(too_many.actions.begin(), kMaxFlowActions, Action::DecTtl());
  EXPECT_NE(Translate(too_many, Transfer(), &spec).find("more than"), std::string::npos);

  Rule port_without_proto{
      .id = 10, .match = {.dst_port = PortMatch::Exact(80)}, .actions = {Action::Drop()}};
  EXPECT_NE(Translate(port_without_proto, Transfer(), &spec).find("proto"), std::string::npos);
}

TEST(TranslateTest, SpecIsReusableAndPointsIntoItself) {
  FlowSpec spec;
  const auto* begin = reinterpret_cast<const char*>(&spec);
  const auto* end = begin + sizeof(spec);
  auto inside = [&](const void* p) {
    const auto* c = static_cast<const char*>(p);
    return p == nullptr || (c >= begin && c < end);
  };
  for (const Rule& rule : AgentRules()) {
    ASSERT_EQ(Translate(rule, Transfer(), &spec), "");
    for (size_t i = 0; i < spec.num_items(); ++i) {
      EXPECT_TRUE(inside(spec.pattern()[i].spec));
      EXPECT_TRUE(inside(spec.pattern()[i].mask));
    }
    for (size_t i = 0; i < spec.num_actions(); ++i) EXPECT_TRUE(inside(spec.actions()[i].conf));
  }
}

TEST(TranslateTest, PrefixAndPartialMasksUseSpecAndMask) {
  Rule rule{.id = 11,
            .priority = 5,
            .match = {.src = {.addr = fixture::Ip("192.0.2.0"), .mask = 0xffffff00u},
                      .proto = flow::kProtoUdp,
                      .dst_port = {.port = 0x1200, .mask = 0xff00}},
            .actions = {Action::Drop()}};
  FlowSpec spec;
  ASSERT_EQ(Translate(rule, TranslateOptions{.port_id = 3}, &spec), "");
  EXPECT_EQ(spec.ToTestpmd(),
            "flow create 3 priority 250 ingress pattern eth type is 0x800 / ipv4 src spec "
            "192.0.2.0 src mask 255.255.255.0 proto is 17 / udp dst spec 4608 dst mask 0xff00 / "
            "end actions drop / end\n");
}

TEST(TranslateTest, ShapeKeyIgnoresValuesButNotMasksOrActions) {
  std::vector<Rule> rules = AgentRules();
  FlowSpec a, b;
  ASSERT_EQ(Translate(AgentRule(rules, agent::RuleKind::kDsrReturn), Transfer(), &a), "");
  Rule other = AgentRule(rules, agent::RuleKind::kDsrReturn);
  other.match.src = Ipv4Match::Exact(fixture::Ip("10.1.0.99"));
  other.actions[0].ipv4 = fixture::Ip("10.200.0.77");
  ASSERT_EQ(Translate(other, Transfer(), &b), "");
  EXPECT_EQ(a.ShapeKey(), b.ShapeKey());
  other.match.src.mask = 0xffff0000u;
  ASSERT_EQ(Translate(other, Transfer(), &b), "");
  EXPECT_NE(a.ShapeKey(), b.ShapeKey());
}

// --- golden testpmd text ---------------------------------------------------------------------

void ExpectGolden(const std::string& file, const std::string& text) {
  const std::string path = std::string(SLUICE_RTE_FLOW_TESTDATA) + "/" + file;
  if (getenv("SLUICE_UPDATE_GOLDEN") != nullptr) {
    std::ofstream(path) << text;
    return;
  }
  std::ifstream in(path);
  ASSERT_TRUE(in.good()) << path << " is missing; run with SLUICE_UPDATE_GOLDEN=1";
  std::stringstream want;
  want << in.rdbuf();
  EXPECT_EQ(text, want.str()) << "golden file " << path
                              << " differs; if intended, rerun with SLUICE_UPDATE_GOLDEN=1";
}

std::string Header(const std::string& what) {
  return "# " + what + "\n# Generated by offload_rte_flow_test (SLUICE_UPDATE_GOLDEN=1).\n";
}

TEST(TestpmdGoldenTest, AgentInboundIpip) {
  ExpectGolden(
      "agent_inbound_ipip.txt",
      Header("Host agent, inbound IPIP: decap + VIP:80 -> DIP:8080, to the VM's VF.") +
          TestpmdRules({AgentRule(AgentRules(), agent::RuleKind::kInboundIpip)}, Transfer()));
}

TEST(TestpmdGoldenTest, AgentInboundGue) {
  ExpectGolden(
      "agent_inbound_gue.txt",
      Header("Host agent, inbound GUE: decap (outer IPv4 + UDP) + NAT, to the VM.") +
          TestpmdRules({AgentRule(AgentRules(), agent::RuleKind::kInboundGue)}, Transfer()));
}

// GRE is what an Open vSwitch host sends (its userspace datapath has no IPIP): a DPDK agent
// with OVS peers accepts it inbound, and a mux sends it to the OVS hosts' backends.
TEST(TestpmdGoldenTest, AgentInboundGre) {
  agent::PortMap ports{.uplink_port = kUplinkPort,
                       .uplink_mac = kHostMac,
                       .vm_ports = {kVmPort},
                       .vm_port_macs = {kVmPortMac},
                       .inbound_tunnels = {Tunnel::kGre}};
  std::vector<Rule> rules;
  for (const Rule& r : AgentRules(ports)) {
    if (agent::KindOf(r) == agent::RuleKind::kInboundGre) rules.push_back(r);
  }
  ASSERT_EQ(rules.size(), 1u);
  ExpectGolden("agent_inbound_gre.txt",
               Header("Host agent, inbound GRE (from an Open vSwitch peer): decap (outer IPv4 + "
                      "4-byte GRE, no checksum/key/sequence) + NAT, to the VM.") +
                   TestpmdRules(rules, Transfer()));
}

TEST(TestpmdGoldenTest, MuxEncapGre) {
  ExpectGolden("mux_encap_gre.txt",
               Header("Mux per-flow rule, GRE encap to a backend on an Open vSwitch host.") +
                   TestpmdRules({MuxFlowRule(Tunnel::kGre, false), MuxFlowRule(Tunnel::kGre, true)},
                                Transfer()));
}

TEST(TestpmdGoldenTest, AgentDsrReturn) {
  ExpectGolden(
      "agent_dsr_return.txt",
      Header("Host agent, DSR return: DIP:8080 -> VIP:80, straight to the router.") +
          TestpmdRules({AgentRule(AgentRules(), agent::RuleKind::kDsrReturn)}, Transfer()));
}

TEST(TestpmdGoldenTest, AgentRulesWithoutEswitch) {
  ExpectGolden("agent_ingress.txt",
               Header("Host agent rules as plain ingress rules (no e-switch): PORT_ID output.") +
                   TestpmdRules(AgentRules(), TranslateOptions{}));
}

TEST(TestpmdGoldenTest, MuxEncapIpip) {
  ExpectGolden(
      "mux_encap_ipip.txt",
      Header("Mux per-flow rule, IPIP encap to the DIP's host (plain, then aged).") +
          TestpmdRules({MuxFlowRule(Tunnel::kIpip, false), MuxFlowRule(Tunnel::kIpip, true)},
                       Transfer()));
}

TEST(TestpmdGoldenTest, MuxEncapGue) {
  ExpectGolden("mux_encap_gue.txt",
               Header("Mux per-flow rule, GUE encap; UDP source port = the flow's hash.") +
                   TestpmdRules({MuxFlowRule(Tunnel::kGue, false), MuxFlowRule(Tunnel::kGue, true)},
                                Transfer()));
}

TEST(TestpmdGoldenTest, SnatBothWays) {
  ExpectGolden("snat.txt",
               Header("Host agent, per-flow SNAT: outbound DIP:p -> VIP:q, and the reply back "
                      "(decap + VIP:q -> DIP:p), counted and aged.") +
                   TestpmdRules(SnatRules(false), Transfer()));
}

TEST(TestpmdGoldenTest, FastpathEncap) {
  ExpectGolden("fastpath_encap.txt",
               Header("Host agent, per-flow Fastpath source side: VM -> VIP2 SNATed and "
                      "encapsulated host PA -> peer PA; the peer's packets come back as SNAT "
                      "replies.") +
                   TestpmdRules(SnatRules(true), Transfer()));
}

TEST(TestpmdGoldenTest, FastpathReturn) {
  ExpectGolden("fastpath_return.txt",
               Header("Host agent, per-flow Fastpath destination side: the DIP's replies leave "
                      "as VIP:80, encapsulated VM PA -> the source host's PA.") +
                   TestpmdRules(ReturnRules(true), Transfer()));
}

TEST(TestpmdGoldenTest, SharedEndpointReturn) {
  ExpectGolden("shared_return.txt",
               Header("Host agent, per-flow stateful return: DIP:8080 serves several VIPs, so "
                      "this connection's replies leave as the VIP:80 its client used.") +
                   TestpmdRules(ReturnRules(false), Transfer()));
}

TEST(TestpmdGoldenTest, ClosesToSoftware) {
  std::vector<Rule> rules = CloseToSoftwareRules(kVmPort, {Tunnel::kNone}, 50);
  for (Rule& r :
       CloseToSoftwareRules(kUplinkPort, {Tunnel::kIpip, Tunnel::kGue, Tunnel::kGre}, 52)) {
    rules.push_back(std::move(r));
  }
  ExpectGolden("close_to_software.txt",
               Header("TCP FIN and RST to software, above every per-flow rule, so the agent and "
                      "the mux see each close of a connection the NIC serves (VM port: plain; "
                      "uplink: inside IPIP, GUE and GRE).") +
                   TestpmdRules(rules, Transfer()) + "# The same without the e-switch.\n" +
                   TestpmdRules(rules, TranslateOptions{}));
}

TEST(TestpmdGoldenTest, PartialOffload) {
  TranslateOptions options = Transfer();
  options.mode = OffloadMode::kPartial;
  options.mark_id = 1;
  ExpectGolden("partial.txt",
               Header("Partial offload: the NIC matches and marks, software rewrites.") +
                   TestpmdRules(AgentRules(), options));
}

TEST(TestpmdGoldenTest, NotOffloadable) {
  Rule gue_any_client = MuxFlowRule(Tunnel::kGue, false);
  gue_any_client.match.src = Ipv4Match{};
  gue_any_client.match.src_port = PortMatch{};
  ExpectGolden("not_offloadable.txt",
               Header("Rules the NIC cannot express become comments (and go partial/software).") +
                   TestpmdRules({Rule{.id = 9,
                                      .match = {.dst = Ipv4Match::Exact(kVip)},
                                      .actions = {Action::Count(), Action::DecTtl(),
                                                  Action::ToSoftware()},
                                      .name = "slow path"},
                                 gue_any_client},
                                Transfer()));
}

}  // namespace
}  // namespace sluice::nic
