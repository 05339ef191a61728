#include "offload/port/neighbor.h"

#include <algorithm>
#include <cstring>

#include "offload/packet/parse.h"

namespace sluice::port {

NeighborTable::Entry* NeighborTable::Find(uint32_t ip) {
  for (Entry& e : entries_) {
    if (e.ip == ip) return &e;
  }
  return nullptr;
}

NeighborTable::Entry* NeighborTable::Insert(uint32_t ip, uint64_t now_ns) {
  if (entries_.size() >= capacity_) {
    auto oldest = std::min_element(entries_.begin(), entries_.end(), [](const Entry& a,
                                                                          const Entry& b) {
      return a.updated_ns < b.updated_ns;
    });
    *oldest = Entry{.ip = ip, .resolved = false, .mac = {}, .updated_ns = now_ns};
    ++generation_;
    return &*oldest;
  }
  entries_.push_back(Entry{.ip = ip, .resolved = false, .mac = {}, .updated_ns = now_ns});
  return &entries_.back();
}

void NeighborTable::Learn(uint32_t ip, const flow::MacAddr& mac, uint64_t now_ns) {
  if (ip == 0) return;
  Entry* e = Find(ip);
  if (e == nullptr) e = Insert(ip, now_ns);
  if (!e->resolved || e->mac != mac) ++generation_;
  e->resolved = true;
  e->mac = mac;
  e->updated_ns = now_ns;
}

bool NeighborTable::Lookup(uint32_t ip, flow::MacAddr* mac) const {
  for (const Entry& e : entries_) {
    if (e.ip == ip && e.resolved) {
      *mac = e.mac;
      return true;
    }
  }
  return false;
}

bool NeighborTable::ShouldRequest(uint32_t ip, uint64_t now_ns, uint64_t retry_ns) {
  Entry* e = Find(ip);
  if (e == nullptr) {
    Insert(ip, now_ns);
    return true;
  }
  if (e->resolved) return false;
  if (now_ns - e->updated_ns < retry_ns) return false;
  e->updated_ns = now_ns;
  return true;
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
