// sluice-agent: the host agent. Decapsulates mux traffic for local VMs, rewrites VIP→DIP
// on the way in and DIP→VIP on the way out (DSR, straight to the router), SNATs the VMs'
// outbound connections to leased VIP ports, and sends Fastpath flows host to host. Its NAT
// flow table lives in nat.flow_state_file, so after a crash it restarts with its flows.
//
//   sluice-agent <EAL args> -- --config host.yaml [--stats-socket /run/sluice/agent.sock]
//                              [--grpc-socket PATH] [--grpc-listen HOST:PORT
//                              [--grpc-tls-cert F --grpc-tls-key F [--grpc-tls-ca F]]]
//
// The gRPC API (hostagent/grpc_service.h) replaces endpoints and SNAT leases while packets
// flow: the data path adopts each new config snapshot between bursts.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include "common/daemon_args.h"
#include "common/grpc_util.h"
#include "common/json_writer.h"
#include "common/metrics.h"
#include "common/net_text.h"
#include "common/stats_server.h"
#include "common/strings.h"
#include "hostagent/agent.h"
#include "hostagent/agent_control.h"
#include "hostagent/agent_health.h"
#include "hostagent/config.h"
#include "hostagent/cloud_state.h"
#include "hostagent/datapath_runtime.h"
#include "hostagent/grpc_service.h"
#include "hostagent/nat_flow_table.h"
#include "hostagent/nic_rules.h"
#include "hostagent/snat_allocator_grpc.h"
#include "hostagent/snat_lease_client.h"
#include "hostagent/vswitch_agent.h"
#include "offload/rte_flow/executor.h"
#include "offload/rte_flow/flow_api.h"
#include "offload/port/eal.h"
#include "offload/port/port.h"

