#include "hostagent/cloud_state.h"

#include <algorithm>
#include <map>
#include <vector>

#include "common/proto_state_file.h"
#include "common/net_text.h"
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
  for (const VmConfig& vm : config.vms) {
    if (vm.attached_at_runtime) VmToProto(vm, state.add_vms());
  }
  return WriteProtoStateFile(path, state);
}

absl::Status LoadCloudState(const std::string& path, AgentConfig* config, CloudStateVms* vms) {
  v1::AgentCloudState state;
  if (absl::Status read = ReadProtoStateFile(path, "cloud state", &state); !read.ok()) {
    return read;
  }
  if (state.agent() != config->name) {
    return absl::FailedPreconditionError(StrCat(path, ": written by agent '", state.agent(),
                                                "', this is '", config->name, "'"));
  }
  AgentConfig next = *config;
  CloudStateVms report;
  // Runtime-attached VMs first (the endpoints and leases below may be theirs), each on its
  // own: one that does not fit is left out, the others are restored.
  std::map<uint32_t, std::string> skipped_dips;  // DIP of a VM left out → its name
  for (int i = 0; i < state.vms_size(); ++i) {
    const v1::VmAttachment& entry = state.vms(i);
    const std::string field = StrCat("vms[", i, "]");
    auto skip = [&](std::string why) {
      report.skipped.push_back(StrCat(field, " (VM '", entry.name(), "'): ", why));
      if (absl::StatusOr<uint32_t> dip = ParseIpv4(entry.dip()); dip.ok()) {
        skipped_dips.emplace(*dip, entry.name());
      }
    };
    absl::StatusOr<VmConfig> vm = VmFromProto(entry, field);
    if (!vm.ok()) {
      skip(std::string(vm.status().message()));
      continue;
    }
    if (std::any_of(config->vms.begin(), config->vms.end(),
                    [&](const VmConfig& v) { return v.name == vm->name; })) {
      skip("the agent's config has this VM now; its entry there is used");
      continue;
    }
    vm->attached_at_runtime = true;
    if (absl::Status s = CheckNewVm(next, *vm, field); !s.ok()) {
      skip(std::string(s.message()));
      continue;
    }
    next.vms.push_back(*vm);
    report.restored.push_back(vm->name);
  }
  // A left-out VM's endpoints and leases go with it (unless its DIP is another VM's).
  std::erase_if(skipped_dips, [&](const auto& entry) {
    return std::any_of(next.vms.begin(), next.vms.end(),
                       [&](const VmConfig& v) { return v.dip == entry.first; });
  });
  auto skipped_vm = [&](uint32_t dip) -> const std::string* {
    auto it = skipped_dips.find(dip);
    return it == skipped_dips.end() ? nullptr : &it->second;
  };

  next.endpoints.clear();
  std::vector<std::string> endpoint_fields, lease_fields;
  for (int i = 0; i < state.endpoints_size(); ++i) {
    const std::string field = StrCat("endpoints[", i, "]");
    absl::StatusOr<EndpointConfig> ep = EndpointFromProto(state.endpoints(i), field);
    if (!ep.ok()) return absl::InvalidArgumentError(StrCat(path, ": ", std::string(ep.status().message())));
    if (const std::string* vm = skipped_vm(ep->dip)) {
      report.skipped.push_back(StrCat(field, " (", Ipv4ToString(ep->dip), ":", ep->dip_port,
                                      "): left out with VM '", *vm, "'"));
      continue;
    }
    endpoint_fields.push_back(field);
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
    if (const std::string* vm = skipped_vm(lease->dip)) {
      report.skipped.push_back(StrCat(field, " (", Ipv4ToString(lease->dip), " ports ",
                                      lease->port_start, "+", lease->port_count,
                                      "): left out with VM '", *vm, "'"));
      continue;
    }
    next.snat_leases.push_back(*lease);
    lease_fields.push_back(field);
  }
  absl::Status checked = CheckEndpointsAndLeases(next, endpoint_fields, lease_fields);
  if (!checked.ok()) return absl::FailedPreconditionError(StrCat(path, ": ", std::string(checked.message())));
  *config = std::move(next);
  if (vms != nullptr) *vms = std::move(report);
  return absl::OkStatus();
}

size_t ForgetVm(AgentConfig* config, const std::string& name) {
  auto it = std::find_if(config->vms.begin(), config->vms.end(),
                         [&](const VmConfig& v) { return v.name == name; });
  if (it == config->vms.end()) return 0;
  const uint32_t dip = it->dip;
  config->vms.erase(it);
  size_t n = std::erase_if(config->endpoints, [&](const EndpointConfig& ep) { return ep.dip == dip; });
  n += std::erase_if(config->snat_leases,
                     [&](const SnatLeaseConfig& l) { return l.dip == dip && !l.dynamic; });
  return n;
}

}  // namespace sluice::agent
