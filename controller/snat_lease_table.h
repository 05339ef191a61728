// The SNAT allocator's lease table: per-VIP/protocol port pools carved into fixed chunks,
// which chunk is leased to which host and DIP, and its text form for the state file. Pure
// logic (no I/O, no locks): sluice-snatd's SnatAllocator wraps it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/files.h"  // WriteFileAtomically, ReadWholeFile (the state file)

namespace sluice::snatd {

/// Ports port_start..port_start+port_count-1 of vip/proto, leased in chunks of chunk_ports
/// (the last chunk takes what is left, so it may be shorter).
struct SnatPoolConfig {
  uint32_t vip = 0;
  uint8_t proto = 6;
  uint16_t port_start = 0;
  uint32_t port_count = 0;
  uint32_t chunk_ports = 64;
};

/// How the muxes encapsulate replies to a host: what its data path decaps (the values of
/// sluice.v1.Encap). IPIP for the DPDK agent, GRE for a host on Open vSwitch.
enum class HostEncap : uint8_t { kIpip = 1, kGue = 2, kGre = 3 };
/// "ipip", "gue", "gre" (the state file's and the logs' words).
const char* HostEncapName(HostEncap encap);

/// One leased chunk.
struct SnatChunkLease {
  uint32_t vip = 0;
  uint8_t proto = 6;
  uint16_t port_start = 0;
  uint16_t port_count = 0;
  std::string host;      ///< The agent's name.
  uint32_t host_pa = 0;  ///< Where the muxes encapsulate replies.
  uint32_t dip = 0;      ///< The VM using the ports.
  HostEncap encap = HostEncap::kIpip;  ///< How replies reach host_pa.
  bool operator==(const SnatChunkLease&) const = default;
};

/// How full one pool is.
struct SnatPoolStatus {
  SnatPoolConfig config;
  uint32_t chunks = 0;
  uint32_t chunks_leased = 0;
};

/// "10.200.0.10 tcp 20000-29999" (for errors and logs).
std::string PoolText(const SnatPoolConfig& pool);
/// "10.200.0.10:20064+64/tcp -> host2 (10.101.0.22) dip 10.1.0.4" (", gre" after the PA when
/// the host takes GRE).
std::string ChunkText(const SnatChunkLease& lease);

class SnatLeaseTable {
 public:
  /// `pools` must be valid (see CheckPools).
  explicit SnatLeaseTable(std::vector<SnatPoolConfig> pools);

  /// Pools are non-empty, inside 1..65535, chunk_ports ≥ 1, and pools of one VIP/protocol do
  /// not overlap; errors say "pools[i]...".
  static absl::Status CheckPools(const std::vector<SnatPoolConfig>& pools);

  /// Leases the chunk of vip/proto's pools that has been free longest. NOT_FOUND "vip: ..."
  /// when no pool serves vip/proto; RESOURCE_EXHAUSTED naming the pools when all are leased.
  /// `encap` is kept with the chunk (how the muxes reach host_pa).
  absl::StatusOr<SnatChunkLease> Lease(const std::string& host, uint32_t host_pa, uint32_t dip,
                                       uint32_t vip, uint8_t proto,
                                       HostEncap encap = HostEncap::kIpip);
  /// Takes back the chunk starting at port_start. NOT_FOUND when no chunk starts there or it
  /// is not leased; FAILED_PRECONDITION when it is leased to another host or DIP.
  absl::Status Release(const std::string& host, uint32_t dip, uint32_t vip, uint8_t proto,
                       uint16_t port_start);

  /// Every leased chunk, by VIP, protocol and port.
  std::vector<SnatChunkLease> Leases() const;
  std::vector<SnatPoolStatus> Pools() const;
  const std::vector<SnatPoolConfig>& pool_configs() const { return configs_; }
  /// Bumped by every Lease and Release (and restored from the state file).
  uint64_t generation() const { return generation_; }

  /// The state file's text: a version line ("sluice-snatd-state 2"), the generation, one line
  /// per leased chunk (its host's encapsulation last).
  std::string Serialize() const;
  /// Replaces the leases with those of `text` (from Serialize). Every chunk must be a chunk
  /// of the configured pools (same start and size) and leased once; on any error nothing
  /// changes and the message names `origin` and the line. Version 1 files (written before
  /// chunks carried an encapsulation) load with every chunk IPIP.
  absl::Status Restore(const std::string& text, const std::string& origin);

 private:
  struct Chunk {
    uint16_t port_start = 0;
    uint16_t port_count = 0;
    std::optional<SnatChunkLease> lease;
    uint64_t free_since = 0;  ///< Sequence number of the release (0: never leased).
  };
  struct Pool {
    SnatPoolConfig config;
    std::vector<Chunk> chunks;
  };
  static std::vector<Pool> Carve(const std::vector<SnatPoolConfig>& pools);
  /// The chunk of vip/proto that starts at port_start, or nullptr.
  static Chunk* FindChunk(std::vector<Pool>& pools, uint32_t vip, uint8_t proto,
                          uint16_t port_start);

  std::vector<SnatPoolConfig> configs_;
  std::vector<Pool> pools_;
  uint64_t generation_ = 0;
  uint64_t release_sequence_ = 0;
};

}  // namespace sluice::snatd
