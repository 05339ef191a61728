#include "tests/support/vhost_relay.h"

#include <rte_ethdev.h>
#include <rte_mbuf.h>

namespace sluice::testing {

uint32_t PortRelay::Forward(int from) {
  const int to = 1 - from;
  rte_mbuf* pkts[kBurst];
  const uint16_t n = rte_eth_rx_burst(ports_[from], 0, pkts, kBurst);
  if (n == 0) return 0;
  uint64_t bytes = 0;
  for (uint16_t i = 0; i < n; ++i) bytes += rte_pktmbuf_pkt_len(pkts[i]);
  sides_[from].rx_packets.Add(n);
  sides_[from].rx_bytes.Add(bytes);
  const uint16_t sent = rte_eth_tx_burst(ports_[to], 0, pkts, n);
  uint64_t sent_bytes = bytes;
  if (sent < n) {
    for (uint16_t i = sent; i < n; ++i) sent_bytes -= rte_pktmbuf_pkt_len(pkts[i]);
    rte_pktmbuf_free_bulk(pkts + sent, n - sent);
    sides_[to].tx_dropped.Add(n - sent);
  }
  sides_[to].tx_packets.Add(sent);
  sides_[to].tx_bytes.Add(sent_bytes);
  return n;
}

uint32_t PortRelay::PollOnce() { return Forward(0) + Forward(1); }

void PortRelay::Run(const std::atomic<bool>& stop) {
  while (!stop.load(std::memory_order_relaxed)) {
    if (PollOnce() > 0) {
      backoff_.Busy();
    } else {
      empty_polls_.Add();
      backoff_.Idle();
    }
  }
}

}  // namespace sluice::testing
