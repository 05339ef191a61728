#include "hostagent/datapath_runtime.h"

#include <algorithm>
#include <cstdio>
#include <thread>

#include <rte_ethdev.h>
#include <rte_mempool.h>

#include "common/strings.h"
#include "hostagent/nic_rules.h"
#include "offload/port/port.h"

namespace sluice::agent {

DataPathRuntime::DataPathRuntime(AgentDataPath* agent, const AgentConfig& boot,
                                 DataPathRuntimeOptions options)
    : agent_(agent), options_(std::move(options)), published_(boot), ports_(options_.boot_ports) {
  // VMs of the cloud state (attached at runtime before a restart) count as hot-plugged.
  for (size_t v = 0; v < boot.vms.size() && v < ports_.vm_ports.size(); ++v) {
    (boot.vms[v].attached_at_runtime ? hotplugged_ : boot_ports_)[boot.vms[v].name] =
        ports_.vm_ports[v];
  }
}

void DataPathRuntime::Count(HotplugFailure why) {
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.failures[static_cast<size_t>(why)];
}

HotplugStats DataPathRuntime::hotplug_stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  HotplugStats s = stats_;
  s.ports_pending_removal = pending_.size();
  return s;
}

void DataPathRuntime::WriteHotplugStats(JsonWriter& j) const {
  const HotplugStats s = hotplug_stats();
  j.Key("hotplug")
      .BeginObject()
      .Field("ports_hotplugged", s.ports_hotplugged)
      .Field("ports_unplugged", s.ports_unplugged)
      .Field("ports_pending_removal", s.ports_pending_removal)
      .Field("dpdk_ports", uint64_t{rte_eth_dev_count_avail()})
      .Field("mbufs_in_use",
             uint64_t{options_.pool != nullptr ? rte_mempool_in_use_count(options_.pool) : 0});
  j.Key("failures").BeginObject();
  for (size_t r = 0; r < kNumHotplugFailures; ++r) j.Field(kHotplugFailureNames[r], s.failures[r]);
  j.EndObject().EndObject();
}

bool DataPathRuntime::OpenVmPort(const VmConfig& vm, uint16_t* port_id, std::string* error,
                                 HotplugFailure* why) {
  const std::string name = port::DeviceName(vm.port);
  uint16_t existing = 0;
  // OpenPort would reconfigure a device that exists (the uplink, another VM's port).
  if (rte_eth_dev_get_port_by_name(name.c_str(), &existing) == 0) {
    *why = HotplugFailure::kPortInUse;
    *error = StrCat("vm.port: DPDK device '", name, "' exists already (port ", existing,
                    "); a VM attached at runtime needs a device of its own");
    return false;
  }
  std::string reason;
  if (port::OpenPort(vm.port, options_.pool, port_id, &reason)) return true;
  *error = "vm.port: " + reason;
  uint16_t probed = 0;
  if (rte_eth_dev_get_port_by_name(name.c_str(), &probed) != 0) {
    *why = HotplugFailure::kProbe;
    return false;
  }
  *why = HotplugFailure::kPortSetup;
  std::string undo;
  if (!port::RemovePort(probed, &undo)) *error += "; undoing the probe: " + undo;
  return false;
}

bool DataPathRuntime::WaitAdopted(uint64_t generation) const {
  const auto deadline = std::chrono::steady_clock::now() + options_.adopt_timeout;
  while (agent_->adopted_generation() < generation &&
         std::chrono::steady_clock::now() < deadline &&
         (options_.stopping == nullptr || *options_.stopping == 0)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // the lcore adopts between bursts
  }
  return agent_->adopted_generation() >= generation;
}

