#include "mux_lite/cloud_state.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "common/files.h"

namespace sluice::mux {
namespace {

// Boot facts only, like the lab's mux files: VIPs and ranges are the controller's.
constexpr const char* kBoot = R"(
mux:
  name: mux1
  port: "net_af_packet0,iface=eth0"
  address: 10.101.0.11/24
  gateway: 10.101.0.1
)";

class MuxCloudStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/mux-cloud-state-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    path_ = dir_ + "/mux1.cloud-state.json";
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }

  static MuxConfig Boot(const std::string& extra = "") {
    absl::StatusOr<MuxConfig> c = ParseMuxConfig(std::string(kBoot) + extra, "mux.yaml");
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : MuxConfig{};
  }

  // The state a controller would have pushed: one VIP with two backends (one on an OVS
  // host), a static range and an allocator chunk.
  static MuxConfig Pushed() {
    MuxConfig c = Boot();
    VipConfig vip{.vip = 0x0ac8000a, .port = 80, .proto = 6, .scheduler = Scheduler::kSourceHash};
    vip.backends.push_back({.dip = 0x0a010001, .host = 0x0a65001f, .weight = 3});
    vip.backends.push_back(
        {.dip = 0x0a020001, .host = 0x0a650029, .weight = 1, .encap = flow::Tunnel::kGre});
    c.vips.push_back(vip);
    c.snat_ranges.push_back({.vip = 0x0ac8000a, .proto = 6, .port_start = 20000,
                             .port_count = 1000, .host = 0x0a65001f});
    c.snat_ranges.push_back({.vip = 0x0ac8000a, .proto = 0, .port_start = 40000,
                             .port_count = 256, .host = 0x0a650029, .dynamic = true,
                             .encap = flow::Tunnel::kGre});
    return c;
  }

  std::string dir_;
  std::string path_;
};

TEST_F(MuxCloudStateTest, RoundTripsVipsBackendsAndRanges) {
  ASSERT_TRUE(SaveMuxCloudState(path_, Pushed(), 7).ok());
  MuxConfig restarted = Boot();
  restarted.cloud_state_file = path_;
  absl::StatusOr<AdoptedMuxState> adopted = LoadMuxCloudState(path_, &restarted);
  ASSERT_TRUE(adopted.ok()) << adopted.status();
  EXPECT_EQ(adopted->vips, 1u);
  EXPECT_EQ(adopted->snat_ranges, 2u);
  const MuxConfig want = Pushed();
  ASSERT_EQ(restarted.vips.size(), 1u);
  const VipConfig& vip = restarted.vips[0];
  EXPECT_EQ(vip.vip, want.vips[0].vip);
  EXPECT_EQ(vip.port, 80);
  EXPECT_EQ(vip.scheduler, Scheduler::kSourceHash);
  ASSERT_EQ(vip.backends.size(), 2u);
  EXPECT_EQ(vip.backends[0].weight, 3u);
  EXPECT_EQ(vip.backends[1].encap, flow::Tunnel::kGre);
  ASSERT_EQ(restarted.snat_ranges.size(), 2u);
  EXPECT_FALSE(restarted.snat_ranges[0].dynamic);
  EXPECT_EQ(restarted.snat_ranges[0].port_count, 1000);
  EXPECT_TRUE(restarted.snat_ranges[1].dynamic);
  EXPECT_EQ(restarted.snat_ranges[1].proto, 0);
  EXPECT_EQ(restarted.snat_ranges[1].encap, flow::Tunnel::kGre);
  // The boot facts are the file's, not the state's.
  EXPECT_EQ(restarted.cloud_state_file, path_);
}

TEST_F(MuxCloudStateTest, NoFileIsNotFoundAndLeavesTheConfig) {
  MuxConfig c = Boot();
  absl::StatusOr<AdoptedMuxState> adopted = LoadMuxCloudState(path_, &c);
  EXPECT_TRUE(absl::IsNotFound(adopted.status())) << adopted.status();
  EXPECT_TRUE(c.vips.empty());
}

TEST_F(MuxCloudStateTest, WhatTheFileConfiguresWins) {
  ASSERT_TRUE(SaveMuxCloudState(path_, Pushed(), 1).ok());
  MuxConfig c = Boot(R"(
vips:
  - vip: 10.200.0.99
    port: 443
    protocol: tcp
    backends:
      - { dip: 10.1.0.9, host: 10.101.0.39 }
)");
  absl::StatusOr<AdoptedMuxState> adopted = LoadMuxCloudState(path_, &c);
  ASSERT_TRUE(adopted.ok()) << adopted.status();
  EXPECT_EQ(adopted->vips, 0u);
  EXPECT_EQ(adopted->snat_ranges, 2u);
  ASSERT_EQ(c.vips.size(), 1u);
  EXPECT_EQ(c.vips[0].port, 443);
}

TEST_F(MuxCloudStateTest, BadFilesAreRefusedWithTheReasonAndChangeNothing) {
  MuxConfig c = Boot();
  auto error_of = [&](const std::string& text) {
    EXPECT_TRUE(WriteFileAtomically(path_, text).ok());
    absl::StatusOr<AdoptedMuxState> adopted = LoadMuxCloudState(path_, &c);
    EXPECT_FALSE(adopted.ok());
    EXPECT_TRUE(c.vips.empty());
    EXPECT_TRUE(c.snat_ranges.empty());
    return std::string(adopted.status().message());
  };
  EXPECT_NE(error_of("{ not json").find("not a mux cloud state file"), std::string::npos);
  EXPECT_NE(error_of(R"({"mux": "mux2"})").find("written by mux 'mux2', this is 'mux1'"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"mux": "mux1", "vips": [{"vip": "10.200.0.300", "port": 80,
            "protocol": "L4_PROTOCOL_TCP"}]})").find("vips[0].vip"),
            std::string::npos);
  // A VIP that is this mux's own PA (say the mux was given another address since).
  EXPECT_NE(error_of(R"({"mux": "mux1", "vips": [{"vip": "10.101.0.11", "port": 80,
            "protocol": "L4_PROTOCOL_TCP"}]})").find("this mux's own PA"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"mux": "mux1", "snat_ranges": [{"vip": "10.200.0.10",
            "port_start": 0, "port_count": 10, "host": "10.101.0.31"}]})").find("ranges[0]"),
            std::string::npos);
}

TEST_F(MuxCloudStateTest, ConfigKeyMustBeAbsolute) {
  absl::StatusOr<MuxConfig> c =
      ParseMuxConfig(std::string(kBoot) + "  cloud_state_file: state.json\n", "mux.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(std::string(c.status().message()).find("cloud_state_file"), std::string::npos);
  EXPECT_NE(std::string(c.status().message()).find("absolute"), std::string::npos);
}

}  // namespace
}  // namespace sluice::mux
