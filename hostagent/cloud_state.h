// The agent's cloud state file (`agent.cloud_state_file`): the endpoints and static SNAT
// leases the cloud controller last gave it over gRPC, and the VMs attached at runtime
// (AttachVm of a VM not in the YAML), written after every accepted change and served again
// at start, before the controller calls. A restarted agent then carries on with what the
// muxes still send it (they never stopped), its runtime-attached VMs get their ports again
// without a new AttachVm, and its connections' NAT flows (nat.flow_state_file) are kept, not
// dropped as orphans. The controller's next apply replaces it as usual. Format: proto
// sluice.v1.AgentCloudState as protobuf JSON.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hostagent/config.h"

namespace sluice::agent {

/// Writes `config`'s endpoints, static (non-dynamic) SNAT leases and runtime-attached VMs
/// (VmConfig::attached_at_runtime) to `path` atomically.
absl::Status SaveCloudState(const std::string& path, const AgentConfig& config,
                            uint64_t generation);

/// What LoadCloudState did with the file's runtime-attached VMs.
struct CloudStateVms {
  std::vector<std::string> restored;  ///< Names of the VMs added to the config.
  /// One line per VM left out, naming it and why ("vms[1] (VM 'web2'): vms[1].pa: ..."), and
  /// per endpoint or lease dropped with it.
  std::vector<std::string> skipped;
};

/// Replaces `config`'s endpoints and static leases with those in `path` (dynamic leases are
/// left to the SNAT allocator client) and adds the file's runtime-attached VMs (marked
/// attached_at_runtime). A VM entry that does not fit (malformed, or clashing with the
/// YAML's VMs or another entry: name, DIP, PA, port) is skipped with its endpoints and leases
/// and reported in `vms->skipped`; the other VMs are restored. NOT_FOUND when there is no file
/// (first start); any other error (unreadable, malformed, another agent's, an endpoint or
/// lease that fits no VM) leaves `config` unchanged and says why.
absl::Status LoadCloudState(const std::string& path, AgentConfig* config,
                            CloudStateVms* vms = nullptr);

/// Removes VM `name` from `config` with its endpoints and static leases (a restored VM whose
/// port cannot be opened at start). Returns how many endpoints and leases went with it.
size_t ForgetVm(AgentConfig* config, const std::string& name);

}  // namespace sluice::agent
