#include "mux_lite/grpc_service.h"

#include <algorithm>
#include <chrono>
#include <set>
#include <thread>
#include <tuple>

#include "common/grpc_util.h"
#include "common/net_text.h"
#include "common/strings.h"

namespace sluice::mux {
namespace {

using google::protobuf::RepeatedPtrField;

absl::StatusOr<Scheduler> SchedulerFromProto(int value, const std::string& field) {
  switch (value) {
    case v1::SCHEDULER_UNSPECIFIED:
    case v1::SCHEDULER_MAGLEV:
      return Scheduler::kMaglev;
    case v1::SCHEDULER_WEIGHTED_ROUND_ROBIN:
      return Scheduler::kWeightedRoundRobin;
    case v1::SCHEDULER_SOURCE_HASH:
      return Scheduler::kSourceHash;
    default:
      return FieldError(field, StrCat(value, " is not a scheduler"));
  }
}

v1::Scheduler SchedulerToProto(Scheduler s) {
  switch (s) {
    case Scheduler::kMaglev:
      return v1::SCHEDULER_MAGLEV;
    case Scheduler::kWeightedRoundRobin:
      return v1::SCHEDULER_WEIGHTED_ROUND_ROBIN;
    case Scheduler::kSourceHash:
      return v1::SCHEDULER_SOURCE_HASH;
  }
  return v1::SCHEDULER_UNSPECIFIED;
}

std::string VipKeyText(const VipConfig& v) { return EndpointKey(v.vip, v.port, v.proto); }

absl::StatusOr<flow::Tunnel> EncapFromProto(int encap, const std::string& field) {
  switch (encap) {
    case v1::ENCAP_UNSPECIFIED:
    case v1::ENCAP_IPIP:
      return flow::Tunnel::kIpip;
    case v1::ENCAP_GUE:
      return flow::Tunnel::kGue;
    case v1::ENCAP_GRE:
      return flow::Tunnel::kGre;
    default:
      return FieldError(field, StrCat(encap, " is not an encapsulation (ENCAP_IPIP, ENCAP_GUE or "
                                      "ENCAP_GRE)"));
  }
}

v1::Encap EncapToProto(flow::Tunnel encap) {
  switch (encap) {
    case flow::Tunnel::kGue:
      return v1::ENCAP_GUE;
    case flow::Tunnel::kGre:
      return v1::ENCAP_GRE;
    default:
      return v1::ENCAP_IPIP;
  }
}

std::string RangeKeyText(const SnatRangeConfig& r) {
  return StrCat(EndpointKey(r.vip, r.port_start, r.proto), "+", r.port_count, "->",
                Ipv4ToString(r.host), r.encap == flow::Tunnel::kGre ? " gre" : "",
                r.encap == flow::Tunnel::kGue ? " gue" : "", r.dynamic ? " (dynamic)" : "");
}

bool SameBackends(const VipConfig& a, const VipConfig& b) {
  if (a.scheduler != b.scheduler || a.backends.size() != b.backends.size()) return false;
  for (size_t i = 0; i < a.backends.size(); ++i) {
    const BackendConfig& x = a.backends[i];
    const BackendConfig& y = b.backends[i];
    if (x.dip != y.dip || x.host != y.host || x.weight != y.weight || x.encap != y.encap) {
      return false;
    }
  }
  return true;
}

// What changed between two desired configs, as keys.
void Diff(const MuxConfig& before, const MuxConfig& after, v1::ChangeSummary* out) {
  std::map<std::string, const VipConfig*> old_vips;
  for (const VipConfig& v : before.vips) old_vips[VipKeyText(v)] = &v;
  uint32_t unchanged = 0;
  for (const VipConfig& v : after.vips) {
    auto it = old_vips.find(VipKeyText(v));
    if (it == old_vips.end()) {
      out->add_added(VipKeyText(v));
    } else {
      if (SameBackends(*it->second, v)) {
        ++unchanged;
      } else {
        out->add_changed(VipKeyText(v));
      }
      old_vips.erase(it);
    }
  }
  for (const auto& [key, v] : old_vips) out->add_removed(key);
  std::set<std::string> old_ranges, new_ranges;
  for (const SnatRangeConfig& r : before.snat_ranges) old_ranges.insert(RangeKeyText(r));
  for (const SnatRangeConfig& r : after.snat_ranges) new_ranges.insert(RangeKeyText(r));
  for (const std::string& r : new_ranges) {
    if (old_ranges.count(r) == 0) {
      out->add_added("snat " + r);
    } else {
      ++unchanged;
    }
  }
  for (const std::string& r : old_ranges) {
    if (new_ranges.count(r) == 0) out->add_removed("snat " + r);
  }
  out->set_unchanged(unchanged);
}

}  // namespace

absl::StatusOr<VipConfig> VipFromProto(const v1::Vip& vip, const std::string& field) {
  VipConfig out;
  absl::StatusOr<uint32_t> addr = Ipv4Field(vip.vip(), field + ".vip");
  if (!addr.ok()) return addr.status();
  out.vip = *addr;
  absl::StatusOr<uint16_t> port = PortField(vip.port(), field + ".port");
  if (!port.ok()) return port.status();
  out.port = *port;
  absl::StatusOr<uint8_t> proto = ProtocolField(vip.protocol(), field + ".protocol");
  if (!proto.ok()) return proto.status();
  out.proto = *proto;
  absl::StatusOr<Scheduler> scheduler = SchedulerFromProto(vip.scheduler(), field + ".scheduler");
  if (!scheduler.ok()) return scheduler.status();
  out.scheduler = *scheduler;
  if (vip.backends_size() > 65535) {
    return FieldError(field + ".backends",
                      StrCat(vip.backends_size(), " backends (at most 65535)"));
  }
  std::map<uint32_t, int> seen;
  for (int i = 0; i < vip.backends_size(); ++i) {
    const v1::Backend& b = vip.backends(i);
    const std::string bf = StrCat(field, ".backends[", i, "]");
    BackendConfig backend;
    absl::StatusOr<uint32_t> dip = Ipv4Field(b.dip(), bf + ".dip");
    if (!dip.ok()) return dip.status();
    backend.dip = *dip;
    absl::StatusOr<uint32_t> host = Ipv4Field(b.host(), bf + ".host");
    if (!host.ok()) return host.status();
    backend.host = *host;
    backend.weight = b.has_weight() ? b.weight() : 1;
    if (backend.weight > 65535) {
      return FieldError(bf + ".weight", StrCat(backend.weight, " is out of range (0..65535)"));
    }
    absl::StatusOr<flow::Tunnel> encap = EncapFromProto(b.encap(), bf + ".encap");
    if (!encap.ok()) return encap.status();
    backend.encap = *encap;
    auto [it, inserted] = seen.emplace(backend.dip, i);
    if (!inserted) {
      return FieldError(bf + ".dip",
                        StrCat(b.dip(), " is already backends[", it->second, "] of this VIP"));
    }
    out.backends.push_back(backend);
  }
  return out;
}

absl::StatusOr<std::vector<VipConfig>> VipsFromProto(const RepeatedPtrField<v1::Vip>& vips) {
  std::vector<VipConfig> out;
  std::map<uint64_t, int> seen;
  for (int i = 0; i < vips.size(); ++i) {
    const std::string field = StrCat("vips[", i, "]");
    absl::StatusOr<VipConfig> vip = VipFromProto(vips[i], field);
    if (!vip.ok()) return vip.status();
    auto [it, inserted] = seen.emplace(VipKey(vip->vip, vip->port, vip->proto), i);
    if (!inserted) {
      return FieldError(field, StrCat(VipKeyText(*vip), " is already vips[", it->second, "]"));
    }
    out.push_back(std::move(*vip));
  }
  return out;
}

absl::StatusOr<std::vector<SnatRangeConfig>> SnatRangesFromProto(
    const RepeatedPtrField<v1::SnatRange>& ranges) {
  std::vector<SnatRangeConfig> out;
  for (int i = 0; i < ranges.size(); ++i) {
    const v1::SnatRange& r = ranges[i];
    const std::string field = StrCat("ranges[", i, "]");
    SnatRangeConfig range;
    absl::StatusOr<uint32_t> vip = Ipv4Field(r.vip(), field + ".vip");
    if (!vip.ok()) return vip.status();
    range.vip = *vip;
    absl::StatusOr<uint8_t> proto = ProtocolField(r.protocol(), field + ".protocol", true);
    if (!proto.ok()) return proto.status();
    range.proto = *proto;
    absl::StatusOr<uint16_t> start = PortField(r.port_start(), field + ".port_start");
    if (!start.ok()) return start.status();
    range.port_start = *start;
    if (r.port_count() == 0 || r.port_count() > 65535) {
      return FieldError(field + ".port_count",
                        StrCat(r.port_count(), " is out of range (1..65535)"));
    }
    if (r.port_start() + r.port_count() > 65536) {
      return FieldError(field + ".port_count",
                        StrCat("ports ", r.port_start(), "..", r.port_start() + r.port_count() - 1,
                               " run past 65535"));
    }
    range.port_count = static_cast<uint16_t>(r.port_count());
    absl::StatusOr<uint32_t> host = Ipv4Field(r.host(), field + ".host");
    if (!host.ok()) return host.status();
    range.host = *host;
    range.dynamic = r.dynamic();
    absl::StatusOr<flow::Tunnel> encap = EncapFromProto(r.encap(), field + ".encap");
    if (!encap.ok()) return encap.status();
    range.encap = *encap;
    for (size_t j = 0; j < out.size(); ++j) {
      const SnatRangeConfig& other = out[j];
      const bool same_proto = other.proto == 0 || range.proto == 0 || other.proto == range.proto;
      if (other.vip == range.vip && same_proto &&
          range.port_start < other.port_start + other.port_count &&
          other.port_start < range.port_start + range.port_count) {
        return FieldError(
            field + ".port_start",
            StrCat("ports ", range.port_start, "..", range.port_start + range.port_count - 1,
                   " overlap ranges[", j, "] (ports ", other.port_start, "..",
                   other.port_start + other.port_count - 1, " of host ", Ipv4ToString(other.host),
                   ")"));
      }
    }
    out.push_back(range);
  }
  return out;
}

absl::Status CheckAgainstMux(const MuxConfig& candidate, const MuxConfig& running) {
  const uint32_t self = running.address.addr;
  for (size_t i = 0; i < candidate.vips.size(); ++i) {
    const VipConfig& vip = candidate.vips[i];
    if (vip.vip == self) {
      return FieldError(StrCat("vips[", i, "].vip"),
                        StrCat(Ipv4ToString(self), " is this mux's own PA"));
    }
    for (size_t b = 0; b < vip.backends.size(); ++b) {
      if (vip.backends[b].host == self) {
        return FieldError(StrCat("vips[", i, "].backends[", b, "].host"),
                          StrCat(Ipv4ToString(self), " is this mux, not a host"));
      }
    }
    for (size_t r = 0; r < candidate.snat_ranges.size(); ++r) {
      const SnatRangeConfig& range = candidate.snat_ranges[r];
      if (range.vip == vip.vip && (range.proto == 0 || range.proto == vip.proto) &&
          range.Contains(vip.vip, vip.proto, vip.port)) {
        return FieldError(StrCat("ranges[", r, "]"),
                          StrCat("includes the VIP port ", VipKeyText(vip)));
      }
    }
  }
  for (size_t r = 0; r < candidate.snat_ranges.size(); ++r) {
    if (candidate.snat_ranges[r].host == self) {
      return FieldError(StrCat("ranges[", r, "].host"),
                        StrCat(Ipv4ToString(self), " is this mux, not a host"));
    }
  }
  return absl::OkStatus();
}

void VipToProto(const VipConfig& vip, v1::Vip* out) {
  out->set_vip(Ipv4ToString(vip.vip));
  out->set_port(vip.port);
  out->set_protocol(ProtocolToProto(vip.proto));
  out->set_scheduler(SchedulerToProto(vip.scheduler));
  for (const BackendConfig& b : vip.backends) {
    v1::Backend* backend = out->add_backends();
    backend->set_dip(Ipv4ToString(b.dip));
    backend->set_host(Ipv4ToString(b.host));
    backend->set_weight(b.weight);
    backend->set_encap(EncapToProto(b.encap));
  }
}

void SnatRangeToProto(const SnatRangeConfig& range, v1::SnatRange* out) {
  out->set_vip(Ipv4ToString(range.vip));
  out->set_protocol(ProtocolToProto(range.proto));
  out->set_port_start(range.port_start);
  out->set_port_count(range.port_count);
  out->set_host(Ipv4ToString(range.host));
  out->set_dynamic(range.dynamic);
  out->set_encap(EncapToProto(range.encap));
}

MuxService::MuxService(MuxRuntime* runtime, const MuxConfig& boot,
                       std::function<void(const MuxConfig&)> on_applied)
    : runtime_(runtime), on_applied_(std::move(on_applied)), desired_(boot) {}

MuxConfig MuxService::desired() const {
  std::lock_guard<std::mutex> lock(mu_);
  return desired_;
}

void MuxService::Shutdown() { shutdown_.store(true); }

MuxConfig MuxService::WithHealth(const MuxConfig& desired) const {
  MuxConfig effective = desired;
  if (unhealthy_.empty()) return effective;
  for (VipConfig& vip : effective.vips) {
    for (BackendConfig& b : vip.backends) {
      if (unhealthy_.count(b.dip) != 0) b.weight = 0;
    }
  }
  return effective;
}

absl::Status MuxService::Apply(const MuxConfig& next, uint64_t expected_generation, bool dry_run,
                               v1::ChangeSummary* changes) {
  const uint64_t generation = runtime_->generation();
  if (expected_generation != 0 && expected_generation != generation) {
    return absl::FailedPreconditionError(StrCat("expected_generation: the config is at generation ",
                                                generation, ", not ", expected_generation,
                                                " (changed by someone else; read it again)"));
  }
  absl::Status checked = CheckAgainstMux(next, desired_);
  if (!checked.ok()) return checked;
  Diff(desired_, next, changes);
  const MuxConfig effective = WithHealth(next);
  std::string error;
  if (dry_run) {
    if (VipTable::Build(effective, &error) == nullptr) return absl::InvalidArgumentError(error);
    changes->set_config_generation(generation);
    return absl::OkStatus();
  }
  const bool no_op =
      changes->added_size() == 0 && changes->removed_size() == 0 && changes->changed_size() == 0;
  if (!no_op) {
    if (!runtime_->Reload(effective, &error)) return absl::InvalidArgumentError(error);
    desired_ = next;
    if (on_applied_) on_applied_(desired_);
  }
  changes->set_config_generation(runtime_->generation());
  return absl::OkStatus();
}

absl::Status MuxService::ReplaceConfig(const MuxConfig& file_config) {
  std::lock_guard<std::mutex> lock(mu_);
  // The SNAT allocator's chunks are not the file's to drop: replies to their ports would be
  // lost until sluice-snatd's next resync. A chunk the file now configures itself (same VIP,
  // protocol and overlapping ports) gives way to the file.
  MuxConfig config = file_config;
  // What the file has no key for is the controller's (pushed over gRPC): kept as it is.
  if (!file_config.file_sets_vips) config.vips = desired_.vips;
  if (!file_config.file_sets_snat_ranges) config.snat_ranges = desired_.snat_ranges;
  for (const SnatRangeConfig& r : desired_.snat_ranges) {
    if (!r.dynamic || !file_config.file_sets_snat_ranges) continue;
    const bool overlaps = std::any_of(
        file_config.snat_ranges.begin(), file_config.snat_ranges.end(),
        [&](const SnatRangeConfig& f) {
          return f.vip == r.vip && (f.proto == 0 || r.proto == 0 || f.proto == r.proto) &&
                 f.port_start < r.port_start + r.port_count &&
                 r.port_start < f.port_start + f.port_count;
        });
    if (!overlaps) config.snat_ranges.push_back(r);
  }
  std::string error;
  if (!runtime_->Reload(WithHealth(config), &error)) return absl::InvalidArgumentError(error);
  desired_ = config;
  if (on_applied_) on_applied_(desired_);
  return absl::OkStatus();
}

grpc::Status MuxService::SetVips(grpc::ServerContext*, const v1::SetVipsRequest* request,
                                 v1::ChangeSummary* response) {
  absl::StatusOr<std::vector<VipConfig>> vips = VipsFromProto(request->vips());
  if (!vips.ok()) return ToGrpcStatus(vips.status());
  std::lock_guard<std::mutex> lock(mu_);
  MuxConfig next = desired_;
  next.vips = std::move(*vips);
  return ToGrpcStatus(Apply(next, request->expected_generation(), request->dry_run(), response));
}

grpc::Status MuxService::UpsertVip(grpc::ServerContext*, const v1::UpsertVipRequest* request,
                                   v1::ChangeSummary* response) {
  if (!request->has_vip()) return ToGrpcStatus(FieldError("vip", "required"));
  absl::StatusOr<VipConfig> vip = VipFromProto(request->vip(), "vip");
  if (!vip.ok()) return ToGrpcStatus(vip.status());
  std::lock_guard<std::mutex> lock(mu_);
  MuxConfig next = desired_;
  auto it = std::find_if(next.vips.begin(), next.vips.end(), [&](const VipConfig& v) {
    return v.vip == vip->vip && v.port == vip->port && v.proto == vip->proto;
  });
  if (it != next.vips.end()) {
    *it = std::move(*vip);
  } else {
    next.vips.push_back(std::move(*vip));
  }
  return ToGrpcStatus(Apply(next, request->expected_generation(), false, response));
}

grpc::Status MuxService::DeleteVip(grpc::ServerContext*, const v1::DeleteVipRequest* request,
                                   v1::ChangeSummary* response) {
  absl::StatusOr<uint32_t> addr = Ipv4Field(request->vip(), "vip");
  if (!addr.ok()) return ToGrpcStatus(addr.status());
  absl::StatusOr<uint16_t> port = PortField(request->port(), "port");
  if (!port.ok()) return ToGrpcStatus(port.status());
  absl::StatusOr<uint8_t> proto = ProtocolField(request->protocol(), "protocol");
  if (!proto.ok()) return ToGrpcStatus(proto.status());
  std::lock_guard<std::mutex> lock(mu_);
  MuxConfig next = desired_;
  const size_t before = next.vips.size();
  std::erase_if(next.vips, [&](const VipConfig& v) {
    return v.vip == *addr && v.port == *port && v.proto == *proto;
  });
  if (next.vips.size() == before) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        StrCat("vip: ", EndpointKey(*addr, *port, *proto), " is not configured"));
  }
  return ToGrpcStatus(Apply(next, request->expected_generation(), false, response));
}

