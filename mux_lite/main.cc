// sluice-mux: announces nothing yet (BGP is a later step), load-balances VIP traffic with
// weighted Maglev and encapsulates it to the backends' hosts.
//
//   sluice-mux <EAL args> -- --config mux.yaml [--stats-socket /run/sluice/mux.sock]
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include "common/daemon_args.h"
#include "common/json_writer.h"
#include "common/net_text.h"
#include "common/stats_server.h"
#include "mux_lite/config.h"
#include "mux_lite/mux.h"
#include "offload/port/eal.h"
#include "offload/port/port.h"

namespace sluice::mux {
namespace {

volatile std::sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

std::string StatsJson(const MuxDataPath& mux, const port::TxBuffer& tx, bool ready,
                      uint64_t now_ns) {
  JsonWriter j;
  const MuxCounters& c = mux.counters();
  j.BeginObject()
      .Field("role", "mux")
      .Field("name", mux.config().name)
      .Field("ready", ready)
      .Field("rx_packets", c.rx_packets.Get())
      .Field("tx_packets", tx.tx_packets.Get())
      .Field("vip_packets", c.vip_packets.Get())
      .Field("new_flows", c.new_flows.Get())
      .Field("cached_flow_packets", c.cached_flow_packets.Get())
      .Field("arp_replies_sent", mux.arp().replies_sent.Get())
      .Field("arp_requests_sent", c.arp_requests_sent.Get())
      .Field("flow_table_capacity", mux.flow_table().capacity())
      .Field("flow_table_live", mux.flow_table().CountLive(
                                    static_cast<uint32_t>(now_ns / 1'000'000'000) + 1))
      .Field("flow_table_evictions", mux.flow_table().evictions.Get())
      .Field("bytes_per_flow", FlowTable::BytesPerFlow());
  j.Key("drops").BeginObject();
  for (size_t r = 0; r < kNumDropReasons; ++r) {
    uint64_t extra = r == static_cast<size_t>(DropReason::kTxFull) ? tx.tx_full_drops.Get() : 0;
    j.Field(kDropReasonNames[r], c.drops[r].Get() + extra);
  }
  j.EndObject();
  j.Key("vips").BeginArray();
  for (const auto& vip : mux.vips()) {
    j.BeginObject()
        .Field("vip", Ipv4ToString(vip->config.vip))
        .Field("port", vip->config.port)
        .Field("protocol", L4ProtocolName(vip->config.proto))
        .Field("packets", vip->packets.Get());
    j.EndObject();
  }
  j.EndArray();
  j.Key("backends").BeginArray();
  for (const auto& vip : mux.vips()) {
    for (size_t b = 0; b < vip->config.backends.size(); ++b) {
      const BackendConfig& backend = vip->config.backends[b];
      j.BeginObject()
          .Field("vip", Ipv4ToString(vip->config.vip) + ":" + std::to_string(vip->config.port))
          .Field("dip", Ipv4ToString(backend.dip))
          .Field("host", Ipv4ToString(backend.host))
          .Field("weight", backend.weight)
          .Field("packets", vip->backend_packets[b].Get())
          .Field("flows", vip->backend_flows[b].Get())
          .EndObject();
    }
  }
  j.EndArray();
  j.EndObject();
  return j.str();
}

int Run(int argc, char** argv) {
  DaemonOptions opt;
  if (!ParseDaemonArgs(argc, argv, &opt)) return 2;
  absl::StatusOr<MuxConfig> config = LoadMuxConfig(opt.config);
  if (!config.ok()) {
    fprintf(stderr, "sluice-mux: %s\n", std::string(config.status().message()).c_str());
    return 1;
  }

  std::string error;
  if (port::InitEal(opt.eal_argc, argv, &error) < 0) {
    fprintf(stderr, "sluice-mux: %s\n", error.c_str());
    return 1;
  }
  rte_mempool* pool = port::CreatePacketPool("mux_pool", 8191, &error);
  uint16_t port_id = 0;
  if (pool == nullptr || !port::OpenPort(config->port, pool, &port_id, &error)) {
    fprintf(stderr, "sluice-mux: %s\n", error.c_str());
    return 1;
  }
  std::unique_ptr<MuxDataPath> mux =
      MuxDataPath::Create(*config, port_id, port::PortMac(port_id), pool, &error);
  if (mux == nullptr) {
    fprintf(stderr, "sluice-mux: %s: %s\n", opt.config.c_str(), error.c_str());
    return 1;
  }
  port::TxBuffer tx(port_id);
  std::atomic<bool> ready{false};
  const uint64_t hz = rte_get_tsc_hz();
  auto now_ns = [hz] { return static_cast<uint64_t>(rte_get_tsc_cycles() * (1e9 / hz)); };

  StatsServer stats;
  if (!opt.stats_socket.empty()) {
    absl::Status s = stats.Start(opt.stats_socket, [&](const std::string& request) {
      if (request != "stats") return std::string("{\"error\":\"unknown request\"}");
      return StatsJson(*mux, tx, ready.load(), now_ns());
    });
    if (!s.ok()) {
      fprintf(stderr, "sluice-mux: %s\n", std::string(s.message()).c_str());
      return 1;
    }
  }
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  fprintf(stderr, "sluice-mux %s: serving %zu VIP(s) on port %u (%s), PA %s\n",
          config->name.c_str(), config->vips.size(), port_id, config->port.c_str(),
          Ipv4ToString(config->address.addr).c_str());

  constexpr uint16_t kBurst = 32;
  rte_mbuf* pkts[kBurst];
  port::IdleBackoff backoff;
  uint64_t next_housekeeping = 0;
  while (!g_stop) {
    uint64_t now = now_ns();
    if (now >= next_housekeeping) {
      rte_mbuf* requests[8];
      uint16_t n = mux->ResolveNextHops(now, requests, 8);
      for (uint16_t i = 0; i < n; ++i) tx.Push(requests[i]);
      if (!ready.load(std::memory_order_relaxed) && mux->NextHopsResolved()) {
        ready.store(true);
        fprintf(stderr, "sluice-mux %s: next hops resolved, ready\n", config->name.c_str());
      }
      next_housekeeping = now + 100'000'000;
    }
    uint16_t n = rte_eth_rx_burst(port_id, 0, pkts, kBurst);
    for (uint16_t i = 0; i < n; ++i) {
      if (mux->Process(pkts[i], now) == MuxDataPath::Outcome::kTransmit) {
        tx.Push(pkts[i]);
      } else {
        rte_pktmbuf_free(pkts[i]);
      }
    }
    tx.Flush();
    if (n == 0) {
      backoff.Idle();
    } else {
      backoff.Busy();
    }
  }
  fprintf(stderr, "sluice-mux %s: stopping\n", config->name.c_str());
  stats.Stop();
  port::ClosePort(port_id);
  return 0;
}

}  // namespace
}  // namespace sluice::mux

int main(int argc, char** argv) { return sluice::mux::Run(argc, argv); }
