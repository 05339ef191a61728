#include "hostagent/grpc_service.h"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <map>
#include <thread>
#include <tuple>

#include "common/grpc_util.h"
#include "common/net_text.h"
#include "common/strings.h"
#include "hostagent/port_identity.h"

namespace sluice::agent {
namespace {

using google::protobuf::RepeatedPtrField;

constexpr size_t kDefaultFlowLimit = 1000;
constexpr size_t kMaxFlowLimit = 100000;

std::string EndpointText(const EndpointConfig& ep) {
  return StrCat(EndpointKey(ep.vip, ep.port, ep.proto), "->", Ipv4ToString(ep.dip), ":",
                ep.dip_port);
}

std::string LeaseText(const SnatLeaseConfig& l) {
  return StrCat("snat ", EndpointKey(l.vip, l.port_start, l.proto), "+", l.port_count, "->",
                Ipv4ToString(l.dip), l.dynamic ? " (dynamic)" : "");
}

/// Names of the running leases kept by a request, for its errors.
std::vector<std::string> RunningLeaseFields(const std::vector<SnatLeaseConfig>& leases) {
  std::vector<std::string> out;
  for (const SnatLeaseConfig& l : leases) out.push_back("(running) " + LeaseText(l));
  return out;
}

// Keys before → after, as a ChangeSummary; an endpoint whose health check alone changed is
// "changed" (leases are sets: they are only added or removed).
void Diff(const AgentConfig& before, const AgentConfig& after, v1::ChangeSummary* out) {
  // VMs plugged or unplugged (AgentRuntime::PlugsVmPorts), by name.
  for (const VmConfig& vm : after.vms) {
    if (std::none_of(before.vms.begin(), before.vms.end(),
                     [&](const VmConfig& b) { return b.name == vm.name; })) {
      out->add_added("vm " + vm.name);
    }
  }
  for (const VmConfig& vm : before.vms) {
    if (std::none_of(after.vms.begin(), after.vms.end(),
                     [&](const VmConfig& a) { return a.name == vm.name; })) {
      out->add_removed("vm " + vm.name);
    }
  }
  std::map<std::string, std::optional<HealthCheckConfig>> old_health;
  for (const EndpointConfig& ep : before.endpoints) old_health[EndpointText(ep)] = ep.health;
  std::set<std::string> changed;
  for (const EndpointConfig& ep : after.endpoints) {
    auto it = old_health.find(EndpointText(ep));
    if (it != old_health.end() && it->second != ep.health) changed.insert(it->first);
  }
  for (const std::string& k : changed) out->add_changed(k + " health");
  std::set<std::string> old_keys, new_keys;
  for (const EndpointConfig& ep : before.endpoints) old_keys.insert(EndpointText(ep));
  for (const SnatLeaseConfig& l : before.snat_leases) old_keys.insert(LeaseText(l));
  for (const EndpointConfig& ep : after.endpoints) new_keys.insert(EndpointText(ep));
  for (const SnatLeaseConfig& l : after.snat_leases) new_keys.insert(LeaseText(l));
  uint32_t unchanged = 0;
  for (const std::string& k : new_keys) {
    if (old_keys.count(k) == 0) {
      out->add_added(k);
    } else if (changed.count(k) == 0) {
      ++unchanged;
    }
  }
  for (const std::string& k : old_keys) {
    if (new_keys.count(k) == 0) out->add_removed(k);
  }
  out->set_unchanged(unchanged);
}

bool ValidVmName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == ':' ||
           c == '-' || c == '/';
  });
}

const char* FlowStateName(NatFlowState s) {
  switch (s) {
    case NatFlowState::kTcpSyn:
      return "syn";
    case NatFlowState::kTcpEstablished:
      return "established";
    case NatFlowState::kTcpClosing:
      return "closing";
    case NatFlowState::kClosed:
      return "closed";
    case NatFlowState::kUdp:
      return "udp";
    case NatFlowState::kFree:
      break;
  }
  return "free";
}

uint64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000 + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

absl::StatusOr<VmConfig> VmFromProto(const v1::VmAttachment& vm, const std::string& field) {
  if (!ValidVmName(vm.name())) {
    return FieldError(field + ".name", StrCat("'", vm.name(),
                                              "' is not a VM name (1..64 of A-Z a-z 0-9 . _ : - /)"));
  }
  if (vm.mac().empty()) return FieldError(field + ".mac", "required");
  absl::StatusOr<std::array<uint8_t, 6>> mac = ParseMac(vm.mac());
  if (!mac.ok()) return FieldError(field + ".mac", StrCat("'", vm.mac(), "' is not a MAC address"));
  absl::StatusOr<uint32_t> dip = Ipv4Field(vm.dip(), field + ".dip");
  if (!dip.ok()) return dip.status();
  VmConfig out{.name = vm.name(), .port = vm.port(), .mac = *mac, .dip = *dip};
  if (!vm.pa().empty()) {
    absl::StatusOr<uint32_t> pa = Ipv4Field(vm.pa(), field + ".pa");
    if (!pa.ok()) return pa.status();
    out.pa = *pa;
  }
  if (!vm.gateway().empty()) {
    absl::StatusOr<uint32_t> gateway = Ipv4Field(vm.gateway(), field + ".gateway");
    if (!gateway.ok()) return gateway.status();
    out.gateway = *gateway;
  }
  return out;
}

