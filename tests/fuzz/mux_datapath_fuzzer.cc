// Fuzz target: a short sequence of frames through the mux data path (mux_lite/mux.h
// MuxDataPath: ARP, flow table, Maglev / source hash, IPIP and GUE encapsulation, SNAT
// return ranges, Fastpath redirects) for the lab's mux1.
//
// Input: records of fuzz_support.h (port selector unused; clock step in 100 ms units, after
// which next hops are re-resolved). Each input gets a fresh data path whose next hops are
// resolved. Invariants: a transmitted frame is still a parsable IPv4 or ARP frame, drops are
// counted, and every mbuf comes back to the pool.
#include <cstdint>
#include <memory>
#include <vector>

#include <rte_mbuf.h>

#include "mux_lite/mux.h"
#include "offload/packet/parse.h"
#include "offload/sw/fixture_builder.h"
#include "tests/fuzz/fuzz_eal.h"
#include "tests/fuzz/fuzz_lab.h"
#include "tests/fuzz/fuzz_lab_addresses.h"
#include "tests/fuzz/fuzz_support.h"
#include "tests/support/ring_port.h"

namespace sluice::fuzz {
namespace {

constexpr unsigned kPoolSize = 511;
const flow::MacAddr kMuxMac = lab::kMuxMac;

struct State {
  rte_mempool* pool = nullptr;
  mux::MuxConfig config;
};

State* g_state = nullptr;

uint64_t TotalDrops(const mux::MuxDataPath& m) {
  uint64_t total = 0;
  for (const Counter& c : m.counters().drops) total += c.Get();
  return total;
}

// Answers every ARP request the mux sends, as if each next hop had MAC 02:00:00:00:01:<ip>.
void ResolveAll(mux::MuxDataPath& m, uint64_t now_ns) {
  rte_mbuf* requests[16];
  uint16_t n = m.ResolveNextHops(now_ns, requests, 16);
  for (uint16_t i = 0; i < n; ++i) {
    packet::ArpPacket arp;
    DropReason reason;
    const uint8_t* frame = rte_pktmbuf_mtod(requests[i], const uint8_t*);
    FUZZ_CHECK(packet::ParseArp(frame, rte_pktmbuf_data_len(requests[i]), &arp, &reason),
               "the mux sent a malformed ARP request");
    flow::MacAddr mac = fixture::Mac("02:00:00:00:01:00");
    mac[5] = static_cast<uint8_t>(arp.target_ip);
    rte_mbuf* reply = MbufFrom(
        g_state->pool, (fixture::Eth{.dst = kMuxMac, .src = mac} /
                        fixture::Arp{.op = 2, .sender_mac = mac, .sender_ip = arp.target_ip,
                                     .target_mac = kMuxMac, .target_ip = arp.sender_ip})
                           .Bytes());
    FUZZ_CHECK(reply != nullptr, "mbuf pool empty");
    m.Process(reply, now_ns);
    rte_pktmbuf_free(reply);
  }
  rte_pktmbuf_free_bulk(requests, n);
}

void Init() {
  StartPrivateEal();
  g_state = new State;
  g_state->pool = rte_pktmbuf_pool_create("fuzz_mux", kPoolSize, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
  FUZZ_CHECK(g_state->pool != nullptr, "no mbuf pool");
  g_state->config = LabMuxConfig();
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
  uint64_t now_ns = 5'000'000'000;
  {
    std::string error;
    auto mux = mux::MuxDataPath::Create(s.config, 0, kMuxMac, s.pool, &error);
    FUZZ_CHECK(mux != nullptr, "lab mux config does not build: %s", error.c_str());
    ResolveAll(*mux, now_ns);
    for (const Record& r : records) {
      if (r.clock_step > 0) {
        now_ns += uint64_t{r.clock_step} * 100'000'000;
        ResolveAll(*mux, now_ns);
      }
      rte_mbuf* m = MbufFrom(s.pool, r.frame);
      FUZZ_CHECK(m != nullptr, "mbuf pool empty: mbufs leaked");
      const uint64_t drops_before = TotalDrops(*mux);
      const mux::MuxDataPath::Outcome outcome = mux->Process(m, now_ns);
      const uint64_t drops_after = TotalDrops(*mux);
      if (outcome == mux::MuxDataPath::Outcome::kDropped) {
        FUZZ_CHECK(drops_after == drops_before + 1, "a drop was not counted once");
      } else {
        FUZZ_CHECK(drops_after == drops_before, "a drop was counted for a kept packet");
      }
      if (outcome == mux::MuxDataPath::Outcome::kTransmit) {
        packet::ParsedPacket pkt;
        DropReason reason;
        packet::ParseStatus status =
            packet::Parse(rte_pktmbuf_mtod(m, const uint8_t*), rte_pktmbuf_data_len(m),
                          s.config.gue_port, &pkt, &reason);
        FUZZ_CHECK(status != packet::ParseStatus::kDrop,
                   "the mux transmitted a frame it cannot parse (%u)",
                   static_cast<unsigned>(reason));
      }
      rte_pktmbuf_free(m);
      rte_mbuf* control[16];
      uint16_t c;
      while ((c = mux->TakeControlPackets(control, 16)) > 0) rte_pktmbuf_free_bulk(control, c);
    }
  }
  const unsigned available = rte_mempool_avail_count(s.pool);
  FUZZ_CHECK(available == kPoolSize, "%u of %u mbufs did not come back", kPoolSize - available,
             kPoolSize);
  return 0;
}
