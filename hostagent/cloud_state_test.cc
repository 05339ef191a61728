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

// The data path seam: accepts everything; with `plugs`, VMs new to the agent too (as both
// data paths do).
class AcceptingRuntime : public AgentRuntime {
 public:
  explicit AcceptingRuntime(bool plugs = false) : plugs_(plugs) {}
  bool PlugsVmPorts() const override { return plugs_; }
  bool PublishConfig(const AgentConfig&, std::string*) override { return ++generation_, true; }
  uint64_t generation() const override { return generation_; }
  void ReclaimRetired() override {}
  AgentRuntimeStatus Status() const override { return {}; }
  bool CopyFlows(size_t, uint32_t, std::vector<NatFlow>*, uint64_t*) override { return true; }

 private:
  bool plugs_;
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

v1::AttachVmRequest AttachHpvm9() {
  v1::AttachVmRequest request;
  v1::VmAttachment* vm = request.mutable_vm();
  vm->set_name("hpvm9");
  vm->set_port("net_af_packet_hpvm9,iface=hpvm9");
  vm->set_mac("02:00:0a:01:00:09");
  vm->set_dip("10.1.0.9");
  vm->set_pa("10.101.0.39");
  vm->set_gateway("10.1.0.254");
  v1::Endpoint* ep = vm->add_endpoints();
  ep->set_vip("10.200.0.10");
  ep->set_port(80);
  ep->set_protocol(v1::L4_PROTOCOL_TCP);
  ep->set_dip_port(8080);
  v1::SnatLease* lease = vm->add_snat_leases();
  lease->set_vip("10.200.0.10");
  lease->set_protocol(v1::L4_PROTOCOL_TCP);
  lease->set_port_start(20192);
  lease->set_port_count(64);
  return request;
}

// A VM attached at runtime is in the file with its endpoints and leases until it is detached;
// a restarted agent has it again (marked as attached at runtime, GetVms says hot-plugged).
TEST_F(CloudStateTest, RuntimeAttachedVmsAreKeptUntilDetached) {
  AcceptingRuntime runtime(/*plugs=*/true);
  AgentService service(&runtime, BootHost());
  service.SetOnApplied([&](const AgentConfig& running, uint64_t generation) {
    ASSERT_TRUE(SaveCloudState(path_, running, generation).ok());
  });
  v1::AttachVmRequest attach = AttachHpvm9();
  v1::AttachVmResponse attached;
  ASSERT_TRUE(service.AttachVm(nullptr, &attach, &attached).ok());

  AgentConfig restarted = BootHost();
  CloudStateVms vms;
  ASSERT_TRUE(LoadCloudState(path_, &restarted, &vms).ok());
  EXPECT_EQ(vms.restored, std::vector<std::string>{"hpvm9"});
  EXPECT_TRUE(vms.skipped.empty());
  ASSERT_EQ(restarted.vms.size(), 3u);
  EXPECT_FALSE(restarted.vms[0].attached_at_runtime);  // the YAML's stay as they were
  const VmConfig& hpvm9 = restarted.vms[2];
  EXPECT_EQ(hpvm9.name, "hpvm9");
  EXPECT_EQ(hpvm9.port, "net_af_packet_hpvm9,iface=hpvm9");
  EXPECT_EQ(hpvm9.mac, (std::array<uint8_t, 6>{2, 0, 10, 1, 0, 9}));
  EXPECT_EQ(hpvm9.dip, Ip("10.1.0.9"));
  EXPECT_EQ(hpvm9.pa, Ip("10.101.0.39"));
  EXPECT_EQ(hpvm9.gateway, Ip("10.1.0.254"));
  EXPECT_TRUE(hpvm9.attached_at_runtime);
  ASSERT_EQ(restarted.endpoints.size(), 1u);
  EXPECT_EQ(restarted.endpoints[0].dip, Ip("10.1.0.9"));
  ASSERT_EQ(restarted.snat_leases.size(), 1u);
  EXPECT_EQ(restarted.snat_leases[0].port_start, 20192);

  // The restarted agent's service: the VM is there, hot-plugged; it saves it again.
  AcceptingRuntime runtime2(/*plugs=*/true);
  AgentService service2(&runtime2, restarted);
  service2.SetOnApplied([&](const AgentConfig& running, uint64_t generation) {
    ASSERT_TRUE(SaveCloudState(path_, running, generation).ok());
  });
  v1::GetVmsRequest get;
  v1::GetVmsResponse got;
  ASSERT_TRUE(service2.GetVms(nullptr, &get, &got).ok());
  ASSERT_EQ(got.vms_size(), 3);
  EXPECT_FALSE(got.vms(0).hotplugged());
  EXPECT_TRUE(got.vms(2).hotplugged());
  EXPECT_EQ(got.vms(2).vm().endpoints_size(), 1);
  // The hook's `started` again after the restart: the same VM, nothing changes.
  ASSERT_TRUE(service2.AttachVm(nullptr, &attach, &attached).ok());

  // Detached: gone from the file with its endpoints and leases.
  v1::DetachVmRequest detach;
  detach.set_name("hpvm9");
  v1::DetachVmResponse detached;
  ASSERT_TRUE(service2.DetachVm(nullptr, &detach, &detached).ok());
  AgentConfig again = BootHost();
  ASSERT_TRUE(LoadCloudState(path_, &again, &vms).ok());
  EXPECT_TRUE(vms.restored.empty());
  EXPECT_EQ(again.vms.size(), 2u);
  EXPECT_TRUE(again.endpoints.empty());
  EXPECT_TRUE(again.snat_leases.empty());
}

// One bad VM entry does not cost the others: each one left out is named with the reason, its
// endpoints and leases go with it, the rest of the file is served.
TEST_F(CloudStateTest, AVmEntryThatDoesNotFitIsSkippedNamingTheVm) {
  Write(R"({"agent": "host1",
    "vms": [
      {"name": "web1", "port": "net_af_packet_web1,iface=web1", "mac": "02:00:0a:01:00:0a",
       "dip": "10.1.0.10", "pa": "10.101.0.40", "gateway": "10.1.0.254"},
      {"name": "web2", "port": "net_af_packet_web2,iface=web2", "mac": "not-a-mac",
       "dip": "10.1.0.11", "pa": "10.101.0.41", "gateway": "10.1.0.254"},
      {"name": "web3", "port": "net_af_packet_web3,iface=web3", "mac": "02:00:0a:01:00:0c",
       "dip": "10.1.0.12", "pa": "10.101.0.31", "gateway": "10.1.0.254"},
      {"name": "web4", "port": "net_af_packet_x,iface=vm1", "mac": "02:00:0a:01:00:0d",
       "dip": "10.1.0.13", "pa": "10.101.0.43", "gateway": "10.1.0.254"},
      {"name": "vm2", "port": "net_af_packet_vm2,iface=vm2", "mac": "02:00:0a:01:00:02",
       "dip": "10.1.0.2", "pa": "10.101.0.32", "gateway": "10.1.0.254"},
      {"name": "web5", "port": "net_af_packet_web5", "mac": "02:00:0a:01:00:0e",
       "dip": "10.1.0.14", "pa": "10.101.0.44", "gateway": "10.1.0.254"}
    ],
    "endpoints": [
      {"vip": "10.200.0.10", "port": 80, "protocol": "L4_PROTOCOL_TCP", "dip": "10.1.0.10",
       "dip_port": 8080},
      {"vip": "10.200.0.10", "port": 80, "protocol": "L4_PROTOCOL_TCP", "dip": "10.1.0.11",
       "dip_port": 8080},
      {"vip": "10.200.0.10", "port": 80, "protocol": "L4_PROTOCOL_TCP", "dip": "10.1.0.2",
       "dip_port": 8080}],
    "snat_leases": [
      {"dip": "10.1.0.12", "vip": "10.200.0.10", "protocol": "L4_PROTOCOL_TCP",
       "port_start": 20000, "port_count": 64}]})");
  AgentConfig config = BootHost();
  CloudStateVms vms;
  absl::Status s = LoadCloudState(path_, &config, &vms);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(vms.restored, std::vector<std::string>{"web1"});
  const std::vector<std::string> want = {
      "vms[1] (VM 'web2'): vms[1].mac: 'not-a-mac' is not a MAC address",
      "vms[2] (VM 'web3'): vms[2].pa: 10.101.0.31 is already VM 'vm1''s PA",
      "vms[3] (VM 'web4'): vms[3].port: net_af_packet_x,iface=vm1 is the port of VM 'vm1'",
      "vms[4] (VM 'vm2'): the agent's config has this VM now; its entry there is used",
      "vms[5] (VM 'web5'): vms[5].port: 'net_af_packet_web5': ",  // (the reason follows)
      "endpoints[1] (10.1.0.11:8080): left out with VM 'web2'",
      "snat_leases[0] (10.1.0.12 ports 20000+64): left out with VM 'web3'",
  };
  ASSERT_EQ(vms.skipped.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(vms.skipped[i].substr(0, want[i].size()), want[i]) << vms.skipped[i];
  }
  ASSERT_EQ(config.vms.size(), 3u);
  EXPECT_EQ(config.vms[2].name, "web1");
  EXPECT_TRUE(config.vms[2].attached_at_runtime);
  EXPECT_FALSE(config.vms[1].attached_at_runtime);  // vm2 as the YAML has it
  ASSERT_EQ(config.endpoints.size(), 2u);  // web1's, and vm2's (its DIP is the YAML's vm2)
  EXPECT_EQ(config.endpoints[0].dip, Ip("10.1.0.10"));
  EXPECT_EQ(config.endpoints[1].dip, Ip("10.1.0.2"));
  EXPECT_TRUE(config.snat_leases.empty());
}

