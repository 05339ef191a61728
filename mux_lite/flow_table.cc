#include "mux_lite/flow_table.h"

#include <sys/mman.h>

#include <memory>
#include <new>

namespace sluice::mux {

FlowTable::FlowTable(uint32_t capacity, FlowTimeouts timeouts)
    : buckets_(1), timeouts_(timeouts), buckets_mem_(nullptr, Unmap{0}) {
  while (buckets_ * kWays < capacity) buckets_ <<= 1;
  constexpr size_t kPage = 4096;
  constexpr size_t kHugePage = 2u << 20;
  const size_t bucket_bytes = static_cast<size_t>(buckets_) * sizeof(Bucket);
  const size_t need = bucket_bytes + static_cast<size_t>(buckets_) * kWays * sizeof(uint16_t);
  // Tables of 2 MB and more in whole huge pages; smaller ones (tests, small labs) in pages.
  const size_t unit = need >= kHugePage ? kHugePage : kPage;
  const size_t bytes = (need + unit - 1) / unit * unit;
  void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) throw std::bad_alloc();
  // Advice only: without THP (or with it off) the table works the same on 4 KiB pages.
  if (unit == kHugePage) (void)madvise(mem, bytes, MADV_HUGEPAGE);
  Bucket* buckets = static_cast<Bucket*>(mem);
  std::uninitialized_default_construct_n(buckets, buckets_);
  buckets_mem_ = std::unique_ptr<Bucket[], Unmap>(buckets, Unmap{bytes});
  tags_ = reinterpret_cast<uint16_t*>(static_cast<char*>(mem) + bucket_bytes);  // zeroed by mmap
}

void FlowTable::Unmap::operator()(Bucket* p) const { munmap(p, bytes); }

// Every live entry's tag is Tag() of the hash it was inserted with (only Insert makes an entry
// live, and it writes the tag), so skipping the ways whose tag differs finds the same entry
// as comparing every way's key.
FlowEntry* FlowTable::Find(const FlowKey& key, uint32_t hash, uint32_t now_s) {
  const uint32_t b = BucketOf(hash);
  FlowEntry* bucket = buckets_mem_[b].ways;
  for (uint32_t ways = MatchingWays(b, Tag(hash)); ways != 0; ways &= ways - 1) {
    const uint32_t i = static_cast<uint32_t>(__builtin_ctz(ways));
    if (bucket[i].key == key && Live(bucket[i], now_s)) {
      // Written only when it changes (once a second per busy flow): a clean line need not
      // be written back to memory when the cache drops it.
      const uint32_t expires_s = now_s + Timeout(bucket[i]);
      if (!(bucket[i].flags & FlowEntry::kClosing) && bucket[i].expires_s != expires_s) {
        bucket[i].expires_s = expires_s;
      }
      return &bucket[i];
    }
  }
  return nullptr;
}

FlowEntry* FlowTable::Insert(const FlowKey& key, uint32_t hash, uint32_t now_s) {
  const uint32_t b = BucketOf(hash);
  FlowEntry* bucket = buckets_mem_[b].ways;
  FlowEntry* victim = &bucket[0];
  for (uint32_t i = 0; i < kWays; ++i) {
    if (!Live(bucket[i], now_s)) {
      victim = &bucket[i];
      break;
    }
    if (bucket[i].expires_s < victim->expires_s) victim = &bucket[i];
  }
  if (Live(*victim, now_s)) evictions.Add();
  *victim = FlowEntry{.key = key};
  tags_[b * kWays + static_cast<uint32_t>(victim - bucket)] = Tag(hash);
  victim->expires_s = now_s + Timeout(*victim);
  inserts.Add();
  return victim;
}

void FlowTable::MarkClosing(FlowEntry* entry, uint32_t now_s) {
  if (entry->flags & FlowEntry::kClosing) return;
  entry->flags |= FlowEntry::kClosing;
  entry->expires_s = now_s + timeouts_.closing_s;
}

uint64_t FlowTable::CountLive(uint32_t now_s) const {
  uint64_t live = 0;
  for (uint32_t b = 0; b < buckets_; ++b) {
    for (const FlowEntry& e : buckets_mem_[b].ways) live += Live(e, now_s);
  }
  return live;
}

}  // namespace sluice::mux
