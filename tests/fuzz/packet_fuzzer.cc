// Fuzz target: one frame through packet::Parse / ParseArp and the software executor.
//
// Input: [rule set][in port][frame]. The rule set is one row of the conformance fixture table
// (offload/sw/fixture_builder.h) or, past the last row, the agent's rules for the lab's host1
// (hostagent/rules.h BuildAgentRules). Parse runs on an exact-size heap copy and the executor
// on an mbuf whose tailroom is poisoned, so AddressSanitizer catches any read past the frame.
// Invariants: the verdict is well formed, drops are counted under a known reason, and a
// frame whose checksums were right leaves with right checksums.
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include <rte_mbuf.h>

#include "hostagent/rules.h"
#include "offload/packet/parse.h"
#include "offload/sw/executor.h"
#include "offload/sw/fixture_builder.h"
#include "tests/fuzz/fuzz_eal.h"
#include "tests/fuzz/fuzz_lab.h"
#include "tests/fuzz/fuzz_support.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLUICE_FUZZ_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define SLUICE_FUZZ_ASAN 1
#endif
#ifdef SLUICE_FUZZ_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace sluice::fuzz {
namespace {

struct RuleSet {
  std::unique_ptr<sw::SoftwareExecutor> executor;
  uint16_t gue_port = flow::kDefaultGuePort;
};

struct State {
  rte_mempool* pool = nullptr;
  std::vector<RuleSet> sets;
};

State* g_state = nullptr;

RuleSet MakeSet(std::vector<flow::Rule> rules) {
  std::string error;
  auto table = sw::RuleTable::Build(std::move(rules), &error);
  FUZZ_CHECK(table != nullptr, "rule set does not build: %s", error.c_str());
  RuleSet set{.executor = std::make_unique<sw::SoftwareExecutor>()};
  set.executor->SetRules(std::move(table));
  return set;
}

void Init() {
  StartPrivateEal();
  g_state = new State;
  g_state->pool = rte_pktmbuf_pool_create("fuzz_packet", 255, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
  FUZZ_CHECK(g_state->pool != nullptr, "no mbuf pool");
  for (const fixture::FixtureRow& row : fixture::ConformanceFixtures()) {
    g_state->sets.push_back(MakeSet(row.rules));
  }
  agent::AgentConfig config = LabAgentConfig();
  agent::PortMap ports{.uplink_port = 0, .uplink_mac = fixture::Mac("02:00:00:00:01:01")};
  for (size_t v = 0; v < config.vms.size(); ++v) {
    ports.vm_ports.push_back(static_cast<uint16_t>(1 + v));
    ports.vm_port_macs.push_back(fixture::Mac("02:00:00:00:02:01"));
  }
  g_state->sets.push_back(
      MakeSet(agent::BuildAgentRules(config, ports, fixture::Mac("02:00:00:00:00:01"))));
}

void CheckParse(const uint8_t* frame, size_t len) {
  // Exact-size copy: any read past the end is a heap overflow.
  std::unique_ptr<uint8_t[]> copy(new uint8_t[len == 0 ? 1 : len]);
  if (len > 0) memcpy(copy.get(), frame, len);
  packet::ParsedPacket pkt;
  DropReason reason = DropReason::kNoRule;
  packet::ParseStatus status =
      packet::Parse(copy.get(), static_cast<uint32_t>(len), flow::kDefaultGuePort, &pkt, &reason);
  if (status == packet::ParseStatus::kIpv4) {
    FUZZ_CHECK(pkt.l3_offset <= pkt.inner_l3_offset && pkt.inner_l3_offset < len,
               "l3 %u inner %u len %zu", pkt.l3_offset, pkt.inner_l3_offset, len);
    FUZZ_CHECK(pkt.l4_offset == 0 || (pkt.l4_offset > pkt.inner_l3_offset && pkt.l4_offset <= len),
               "l4 %u len %zu", pkt.l4_offset, len);
  } else if (status == packet::ParseStatus::kArp) {
    packet::ArpPacket arp;
    packet::ParseArp(copy.get(), static_cast<uint32_t>(len), &arp, &reason);
  } else {
    FUZZ_CHECK(static_cast<size_t>(reason) < kNumDropReasons, "reason %u",
               static_cast<unsigned>(reason));
  }
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
  if (size < 2) return 0;
  RuleSet& set = g_state->sets[data[0] % g_state->sets.size()];
  const uint16_t in_port = data[1] % 4;
  const uint8_t* frame = data + 2;
  const size_t len = std::min<size_t>(size - 2, 2048);
  CheckParse(frame, len);

  rte_mbuf* m = rte_pktmbuf_alloc(g_state->pool);
  FUZZ_CHECK(m != nullptr, "mbuf pool empty: an mbuf leaked");
  char* dst = rte_pktmbuf_append(m, static_cast<uint16_t>(len));
  FUZZ_CHECK(dst != nullptr, "frame of %zu bytes does not fit an mbuf", len);
  memcpy(dst, frame, len);
  const std::vector<uint8_t> input(frame, frame + len);
  uint8_t* tail = rte_pktmbuf_mtod_offset(m, uint8_t*, len);
  const size_t tailroom = rte_pktmbuf_tailroom(m);
  POISON(tail, tailroom);

  const uint64_t drops_before = set.executor->counters().TotalDrops();
  sw::Verdict verdict;
  set.executor->ProcessBurst(&m, 1, in_port, &verdict);
  const uint64_t drops_after = set.executor->counters().TotalDrops();

  if (verdict.kind == sw::Verdict::Kind::kDrop) {
    FUZZ_CHECK(static_cast<size_t>(verdict.reason) < kNumDropReasons, "reason %u",
               static_cast<unsigned>(verdict.reason));
    FUZZ_CHECK(drops_after == drops_before + 1, "a drop was not counted");
  } else {
    FUZZ_CHECK(drops_after == drops_before, "a packet was counted as dropped and sent on");
    const uint8_t* out = rte_pktmbuf_mtod(m, const uint8_t*);
    std::vector<uint8_t> output(out, out + rte_pktmbuf_data_len(m));
    if (verdict.kind == sw::Verdict::Kind::kOutput &&
        fixture::VerifyChecksums(input, set.gue_port).empty()) {
      std::string wrong = fixture::VerifyChecksums(output, set.gue_port);
      FUZZ_CHECK(wrong.empty(), "checksums right on input, wrong on output: %s", wrong.c_str());
    }
  }
  // The executor may have moved data_off (decap/encap); unpoison the whole buffer.
  UNPOISON(m->buf_addr, m->buf_len);
  rte_pktmbuf_free(m);
  return 0;
}