namespace sluice::agent {
namespace {

volatile std::sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

std::string StatsJson(const AgentDataPath& agent, const AgentNicRules& nic_rules,
                      const SnatLeaseClient* lease_client, const AgentHealth& health,
                      const DataPathRuntime& runtime) {
  JsonWriter j;
  uint64_t rx = 0, tx = 0, tx_full = 0;
  agent.ReadPorts([&](const std::vector<std::unique_ptr<AgentPort>>& ports,
                      const std::vector<VmConfig>&, const SnatPortPool&) {
    for (const auto& port : ports) {
      rx += port->rx_packets.Get();
      tx += port->tx.tx_packets.Get();
      tx_full += port->tx.tx_full_drops.Get();
    }
  });
  const sw::ExecutorCounters& ex = agent.executor().counters();
  const AgentCounters& c = agent.counters();
  j.BeginObject()
      .Field("role", "agent")
      .Field("name", agent.config().name)
      .Field("ready", agent.ready())
      .Field("rx_packets", rx)
      .Field("tx_packets", tx)
      .Field("inbound_packets", agent.WalkPackets(RuleKind::kInboundIpip) +
                                    agent.WalkPackets(RuleKind::kInboundGue))
      .Field("inbound_gue_packets", agent.WalkPackets(RuleKind::kInboundGue))
      .Field("dsr_return_packets", agent.WalkPackets(RuleKind::kDsrReturn))
      .Field("stateful_return_packets", c.stateful_return_packets.Get())
      .Field("snat_out_packets", c.snat_out_packets.Get())
      .Field("snat_in_packets", c.snat_in_packets.Get())
      .Field("fastpath_packets", c.fastpath_packets.Get())
      .Field("rejects_sent", c.rejects_sent.Get())
      .Field("executor", "software")
      .Field("rules_installed", agent.installed_rules())
      .Field("executor_rx_packets", ex.rx_packets.Get());
  j.Key("flows")
      .BeginObject()
      .Field("state_file", agent.flows().path().empty() ? "(memory)" : agent.flows().path())
      .Field("capacity", agent.flows().capacity())
      .Field("active", agent.flows().size())
      .Field("created", c.flows_created.Get())
      .Field("expired", c.flows_expired.Get())
      .Field("restored_at_start", agent.flows_restored())
      .Field("kept_at_start", agent.flows_kept())
      .Field("offered_to_nic", c.flows_offered.Get())
      .Field("withdrawn_from_nic", c.flows_withdrawn.Get())
      .Field("aged_in_nic", c.flows_aged_in_nic.Get())
      .Field("nic_withdrawals_lost", c.offload_withdrawals_lost.Get())
      .Field("nic_answers_stale", c.offload_notices_stale.Get())
      .EndObject();
  j.Key("fastpath")
      .BeginObject()
      .Field("enabled", agent.config().fastpath_key.has_value())
      .Field("redirects_received", c.fastpath_redirects_received.Get())
      .Field("redirects_applied_source", c.fastpath_redirects_source.Get())
      .Field("redirects_applied_destination", c.fastpath_redirects_destination.Get())
      .Field("peers_relearned", c.fastpath_peers_relearned.Get())
      .EndObject();
  nic_rules.WriteStats(j);
  WriteLeaseStats(j, agent.config(), lease_client);
  runtime.WriteHotplugStats(j);
  j.Key("drops").BeginObject();
  for (size_t r = 0; r < kNumDropReasons; ++r) {
    uint64_t extra = r == static_cast<size_t>(DropReason::kTxFull) ? tx_full : 0;
    j.Field(kDropReasonNames[r], agent.Drops(static_cast<DropReason>(r)) + extra);
  }
  for (size_t r = 0; r < kNumAgentDrops; ++r) {
    j.Field(kAgentDropNames[r], agent.Drops(static_cast<AgentDrop>(r)));
  }
  j.EndObject();
  j.Key("vms").BeginArray();
  const AgentRuntimeStatus status = runtime.Status();
  for (const VmRuntimeStatus& vm : status.vms) {
    agent.ReadPorts([&](const std::vector<std::unique_ptr<AgentPort>>&,
                        const std::vector<VmConfig>& vms, const SnatPortPool&) {
      for (const VmConfig& config : vms) {
        if (config.name != vm.name) continue;
        j.BeginObject()
            .Field("name", vm.name)
            .Field("dip", Ipv4ToString(config.dip))
            .Field("pa", Ipv4ToString(config.pa))
            .Field("port", vm.hotplugged ? "hotplug" : "boot")
            .Field("dpdk_port", uint64_t(vm.port_id))
            .Field("rx_packets", vm.rx_packets)
            .Field("tx_packets", vm.tx_packets)
            .Field("snat_tcp_ports", StrCat(vm.snat_tcp_in_use, "/", vm.snat_tcp_leased))
            .Field("snat_udp_ports", StrCat(vm.snat_udp_in_use, "/", vm.snat_udp_leased))
            .Field("snat_ports_exhausted", vm.snat_ports_exhausted)
            .EndObject();
      }
    });
  }
  j.EndArray();
  health.WriteStats(j);
  j.EndObject();
  return j.str();
}

uint64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000 + static_cast<uint64_t>(ts.tv_nsec);
}

// agent.cloud_state_file: the endpoints and static SNAT leases the controller last set are
// served again from the start (the muxes keep sending their flows while the agent restarts),
// and the VMs attached at runtime are attached again (their ports are opened below).
void AdoptCloudState(AgentConfig* config) {
  if (config->cloud_state_file.empty()) return;
  CloudStateVms vms;
  absl::Status s = LoadCloudState(config->cloud_state_file, config, &vms);
  if (s.ok()) {
    std::string restored;
    for (const std::string& vm : vms.restored) restored += (restored.empty() ? "" : ", ") + vm;
    fprintf(stderr,
            "sluice-agent %s: cloud state %s: %zu endpoint(s), %zu SNAT lease(s) as the "
            "controller last set them, %zu VM(s) attached at runtime%s%s\n",
            config->name.c_str(), config->cloud_state_file.c_str(), config->endpoints.size(),
            config->snat_leases.size(), vms.restored.size(), vms.restored.empty() ? "" : ": ",
            restored.c_str());
    for (const std::string& skipped : vms.skipped) {
      fprintf(stderr, "sluice-agent %s: error: cloud state %s: %s (not attached)\n",
              config->name.c_str(), config->cloud_state_file.c_str(), skipped.c_str());
    }
  } else if (absl::IsNotFound(s)) {
    fprintf(stderr, "sluice-agent %s: no cloud state yet (%s): serving the YAML's %zu "
            "endpoint(s) until the controller sets them\n",
            config->name.c_str(), config->cloud_state_file.c_str(), config->endpoints.size());
  } else {
    fprintf(stderr, "sluice-agent %s: warning: cloud state ignored, serving the YAML's until "
            "the controller sets them: %s\n",
            config->name.c_str(), std::string(s.message()).c_str());
  }
}

// Every change the controller makes is written to the cloud state file (a failure is
// logged: the change itself stands, only a restart would not know it).
void KeepCloudState(AgentService* service, const std::string& path) {
  if (path.empty()) return;
  service->SetOnApplied([path](const AgentConfig& running, uint64_t generation) {
    absl::Status s = SaveCloudState(path, running, generation);
    if (!s.ok()) {
      fprintf(stderr, "sluice-agent: warning: cloud state not saved: %s\n",
              std::string(s.message()).c_str());
    }
  });
}

// agent.datapath: vswitch — the rules run in an OVS bridge; no DPDK ports, no EAL.
int RunVswitch(const DaemonOptions& opt, const GrpcServerOptions& grpc_options,
               AgentConfig config) {
  // A VM of the cloud state whose port is gone (it stopped while the agent was down) is not
  // plugged again; the others are (their bridge ports with the rest of the bridge).
  for (size_t v = 0; v < config.vms.size();) {
    const VmConfig& vm = config.vms[v];
    absl::Status usable = vm.attached_at_runtime ? CheckVmBridgePort(vm) : absl::OkStatus();
    if (usable.ok()) {
      ++v;
      continue;
    }
    fprintf(stderr,
            "sluice-agent %s: error: VM %s (attached at runtime, from the cloud state) not "
            "attached again: %s\n",
            config.name.c_str(), vm.name.c_str(), std::string(usable.message()).c_str());
    ForgetVm(&config, std::string(vm.name));
  }
  // Chunks the SNAT allocator still leases to this host join the flows the bridge is
  // reconciled to, so their connections (in OVS conntrack) keep translating.
  std::unique_ptr<GrpcSnatAllocator> allocator = ConnectSnatAllocator(&config);
  absl::StatusOr<std::unique_ptr<VswitchAgent>> agent = VswitchAgent::Start(config);
  if (!agent.ok()) {
    fprintf(stderr, "sluice-agent: vswitch: %s\n", std::string(agent.status().message()).c_str());
    return 1;
  }
  absl::StatusOr<std::unique_ptr<AgentHealth>> health = StartAgentHealth(config);
  if (!health.ok()) {
    fprintf(stderr, "sluice-agent: health checks: %s\n",
            std::string(health.status().message()).c_str());
    return 1;
  }
  HealthCheckedRuntime runtime(agent->get(), health->get(), config);
  AgentService service(&runtime, config);
  KeepCloudState(&service, config.cloud_state_file);
  std::unique_ptr<grpc::Server> grpc_server;
  if (!opt.grpc_socket.empty() || !opt.grpc_listen.empty()) {
    int grpc_tcp_port = 0;
    absl::StatusOr<std::unique_ptr<grpc::Server>> started =
        StartGrpcServer(grpc_options, {&service}, &grpc_tcp_port);
    if (!started.ok()) {
      fprintf(stderr, "sluice-agent: %s\n", std::string(started.status().message()).c_str());
      return 1;
    }
    grpc_server = std::move(*started);
    fprintf(stderr, "sluice-agent %s: %s\n", config.name.c_str(),
            DescribeGrpcServer(grpc_options, grpc_tcp_port).c_str());
  }
  std::unique_ptr<SnatLeaseLoop> lease_loop;
  if (allocator) {
    lease_loop = std::make_unique<SnatLeaseLoop>(config, allocator.get(), &service, &runtime);
  }
  const SnatLeaseClient* lease_stats = lease_loop ? &lease_loop->client() : nullptr;
  auto stats_json = [&] {
    return (*agent)->StatsJson([&](JsonWriter& j) {
      WriteLeaseStats(j, config, lease_stats);
      (*health)->WriteStats(j);
    });
  };
  StatsServer stats;
  if (!opt.stats_socket.empty()) {
    absl::Status s = stats.Start(opt.stats_socket, [&](const std::string& request) {
      if (request != "stats") return std::string("{\"error\":\"unknown request\"}");
      return stats_json();
    });
    if (!s.ok()) {
      fprintf(stderr, "sluice-agent: %s\n", std::string(s.message()).c_str());
      return 1;
    }
  }
  auto metrics_server = metrics::ServeDaemonMetrics(opt.metrics_listen, stats_json);
  if (!metrics_server.ok()) {
    fprintf(stderr, "sluice-agent: %s\n", std::string(metrics_server.status().message()).c_str());
    return 1;
  }
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  fprintf(stderr, "sluice-agent %s: vswitch mode, %zu VM(s), %zu endpoint(s), PA %s, ready\n",
          config.name.c_str(), config.vms.size(), config.endpoints.size(),
          Ipv4ToString(config.address.addr).c_str());
  while (!g_stop) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // waits for a signal
  }
  fprintf(stderr, "sluice-agent %s: stopping (OVS and its flows stay)\n", config.name.c_str());
  // Leased chunks stay leased: a restarted agent adopts them.
  if (lease_loop) lease_loop->Stop();
  service.Shutdown();
  if (grpc_server) grpc_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  stats.Stop();
  return 0;
}