void VmToProto(const VmConfig& vm, v1::VmAttachment* out) {
  out->set_name(vm.name);
  out->set_port(vm.port);
  out->set_mac(MacToString(vm.mac));
  out->set_dip(Ipv4ToString(vm.dip));
  out->set_pa(Ipv4ToString(vm.pa));
  out->set_gateway(Ipv4ToString(vm.gateway));
}

absl::Status CheckNewVm(const AgentConfig& running, const VmConfig& vm, const std::string& field) {
  const char* why_required = "required for a VM this agent does not have yet";
  for (const VmConfig& other : running.vms) {
    if (other.name == vm.name) {
      return absl::FailedPreconditionError(
          StrCat(field, ".name: there is a VM '", vm.name, "' already"));
    }
    if (other.dip == vm.dip) {
      return absl::FailedPreconditionError(StrCat(field, ".dip: ", Ipv4ToString(vm.dip),
                                                  " is already VM '", other.name, "'"));
    }
  }
  if (vm.port.empty()) return FieldError(field + ".port", why_required);
  absl::StatusOr<PortIdentity> identity = ParsePortIdentity(vm.port);
  if (!identity.ok()) {
    return FieldError(field + ".port",
                      StrCat("'", vm.port, "': ", std::string(identity.status().message())));
  }
  if (SamePort(vm.port, running.uplink)) {
    return absl::FailedPreconditionError(
        StrCat(field, ".port: ", vm.port, " is the agent's uplink"));
  }
  for (const VmConfig& other : running.vms) {
    if (SamePort(vm.port, other.port)) {
      return absl::FailedPreconditionError(
          StrCat(field, ".port: ", vm.port, " is the port of VM '", other.name, "'"));
    }
  }
  if (vm.pa == 0) return FieldError(field + ".pa", why_required);
  if (vm.gateway == 0) return FieldError(field + ".gateway", why_required);
  if (!running.address.Contains(vm.pa) || vm.pa == running.address.addr) {
    return FieldError(field + ".pa",
                      StrCat(Ipv4ToString(vm.pa), " is not an address of the host's prefix ",
                             Ipv4ToString(running.address.addr), "/", running.address.length,
                             " other than the host's own"));
  }
  for (const VmConfig& other : running.vms) {
    if (other.pa == vm.pa) {
      return absl::FailedPreconditionError(StrCat(field, ".pa: ", Ipv4ToString(vm.pa),
                                                  " is already VM '", other.name, "''s PA"));
    }
  }
  if (running.vms.size() >= 255) {
    return absl::ResourceExhaustedError(
        StrCat(field, ": this agent has 255 VMs, the most it serves"));
  }
  return absl::OkStatus();
}

absl::StatusOr<EndpointConfig> EndpointFromProto(const v1::Endpoint& ep, const std::string& field) {
  EndpointConfig out;
  absl::StatusOr<uint32_t> vip = Ipv4Field(ep.vip(), field + ".vip");
  if (!vip.ok()) return vip.status();
  out.vip = *vip;
  absl::StatusOr<uint16_t> port = PortField(ep.port(), field + ".port");
  if (!port.ok()) return port.status();
  out.port = *port;
  absl::StatusOr<uint8_t> proto = ProtocolField(ep.protocol(), field + ".protocol");
  if (!proto.ok()) return proto.status();
  out.proto = *proto;
  absl::StatusOr<uint32_t> dip = Ipv4Field(ep.dip(), field + ".dip");
  if (!dip.ok()) return dip.status();
  out.dip = *dip;
  absl::StatusOr<uint16_t> dip_port = PortField(ep.dip_port(), field + ".dip_port", true);
  if (!dip_port.ok()) return dip_port.status();
  out.dip_port = *dip_port == 0 ? out.port : *dip_port;
  if (ep.has_health()) {
    absl::StatusOr<HealthCheckConfig> health =
        HealthCheckFromProto(ep.health(), out, field + ".health");
    if (!health.ok()) return health.status();
    out.health = *health;
  }
  return out;
}

absl::StatusOr<HealthCheckConfig> HealthCheckFromProto(const v1::HealthCheck& h,
                                                       const EndpointConfig& ep,
                                                       const std::string& field) {
  HealthCheckConfig c;
  switch (h.type()) {
    case v1::HEALTH_CHECK_TYPE_TCP:
      c.type = HealthProbeType::kTcp;
      break;
    case v1::HEALTH_CHECK_TYPE_HTTP:
      c.type = HealthProbeType::kHttp;
      break;
    case v1::HEALTH_CHECK_TYPE_HTTPS:
      c.type = HealthProbeType::kHttps;
      break;
    case v1::HEALTH_CHECK_TYPE_MYSQL:
      c.type = HealthProbeType::kMysql;
      break;
    default:
      return FieldError(field + ".type", "required (TCP, HTTP, HTTPS or MYSQL)");
  }
  c.address = ep.dip;
  absl::StatusOr<uint16_t> port = PortField(h.port(), field + ".port", true);
  if (!port.ok()) return port.status();
  c.port = *port == 0 ? ep.dip_port : *port;
  const bool http = c.type == HealthProbeType::kHttp || c.type == HealthProbeType::kHttps;
  if (!http && (!h.path().empty() || !h.host().empty() || h.expect_status() != 0)) {
    return FieldError(field + (h.path().empty() ? h.host().empty() ? ".expect_status" : ".host"
                                                : ".path"),
                      "only for type HTTP or HTTPS");
  }
  if (http) {
    if (!h.path().empty()) c.http_path = h.path();
    c.http_host = h.host();
    if (h.expect_status() != 0) {
      if (h.expect_status() < 100 || h.expect_status() > 599) {
        return FieldError(field + ".expect_status", StrCat(h.expect_status(), " is not 100..599"));
      }
      c.http_expected_status = static_cast<uint16_t>(h.expect_status());
    }
  }
  if (h.interval_ms() != 0) c.interval = std::chrono::milliseconds(h.interval_ms());
  if (h.timeout_ms() != 0) c.timeout = std::chrono::milliseconds(h.timeout_ms());
  if (h.rise() != 0) c.rise = h.rise();
  if (h.fall() != 0) c.fall = h.fall();
  c.jitter = std::chrono::milliseconds(h.jitter_ms());
  c.netns = h.netns();
  if (!c.netns.empty() && c.netns[0] != '/') {
    return FieldError(field + ".netns", StrCat("'", c.netns, "' is not an absolute path"));
  }
  if (absl::Status s = ValidateHealthCheck(c); !s.ok()) {
    // ValidateHealthCheck says "<field>: why" with the config's field names.
    std::string message(s.message());
    static const std::map<std::string, std::string> kProtoNames = {
        {"interval", "interval_ms"}, {"timeout", "timeout_ms"}, {"jitter", "jitter_ms"}};
    const size_t colon = message.find(':');
    if (colon != std::string::npos) {
      auto renamed = kProtoNames.find(message.substr(0, colon));
      if (renamed != kProtoNames.end()) message = renamed->second + message.substr(colon);
    }
    return absl::InvalidArgumentError(StrCat(field, ".", message));
  }
  return c;
}

