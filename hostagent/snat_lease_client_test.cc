#include "hostagent/snat_lease_client.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace sluice::agent {
namespace {

constexpr uint32_t kVip = 0x0ac8000a;  // 10.200.0.10
constexpr uint32_t kDip = 0x0a010004;  // 10.1.0.4
constexpr uint32_t kOtherDip = 0x0a010003;

class FakeClock : public ControlClock {
 public:
  uint64_t NowMs() const override { return now_ms; }
  uint64_t now_ms = 1000;
};

/// Hands out chunks of 32 ports from 21000 up, keeps what it leased, can refuse.
class FakeAllocator : public SnatAllocatorApi {
 public:
  absl::StatusOr<SnatLeaseConfig> RequestChunk(uint32_t dip, uint32_t vip, uint8_t proto) override {
    ++requests;
    if (!refuse.ok()) return refuse;
    SnatLeaseConfig l{.dip = dip, .vip = vip, .proto = proto,
                      .port_start = static_cast<uint16_t>(21000 + 32 * next++),
                      .port_count = 32, .dynamic = true};
    leased.push_back(l);
    return l;
  }
  absl::Status ReturnChunk(const SnatLeaseConfig& chunk) override {
    returned.push_back(chunk.port_start);
    auto it = std::find_if(leased.begin(), leased.end(), [&](const SnatLeaseConfig& l) {
      return l.port_start == chunk.port_start;
    });
    if (it == leased.end()) return absl::NotFoundError("not leased");
    leased.erase(it);
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<SnatLeaseConfig>> ListChunks() override { return leased; }

  absl::Status refuse = absl::OkStatus();
  std::vector<SnatLeaseConfig> leased;
  std::vector<uint16_t> returned;
  int requests = 0;
  int next = 0;
};

class FakeAgent : public SnatLeaseAgent {
 public:
  std::vector<SnatLeaseConfig> Leases() override { return leases; }
  bool VmAttached(uint32_t dip) override { return dip == kDip || dip == kOtherDip; }
  absl::Status AddDynamicLease(const SnatLeaseConfig& lease) override {
    if (!refuse_add.ok()) return refuse_add;
    SnatLeaseConfig l = lease;
    l.dynamic = true;
    leases.push_back(l);
    return absl::OkStatus();
  }
  absl::Status RemoveDynamicLease(const SnatLeaseConfig& lease) override {
    ++removals;
    std::erase_if(leases, [&](const SnatLeaseConfig& l) {
      return l.dynamic && l.port_start == lease.port_start;
    });
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<SnatPortUse>> SnatPortsInUse() override { return uses; }

  /// `n` flows on ports first..first+n-1.
  void Flows(uint16_t first, int n) {
    uses.clear();
    for (int i = 0; i < n; ++i) {
      uses.push_back({.dip = kDip, .vip = kVip, .proto = 6,
                      .port = static_cast<uint16_t>(first + i)});
    }
  }
  size_t Dynamic() const {
    return std::count_if(leases.begin(), leases.end(),
                         [](const SnatLeaseConfig& l) { return l.dynamic; });
  }

  absl::Status refuse_add = absl::OkStatus();
  std::vector<SnatLeaseConfig> leases;
  std::vector<SnatPortUse> uses;
  int removals = 0;
};

class SnatLeaseClientTest : public ::testing::Test {
 protected:
  SnatLeaseClientTest()
      : config_{.address = "unix:/x",
                .low_water = 8,
                .return_idle_s = 5,
                .retry_interval_ms = 1000,
                .leases = {{.dip = kDip, .vip = kVip, .proto = 6}}},
        client_(config_, &allocator_, &agent_, &clock_) {}
  void Tick(uint64_t advance_ms = 200) {
    clock_.now_ms += advance_ms;
    client_.Tick();
  }

