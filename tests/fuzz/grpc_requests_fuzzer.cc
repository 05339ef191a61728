// Fuzz target: serialized gRPC requests → the services' request checking
// (hostagent/grpc_service.h EndpointFromProto / SnatLeaseFromProto / CheckEndpointsAndLeases,
// mux_lite/grpc_service.h VipsFromProto / SnatRangesFromProto / CheckAgainstMux) against the
// lab's running configs → a new config or an error, never a crash.
//
// Input: [request kind][protobuf bytes]; kinds: 0 agent SetEndpoints, 1 agent SetSnatLeases,
// 2 mux SetVips, 3 mux SetSnatRanges. Invariant: a request the checks accept gives a config
// the data path takes (agent rules the executor accepts, SNAT port pool; mux VIP tables).
#include <cstdint>
#include <string>
#include <vector>

#include <google/protobuf/stubs/logging.h>

#include "hostagent/grpc_service.h"
#include "hostagent/rules.h"
#include "hostagent/snat_ports.h"
#include "mux_lite/grpc_service.h"
#include "mux_lite/mux.h"
#include "offload/sw/executor.h"
#include "tests/fuzz/fuzz_lab.h"
#include "tests/fuzz/fuzz_support.h"

namespace sluice::fuzz {
namespace {

void CheckAgentConfig(const agent::AgentConfig& config) {
  agent::PortMap ports{.uplink_port = 0, .uplink_mac = {2, 0, 0, 0, 0, 1}};
  for (size_t v = 0; v < config.vms.size(); ++v) {
    ports.vm_ports.push_back(static_cast<uint16_t>(v + 1));
    ports.vm_port_macs.push_back({2, 0, 0, 0, 1, static_cast<uint8_t>(v)});
  }
  std::string error;
  auto table = sw::RuleTable::Build(agent::BuildAgentRules(config, ports, {2, 0, 0, 0, 0, 2}),
                                    &error);
  FUZZ_CHECK(table != nullptr, "accepted request gives rules the executor refuses: %s",
             error.c_str());
  agent::SnatPortPool pool(config);
  (void)pool;
}

void AgentRequest(bool endpoints, const uint8_t* data, size_t size) {
  static const agent::AgentConfig running = LabAgentConfig();
  agent::AgentConfig next = running;
  std::vector<std::string> endpoint_fields, lease_fields;
  for (size_t i = 0; i < next.endpoints.size(); ++i) endpoint_fields.push_back("running");
  for (size_t i = 0; i < next.snat_leases.size(); ++i) lease_fields.push_back("running");
  if (endpoints) {
    v1::SetEndpointsRequest request;
    if (!request.ParseFromArray(data, static_cast<int>(size))) return;
    next.endpoints.clear();
    endpoint_fields.clear();
    for (int i = 0; i < request.endpoints_size(); ++i) {
      std::string field = "endpoints[" + std::to_string(i) + "]";
      auto ep = agent::EndpointFromProto(request.endpoints(i), field);
      if (!ep.ok()) return;
      next.endpoints.push_back(*ep);
      endpoint_fields.push_back(field);
    }
  } else {
    v1::SetSnatLeasesRequest request;
    if (!request.ParseFromArray(data, static_cast<int>(size))) return;
    next.snat_leases.clear();
    lease_fields.clear();
    for (int i = 0; i < request.leases_size(); ++i) {
      std::string field = "leases[" + std::to_string(i) + "]";
      auto lease = agent::SnatLeaseFromProto(request.leases(i), field);
      if (!lease.ok()) return;
      next.snat_leases.push_back(*lease);
      lease_fields.push_back(field);
    }
  }
  if (!agent::CheckEndpointsAndLeases(next, endpoint_fields, lease_fields).ok()) return;
  CheckAgentConfig(next);
}

void MuxRequest(bool vips, const uint8_t* data, size_t size) {
  static const mux::MuxConfig running = LabMuxConfig();
  mux::MuxConfig next = running;
  if (vips) {
    v1::SetVipsRequest request;
    if (!request.ParseFromArray(data, static_cast<int>(size))) return;
    auto parsed = mux::VipsFromProto(request.vips());
    if (!parsed.ok()) return;
    next.vips = *parsed;
  } else {
    v1::SetSnatRangesRequest request;
    if (!request.ParseFromArray(data, static_cast<int>(size))) return;
    auto parsed = mux::SnatRangesFromProto(request.ranges());
    if (!parsed.ok()) return;
    next.snat_ranges = *parsed;
  }
  if (!mux::CheckAgainstMux(next, running).ok()) return;
  size_t backends = 0;
  for (const mux::VipConfig& vip : next.vips) backends += vip.backends.size();
  if (backends > 256 || next.vips.size() > 64) return;  // keep an iteration cheap
  std::string error;
  auto table = mux::VipTable::Build(next, &error);
  FUZZ_CHECK(table != nullptr, "accepted request does not build: %s", error.c_str());
}

}  // namespace
}  // namespace sluice::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Invalid UTF-8 in string fields is an ordinary parse failure here, not worth a log line.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice::fuzz;
  if (size == 0) return 0;
  switch (data[0] % 4) {
    case 0:
      AgentRequest(true, data + 1, size - 1);
      break;
    case 1:
      AgentRequest(false, data + 1, size - 1);
      break;
    case 2:
      MuxRequest(true, data + 1, size - 1);
      break;
    default:
      MuxRequest(false, data + 1, size - 1);
      break;
  }
  return 0;
}
