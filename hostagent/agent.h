// The host agent's data path, one instance per lcore: ARP handling, then the per-flow NAT
// layer (SNAT, replies of VIPs that share a DIP:port, Fastpath), then the software executor
// running the agent's static rules (inbound decap + VIP→DIP, stateless DSR return). Every
// rewrite is a list of IR actions applied by sw::ApplyActions; flow state only chooses the
// list.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "hostagent/config.h"
#include "hostagent/flow_offload.h"
#include "hostagent/flow_rules.h"
#include "hostagent/nat_flow_table.h"
#include "hostagent/rules.h"
#include "hostagent/snat_ports.h"
#include "offload/packet/counter.h"
#include "offload/packet/drop_reason.h"
#include "offload/packet/parse.h"
#include "offload/port/neighbor.h"
#include "offload/port/port.h"
#include "offload/sw/executor.h"

struct rte_mbuf;
struct rte_mempool;

namespace sluice::agent {

/// One DPDK port of the agent: the uplink or a VM's port.
struct AgentPort {
  AgentPort(uint16_t id, const flow::MacAddr& mac, int vm, std::vector<uint32_t> owned)
      : port_id(id), mac(mac), vm_index(vm), arp(mac, std::move(owned), &neighbors), tx(id) {}
  uint16_t port_id;
  flow::MacAddr mac;
  int vm_index;  ///< -1 for the uplink.
  port::NeighborTable neighbors;
  port::ArpResponder arp;
  port::TxBuffer tx;
  Counter rx_packets;
  Counter snat_ports_exhausted;  ///< VM ports: new connections refused for want of a port.
};

/// Wall-clock time, for the Fastpath redirect's timestamp (a seam: tests use a fake).
class WallClock {
 public:
  virtual ~WallClock() = default;
  virtual uint64_t UnixSeconds() const = 0;
};

/// CLOCK_REALTIME.
class SystemWallClock : public WallClock {
 public:
  uint64_t UnixSeconds() const override;
};

/// Drops that belong to the agent, next to the executor's DropReason ones in the stats.
enum class AgentDrop : uint8_t {
  kSpoofedSource = 0,  ///< A VM sent from an address that is not its DIP.
  kNatNoFlow,          ///< Needs flow state that does not exist: a reply to a leased SNAT
                       ///< port or from a shared DIP:port, a TCP non-SYN opening a SNAT flow.
  kSnatPortsExhausted,  ///< No free SNAT port (the VM gets a TCP RST / ICMP unreachable).
  kSnatNoLease,         ///< The VM has no SNAT lease for the protocol (RST / ICMP too).
  kFlowTableFull,       ///< No free flow entry (outbound: RST / ICMP; inbound: dropped).
  kFastpathRedirectMalformed,  ///< Bad length/magic/version, or PAs outside the underlay.
  kFastpathRedirectBadAuth,    ///< HMAC does not verify (or no fastpath_key configured).
  kFastpathRedirectStale,      ///< Timestamp > 60 s off, or older than the flow it names.
  kFastpathRedirectNotOurs,    ///< This host owns neither side of the flow.
  kCount
};
inline constexpr size_t kNumAgentDrops = static_cast<size_t>(AgentDrop::kCount);
inline constexpr std::array<std::string_view, kNumAgentDrops> kAgentDropNames = {
    "spoofed_source",
    "nat_no_flow",
    "snat_ports_exhausted",
    "snat_no_lease",
    "flow_table_full",
    "fastpath_redirect_malformed",
    "fastpath_redirect_bad_auth",
    "fastpath_redirect_stale",
    "fastpath_redirect_not_ours",
};

/// A redirect whose timestamp is further than this from the host's clock is refused.
inline constexpr uint64_t kFastpathMaxAgeS = 60;
/// Tolerated clock difference between a mux and this host when checking that a redirect is
/// not older than the flow it names.
inline constexpr uint64_t kFastpathClockSkewS = 5;

struct AgentCounters {
  Counter snat_out_packets;         ///< VM → outside with source VIP:leased port.
  Counter snat_in_packets;          ///< Replies to a leased port, translated back to the VM.
  Counter stateful_return_packets;  ///< DSR replies translated from flow state.
  Counter fastpath_packets;         ///< Sent encapsulated straight to a Fastpath peer host.
  Counter fastpath_redirects_received;
  Counter fastpath_redirects_source;       ///< Applied as the host owning the SNAT port.
  Counter fastpath_redirects_destination;  ///< Applied as the host of the chosen DIP.
  /// A Fastpath peer's encapsulation learnt again from its packets (the peer table is not in
  /// the flow state file: after a restart the first packet from the peer restores it).
  Counter fastpath_peers_relearned;
  Counter flows_created;
  Counter flows_expired;
  Counter rejects_sent;  ///< TCP RSTs / ICMP unreachables sent to VMs.
  // Per-flow NIC offload (SetFlowOffload).
  Counter flows_offered;      ///< Offers queued (first ones and replacements).
  Counter flows_withdrawn;    ///< Withdrawals queued (closed, idled out, VM/lease/endpoint gone).
  Counter flows_aged_in_nic;  ///< Flows whose NIC rules all aged out (AGE).
  Counter offload_withdrawals_lost;  ///< Ring and backlog full: a withdrawal could not be sent.
  Counter offload_notices_stale;     ///< Answers about a flow that has moved on (ignored).
  std::array<Counter, kNumAgentDrops> drops;
};

class AgentDataPath {
 public:
  /// `flows`: the NAT flow table, possibly holding the flows of a previous run (flows that
  /// no longer fit the config are removed, the others keep their SNAT ports); nullptr means
  /// a fresh table in anonymous memory. `clock` (nullptr: the system clock) must outlive
  /// the data path.
  AgentDataPath(AgentConfig config, const PortMap& ports,
                std::unique_ptr<NatFlowTable> flows = nullptr, const WallClock* clock = nullptr);

