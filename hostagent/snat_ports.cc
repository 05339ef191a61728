#include "hostagent/snat_ports.h"

#include "offload/flow/rule.h"

namespace sluice::agent {

SnatPortPool::SnatPortPool(const AgentConfig& config)
    : groups_(config.vms.size() * 2), all_leases_(config.snat_leases) {
  for (size_t v = 0; v < config.vms.size(); ++v) {
    for (const SnatLeaseConfig& lease : config.snat_leases) {
      if (lease.dip != config.vms[v].dip) continue;
      Group& g = groups_[v * 2 + (lease.proto == flow::kProtoUdp ? 1 : 0)];
      g.first_slot.push_back(static_cast<uint32_t>(g.flags.size()));
      g.leases.push_back(lease);
      g.flags.resize(g.flags.size() + lease.port_count, 0);
    }
  }
  for (Group& g : groups_) {
    g.ring.resize(g.flags.size());
    for (uint32_t slot = 0; slot < g.flags.size(); ++slot) Push(g, slot);
  }
}

SnatPortPool::Group* SnatPortPool::GroupOf(uint8_t vm, uint8_t proto) {
  size_t i = size_t{vm} * 2 + (proto == flow::kProtoUdp ? 1 : 0);
  return i < groups_.size() && (proto == flow::kProtoTcp || proto == flow::kProtoUdp)
             ? &groups_[i]
             : nullptr;
}

const SnatPortPool::Group* SnatPortPool::GroupOf(uint8_t vm, uint8_t proto) const {
  return const_cast<SnatPortPool*>(this)->GroupOf(vm, proto);
}

uint32_t SnatPortPool::SlotOf(const Group& g, uint32_t vip, uint16_t port) {
  for (size_t l = 0; l < g.leases.size(); ++l) {
    const SnatLeaseConfig& lease = g.leases[l];
    if (lease.vip == vip && port >= lease.port_start &&
        uint32_t{port} < uint32_t{lease.port_start} + lease.port_count) {
      return g.first_slot[l] + (port - lease.port_start);
    }
  }
  return UINT32_MAX;
}

void SnatPortPool::Push(Group& g, uint32_t slot) {
  g.ring[(g.head + g.count) % g.ring.size()] = slot;
  ++g.count;
  g.flags[slot] |= kInRing;
}

bool SnatPortPool::Take(uint8_t vm, uint8_t proto, uint32_t* vip, uint16_t* port) {
  Group* g = GroupOf(vm, proto);
  if (g == nullptr) return false;
  while (g->count > 0) {
    const uint32_t slot = g->ring[g->head];
    g->head = g->head + 1 == g->ring.size() ? 0 : g->head + 1;
    --g->count;
    g->flags[slot] &= static_cast<uint8_t>(~kInRing);
    if (g->flags[slot] & kInUse) continue;  // claimed by a restored flow while queued
    g->flags[slot] |= kInUse;
    ++g->in_use;
    size_t l = g->leases.size() - 1;
    while (g->first_slot[l] > slot) --l;
    *vip = g->leases[l].vip;
    *port = static_cast<uint16_t>(g->leases[l].port_start + (slot - g->first_slot[l]));
    return true;
  }
  return false;
}

void SnatPortPool::Release(uint8_t vm, uint8_t proto, uint32_t vip, uint16_t port) {
  Group* g = GroupOf(vm, proto);
  if (g == nullptr) return;
  const uint32_t slot = SlotOf(*g, vip, port);
  if (slot == UINT32_MAX || !(g->flags[slot] & kInUse)) return;
  g->flags[slot] &= static_cast<uint8_t>(~kInUse);
  --g->in_use;
  if (!(g->flags[slot] & kInRing)) Push(*g, slot);
}

bool SnatPortPool::Claim(uint8_t vm, uint8_t proto, uint32_t vip, uint16_t port) {
  Group* g = GroupOf(vm, proto);
  if (g == nullptr) return false;
  const uint32_t slot = SlotOf(*g, vip, port);
  if (slot == UINT32_MAX || (g->flags[slot] & kInUse)) return false;
  g->flags[slot] |= kInUse;  // stays queued; Take skips it
  ++g->in_use;
  return true;
}

uint32_t SnatPortPool::Leased(uint8_t vm, uint8_t proto) const {
  const Group* g = GroupOf(vm, proto);
  return g == nullptr ? 0 : static_cast<uint32_t>(g->flags.size());
}

uint32_t SnatPortPool::InUse(uint8_t vm, uint8_t proto) const {
  const Group* g = GroupOf(vm, proto);
  return g == nullptr ? 0 : g->in_use;
}

bool SnatPortPool::LeasedTo(uint8_t vm, uint8_t proto, uint32_t vip, uint16_t port) const {
  const Group* g = GroupOf(vm, proto);
  return g != nullptr && SlotOf(*g, vip, port) != UINT32_MAX;
}

bool SnatPortPool::IsLeased(uint32_t vip, uint8_t proto, uint16_t port) const {
  for (const SnatLeaseConfig& lease : all_leases_) {
    if (lease.vip == vip && lease.proto == proto && port >= lease.port_start &&
        uint32_t{port} < uint32_t{lease.port_start} + lease.port_count) {
      return true;
    }
  }
  return false;
}

}  // namespace sluice::agent
