// The agent's per-flow walks as flow-IR actions and rules, one definition for both
// executors: the data path applies these action lists to each packet of a NAT flow
// (sw::ApplyActions), and an established flow's NIC rules carry the same lists plus AGE.
//   SNAT out:        VM's DIP:p → remote becomes VIP:q → remote, to the router or, once
//                    redirected, IPIP-encapsulated host PA → Fastpath peer PA.
//   SNAT in:         the reply, IPIP-encapsulated to the host PA by a mux (or the Fastpath
//                    peer): decap, VIP:q → DIP:p, to the VM.
//   Stateful return: a reply from a DIP:port that serves several VIPs (or of a Fastpath
//                    destination flow) leaves as the VIP:port the client used, to the router
//                    or encapsulated VM PA → the source host's PA.
// The inbound direction of an inbound flow needs no per-flow rule: the static inbound rules
// (rules.h) translate it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "hostagent/config.h"
#include "hostagent/nat_flow_table.h"
#include "hostagent/rules.h"
#include "offload/flow/rule.h"

namespace sluice::agent {

/// Per-flow rules win over the static ones (a Fastpath destination flow's return must beat
/// its endpoint's stateless DSR rule).
inline constexpr uint32_t kFlowRulePriority = 200;
/// Room for the longest per-flow action list.
inline constexpr size_t kMaxFlowActions = 10;
/// Per-flow rule ids start here, far above the static rules' (endpoint index * 4 + kind).
inline constexpr uint64_t kFlowRuleIdBase = uint64_t{1} << 62;

/// Where a flow's outbound direction goes next.
struct FlowNextHop {
  flow::MacAddr mac{};    ///< The router's MAC, or the Fastpath peer's.
  bool fastpath = false;  ///< Encapsulate to flow.fastpath_pa (whose MAC is `mac`).
  /// What the Fastpath peer decapsulates (the redirect says: IPIP, GUE, or GRE for an Open
  /// vSwitch host).
  flow::Tunnel tunnel = flow::Tunnel::kIpip;
};

/// The actions of the VM → network direction (SNAT out, stateful return, Fastpath); an AGE
/// of `age_s` seconds before the output when non-zero. Returns how many were written.
size_t OutboundActions(const NatFlow& f, const AgentConfig& config, const PortMap& ports,
                       const FlowNextHop& hop, uint32_t age_s, flow::Action* out);
/// The actions of a SNAT flow's network → VM direction (decap, VIP:q → DIP:p, deliver).
size_t InboundActions(const NatFlow& f, const AgentConfig& config, const PortMap& ports,
                      uint32_t age_s, flow::Action* out);

/// The AGE of an established flow's NIC rules: the NAT idle timeout for its protocol
/// (nat.tcp_established_timeout_s, nat.udp_timeout_s).
uint32_t FlowAgeSeconds(const NatFlow& f, const NatConfig& nat);

/// The NIC rules of an established flow, with ids first_id, first_id + 1: a SNAT flow gets
/// [outbound, inbound], an inbound flow (shared endpoint, Fastpath destination) [return].
/// Each matches the flow's exact 5-tuple and ends with COUNT, AGE and the output.
std::vector<flow::Rule> BuildFlowRules(const NatFlow& f, const AgentConfig& config,
                                       const PortMap& ports, const FlowNextHop& hop,
                                       uint64_t first_id);

}  // namespace sluice::agent
