// The Agent gRPC service (proto/sluice/v1/agent.proto): checks each request as a whole
// against the running config, builds the next AgentConfig (new endpoints / SNAT leases)
// and publishes it to the data path as an immutable snapshot (AgentDataPath::PublishConfig).
// On any error the running config stays as it was.
//
// AttachVm binds VMs whose port was configured at start; a VM the agent does not have is added
// (its port plugged) where the runtime can (AgentRuntime::PlugsVmPorts: vswitch mode) and
// refused with FAILED_PRECONDITION where it cannot.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "hostagent/config.h"
#include "hostagent/nat_flow_table.h"
#include "hostagent/flow_offload.h"
#include "sluice/v1/agent.grpc.pb.h"

namespace sluice::agent {

/// Request checking, apart from the server so tests can feed it bad input directly. Errors
/// name the field by its path in the request ("endpoints[2].dip").
absl::StatusOr<EndpointConfig> EndpointFromProto(const v1::Endpoint& ep, const std::string& field);
absl::StatusOr<SnatLeaseConfig> SnatLeaseFromProto(const v1::SnatLease& lease,
                                                   const std::string& field);
/// An endpoint's `health` (zero fields take the defaults of hostagent/health.h); it probes
/// `ep`'s DIP, by default on its dip_port.
absl::StatusOr<HealthCheckConfig> HealthCheckFromProto(const v1::HealthCheck& health,
                                                       const EndpointConfig& ep,
                                                       const std::string& field);
void HealthCheckToProto(const HealthCheckConfig& health, v1::HealthCheck* out);
void EndpointToProto(const EndpointConfig& ep, v1::Endpoint* out);
void SnatLeaseToProto(const SnatLeaseConfig& lease, v1::SnatLease* out);

/// A VmAttachment's own fields (its endpoints and leases aside): name, MAC and DIP required;
/// port, PA and gateway as given (""/0 when absent). Errors name the field under `field`
/// ("vm.mac: ...").
absl::StatusOr<VmConfig> VmFromProto(const v1::VmAttachment& vm, const std::string& field);
void VmToProto(const VmConfig& vm, v1::VmAttachment* out);
/// What a VM new to the agent must be against the running config (AttachVm of a VM it does
/// not have; a runtime-attached VM of the cloud state file at start): name and DIP no other
/// VM's; a port (required) that names a device and is not the uplink's or another VM's; a PA
/// (required) in the host prefix, not the host's or another VM's; a gateway (required); at
/// most 255 VMs. INVALID_ARGUMENT / FAILED_PRECONDITION / RESOURCE_EXHAUSTED naming `field`.
absl::Status CheckNewVm(const AgentConfig& running, const VmConfig& vm, const std::string& field);

/// Cross-checks endpoints and leases of `config` against each other and its VMs: every DIP a
/// local VM (NOT_FOUND), no endpoint twice, no overlapping leases, no lease over an endpoint
/// port (INVALID_ARGUMENT). `endpoint_fields[i]` / `lease_fields[i]` name entry i in errors.
absl::Status CheckEndpointsAndLeases(const AgentConfig& config,
                                     const std::vector<std::string>& endpoint_fields,
                                     const std::vector<std::string>& lease_fields);

/// Per-VM numbers for GetVms / GetStats.
struct VmRuntimeStatus {
  std::string name;          ///< The VM's name ("": parallel to AgentConfig::vms).
  bool hotplugged = false;   ///< Its port was opened at runtime by AttachVm.
  int32_t port_id = -1;      ///< Its DPDK port, or -1 if none.
  uint64_t rx_packets = 0;
  uint64_t tx_packets = 0;
  uint32_t snat_tcp_in_use = 0, snat_tcp_leased = 0;
  uint32_t snat_udp_in_use = 0, snat_udp_leased = 0;
  uint64_t snat_ports_exhausted = 0;
};

struct AgentRuntimeStatus {
  bool ready = false;
  bool stopping = false;
  std::vector<std::pair<std::string, uint64_t>> counters;
  std::vector<std::pair<std::string, uint64_t>> drops;
  std::vector<VmRuntimeStatus> vms;  ///< By name, or parallel to AgentConfig::vms.
  std::vector<DipCheckStatus> health_checks;
  std::vector<MuxReportStatus> health_reports;
};

/// The seam between the service and the daemon's data path.
class AgentRuntime {
 public:
  virtual ~AgentRuntime() = default;
  /// Publishes endpoints and leases of `next` (everything else as running) and starts or
  /// stops the endpoints' health checks; false with `*error` when it is refused.
  virtual bool PublishConfig(const AgentConfig& next, std::string* error) = 0;
  /// Generation of the newest published config.
  virtual uint64_t generation() const = 0;
  /// Generation of the config the data path uses now.
  virtual uint64_t adopted_generation() const { return generation(); }
  /// Frees snapshots the data path has moved past.
  virtual void ReclaimRetired() = 0;
  virtual AgentRuntimeStatus Status() const = 0;
  /// True if PublishConfig takes VMs added to and removed from `vms` while running (it plugs
  /// and unplugs their ports): AttachVm then adds a VM the agent does not have, and DetachVm
  /// removes it. False: only the boot config's VMs, whose ports stay open when detached.
  virtual bool PlugsVmPorts() const { return false; }
  /// Copies flows from the data path (see AgentDataPath::CopyFlows).
  virtual bool CopyFlows(size_t limit, uint32_t dip, std::vector<NatFlow>* flows,
                         uint64_t* total) = 0;
  /// Counts an AttachVm of a VM new to the agent that the service refused before the
  /// runtime saw it (a bad field, a DIP or port in use).
  virtual void CountHotplugRefusal() {}
  /// What the NIC executor knows of a flow (rules, COUNT readings); false when none of its
  /// rules is in the NIC (or there is no NIC executor).
  virtual bool NicFlow(const NatFlow& /*flow*/, NicFlowReading* /*out*/) const { return false; }
};

class AgentService final : public v1::Agent::Service {
 public:
  AgentService(AgentRuntime* runtime, const AgentConfig& boot);

