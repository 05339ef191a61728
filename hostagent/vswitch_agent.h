// sluice-agent's vswitch mode (agent.datapath: vswitch): the VMs sit on an Open vSwitch bridge
// in the userspace datapath, and the agent's static packet walks (inbound GRE decap + VIP→DIP,
// DSR return, the VMs' gateway ARP) run there as OpenFlow flows programmed through vswitch/.
// Packets no flow takes go to a slow-path port the agent reads and counts by reason.
// Control plane only: no DPDK here.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/json_writer.h"
#include "hostagent/config.h"
#include "hostagent/grpc_service.h"
#include "hostagent/nat_flow_table.h"
#include "hostagent/rules.h"
#include "hostagent/vswitch_fastpath.h"
#include "offload/packet/fastpath_redirect.h"
#include "vswitch/executor.h"
#include "vswitch/ovs_instance.h"

namespace sluice::agent {

/// OpenFlow port numbers of the agent's bridge (requested with ofport_request).
inline constexpr uint32_t kVswitchUplinkOfport = 1;
/// The boot config's VM v is kVswitchFirstVmOfport + v; a VM attached at runtime takes the
/// lowest free number up to kVswitchLastVmOfport.
inline constexpr uint32_t kVswitchFirstVmOfport = 2;
inline constexpr uint32_t kVswitchLastVmOfport = 299;
inline constexpr uint32_t kVswitchGreOfport = 300;
inline constexpr uint32_t kVswitchSlowPathOfport = 301;
/// VLAN id of a miss of table 1 (a reply of a shared DIP:port without conntrack state);
/// misses of table 0 carry their ingress OpenFlow port as VLAN id.
inline constexpr uint16_t kReplyMissVlan = 4000;
/// VLAN id of a miss of table 2: GRE to a SNAT VIP without a matching SNAT connection.
inline constexpr uint16_t kSnatReplyMissVlan = 4001;
/// VLAN id of a Fastpath redirect (UDP to port 6090 of a local PA from the uplink): not a
/// miss, the agent decodes it and installs the connection's host-to-host flows.
inline constexpr uint16_t kRedirectVlan = 4002;
/// Table 4: a SNAT'd packet after ct(commit,nat) — to the router, to a Fastpath peer, or, if
/// conntrack found no free port in the lease (the source is still the DIP), dropped and
/// counted as the VM's snat_ports_exhausted.
inline constexpr uint8_t kSnatOutTable = 4;
/// Priority of the per-connection Fastpath flows (above the endpoints' rules, below base).
inline constexpr uint16_t kFastpathFlowPriority = 200;
/// Conntrack zones: NAT of inbound connections to shared DIP:ports, and SNAT.
inline constexpr uint16_t kEndpointCtZone = 1;
inline constexpr uint16_t kSnatCtZone = 2;

/// Why a packet reached the slow-path port: no flow took it.
enum class VswitchMiss : uint8_t {
  kVmNoRule = 0,           ///< A VM's packet that is no reply of a local endpoint (outbound
                           ///< connections: SNAT and Fastpath are not translated in OVS yet).
  kReplyNoConntrackState,  ///< A reply from a shared DIP:port with no conntrack entry.
  kTunnelNoEndpoint,       ///< Decapsulated GRE to no local VIP:port/protocol.
  kUplinkNoRule,           ///< From the uplink and not GRE to a local PA or ARP (IPIP or GUE
                           ///< from a mux whose backend is not `encap: gre`, redirects).
  kSnatReplyNoState,       ///< GRE to a SNAT VIP that is no reply of a SNATed connection.
  kUnknownPort,            ///< Untagged, or tagged with no port of the bridge.
  kCount
};
inline constexpr size_t kNumVswitchMisses = static_cast<size_t>(VswitchMiss::kCount);
inline constexpr std::array<std::string_view, kNumVswitchMisses> kVswitchMissNames = {
    "vm_no_rule",     "reply_no_conntrack_state",      "tunnel_no_endpoint",
    "uplink_no_rule", "snat_reply_no_conntrack_state", "unknown_port"};

/// The MAC of the bridge's LOCAL port, the host's MAC on the underlay: 02:53 + the host PA.
/// It must differ from the uplink interface's own MAC, or the host kernel would also take
/// (and answer with ICMP) the GRE that OVS decaps.
flow::MacAddr BridgeMac(uint32_t host_pa);

/// The miss reason of a frame read from the slow-path port whose VLAN id is `vlan` (0 =
/// untagged).
VswitchMiss ClassifyMiss(uint16_t vlan);

/// The bridge port of a VM's `port`: a kernel interface name as it is, or the devargs the
/// libvirt hook sends: an af_packet/af_xdp/tap/pcap vdev → its `iface` (a system port); a
/// vhost-user socket QEMU serves (`net_vhost...,iface=<socket>,client=1`) →
/// `dpdkvhostuserclient` with `vhost-server-path` (needs the DPDK build of ovs-vswitchd).
/// INVALID_ARGUMENT / FAILED_PRECONDITION (QEMU as vhost-user client) otherwise.
absl::StatusOr<vswitch::PortSpec> VmBridgePort(const std::string& port);

/// Whether `vm`'s port can join the bridge now: it names a bridge port (VmBridgePort) and, for
/// a kernel interface, the interface exists. FAILED_PRECONDITION naming the VM otherwise.
absl::Status CheckVmBridgePort(const VmConfig& vm);

/// What the bridge of `config` looks like: ports, IR port map, executor config (base flows,
/// the VMs' gateway ARP answers, miss tagging). `bridge_mac` is the LOCAL port's MAC (the
/// host's MAC on the underlay), `vm_port_macs` the bridge-side interfaces' MACs (what each
/// VM's gateway answers with).
struct VswitchPlan {
  vswitch::BridgeSpec bridge;
  vswitch::OvsExecutorConfig executor;
  PortMap ports;
  std::vector<uint32_t> vm_ofports;  ///< Parallel to AgentConfig::vms.
};
/// `vm_ofports` (parallel to config.vms) empty: VM v gets kVswitchFirstVmOfport + v.
VswitchPlan PlanVswitch(const AgentConfig& config, const flow::MacAddr& bridge_mac,
                        const std::vector<flow::MacAddr>& vm_port_macs,
                        std::vector<uint32_t> vm_ofports = {});

/// Table of the SNAT chunk picks (several leases of one VM and protocol).
inline constexpr uint8_t kSnatPickTable = 3;
/// More hash links than this for one VM and protocol: one link per lease, whatever its size.
inline constexpr uint32_t kMaxSnatLinks = 64;

/// One SNAT port range of a VM and protocol as OVS NATs to it.
struct SnatRange {
  uint32_t vip = 0;
  uint16_t first = 0, last = 0;
  uint32_t weight = 1;  ///< Hash links: its size over the greatest common divisor of sizes.
  bool operator==(const SnatRange&) const = default;
};
/// The leases of `dip` and `proto` (static and dynamic) in VIP and port order, adjacent ones
/// (same VIP, one ending where the next starts) joined into one range.
std::vector<SnatRange> SnatRangesOf(const AgentConfig& config, uint32_t dip, uint8_t proto);

/// SNAT of the VMs' outbound connections through OVS conntrack, from `config.snat_leases`:
/// table 0 sends a leased VM's new and established packets through
/// `ct(commit,zone=2,nat(src=VIP:first-last))` to the router. A VM with several leases of a
/// protocol (dynamic chunks) gets `multipath` (hash of the connection, links weighted by
/// range size) into reg1 and one table-3 flow per link with that range's ct; an established
/// connection keeps the binding conntrack recorded, so the range set can change under it.
/// GRE to the host PA for a lease's VIP (or a VIP the SNAT allocator leases from, so a
/// draining chunk's replies still arrive) goes through `ct(zone=2,nat,table=2)`, and table 2
/// delivers replies (`+trk+rpl`) to the VM whose DIP the un-NAT restored.
std::vector<vswitch::OvsFlow> SnatFlows(const AgentConfig& config, const VswitchPlan& plan,
                                        const flow::MacAddr& gateway_mac);

/// The connections of `ovs-appctl dpctl/dump-conntrack` text as the agent's flows: zone 2
/// (kSnatCtZone) entries are SNAT flows (DIP:port → VIP:port from the reply tuple), zone 1
/// (kEndpointCtZone) entries inbound flows of shared DIP:ports. `vm_index` from `config.vms`;
/// entries of other zones, protocols or DIPs are skipped.
std::vector<NatFlow> ConntrackFlows(std::string_view dump, const AgentConfig& config);

/// Sets `fastpath_pa` of the conntrack connections (`flows`, from ConntrackFlows) that have a
/// Fastpath flow here, and adds one inbound flow per Fastpath connection of a stateless
/// endpoint (those have no conntrack entry).
void AnnotateFastpath(const AgentConfig& config, const std::vector<FastpathConnection>& fastpath,
                      std::vector<NatFlow>* flows);

/// Why a redirect was not applied (the DPDK agent's drop names).
enum class RedirectOutcome : uint8_t {
  kAppliedSource = 0,   ///< This host owns the flow's SNAT port: its VM's packets go direct.
  kAppliedDestination,  ///< This host has the chosen DIP: its replies go direct.
  kMalformed,           ///< Bad length/magic/version/encap, or PAs outside the underlay.
  kBadAuth,             ///< HMAC does not verify (or no fastpath_key configured).
  kStale,               ///< Timestamp more than 60 s off.
  kNotOurs,             ///< Neither side of the flow is on this host.
  kCount
};

/// The flows a verified redirect `r` asks of this host (`config`, its VMs on OpenFlow ports
/// `vm_ofports`), with `cookie`: on the source side, table 4 sends the VM's SNAT'd packets
/// of the flow in GRE to the DIP's PA; on the destination side, the DIP's replies of the
/// flow are rewritten to the VIP:port (or un-NATed by conntrack for a shared DIP:port, in
/// table 1) and sent in GRE to the source host. OVS can only send GRE: every Fastpath peer
/// of an OVS host must decap it (sluice-agent does in both modes). Each flow's idle_timeout
/// is the NAT idle timeout of its protocol. Returns how the redirect applies here
/// (kAppliedSource, kAppliedDestination or kNotOurs; a redirect between two VMs of this host
/// is not ours: they need no Fastpath).
RedirectOutcome FastpathFlows(const AgentConfig& config, const std::vector<uint32_t>& vm_ofports,
                              const packet::FastpathRedirect& r, uint64_t cookie,
                              std::vector<vswitch::OvsFlow>* flows);

/// Stages `config`'s rules (conntrack NAT for shared DIP:ports) on `executor` in place of
/// what it held. Returns the number of rules OVS refused (their reasons are in the statuses).
size_t StageAgentRules(const AgentConfig& config, const PortMap& ports,
                       const flow::MacAddr& gateway_mac, vswitch::OvsExecutor* executor);

class VswitchAgent : public AgentRuntime {
 public:
  /// Attaches to (or starts) the private OVS of `config.vswitch`, builds the bridge and its
  /// ports, gives the bridge's LOCAL port the host PA and the VMs' PAs (the GRE tunnel
  /// endpoints), resolves the router's MAC, reconciles the flows (flows already right are
  /// kept with their counters and connections) and starts reading the slow-path port.
  static absl::StatusOr<std::unique_ptr<VswitchAgent>> Start(const AgentConfig& config);
  ~VswitchAgent() override;

