// The AgentRuntime of the DPDK data path: publishes every config the gRPC service accepts to
// AgentDataPath as an immutable snapshot (the daemon wraps it in HealthCheckedRuntime,
// hostagent/agent_control.h, for the health checks) and hot-plugs VM ports. A VM new in the
// config gets its DPDK port probed (rte_dev_probe of its devargs) and started like the boot
// ports (port::OpenPort) before the snapshot that names it is published, so the data path
// polls and sends on it only once it adopts that snapshot. A runtime-attached VM that leaves
// the config has its port stopped, closed and removed (rte_dev_remove) once the data path has
// adopted the snapshot without it. A failure at any step undoes the steps before it; the
// running config stays as it was.
#pragma once

#include <array>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/json_writer.h"
#include "hostagent/agent.h"
#include "hostagent/grpc_service.h"
#include "hostagent/rules.h"

struct rte_mempool;

namespace sluice::agent {

class AgentNicRules;

/// Why a runtime attach or detach of a VM port failed (`hotplug_failures` in stats).
enum class HotplugFailure : uint8_t {
  kInvalidRequest = 0,  ///< The service refused the AttachVm of a new VM (field named).
  kPortInUse,           ///< The devargs name an ethdev that exists already.
  kProbe,               ///< rte_dev_probe failed (no such interface, bad devargs ...).
  kPortSetup,           ///< Probed, but configure / queue setup / start failed.
  kConfigRefused,       ///< The data path refused the new config.
  kAdoptTimeout,        ///< Detach: the data path did not adopt in time (port closed later).
  kRemove,              ///< Detach: stop / close / rte_dev_remove failed.
  kCount
};
inline constexpr size_t kNumHotplugFailures = static_cast<size_t>(HotplugFailure::kCount);
inline constexpr std::array<std::string_view, kNumHotplugFailures> kHotplugFailureNames = {
    "invalid_request", "port_in_use", "probe", "port_setup",
    "config_refused",  "adopt_timeout", "remove",
};

struct HotplugStats {
  uint64_t ports_hotplugged = 0;  ///< VM ports probed and started at runtime.
  uint64_t ports_unplugged = 0;   ///< Of them, removed again (detach).
  uint64_t ports_pending_removal = 0;  ///< Detached, waiting for the data path to let go.
  std::array<uint64_t, kNumHotplugFailures> failures{};
};

struct DataPathRuntimeOptions {
  rte_mempool* pool = nullptr;  ///< RX mempool of hot-plugged ports (the boot ports' one).
  PortMap boot_ports;           ///< Where the boot config's VMs are.
  AgentNicRules* nic_rules = nullptr;   ///< nullptr: no NIC executor to tell about VMs.
  /// How long a detach waits for the data path to adopt the config without the VM before
  /// it returns (the port is then removed later, at the next change or ReclaimRetired), and
  /// any config change for the data path to adopt the previous attach or detach.
  std::chrono::milliseconds adopt_timeout{2000};
  const volatile std::sig_atomic_t* stopping = nullptr;  ///< Set when the daemon stops.
};

class DataPathRuntime : public AgentRuntime {
 public:
  /// `agent` must outlive this; `boot` is the config it was built with.
  DataPathRuntime(AgentDataPath* agent, const AgentConfig& boot, DataPathRuntimeOptions options);

  /// VMs that are new in `next` get their port opened first; VMs that left are removed from
  /// the data path, then their runtime-attached ports. Errors name the field ("vm.port:
  /// ... <DPDK reason>").
  bool PublishConfig(const AgentConfig& next, std::string* error) override;
  uint64_t generation() const override { return agent_->published_generation(); }
  uint64_t adopted_generation() const override { return agent_->adopted_generation(); }
  void ReclaimRetired() override;
  AgentRuntimeStatus Status() const override;
  bool CopyFlows(size_t limit, uint32_t dip, std::vector<NatFlow>* flows,
                 uint64_t* total) override;
  bool NicFlow(const NatFlow& flow, NicFlowReading* out) const override;
  void CountHotplugRefusal() override { Count(HotplugFailure::kInvalidRequest); }
  /// AttachVm adds VMs the agent does not have, DetachVm removes VMs with their ports.
  bool PlugsVmPorts() const override { return true; }

  HotplugStats hotplug_stats() const;
  /// "hotplug": {ports_hotplugged, ports_unplugged, ports_pending_removal, dpdk_ports,
  /// mbufs_in_use (of the RX pool: a detached port must give all of its back), failures{reason}}.
  void WriteHotplugStats(JsonWriter& j) const;

 private:
  struct PendingRemoval {
    uint64_t generation;  ///< Removable once the data path has adopted this generation.
    uint16_t port_id;
    std::string vm;
  };
  void Count(HotplugFailure why);
  /// Probes and starts `vm`'s port; on failure undoes it and says why.
  bool OpenVmPort(const VmConfig& vm, uint16_t* port_id, std::string* error,
                  HotplugFailure* why);
  /// Waits up to adopt_timeout until the data path uses `generation`; false if it does not.
  bool WaitAdopted(uint64_t generation) const;
  /// Removes the ports of pending_ whose generation the data path has adopted.
  void RemoveAdopted();

  AgentDataPath* agent_;
  DataPathRuntimeOptions options_;
  AgentConfig published_;  ///< Only PublishConfig touches it (the service serialises calls).
  uint64_t vms_changed_generation_ = 0;  ///< Of the last VM change. Only PublishConfig.
  PortMap ports_;          ///< Where published_'s VMs are. Guarded by mu_.
  mutable std::mutex mu_;  ///< Guards ports_, hotplugged_, pending_, stats_.
  std::map<std::string, uint16_t> hotplugged_;  ///< Runtime-attached VMs → their port.
  std::map<std::string, uint16_t> boot_ports_;  ///< Boot-config VMs still there → their port.
  std::vector<PendingRemoval> pending_;
  HotplugStats stats_;
};

}  // namespace sluice::agent
