// What a sluice-agent serves on its hypervisor: the uplink, the local VMs and the VIP
// endpoints whose DIPs live here.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/net_text.h"

namespace sluice::agent {

struct VmConfig {
  std::string name;
  std::string port;                ///< DPDK devargs of the VM's port (VF representor, veth).
  std::array<uint8_t, 6> mac{};    ///< The VM's MAC.
  uint32_t dip = 0;                ///< The VM's address.
  uint32_t pa = 0;                 ///< Underlay address muxes encapsulate to for this VM.
  uint32_t gateway = 0;            ///< The VM's default gateway; the agent answers ARP for it.
};

struct EndpointConfig {
  uint32_t vip = 0;
  uint16_t port = 0;
  uint8_t proto = 6;
  uint32_t dip = 0;
  uint16_t dip_port = 0;
};

struct AgentConfig {
  std::string name;
  std::string uplink;      ///< DPDK devargs of the uplink (SR-IOV PF in production).
  Ipv4Prefix address;      ///< Host PA and underlay prefix.
  uint32_t gateway = 0;    ///< Router for DSR replies.
  std::vector<VmConfig> vms;
  std::vector<EndpointConfig> endpoints;
};

/// Reads and checks an agent YAML file; errors name file, line and field.
absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path);
absl::StatusOr<AgentConfig> ParseAgentConfig(const std::string& yaml, const std::string& origin);

}  // namespace sluice::agent