  // AgentRuntime: each accepted config is one OpenFlow bundle.
  bool PublishConfig(const AgentConfig& next, std::string* error) override;
  uint64_t generation() const override { return generation_.load(); }
  void ReclaimRetired() override {}
  /// VMs added at runtime get a bridge port through OVSDB; removed ones lose it.
  bool PlugsVmPorts() const override { return true; }
  AgentRuntimeStatus Status() const override;
  /// The per-connection state lives in OVS conntrack: its SNAT and shared-endpoint entries.
  bool CopyFlows(size_t limit, uint32_t dip, std::vector<NatFlow>* flows,
                 uint64_t* total) override;

  /// The stats socket's JSON document; `more` adds the daemon's other top-level fields
  /// (health checks, SNAT allocator).
  std::string StatsJson(const std::function<void(JsonWriter&)>& more = nullptr) const;
  const vswitch::ReconcileReport& start_report() const { return start_report_; }
  uint64_t Misses(VswitchMiss why) const { return misses_[static_cast<size_t>(why)].load(); }
  uint64_t Redirects(RedirectOutcome o) const { return redirects_[static_cast<size_t>(o)].load(); }

 private:
  explicit VswitchAgent(const AgentConfig& config) : config_(config) {}
  absl::Status Setup();
  absl::Status ResolveGatewayMac();
  absl::Status OpenSlowPath();
  /// Stages `config`'s rules and SNAT flows on the bridge of `plan` (not yet committed).
  void Stage(const AgentConfig& config, const VswitchPlan& plan);
  /// The bridge-side MAC of a VM's port (what its gateway answers with).
  absl::StatusOr<flow::MacAddr> VmPortMac(const VmConfig& vm) const;
  /// VMs of a config about to be published that are not running (indices into its vms) and
  /// running VMs it no longer has (indices into config_.vms), with the next bridge plan.
  struct VmChange {
    std::vector<size_t> added, removed;
    std::vector<flow::MacAddr> macs;  ///< Parallel to the next config's vms.
    VswitchPlan plan;
  };
  absl::Status PlanVmChange(const AgentConfig& next, VmChange* change) const;
  /// Adds the new VMs' ports (OVSDB) and PAs (LOCAL); on error takes them away again.
  absl::Status PlugVms(const AgentConfig& next, const VmChange& change);
  /// Removes `config.vms[v]`'s port and PA for each v (their flows must be gone).
  void UnplugVms(const AgentConfig& config, const std::vector<size_t>& vms);
  void ReadSlowPath(std::stop_token stop);
  /// Decodes, checks and applies a redirect frame read from the slow-path port.
  void HandleRedirect(const uint8_t* frame, size_t len);
  /// Refreshes the flows' counters and OVS's datapath stats (at most every 250 ms).
  void Refresh() const;

