// What a sluice-mux serves: its own underlay identity and the VIPs with their backends.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/net_text.h"
#include "mux_lite/flow_table.h"
#include "mux_lite/maglev.h"
#include "offload/flow/rule.h"
#include "offload/packet/fastpath_redirect.h"

namespace sluice::mux {

/// How a VIP picks the backend of a new flow. Only the consistent ones (maglev,
/// source-hash) give every mux the same answer, so only they keep flows when a mux dies.
enum class Scheduler : uint8_t {
  kMaglev,              ///< Weighted Maglev over the 5-tuple hash (default).
  kWeightedRoundRobin,  ///< Smooth weighted round robin; per-mux state, not consistent.
  kSourceHash,          ///< Weighted Maglev over the client address only (client affinity).
};
const char* SchedulerName(Scheduler s);

struct BackendConfig {
  uint32_t dip = 0;      ///< The VM's address.
  uint32_t host = 0;     ///< Underlay address (PA) the mux encapsulates to.
  uint32_t weight = 1;   ///< 0 keeps the backend configured but out of Maglev.
  flow::Tunnel encap = flow::Tunnel::kIpip;  ///< What that host decapsulates: ipip, gue or gre.
};

struct VipConfig {
  uint32_t vip = 0;
  uint16_t port = 0;
  uint8_t proto = 6;
  Scheduler scheduler = Scheduler::kMaglev;
  std::vector<BackendConfig> backends;
};

/// Ports of a VIP leased to one host for SNAT: replies to VIP:port in the range are
/// encapsulated to `host`, statelessly.
struct SnatRangeConfig {
  uint32_t vip = 0;
  uint8_t proto = 0;  ///< 6, 17, or 0 for both.
  uint16_t port_start = 0;
  uint16_t port_count = 0;
  uint32_t host = 0;
  bool dynamic = false;  ///< Set by the SNAT allocator (sluice-snatd), not configured.
  flow::Tunnel encap = flow::Tunnel::kIpip;  ///< What `host` decapsulates (gre: an OVS host).
  bool Contains(uint32_t addr, uint8_t p, uint16_t port) const {
    return addr == vip && (proto == 0 || proto == p) && port >= port_start &&
           port - port_start < port_count;
  }
};

/// The mux's BGP speaker: gobgpd, started and driven by the mux, peering with the router.
struct BgpConfig {
  bool enabled = false;
  uint32_t local_as = 0;
  uint32_t peer = 0;
  uint32_t peer_as = 0;
  uint32_t router_id = 0;  ///< Defaults to the mux PA.
  uint32_t hold_time_s = 9;
  std::string gobgpd = "/usr/bin/gobgpd";
  std::string gobgp = "/usr/bin/gobgp";
  uint32_t api_port = 50051;
};

struct MuxConfig {
  std::string name;
  std::string port;            ///< DPDK devargs of the underlay port.
  Ipv4Prefix address;          ///< This mux's PA and the underlay prefix.
  uint32_t gateway = 0;        ///< Next hop for PAs outside the prefix.
  uint32_t flow_table_size = 1u << 20;  ///< Flows per worker.
  /// Data-path lcores, each with its own RX/TX queue (RSS), flow table and VIP tables.
  uint16_t workers = 1;
  FlowTimeouts flow_timeouts;
  uint32_t maglev_size = kDefaultMaglevSize;
  uint16_t gue_port = flow::kDefaultGuePort;
  bool fastpath = false;  ///< True when a fastpath_key is set: send redirects.
  packet::FastpathKey fastpath_key{};
  BgpConfig bgp;
  std::vector<VipConfig> vips;
  std::vector<SnatRangeConfig> snat_ranges;
  /// Whether the file has a `vips:` / `snat_ranges:` key. Without one, the VIPs (ranges)
  /// are the cloud controller's (gRPC): a mux starts with none and a file reload keeps what
  /// was pushed. With one (even `vips: []`) the file owns them and a reload replaces them.
  bool file_sets_vips = true;
  bool file_sets_snat_ranges = true;
  /// Where the VIPs and SNAT ranges pushed over gRPC are kept across restarts (absolute
  /// path; empty: not kept). See mux_lite/cloud_state.h.
  std::string cloud_state_file;
};

/// The VIP addresses a mux announces by BGP: those with at least one backend of non-zero
/// weight on some port. A VIP without backends is not announced, so routers send its
/// traffic to muxes that can serve it instead of one that would drop it.
std::vector<uint32_t> AnnouncedVipAddresses(const MuxConfig& config);

/// Reads and checks a mux YAML file; errors name file, line and field.
absl::StatusOr<MuxConfig> LoadMuxConfig(const std::string& path);
absl::StatusOr<MuxConfig> ParseMuxConfig(const std::string& yaml, const std::string& origin);

}  // namespace sluice::mux
