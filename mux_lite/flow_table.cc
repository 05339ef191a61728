#include "mux_lite/flow_table.h"

namespace sluice::mux {

FlowTable::FlowTable(uint32_t capacity, uint32_t idle_timeout_s)
    : buckets_(1), idle_timeout_s_(idle_timeout_s) {
  while (buckets_ * kWays < capacity) buckets_ <<= 1;
  entries_ = std::make_unique<FlowEntry[]>(static_cast<size_t>(buckets_) * kWays);
}

FlowEntry* FlowTable::Find(const FlowKey& key, uint32_t hash, uint32_t now_s) {
  FlowEntry* bucket = &entries_[static_cast<size_t>(hash & (buckets_ - 1)) * kWays];
  for (uint32_t i = 0; i < kWays; ++i) {
    if (bucket[i].key == key && Live(bucket[i], now_s)) {
      bucket[i].last_seen_s = now_s;
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
    if (bucket[i].last_seen_s < victim->last_seen_s) victim = &bucket[i];
  }
  if (Live(*victim, now_s)) evictions.Add();
  *victim = FlowEntry{.key = key, .last_seen_s = now_s};
  inserts.Add();
  return victim;
}

uint64_t FlowTable::CountLive(uint32_t now_s) const {
  uint64_t live = 0;
  for (size_t i = 0; i < static_cast<size_t>(buckets_) * kWays; ++i) live += Live(entries_[i], now_s);
  return live;
}

}  // namespace sluice::mux
