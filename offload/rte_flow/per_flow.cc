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


std::vector<flow::Rule> CloseToSoftwareRules(uint16_t in_port,
                                             const std::vector<flow::Tunnel>& tunnels,
                                             uint64_t first_id) {
  std::vector<flow::Rule> rules;
  for (flow::Tunnel tunnel : tunnels) {
    for (uint8_t flag : {flow::kTcpFlagFin, flow::kTcpFlagRst}) {
      const char* tunnel_name = tunnel == flow::Tunnel::kIpip  ? " in ipip"
                                : tunnel == flow::Tunnel::kGue ? " in gue"
                                : tunnel == flow::Tunnel::kGre ? " in gre"
                                                               : "";
      rules.push_back(flow::Rule{
          .id = first_id + rules.size(),
          .priority = kCloseToSoftwarePriority,
          .match = {.in_port = in_port,
                    .tunnel = tunnel,
                    .proto = flow::kProtoTcp,
                    .tcp_flags = flag,
                    .tcp_flags_mask = flag},
          .actions = {flow::Action::Count(), flow::Action::ToSoftware()},
          .name = std::string("tcp ") + (flag == flow::kTcpFlagFin ? "fin" : "rst") +
                  tunnel_name + " on port " + std::to_string(in_port) + " to software"});
    }
  }
  return rules;
}

std::string PlaceNicOnlyRule(NicExecutor& nic, const flow::Rule& rule) {
  const AddResult result = nic.Add(rule);
  if (result.ok && result.placement == Placement::kNic) return "";
  const RuleStatus* status = nic.Status(rule.id);
  std::string why = !result.ok                                         ? "invalid rule: " + result.error
                    : status != nullptr && !status->full_error.empty() ? status->full_error
                                                                       : "refused";
  nic.Remove(rule.id);
  return why;
}

}  // namespace sluice::nic
