#include "hostagent/snat_allocator_grpc.h"

#include "common/grpc_util.h"
#include "common/net_text.h"
#include "common/strings.h"

namespace sluice::agent {
namespace {

absl::StatusOr<SnatLeaseConfig> FromChunk(const v1::SnatChunk& c) {
  absl::StatusOr<uint32_t> dip = ParseIpv4(c.dip());
  absl::StatusOr<uint32_t> vip = ParseIpv4(c.vip());
  if (!dip.ok() || !vip.ok() || c.port_start() == 0 || c.port_count() == 0 ||
      c.port_start() + c.port_count() > 65536 ||
      (c.protocol() != v1::L4_PROTOCOL_TCP && c.protocol() != v1::L4_PROTOCOL_UDP)) {
    return absl::InternalError(StrCat("the allocator sent a malformed chunk (", c.vip(), ":",
                                      c.port_start(), "+", c.port_count(), " dip ", c.dip(), ")"));
  }
  return SnatLeaseConfig{.dip = *dip,
                         .vip = *vip,
                         .proto = static_cast<uint8_t>(c.protocol()),
                         .port_start = static_cast<uint16_t>(c.port_start()),
                         .port_count = static_cast<uint16_t>(c.port_count()),
                         .dynamic = true};
}

}  // namespace

GrpcSnatAllocator::GrpcSnatAllocator(const std::string& address, std::string host,
                                     uint32_t host_pa, v1::Encap encap,
                                     std::chrono::milliseconds timeout, const DialOptions& dial)
    : address_(address),
      host_(std::move(host)),
      host_pa_(host_pa),
      encap_(encap),
      timeout_(timeout),
      stub_(v1::SnatAllocator::NewStub(DialSluice(address, dial))) {}

absl::StatusOr<SnatLeaseConfig> GrpcSnatAllocator::RequestChunk(uint32_t dip, uint32_t vip,
                                                                uint8_t proto) {
  v1::RequestChunkRequest request;
  request.set_host(host_);
  request.set_host_pa(Ipv4ToString(host_pa_));
  request.set_dip(Ipv4ToString(dip));
  request.set_vip(Ipv4ToString(vip));
  request.set_protocol(ProtocolToProto(proto));
  request.set_encap(encap_);
  v1::RequestChunkResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout_);
  context.set_wait_for_ready(true);  // the allocator (re)starting: wait, up to the deadline
  grpc::Status s = stub_->RequestChunk(&context, request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  absl::StatusOr<SnatLeaseConfig> chunk = FromChunk(response.chunk());
  if (chunk.ok() && (chunk->dip != dip || chunk->vip != vip || chunk->proto != proto)) {
    return absl::InternalError("the allocator answered with a chunk for another DIP/VIP");
  }
  return chunk;
}

absl::Status GrpcSnatAllocator::ReturnChunk(const SnatLeaseConfig& chunk) {
  v1::ReturnChunkRequest request;
  request.set_host(host_);
  request.set_dip(Ipv4ToString(chunk.dip));
  request.set_vip(Ipv4ToString(chunk.vip));
  request.set_protocol(ProtocolToProto(chunk.proto));
  request.set_port_start(chunk.port_start);
  v1::ReturnChunkResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout_);
  context.set_wait_for_ready(true);  // the allocator (re)starting: wait, up to the deadline
  return FromGrpcStatus(stub_->ReturnChunk(&context, request, &response));
}

absl::StatusOr<std::vector<SnatLeaseConfig>> GrpcSnatAllocator::ListChunks() {
  v1::ListLeasesRequest request;
  request.set_host(host_);
  v1::ListLeasesResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout_);
  context.set_wait_for_ready(true);  // the allocator (re)starting: wait, up to the deadline
  grpc::Status s = stub_->ListLeases(&context, request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  std::vector<SnatLeaseConfig> out;
  for (const v1::SnatChunk& c : response.chunks()) {
    absl::StatusOr<SnatLeaseConfig> chunk = FromChunk(c);
    if (!chunk.ok()) return chunk.status();
    out.push_back(*chunk);
  }
  return out;
}

absl::StatusOr<std::vector<SnatPortUse>> ServiceLeaseAgent::SnatPortsInUse() {
  std::vector<NatFlow> flows;
  uint64_t total = 0;
  if (!runtime_->CopyFlows(flow_capacity_, 0, &flows, &total)) {
    return absl::UnavailableError("the data path did not copy its flow table (not polling?)");
  }
  std::vector<SnatPortUse> out;
  for (const NatFlow& f : flows) {
    if (f.kind != static_cast<uint8_t>(NatFlowKind::kSnat)) continue;
    out.push_back({.dip = f.dip, .vip = f.vip, .proto = f.proto, .port = f.vip_port});
  }
  return out;
}

}  // namespace sluice::agent
