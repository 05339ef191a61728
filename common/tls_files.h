// TLS material of the gRPC endpoints, without gRPC: PEM files read and checked with OpenSSL
// (before a daemon starts, and by --check-config) and a client's TLS options from YAML. The
// daemons' configs hold these, so data-path code that includes a config stays free of gRPC.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/config_reader.h"

namespace sluice {

/// Paths of PEM files for TLS on gRPC over TCP ("" = not given).
struct TlsFiles {
  std::string cert;  ///< This side's certificate (chain), leaf first.
  std::string key;   ///< Its private key (unencrypted PEM).
  std::string ca;    ///< CA certificate(s) the peer's certificate must be signed by.
  bool empty() const { return cert.empty() && key.empty() && ca.empty(); }
};

/// The PEM text of TlsFiles, read and checked.
struct TlsPem {
  std::string cert;
  std::string key;
  std::string ca;

  bool operator==(const TlsPem&) const = default;
};

/// Reads and checks `files`: every given file readable and PEM, the certificate and key
/// given together and the key the certificate's. Errors name the flag ("<flag_prefix>key",
/// e.g. "--grpc-tls-key") and the path.
absl::StatusOr<TlsPem> LoadTlsPem(const TlsFiles& files, const std::string& flag_prefix);

/// How a client reaches a TCP target: plaintext (no `tls`) or TLS, verifying the server
/// against `tls->ca` (the system's roots when empty) and presenting `tls->cert` when set.
struct DialOptions {
  std::optional<TlsPem> tls;
  /// Name the server's certificate must carry, when it differs from the target's host.
  std::string server_name;
  /// Cap of gRPC's reconnect backoff (0 = gRPC's default, which grows to minutes): a daemon
  /// that must notice a peer coming back within a bound sets it.
  std::chrono::milliseconds max_reconnect_backoff{0};

  bool operator==(const DialOptions&) const = default;
};

/// A daemon's client TLS towards its peers from the optional YAML map `key` of `node`:
///   tls: { ca: FILE, cert: FILE, key: FILE, server_name: NAME }
/// `ca` verifies the peers (the system's roots when absent); `cert` + `key` are presented to
/// peers that require client certificates (mutual TLS). Files are read and checked now, so a
/// config check finds a bad one; errors are recorded on `node`, naming the field and file.
/// Absent map: plaintext (DialOptions without tls). Applies to TCP targets only.
DialOptions ReadClientTls(ConfigNode& node, std::string_view key);

}  // namespace sluice