  /// Control thread: replaces the VIP endpoints and SNAT leases while packets flow. Every
  /// other field of `next` (name, uplink, address, gateway, VMs, NAT, Fastpath key) must
  /// equal the running config's; on a difference or an endpoint/lease that names no local VM
  /// returns false with `*error` naming it, and nothing changes. Otherwise builds an
  /// immutable snapshot off the data path (endpoint table, SNAT port pool, executor rules)
  /// and publishes it; the data path adopts it at its next AdoptConfig().
  bool PublishConfig(const AgentConfig& next, std::string* error);
  /// Control thread: as above, but VMs may also come and go (runtime port hot-plug).
  /// `ports` is where the VMs of `next` are (parallel to next.vms): a VM that stays keeps its
  /// config and port, a new VM's port must be started and not used by another port. The
  /// data path starts polling and sending on a new port only when it adopts the snapshot,
  /// and stops using a removed VM's port then: its flows leave the flow table (and the NIC)
  /// and the other VMs' flows follow their new indexes. Once adopted_generation() reaches
  /// this snapshot's, a removed VM's port may be closed. At most kMaxVms VMs. Until the data
  /// path has adopted a snapshot whose VMs changed, every publish is refused (the data path
  /// adopts only the newest snapshot, and VM changes must not be skipped).
  bool PublishConfig(const AgentConfig& next, const PortMap& ports, std::string* error);
  static constexpr size_t kMaxVms = 255;  ///< NatFlow::vm_index is 8 bits.
  /// Data path, between bursts: switches to the newest published snapshot, if any (swaps
  /// tables, no allocation; SNAT ports of live flows move to the new pool), and acknowledges
  /// it. Cheap when nothing is pending (one atomic load).
  void AdoptConfig();
  /// Control thread: frees snapshots the data path has moved past; returns how many wait.
  size_t ReclaimRetired();
  /// Generation of the newest published config (1 at start) and of the one in use.
  uint64_t published_generation() const;
  uint64_t adopted_generation() const { return acked_generation_.load(std::memory_order_acquire); }

  /// Control thread: a copy of up to `limit` flows (of `dip` only, unless 0) and the number
  /// of flows in the table, made by the data path at its next Housekeeping (the table is
  /// the data path's alone). False if the data path did not answer within `timeout`.
  bool CopyFlows(size_t limit, uint32_t dip, std::chrono::milliseconds timeout,
                 std::vector<NatFlow>* flows, uint64_t* total);

