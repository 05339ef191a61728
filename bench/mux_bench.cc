// sluice-mux-bench: the mux data path (MuxDataPath::Process) on one lcore, between the same
// in-memory PMDs that dpdk-testpmd is measured on (net_pcap infinite_rx → net_null), so its
// packet rate can be set against testpmd's io and 5tswap forwarding (bench/run.sh does that).
// In one run it measures:
//   - Maglev build time, 65537 slots × 1000 weighted backends (median of several builds);
//   - new flows per second: passes over N fresh 5-tuples into an empty flow table;
//   - established-flow packet rate with all N flows in the table, interleaved with the same
//     loop without Process (an in-process io-forward baseline);
//   - bytes per flow: sizeof(FlowEntry) and the table allocation measured by malloc statistics.
// It writes the frames it replays as a pcap file (--pcap keeps it for testpmd).
//
//   sluice-mux-bench [--flows N] [--seconds S] [--lcore C] [--pcap PATH] [--smoke]
//
// Lines starting with "result " are for scripts: "result <name> <value>". Exits non-zero when a
// measurement is impossible (setup failed, packets not transmitted, zero throughput).
#include <arpa/inet.h>
#include <malloc.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "mux_lite/config.h"
#include "mux_lite/flow_table.h"
#include "mux_lite/maglev.h"
#include "mux_lite/mux.h"
#include "offload/packet/checksum.h"
#include "offload/packet/parse.h"
#include "offload/port/port.h"
#include "offload/sw/fixture_builder.h"

namespace sluice::bench {
namespace {

using mux::MuxDataPath;
using Outcome = MuxDataPath::Outcome;

constexpr uint16_t kBurst = 32;          // testpmd's default burst
constexpr uint16_t kMbufDataRoom = 384;  // RTE_PKTMBUF_HEADROOM + 256; testpmd --mbuf-size=384
constexpr unsigned kMbufCache = 250;     // testpmd's default mempool cache
constexpr uint32_t kVips = 4;
constexpr uint32_t kBackendsPerVip = 64;
constexpr uint32_t kMaglevBackends = 1000;
constexpr int kSlices = 5;  // established phase: mux and io slices, interleaved

const flow::MacAddr kMuxMac = fixture::Mac("02:00:00:00:00:11");
const flow::MacAddr kRouterMac = fixture::Mac("02:00:00:00:00:01");  // also the gateway
const uint32_t kMuxPa = fixture::Ip("10.101.0.11");
const uint32_t kGateway = fixture::Ip("10.101.0.1");
const uint32_t kFirstVip = fixture::Ip("10.200.0.10");
const uint32_t kFirstClient = fixture::Ip("100.64.0.0");

struct Options {
  uint32_t flows = 1'000'000;
  double seconds = 5;
  int lcore = -1;  // -1: the first CPU this process may run on
  std::string pcap;
  bool smoke = false;
  int new_flow_passes = 3;
  int maglev_builds = 7;
};

bool ParseOptions(int argc, char** argv, Options* opt) {
  bool flows_set = false, seconds_set = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (arg == "--smoke") {
      opt->smoke = true;
    } else if (arg == "--flows" && (v = value()) != nullptr) {
      opt->flows = static_cast<uint32_t>(strtoul(v, nullptr, 10));
      flows_set = true;
    } else if (arg == "--seconds" && (v = value()) != nullptr) {
      opt->seconds = strtod(v, nullptr);
      seconds_set = true;
    } else if (arg == "--lcore" && (v = value()) != nullptr) {
      opt->lcore = atoi(v);
    } else if (arg == "--pcap" && (v = value()) != nullptr) {
      opt->pcap = v;
    } else {
      fprintf(stderr,
              "usage: sluice-mux-bench [--flows N] [--seconds S] [--lcore C] [--pcap PATH] "
              "[--smoke]\n  (bad or incomplete argument '%s')\n",
              arg.c_str());
      return false;
    }
  }
  if (opt->smoke) {
    if (!flows_set) opt->flows = 10'000;
    if (!seconds_set) opt->seconds = 0.2;
    opt->maglev_builds = 3;
  }
  if (opt->flows == 0 || !(opt->seconds > 0)) {
    fprintf(stderr, "sluice-mux-bench: --flows and --seconds must be positive\n");
    return false;
  }
  return true;
}

int FirstAllowedCpu() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) return cpu;
  }
  return 0;
}

