#include "offload/rte_flow/per_flow.h"

namespace sluice::nic {

void PerFlowTally::Refused(const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  last_refusal_ = reason;
  ++reasons_[reason];
}

std::string PerFlowTally::last_refusal() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_refusal_;
}

std::map<std::string, uint64_t> PerFlowTally::reasons() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reasons_;
}

Placement PlaceFlowRule(NicExecutor& nic, const flow::Rule& rule, PerFlowTally& tally) {
  const AddResult result = nic.Add(rule);
  if (result.ok && result.placement == Placement::kNic) {
    tally.nic.Add();
    return Placement::kNic;
  }
  if (result.ok && result.placement == Placement::kPartial) {
    tally.partial.Add();
    return Placement::kPartial;
  }
  tally.software.Add();
  const RuleStatus* status = nic.Status(rule.id);
  tally.Refused(!result.ok                                         ? "invalid rule: " + result.error
                : status != nullptr && !status->full_error.empty() ? status->full_error
                                                                   : "refused");
  nic.Remove(rule.id);
  return Placement::kSoftware;
}

}  // namespace sluice::nic