  /// Handles `n` (≤ 64) packets received on `ports()[port_index]`; queues output on the TX
  /// buffers. `now_ns` is CLOCK_MONOTONIC (flow timestamps survive a restart with it).
  void ProcessBurst(size_t port_index, rte_mbuf** pkts, uint16_t n, uint64_t now_ns);
  /// Resolves the gateway (and Fastpath peers), (re)installs the rules when the gateway's
  /// MAC changes, and ages a slice of the flow table. Call about every 100 ms.
  void Housekeeping(rte_mempool* pool, uint64_t now_ns);
  void FlushAll();
  /// Called on the data path with every rule set it installs in the software executor, less
  /// the inbound rules of DIP:ports that serve several VIPs (the flow layer has to see those
  /// packets: they create the flows whose replies need state), to mirror into the NIC
  /// executor; must not block. Set before the first burst.
  void SetRuleListener(std::function<void(const std::vector<flow::Rule>&)> listener) {
    rule_listener_ = std::move(listener);
  }
  /// Offers each NAT flow to the NIC through `channel` once it is established, withdraws it
  /// when it closes, idles out or its VM, lease or endpoint goes, and takes the NIC side's
  /// answers at each Housekeeping (see hostagent/README.md, "Per-flow rules in the NIC").
  /// nullptr: no per-flow offload. Set before the first burst; must outlive the data path.
  void SetFlowOffload(FlowOffloadChannel* channel);

  /// True once the rules are installed (the gateway is resolved).
  bool ready() const { return ready_.load(std::memory_order_relaxed); }
  const AgentConfig& config() const { return config_; }
  /// The data path's ports (uplink first, then one per VM). Data path only when VMs can be
  /// hot-plugged: other threads use ReadPorts.
  const std::vector<std::unique_ptr<AgentPort>>& ports() const { return ports_; }
  /// Runs `read(ports, vms, snat_ports)` (the ports as ports(), config().vms, snat_ports())
  /// while the data path cannot change them (stats thread).
  template <typename F>
  void ReadPorts(F read) const {
    std::lock_guard<std::mutex> lock(snat_swap_mu_);
    read(ports_, config_.vms, snat_ports_);
  }
  const sw::SoftwareExecutor& executor() const { return executor_; }
  /// Drops counted before the executor (MAC filter, ARP) plus the executor's own.
  uint64_t Drops(DropReason reason) const;
  uint64_t Drops(AgentDrop reason) const {
    return counters_.drops[static_cast<size_t>(reason)].Get();
  }
  /// Packets that took each static walk (inbound IPIP, inbound GUE, DSR return).
  uint64_t WalkPackets(RuleKind kind) const { return walk_packets_[static_cast<size_t>(kind)].Get(); }
  /// Number of rules installed in the executor.
  uint64_t installed_rules() const { return installed_rules_.Get(); }
  const AgentCounters& counters() const { return counters_; }
  const NatFlowTable& flows() const { return *flows_; }
  const SnatPortPool& snat_ports() const { return snat_ports_; }
  /// Runs `read(const SnatPortPool&)` while the data path cannot swap the pool (stats thread;
  /// the pool is replaced when the leases change).
  template <typename F>
  void ReadSnatPorts(F read) const {
    std::lock_guard<std::mutex> lock(snat_swap_mu_);
    read(snat_ports_);
  }
  /// Flows found in the state file at start, and how many of them were kept.
  uint32_t flows_restored() const { return flows_restored_; }
  uint32_t flows_kept() const { return flows_kept_; }

 private:
  /// An endpoint of a local VM as the flow layer sees it.
  struct LocalEndpoint {
    uint32_t vip;
    uint16_t port;
    uint8_t proto;
    uint8_t vm;
    uint16_t dip_port;
    bool shared;  ///< Its DIP:port answers for several VIP:ports: replies need flow state.
  };

