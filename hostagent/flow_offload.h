// The agent's per-flow NAT entries on their way to the NIC: the data path offers each flow
// once it is established (and withdraws it when it closes, idles out, or its VM, lease or
// endpoint goes) through one single-producer/single-consumer ring; the control thread that
// owns the NIC executor (nic_rules.h) answers through another: where the flow's rules were
// placed, and when the NIC's AGE found all of them idle. Neither side ever waits on the other.
#pragma once

#include <cstdint>

#include "hostagent/nat_flow_table.h"
#include "offload/flow/rule.h"
#include "offload/rte_flow/offer_ring.h"

namespace sluice::agent {

/// Identifies a flow on both sides: its inside 5-tuple (unique in the table), plus what
/// tells a flow from a later one that reuses the tuple.
struct NatFlowRef {
  uint32_t dip = 0;
  uint32_t remote = 0;
  uint32_t vip = 0;
  uint16_t dip_port = 0;
  uint16_t remote_port = 0;
  uint16_t vip_port = 0;
  uint8_t proto = 0;
  uint8_t kind = 0;

  static NatFlowRef Of(const NatFlow& f) {
    return {.dip = f.dip,
            .remote = f.remote,
            .vip = f.vip,
            .dip_port = f.dip_port,
            .remote_port = f.remote_port,
            .vip_port = f.vip_port,
            .proto = f.proto,
            .kind = f.kind};
  }
  /// Same inside 5-tuple (what the control side keys its flows by).
  bool SameTuple(const NatFlowRef& o) const {
    return dip == o.dip && remote == o.remote && dip_port == o.dip_port &&
           remote_port == o.remote_port && proto == o.proto;
  }
  bool operator==(const NatFlowRef& o) const {
    return SameTuple(o) && vip == o.vip && vip_port == o.vip_port && kind == o.kind;
  }
};

struct NatFlowTupleHash {
  size_t operator()(const NatFlowRef& r) const {
    uint64_t h = (uint64_t{r.dip} << 32 | r.remote) * 0x9e3779b97f4a7c15ull;
    h ^= (uint64_t{r.dip_port} << 24 | uint64_t{r.remote_port} << 8 | r.proto) *
         0xc2b2ae3d27d4eb4full;
    return static_cast<size_t>(h ^ (h >> 31));
  }
};
struct NatFlowTupleEqual {
  bool operator()(const NatFlowRef& a, const NatFlowRef& b) const { return a.SameTuple(b); }
};

/// Data path → control thread.
struct FlowOffer {
  enum class Op : uint8_t {
    kOffer = 1,     ///< Put (or replace) the flow's rules in the NIC.
    kWithdraw = 2,  ///< Remove them.
  };
  Op op = Op::kOffer;
  uint8_t generation = 0;        ///< kOffer: the flow's offer generation, echoed in the answers.
  bool fastpath = false;         ///< kOffer: outbound encapsulated to flow.fastpath_pa.
  flow::Tunnel tunnel = flow::Tunnel::kIpip;  ///< kOffer, fastpath: the peer's encapsulation.
  flow::MacAddr next_hop_mac{};  ///< kOffer: the router's or the Fastpath peer's MAC.
  NatFlow flow;                  ///< The entry as it is now (kWithdraw: its keys).
};

/// Control thread → data path.
struct FlowOffloadNotice {
  enum class Kind : uint8_t {
    kPlaced = 1,  ///< `nic_rules` of the flow's rules are in the NIC (fully offloaded).
    kAged = 2,    ///< The NIC's AGE fired for every rule of the flow it held: all removed.
    kActive = 3,  ///< The NIC's COUNT of the flow's rules moved: it carried packets since
                  ///< the previous reading, so the flow is not idle.
  };
  Kind kind = Kind::kPlaced;
  uint8_t generation = 0;
  uint8_t nic_rules = 0;
  NatFlowRef ref;
};

/// What the NIC knows of one offloaded flow (for `sluicectl get flows`).
struct NicFlowReading {
  uint32_t rules_nic = 0;      ///< Of its rules fully offloaded (and not aged).
  uint32_t rules_partial = 0;  ///< Matched and marked by the NIC, finished in software.
  uint64_t packets = 0;        ///< COUNT readings summed over its rules (aged ones included).
  uint64_t bytes = 0;
};

/// The two rings between one data-path lcore and the NIC control thread.
struct FlowOffloadChannel {
  static constexpr uint32_t kRingSize = 4096;
  nic::OfferRing<FlowOffer, kRingSize> offers;           ///< Data path → control.
  nic::OfferRing<FlowOffloadNotice, kRingSize> notices;  ///< Control → data path.
};

}  // namespace sluice::agent
