// Test-only: a real DPDK ethdev backed by two rte_rings (net_ring PMD), so data-path tests
// transmit through rte_eth_tx_burst and read what was sent, and inject received packets.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

namespace sluice::testing {

class RingPort {
 public:
  /// Creates and starts the port; `name` must be unique in the process.
  RingPort(const std::string& name, rte_mempool* pool) {
    rx_ = rte_ring_create((name + "_rx").c_str(), 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
    tx_ = rte_ring_create((name + "_tx").c_str(), 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
    int id = rte_eth_from_rings(name.c_str(), &rx_, 1, &tx_, 1, 0);
    if (id < 0) return;
    port_id_ = static_cast<uint16_t>(id);
    rte_eth_conf conf{};
    if (rte_eth_dev_configure(port_id_, 1, 1, &conf) != 0 ||
        rte_eth_rx_queue_setup(port_id_, 0, 1024, 0, nullptr, pool) != 0 ||
        rte_eth_tx_queue_setup(port_id_, 0, 1024, 0, nullptr) != 0 ||
        rte_eth_dev_start(port_id_) != 0) {
      return;
    }
    ok_ = true;
  }
  ~RingPort() {
    for (const auto& bytes : Sent()) (void)bytes;  // drain and free
    if (ok_) {
      rte_eth_dev_stop(port_id_);
      rte_eth_dev_close(port_id_);
    }
    rte_ring_free(rx_);
    rte_ring_free(tx_);
  }
  bool ok() const { return ok_; }
  uint16_t port_id() const { return port_id_; }
  /// The ring rte_eth_rx_burst reads: enqueue mbufs here to have the port "receive" them.
  rte_ring* rx_ring() const { return rx_; }

  /// Everything transmitted on the port since the last call, as bytes (mbufs freed).
  std::vector<std::vector<uint8_t>> Sent() {
    std::vector<std::vector<uint8_t>> out;
    void* obj;
    while (tx_ != nullptr && rte_ring_dequeue(tx_, &obj) == 0) {
      auto* m = static_cast<rte_mbuf*>(obj);
      const uint8_t* data = rte_pktmbuf_mtod(m, const uint8_t*);
      out.emplace_back(data, data + rte_pktmbuf_data_len(m));
      rte_pktmbuf_free(m);
    }
    return out;
  }

 private:
  rte_ring* rx_ = nullptr;
  rte_ring* tx_ = nullptr;
  uint16_t port_id_ = 0;
  bool ok_ = false;
};

/// Copies bytes into a fresh mbuf from `pool` (nullptr if the pool is empty).
inline rte_mbuf* MbufFrom(rte_mempool* pool, const std::vector<uint8_t>& bytes) {
  rte_mbuf* m = rte_pktmbuf_alloc(pool);
  if (m == nullptr) return nullptr;
  char* dst = rte_pktmbuf_append(m, static_cast<uint16_t>(bytes.size()));
  if (dst == nullptr) {
    rte_pktmbuf_free(m);
    return nullptr;
  }
  if (!bytes.empty()) memcpy(dst, bytes.data(), bytes.size());  // data() may be null
  return m;
}

}  // namespace sluice::testing