grpc::Status MuxService::SetSnatRanges(grpc::ServerContext*,
                                       const v1::SetSnatRangesRequest* request,
                                       v1::ChangeSummary* response) {
  absl::StatusOr<std::vector<SnatRangeConfig>> ranges = SnatRangesFromProto(request->ranges());
  if (!ranges.ok()) return ToGrpcStatus(ranges.status());
  std::lock_guard<std::mutex> lock(mu_);
  MuxConfig next = desired_;
  next.snat_ranges = std::move(*ranges);
  return ToGrpcStatus(Apply(next, request->expected_generation(), request->dry_run(), response));
}

grpc::Status MuxService::SetBackendHealth(grpc::ServerContext*,
                                          const v1::SetBackendHealthRequest* request,
                                          v1::ChangeSummary* response) {
  std::vector<std::pair<uint32_t, const v1::BackendHealth*>> reports;
  std::map<uint32_t, int> seen;
  for (int i = 0; i < request->backends_size(); ++i) {
    const std::string field = StrCat("backends[", i, "].dip");
    absl::StatusOr<uint32_t> dip = Ipv4Field(request->backends(i).dip(), field);
    if (!dip.ok()) return ToGrpcStatus(dip.status());
    if (auto [it, inserted] = seen.emplace(*dip, i); !inserted) {
      return ToGrpcStatus(FieldError(field, StrCat(request->backends(i).dip(),
                                                   " is also backends[", it->second, "]")));
    }
    reports.emplace_back(*dip, &request->backends(i));
  }
  std::lock_guard<std::mutex> lock(mu_);
  std::set<uint32_t> known;
  for (const VipConfig& vip : desired_.vips) {
    for (const BackendConfig& b : vip.backends) known.insert(b.dip);
  }
  // A DIP that is not a backend here (yet) is remembered too: the agent reports all of its
  // DIPs, and a backend added later starts out with its agent's verdict.
  std::map<uint32_t, std::string> next = unhealthy_;
  bool reload = false;
  for (const auto& [dip, report] : reports) {
    std::string key = Ipv4ToString(dip);
    if (known.count(dip) == 0) key += " (not a backend here)";
    if (report->healthy()) {
      if (next.erase(dip) == 0) continue;
      response->add_changed(key + " healthy");
    } else {
      auto it = next.find(dip);
      if (it != next.end()) {
        it->second = report->reason();  // same verdict, newer reason: nothing to rebuild
        continue;
      }
      if (next.size() >= kMaxUnhealthyDips) {
        return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                            StrCat("backends: more than ", kMaxUnhealthyDips,
                                   " unhealthy DIPs; report the healthy ones as healthy"));
      }
      next[dip] = report->reason();
      response->add_changed(key + " unhealthy");
    }
    reload = reload || known.count(dip) != 0;
  }
  if (!reload) {
    std::swap(unhealthy_, next);
    if (response->changed_size() > 0) LogHealthChanges(*request, *response);
    response->set_config_generation(runtime_->generation());
    return grpc::Status::OK;
  }
  std::swap(unhealthy_, next);
  std::string error;
  if (!runtime_->Reload(WithHealth(desired_), &error)) {
    std::swap(unhealthy_, next);
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, error);
  }
  LogHealthChanges(*request, *response);
  response->set_config_generation(runtime_->generation());
  return grpc::Status::OK;
}

