#include "hostagent/vswitch_agent.h"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <fstream>
#include <numeric>
#include <tuple>
#include <set>
#include <sstream>

#include "common/json_writer.h"
#include "common/net_text.h"
#include "common/strings.h"
#include "hostagent/port_identity.h"
#include "vswitch/process.h"

namespace sluice::agent {
namespace {

using vswitch::OvsFlow;

constexpr uint64_t kExtraCookie = vswitch::kBaseCookie | 0x10000;
constexpr uint64_t kSnatOutCookie = vswitch::kBaseCookie | 0x20000;
constexpr uint64_t kSnatInCookie = vswitch::kBaseCookie | 0x30000;
constexpr uint64_t kSnatDeliverCookie = vswitch::kBaseCookie | 0x40000;
constexpr uint64_t kSnatPickCookie = vswitch::kBaseCookie | 0x50000;
constexpr uint64_t kSnatExhaustedCookie = vswitch::kBaseCookie | 0x60000;  // | ofport << 1 | udp
constexpr uint64_t kSnatRouteCookie = vswitch::kBaseCookie | 0x70000;
// A redirect's timestamp may be this far off the host's clock (as the DPDK agent's).
constexpr uint64_t kRedirectMaxAgeS = 60;
constexpr uint64_t kCookieKindMask = ~uint64_t{0xffff};

// Value of "name=<number>" in a dump-flows line (decimal, or hex with 0x); 0 if absent.
uint64_t DumpField(std::string_view line, std::string_view name) {
  const std::string key = StrCat(name, "=");
  size_t at = line.find(key);
  while (at != std::string_view::npos && at > 0 && line[at - 1] != ' ' && line[at - 1] != ',') {
    at = line.find(key, at + 1);
  }
  if (at == std::string_view::npos) return 0;
  const char* p = line.data() + at + key.size();
  return strtoull(p, nullptr, (p[0] == '0' && p[1] == 'x') ? 16 : 10);
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool ParseMac(const std::string& text, flow::MacAddr* mac) {
  unsigned v[6];
  if (sscanf(text.c_str(), "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) {
    return false;
  }
  for (int i = 0; i < 6; ++i) (*mac)[i] = static_cast<uint8_t>(v[i]);
  return true;
}

absl::StatusOr<flow::MacAddr> InterfaceMac(const std::string& ifname) {
  flow::MacAddr mac{};
  const std::string path = "/sys/class/net/" + ifname + "/address";
  if (!ParseMac(ReadText(path), &mac)) {
    return absl::FailedPreconditionError(
        StrCat("interface ", ifname, " does not exist here (cannot read ", path, ")"));
  }
  return mac;
}

// A Linux interface name: 1..15 characters, none of '/', ',', '=', ':' or white space.
bool IsKernelInterfaceName(const std::string& name) {
  if (name.empty() || name.size() > 15) return false;
  for (char c : name) {
    if (c == '/' || c == ',' || c == '=' || c == ':' || static_cast<unsigned char>(c) <= ' ') {
      return false;
    }
  }
  return true;
}

// The bridge's ports are OVS's: the host's kernel must not answer ARP on them for the
// addresses of LOCAL (it would announce the port's own MAC, which OVS does not decap for).
absl::Status IgnoreArp(const std::string& ifname) {
  const std::string path = "/proc/sys/net/ipv4/conf/" + ifname + "/arp_ignore";
  std::ofstream out(path);
  out << "8\n";
  out.flush();
  if (!out) return absl::FailedPreconditionError("cannot write " + path);
  return absl::OkStatus();
}

absl::Status Ip(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"ip"};
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<std::string> r = vswitch::RunChecked(argv);
  return r.ok() ? absl::OkStatus() : r.status();
}

// Answers a VM's ARP request for its gateway from the bridge, with the VM port's MAC.
OvsFlow GatewayArpFlow(uint64_t cookie, uint32_t ofport, uint32_t gateway,
                       const flow::MacAddr& mac) {
  const std::string m = flow::FormatMac(mac);
  const std::string gw = flow::FormatIpv4(gateway);
  return OvsFlow{
      .cookie = cookie,
      .priority = 64500,
      .match = StrCat("arp,in_port=", ofport, ",arp_tpa=", gw, ",arp_op=1"),
      .actions = StrCat("move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:", m,
                        "->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],"
                        "move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:",
                        m, "->arp_sha,set_field:", gw, "->arp_spa,in_port")};
}

// A miss of table `table` (from `ofport`, if table 0) goes to the slow path tagged with
// `vlan`, so the agent knows where it came from.
OvsFlow MissFlow(uint64_t cookie, uint8_t table, uint32_t ofport, uint16_t vlan) {
  return OvsFlow{.cookie = cookie,
                 .table = table,
                 .priority = static_cast<uint16_t>(table == 0 ? 1 : 0),
                 .match = table == 0 ? StrCat("in_port=", ofport) : "",
                 .actions = StrCat("push_vlan:0x8100,set_field:", 0x1000 | vlan,
                                   "->vlan_vid,output:", kVswitchSlowPathOfport)};
}

}  // namespace

flow::MacAddr BridgeMac(uint32_t host_pa) {
  return {0x02, 0x53, static_cast<uint8_t>(host_pa >> 24), static_cast<uint8_t>(host_pa >> 16),
          static_cast<uint8_t>(host_pa >> 8), static_cast<uint8_t>(host_pa)};
}

VswitchMiss ClassifyMiss(uint16_t vlan) {
  if (vlan == kReplyMissVlan) return VswitchMiss::kReplyNoConntrackState;
  if (vlan == kSnatReplyMissVlan) return VswitchMiss::kSnatReplyNoState;
  if (vlan == kVswitchUplinkOfport) return VswitchMiss::kUplinkNoRule;
  if (vlan == kVswitchGreOfport) return VswitchMiss::kTunnelNoEndpoint;
  // Only VM ports have a miss flow tagging with their number (GRE and uplink aside).
  if (vlan >= kVswitchFirstVmOfport && vlan <= kVswitchLastVmOfport) return VswitchMiss::kVmNoRule;
  return VswitchMiss::kUnknownPort;
}

absl::Status CheckVmBridgePort(const VmConfig& vm) {
  absl::StatusOr<vswitch::PortSpec> port = VmBridgePort(vm.port);
  if (!port.ok()) {
    return absl::FailedPreconditionError(StrCat("VM ", vm.name, ": ", port.status().message()));
  }
  if (!port->type.empty()) return absl::OkStatus();  // vhost-user: OVS creates the socket
  if (absl::StatusOr<flow::MacAddr> mac = InterfaceMac(port->name); !mac.ok()) {
    return absl::FailedPreconditionError(StrCat("VM ", vm.name, ": ", mac.status().message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<vswitch::PortSpec> VmBridgePort(const std::string& port) {
  if (IsKernelInterfaceName(port)) return vswitch::PortSpec{.name = port};
  absl::StatusOr<PortIdentity> id = ParsePortIdentity(port);
  if (!id.ok()) {
    return absl::InvalidArgumentError(
        StrCat("'", port, "' is neither an interface name nor devargs: ", id.status().message()));
  }
  // The device as "iface=<name or path>".
  const std::string device = id->device.substr(id->device.find('=') + 1);
  if (id->driver == "net_af_packet" || id->driver == "net_af_xdp" || id->driver == "net_tap" ||
      id->driver == "net_pcap") {
    if (!IsKernelInterfaceName(device)) {
      return absl::InvalidArgumentError(StrCat("'", port, "': iface '", device,
                                               "' is not an interface name (1-15 characters)"));
    }
    return vswitch::PortSpec{.name = device};
  }
  if (id->driver == "net_vhost") {
    // The vdev name ("net_vhost_web1_0") names the OVS port; who listens decides its type.
    const std::string name = port.substr(0, port.find(','));
    if (port.find(",client=1") == std::string::npos) {
      return absl::FailedPreconditionError(StrCat(
          "'", port, "': QEMU is the vhost-user client; OVS serves vhost-user sockets only in "
          "its own directory, so give the VM <interface type='vhostuser'> mode='server' (OVS "
          "connects as the client: dpdkvhostuserclient)"));
    }
    return vswitch::PortSpec{.name = name,
                             .type = "dpdkvhostuserclient",
                             .options = {{"vhost-server-path", device}}};
  }
  return absl::InvalidArgumentError(StrCat("'", port, "' (", id->ToString(),
                                           ") cannot be a port of an OVS bridge here (a kernel "
                                           "interface or a vhost-user socket can)"));
}

VswitchPlan PlanVswitch(const AgentConfig& config, const flow::MacAddr& bridge_mac,
                        const std::vector<flow::MacAddr>& vm_port_macs,
                        std::vector<uint32_t> vm_ofports) {
  const VswitchConfig& vs = config.vswitch;
  if (vm_ofports.empty()) {
    for (size_t v = 0; v < config.vms.size(); ++v) {
      vm_ofports.push_back(static_cast<uint32_t>(kVswitchFirstVmOfport + v));
    }
  }
  VswitchPlan plan;
  plan.vm_ofports = vm_ofports;
  plan.bridge = {.name = vs.bridge,
                 .datapath_type = "netdev",
                 .hwaddr = flow::FormatMac(bridge_mac),
                 .hw_offload = vs.hw_offload};
  plan.bridge.ports.push_back({.name = config.uplink, .ofport = kVswitchUplinkOfport});
  for (size_t v = 0; v < config.vms.size(); ++v) {
    absl::StatusOr<vswitch::PortSpec> port = VmBridgePort(config.vms[v].port);
    vswitch::PortSpec spec = port.ok() ? *port : vswitch::PortSpec{.name = config.vms[v].port};
    spec.ofport = vm_ofports[v];
    plan.bridge.ports.push_back(spec);
  }
  plan.bridge.ports.push_back({.name = vs.bridge + "-gre",
                               .type = "gre",
                               .ofport = kVswitchGreOfport,
                               .options = {{"remote_ip", "flow"}, {"packet_type", "legacy_l3"}}});
  plan.bridge.ports.push_back(
      {.name = vs.slow_path_port, .type = "internal", .ofport = kVswitchSlowPathOfport});

  // IR ports: 0 the uplink, v + 1 VM v.
  vswitch::OvsExecutorConfig& ex = plan.executor;
  ex.ports.ofport[0] = kVswitchUplinkOfport;
  ex.ports.gre_port = kVswitchGreOfport;
  ex.ports.slow_path_port = kVswitchSlowPathOfport;
  ex.base.uplink_ofport = kVswitchUplinkOfport;
  ex.base.slow_path_port = kVswitchSlowPathOfport;
  ex.base.tunnel_endpoints.push_back(config.address.addr);
  plan.ports.uplink_port = 0;
  plan.ports.uplink_mac = bridge_mac;
  plan.ports.inbound_tunnels = {flow::Tunnel::kGre};
  plan.ports.shared_return_rules = true;
  // The per-connection Fastpath flows are the agent's own (HandleRedirect, and adopted or
  // removed at start): the executor's reconcile leaves them be.
  ex.unmanaged_cookie = kFastpathCookie;
  ex.unmanaged_cookie_mask = kFastpathCookieMask;
  // Cookies by OpenFlow port, so adding or removing a VM leaves the other VMs' flows alone.
  auto port_cookie = [](uint32_t ofport, uint64_t which) {
    return kExtraCookie | (uint64_t{ofport} << 4) | which;
  };
  for (size_t v = 0; v < config.vms.size(); ++v) {
    const uint32_t ofport = vm_ofports[v];
    ex.ports.ofport[static_cast<uint16_t>(v + 1)] = ofport;
    ex.base.tunnel_endpoints.push_back(config.vms[v].pa);
    plan.ports.vm_ports.push_back(static_cast<uint16_t>(v + 1));
    plan.ports.vm_port_macs.push_back(vm_port_macs[v]);
    ex.extra_flows.push_back(
        GatewayArpFlow(port_cookie(ofport, 0), ofport, config.vms[v].gateway, vm_port_macs[v]));
  }
  ex.extra_flows.push_back(MissFlow(port_cookie(kVswitchUplinkOfport, 1), 0, kVswitchUplinkOfport,
                                    kVswitchUplinkOfport));
  ex.extra_flows.push_back(
      MissFlow(port_cookie(kVswitchGreOfport, 1), 0, kVswitchGreOfport, kVswitchGreOfport));
  for (uint32_t ofport : vm_ofports) {
    ex.extra_flows.push_back(
        MissFlow(port_cookie(ofport, 1), 0, ofport, static_cast<uint16_t>(ofport)));
  }
  ex.extra_flows.push_back(MissFlow(kExtraCookie | 0xfff0, 1, 0, kReplyMissVlan));
  ex.extra_flows.push_back(MissFlow(kExtraCookie | 0xfff1, 2, 0, kSnatReplyMissVlan));
  // Fastpath redirects from the muxes (to the host PA: source side; to a VM's PA:
  // destination side) go to the agent.
  auto redirect_flow = [](uint64_t cookie, uint32_t pa) {
    return OvsFlow{
        .cookie = cookie,
        .priority = 64900,
        .match = StrCat("udp,in_port=", kVswitchUplinkOfport, ",nw_dst=", flow::FormatIpv4(pa),
                        ",tp_dst=", packet::kFastpathUdpPort, ",nw_frag=no"),
        .actions = StrCat("push_vlan:0x8100,set_field:", 0x1000 | kRedirectVlan,
                          "->vlan_vid,output:", kVswitchSlowPathOfport)};
  };
  ex.extra_flows.push_back(redirect_flow(kExtraCookie | 0xfff2, config.address.addr));
  for (size_t v = 0; v < config.vms.size(); ++v) {
    ex.extra_flows.push_back(redirect_flow(port_cookie(vm_ofports[v], 2), config.vms[v].pa));
  }
  return plan;
}

std::vector<SnatRange> SnatRangesOf(const AgentConfig& config, uint32_t dip, uint8_t proto) {
  std::vector<SnatRange> ranges;
  for (const SnatLeaseConfig& l : config.snat_leases) {
    if (l.dip != dip || l.proto != proto || l.port_count == 0) continue;
    ranges.push_back({.vip = l.vip,
                      .first = l.port_start,
                      .last = static_cast<uint16_t>(uint32_t{l.port_start} + l.port_count - 1)});
  }
  std::sort(ranges.begin(), ranges.end(), [](const SnatRange& a, const SnatRange& b) {
    return std::tie(a.vip, a.first) < std::tie(b.vip, b.first);
  });
  // Adjacent chunks (the allocator hands out neighbours while a VM grows) become one range:
  // conntrack then looks for a free port in all of it, where a hash pick of one full chunk
  // would refuse a connection that its neighbour has room for.
  std::vector<SnatRange> merged;
  for (const SnatRange& r : ranges) {
    if (!merged.empty() && merged.back().vip == r.vip &&
        uint32_t{merged.back().last} + 1 == r.first) {
      merged.back().last = r.last;
    } else {
      merged.push_back(r);
    }
  }
  ranges = std::move(merged);
  if (ranges.empty()) return ranges;
  uint32_t unit = 0;
  for (const SnatRange& r : ranges) unit = std::gcd(unit, uint32_t{r.last} - r.first + 1);
  uint32_t links = 0;
  for (SnatRange& r : ranges) {
    r.weight = (uint32_t{r.last} - r.first + 1) / unit;
    links += r.weight;
  }
  if (links > kMaxSnatLinks) {
    for (SnatRange& r : ranges) r.weight = 1;
  }
  return ranges;
}

std::vector<OvsFlow> SnatFlows(const AgentConfig& config, const VswitchPlan& plan,
                               const flow::MacAddr& gateway_mac) {
  std::vector<OvsFlow> flows;
  std::set<std::pair<uint32_t, uint8_t>> vm_protos, vip_protos;
  std::vector<std::pair<uint32_t, uint8_t>> replies;  // VIP, protocol: GRE replies to un-NAT
  for (const SnatLeaseConfig& lease : config.snat_leases) replies.emplace_back(lease.vip, lease.proto);
  // VIPs the allocator leases from: a chunk taken away while its connections drain still
  // needs their replies un-NATed.
  if (config.snat_allocator) {
    for (const SnatDynamicLeaseConfig& t : config.snat_allocator->leases) {
      replies.emplace_back(t.vip, t.proto);
    }
  }
  uint64_t pick_cookie = kSnatPickCookie;
  for (const SnatLeaseConfig& lease : config.snat_leases) {
    size_t v = 0;
    while (v < config.vms.size() && config.vms[v].dip != lease.dip) ++v;
    if (v == config.vms.size()) continue;  // config validation guarantees a VM
    if (!vm_protos.insert({lease.dip, lease.proto}).second) continue;
    const uint32_t ofport = plan.vm_ofports[v];
    const std::string proto = lease.proto == 17 ? "udp" : "tcp";
    const std::string match = StrCat(proto, ",in_port=", ofport, ",nw_src=",
                                     Ipv4ToString(lease.dip), ",nw_frag=no");
    const std::string to_router =
        StrCat("dec_ttl,set_field:", flow::FormatMac(plan.ports.uplink_mac),
               "->eth_src,set_field:", flow::FormatMac(gateway_mac), "->eth_dst,output:",
               kVswitchUplinkOfport);
    auto snat = [&](const SnatRange& r) {
      return StrCat("ct(commit,zone=", kSnatCtZone, ",nat(src=", Ipv4ToString(r.vip), ":",
                    r.first, "-", r.last, "),table=", kSnatOutTable, ")");
    };
    if (flows.empty() || flows.front().cookie != kSnatRouteCookie) {
      // SNAT'd, not redirected: to the router.
      flows.insert(flows.begin(), OvsFlow{.cookie = kSnatRouteCookie,
                                          .table = kSnatOutTable,
                                          .priority = 10,
                                          .match = "ip",
                                          .actions = to_router});
    }
    // Conntrack found no free port of the lease for this connection (ct NAT leaves the
    // source as it was): counted per VM, dropped.
    flows.push_back(OvsFlow{
        .cookie = kSnatExhaustedCookie | (uint64_t{ofport} << 1) | (lease.proto == 17 ? 1 : 0),
        .table = kSnatOutTable,
        .priority = 100,
        .match = StrCat(proto, ",nw_src=", Ipv4ToString(lease.dip)),
        .actions = "drop"});
    const std::vector<SnatRange> ranges = SnatRangesOf(config, lease.dip, lease.proto);
    const uint64_t n = vm_protos.size() - 1;
    if (ranges.size() == 1) {
      flows.push_back(OvsFlow{
          .cookie = kSnatOutCookie | n, .priority = 50, .match = match, .actions = snat(ranges[0])});
    } else {
      // Several chunks: a hash of the connection picks one (weighted by size); conntrack
      // keeps an established connection's binding whatever the pick says later.
      uint32_t links = 0;
      for (const SnatRange& r : ranges) links += r.weight;
      flows.push_back(OvsFlow{
          .cookie = kSnatOutCookie | n,
          .priority = 50,
          .match = match,
          .actions = StrCat("multipath(symmetric_l4,0,hrw,", links, ",0,NXM_NX_REG1[0..15]),",
                            "resubmit(,", kSnatPickTable, ")")});
      uint32_t link = 0;
      for (const SnatRange& r : ranges) {
        for (uint32_t w = 0; w < r.weight; ++w, ++link) {
          flows.push_back(OvsFlow{.cookie = pick_cookie++,
                                  .table = kSnatPickTable,
                                  .priority = 100,
                                  .match = StrCat(match, ",reg1=", link),
                                  .actions = snat(r)});
        }
      }
    }
    flows.push_back(OvsFlow{
        .cookie = kSnatDeliverCookie | n,
        .table = 2,
        .priority = 100,
        .match = StrCat("ct_state=+trk+rpl,", proto, ",nw_dst=", Ipv4ToString(lease.dip)),
        .actions = StrCat("dec_ttl,set_field:", flow::FormatMac(plan.ports.vm_port_macs[v]),
                          "->eth_src,set_field:", flow::FormatMac(config.vms[v].mac),
                          "->eth_dst,output:", ofport)});
  }
  for (const auto& [vip, proto_number] : replies) {
    if (!vip_protos.insert({vip, proto_number}).second) continue;
    flows.push_back(OvsFlow{
        .cookie = kSnatInCookie | (vip_protos.size() - 1),
        .priority = 40,
        .match = StrCat(proto_number == 17 ? "udp" : "tcp", ",in_port=", kVswitchGreOfport,
                        ",tun_dst=", Ipv4ToString(config.address.addr), ",nw_dst=",
                        Ipv4ToString(vip), ",nw_frag=no"),
        .actions = StrCat("ct(zone=", kSnatCtZone, ",nat,table=2)")});
  }
  return flows;
}

namespace {

// "key=value" fields of one tuple "(src=a,dst=b,sport=c,dport=d)".
bool ParseTuple(std::string_view text, std::string_view name, uint32_t* src, uint32_t* dst,
                uint16_t* sport, uint16_t* dport) {
  const size_t at = text.find(StrCat(name, "=("));
  if (at == std::string_view::npos) return false;
  const size_t open = at + name.size() + 2;
  const size_t close = text.find(')', open);
  if (close == std::string_view::npos) return false;
  bool have_src = false, have_dst = false;
  for (std::string_view kv : SplitString(text.substr(open, close - open), ',')) {
    const size_t eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string_view k = kv.substr(0, eq), v = kv.substr(eq + 1);
    uint64_t n = 0;
    if (k == "src" || k == "dst") {
      absl::StatusOr<uint32_t> ip = ParseIpv4(v);
      if (!ip.ok()) return false;
      *(k == "src" ? src : dst) = *ip;
      (k == "src" ? have_src : have_dst) = true;
    } else if (k == "sport" && ParseUint(v, &n) && n <= 65535) {
      *sport = static_cast<uint16_t>(n);
    } else if (k == "dport" && ParseUint(v, &n) && n <= 65535) {
      *dport = static_cast<uint16_t>(n);
    }
  }
  return have_src && have_dst;
}

NatFlowState ConntrackState(std::string_view line, uint8_t proto) {
  if (proto == 17) return NatFlowState::kUdp;
  const size_t at = line.find("state=");
  if (at == std::string_view::npos) return NatFlowState::kTcpEstablished;
  std::string_view state = line.substr(at + 6);
  state = state.substr(0, state.find_first_of(",)"));
  if (state == "SYN_SENT" || state == "SYN_RECV" || state == "SYN_SENT2") {
    return NatFlowState::kTcpSyn;
  }
  if (state == "ESTABLISHED") return NatFlowState::kTcpEstablished;
  if (state == "TIME_WAIT" || state == "CLOSED" || state == "CLOSE") return NatFlowState::kClosed;
  return NatFlowState::kTcpClosing;  // FIN_WAIT_*, CLOSE_WAIT, LAST_ACK, CLOSING
}

}  // namespace

std::vector<NatFlow> ConntrackFlows(std::string_view dump, const AgentConfig& config) {
  std::vector<NatFlow> flows;
  for (std::string_view line : SplitString(dump, '\n')) {
    uint8_t proto = 0;
    if (line.rfind("tcp,", 0) == 0) proto = 6;
    if (line.rfind("udp,", 0) == 0) proto = 17;
    if (proto == 0) continue;
    const uint64_t zone = DumpField(line, "zone");
    if (zone != kSnatCtZone && zone != kEndpointCtZone) continue;
    uint32_t osrc = 0, odst = 0, rsrc = 0, rdst = 0;
    uint16_t osport = 0, odport = 0, rsport = 0, rdport = 0;
    if (!ParseTuple(line, "orig", &osrc, &odst, &osport, &odport) ||
        !ParseTuple(line, "reply", &rsrc, &rdst, &rsport, &rdport)) {
      continue;
    }
    NatFlow f{.proto = proto};
    if (zone == kSnatCtZone) {  // the VM opened it: orig from the DIP, reply to the VIP
      f = {.dip = osrc, .remote = odst, .vip = rdst, .dip_port = osport, .remote_port = odport,
           .vip_port = rdport, .proto = proto, .kind = static_cast<uint8_t>(NatFlowKind::kSnat)};
    } else {  // a client through a VIP: orig to the VIP, reply from the DIP
      f = {.dip = rsrc, .remote = osrc, .vip = odst, .dip_port = rsport, .remote_port = osport,
           .vip_port = odport, .proto = proto,
           .kind = static_cast<uint8_t>(NatFlowKind::kInbound)};
    }
    size_t v = 0;
    while (v < config.vms.size() && config.vms[v].dip != f.dip) ++v;
    if (v == config.vms.size()) continue;
    f.vm_index = static_cast<uint8_t>(v);
    f.state = static_cast<uint8_t>(ConntrackState(line, proto));
    flows.push_back(f);
  }
  return flows;
}

void AnnotateFastpath(const AgentConfig& config, const std::vector<FastpathConnection>& fastpath,
                      std::vector<NatFlow>* flows) {
  // (SNAT or inbound, VIP, VIP port, remote, remote port, protocol) → Fastpath peer PA.
  using Key = std::tuple<uint8_t, uint32_t, uint16_t, uint32_t, uint16_t, uint8_t>;
  std::map<Key, const FastpathConnection*> by_connection;
  for (const FastpathConnection& c : fastpath) {
    const packet::FastpathRedirect& r = c.redirect;
    by_connection[c.source ? Key{uint8_t(NatFlowKind::kSnat), r.flow_src, r.flow_src_port,
                                 r.flow_dst, r.flow_dst_port, r.proto}
                           : Key{uint8_t(NatFlowKind::kInbound), r.flow_dst, r.flow_dst_port,
                                 r.flow_src, r.flow_src_port, r.proto}] = &c;
  }
  for (NatFlow& f : *flows) {
    auto it = by_connection.find(Key{f.kind, f.vip, f.vip_port, f.remote, f.remote_port, f.proto});
    if (it == by_connection.end()) continue;
    f.fastpath_pa = it->second->peer_pa;
    by_connection.erase(it);
  }
  // A stateless endpoint's connections have no conntrack entry: its Fastpath flows are the
  // only state of them.
  for (const auto& [key, c] : by_connection) {
    if (c->source || c->flow.table != 0) continue;
    size_t v = 0;
    while (v < config.vms.size() && config.vms[v].dip != c->redirect.dip) ++v;
    if (v == config.vms.size()) continue;
    const packet::FastpathRedirect& r = c->redirect;
    uint16_t dip_port = 0;
    for (const EndpointConfig& ep : config.endpoints) {
      if (ep.dip == r.dip && ep.vip == r.flow_dst && ep.port == r.flow_dst_port &&
          ep.proto == r.proto) {
        dip_port = ep.dip_port;
      }
    }
    flows->push_back(NatFlow{
        .dip = r.dip,
        .remote = r.flow_src,
        .vip = r.flow_dst,
        .fastpath_pa = c->peer_pa,
        .dip_port = dip_port,
        .remote_port = r.flow_src_port,
        .vip_port = r.flow_dst_port,
        .proto = r.proto,
        .kind = static_cast<uint8_t>(NatFlowKind::kInbound),
        .vm_index = static_cast<uint8_t>(v),
        .state = static_cast<uint8_t>(r.proto == flow::kProtoUdp ? NatFlowState::kUdp
                                                                 : NatFlowState::kTcpEstablished)});
  }
}

RedirectOutcome FastpathFlows(const AgentConfig& config, const std::vector<uint32_t>& vm_ofports,
                              const packet::FastpathRedirect& r, uint64_t cookie,
                              std::vector<OvsFlow>* flows) {
  flows->clear();
  const bool tcp = r.proto == flow::kProtoTcp;
  const std::string proto = tcp ? "tcp" : "udp";
  const std::string l4 = tcp ? "tcp" : "udp";
  const uint32_t idle_s = tcp ? config.nat.tcp_established_timeout_s : config.nat.udp_timeout_s;
  const auto idle = static_cast<uint16_t>(std::min<uint32_t>(idle_s, 65535));
  auto tunnel_to = [](uint32_t src, uint32_t dst) {
    return StrCat("set_field:", Ipv4ToString(src), "->tun_src,set_field:", Ipv4ToString(dst),
                  "->tun_dst,output:", kVswitchGreOfport);
  };
  auto is_local = [&config](uint32_t pa) {
    if (pa == config.address.addr) return true;
    for (const VmConfig& vm : config.vms) {
      if (vm.pa == pa) return true;
    }
    return false;
  };
  // Source side: the flow comes from a port of one of our VMs' leases.
  if (r.src_host_pa == config.address.addr && !is_local(r.dst_pa)) {
    for (const SnatLeaseConfig& lease : config.snat_leases) {
      if (lease.vip != r.flow_src || lease.proto != r.proto || r.flow_src_port < lease.port_start ||
          r.flow_src_port - lease.port_start >= lease.port_count) {
        continue;
      }
      flows->push_back(OvsFlow{
          .cookie = cookie,
          .table = kSnatOutTable,
          .priority = kFastpathFlowPriority,
          .idle_timeout = idle,
          .match = StrCat(proto, ",nw_src=", Ipv4ToString(r.flow_src), ",tp_src=",
                          r.flow_src_port, ",nw_dst=", Ipv4ToString(r.flow_dst),
                          ",tp_dst=", r.flow_dst_port),
          .actions = StrCat("dec_ttl,", tunnel_to(config.address.addr, r.dst_pa))});
      return RedirectOutcome::kAppliedSource;
    }
    return RedirectOutcome::kNotOurs;
  }
  // Destination side: the chosen DIP is one of our VMs, reached at its PA.
  if (r.src_host_pa == config.address.addr) return RedirectOutcome::kNotOurs;
  for (size_t v = 0; v < config.vms.size() && v < vm_ofports.size(); ++v) {
    const VmConfig& vm = config.vms[v];
    if (vm.pa != r.dst_pa || vm.dip != r.dip) continue;
    const uint32_t ofport = vm_ofports[v];
    for (const EndpointConfig& ep : config.endpoints) {
      if (ep.dip != vm.dip || ep.vip != r.flow_dst || ep.port != r.flow_dst_port ||
          ep.proto != r.proto) {
        continue;
      }
      const std::string to_source = StrCat("dec_ttl,", tunnel_to(vm.pa, r.src_host_pa));
      if (SharesDipPort(config, ep)) {
        // Replies are un-NATed by conntrack (table 0's return flow): pick this connection's
        // among them in table 1.
        flows->push_back(OvsFlow{
            .cookie = cookie,
            .table = 1,
            .priority = kFastpathFlowPriority,
            .idle_timeout = idle,
            .match = StrCat("ct_state=+trk+rpl,", proto, ",in_port=", ofport, ",nw_src=",
                            Ipv4ToString(ep.vip), ",tp_src=", ep.port, ",nw_dst=",
                            Ipv4ToString(r.flow_src), ",tp_dst=", r.flow_src_port),
            .actions = to_source});
      } else {
        flows->push_back(OvsFlow{
            .cookie = cookie,
            .priority = kFastpathFlowPriority,
            .idle_timeout = idle,
            .match = StrCat(proto, ",in_port=", ofport, ",nw_src=", Ipv4ToString(vm.dip),
                            ",tp_src=", ep.dip_port, ",nw_dst=", Ipv4ToString(r.flow_src),
                            ",tp_dst=", r.flow_src_port, ",nw_frag=no"),
            .actions = StrCat("set_field:", Ipv4ToString(ep.vip), "->ip_src,set_field:", ep.port,
                              "->", l4, "_src,", to_source)});
      }
      return RedirectOutcome::kAppliedDestination;
    }
  }
  return RedirectOutcome::kNotOurs;
}

size_t StageAgentRules(const AgentConfig& config, const PortMap& ports,
                       const flow::MacAddr& gateway_mac, vswitch::OvsExecutor* executor) {
  executor->RemoveAll();
  size_t refused = 0;
  for (const flow::Rule& rule : BuildAgentRules(config, ports, gateway_mac)) {
    const vswitch::RuleOptions options{.conntrack = NeedsConntrack(config, rule)};
    if (!executor->Add(rule, options).ok) ++refused;
  }
  return refused;
}

absl::StatusOr<std::unique_ptr<VswitchAgent>> VswitchAgent::Start(const AgentConfig& config) {
  if (config.datapath != Datapath::kVswitch) {
    return absl::InvalidArgumentError("agent.datapath is not vswitch");
  }
  std::unique_ptr<VswitchAgent> agent(new VswitchAgent(config));
  if (absl::Status s = agent->Setup(); !s.ok()) return s;
  return agent;
}

absl::Status VswitchAgent::Setup() {
  const VswitchConfig& vs = config_.vswitch;
  vswitch::OvsInstanceConfig oc{.run_dir = vs.run_dir,
                                .want_dpdk = vs.dpdk,
                                .pmd_cpu_mask = vs.pmd_cpu_mask,
                                .pmd_max_sleep_us = vs.pmd_max_sleep_us};
  absl::StatusOr<std::unique_ptr<vswitch::OvsInstance>> ovs =
      vs.start_ovs ? vswitch::OvsInstance::AttachOrStart(oc) : vswitch::OvsInstance::Attach(oc);
  if (!ovs.ok()) return ovs.status();
  ovs_ = std::move(*ovs);
  fprintf(stderr, "sluice-agent %s: OVS in %s (%s, %s build), bridge %s\n", config_.name.c_str(),
          vs.run_dir.c_str(), ovs_->owned() ? "started" : "attached to a running one",
          ovs_->dpdk() ? "DPDK" : "plain", vs.bridge.c_str());
  // OVS outlives the agent: its flows and conntrack entries carry the connections across an
  // agent restart (the next agent attaches and reconciles).
  ovs_->Release();

  if (absl::StatusOr<flow::MacAddr> uplink = InterfaceMac(config_.uplink); !uplink.ok()) {
    return uplink.status();
  }
  bridge_mac_ = BridgeMac(config_.address.addr);
  for (const VmConfig& vm : config_.vms) {
    absl::StatusOr<flow::MacAddr> mac = VmPortMac(vm);
    if (!mac.ok()) return mac.status();
    vm_macs_.push_back(*mac);
  }
  plan_ = PlanVswitch(config_, bridge_mac_, vm_macs_);
  if (absl::Status s = vswitch::EnsureBridge(*ovs_, plan_.bridge); !s.ok()) return s;
  if (absl::Status s = IgnoreArp(config_.uplink); !s.ok()) return s;
  for (const vswitch::PortSpec& port : plan_.bridge.ports) {
    if (port.ofport < kVswitchFirstVmOfport || port.ofport > kVswitchLastVmOfport) continue;
    if (!port.type.empty()) continue;  // vhost-user: no kernel interface
    if (absl::Status s = IgnoreArp(port.name); !s.ok()) return s;
  }

  // The LOCAL port is the host on the underlay: the host PA and every VM's PA (where the
  // muxes send GRE; OVS pops GRE addressed to an address of LOCAL).
  const std::string prefix = StrCat(Ipv4ToString(config_.address.addr), "/", config_.address.length);
  for (const std::vector<std::string>& cmd : std::vector<std::vector<std::string>>{
           {"link", "set", vs.bridge, "up"},
           {"addr", "replace", prefix, "dev", vs.bridge},
           {"link", "set", vs.slow_path_port, "up"}}) {
    if (absl::Status s = Ip(cmd); !s.ok()) return s;
  }
  for (const VmConfig& vm : config_.vms) {
    if (absl::Status s = Ip({"addr", "replace", Ipv4ToString(vm.pa) + "/32", "dev", vs.bridge});
        !s.ok()) {
      return s;
    }
  }

  channel_ = std::make_unique<vswitch::OfctlChannel>(ovs_.get(), vs.bridge);
  executor_ = std::make_unique<vswitch::OvsExecutor>(channel_.get(), plan_.executor);
  // A new bridge has no flows (fail_mode=secure drops everything): the base flows must be
  // there before the host can ARP for its router. A bridge that has them (an agent restart)
  // is left alone until the reconcile.
  absl::StatusOr<std::string> dump = channel_->DumpFlows();
  if (!dump.ok()) return dump.status();
  if (dump->find(StrCat("cookie=", "0xfff0000000000000")) == std::string::npos) {
    if (absl::Status s = executor_->Commit(); !s.ok()) return s;
  }
  if (absl::Status s = ResolveGatewayMac(); !s.ok()) return s;

  Stage(config_, plan_);
  size_t refused = 0;
  for (const vswitch::OvsRuleStatus& st : executor_->Statuses()) refused += !st.error.empty();
  // The previous agent's Fastpath flows: the ones this config still installs are adopted as
  // they are (counters, OVS's idle timer), the others removed and counted by reason.
  absl::StatusOr<StartReconcile> start =
      ReconcileAtStart(channel_.get(), executor_.get(), config_, plan_.vm_ofports);
  if (!start.ok()) return start.status();
  start_report_ = start->flows;
  FastpathAdoption& adoption = start->fastpath;
  for (size_t r = 0; r < kNumFastpathStale; ++r) fastpath_stale_[r] = adoption.stale_by_reason[r];
  fastpath_adopted_ = adoption.adopted.size();
  fastpath_cookie_seq_ = adoption.next_sequence;
  for (FastpathConnection& c : adoption.adopted) {
    fastpath_.emplace(c.flow.Identity(), std::move(c));
  }
  const vswitch::ReconcileReport& report = start_report_;
  fprintf(stderr,
          "sluice-agent %s: bridge %s reconciled: %zu flows wanted, %zu kept, %zu written, %zu "
          "removed; %zu rule(s) refused by OVS; Fastpath flows: %zu adopted, %zu removed\n",
          config_.name.c_str(), vs.bridge.c_str(), report.desired, report.kept, report.added,
          report.removed, refused, adoption.adopted.size(), adoption.stale.size());
  for (const vswitch::OvsRuleStatus& st : executor_->Statuses()) {
    if (!st.error.empty()) fprintf(stderr, "  refused: %s\n", st.error.c_str());
  }
  for (const DumpedFlow& f : adoption.stale) {
    fprintf(stderr, "  Fastpath flow removed: table=%u,priority=%u,%s\n", f.table, f.priority,
            f.match.c_str());
  }
  if (absl::Status s = OpenSlowPath(); !s.ok()) return s;
  slow_path_thread_ = std::jthread([this](std::stop_token stop) { ReadSlowPath(stop); });
  ready_ = true;
  return absl::OkStatus();
}

absl::StatusOr<flow::MacAddr> VswitchAgent::VmPortMac(const VmConfig& vm) const {
  absl::StatusOr<vswitch::PortSpec> port = VmBridgePort(vm.port);
  if (!port.ok()) return port.status();
  // A vhost-user port has no kernel interface: the VM's gateway answers with the bridge's MAC.
  if (!port->type.empty()) return bridge_mac_;
  absl::StatusOr<flow::MacAddr> mac = InterfaceMac(port->name);
  if (!mac.ok()) {
    return absl::FailedPreconditionError(StrCat("VM ", vm.name, ": ", mac.status().message()));
  }
  return *mac;
}

absl::Status VswitchAgent::ResolveGatewayMac() {
  // A datagram to the router's discard port makes the kernel resolve it (through the
  // bridge's LOCAL port and the ARP base flows); the answer is read from its ARP table.
  const std::string gw = Ipv4ToString(config_.gateway);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(StrCat("socket: ", strerror(errno)));
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(9);
  to.sin_addr.s_addr = htonl(config_.gateway);
  auto last_sent = std::chrono::steady_clock::time_point{};
  absl::Status resolved = vswitch::WaitFor(
      [&] {
        for (std::string_view line : SplitString(ReadText("/proc/net/arp"), '\n')) {
          std::vector<std::string_view> f = SplitString(line, ' ');
          std::vector<std::string> fields;
          for (std::string_view x : f) {
            if (!x.empty()) fields.emplace_back(x);
          }
          if (fields.size() >= 4 && fields[0] == gw && fields[2] == "0x2" &&
              ParseMac(fields[3], &gateway_mac_)) {
            return true;
          }
        }
        const auto now = std::chrono::steady_clock::now();
        if (now - last_sent > std::chrono::seconds(1)) {
          sendto(fd, "", 0, MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&to), sizeof(to));
          last_sent = now;
        }
        return false;
      },
      std::chrono::seconds(30), "the router " + gw + " to answer ARP on bridge " +
                                    config_.vswitch.bridge);
  close(fd);
  return resolved;
}

absl::Status VswitchAgent::OpenSlowPath() {
  const std::string& ifname = config_.vswitch.slow_path_port;
  const unsigned index = if_nametoindex(ifname.c_str());
  if (index == 0) {
    return absl::FailedPreconditionError(StrCat("slow-path port ", ifname, ": ", strerror(errno)));
  }
  slow_fd_ = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
  if (slow_fd_ < 0) return absl::InternalError(StrCat("AF_PACKET socket: ", strerror(errno)));
  int on = 1;
  setsockopt(slow_fd_, SOL_PACKET, PACKET_AUXDATA, &on, sizeof(on));
  sockaddr_ll addr{};
  addr.sll_family = AF_PACKET;
  addr.sll_protocol = htons(ETH_P_ALL);
  addr.sll_ifindex = static_cast<int>(index);
  if (bind(slow_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return absl::InternalError(StrCat("bind to ", ifname, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

void VswitchAgent::ReadSlowPath(std::stop_token stop) {
  uint8_t frame[2048];
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(tpacket_auxdata))];
  while (!stop.stop_requested()) {
    pollfd p{.fd = slow_fd_, .events = POLLIN, .revents = 0};
    if (poll(&p, 1, 100) <= 0) continue;  // 100 ms: how soon a stop request is noticed
    iovec iov{.iov_base = frame, .iov_len = sizeof(frame)};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = recvmsg(slow_fd_, &msg, MSG_DONTWAIT);
    if (n <= 0) continue;
    uint16_t vlan = 0;
    // The kernel moves the tag into metadata on receive; an untouched frame still has it.
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_PACKET || c->cmsg_type != PACKET_AUXDATA) continue;
      tpacket_auxdata aux;
      memcpy(&aux, CMSG_DATA(c), sizeof(aux));
      if (aux.tp_status & TP_STATUS_VLAN_VALID) vlan = aux.tp_vlan_tci & 0x0fff;
    }
    if (vlan == 0 && n >= 18 && frame[12] == 0x81 && frame[13] == 0x00) {
      vlan = static_cast<uint16_t>(((frame[14] << 8) | frame[15]) & 0x0fff);
    }
    if (vlan == kRedirectVlan) {
      HandleRedirect(frame, static_cast<size_t>(n));
      continue;
    }
    ++slow_path_packets_;
    ++misses_[static_cast<size_t>(ClassifyMiss(vlan))];
  }
}

void VswitchAgent::HandleRedirect(const uint8_t* frame, size_t len) {
  ++redirects_received_;
  auto outcome = [this](RedirectOutcome o) { ++redirects_[static_cast<size_t>(o)]; };
  size_t l3 = 14;  // the kernel normally strips the VLAN tag into the auxdata
  if (len >= 18 && frame[12] == 0x81 && frame[13] == 0x00) l3 = 18;
  if (len < l3 + 20 || frame[l3 - 2] != 0x08 || frame[l3 - 1] != 0x00) {
    return outcome(RedirectOutcome::kMalformed);
  }
  const uint8_t* ip = frame + l3;
  const size_t ihl = size_t{ip[0] & 0x0fu} * 4;
  const size_t total = size_t{ip[2]} << 8 | ip[3];
  if (ihl < 20 || total > len - l3 || total < ihl + 8) return outcome(RedirectOutcome::kMalformed);
  if (!config_.fastpath_key) return outcome(RedirectOutcome::kBadAuth);
  packet::FastpathRedirect r;
  switch (packet::DecodeFastpathRedirect(ip + ihl + 8, total - ihl - 8, *config_.fastpath_key,
                                         &r)) {
    case packet::RedirectCheck::kOk:
      break;
    case packet::RedirectCheck::kMalformed:
      return outcome(RedirectOutcome::kMalformed);
    case packet::RedirectCheck::kBadAuth:
      return outcome(RedirectOutcome::kBadAuth);
  }
  const auto now_s = static_cast<uint64_t>(time(nullptr));
  if ((now_s > r.timestamp_s ? now_s - r.timestamp_s : r.timestamp_s - now_s) > kRedirectMaxAgeS) {
    return outcome(RedirectOutcome::kStale);
  }
  if (!config_.address.Contains(r.dst_pa) || !config_.address.Contains(r.src_host_pa) ||
      (r.proto != flow::kProtoTcp && r.proto != flow::kProtoUdp)) {
    return outcome(RedirectOutcome::kMalformed);
  }
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<OvsFlow> flows;
  const RedirectOutcome applied =
      FastpathFlows(config_, plan_.vm_ofports, r, kFastpathCookie | (fastpath_cookie_seq_++ & 0xffff), &flows);
  if (flows.empty()) return outcome(applied);
  std::string lines;
  for (const OvsFlow& f : flows) lines += "add " + f.Text() + "\n";
  const auto start = std::chrono::steady_clock::now();
  absl::Status s = channel_->Bundle(lines);
  const auto us = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                            std::chrono::steady_clock::now() - start)
                                            .count());
  fastpath_install_us_last_ = us;
  if (us > fastpath_install_us_max_) fastpath_install_us_max_ = us;
  if (!s.ok()) {
    ++fastpath_install_errors_;
    fprintf(stderr, "sluice-agent %s: Fastpath flow refused by OVS: %s\n", config_.name.c_str(),
            std::string(s.message()).c_str());
    return;
  }
  FastpathConnection connection;
  for (const OvsFlow& f : flows) {
    if (!CheckFastpathFlow(FromOvsFlow(f), config_, plan_.vm_ofports, &connection)) {
      fastpath_.insert_or_assign(connection.flow.Identity(), connection);
    }
  }
  outcome(applied);
}

void VswitchAgent::Stage(const AgentConfig& config, const VswitchPlan& plan) {
  vswitch::OvsExecutorConfig ex = plan.executor;
  for (OvsFlow& f : SnatFlows(config, plan, gateway_mac_)) ex.extra_flows.push_back(std::move(f));
  executor_->SetConfig(std::move(ex));
  StageAgentRules(config, plan.ports, gateway_mac_, executor_.get());
}

VswitchAgent::~VswitchAgent() {
  if (slow_path_thread_.joinable()) {
    slow_path_thread_.request_stop();
    slow_path_thread_.join();
  }
  if (slow_fd_ >= 0) close(slow_fd_);
}

bool VswitchAgent::PublishConfig(const AgentConfig& next, std::string* error) {
  std::lock_guard<std::mutex> lock(mu_);
  const AgentConfig& now = config_;
  const char* changed = nullptr;
  if (next.name != now.name) changed = "agent.name";
  if (next.datapath != now.datapath || !(next.vswitch == now.vswitch)) changed = "vswitch";
  if (next.uplink != now.uplink) changed = "agent.uplink";
  if (next.address.addr != now.address.addr || next.address.length != now.address.length) {
    changed = "agent.address";
  }
  if (next.gateway != now.gateway) changed = "agent.gateway";
  if (changed != nullptr) {
    *error = std::string(changed) + " cannot change while running (restart the agent)";
    return false;
  }
  for (size_t i = 0; i < next.endpoints.size(); ++i) {
    bool local = false;
    for (const VmConfig& vm : next.vms) local |= vm.dip == next.endpoints[i].dip;
    if (!local) {
      *error = StrCat("endpoints[", i, "].dip: ", Ipv4ToString(next.endpoints[i].dip),
                      " is not the DIP of any VM on this host");
      return false;
    }
  }
  // VMs: one not running gets a port on the bridge (OVSDB) before its flows; one no longer in
  // the config loses its flows (same bundle as everything else), then its port.
  VmChange change;
  if (absl::Status s = PlanVmChange(next, &change); !s.ok()) {
    *error = std::string(s.message());
    return false;
  }
  if (absl::Status s = PlugVms(next, change); !s.ok()) {
    *error = std::string(s.message());
    return false;
  }
  Stage(next, change.plan);
  if (absl::Status s = executor_->Commit(); !s.ok()) {
    // The bridge's flows are unchanged (one bundle); stage the running rules again.
    Stage(config_, plan_);
    UnplugVms(next, change.added);
    *error = StrCat("OVS refused the change (bridge unchanged): ", s.message());
    return false;
  }
  UnplugVms(config_, change.removed);
  for (size_t v : change.added) {
    fprintf(stderr, "sluice-agent %s: VM %s attached: port %s (OpenFlow %u)\n",
            next.name.c_str(), next.vms[v].name.c_str(), next.vms[v].port.c_str(),
            change.plan.vm_ofports[v]);
  }
  for (size_t v : change.removed) {
    fprintf(stderr, "sluice-agent %s: VM %s detached: port %s removed\n", config_.name.c_str(),
            config_.vms[v].name.c_str(), config_.vms[v].port.c_str());
  }
  plan_ = std::move(change.plan);
  vm_macs_ = std::move(change.macs);
  config_ = next;
  RemoveStaleFastpathFlows();
  ++generation_;
  return true;
}

void VswitchAgent::RemoveStaleFastpathFlows() {
  std::vector<DumpedFlow> stale;
  std::vector<std::string> gone;
  for (const auto& [identity, c] : fastpath_) {
    FastpathConnection again;
    if (std::optional<FastpathStale> why =
            CheckFastpathFlow(c.flow, config_, plan_.vm_ofports, &again)) {
      ++fastpath_stale_[static_cast<size_t>(*why)];
      stale.push_back(c.flow);
      gone.push_back(identity);
    }
  }
  if (stale.empty()) return;
  // A flow OVS has idled out meanwhile is simply not found by its delete.
  if (absl::Status s = channel_->Bundle(DeleteStrictLines(stale)); !s.ok()) {
    fprintf(stderr, "sluice-agent %s: removing %zu stale Fastpath flow(s): %s\n",
            config_.name.c_str(), stale.size(), std::string(s.message()).c_str());
    return;
  }
  for (const std::string& identity : gone) fastpath_.erase(identity);
}

absl::Status VswitchAgent::PlanVmChange(const AgentConfig& next, VmChange* change) const {
  std::set<uint32_t> used;
  std::vector<uint32_t> ofports;
  for (size_t i = 0; i < next.vms.size(); ++i) {
    const VmConfig& vm = next.vms[i];
    size_t v = 0;
    while (v < config_.vms.size() && config_.vms[v].name != vm.name) ++v;
    if (v < config_.vms.size()) {
      if (!(config_.vms[v] == vm)) {
        return absl::FailedPreconditionError(
            StrCat("vms[", i, "]: VM '", vm.name, "' cannot change while attached (detach it)"));
      }
      ofports.push_back(plan_.vm_ofports[v]);
      change->macs.push_back(vm_macs_[v]);
      used.insert(plan_.vm_ofports[v]);
      continue;
    }
    absl::StatusOr<vswitch::PortSpec> port = VmBridgePort(vm.port);
    if (!port.ok()) {
      return absl::Status(port.status().code(), StrCat("vms[", i, "].port: ", port.status().message()));
    }
    if (!next.address.Contains(vm.pa) || vm.pa == next.address.addr) {
      return absl::InvalidArgumentError(
          StrCat("vms[", i, "].pa: ", Ipv4ToString(vm.pa), " is not an address of the uplink ",
                 "prefix other than the host's"));
    }
    absl::StatusOr<flow::MacAddr> mac = VmPortMac(vm);
    if (!mac.ok()) return mac.status();
    change->added.push_back(i);
    ofports.push_back(0);
    change->macs.push_back(*mac);
  }
  for (size_t v = 0; v < config_.vms.size(); ++v) {
    bool kept = false;
    for (const VmConfig& vm : next.vms) kept |= vm.name == config_.vms[v].name;
    if (!kept) change->removed.push_back(v);
  }
  for (size_t i : change->added) {
    uint32_t ofport = kVswitchFirstVmOfport;
    while (ofport <= kVswitchLastVmOfport && used.count(ofport) != 0) ++ofport;
    if (ofport > kVswitchLastVmOfport) {
      return absl::ResourceExhaustedError(
          StrCat("vms[", i, "]: no free OpenFlow port for VM '", next.vms[i].name, "'"));
    }
    used.insert(ofport);
    ofports[i] = ofport;
  }
  change->plan = PlanVswitch(next, bridge_mac_, change->macs, ofports);
  for (size_t i = 0; i < next.vms.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (change->plan.bridge.ports[1 + i].name == change->plan.bridge.ports[1 + j].name) {
        return absl::InvalidArgumentError(StrCat("vms[", i, "].port: ", next.vms[i].port,
                                                 " is already VM '", next.vms[j].name, "''s port"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status VswitchAgent::PlugVms(const AgentConfig& next, const VmChange& change) {
  if (change.added.empty()) return absl::OkStatus();
  auto fail = [&](const absl::Status& s) {
    UnplugVms(next, change.added);
    return s;
  };
  if (absl::Status s = vswitch::EnsureBridge(*ovs_, change.plan.bridge); !s.ok()) return fail(s);
  for (size_t v : change.added) {
    const vswitch::PortSpec& port = change.plan.bridge.ports[1 + v];
    if (port.type.empty()) {
      if (absl::Status s = IgnoreArp(port.name); !s.ok()) return fail(s);
    }
    if (absl::Status s = Ip({"addr", "replace", Ipv4ToString(next.vms[v].pa) + "/32", "dev",
                             next.vswitch.bridge});
        !s.ok()) {
      return fail(s);
    }
  }
  return absl::OkStatus();
}

void VswitchAgent::UnplugVms(const AgentConfig& config, const std::vector<size_t>& vms) {
  for (size_t v : vms) {
    const VmConfig& vm = config.vms[v];
    absl::StatusOr<vswitch::PortSpec> port = VmBridgePort(vm.port);
    const std::string name = port.ok() ? port->name : vm.port;
    if (absl::Status s = vswitch::RemovePort(*ovs_, config.vswitch.bridge, name); !s.ok()) {
      fprintf(stderr, "sluice-agent %s: removing port %s of VM %s: %s\n", config.name.c_str(),
              name.c_str(), vm.name.c_str(), std::string(s.message()).c_str());
    }
    // Ignored when the address is not there (a failed plug).
    (void)Ip({"addr", "del", Ipv4ToString(vm.pa) + "/32", "dev", config.vswitch.bridge});
  }
}

bool VswitchAgent::CopyFlows(size_t limit, uint32_t dip, std::vector<NatFlow>* flows,
                             uint64_t* total) {
  flows->clear();
  *total = 0;
  absl::StatusOr<std::string> dump = ovs_->Appctl({"dpctl/dump-conntrack"});
  if (!dump.ok()) return false;
  AgentConfig config;
  std::vector<FastpathConnection> fastpath;
  {
    std::lock_guard<std::mutex> lock(mu_);
    config = config_;
    for (const auto& [identity, c] : fastpath_) fastpath.push_back(c);
  }
  std::vector<NatFlow> all = ConntrackFlows(*dump, config);
  AnnotateFastpath(config, fastpath, &all);
  for (const NatFlow& f : all) {
    if (dip != 0 && f.dip != dip) continue;
    ++*total;
    if (flows->size() < limit) flows->push_back(f);
  }
  return true;
}

void VswitchAgent::Refresh() const {
  const auto now = std::chrono::steady_clock::now();
  if (now - refreshed_.at < std::chrono::milliseconds(250)) return;
  refreshed_.at = now;
  // One dump for the rules' and the SNAT flows' counters.
  if (absl::StatusOr<std::string> dump = channel_->DumpFlows(); dump.ok()) {
    executor_->ReadCounters(*dump);
    refreshed_.inbound = refreshed_.dsr_return = refreshed_.stateful_return = 0;
    for (const vswitch::OvsRuleStatus& st : executor_->Statuses()) {
      const flow::Rule probe{.id = st.id};
      switch (KindOf(probe)) {
        case RuleKind::kDsrReturn:
          refreshed_.dsr_return += st.packets;
          if (NeedsConntrack(config_, probe)) refreshed_.stateful_return += st.packets;
          break;
        default:
          refreshed_.inbound += st.packets;
          break;
      }
    }
    refreshed_.snat_out = refreshed_.snat_in = refreshed_.fastpath = 0;
    refreshed_.fastpath_flows = 0;
    refreshed_.snat_exhausted.assign(config_.vms.size(), 0);
    std::set<std::string> fastpath_present;
    for (std::string_view line : SplitString(*dump, '\n')) {
      const uint64_t cookie = DumpField(line, "cookie");
      const uint64_t kind = cookie & kCookieKindMask;
      const uint64_t packets = DumpField(line, "n_packets");
      if (kind == kSnatOutCookie) refreshed_.snat_out += packets;
      if (kind == kSnatDeliverCookie) refreshed_.snat_in += packets;
      if (IsFastpathCookie(cookie)) {
        refreshed_.fastpath += packets;
        ++refreshed_.fastpath_flows;
        DumpedFlow f;
        if (ParseDumpedFlow(line, &f)) fastpath_present.insert(f.Identity());
      }
      if (kind == kSnatExhaustedCookie) {
        const uint64_t ofport = (cookie & 0xffff) >> 1;
        for (size_t v = 0; v < plan_.vm_ofports.size() && v < config_.vms.size(); ++v) {
          if (plan_.vm_ofports[v] == ofport) refreshed_.snat_exhausted[v] += packets;
        }
      }
    }
    // Flows OVS idled out are no longer the agent's.
    std::erase_if(fastpath_,
                  [&](const auto& entry) { return !fastpath_present.contains(entry.first); });
  }
  absl::StatusOr<vswitch::DatapathStats> dp = vswitch::ReadDatapathStats(*ovs_);
  if (dp.ok()) {
    refreshed_.datapath = *dp;
    refreshed_.datapath_error.clear();
  } else {
    refreshed_.datapath_error = std::string(dp.status().message());
  }
  // other_config:hw-offload is read by OVS at its start; it is read here once.
  if (!refreshed_.hw_offload_read) {
    absl::StatusOr<std::string> hw =
        ovs_->Vsctl({"--if-exists", "get", "Open_vSwitch", ".", "other_config:hw-offload"});
    if (hw.ok()) {
      std::string v = *hw;
      std::erase_if(v, [](char c) { return c == '"' || c == '\n' || c == ' '; });
      refreshed_.hw_offload = v.empty() ? "false" : v;
      refreshed_.hw_offload_read = true;
    }
  }
}

AgentRuntimeStatus VswitchAgent::Status() const {
  std::lock_guard<std::mutex> lock(mu_);
  Refresh();
  AgentRuntimeStatus s{.ready = ready_.load()};
  uint64_t on_bridge = 0;
  for (const auto& [name, value] : executor_->Counters()) {
    if (name == "rules_on_bridge") on_bridge = value;
  }
  s.counters = {
      {"inbound_packets", refreshed_.inbound},
      {"dsr_return_packets", refreshed_.dsr_return},
      {"stateful_return_packets", refreshed_.stateful_return},
      {"snat_out_packets", refreshed_.snat_out},
      {"snat_in_packets", refreshed_.snat_in},
      {"fastpath_packets", refreshed_.fastpath},
      {"fastpath_redirects_received", redirects_received_.load()},
      {"fastpath_redirects_source", Redirects(RedirectOutcome::kAppliedSource)},
      {"fastpath_redirects_destination", Redirects(RedirectOutcome::kAppliedDestination)},
      {"fastpath_flows", refreshed_.fastpath_flows},
      {"fastpath_flows_adopted_at_start", fastpath_adopted_.load()},
      {"rules_installed", on_bridge},
      {"slow_path_packets", slow_path_packets_.load()},
      {"ovs_datapath_flows", refreshed_.datapath.flows},
      {"ovs_datapath_flows_offloaded", refreshed_.datapath.offloaded},
      {"ovs_datapath_flows_partially_offloaded", refreshed_.datapath.partially_offloaded},
      {"ovs_datapath_hits", refreshed_.datapath.hits},
      {"ovs_datapath_misses", refreshed_.datapath.misses},
      {"ovs_hw_offload", refreshed_.hw_offload == "true" ? 1u : 0u},
      {"config_generation_in_use", generation_.load()},
  };
  for (size_t r = 0; r < kNumVswitchMisses; ++r) {
    s.drops.emplace_back(StrCat("miss_", kVswitchMissNames[r]), misses_[r].load());
  }
  s.drops.emplace_back("fastpath_redirect_malformed", Redirects(RedirectOutcome::kMalformed));
  s.drops.emplace_back("fastpath_redirect_bad_auth", Redirects(RedirectOutcome::kBadAuth));
  s.drops.emplace_back("fastpath_redirect_stale", Redirects(RedirectOutcome::kStale));
  s.drops.emplace_back("fastpath_redirect_not_ours", Redirects(RedirectOutcome::kNotOurs));
  for (size_t r = 0; r < kNumFastpathStale; ++r) {
    s.counters.emplace_back(StrCat("fastpath_flows_removed_stale_", kFastpathStaleNames[r]),
                            fastpath_stale_[r].load());
  }
  uint64_t exhausted = 0;
  for (uint64_t n : refreshed_.snat_exhausted) exhausted += n;
  s.drops.emplace_back("snat_ports_exhausted", exhausted);
  s.vms.resize(config_.vms.size());
  for (size_t v = 0; v < s.vms.size() && v < refreshed_.snat_exhausted.size(); ++v) {
    s.vms[v].snat_ports_exhausted = refreshed_.snat_exhausted[v];
  }
  return s;
}

std::string VswitchAgent::StatsJson(const std::function<void(JsonWriter&)>& more) const {
  std::lock_guard<std::mutex> lock(mu_);
  Refresh();
  JsonWriter j;
  j.BeginObject()
      .Field("role", "agent")
      .Field("name", config_.name)
      .Field("ready", ready_.load())
      .Field("executor", "vswitch")
      .Field("inbound_packets", refreshed_.inbound)
      .Field("dsr_return_packets", refreshed_.dsr_return)
      .Field("stateful_return_packets", refreshed_.stateful_return)
      .Field("snat_out_packets", refreshed_.snat_out)
      .Field("snat_in_packets", refreshed_.snat_in)
      .Field("fastpath_packets", refreshed_.fastpath)
      .Field("config_generation", generation_.load());
  j.Key("fastpath")
      .BeginObject()
      .Field("redirects_received", redirects_received_.load())
      .Field("redirects_applied_source", Redirects(RedirectOutcome::kAppliedSource))
      .Field("redirects_applied_destination", Redirects(RedirectOutcome::kAppliedDestination))
      .Field("flows", refreshed_.fastpath_flows)
      .Field("install_errors", fastpath_install_errors_.load())
      .Field("install_us_last", fastpath_install_us_last_.load())
      .Field("install_us_max", fastpath_install_us_max_.load())
      .Field("connections", uint64_t{fastpath_.size()})
      .Field("adopted_at_start", fastpath_adopted_.load());
  // Fastpath flows removed because the config no longer installs them (found at start, or
  // after a config change), by reason.
  j.Key("removed_stale").BeginObject();
  for (size_t r = 0; r < kNumFastpathStale; ++r) {
    j.Field(kFastpathStaleNames[r], fastpath_stale_[r].load());
  }
  j.EndObject();
  j.EndObject();
  j.Key("ovs").BeginObject();
  j.Field("run_dir", config_.vswitch.run_dir)
      .Field("bridge", config_.vswitch.bridge)
      .Field("vswitchd", ovs_->dpdk() ? "dpdk" : "plain")
      .Field("hw_offload", refreshed_.hw_offload == "true");
  for (const auto& [name, value] : executor_->Counters()) j.Field(name, value);
  j.Field("start_flows_kept", uint64_t{start_report_.kept})
      .Field("start_flows_written", uint64_t{start_report_.added})
      .Field("start_flows_removed", uint64_t{start_report_.removed});
  j.Key("datapath")
      .BeginObject()
      .Field("flows", refreshed_.datapath.flows)
      .Field("offloaded", refreshed_.datapath.offloaded)
      .Field("partially_offloaded", refreshed_.datapath.partially_offloaded)
      .Field("hits", refreshed_.datapath.hits)
      .Field("misses", refreshed_.datapath.misses)
      .Field("lost", refreshed_.datapath.lost);
  if (!refreshed_.datapath_error.empty()) j.Field("error", refreshed_.datapath_error);
  j.EndObject();
  j.Key("refused").BeginArray();
  for (const vswitch::OvsRuleStatus& st : executor_->Statuses()) {
    if (!st.error.empty()) j.String(st.error);
  }
  j.EndArray();
  j.EndObject();
  j.Key("slow_path")
      .BeginObject()
      .Field("port", config_.vswitch.slow_path_port)
      .Field("packets", slow_path_packets_.load());
  j.Key("misses").BeginObject();
  for (size_t r = 0; r < kNumVswitchMisses; ++r) j.Field(kVswitchMissNames[r], misses_[r].load());
  j.EndObject();
  j.EndObject();
  // The DPDK agent's drop names, so scripts can read drops.X from either mode.
  j.Key("drops").BeginObject();
  j.Field("no_rule", slow_path_packets_.load());
  j.Field("fastpath_redirect_malformed", Redirects(RedirectOutcome::kMalformed));
  j.Field("fastpath_redirect_bad_auth", Redirects(RedirectOutcome::kBadAuth));
  j.Field("fastpath_redirect_stale", Redirects(RedirectOutcome::kStale));
  j.Field("fastpath_redirect_not_ours", Redirects(RedirectOutcome::kNotOurs));
  uint64_t exhausted = 0;
  for (uint64_t n : refreshed_.snat_exhausted) exhausted += n;
  j.Field("snat_ports_exhausted", exhausted);
  j.EndObject();
  // Per VM, as the DPDK agent's (snat_ports_exhausted: packets of new connections conntrack
  // found no free port of the VM's lease for; dropped).
  j.Key("vms").BeginArray();
  for (size_t v = 0; v < config_.vms.size(); ++v) {
    j.BeginObject()
        .Field("name", config_.vms[v].name)
        .Field("dip", Ipv4ToString(config_.vms[v].dip))
        .Field("pa", Ipv4ToString(config_.vms[v].pa))
        .Field("snat_ports_exhausted",
               v < refreshed_.snat_exhausted.size() ? refreshed_.snat_exhausted[v] : 0)
        .EndObject();
  }
  j.EndArray();
  if (more) more(j);
  j.EndObject();
  return j.str();
}

}  // namespace sluice::agent