int Run(int argc, char** argv) {
  DaemonOptions opt;
  if (!ParseDaemonArgs(argc, argv, &opt)) return 2;
  absl::StatusOr<AgentConfig> config = LoadAgentConfig(opt.config);
  if (!config.ok()) {
    fprintf(stderr, "sluice-agent: %s\n", std::string(config.status().message()).c_str());
    return 1;
  }
  // Before anything starts: a TLS file that is unreadable or a key that is not the
  // certificate's stops the agent here (and fails --check-config).
  absl::StatusOr<GrpcServerOptions> grpc_options = DaemonGrpcOptions(opt);
  if (!grpc_options.ok()) {
    fprintf(stderr, "sluice-agent: %s\n", std::string(grpc_options.status().message()).c_str());
    return 1;
  }
  if (opt.check_config) {
    printf("sluice-agent: %s: configuration OK\n", opt.config.c_str());
    return 0;
  }
  AdoptCloudState(&*config);
  if (config->datapath == Datapath::kVswitch) return RunVswitch(opt, *grpc_options, *config);
  std::string error;
  if (port::InitEal(opt.eal_argc, argv, &error) < 0) {
    fprintf(stderr, "sluice-agent: %s\n", error.c_str());
    return 1;
  }
  rte_mempool* pool = port::CreatePacketPool("agent_pool", 8191, &error);
  if (pool == nullptr) {
    fprintf(stderr, "sluice-agent: %s\n", error.c_str());
    return 1;
  }
  PortMap ports;
  if (!port::OpenPort(config->uplink, pool, &ports.uplink_port, &error)) {
    fprintf(stderr, "sluice-agent: uplink: %s\n", error.c_str());
    return 1;
  }
  ports.uplink_mac = port::PortMac(ports.uplink_port);
  // GRE too: what an Open vSwitch host sends on the Fastpath (it cannot send IPIP or GUE).
  ports.inbound_tunnels = {flow::Tunnel::kIpip, flow::Tunnel::kGue, flow::Tunnel::kGre};
  for (size_t v = 0; v < config->vms.size();) {
    const VmConfig& vm = config->vms[v];
    uint16_t id = 0;
    if (!port::OpenPort(vm.port, pool, &id, &error)) {
      if (!vm.attached_at_runtime) {
        fprintf(stderr, "sluice-agent: VM %s: %s\n", vm.name.c_str(), error.c_str());
        return 1;
      }
      // A VM of the cloud state whose port is gone (it stopped while the agent was down):
      // the others start; the hook attaches it again when it runs.
      std::string undo;
      const std::string name = port::DeviceName(vm.port);
      if (rte_eth_dev_get_port_by_name(name.c_str(), &id) == 0 && !port::RemovePort(id, &undo)) {
        error += "; removing the probed device: " + undo;
      }
      fprintf(stderr,
              "sluice-agent %s: error: VM %s (attached at runtime, from the cloud state) not "
              "attached again: %s\n",
              config->name.c_str(), vm.name.c_str(), error.c_str());
      ForgetVm(&*config, std::string(vm.name));
      continue;
    }
    ports.vm_ports.push_back(id);
    ports.vm_port_macs.push_back(port::PortMac(id));
    ++v;
  }
  // Dynamic SNAT chunks this host still holds (a restart): they join the config before the
  // flow table is restored, so flows on their ports are kept.
  std::unique_ptr<GrpcSnatAllocator> allocator = ConnectSnatAllocator(&*config);
  std::string note;
  absl::StatusOr<std::unique_ptr<NatFlowTable>> flows =
      NatFlowTable::OpenFile(config->nat.flow_state_file, config->nat.flow_capacity, &note);
  if (!flows.ok()) {
    fprintf(stderr, "sluice-agent: %s\n", std::string(flows.status().message()).c_str());
    return 1;
  }
  AgentDataPath agent(*config, ports, std::move(*flows));
  fprintf(stderr, "sluice-agent %s: flow state %s: %u flow(s) found, %u kept%s%s\n",
          config->name.c_str(), config->nat.flow_state_file.c_str(), agent.flows_restored(),
          agent.flows_kept(), note.empty() ? "" : "; ", note.c_str());

  // The rules also go to the rte_flow NIC executor (placed in the NIC where the port takes
  // them, counted with the port's reason where not); the software executor keeps them all.
  // So do established NAT flows, offered by the data path through lock-free rings.
  nic::DpdkFlowApi flow_api;
  nic::NicExecutor nic_executor(&flow_api, {.default_port = ports.uplink_port,
                                            .gue_port = flow::kDefaultGuePort});
  AgentNicRules nic_rules(&nic_executor, *config, ports, flow::kDefaultGuePort);
  agent.SetRuleListener([&nic_rules](const std::vector<flow::Rule>& rules) {
    nic_rules.Post(rules);
  });
  agent.SetFlowOffload(nic_rules.channel());
  std::jthread nic_thread([&nic_rules](std::stop_token stop) {  // joined on every return
    // COUNT readings (rte_flow_query per NIC rule) every 50 ticks, ~1 s: per-flow stats and
    // "the NIC still carries it" for the data path's idle timers, never on the data path.
    constexpr int kTicksPerCountSweep = 50;
    for (int tick = 0; !stop.stop_requested(); ++tick) {
      nic_rules.Sync();
      nic_rules.SyncFlows();
      if (tick % kTicksPerCountSweep == 0) nic_rules.QueryCounters();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a control-thread tick
    }
  });

  // Health checks of the endpoints; verdicts go to the muxes of health_report: from the
  // reporter's own threads.
  absl::StatusOr<std::unique_ptr<AgentHealth>> health = StartAgentHealth(*config);
  if (!health.ok()) {
    fprintf(stderr, "sluice-agent: health checks: %s\n",
            std::string(health.status().message()).c_str());
    return 1;
  }

  DataPathRuntime data_path_runtime(
      &agent, *config,
      {.pool = pool, .boot_ports = ports, .nic_rules = &nic_rules, .stopping = &g_stop});
  HealthCheckedRuntime runtime(&data_path_runtime, health->get(), *config);
  AgentService service(&runtime, *config);
  KeepCloudState(&service, config->cloud_state_file);
  std::unique_ptr<grpc::Server> grpc_server;
  int grpc_tcp_port = 0;
  if (!opt.grpc_socket.empty() || !opt.grpc_listen.empty()) {
    absl::StatusOr<std::unique_ptr<grpc::Server>> started =
        StartGrpcServer(*grpc_options, {&service}, &grpc_tcp_port);
    if (!started.ok()) {
      fprintf(stderr, "sluice-agent: %s\n", std::string(started.status().message()).c_str());
      return 1;
    }
    grpc_server = std::move(*started);
    fprintf(stderr, "sluice-agent %s: %s\n", config->name.c_str(),
            DescribeGrpcServer(*grpc_options, grpc_tcp_port).c_str());
  }

  // Dynamic SNAT leasing on its own control thread (allocator calls wait for every mux).
  std::unique_ptr<SnatLeaseLoop> lease_loop;
  if (allocator) {
    lease_loop = std::make_unique<SnatLeaseLoop>(*config, allocator.get(), &service, &runtime);
  }
  const SnatLeaseClient* lease_stats = lease_loop ? &lease_loop->client() : nullptr;

  StatsServer stats;
  if (!opt.stats_socket.empty()) {
    absl::Status s = stats.Start(opt.stats_socket, [&](const std::string& request) {
      if (request == "nic-rules") return nic_rules.Testpmd();
      if (request != "stats") return std::string("{\"error\":\"unknown request\"}");
      return StatsJson(agent, nic_rules, lease_stats, **health, data_path_runtime);
    });
    if (!s.ok()) {
      fprintf(stderr, "sluice-agent: %s\n", std::string(s.message()).c_str());
      return 1;
    }
  }
  auto metrics_server = metrics::ServeDaemonMetrics(
      opt.metrics_listen, [&] { return StatsJson(agent, nic_rules, lease_stats, **health, data_path_runtime); });
  if (!metrics_server.ok()) {
    fprintf(stderr, "sluice-agent: %s\n", std::string(metrics_server.status().message()).c_str());
    return 1;
  }
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  fprintf(stderr, "sluice-agent %s: %zu VM(s), %zu endpoint(s), PA %s\n", config->name.c_str(),
          config->vms.size(), config->endpoints.size(),
          Ipv4ToString(config->address.addr).c_str());

  constexpr uint16_t kBurst = 32;
  rte_mbuf* pkts[kBurst];
  port::IdleBackoff backoff;
  uint64_t next_housekeeping = 0;
  bool announced_ready = false;
  while (!g_stop) {
    agent.AdoptConfig();  // between bursts: a config published by the gRPC service
    uint64_t now = MonotonicNs();
    if (now >= next_housekeeping) {
      agent.Housekeeping(pool, now);
      next_housekeeping = now + 100'000'000;
      if (agent.ready() && !announced_ready) {
        announced_ready = true;
        fprintf(stderr, "sluice-agent %s: gateway resolved, rules installed, ready\n",
                config->name.c_str());
      }
    }
    uint32_t received = 0;
    for (size_t p = 0; p < agent.ports().size(); ++p) {
      uint16_t n = rte_eth_rx_burst(agent.ports()[p]->port_id, 0, pkts, kBurst);
      if (n > 0) agent.ProcessBurst(p, pkts, n, now);
      received += n;
    }
    agent.FlushAll();
    if (received == 0) {
      backoff.Idle();
    } else {
      backoff.Busy();
    }
  }
  fprintf(stderr, "sluice-agent %s: stopping\n", config->name.c_str());
  // Leased chunks stay leased: a restarted agent adopts them (ListLeases above).
  if (lease_loop) lease_loop->Stop();
  service.Shutdown();
  if (grpc_server) grpc_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  stats.Stop();
  nic_thread.request_stop();
  nic_thread.join();
  nic_executor.RemoveAll();
  for (const auto& port : agent.ports()) port::ClosePort(port->port_id);
  return 0;
}

}  // namespace
}  // namespace sluice::agent

int main(int argc, char** argv) { return sluice::agent::Run(argc, argv); }