bool DataPathRuntime::PublishConfig(const AgentConfig& next, std::string* error) {
  // The data path adopts only the newest snapshot: a VM change it has not taken yet must not
  // be overtaken by the next config.
  if (!WaitAdopted(vms_changed_generation_)) {
    *error = StrCat("the data path has not adopted config generation ", vms_changed_generation_,
                    " (VMs attached or detached) within ", options_.adopt_timeout.count(),
                    " ms (not polling?)");
    return false;
  }
  RemoveAdopted();
  auto named = [](const std::vector<VmConfig>& vms, const std::string& name) {
    return std::any_of(vms.begin(), vms.end(), [&](const VmConfig& v) { return v.name == name; });
  };
  std::vector<const VmConfig*> added;
  std::vector<std::string> removed;
  for (const VmConfig& vm : next.vms) {
    if (!named(published_.vms, vm.name)) added.push_back(&vm);
  }
  for (const VmConfig& vm : published_.vms) {
    if (!named(next.vms, vm.name)) removed.push_back(vm.name);
  }
  if (added.empty() && removed.empty()) {
    if (!agent_->PublishConfig(next, error)) return false;
    published_ = next;
    return true;
  }

  // New VMs' ports are probed and started before the data path hears of them.
  std::map<std::string, uint16_t> opened;
  auto undo_opened = [&] {
    for (const auto& [vm, id] : opened) {
      std::string e;
      if (!port::RemovePort(id, &e)) {
        fprintf(stderr, "sluice-agent: undoing VM %s's port: %s\n", vm.c_str(), e.c_str());
      }
    }
  };
  for (const VmConfig* vm : added) {
    uint16_t id = 0;
    HotplugFailure why = HotplugFailure::kProbe;
    if (!OpenVmPort(*vm, &id, error, &why)) {
      undo_opened();
      Count(why);
      return false;
    }
    opened.emplace(vm->name, id);
  }
  PortMap ports;
  std::map<std::string, uint16_t> running_ports;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ports = ports_;
    for (size_t v = 0; v < published_.vms.size(); ++v) {
      running_ports.emplace(published_.vms[v].name, ports_.vm_ports[v]);
    }
  }
  ports.vm_ports.clear();
  ports.vm_port_macs.clear();
  for (const VmConfig& vm : next.vms) {
    auto it = opened.find(vm.name);
    const uint16_t id = it != opened.end() ? it->second : running_ports.at(vm.name);
    ports.vm_ports.push_back(id);
    ports.vm_port_macs.push_back(port::PortMac(id));
  }
  // The NIC side learns the new VMs before any of their flows can be offered.
  if (options_.nic_rules != nullptr) options_.nic_rules->SetVms(next, ports);
  if (!agent_->PublishConfig(next, ports, error)) {
    if (options_.nic_rules != nullptr) options_.nic_rules->SetVms(published_, ports_);
    undo_opened();
    Count(HotplugFailure::kConfigRefused);
    return false;
  }
  const uint64_t generation = agent_->published_generation();
  vms_changed_generation_ = generation;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ports_ = ports;
    for (const auto& [vm, id] : opened) hotplugged_[vm] = id;
    stats_.ports_hotplugged += opened.size();
    // A detached VM's port goes whether it was opened at start or at runtime (a boot VM
    // attached again gets its port probed like any other).
    for (const std::string& vm : removed) {
      for (auto* owner : {&hotplugged_, &boot_ports_}) {
        auto it = owner->find(vm);
        if (it == owner->end()) continue;
        pending_.push_back({.generation = generation, .port_id = it->second, .vm = vm});
        owner->erase(it);
      }
    }
  }
  published_ = next;
  for (const VmConfig* vm : added) {
    fprintf(stderr, "sluice-agent %s: VM %s attached on new port %u (%s)\n", next.name.c_str(),
            vm->name.c_str(), opened.at(vm->name), vm->port.c_str());
  }
  if (removed.empty()) return true;
  // The data path must have stopped using the ports before they close.
  if (!WaitAdopted(generation)) {
    Count(HotplugFailure::kAdoptTimeout);
    fprintf(stderr,
            "sluice-agent %s: the data path did not adopt config generation %lu within %ld ms; "
            "the detached VMs' ports are removed once it does\n",
            next.name.c_str(), static_cast<unsigned long>(generation),
            static_cast<long>(options_.adopt_timeout.count()));
    return true;
  }
  RemoveAdopted();
  return true;
}

