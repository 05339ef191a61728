// Moving established flows off the mux's CPU: the data path offers each flow once its
// handshake is done; the control thread turns offers into per-flow encap rules for the NIC
// executor (offload/rte_flow). On a port that refuses rte_flow rules the flow simply stays
// in the software flow cache, and that outcome is counted with the port's reason.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mux_lite/flow_table.h"
#include "offload/flow/rule.h"
#include "offload/packet/counter.h"
#include "offload/rte_flow/offer_ring.h"
#include "offload/rte_flow/per_flow.h"

namespace sluice::nic {
class NicExecutor;
}

namespace sluice::mux {

/// One established flow, with everything its NIC rule needs.
struct OffloadRequest {
  FlowKey key;
  uint32_t host_pa = 0;
  flow::Tunnel tunnel = flow::Tunnel::kIpip;
  flow::MacAddr next_hop_mac{};
};

/// The seam between the data path and whatever offloads flows.
class FlowOffloadSink {
 public:
  virtual ~FlowOffloadSink() = default;
  /// Data path; must not block. False when the request could not be queued.
  virtual bool Offer(const OffloadRequest& request) = 0;
};

/// Queues offers in single-producer/single-consumer rings (nic::OfferRing), one per worker
/// lcore (data path → control thread), and hands them to a NicExecutor.
class NicFlowOffloader : public FlowOffloadSink {
 public:
  static constexpr uint32_t kRingSize = 4096;

  /// `idle_timeout_s` becomes the rules' AGE so the NIC forgets idle flows by itself.
  /// `workers`: how many data-path lcores offer flows (each through its own Sink).
  NicFlowOffloader(nic::NicExecutor* nic, uint16_t port, uint32_t mux_pa,
                   const flow::MacAddr& mux_mac, uint16_t gue_port, uint32_t idle_timeout_s,
                   size_t workers = 1);

  /// Worker 0's ring (the single-worker case).
  bool Offer(const OffloadRequest& request) override { return rings_[0]->Offer(request); }
  /// The sink worker `worker` offers through; valid for the offloader's lifetime.
  FlowOffloadSink* Sink(size_t worker) { return rings_[worker].get(); }
  /// Control thread: processes up to `max` queued offers of every worker and sweeps aged
  /// rules; returns how many offers it processed.
  size_t Drain(size_t max);

  /// The per-flow rule: exact 5-tuple on the mux port → encap to the host, set MACs, out.
  flow::Rule RuleFor(const OffloadRequest& request, uint64_t id) const;

  /// Totals over the workers.
  uint64_t offered() const;
  uint64_t queue_full() const;
  /// Placements: nic, partial, software (refused by the port: served by the software flow
  /// cache) and the refusals' reasons.
  nic::PerFlowTally placement;
  Counter aged_out;
  std::string last_refusal() const { return placement.last_refusal(); }

 private:
  class Ring : public FlowOffloadSink {
   public:
    bool Offer(const OffloadRequest& request) override { return ring.Push(request); }
    nic::OfferRing<OffloadRequest, kRingSize> ring;
  };

  /// Turns one offer into a NIC rule, or counts why it stays in software.
  void Place(const OffloadRequest& request);

  nic::NicExecutor* nic_;
  uint16_t port_;
  uint32_t mux_pa_;
  flow::MacAddr mux_mac_;
  uint16_t gue_port_;
  uint32_t idle_timeout_s_;
  bool port_accepts_rules_ = false;
  std::string probe_error_;
  uint64_t next_id_ = 1;
  std::vector<std::unique_ptr<Ring>> rings_;
};

}  // namespace sluice::mux
