// The lab's configs as the data-path fuzz targets use them: host1's boot config
// (deploy/lab/config/host1.yaml) and mux1's (mux1.yaml) with the cloud state that
// `sluicectl apply -f deploy/lab/config/cloud.yaml` gives them in the lab (kLabCloudState*
// below, in the daemons' own YAML keys), plus one more VIP on a DIP:port host1 already
// serves (so replies need flow state), in anonymous memory; mux1 on one worker, without
// BGP, with a GUE backend and a source-hash VIP.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "hostagent/config.h"
#include "mux_lite/config.h"

namespace sluice::fuzz {

// cloud.yaml's part for host1: its VMs' endpoints and SNAT leases.
inline constexpr const char* kLabCloudStateHost1 = R"(
endpoints:
  - { vip: 10.200.0.10, port: 80, protocol: tcp, dip: 10.1.0.1, dip_port: 8080 }
  - { vip: 10.200.0.10, port: 80, protocol: tcp, dip: 10.1.0.2, dip_port: 8080 }
snat_leases:
  - { dip: 10.1.0.1, vip: 10.200.0.10, protocol: tcp, port_start: 20000, port_count: 64 }
  - { dip: 10.1.0.2, vip: 10.200.0.10, protocol: tcp, port_start: 20064, port_count: 64 }
)";

// cloud.yaml's part for every mux: VIPs with backends (host = the VM's PA) and SNAT ranges.
inline constexpr const char* kLabCloudStateMux = R"(
vips:
  - vip: 10.200.0.10
    port: 80
    protocol: tcp
    backends:
      - { dip: 10.1.0.1, host: 10.101.0.31, weight: 1 }
      - { dip: 10.1.0.2, host: 10.101.0.32, weight: 1 }
      - { dip: 10.1.0.3, host: 10.101.0.33, weight: 1 }
      - { dip: 10.1.0.4, host: 10.101.0.34, weight: 1 }
  - vip: 10.200.0.20
    port: 80
    protocol: tcp
    backends:
      - { dip: 10.1.0.3, host: 10.101.0.33, weight: 1 }
      - { dip: 10.1.0.4, host: 10.101.0.34, weight: 1 }
snat_ranges:
  - { vip: 10.200.0.10, protocol: tcp, port_start: 20000, port_count: 64, host: 10.101.0.21 }
  - { vip: 10.200.0.10, protocol: tcp, port_start: 20064, port_count: 64, host: 10.101.0.21 }
  - { vip: 10.200.0.10, protocol: tcp, port_start: 20128, port_count: 64, host: 10.101.0.22 }
)";

// A lab boot config with the cloud state appended.
inline std::string LabYaml(const char* file, const char* cloud_state) {
  const std::string path = std::string(SLUICE_SOURCE_DIR) + "/deploy/lab/config/" + file;
  std::ifstream in(path);
  if (!in) {
    fprintf(stderr, "fuzz: cannot read %s\n", path.c_str());
    abort();
  }
  std::ostringstream text;
  text << in.rdbuf() << cloud_state;
  return text.str();
}

inline agent::AgentConfig LabAgentConfig() {
  auto config = agent::ParseAgentConfig(LabYaml("host1.yaml", kLabCloudStateHost1),
                                        "host1.yaml + cloud state");
  if (!config.ok()) {
    fprintf(stderr, "fuzz: %s\n", std::string(config.status().message()).c_str());
    abort();
  }
  config->nat.flow_state_file.clear();  // anonymous memory: nothing outlives the input
  config->cloud_state_file.clear();
  config->nat.flow_capacity = 1024;
  agent::EndpointConfig shared = config->endpoints.front();
  shared.vip = 0x0ac80014;  // 10.200.0.20, served by the same DIP:port
  config->endpoints.push_back(shared);
  return *config;
}

inline mux::MuxConfig LabMuxConfig() {
  auto config = mux::ParseMuxConfig(LabYaml("mux1.yaml", kLabCloudStateMux),
                                    "mux1.yaml + cloud state");
  if (!config.ok()) {
    fprintf(stderr, "fuzz: %s\n", std::string(config.status().message()).c_str());
    abort();
  }
  config->flow_table_size = 1024;
  config->maglev_size = 251;  // a prime; the lab's 65537 slots cost most of an iteration
  config->workers = 1;
  config->bgp.enabled = false;
  config->vips[1].backends[0].encap = flow::Tunnel::kGue;  // both tunnels on the wire
  config->vips[1].scheduler = mux::Scheduler::kSourceHash;
  return *config;
}

}  // namespace sluice::fuzz
