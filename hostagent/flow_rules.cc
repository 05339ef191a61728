#include "hostagent/flow_rules.h"

#include "common/net_text.h"
#include "common/strings.h"

namespace sluice::agent {

size_t OutboundActions(const NatFlow& f, const AgentConfig& config, const PortMap& ports,
                       const FlowNextHop& hop, uint32_t age_s, flow::Action* out) {
  size_t n = 0;
  out[n++] = flow::Action::SetIpv4Src(f.vip);
  out[n++] = flow::Action::SetL4Src(f.vip_port);
  out[n++] = flow::Action::DecTtl();
  if (hop.fastpath) {
    // The source host sends from its own PA (its SNAT range is routed there); the
    // destination host from the VM's PA, as the mux's packets came to it.
    const bool snat = f.kind == static_cast<uint8_t>(NatFlowKind::kSnat);
    out[n++] = flow::Action::Encap(
        flow::EncapParams{.type = hop.tunnel,
                          .outer_src = snat ? config.address.addr : config.vms[f.vm_index].pa,
                          .outer_dst = f.fastpath_pa});
  }
  out[n++] = flow::Action::SetMac(ports.uplink_mac, hop.mac);
  out[n++] = flow::Action::Count();
  if (age_s != 0) out[n++] = flow::Action::Age(age_s);
  out[n++] = flow::Action::Output(ports.uplink_port);
  return n;
}

size_t InboundActions(const NatFlow& f, const AgentConfig& config, const PortMap& ports,
                      uint32_t age_s, flow::Action* out) {
  size_t n = 0;
  out[n++] = flow::Action::Decap();
  out[n++] = flow::Action::SetIpv4Dst(f.dip);
  out[n++] = flow::Action::SetL4Dst(f.dip_port);
  out[n++] = flow::Action::DecTtl();
  out[n++] = flow::Action::SetMac(ports.vm_port_macs[f.vm_index], config.vms[f.vm_index].mac);
  out[n++] = flow::Action::Count();
  if (age_s != 0) out[n++] = flow::Action::Age(age_s);
  out[n++] = flow::Action::Output(ports.vm_ports[f.vm_index]);
  return n;
}

uint32_t FlowAgeSeconds(const NatFlow& f, const NatConfig& nat) {
  return f.proto == flow::kProtoTcp ? nat.tcp_established_timeout_s : nat.udp_timeout_s;
}

std::vector<flow::Rule> BuildFlowRules(const NatFlow& f, const AgentConfig& config,
                                       const PortMap& ports, const FlowNextHop& hop,
                                       uint64_t first_id) {
  const uint32_t age_s = FlowAgeSeconds(f, config.nat);
  const bool snat = f.kind == static_cast<uint8_t>(NatFlowKind::kSnat);
  const std::string proto = L4ProtocolName(f.proto);
  const std::string dip = StrCat(Ipv4ToString(f.dip), ":", f.dip_port);
  const std::string vip = StrCat(Ipv4ToString(f.vip), ":", f.vip_port);
  const std::string remote = StrCat(Ipv4ToString(f.remote), ":", f.remote_port);
  std::vector<flow::Rule> rules;

  flow::Action actions[kMaxFlowActions];
  size_t n = OutboundActions(f, config, ports, hop, age_s, actions);
  std::string name =
      StrCat(snat ? "snat-out " : "stateful-return ", proto, " ", dip, " as ", vip, " -> ", remote);
  if (hop.fastpath) name += StrCat(" fastpath via ", Ipv4ToString(f.fastpath_pa));
  rules.push_back(flow::Rule{.id = first_id,
                             .priority = kFlowRulePriority,
                             .match = {.in_port = ports.vm_ports[f.vm_index],
                                       .src = flow::Ipv4Match::Exact(f.dip),
                                       .dst = flow::Ipv4Match::Exact(f.remote),
                                       .proto = f.proto,
                                       .src_port = flow::PortMatch::Exact(f.dip_port),
                                       .dst_port = flow::PortMatch::Exact(f.remote_port)},
                             .actions = std::vector<flow::Action>(actions, actions + n),
                             .name = std::move(name)});
  if (!snat) return rules;

  n = InboundActions(f, config, ports, age_s, actions);
  rules.push_back(
      flow::Rule{.id = first_id + 1,
                 .priority = kFlowRulePriority,
                 .match = {.in_port = ports.uplink_port,
                           .tunnel = flow::Tunnel::kIpip,
                           .outer_dst = flow::Ipv4Match::Exact(config.address.addr),
                           .src = flow::Ipv4Match::Exact(f.remote),
                           .dst = flow::Ipv4Match::Exact(f.vip),
                           .proto = f.proto,
                           .src_port = flow::PortMatch::Exact(f.remote_port),
                           .dst_port = flow::PortMatch::Exact(f.vip_port)},
                 .actions = std::vector<flow::Action>(actions, actions + n),
                 .name = StrCat("snat-in ", proto, " ", remote, " -> ", vip, " to ", dip)});
  return rules;
}

}  // namespace sluice::agent