void MuxService::LogHealthChanges(const v1::SetBackendHealthRequest& request,
                                  const v1::ChangeSummary& changes) const {
  std::string list;
  for (const std::string& c : changes.changed()) list += (list.empty() ? "" : ", ") + c;
  fprintf(stderr, "sluice-mux: backend health from %s: %s\n",
          request.reporter().empty() ? "(unnamed)" : request.reporter().c_str(), list.c_str());
}

std::map<uint32_t, std::string> MuxService::unhealthy() const {
  std::lock_guard<std::mutex> lock(mu_);
  return unhealthy_;
}

grpc::Status MuxService::GetVips(grpc::ServerContext*, const v1::GetVipsRequest*,
                                 v1::GetVipsResponse* response) {
  MuxConfig desired;
  std::map<uint32_t, std::string> unhealthy;
  {
    std::lock_guard<std::mutex> lock(mu_);
    desired = desired_;
    unhealthy = unhealthy_;
  }
  // Counters come from the table(s) in use (one per worker, summed), matched by VIP key and
  // DIP.
  std::map<std::pair<uint64_t, uint32_t>, std::pair<uint64_t, uint64_t>> backend_counts;
  std::map<uint64_t, uint64_t> vip_packets;
  runtime_->ReadTable([&](const VipTable& table) {
    response->set_config_generation(table.generation);
    for (const auto& vip : table.vips) {
      const uint64_t key = VipKey(vip->config.vip, vip->config.port, vip->config.proto);
      vip_packets[key] += vip->packets.Get();
      for (size_t b = 0; b < vip->config.backends.size(); ++b) {
        auto& counts = backend_counts[{key, vip->config.backends[b].dip}];
        counts.first += vip->backend_packets[b].Get();
        counts.second += vip->backend_flows[b].Get();
      }
    }
  });
  for (const VipConfig& vip : desired.vips) {
    v1::VipStatus* out = response->add_vips();
    const uint64_t key = VipKey(vip.vip, vip.port, vip.proto);
    out->set_vip(Ipv4ToString(vip.vip));
    out->set_port(vip.port);
    out->set_protocol(ProtocolToProto(vip.proto));
    out->set_scheduler(SchedulerToProto(vip.scheduler));
    out->set_packets(vip_packets[key]);
    v1::Vip as_proto;
    VipToProto(vip, &as_proto);
    for (size_t b = 0; b < vip.backends.size(); ++b) {
      v1::BackendStatus* status = out->add_backends();
      *status->mutable_backend() = as_proto.backends(static_cast<int>(b));
      status->set_healthy(unhealthy.count(vip.backends[b].dip) == 0);
      auto counts = backend_counts[{key, vip.backends[b].dip}];
      status->set_packets(counts.first);
      status->set_flows(counts.second);
    }
  }
  return grpc::Status::OK;
}

