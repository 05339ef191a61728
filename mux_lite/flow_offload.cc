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
  for (size_t i = 0; i < std::max<size_t>(workers, 1); ++i) rings_.push_back(std::make_unique<Ring>());
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

void NicFlowOffloader::Place(const OffloadRequest& request) {
  if (!port_accepts_rules_) {
    placement.software.Add();
    placement.Refused(probe_error_);
    return;
  }
  nic::PlaceFlowRule(*nic_, RuleFor(request, next_id_++), placement);
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
  aged_out.Add(nic_->AgeSweep([](uint64_t) {}));  // the mux's flow table ages on its own
  return done;
}

}  // namespace sluice::mux
