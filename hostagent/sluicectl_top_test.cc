#include "hostagent/sluicectl_top.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <string>

#include "common/stats_server.h"
#include "common/strings.h"

namespace sluice::ctl {
namespace {

nlohmann::json Mux(uint64_t rx, uint64_t new_flows, uint64_t no_backend, uint64_t live) {
  return nlohmann::json{
      {"role", "mux"},
      {"name", "mux1"},
      {"ready", true},
      {"draining", false},
      {"rx_packets", rx},
      {"tx_packets", rx},
      {"new_flows", new_flows},
      {"flow_table_live", live},
      {"flow_table_capacity", 1048576},
      {"drops", {{"no_backend", no_backend}, {"malformed", 0}}},
      {"bgp", {{"enabled", true}, {"session", "established"}}},
      {"backends",
       nlohmann::json::array({{{"vip", "10.200.0.10:80"}, {"dip", "10.1.0.1"}, {"weight", 1},
                               {"packets", rx / 2}},
                              {{"vip", "10.200.0.10:80"}, {"dip", "10.1.0.2"}, {"weight", 1},
                               {"packets", rx / 2}}})},
      {"worker_rx_packets", nlohmann::json::array({rx, 0})}};
}

TEST(SluicectlTop, FlattensObjectsArraysAndBooleans) {
  auto flat = FlattenStats(Mux(100, 4, 1, 7));
  EXPECT_EQ(flat.at("rx_packets"), 100);
  EXPECT_EQ(flat.at("drops.no_backend"), 1);
  EXPECT_EQ(flat.at("ready"), 1);
  EXPECT_EQ(flat.at("backends[10.200.0.10:80 10.1.0.2].packets"), 50);
  EXPECT_EQ(flat.at("worker_rx_packets[0]"), 100);
  EXPECT_EQ(flat.count("role"), 0u);  // strings are not numbers
  EXPECT_EQ(flat.count("bgp.session"), 0u);
}

TEST(SluicectlTop, GaugesAreNotRates) {
  EXPECT_TRUE(IsGauge("flow_table_live"));
  EXPECT_TRUE(IsGauge("flows.capacity"));
  EXPECT_TRUE(IsGauge("backends[10.200.0.10:80 10.1.0.1].weight"));
  EXPECT_FALSE(IsGauge("rx_packets"));
  EXPECT_FALSE(IsGauge("drops.no_backend"));
  EXPECT_FALSE(IsGauge("vms[vm1].rx_packets"));
}

TEST(SluicectlTop, FrameShowsRatesOverTheMeasuredTime) {
  TopSample before{.source = "/run/x.sock", .doc = Mux(1000, 10, 0, 5), .error = ""};
  TopSample after{.source = "/run/x.sock", .doc = Mux(3000, 50, 6, 9), .error = ""};
  const std::string frame = RenderTopFrame(before, after, 2.0);
  EXPECT_NE(frame.find("mux1 (mux)  ready bgp established"), std::string::npos) << frame;
  EXPECT_NE(frame.find("rx 1000/s"), std::string::npos) << frame;
  EXPECT_NE(frame.find("new flows 20/s"), std::string::npos) << frame;
  EXPECT_NE(frame.find("flows 9 / 1.05M"), std::string::npos) << frame;
  EXPECT_NE(frame.find("drops 3/s"), std::string::npos) << frame;
  // The drop reason that moved comes first in the table, then the busiest counters.
  const size_t drop_row = frame.find("drops.no_backend");
  const size_t rx_row = frame.find("  rx_packets ");
  ASSERT_NE(drop_row, std::string::npos) << frame;
  ASSERT_NE(rx_row, std::string::npos) << frame;
  EXPECT_LT(drop_row, rx_row);
  EXPECT_NE(frame.find("backends[10.200.0.10:80 10.1.0.1].packets"), std::string::npos) << frame;
  // Unmoved counters and gauges are not rows.
  EXPECT_EQ(frame.find("drops.malformed"), std::string::npos) << frame;
  EXPECT_EQ(frame.find("flow_table_live  "), std::string::npos) << frame;
}

TEST(SluicectlTop, RestartedDaemonCountsFromZero) {
  TopSample before{.source = "s", .doc = Mux(5000, 10, 0, 5), .error = ""};
  TopSample after{.source = "s", .doc = Mux(200, 10, 0, 5), .error = ""};
  EXPECT_NE(RenderTopFrame(before, after, 1.0).find("rx 200/s"), std::string::npos);
}

TEST(SluicectlTop, FirstFrameAndUnreachableDaemon) {
  TopSample none{.source = "s", .doc = nullptr, .error = "connect: No such file or directory"};
  TopSample now{.source = "s", .doc = Mux(10, 1, 0, 1), .error = ""};
  EXPECT_NE(RenderTopFrame(none, now, 1.0).find("rx -"), std::string::npos);
  EXPECT_EQ(RenderTopFrame(now, none, 1.0), "s: unreachable: connect: No such file or directory\n");
}

TEST(SluicectlTop, AgentHeadline) {
  auto agent = [](uint64_t n) {
    return nlohmann::json{{"role", "agent"},       {"name", "host1"},
                          {"ready", true},         {"rx_packets", n},
                          {"tx_packets", n},       {"inbound_packets", n / 2},
                          {"dsr_return_packets", n / 2},
                          {"flows", {{"active", 3}, {"capacity", 65536}}},
                          {"vms", nlohmann::json::array({{{"name", "vm1"}, {"rx_packets", n}}})}};
  };
  const std::string frame = RenderTopFrame({"a", agent(0), ""}, {"a", agent(400), ""}, 4.0);
  EXPECT_NE(frame.find("host1 (agent)  ready"), std::string::npos) << frame;
  EXPECT_NE(frame.find("inbound 50/s  dsr 50/s"), std::string::npos) << frame;
  EXPECT_NE(frame.find("flows 3 / 65.5k"), std::string::npos) << frame;
  EXPECT_NE(frame.find("vms[vm1].rx_packets"), std::string::npos) << frame;
}

TEST(SluicectlTop, BadCommandLinesExitTwo) {
  EXPECT_EQ(Top({}), 2);
  EXPECT_EQ(Top({"--socket"}), 2);
  EXPECT_EQ(Top({"--socket", "x", "--interval", "0"}), 2);
  EXPECT_EQ(Top({"--socket", "x", "--count", "zero"}), 2);
  EXPECT_EQ(Top({"--socket", "x", "--frobnicate", "1"}), 2);
}

// Against a real stats socket whose counter grows with every query.
TEST(SluicectlTop, ReadsALiveStatsSocket) {
  const std::string path = StrCat("/tmp/sluicectl_top_test.", getpid(), ".sock");
  std::atomic<uint64_t> queries{0};
  StatsServer server;
  ASSERT_TRUE(server
                  .Start(path,
                         [&](const std::string&) {
                           uint64_t n = ++queries;
                           return Mux(n * 1000, n, 0, n).dump();
                         })
                  .ok());
  testing::internal::CaptureStdout();
  const int rc = Top({"--socket", path, "--interval", "0.05", "--count", "2"});
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(queries.load(), 3u);  // one baseline + one per frame
  EXPECT_NE(out.find("mux1 (mux)"), std::string::npos) << out;
  EXPECT_NE(out.find("rx_packets"), std::string::npos) << out;
  server.Stop();

  testing::internal::CaptureStdout();
  EXPECT_EQ(Top({"--socket", path, "--interval", "0.05", "--count", "1"}), 1);
  EXPECT_NE(testing::internal::GetCapturedStdout().find("unreachable"), std::string::npos);
}

}  // namespace
}  // namespace sluice::ctl
