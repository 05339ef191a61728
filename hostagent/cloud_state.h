// The agent's cloud state file (`agent.cloud_state_file`): the endpoints and static SNAT
// leases the cloud controller last gave it over gRPC, written after every accepted change
// and served again at start, before the controller calls. A restarted agent then carries on
// with what the muxes still send it (they never stopped), and its connections' NAT flows
// (nat.flow_state_file) are kept, not dropped as orphans. The controller's next apply
// replaces it as usual. Format: proto sluice.v1.AgentCloudState as protobuf JSON.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hostagent/config.h"

namespace sluice::agent {

/// Writes `config`'s endpoints and static (non-dynamic) SNAT leases to `path` atomically.
absl::Status SaveCloudState(const std::string& path, const AgentConfig& config,
                            uint64_t generation);

/// Replaces `config`'s endpoints and static leases with those in `path` (dynamic leases are
/// left to the SNAT allocator client). NOT_FOUND when there is no file (first start); any
/// other error (unreadable, malformed, another agent's, a DIP that is no VM here any more)
/// leaves `config` unchanged and says why.
absl::Status LoadCloudState(const std::string& path, AgentConfig* config);

}  // namespace sluice::agent
