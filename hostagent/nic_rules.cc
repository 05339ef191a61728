#include "hostagent/nic_rules.h"

#include <algorithm>

#include "offload/rte_flow/translate.h"

namespace sluice::agent {

AgentNicRules::AgentNicRules(nic::NicExecutor* nic, const AgentConfig& config, const PortMap& ports,
                             uint16_t gue_port)
    : nic_(nic), config_(config), ports_(ports), gue_port_(gue_port) {}

void AgentNicRules::SetVms(const AgentConfig& config, const PortMap& ports) {
  std::lock_guard<std::mutex> lock(nic_mu_);
  config_.vms = config.vms;
  ports_ = ports;
}

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
  // (a deleted endpoint, a detached VM) never stays in the NIC. Per-flow rules stay.
  for (const flow::Rule& rule : installed_) nic_->Remove(rule.id);
  for (const flow::Rule& rule : rules) nic_->Add(rule);
  installed_ = std::move(rules);
  ++syncs_;
  return true;
}

size_t AgentNicRules::SyncFlows(size_t max) {
  std::lock_guard<std::mutex> lock(nic_mu_);
  // Answers that found the ring full last time go first, in order.
  while (!notice_backlog_.empty() && channel_.notices.Push(notice_backlog_.front())) {
    notice_backlog_.pop_front();
  }
  size_t done = 0;
  FlowOffer offer;
  while (done < max && channel_.offers.Pop(&offer)) {
    ++done;
    if (offer.op == FlowOffer::Op::kOffer) {
      Place(offer);
      continue;
    }
    withdrawals.Add();
    auto it = flows_.find(NatFlowRef::Of(offer.flow));
    if (it != flows_.end()) RemoveFlow(it);
  }
  nic_->AgeSweep([this](uint64_t id) { OnAged(id); });
  return done;
}

void AgentNicRules::InstallCloseRules() {
  close_rules_tried_ = true;
  // Per-flow rules match plain TCP on the VMs' ports and IPIP on the uplink (GRE from Open
  // vSwitch peers); the static inbound rules take every encapsulation the agent accepts.
  std::vector<flow::Rule> rules;
  for (uint16_t port : ports_.vm_ports) {
    for (flow::Rule& r : nic::CloseToSoftwareRules(port, {flow::Tunnel::kNone},
                                                   kCloseRuleIdBase + rules.size())) {
      rules.push_back(std::move(r));
    }
  }
  for (flow::Rule& r : nic::CloseToSoftwareRules(ports_.uplink_port, ports_.inbound_tunnels,
                                                 kCloseRuleIdBase + rules.size())) {
    rules.push_back(std::move(r));
  }
  for (const flow::Rule& rule : rules) {
    std::string why = nic::PlaceNicOnlyRule(*nic_, rule);
    if (why.empty()) {
      close_rules_.push_back(rule);
    } else {
      close_rules_error_ = why;
    }
  }
}

void AgentNicRules::Place(const FlowOffer& offer) {
  offers.Add();
  if (!close_rules_tried_) InstallCloseRules();
  const NatFlowRef ref = NatFlowRef::Of(offer.flow);
  auto it = flows_.find(ref);
  if (it != flows_.end()) RemoveFlow(it);  // a replacement (new next hop) or a reused tuple
  // The data path's VM index may predate a hot-plug that renumbered the VMs: the DIP says
  // which VM the flow belongs to now. A flow whose VM has left stays in software.
  NatFlow flow = offer.flow;
  auto vm = std::find_if(config_.vms.begin(), config_.vms.end(),
                         [&](const VmConfig& v) { return v.dip == flow.dip; });
  if (vm == config_.vms.end()) {
    Notify(FlowOffloadNotice{.kind = FlowOffloadNotice::Kind::kPlaced,
                             .generation = offer.generation,
                             .nic_rules = 0,
                             .ref = ref});
    return;
  }
  flow.vm_index = static_cast<uint8_t>(vm - config_.vms.begin());
  std::vector<flow::Rule> rules = BuildFlowRules(
      flow, config_, ports_,
      FlowNextHop{.mac = offer.next_hop_mac, .fastpath = offer.fastpath, .tunnel = offer.tunnel},
      next_rule_id_);
  next_rule_id_ += rules.size();
  OffloadedFlow entry{.generation = offer.generation, .ref = ref};
  for (flow::Rule& rule : rules) {
    const nic::Placement placement = nic::PlaceFlowRule(*nic_, rule, tally_);
    if (placement == nic::Placement::kSoftware) continue;  // the flow table serves it
    if (placement == nic::Placement::kNic) ++entry.in_nic;
    owner_[rule.id] = ref;
    entry.rules.push_back(std::move(rule));
  }
  Notify(FlowOffloadNotice{.kind = FlowOffloadNotice::Kind::kPlaced,
                           .generation = offer.generation,
                           .nic_rules = static_cast<uint8_t>(entry.in_nic),
                           .ref = ref});
  if (!entry.rules.empty()) flows_.emplace(ref, std::move(entry));
}

