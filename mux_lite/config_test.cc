#include "mux_lite/config.h"

#include <gtest/gtest.h>

namespace sluice::mux {
namespace {

constexpr const char* kGood = R"(
mux:
  name: mux1
  port: "net_af_packet0,iface=eth0"
  address: 10.101.0.11/24
  gateway: 10.101.0.1
vips:
  - vip: 10.200.0.10
    port: 80
    protocol: tcp
    backends:
      - { dip: 10.1.0.1, host: 10.101.0.31, weight: 2 }
      - { dip: 10.1.0.2, host: 10.101.0.32 }
)";

std::string ErrorOf(const std::string& yaml) {
  absl::StatusOr<MuxConfig> c = ParseMuxConfig(yaml, "mux.yaml");
  return c.ok() ? "" : std::string(c.status().message());
}

std::string Replace(std::string s, const std::string& from, const std::string& to) {
  s.replace(s.find(from), from.size(), to);
  return s;
}

TEST(MuxConfigTest, ParsesTheLabConfig) {
  absl::StatusOr<MuxConfig> c = ParseMuxConfig(kGood, "mux.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->name, "mux1");
  EXPECT_EQ(c->address.addr, 0x0a65000bu);
  ASSERT_EQ(c->vips.size(), 1u);
  EXPECT_EQ(c->vips[0].proto, 6);
  ASSERT_EQ(c->vips[0].backends.size(), 2u);
  EXPECT_EQ(c->vips[0].backends[0].weight, 2u);
  EXPECT_EQ(c->vips[0].backends[1].weight, 1u);
  EXPECT_EQ(c->maglev_size, 65537u);
}

TEST(MuxConfigTest, ErrorsNameLineAndField) {
  EXPECT_EQ(ErrorOf(Replace(kGood, "  gateway:", "  gatewy:")),
            "mux.yaml:6:3: mux.gatewy: unknown field (expected one of: name, port, address, "
            "gateway, flow_table_size, workers, tcp_idle_timeout_s, udp_idle_timeout_s, "
            "closing_timeout_s, maglev_size, gue_port, fastpath_key, cloud_state_file)");
  EXPECT_EQ(ErrorOf(Replace(kGood, "weight: 2", "weight: -2")),
            "mux.yaml:12:53: vips[0].backends[0].weight: '-2' is not a whole number");
  EXPECT_EQ(ErrorOf(Replace(kGood, "protocol: tcp", "protocol: sctp")),
            "mux.yaml:10:15: vips[0].protocol: 'sctp' is not a supported protocol (tcp or udp)");
  EXPECT_NE(ErrorOf(Replace(kGood, "dip: 10.1.0.2", "dip: 10.1.0.1")).find("appears twice"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Replace(kGood, "gateway: 10.101.0.1", "gateway: 10.9.0.1"))
                .find("mux.gateway: 10.9.0.1 is not inside 10.101.0.11/24"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Replace(kGood, "  name: mux1\n", "  name: mux1\n  maglev_size: 65536\n"))
                .find("65536 is not a prime"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Replace(kGood, "  name: mux1\n", "  name: mux1\n  workers: 0\n"))
                .find("mux.workers"),
            std::string::npos);
  EXPECT_NE(ErrorOf("mux: [1\n").find("YAML syntax error"), std::string::npos);
}

TEST(MuxConfigTest, DuplicateVipIsRejected) {
  std::string twice = std::string(kGood) + R"(
  - vip: 10.200.0.10
    port: 80
    protocol: tcp
    backends: [ { dip: 10.1.0.9, host: 10.101.0.39 } ]
)";
  EXPECT_NE(ErrorOf(twice).find("10.200.0.10:80/tcp is configured twice"), std::string::npos)
      << ErrorOf(twice);
}

TEST(MuxConfigTest, SchedulersEncapsSnatRangesBgpAndKey) {
  std::string yaml = Replace(kGood, "    protocol: tcp\n", "    protocol: tcp\n    scheduler: source-hash\n");
  yaml = Replace(yaml, "host: 10.101.0.32 }", "host: 10.101.0.32, encap: gue }");
  std::string gre = Replace(yaml, "encap: gue }", "encap: gre }");
  yaml = Replace(yaml, "  gateway: 10.101.0.1\n",
                 "  gateway: 10.101.0.1\n  fastpath_key: "
                 "\"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"\n");
  yaml += R"(
snat_ranges:
  - { vip: 10.200.0.10, port_start: 20000, port_count: 128, host: 10.101.0.21 }
  - { vip: 10.200.0.10, protocol: udp, port_start: 20128, port_count: 128, host: 10.101.0.22 }
bgp:
  local_as: 65001
  peer: 10.101.0.1
  peer_as: 65000
)";
  absl::StatusOr<MuxConfig> c = ParseMuxConfig(yaml, "mux.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->vips[0].scheduler, Scheduler::kSourceHash);
  EXPECT_EQ(c->vips[0].backends[0].encap, flow::Tunnel::kIpip);
  EXPECT_EQ(c->vips[0].backends[1].encap, flow::Tunnel::kGue);
  absl::StatusOr<MuxConfig> with_gre = ParseMuxConfig(gre, "mux.yaml");
  ASSERT_TRUE(with_gre.ok()) << with_gre.status();
  EXPECT_EQ(with_gre->vips[0].backends[1].encap, flow::Tunnel::kGre);
  EXPECT_NE(ErrorOf(Replace(gre, "encap: gre }", "encap: vxlan }"))
                .find("'vxlan' is not an encapsulation (ipip, gue or gre)"),
            std::string::npos);
  EXPECT_TRUE(c->fastpath);
  EXPECT_EQ(c->fastpath_key[31], 0x1f);
  ASSERT_EQ(c->snat_ranges.size(), 2u);
  EXPECT_TRUE(c->snat_ranges[0].Contains(0x0ac8000a, 6, 20127));
  EXPECT_FALSE(c->snat_ranges[0].Contains(0x0ac8000a, 6, 20128));
  EXPECT_TRUE(c->snat_ranges[1].Contains(0x0ac8000a, 17, 20128));
  EXPECT_FALSE(c->snat_ranges[1].Contains(0x0ac8000a, 6, 20128));
  EXPECT_TRUE(c->bgp.enabled);
  EXPECT_EQ(c->bgp.router_id, c->address.addr);
  EXPECT_EQ(c->bgp.peer_as, 65000u);
}

TEST(MuxConfigTest, BadSchedulerOverlappingRangesAndBadKeyAreRejected) {
  EXPECT_NE(ErrorOf(Replace(kGood, "    protocol: tcp\n", "    protocol: tcp\n    scheduler: random\n"))
                .find("'random' is not a scheduler"),
            std::string::npos);
  EXPECT_NE(ErrorOf(std::string(kGood) + R"(
snat_ranges:
  - { vip: 10.200.0.10, port_start: 20000, port_count: 128, host: 10.101.0.21 }
  - { vip: 10.200.0.10, port_start: 20100, port_count: 64, host: 10.101.0.22 }
)").find("snat_ranges[1].port_start: overlaps the range 20000..20127 of host 10.101.0.21"),
            std::string::npos);
  EXPECT_NE(ErrorOf(Replace(kGood, "  gateway: 10.101.0.1\n",
                            "  gateway: 10.101.0.1\n  fastpath_key: abc\n"))
                .find("fastpath_key: must be 64 hex digits"),
            std::string::npos);
  EXPECT_NE(ErrorOf(std::string(kGood) + "bgp:\n  local_as: 65001\n  peer: 10.101.0.1\n")
                .find("bgp.peer_as: required field is missing"),
            std::string::npos);
}

TEST(MuxConfigTest, MissingFileSaysSo) {
  absl::StatusOr<MuxConfig> c = LoadMuxConfig("/nonexistent/mux.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(std::string(c.status().message()).find("/nonexistent/mux.yaml"), std::string::npos);
}

}  // namespace
}  // namespace sluice::mux

namespace sluice::mux {
namespace {

// The cloud controller pushes VIPs and SNAT ranges (gRPC): a mux's boot file may have none.
TEST(MuxConfigTest, BootFileWithoutVipsStartsEmptyAndLeavesThemToTheController) {
  const std::string good = kGood;
  const std::string boot = good.substr(0, good.find("vips:"));
  absl::StatusOr<MuxConfig> c = ParseMuxConfig(boot, "mux.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->vips.empty());
  EXPECT_TRUE(c->snat_ranges.empty());
  EXPECT_FALSE(c->file_sets_vips);
  EXPECT_FALSE(c->file_sets_snat_ranges);
  EXPECT_TRUE(AnnouncedVipAddresses(*c).empty());

  // An explicit empty list: the file owns the (no) VIPs.
  c = ParseMuxConfig(boot + "vips: []\n", "mux.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->vips.empty());
  EXPECT_TRUE(c->file_sets_vips);
  EXPECT_FALSE(c->file_sets_snat_ranges);

  c = ParseMuxConfig(kGood, "mux.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->file_sets_vips);
}

// Only a VIP that can send a flow somewhere is announced by BGP.
TEST(MuxConfigTest, OnlyVipsWithAWeightedBackendAreAnnounced) {
  MuxConfig c;
  auto vip = [](uint32_t addr, uint16_t port, std::vector<uint32_t> weights) {
    VipConfig v{.vip = addr, .port = port};
    for (size_t i = 0; i < weights.size(); ++i) {
      v.backends.push_back({.dip = 0x0a010001u + static_cast<uint32_t>(i),
                            .host = 0x0a65001fu,
                            .weight = weights[i]});
    }
    return v;
  };
  c.vips = {vip(0x0ac8000a, 80, {}),         // no backends
            vip(0x0ac80014, 80, {0, 0}),     // every backend out of Maglev
            vip(0x0ac8001e, 80, {0}),        // this port has none ...
            vip(0x0ac8001e, 443, {0, 1}),    // ... but another port of the address has one
            vip(0x0ac80028, 80, {1}),
            vip(0x0ac80028, 81, {2})};
  EXPECT_EQ(AnnouncedVipAddresses(c), (std::vector<uint32_t>{0x0ac8001e, 0x0ac80028}));
}

}  // namespace
}  // namespace sluice::mux