// 4 VIPs (TCP port 80), 64 weighted backends each. Backend hosts are in another subnet, so
// every encapsulated packet goes to the gateway's MAC, as in a routed underlay.
mux::MuxConfig BenchConfig(uint32_t flow_table_size) {
  mux::MuxConfig c;
  c.name = "mux-bench";
  c.address = {.addr = kMuxPa, .length = 24};
  c.gateway = kGateway;
  c.flow_table_size = flow_table_size;
  for (uint32_t v = 0; v < kVips; ++v) {
    mux::VipConfig vip{.vip = kFirstVip + v, .port = 80, .proto = flow::kProtoTcp};
    for (uint32_t b = 0; b < kBackendsPerVip; ++b) {
      vip.backends.push_back({.dip = fixture::Ip("10.1.0.0") + (v << 8) + b + 1,
                              .host = fixture::Ip("10.102.0.0") + (v << 8) + b + 1,
                              .weight = 1 + b % 4});
    }
    c.vips.push_back(std::move(vip));
  }
  return c;
}

struct FlowTuple {
  uint32_t src;
  uint32_t vip;
  uint16_t src_port;
};

// N distinct client 5-tuples spread over the VIPs. A tuple is skipped when its flow-table
// bucket (hash & (buckets - 1), 8 ways) is already full, so all N fit without evictions; the
// run checks that none happened, in case the table's layout changes.
std::vector<FlowTuple> MakeFlows(uint32_t n, uint32_t table_capacity) {
  const uint32_t buckets = table_capacity / mux::FlowTable::kWays;
  std::vector<uint8_t> fill(buckets, 0);
  std::vector<FlowTuple> flows;
  flows.reserve(n);
  for (uint64_t j = 0; flows.size() < n; ++j) {
    FlowTuple t{.src = kFirstClient + static_cast<uint32_t>(j >> 14),
                .vip = kFirstVip + static_cast<uint32_t>(j % kVips),
                .src_port = static_cast<uint16_t>(1024 + (j & 0x3fff))};
    uint32_t hash = packet::FlowHash(t.src, t.vip, flow::kProtoTcp, t.src_port, 80);
    uint8_t& used = fill[hash & (buckets - 1)];
    if (used == mux::FlowTable::kWays) continue;
    ++used;
    flows.push_back(t);
  }
  return flows;
}

// 60-byte TCP ACK frames (64 on the wire with FCS) from the router to the mux, one per flow.
std::vector<std::vector<uint8_t>> MakeFrames(const std::vector<FlowTuple>& flows,
                                             std::string* error) {
  const std::vector<uint8_t> base =
      (fixture::Eth{.dst = kMuxMac, .src = kRouterMac} /
       fixture::Ipv4{.src = kFirstClient, .dst = kFirstVip, .ttl = 63} /
       fixture::Tcp{.sport = 1024, .dport = 80, .flags = fixture::kAck} /
       fixture::Payload{"sluice"})
          .Bytes();
  constexpr size_t kIp = 14, kTcp = 34;
  auto get16 = [](const uint8_t* p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
  };
  auto get32 = [](const uint8_t* p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
  };
  std::vector<std::vector<uint8_t>> frames;
  frames.reserve(flows.size());
  for (const FlowTuple& t : flows) {
    std::vector<uint8_t> f = base;
    const uint32_t src = htonl(t.src), dst = htonl(t.vip);
    const uint16_t sport = htons(t.src_port);
    uint16_t ip_sum = get16(&f[kIp + 10]), tcp_sum = get16(&f[kTcp + 16]);
    ip_sum = packet::ChecksumUpdate32(ip_sum, get32(&f[kIp + 12]), src);
    ip_sum = packet::ChecksumUpdate32(ip_sum, get32(&f[kIp + 16]), dst);
    tcp_sum = packet::ChecksumUpdate32(tcp_sum, get32(&f[kIp + 12]), src);
    tcp_sum = packet::ChecksumUpdate32(tcp_sum, get32(&f[kIp + 16]), dst);
    tcp_sum = packet::ChecksumUpdate16(tcp_sum, get16(&f[kTcp]), sport);
    memcpy(&f[kIp + 10], &ip_sum, 2);
    memcpy(&f[kIp + 12], &src, 4);
    memcpy(&f[kIp + 16], &dst, 4);
    memcpy(&f[kTcp], &sport, 2);
    memcpy(&f[kTcp + 16], &tcp_sum, 2);
    frames.push_back(std::move(f));
  }
  for (const auto* f : {&frames.front(), &frames.back()}) {
    std::string bad = fixture::VerifyChecksums(*f);
    if (!bad.empty()) {
      *error = "generated frame is broken: " + bad;
      return {};
    }
  }
  return frames;
}

