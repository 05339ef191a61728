// The Mux gRPC service (proto/sluice/v1/mux.proto): checks each request as a whole, turns
// it into a new MuxConfig (the running one with new VIPs / SNAT ranges / backend health)
// and hands it to the data path, which swaps its VIP tables RCU-style. On any error the
// running config stays as it was.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "mux_lite/config.h"
#include "mux_lite/mux.h"
#include "sluice/v1/mux.grpc.pb.h"

namespace sluice::mux {

/// Request checking, apart from the server so tests can feed it bad input directly. Errors
/// are INVALID_ARGUMENT naming the field by its path in the request ("vips[1].backends[0].host").
absl::StatusOr<VipConfig> VipFromProto(const v1::Vip& vip, const std::string& field);
absl::StatusOr<std::vector<VipConfig>> VipsFromProto(
    const google::protobuf::RepeatedPtrField<v1::Vip>& vips);
absl::StatusOr<std::vector<SnatRangeConfig>> SnatRangesFromProto(
    const google::protobuf::RepeatedPtrField<v1::SnatRange>& ranges);
void VipToProto(const VipConfig& vip, v1::Vip* out);
void SnatRangeToProto(const SnatRangeConfig& range, v1::SnatRange* out);
/// Checks what no single VIP or range can: a VIP that is the mux's own PA, a backend host
/// or SNAT host that is the mux itself.
absl::Status CheckAgainstMux(const MuxConfig& candidate, const MuxConfig& running);

/// One flow the NIC executor holds (GetFlows).
struct OffloadedFlowStatus {
  FlowKey key;
  uint32_t host_pa = 0;
  bool partial = false;
  uint64_t packets = 0;
  uint64_t bytes = 0;
};

/// What the daemon reports about itself (besides the VIP tables).
struct MuxRuntimeStatus {
  bool ready = false;  ///< Next hops resolved.
  bool draining = false;
  bool polling = true;  ///< False when the data path stopped advancing.
  bool stopping = false;
  std::string bgp_session;
  std::vector<std::pair<std::string, uint64_t>> counters;
  std::vector<std::pair<std::string, uint64_t>> drops;
};

/// The seam between the service and the daemon: the data path(s) and the drain switch.
class MuxRuntime {
 public:
  virtual ~MuxRuntime() = default;
  /// Swaps in the VIPs, backends and SNAT ranges of `config` (every other field as
  /// running); false with `*error` if the tables do not build. Serialised by the service.
  virtual bool Reload(const MuxConfig& config, std::string* error) = 0;
  /// Generation of the VIP table in use (bumped by every Reload).
  virtual uint64_t generation() const = 0;
  /// Runs `read` on the VIP table in use of every data-path worker (counters are summed).
  virtual void ReadTable(const std::function<void(const VipTable&)>& read) const = 0;
  virtual void SetDraining(bool draining) = 0;
  virtual MuxRuntimeStatus Status() const = 0;
  /// Up to `limit` flows offloaded to the NIC, and how many there are (none by default).
  virtual std::vector<OffloadedFlowStatus> OffloadedFlows(size_t /*limit*/, size_t* total) const {
    *total = 0;
    return {};
  }
};

class MuxService final : public v1::Mux::Service {
 public:
  /// `boot` is the config the data path runs now. `on_applied` (optional) is called after
  /// every successful change with the new desired config (the daemon re-announces VIPs).
  MuxService(MuxRuntime* runtime, const MuxConfig& boot,
             std::function<void(const MuxConfig&)> on_applied = nullptr);

  /// The config file was re-read (SIGHUP): it becomes the desired config; health is kept.
  /// VIPs and SNAT ranges the file has no key for (MuxConfig::file_sets_*) stay as pushed
  /// over gRPC; the SNAT allocator's chunks stay unless the file configures their ports.
  absl::Status ReplaceConfig(const MuxConfig& config);
  /// The desired config (configured weights, before health is applied).
  MuxConfig desired() const;
  /// DIPs reported unhealthy (SetBackendHealth) → reason; they are out of Maglev everywhere.
  std::map<uint32_t, std::string> unhealthy() const;
  /// At most this many DIPs are held unhealthy (RESOURCE_EXHAUSTED beyond).
  static constexpr size_t kMaxUnhealthyDips = 65536;
  /// Stops WatchHealth streams (daemon shutdown).
  void Shutdown();

  grpc::Status SetVips(grpc::ServerContext*, const v1::SetVipsRequest*,
                       v1::ChangeSummary*) override;
  grpc::Status UpsertVip(grpc::ServerContext*, const v1::UpsertVipRequest*,
                         v1::ChangeSummary*) override;
  grpc::Status DeleteVip(grpc::ServerContext*, const v1::DeleteVipRequest*,
                         v1::ChangeSummary*) override;
  grpc::Status SetSnatRanges(grpc::ServerContext*, const v1::SetSnatRangesRequest*,
                             v1::ChangeSummary*) override;
  grpc::Status SetBackendHealth(grpc::ServerContext*, const v1::SetBackendHealthRequest*,
                                v1::ChangeSummary*) override;
  grpc::Status GetVips(grpc::ServerContext*, const v1::GetVipsRequest*,
                       v1::GetVipsResponse*) override;
  grpc::Status GetSnatRanges(grpc::ServerContext*, const v1::GetSnatRangesRequest*,
                             v1::GetSnatRangesResponse*) override;
  grpc::Status GetFlows(grpc::ServerContext*, const v1::GetMuxFlowsRequest*,
                        v1::GetMuxFlowsResponse*) override;
  grpc::Status GetStats(grpc::ServerContext*, const v1::GetStatsRequest*, v1::MuxStats*) override;
  grpc::Status Drain(grpc::ServerContext*, const v1::DrainRequest*, v1::DrainResponse*) override;
  grpc::Status Resume(grpc::ServerContext*, const v1::ResumeRequest*, v1::DrainResponse*) override;
  grpc::Status Health(grpc::ServerContext*, const v1::HealthRequest*, v1::HealthResponse*) override;
  grpc::Status WatchHealth(grpc::ServerContext*, const v1::HealthRequest*,
                           grpc::ServerWriter<v1::HealthResponse>*) override;

 private:
  /// Checks `expected_generation`, applies health, reloads (unless `dry_run`), and fills
  /// `changes`. Caller holds mu_.
  absl::Status Apply(const MuxConfig& next, uint64_t expected_generation, bool dry_run,
                     v1::ChangeSummary* changes);
  MuxConfig WithHealth(const MuxConfig& desired) const;
  void LogHealthChanges(const v1::SetBackendHealthRequest& request,
                        const v1::ChangeSummary& changes) const;
  void FillHealth(v1::HealthResponse* out) const;

  MuxRuntime* runtime_;
  std::function<void(const MuxConfig&)> on_applied_;
  mutable std::mutex mu_;  ///< Serialises changes; guards desired_ and unhealthy_.
  MuxConfig desired_;
  std::map<uint32_t, std::string> unhealthy_;  ///< DIP → reason.
  std::atomic<bool> shutdown_{false};
};

}  // namespace sluice::mux
