// The agent's rules in the rte_flow NIC executor, on the control thread:
//  - the static rules (inbound decap + NAT, DSR return): the data path posts each rule set
//    it installs in software; Sync replaces the previous set in the NIC, so none leak across
//    config changes;
//  - the per-flow NAT rules (SNAT both ways, Fastpath encap, stateful return): the data path
//    offers each established flow through a FlowOffloadChannel (lock-free rings); SyncFlows
//    builds the flow's rules (flow_rules.h), places them (full, partial, or refused and left
//    to the data path's flow table, counted with the PMD's reason), removes them when the
//    flow is withdrawn, drains the NIC's AGE events and tells the data path where each flow
//    went and when the NIC found it idle.
// The data path keeps running everything in software, so a rule the NIC refuses (af_packet, a
// representor without the capability) loses nothing. The data path never waits on rte_flow.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/json_writer.h"
#include "hostagent/config.h"
#include "hostagent/flow_offload.h"
#include "hostagent/flow_rules.h"
#include "hostagent/rules.h"
#include "offload/flow/rule.h"
#include "offload/packet/counter.h"
#include "offload/rte_flow/executor.h"
#include "offload/rte_flow/per_flow.h"

namespace sluice::agent {

/// Close rules (nic::CloseToSoftwareRules) take ids from here, below the per-flow ids.
inline constexpr uint64_t kCloseRuleIdBase = kFlowRuleIdBase - 1024;

class AgentNicRules {
 public:
  /// `nic` must outlive this. Per-flow rules are built from `config`'s VMs, addresses and NAT
  /// timers (fixed while the agent runs) and `ports`; rules without an in_port go to the
  /// uplink.
  AgentNicRules(nic::NicExecutor* nic, const AgentConfig& config, const PortMap& ports,
                uint16_t gue_port);

  /// Control thread: the VMs and their ports after a runtime attach or detach (called before
  /// the data path sees the new VMs); per-flow rules find a flow's VM by its DIP.
  void SetVms(const AgentConfig& config, const PortMap& ports);

  /// Data path: the rule set now installed in software (latest wins; cheap, no rte_flow).
  void Post(std::vector<flow::Rule> rules);
  /// Control thread: replaces the NIC's static rules with the latest posted set, if it
  /// changed. Returns true if it did.
  bool Sync();

  /// The rings the data path offers flows through (AgentDataPath::SetFlowOffload).
  FlowOffloadChannel* channel() { return &channel_; }
  /// Control thread: handles up to `max` offers/withdrawals, sweeps the NIC's aged rules and
  /// answers the data path. Returns how many offers/withdrawals it handled.
  size_t SyncFlows(size_t max = FlowOffloadChannel::kRingSize);
  /// Control thread, at a modest interval: reads the COUNT of up to `max` NIC rules
  /// (continuing where the previous call stopped), adds what moved to the flows' readings and
  /// the totals, and tells the data path which flows the NIC carried packets for (they are
  /// not idle). Returns how many rules it read.
  size_t QueryCounters(size_t max = 4096);
  /// The NIC's reading of the flow with `ref`'s tuple; false if none of its rules is in the
  /// NIC. Any thread.
  bool FlowReading(const NatFlowRef& ref, NicFlowReading* out) const;
  /// Packets and bytes the NIC's COUNTs read (every rule, static and per flow; since start).
  uint64_t offloaded_packets() const;
  uint64_t offloaded_bytes() const;

  /// The static rule set, then the per-flow rules the NIC holds, as dpdk-testpmd commands
  /// (what `sluicectl get nic-rules --testpmd` prints), each preceded by its placement; a
  /// summary line says how many per-flow rules the NIC refused and why.
  std::string Testpmd() const;
  /// "nic": placement totals, the per-rule placement and the reasons rules fell back, and
  /// "flows": the per-flow rules' placements, reasons, aging.
  void WriteStats(JsonWriter& j) const;

  /// Flows with rules in the executor (NIC or partial) and their rules.
  size_t offloaded_flows() const;
  const nic::PerFlowTally& flow_placement() const { return tally_; }
  Counter flows_aged;   ///< Flows whose NIC rules all aged (answered kAged).
  Counter withdrawals;  ///< Withdrawals handled.
  Counter offers;       ///< Offers handled.
  Counter flows_active;  ///< kActive answers: flows whose NIC rules counted packets.
  Counter closes_to_software;  ///< FIN/RST packets the close rules sent to software.

 private:
  struct OffloadedFlow {
    uint8_t generation = 0;
    NatFlowRef ref;
    std::vector<flow::Rule> rules;  ///< Those in the executor (NIC or partial), by id.
    uint32_t in_nic = 0;            ///< Of them fully offloaded and not aged.
    nic::FlowCounts counts;         ///< COUNT deltas of its rules, summed.
  };
  using FlowMap =
      std::unordered_map<NatFlowRef, OffloadedFlow, NatFlowTupleHash, NatFlowTupleEqual>;

  void Place(const FlowOffer& offer);
  void RemoveFlow(FlowMap::iterator it);
  void OnAged(uint64_t rule_id);
  void Notify(const FlowOffloadNotice& notice);
  // Puts the FIN/RST-to-software rules on every port per-flow rules match on (once).
  void InstallCloseRules();

  nic::NicExecutor* nic_;
  AgentConfig config_;  ///< Its VMs guarded by nic_mu_ (SetVms).
  PortMap ports_;       ///< Guarded by nic_mu_.
  uint16_t gue_port_;
  std::mutex post_mu_;  ///< Held only to copy a rule set: the data path never waits on rte_flow.
  std::vector<flow::Rule> posted_;  ///< Guarded by post_mu_.
  uint64_t posted_generation_ = 0;  ///< Guarded by post_mu_.
  /// Serialises every use of nic_ (the executor is single-threaded) and of the per-flow
  /// state: Sync/SyncFlows on the control thread, Testpmd and WriteStats on the stats thread.
  mutable std::mutex nic_mu_;
  uint64_t synced_generation_ = 0;     ///< Guarded by nic_mu_.
  std::vector<flow::Rule> installed_;  ///< Guarded by nic_mu_.
  uint64_t syncs_ = 0;                 ///< Guarded by nic_mu_.
  FlowOffloadChannel channel_;
  FlowMap flows_;                                   ///< Guarded by nic_mu_.
  std::unordered_map<uint64_t, NatFlowRef> owner_;  ///< Rule id → its flow. Guarded by nic_mu_.
  std::deque<FlowOffloadNotice> notice_backlog_;    ///< Waits for room in the ring.
  uint64_t next_rule_id_ = kFlowRuleIdBase;
  nic::PerFlowTally tally_;
  bool close_rules_tried_ = false;      ///< Guarded by nic_mu_.
  std::vector<flow::Rule> close_rules_;  ///< Close rules in the NIC. Guarded by nic_mu_.
  std::string close_rules_error_;       ///< Why one was refused. Guarded by nic_mu_.
};

}  // namespace sluice::agent
