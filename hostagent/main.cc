// sluice-agent: the host agent. Decapsulates mux traffic for local VMs, rewrites VIP→DIP
// on the way in and DIP→VIP on the way out (DSR, straight to the router).
//
//   sluice-agent <EAL args> -- --config host.yaml [--stats-socket /run/sluice/agent.sock]
#include <csignal>
#include <cstdio>
#include <string>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include "common/daemon_args.h"
#include "common/json_writer.h"
#include "common/net_text.h"
#include "common/stats_server.h"
#include "hostagent/agent.h"
#include "hostagent/config.h"
#include "offload/port/eal.h"
#include "offload/port/port.h"

namespace sluice::agent {
namespace {

volatile std::sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

std::string StatsJson(const AgentDataPath& agent) {
  JsonWriter j;
  uint64_t rx = 0, tx = 0;
  for (const auto& port : agent.ports()) {
    rx += port->rx_packets.Get();
    tx += port->tx.tx_packets.Get();
  }
  const sw::ExecutorCounters& ex = agent.executor().counters();
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
      .Field("executor", "software")
      .Field("rules_installed", agent.installed_rules())
      .Field("executor_rx_packets", ex.rx_packets.Get());
  j.Key("drops").BeginObject();
  uint64_t tx_full = 0;
  for (const auto& port : agent.ports()) tx_full += port->tx.tx_full_drops.Get();
  for (size_t r = 0; r < kNumDropReasons; ++r) {
    uint64_t extra = r == static_cast<size_t>(DropReason::kTxFull) ? tx_full : 0;
    j.Field(kDropReasonNames[r], agent.Drops(static_cast<DropReason>(r)) + extra);
  }
  j.EndObject();
  j.Key("vms").BeginArray();
  for (const auto& port : agent.ports()) {
    if (port->vm_index < 0) continue;
    const VmConfig& vm = agent.config().vms[port->vm_index];
    j.BeginObject()
        .Field("name", vm.name)
        .Field("dip", Ipv4ToString(vm.dip))
        .Field("pa", Ipv4ToString(vm.pa))
        .Field("rx_packets", port->rx_packets.Get())
        .Field("tx_packets", port->tx.tx_packets.Get())
        .EndObject();
  }
  j.EndArray();
  j.EndObject();
  return j.str();
}

int Run(int argc, char** argv) {
  DaemonOptions opt;
  if (!ParseDaemonArgs(argc, argv, &opt)) return 2;
  absl::StatusOr<AgentConfig> config = LoadAgentConfig(opt.config);
  if (!config.ok()) {
    fprintf(stderr, "sluice-agent: %s\n", std::string(config.status().message()).c_str());
    return 1;
  }
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
  for (const VmConfig& vm : config->vms) {
    uint16_t id = 0;
    if (!port::OpenPort(vm.port, pool, &id, &error)) {
      fprintf(stderr, "sluice-agent: VM %s: %s\n", vm.name.c_str(), error.c_str());
      return 1;
    }
    ports.vm_ports.push_back(id);
    ports.vm_port_macs.push_back(port::PortMac(id));
  }
  AgentDataPath agent(*config, ports);

  StatsServer stats;
  if (!opt.stats_socket.empty()) {
    absl::Status s = stats.Start(opt.stats_socket, [&](const std::string& request) {
      if (request != "stats") return std::string("{\"error\":\"unknown request\"}");
      return StatsJson(agent);
    });
    if (!s.ok()) {
      fprintf(stderr, "sluice-agent: %s\n", std::string(s.message()).c_str());
      return 1;
    }
  }
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  fprintf(stderr, "sluice-agent %s: %zu VM(s), %zu endpoint(s), PA %s\n", config->name.c_str(),
          config->vms.size(), config->endpoints.size(),
          Ipv4ToString(config->address.addr).c_str());

  const uint64_t hz = rte_get_tsc_hz();
  auto now_ns = [hz] { return static_cast<uint64_t>(rte_get_tsc_cycles() * (1e9 / hz)); };
  constexpr uint16_t kBurst = 32;
  rte_mbuf* pkts[kBurst];
  port::IdleBackoff backoff;
  uint64_t next_housekeeping = 0;
  bool announced_ready = false;
  while (!g_stop) {
    uint64_t now = now_ns();
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
  stats.Stop();
  for (const auto& port : agent.ports()) port::ClosePort(port->port_id);
  return 0;
}

}  // namespace
}  // namespace sluice::agent

int main(int argc, char** argv) { return sluice::agent::Run(argc, argv); }
