// The seam between the libvirt hook and sluice-agent: tell the agent that a VM's interfaces
// appeared (AttachVm) or went away (DetachVm). The production implementation speaks gRPC
// (grpc_agent_client.h); unit tests use a fake.
#pragma once

#include <chrono>
#include <string>

#include "absl/status/status.h"
#include "deploy/libvirt/attachment.h"

namespace sluice::libvirt {

class AgentClient {
 public:
  using Deadline = std::chrono::system_clock::time_point;
  virtual ~AgentClient() = default;

  /// Binds one VM interface (its DIP, MAC, PA, endpoints) to its port; returns by `deadline`.
  virtual absl::Status AttachVm(const VmPortAttachment& attachment, Deadline deadline) = 0;
  /// Forgets the VM port `name` and its endpoints; returns by `deadline`. NOT_FOUND if the
  /// agent does not know it.
  virtual absl::Status DetachVm(const std::string& name, Deadline deadline) = 0;
};

}  // namespace sluice::libvirt
