// The control-plane pieces sluice-agent runs the same way whichever data path it drives
// (DPDK ports or an OVS bridge): the endpoints' health checks and their reports to the muxes,
// and dynamic SNAT leasing from the SNAT allocator on its own control thread.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "common/json_writer.h"
#include "hostagent/agent_health.h"
#include "hostagent/config.h"
#include "hostagent/grpc_service.h"
#include "hostagent/snat_allocator_grpc.h"
#include "hostagent/snat_lease_client.h"

namespace sluice::agent {

/// The health checks of `config`'s endpoints, reporting to every mux of its `health_report:`.
absl::StatusOr<std::unique_ptr<AgentHealth>> StartAgentHealth(const AgentConfig& config);

/// A data path's runtime whose configs also drive the health checks. Checks first: a check
/// that cannot start refuses the config before the data path sees it; a data path that
/// refuses it gets the previous checks back. Status() adds the checks and the muxes' reports.
class HealthCheckedRuntime : public AgentRuntime {
 public:
  /// Both pointers must outlive this.
  HealthCheckedRuntime(AgentRuntime* data_path, AgentHealth* health, const AgentConfig& boot)
      : data_path_(data_path), health_(health), published_(boot) {}
  bool PublishConfig(const AgentConfig& next, std::string* error) override;
  uint64_t generation() const override { return data_path_->generation(); }
  uint64_t adopted_generation() const override { return data_path_->adopted_generation(); }
  void ReclaimRetired() override { data_path_->ReclaimRetired(); }
  bool PlugsVmPorts() const override { return data_path_->PlugsVmPorts(); }
  AgentRuntimeStatus Status() const override;
  bool CopyFlows(size_t limit, uint32_t dip, std::vector<NatFlow>* flows,
                 uint64_t* total) override {
    return data_path_->CopyFlows(limit, dip, flows, total);
  }
  void CountHotplugRefusal() override { data_path_->CountHotplugRefusal(); }
  bool NicFlow(const NatFlow& flow, NicFlowReading* out) const override {
    return data_path_->NicFlow(flow, out);
  }

 private:
  AgentRuntime* data_path_;
  AgentHealth* health_;
  AgentConfig published_;  ///< Only PublishConfig touches it (the service serialises calls).
};

/// The SNAT allocator of `config->snat_allocator` (null without one), asked for chunks whose
/// replies the muxes encapsulate as this host's data path decaps them (IPIP for the DPDK
/// agent, GRE in vswitch mode). The chunks it already
/// leases to this host (an agent restart, a lost reply) that the config asks for and that
/// overlap no static lease join `config->snat_leases`, so their connections are kept; an
/// allocator that does not answer now is only logged (the lease client adopts them later).
std::unique_ptr<GrpcSnatAllocator> ConnectSnatAllocator(AgentConfig* config);

/// Dynamic SNAT leasing (SnatLeaseClient) ticking every check_interval_ms on its own thread,
/// with one log line per change of the chunks held or of the last error. Leased chunks stay
/// leased when it stops: a restarted agent adopts them.
class SnatLeaseLoop {
 public:
  /// All pointers must outlive this; `config.snat_allocator` must be set.
  SnatLeaseLoop(const AgentConfig& config, SnatAllocatorApi* allocator, AgentService* service,
                AgentRuntime* runtime);
  ~SnatLeaseLoop() { Stop(); }
  void Stop();
  const SnatLeaseClient& client() const { return client_; }

 private:
  ServiceLeaseAgent agent_;
  SteadyControlClock clock_;
  SnatLeaseClient client_;
  std::jthread thread_;
};

/// The stats document's "snat_allocator" object (`client` null: not enabled).
void WriteLeaseStats(JsonWriter& j, const AgentConfig& config, const SnatLeaseClient* client);

}  // namespace sluice::agent
