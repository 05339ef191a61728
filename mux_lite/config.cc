#include "mux_lite/config.h"

#include <algorithm>
#include <set>
#include <tuple>

#include "common/config_reader.h"
#include "common/strings.h"

namespace sluice::mux {

const char* SchedulerName(Scheduler s) {
  switch (s) {
    case Scheduler::kMaglev:
      return "maglev";
    case Scheduler::kWeightedRoundRobin:
      return "weighted-round-robin";
    case Scheduler::kSourceHash:
      return "source-hash";
  }
  return "?";
}

namespace {

Scheduler ReadScheduler(ConfigNode& node) {
  std::string name = node.OptionalString("scheduler", "maglev");
  for (Scheduler s : {Scheduler::kMaglev, Scheduler::kWeightedRoundRobin, Scheduler::kSourceHash}) {
    if (name == SchedulerName(s)) return s;
  }
  node.Fail("scheduler", StrCat("'", name,
                                "' is not a scheduler (maglev, weighted-round-robin, source-hash)"));
  return Scheduler::kMaglev;
}

flow::Tunnel ReadEncap(ConfigNode& node) {
  std::string name = node.OptionalString("encap", "ipip");
  if (name == "ipip") return flow::Tunnel::kIpip;
  if (name == "gue") return flow::Tunnel::kGue;
  if (name == "gre") return flow::Tunnel::kGre;  // hosts behind OVS (vswitch/README.md)
  node.Fail("encap", StrCat("'", name, "' is not an encapsulation (ipip, gue or gre)"));
  return flow::Tunnel::kIpip;
}

BgpConfig ReadBgp(ConfigNode& bgp, uint32_t mux_pa) {
  BgpConfig c;
  bgp.AllowOnly({"local_as", "peer", "peer_as", "router_id", "hold_time_s", "gobgpd", "gobgp",
                 "api_port"});
  c.enabled = true;
  c.local_as = static_cast<uint32_t>(bgp.Uint("local_as", 1, 4294967294u));
  c.peer = bgp.Ipv4("peer");
  c.peer_as = static_cast<uint32_t>(bgp.Uint("peer_as", 1, 4294967294u));
  c.router_id = bgp.Has("router_id") ? bgp.Ipv4("router_id") : mux_pa;
  c.hold_time_s = static_cast<uint32_t>(bgp.OptionalUint("hold_time_s", c.hold_time_s, 3, 65535));
  c.gobgpd = bgp.OptionalString("gobgpd", c.gobgpd);
  c.gobgp = bgp.OptionalString("gobgp", c.gobgp);
  c.api_port = static_cast<uint32_t>(bgp.OptionalUint("api_port", c.api_port, 1, 65535));
  return c;
}

absl::StatusOr<MuxConfig> ReadMuxConfig(ConfigNode& root) {
  MuxConfig config;
  root.AllowOnly({"mux", "vips", "snat_ranges", "bgp"});
  ConfigNode mux = root.Map("mux");
  mux.AllowOnly({"name", "port", "address", "gateway", "flow_table_size", "workers",
                 "tcp_idle_timeout_s",
                 "udp_idle_timeout_s", "closing_timeout_s", "maglev_size", "gue_port",
                 "fastpath_key", "cloud_state_file"});
  config.name = mux.String("name");
  config.port = mux.String("port");
  config.address = mux.Prefix("address");
  config.gateway = mux.Ipv4("gateway");
  config.flow_table_size =
      static_cast<uint32_t>(mux.OptionalUint("flow_table_size", config.flow_table_size, 8,
                                             1u << 28));
  config.workers = static_cast<uint16_t>(mux.OptionalUint("workers", config.workers, 1, 64));
  FlowTimeouts& t = config.flow_timeouts;
  t.tcp_idle_s = static_cast<uint32_t>(mux.OptionalUint("tcp_idle_timeout_s", t.tcp_idle_s, 1,
                                                        86400));
  t.udp_idle_s = static_cast<uint32_t>(mux.OptionalUint("udp_idle_timeout_s", t.udp_idle_s, 1,
                                                        86400));
  t.closing_s = static_cast<uint32_t>(mux.OptionalUint("closing_timeout_s", t.closing_s, 1,
                                                       3600));
  config.gue_port = static_cast<uint16_t>(mux.OptionalUint("gue_port", config.gue_port, 1, 65535));
  if (mux.Has("fastpath_key")) {
    config.fastpath = packet::ParseFastpathKey(mux.String("fastpath_key").c_str(),
                                               &config.fastpath_key);
    if (!config.fastpath) mux.Fail("fastpath_key", "must be 64 hex digits (a 256-bit key)");
  }
  config.cloud_state_file = mux.OptionalString("cloud_state_file", "");
  if (mux.status().ok() && !config.cloud_state_file.empty() &&
      config.cloud_state_file[0] != '/') {
    mux.Fail("cloud_state_file", "must be an absolute path");
  }
  config.maglev_size = static_cast<uint32_t>(
      mux.OptionalUint("maglev_size", config.maglev_size, 3, 1u << 24));
  if (mux.status().ok() && !IsPrime(config.maglev_size)) {
    mux.Fail("maglev_size", StrCat(config.maglev_size, " is not a prime (try 65537)"));
  }
  if (mux.status().ok() && !config.address.Contains(config.gateway)) {
    mux.Fail("gateway", StrCat(Ipv4ToString(config.gateway), " is not inside ",
                               Ipv4ToString(config.address.addr), "/",
                               config.address.length));
  }

  std::set<std::tuple<uint32_t, uint16_t, uint8_t>> seen_vips;
  // A mux may start with no VIPs: the cloud controller pushes them (gRPC SetVips).
  config.file_sets_vips = root.Has("vips");
  config.file_sets_snat_ranges = root.Has("snat_ranges");
  for (ConfigNode& v : root.Sequence("vips", false)) {
    v.AllowOnly({"vip", "port", "protocol", "scheduler", "backends"});
    VipConfig vip;
    vip.vip = v.Ipv4("vip");
    vip.port = static_cast<uint16_t>(v.Uint("port", 1, 65535));
    vip.proto = v.L4Protocol("protocol");
    vip.scheduler = ReadScheduler(v);
    if (v.status().ok() && !seen_vips.insert({vip.vip, vip.port, vip.proto}).second) {
      v.Fail("vip", StrCat(Ipv4ToString(vip.vip), ":", vip.port, "/", L4ProtocolName(vip.proto),
                           " is configured twice"));
    }
    std::set<uint32_t> seen_dips;
    for (ConfigNode& b : v.Sequence("backends", true)) {
      b.AllowOnly({"dip", "host", "weight", "encap"});
      BackendConfig backend;
      backend.dip = b.Ipv4("dip");
      backend.host = b.Ipv4("host");
      backend.weight = static_cast<uint32_t>(b.OptionalUint("weight", 1, 0, 65535));
      backend.encap = ReadEncap(b);
      if (b.status().ok() && !seen_dips.insert(backend.dip).second) {
        b.Fail("dip", StrCat(Ipv4ToString(backend.dip), " appears twice in this VIP"));
      }
      vip.backends.push_back(backend);
    }
    config.vips.push_back(std::move(vip));
  }
  for (ConfigNode& r : root.Sequence("snat_ranges", false)) {
    r.AllowOnly({"vip", "protocol", "port_start", "port_count", "host", "encap"});
    SnatRangeConfig range;
    range.vip = r.Ipv4("vip");
    range.proto = r.Has("protocol") ? r.L4Protocol("protocol") : 0;
    range.port_start = static_cast<uint16_t>(r.Uint("port_start", 1, 65535));
    range.port_count = static_cast<uint16_t>(r.Uint("port_count", 1, 65535));
    range.host = r.Ipv4("host");
    range.encap = ReadEncap(r);
    if (!r.status().ok()) break;
    if (uint32_t{range.port_start} + range.port_count > 65536) {
      r.Fail("port_count", "the range runs past port 65535");
    }
    for (const SnatRangeConfig& other : config.snat_ranges) {
      bool same_proto = other.proto == 0 || range.proto == 0 || other.proto == range.proto;
      if (other.vip == range.vip && same_proto &&
          range.port_start < other.port_start + other.port_count &&
          other.port_start < range.port_start + range.port_count) {
        r.Fail("port_start", StrCat("overlaps the range ", other.port_start, "..",
                                    other.port_start + other.port_count - 1, " of host ",
                                    Ipv4ToString(other.host)));
      }
    }
    config.snat_ranges.push_back(range);
  }
  if (root.Has("bgp")) {
    ConfigNode bgp = root.Map("bgp");
    config.bgp = ReadBgp(bgp, config.address.addr);
  }
  if (!root.status().ok()) return root.status();
  return config;
}

}  // namespace

std::vector<uint32_t> AnnouncedVipAddresses(const MuxConfig& config) {
  std::vector<uint32_t> out;
  for (const VipConfig& vip : config.vips) {
    const bool serves = std::any_of(vip.backends.begin(), vip.backends.end(),
                                    [](const BackendConfig& b) { return b.weight > 0; });
    if (serves && std::find(out.begin(), out.end(), vip.vip) == out.end()) {
      out.push_back(vip.vip);
    }
  }
  return out;
}

absl::StatusOr<MuxConfig> LoadMuxConfig(const std::string& path) {
  absl::StatusOr<ConfigNode> root = ConfigNode::LoadFile(path);
  if (!root.ok()) return root.status();
  return ReadMuxConfig(*root);
}

absl::StatusOr<MuxConfig> ParseMuxConfig(const std::string& yaml, const std::string& origin) {
  absl::StatusOr<ConfigNode> root = ConfigNode::LoadString(yaml, origin);
  if (!root.ok()) return root.status();
  return ReadMuxConfig(*root);
}

}  // namespace sluice::mux
