// sluice-snatd's allocator: the lease table (snat_lease_table.h) persisted in a state file,
// kept in step with every mux's SNAT ranges. A chunk is granted only once the state file
// records it and every configured mux has acknowledged the new range → host PA table; a
// failure on either undoes the grant. The muxes are reached through MuxRangeClient (gRPC
// Mux.GetSnatRanges / SetSnatRanges in the daemon, a fake in tests).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tls_files.h"
#include "controller/snat_lease_table.h"
#include "sluice/v1/mux.pb.h"

namespace sluice::snatd {

struct SnatAllocatorConfig {
  std::string name = "snatd";
  /// The lease table survives restarts here (written atomically after every change).
  std::string state_file = "/var/lib/sluice/snatd.state";
  std::vector<std::string> muxes;  ///< gRPC addresses of every mux ("unix:/path", "host:port").
  std::vector<SnatPoolConfig> pools;
  uint32_t mux_timeout_ms = 2000;      ///< Per mux call.
  uint32_t resync_interval_ms = 2000;  ///< How often every mux's ranges are checked.
  DialOptions mux_dial;  ///< `allocator.mux_tls:` towards muxes on TCP (mutual TLS).
};

/// Reads and checks sluice-snatd's YAML; errors name file, line and field.
absl::StatusOr<SnatAllocatorConfig> LoadSnatAllocatorConfig(const std::string& path);
absl::StatusOr<SnatAllocatorConfig> ParseSnatAllocatorConfig(const std::string& yaml,
                                                             const std::string& origin);

/// A mux's SNAT range table, as the allocator sees it.
class MuxRangeClient {
 public:
  virtual ~MuxRangeClient() = default;
  virtual const std::string& address() const = 0;
  /// Makes the mux's ranges inside `pools` exactly `leases` (each → its host_pa), keeping
  /// its ranges outside the pools. OK once the mux has acknowledged (or already had them).
  virtual absl::Status Sync(const std::vector<SnatPoolConfig>& pools,
                            const std::vector<SnatChunkLease>& leases) = 0;
};

/// The gRPC one: reads GetSnatRanges, merges (MergeSnatRanges) and writes SetSnatRanges with
/// expected_generation, retrying when someone else changed the mux in between. TLS per `dial`
/// on TCP addresses.
std::unique_ptr<MuxRangeClient> MakeGrpcMuxRangeClient(const std::string& address,
                                                       uint32_t timeout_ms,
                                                       const DialOptions& dial = {});

/// The wire value of `encap` (sluice.v1.Encap) and back (UNSPECIFIED is IPIP; INVALID_ARGUMENT
/// "<field>: ..." for a value outside the enum).
v1::Encap HostEncapToProto(HostEncap encap);
absl::StatusOr<HostEncap> HostEncapField(int value, const std::string& field);

/// A mux's ranges with those inside `pools` replaced by `leases` (each with its encap). A mux range that overlaps a
/// pool without lying inside it is a conflict between the mux's config and the allocator's
/// (FAILED_PRECONDITION naming both). `*changed` says whether the result differs from
/// `current` (as a set).
absl::StatusOr<std::vector<v1::SnatRange>> MergeSnatRanges(
    const google::protobuf::RepeatedPtrField<v1::SnatRange>& current,
    const std::vector<SnatPoolConfig>& pools, const std::vector<SnatChunkLease>& leases,
    bool* changed);

struct MuxSyncStatus {
  std::string address;
  bool in_sync = false;
  uint64_t synced_generation = 0;
  std::string last_error;
};

struct SnatAllocatorCounters {
  uint64_t chunks_requested = 0;
  uint64_t chunks_granted = 0;
  uint64_t chunks_refused = 0;  ///< Any error: no pool, exhausted, a mux or the state file.
  uint64_t chunks_exhausted = 0;
  uint64_t chunks_returned = 0;
  uint64_t mux_sync_errors = 0;
  std::string last_error;
};

class SnatAllocator {
 public:
  SnatAllocator(SnatAllocatorConfig config, std::vector<std::unique_ptr<MuxRangeClient>> muxes);

  /// Loads the state file if it exists (a missing file is an empty table).
  absl::Status LoadState();

  /// See SnatAllocator.RequestChunk in proto/sluice/v1/snat_allocator.proto.
  /// `encap` is how the muxes reach host_pa: kept with the chunk, pushed with its range.
  absl::StatusOr<SnatChunkLease> RequestChunk(const std::string& host, uint32_t host_pa,
                                              uint32_t dip, uint32_t vip, uint8_t proto,
                                              HostEncap encap = HostEncap::kIpip);
  absl::Status ReturnChunk(const std::string& host, uint32_t dip, uint32_t vip, uint8_t proto,
                           uint16_t port_start);

  struct Snapshot {
    std::vector<SnatChunkLease> chunks;
    std::vector<SnatPoolStatus> pools;
    std::vector<MuxSyncStatus> muxes;
    uint64_t generation = 0;
    SnatAllocatorCounters counters;
  };
  /// The table (only `host`'s chunks unless empty), pools, muxes and counters.
  Snapshot List(const std::string& host) const;

  /// Pushes the table to every mux that lacks it (a restarted mux, one that was down, one
  /// whose ranges someone replaced). Called every resync_interval_ms by the daemon.
  void Resync();

  const SnatAllocatorConfig& config() const { return config_; }

 private:
  /// Syncs every mux with the table; the first error (naming the mux), or OK. Holds mu_.
  absl::Status SyncAll();
  absl::Status Persist();
  void Refuse(const absl::Status& why);

  const SnatAllocatorConfig config_;
  std::vector<std::unique_ptr<MuxRangeClient>> muxes_;
  mutable std::mutex mu_;  ///< Serialises grants, returns and syncs.
  SnatLeaseTable table_;
  std::vector<MuxSyncStatus> mux_status_;
  SnatAllocatorCounters counters_;
};

}  // namespace sluice::snatd