  AgentConfig running() const;
  void Shutdown() { shutdown_.store(true); }
  /// Called (under the service's lock) after every change the data path accepted, with the
  /// new running config and its generation: the daemon keeps its cloud state file with it.
  void SetOnApplied(std::function<void(const AgentConfig&, uint64_t)> on_applied) {
    on_applied_ = std::move(on_applied);
  }

  /// Dynamic SNAT leasing (hostagent/snat_lease_client.h): adds or removes one lease leased
  /// from the SNAT allocator, through the same whole-config checks as SetSnatLeases, then
  /// waits up to `timeout` until the data path uses the new leases (DEADLINE_EXCEEDED
  /// otherwise). FAILED_PRECONDITION for a detached VM; NOT_FOUND removing a lease it lacks.
  absl::Status AddDynamicLease(const SnatLeaseConfig& lease, std::chrono::milliseconds timeout);
  absl::Status RemoveDynamicLease(const SnatLeaseConfig& lease, std::chrono::milliseconds timeout);
  /// True if a VM with this DIP is configured and not detached.
  bool VmAttached(uint32_t dip) const;

  grpc::Status AttachVm(grpc::ServerContext*, const v1::AttachVmRequest*,
                        v1::AttachVmResponse*) override;
  grpc::Status DetachVm(grpc::ServerContext*, const v1::DetachVmRequest*,
                        v1::DetachVmResponse*) override;
  grpc::Status SetEndpoints(grpc::ServerContext*, const v1::SetEndpointsRequest*,
                            v1::ChangeSummary*) override;
  grpc::Status SetSnatLeases(grpc::ServerContext*, const v1::SetSnatLeasesRequest*,
                             v1::ChangeSummary*) override;
  grpc::Status GetVms(grpc::ServerContext*, const v1::GetVmsRequest*, v1::GetVmsResponse*) override;
  grpc::Status GetEndpoints(grpc::ServerContext*, const v1::GetEndpointsRequest*,
                            v1::GetEndpointsResponse*) override;
  grpc::Status GetLeases(grpc::ServerContext*, const v1::GetLeasesRequest*,
                         v1::GetLeasesResponse*) override;
  grpc::Status GetFlows(grpc::ServerContext*, const v1::GetFlowsRequest*,
                        v1::GetFlowsResponse*) override;
  grpc::Status GetStats(grpc::ServerContext*, const v1::GetStatsRequest*, v1::AgentStats*) override;
  grpc::Status Health(grpc::ServerContext*, const v1::HealthRequest*, v1::HealthResponse*) override;
  grpc::Status WatchHealth(grpc::ServerContext*, const v1::HealthRequest*,
                           grpc::ServerWriter<v1::HealthResponse>*) override;

 private:
  /// Checks `expected_generation` and the whole of `next`, publishes it (unless `dry_run`)
  /// and fills `changes`. Caller holds mu_.
  absl::Status Apply(const AgentConfig& next, const std::vector<std::string>& endpoint_fields,
                     const std::vector<std::string>& lease_fields, uint64_t expected_generation,
                     bool dry_run, v1::ChangeSummary* changes);
  absl::Status ChangeDynamicLease(const SnatLeaseConfig& lease, bool add,
                                  std::chrono::milliseconds timeout);
  void FillVms(const AgentConfig& config, const AgentRuntimeStatus& status,
               google::protobuf::RepeatedPtrField<v1::VmStatus>* out) const;
  void FillHealth(v1::HealthResponse* out) const;

  AgentRuntime* runtime_;
  mutable std::mutex mu_;  ///< Serialises changes; guards running_ and detached_.
  AgentConfig running_;
  std::set<std::string> detached_;  ///< VMs detached by DetachVm (names).
  std::function<void(const AgentConfig&, uint64_t)> on_applied_;
  std::atomic<bool> shutdown_{false};
};

}  // namespace sluice::agent