// Classic libpcap file, Ethernet link type, all timestamps zero.
bool WritePcap(const std::string& path, const std::vector<std::vector<uint8_t>>& frames,
               std::string* error) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(fopen(path.c_str(), "wb"), fclose);
  if (f == nullptr) {
    *error = "cannot write " + path + ": " + strerror(errno);
    return false;
  }
  const uint32_t header[6] = {0xa1b2c3d4, 2 | 4u << 16, 0, 0, 65535, 1};
  bool ok = fwrite(header, sizeof(header), 1, f.get()) == 1;
  for (const auto& frame : frames) {
    const auto len = static_cast<uint32_t>(frame.size());
    const uint32_t record[4] = {0, 0, len, len};
    ok = ok && fwrite(record, sizeof(record), 1, f.get()) == 1 &&
         fwrite(frame.data(), frame.size(), 1, f.get()) == 1;
  }
  if (!ok || fflush(f.get()) != 0) {
    *error = "cannot write " + path + ": " + strerror(errno);
    return false;
  }
  return true;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Wall-clock and this thread's CPU time. On a shared machine the thread may be descheduled
// mid-measurement; rates per CPU-second are what one dedicated core would do.
struct Timing {
  double wall_s = 0;
  double cpu_s = 0;
  Timing& operator+=(const Timing& o) {
    wall_s += o.wall_s;
    cpu_s += o.cpu_s;
    return *this;
  }
  double CpuShare() const { return wall_s > 0 ? cpu_s / wall_s : 0; }
};

class Stopwatch {
 public:
  Stopwatch() : tsc_(rte_rdtsc()), cpu_(ThreadCpuSeconds()) {}
  Timing Elapsed() const {
    return {
        .wall_s = static_cast<double>(rte_rdtsc() - tsc_) / static_cast<double>(rte_get_tsc_hz()),
        .cpu_s = ThreadCpuSeconds() - cpu_};
  }

 private:
  static double ThreadCpuSeconds() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
  }
  uint64_t tsc_;
  double cpu_;
};

// Packets (or flows) over a measured time.
struct Rate {
  uint64_t count = 0;
  Timing time;
  Rate& operator+=(const Rate& o) {
    count += o.count;
    time += o.time;
    return *this;
  }
  double PerWallSecond() const {
    return time.wall_s > 0 ? static_cast<double>(count) / time.wall_s : 0;
  }
  double PerCpuSecond() const {
    return time.cpu_s > 0 ? static_cast<double>(count) / time.cpu_s : 0;
  }
};

// 65537 slots × 1000 backends with weights 1..10; per build, milliseconds.
bool MaglevBuilds(int builds, std::vector<double>* cpu_ms, std::vector<double>* wall_ms,
                  std::string* error) {
  std::vector<mux::MaglevBackend> backends;
  for (uint32_t i = 0; i < kMaglevBackends; ++i) {
    backends.push_back(
        {.key = flow::FormatIpv4(fixture::Ip("10.0.0.0") + i + 1), .weight = 1 + (i * 7) % 10});
  }
  for (int r = 0; r < builds; ++r) {
    mux::MaglevTable table;
    Stopwatch watch;
    if (!table.Build(backends, mux::kDefaultMaglevSize, error)) return false;
    const Timing t = watch.Elapsed();
    cpu_ms->push_back(t.cpu_s * 1e3);
    wall_ms->push_back(t.wall_s * 1e3);
  }
  return true;
}

