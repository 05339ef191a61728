#include "mux_lite/bgp.h"

#include <gtest/gtest.h>

#include <set>

namespace sluice::mux {
namespace {

// A speaker that records calls and can be told to fail.
class FakeSpeaker : public BgpSpeaker {
 public:
  absl::Status Announce(uint32_t prefix, uint32_t) override {
    if (fail) return absl::UnavailableError("speaker down");
    routes.insert(prefix);
    return absl::OkStatus();
  }
  absl::Status Withdraw(uint32_t prefix) override {
    if (fail) return absl::UnavailableError("speaker down");
    routes.erase(prefix);
    return absl::OkStatus();
  }
  std::string SessionState() override { return fail ? "unreachable" : "established"; }
  std::set<uint32_t> routes;
  bool fail = false;
};

TEST(VipAnnouncerTest, AnnouncesWhenServingAndWithdrawsOnDrain) {
  FakeSpeaker speaker;
  VipAnnouncer announcer(&speaker, {1, 2}, 99);
  announcer.Update(false);
  EXPECT_TRUE(speaker.routes.empty());
  announcer.Update(true);
  EXPECT_EQ(speaker.routes, (std::set<uint32_t>{1, 2}));
  EXPECT_TRUE(announcer.announced());
  announcer.Update(false);  // drain, or the data path stopped polling
  EXPECT_TRUE(speaker.routes.empty());
  EXPECT_FALSE(announcer.announced());
}

TEST(VipAnnouncerTest, UnreachableSpeakerIsCountedAndRetried) {
  FakeSpeaker speaker;
  speaker.fail = true;
  VipAnnouncer announcer(&speaker, {1}, 99);
  announcer.Update(true);
  EXPECT_EQ(announcer.errors(), 1u);
  EXPECT_EQ(announcer.last_error(), "speaker down");
  EXPECT_FALSE(announcer.announced());
  speaker.fail = false;
  announcer.Update(true);
  EXPECT_TRUE(announcer.announced());
  EXPECT_EQ(speaker.routes.count(1), 1u);
}

TEST(VipAnnouncerTest, ReloadWithdrawsRemovedVipsAndAnnouncesNewOnes) {
  FakeSpeaker speaker;
  VipAnnouncer announcer(&speaker, {1, 2}, 99);
  announcer.Update(true);
  speaker.fail = true;
  announcer.SetVips({2, 3});  // 1 removed: its withdrawal fails and is retried
  EXPECT_EQ(speaker.routes.count(1), 1u);
  speaker.fail = false;
  announcer.Update(true);
  EXPECT_EQ(speaker.routes, (std::set<uint32_t>{2, 3}));
  EXPECT_TRUE(announcer.announced());
  announcer.Update(false);
  EXPECT_TRUE(speaker.routes.empty());
}

TEST(RunCommandTest, OutputExitStatusAndTimeout) {
  auto ok = RunCommand({"/bin/echo", "hello"}, 2000);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, "hello");
  auto failed = RunCommand({"/bin/sh", "-c", "echo nope; exit 3"}, 2000);
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(std::string(failed.status().message()).find("nope"), std::string::npos);
  auto missing = RunCommand({"/nonexistent/gobgp"}, 2000);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  auto slow = RunCommand({"/bin/sleep", "5"}, 100);
  EXPECT_EQ(slow.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(GobgpSpeakerTest, MissingBinaryIsAClearError) {
  BgpConfig config{.enabled = true, .local_as = 65001, .peer = 1, .peer_as = 65000,
                   .router_id = 2, .gobgpd = "/nonexistent/gobgpd"};
  auto speaker = GobgpSpeaker::Start(config, "t", "/tmp");
  ASSERT_FALSE(speaker.ok());
  EXPECT_NE(std::string(speaker.status().message()).find("/nonexistent/gobgpd is missing"),
            std::string::npos);
}

}  // namespace
}  // namespace sluice::mux
