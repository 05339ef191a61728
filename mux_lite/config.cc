#include "mux_lite/config.h"

#include <set>
#include <tuple>

#include "common/config_reader.h"
#include "common/strings.h"

namespace sluice::mux {
namespace {

absl::StatusOr<MuxConfig> ReadMuxConfig(ConfigNode& root) {
  MuxConfig config;
  root.AllowOnly({"mux", "vips"});
  ConfigNode mux = root.Map("mux");
  mux.AllowOnly({"name", "port", "address", "gateway", "flow_table_size", "flow_idle_timeout_s",
                 "maglev_size"});
  config.name = mux.String("name");
  config.port = mux.String("port");
  config.address = mux.Prefix("address");
  config.gateway = mux.Ipv4("gateway");
  config.flow_table_size =
      static_cast<uint32_t>(mux.OptionalUint("flow_table_size", config.flow_table_size, 8,
                                             1u << 28));
  config.flow_idle_timeout_s = static_cast<uint32_t>(
      mux.OptionalUint("flow_idle_timeout_s", config.flow_idle_timeout_s, 1, 86400));
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
  for (ConfigNode& v : root.Sequence("vips", true)) {
    v.AllowOnly({"vip", "port", "protocol", "backends"});
    VipConfig vip;
    vip.vip = v.Ipv4("vip");
    vip.port = static_cast<uint16_t>(v.Uint("port", 1, 65535));
    vip.proto = v.L4Protocol("protocol");
    if (v.status().ok() && !seen_vips.insert({vip.vip, vip.port, vip.proto}).second) {
      v.Fail("vip", StrCat(Ipv4ToString(vip.vip), ":", vip.port, "/", L4ProtocolName(vip.proto),
                           " is configured twice"));
    }
    std::set<uint32_t> seen_dips;
    for (ConfigNode& b : v.Sequence("backends", true)) {
      b.AllowOnly({"dip", "host", "weight"});
      BackendConfig backend;
      backend.dip = b.Ipv4("dip");
      backend.host = b.Ipv4("host");
      backend.weight = static_cast<uint32_t>(b.OptionalUint("weight", 1, 0, 65535));
      if (b.status().ok() && !seen_dips.insert(backend.dip).second) {
        b.Fail("dip", StrCat(Ipv4ToString(backend.dip), " appears twice in this VIP"));
      }
      vip.backends.push_back(backend);
    }
    config.vips.push_back(std::move(vip));
  }
  if (!root.status().ok()) return root.status();
  return config;
}

}  // namespace

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