  /// What PublishConfig hands to the data path. Adopting swaps its tables with the data
  /// path's, so afterwards it holds the previous ones until the control thread frees it.
  struct ConfigSnapshot {
    explicit ConfigSnapshot(const AgentConfig& config) : snat_ports(config) {}
    uint64_t generation = 0;
    std::vector<EndpointConfig> endpoints;
    std::vector<SnatLeaseConfig> snat_leases;
    std::vector<LocalEndpoint> local_endpoints;
    SnatPortPool snat_ports;
    bool leases_changed = false;
    std::shared_ptr<const sw::RuleTable> rules;  ///< Built for `rules_gateway_mac`, or null.
    uint64_t rules_gateway_mac = 0;
    size_t rule_count = 0;
    // VMs attached or detached (PublishConfig with a PortMap).
    bool vms_changed = false;
    std::vector<VmConfig> vms;
    PortMap port_map;
    std::vector<int> new_index;  ///< Per running VM: its index in `vms`, or -1 if it leaves.
    /// Indexed like the data path's ports_ after adoption: new VMs' ports (built by the
    /// control thread), null where a running port moves in. Afterwards: the old vector.
    std::vector<std::unique_ptr<AgentPort>> ports;
    std::vector<std::unique_ptr<AgentPort>> removed_ports;  ///< Capacity reserved.
    std::vector<uint32_t> uplink_addresses;  ///< The host PA and every VM's PA.
  };
  bool Publish(const AgentConfig& next, const PortMap* ports, std::string* error);
  /// AdoptConfig's part for a snapshot whose VMs changed.
  void AdoptVms(ConfigSnapshot& s);
  std::vector<LocalEndpoint> BuildLocalEndpoints(const AgentConfig& config) const;

  void InstallRules(const flow::MacAddr& gateway_mac);
  /// Hands the rule set to the listener without the rules only software may run.
  void PostRules(const std::vector<flow::Rule>& rules);
  void RestoreFlows();
  // Each returns true if it consumed the packet (sent or freed it), false to hand it to the
  // executor.
  bool FromVm(AgentPort& in, rte_mbuf* m, packet::ParsedPacket* pkt, uint64_t now_ns);
  bool FromUplink(rte_mbuf* m, packet::ParsedPacket* pkt, uint64_t now_ns);
  bool NewSnatFlow(AgentPort& in, rte_mbuf* m, packet::ParsedPacket* pkt, uint64_t now_ns);
  bool TranslateOutbound(NatFlow& f, rte_mbuf* m, packet::ParsedPacket* pkt,
                         uint64_t now_ns);
  bool TranslateInbound(const NatFlow& f, rte_mbuf* m, packet::ParsedPacket* pkt);
  bool Reject(AgentPort& in, rte_mbuf* m, const packet::ParsedPacket& pkt, AgentDrop why);
  void HandleRedirect(rte_mbuf* m, const packet::ParsedPacket& pkt, uint64_t now_ns);
  void Track(NatFlow& f, const packet::ParsedPacket& pkt, bool from_vm, uint64_t now_ns);
  void AgeFlows(uint64_t now_ns);
  uint64_t IdleTimeoutNs(const NatFlow& f, NatFlowState state) const;
  /// What an idle flow becomes: a SNAT flow closes (its port waits out the reuse delay), a
  /// closed or inbound one is freed. True if freed.
  bool ExpireIdle(NatFlow& f, NatFlowState state, uint64_t now_ns);
  void FreeFlow(NatFlow* f);
  // Per-flow NIC offload.
  static bool Established(const NatFlow& f);
  /// Its SNAT port is still leased to its VM / its endpoint is still configured.
  bool Owned(const NatFlow& f) const;
  /// Packet path: offers a flow that just became established, withdraws one that left it.
  void OffloadOnPacket(NatFlow& f, uint64_t now_ns) {
    if (offload_ == nullptr) return;
    const bool offered = (f.offload & NatFlow::kOffered) != 0;
    if (offered && !Established(f)) {
      WithdrawFlow(f);
    } else if (!offered && Established(f) && Owned(f)) {
      OfferFlow(f, now_ns);
    }
  }
  /// Queues the flow's offer (a replacement if offered already); false if it has to wait
  /// (Fastpath peer's MAC unknown, ring full): the aging scan tries again.
  bool OfferFlow(NatFlow& f, uint64_t now_ns);
  void WithdrawFlow(NatFlow& f);
  /// Aging scan: offers, replaces or withdraws so the NIC holds what the flow needs.
  void ReconcileOffload(NatFlow& f, uint64_t now_ns);
  void TakeOffloadNotices(uint64_t now_ns);
  /// Withdrawals that found the ring full wait here, in order (everything queues behind them).
  bool SendOffload(const FlowOffer& message, bool must_deliver);
  void FlushOffloadBacklog();
  bool Drop(rte_mbuf* m, AgentDrop reason);
  bool Drop(rte_mbuf* m, DropReason reason);
  /// Queues an ARP request for a Fastpath peer (sent by Housekeeping), paced.
  void WantNeighbor(uint32_t ip, uint64_t now_ns);
  /// Remembers what Fastpath peer `pa` decapsulates (from a redirect).
  void LearnPeerEncap(uint32_t pa, flow::Tunnel tunnel);
  /// What Fastpath peer `pa` decapsulates; false if no redirect since this process started
  /// said so (e.g. after a restart): its flows then go via the router, which always works.
  bool PeerEncap(uint32_t pa, flow::Tunnel* tunnel) const;
  /// `pkt` came host to host for Fastpath flow `f`: if its peer's encapsulation is unknown
  /// (this agent restarted with `f` from the state file), it is the packet's.
  void RelearnPeerEncap(const NatFlow& f, const packet::ParsedPacket& pkt);
  const LocalEndpoint* FindEndpoint(int vm, uint32_t vip, uint16_t port, uint8_t proto) const;
  const LocalEndpoint* ReturnEndpoint(int vm, uint8_t proto, uint16_t dip_port) const;
  int VmOfPa(uint32_t pa) const;
  bool OwnsAddress(uint32_t ip) const { return ip == config_.address.addr || VmOfPa(ip) >= 0; }

