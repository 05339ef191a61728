#include "hostagent/config.h"

#include <map>
#include <set>
#include <tuple>

#include "common/config_reader.h"
#include "common/tls_files.h"
#include "common/strings.h"
#include "offload/packet/fastpath_redirect.h"

namespace sluice::agent {
namespace {

constexpr uint64_t kMaxTimeoutS = 7 * 24 * 3600;

void ReadNatConfig(ConfigNode& root, AgentConfig* config) {
  config->nat.flow_state_file = StrCat("/dev/shm/sluice-", config->name, ".flows");
  if (!root.Has("nat")) return;
  ConfigNode n = root.Map("nat");
  n.AllowOnly({"flow_state_file", "flow_capacity", "tcp_syn_timeout_s",
               "tcp_established_timeout_s", "tcp_closing_timeout_s", "tcp_closed_timeout_s",
               "udp_timeout_s", "snat_port_reuse_delay_s"});
  NatConfig& nat = config->nat;
  nat.flow_state_file = n.OptionalString("flow_state_file", nat.flow_state_file);
  if (nat.flow_state_file.empty() || nat.flow_state_file[0] != '/') {
    n.Fail("flow_state_file", "must be an absolute path");
  }
  nat.flow_capacity =
      static_cast<uint32_t>(n.OptionalUint("flow_capacity", nat.flow_capacity, 16, 1u << 24));
  auto timeout = [&n](const char* key, uint32_t fallback, uint64_t min) {
    return static_cast<uint32_t>(n.OptionalUint(key, fallback, min, kMaxTimeoutS));
  };
  nat.tcp_syn_timeout_s = timeout("tcp_syn_timeout_s", nat.tcp_syn_timeout_s, 1);
  nat.tcp_established_timeout_s =
      timeout("tcp_established_timeout_s", nat.tcp_established_timeout_s, 1);
  nat.tcp_closing_timeout_s = timeout("tcp_closing_timeout_s", nat.tcp_closing_timeout_s, 1);
  nat.tcp_closed_timeout_s = timeout("tcp_closed_timeout_s", nat.tcp_closed_timeout_s, 0);
  nat.udp_timeout_s = timeout("udp_timeout_s", nat.udp_timeout_s, 1);
  nat.snat_port_reuse_delay_s =
      timeout("snat_port_reuse_delay_s", nat.snat_port_reuse_delay_s, 0);
}

/// An endpoint's optional `health:` map (keys in hostagent/health.h).
std::optional<HealthCheckConfig> ReadHealthCheck(ConfigNode& e, const EndpointConfig& ep) {
  if (!e.Has("health")) return std::nullopt;
  ConfigNode h = e.Map("health");
  h.AllowOnly({"type", "port", "path", "host", "expect_status", "interval_ms", "timeout_ms",
               "rise", "fall", "jitter_ms", "netns"});
  HealthCheckConfig c;
  const std::string type = h.String("type");
  if (type == "tcp") {
    c.type = HealthProbeType::kTcp;
  } else if (type == "http") {
    c.type = HealthProbeType::kHttp;
  } else if (type == "https") {
    c.type = HealthProbeType::kHttps;
  } else if (type == "mysql") {
    c.type = HealthProbeType::kMysql;
  } else if (h.status().ok()) {
    h.Fail("type", StrCat("'", type, "' is not a health check type (tcp, http, https or mysql)"));
  }
  c.address = ep.dip;
  c.port = static_cast<uint16_t>(h.OptionalUint("port", ep.dip_port, 1, 65535));
  if (c.type == HealthProbeType::kHttp || c.type == HealthProbeType::kHttps) {
    c.http_path = h.OptionalString("path", c.http_path);
    c.http_host = h.OptionalString("host", "");
    c.http_expected_status =
        static_cast<uint16_t>(h.OptionalUint("expect_status", c.http_expected_status, 100, 599));
    if (c.http_path.empty() || c.http_path[0] != '/') h.Fail("path", "must start with '/'");
    auto printable = [](const std::string& text) {
      for (char ch : text) {
        if (static_cast<unsigned char>(ch) <= ' ' || ch == 0x7f) return false;
      }
      return true;
    };
    if (!printable(c.http_path)) h.Fail("path", "must not contain spaces or control characters");
    if (!printable(c.http_host)) h.Fail("host", "must not contain spaces or control characters");
  } else {
    for (const char* key : {"path", "host", "expect_status"}) {
      if (h.Has(key)) h.Fail(key, "only for type: http or https");
    }
  }
  c.interval = std::chrono::milliseconds(h.OptionalUint("interval_ms", 2000, 10, 3600 * 1000));
  c.timeout = std::chrono::milliseconds(h.OptionalUint("timeout_ms", 1000, 1, 600 * 1000));
  c.rise = static_cast<uint32_t>(h.OptionalUint("rise", c.rise, 1, 1000));
  c.fall = static_cast<uint32_t>(h.OptionalUint("fall", c.fall, 1, 1000));
  c.jitter = std::chrono::milliseconds(h.OptionalUint("jitter_ms", 0, 0, 1800 * 1000));
  if (c.jitter * 2 > c.interval) h.Fail("jitter_ms", "must be at most interval_ms / 2");
  c.netns = h.OptionalString("netns", "");
  if (!c.netns.empty() && c.netns[0] != '/') h.Fail("netns", "must be an absolute path");
  return c;
}

void ReadSnatAllocator(ConfigNode& root, const std::map<uint32_t, size_t>& vm_by_dip,
                       AgentConfig* config) {
  if (!root.Has("snat_allocator")) return;
  ConfigNode a = root.Map("snat_allocator");
  a.AllowOnly({"address", "low_water", "return_idle_s", "check_interval_ms",
               "retry_interval_ms", "timeout_ms", "leases", "tls"});
  SnatAllocatorClientConfig c;
  c.address = a.String("address");
  if (a.status().ok() && c.address.empty()) a.Fail("address", "must not be empty");
  c.low_water = static_cast<uint32_t>(a.OptionalUint("low_water", c.low_water, 1, 65535));
  c.return_idle_s =
      static_cast<uint32_t>(a.OptionalUint("return_idle_s", c.return_idle_s, 0, kMaxTimeoutS));
  c.check_interval_ms = static_cast<uint32_t>(
      a.OptionalUint("check_interval_ms", c.check_interval_ms, 10, 60000));
  c.retry_interval_ms = static_cast<uint32_t>(
      a.OptionalUint("retry_interval_ms", c.retry_interval_ms, 10, 3600 * 1000));
  c.timeout_ms = static_cast<uint32_t>(a.OptionalUint("timeout_ms", c.timeout_ms, 10, 600000));
  c.dial = ReadClientTls(a, "tls");
  std::set<std::pair<uint32_t, uint8_t>> seen;
  for (ConfigNode& l : a.Sequence("leases", true)) {
    l.AllowOnly({"dip", "vip", "protocol"});
    SnatDynamicLeaseConfig lease;
    lease.dip = l.Ipv4("dip");
    lease.vip = l.Ipv4("vip");
    lease.proto = l.L4Protocol("protocol");
    if (!l.status().ok()) break;
    if (vm_by_dip.count(lease.dip) == 0) {
      l.Fail("dip", StrCat(Ipv4ToString(lease.dip), " is not the DIP of any VM on this host"));
    }
    if (!seen.insert({lease.dip, lease.proto}).second) {
      l.Fail("protocol", StrCat(Ipv4ToString(lease.dip), " already leases ",
                                L4ProtocolName(lease.proto), " ports dynamically"));
    }
    c.leases.push_back(lease);
  }
  config->snat_allocator = std::move(c);
}

bool ReadBool(ConfigNode& n, const char* key, bool fallback) {
  if (!n.Has(key)) return fallback;
  const std::string v = n.String(key);
  if (v == "true") return true;
  if (v == "false") return false;
  n.Fail(key, StrCat("'", v, "' is not true or false"));
  return fallback;
}

// A Linux interface name: 1..15 characters, no '/', ',', '=', ':' or white space.
bool IsInterfaceName(const std::string& name) {
  if (name.empty() || name.size() > 15) return false;
  for (char c : name) {
    if (c == '/' || c == ',' || c == '=' || c == ':' || static_cast<unsigned char>(c) <= ' ') {
      return false;
    }
  }
  return true;
}

// "0x2", "2", "0x0f": a non-zero hex CPU mask as OVS takes it.
bool IsCpuMask(const std::string& mask) {
  std::string_view hex = mask;
  if (hex.rfind("0x", 0) == 0 || hex.rfind("0X", 0) == 0) hex.remove_prefix(2);
  if (hex.empty() || hex.size() > 16) return false;
  bool nonzero = false;
  for (char c : hex) {
    if (!isxdigit(static_cast<unsigned char>(c))) return false;
    nonzero |= c != '0';
  }
  return nonzero;
}

// "net_vhost_vm3,iface=/run/vm3.sock,client=1": a VM (QEMU) serving its vhost-user socket,
// which the vswitch agent adds to the bridge as dpdkvhostuserclient (VmBridgePort).
bool IsVhostUserClientPort(const std::string& port) {
  const std::vector<std::string_view> parts = SplitString(port, ',');
  if (parts.empty() || parts[0].rfind("net_vhost", 0) != 0) return false;
  bool absolute_socket = false, client = false;
  for (std::string_view p : parts) {
    absolute_socket |= p.rfind("iface=/", 0) == 0 && p.size() > 7;
    client |= p == "client=1";
  }
  return absolute_socket && client;
}

void ReadVswitchConfig(ConfigNode& root, AgentConfig* config) {
  if (config->datapath != Datapath::kVswitch) {
    if (root.Has("vswitch")) root.Fail("vswitch", "only with agent.datapath: vswitch");
    return;
  }
  VswitchConfig& v = config->vswitch;
  if (!root.Has("vswitch")) return;
  ConfigNode n = root.Map("vswitch");
  n.AllowOnly({"bridge", "run_dir", "start_ovs", "dpdk", "hw_offload", "slow_path_port",
               "pmd_cpu_mask", "pmd_max_sleep_us"});
  v.bridge = n.OptionalString("bridge", v.bridge);
  v.run_dir = n.OptionalString("run_dir", v.run_dir);
  v.start_ovs = ReadBool(n, "start_ovs", v.start_ovs);
  v.dpdk = ReadBool(n, "dpdk", v.dpdk);
  v.hw_offload = ReadBool(n, "hw_offload", v.hw_offload);
  v.slow_path_port = n.OptionalString("slow_path_port", v.slow_path_port);
  v.pmd_cpu_mask = n.OptionalString("pmd_cpu_mask", v.pmd_cpu_mask);
  v.pmd_max_sleep_us =
      static_cast<uint32_t>(n.OptionalUint("pmd_max_sleep_us", v.pmd_max_sleep_us, 0, 10000));
  if (!v.pmd_cpu_mask.empty() && !IsCpuMask(v.pmd_cpu_mask)) {
    n.Fail("pmd_cpu_mask", StrCat("'", v.pmd_cpu_mask, "' is not a CPU mask (hex, e.g. 0x2)"));
  }
  if (!v.dpdk && (!v.pmd_cpu_mask.empty() || v.pmd_max_sleep_us != 0)) {
    n.Fail(v.pmd_cpu_mask.empty() ? "pmd_max_sleep_us" : "pmd_cpu_mask",
           "only with dpdk: true (PMD threads poll DPDK ports)");
  }
  if (!IsInterfaceName(v.bridge)) n.Fail("bridge", "must be an interface name (1-15 characters)");
  if (!IsInterfaceName(v.slow_path_port)) {
    n.Fail("slow_path_port", "must be an interface name (1-15 characters)");
  }
  if (v.run_dir.empty() || v.run_dir[0] != '/') n.Fail("run_dir", "must be an absolute path");
}

/// True for "unix:/abs/path", "/abs/path" or "host:port" (port 1..65535).
bool ValidGrpcTarget(const std::string& target) {
  if (target.rfind("unix:/", 0) == 0) return target.size() > 6;
  if (!target.empty() && target[0] == '/') return target.size() > 1;
  const size_t colon = target.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  for (char c : target) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) return false;
  }
  uint64_t port = 0;
  return ParseUint(std::string_view(target).substr(colon + 1), &port) && port >= 1 &&
         port <= 65535;
}

