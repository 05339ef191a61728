#include "hostagent/config.h"

#include <map>
#include <set>
#include <tuple>

#include "common/config_reader.h"
#include "common/strings.h"

namespace sluice::agent {
namespace {

absl::StatusOr<AgentConfig> ReadAgentConfig(ConfigNode& root) {
  AgentConfig config;
  root.AllowOnly({"agent", "vms", "endpoints"});
  ConfigNode agent = root.Map("agent");
  agent.AllowOnly({"name", "uplink", "address", "gateway"});
  config.name = agent.String("name");
  config.uplink = agent.String("uplink");
  config.address = agent.Prefix("address");
  config.gateway = agent.Ipv4("gateway");
  if (agent.status().ok() && !config.address.Contains(config.gateway)) {
    agent.Fail("gateway", StrCat(Ipv4ToString(config.gateway), " is not inside the uplink prefix ",
                                 Ipv4ToString(config.address.addr), "/", config.address.length));
  }

  std::set<std::string> names;
  std::set<uint32_t> pas = {config.address.addr};
  std::map<uint32_t, size_t> vm_by_dip;
  for (ConfigNode& v : root.Sequence("vms", true)) {
    v.AllowOnly({"name", "port", "mac", "dip", "pa", "gateway"});
    VmConfig vm;
    vm.name = v.String("name");
    vm.port = v.String("port");
    vm.mac = v.Mac("mac");
    vm.dip = v.Ipv4("dip");
    vm.pa = v.Ipv4("pa");
    vm.gateway = v.Ipv4("gateway");
    if (!v.status().ok()) break;
    if (!names.insert(vm.name).second) v.Fail("name", StrCat("VM '", vm.name, "' appears twice"));
    if (!pas.insert(vm.pa).second) {
      v.Fail("pa", StrCat(Ipv4ToString(vm.pa), " is already the host's or another VM's PA"));
    }
    if (!config.address.Contains(vm.pa)) {
      v.Fail("pa", StrCat(Ipv4ToString(vm.pa), " is not inside the uplink prefix"));
    }
    if (!vm_by_dip.emplace(vm.dip, config.vms.size()).second) {
      v.Fail("dip", StrCat(Ipv4ToString(vm.dip), " is already another VM's DIP"));
    }
    config.vms.push_back(vm);
  }

  std::set<std::tuple<uint32_t, uint16_t, uint8_t, uint32_t>> seen;
  std::map<std::tuple<uint32_t, uint16_t, uint8_t>, uint32_t> return_path;
  for (ConfigNode& e : root.Sequence("endpoints", false)) {
    e.AllowOnly({"vip", "port", "protocol", "dip", "dip_port"});
    EndpointConfig ep;
    ep.vip = e.Ipv4("vip");
    ep.port = static_cast<uint16_t>(e.Uint("port", 1, 65535));
    ep.proto = e.L4Protocol("protocol");
    ep.dip = e.Ipv4("dip");
    ep.dip_port = static_cast<uint16_t>(e.OptionalUint("dip_port", ep.port, 1, 65535));
    if (!e.status().ok()) break;
    if (vm_by_dip.count(ep.dip) == 0) {
      e.Fail("dip", StrCat(Ipv4ToString(ep.dip), " is not the DIP of any VM on this host"));
    }
    if (!seen.insert({ep.vip, ep.port, ep.proto, ep.dip}).second) {
      e.Fail("vip", "the same endpoint is configured twice");
    }
    // Stateless DSR maps DIP:port back to exactly one VIP:port; several VIPs on one DIP:port
    // need per-flow NAT state, which this agent does not keep yet.
    auto [it, inserted] = return_path.emplace(std::make_tuple(ep.dip, ep.dip_port, ep.proto),
                                              ep.vip);
    if (!inserted && it->second != ep.vip) {
      e.Fail("dip_port", StrCat(Ipv4ToString(ep.dip), ":", ep.dip_port, " already serves VIP ",
                                Ipv4ToString(it->second),
                                "; one DIP:port can answer for one VIP until per-flow NAT "
                                "state exists"));
    }
    config.endpoints.push_back(ep);
  }
  if (!root.status().ok()) return root.status();
  return config;
}

}  // namespace

absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path) {
  absl::StatusOr<ConfigNode> root = ConfigNode::LoadFile(path);
  if (!root.ok()) return root.status();
  return ReadAgentConfig(*root);
}

absl::StatusOr<AgentConfig> ParseAgentConfig(const std::string& yaml, const std::string& origin) {
  absl::StatusOr<ConfigNode> root = ConfigNode::LoadString(yaml, origin);
  if (!root.ok()) return root.status();
  return ReadAgentConfig(*root);
}

}  // namespace sluice::agent