// A restored VM whose port cannot be opened at start leaves with what is bound to it.
TEST_F(CloudStateTest, ForgetVmTakesItsEndpointsAndStaticLeases) {
  AgentConfig config = BootHost();
  config.endpoints = {
      {.vip = Ip("10.200.0.10"), .port = 80, .dip = Ip("10.1.0.1"), .dip_port = 8080},
      {.vip = Ip("10.200.0.10"), .port = 80, .dip = Ip("10.1.0.2"), .dip_port = 8080}};
  config.snat_leases = {
      {.dip = Ip("10.1.0.2"), .vip = Ip("10.200.0.10"), .port_start = 20000, .port_count = 8},
      {.dip = Ip("10.1.0.1"), .vip = Ip("10.200.0.10"), .port_start = 20008, .port_count = 8}};
  EXPECT_EQ(ForgetVm(&config, "vm2"), 2u);
  ASSERT_EQ(config.vms.size(), 1u);
  EXPECT_EQ(config.vms[0].name, "vm1");
  ASSERT_EQ(config.endpoints.size(), 1u);
  EXPECT_EQ(config.endpoints[0].dip, Ip("10.1.0.1"));
  ASSERT_EQ(config.snat_leases.size(), 1u);
  EXPECT_EQ(config.snat_leases[0].dip, Ip("10.1.0.1"));
  EXPECT_EQ(ForgetVm(&config, "nope"), 0u);
  EXPECT_EQ(config.vms.size(), 1u);
}

}  // namespace
}  // namespace sluice::agent
