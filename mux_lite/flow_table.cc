#include "mux_lite/flow_table.h"

namespace sluice::mux {

FlowTable::FlowTable(uint32_t capacity, FlowTimeouts timeouts)
    : buckets_(1), timeouts_(timeouts) {
  while (buckets_ * kWays < capacity) buckets_ <<= 1;
  entries_ = std::make_unique<FlowEntry[]>(static_cast<size_t>(buckets_) * kWays);
}

FlowEntry* FlowTable::Find(const FlowKey& key, uint32_t hash, uint32_t now_s) {
  FlowEntry* bucket = &entries_[static_cast<size_t>(hash & (buckets_ - 1)) * kWays];
  for (uint32_t i = 0; i < kWays; ++i) {
    if (bucket[i].key == key && Live(bucket[i], now_s)) {
      if (!(bucket[i].flags & FlowEntry::kClosing)) bucket[i].expires_s = now_s + Timeout(bucket[i]);
      return &bucket[i];
    }
  }
  return nullptr;
}

FlowEntry* FlowTable::Insert(const FlowKey& key, uint32_t hash, uint32_t now_s) {
  FlowEntry* bucket = &entries_[static_cast<size_t>(hash & (buckets_ - 1)) * kWays];
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
  for (size_t i = 0; i < static_cast<size_t>(buckets_) * kWays; ++i) {
    live += Live(entries_[i], now_s);
  }
  return live;
}

}  // namespace sluice::mux