void HealthCheckToProto(const HealthCheckConfig& c, v1::HealthCheck* out) {
  switch (c.type) {
    case HealthProbeType::kTcp:
      out->set_type(v1::HEALTH_CHECK_TYPE_TCP);
      break;
    case HealthProbeType::kHttp:
      out->set_type(v1::HEALTH_CHECK_TYPE_HTTP);
      break;
    case HealthProbeType::kHttps:
      out->set_type(v1::HEALTH_CHECK_TYPE_HTTPS);
      break;
    case HealthProbeType::kMysql:
      out->set_type(v1::HEALTH_CHECK_TYPE_MYSQL);
      break;
  }
  out->set_port(c.port);
  if (c.type == HealthProbeType::kHttp || c.type == HealthProbeType::kHttps) {
    out->set_path(c.http_path);
    out->set_host(c.http_host);
    out->set_expect_status(c.http_expected_status);
  }
  out->set_interval_ms(static_cast<uint32_t>(c.interval.count()));
  out->set_timeout_ms(static_cast<uint32_t>(c.timeout.count()));
  out->set_rise(c.rise);
  out->set_fall(c.fall);
  out->set_jitter_ms(static_cast<uint32_t>(c.jitter.count()));
  out->set_netns(c.netns);
}

absl::StatusOr<SnatLeaseConfig> SnatLeaseFromProto(const v1::SnatLease& lease,
                                                   const std::string& field) {
  SnatLeaseConfig out;
  if (lease.dynamic()) {
    return FieldError(field + ".dynamic",
                      "dynamic leases come from the SNAT allocator (snat_allocator:), not from "
                      "this call");
  }
  absl::StatusOr<uint32_t> dip = Ipv4Field(lease.dip(), field + ".dip");
  if (!dip.ok()) return dip.status();
  out.dip = *dip;
  absl::StatusOr<uint32_t> vip = Ipv4Field(lease.vip(), field + ".vip");
  if (!vip.ok()) return vip.status();
  out.vip = *vip;
  absl::StatusOr<uint8_t> proto = ProtocolField(lease.protocol(), field + ".protocol");
  if (!proto.ok()) return proto.status();
  out.proto = *proto;
  absl::StatusOr<uint16_t> start = PortField(lease.port_start(), field + ".port_start");
  if (!start.ok()) return start.status();
  out.port_start = *start;
  if (lease.port_count() == 0 || lease.port_count() > 65535) {
    return FieldError(field + ".port_count",
                      StrCat(lease.port_count(), " is out of range (1..65535)"));
  }
  if (lease.port_start() + lease.port_count() > 65536) {
    return FieldError(field + ".port_count",
                      StrCat("ports ", lease.port_start(), "..",
                             lease.port_start() + lease.port_count() - 1, " run past 65535"));
  }
  out.port_count = static_cast<uint16_t>(lease.port_count());
  return out;
}

void EndpointToProto(const EndpointConfig& ep, v1::Endpoint* out) {
  out->set_vip(Ipv4ToString(ep.vip));
  out->set_port(ep.port);
  out->set_protocol(ProtocolToProto(ep.proto));
  out->set_dip(Ipv4ToString(ep.dip));
  out->set_dip_port(ep.dip_port);
  if (ep.health) HealthCheckToProto(*ep.health, out->mutable_health());
}

void SnatLeaseToProto(const SnatLeaseConfig& lease, v1::SnatLease* out) {
  out->set_dip(Ipv4ToString(lease.dip));
  out->set_vip(Ipv4ToString(lease.vip));
  out->set_protocol(ProtocolToProto(lease.proto));
  out->set_port_start(lease.port_start);
  out->set_port_count(lease.port_count);
  out->set_dynamic(lease.dynamic);
}

