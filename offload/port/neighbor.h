// IPv4 neighbours (ARP) for a daemon that owns its addresses on a DPDK port: answers ARP
// for the addresses it owns, learns senders, and says when to ask for an unknown next hop.
#pragma once

#include <cstdint>
#include <vector>

#include "offload/flow/rule.h"
#include "offload/packet/counter.h"
#include "offload/packet/drop_reason.h"

namespace sluice::port {

/// A small table of IPv4 → MAC. Sized for the next hops of one L2 segment (routers, muxes,
/// hosts), not for a whole data centre; full tables replace their oldest entry.
class NeighborTable {
 public:
  explicit NeighborTable(size_t capacity = 256) : capacity_(capacity) {}

  void Learn(uint32_t ip, const flow::MacAddr& mac, uint64_t now_ns);
  bool Lookup(uint32_t ip, flow::MacAddr* mac) const;
  /// True when `ip` is unresolved and no request for it went out in the last `retry_ns`;
  /// records that one goes out now.
  bool ShouldRequest(uint32_t ip, uint64_t now_ns, uint64_t retry_ns = 1'000'000'000);
  size_t size() const { return entries_.size(); }
  /// Bumped on every change of a resolved entry, so users can rebuild what depends on it.
  uint64_t generation() const { return generation_; }

 private:
  struct Entry {
    uint32_t ip;
    bool resolved;
    flow::MacAddr mac;
    uint64_t updated_ns;
  };
  Entry* Find(uint32_t ip);
  Entry* Insert(uint32_t ip, uint64_t now_ns);

  size_t capacity_;
  std::vector<Entry> entries_;
  uint64_t generation_ = 0;
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