size_t AgentNicRules::QueryCounters(size_t max) {
  std::lock_guard<std::mutex> lock(nic_mu_);
  std::vector<NatFlowRef> active;
  const size_t read = nic_->QueryCounters(max, [&](const nic::CountChange& c) {
    if (c.id >= kCloseRuleIdBase && c.id < kFlowRuleIdBase) {
      closes_to_software.Add(c.delta.packets);
      return;
    }
    auto owner = owner_.find(c.id);
    if (owner == owner_.end()) return;
    auto it = flows_.find(owner->second);
    if (it == flows_.end()) return;
    it->second.counts.packets += c.delta.packets;
    it->second.counts.bytes += c.delta.bytes;
    if (c.delta.packets > 0) active.push_back(it->second.ref);
  });
  // One answer per flow, however many of its rules moved.
  std::sort(active.begin(), active.end(), [](const NatFlowRef& a, const NatFlowRef& b) {
    return NatFlowTupleHash()(a) < NatFlowTupleHash()(b);
  });
  active.erase(std::unique(active.begin(), active.end()), active.end());
  for (const NatFlowRef& ref : active) {
    auto it = flows_.find(ref);
    flows_active.Add();
    Notify(FlowOffloadNotice{.kind = FlowOffloadNotice::Kind::kActive,
                             .generation = it->second.generation,
                             .ref = ref});
  }
  return read;
}

bool AgentNicRules::FlowReading(const NatFlowRef& ref, NicFlowReading* out) const {
  std::lock_guard<std::mutex> lock(nic_mu_);
  auto it = flows_.find(ref);
  if (it == flows_.end() || !(it->second.ref == ref)) return false;
  *out = NicFlowReading{.rules_nic = it->second.in_nic,
                        .rules_partial = static_cast<uint32_t>(it->second.rules.size()) -
                                         std::min<uint32_t>(it->second.in_nic,
                                                            it->second.rules.size()),
                        .packets = it->second.counts.packets,
                        .bytes = it->second.counts.bytes};
  return true;
}

uint64_t AgentNicRules::offloaded_packets() const {
  std::lock_guard<std::mutex> lock(nic_mu_);
  return nic_->totals().nic_packets;
}

uint64_t AgentNicRules::offloaded_bytes() const {
  std::lock_guard<std::mutex> lock(nic_mu_);
  return nic_->totals().nic_bytes;
}

void AgentNicRules::RemoveFlow(FlowMap::iterator it) {
  for (const flow::Rule& rule : it->second.rules) {
    nic_->Remove(rule.id);
    owner_.erase(rule.id);
  }
  flows_.erase(it);
}

void AgentNicRules::OnAged(uint64_t rule_id) {
  // The executor has removed the rule already.
  auto owner = owner_.find(rule_id);
  if (owner == owner_.end()) return;
  auto it = flows_.find(owner->second);
  owner_.erase(owner);
  if (it == flows_.end()) return;
  OffloadedFlow& entry = it->second;
  std::erase_if(entry.rules, [rule_id](const flow::Rule& r) { return r.id == rule_id; });
  if (entry.in_nic > 0) --entry.in_nic;
  // One direction idle while the other is still hit (a one-way stream): the idle one's
  // packets, if any come, reach software again; the flow stays.
  if (entry.in_nic > 0) return;
  flows_aged.Add();
  Notify(FlowOffloadNotice{
      .kind = FlowOffloadNotice::Kind::kAged, .generation = entry.generation, .ref = entry.ref});
  RemoveFlow(it);  // partially offloaded rules (no AGE of their own) go with it
}

