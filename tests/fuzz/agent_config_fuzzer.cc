// Fuzz target: YAML text → hostagent ParseAgentConfig → config or error, never a crash.
// A config the parser accepts must give rules (BuildAgentRules) that the software executor
// accepts (sw::RuleTable::Build): validation happens once, at the edge.
#include <cstdint>
#include <string>

#include "hostagent/config.h"
#include "hostagent/rules.h"
#include "offload/sw/executor.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice;
  std::string yaml(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<agent::AgentConfig> config = agent::ParseAgentConfig(yaml, "fuzz.yaml");
  if (!config.ok()) {
    FUZZ_CHECK(!config.status().message().empty(), "an error without a message");
    return 0;
  }
  agent::PortMap ports{.uplink_port = 0, .uplink_mac = {2, 0, 0, 0, 0, 1}};
  for (size_t v = 0; v < config->vms.size(); ++v) {
    ports.vm_ports.push_back(static_cast<uint16_t>(v + 1));
    ports.vm_port_macs.push_back({2, 0, 0, 0, 1, static_cast<uint8_t>(v)});
  }
  std::string error;
  auto table = sw::RuleTable::Build(agent::BuildAgentRules(*config, ports, {2, 0, 0, 0, 0, 2}),
                                    &error);
  FUZZ_CHECK(table != nullptr, "accepted config gives rules the executor refuses: %s",
             error.c_str());
  return 0;
}
