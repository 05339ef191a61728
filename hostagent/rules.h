// The host agent's static packet walks as flow-IR rules: inbound (decap + VIP→DIP NAT +
// deliver to the VM) and DSR return (DIP→VIP NAT + straight to the router). The same rules
// go to whichever executor the host uses. A DIP:port that answers for several VIP:ports
// gets no static DSR rule: its replies need per-flow state (the agent's flow layer).
#pragma once

#include <cstdint>
#include <vector>

#include "hostagent/config.h"
#include "offload/flow/rule.h"

namespace sluice::agent {

/// Where each VM and the uplink are, as the executor's ports see them.
struct PortMap {
  uint16_t uplink_port = 0;
  flow::MacAddr uplink_mac{};
  std::vector<uint16_t> vm_ports;      ///< Parallel to AgentConfig::vms.
  std::vector<flow::MacAddr> vm_port_macs;
  /// Encapsulations the inbound rules accept: IPIP and GUE on the agent's own ports; GRE on
  /// a vswitch host (OVS's userspace datapath decaps GRE natively, not IPIP or GUE).
  std::vector<flow::Tunnel> inbound_tunnels = {flow::Tunnel::kIpip, flow::Tunnel::kGue};
  /// Also emit one return rule per DIP:port that serves several VIP:ports (its rewrite is
  /// that of the DIP:port's first endpoint), for an executor that keeps per-connection NAT
  /// state itself (OVS conntrack: NeedsConntrack rules). The agent's own data path leaves
  /// these replies to its flow layer instead.
  bool shared_return_rules = false;
};

inline constexpr uint32_t kEndpointPriority = 100;

/// Rule ids encode the walk so stats can add them up: id = endpoint index * 4 + kind.
enum class RuleKind : uint8_t {
  kInboundIpip = 0,
  kInboundGue = 1,
  kDsrReturn = 2,
  kInboundGre = 3,
};
inline RuleKind KindOf(const flow::Rule& r) { return static_cast<RuleKind>(r.id % 4); }

/// True if `ep`'s DIP:port/protocol also serves another VIP:port, so a reply's VIP can only
/// come from per-flow state.
bool SharesDipPort(const AgentConfig& config, const EndpointConfig& ep);

/// True if `rule` (built by BuildAgentRules for `config`) belongs to an endpoint whose
/// DIP:port is shared: an executor with connection tracking must record the inbound DNAT
/// and un-NAT replies from that record (vswitch: RuleOptions::conntrack).
bool NeedsConntrack(const AgentConfig& config, const flow::Rule& rule);

/// Builds every rule for `config`. `gateway_mac` is the router's MAC for DSR replies.
std::vector<flow::Rule> BuildAgentRules(const AgentConfig& config, const PortMap& ports,
                                        const flow::MacAddr& gateway_mac);

}  // namespace sluice::agent
