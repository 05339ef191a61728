#include "common/stats_server.h"

#include <unistd.h>

#include <gtest/gtest.h>

namespace sluice {
namespace {

TEST(StatsServerTest, AnswersRequests) {
  std::string path = "/tmp/sluice-stats-test-" + std::to_string(getpid()) + ".sock";
  StatsServer server;
  ASSERT_TRUE(server.Start(path, [](const std::string& req) { return "{\"req\":\"" + req + "\"}"; })
                  .ok());
  auto reply = QueryStatsSocket(path, "stats");
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(*reply, "{\"req\":\"stats\"}\n");
  server.Stop();
  EXPECT_FALSE(QueryStatsSocket(path, "stats").ok());
}

TEST(StatsServerTest, MissingSocketIsUnavailable) {
  auto reply = QueryStatsSocket("/tmp/sluice-no-such.sock", "stats");
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace sluice
