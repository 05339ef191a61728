// The mux's connection table: which backend each 5-tuple was given, so established flows
// keep their DIP when the Maglev table changes. Fixed memory chosen at start, no allocation
// or locks on the data path (one table per lcore); set-associative (8 ways) with eviction
// of the entry closest to expiry, idle timeouts per protocol and a short linger after a TCP
// FIN or RST. Each slot also has a 16-bit tag (hash bits the bucket index does not use) in a
// dense array beside the buckets, so a lookup reads one cache line of tags and then only the
// entries whose tag matches, instead of the whole 256-byte bucket.
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
  static constexpr uint8_t kClosing = 1;     ///< Saw FIN or RST: expires after the linger.
  static constexpr uint8_t kRedirected = 2;  ///< Fastpath redirect sent.
  static constexpr uint8_t kOffloadOffered = 4;  ///< Handed to the flow offloader.

  FlowKey key;
  uint32_t host_pa = 0;        ///< Where the flow is encapsulated to.
  uint16_t vip_index = 0;      ///< VIP in the config snapshot the flow was created under.
  uint16_t backend_index = 0;  ///< Backend within that VIP.
  uint32_t expires_s = 0;      ///< 0 = free slot.
  uint8_t flags = 0;
  uint8_t tunnel = 0;          ///< flow::Tunnel used towards host_pa.
  uint16_t reserved = 0;
};
static_assert(sizeof(FlowEntry) == 32);

struct FlowTimeouts {
  uint32_t tcp_idle_s = 300;
  uint32_t udp_idle_s = 30;
  uint32_t closing_s = 10;  ///< After FIN/RST, so retransmissions and the last ACK still pass.
};

class FlowTable {
 public:
  static constexpr uint32_t kWays = 8;

  /// `capacity` is rounded up to a power-of-two number of 8-way buckets.
  FlowTable(uint32_t capacity, FlowTimeouts timeouts);

  /// First step of a lookup ahead of time: starts loading the tags of the bucket `hash` maps
  /// to (one cache line). With a million flows the table is far larger than the caches, and
  /// a burst's lookups are otherwise serial misses.
  void PrefetchTags(uint32_t hash) const {
    PrefetchLine(reinterpret_cast<const char*>(&tags_[BucketOf(hash) * kWays]));
  }
  /// Second step, once the tags are (nearly) there: starts loading the entries whose tag
  /// matches `hash` (one line for an established flow), or the whole bucket when none does
  /// (a new flow: Insert looks at every way).
  void PrefetchEntries(uint32_t hash) const {
    const uint32_t b = BucketOf(hash);
    const char* bucket = reinterpret_cast<const char*>(&buckets_mem_[b]);
    uint32_t ways = MatchingWays(b, Tag(hash));
    if (ways == 0) {
      for (size_t off = 0; off < sizeof(Bucket); off += 64) PrefetchLine(bucket + off);
      return;
    }
    while (ways != 0) {
      const uint32_t i = static_cast<uint32_t>(__builtin_ctz(ways));
      ways &= ways - 1;
      PrefetchLine(bucket + i * sizeof(FlowEntry));
    }
  }

  /// One cache line towards L1. Inline asm, not __builtin_prefetch: GCC 12 merges or drops
  /// builtin prefetches it cannot prove useful (measured: the four lines of a bucket became
  /// one, or none after an inlined hash call).
  static void PrefetchLine(const char* p) {
#if defined(__x86_64__)
    asm volatile("prefetcht0 %0" : : "m"(*p));
#else
    __builtin_prefetch(p, 0, 3);
#endif
  }

  /// The live entry for `key` (its expiry pushed out), or nullptr.
  FlowEntry* Find(const FlowKey& key, uint32_t hash, uint32_t now_s);
  /// A slot for a new flow: a free or expired one in the bucket, else the one closest to
  /// expiry (counted as an eviction). The caller fills in the value fields.
  FlowEntry* Insert(const FlowKey& key, uint32_t hash, uint32_t now_s);
  /// A FIN or RST was seen: the flow lingers for `closing_s`, then its slot is free.
  void MarkClosing(FlowEntry* entry, uint32_t now_s);
  void Erase(FlowEntry* entry) { entry->expires_s = 0; }

  /// Live flows (walks the table; for stats, not the data path).
  uint64_t CountLive(uint32_t now_s) const;
  uint32_t capacity() const { return buckets_ * kWays; }
  static constexpr uint32_t BytesPerFlow() { return sizeof(FlowEntry) + sizeof(uint16_t); }
  /// Memory mapped for the table and its tags (whole pages).
  size_t memory_bytes() const { return buckets_mem_.get_deleter().bytes; }

  Counter inserts;
  Counter evictions;

 private:
  static bool Live(const FlowEntry& e, uint32_t now_s) {
    return e.expires_s != 0 && now_s <= e.expires_s;
  }
  uint32_t BucketOf(uint32_t hash) const { return hash & (buckets_ - 1); }
  /// The hash bits above any bucket index (buckets_ ≤ 2^28 keeps at least 4 of them apart).
  static uint16_t Tag(uint32_t hash) { return static_cast<uint16_t>(hash >> 16); }
  /// Bit i set when way i of bucket `b` carries `tag` (a hint: the key decides).
  uint32_t MatchingWays(uint32_t b, uint16_t tag) const {
    const uint16_t* tags = &tags_[b * kWays];
    uint32_t ways = 0;
    for (uint32_t i = 0; i < kWays; ++i) ways |= uint32_t{tags[i] == tag} << i;
    return ways;
  }
  uint32_t Timeout(const FlowEntry& e) const {
    if (e.flags & FlowEntry::kClosing) return timeouts_.closing_s;
    return e.key.proto == 17 ? timeouts_.udp_idle_s : timeouts_.tcp_idle_s;
  }

  /// One set of kWays entries, on its own cache lines.
  struct alignas(64) Bucket {
    FlowEntry ways[kWays];
  };
  static_assert(sizeof(Bucket) == kWays * sizeof(FlowEntry));

  /// Unmaps the table's memory.
  struct Unmap {
    size_t bytes;
    void operator()(Bucket* p) const;
  };

  uint32_t buckets_;
  FlowTimeouts timeouts_;
  /// Anonymous memory the kernel is asked to back with transparent huge pages: a million
  /// flows are 32 MB, 8192 pages of 4 KiB, and with random flows nearly every lookup would
  /// also miss the TLB (a two-level page walk under a hypervisor). Hugepage EAL memory is
  /// not needed for this (the lab runs --no-huge).
  std::unique_ptr<Bucket[], Unmap> buckets_mem_;
  uint16_t* tags_ = nullptr;  ///< kWays per bucket, in the same mapping after the buckets.
};

}  // namespace sluice::mux
