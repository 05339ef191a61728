// Flow IR → OpenFlow 1.5 flow text for an OVS bridge in the userspace datapath, in the
// syntax of `ovs-ofctl add-flows` / `dump-flows`. One IR rule becomes one flow in table 0
// whose cookie is the rule id, so the bridge's flows can be read back and compared.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "offload/flow/rule.h"

namespace sluice::vswitch {

/// IR rule priorities above this are refused: the range above is for base flows.
inline constexpr uint32_t kMaxRulePriority = 60000;
/// Cookies of base flows (tunnel steering, ARP, table miss): kBaseCookie | index. Rule ids
/// must stay below it.
inline constexpr uint64_t kBaseCookie = 0xfff0000000000000ull;

/// Where IR ports are on the bridge.
struct OvsPorts {
  std::map<uint16_t, uint32_t> ofport;  ///< IR port → OpenFlow port number.
  uint32_t gre_port = 0;                ///< OpenFlow port of the GRE tunnel port (0: none).
  /// `to_software`: output to this OpenFlow port (the agent's slow-path port); 0 sends a
  /// packet-in to the controller instead.
  uint32_t slow_path_port = 0;
};

/// One OpenFlow flow.
struct OvsFlow {
  uint64_t cookie = 0;
  uint8_t table = 0;
  uint16_t priority = 0;
  uint16_t idle_timeout = 0;
  std::string match;    ///< "tcp,in_port=1,nw_dst=10.200.0.10,tp_dst=80,nw_frag=no"
  std::string actions;  ///< "set_field:10.1.0.1->ip_dst,output:3"

  /// The `add-flows` line: "table=0,priority=100,cookie=0x1,<match> actions=<actions>".
  std::string Text() const;
  /// Table + priority + match: what identifies the flow for modify/delete_strict.
  std::string Key() const;
  bool operator==(const OvsFlow&) const = default;
};

/// Per-rule choices the IR does not carry.
struct RuleOptions {
  /// Per-flow NAT state in OVS conntrack, for a DIP:port that serves several VIP:ports (the
  /// reply's VIP is known only per connection). An inbound rule's set_ipv4_dst/set_l4_dst
  /// become `ct(commit,zone=Z,nat(dst=DIP:port))`; a return rule's set_ipv4_src/set_l4_src
  /// become the reverse of that recorded DNAT: table 0 marks the packet (reg0 = low 32 bits
  /// of the rule id) and sends it through `ct(zone=Z,nat,table=1)`; a table-1 flow takes
  /// replies of tracked connections (`ct_state=+trk+rpl`) with that mark and runs the rest of
  /// the rule's actions. The return rule then translates to two flows.
  bool conntrack = false;
  uint16_t ct_zone = 1;
};

/// Translates one rule. Errors say why OVS cannot express it (INVALID_ARGUMENT for a rule
/// that fails flow::Validate or names an unmapped port, UNIMPLEMENTED for what OVS's
/// userspace datapath has no form for: IPIP/GUE tunnels, encap).
absl::StatusOr<OvsFlow> Translate(const flow::Rule& rule, const OvsPorts& ports);
/// As Translate, with options; a conntrack return rule gives two flows (table 0, table 1).
absl::StatusOr<std::vector<OvsFlow>> TranslateRule(const flow::Rule& rule, const OvsPorts& ports,
                                                   const RuleOptions& options);

/// The flows every bridge needs besides the rules:
///  - per uplink: GRE to a local tunnel endpoint → LOCAL, where the userspace datapath
///    pops the tunnel (tnl_pop) and re-injects the inner packet from the GRE port;
///  - ARP uplink ↔ LOCAL, so the host's tunnel endpoint address answers ARP;
///  - LOCAL → uplink (the host's own traffic);
///  - table miss: to the slow-path port if there is one, else drop.
struct BaseFlowSpec {
  uint32_t uplink_ofport = 0;
  std::vector<uint32_t> tunnel_endpoints;  ///< Host PAs (host byte order) that decap GRE.
  uint32_t slow_path_port = 0;
};
std::vector<OvsFlow> BaseFlows(const BaseFlowSpec& spec);

}  // namespace sluice::vswitch
