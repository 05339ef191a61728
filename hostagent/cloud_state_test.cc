#include "hostagent/cloud_state.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "common/files.h"
#include "common/net_text.h"
#include "hostagent/grpc_service.h"

namespace sluice::agent {
namespace {

uint32_t Ip(const char* text) { return *ParseIpv4(text); }

// host1 of the lab as it boots: VMs, no endpoints or leases (the controller sets them).
AgentConfig BootHost() {
  AgentConfig c{.name = "host1",
                .uplink = "net_af_packet0,iface=eth0",
                .address = {.addr = Ip("10.101.0.21"), .length = 24},
                .gateway = Ip("10.101.0.1")};
  for (int n = 1; n <= 2; ++n) {
    c.vms.push_back({.name = "vm" + std::to_string(n),
                     .port = "net_af_packet" + std::to_string(n) + ",iface=vm" + std::to_string(n),
                     .mac = {2, 0, 10, 1, 0, static_cast<uint8_t>(n)},
                     .dip = Ip("10.1.0.1") + static_cast<uint32_t>(n - 1),
                     .pa = Ip("10.101.0.31") + static_cast<uint32_t>(n - 1),
                     .gateway = Ip("10.1.0.254")});
  }
  return c;
}

class CloudStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sluice-cloud-state-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/host1.cloud-state.json";
  }
  void TearDown() override {
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }
  void Write(const std::string& text) { ASSERT_TRUE(WriteFileAtomically(path_, text).ok()); }

  std::string dir_, path_;
};

// The data path seam: accepts everything.
class AcceptingRuntime : public AgentRuntime {
 public:
  bool PublishConfig(const AgentConfig&, std::string*) override { return ++generation_, true; }
  uint64_t generation() const override { return generation_; }
  void ReclaimRetired() override {}
  AgentRuntimeStatus Status() const override { return {}; }
  bool CopyFlows(size_t, uint32_t, std::vector<NatFlow>*, uint64_t*) override { return true; }

 private:
  uint64_t generation_ = 1;
};

// What the controller sets over gRPC is written after each change and is what a restarted
// agent serves before the controller calls again.
TEST_F(CloudStateTest, WhatTheControllerSetIsServedAfterARestart) {
  AcceptingRuntime runtime;
  AgentService service(&runtime, BootHost());
  uint64_t saved_generation = 0;
  service.SetOnApplied([&](const AgentConfig& running, uint64_t generation) {
    ASSERT_TRUE(SaveCloudState(path_, running, generation).ok());
    saved_generation = generation;
  });
  v1::SetEndpointsRequest endpoints;
  v1::Endpoint* ep = endpoints.add_endpoints();
  ep->set_vip("10.200.0.10");
  ep->set_port(80);
  ep->set_protocol(v1::L4_PROTOCOL_TCP);
  ep->set_dip("10.1.0.2");
  ep->set_dip_port(8080);
  ep->mutable_health()->set_type(v1::HEALTH_CHECK_TYPE_HTTP);
  ep->mutable_health()->set_path("/health");
  ep->mutable_health()->set_interval_ms(300);
  v1::ChangeSummary changes;
  ASSERT_TRUE(service.SetEndpoints(nullptr, &endpoints, &changes).ok());
  v1::SetSnatLeasesRequest leases;
  v1::SnatLease* lease = leases.add_leases();
  lease->set_dip("10.1.0.1");
  lease->set_vip("10.200.0.10");
  lease->set_protocol(v1::L4_PROTOCOL_TCP);
  lease->set_port_start(20000);
  lease->set_port_count(64);
  ASSERT_TRUE(service.SetSnatLeases(nullptr, &leases, &changes).ok());
  EXPECT_EQ(saved_generation, 3u);

  AgentConfig restarted = BootHost();
  ASSERT_TRUE(LoadCloudState(path_, &restarted).ok());
  ASSERT_EQ(restarted.endpoints.size(), 1u);
  EXPECT_EQ(restarted.endpoints[0].dip, Ip("10.1.0.2"));
  EXPECT_EQ(restarted.endpoints[0].dip_port, 8080);
  ASSERT_TRUE(restarted.endpoints[0].health.has_value());
  EXPECT_EQ(restarted.endpoints[0].health->http_path, "/health");
  EXPECT_EQ(restarted.endpoints[0].health->interval, std::chrono::milliseconds(300));
  ASSERT_EQ(restarted.snat_leases.size(), 1u);
  EXPECT_EQ(restarted.snat_leases[0].port_start, 20000);
  EXPECT_EQ(restarted.snat_leases[0].port_count, 64);
}

// The SNAT allocator's chunks are the allocator's to hand back, not the file's.
TEST_F(CloudStateTest, DynamicLeasesAreNotKept) {
  AgentConfig running = BootHost();
  running.snat_leases = {
      {.dip = Ip("10.1.0.1"), .vip = Ip("10.200.0.10"), .port_start = 20000, .port_count = 8},
      {.dip = Ip("10.1.0.2"), .vip = Ip("10.200.0.10"), .port_start = 21000, .port_count = 32,
       .dynamic = true}};
  ASSERT_TRUE(SaveCloudState(path_, running, 7).ok());
  AgentConfig restarted = BootHost();
  ASSERT_TRUE(LoadCloudState(path_, &restarted).ok());
  ASSERT_EQ(restarted.snat_leases.size(), 1u);
  EXPECT_EQ(restarted.snat_leases[0].port_start, 20000);
  EXPECT_FALSE(restarted.snat_leases[0].dynamic);
}

// No file, a broken one, another agent's, or one naming a VM this host no longer has: the
// config stays as the YAML said, with a reason.
TEST_F(CloudStateTest, AFileThatDoesNotFitIsRefusedAndChangesNothing) {
  AgentConfig boot = BootHost();
  boot.endpoints.push_back({.vip = Ip("10.200.0.10"), .port = 80, .dip = Ip("10.1.0.1"),
                            .dip_port = 8080});
  AgentConfig config = boot;
  absl::Status s = LoadCloudState(path_, &config);
  EXPECT_TRUE(absl::IsNotFound(s)) << s;

  Write("{ not json");
  s = LoadCloudState(path_, &config);
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_NE(std::string(s.message()).find("not a cloud state file"), std::string::npos) << s;

  Write(R"({"agent": "host2", "endpoints": []})");
  s = LoadCloudState(path_, &config);
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_NE(std::string(s.message()).find("written by agent 'host2', this is 'host1'"),
            std::string::npos)
      << s;

  Write(R"({"agent": "host1", "endpoints": [
             {"vip": "10.200.0.10", "port": 80, "protocol": "L4_PROTOCOL_TCP",
              "dip": "10.1.0.9", "dip_port": 8080}]})");
  s = LoadCloudState(path_, &config);
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_NE(std::string(s.message())
                .find("endpoints[0].dip: 10.1.0.9 is not the DIP of any VM on this host"),
            std::string::npos)
      << s;

  Write(R"({"agent": "host1", "snat_leases": [
             {"dip": "10.1.0.1", "vip": "10.200.0.10", "protocol": "L4_PROTOCOL_TCP",
              "port_start": 65535, "port_count": 2}]})");
  s = LoadCloudState(path_, &config);
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_NE(std::string(s.message()).find("snat_leases[0].port_count"), std::string::npos) << s;

  ASSERT_EQ(config.endpoints.size(), 1u);  // as booted
  EXPECT_EQ(config.endpoints[0].dip, Ip("10.1.0.1"));
  EXPECT_TRUE(config.snat_leases.empty());
}

}  // namespace
}  // namespace sluice::agent
