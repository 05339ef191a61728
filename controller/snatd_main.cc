// sluice-snatd: the SNAT port allocator. Agents ask it for chunks of VIP ports for their
// VMs (SnatAllocator.RequestChunk) and give them back when idle; it records every lease in
// its state file and tells every mux which host each chunk belongs to before it answers.
//
//   sluice-snatd --config snatd.yaml --grpc-socket PATH [--grpc-socket-group G]
//                [--grpc-listen HOST:PORT [--grpc-tls-cert F --grpc-tls-key F [--grpc-tls-ca F]]]
//                [--stats-socket PATH] [--metrics-listen ADDR:PORT] [--check-config]
// (common/daemon_args.h; no EAL). Its own client TLS towards muxes is `allocator.mux_tls:`.
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>

#include "common/daemon_args.h"
#include "common/grpc_util.h"
#include "common/json_writer.h"
#include "common/metrics.h"
#include "common/net_text.h"
#include "common/stats_server.h"
#include "common/strings.h"
#include "controller/snat_allocator.h"
#include "controller/snat_allocator_service.h"

namespace sluice::snatd {
namespace {

std::string StatsJson(const SnatAllocator& allocator) {
  const SnatAllocator::Snapshot s = allocator.List("");
  JsonWriter j;
  j.BeginObject()
      .Field("role", "snatd")
      .Field("name", allocator.config().name)
      .Field("ready", true)
      .Field("table_generation", s.generation)
      .Field("chunks_leased", static_cast<uint64_t>(s.chunks.size()))
      .Field("chunks_requested", s.counters.chunks_requested)
      .Field("chunks_granted", s.counters.chunks_granted)
      .Field("chunks_refused", s.counters.chunks_refused)
      .Field("chunks_exhausted", s.counters.chunks_exhausted)
      .Field("chunks_returned", s.counters.chunks_returned)
      .Field("mux_sync_errors", s.counters.mux_sync_errors)
      .Field("last_error", s.counters.last_error);
  j.Key("pools").BeginArray();
  for (const SnatPoolStatus& p : s.pools) {
    j.BeginObject()
        .Field("pool", PoolText(p.config))
        .Field("chunk_ports", uint64_t{p.config.chunk_ports})
        .Field("chunks", uint64_t{p.chunks})
        .Field("chunks_leased", uint64_t{p.chunks_leased})
        .EndObject();
  }
  j.EndArray();
  j.Key("muxes").BeginArray();
  for (const MuxSyncStatus& m : s.muxes) {
    j.BeginObject()
        .Field("address", m.address)
        .Field("in_sync", m.in_sync)
        .Field("synced_generation", m.synced_generation)
        .Field("last_error", m.last_error)
        .EndObject();
  }
  j.EndArray();
  j.Key("chunks").BeginArray();
  for (const SnatChunkLease& l : s.chunks) j.String(ChunkText(l));
  j.EndArray();
  j.EndObject();
  return j.str();
}

int Run(int argc, char** argv) {
  DaemonOptions opt;
  if (!ParseDaemonArgs(argc, argv, &opt, /*eal=*/false)) return 2;
  if (!opt.check_config && opt.grpc_socket.empty() && opt.grpc_listen.empty()) {
    fprintf(stderr, "sluice-snatd: --grpc-socket or --grpc-listen is required\n");
    return 2;
  }
  absl::StatusOr<SnatAllocatorConfig> config = LoadSnatAllocatorConfig(opt.config);
  if (!config.ok()) {
    fprintf(stderr, "sluice-snatd: %s\n", std::string(config.status().message()).c_str());
    return 1;
  }
  absl::StatusOr<GrpcServerOptions> grpc_options = DaemonGrpcOptions(opt);
  if (!grpc_options.ok()) {
    fprintf(stderr, "sluice-snatd: %s\n", std::string(grpc_options.status().message()).c_str());
    return 1;
  }
  if (opt.check_config) {
    printf("sluice-snatd: %s: configuration OK\n", opt.config.c_str());
    return 0;
  }
  // Signals are taken synchronously by the main loop; every thread started below inherits
  // the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::vector<std::unique_ptr<MuxRangeClient>> muxes;
  for (const std::string& address : config->muxes) {
    muxes.push_back(MakeGrpcMuxRangeClient(address, config->mux_timeout_ms, config->mux_dial));
  }
  SnatAllocator allocator(*config, std::move(muxes));
  absl::Status loaded = allocator.LoadState();
  if (!loaded.ok()) {
    fprintf(stderr, "sluice-snatd: %s\n", std::string(loaded.message()).c_str());
    return 1;
  }
  const SnatAllocator::Snapshot start = allocator.List("");
  fprintf(stderr, "sluice-snatd %s: %zu pool(s), %zu mux(es), %zu chunk(s) leased in %s\n",
          config->name.c_str(), config->pools.size(), config->muxes.size(), start.chunks.size(),
          config->state_file.c_str());
  // The muxes learn the table before anyone can ask for more.
  allocator.Resync();

  SnatAllocatorService service(&allocator);
  int tcp_port = 0;
  absl::StatusOr<std::unique_ptr<grpc::Server>> server =
      StartGrpcServer(*grpc_options, {&service}, &tcp_port);
  if (!server.ok()) {
    fprintf(stderr, "sluice-snatd: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  fprintf(stderr, "sluice-snatd %s: %s\n", config->name.c_str(),
          DescribeGrpcServer(*grpc_options, tcp_port).c_str());
  StatsServer stats;
  if (!opt.stats_socket.empty()) {
    absl::Status s = stats.Start(opt.stats_socket, [&](const std::string& request) {
      if (request != "stats") return std::string("{\"error\":\"unknown request\"}");
      return StatsJson(allocator);
    });
    if (!s.ok()) {
      fprintf(stderr, "sluice-snatd: %s\n", std::string(s.message()).c_str());
      return 1;
    }
  }
  absl::StatusOr<std::unique_ptr<metrics::MetricsServer>> metrics_server =
      metrics::ServeDaemonMetrics(opt.metrics_listen, [&] { return StatsJson(allocator); });
  if (!metrics_server.ok()) {
    fprintf(stderr, "sluice-snatd: %s\n", std::string(metrics_server.status().message()).c_str());
    return 1;
  }
  if (*metrics_server != nullptr) {
    fprintf(stderr, "sluice-snatd %s: Prometheus metrics on port %d (GET /metrics)\n",
            config->name.c_str(), (*metrics_server)->port());
  }
  fprintf(stderr, "sluice-snatd %s: serving\n", config->name.c_str());
  const timespec interval{.tv_sec = config->resync_interval_ms / 1000,
                          .tv_nsec = (config->resync_interval_ms % 1000) * 1'000'000L};
  while (true) {
    const int sig = sigtimedwait(&signals, nullptr, &interval);
    if (sig == SIGINT || sig == SIGTERM) break;
    allocator.Resync();  // a mux that restarted or was down gets the table again
  }
  fprintf(stderr, "sluice-snatd %s: stopping\n", config->name.c_str());
  (*server)->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  stats.Stop();
  return 0;
}

}  // namespace
}  // namespace sluice::snatd

int main(int argc, char** argv) { return sluice::snatd::Run(argc, argv); }
