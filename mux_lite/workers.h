// The mux's data-path workers: one MuxDataPath per lcore, each polling its own RX/TX queue
// pair of the port (the NIC's RSS keeps a flow on one queue), with its own flow table, VIP
// tables and counters, so nothing on the data path is locked or shared except the port's
// neighbour table. Maglev tables are identical in every worker (and every mux), so even a
// flow that changes queues keeps its backend. Worker 0 also resolves next hops.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mux_lite/config.h"
#include "mux_lite/flow_offload.h"
#include "mux_lite/mux.h"
#include "offload/port/neighbor.h"
#include "offload/port/port.h"

struct rte_mempool;

namespace sluice::mux {

/// Counters summed over the workers, for stats.
struct MuxTotals {
  MuxCounters counters;
  uint64_t tx_packets = 0;
  uint64_t tx_full_drops = 0;
  uint64_t arp_replies_sent = 0;
  uint64_t flow_table_capacity = 0;
  uint64_t flow_table_live = 0;
  uint64_t flow_table_evictions = 0;
  std::vector<uint64_t> worker_packets;  ///< rx_packets of each worker (how RSS spreads).
};

class MuxWorkers {
 public:
  /// Builds `config.workers` data paths on `port_id` (opened with that many queue pairs);
  /// each offers established flows through `offload->Sink(i)` when `offload` is set.
  static std::unique_ptr<MuxWorkers> Create(const MuxConfig& config, uint16_t port_id,
                                            const flow::MacAddr& mac, rte_mempool* pool,
                                            NicFlowOffloader* offload, std::string* error);

  size_t size() const { return workers_.size(); }
  MuxDataPath& worker(size_t i) { return *workers_[i]->mux; }
  const MuxDataPath& worker(size_t i) const { return *workers_[i]->mux; }
  const MuxConfig& config() const { return workers_[0]->mux->config(); }

  /// Worker `i`'s poll loop (call it on its own lcore) until `stop` is set. Worker 0 also
  /// resolves next hops and sets `ready` once they are.
  void Run(size_t i, const std::atomic<bool>& stop, std::atomic<bool>* ready);

  /// Control thread: replaces VIPs/backends/SNAT ranges in every worker. All or nothing:
  /// the config is checked and built by worker 0 first; on error no worker changes.
  bool Reload(const MuxConfig& config, std::string* error);
  /// Control thread: frees the tables every worker has moved past.
  void ReclaimRetired();
  uint64_t generation() const { return workers_[0]->mux->generation(); }
  /// Worker `i`'s loop iterations: the control thread withdraws the VIPs when any worker
  /// stops advancing.
  uint64_t heartbeat(size_t i) const {
    return workers_[i]->heartbeat.load(std::memory_order_relaxed);
  }

  /// Fills `*totals` (which must be freshly constructed) with the sums over the workers.
  void Totals(uint64_t now_ns, MuxTotals* totals) const;
  /// Runs `read(const VipTable&)` on worker `i`'s current table (stats thread).
  template <typename F>
  void ReadTable(size_t i, F read) const {
    workers_[i]->mux->ReadTable(read);
  }

 private:
  struct Worker {
    std::unique_ptr<MuxDataPath> mux;
    std::unique_ptr<port::TxBuffer> tx;
    std::atomic<uint64_t> heartbeat{0};
  };
  MuxWorkers() = default;

  port::NeighborTable neighbors_;
  std::vector<std::unique_ptr<Worker>> workers_;
};

}  // namespace sluice::mux
