// IPv4 neighbours (ARP) for a daemon that owns its addresses on a DPDK port: answers ARP
// for the addresses it owns, learns senders, and says when to ask for an unknown next hop.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "offload/flow/rule.h"
#include "offload/packet/counter.h"
#include "offload/packet/drop_reason.h"

namespace sluice::port {

/// A small table of IPv4 → MAC. Sized for the next hops of one L2 segment (routers, muxes,
/// hosts), not for a whole data centre; full tables replace their oldest entry.
///
/// Safe to share between lcores: several workers of one port may learn (an ARP reply lands
/// on whichever RX queue the NIC's hash picks) and all of them look up. Lookup takes no
/// lock (fixed slots, each entry's MAC and "resolved" bit in one atomic word); Learn and
/// ShouldRequest, which only run for ARP frames and unresolved next hops, take a spinlock.
class NeighborTable {
 public:
  explicit NeighborTable(size_t capacity = 256);
  NeighborTable(const NeighborTable&) = delete;
  NeighborTable& operator=(const NeighborTable&) = delete;

  void Learn(uint32_t ip, const flow::MacAddr& mac, uint64_t now_ns);
  bool Lookup(uint32_t ip, flow::MacAddr* mac) const;
  /// True when `ip` is unresolved and no request for it went out in the last `retry_ns`;
  /// records that one goes out now.
  bool ShouldRequest(uint32_t ip, uint64_t now_ns, uint64_t retry_ns = 1'000'000'000);
  size_t size() const { return used_.load(std::memory_order_acquire); }
  /// Bumped on every change of a resolved entry, so users can rebuild what depends on it.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

 private:
  /// `word`: MAC in the low 48 bits, kResolved above; 0 while a slot is being (re)written.
  struct Slot {
    std::atomic<uint32_t> ip{0};
    std::atomic<uint64_t> word{0};
    uint64_t updated_ns = 0;  ///< Only touched under the lock.
  };
  static constexpr uint64_t kResolved = uint64_t{1} << 48;

  Slot* Find(uint32_t ip);
  Slot* Insert(uint32_t ip, uint64_t now_ns);
  void Lock() const {
    while (lock_.test_and_set(std::memory_order_acquire)) {
    }
  }
  void Unlock() const { lock_.clear(std::memory_order_release); }

  size_t capacity_;
  std::unique_ptr<Slot[]> slots_;
  std::atomic<size_t> used_{0};
  std::atomic<uint64_t> generation_{0};
  mutable std::atomic_flag lock_ = ATOMIC_FLAG_INIT;
};

/// What to do with an ARP frame.
enum class ArpOutcome : uint8_t {
  kReply,     ///< The frame was rewritten in place into our reply: transmit it back.
  kConsumed,  ///< Learned from it (a reply or someone else's request): free it.
  kDrop,      ///< Malformed or truncated: free it and count `reason`.
};

/// Answers ARP on one port for the addresses this daemon owns there.
class ArpResponder {
 public:
  ArpResponder(flow::MacAddr own_mac, std::vector<uint32_t> own_ips, NeighborTable* table)
      : own_mac_(own_mac), own_ips_(std::move(own_ips)), table_(table) {}

  /// Handles an ARP frame of `len` bytes (the buffer must hold at least 42 bytes when the
  /// frame is a request for one of our addresses; the reply is written over it).
  ArpOutcome Handle(uint8_t* frame, uint32_t len, uint64_t now_ns, DropReason* reason,
                    uint32_t* reply_len);

  /// Writes a broadcast ARP request for `target_ip` from `sender_ip`; returns its length (42).
  uint16_t BuildRequest(uint8_t* frame, uint32_t sender_ip, uint32_t target_ip) const;

  bool Owns(uint32_t ip) const;
  const flow::MacAddr& mac() const { return own_mac_; }
  void SetOwnedAddresses(std::vector<uint32_t> ips) { own_ips_ = std::move(ips); }

  Counter replies_sent;
  Counter requests_seen;

 private:
  flow::MacAddr own_mac_;
  std::vector<uint32_t> own_ips_;
  NeighborTable* table_;
};

}  // namespace sluice::port
