// Per-flow rules: established flows that a data path (the mux's flow cache, the agent's NAT
// flow table) already serves in software, offered to the NIC executor so their packets stop
// reaching the CPU. A rule the NIC takes neither fully nor partially is not kept in the
// executor's software table: the data path's own flow state serves it, and the outcome is
// counted with the PMD's reason. Control thread only (the executor is single-threaded);
// the tally is read by the stats thread.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "offload/flow/rule.h"
#include "offload/packet/counter.h"
#include "offload/rte_flow/executor.h"

namespace sluice::nic {

/// What became of per-flow rules: how many were placed where, and why the refused ones were.
class PerFlowTally {
 public:
  Counter nic;       ///< Fully offloaded.
  Counter partial;   ///< Matched and marked by the NIC; actions in software.
  Counter software;  ///< Refused: the data path's flow state serves the flow.

  /// Records why a rule stayed in software (the rte_flow message, or a probe's).
  void Refused(const std::string& reason);
  std::string last_refusal() const;
  /// Every reason seen → number of rules refused with it.
  std::map<std::string, uint64_t> reasons() const;

 private:
  mutable std::mutex mu_;
  std::string last_refusal_;
  std::map<std::string, uint64_t> reasons_;
};

/// Adds `rule` to `nic` (full offload, else partial) and counts the outcome in `tally`. A rule
/// that lands in software is removed again and its reason recorded; the return value then is
/// Placement::kSoftware and nothing of the rule stays in the executor.
Placement PlaceFlowRule(NicExecutor& nic, const flow::Rule& rule, PerFlowTally& tally);

/// Above every per-flow and static rule: a connection's FIN and RST must not be served by
/// the NIC rule that serves the rest of it.
inline constexpr uint32_t kCloseToSoftwarePriority = 250;

/// The rules that hand TCP FIN and RST segments arriving on `in_port` to software (the
/// application's miss path) instead of the NIC rules that serve the connection, so the data
/// path sees every close, updates its flow state and withdraws the flow's rules. One FIN and
/// one RST rule per tunnel in `tunnels` (kNone: plain TCP; kIpip/kGue: TCP inside that
/// tunnel), each with COUNT, ids first_id, first_id + 1, ...
std::vector<flow::Rule> CloseToSoftwareRules(uint16_t in_port,
                                             const std::vector<flow::Tunnel>& tunnels,
                                             uint64_t first_id);

/// Adds a rule that is useful only in the NIC (like the close rules: software already sees
/// the packets they would divert). Anything but a full offload is removed again and its
/// reason returned; "" when the rule is in the NIC.
std::string PlaceNicOnlyRule(NicExecutor& nic, const flow::Rule& rule);

}  // namespace sluice::nic
