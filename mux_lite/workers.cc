#include "mux_lite/workers.h"

#include <rte_ethdev.h>
#include <rte_mbuf.h>

namespace sluice::mux {

std::unique_ptr<MuxWorkers> MuxWorkers::Create(const MuxConfig& config, uint16_t port_id,
                                               const flow::MacAddr& mac, rte_mempool* pool,
                                               NicFlowOffloader* offload, std::string* error) {
  std::unique_ptr<MuxWorkers> workers(new MuxWorkers());
  for (uint16_t i = 0; i < config.workers; ++i) {
    auto w = std::make_unique<Worker>();
    w->mux = MuxDataPath::Create(config, port_id, mac, pool, error, &workers->neighbors_);
    if (w->mux == nullptr) return nullptr;
    if (offload != nullptr) w->mux->SetOffloadSink(offload->Sink(i));
    w->tx = std::make_unique<port::TxBuffer>(port_id, i);
    workers->workers_.push_back(std::move(w));
  }
  return workers;
}

void MuxWorkers::Run(size_t i, const std::atomic<bool>& stop, std::atomic<bool>* ready) {
  Worker& w = *workers_[i];
  MuxDataPath& mux = *w.mux;
  port::TxBuffer& tx = *w.tx;
  const uint16_t port_id = mux.port_id();
  const uint16_t queue = tx.queue();
  const uint64_t hz = rte_get_tsc_hz();
  auto now_ns = [hz] { return static_cast<uint64_t>(rte_get_tsc_cycles() * (1e9 / hz)); };
  constexpr uint16_t kBurst = 32;
  rte_mbuf* pkts[kBurst];
  port::IdleBackoff backoff;
  uint64_t next_housekeeping = 0;
  uint64_t next_offload_activity = 0;
  while (!stop.load(std::memory_order_relaxed)) {
    w.heartbeat.fetch_add(1, std::memory_order_relaxed);
    const uint64_t now = now_ns();
    if (i == 0 && now >= next_housekeeping) {
      rte_mbuf* requests[8];
      const uint16_t n = mux.ResolveNextHops(now, requests, 8);
      for (uint16_t k = 0; k < n; ++k) tx.Push(requests[k]);
      if (!ready->load(std::memory_order_relaxed) && mux.NextHopsResolved()) {
        ready->store(true);
        fprintf(stderr, "sluice-mux %s: next hops resolved, ready\n", mux.config().name.c_str());
      }
      next_housekeeping = now + 100'000'000;
    }
    if (now >= next_offload_activity) {
      mux.TakeOffloadActivity(now);  // flows the NIC carries: not idle in this table
      next_offload_activity = now + 100'000'000;
    }
    const uint16_t n = rte_eth_rx_burst(port_id, queue, pkts, kBurst);
    MuxDataPath::Outcome outcomes[kBurst];
    mux.ProcessBurst(pkts, n, now, outcomes);
    for (uint16_t k = 0; k < n; ++k) {
      if (outcomes[k] == MuxDataPath::Outcome::kTransmit) {
        tx.Push(pkts[k]);
      } else {
        rte_pktmbuf_free(pkts[k]);
      }
    }
    rte_mbuf* control_packets[16];
    const uint16_t c = mux.TakeControlPackets(control_packets, 16);
    for (uint16_t k = 0; k < c; ++k) tx.Push(control_packets[k]);
    tx.Flush();
    mux.Quiesce();
    if (n == 0) {
      backoff.Idle();
    } else {
      backoff.Busy();
    }
  }
}

bool MuxWorkers::Reload(const MuxConfig& config, std::string* error) {
  if (!workers_[0]->mux->Reload(config, error)) return false;
  for (size_t i = 1; i < workers_.size(); ++i) {
    // Same config, same checks: it cannot fail where worker 0 succeeded, short of memory.
    if (!workers_[i]->mux->Reload(config, error)) {
      *error = "worker " + std::to_string(i) + ": " + *error;
      return false;
    }
  }
  return true;
}

void MuxWorkers::ReclaimRetired() {
  for (auto& w : workers_) w->mux->ReclaimRetired();
}

void MuxWorkers::Totals(uint64_t now_ns, MuxTotals* totals) const {
  MuxTotals& t = *totals;
  const uint32_t now_s = static_cast<uint32_t>(now_ns / 1'000'000'000) + 1;
  auto add = [](Counter& to, const Counter& from) { to.Add(from.Get()); };
  for (const auto& w : workers_) {
    const MuxCounters& c = w->mux->counters();
    MuxCounters& s = t.counters;
    add(s.rx_packets, c.rx_packets);
    add(s.vip_packets, c.vip_packets);
    add(s.new_flows, c.new_flows);
    add(s.cached_flow_packets, c.cached_flow_packets);
    add(s.closing_flows, c.closing_flows);
    add(s.reopened_flows, c.reopened_flows);
    add(s.nic_refreshed_flows, c.nic_refreshed_flows);
    add(s.snat_return_packets, c.snat_return_packets);
    add(s.fastpath_redirects_sent, c.fastpath_redirects_sent);
    add(s.local_packets, c.local_packets);
    add(s.arp_requests_sent, c.arp_requests_sent);
    for (size_t r = 0; r < kNumDropReasons; ++r) add(s.drops[r], c.drops[r]);
    t.tx_packets += w->tx->tx_packets.Get();
    t.tx_full_drops += w->tx->tx_full_drops.Get();
    t.arp_replies_sent += w->mux->arp().replies_sent.Get();
    t.flow_table_capacity += w->mux->flow_table().capacity();
    t.flow_table_live += w->mux->flow_table().CountLive(now_s);
    t.flow_table_evictions += w->mux->flow_table().evictions.Get();
    t.worker_packets.push_back(c.rx_packets.Get());
  }
}

}  // namespace sluice::mux
