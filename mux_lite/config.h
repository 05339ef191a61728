// What a sluice-mux serves: its own underlay identity and the VIPs with their backends.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/net_text.h"
#include "mux_lite/maglev.h"

namespace sluice::mux {

struct BackendConfig {
  uint32_t dip = 0;      ///< The VM's address.
  uint32_t host = 0;     ///< Underlay address (PA) the mux encapsulates to.
  uint32_t weight = 1;   ///< 0 keeps the backend configured but out of Maglev.
};

struct VipConfig {
  uint32_t vip = 0;
  uint16_t port = 0;
  uint8_t proto = 6;
  std::vector<BackendConfig> backends;
};

struct MuxConfig {
  std::string name;
  std::string port;            ///< DPDK devargs of the underlay port.
  Ipv4Prefix address;          ///< This mux's PA and the underlay prefix.
  uint32_t gateway = 0;        ///< Next hop for PAs outside the prefix.
  uint32_t flow_table_size = 1u << 20;
  uint32_t flow_idle_timeout_s = 300;
  uint32_t maglev_size = kDefaultMaglevSize;
  std::vector<VipConfig> vips;
};

/// Reads and checks a mux YAML file; errors name file, line and field.
absl::StatusOr<MuxConfig> LoadMuxConfig(const std::string& path);
absl::StatusOr<MuxConfig> ParseMuxConfig(const std::string& yaml, const std::string& origin);

}  // namespace sluice::mux