/// `health_report:` (keys in hostagent/health_report.h).
void ReadHealthReport(ConfigNode& root, AgentConfig* config) {
  if (!root.Has("health_report")) return;
  ConfigNode h = root.Map("health_report");
  h.AllowOnly({"muxes", "timeout_ms", "retry_min_ms", "retry_max_ms", "refresh_ms", "tls"});
  HealthReportConfig& r = config->health_report;
  std::set<std::string> names, targets;
  for (ConfigNode& m : h.Sequence("muxes", true)) {
    m.AllowOnly({"name", "grpc"});
    HealthReportMux mux{.name = m.String("name"), .grpc = m.String("grpc")};
    if (!m.status().ok()) break;
    if (!ValidGrpcTarget(mux.grpc)) {
      m.Fail("grpc", StrCat("'", mux.grpc,
                            "' is not a gRPC address (unix:/path, /path or host:port)"));
    }
    if (!names.insert(mux.name).second) m.Fail("name", StrCat("'", mux.name, "' appears twice"));
    if (!targets.insert(mux.grpc).second) {
      m.Fail("grpc", StrCat("'", mux.grpc, "' appears twice"));
    }
    r.muxes.push_back(mux);
  }
  r.timeout = std::chrono::milliseconds(h.OptionalUint("timeout_ms", 1000, 10, 60 * 1000));
  r.retry_min = std::chrono::milliseconds(h.OptionalUint("retry_min_ms", 100, 10, 60 * 1000));
  r.retry_max = std::chrono::milliseconds(h.OptionalUint("retry_max_ms", 5000, 10, 600 * 1000));
  r.refresh =
      std::chrono::milliseconds(h.OptionalUint("refresh_ms", 30000, 100, 24 * 3600 * 1000));
  if (h.status().ok() && r.retry_max < r.retry_min) {
    h.Fail("retry_max_ms", "must be at least retry_min_ms");
  }
  r.dial = ReadClientTls(h, "tls");
}