absl::Status CheckEndpointsAndLeases(const AgentConfig& config,
                                     const std::vector<std::string>& endpoint_fields,
                                     const std::vector<std::string>& lease_fields) {
  std::set<uint32_t> dips;
  for (const VmConfig& vm : config.vms) dips.insert(vm.dip);
  std::map<std::tuple<uint32_t, uint16_t, uint8_t, uint32_t>, size_t> seen;
  for (size_t i = 0; i < config.endpoints.size(); ++i) {
    const EndpointConfig& ep = config.endpoints[i];
    if (dips.count(ep.dip) == 0) {
      return absl::NotFoundError(StrCat(endpoint_fields[i], ".dip: ", Ipv4ToString(ep.dip),
                                        " is not the DIP of any VM on this host"));
    }
    auto [it, inserted] = seen.emplace(std::tuple(ep.vip, ep.port, ep.proto, ep.dip), i);
    if (!inserted) {
      return FieldError(endpoint_fields[i], StrCat(EndpointText(ep), " is the same endpoint as ",
                                                   endpoint_fields[it->second]));
    }
  }
  for (size_t i = 0; i < config.snat_leases.size(); ++i) {
    const SnatLeaseConfig& l = config.snat_leases[i];
    const uint32_t first = l.port_start;
    const uint32_t last = first + l.port_count - 1;
    if (dips.count(l.dip) == 0) {
      return absl::NotFoundError(StrCat(lease_fields[i], ".dip: ", Ipv4ToString(l.dip),
                                        " is not the DIP of any VM on this host"));
    }
    for (size_t j = 0; j < i; ++j) {
      const SnatLeaseConfig& o = config.snat_leases[j];
      const uint32_t o_last = uint32_t{o.port_start} + o.port_count - 1;
      if (o.vip == l.vip && o.proto == l.proto && first <= o_last && o.port_start <= last) {
        return FieldError(
            lease_fields[i] + ".port_start",
            StrCat("ports ", first, "..", last, " overlap ", lease_fields[j], " (ports ",
                   o.port_start, "..", o_last, " of ", Ipv4ToString(o.dip), ")"));
      }
    }
    for (const EndpointConfig& ep : config.endpoints) {
      if (ep.vip == l.vip && ep.proto == l.proto && first <= ep.port && ep.port <= last) {
        return FieldError(lease_fields[i] + ".port_start",
                          StrCat("ports ", first, "..", last, " include the endpoint ",
                                 EndpointKey(ep.vip, ep.port, ep.proto)));
      }
    }
  }
  return absl::OkStatus();
}

AgentService::AgentService(AgentRuntime* runtime, const AgentConfig& boot)
    : runtime_(runtime), running_(boot) {
}

AgentConfig AgentService::running() const {
  std::lock_guard<std::mutex> lock(mu_);
  return running_;
}

absl::Status AgentService::Apply(const AgentConfig& next,
                                 const std::vector<std::string>& endpoint_fields,
                                 const std::vector<std::string>& lease_fields,
                                 uint64_t expected_generation, bool dry_run,
                                 v1::ChangeSummary* changes) {
  runtime_->ReclaimRetired();
  const uint64_t generation = runtime_->generation();
  if (expected_generation != 0 && expected_generation != generation) {
    return absl::FailedPreconditionError(StrCat("expected_generation: the config is at generation ",
                                                generation, ", not ", expected_generation,
                                                " (changed by someone else; read it again)"));
  }
  absl::Status checked = CheckEndpointsAndLeases(next, endpoint_fields, lease_fields);
  if (!checked.ok()) return checked;
  Diff(running_, next, changes);
  changes->set_config_generation(generation);
  const bool no_op =
      changes->added_size() == 0 && changes->removed_size() == 0 && changes->changed_size() == 0;
  if (dry_run || no_op) {
    return absl::OkStatus();
  }
  std::string error;
  if (!runtime_->PublishConfig(next, &error)) return absl::FailedPreconditionError(error);
  running_ = next;
  changes->set_config_generation(runtime_->generation());
  if (on_applied_) on_applied_(running_, runtime_->generation());
  return absl::OkStatus();
}

grpc::Status AgentService::SetEndpoints(grpc::ServerContext*,
                                        const v1::SetEndpointsRequest* request,
                                        v1::ChangeSummary* response) {
  std::vector<EndpointConfig> endpoints;
  std::vector<std::string> fields;
  for (int i = 0; i < request->endpoints_size(); ++i) {
    fields.push_back(StrCat("endpoints[", i, "]"));
    absl::StatusOr<EndpointConfig> ep = EndpointFromProto(request->endpoints(i), fields.back());
    if (!ep.ok()) return ToGrpcStatus(ep.status());
    endpoints.push_back(*ep);
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < endpoints.size(); ++i) {
    for (const VmConfig& vm : running_.vms) {
      if (vm.dip == endpoints[i].dip && detached_.count(vm.name) != 0) {
        return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                            StrCat(fields[i], ".dip: ", Ipv4ToString(vm.dip), " is VM '", vm.name,
                                   "', which is detached (AttachVm it first)"));
      }
    }
  }
  AgentConfig next = running_;
  next.endpoints = std::move(endpoints);
  std::vector<std::string> lease_fields;
  for (const SnatLeaseConfig& l : next.snat_leases)
    lease_fields.push_back("(running) " + LeaseText(l));
  return ToGrpcStatus(Apply(next, fields, lease_fields, request->expected_generation(),
                            request->dry_run(), response));
}

