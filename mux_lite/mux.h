// The mux data path: for packets to a VIP, pick a backend (flow table, else weighted
// Maglev), encapsulate to the backend's host, send. Answers ARP for its own PA.
// One instance per lcore; nothing here is shared between lcores.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "mux_lite/config.h"
#include "mux_lite/flow_table.h"
#include "mux_lite/maglev.h"
#include "offload/packet/counter.h"
#include "offload/packet/drop_reason.h"
#include "offload/port/neighbor.h"

struct rte_mbuf;
struct rte_mempool;

namespace sluice::mux {

/// A VIP as the data path sees it: config, Maglev table and counters.
struct VipState {
  VipConfig config;
  MaglevTable maglev;
  bool has_backends = false;  ///< False when every backend has weight 0 (kNoBackend drops).
  Counter packets;
  std::unique_ptr<Counter[]> backend_packets;
  std::unique_ptr<Counter[]> backend_flows;
};

struct MuxCounters {
  Counter rx_packets;
  Counter vip_packets;
  Counter new_flows;
  Counter cached_flow_packets;
  Counter arp_requests_sent;
  std::array<Counter, kNumDropReasons> drops;
};

class MuxDataPath {
 public:
  /// What to do with a packet after Process.
  enum class Outcome : uint8_t { kTransmit, kFree, kDropped };

  /// Builds the VIP tables; on a bad VIP (e.g. a Maglev build error) returns nullptr with
  /// `*error` naming it.
  static std::unique_ptr<MuxDataPath> Create(const MuxConfig& config, uint16_t port_id,
                                             const flow::MacAddr& mac, std::string* error);

  /// Handles one received packet; kTransmit means send `m` out of port_id(), kFree means
  /// it was consumed without error, kDropped means it was counted in drops.
  Outcome Process(rte_mbuf* m, uint64_t now_ns);

  /// Sends ARP requests for unresolved next hops (paced). Returns packets to transmit.
  uint16_t ResolveNextHops(rte_mempool* pool, uint64_t now_ns, rte_mbuf** out, uint16_t max);
  /// True once every backend host's next hop is resolved.
  bool NextHopsResolved() const;

  const MuxConfig& config() const { return config_; }
  uint16_t port_id() const { return port_id_; }
  const std::vector<std::unique_ptr<VipState>>& vips() const { return vips_; }
  const MuxCounters& counters() const { return counters_; }
  const FlowTable& flow_table() const { return flows_; }
  const port::ArpResponder& arp() const { return arp_; }

 private:
  MuxDataPath(const MuxConfig& config, uint16_t port_id, const flow::MacAddr& mac);
  Outcome Drop(DropReason reason) {
    counters_.drops[static_cast<size_t>(reason)].Add();
    return Outcome::kDropped;
  }
  uint32_t NextHop(uint32_t pa) const {
    return config_.address.Contains(pa) ? pa : config_.gateway;
  }
  static uint64_t VipKey(uint32_t vip, uint16_t port, uint8_t proto) {
    return uint64_t{vip} << 24 | uint64_t{port} << 8 | proto;
  }

  MuxConfig config_;
  uint16_t port_id_;
  flow::MacAddr mac_;
  std::vector<std::unique_ptr<VipState>> vips_;
  std::unordered_map<uint64_t, uint16_t> vip_index_;
  std::vector<uint32_t> next_hops_;  ///< Every distinct next hop backends need.
  FlowTable flows_;
  port::NeighborTable neighbors_;
  port::ArpResponder arp_;
  MuxCounters counters_;
};

}  // namespace sluice::mux
