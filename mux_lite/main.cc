// sluice-mux: announces its VIPs by BGP, load-balances VIP traffic (weighted Maglev and
// friends) and encapsulates it to the backends' hosts.
//
//   sluice-mux <EAL args> -- --config mux.yaml [--stats-socket PATH] [--run-dir DIR]
//                            [--grpc-socket PATH] [--grpc-listen HOST:PORT
//                            [--grpc-tls-cert F --grpc-tls-key F [--grpc-tls-ca F]]]
//
// The data path polls on mux.workers lcores (the main lcore and EAL workers), each on its
// own RSS queue; a control thread keeps the BGP announcement equal to "ready, every worker
// polling and not draining". SIGTERM drains (withdraws, then exits); the stats
// socket also takes "drain" and "resume". The gRPC API (mux_lite/grpc_service.h) changes
// VIPs, backends and SNAT ranges while packets flow; SIGHUP re-reads the config file.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#include "common/daemon_args.h"
#include "common/grpc_util.h"
#include "common/json_writer.h"
#include "common/metrics.h"
#include "common/net_text.h"
#include "common/stats_server.h"
#include "mux_lite/bgp.h"
#include "mux_lite/cloud_state.h"
#include "mux_lite/config.h"
#include "mux_lite/flow_offload.h"
#include "mux_lite/grpc_service.h"
#include "offload/rte_flow/executor.h"
#include "offload/rte_flow/flow_api.h"
#include "mux_lite/mux.h"
#include "mux_lite/workers.h"
#include "offload/port/eal.h"
#include "offload/port/port.h"

namespace sluice::mux {
namespace {

volatile std::sig_atomic_t g_terminate = 0;
volatile std::sig_atomic_t g_reload = 0;
void OnSignal(int) { g_terminate = 1; }
void OnHangup(int) { g_reload = 1; }

// What the control thread knows and the stats thread reports.
struct ControlState {
  std::atomic<bool> ready{false};
  std::atomic<bool> draining{false};
  std::atomic<bool> stop{false};            ///< Tells the data path loops to exit.
  std::atomic<bool> polling{true};          ///< False when a worker's heartbeat stalled.
  std::mutex mu;                            ///< Guards the strings below.
  std::string bgp_session = "disabled";
  std::string bgp_last_error;
  std::atomic<uint64_t> bgp_errors{0};
  std::atomic<uint64_t> bgp_announced{0};
  std::atomic<uint64_t> reloads{0};
  std::atomic<uint64_t> reload_errors{0};
  std::string last_reload_error;  ///< Guarded by mu.
  /// VIP addresses to announce after a gRPC change (guarded by mu; the control loop takes it).
  std::optional<std::vector<uint32_t>> changed_vips;
};

// What the gRPC service drives: the workers' VIP tables and the drain switch.
class WorkersRuntime : public MuxRuntime {
 public:
  WorkersRuntime(MuxWorkers* mux, ControlState* control, const NicFlowOffloader* offload,
                 std::function<uint64_t()> now_ns)
      : mux_(mux), control_(control), offload_(offload), now_ns_(std::move(now_ns)) {}