absl::StatusOr<AgentConfig> ReadAgentConfig(ConfigNode& root) {
  AgentConfig config;
  root.AllowOnly({"agent", "vms", "endpoints", "snat_leases", "snat_allocator", "nat",
                  "vswitch", "health_report"});
  ConfigNode agent = root.Map("agent");
  agent.AllowOnly({"name", "datapath", "uplink", "address", "gateway", "fastpath_key",
                   "cloud_state_file"});
  config.name = agent.String("name");
  config.cloud_state_file = agent.OptionalString("cloud_state_file", "");
  if (agent.status().ok() && !config.cloud_state_file.empty() && config.cloud_state_file[0] != '/') {
    agent.Fail("cloud_state_file", "must be an absolute path");
  }
  const std::string datapath = agent.OptionalString("datapath", "dpdk");
  if (datapath == "vswitch") {
    config.datapath = Datapath::kVswitch;
  } else if (datapath != "dpdk") {
    agent.Fail("datapath", StrCat("'", datapath, "' is not a data path (dpdk or vswitch)"));
  }
  config.uplink = agent.String("uplink");
  if (config.datapath == Datapath::kVswitch && agent.status().ok() &&
      !IsInterfaceName(config.uplink)) {
    agent.Fail("uplink", "with datapath: vswitch, the kernel interface to add to the bridge");
  }
  config.address = agent.Prefix("address");
  config.gateway = agent.Ipv4("gateway");
  if (agent.status().ok() && !config.address.Contains(config.gateway)) {
    agent.Fail("gateway", StrCat(Ipv4ToString(config.gateway), " is not inside the uplink prefix ",
                                 Ipv4ToString(config.address.addr), "/", config.address.length));
  }
  if (agent.Has("fastpath_key")) {
    packet::FastpathKey key;
    if (packet::ParseFastpathKey(agent.String("fastpath_key").c_str(), &key)) {
      config.fastpath_key = key;
    } else {
      agent.Fail("fastpath_key", "must be 64 hexadecimal digits (a 32-byte HMAC-SHA256 key)");
    }
  }
  ReadNatConfig(root, &config);
  ReadVswitchConfig(root, &config);
  ReadHealthReport(root, &config);

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
    if (config.datapath == Datapath::kVswitch && !IsInterfaceName(vm.port) &&
        !IsVhostUserClientPort(vm.port)) {
      v.Fail("port",
             "with datapath: vswitch, the kernel interface to add to the bridge, or the "
             "vhost-user socket the VM serves (\"net_vhost_<vm>,iface=/path,client=1\": OVS "
             "connects to it as a dpdkvhostuserclient port)");
    }
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
  if (config.vms.size() > 255) root.Fail("vms", "at most 255 VMs per agent");

  // Several VIPs may share one DIP:port; the agent then keeps per-flow NAT state so each
  // reply leaves with the VIP its connection came in on.
  std::set<std::tuple<uint32_t, uint16_t, uint8_t, uint32_t>> seen;
  for (ConfigNode& e : root.Sequence("endpoints", false)) {
    e.AllowOnly({"vip", "port", "protocol", "dip", "dip_port", "health"});
    EndpointConfig ep;
    ep.vip = e.Ipv4("vip");
    ep.port = static_cast<uint16_t>(e.Uint("port", 1, 65535));
    ep.proto = e.L4Protocol("protocol");
    ep.dip = e.Ipv4("dip");
    ep.dip_port = static_cast<uint16_t>(e.OptionalUint("dip_port", ep.port, 1, 65535));
    ep.health = ReadHealthCheck(e, ep);
    if (!e.status().ok()) break;
    if (vm_by_dip.count(ep.dip) == 0) {
      e.Fail("dip", StrCat(Ipv4ToString(ep.dip), " is not the DIP of any VM on this host"));
    }
    if (!seen.insert({ep.vip, ep.port, ep.proto, ep.dip}).second) {
      e.Fail("vip", "the same endpoint is configured twice");
    }
    config.endpoints.push_back(ep);
  }

  // (vip, proto) -> [first, last] port ranges already leased, to find overlaps.
  std::map<std::pair<uint32_t, uint8_t>, std::vector<std::pair<uint32_t, uint32_t>>> leased;
  for (ConfigNode& l : root.Sequence("snat_leases", false)) {
    l.AllowOnly({"dip", "vip", "protocol", "port_start", "port_count"});
    SnatLeaseConfig lease;
    lease.dip = l.Ipv4("dip");
    lease.vip = l.Ipv4("vip");
    lease.proto = l.L4Protocol("protocol");
    lease.port_start = static_cast<uint16_t>(l.Uint("port_start", 1, 65535));
    lease.port_count = static_cast<uint16_t>(l.Uint("port_count", 1, 65535));
    if (!l.status().ok()) break;
    const uint32_t first = lease.port_start;
    const uint32_t last = first + lease.port_count - 1;
    if (last > 65535) {
      l.Fail("port_count", StrCat("ports ", first, "..", last, " run past 65535"));
    }
    if (vm_by_dip.count(lease.dip) == 0) {
      l.Fail("dip", StrCat(Ipv4ToString(lease.dip), " is not the DIP of any VM on this host"));
    }
    for (auto [a, b] : leased[{lease.vip, lease.proto}]) {
      if (first <= b && a <= last) {
        l.Fail("port_start", StrCat("ports ", first, "..", last, " overlap the lease of ports ", a,
                                    "..", b, " on ", Ipv4ToString(lease.vip)));
      }
    }
    for (const EndpointConfig& ep : config.endpoints) {
      if (ep.vip == lease.vip && ep.proto == lease.proto && first <= ep.port && ep.port <= last) {
        l.Fail("port_start", StrCat("ports ", first, "..", last, " include the endpoint ",
                                    Ipv4ToString(ep.vip), ":", ep.port, "/",
                                    L4ProtocolName(ep.proto)));
      }
    }
    leased[{lease.vip, lease.proto}].emplace_back(first, last);
    config.snat_leases.push_back(lease);
  }
  ReadSnatAllocator(root, vm_by_dip, &config);
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