grpc::Status AgentService::SetSnatLeases(grpc::ServerContext*,
                                         const v1::SetSnatLeasesRequest* request,
                                         v1::ChangeSummary* response) {
  std::vector<SnatLeaseConfig> leases;
  std::vector<std::string> fields;
  for (int i = 0; i < request->leases_size(); ++i) {
    fields.push_back(StrCat("leases[", i, "]"));
    absl::StatusOr<SnatLeaseConfig> l = SnatLeaseFromProto(request->leases(i), fields.back());
    if (!l.ok()) return ToGrpcStatus(l.status());
    leases.push_back(*l);
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < leases.size(); ++i) {
    for (const VmConfig& vm : running_.vms) {
      if (vm.dip == leases[i].dip && detached_.count(vm.name) != 0) {
        return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                            StrCat(fields[i], ".dip: ", Ipv4ToString(vm.dip), " is VM '", vm.name,
                                   "', which is detached (AttachVm it first)"));
      }
    }
  }
  AgentConfig next = running_;
  // The leases the agent took from the SNAT allocator stay; the request sets the others.
  for (const SnatLeaseConfig& l : running_.snat_leases) {
    if (!l.dynamic) continue;
    leases.push_back(l);
    fields.push_back("(running) " + LeaseText(l));
  }
  next.snat_leases = std::move(leases);
  std::vector<std::string> endpoint_fields;
  for (const EndpointConfig& ep : next.endpoints) {
    endpoint_fields.push_back("(running) " + EndpointText(ep));
  }
  return ToGrpcStatus(Apply(next, endpoint_fields, fields, request->expected_generation(),
                            request->dry_run(), response));
}

grpc::Status AgentService::AttachVm(grpc::ServerContext*, const v1::AttachVmRequest* request,
                                    v1::AttachVmResponse* response) {
  if (!request->has_vm()) return ToGrpcStatus(FieldError("vm", "required"));
  const v1::VmAttachment& vm = request->vm();
  absl::StatusOr<VmConfig> given = VmFromProto(vm, "vm");
  if (!given.ok()) return ToGrpcStatus(given.status());
  const std::array<uint8_t, 6>* mac = &given->mac;
  const uint32_t* dip = &given->dip;
  std::vector<EndpointConfig> endpoints;
  std::vector<std::string> new_endpoint_fields;
  for (int i = 0; i < vm.endpoints_size(); ++i) {
    const std::string field = StrCat("vm.endpoints[", i, "]");
    v1::Endpoint ep = vm.endpoints(i);
    if (ep.dip().empty()) ep.set_dip(vm.dip());
    absl::StatusOr<EndpointConfig> parsed = EndpointFromProto(ep, field);
    if (!parsed.ok()) return ToGrpcStatus(parsed.status());
    if (parsed->dip != *dip) {
      return ToGrpcStatus(
          FieldError(field + ".dip", StrCat(ep.dip(), " is not this VM's DIP ", vm.dip())));
    }
    endpoints.push_back(*parsed);
    new_endpoint_fields.push_back(field);
  }
  std::vector<SnatLeaseConfig> leases;
  std::vector<std::string> new_lease_fields;
  for (int i = 0; i < vm.snat_leases_size(); ++i) {
    const std::string field = StrCat("vm.snat_leases[", i, "]");
    v1::SnatLease l = vm.snat_leases(i);
    if (l.dip().empty()) l.set_dip(vm.dip());
    absl::StatusOr<SnatLeaseConfig> parsed = SnatLeaseFromProto(l, field);
    if (!parsed.ok()) return ToGrpcStatus(parsed.status());
    if (parsed->dip != *dip) {
      return ToGrpcStatus(
          FieldError(field + ".dip", StrCat(l.dip(), " is not this VM's DIP ", vm.dip())));
    }
    leases.push_back(*parsed);
    new_lease_fields.push_back(field);
  }

  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find_if(running_.vms.begin(), running_.vms.end(),
                         [&](const VmConfig& v) { return v.name == vm.name(); });
  if (it == running_.vms.end()) {
    for (const VmConfig& other : running_.vms) {
      if (other.dip == *dip) {
        return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                            StrCat("vm.dip: ", vm.dip(), " is already VM '", other.name, "'"));
      }
    }
    if (!runtime_->PlugsVmPorts()) {
      return grpc::Status(
          grpc::StatusCode::FAILED_PRECONDITION,
          StrCat("vm.name: no VM '", vm.name(),
                 "' has a DPDK port configured on this agent; attaching a VM with a new port "
                 "at runtime is not supported yet (add it to the agent's config and restart)"));
    }
    // A VM the agent does not have yet: its port joins the data path with it.
    VmConfig added = *given;
    added.attached_at_runtime = true;
    if (absl::Status checked = CheckNewVm(running_, added, "vm"); !checked.ok()) {
      runtime_->CountHotplugRefusal();
      return ToGrpcStatus(checked);
    }
    AgentConfig next = running_;
    next.vms.push_back(added);
    std::vector<std::string> endpoint_fields, lease_fields;
    for (const EndpointConfig& ep : next.endpoints) {
      endpoint_fields.push_back("(running) " + EndpointText(ep));
    }
    for (const SnatLeaseConfig& l : next.snat_leases) {
      lease_fields.push_back("(running) " + LeaseText(l));
    }
    next.endpoints.insert(next.endpoints.end(), endpoints.begin(), endpoints.end());
    next.snat_leases.insert(next.snat_leases.end(), leases.begin(), leases.end());
    endpoint_fields.insert(endpoint_fields.end(), new_endpoint_fields.begin(),
                           new_endpoint_fields.end());
    lease_fields.insert(lease_fields.end(), new_lease_fields.begin(), new_lease_fields.end());
    absl::Status applied = Apply(next, endpoint_fields, lease_fields,
                                 request->expected_generation(), false, response->mutable_changes());
    if (!applied.ok()) {
      if (applied.code() == absl::StatusCode::kNotFound ||
          applied.code() == absl::StatusCode::kInvalidArgument) {
        runtime_->CountHotplugRefusal();  // the runtime counts its own failures
      }
      response->clear_changes();
      return ToGrpcStatus(applied);
    }
    detached_.erase(vm.name());
    return grpc::Status::OK;
  }
  const VmConfig& configured = *it;
  auto mismatch = [&](const char* field, const std::string& given, const std::string& have) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        StrCat(field, ": ", given, " differs from the configured ", have,
                               " of VM '", configured.name, "' (changing it needs a restart)"));
  };
  // The same device spelt differently (the libvirt hook names vdevs after the tap or VM,
  // options in another order) is the same port.
  if (!vm.port().empty() && !SamePort(vm.port(), configured.port)) {
    absl::StatusOr<PortIdentity> given = ParsePortIdentity(vm.port());
    absl::StatusOr<PortIdentity> have = ParsePortIdentity(configured.port);
    return mismatch("vm.port",
                    StrCat(vm.port(), given.ok() ? " (" + given->ToString() + ")" : ""),
                    StrCat(configured.port, have.ok() ? " (" + have->ToString() + ")" : ""));
  }
  if (*mac != configured.mac) return mismatch("vm.mac", vm.mac(), MacToString(configured.mac));
  if (*dip != configured.dip) return mismatch("vm.dip", vm.dip(), Ipv4ToString(configured.dip));
  // PA and gateway may be left out for a VM the agent has (0: not given).
  if (given->pa != 0 && given->pa != configured.pa) {
    return mismatch("vm.pa", vm.pa(), Ipv4ToString(configured.pa));
  }
  if (given->gateway != 0 && given->gateway != configured.gateway) {
    return mismatch("vm.gateway", vm.gateway(), Ipv4ToString(configured.gateway));
  }
  // This VM's endpoints and leases become the ones given; other VMs' stay.
  AgentConfig next = running_;
  std::vector<std::string> endpoint_fields, lease_fields;
  std::erase_if(next.endpoints, [&](const EndpointConfig& ep) { return ep.dip == *dip; });
  std::erase_if(next.snat_leases,
                [&](const SnatLeaseConfig& l) { return l.dip == *dip && !l.dynamic; });
  for (const EndpointConfig& ep : next.endpoints) {
    endpoint_fields.push_back("(running) " + EndpointText(ep));
  }
  for (const SnatLeaseConfig& l : next.snat_leases)
    lease_fields.push_back("(running) " + LeaseText(l));
  next.endpoints.insert(next.endpoints.end(), endpoints.begin(), endpoints.end());
  next.snat_leases.insert(next.snat_leases.end(), leases.begin(), leases.end());
  endpoint_fields.insert(endpoint_fields.end(), new_endpoint_fields.begin(),
                         new_endpoint_fields.end());
  lease_fields.insert(lease_fields.end(), new_lease_fields.begin(), new_lease_fields.end());
  absl::Status applied = Apply(next, endpoint_fields, lease_fields, request->expected_generation(),
                               false, response->mutable_changes());
  if (!applied.ok()) return ToGrpcStatus(applied);
  if (detached_.erase(configured.name) != 0) {
    response->mutable_changes()->add_changed("vm " + configured.name + " attached");
  }
  return grpc::Status::OK;
}