  bool Reload(const MuxConfig& config, std::string* error) override {
    if (!mux_->Reload(config, error)) return false;
    control_->reloads.fetch_add(1);
    return true;
  }
  uint64_t generation() const override { return mux_->generation(); }
  void ReadTable(const std::function<void(const VipTable&)>& read) const override {
    const uint64_t generation = mux_->generation();
    for (size_t w = 0; w < mux_->size(); ++w) {
      mux_->ReadTable(w, [&](const VipTable& table) {
        if (table.generation == generation) read(table);
      });
    }
  }
  void SetDraining(bool draining) override { control_->draining.store(draining); }
  std::vector<OffloadedFlowStatus> OffloadedFlows(size_t limit, size_t* total) const override {
    std::vector<OffloadedFlowStatus> out;
    for (const NicFlowOffloader::OffloadedFlow& f : offload_->Flows(limit, total)) {
      out.push_back({.key = f.request.key,
                     .host_pa = f.request.host_pa,
                     .partial = f.partial,
                     .packets = f.packets,
                     .bytes = f.bytes});
    }
    return out;
  }
  MuxRuntimeStatus Status() const override {
    MuxRuntimeStatus s{.ready = control_->ready.load(),
                       .draining = control_->draining.load(),
                       .polling = control_->polling.load(),
                       .stopping = g_terminate != 0 || control_->stop.load()};
    {
      std::lock_guard<std::mutex> lock(control_->mu);
      s.bgp_session = control_->bgp_session;
    }
    MuxTotals totals;
    mux_->Totals(now_ns_(), &totals);
    const MuxCounters& c = totals.counters;
    s.counters = {{"rx_packets", c.rx_packets.Get()},
                  {"tx_packets", totals.tx_packets},
                  {"vip_packets", c.vip_packets.Get()},
                  {"new_flows", c.new_flows.Get()},
                  {"cached_flow_packets", c.cached_flow_packets.Get()},
                  {"closing_flows", c.closing_flows.Get()},
                  {"snat_return_packets", c.snat_return_packets.Get()},
                  {"fastpath_redirects_sent", c.fastpath_redirects_sent.Get()},
                  {"local_packets", c.local_packets.Get()},
                  {"flow_table_capacity", totals.flow_table_capacity},
                  {"flow_table_live", totals.flow_table_live},
                  {"flow_table_evictions", totals.flow_table_evictions},
                  {"flows_offered_to_nic", offload_->offered()},
                  {"nic_offloaded_packets", offload_->nic_packets.Get()},
                  {"nic_offloaded_bytes", offload_->nic_bytes.Get()},
                  {"reloads", control_->reloads.load()},
                  {"bgp_announced_vips", control_->bgp_announced.load()},
                  {"workers", mux_->size()}};
    for (size_t r = 0; r < kNumDropReasons; ++r) {
      uint64_t extra = r == static_cast<size_t>(DropReason::kTxFull) ? totals.tx_full_drops : 0;
      s.drops.emplace_back(std::string(kDropReasonNames[r]), c.drops[r].Get() + extra);
    }
    return s;
  }

