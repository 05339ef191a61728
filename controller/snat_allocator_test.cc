#include "controller/snat_allocator.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "common/net_text.h"
#include "controller/snat_allocator_service.h"

namespace sluice::snatd {
namespace {

constexpr uint32_t kVip = 0x0ac8000a;  // 10.200.0.10
constexpr uint32_t kPa1 = 0x0a650015;  // 10.101.0.21
constexpr uint32_t kPa2 = 0x0a650016;  // 10.101.0.22
constexpr uint32_t kDip1 = 0x0a010001;

v1::SnatRange Range(const std::string& vip, int proto, uint32_t start, uint32_t count,
                    const std::string& host) {
  v1::SnatRange r;
  r.set_vip(vip);
  r.set_protocol(static_cast<v1::L4Protocol>(proto));
  r.set_port_start(start);
  r.set_port_count(count);
  r.set_host(host);
  return r;
}

/// A mux's SNAT range table in memory, merged the way the gRPC client merges it.
class FakeMux : public MuxRangeClient {
 public:
  explicit FakeMux(std::string address) : address_(std::move(address)) {}
  const std::string& address() const override { return address_; }
  absl::Status Sync(const std::vector<SnatPoolConfig>& pools,
                    const std::vector<SnatChunkLease>& leases) override {
    ++syncs;
    if (down) return absl::UnavailableError("mux " + address_ + ": connection refused");
    bool changed = false;
    absl::StatusOr<std::vector<v1::SnatRange>> merged =
        MergeSnatRanges(ranges, pools, leases, &changed);
    if (!merged.ok()) return merged.status();
    ranges.Clear();
    for (const v1::SnatRange& r : *merged) *ranges.Add() = r;
    return absl::OkStatus();
  }
  /// Ranges → "port_start:host".
  std::set<std::string> Table() const {
    std::set<std::string> out;
    for (const v1::SnatRange& r : ranges) {
      out.insert(std::to_string(r.port_start()) + ":" + r.host());
    }
    return out;
  }
  /// Ranges → "port_start:host:encap".
  std::set<std::string> TableWithEncap() const {
    std::set<std::string> out;
    for (const v1::SnatRange& r : ranges) {
      out.insert(std::to_string(r.port_start()) + ":" + r.host() + ":" + v1::Encap_Name(r.encap()));
    }
    return out;
  }
  bool down = false;
  int syncs = 0;
  google::protobuf::RepeatedPtrField<v1::SnatRange> ranges;

 private:
  std::string address_;
};

class SnatAllocatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(mkdtemp(dir_), nullptr);
    config_.state_file = std::string(dir_) + "/snatd.state";
    config_.muxes = {"mux1", "mux2"};
    config_.pools = {{.vip = kVip, .proto = 6, .port_start = 21000, .port_count = 128,
                      .chunk_ports = 64}};
  }
  void TearDown() override {
    unlink(config_.state_file.c_str());
    rmdir(dir_);
  }
  std::unique_ptr<SnatAllocator> Start() {
    auto m1 = std::make_unique<FakeMux>("mux1");
    auto m2 = std::make_unique<FakeMux>("mux2");
    // A static range of the mux's own config, outside the pool: must survive every sync.
    *m1->ranges.Add() = Range("10.200.0.10", 0, 20000, 128, "10.101.0.21");
    mux1_ = m1.get();
    mux2_ = m2.get();
    std::vector<std::unique_ptr<MuxRangeClient>> muxes;
    muxes.push_back(std::move(m1));
    muxes.push_back(std::move(m2));
    auto allocator = std::make_unique<SnatAllocator>(config_, std::move(muxes));
    EXPECT_TRUE(allocator->LoadState().ok());
    return allocator;
  }

  char dir_[32] = "/tmp/snatd-alloc-XXXXXX";
  SnatAllocatorConfig config_;
  FakeMux* mux1_ = nullptr;
  FakeMux* mux2_ = nullptr;
};

TEST_F(SnatAllocatorTest, GrantsOnlyAfterEveryMuxHasTheRange) {
  auto allocator = Start();
  absl::StatusOr<SnatChunkLease> l = allocator->RequestChunk("host1", kPa1, kDip1, kVip, 6);
  ASSERT_TRUE(l.ok()) << l.status();
  const std::string entry = std::to_string(l->port_start) + ":10.101.0.21";
  EXPECT_EQ(mux1_->Table(), (std::set<std::string>{"20000:10.101.0.21", entry}));
  EXPECT_EQ(mux2_->Table(), (std::set<std::string>{entry}));
  EXPECT_EQ(allocator->List("").counters.chunks_granted, 1u);
  EXPECT_EQ(allocator->List("host1").chunks.size(), 1u);
  EXPECT_TRUE(allocator->List("host2").chunks.empty());
}

