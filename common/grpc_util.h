// gRPC glue shared by the daemons' services and sluicectl: absl::Status → grpc::Status,
// checked reading of request fields (each error names the field by its path in the
// request), starting a server on a unix socket (default) and optionally TCP with TLS or
// mutual TLS, and dialling one.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/daemon_args.h"
#include "common/tls_files.h"
#include "sluice/v1/common.pb.h"

namespace sluice {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

/// INVALID_ARGUMENT "<field>: <message>".
absl::Status FieldError(const std::string& field, const std::string& message);

/// "10.0.0.1" (not 0.0.0.0, not multicast/broadcast) → host-order address.
absl::StatusOr<uint32_t> Ipv4Field(const std::string& text, const std::string& field);
/// A port 1..65535 (`allow_zero`: 0 too).
absl::StatusOr<uint16_t> PortField(uint32_t value, const std::string& field,
                                   bool allow_zero = false);
/// TCP or UDP (`allow_unspecified`: also UNSPECIFIED, returned as 0).
absl::StatusOr<uint8_t> ProtocolField(int value, const std::string& field,
                                      bool allow_unspecified = false);
v1::L4Protocol ProtocolToProto(uint8_t proto);
/// "10.200.0.10:80/tcp".
std::string EndpointKey(uint32_t vip, uint16_t port, uint8_t proto);

/// Where a daemon serves gRPC.
struct GrpcServerOptions {
  std::string unix_socket;  ///< Path; "" = none. A stale socket file is replaced.
  std::string tcp_listen;   ///< "host:port"; "" = none.
  /// Permissions of the unix socket (who may call: owner and group by default).
  uint32_t socket_mode = 0660;
  /// Group of the unix socket ("" = the daemon's own).
  std::string socket_group;
  /// TLS on `tcp_listen` (none = plaintext TCP). With `ca` set, every client must present a
  /// certificate signed by it (mutual TLS); without, clients are not asked for one.
  std::optional<TlsPem> tcp_tls;
};

/// The daemons' --grpc-* flags as server options, TLS files read and checked (call it before
/// starting anything, and with --check-config). INVALID_ARGUMENT names the flag at fault.
absl::StatusOr<GrpcServerOptions> DaemonGrpcOptions(const DaemonOptions& options);

/// One line for the daemon's log: where it serves gRPC and who may call (with the TCP port
/// actually bound, when `bound_tcp_port` is not 0).
std::string DescribeGrpcServer(const GrpcServerOptions& options, int bound_tcp_port = 0);

/// Starts a server with `services` (which must outlive it). FAILED_PRECONDITION when
/// neither address is set, a bind fails or the socket's group cannot be set. `tcp_port`, if
/// given, receives the TCP port bound (useful with "host:0").
absl::StatusOr<std::unique_ptr<grpc::Server>> StartGrpcServer(
    const GrpcServerOptions& options, const std::vector<grpc::Service*>& services,
    int* tcp_port = nullptr);

/// True for "unix:/path" and "/path" targets (TLS never applies to them).
bool IsUnixTarget(const std::string& target);

/// A channel to "unix:/path", "/path" (taken as a unix socket) or "host:port".
std::shared_ptr<grpc::Channel> DialSluice(const std::string& target,
                                          const DialOptions& options = {});

/// The body of a server-streaming Watch call: every 100 ms `fill(Message*)` describes the
/// daemon's state, and the message is written whenever it differs from the last one sent,
/// until the client cancels, `stop` is set or a write fails.
template <typename Message, typename Fill>
grpc::Status WriteOnChange(grpc::ServerContext* context, const std::atomic<bool>& stop,
                           grpc::ServerWriter<Message>* writer, Fill fill) {
  std::string last;
  while (!context->IsCancelled() && !stop.load()) {
    Message message;
    fill(&message);
    std::string now = message.SerializeAsString();
    if (now != last) {
      if (!writer->Write(message)) break;
      last = std::move(now);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // polls daemon state
  }
  return grpc::Status::OK;
}

}  // namespace sluice
