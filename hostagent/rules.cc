#include "hostagent/rules.h"

#include "common/net_text.h"
#include "common/strings.h"

namespace sluice::agent {

bool SharesDipPort(const AgentConfig& config, const EndpointConfig& ep) {
  for (const EndpointConfig& other : config.endpoints) {
    if (other.dip == ep.dip && other.dip_port == ep.dip_port && other.proto == ep.proto &&
        (other.vip != ep.vip || other.port != ep.port)) {
      return true;
    }
  }
  return false;
}

bool NeedsConntrack(const AgentConfig& config, const flow::Rule& rule) {
  const size_t e = rule.id / 4;
  return e < config.endpoints.size() && SharesDipPort(config, config.endpoints[e]);
}

namespace {

RuleKind InboundKind(flow::Tunnel tunnel) {
  switch (tunnel) {
    case flow::Tunnel::kGue:
      return RuleKind::kInboundGue;
    case flow::Tunnel::kGre:
      return RuleKind::kInboundGre;
    default:
      return RuleKind::kInboundIpip;
  }
}

const char* TunnelName(flow::Tunnel tunnel) {
  switch (tunnel) {
    case flow::Tunnel::kGue:
      return "gue";
    case flow::Tunnel::kGre:
      return "gre";
    default:
      return "ipip";
  }
}

// True if an endpoint before `e` has the same DIP:port/protocol (it carries the return rule).
bool EarlierSharesDipPort(const AgentConfig& config, size_t e) {
  const EndpointConfig& ep = config.endpoints[e];
  for (size_t i = 0; i < e; ++i) {
    const EndpointConfig& other = config.endpoints[i];
    if (other.dip == ep.dip && other.dip_port == ep.dip_port && other.proto == ep.proto) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::vector<flow::Rule> BuildAgentRules(const AgentConfig& config, const PortMap& ports,
                                        const flow::MacAddr& gateway_mac) {
  std::vector<flow::Rule> rules;
  for (size_t e = 0; e < config.endpoints.size(); ++e) {
    const EndpointConfig& ep = config.endpoints[e];
    size_t v = 0;
    while (config.vms[v].dip != ep.dip) ++v;  // config validation guarantees a match
    const VmConfig& vm = config.vms[v];
    std::string what = StrCat("vip=", Ipv4ToString(ep.vip), ":", ep.port, "/",
                              L4ProtocolName(ep.proto), " dip=", Ipv4ToString(ep.dip), ":",
                              ep.dip_port, " vm=", vm.name);

    for (flow::Tunnel tunnel : ports.inbound_tunnels) {
      rules.push_back(flow::Rule{
          .id = e * 4 + static_cast<uint64_t>(InboundKind(tunnel)),
          .priority = kEndpointPriority,
          .match = {.in_port = ports.uplink_port,
                    .tunnel = tunnel,
                    .outer_dst = flow::Ipv4Match::Exact(vm.pa),
                    .dst = flow::Ipv4Match::Exact(ep.vip),
                    .proto = ep.proto,
                    .dst_port = flow::PortMatch::Exact(ep.port)},
          .actions = {flow::Action::Decap(), flow::Action::SetIpv4Dst(ep.dip),
                      flow::Action::SetL4Dst(ep.dip_port), flow::Action::DecTtl(),
                      flow::Action::SetMac(ports.vm_port_macs[v], vm.mac),
                      flow::Action::Count(), flow::Action::Output(ports.vm_ports[v])},
          .name = StrCat("inbound-", TunnelName(tunnel), " ", what)});
    }
    if (SharesDipPort(config, ep) &&
        (!ports.shared_return_rules || EarlierSharesDipPort(config, e))) {
      continue;
    }
    rules.push_back(flow::Rule{
        .id = e * 4 + static_cast<uint64_t>(RuleKind::kDsrReturn),
        .priority = kEndpointPriority,
        .match = {.in_port = ports.vm_ports[v],
                  .src = flow::Ipv4Match::Exact(ep.dip),
                  .proto = ep.proto,
                  .src_port = flow::PortMatch::Exact(ep.dip_port)},
        .actions = {flow::Action::SetIpv4Src(ep.vip), flow::Action::SetL4Src(ep.port),
                    flow::Action::DecTtl(),
                    flow::Action::SetMac(ports.uplink_mac, gateway_mac), flow::Action::Count(),
                    flow::Action::Output(ports.uplink_port)},
        .name = StrCat("dsr-return ", what)});
  }
  return rules;
}

}  // namespace sluice::agent