 private:
  MuxWorkers* mux_;
  ControlState* control_;
  const NicFlowOffloader* offload_;
  std::function<uint64_t()> now_ns_;
};

// Re-reads the config file and swaps in the new VIP table. On any error the running table
// stays as it was.
// The file becomes the gRPC service's desired config too (backend health is kept).
std::string Reload(MuxWorkers& mux, MuxService& service, const std::string& path,
                   ControlState& control, std::vector<uint32_t>* vips) {
  absl::StatusOr<MuxConfig> config = LoadMuxConfig(path);
  std::string error;
  absl::Status applied = config.ok() ? service.ReplaceConfig(*config) : config.status();
  if (!applied.ok()) {
    error = std::string(applied.message());
  } else {
    *vips = AnnouncedVipAddresses(service.desired());
    fprintf(stderr, "sluice-mux: reloaded %s (table generation %lu)\n", path.c_str(),
            static_cast<unsigned long>(mux.generation()));
    return "";
  }
  control.reload_errors.fetch_add(1);
  fprintf(stderr, "sluice-mux: reload refused, running config kept: %s\n", error.c_str());
  std::lock_guard<std::mutex> lock(control.mu);
  control.last_reload_error = error;
  return error;
}

std::string StatsJson(const MuxWorkers& mux, ControlState& control,
                      const NicFlowOffloader& offload, const MuxService& service,
                      uint64_t now_ns) {
  const std::map<uint32_t, std::string> unhealthy = service.unhealthy();
  JsonWriter j;
  MuxTotals totals;
  mux.Totals(now_ns, &totals);
  const MuxCounters& c = totals.counters;
  j.BeginObject()
      .Field("role", "mux")
      .Field("name", mux.config().name)
      .Field("ready", control.ready.load())
      .Field("draining", control.draining.load())
      .Field("polling", control.polling.load())
      .Field("rx_packets", c.rx_packets.Get())
      .Field("tx_packets", totals.tx_packets)
      .Field("vip_packets", c.vip_packets.Get())
      .Field("new_flows", c.new_flows.Get())
      .Field("cached_flow_packets", c.cached_flow_packets.Get())
      .Field("closing_flows", c.closing_flows.Get())
      .Field("reopened_flows", c.reopened_flows.Get())
      .Field("nic_refreshed_flows", c.nic_refreshed_flows.Get())
      .Field("snat_return_packets", c.snat_return_packets.Get())
      .Field("fastpath_redirects_sent", c.fastpath_redirects_sent.Get())
      .Field("local_packets", c.local_packets.Get())
      .Field("arp_replies_sent", totals.arp_replies_sent)
      .Field("arp_requests_sent", c.arp_requests_sent.Get())
      .Field("flow_table_capacity", totals.flow_table_capacity)
      .Field("flow_table_live", totals.flow_table_live)
      .Field("flow_table_evictions", totals.flow_table_evictions)
      .Field("bytes_per_flow", FlowTable::BytesPerFlow())
      .Field("workers", static_cast<uint64_t>(mux.size()));
  j.Key("worker_rx_packets").BeginArray();
  for (uint64_t n : totals.worker_packets) j.Uint(n);
  j.EndArray();
  j.Key("drops").BeginObject();
  for (size_t r = 0; r < kNumDropReasons; ++r) {
    uint64_t extra = r == static_cast<size_t>(DropReason::kTxFull) ? totals.tx_full_drops : 0;
    j.Field(kDropReasonNames[r], c.drops[r].Get() + extra);
  }
  j.EndObject();
  {
    std::lock_guard<std::mutex> lock(control.mu);
    j.Key("bgp").BeginObject()
        .Field("enabled", mux.config().bgp.enabled)
        .Field("session", control.bgp_session)
        .Field("announced_vips", control.bgp_announced.load())
        .Field("errors", control.bgp_errors.load())
        .Field("last_error", control.bgp_last_error)
        .EndObject();
    j.Key("flow_offload").BeginObject()
        .Field("offered", offload.offered())
        .Field("nic", offload.placement.nic.Get())
        .Field("partial", offload.placement.partial.Get())
        .Field("software", offload.placement.software.Get())
        .Field("queue_full", offload.queue_full())
        .Field("aged_out", offload.aged_out.Get())
        .Field("last_refusal", offload.last_refusal())
        .Field("nic_packets", offload.nic_packets.Get())
        .Field("nic_bytes", offload.nic_bytes.Get())
        .Field("count_query_errors", offload.count_query_errors.Get())
        .Field("close_rules", static_cast<uint64_t>(offload.close_rules()))
        .Field("close_rules_refused", offload.close_rules_error())
        .Field("closes_to_software", offload.closes_to_software.Get())
        .Field("active_flows", offload.active_flows.Get())
        .Field("active_queue_full", offload.active_queue_full.Get())
        .Field("withdrawn", offload.withdrawn.Get());
    j.Key("count_query_errors_by_reason").BeginObject();
    for (const auto& [reason, count] : offload.count_errors()) j.Field(reason, count);
    j.EndObject();
    j.EndObject();
    j.Key("reload").BeginObject()
        .Field("reloads", control.reloads.load())
        .Field("errors", control.reload_errors.load())
        .Field("last_error", control.last_reload_error)
        .EndObject();
  }
  // Per-VIP and per-backend counters summed over the workers whose table is the current
  // generation (during a reload a worker may still be on the previous one for a moment).
  std::vector<uint64_t> vip_packets, backend_packets, backend_flows;
  const uint64_t generation = mux.generation();
  for (size_t w = 0; w < mux.size(); ++w) {
    mux.ReadTable(w, [&](const VipTable& table) {
      if (table.generation != generation) return;
      vip_packets.resize(table.vips.size());
      size_t b_index = 0;
      for (size_t v = 0; v < table.vips.size(); ++v) {
        vip_packets[v] += table.vips[v]->packets.Get();
        for (size_t b = 0; b < table.vips[v]->config.backends.size(); ++b, ++b_index) {
          backend_packets.resize(b_index + 1);
          backend_flows.resize(b_index + 1);
          backend_packets[b_index] += table.vips[v]->backend_packets[b].Get();
          backend_flows[b_index] += table.vips[v]->backend_flows[b].Get();
        }
      }
    });
  }
  mux.ReadTable(0, [&](const VipTable& table) {
    j.Field("config_generation", table.generation);
    j.Key("vips").BeginArray();
    for (size_t v = 0; v < table.vips.size(); ++v) {
      const auto& vip = table.vips[v];
      j.BeginObject()
          .Field("vip", Ipv4ToString(vip->config.vip))
          .Field("port", vip->config.port)
          .Field("protocol", L4ProtocolName(vip->config.proto))
          .Field("scheduler", SchedulerName(vip->config.scheduler))
          .Field("packets", v < vip_packets.size() ? vip_packets[v] : 0)
          .EndObject();
    }
    j.EndArray();
    // Backends by health (agents' SetBackendHealth): an unhealthy one is out of Maglev.
    uint64_t healthy_backends = 0, unhealthy_backends = 0;
    for (const auto& vip : table.vips) {
      for (const BackendConfig& backend : vip->config.backends) {
        ++(unhealthy.count(backend.dip) != 0 ? unhealthy_backends : healthy_backends);
      }
    }
    j.Key("backend_health")
        .BeginObject()
        .Field("healthy", healthy_backends)
        .Field("unhealthy", unhealthy_backends)
        .Field("unhealthy_dips", static_cast<uint64_t>(unhealthy.size()))
        .EndObject();
    j.Key("backends").BeginArray();
    size_t b_index = 0;
    for (const auto& vip : table.vips) {
      for (size_t b = 0; b < vip->config.backends.size(); ++b, ++b_index) {
        const BackendConfig& backend = vip->config.backends[b];
        const bool known = b_index < backend_packets.size();
        auto sick = unhealthy.find(backend.dip);
        j.BeginObject()
            .Field("vip", Ipv4ToString(vip->config.vip) + ":" + std::to_string(vip->config.port))
            .Field("dip", Ipv4ToString(backend.dip))
            .Field("host", Ipv4ToString(backend.host))
            .Field("weight", backend.weight)
            .Field("encap", backend.encap == flow::Tunnel::kGue   ? "gue"
                            : backend.encap == flow::Tunnel::kGre ? "gre"
                                                                  : "ipip")
            .Field("packets", known ? backend_packets[b_index] : 0)
            .Field("flows", known ? backend_flows[b_index] : 0)
            .Field("healthy", sick == unhealthy.end())
            .Field("health_reason", sick == unhealthy.end() ? "" : sick->second)
            .EndObject();
      }
    }
    j.EndArray();
  });
  j.EndObject();
  return j.str();
}

// The control loop: BGP announce/withdraw from readiness, drain and data-path liveness;
// turns SIGTERM into withdraw-then-stop.
void ControlLoop(ControlState& control, MuxWorkers& mux, MuxService& service,
                 const std::string& config_path, NicFlowOffloader& offload,
                 BgpSpeaker* speaker, std::vector<uint32_t> vips, uint32_t next_hop) {
  std::optional<VipAnnouncer> announcer;
  if (speaker != nullptr) announcer.emplace(speaker, vips, next_hop);
  // A worker that stops advancing stops its share of flows: withdraw the whole mux.
  std::vector<uint64_t> last_heartbeat(mux.size(), 0);
  std::vector<std::chrono::steady_clock::time_point> last_progress(
      mux.size(), std::chrono::steady_clock::now());
  int ticks = 0;
  while (!control.stop.load()) {
    auto now = std::chrono::steady_clock::now();
    bool polling = true;
    for (size_t w = 0; w < mux.size(); ++w) {
      const uint64_t beat = mux.heartbeat(w);
      if (beat != last_heartbeat[w]) {
        last_heartbeat[w] = beat;
        last_progress[w] = now;
      }
      polling = polling && now - last_progress[w] < std::chrono::seconds(1);
    }
    if (polling != control.polling.load()) {
      fprintf(stderr, "sluice-mux: data path %s\n",
              polling ? "polling again" : "stopped polling: withdrawing VIPs");
      control.polling.store(polling);
    }
    if (g_reload) {
      g_reload = 0;
      if (Reload(mux, service, config_path, control, &vips).empty() && announcer) {
        announcer->SetVips(vips);
      }
    }
    {
      std::optional<std::vector<uint32_t>> changed;
      {
        std::lock_guard<std::mutex> lock(control.mu);
        changed.swap(control.changed_vips);
      }
      if (changed && *changed != vips) {
        vips = std::move(*changed);
        if (announcer) announcer->SetVips(vips);
      }
    }
    mux.ReclaimRetired();
    offload.Drain(NicFlowOffloader::kRingSize);
    if (ticks % 5 == 0) offload.QueryCounters();  // COUNT readings about once a second
    bool terminating = g_terminate != 0;
    bool serve = control.ready.load() && polling && !control.draining.load() && !terminating;
    if (announcer) {
      announcer->Update(serve);
      std::string session = ticks % 5 == 0 ? speaker->SessionState() : "";
      std::lock_guard<std::mutex> lock(control.mu);
      if (!session.empty()) control.bgp_session = session;
      control.bgp_errors.store(announcer->errors());
      control.bgp_announced.store(announcer->announced_count());
      control.bgp_last_error = announcer->last_error();
    }
    if (terminating && (!announcer || announcer->announced_count() == 0 || ticks > 50)) {
      control.stop.store(true);
      break;
    }
    ++ticks;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

// mux.cloud_state_file: the VIPs and SNAT ranges last pushed over gRPC are served (and the
// VIPs announced) from the start, not only after the controller's next apply.
void AdoptMuxCloudState(MuxConfig* config) {
  if (config->cloud_state_file.empty()) return;
  absl::StatusOr<AdoptedMuxState> adopted = LoadMuxCloudState(config->cloud_state_file, config);
  if (adopted.ok()) {
    fprintf(stderr,
            "sluice-mux %s: cloud state %s: %zu VIP(s), %zu SNAT range(s) as last pushed\n",
            config->name.c_str(), config->cloud_state_file.c_str(), adopted->vips,
            adopted->snat_ranges);
  } else if (absl::IsNotFound(adopted.status())) {
    fprintf(stderr, "sluice-mux %s: no cloud state yet (%s): serving the file's %zu VIP(s)\n",
            config->name.c_str(), config->cloud_state_file.c_str(), config->vips.size());
  } else {
    fprintf(stderr,
            "sluice-mux %s: warning: cloud state ignored, serving the file's %zu VIP(s) until "
            "the controller pushes them: %s\n",
            config->name.c_str(), config->vips.size(),
            std::string(adopted.status().message()).c_str());
  }
}

int Run(int argc, char** argv) {
  DaemonOptions opt;
  if (!ParseDaemonArgs(argc, argv, &opt)) return 2;
  absl::StatusOr<MuxConfig> config = LoadMuxConfig(opt.config);
  if (!config.ok()) {
    fprintf(stderr, "sluice-mux: %s\n", std::string(config.status().message()).c_str());
    return 1;
  }
  // Before anything starts: a TLS file that is unreadable or a key that is not the
  // certificate's stops the mux here (and fails --check-config).
  absl::StatusOr<GrpcServerOptions> grpc_options = DaemonGrpcOptions(opt);
  if (!grpc_options.ok()) {
    fprintf(stderr, "sluice-mux: %s\n", std::string(grpc_options.status().message()).c_str());
    return 1;
  }
  if (opt.check_config) {
    printf("sluice-mux: %s: configuration OK\n", opt.config.c_str());
    return 0;
  }
  AdoptMuxCloudState(&*config);

  std::string error;
  if (port::InitEal(opt.eal_argc, argv, &error) < 0) {
    fprintf(stderr, "sluice-mux: %s\n", error.c_str());
    return 1;
  }
  rte_mempool* pool = port::CreatePacketPool("mux_pool", 8191, &error);
  uint16_t port_id = 0;
  if (rte_lcore_count() < config->workers) {
    fprintf(stderr,
            "sluice-mux: mux.workers is %u but the EAL has %u lcore(s): give -l one lcore per "
            "worker\n",
            config->workers, rte_lcore_count());
    return 1;
  }
  if (pool == nullptr ||
      !port::OpenPort(config->port, pool, &port_id, &error, config->workers)) {
    fprintf(stderr, "sluice-mux: %s\n", error.c_str());
    return 1;
  }
  // Established flows go to the NIC executor; ports without rte_flow keep them in software.
  nic::DpdkFlowApi flow_api;
  nic::NicExecutor nic_executor(&flow_api, {.default_port = port_id,
                                            .gue_port = config->gue_port});
  NicFlowOffloader offload(&nic_executor, port_id, config->address.addr,
                           port::PortMac(port_id), config->gue_port,
                           config->flow_timeouts.tcp_idle_s, config->workers);
  std::unique_ptr<MuxWorkers> mux =
      MuxWorkers::Create(*config, port_id, port::PortMac(port_id), pool, &offload, &error);
  if (mux == nullptr) {
    fprintf(stderr, "sluice-mux: %s: %s\n", opt.config.c_str(), error.c_str());
    return 1;
  }
  // Started from the main thread: gobgpd gets SIGTERM when this process dies, so a crashed
  // mux's BGP session drops and the router withdraws its routes.
  std::unique_ptr<GobgpSpeaker> speaker;
  if (config->bgp.enabled) {
    absl::StatusOr<std::unique_ptr<GobgpSpeaker>> started =
        GobgpSpeaker::Start(config->bgp, config->name, opt.run_dir);
    if (!started.ok()) {
      fprintf(stderr, "sluice-mux: bgp: %s\n", std::string(started.status().message()).c_str());
      return 1;
    }
    speaker = std::move(*started);
  }
  ControlState control;
  const uint64_t hz = rte_get_tsc_hz();
  auto now_ns = [hz] { return static_cast<uint64_t>(rte_get_tsc_cycles() * (1e9 / hz)); };

  WorkersRuntime runtime(mux.get(), &control, &offload, now_ns);
  const std::string state_file = config->cloud_state_file;
  MuxService service(&runtime, *config, [&control, &runtime, state_file](const MuxConfig& applied) {
    // Every accepted change is kept for a restart (a failed write is logged: the change
    // stands, only a restart would not know it).
    if (!state_file.empty()) {
      absl::Status saved = SaveMuxCloudState(state_file, applied, runtime.generation());
      if (!saved.ok()) {
        fprintf(stderr, "sluice-mux %s: warning: cloud state not saved: %s\n",
                applied.name.c_str(), std::string(saved.message()).c_str());
      }
    }
    std::lock_guard<std::mutex> lock(control.mu);
    control.changed_vips = AnnouncedVipAddresses(applied);
  });
  std::unique_ptr<grpc::Server> grpc_server;
  int grpc_tcp_port = 0;
  if (!opt.grpc_socket.empty() || !opt.grpc_listen.empty()) {
    absl::StatusOr<std::unique_ptr<grpc::Server>> started =
        StartGrpcServer(*grpc_options, {&service}, &grpc_tcp_port);
    if (!started.ok()) {
      fprintf(stderr, "sluice-mux: %s\n", std::string(started.status().message()).c_str());
      return 1;
    }
    grpc_server = std::move(*started);
    fprintf(stderr, "sluice-mux %s: %s\n", config->name.c_str(),
            DescribeGrpcServer(*grpc_options, grpc_tcp_port).c_str());
  }

  StatsServer stats;
  if (!opt.stats_socket.empty()) {
    absl::Status s = stats.Start(opt.stats_socket, [&](const std::string& request) {
      if (request == "drain" || request == "resume") {
        control.draining.store(request == "drain");
        return std::string(request == "drain" ? "{\"draining\":true}" : "{\"draining\":false}");
      }
      if (request == "reload") {
        g_reload = 1;  // done by the control thread, like SIGHUP
        return std::string("{\"reload\":\"requested\"}");
      }
      if (request != "stats") return std::string("{\"error\":\"unknown request\"}");
      return StatsJson(*mux, control, offload, service, now_ns());
    });
    if (!s.ok()) {
      fprintf(stderr, "sluice-mux: %s\n", std::string(s.message()).c_str());
      return 1;
    }
  }
  auto metrics_server = metrics::ServeDaemonMetrics(
      opt.metrics_listen, [&] { return StatsJson(*mux, control, offload, service, now_ns()); });
  if (!metrics_server.ok()) {
    fprintf(stderr, "sluice-mux: %s\n", std::string(metrics_server.status().message()).c_str());
    return 1;
  }
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  signal(SIGHUP, OnHangup);
  std::thread control_thread(ControlLoop, std::ref(control), std::ref(*mux), std::ref(service),
                             opt.config, std::ref(offload), speaker.get(), AnnouncedVipAddresses(*config),
                             config->address.addr);
  fprintf(stderr, "sluice-mux %s: serving %zu VIP(s) on port %u (%s), PA %s, %zu worker(s)\n",
          config->name.c_str(), config->vips.size(), port_id, config->port.c_str(),
          Ipv4ToString(config->address.addr).c_str(), mux->size());

  // Worker i > 0 on the i-th EAL worker lcore, worker 0 on this (the main) lcore.
  struct LaunchArg {
    MuxWorkers* workers;
    size_t index;
    ControlState* control;
  };
  std::vector<LaunchArg> args(mux->size());
  std::vector<unsigned> launched;
  unsigned lcore = 0;
  size_t next = 1;
  RTE_LCORE_FOREACH_WORKER(lcore) {
    if (next == mux->size()) break;
    args[next] = {mux.get(), next, &control};
    int rc = rte_eal_remote_launch(
        [](void* p) {
          auto* a = static_cast<LaunchArg*>(p);
          a->workers->Run(a->index, a->control->stop, &a->control->ready);
          return 0;
        },
        &args[next], lcore);
    if (rc != 0) {
      fprintf(stderr, "sluice-mux: cannot launch worker %zu on lcore %u: %s\n", next, lcore,
              strerror(-rc));
      control.stop.store(true);
      break;
    }
    launched.push_back(lcore);
    ++next;
  }
  mux->Run(0, control.stop, &control.ready);
  for (unsigned l : launched) rte_eal_wait_lcore(l);
  fprintf(stderr, "sluice-mux %s: stopping\n", config->name.c_str());
  control.stop.store(true);
  control_thread.join();
  service.Shutdown();
  if (grpc_server) grpc_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  stats.Stop();
  nic_executor.RemoveAll();
  port::ClosePort(port_id);
  return 0;
}

}  // namespace
}  // namespace sluice::mux

int main(int argc, char** argv) { return sluice::mux::Run(argc, argv); }
