// Fuzz target: a short sequence of frames through the host agent's whole data path
// (hostagent/agent.h AgentDataPath: ARP, the NAT flow layer with SNAT and Fastpath, the
// software executor with the agent's rules) for the lab's host1, on real ring-backed ports.
//
// Input: records of fuzz_support.h (port selector: the uplink or a VM; clock step in 100 ms
// units, after which Housekeeping runs). Each input gets a fresh data path that has resolved
// its gateway. Invariant: every mbuf comes back to the pool (nothing leaks or is freed twice).
#include <cstdint>
#include <memory>
#include <vector>

#include <rte_mbuf.h>

#include "hostagent/agent.h"
#include "offload/port/port.h"
#include "offload/sw/fixture_builder.h"
#include "tests/fuzz/fuzz_eal.h"
#include "tests/fuzz/fuzz_lab.h"
#include "tests/fuzz/fuzz_lab_addresses.h"
#include "tests/fuzz/fuzz_support.h"
#include "tests/support/ring_port.h"

namespace sluice::fuzz {
namespace {

constexpr unsigned kPoolSize = 1023;

// Seed frames are addressed to the MACs of fuzz_lab_addresses.h; net_ring ports have fixed
// ones (and refuse to change them).
void CheckMac(uint16_t port_id, const flow::MacAddr& expected) {
  FUZZ_CHECK(port::PortMac(port_id) == expected,
             "ring port %u's MAC changed: update fuzz_lab_addresses.h and the seeds", port_id);
}

class FakeWallClock : public agent::WallClock {
 public:
  uint64_t UnixSeconds() const override { return now_s; }
  uint64_t now_s = 1'700'000'000;
};

struct State {
  rte_mempool* pool = nullptr;
  agent::AgentConfig config;
  std::vector<std::unique_ptr<testing::RingPort>> ports;  // [0] uplink, then one per VM
  agent::PortMap port_map;
};

State* g_state = nullptr;

void Init() {
  StartPrivateEal();
  g_state = new State;
  g_state->pool =
      rte_pktmbuf_pool_create("fuzz_agent", kPoolSize, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
  FUZZ_CHECK(g_state->pool != nullptr, "no mbuf pool");
  g_state->config = LabAgentConfig();
  for (size_t p = 0; p <= g_state->config.vms.size(); ++p) {
    g_state->ports.push_back(
        std::make_unique<testing::RingPort>("fuzz_agent" + std::to_string(p), g_state->pool));
    FUZZ_CHECK(g_state->ports.back()->ok(), "ring port %zu does not start", p);
  }
  agent::PortMap& map = g_state->port_map;
  map.uplink_port = g_state->ports[0]->port_id();
  CheckMac(map.uplink_port, lab::kAgentUplinkMac);
  map.uplink_mac = port::PortMac(map.uplink_port);
  for (size_t v = 0; v < g_state->config.vms.size(); ++v) {
    map.vm_ports.push_back(g_state->ports[v + 1]->port_id());
    CheckMac(map.vm_ports.back(), lab::kAgentVmPortMac);
    map.vm_port_macs.push_back(port::PortMac(map.vm_ports.back()));
  }
}

void Deliver(agent::AgentDataPath& agent, size_t port_index, const std::vector<uint8_t>& frame,
             uint64_t now_ns) {
  rte_mbuf* m = MbufFrom(g_state->pool, frame);
  FUZZ_CHECK(m != nullptr, "mbuf pool empty: mbufs leaked");
  agent.ProcessBurst(port_index, &m, 1, now_ns);
}

void DrainPorts() {
  for (auto& port : g_state->ports) port->Sent();
}

}  // namespace
}  // namespace sluice::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  sluice::fuzz::Init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice;
  using namespace sluice::fuzz;
  State& s = *g_state;
  std::vector<Record> records = SplitRecords(data, size, 1600, 16);
  if (records.empty()) return 0;

  FakeWallClock clock;
  clock.now_s = lab::kFakeClockStart;
  uint64_t now_ns = 1'000'000'000;
  {
    agent::AgentDataPath agent(s.config, s.port_map, nullptr, &clock);
    // Resolve the gateway so the rules are installed.
    agent.Housekeeping(s.pool, now_ns);
    Deliver(agent, 0,
            (fixture::Eth{.dst = s.port_map.uplink_mac, .src = lab::kRouterMac} /
             fixture::Arp{.op = 2, .sender_mac = lab::kRouterMac, .sender_ip = s.config.gateway,
                          .target_mac = s.port_map.uplink_mac,
                          .target_ip = s.config.address.addr})
                .Bytes(),
            now_ns);
    agent.Housekeeping(s.pool, now_ns);
    FUZZ_CHECK(agent.ready(), "agent not ready after the gateway answered");
    agent.FlushAll();
    DrainPorts();

    for (const Record& r : records) {
      if (r.clock_step > 0) {
        now_ns += uint64_t{r.clock_step} * 100'000'000;
        clock.now_s = lab::kFakeClockStart + now_ns / 1'000'000'000 - 1;
        agent.Housekeeping(s.pool, now_ns);
      }
      Deliver(agent, r.port_selector % s.ports.size(), r.frame, now_ns);
      agent.FlushAll();
      DrainPorts();
    }
    agent.Housekeeping(s.pool, now_ns + 3'600'000'000'000);  // age everything out
    agent.FlushAll();
    DrainPorts();
  }
  const unsigned available = rte_mempool_avail_count(s.pool);
  FUZZ_CHECK(available == kPoolSize, "%u of %u mbufs did not come back", kPoolSize - available,
             kPoolSize);
  return 0;
}
