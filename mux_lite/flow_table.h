// The mux's connection table: which backend each 5-tuple was given, so established flows
// keep their DIP when the Maglev table changes. Fixed memory chosen at start, no allocation
// or locks on the data path (one table per lcore); set-associative with LRU eviction inside
// each bucket and an idle timeout.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>

#include "offload/packet/counter.h"

namespace sluice::mux {

struct FlowKey {
  uint32_t src = 0;
  uint32_t dst = 0;
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  uint8_t proto = 0;
  uint8_t pad[3] = {0, 0, 0};
  bool operator==(const FlowKey& o) const { return memcmp(this, &o, sizeof(*this)) == 0; }
};
static_assert(sizeof(FlowKey) == 16);

struct FlowEntry {
  FlowKey key;
  uint32_t host_pa = 0;       ///< Where the flow is encapsulated to.
  uint32_t dip = 0;           ///< The backend chosen (for stats and redirects).
  uint16_t vip_index = 0;     ///< Index of the VIP in the config snapshot.
  uint16_t backend_index = 0; ///< Index of the backend within that VIP.
  uint32_t last_seen_s = 0;   ///< 0 = free slot.
};
static_assert(sizeof(FlowEntry) == 32);

class FlowTable {
 public:
  static constexpr uint32_t kWays = 8;

  /// `capacity` is rounded up to a power-of-two number of 8-way buckets.
  FlowTable(uint32_t capacity, uint32_t idle_timeout_s);

  /// The live entry for `key` (refreshing its timestamp), or nullptr.
  FlowEntry* Find(const FlowKey& key, uint32_t hash, uint32_t now_s);
  /// A slot for a new flow: a free or expired one in the bucket, else the least recently
  /// used (counted as an eviction). The caller fills in the value fields.
  FlowEntry* Insert(const FlowKey& key, uint32_t hash, uint32_t now_s);
  void Erase(FlowEntry* entry) { entry->last_seen_s = 0; }

  /// Live flows (walks the table; for stats, not the data path).
  uint64_t CountLive(uint32_t now_s) const;
  uint32_t capacity() const { return buckets_ * kWays; }
  static constexpr uint32_t BytesPerFlow() { return sizeof(FlowEntry); }

  Counter inserts;
  Counter evictions;

 private:
  bool Live(const FlowEntry& e, uint32_t now_s) const {
    return e.last_seen_s != 0 && now_s - e.last_seen_s <= idle_timeout_s_;
  }
  uint32_t buckets_;
  uint32_t idle_timeout_s_;
  std::unique_ptr<FlowEntry[]> entries_;
};

}  // namespace sluice::mux
