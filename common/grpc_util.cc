#include "common/grpc_util.h"

#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
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

absl::StatusOr<GrpcServerOptions> DaemonGrpcOptions(const DaemonOptions& options) {
  GrpcServerOptions out{.unix_socket = options.grpc_socket,
                        .tcp_listen = options.grpc_listen,
                        .socket_group = options.grpc_socket_group};
  if (!out.socket_group.empty()) {
    if (out.unix_socket.empty()) {
      return absl::InvalidArgumentError("--grpc-socket-group needs --grpc-socket");
    }
    if (getgrnam(out.socket_group.c_str()) == nullptr) {
      return absl::InvalidArgumentError(
          StrCat("--grpc-socket-group ", out.socket_group, ": no such group"));
    }
  }
  const TlsFiles files{
      .cert = options.grpc_tls_cert, .key = options.grpc_tls_key, .ca = options.grpc_tls_ca};
  if (files.empty()) return out;
  if (out.tcp_listen.empty()) {
    return absl::InvalidArgumentError(
        "--grpc-tls-cert/--grpc-tls-key/--grpc-tls-ca secure --grpc-listen, which is not set "
        "(the unix socket is guarded by its permissions)");
  }
  if (files.cert.empty() && files.key.empty()) {
    return absl::InvalidArgumentError(
        "--grpc-tls-ca needs --grpc-tls-cert and --grpc-tls-key (the server's own certificate)");
  }
  absl::StatusOr<TlsPem> pem = LoadTlsPem(files, "--grpc-tls-");
  if (!pem.ok()) return pem.status();
  out.tcp_tls = std::move(*pem);
  return out;
}

std::string DescribeGrpcServer(const GrpcServerOptions& options, int bound_tcp_port) {
  std::vector<std::string> parts;
  if (!options.unix_socket.empty()) {
    parts.push_back(StrCat("unix:", options.unix_socket, " (mode 0",
                           (options.socket_mode >> 6) & 7, (options.socket_mode >> 3) & 7,
                           options.socket_mode & 7, options.socket_group.empty() ? "" : ", group ",
                           options.socket_group, ")"));
  }
  if (!options.tcp_listen.empty()) {
    const char* security = !options.tcp_tls ? "plaintext: anyone who reaches it may call"
                           : options.tcp_tls->ca.empty()
                               ? "TLS, clients not authenticated"
                               : "mutual TLS: clients need a certificate from the CA";
    std::string address = options.tcp_listen;
    const size_t colon = address.rfind(':');
    if (bound_tcp_port != 0 && colon != std::string::npos) {
      address = StrCat(address.substr(0, colon + 1), bound_tcp_port);
    }
    parts.push_back(StrCat(address, " (", security, ")"));
  }
  std::string out = "gRPC on ";
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? " and " : "") + parts[i];
  return out;
}

absl::StatusOr<std::unique_ptr<grpc::Server>> StartGrpcServer(
    const GrpcServerOptions& options, const std::vector<grpc::Service*>& services,
    int* bound_tcp_port) {
  if (options.unix_socket.empty() && options.tcp_listen.empty()) {
    return absl::FailedPreconditionError("gRPC: no unix socket and no TCP address to listen on");
  }
  gid_t group = static_cast<gid_t>(-1);
  if (!options.socket_group.empty()) {
    struct group* g = getgrnam(options.socket_group.c_str());
    if (g == nullptr) {
      return absl::FailedPreconditionError(
          StrCat("gRPC: socket group ", options.socket_group, ": no such group"));
    }
    group = g->gr_gid;
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
    std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
    if (options.tcp_tls) {
      grpc::SslServerCredentialsOptions ssl(
          options.tcp_tls->ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                      : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
      ssl.pem_root_certs = options.tcp_tls->ca;
      ssl.pem_key_cert_pairs.push_back({options.tcp_tls->key, options.tcp_tls->cert});
      credentials = grpc::SslServerCredentials(ssl);
    }
    builder.AddListeningPort(options.tcp_listen, credentials, &tcp_port);
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
  if (bound_tcp_port != nullptr) *bound_tcp_port = tcp_port;
  if (!options.unix_socket.empty()) {
    // The socket is created under the daemon's umask; narrowing it here never opens a window
    // wider than the final mode for callers that are neither owner nor group.
    if (group != static_cast<gid_t>(-1) &&
        chown(options.unix_socket.c_str(), static_cast<uid_t>(-1), group) != 0) {
      std::string error = strerror(errno);
      server->Shutdown();
      return absl::FailedPreconditionError(
          StrCat("gRPC: chgrp ", options.socket_group, " ", options.unix_socket, ": ", error));
    }
    if (chmod(options.unix_socket.c_str(), static_cast<mode_t>(options.socket_mode)) != 0) {
      std::string error = strerror(errno);
      server->Shutdown();
      return absl::FailedPreconditionError(
          StrCat("gRPC: chmod ", options.unix_socket, ": ", error));
    }
  }
  return server;
}

bool IsUnixTarget(const std::string& target) {
  return (!target.empty() && target[0] == '/') || target.rfind("unix:", 0) == 0;
}

std::shared_ptr<grpc::Channel> DialSluice(const std::string& target, const DialOptions& options) {
  std::string address = target;
  if (!address.empty() && address[0] == '/') address = "unix:" + address;
  grpc::ChannelArguments args;
  if (options.max_reconnect_backoff.count() > 0) {
    const int cap = static_cast<int>(std::max<int64_t>(options.max_reconnect_backoff.count(), 100));
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, std::min(100, cap));
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, std::min(100, cap));
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, cap);
  }
  if (IsUnixTarget(target) || !options.tls) {
    return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = options.tls->ca;
  ssl.pem_private_key = options.tls->key;
  ssl.pem_cert_chain = options.tls->cert;
  if (!options.server_name.empty()) args.SetSslTargetNameOverride(options.server_name);
  return grpc::CreateCustomChannel(address, grpc::SslCredentials(ssl), args);
}

}  // namespace sluice
