// sluice-vhost-relay: joins a lab VM to a vhost-user port of ovs-vswitchd-dpdk (see
// vhost_relay.h and deploy/lab/README.md).
//
//   sluice-vhost-relay <EAL args> -- --vhost DEVARGS --kernel DEVARGS
//       [--stats-socket PATH] [--max-sleep-us N]
//
// --vhost is the net_virtio_user port (e.g. "net_virtio_user_vm3,path=/run/x/vm3.sock,server=1":
// the relay serves the socket, OVS's dpdkvhostuserclient port connects to it), --kernel the
// port on the VM's veth ("net_af_packet_vm3,iface=vm3"). The EAL needs hugepages (vhost-user
// shares the relay's packet memory with OVS by file descriptor): e.g. "--in-memory
// --single-file-segments -m 64". SIGTERM/SIGINT stop it: ports closed, counters printed,
// exit 0 (also while it still waits for OVS: with server=1 the probe blocks in accept()).
// The stats socket answers "stats" with JSON: ready (false until both ports run), each
// side's counters, the vhost link.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include <rte_eal.h>
#include <rte_ethdev.h>

#include "common/json_writer.h"
#include "common/stats_server.h"
#include "offload/port/eal.h"
#include "offload/port/port.h"
#include "tests/support/vhost_relay.h"

namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop.store(true); }

struct RelayOptions {
  std::string vhost;
  std::string kernel;
  std::string stats_socket;
  uint32_t max_sleep_us = 1000;
};

bool ParseArgs(int argc, char** argv, RelayOptions* o) {
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) {
      fprintf(stderr, "sluice-vhost-relay: %s needs a value\n", arg.c_str());
      return false;
    }
    const std::string value = argv[++i];
    if (arg == "--vhost") {
      o->vhost = value;
    } else if (arg == "--kernel") {
      o->kernel = value;
    } else if (arg == "--stats-socket") {
      o->stats_socket = value;
    } else if (arg == "--max-sleep-us") {
      char* end = nullptr;
      const unsigned long v = strtoul(value.c_str(), &end, 10);
      if (end == value.c_str() || *end != '\0' || v == 0 || v > 100000) {
        fprintf(stderr, "sluice-vhost-relay: --max-sleep-us '%s': expected 1..100000\n",
                value.c_str());
        return false;
      }
      o->max_sleep_us = static_cast<uint32_t>(v);
    } else {
      fprintf(stderr, "sluice-vhost-relay: unknown option %s\n", arg.c_str());
      return false;
    }
  }
  if (o->vhost.empty() || o->kernel.empty()) {
    fprintf(stderr,
            "usage: sluice-vhost-relay <EAL args> -- --vhost DEVARGS --kernel DEVARGS "
            "[--stats-socket PATH] [--max-sleep-us N]\n");
    return false;
  }
  return true;
}

void WriteSide(sluice::JsonWriter& w, const char* key, const std::string& devargs,
               const sluice::testing::RelaySideCounters& c, bool link_up) {
  w.Key(key)
      .BeginObject()
      .Field("port", devargs)
      .Field("link_up", link_up)
      .Field("rx_packets", c.rx_packets.Get())
      .Field("rx_bytes", c.rx_bytes.Get())
      .Field("tx_packets", c.tx_packets.Get())
      .Field("tx_bytes", c.tx_bytes.Get())
      .Field("tx_dropped", c.tx_dropped.Get())
      .EndObject();
}

}  // namespace

int main(int argc, char** argv) {
  // SIGTERM/SIGINT only ever reach the main thread (the EAL's and the stats server's threads
  // start with them blocked), so they interrupt its wait for the vhost-user peer.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::string error;
  const int consumed = sluice::port::InitEal(argc, argv, &error);
  if (consumed < 0) {
    fprintf(stderr, "sluice-vhost-relay: %s\n", error.c_str());
    return 1;
  }
  // rte_eal_init took the EAL arguments and the "--"; argv[consumed] is the program name.
  int rest = argc - consumed - 1;
  char** rest_argv = argv + consumed + 1;
  RelayOptions options;
  if (!ParseArgs(rest, rest_argv, &options)) {
    rte_eal_cleanup();
    return 2;
  }
  // In server mode virtio-user's probe waits in accept() until OVS connects: the stats socket
  // answers from the start ("ready": false until both ports run).
  std::atomic<sluice::testing::PortRelay*> running{nullptr};
  uint16_t vhost_port = 0, kernel_port = 0;
  // The vhost link goes up when OVS connects; "nowait" never blocks the stats thread.
  auto link_up = [](uint16_t port) {
    rte_eth_link link{};
    return rte_eth_link_get_nowait(port, &link) == 0 && link.link_status == RTE_ETH_LINK_UP;
  };
  sluice::StatsServer stats;
  if (!options.stats_socket.empty()) {
    absl::Status s = stats.Start(options.stats_socket, [&](const std::string& request) {
      if (request != "stats") return std::string("{\"error\":\"unknown request\"}");
      sluice::JsonWriter w;
      const sluice::testing::PortRelay* relay = running.load();
      w.BeginObject().Field("ready", relay != nullptr).Field("role", "vhost-relay");
      if (relay == nullptr) {
        w.Field("state", "opening ports (waiting for the vhost-user peer to connect)");
      } else {
        WriteSide(w, "vhost", options.vhost, relay->side(0), link_up(vhost_port));
        WriteSide(w, "kernel", options.kernel, relay->side(1), link_up(kernel_port));
        w.Field("empty_polls", relay->empty_polls());
      }
      w.EndObject();
      return w.str();
    });
    if (!s.ok()) {
      fprintf(stderr, "sluice-vhost-relay: stats socket: %s\n", std::string(s.message()).c_str());
      rte_eal_cleanup();
      return 1;
    }
  }

  struct sigaction sa {};
  sa.sa_handler = OnSignal;  // no SA_RESTART: a signal ends the wait in accept()
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);

  rte_mempool* pool = sluice::port::CreatePacketPool("relay_pool", 4095, &error);
  if (pool == nullptr || !sluice::port::OpenPort(options.vhost, pool, &vhost_port, &error) ||
      !sluice::port::OpenPort(options.kernel, pool, &kernel_port, &error)) {
    stats.Stop();
    rte_eal_cleanup();
    if (g_stop.load()) {
      fprintf(stderr, "sluice-vhost-relay: stopped before its ports were open\n");
      return 0;
    }
    fprintf(stderr, "sluice-vhost-relay: %s\n", error.c_str());
    return 1;
  }

  sluice::testing::PortRelay relay(vhost_port, kernel_port, options.max_sleep_us);
  running.store(&relay);
  fprintf(stderr, "sluice-vhost-relay: relaying %s (port %u) <-> %s (port %u)\n",
          options.vhost.c_str(), vhost_port, options.kernel.c_str(), kernel_port);
  relay.Run(g_stop);

  stats.Stop();
  for (int i = 0; i < 2; ++i) {
    const sluice::testing::RelaySideCounters& c = relay.side(i);
    fprintf(stderr, "sluice-vhost-relay: %s: rx %lu packets, tx %lu packets, tx dropped %lu\n",
            i == 0 ? "vhost" : "kernel", c.rx_packets.Get(), c.tx_packets.Get(),
            c.tx_dropped.Get());
  }
  sluice::port::ClosePort(vhost_port);
  sluice::port::ClosePort(kernel_port);
  rte_eal_cleanup();
  fprintf(stderr, "sluice-vhost-relay: stopped\n");
  return 0;
}
