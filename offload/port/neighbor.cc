#include "offload/port/neighbor.h"

#include <algorithm>
#include <cstring>

#include "offload/packet/parse.h"

namespace sluice::port {

namespace {

uint64_t PackMac(const flow::MacAddr& mac) {
  uint64_t w = 0;
  for (uint8_t b : mac) w = w << 8 | b;
  return w;
}

flow::MacAddr UnpackMac(uint64_t w) {
  flow::MacAddr mac;
  for (int i = 5; i >= 0; --i, w >>= 8) mac[i] = static_cast<uint8_t>(w);
  return mac;
}

}  // namespace

NeighborTable::NeighborTable(size_t capacity)
    : capacity_(capacity == 0 ? 1 : capacity), slots_(new Slot[capacity_]) {}

NeighborTable::Slot* NeighborTable::Find(uint32_t ip) {
  const size_t used = used_.load(std::memory_order_relaxed);
  for (size_t i = 0; i < used; ++i) {
    if (slots_[i].ip.load(std::memory_order_relaxed) == ip) return &slots_[i];
  }
  return nullptr;
}

NeighborTable::Slot* NeighborTable::Insert(uint32_t ip, uint64_t now_ns) {
  const size_t used = used_.load(std::memory_order_relaxed);
  Slot* slot;
  if (used < capacity_) {
    slot = &slots_[used];
  } else {
    slot = &slots_[0];
    for (size_t i = 1; i < used; ++i) {
      if (slots_[i].updated_ns < slot->updated_ns) slot = &slots_[i];
    }
    generation_.fetch_add(1, std::memory_order_release);
  }
  // Unresolved first, then the new address: a reader never pairs it with the old MAC.
  slot->word.store(0, std::memory_order_release);
  slot->ip.store(ip, std::memory_order_release);
  slot->updated_ns = now_ns;
  if (used < capacity_) used_.store(used + 1, std::memory_order_release);
  return slot;
}

void NeighborTable::Learn(uint32_t ip, const flow::MacAddr& mac, uint64_t now_ns) {
  if (ip == 0) return;
  Lock();
  Slot* slot = Find(ip);
  if (slot == nullptr) slot = Insert(ip, now_ns);
  const uint64_t word = PackMac(mac) | kResolved;
  if (slot->word.load(std::memory_order_relaxed) != word) {
    slot->word.store(word, std::memory_order_release);
    generation_.fetch_add(1, std::memory_order_release);
  }
  slot->updated_ns = now_ns;
  Unlock();
}

bool NeighborTable::Lookup(uint32_t ip, flow::MacAddr* mac) const {
  const size_t used = used_.load(std::memory_order_acquire);
  for (size_t i = 0; i < used; ++i) {
    const Slot& slot = slots_[i];
    if (slot.ip.load(std::memory_order_acquire) != ip) continue;
    const uint64_t word = slot.word.load(std::memory_order_acquire);
    // Re-check the address: the slot may have been handed to another one meanwhile.
    if (!(word & kResolved) || slot.ip.load(std::memory_order_acquire) != ip) return false;
    *mac = UnpackMac(word);
    return true;
  }
  return false;
}

bool NeighborTable::ShouldRequest(uint32_t ip, uint64_t now_ns, uint64_t retry_ns) {
  Lock();
  bool request = false;
  Slot* slot = Find(ip);
  if (slot == nullptr) {
    Insert(ip, now_ns);
    request = true;
  } else if (!(slot->word.load(std::memory_order_relaxed) & kResolved) &&
             now_ns - slot->updated_ns >= retry_ns) {
    slot->updated_ns = now_ns;
    request = true;
  }
  Unlock();
  return request;
}

bool ArpResponder::Owns(uint32_t ip) const {
  return std::find(own_ips_.begin(), own_ips_.end(), ip) != own_ips_.end();
}

ArpOutcome ArpResponder::Handle(uint8_t* frame, uint32_t len, uint64_t now_ns,
                                DropReason* reason, uint32_t* reply_len) {
  packet::ArpPacket arp;
  if (!packet::ParseArp(frame, len, &arp, reason)) return ArpOutcome::kDrop;
  bool for_us = Owns(arp.target_ip);
  flow::MacAddr known;
  // Like Linux: learn from ARP aimed at us, and refresh entries we already track.
  if (for_us || table_->Lookup(arp.sender_ip, &known)) {
    table_->Learn(arp.sender_ip, arp.sender_mac, now_ns);
  }
  if (arp.op != 1 || !for_us) return ArpOutcome::kConsumed;
  requests_seen.Add();
  *reply_len = packet::BuildArp(frame, 2, arp.sender_mac, own_mac_, arp.target_ip,
                                arp.sender_mac, arp.sender_ip);
  replies_sent.Add();
  return ArpOutcome::kReply;
}

uint16_t ArpResponder::BuildRequest(uint8_t* frame, uint32_t sender_ip,
                                    uint32_t target_ip) const {
  constexpr flow::MacAddr kBroadcast = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  return packet::BuildArp(frame, 1, kBroadcast, own_mac_, sender_ip, flow::MacAddr{}, target_ip);
}

}  // namespace sluice::port