void DataPathRuntime::RemoveAdopted() {
  const uint64_t adopted = agent_->adopted_generation();
  std::vector<PendingRemoval> ready;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (it->generation <= adopted) {
        ready.push_back(*it);
        it = pending_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (const PendingRemoval& p : ready) {
    std::string error;
    const bool removed = port::RemovePort(p.port_id, &error);
    std::lock_guard<std::mutex> lock(mu_);
    if (removed) {
      ++stats_.ports_unplugged;
    } else {
      ++stats_.failures[static_cast<size_t>(HotplugFailure::kRemove)];
      fprintf(stderr, "sluice-agent: VM %s detached, its port %u: %s\n", p.vm.c_str(), p.port_id,
              error.c_str());
    }
  }
}

void DataPathRuntime::ReclaimRetired() {
  agent_->ReclaimRetired();
  RemoveAdopted();
}

AgentRuntimeStatus DataPathRuntime::Status() const {
  AgentRuntimeStatus s{.ready = agent_->ready(),
                       .stopping = options_.stopping != nullptr && *options_.stopping != 0};
  uint64_t rx = 0, tx = 0, tx_full = 0;
  std::map<std::string, uint16_t> hotplugged;
  {
    std::lock_guard<std::mutex> lock(mu_);
    hotplugged = hotplugged_;
  }
  agent_->ReadPorts([&](const std::vector<std::unique_ptr<AgentPort>>& ports,
                        const std::vector<VmConfig>& vms, const SnatPortPool& snat) {
    s.vms.resize(vms.size());
    for (const auto& port : ports) {
      rx += port->rx_packets.Get();
      tx += port->tx.tx_packets.Get();
      tx_full += port->tx.tx_full_drops.Get();
      if (port->vm_index < 0) continue;
      const auto v = static_cast<uint8_t>(port->vm_index);
      VmRuntimeStatus& vm = s.vms[v];
      vm.name = vms[v].name;
      vm.hotplugged = hotplugged.count(vm.name) != 0;
      vm.port_id = port->port_id;
      vm.rx_packets = port->rx_packets.Get();
      vm.tx_packets = port->tx.tx_packets.Get();
      vm.snat_tcp_in_use = snat.InUse(v, 6);
      vm.snat_tcp_leased = snat.Leased(v, 6);
      vm.snat_udp_in_use = snat.InUse(v, 17);
      vm.snat_udp_leased = snat.Leased(v, 17);
      vm.snat_ports_exhausted = port->snat_ports_exhausted.Get();
    }
  });
  const AgentCounters& c = agent_->counters();
  const HotplugStats h = hotplug_stats();
  s.counters = {
      {"rx_packets", rx},
      {"tx_packets", tx},
      {"inbound_packets", agent_->WalkPackets(RuleKind::kInboundIpip) +
                              agent_->WalkPackets(RuleKind::kInboundGue)},
      {"dsr_return_packets", agent_->WalkPackets(RuleKind::kDsrReturn)},
      {"stateful_return_packets", c.stateful_return_packets.Get()},
      {"snat_out_packets", c.snat_out_packets.Get()},
      {"snat_in_packets", c.snat_in_packets.Get()},
      {"fastpath_packets", c.fastpath_packets.Get()},
      {"rejects_sent", c.rejects_sent.Get()},
      {"rules_installed", agent_->installed_rules()},
      {"flows_active", agent_->flows().size()},
      {"flows_created", c.flows_created.Get()},
      {"flows_expired", c.flows_expired.Get()},
      {"flows_offered_to_nic", c.flows_offered.Get()},
      {"flows_aged_in_nic", c.flows_aged_in_nic.Get()},
      {"nic_offloaded_packets",
       options_.nic_rules != nullptr ? options_.nic_rules->offloaded_packets() : 0},
      {"nic_offloaded_bytes",
       options_.nic_rules != nullptr ? options_.nic_rules->offloaded_bytes() : 0},
      {"config_generation_in_use", agent_->adopted_generation()},
      {"ports_hotplugged", h.ports_hotplugged},
      {"ports_unplugged", h.ports_unplugged},
  };
  for (size_t r = 0; r < kNumHotplugFailures; ++r) {
    s.counters.emplace_back(StrCat("hotplug_failures_", kHotplugFailureNames[r]), h.failures[r]);
  }
  for (size_t r = 0; r < kNumDropReasons; ++r) {
    uint64_t extra = r == static_cast<size_t>(DropReason::kTxFull) ? tx_full : 0;
    s.drops.emplace_back(std::string(kDropReasonNames[r]),
                         agent_->Drops(static_cast<DropReason>(r)) + extra);
  }
  for (size_t r = 0; r < kNumAgentDrops; ++r) {
    s.drops.emplace_back(std::string(kAgentDropNames[r]),
                         agent_->Drops(static_cast<AgentDrop>(r)));
  }
  return s;
}

bool DataPathRuntime::CopyFlows(size_t limit, uint32_t dip, std::vector<NatFlow>* flows,
                                uint64_t* total) {
  return agent_->CopyFlows(limit, dip, std::chrono::seconds(2), flows, total);
}

bool DataPathRuntime::NicFlow(const NatFlow& flow, NicFlowReading* out) const {
  return options_.nic_rules != nullptr && options_.nic_rules->FlowReading(NatFlowRef::Of(flow), out);
}

}  // namespace sluice::agent
