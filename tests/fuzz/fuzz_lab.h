// The lab's configs (deploy/lab/config/) as the data-path fuzz targets use them: host1's
// agent config with one more VIP on a DIP:port it already serves (so replies need flow
// state), in anonymous memory; mux1's config on one worker, without BGP, with a GUE backend
// and a source-hash VIP.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

#include "hostagent/config.h"
#include "mux_lite/config.h"

namespace sluice::fuzz {

inline agent::AgentConfig LabAgentConfig() {
  auto config = agent::LoadAgentConfig(std::string(SLUICE_SOURCE_DIR) +
                                       "/deploy/lab/config/host1.yaml");
  if (!config.ok()) {
    fprintf(stderr, "fuzz: %s\n", std::string(config.status().message()).c_str());
    abort();
  }
  config->nat.flow_state_file.clear();  // anonymous memory: nothing outlives the input
  config->nat.flow_capacity = 1024;
  agent::EndpointConfig shared = config->endpoints.front();
  shared.vip = 0x0ac80014;  // 10.200.0.20, served by the same DIP:port
  config->endpoints.push_back(shared);
  return *config;
}

inline mux::MuxConfig LabMuxConfig() {
  auto config = mux::LoadMuxConfig(std::string(SLUICE_SOURCE_DIR) +
                                   "/deploy/lab/config/mux1.yaml");
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
