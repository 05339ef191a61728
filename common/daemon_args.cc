#include "common/daemon_args.h"

#include <cstdio>
#include <cstring>

namespace sluice {

bool ParseDaemonArgs(int argc, char** argv, DaemonOptions* options, bool eal) {
  const char* prog = argc > 0 ? argv[0] : "sluice";
  int split = eal ? argc : 0;
  for (int i = 1; eal && i < argc; ++i) {
    if (strcmp(argv[i], "--") == 0) {
      split = i;
      break;
    }
  }
  options->eal_argc = eal ? split : 0;
  bool ok = !eal || split < argc;
  for (int i = split + 1; ok && i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--config" && i + 1 < argc) {
      options->config = argv[++i];
    } else if (arg == "--stats-socket" && i + 1 < argc) {
      options->stats_socket = argv[++i];
    } else if (arg == "--run-dir" && eal && i + 1 < argc) {
      options->run_dir = argv[++i];
    } else if (arg == "--grpc-socket" && i + 1 < argc) {
      options->grpc_socket = argv[++i];
    } else if (arg == "--grpc-listen" && i + 1 < argc) {
      options->grpc_listen = argv[++i];
    } else if (arg == "--grpc-socket-group" && i + 1 < argc) {
      options->grpc_socket_group = argv[++i];
    } else if (arg == "--grpc-tls-cert" && i + 1 < argc) {
      options->grpc_tls_cert = argv[++i];
    } else if (arg == "--grpc-tls-key" && i + 1 < argc) {
      options->grpc_tls_key = argv[++i];
    } else if (arg == "--grpc-tls-ca" && i + 1 < argc) {
      options->grpc_tls_ca = argv[++i];
    } else if (arg == "--metrics-listen" && i + 1 < argc) {
      options->metrics_listen = argv[++i];
    } else if (arg == "--check-config") {
      options->check_config = true;
    } else {
      fprintf(stderr, "%s: unknown or incomplete option '%s'\n", prog, arg.c_str());
      ok = false;
    }
  }
  if (ok && options->config.empty()) {
    fprintf(stderr, "%s: --config is required\n", prog);
    ok = false;
  }
  if (!ok) {
    const char* dashes = eal ? " <EAL args> --" : "";
    fprintf(stderr,
            "usage: %s%s --config FILE [--stats-socket PATH] [--run-dir DIR]\n"
            "           [--grpc-socket PATH] [--grpc-listen H:P] [--metrics-listen A:P]\n"
            "       %s%s --config FILE --check-config\n"
            "  --config FILE        YAML configuration (see deploy/lab/config/)\n"
            "  --stats-socket PATH  unix socket answering 'stats' with JSON\n"
            "  --grpc-socket PATH   unix socket of the gRPC API (sluicectl --socket PATH)\n"
            "  --grpc-socket-group G  group of the gRPC socket (mode 0660: its members may call)\n"
            "  --grpc-listen H:P    also serve the gRPC API on TCP (host:port)\n"
            "  --grpc-tls-cert F    TLS on --grpc-listen: this server's PEM certificate ...\n"
            "  --grpc-tls-key F     ... and its private key\n"
            "  --grpc-tls-ca F      require client certificates signed by this CA (mutual TLS)\n"
            "  --metrics-listen A:P serve Prometheus metrics on http://A:P/metrics\n"
            "  --run-dir DIR        where the daemon keeps runtime files (default /run/sluice)\n"
            "  --check-config       validate the configuration and exit (0 if it is valid)\n",
            prog, dashes, prog, eal ? " --" : "");
  }
  return ok;
}

}  // namespace sluice
