// What a sluice-agent serves on its hypervisor: the uplink, the local VMs, the VIP
// endpoints whose DIPs live here, the SNAT port leases of those VMs, the NAT flow table
// (timers, state file) and the Fastpath key.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/net_text.h"
#include "hostagent/health.h"
#include "hostagent/health_report.h"

namespace sluice::agent {

struct VmConfig {
  std::string name;
  std::string port;                ///< DPDK devargs of the VM's port (VF representor, veth);
                                   ///< in vswitch mode the interface added to the bridge.
  std::array<uint8_t, 6> mac{};    ///< The VM's MAC.
  uint32_t dip = 0;                ///< The VM's address.
  uint32_t pa = 0;                 ///< Underlay address muxes encapsulate to for this VM.
  uint32_t gateway = 0;            ///< The VM's default gateway; the agent answers ARP for it.
  /// Not in the YAML: added by AttachVm while running (or restored from the cloud state file
  /// at start); its port was opened for it and goes with it, and the cloud state keeps it.
  bool attached_at_runtime = false;

  bool operator==(const VmConfig&) const = default;
};

struct EndpointConfig {
  uint32_t vip = 0;
  uint16_t port = 0;
  uint8_t proto = 6;
  uint32_t dip = 0;
  uint16_t dip_port = 0;
  /// `health:` of the endpoint; its address is the DIP, its port defaults to dip_port.
  std::optional<HealthCheckConfig> health;
};

/// A range of VIP ports leased to one local DIP for SNAT of its outbound connections
/// (the muxes send replies to VIP:port_start..port_start+port_count-1 to this host).
struct SnatLeaseConfig {
  uint32_t dip = 0;
  uint32_t vip = 0;
  uint8_t proto = 6;
  uint16_t port_start = 0;
  uint16_t port_count = 0;
  /// Leased by this agent from the SNAT allocator (snat_allocator:), not configured:
  /// SetSnatLeases and AttachVm replace only the others.
  bool dynamic = false;
};

/// A VM whose SNAT ports of vip/proto come from the SNAT allocator in chunks.
struct SnatDynamicLeaseConfig {
  uint32_t dip = 0;
  uint32_t vip = 0;
  uint8_t proto = 6;
};

/// `snat_allocator:` — dynamic SNAT leasing from sluice-snatd (hostagent/snat_lease_client.h).
struct SnatAllocatorClientConfig {
  std::string address;              ///< The allocator's gRPC address ("unix:/path", "host:port").
  uint32_t low_water = 16;          ///< Fewer free ports than this: request a chunk.
  uint32_t return_idle_s = 60;      ///< A chunk unused this long is returned (one stays).
  uint32_t check_interval_ms = 200; ///< How often the control thread looks.
  uint32_t retry_interval_ms = 1000;  ///< After a refused request.
  uint32_t timeout_ms = 5000;       ///< Per allocator call (a grant waits for every mux).
  DialOptions dial;                 ///< `tls:` towards the allocator on TCP.
  std::vector<SnatDynamicLeaseConfig> leases;
};

/// The per-flow NAT table: where it lives, how big it is and when entries age out.
struct NatConfig {
  /// File the flow table is mapped from, so a restarted agent keeps its connections.
  /// Default /dev/shm/sluice-<agent name>.flows; empty in a config built in code means
  /// anonymous memory (nothing survives a restart).
  std::string flow_state_file;
  uint32_t flow_capacity = 65536;
  uint32_t tcp_syn_timeout_s = 30;           ///< Handshake not completed.
  uint32_t tcp_established_timeout_s = 300;  ///< Idle established connection.
  uint32_t tcp_closing_timeout_s = 60;       ///< One side sent FIN.
  uint32_t tcp_closed_timeout_s = 10;        ///< Both FINs or an RST: late packets still pass.
  uint32_t udp_timeout_s = 60;               ///< Idle UDP flow.
  /// A SNAT port is handed out again only this long after its flow closed or idled out.
  uint32_t snat_port_reuse_delay_s = 60;
};

/// Which data path carries the VMs' packets.
enum class Datapath : uint8_t {
  kDpdk,     ///< The agent's own DPDK ports and software executor (rte_flow mirror).
  kVswitch,  ///< An Open vSwitch bridge (userspace datapath) programmed through vswitch/.
};

/// `vswitch:` — the OVS bridge of a vswitch-mode agent. `agent.uplink` and `vms[].port` are
/// then kernel interface names that become the bridge's ports.
struct VswitchConfig {
  std::string bridge = "br-sluice";
  /// Private OVS run directory (conf.db, db.sock, vswitchd.ctl, logs). An ovs-vswitchd
  /// already answering there is used; otherwise the agent starts one (if start_ovs) and
  /// leaves it running when it exits, so flows and conntrack state outlive a restart.
  std::string run_dir = "/run/sluice/ovs";
  bool start_ovs = true;
  bool dpdk = false;        ///< Start the DPDK build of ovs-vswitchd when hugepages are free.
  /// With dpdk: other_config:pmd-cpu-mask ("0x2": the PMD threads' cores; "" = OVS default).
  std::string pmd_cpu_mask;
  /// With dpdk: other_config:pmd-maxsleep, 0..10000 us a PMD thread may sleep per idle
  /// iteration (0 = OVS's default, busy polling).
  uint32_t pmd_max_sleep_us = 0;
  bool hw_offload = false;  ///< other_config:hw-offload (see vswitch/README.md).
  /// OVS internal port the bridge sends misses to; the agent reads it (AF_PACKET).
  std::string slow_path_port = "sl-slowpath";
  bool operator==(const VswitchConfig&) const = default;
};

struct AgentConfig {
  std::string name;
  Datapath datapath = Datapath::kDpdk;
  VswitchConfig vswitch;   ///< Used when datapath == kVswitch.
  std::string uplink;      ///< DPDK devargs of the uplink (SR-IOV PF in production); in
                           ///< vswitch mode the kernel interface added to the bridge.
  Ipv4Prefix address;      ///< Host PA and underlay prefix.
  uint32_t gateway = 0;    ///< Router for DSR replies.
  std::vector<VmConfig> vms;
  std::vector<EndpointConfig> endpoints;
  std::vector<SnatLeaseConfig> snat_leases;
  std::optional<SnatAllocatorClientConfig> snat_allocator;
  /// `agent.cloud_state_file`: where the endpoints, static SNAT leases and runtime-attached VMs
  /// the controller set over gRPC are kept, so a restarted agent serves them at once
  /// (hostagent/cloud_state.h).
  /// Empty: not kept (a restarted agent serves the YAML's until the controller calls).
  std::string cloud_state_file;
  NatConfig nat;
  /// HMAC-SHA256 key of Fastpath redirects, shared with the muxes; unset = Fastpath off
  /// (every redirect is dropped as unauthenticated).
  std::optional<std::array<uint8_t, 32>> fastpath_key;
  /// `health_report:` — the muxes the endpoints' health verdicts are pushed to; no muxes =
  /// checks run (and show in stats) but nobody is told.
  HealthReportConfig health_report;
};

/// Reads and checks an agent YAML file; errors name file, line and field.
absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path);
absl::StatusOr<AgentConfig> ParseAgentConfig(const std::string& yaml, const std::string& origin);

}  // namespace sluice::agent
