#include "deploy/libvirt/grpc_agent_client.h"

#include <grpcpp/grpcpp.h>

#include "common/net_text.h"
#include "sluice/v1/agent.grpc.pb.h"

namespace sluice::libvirt {
namespace {

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

sluice::v1::InterfaceType ToProto(PortKind kind) {
  switch (kind) {
    case PortKind::kVhostUser:
      return sluice::v1::INTERFACE_TYPE_VHOSTUSER;
    case PortKind::kHostdev:
      return sluice::v1::INTERFACE_TYPE_HOSTDEV;
    case PortKind::kTap:
      return sluice::v1::INTERFACE_TYPE_TAP;
  }
  return sluice::v1::INTERFACE_TYPE_UNSPECIFIED;
}

void StartCall(grpc::ClientContext* context, AgentClient::Deadline deadline) {
  context->set_deadline(deadline);
  context->set_wait_for_ready(true);
}

}  // namespace

struct GrpcAgentClient::Stub {
  std::unique_ptr<sluice::v1::Agent::Stub> agent;
};

void FillAttachVmRequest(const VmPortAttachment& a, sluice::v1::AttachVmRequest* request) {
  sluice::v1::VmAttachment* vm = request->mutable_vm();
  vm->set_name(a.name);
  vm->set_port(a.port);
  vm->set_interface_type(ToProto(a.kind));
  vm->set_mac(MacToString(a.mac));
  vm->set_dip(Ipv4ToString(a.dip));
  if (a.pa != 0) vm->set_pa(Ipv4ToString(a.pa));
  if (a.gateway != 0) vm->set_gateway(Ipv4ToString(a.gateway));
  for (const SluiceEndpoint& ep : a.endpoints) {
    sluice::v1::Endpoint* e = vm->add_endpoints();
    e->set_vip(Ipv4ToString(ep.vip));
    e->set_port(ep.port);
    e->set_protocol(ep.proto == 17 ? sluice::v1::L4_PROTOCOL_UDP : sluice::v1::L4_PROTOCOL_TCP);
    e->set_dip(Ipv4ToString(a.dip));
    e->set_dip_port(ep.dip_port);
  }
}

GrpcAgentClient::GrpcAgentClient(const std::string& target) : stub_(std::make_unique<Stub>()) {
  grpc::ChannelArguments args;
  // Retry a refused connection quickly: the whole hook has about two seconds.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 400);
  channel_ = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  stub_->agent = sluice::v1::Agent::NewStub(channel_);
}

GrpcAgentClient::~GrpcAgentClient() = default;

absl::Status GrpcAgentClient::AttachVm(const VmPortAttachment& attachment, Deadline deadline) {
  sluice::v1::AttachVmRequest request;
  FillAttachVmRequest(attachment, &request);
  sluice::v1::AttachVmResponse response;
  grpc::ClientContext context;
  StartCall(&context, deadline);
  return FromGrpc(stub_->agent->AttachVm(&context, request, &response));
}

absl::Status GrpcAgentClient::DetachVm(const std::string& name, Deadline deadline) {
  sluice::v1::DetachVmRequest request;
  request.set_name(name);
  sluice::v1::DetachVmResponse response;
  grpc::ClientContext context;
  StartCall(&context, deadline);
  return FromGrpc(stub_->agent->DetachVm(&context, request, &response));
}

}  // namespace sluice::libvirt
