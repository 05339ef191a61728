// The mux data path: for packets to a VIP, pick a backend (flow table, else weighted
// Maglev), encapsulate to the backend's host, send. Answers ARP for its own PA.
// One instance per worker lcore (its own RX/TX queue, flow table, VIP tables and counters);
// the only thing workers of a port share is the neighbour table, which is built for it.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "mux_lite/config.h"
#include "mux_lite/flow_offload.h"
#include "mux_lite/flow_table.h"
#include "mux_lite/maglev.h"
#include "offload/packet/parse.h"
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
  std::vector<int64_t> wrr_current;  ///< Smooth weighted round robin state.
  Counter packets;
  std::unique_ptr<Counter[]> backend_packets;
  std::unique_ptr<Counter[]> backend_flows;
};

/// Everything a config change can replace, built off the data path and published whole
/// (RCU style: the data path acknowledges the generation it uses; an old table is freed
/// only after the data path has moved past it). Counters start at zero in a new table.
struct VipTable {
  std::vector<std::unique_ptr<VipState>> vips;
  std::unordered_map<uint64_t, uint16_t> index;  ///< VipKey → position in `vips`.
  std::vector<SnatRangeConfig> snat_ranges;
  std::vector<uint32_t> next_hops;  ///< Every distinct next hop backends and SNAT hosts need.
  uint64_t generation = 0;

  /// Builds the table for `config`; nullptr with `*error` naming the VIP on failure.
  static std::unique_ptr<VipTable> Build(const MuxConfig& config, std::string* error);
  const SnatRangeConfig* FindSnatRange(uint32_t addr, uint8_t proto, uint16_t port) const;
};

struct MuxCounters {
  Counter rx_packets;
  Counter vip_packets;
  Counter new_flows;            ///< First packets: scheduler + flow insert (the slow path).
  Counter cached_flow_packets;  ///< Packets of established flows (flow-table hits).
  Counter closing_flows;        ///< Flows that saw FIN or RST.
  Counter reopened_flows;       ///< New SYNs on the 4-tuple of a closed or taken-out flow.
  Counter nic_refreshed_flows;  ///< Flow-table entries kept alive by the NIC's COUNT.
  Counter snat_return_packets;  ///< Replies to a SNAT port range, sent to the lessee host.
  Counter fastpath_redirects_sent;
  Counter local_packets;        ///< Addressed to the mux PA itself (BGP etc.), left to the kernel.
  Counter arp_requests_sent;
  std::array<Counter, kNumDropReasons> drops;
};

inline uint64_t VipKey(uint32_t vip, uint16_t port, uint8_t proto) {
  return uint64_t{vip} << 24 | uint64_t{port} << 8 | proto;
}

class MuxDataPath {
 public:
  ~MuxDataPath();
  /// What to do with a packet after Process.
  enum class Outcome : uint8_t { kTransmit, kFree, kDropped };

  /// Builds the VIP tables; on a bad VIP (e.g. a Maglev build error) returns nullptr with
  /// `*error` naming it.
  /// `pool` supplies the mbufs of the control packets the mux originates (ARP requests,
  /// Fastpath redirects).
  /// `neighbors`: the port's neighbour table shared by all its workers (any worker may
  /// receive the ARP reply another one asked for); nullptr gives the instance its own.
  static std::unique_ptr<MuxDataPath> Create(const MuxConfig& config, uint16_t port_id,
                                             const flow::MacAddr& mac, rte_mempool* pool,
                                             std::string* error,
                                             port::NeighborTable* neighbors = nullptr);

  /// Handles one received packet; kTransmit means send `m` out of port_id(), kFree means
  /// it was consumed without error, kDropped means it was counted in drops.
  Outcome Process(rte_mbuf* m, uint64_t now_ns);
  /// Process for each of a burst, in order (`outcomes[i]` for `pkts[i]`), with the same
  /// result for every packet, counter and flow. Faster: plain Ethernet/IPv4 TCP or UDP
  /// packets are parsed straight into their flow key and their flow-table lookups overlap
  /// (hash and tag prefetch for the whole burst, then the matching entries, then the
  /// packets in order); an established flow's packet is encapsulated directly (ForwardFlow),
  /// everything else goes through Process.
  void ProcessBurst(rte_mbuf* const* pkts, uint16_t n, uint64_t now_ns, Outcome* outcomes);

