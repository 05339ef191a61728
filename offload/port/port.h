// DPDK port helpers for the daemons: open a port from devargs, burst transmit with counted
// refusals, and an idle backoff so poll loops sleep when there is no traffic.
#pragma once

#include <cstdint>
#include <string>

#include "offload/flow/rule.h"
#include "offload/packet/counter.h"

struct rte_mbuf;
struct rte_mempool;

namespace sluice::port {

/// Probes `devargs` (e.g. "net_af_packet0,iface=eth0" or a PCI address "0000:3b:00.0"),
/// configures `queues` RX and TX queue pairs on it and starts it. With more than one queue
/// the port spreads received packets by RSS over IPv4 addresses and TCP/UDP ports (whatever
/// subset of that the port can hash), so each worker lcore sees whole flows. Returns false
/// with `*error` set, e.g. when the port has fewer queues (net_af_packet: add qpairs=N).
bool OpenPort(const std::string& devargs, rte_mempool* pool, uint16_t* port_id,
              std::string* error, uint16_t queues = 1);

/// The port's MAC address.
flow::MacAddr PortMac(uint16_t port_id);

/// Stops and closes a port opened by OpenPort.
void ClosePort(uint16_t port_id);

/// The ethdev name `devargs` creates ("net_af_packet_vm5" of "net_af_packet_vm5,iface=v5").
std::string DeviceName(const std::string& devargs);

/// Stops and closes the port and removes its device from the EAL (rte_dev_remove), so a
/// runtime-attached port leaves nothing behind and the same devargs can be probed again.
/// False with `*error` (the DPDK reason) if the device could not be removed.
bool RemovePort(uint16_t port_id, std::string* error);

/// Packets waiting to be sent on one TX queue of a port (one per worker lcore). Packets the
/// port refuses are freed and counted (DropReason::kTxFull).
class TxBuffer {
 public:
  static constexpr uint16_t kCapacity = 64;
  explicit TxBuffer(uint16_t port_id = 0, uint16_t queue = 0) : port_id_(port_id), queue_(queue) {}

  void Push(rte_mbuf* m) {
    if (count_ == kCapacity) Flush();
    pkts_[count_++] = m;
  }
  /// Sends what is buffered; returns how many the port accepted.
  uint16_t Flush();

  uint16_t port_id() const { return port_id_; }
  uint16_t queue() const { return queue_; }
  Counter tx_packets;
  Counter tx_full_drops;

 private:
  uint16_t port_id_;
  uint16_t queue_;
  uint16_t count_ = 0;
  rte_mbuf* pkts_[kCapacity];
};

/// Sleeps after a run of empty polls, longer the longer the port stays idle (up to
/// `max_sleep_us`), and not at all while packets keep coming.
class IdleBackoff {
 public:
  explicit IdleBackoff(uint32_t max_sleep_us = 1000) : max_sleep_us_(max_sleep_us) {}
  void Busy() { empty_polls_ = 0; }
  void Idle();

 private:
  uint32_t max_sleep_us_;
  uint32_t empty_polls_ = 0;
};

}  // namespace sluice::port
