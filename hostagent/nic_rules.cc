#include "hostagent/nic_rules.h"

#include "offload/rte_flow/translate.h"

namespace sluice::agent {

AgentNicRules::AgentNicRules(nic::NicExecutor* nic, uint16_t uplink_port, uint16_t gue_port)
    : nic_(nic), uplink_port_(uplink_port), gue_port_(gue_port) {}

void AgentNicRules::Post(std::vector<flow::Rule> rules) {
  std::lock_guard<std::mutex> lock(post_mu_);
  posted_ = std::move(rules);
  ++posted_generation_;
}

bool AgentNicRules::Sync() {
  std::lock_guard<std::mutex> nic_lock(nic_mu_);
  std::vector<flow::Rule> rules;
  {
    std::lock_guard<std::mutex> lock(post_mu_);
    if (posted_generation_ == synced_generation_) return false;
    synced_generation_ = posted_generation_;
    rules = posted_;
  }
  // Whole sets: the previous set's rules go first, so a rule the new set no longer has
  // (a deleted endpoint, a detached VM) never stays in the NIC.
  nic_->RemoveAll();
  for (const flow::Rule& rule : rules) nic_->Add(rule);
  installed_ = std::move(rules);
  ++syncs_;
  return true;
}

std::string AgentNicRules::Testpmd() const {
  std::lock_guard<std::mutex> lock(nic_mu_);
  std::string out;
  for (const flow::Rule& rule : installed_) {
    const nic::RuleStatus* status = nic_->Status(rule.id);
    out += "# placement: ";
    out += status != nullptr ? nic::PlacementName(status->placement) : "none";
    if (status != nullptr && !status->full_error.empty()) out += " (" + status->full_error + ")";
    out += "\n";
    out += nic::TestpmdRules({rule}, {.port_id = uplink_port_, .gue_port = gue_port_});
  }
  return out;
}

void AgentNicRules::WriteStats(JsonWriter& j) const {
  std::lock_guard<std::mutex> lock(nic_mu_);
  j.Key("nic")
      .BeginObject()
      .Field("rules", static_cast<uint64_t>(installed_.size()))
      .Field("syncs", syncs_);
  for (const auto& [name, value] : nic_->Counters()) j.Field(name, value);
  j.Key("fallback_reasons").BeginObject();
  for (const auto& [reason, count] : nic_->FallbackReasons()) j.Field(reason, count);
  j.EndObject();
  j.EndObject();
}

}  // namespace sluice::agent
