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

TEST(AgentConfigTest, AmbiguousReturnPathIsRejected) {
  std::string two_vips = std::string(kGood) +
                         "  - { vip: 10.200.0.11, port: 80, protocol: tcp, dip: 10.1.0.1, "
                         "dip_port: 8080 }\n";
  EXPECT_NE(ErrorOf(two_vips).find("already serves VIP 10.200.0.10"), std::string::npos)
      << ErrorOf(two_vips);
}

}  // namespace
}  // namespace sluice::agent
