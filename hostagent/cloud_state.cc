#include "hostagent/cloud_state.h"

#include <google/protobuf/util/json_util.h>

#include <vector>

#include "common/files.h"
#include "common/strings.h"
#include "hostagent/grpc_service.h"
#include "sluice/v1/agent_state.pb.h"

namespace sluice::agent {

absl::Status SaveCloudState(const std::string& path, const AgentConfig& config,
                            uint64_t generation) {
  v1::AgentCloudState state;
  state.set_agent(config.name);
  state.set_config_generation(generation);
  for (const EndpointConfig& ep : config.endpoints) EndpointToProto(ep, state.add_endpoints());
  for (const SnatLeaseConfig& lease : config.snat_leases) {
    if (!lease.dynamic) SnatLeaseToProto(lease, state.add_snat_leases());
  }
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(state, &json, options).ok()) {
    return absl::InternalError(StrCat(path, ": cannot encode the cloud state"));
  }
  return WriteFileAtomically(path, json);
}

absl::Status LoadCloudState(const std::string& path, AgentConfig* config) {
  absl::StatusOr<std::string> text = ReadWholeFile(path);
  if (!text.ok()) return text.status();
  v1::AgentCloudState state;
  auto parsed = google::protobuf::util::JsonStringToMessage(*text, &state);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        StrCat(path, ": not a cloud state file: ", std::string(parsed.message())));
  }
  if (state.agent() != config->name) {
    return absl::FailedPreconditionError(StrCat(path, ": written by agent '", state.agent(),
                                                "', this is '", config->name, "'"));
  }
  AgentConfig next = *config;
  next.endpoints.clear();
  std::vector<std::string> endpoint_fields, lease_fields;
  for (int i = 0; i < state.endpoints_size(); ++i) {
    endpoint_fields.push_back(StrCat("endpoints[", i, "]"));
    absl::StatusOr<EndpointConfig> ep =
        EndpointFromProto(state.endpoints(i), endpoint_fields.back());
    if (!ep.ok()) return absl::InvalidArgumentError(StrCat(path, ": ", std::string(ep.status().message())));
    next.endpoints.push_back(std::move(*ep));
  }
  std::erase_if(next.snat_leases, [](const SnatLeaseConfig& l) { return !l.dynamic; });
  lease_fields.assign(next.snat_leases.size(), "(a dynamic lease)");
  for (int i = 0; i < state.snat_leases_size(); ++i) {
    const std::string field = StrCat("snat_leases[", i, "]");
    absl::StatusOr<SnatLeaseConfig> lease = SnatLeaseFromProto(state.snat_leases(i), field);
    if (!lease.ok()) {
      return absl::InvalidArgumentError(StrCat(path, ": ", std::string(lease.status().message())));
    }
    next.snat_leases.push_back(*lease);
    lease_fields.push_back(field);
  }
  absl::Status checked = CheckEndpointsAndLeases(next, endpoint_fields, lease_fields);
  if (!checked.ok()) return absl::FailedPreconditionError(StrCat(path, ": ", std::string(checked.message())));
  *config = std::move(next);
  return absl::OkStatus();
}

}  // namespace sluice::agent
