#include "controller/snat_allocator_service.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "common/grpc_util.h"
#include "common/net_text.h"
#include "common/strings.h"

namespace sluice::snatd {

bool ValidHostName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == ':' ||
           c == '-';
  });
}

void ChunkToProto(const SnatChunkLease& l, v1::SnatChunk* out) {
  out->set_vip(Ipv4ToString(l.vip));
  out->set_protocol(ProtocolToProto(l.proto));
  out->set_port_start(l.port_start);
  out->set_port_count(l.port_count);
  out->set_host(l.host);
  out->set_host_pa(Ipv4ToString(l.host_pa));
  out->set_dip(Ipv4ToString(l.dip));
  out->set_encap(HostEncapToProto(l.encap));
}

namespace {

absl::Status CheckHost(const std::string& host) {
  if (ValidHostName(host)) return absl::OkStatus();
  return FieldError("host", StrCat("'", host, "' is not a host name (1..64 of A-Z a-z 0-9 . _ : -)"));
}

}  // namespace

grpc::Status SnatAllocatorService::RequestChunk(grpc::ServerContext*,
                                                const v1::RequestChunkRequest* request,
                                                v1::RequestChunkResponse* response) {
  absl::Status host = CheckHost(request->host());
  if (!host.ok()) return ToGrpcStatus(host);
  absl::StatusOr<uint32_t> host_pa = Ipv4Field(request->host_pa(), "host_pa");
  if (!host_pa.ok()) return ToGrpcStatus(host_pa.status());
  absl::StatusOr<uint32_t> dip = Ipv4Field(request->dip(), "dip");
  if (!dip.ok()) return ToGrpcStatus(dip.status());
  absl::StatusOr<uint32_t> vip = Ipv4Field(request->vip(), "vip");
  if (!vip.ok()) return ToGrpcStatus(vip.status());
  absl::StatusOr<uint8_t> proto = ProtocolField(request->protocol(), "protocol");
  if (!proto.ok()) return ToGrpcStatus(proto.status());
  absl::StatusOr<HostEncap> encap = HostEncapField(request->encap(), "encap");
  if (!encap.ok()) return ToGrpcStatus(encap.status());
  absl::StatusOr<SnatChunkLease> lease =
      allocator_->RequestChunk(request->host(), *host_pa, *dip, *vip, *proto, *encap);
  if (!lease.ok()) {
    fprintf(stderr, "sluice-snatd: chunk of %s:%s for %s dip %s refused: %s\n",
            request->vip().c_str(), L4ProtocolName(*proto).c_str(), request->host().c_str(),
            request->dip().c_str(), std::string(lease.status().message()).c_str());
    return ToGrpcStatus(lease.status());
  }
  fprintf(stderr, "sluice-snatd: granted %s\n", ChunkText(*lease).c_str());
  ChunkToProto(*lease, response->mutable_chunk());
  response->set_table_generation(allocator_->List(request->host()).generation);
  return grpc::Status::OK;
}

grpc::Status SnatAllocatorService::ReturnChunk(grpc::ServerContext*,
                                               const v1::ReturnChunkRequest* request,
                                               v1::ReturnChunkResponse* response) {
  absl::Status host = CheckHost(request->host());
  if (!host.ok()) return ToGrpcStatus(host);
  absl::StatusOr<uint32_t> dip = Ipv4Field(request->dip(), "dip");
  if (!dip.ok()) return ToGrpcStatus(dip.status());
  absl::StatusOr<uint32_t> vip = Ipv4Field(request->vip(), "vip");
  if (!vip.ok()) return ToGrpcStatus(vip.status());
  absl::StatusOr<uint8_t> proto = ProtocolField(request->protocol(), "protocol");
  if (!proto.ok()) return ToGrpcStatus(proto.status());
  absl::StatusOr<uint16_t> start = PortField(request->port_start(), "port_start");
  if (!start.ok()) return ToGrpcStatus(start.status());
  absl::Status returned = allocator_->ReturnChunk(request->host(), *dip, *vip, *proto, *start);
  if (!returned.ok()) return ToGrpcStatus(returned);
  fprintf(stderr, "sluice-snatd: %s returned %s:%u/%s (dip %s)\n", request->host().c_str(),
          request->vip().c_str(), request->port_start(), L4ProtocolName(*proto).c_str(),
          request->dip().c_str());
  response->set_table_generation(allocator_->List(request->host()).generation);
  return grpc::Status::OK;
}

grpc::Status SnatAllocatorService::ListLeases(grpc::ServerContext*,
                                              const v1::ListLeasesRequest* request,
                                              v1::ListLeasesResponse* response) {
  if (!request->host().empty()) {
    absl::Status host = CheckHost(request->host());
    if (!host.ok()) return ToGrpcStatus(host);
  }
  const SnatAllocator::Snapshot s = allocator_->List(request->host());
  for (const SnatChunkLease& l : s.chunks) ChunkToProto(l, response->add_chunks());
  for (const SnatPoolStatus& p : s.pools) {
    v1::SnatPool* out = response->add_pools();
    out->set_vip(Ipv4ToString(p.config.vip));
    out->set_protocol(ProtocolToProto(p.config.proto));
    out->set_port_start(p.config.port_start);
    out->set_port_count(p.config.port_count);
    out->set_chunk_ports(p.config.chunk_ports);
    out->set_chunks(p.chunks);
    out->set_chunks_leased(p.chunks_leased);
  }
  for (const MuxSyncStatus& m : s.muxes) {
    v1::MuxSync* out = response->add_muxes();
    out->set_address(m.address);
    out->set_in_sync(m.in_sync);
    out->set_synced_generation(m.synced_generation);
    out->set_last_error(m.last_error);
  }
  response->set_table_generation(s.generation);
  return grpc::Status::OK;
}

grpc::Status SnatAllocatorService::Health(grpc::ServerContext*, const v1::HealthRequest*,
                                          v1::HealthResponse* response) {
  const SnatAllocator::Snapshot s = allocator_->List("");
  response->set_role("snatd");
  response->set_name(allocator_->config().name);
  response->set_version(SLUICE_VERSION);
  response->set_config_generation(s.generation);
  response->set_state(v1::HealthResponse::STATE_SERVING);
  for (const MuxSyncStatus& m : s.muxes) {
    if (!m.in_sync) {
      response->add_problems(StrCat("mux ", m.address, " not in sync: ",
                                    m.last_error.empty() ? "not reached yet" : m.last_error));
    }
  }
  return grpc::Status::OK;
}

}  // namespace sluice::snatd