grpc::Status AgentService::DetachVm(grpc::ServerContext*, const v1::DetachVmRequest* request,
                                    v1::DetachVmResponse* response) {
  if (request->name().empty()) return ToGrpcStatus(FieldError("name", "required"));
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find_if(running_.vms.begin(), running_.vms.end(),
                         [&](const VmConfig& v) { return v.name == request->name(); });
  if (it == running_.vms.end()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        StrCat("name: no VM '", request->name(), "' on this agent"));
  }
  const uint32_t dip = it->dip;
  const std::string name = it->name;
  AgentConfig next = running_;
  std::erase_if(next.endpoints, [&](const EndpointConfig& ep) { return ep.dip == dip; });
  std::erase_if(next.snat_leases, [&](const SnatLeaseConfig& l) { return l.dip == dip; });
  // Where ports are plugged at runtime the VM goes with its port; otherwise it stays known
  // (its port open) and only detached.
  const bool unplug = runtime_->PlugsVmPorts();
  if (unplug) {
    std::erase_if(next.vms, [&](const VmConfig& vm) { return vm.name == name; });
  }
  std::vector<std::string> endpoint_fields, lease_fields;
  for (const EndpointConfig& ep : next.endpoints) endpoint_fields.push_back(EndpointText(ep));
  for (const SnatLeaseConfig& l : next.snat_leases) lease_fields.push_back(LeaseText(l));
  absl::Status applied = Apply(next, endpoint_fields, lease_fields, request->expected_generation(),
                               false, response->mutable_changes());
  if (!applied.ok()) return ToGrpcStatus(applied);
  if (unplug) {
    detached_.erase(name);
    return grpc::Status::OK;
  }
  if (detached_.insert(name).second) {
    response->mutable_changes()->add_changed("vm " + name + " detached");
  }
  return grpc::Status::OK;
}

bool AgentService::VmAttached(uint32_t dip) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const VmConfig& vm : running_.vms) {
    if (vm.dip == dip) return detached_.count(vm.name) == 0;
  }
  return false;
}