TEST_F(SnatAllocatorTest, AMuxThatDoesNotAnswerFailsTheRequestAndLeasesNothing) {
  auto allocator = Start();
  mux2_->down = true;
  absl::StatusOr<SnatChunkLease> l = allocator->RequestChunk("host1", kPa1, kDip1, kVip, 6);
  EXPECT_EQ(l.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(l.status().message().find("mux2"), std::string::npos) << l.status();
  SnatAllocator::Snapshot s = allocator->List("");
  EXPECT_TRUE(s.chunks.empty());
  EXPECT_EQ(s.counters.chunks_refused, 1u);
  EXPECT_FALSE(s.muxes[1].in_sync);
  // mux1 took it, then forgot it again; its static range stays.
  EXPECT_EQ(mux1_->Table(), (std::set<std::string>{"20000:10.101.0.21"}));
  // Nothing persisted either: a restarted allocator has both chunks free.
  auto restarted = Start();
  EXPECT_TRUE(restarted->List("").chunks.empty());
}

TEST_F(SnatAllocatorTest, ExhaustionIsResourceExhaustedAndCounted) {
  auto allocator = Start();
  ASSERT_TRUE(allocator->RequestChunk("host1", kPa1, kDip1, kVip, 6).ok());
  ASSERT_TRUE(allocator->RequestChunk("host1", kPa1, kDip1, kVip, 6).ok());
  absl::StatusOr<SnatChunkLease> l = allocator->RequestChunk("host2", kPa2, kDip1, kVip, 6);
  EXPECT_EQ(l.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(allocator->List("").counters.chunks_exhausted, 1u);
  EXPECT_NE(allocator->List("").counters.last_error.find("21000-21127"), std::string::npos);
}

TEST_F(SnatAllocatorTest, StateSurvivesARestartAndTheMuxesGetItBack) {
  uint16_t first = 0;
  {
    auto allocator = Start();
    absl::StatusOr<SnatChunkLease> l = allocator->RequestChunk("host1", kPa1, kDip1, kVip, 6);
    ASSERT_TRUE(l.ok());
    first = l->port_start;
  }
  auto allocator = Start();  // fresh muxes: they lost the dynamic ranges (restarted)
  ASSERT_EQ(allocator->List("").chunks.size(), 1u);
  EXPECT_EQ(allocator->List("").chunks[0].port_start, first);
  allocator->Resync();
  EXPECT_EQ(mux2_->Table(), (std::set<std::string>{std::to_string(first) + ":10.101.0.21"}));
  absl::StatusOr<SnatChunkLease> next = allocator->RequestChunk("host2", kPa2, kDip1, kVip, 6);
  ASSERT_TRUE(next.ok());
  EXPECT_NE(next->port_start, first);
}

TEST_F(SnatAllocatorTest, ReturnTakesTheRangeOffTheMuxesAndDoubleReturnIsNotFound) {
  auto allocator = Start();
  absl::StatusOr<SnatChunkLease> l = allocator->RequestChunk("host1", kPa1, kDip1, kVip, 6);
  ASSERT_TRUE(l.ok());
  EXPECT_TRUE(allocator->ReturnChunk("host1", kDip1, kVip, 6, l->port_start).ok());
  EXPECT_TRUE(mux2_->Table().empty());
  EXPECT_EQ(mux1_->Table(), (std::set<std::string>{"20000:10.101.0.21"}));
  EXPECT_EQ(allocator->ReturnChunk("host1", kDip1, kVip, 6, l->port_start).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(allocator->List("").counters.chunks_returned, 1u);
  auto restarted = Start();
  EXPECT_TRUE(restarted->List("").chunks.empty());
}

TEST_F(SnatAllocatorTest, EveryPushCarriesTheEncapsulationTheHostAskedFor) {
  std::string gre_entry, ipip_entry;
  {
    auto allocator = Start();
    absl::StatusOr<SnatChunkLease> gre =
        allocator->RequestChunk("host2", kPa2, kDip1, kVip, 6, HostEncap::kGre);
    ASSERT_TRUE(gre.ok()) << gre.status();
    EXPECT_EQ(gre->encap, HostEncap::kGre);
    absl::StatusOr<SnatChunkLease> ipip = allocator->RequestChunk("host1", kPa1, kDip1, kVip, 6);
    ASSERT_TRUE(ipip.ok()) << ipip.status();
    gre_entry = std::to_string(gre->port_start) + ":10.101.0.22:ENCAP_GRE";
    ipip_entry = std::to_string(ipip->port_start) + ":10.101.0.21:ENCAP_IPIP";
    EXPECT_EQ(mux2_->TableWithEncap(), (std::set<std::string>{gre_entry, ipip_entry}));
    // The static range keeps its own (none given: unspecified).
    EXPECT_EQ(mux1_->TableWithEncap(),
              (std::set<std::string>{"20000:10.101.0.21:ENCAP_UNSPECIFIED", gre_entry, ipip_entry}));
  }
  // A restarted allocator reads the encapsulations back and pushes them to restarted muxes.
  auto allocator = Start();
  std::vector<SnatChunkLease> chunks = allocator->List("host2").chunks;
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].encap, HostEncap::kGre);
  allocator->Resync();
  EXPECT_EQ(mux2_->TableWithEncap(), (std::set<std::string>{gre_entry, ipip_entry}));
  // A mux that lost the encapsulation (an older pusher) is repaired by the next resync.
  for (v1::SnatRange& r : mux2_->ranges) r.clear_encap();
  allocator->Resync();
  EXPECT_EQ(mux2_->TableWithEncap(), (std::set<std::string>{gre_entry, ipip_entry}));
}

TEST_F(SnatAllocatorTest, ResyncRepairsAMuxWhoseRangesWereReplaced) {
  auto allocator = Start();
  ASSERT_TRUE(allocator->RequestChunk("host1", kPa1, kDip1, kVip, 6).ok());
  mux2_->ranges.Clear();  // e.g. `sluicectl apply` pushed its static set
  allocator->Resync();
  EXPECT_EQ(mux2_->Table().size(), 1u);
}

TEST(MergeSnatRangesTest, KeepsRangesOutsideThePoolsAndRefusesOverlaps) {
  const std::vector<SnatPoolConfig> pools = {
      {.vip = kVip, .proto = 6, .port_start = 21000, .port_count = 1000, .chunk_ports = 64}};
  google::protobuf::RepeatedPtrField<v1::SnatRange> current;
  *current.Add() = Range("10.200.0.10", 0, 20000, 128, "10.101.0.21");  // static, outside
  *current.Add() = Range("10.200.0.10", 17, 21000, 64, "10.101.0.21");  // UDP: not the pool's
  *current.Add() = Range("10.200.0.10", 6, 21064, 64, "10.101.0.22");    // stale chunk
  const std::vector<SnatChunkLease> leases = {{.vip = kVip, .proto = 6, .port_start = 21000,
                                               .port_count = 64, .host = "host1",
                                               .host_pa = kPa1, .dip = kDip1}};
  bool changed = false;
  absl::StatusOr<std::vector<v1::SnatRange>> merged =
      MergeSnatRanges(current, pools, leases, &changed);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_TRUE(changed);
  ASSERT_EQ(merged->size(), 3u);
  EXPECT_EQ((*merged)[0].port_start(), 20000u);
  EXPECT_EQ((*merged)[1].protocol(), v1::L4_PROTOCOL_UDP);
  EXPECT_EQ((*merged)[2].port_start(), 21000u);
  EXPECT_EQ((*merged)[2].host(), "10.101.0.21");
  // Merging again changes nothing.
  google::protobuf::RepeatedPtrField<v1::SnatRange> again;
  for (const v1::SnatRange& r : *merged) *again.Add() = r;
  ASSERT_TRUE(MergeSnatRanges(again, pools, leases, &changed).ok());
  EXPECT_FALSE(changed);
  // A static range reaching into the pool is a config conflict.
  *again.Add() = Range("10.200.0.10", 6, 20990, 20, "10.101.0.21");
  absl::StatusOr<std::vector<v1::SnatRange>> conflict =
      MergeSnatRanges(again, pools, leases, &changed);
  EXPECT_EQ(conflict.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(conflict.status().message().find("10.200.0.10 tcp 21000-21999"), std::string::npos);
}

TEST(MergeSnatRangesTest, AnIpipRangeListedWithoutAnEncapsulationIsUnchanged) {
  const std::vector<SnatPoolConfig> pools = {
      {.vip = kVip, .proto = 6, .port_start = 21000, .port_count = 128, .chunk_ports = 64}};
  const std::vector<SnatChunkLease> leases = {{.vip = kVip, .proto = 6, .port_start = 21000,
                                               .port_count = 64, .host = "host1",
                                               .host_pa = kPa1, .dip = kDip1}};
  google::protobuf::RepeatedPtrField<v1::SnatRange> current;
  *current.Add() = Range("10.200.0.10", 6, 21000, 64, "10.101.0.21");
  current[0].set_dynamic(true);  // encap unspecified: IPIP, as the lease
  bool changed = true;
  ASSERT_TRUE(MergeSnatRanges(current, pools, leases, &changed).ok());
  EXPECT_FALSE(changed);
  // The same range to a host that takes GRE is a change.
  std::vector<SnatChunkLease> gre = leases;
  gre[0].encap = HostEncap::kGre;
  absl::StatusOr<std::vector<v1::SnatRange>> merged =
      MergeSnatRanges(current, pools, gre, &changed);
  ASSERT_TRUE(merged.ok());
  EXPECT_TRUE(changed);
  ASSERT_EQ(merged->size(), 1u);
  EXPECT_EQ((*merged)[0].encap(), v1::ENCAP_GRE);
}

TEST_F(SnatAllocatorTest, TheServiceChecksTheEncapsulationAndKeepsItWithTheChunk) {
  auto allocator = Start();
  SnatAllocatorService service(allocator.get());
  v1::RequestChunkRequest request;
  request.set_host("host2");
  request.set_host_pa("10.101.0.22");
  request.set_dip("10.1.0.1");
  request.set_vip("10.200.0.10");
  request.set_protocol(v1::L4_PROTOCOL_TCP);
  request.set_encap(static_cast<v1::Encap>(9));
  v1::RequestChunkResponse response;
  grpc::Status s = service.RequestChunk(nullptr, &request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(),
            "encap: 9 is not an encapsulation (ENCAP_IPIP, ENCAP_GUE or ENCAP_GRE)");
  EXPECT_TRUE(allocator->List("").chunks.empty());
  EXPECT_EQ(mux2_->syncs, 0);

  request.set_encap(v1::ENCAP_GRE);
  s = service.RequestChunk(nullptr, &request, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(response.chunk().encap(), v1::ENCAP_GRE);
  ASSERT_EQ(mux2_->ranges.size(), 1);
  EXPECT_EQ(mux2_->ranges[0].encap(), v1::ENCAP_GRE);
  EXPECT_EQ(mux2_->ranges[0].host(), "10.101.0.22");

  // Not said: IPIP (what every agent before the field meant).
  request.set_host("host1");
  request.set_host_pa("10.101.0.21");
  request.clear_encap();
  s = service.RequestChunk(nullptr, &request, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(response.chunk().encap(), v1::ENCAP_IPIP);

  v1::ListLeasesRequest list;
  list.set_host("host2");
  v1::ListLeasesResponse listed;
  ASSERT_TRUE(service.ListLeases(nullptr, &list, &listed).ok());
  ASSERT_EQ(listed.chunks_size(), 1);
  EXPECT_EQ(listed.chunks(0).encap(), v1::ENCAP_GRE);
}

TEST(SnatAllocatorConfigTest, ReadsAndChecksTheYaml) {
  absl::StatusOr<SnatAllocatorConfig> c = ParseSnatAllocatorConfig(R"(
allocator: { name: lab, state_file: /run/x.state, resync_interval_ms: 500 }
muxes:
  - address: unix:/run/mux1.sock
  - address: 10.0.0.1:50051
pools:
  - { vip: 10.200.0.10, protocol: tcp, port_start: 21000, port_count: 1000, chunk_ports: 32 }
)",
                                                                 "snatd.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->muxes.size(), 2u);
  EXPECT_EQ(c->pools[0].chunk_ports, 32u);
  EXPECT_EQ(c->resync_interval_ms, 500u);

  absl::StatusOr<SnatAllocatorConfig> overlap = ParseSnatAllocatorConfig(R"(
allocator: { state_file: /run/x.state }
muxes: [ { address: m } ]
pools:
  - { vip: 10.200.0.10, protocol: tcp, port_start: 21000, port_count: 100 }
  - { vip: 10.200.0.10, protocol: tcp, port_start: 21050, port_count: 100 }
)",
                                                                       "snatd.yaml");
  ASSERT_FALSE(overlap.ok());
  EXPECT_NE(overlap.status().message().find("snatd.yaml:6"), std::string::npos)
      << overlap.status();
  EXPECT_NE(overlap.status().message().find("pools[1].port_start"), std::string::npos);

  EXPECT_FALSE(ParseSnatAllocatorConfig("allocator: {}\nmuxes: []\npools: []\n", "x").ok());
  EXPECT_FALSE(ParseSnatAllocatorConfig(
                   "allocator: { state_file: rel }\nmuxes: [ {address: m} ]\n"
                   "pools: [ {vip: 10.0.0.1, protocol: tcp, port_start: 1, port_count: 1} ]\n",
                   "x")
                   .ok());
  EXPECT_FALSE(ParseSnatAllocatorConfig(
                   "allocator: {}\nmuxes: [ {address: m, extra: 1} ]\n"
                   "pools: [ {vip: 10.0.0.1, protocol: tcp, port_start: 1, port_count: 1} ]\n",
                   "x")
                   .ok());
}

}  // namespace
}  // namespace sluice::snatd
