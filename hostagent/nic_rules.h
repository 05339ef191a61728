// The agent's static rules (inbound decap + NAT, DSR return) also go to the rte_flow NIC
// executor, which places each one in the NIC, partially (MARK + queue) or leaves it to the
// software executor, and counts why. The data path keeps running every rule in software,
// so a rule the NIC refuses (af_packet, a representor without the capability) loses
// nothing. The data path posts each new rule set; a control thread syncs it to the NIC:
// rules of the previous set are removed, so none leak across config changes.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/json_writer.h"
#include "offload/flow/rule.h"
#include "offload/rte_flow/executor.h"

namespace sluice::agent {

class AgentNicRules {
 public:
  /// `nic` must outlive this; `uplink_port` is where rules without an in_port go.
  AgentNicRules(nic::NicExecutor* nic, uint16_t uplink_port, uint16_t gue_port);

  /// Data path: the rule set now installed in software (latest wins; cheap, no rte_flow).
  void Post(std::vector<flow::Rule> rules);
  /// Control thread: replaces the NIC's rules with the latest posted set, if it changed.
  /// Returns true if it did.
  bool Sync();

  /// The current rule set as dpdk-testpmd commands (what `sluicectl get nic-rules
  /// --testpmd` prints), each preceded by where the executor placed it.
  std::string Testpmd() const;
  /// "nic": placement totals, the per-rule placement and the reasons rules fell back.
  void WriteStats(JsonWriter& j) const;

 private:
  nic::NicExecutor* nic_;
  uint16_t uplink_port_;
  uint16_t gue_port_;
  std::mutex post_mu_;  ///< Held only to copy a rule set: the data path never waits on rte_flow.
  std::vector<flow::Rule> posted_;  ///< Guarded by post_mu_.
  uint64_t posted_generation_ = 0;  ///< Guarded by post_mu_.
  /// Serialises every use of nic_ (the executor is single-threaded): Sync on the control
  /// thread, Testpmd and WriteStats on the stats thread.
  mutable std::mutex nic_mu_;
  uint64_t synced_generation_ = 0;     ///< Guarded by nic_mu_.
  std::vector<flow::Rule> installed_;  ///< Guarded by nic_mu_.
  uint64_t syncs_ = 0;                 ///< Guarded by nic_mu_.
};

}  // namespace sluice::agent