absl::Status AgentService::AddDynamicLease(const SnatLeaseConfig& lease,
                                           std::chrono::milliseconds timeout) {
  return ChangeDynamicLease(lease, true, timeout);
}

absl::Status AgentService::RemoveDynamicLease(const SnatLeaseConfig& lease,
                                              std::chrono::milliseconds timeout) {
  return ChangeDynamicLease(lease, false, timeout);
}

absl::Status AgentService::ChangeDynamicLease(const SnatLeaseConfig& lease, bool add,
                                              std::chrono::milliseconds timeout) {
  SnatLeaseConfig chunk = lease;
  chunk.dynamic = true;
  uint64_t published = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    AgentConfig next = running_;
    auto same = [&](const SnatLeaseConfig& l) {
      return l.dynamic && l.dip == chunk.dip && l.vip == chunk.vip && l.proto == chunk.proto &&
             l.port_start == chunk.port_start && l.port_count == chunk.port_count;
    };
    if (add) {
      for (const VmConfig& vm : running_.vms) {
        if (vm.dip == chunk.dip && detached_.count(vm.name) != 0) {
          return absl::FailedPreconditionError(StrCat("dip: ", Ipv4ToString(vm.dip), " is VM '",
                                                      vm.name, "', which is detached"));
        }
      }
      if (std::any_of(next.snat_leases.begin(), next.snat_leases.end(), same)) {
        return absl::OkStatus();
      }
      next.snat_leases.push_back(chunk);
    } else if (std::erase_if(next.snat_leases, same) == 0) {
      return absl::NotFoundError(StrCat(LeaseText(chunk), " is not a lease of this agent"));
    }
    std::vector<std::string> lease_fields = RunningLeaseFields(next.snat_leases);
    if (add) lease_fields.back() = "(from the SNAT allocator) " + LeaseText(chunk);
    std::vector<std::string> endpoint_fields;
    for (const EndpointConfig& ep : next.endpoints) {
      endpoint_fields.push_back("(running) " + EndpointText(ep));
    }
    v1::ChangeSummary changes;
    absl::Status applied = Apply(next, endpoint_fields, lease_fields, 0, false, &changes);
    if (!applied.ok()) return applied;
    published = runtime_->generation();
  }
  // Ports go live (or stop being handed out) when the lcore adopts the snapshot.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (runtime_->adopted_generation() < published) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return absl::DeadlineExceededError(
          StrCat("the data path did not adopt config generation ", published, " within ",
                 timeout.count(), " ms (not polling?)"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // the lcore adopts between bursts
  }
  runtime_->ReclaimRetired();
  return absl::OkStatus();
}

void AgentService::FillVms(const AgentConfig& config, const AgentRuntimeStatus& status,
                           RepeatedPtrField<v1::VmStatus>* out) const {
  for (size_t v = 0; v < config.vms.size(); ++v) {
    const VmConfig& vm = config.vms[v];
    v1::VmStatus* s = out->Add();
    v1::VmAttachment* a = s->mutable_vm();
    VmToProto(vm, a);
    for (const EndpointConfig& ep : config.endpoints) {
      if (ep.dip == vm.dip) EndpointToProto(ep, a->add_endpoints());
    }
    for (const SnatLeaseConfig& l : config.snat_leases) {
      if (l.dip == vm.dip) SnatLeaseToProto(l, a->add_snat_leases());
    }
    s->set_attached(detached_.count(vm.name) == 0);
    s->set_hotplugged(vm.attached_at_runtime);
    const VmRuntimeStatus* found = nullptr;
    for (const VmRuntimeStatus& r : status.vms) {
      if (r.name == vm.name) found = &r;
    }
    if (found == nullptr && v < status.vms.size() && status.vms[v].name.empty()) {
      found = &status.vms[v];
    }
    if (found != nullptr) {
      const VmRuntimeStatus& r = *found;
      if (!r.name.empty()) s->set_hotplugged(r.hotplugged);
      if (r.port_id >= 0) s->set_dpdk_port(static_cast<uint32_t>(r.port_id));
      s->set_rx_packets(r.rx_packets);
      s->set_tx_packets(r.tx_packets);
      s->set_snat_tcp_ports_in_use(r.snat_tcp_in_use);
      s->set_snat_tcp_ports_leased(r.snat_tcp_leased);
      s->set_snat_udp_ports_in_use(r.snat_udp_in_use);
      s->set_snat_udp_ports_leased(r.snat_udp_leased);
      s->set_snat_ports_exhausted(r.snat_ports_exhausted);
    }
  }
}

grpc::Status AgentService::GetVms(grpc::ServerContext*, const v1::GetVmsRequest*,
                                  v1::GetVmsResponse* response) {
  const AgentRuntimeStatus status = runtime_->Status();
  std::lock_guard<std::mutex> lock(mu_);
  FillVms(running_, status, response->mutable_vms());
  response->set_config_generation(runtime_->generation());
  response->set_host_pa(Ipv4ToString(running_.address.addr));
  response->set_name(running_.name);
  return grpc::Status::OK;
}

grpc::Status AgentService::GetEndpoints(grpc::ServerContext*, const v1::GetEndpointsRequest*,
                                        v1::GetEndpointsResponse* response) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const EndpointConfig& ep : running_.endpoints)
    EndpointToProto(ep, response->add_endpoints());
  response->set_config_generation(runtime_->generation());
  return grpc::Status::OK;
}