  AgentConfig config_;
  std::unique_ptr<vswitch::OvsInstance> ovs_;
  std::unique_ptr<vswitch::OfctlChannel> channel_;
  std::unique_ptr<vswitch::OvsExecutor> executor_;
  VswitchPlan plan_;
  flow::MacAddr gateway_mac_{};
  flow::MacAddr bridge_mac_{};
  std::vector<flow::MacAddr> vm_macs_;  ///< Parallel to config_.vms: bridge-side MACs.
  vswitch::ReconcileReport start_report_;
  std::atomic<uint64_t> generation_{1};
  std::atomic<bool> ready_{false};
  int slow_fd_ = -1;
  std::array<std::atomic<uint64_t>, kNumVswitchMisses> misses_{};
  std::atomic<uint64_t> slow_path_packets_{0};
  std::atomic<uint64_t> redirects_received_{0};
  std::array<std::atomic<uint64_t>, static_cast<size_t>(RedirectOutcome::kCount)> redirects_{};
  std::atomic<uint64_t> fastpath_install_errors_{0};
  /// How long the last / slowest Fastpath bundle took (ovs-ofctl: connect, bundle commit),
  /// microseconds.
  std::atomic<uint64_t> fastpath_install_us_last_{0}, fastpath_install_us_max_{0};
  uint64_t fastpath_cookie_seq_ = 0;  ///< Guarded by mu_.
  /// The Fastpath flows on the bridge by DumpedFlow::Identity(): installed by this process or
  /// adopted from the bridge at start (the same from then on). Flows OVS idled out are
  /// forgotten at the next Refresh; a config change removes those it invalidates. Guarded by
  /// mu_.
  mutable std::map<std::string, FastpathConnection> fastpath_;
  std::atomic<uint64_t> fastpath_adopted_{0};  ///< Found valid on the bridge at start.
  /// Removed because the config no longer installs them (at start or after a change).
  std::array<std::atomic<uint64_t>, kNumFastpathStale> fastpath_stale_{};
  /// Removes the Fastpath flows `config_` no longer installs (after a config change).
  void RemoveStaleFastpathFlows();
  std::jthread slow_path_thread_;

  mutable std::mutex mu_;  ///< Guards config_, executor_ and the refreshed values below.
  struct Refreshed {
    std::chrono::steady_clock::time_point at{};
    uint64_t inbound = 0, dsr_return = 0, stateful_return = 0, snat_out = 0, snat_in = 0;
    uint64_t fastpath = 0, fastpath_flows = 0;
    std::vector<uint64_t> snat_exhausted;  ///< Per VM: packets conntrack found no port for.
    vswitch::DatapathStats datapath;
    std::string datapath_error;
    std::string hw_offload = "false";
    bool hw_offload_read = false;
  };
  mutable Refreshed refreshed_;
};

}  // namespace sluice::agent
