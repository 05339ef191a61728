// The real sides of SnatLeaseClient's seams in sluice-agent: the SNAT allocator over gRPC
// (sluice.v1.SnatAllocator) and the agent as its gRPC service and data path see it.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "hostagent/grpc_service.h"
#include "hostagent/snat_lease_client.h"
#include "sluice/v1/snat_allocator.grpc.pb.h"

namespace sluice::agent {

/// sluice-snatd at `address` (TLS per `dial` on TCP), for the host named `host` with PA
/// `host_pa` whose data path decaps `encap` (asked for with every chunk, so the muxes send
/// the replies to its ports that way).
class GrpcSnatAllocator : public SnatAllocatorApi {
 public:
  GrpcSnatAllocator(const std::string& address, std::string host, uint32_t host_pa,
                    v1::Encap encap, std::chrono::milliseconds timeout,
                    const DialOptions& dial = {});
  absl::StatusOr<SnatLeaseConfig> RequestChunk(uint32_t dip, uint32_t vip, uint8_t proto) override;
  absl::Status ReturnChunk(const SnatLeaseConfig& chunk) override;
  absl::StatusOr<std::vector<SnatLeaseConfig>> ListChunks() override;

 private:
  std::string address_;
  std::string host_;
  uint32_t host_pa_;
  v1::Encap encap_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<v1::SnatAllocator::Stub> stub_;
};

/// The agent: its leases and attachments from the gRPC service (which publishes changes to
/// the data path), SNAT flows copied from the data path.
class ServiceLeaseAgent : public SnatLeaseAgent {
 public:
  ServiceLeaseAgent(AgentService* service, AgentRuntime* runtime, uint32_t flow_capacity,
                    std::chrono::milliseconds timeout)
      : service_(service), runtime_(runtime), flow_capacity_(flow_capacity), timeout_(timeout) {}
  std::vector<SnatLeaseConfig> Leases() override { return service_->running().snat_leases; }
  bool VmAttached(uint32_t dip) override { return service_->VmAttached(dip); }
  absl::Status AddDynamicLease(const SnatLeaseConfig& lease) override {
    return service_->AddDynamicLease(lease, timeout_);
  }
  absl::Status RemoveDynamicLease(const SnatLeaseConfig& lease) override {
    return service_->RemoveDynamicLease(lease, timeout_);
  }
  absl::StatusOr<std::vector<SnatPortUse>> SnatPortsInUse() override;

 private:
  AgentService* service_;
  AgentRuntime* runtime_;
  uint32_t flow_capacity_;
  std::chrono::milliseconds timeout_;
};

}  // namespace sluice::agent
