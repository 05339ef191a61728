#include "mux_lite/flow_offload.h"

#include <algorithm>

#include "offload/rte_flow/executor.h"

namespace sluice::mux {

NicFlowOffloader::NicFlowOffloader(nic::NicExecutor* nic, uint16_t port, uint32_t mux_pa,
                                   const flow::MacAddr& mux_mac, uint16_t gue_port,
                                   uint32_t idle_timeout_s, size_t workers)
    : nic_(nic),
      port_(port),
      mux_pa_(mux_pa),
      mux_mac_(mux_mac),
      gue_port_(gue_port),
      idle_timeout_s_(idle_timeout_s) {
  const nic::PortCapabilities& caps = nic_->Probe(port_);
  port_accepts_rules_ = caps.validate_ok;
  if (!port_accepts_rules_) probe_error_ = caps.validate_error;
  for (size_t i = 0; i < std::max<size_t>(workers, 1); ++i) {
    rings_.push_back(std::make_unique<Ring>(static_cast<uint8_t>(i)));
  }
}

uint64_t NicFlowOffloader::offered() const {
  uint64_t n = 0;
  for (const auto& r : rings_) n += r->ring.pushed.Get();
  return n;
}

uint64_t NicFlowOffloader::queue_full() const {
  uint64_t n = 0;
  for (const auto& r : rings_) n += r->ring.full.Get();
  return n;
}

flow::Rule NicFlowOffloader::RuleFor(const OffloadRequest& r, uint64_t id) const {
  return flow::Rule{
      .id = id,
      .priority = 10,
      .match = {.in_port = port_,
                .src = flow::Ipv4Match::Exact(r.key.src),
                .dst = flow::Ipv4Match::Exact(r.key.dst),
                .proto = r.key.proto,
                .src_port = flow::PortMatch::Exact(r.key.src_port),
                .dst_port = flow::PortMatch::Exact(r.key.dst_port)},
      .actions = {flow::Action::Encap({.type = r.tunnel,
                                       .outer_src = mux_pa_,
                                       .outer_dst = r.host_pa,
                                       .gue_dst_port = gue_port_}),
                  flow::Action::SetMac(mux_mac_, r.next_hop_mac), flow::Action::Count(),
                  flow::Action::Age(idle_timeout_s_), flow::Action::Output(port_)},
      .name = "mux-flow " + flow::FormatIpv4(r.key.src) + ":" + std::to_string(r.key.src_port) +
              " -> " + flow::FormatIpv4(r.key.dst) + ":" + std::to_string(r.key.dst_port)};
}

void NicFlowOffloader::InstallCloseRules() {
  close_rules_tried_ = true;
  size_t placed = 0;
  std::string error;
  for (const flow::Rule& rule :
       nic::CloseToSoftwareRules(port_, {flow::Tunnel::kNone}, kCloseRuleIdBase)) {
    std::string why = nic::PlaceNicOnlyRule(*nic_, rule);
    if (why.empty()) {
      ++placed;
    } else {
      error = why;
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  close_rules_ = placed;
  close_rules_error_ = error;
}

void NicFlowOffloader::Place(const OffloadRequest& request) {
  if (!port_accepts_rules_) {
    placement.software.Add();
    placement.Refused(probe_error_);
    return;
  }
  if (request.withdraw) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = ids_.find(request.key);
    if (it == ids_.end()) return;  // refused, aged, or never placed
    nic_->Remove(it->second);
    flows_.erase(it->second);
    ids_.erase(it);
    withdrawn.Add();
    return;
  }
  if (!close_rules_tried_) InstallCloseRules();
  const uint64_t id = next_id_++;
  const nic::Placement where = nic::PlaceFlowRule(*nic_, RuleFor(request, id), placement);
  if (where == nic::Placement::kSoftware) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (auto old = ids_.find(request.key); old != ids_.end()) {  // offered again: replace
    nic_->Remove(old->second);
    flows_.erase(old->second);
  }
  flows_[id] = OffloadedFlow{.request = request, .partial = where == nic::Placement::kPartial};
  ids_[request.key] = id;
}

size_t NicFlowOffloader::QueryCounters(size_t max) {
  const uint64_t errors_before = nic_->totals().count_query_errors;
  std::lock_guard<std::mutex> lock(mu_);
  const size_t read = nic_->QueryCounters(max, [this](const nic::CountChange& c) {
    if (c.id >= kCloseRuleIdBase) {
      closes_to_software.Add(c.delta.packets);
      return;
    }
    nic_packets.Add(c.delta.packets);
    nic_bytes.Add(c.delta.bytes);
    auto it = flows_.find(c.id);
    if (it == flows_.end()) return;
    it->second.packets = c.total.packets;
    it->second.bytes = c.total.bytes;
    if (c.delta.packets == 0) return;
    const uint8_t worker = it->second.request.worker;
    if (worker < rings_.size() && rings_[worker]->active.Push(it->second.request.key)) {
      active_flows.Add();
    } else {
      active_queue_full.Add();
    }
  });
  count_query_errors.Add(nic_->totals().count_query_errors - errors_before);
  count_errors_ = nic_->CountQueryErrors();
  return read;
}

std::vector<NicFlowOffloader::OffloadedFlow> NicFlowOffloader::Flows(size_t limit,
                                                                     size_t* total) const {
  std::lock_guard<std::mutex> lock(mu_);
  *total = flows_.size();
  std::vector<OffloadedFlow> out;
  for (auto it = flows_.begin(); it != flows_.end() && out.size() < limit; ++it) {
    out.push_back(it->second);
  }
  return out;
}

size_t NicFlowOffloader::close_rules() const {
  std::lock_guard<std::mutex> lock(mu_);
  return close_rules_;
}

std::string NicFlowOffloader::close_rules_error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return close_rules_error_;
}

std::map<std::string, uint64_t> NicFlowOffloader::count_errors() const {
  std::lock_guard<std::mutex> lock(mu_);
  return count_errors_;
}

size_t NicFlowOffloader::Drain(size_t max) {
  size_t done = 0;
  OffloadRequest request;
  // Round robin over the workers' rings so a busy worker cannot starve the others.
  for (bool took = true; took && done < max;) {
    took = false;
    for (auto& ring : rings_) {
      if (done == max || !ring->ring.Pop(&request)) continue;
      took = true;
      ++done;
      Place(request);
    }
  }
  // The mux's flow table ages on its own; an aged rule only leaves the NIC.
  aged_out.Add(nic_->AgeSweep([this](uint64_t id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = flows_.find(id);
    if (it == flows_.end()) return;
    ids_.erase(it->second.request.key);
    flows_.erase(it);
  }));
  return done;
}

}  // namespace sluice::mux
