// The SNAT ports leased to this host's VMs, kept per VM and protocol: hands out the port
// that has been free longest and takes closed ones back. The reuse delay is enforced by the
// flow table (a closed flow keeps its port until the delay has passed); this pool only
// knows free and in use. Fixed memory after construction.
#pragma once

#include <cstdint>
#include <vector>

#include "hostagent/config.h"

namespace sluice::agent {

class SnatPortPool {
 public:
  explicit SnatPortPool(const AgentConfig& config);

  /// Takes a free port of `vm`'s leases for `proto`; false when there is none (no lease, or
  /// every leased port is in use or waiting out its reuse delay).
  bool Take(uint8_t vm, uint8_t proto, uint32_t* vip, uint16_t* port);
  /// Gives back a port from Take or Claim.
  void Release(uint8_t vm, uint8_t proto, uint32_t vip, uint16_t port);
  /// Marks a port in use for a flow restored from the state file; false if it is not leased
  /// to that VM (any more) or is already in use.
  bool Claim(uint8_t vm, uint8_t proto, uint32_t vip, uint16_t port);

  bool HasLease(uint8_t vm, uint8_t proto) const { return Leased(vm, proto) > 0; }
  uint32_t Leased(uint8_t vm, uint8_t proto) const;
  uint32_t InUse(uint8_t vm, uint8_t proto) const;
  /// True if vip:port/proto lies in a lease of `vm`.
  bool LeasedTo(uint8_t vm, uint8_t proto, uint32_t vip, uint16_t port) const;
  /// True if vip:port/proto lies in a lease of any VM of this host.
  bool IsLeased(uint32_t vip, uint8_t proto, uint16_t port) const;

 private:
  struct Group {
    std::vector<SnatLeaseConfig> leases;
    std::vector<uint32_t> first_slot;  ///< Slot of each lease's first port.
    std::vector<uint8_t> flags;        ///< Per slot: kInUse | kInRing.
    std::vector<uint32_t> ring;        ///< FIFO of free slots.
    uint32_t head = 0;
    uint32_t count = 0;
    uint32_t in_use = 0;
  };
  static constexpr uint8_t kInUse = 1;
  static constexpr uint8_t kInRing = 2;

  Group* GroupOf(uint8_t vm, uint8_t proto);
  const Group* GroupOf(uint8_t vm, uint8_t proto) const;
  /// Slot of vip:port in `g`, or UINT32_MAX.
  static uint32_t SlotOf(const Group& g, uint32_t vip, uint16_t port);
  static void Push(Group& g, uint32_t slot);

  std::vector<Group> groups_;  ///< vm * 2 + (proto == UDP)
  std::vector<SnatLeaseConfig> all_leases_;
};

}  // namespace sluice::agent
