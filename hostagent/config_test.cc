#include "hostagent/config.h"

#include <gtest/gtest.h>

namespace sluice::agent {
namespace {

constexpr const char* kGood = R"(
agent:
  name: host1
  uplink: "net_af_packet0,iface=eth0"
  address: 10.101.0.21/24
  gateway: 10.101.0.1
vms:
  - name: vm1
    port: "net_af_packet1,iface=vm1"
    mac: "02:00:0a:01:00:01"
    dip: 10.1.0.1
    pa: 10.101.0.31
    gateway: 10.1.0.254
endpoints:
  - { vip: 10.200.0.10, port: 80, protocol: tcp, dip: 10.1.0.1, dip_port: 8080 }
)";

std::string ErrorOf(const std::string& yaml) {
  absl::StatusOr<AgentConfig> c = ParseAgentConfig(yaml, "host.yaml");
  return c.ok() ? "" : std::string(c.status().message());
}

std::string Replace(std::string s, const std::string& from, const std::string& to) {
  s.replace(s.find(from), from.size(), to);
  return s;
}

TEST(AgentConfigTest, ParsesTheLabConfig) {
  absl::StatusOr<AgentConfig> c = ParseAgentConfig(kGood, "host.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->vms.size(), 1u);
  EXPECT_EQ(c->vms[0].mac[5], 1);
  EXPECT_EQ(c->vms[0].pa, 0x0a65001fu);
  ASSERT_EQ(c->endpoints.size(), 1u);
  EXPECT_EQ(c->endpoints[0].dip_port, 8080);
}

TEST(AgentConfigTest, HealthReportMuxes) {
  const std::string yaml = std::string(kGood) + R"(health_report:
  muxes:
    - { name: mux1, grpc: "unix:/run/sluice-lab/mux1.grpc.sock" }
    - { name: mux2, grpc: "10.101.0.12:50051" }
  retry_max_ms: 2000
)";
  absl::StatusOr<AgentConfig> c = ParseAgentConfig(yaml, "host.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->health_report.muxes.size(), 2u);
  EXPECT_EQ(c->health_report.muxes[0].name, "mux1");
  EXPECT_EQ(c->health_report.muxes[0].grpc, "unix:/run/sluice-lab/mux1.grpc.sock");
  EXPECT_EQ(c->health_report.muxes[1].grpc, "10.101.0.12:50051");
  EXPECT_EQ(c->health_report.retry_max, std::chrono::milliseconds(2000));
  EXPECT_EQ(c->health_report.timeout, std::chrono::milliseconds(1000));  // default
  EXPECT_TRUE(ParseAgentConfig(kGood, "host.yaml")->health_report.muxes.empty());

  EXPECT_EQ(ErrorOf(Replace(yaml, "10.101.0.12:50051", "10.101.0.12")),
            "host.yaml:19:27: health_report.muxes[1].grpc: '10.101.0.12' is not a gRPC address "
            "(unix:/path, /path or host:port)");
  EXPECT_EQ(ErrorOf(Replace(yaml, "name: mux2", "name: mux1")),
            "host.yaml:19:15: health_report.muxes[1].name: 'mux1' appears twice");
  EXPECT_EQ(ErrorOf(Replace(yaml, "retry_max_ms: 2000", "retry_max_ms: 20")),
            "host.yaml:20:17: health_report.retry_max_ms: must be at least retry_min_ms");
  EXPECT_NE(ErrorOf(Replace(yaml, "retry_max_ms", "retry_max")).find("retry_max"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Replace(yaml, "grpc: \"unix", "target: \"unix")).find("muxes[0]"),
            std::string::npos);
  // Client TLS towards muxes on TCP: files checked while reading (common/tls_files.h).
  EXPECT_FALSE(c->health_report.dial.tls.has_value());
  EXPECT_EQ(ErrorOf(yaml + "  tls: { ca: /nonexistent/ca.pem }\n"),
            "host.yaml:21:8: health_report.tls: ca /nonexistent/ca.pem: cannot read: No such file "
            "or directory");
}

TEST(AgentConfigTest, DipPortDefaultsToVipPort) {
  absl::StatusOr<AgentConfig> c = ParseAgentConfig(Replace(kGood, ", dip_port: 8080", ""), "h");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->endpoints[0].dip_port, 80);
}

TEST(AgentConfigTest, BadInputIsNamed) {
  EXPECT_EQ(ErrorOf(Replace(kGood, "mac: \"02:00:0a:01:00:01\"", "mac: \"02:00\"")),
            "host.yaml:10:10: vms[0].mac: '02:00' is not a MAC address");
  EXPECT_EQ(ErrorOf(Replace(kGood, "dip: 10.1.0.1, dip_port", "dip: 10.1.0.7, dip_port")),
            "host.yaml:15:55: endpoints[0].dip: 10.1.0.7 is not the DIP of any VM on this host");
  EXPECT_NE(ErrorOf(Replace(kGood, "pa: 10.101.0.31", "pa: 10.101.0.21")).find("already"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Replace(kGood, "pa: 10.101.0.31", "pa: 10.102.0.31"))
                .find("not inside the uplink prefix"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Replace(kGood, "vms:", "vmz:")).find("vmz: unknown field"), std::string::npos);
}

TEST(AgentConfigTest, OneDipPortMayServeSeveralVips) {
  std::string two_vips = std::string(kGood) +
                         "  - { vip: 10.200.0.20, port: 80, protocol: tcp, dip: 10.1.0.1, "
                         "dip_port: 8080 }\n";
  absl::StatusOr<AgentConfig> c = ParseAgentConfig(two_vips, "host.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->endpoints.size(), 2u);
}

TEST(AgentConfigTest, DefaultsWork) {
  absl::StatusOr<AgentConfig> c = ParseAgentConfig(kGood, "host.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->nat.flow_state_file, "/dev/shm/sluice-host1.flows");
  EXPECT_EQ(c->nat.flow_capacity, 65536u);
  EXPECT_EQ(c->nat.snat_port_reuse_delay_s, 60u);
  EXPECT_FALSE(c->fastpath_key.has_value());
  EXPECT_TRUE(c->snat_leases.empty());
}

constexpr const char* kLeasesAndNat = R"(snat_leases:
  - { dip: 10.1.0.1, vip: 10.200.0.10, protocol: tcp, port_start: 20000, port_count: 64 }
  - { dip: 10.1.0.1, vip: 10.200.0.10, protocol: udp, port_start: 20000, port_count: 64 }
nat:
  flow_state_file: /tmp/host1.flows
  flow_capacity: 1024
  snat_port_reuse_delay_s: 2
  udp_timeout_s: 5
)";

TEST(AgentConfigTest, ParsesLeasesNatAndFastpathKey) {
  std::string yaml = Replace(kGood, "  gateway: 10.101.0.1\n",
                             "  gateway: 10.101.0.1\n  fastpath_key: \"5c1ce0f5a1b2c3d4e5f6071829"
                             "3a4b5c6d7e8f90a1b2c3d4e5f6071829304152\"\n") +
                     kLeasesAndNat;
  absl::StatusOr<AgentConfig> c = ParseAgentConfig(yaml, "host.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->snat_leases.size(), 2u);
  EXPECT_EQ(c->snat_leases[1].proto, 17);
  EXPECT_EQ(c->snat_leases[0].port_start, 20000);
  EXPECT_EQ(c->snat_leases[0].port_count, 64);
  EXPECT_EQ(c->nat.flow_state_file, "/tmp/host1.flows");
  EXPECT_EQ(c->nat.flow_capacity, 1024u);
  EXPECT_EQ(c->nat.snat_port_reuse_delay_s, 2u);
  EXPECT_EQ(c->nat.udp_timeout_s, 5u);
  EXPECT_EQ(c->nat.tcp_established_timeout_s, 300u);
  ASSERT_TRUE(c->fastpath_key.has_value());
  EXPECT_EQ((*c->fastpath_key)[0], 0x5c);
  EXPECT_EQ((*c->fastpath_key)[31], 0x52);
}

TEST(AgentConfigTest, BadLeasesAndNatAreNamed) {
  const std::string base = std::string(kGood) + kLeasesAndNat;
  EXPECT_NE(ErrorOf(Replace(base, "dip: 10.1.0.1, vip: 10.200.0.10, protocol: tcp",
                            "dip: 10.1.0.9, vip: 10.200.0.10, protocol: tcp"))
                .find("snat_leases[0].dip: 10.1.0.9 is not the DIP of any VM"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Replace(base, "protocol: udp, port_start: 20000",
                            "protocol: tcp, port_start: 20063"))
                .find("snat_leases[1].port_start: ports 20063..20126 overlap the lease of ports "
                      "20000..20063 on 10.200.0.10"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Replace(base, "protocol: tcp, port_start: 20000", "protocol: tcp, port_start: 40"))
                .find("include the endpoint 10.200.0.10:80/tcp"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Replace(base, "protocol: tcp, port_start: 20000", "protocol: tcp, port_start: 65500"))
                .find("run past 65535"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Replace(base, "flow_capacity: 1024", "flow_capacity: 3"))
                .find("nat.flow_capacity: must be between 16 and"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Replace(base, "/tmp/host1.flows", "host1.flows"))
                .find("nat.flow_state_file: must be an absolute path"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Replace(base, "udp_timeout_s", "udp_timeout"))
                .find("nat.udp_timeout: unknown field"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Replace(kGood, "  gateway: 10.101.0.1\n",
                            "  gateway: 10.101.0.1\n  fastpath_key: abc\n"))
                .find("agent.fastpath_key: must be 64 hexadecimal digits"),
            std::string::npos);
}

TEST(AgentConfigTest, SnatAllocatorIsReadAndChecked) {
  const std::string with = std::string(kGood) + R"(snat_allocator:
  address: unix:/run/sluice/snatd.sock
  low_water: 8
  return_idle_s: 30
  leases:
    - { dip: 10.1.0.1, vip: 10.200.0.10, protocol: tcp }
)";
  absl::StatusOr<AgentConfig> c = ParseAgentConfig(with, "host.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->snat_allocator.has_value());
  EXPECT_EQ(c->snat_allocator->address, "unix:/run/sluice/snatd.sock");
  EXPECT_EQ(c->snat_allocator->low_water, 8u);
  EXPECT_EQ(c->snat_allocator->return_idle_s, 30u);
  EXPECT_EQ(c->snat_allocator->check_interval_ms, 200u);
  ASSERT_EQ(c->snat_allocator->leases.size(), 1u);
  EXPECT_EQ(c->snat_allocator->leases[0].proto, 6);
  EXPECT_FALSE(ParseAgentConfig(kGood, "h")->snat_allocator.has_value());

  EXPECT_NE(ErrorOf(Replace(with, "dip: 10.1.0.1, vip: 10.200.0.10, protocol: tcp",
                            "dip: 10.1.0.9, vip: 10.200.0.10, protocol: tcp"))
                .find("snat_allocator.leases[0].dip: 10.1.0.9 is not the DIP of any VM"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Replace(with, "low_water: 8", "low_water: 0")).find("snat_allocator.low_water"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Replace(with, "low_water: 8", "low_wat: 8")).find("low_wat"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Replace(with, "  address: unix:/run/sluice/snatd.sock\n", ""))
                .find("snat_allocator.address"),
            std::string::npos);
  EXPECT_NE(ErrorOf(with + "    - { dip: 10.1.0.1, vip: 10.200.0.11, protocol: tcp }\n")
                .find("already leases tcp ports dynamically"),
            std::string::npos);  EXPECT_NE(ErrorOf(Replace(with, "  low_water: 8\n", "  low_water: 8\n  tls: { cert: /x.pem }\n"))
                .find("snat_allocator.tls: cert needs key too"),
            std::string::npos);
}

}  // namespace
}  // namespace sluice::agent
