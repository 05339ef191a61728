// OvsExecutor against a fake OpenFlow channel: what each Commit sends as one bundle, that a
// failed bundle leaves everything staged, and how Reconcile reads a diff.
#include "vswitch/executor.h"

#include <gtest/gtest.h>

namespace sluice::vswitch {
namespace {

using flow::Action;
using flow::Ipv4Match;
using flow::Rule;

class FakeChannel : public OpenFlowChannel {
 public:
  absl::StatusOr<std::string> DumpFlows() override { return dump; }
  absl::Status Bundle(const std::string& lines) override {
    bundles.push_back(lines);
    return fail ? absl::UnavailableError("bundle refused") : absl::OkStatus();
  }
  absl::StatusOr<std::string> Diff(const std::string& desired) override {
    diffed.push_back(desired);
    return diff;
  }
  std::string dump, diff;
  bool fail = false;
  std::vector<std::string> bundles, diffed;
};

OvsExecutorConfig Config() {
  return {.ports = {.ofport = {{0, 1}, {1, 2}}},
          .base = {.uplink_ofport = 1, .tunnel_endpoints = {}, .slow_path_port = 0}};
}

Rule Forward(uint64_t id, uint32_t dst, uint16_t out) {
  return Rule{.id = id,
              .priority = 10,
              .match = {.in_port = 0, .dst = Ipv4Match::Exact(dst)},
              .actions = {Action::Output(out)}};
}

TEST(OvsExecutorTest, CommitSendsOnlyChangesAsOneBundle) {
  FakeChannel channel;
  OvsExecutor executor(&channel, Config());
  ASSERT_TRUE(executor.Add(Forward(1, 0x0a000001, 1)).ok);
  ASSERT_TRUE(executor.Add(Forward(2, 0x0a000002, 1)).ok);
  ASSERT_TRUE(executor.Commit().ok());
  ASSERT_EQ(channel.bundles.size(), 1u);
  // 3 base flows (ARP, LOCAL→uplink, miss) + 2 rules, all adds.
  EXPECT_EQ(std::count(channel.bundles[0].begin(), channel.bundles[0].end(), '\n'), 5);
  EXPECT_NE(channel.bundles[0].find("add table=0,priority=10,cookie=0x2,ip,in_port=1,"
                                    "nw_dst=10.0.0.2,nw_frag=no actions=output:2\n"),
            std::string::npos)
      << channel.bundles[0];
  EXPECT_TRUE(executor.Status(1)->on_bridge);

  // Change rule 1's action, move rule 2's match, remove nothing: one bundle of three lines.
  executor.Add(Forward(1, 0x0a000001, 0));
  executor.Add(Forward(2, 0x0a000003, 1));
  EXPECT_FALSE(executor.Status(1)->on_bridge);
  ASSERT_TRUE(executor.Commit().ok());
  ASSERT_EQ(channel.bundles.size(), 2u);
  EXPECT_EQ(channel.bundles[1],
            "delete_strict table=0,priority=10,ip,in_port=1,nw_dst=10.0.0.2,nw_frag=no\n"
            "add table=0,priority=10,cookie=0x1,ip,in_port=1,nw_dst=10.0.0.1,nw_frag=no "
            "actions=in_port\n"
            "add table=0,priority=10,cookie=0x2,ip,in_port=1,nw_dst=10.0.0.3,nw_frag=no "
            "actions=output:2\n");

  // Nothing staged: no bundle at all.
  ASSERT_TRUE(executor.Commit().ok());
  EXPECT_EQ(channel.bundles.size(), 2u);

  ASSERT_TRUE(executor.Remove(2));
  EXPECT_FALSE(executor.Remove(2));
  ASSERT_TRUE(executor.Commit().ok());
  EXPECT_EQ(channel.bundles[2],
            "delete_strict table=0,priority=10,ip,in_port=1,nw_dst=10.0.0.3,nw_frag=no\n");
}

TEST(OvsExecutorTest, FailedBundleKeepsChangesStaged) {
  FakeChannel channel;
  OvsExecutor executor(&channel, Config());
  executor.Add(Forward(1, 0x0a000001, 1));
  channel.fail = true;
  absl::Status s = executor.Commit();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(executor.Status(1)->on_bridge);
  channel.fail = false;
  ASSERT_TRUE(executor.Commit().ok());
  EXPECT_EQ(channel.bundles[0], channel.bundles[1]) << "the same change is sent again";
  EXPECT_TRUE(executor.Status(1)->on_bridge);
}

TEST(OvsExecutorTest, RefusedRuleNeverReachesTheBridge) {
  FakeChannel channel;
  OvsExecutor executor(&channel, Config());
  Rule gue = Forward(5, 0x0a000001, 1);
  gue.match.tunnel = flow::Tunnel::kGue;
  gue.actions = {Action::Decap(), Action::Output(1)};
  AddOutcome out = executor.Add(gue);
  EXPECT_FALSE(out.ok);
  EXPECT_NE(out.error.find("GUE"), std::string::npos);
  ASSERT_TRUE(executor.Commit().ok());
  EXPECT_EQ(channel.bundles[0].find("cookie=0x5"), std::string::npos);
  EXPECT_FALSE(executor.Status(5)->on_bridge);
  auto counters = executor.Counters();
  EXPECT_EQ(counters[1], (std::pair<std::string, uint64_t>("rules_refused", 1)));
}

TEST(OvsExecutorTest, ReconcileCountsKeptAddedRemovedAndFixesOnlyTheDifference) {
  FakeChannel channel;
  OvsExecutorConfig config = Config();
  config.unmanaged_cookie = 0xfff0000000080000;
  config.unmanaged_cookie_mask = ~uint64_t{0xffff};
  OvsExecutor executor(&channel, config);
  executor.Add(Forward(1, 0x0a000001, 1));
  executor.Add(Forward(2, 0x0a000002, 1));
  // The bridge has rule 2 with another action, a stale flow in table 3 and a flow of the
  // unmanaged class (a Fastpath flow); the rest is right.
  channel.diff =
      "-priority=10,ip,in_port=1,nw_dst=10.0.0.2,nw_frag=no cookie=0x2 actions=drop\n"
      "+priority=10,ip,in_port=1,nw_dst=10.0.0.2,nw_frag=no cookie=0x2 actions=output:2\n"
      "-table=3 priority=10,ip,in_port=1,nw_dst=10.0.0.9 cookie=0x9 idle_timeout=5 "
      "actions=output:2\n"
      "-table=4 priority=200,tcp,nw_src=10.200.0.10,tp_src=20130 cookie=0xfff0000000080007 "
      "idle_timeout=300 actions=output:300\n";
  absl::StatusOr<ReconcileReport> report = executor.Reconcile();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->desired, 5u);
  EXPECT_EQ(report->kept, 4u);
  EXPECT_EQ(report->added, 1u);
  EXPECT_EQ(report->removed, 1u);
  EXPECT_EQ(report->unmanaged, 1u);
  ASSERT_EQ(channel.diffed.size(), 1u);
  EXPECT_EQ(channel.diffed[0], executor.DesiredFlows());
  ASSERT_EQ(channel.bundles.size(), 1u);
  EXPECT_EQ(channel.bundles[0],
            "delete_strict table=3,priority=10,ip,in_port=1,nw_dst=10.0.0.9\n"
            "add priority=10,ip,in_port=1,nw_dst=10.0.0.2,nw_frag=no cookie=0x2 "
            "actions=output:2\n");

  channel.diff = "";
  report = executor.Reconcile();
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->kept, 5u);
  EXPECT_EQ(channel.bundles.size(), 1u) << "nothing to fix, nothing sent";
  // After a reconcile the executor knows the bridge: no bundle for an unchanged set.
  ASSERT_TRUE(executor.Commit().ok());
  EXPECT_EQ(channel.bundles.size(), 1u);
}

TEST(OvsExecutorTest, QueryCountersByCookie) {
  FakeChannel channel;
  OvsExecutor executor(&channel, Config());
  executor.Add(Forward(1, 0x0a000001, 1));
  channel.dump =
      " cookie=0x1, duration=1.5s, table=0, n_packets=7, n_bytes=420, priority=10,ip "
      "actions=output:2\n"
      " cookie=0xfff0000000000000, duration=1.5s, table=0, n_packets=3, n_bytes=1, arp "
      "actions=LOCAL\n";
  ASSERT_TRUE(executor.QueryCounters().ok());
  EXPECT_EQ(executor.Status(1)->packets, 7u);
  EXPECT_EQ(executor.Status(1)->bytes, 420u);
}

}  // namespace
}  // namespace sluice::vswitch