void AgentNicRules::Notify(const FlowOffloadNotice& notice) {
  if (notice_backlog_.empty() && channel_.notices.Push(notice)) return;
  notice_backlog_.push_back(notice);
}

size_t AgentNicRules::offloaded_flows() const {
  std::lock_guard<std::mutex> lock(nic_mu_);
  return flows_.size();
}

std::string AgentNicRules::Testpmd() const {
  std::lock_guard<std::mutex> lock(nic_mu_);
  const nic::TranslateOptions options{.port_id = ports_.uplink_port, .gue_port = gue_port_};
  std::string out;
  for (const flow::Rule& rule : installed_) {
    const nic::RuleStatus* status = nic_->Status(rule.id);
    out += "# placement: ";
    out += status != nullptr ? nic::PlacementName(status->placement) : "none";
    if (status != nullptr && !status->full_error.empty()) out += " (" + status->full_error + ")";
    out += "\n";
    out += nic::TestpmdRules({rule}, options);
  }
  for (const flow::Rule& rule : close_rules_) {
    out += "# placement: nic, closes to software\n";
    out += nic::TestpmdRules({rule}, options);
  }
  if (!close_rules_error_.empty()) {
    out += "# close rules refused by the NIC: " + close_rules_error_ + "\n";
  }
  // Per-flow rules in rule-id order (the order flows were placed).
  std::vector<const flow::Rule*> flow_rules;
  for (const auto& [ref, entry] : flows_) {
    for (const flow::Rule& rule : entry.rules) flow_rules.push_back(&rule);
  }
  std::sort(flow_rules.begin(), flow_rules.end(),
            [](const flow::Rule* a, const flow::Rule* b) { return a->id < b->id; });
  for (const flow::Rule* rule : flow_rules) {
    const nic::RuleStatus* status = nic_->Status(rule->id);
    out += "# placement: ";
    out += status != nullptr ? nic::PlacementName(status->placement) : "none";
    if (status != nullptr && !status->full_error.empty()) out += " (" + status->full_error + ")";
    out += ", per flow\n";
    out += nic::TestpmdRules({*rule}, options);
  }
  const uint64_t refused = tally_.software.Get();
  if (refused > 0) {
    out += "# per-flow rules refused by the NIC and left to the flow table: " +
           std::to_string(refused) + "\n";
    for (const auto& [reason, count] : tally_.reasons()) {
      out += "#   " + std::to_string(count) + " x " + reason + "\n";
    }
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
  j.Key("count_query_errors_by_reason").BeginObject();
  for (const auto& [reason, count] : nic_->CountQueryErrors()) j.Field(reason, count);
  j.EndObject();
  j.Field("close_rules", static_cast<uint64_t>(close_rules_.size()))
      .Field("close_rules_refused", close_rules_error_)
      .Field("closes_to_software", closes_to_software.Get());
  uint64_t flow_rules = 0;
  for (const auto& [ref, entry] : flows_) flow_rules += entry.rules.size();
  j.Key("flows")
      .BeginObject()
      .Field("offers", offers.Get())
      .Field("withdrawals", withdrawals.Get())
      .Field("offloaded_flows", static_cast<uint64_t>(flows_.size()))
      .Field("offloaded_rules", flow_rules)
      .Field("rules_nic", tally_.nic.Get())
      .Field("rules_partial", tally_.partial.Get())
      .Field("rules_software", tally_.software.Get())
      .Field("aged_flows", flows_aged.Get())
      .Field("active_answers", flows_active.Get())
      .Field("offer_queue_full", channel_.offers.full.Get())
      .Field("answers_waiting", static_cast<uint64_t>(notice_backlog_.size()));
  j.Key("software_reasons").BeginObject();
  for (const auto& [reason, count] : tally_.reasons()) j.Field(reason, count);
  j.EndObject();
  j.EndObject();
  j.EndObject();
}

}  // namespace sluice::agent