grpc::Status AgentService::GetLeases(grpc::ServerContext*, const v1::GetLeasesRequest*,
                                     v1::GetLeasesResponse* response) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const SnatLeaseConfig& l : running_.snat_leases) SnatLeaseToProto(l, response->add_leases());
  response->set_config_generation(runtime_->generation());
  return grpc::Status::OK;
}

grpc::Status AgentService::GetFlows(grpc::ServerContext*, const v1::GetFlowsRequest* request,
                                    v1::GetFlowsResponse* response) {
  size_t limit = request->limit() == 0 ? kDefaultFlowLimit : request->limit();
  if (limit > kMaxFlowLimit) {
    return ToGrpcStatus(FieldError("limit", StrCat(limit, " is above ", kMaxFlowLimit)));
  }
  uint32_t dip = 0;
  if (!request->dip().empty()) {
    absl::StatusOr<uint32_t> parsed = Ipv4Field(request->dip(), "dip");
    if (!parsed.ok()) return ToGrpcStatus(parsed.status());
    dip = *parsed;
  }
  std::vector<NatFlow> flows;
  uint64_t total = 0;
  if (!runtime_->CopyFlows(limit, dip, &flows, &total)) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the data path did not answer (not polling?)");
  }
  const uint64_t now = MonotonicNs();
  for (const NatFlow& f : flows) {
    v1::Flow* out = response->add_flows();
    out->set_kind(f.kind == static_cast<uint8_t>(NatFlowKind::kSnat) ? v1::Flow::KIND_SNAT
                                                                     : v1::Flow::KIND_INBOUND);
    out->set_protocol(ProtocolToProto(f.proto));
    out->set_dip(Ipv4ToString(f.dip));
    out->set_dip_port(f.dip_port);
    out->set_vip(Ipv4ToString(f.vip));
    out->set_vip_port(f.vip_port);
    out->set_remote(Ipv4ToString(f.remote));
    out->set_remote_port(f.remote_port);
    out->set_state(FlowStateName(static_cast<NatFlowState>(f.state)));
    if (f.fastpath_pa != 0) out->set_fastpath_pa(Ipv4ToString(f.fastpath_pa));
    out->set_idle_ms(now > f.last_seen_ns ? (now - f.last_seen_ns) / 1'000'000 : 0);
    NicFlowReading nic;
    if (runtime_->NicFlow(f, &nic)) {
      out->set_nic(nic.rules_nic > 0 ? "nic" : nic.rules_partial > 0 ? "partial" : "");
      out->set_nic_packets(nic.packets);
      out->set_nic_bytes(nic.bytes);
    }
  }
  response->set_total(total);
  return grpc::Status::OK;
}

grpc::Status AgentService::GetStats(grpc::ServerContext*, const v1::GetStatsRequest*,
                                    v1::AgentStats* response) {
  const AgentRuntimeStatus status = runtime_->Status();
  std::lock_guard<std::mutex> lock(mu_);
  response->set_name(running_.name);
  response->set_ready(status.ready);
  response->set_config_generation(runtime_->generation());
  for (const auto& [name, value] : status.counters) {
    v1::Counter* c = response->add_counters();
    c->set_name(name);
    c->set_value(value);
  }
  for (const auto& [name, value] : status.drops) {
    v1::Counter* c = response->add_drops();
    c->set_name(name);
    c->set_value(value);
  }
  FillVms(running_, status, response->mutable_vms());
  for (const DipCheckStatus& c : status.health_checks) {
    v1::HealthCheckStatus* out = response->add_health_checks();
    out->set_dip(Ipv4ToString(c.dip));
    out->set_check(c.check);
    out->set_state(c.state);
    out->set_probes(c.probes);
    out->set_last_result(c.last_result);
    out->set_reported(c.reported);
  }
  for (const MuxReportStatus& r : status.health_reports) {
    v1::HealthReportStatus* out = response->add_health_reports();
    out->set_mux(r.mux);
    out->set_target(r.target);
    out->set_in_sync(r.in_sync);
    out->set_pushes_ok(r.pushes_ok);
    out->set_pushes_failed(r.pushes_failed);
    out->set_resyncs(r.resyncs);
    out->set_last_error(r.last_error);
    out->set_last_ok_ms_ago(r.last_ok_ms_ago);
  }
  return grpc::Status::OK;
}

void AgentService::FillHealth(v1::HealthResponse* out) const {
  const AgentRuntimeStatus status = runtime_->Status();
  out->set_role("agent");
  {
    std::lock_guard<std::mutex> lock(mu_);
    out->set_name(running_.name);
  }
  out->set_version(SLUICE_VERSION);
  out->set_config_generation(runtime_->generation());
  if (status.stopping) {
    out->set_state(v1::HealthResponse::STATE_NOT_SERVING);
    out->add_problems("stopping");
  } else if (!status.ready) {
    out->set_state(v1::HealthResponse::STATE_STARTING);
    out->add_problems("gateway not resolved yet (rules not installed)");
  } else {
    out->set_state(v1::HealthResponse::STATE_SERVING);
  }
}

grpc::Status AgentService::Health(grpc::ServerContext*, const v1::HealthRequest*,
                                  v1::HealthResponse* response) {
  FillHealth(response);
  return grpc::Status::OK;
}

grpc::Status AgentService::WatchHealth(grpc::ServerContext* context, const v1::HealthRequest*,
                                       grpc::ServerWriter<v1::HealthResponse>* writer) {
  return WriteOnChange(context, shutdown_, writer, [this](v1::HealthResponse* health) {
    runtime_->ReclaimRetired();
    FillHealth(health);
  });
}

}  // namespace sluice::agent
