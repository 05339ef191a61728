// The host agent's data path: per-port ARP handling in front of the software executor that
// runs the agent's rules (offload/sw). One instance per lcore.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "hostagent/config.h"
#include "hostagent/rules.h"
#include "offload/packet/counter.h"
#include "offload/packet/drop_reason.h"
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
};

class AgentDataPath {
 public:
  AgentDataPath(AgentConfig config, const PortMap& ports);

  /// Handles `n` packets received on `ports()[port_index]`; queues output on the TX buffers.
  void ProcessBurst(size_t port_index, rte_mbuf** pkts, uint16_t n, uint64_t now_ns);
  /// Asks for the gateway's MAC while unknown and (re)installs the rules when it changes.
  void Housekeeping(rte_mempool* pool, uint64_t now_ns);
  void FlushAll();

  /// True once the rules are installed (the gateway is resolved).
  bool ready() const { return ready_.load(std::memory_order_relaxed); }
  const AgentConfig& config() const { return config_; }
  const std::vector<std::unique_ptr<AgentPort>>& ports() const { return ports_; }
  const sw::SoftwareExecutor& executor() const { return executor_; }
  /// Drops counted before the executor (MAC filter, ARP) plus the executor's own.
  uint64_t Drops(DropReason reason) const;
  /// Packets that took each walk (inbound IPIP, inbound GUE, DSR return).
  uint64_t WalkPackets(RuleKind kind) const { return walk_packets_[static_cast<size_t>(kind)].Get(); }
  /// Number of rules installed in the executor.
  uint64_t installed_rules() const { return installed_rules_.Get(); }

 private:
  void InstallRules(const flow::MacAddr& gateway_mac);

  AgentConfig config_;
  PortMap port_map_;
  std::vector<std::unique_ptr<AgentPort>> ports_;
  std::array<int16_t, 256> index_of_port_;
  sw::SoftwareExecutor executor_;
  std::array<Counter, kNumDropReasons> drops_;
  std::array<Counter, 3> walk_packets_;
  Counter installed_rules_;
  uint64_t installed_generation_ = 0;
  std::atomic<bool> ready_{false};
};

}  // namespace sluice::agent