grpc::Status MuxService::GetSnatRanges(grpc::ServerContext*, const v1::GetSnatRangesRequest*,
                                       v1::GetSnatRangesResponse* response) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const SnatRangeConfig& r : desired_.snat_ranges) SnatRangeToProto(r, response->add_ranges());
  response->set_config_generation(runtime_->generation());
  return grpc::Status::OK;
}

grpc::Status MuxService::GetFlows(grpc::ServerContext*, const v1::GetMuxFlowsRequest* request,
                                  v1::GetMuxFlowsResponse* response) {
  constexpr size_t kDefaultLimit = 1000, kMaxLimit = 100000;
  const size_t limit = request->limit() == 0 ? kDefaultLimit : request->limit();
  if (limit > kMaxLimit) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        StrCat("limit: ", limit, " is above ", kMaxLimit));
  }
  size_t total = 0;
  for (const OffloadedFlowStatus& f : runtime_->OffloadedFlows(limit, &total)) {
    v1::MuxFlow* out = response->add_flows();
    out->set_protocol(ProtocolToProto(f.key.proto));
    out->set_client(Ipv4ToString(f.key.src));
    out->set_client_port(f.key.src_port);
    out->set_vip(Ipv4ToString(f.key.dst));
    out->set_vip_port(f.key.dst_port);
    out->set_host_pa(Ipv4ToString(f.host_pa));
    out->set_nic(f.partial ? "partial" : "nic");
    out->set_nic_packets(f.packets);
    out->set_nic_bytes(f.bytes);
  }
  response->set_total(total);
  return grpc::Status::OK;
}