  SnatAllocatorClientConfig config_;
  FakeClock clock_;
  FakeAllocator allocator_;
  FakeAgent agent_;
  SnatLeaseClient client_;
};

TEST_F(SnatLeaseClientTest, RequestsAChunkWhenFreePortsFallBelowLowWater) {
  Tick();  // no ports at all: one chunk
  EXPECT_EQ(agent_.Dynamic(), 1u);
  Tick();
  EXPECT_EQ(allocator_.requests, 1);  // 32 free ≥ 8
  agent_.Flows(21000, 24);  // 8 free: not below
  Tick();
  EXPECT_EQ(allocator_.requests, 1);
  agent_.Flows(21000, 25);  // 7 free
  Tick();
  EXPECT_EQ(allocator_.requests, 2);
  EXPECT_EQ(agent_.Dynamic(), 2u);
  const SnatLeaseClientStatus s = client_.Status();
  EXPECT_EQ(s.chunks_requested, 2u);
  EXPECT_EQ(s.chunks_granted, 2u);
  EXPECT_EQ(s.chunks_active.size(), 2u);
}

TEST_F(SnatLeaseClientTest, StaticLeasesCountTowardsFreePorts) {
  agent_.leases.push_back({.dip = kDip, .vip = kVip, .proto = 6, .port_start = 20000,
                           .port_count = 64});
  Tick();
  EXPECT_EQ(allocator_.requests, 0);
  // A lease of another protocol does not help TCP.
  agent_.leases[0].proto = 17;
  Tick();
  EXPECT_EQ(allocator_.requests, 1);
}

TEST_F(SnatLeaseClientTest, ARefusalIsCountedAndRetriedOnlyAfterTheRetryInterval) {
  allocator_.refuse = absl::ResourceExhaustedError("every chunk of pool 10.200.0.10 tcp is leased");
  Tick();
  EXPECT_EQ(allocator_.requests, 1);
  SnatLeaseClientStatus s = client_.Status();
  EXPECT_EQ(s.chunks_refused, 1u);
  EXPECT_NE(s.last_error.find("every chunk of pool"), std::string::npos) << s.last_error;
  Tick(500);
  EXPECT_EQ(allocator_.requests, 1);
  Tick(600);
  EXPECT_EQ(allocator_.requests, 2);
  allocator_.refuse = absl::OkStatus();
  Tick(1000);
  EXPECT_EQ(agent_.Dynamic(), 1u);
}

TEST_F(SnatLeaseClientTest, AChunkTheAgentRefusesGoesStraightBack) {
  agent_.refuse_add = absl::InvalidArgumentError("leases[1].port_start: overlap");
  Tick();
  EXPECT_EQ(allocator_.returned, (std::vector<uint16_t>{21000}));
  EXPECT_TRUE(allocator_.leased.empty());
  EXPECT_EQ(client_.Status().chunks_refused, 1u);
}

TEST_F(SnatLeaseClientTest, ReturnsAnIdleChunkAfterRemovingItAndKeepsTheLastOne) {
  Tick();
  agent_.Flows(21000, 30);
  Tick();
  ASSERT_EQ(agent_.Dynamic(), 2u);
  agent_.Flows(21000, 0);  // every connection ended (and its reuse delay passed)
  Tick();
  Tick(4000);  // idle 4.2 s < 5 s
  EXPECT_EQ(agent_.removals, 0);
  Tick(1000);  // idle ≥ 5 s: the newer chunk leaves the data path...
  EXPECT_EQ(agent_.removals, 1);
  EXPECT_EQ(agent_.Dynamic(), 1u);
  EXPECT_TRUE(allocator_.returned.empty());  // ...and is returned only at the next look
  EXPECT_EQ(client_.Status().chunks_draining.size(), 1u);
  Tick();
  EXPECT_EQ(allocator_.returned, (std::vector<uint16_t>{21032}));
  // The last chunk stays: without it free ports would be below low water.
  Tick(60000);
  Tick(60000);
  EXPECT_EQ(agent_.Dynamic(), 1u);
  EXPECT_EQ(allocator_.leased.size(), 1u);
  EXPECT_EQ(client_.Status().chunks_returned, 1u);
}

TEST_F(SnatLeaseClientTest, AFlowOnARemovedChunkDelaysItsReturnUntilItEnds) {
  Tick();
  agent_.Flows(21000, 30);
  Tick();
  agent_.Flows(21000, 0);
  Tick();
  Tick(6000);
  ASSERT_EQ(agent_.removals, 1);
  // A connection took a port of the chunk just before it left the data path.
  agent_.uses.push_back({.dip = kDip, .vip = kVip, .proto = 6, .port = 21040});
  Tick();
  Tick(10000);
  EXPECT_TRUE(allocator_.returned.empty());
  agent_.uses.clear();  // it ended and waited out the reuse delay
  Tick();
  EXPECT_EQ(allocator_.returned, (std::vector<uint16_t>{21032}));
}

TEST_F(SnatLeaseClientTest, AnIdleChunkGoesAndTheUsedOneStays) {
  Tick();
  agent_.Flows(21000, 30);
  Tick();
  agent_.Flows(21032, 1);  // one connection on the second chunk; the first is idle
  for (int i = 0; i < 5; ++i) Tick(10000);
  // The idle first chunk goes (31 free ports stay, ≥ 8); the one in use never does.
  EXPECT_EQ(allocator_.leased.size(), 1u);
  EXPECT_EQ(allocator_.leased[0].port_start, 21032);
}

TEST_F(SnatLeaseClientTest, AdoptsChunksTheAllocatorListsAndReturnsUnwantedOnes) {
  allocator_.leased.push_back({.dip = kDip, .vip = kVip, .proto = 6, .port_start = 22000,
                               .port_count = 32, .dynamic = true});
  allocator_.leased.push_back({.dip = kOtherDip, .vip = kVip, .proto = 6, .port_start = 22032,
                               .port_count = 32, .dynamic = true});
  Tick();
  EXPECT_EQ(agent_.Dynamic(), 1u);
  EXPECT_EQ(agent_.leases[0].port_start, 22000);
  EXPECT_EQ(allocator_.returned, (std::vector<uint16_t>{22032}));
  EXPECT_EQ(allocator_.requests, 0);
  EXPECT_EQ(client_.Status().chunks_adopted, 1u);
}

TEST_F(SnatLeaseClientTest, AChunkTheAgentDroppedDrainsAndIsReturned) {
  Tick();
  ASSERT_EQ(agent_.Dynamic(), 1u);
  agent_.leases.clear();  // DetachVm removed the VM's leases
  agent_.Flows(21000, 1);
  Tick();
  EXPECT_TRUE(allocator_.returned.empty());
  agent_.uses.clear();
  Tick();
  EXPECT_EQ(allocator_.returned.front(), 21000);
}

}  // namespace
}  // namespace sluice::agent
