// Moving established flows off the mux's CPU: the data path offers each flow once its
// handshake is done; the control thread turns offers into per-flow encap rules for the NIC
// executor (offload/rte_flow). On a port that refuses rte_flow rules the flow simply stays
// in the software flow cache, and that outcome is counted with the port's reason.
#pragma once

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
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
  uint8_t worker = 0;  ///< The offering worker (set by its sink): whose flow table holds it.
  bool withdraw = false;  ///< Remove the flow's rule (it closed): only `key` matters.
};

/// The seam between the data path and whatever offloads flows.
class FlowOffloadSink {
 public:
  virtual ~FlowOffloadSink() = default;
  /// Data path; must not block. False when the request could not be queued.
  virtual bool Offer(const OffloadRequest& request) = 0;
  /// Data path: the next offloaded flow the NIC carried packets for since the previous
  /// COUNT reading (it is not idle: refresh it in the flow table); false when none.
  virtual bool TakeActive(FlowKey* /*key*/) { return false; }
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
  bool TakeActive(FlowKey* key) override { return rings_[0]->TakeActive(key); }
  /// The sink worker `worker` offers through; valid for the offloader's lifetime.
  FlowOffloadSink* Sink(size_t worker) { return rings_[worker].get(); }
  /// Control thread: processes up to `max` queued offers of every worker and sweeps aged
  /// rules; returns how many offers it processed.
  size_t Drain(size_t max);
  /// Control thread, at a modest interval: reads the COUNT of up to `max` NIC rules into the
  /// offloaded flows' readings and the totals, and hands each flow whose reading moved back
  /// to its worker (TakeActive), whose flow table then keeps it. Returns how many rules it
  /// read.
  size_t QueryCounters(size_t max = 4096);

  /// A flow whose rule is in the NIC (fully or partially), with the NIC's COUNT reading.
  struct OffloadedFlow {
    OffloadRequest request;
    bool partial = false;
    uint64_t packets = 0;
    uint64_t bytes = 0;
  };
  /// Up to `limit` offloaded flows, oldest first, and how many there are. Any thread.
  std::vector<OffloadedFlow> Flows(size_t limit, size_t* total) const;

  /// The per-flow rule: exact 5-tuple on the mux port → encap to the host, set MACs, out.
  flow::Rule RuleFor(const OffloadRequest& request, uint64_t id) const;

  /// Totals over the workers.
  uint64_t offered() const;
  uint64_t queue_full() const;
  /// Placements: nic, partial, software (refused by the port: served by the software flow
  /// cache) and the refusals' reasons.
  nic::PerFlowTally placement;
  Counter aged_out;
  Counter nic_packets;           ///< COUNT readings of the per-flow rules, summed.
  Counter nic_bytes;
  Counter count_query_errors;    ///< Failed rte_flow_query calls (reasons: count_errors()).
  Counter closes_to_software;    ///< FIN/RST the close rules handed to the mux's software.
  Counter active_flows;          ///< Flows handed back as active (their COUNT moved).
  Counter active_queue_full;     ///< ... that found the worker's ring full (not refreshed).
  Counter withdrawn;             ///< Rules removed because their flow closed.
  std::string last_refusal() const { return placement.last_refusal(); }
  /// Close rules in the NIC; why one was refused ("" if none was).
  size_t close_rules() const;
  std::string close_rules_error() const;
  std::map<std::string, uint64_t> count_errors() const;

  /// Close rules take ids from here; per-flow rules count up from 1.
  static constexpr uint64_t kCloseRuleIdBase = uint64_t{1} << 62;

 private:
  class Ring : public FlowOffloadSink {
   public:
    explicit Ring(uint8_t worker) : worker_(worker) {}
    bool Offer(const OffloadRequest& request) override {
      OffloadRequest r = request;
      r.worker = worker_;
      return ring.Push(r);
    }
    bool TakeActive(FlowKey* key) override { return active.Pop(key); }
    nic::OfferRing<OffloadRequest, kRingSize> ring;  ///< Worker → control thread.
    nic::OfferRing<FlowKey, kRingSize> active;       ///< Control thread → worker.

   private:
    uint8_t worker_;
  };

  /// Turns one offer into a NIC rule, or counts why it stays in software.
  void Place(const OffloadRequest& request);
  /// FIN/RST of the mux port's TCP to software, so the flow table sees every close.
  void InstallCloseRules();

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
  mutable std::mutex mu_;  ///< Guards what the stats thread reads below.
  std::map<uint64_t, OffloadedFlow> flows_;  ///< By rule id.
  struct KeyLess {
    bool operator()(const FlowKey& a, const FlowKey& b) const {
      return memcmp(&a, &b, sizeof(FlowKey)) < 0;
    }
  };
  std::map<FlowKey, uint64_t, KeyLess> ids_;  ///< Rule id of each flow in flows_.
  std::map<std::string, uint64_t> count_errors_;
  bool close_rules_tried_ = false;
  size_t close_rules_ = 0;
  std::string close_rules_error_;
};

}  // namespace sluice::mux
