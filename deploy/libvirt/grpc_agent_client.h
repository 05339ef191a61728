// AgentClient over gRPC: sluice.v1.Agent/AttachVm and DetachVm on sluice-agent's socket.
#pragma once

#include <memory>
#include <string>

#include "deploy/libvirt/agent_client.h"

namespace grpc {
class Channel;
}

namespace sluice::v1 {
class AttachVmRequest;
}

namespace sluice::libvirt {

/// The request AttachVm sends for one attachment (exposed for tests).
void FillAttachVmRequest(const VmPortAttachment& attachment, sluice::v1::AttachVmRequest* request);

class GrpcAgentClient : public AgentClient {
 public:
  /// `target` is a gRPC target, e.g. "unix:/run/sluice/agent-grpc.sock". Calls wait for the
  /// agent (an agent restarting within the deadline still gets them) but never past it.
  explicit GrpcAgentClient(const std::string& target);
  ~GrpcAgentClient() override;

  absl::Status AttachVm(const VmPortAttachment& attachment, Deadline deadline) override;
  absl::Status DetachVm(const std::string& name, Deadline deadline) override;

 private:
  struct Stub;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Stub> stub_;
};

}  // namespace sluice::libvirt
