#include "common/grpc_util.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/net_text.h"
#include "common/strings.h"

namespace sluice {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbers.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

absl::Status FieldError(const std::string& field, const std::string& message) {
  return absl::InvalidArgumentError(StrCat(field, ": ", message));
}

absl::StatusOr<uint32_t> Ipv4Field(const std::string& text, const std::string& field) {
  if (text.empty()) return FieldError(field, "required (an IPv4 address)");
  absl::StatusOr<uint32_t> addr = ParseIpv4(text);
  if (!addr.ok()) return FieldError(field, StrCat("'", text, "' is not an IPv4 address"));
  if (*addr == 0 || *addr >= 0xe0000000u) {
    return FieldError(field, StrCat(text, " is not a unicast address"));
  }
  return *addr;
}

absl::StatusOr<uint16_t> PortField(uint32_t value, const std::string& field, bool allow_zero) {
  if (value > 65535 || (value == 0 && !allow_zero)) {
    return FieldError(field, StrCat(value, " is not a port (1..65535)"));
  }
  return static_cast<uint16_t>(value);
}

absl::StatusOr<uint8_t> ProtocolField(int value, const std::string& field, bool allow_unspecified) {
  switch (value) {
    case v1::L4_PROTOCOL_TCP:
      return uint8_t{6};
    case v1::L4_PROTOCOL_UDP:
      return uint8_t{17};
    case v1::L4_PROTOCOL_UNSPECIFIED:
      if (allow_unspecified) return uint8_t{0};
      return FieldError(field, "required (TCP or UDP)");
    default:
      return FieldError(field, StrCat(value, " is not a protocol (TCP or UDP)"));
  }
}

v1::L4Protocol ProtocolToProto(uint8_t proto) {
  switch (proto) {
    case 6:
      return v1::L4_PROTOCOL_TCP;
    case 17:
      return v1::L4_PROTOCOL_UDP;
    default:
      return v1::L4_PROTOCOL_UNSPECIFIED;
  }
}

std::string EndpointKey(uint32_t vip, uint16_t port, uint8_t proto) {
  return StrCat(Ipv4ToString(vip), ":", port, "/", proto == 0 ? "any" : L4ProtocolName(proto));
}

absl::StatusOr<std::unique_ptr<grpc::Server>> StartGrpcServer(
    const GrpcServerOptions& options, const std::vector<grpc::Service*>& services) {
  if (options.unix_socket.empty() && options.tcp_listen.empty()) {
    return absl::FailedPreconditionError("gRPC: no unix socket and no TCP address to listen on");
  }
  grpc::ServerBuilder builder;
  if (!options.unix_socket.empty()) {
    struct stat st;
    if (lstat(options.unix_socket.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        return absl::FailedPreconditionError(
            StrCat("gRPC socket ", options.unix_socket, " exists and is not a socket"));
      }
      unlink(options.unix_socket.c_str());  // left by a previous run
    }
    builder.AddListeningPort("unix:" + options.unix_socket, grpc::InsecureServerCredentials());
  }
  int tcp_port = 0;
  if (!options.tcp_listen.empty()) {
    builder.AddListeningPort(options.tcp_listen, grpc::InsecureServerCredentials(), &tcp_port);
  }
  for (grpc::Service* service : services) builder.RegisterService(service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    return absl::FailedPreconditionError(StrCat(
        "gRPC: cannot listen on ", options.unix_socket.empty() ? "" : "unix:" + options.unix_socket,
        options.unix_socket.empty() || options.tcp_listen.empty() ? "" : " and ",
        options.tcp_listen));
  }
  if (!options.tcp_listen.empty() && tcp_port == 0) {
    server->Shutdown();
    return absl::FailedPreconditionError(StrCat("gRPC: cannot listen on ", options.tcp_listen));
  }
  if (!options.unix_socket.empty() &&
      chmod(options.unix_socket.c_str(), static_cast<mode_t>(options.socket_mode)) != 0) {
    std::string error = strerror(errno);
    server->Shutdown();
    return absl::FailedPreconditionError(StrCat("gRPC: chmod ", options.unix_socket, ": ", error));
  }
  return server;
}

std::shared_ptr<grpc::Channel> DialSluice(const std::string& target) {
  std::string address = target;
  if (!address.empty() && address[0] == '/') address = "unix:" + address;
  return grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
}

}  // namespace sluice
