// A two-port packet relay for the lab: what one DPDK port receives goes out the other, both
// ways, unchanged. sluice-vhost-relay joins a lab VM (a network namespace with the kernel's TCP
// stack, behind a veth read with net_af_packet) to a vhost-user port of ovs-vswitchd-dpdk (a
// net_virtio_user port), standing in for the QEMU guest the lab does not run. Sleeps when idle.
#pragma once

#include <atomic>
#include <cstdint>

#include "offload/packet/counter.h"
#include "offload/port/port.h"

namespace sluice::testing {

/// What one side of the relay received and sent. Written by the polling thread only.
struct RelaySideCounters {
  Counter rx_packets;
  Counter rx_bytes;
  Counter tx_packets;
  Counter tx_bytes;
  /// Packets the port refused to send (its TX ring full, or a vhost-user port with no peer
  /// yet), freed.
  Counter tx_dropped;
};

class PortRelay {
 public:
  static constexpr uint16_t kBurst = 32;

  /// Relays between the started ports `a` and `b` (queue 0 of each); sleeps up to
  /// `max_sleep_us` between polls that find nothing.
  PortRelay(uint16_t a, uint16_t b, uint32_t max_sleep_us = 1000)
      : ports_{a, b}, backoff_(max_sleep_us) {}

  /// One burst from each side to the other; returns the packets received.
  uint32_t PollOnce();
  /// Polls until `stop` is set, backing off while idle.
  void Run(const std::atomic<bool>& stop);

  /// Side 0 is port `a`, side 1 port `b`.
  const RelaySideCounters& side(int i) const { return sides_[i]; }
  uint16_t port(int i) const { return ports_[i]; }
  /// Polls that found nothing on either side (the loop backs off and sleeps on them).
  uint64_t empty_polls() const { return empty_polls_.Get(); }

 private:
  uint32_t Forward(int from);

  uint16_t ports_[2];
  RelaySideCounters sides_[2];
  Counter empty_polls_;
  port::IdleBackoff backoff_;
};

}  // namespace sluice::testing
