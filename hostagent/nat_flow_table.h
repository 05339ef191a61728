// The agent's per-flow NAT state: one entry per translated connection (a SNAT'd outbound
// connection, or an inbound one whose DIP:port answers for several VIPs), found by either
// side's 5-tuple. Fixed memory: the entries live in one mapping sized at start (a file in
// /dev/shm, so an agent killed with SIGKILL maps the same entries again when it restarts),
// the two hash indexes and the free list in preallocated arrays. Nothing is allocated per
// packet. Single writer (the data-path lcore).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace sluice::agent {

enum class NatFlowKind : uint8_t {
  kSnat = 1,     ///< The VM opened it; its DIP:port leaves as VIP:leased port.
  kInbound = 2,  ///< A client opened it through a VIP; replies leave with that VIP:port.
};

/// Where a connection is in its life; decides how long it may stay idle.
enum class NatFlowState : uint8_t {
  kFree = 0,
  kTcpSyn,          ///< The opener's SYN seen, not yet the answer's SYN-ACK.
  kTcpEstablished,
  kTcpClosing,      ///< One side sent FIN.
  kClosed,          ///< Both FINs or an RST (or a SNAT flow idled out): lingers, then freed.
  kUdp,
  kLast = kUdp,
};

/// One translated connection, as stored in the state file (host byte order).
///   inside  (the VM's view):     dip:dip_port  <-> remote:remote_port
///   outside (the network's view): vip:vip_port <-> remote:remote_port
struct NatFlow {
  uint32_t dip = 0;
  uint32_t remote = 0;
  uint32_t vip = 0;
  uint32_t fastpath_pa = 0;  ///< Fastpath peer PA to encapsulate to; 0 = via the router.
  uint16_t dip_port = 0;
  uint16_t remote_port = 0;
  uint16_t vip_port = 0;
  uint8_t proto = 0;
  uint8_t kind = 0;      ///< NatFlowKind
  uint8_t vm_index = 0;  ///< Index into AgentConfig::vms.
  uint8_t fins = 0;      ///< kFinFromVm | kFinFromRemote
  uint8_t state = 0;     ///< NatFlowState; written last on insert, first on remove.
  uint8_t offload = 0;   ///< NIC offload bits below + offer generation (bits 5-7).
  uint32_t created_unix_s = 0;  ///< Wall clock at creation (Fastpath replay check).
  uint64_t last_seen_ns = 0;    ///< CLOCK_MONOTONIC of the last packet.

  static constexpr uint8_t kFinFromVm = 1;
  static constexpr uint8_t kFinFromRemote = 2;

  // `offload` (meaningful to the process that set it: cleared when a state file is reused).
  static constexpr uint8_t kOffered = 0x01;          ///< Rules offered to the NIC, not withdrawn.
  static constexpr uint8_t kOfferedFastpath = 0x02;  ///< ... with the Fastpath encap outbound.
  static constexpr uint8_t kNicServed = 0x04;  ///< Some rule is in the NIC: its AGE, not the
                                               ///< software idle timer, decides idleness.
  static constexpr uint8_t kOfferStale = 0x08;  ///< The offered rules name an old next hop.
  static constexpr uint8_t kAnswered = 0x10;    ///< UDP: the non-opening side has sent.
  static constexpr uint8_t kGenerationShift = 5;
};
static_assert(sizeof(NatFlow) == 40, "NatFlow is part of the state file format");

inline NatFlowState StateOf(const NatFlow& f) {
  return static_cast<NatFlowState>(
      std::atomic_ref<const uint8_t>(f.state).load(std::memory_order_acquire));
}
inline void SetState(NatFlow& f, NatFlowState s) {
  std::atomic_ref<uint8_t>(f.state).store(static_cast<uint8_t>(s), std::memory_order_release);
}

class NatFlowTable {
 public:
  /// A table in anonymous memory: nothing survives the process.
  static std::unique_ptr<NatFlowTable> CreateAnonymous(uint32_t capacity);

  /// Maps the state file `path` for `capacity` entries, creating it if needed, and locks it
  /// so that a second agent cannot use it at the same time. Entries left by a previous
  /// process are kept when the file matches (format, capacity, and the boot: timestamps are
  /// CLOCK_MONOTONIC); otherwise the file starts empty and `*note` says why.
  static absl::StatusOr<std::unique_ptr<NatFlowTable>> OpenFile(const std::string& path,
                                                                uint32_t capacity,
                                                                std::string* note);

  ~NatFlowTable();
  NatFlowTable(const NatFlowTable&) = delete;
  NatFlowTable& operator=(const NatFlowTable&) = delete;

  /// Removes every entry for which `remove` returns true (e.g. restored flows whose VM or
  /// lease is gone from the config); returns how many. Control path.
  uint32_t RemoveIf(const std::function<bool(const NatFlow&)>& remove);

  NatFlow* FindInside(uint8_t proto, uint32_t dip, uint16_t dip_port, uint32_t remote,
                      uint16_t remote_port);
  NatFlow* FindOutside(uint8_t proto, uint32_t vip, uint16_t vip_port, uint32_t remote,
                       uint16_t remote_port);

  /// Copies `flow` into a free entry and indexes it by both keys; `flow.state` must not be
  /// kFree and neither key may be in the table already. nullptr when the table is full.
  NatFlow* Insert(const NatFlow& flow);
  /// Frees an entry returned by Insert or a Find.
  void Remove(NatFlow* flow);

  /// Calls `visit` for up to `budget` slots' live entries, continuing where the previous
  /// call stopped (wrapping), so aging spreads over many calls. `visit` may Remove.
  template <typename Visit>
  void Scan(uint32_t budget, Visit&& visit) {
    for (uint32_t i = 0; i < budget && i < capacity_; ++i) {
      NatFlow& f = entries_[cursor_];
      cursor_ = cursor_ + 1 == capacity_ ? 0 : cursor_ + 1;
      if (StateOf(f) != NatFlowState::kFree) visit(f);
    }
  }

  uint32_t size() const { return size_; }
  uint32_t capacity() const { return capacity_; }
  /// Entries found in the state file at open (before RemoveIf).
  uint32_t restored() const { return restored_; }
  const std::string& path() const { return path_; }

 private:
  static constexpr uint32_t kNil = UINT32_MAX;

  NatFlowTable(NatFlow* entries, uint32_t capacity, void* mapping, size_t mapping_len, int fd,
               std::string path);
  /// Indexes the live entries of the mapping; frees malformed and duplicate ones.
  void Rebuild();
  uint32_t InsideBucket(const NatFlow& f) const;
  uint32_t OutsideBucket(const NatFlow& f) const;
  void Link(uint32_t index);
  void Unlink(uint32_t index);

  NatFlow* entries_;
  uint32_t capacity_;
  void* mapping_;
  size_t mapping_len_;
  int fd_;
  std::string path_;
  uint32_t bucket_mask_;
  std::vector<uint32_t> inside_head_, outside_head_;
  std::vector<uint32_t> inside_next_, outside_next_;
  std::vector<uint32_t> free_;
  uint32_t free_count_ = 0;
  uint32_t size_ = 0;
  uint32_t cursor_ = 0;
  uint32_t restored_ = 0;
};

}  // namespace sluice::agent