  /// Replaces the VIPs, backends and SNAT ranges (control thread). The config's other
  /// fields (address, port, flow table ...) must be unchanged; returns false with `*error`
  /// naming the first one that differs or the VIP that does not build.
  bool Reload(const MuxConfig& config, std::string* error);
  /// Data path, between bursts: records that no packet uses a table older than the current.
  void Quiesce() {
    acked_generation_.store(table_.load(std::memory_order_acquire)->generation,
                            std::memory_order_release);
  }
  /// Control thread: frees retired tables the data path has moved past; returns how many
  /// are still waiting.
  size_t ReclaimRetired();
  /// Runs `read` on the current table under the control lock (stats thread).
  template <typename F>
  void ReadTable(F read) const {
    std::lock_guard<std::mutex> lock(control_mu_);
    read(*table_.load(std::memory_order_acquire));
  }
  uint64_t generation() const { return table_.load(std::memory_order_acquire)->generation; }

  /// Established flows (handshake done) are offered to `sink` once each (nullptr: none).
  void SetOffloadSink(FlowOffloadSink* sink) { offload_ = sink; }
  /// Refreshes, in the flow table, up to `max` offloaded flows the NIC carried packets for
  /// (the sink's COUNT readings), so a flow the NIC serves does not idle out here. Call
  /// between bursts, now and then; returns how many it took.
  uint32_t TakeOffloadActivity(uint64_t now_ns, uint32_t max = 256);

  /// Control packets Process originated (Fastpath redirects) waiting to be sent; moves up
  /// to `max` of them to `out`.
  uint16_t TakeControlPackets(rte_mbuf** out, uint16_t max);

  /// Sends ARP requests for unresolved next hops (paced). Returns packets to transmit.
  uint16_t ResolveNextHops(uint64_t now_ns, rte_mbuf** out, uint16_t max);
  /// True once every backend host's next hop is resolved.
  bool NextHopsResolved() const;

  const MuxConfig& config() const { return config_; }
  uint16_t port_id() const { return port_id_; }
  const MuxCounters& counters() const { return counters_; }
  const FlowTable& flow_table() const { return flows_; }
  const port::ArpResponder& arp() const { return arp_; }

 private:
  MuxDataPath(const MuxConfig& config, uint16_t port_id, const flow::MacAddr& mac,
              rte_mempool* pool, port::NeighborTable* neighbors);
  uint32_t PickBackend(VipState& vip, const packet::ParsedPacket& pkt, uint32_t hash);
  /// True if the flow's backend is still in the VIP's current table with a weight > 0.
  static bool BackendInService(const VipState& vip, const FlowEntry& flow, bool indices_valid);
  void SendFastpathRedirects(const VipTable& table, const FlowEntry& flow,
                             const SnatRangeConfig& source);
  bool Encapsulate(rte_mbuf* m, packet::ParsedPacket* pkt, flow::Tunnel tunnel, uint32_t host,
                   DropReason* reason);
  /// A packet of the shape client traffic to a VIP has (for us, one segment, IPv4 without
  /// options or fragmentation, a complete TCP or non-GUE UDP header, not to the mux PA),
  /// read straight from the frame: everything ForwardFlow needs from Parse.
  struct FlowPacket {
    FlowKey key;
    uint32_t hash = 0;
    uint16_t ip_total_len = 0;
    uint8_t tcp_flags = 0;
  };
  /// False when the packet has another shape (Process decides what it is).
  bool ReadFlowPacket(const rte_mbuf* m, FlowPacket* out) const;
  /// Process for a packet ReadFlowPacket accepted: an established flow's packet that needs
  /// no flow-state change (no SYN, FIN or RST; no offload offer or Fastpath redirect due)
  /// is counted and encapsulated here, the IPv4 header built in place without the IR
  /// interpreter; any other goes to Process before anything is counted.
  Outcome ForwardFlow(rte_mbuf* m, const FlowPacket& p, uint64_t now_ns);

  Outcome Drop(DropReason reason) {
    counters_.drops[static_cast<size_t>(reason)].Add();
    return Outcome::kDropped;
  }
  uint32_t NextHop(uint32_t pa) const {
    return config_.address.Contains(pa) ? pa : config_.gateway;
  }

  MuxConfig config_;
  uint16_t port_id_;
  flow::MacAddr mac_;
  rte_mempool* pool_;
  FlowOffloadSink* offload_ = nullptr;
  rte_mbuf* control_tx_[16];
  uint16_t control_tx_count_ = 0;
  std::atomic<VipTable*> table_{nullptr};  ///< Owned; published by Reload.
  std::atomic<uint64_t> acked_generation_{0};
  mutable std::mutex control_mu_;  ///< Serialises Reload, ReclaimRetired and ReadTable.
  std::vector<std::unique_ptr<VipTable>> retired_;
  FlowTable flows_;
  std::unique_ptr<port::NeighborTable> own_neighbors_;  ///< When not given a shared one.
  port::NeighborTable& neighbors_;
  port::ArpResponder arp_;
  MuxCounters counters_;
};

}  // namespace sluice::mux