grpc::Status MuxService::GetStats(grpc::ServerContext*, const v1::GetStatsRequest*,
                                  v1::MuxStats* response) {
  MuxRuntimeStatus status = runtime_->Status();
  response->set_name(desired().name);
  response->set_ready(status.ready);
  response->set_draining(status.draining);
  response->set_config_generation(runtime_->generation());
  response->set_bgp_session(status.bgp_session);
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
  return grpc::Status::OK;
}

grpc::Status MuxService::Drain(grpc::ServerContext*, const v1::DrainRequest*,
                               v1::DrainResponse* response) {
  runtime_->SetDraining(true);
  response->set_draining(true);
  return grpc::Status::OK;
}

grpc::Status MuxService::Resume(grpc::ServerContext*, const v1::ResumeRequest*,
                                v1::DrainResponse* response) {
  runtime_->SetDraining(false);
  response->set_draining(false);
  return grpc::Status::OK;
}

void MuxService::FillHealth(v1::HealthResponse* out) const {
  const MuxRuntimeStatus status = runtime_->Status();
  out->set_role("mux");
  out->set_name(desired().name);
  out->set_version(SLUICE_VERSION);
  out->set_config_generation(runtime_->generation());
  if (status.stopping) {
    out->set_state(v1::HealthResponse::STATE_NOT_SERVING);
    out->add_problems("stopping");
  } else if (!status.polling) {
    out->set_state(v1::HealthResponse::STATE_NOT_SERVING);
    out->add_problems("data path stopped polling (VIPs withdrawn)");
  } else if (!status.ready) {
    out->set_state(v1::HealthResponse::STATE_STARTING);
    out->add_problems("next hops not resolved yet");
  } else if (status.draining) {
    out->set_state(v1::HealthResponse::STATE_DRAINING);
    out->add_problems("draining (VIPs withdrawn on request)");
  } else {
    out->set_state(v1::HealthResponse::STATE_SERVING);
  }
}

grpc::Status MuxService::Health(grpc::ServerContext*, const v1::HealthRequest*,
                                v1::HealthResponse* response) {
  FillHealth(response);
  return grpc::Status::OK;
}

grpc::Status MuxService::WatchHealth(grpc::ServerContext* context, const v1::HealthRequest*,
                                     grpc::ServerWriter<v1::HealthResponse>* writer) {
  return WriteOnChange(context, shutdown_, writer,
                       [this](v1::HealthResponse* health) { FillHealth(health); });
}

}  // namespace sluice::mux
