// Command line shared by the DPDK daemons: "<prog> <EAL args> -- --config FILE
// [--stats-socket PATH] [--run-dir DIR] [--grpc-socket PATH [--grpc-socket-group G]]
// [--grpc-listen HOST:PORT [--grpc-tls-cert F --grpc-tls-key F [--grpc-tls-ca F]]]
// [--metrics-listen ADDR:PORT] [--check-config]".
#pragma once

#include <string>

namespace sluice {

struct DaemonOptions {
  std::string config;
  std::string stats_socket;
  std::string run_dir = "/run/sluice";  ///< Files the daemon writes (speaker config, state).
  std::string grpc_socket;  ///< Unix socket of the gRPC API ("" = none).
  std::string grpc_listen;  ///< Optional TCP "host:port" of the gRPC API.
  std::string grpc_socket_group;  ///< Group of the gRPC unix socket ("" = the daemon's).
  std::string grpc_tls_cert;  ///< PEM certificate of the TCP listener ("" = plaintext TCP).
  std::string grpc_tls_key;   ///< Its private key.
  std::string grpc_tls_ca;    ///< CA that signs client certificates ("" = none required).
  std::string metrics_listen;  ///< Optional "ADDR:PORT" serving Prometheus GET /metrics.
  int eal_argc = 0;  ///< argv[0 .. eal_argc) goes to rte_eal_init.
  bool check_config = false;  ///< Only load and validate --config, then exit (no EAL, no NIC).
};

/// Parses the part after "--" (with `eal` false, a daemon without DPDK: the whole command
/// line, no "--"). On a bad command line prints usage and the problem to stderr and returns
/// false.
bool ParseDaemonArgs(int argc, char** argv, DaemonOptions* options, bool eal = true);

}  // namespace sluice