size_t HeapInUse() {
  struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

class Bench {
 public:
  Bench(uint16_t rx_port, uint16_t tx_port, rte_mempool* pool)
      : rx_port_(rx_port),
        tx_port_(tx_port),
        pool_(pool),
        ns_per_tsc_(1e9 / static_cast<double>(rte_get_tsc_hz())) {}

  // A mux whose only next hop (the gateway) is resolved, as after the daemon's first ARP.
  std::unique_ptr<MuxDataPath> NewMux(uint32_t flow_table_size, std::string* error) {
    std::unique_ptr<MuxDataPath> m =
        MuxDataPath::Create(BenchConfig(flow_table_size), tx_port_, kMuxMac, pool_, error);
    if (m == nullptr) return nullptr;
    const uint64_t now = NowNs(rte_rdtsc());
    rte_mbuf* requests[8];
    rte_pktmbuf_free_bulk(requests, m->ResolveNextHops(now, requests, 8));
    rte_mbuf* reply = rte_pktmbuf_alloc(pool_);
    if (reply == nullptr) {
      *error = "mbuf pool empty";
      return nullptr;
    }
    const uint16_t len = packet::BuildArp(rte_pktmbuf_mtod(reply, uint8_t*), 2, kMuxMac, kRouterMac,
                                          kGateway, kMuxMac, kMuxPa);
    rte_pktmbuf_append(reply, len);
    m->Process(reply, now);
    rte_pktmbuf_free(reply);
    if (!m->NextHopsResolved()) {
      *error = "the mux did not learn the gateway's MAC from an ARP reply";
      return nullptr;
    }
    return m;
  }

  struct Run {
    uint64_t received = 0;
    Rate sent;
  };

  // The timed loop: rx burst from the pcap port, Process each packet (unless `m` is null:
  // plain io forwarding), tx burst to the null port, free what it refuses. Stops after
  // `max_packets` received or when `seconds` have passed, whichever comes first.
  Run Forward(MuxDataPath* m, uint64_t max_packets, double seconds) {
    rte_mbuf* rx[kBurst];
    rte_mbuf* tx[kBurst];
    Run run;
    Stopwatch watch;
    uint64_t now = rte_rdtsc();
    const uint64_t end = now + static_cast<uint64_t>(seconds * rte_get_tsc_hz());
    while (now < end && run.received < max_packets) {
      const auto want =
          static_cast<uint16_t>(std::min<uint64_t>(kBurst, max_packets - run.received));
      const uint16_t n = rte_eth_rx_burst(rx_port_, 0, rx, want);
      uint16_t ntx = 0;
      if (m != nullptr) {
        const uint64_t now_ns = NowNs(now);
        Outcome outcomes[kBurst];
        m->ProcessBurst(rx, n, now_ns, outcomes);
        for (uint16_t i = 0; i < n; ++i) {
          if (outcomes[i] == Outcome::kTransmit) {
            tx[ntx++] = rx[i];
          } else {
            rte_pktmbuf_free(rx[i]);
          }
        }
      } else {
        std::copy_n(rx, n, tx);
        ntx = n;
      }
      const uint16_t sent = rte_eth_tx_burst(tx_port_, 0, tx, ntx);
      if (sent < ntx) rte_pktmbuf_free_bulk(tx + sent, ntx - sent);
      run.received += n;
      run.sent.count += sent;
      now = rte_rdtsc();
    }
    run.sent.time = watch.Elapsed();
    return run;
  }

 private:
  uint64_t NowNs(uint64_t tsc) const {
    return static_cast<uint64_t>(static_cast<double>(tsc) * ns_per_tsc_);
  }

  uint16_t rx_port_;
  uint16_t tx_port_;
  rte_mempool* pool_;
  double ns_per_tsc_;
};

int Fail(const std::string& what) {
  fprintf(stderr, "sluice-mux-bench: %s\n", what.c_str());
  return 1;
}

int RunBench(int argc, char** argv) {
  Options opt;
  if (!ParseOptions(argc, argv, &opt)) return 2;
  if (opt.lcore < 0) opt.lcore = FirstAllowedCpu();
  const bool keep_pcap = !opt.pcap.empty();
  if (!keep_pcap) opt.pcap = "/tmp/sluice-mux-bench-" + std::to_string(getpid()) + ".pcap";

  // The pcap PMD holds every frame of the file in an mbuf of the pool, plus what is in flight.
  const uint32_t pool_mbufs = opt.flows + 16384;
  const uint64_t eal_mb = 256 + uint64_t{pool_mbufs} * 640 / (1 << 20);
  std::vector<std::string> eal = {"sluice-mux-bench",
                                  "--no-huge",
                                  "--no-shconf",
                                  "--no-pci",
                                  "--no-telemetry",
                                  "-l",
                                  std::to_string(opt.lcore),
                                  "-m",
                                  std::to_string(eal_mb),
                                  "--file-prefix",
                                  "sluice-mux-bench-" + std::to_string(getpid()),
                                  "--log-level",
                                  "*:warning"};
  std::vector<char*> eal_argv;
  for (auto& a : eal) eal_argv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
    return Fail("rte_eal_init failed (" + std::to_string(eal_mb) + " MB, lcore " +
                std::to_string(opt.lcore) + ")");
  }
  std::string error;
  rte_mempool* pool = rte_pktmbuf_pool_create("bench_pool", pool_mbufs, kMbufCache, 0,
                                              kMbufDataRoom, static_cast<int>(rte_socket_id()));
  if (pool == nullptr) {
    return Fail("cannot create a pool of " + std::to_string(pool_mbufs) + " mbufs");
  }

  // Flow table sizing: the mux rounds the configured size up to whole 8-way buckets. The
  // table's footprint is the difference between a mux with it and one with 8 slots.
  std::unique_ptr<MuxDataPath> probe =
      MuxDataPath::Create(BenchConfig(8), 0, kMuxMac, pool, &error);  // first-use allocations
  if (probe == nullptr) return Fail(error);
  probe.reset();
  const size_t heap_before_small = HeapInUse();
  probe = MuxDataPath::Create(BenchConfig(8), 0, kMuxMac, pool, &error);
  if (probe == nullptr) return Fail(error);
  // The flow table is mapped memory of its own (huge pages where the kernel gives them), not
  // heap: its mapping is added.
  const size_t small_mux_bytes =
      HeapInUse() - heap_before_small + probe->flow_table().memory_bytes();
  const uint32_t small_capacity = probe->flow_table().capacity();
  probe.reset();
  const size_t heap_before = HeapInUse();
  probe = MuxDataPath::Create(BenchConfig(opt.flows), 0, kMuxMac, pool, &error);
  if (probe == nullptr) return Fail(error);
  const size_t full_mux_bytes = HeapInUse() - heap_before + probe->flow_table().memory_bytes();
  const uint32_t capacity = probe->flow_table().capacity();
  probe.reset();

  const std::vector<FlowTuple> flows = MakeFlows(opt.flows, capacity);
  const std::vector<std::vector<uint8_t>> frames = MakeFrames(flows, &error);
  if (frames.empty()) return Fail(error);
  if (!WritePcap(opt.pcap, frames, &error)) return Fail(error);

  uint16_t rx_port = 0, tx_port = 0;
  const std::string rx_devargs = "net_pcap_bench0,rx_pcap=" + opt.pcap + ",infinite_rx=1";
  const bool ports_ok = port::OpenPort(rx_devargs, pool, &rx_port, &error) &&
                        port::OpenPort("net_null_bench0,no-rx=1", pool, &tx_port, &error);
  if (!keep_pcap) unlink(opt.pcap.c_str());
  if (!ports_ok) return Fail(error);

  printf(
      "sluice-mux-bench: %u flows, flow table capacity %u (8-way buckets, load %.2f), "
      "%u VIPs x %u weighted backends, %zu-byte frames, lcore %d\n",
      opt.flows, capacity, static_cast<double>(opt.flows) / capacity, kVips, kBackendsPerVip,
      frames.front().size(), opt.lcore);
  printf(
      "  ports: %s -> net_null (no-rx=1); %u mbufs of %u B data room, --no-huge (4 KiB "
      "pages)\n",
      rx_devargs.c_str(), pool_mbufs, kMbufDataRoom);
  printf(
      "  timed loop (as testpmd io): rte_eth_rx_burst(pcap, %u) [the PMD copies each frame "
      "from its in-memory ring into a fresh mbuf] -> Process -> rte_eth_tx_burst(null) "
      "[frees the mbufs]\n",
      kBurst);

  // Maglev.
  std::vector<double> maglev_cpu_ms, maglev_wall_ms;
  if (!MaglevBuilds(opt.maglev_builds, &maglev_cpu_ms, &maglev_wall_ms, &error)) {
    return Fail("Maglev build failed: " + error);
  }
  const double maglev_ms = Median(maglev_cpu_ms);
  printf(
      "maglev build, %u slots x %u weighted backends: median %.2f ms CPU time (%zu builds, "
      "%.2f..%.2f; wall-clock median %.2f ms)\n",
      mux::kDefaultMaglevSize, kMaglevBackends, maglev_ms, maglev_cpu_ms.size(),
      *std::min_element(maglev_cpu_ms.begin(), maglev_cpu_ms.end()),
      *std::max_element(maglev_cpu_ms.begin(), maglev_cpu_ms.end()), Median(maglev_wall_ms));

  // New flows: every pass is a fresh mux (empty table) fed exactly one copy of each flow.
  Bench bench(rx_port, tx_port, pool);
  std::unique_ptr<MuxDataPath> m;
  Rate new_flows;
  uint64_t evictions = 0;
  for (int pass = 0; pass < opt.new_flow_passes; ++pass) {
    m.reset();
    m = bench.NewMux(opt.flows, &error);
    if (m == nullptr) return Fail(error);
    Bench::Run run = bench.Forward(m.get(), opt.flows, 3600);
    if (run.sent.count != opt.flows || m->counters().new_flows.Get() != opt.flows) {
      return Fail("new-flow pass: " + std::to_string(run.sent.count) + " of " +
                  std::to_string(opt.flows) + " packets sent, " +
                  std::to_string(m->counters().new_flows.Get()) + " new flows");
    }
    evictions += m->flow_table().evictions.Get();
    new_flows += run.sent;
  }
  printf(
      "new flows: %.2f M/s per CPU-second (wall %.2f M/s, CPU share %.2f; %d passes over "
      "%u fresh 5-tuples, empty table each pass; per packet: rx + Find miss + Maglev + "
      "Insert + IPIP encap + tx; %" PRIu64 " evictions)\n",
      new_flows.PerCpuSecond() / 1e6, new_flows.PerWallSecond() / 1e6, new_flows.time.CpuShare(),
      opt.new_flow_passes, opt.flows, evictions);

  // Established flows: the last pass left all N flows in the table. Slices of the mux loop
  // and of the same loop without Process alternate, so both see the same machine load.
  const uint64_t new_before = m->counters().new_flows.Get();
  const uint64_t cached_before = m->counters().cached_flow_packets.Get();
  std::vector<double> mux_slices, io_slices;
  Rate mux_rate, io_rate;
  uint64_t mux_received = 0;
  const double slice = opt.seconds / kSlices;
  for (int s = 0; s < kSlices; ++s) {
    Bench::Run a = bench.Forward(m.get(), UINT64_MAX, slice);
    Bench::Run b = bench.Forward(nullptr, UINT64_MAX, slice);
    mux_slices.push_back(a.sent.PerCpuSecond() / 1e6);
    io_slices.push_back(b.sent.PerCpuSecond() / 1e6);
    mux_received += a.received;
    mux_rate += a.sent;
    io_rate += b.sent;
  }
  const uint64_t new_during = m->counters().new_flows.Get() - new_before;
  const uint64_t cached_during = m->counters().cached_flow_packets.Get() - cached_before;
  const double established = mux_rate.PerCpuSecond() / 1e6;
  const double io = io_rate.PerCpuSecond() / 1e6;
  printf(
      "established flows: %.2f Mpps per CPU-second (wall %.2f Mpps, CPU share %.2f; %d x "
      "%.2f s slices, %.2f..%.2f); %" PRIu64 " packets, %" PRIu64
      " hit the flow table, "
      "%" PRIu64 " were new flows\n",
      established, mux_rate.PerWallSecond() / 1e6, mux_rate.time.CpuShare(), kSlices, slice,
      *std::min_element(mux_slices.begin(), mux_slices.end()),
      *std::max_element(mux_slices.begin(), mux_slices.end()), mux_received, cached_during,
      new_during);
  printf(
      "in-process io-forward (the same loop without Process, slices interleaved): %.2f Mpps "
      "per CPU-second (wall %.2f, CPU share %.2f; %.2f..%.2f) -> ratio %.2f\n",
      io, io_rate.PerWallSecond() / 1e6, io_rate.time.CpuShare(),
      *std::min_element(io_slices.begin(), io_slices.end()),
      *std::max_element(io_slices.begin(), io_slices.end()), io > 0 ? established / io : 0);

  // Bytes per flow.
  const double table_bytes =
      static_cast<double>(full_mux_bytes) - static_cast<double>(small_mux_bytes);
  const double per_slot = table_bytes / (capacity - small_capacity);
  const uint32_t now_s = static_cast<uint32_t>(rte_rdtsc() * (1.0 / rte_get_tsc_hz())) + 1;
  const uint64_t live = m->flow_table().CountLive(now_s);
  const double per_live = live > 0 ? table_bytes / static_cast<double>(live) : 0.0;
  printf(
      "bytes per flow: %u (FlowTable::BytesPerFlow); memory for a %u-slot table: "
      "%.1f MiB = %.1f B/slot, %.1f B per live flow (%" PRIu64 " live)\n",
      mux::FlowTable::BytesPerFlow(), capacity, table_bytes / (1 << 20), per_slot, per_live, live);

  const uint64_t not_sent = mux_received - mux_rate.count;
  const bool ok = established > 0 && io > 0 && new_flows.PerCpuSecond() > 0 && not_sent == 0;
  if (not_sent != 0) printf("ERROR: %" PRIu64 " packets were not transmitted\n", not_sent);
  if (evictions != 0 || new_during != 0) {
    printf("WARNING: not every flow stayed in the table (%" PRIu64 " evictions, %" PRIu64
           " new flows while established); the established rate includes new-flow work\n",
           evictions, new_during);
  }
  printf("result flows %u\n", opt.flows);
  printf("result established_mpps %.3f\n", established);
  printf("result established_mpps_wall %.3f\n", mux_rate.PerWallSecond() / 1e6);
  printf("result established_cpu_share %.3f\n", mux_rate.time.CpuShare());
  printf("result io_forward_inprocess_mpps %.3f\n", io);
  printf("result io_forward_inprocess_mpps_wall %.3f\n", io_rate.PerWallSecond() / 1e6);
  printf("result new_flows_per_s %.0f\n", new_flows.PerCpuSecond());
  printf("result new_flows_per_s_wall %.0f\n", new_flows.PerWallSecond());
  printf("result maglev_build_ms %.3f\n", maglev_ms);
  printf("result maglev_build_ms_wall %.3f\n", Median(maglev_wall_ms));
  printf("result bytes_per_flow %u\n", mux::FlowTable::BytesPerFlow());
  printf("result table_bytes_per_slot %.2f\n", per_slot);
  printf("result table_bytes_per_live_flow %.2f\n", per_live);
  printf("result ok %d\n", ok ? 1 : 0);
  fflush(stdout);

  m.reset();
  port::ClosePort(rx_port);
  port::ClosePort(tx_port);
  rte_mempool_free(pool);
  rte_eal_cleanup();
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace sluice::bench

int main(int argc, char** argv) { return sluice::bench::RunBench(argc, argv); }