  AgentConfig config_;
  PortMap port_map_;
  std::vector<std::unique_ptr<AgentPort>> ports_;
  std::array<int16_t, 256> index_of_port_;
  std::vector<LocalEndpoint> endpoints_;
  sw::SoftwareExecutor executor_;
  std::unique_ptr<NatFlowTable> flows_;
  SnatPortPool snat_ports_;
  SystemWallClock system_clock_;
  const WallClock* clock_;
  flow::MacAddr gateway_mac_{};
  std::array<uint32_t, 16> wanted_neighbors_{};
  struct PeerEncapEntry {
    uint32_t pa = 0;
    flow::Tunnel tunnel = flow::Tunnel::kIpip;
  };
  std::array<PeerEncapEntry, 256> peer_encaps_{};  ///< Open addressing by PA; data path only.
  size_t wanted_count_ = 0;
  uint32_t flows_restored_ = 0;
  uint32_t flows_kept_ = 0;
  AgentCounters counters_;
  std::array<Counter, kNumDropReasons> drops_;
  std::array<Counter, 4> walk_packets_;
  Counter installed_rules_;
  std::atomic<bool> ready_{false};
  std::function<void(const std::vector<flow::Rule>&)> rule_listener_;
  FlowOffloadChannel* offload_ = nullptr;
  std::vector<FlowOffer> offload_backlog_;  ///< Capacity fixed by SetFlowOffload.
  size_t offload_backlog_head_ = 0;
  // Runtime config changes (PublishConfig / AdoptConfig / ReclaimRetired).
  mutable std::mutex control_mu_;  ///< Serialises PublishConfig and ReclaimRetired.
  AgentConfig published_config_;   ///< Guarded by control_mu_: what the newest snapshot holds.
  PortMap published_ports_;        ///< Guarded by control_mu_: its ports.
  uint64_t vms_changed_generation_ = 0;  ///< Guarded by control_mu_: the last VM change.
  std::atomic<ConfigSnapshot*> published_{nullptr};  ///< Owned via retired_/current_snapshot_.
  std::unique_ptr<ConfigSnapshot> current_snapshot_;  ///< The one published_ points to.
  std::vector<std::unique_ptr<ConfigSnapshot>> retired_;
  std::atomic<uint64_t> acked_generation_{1};
  /// Held by the data path only while swapping SNAT pools, VMs or ports (ReadPorts,
  /// ReadSnatPorts).
  mutable std::mutex snat_swap_mu_;
  std::atomic<uint64_t> gateway_mac_bits_{0};  ///< gateway_mac_ for the control thread; 0 = none.
  // CopyFlows: one request at a time, answered in Housekeeping.
  void ServeFlowCopy();
  std::mutex copy_request_mu_;  ///< One CopyFlows caller at a time.
  std::mutex copy_mu_;          ///< Guards the copy_* fields below.
  std::condition_variable copy_done_;
  std::atomic<bool> copy_pending_{false};
  size_t copy_limit_ = 0;
  uint32_t copy_dip_ = 0;
  std::vector<NatFlow> copy_flows_;
  uint64_t copy_total_ = 0;
};

}  // namespace sluice::agent
