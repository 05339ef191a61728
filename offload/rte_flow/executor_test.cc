// NicExecutor against a fake NIC (fake_flow_api.h): the fallback chain, per-rule reasons and
// totals, the template/async path, aging, counters, and no leaked handles.
#include "offload/rte_flow/executor.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "offload/rte_flow/fake_flow_api.h"
#include "offload/sw/fixture_builder.h"

using sluice::fixture::Eth;
using sluice::fixture::Ipv4;
using sluice::fixture::Payload;
using sluice::fixture::Tcp;

namespace sluice::nic {
namespace {

using flow::Action;
using flow::Ipv4Match;
using flow::PortMatch;
using flow::Rule;
using flow::Tunnel;
using namespace fixture::addr;

constexpr char kNotImplemented[] = "Function not implemented (errno 38)";

Rule Inbound(uint64_t id, Tunnel tunnel, uint32_t vip = kVip) {
  return Rule{.id = id,
              .priority = 100,
              .match = {.in_port = kUplinkPort,
                        .tunnel = tunnel,
                        .outer_dst = Ipv4Match::Exact(kHostPa),
                        .dst = Ipv4Match::Exact(vip),
                        .proto = flow::kProtoTcp,
                        .dst_port = PortMatch::Exact(80)},
              .actions = {Action::Decap(), Action::SetIpv4Dst(kDip), Action::SetL4Dst(8080),
                          Action::DecTtl(), Action::SetMac(kVmPortMac, kVmMac), Action::Count(),
                          Action::Output(kVmPort)},
              .name = "inbound"};
}

Rule DsrReturn(uint64_t id, uint16_t dip_port = 8080) {
  return Rule{.id = id,
              .priority = 100,
              .match = {.in_port = kVmPort,
                        .src = Ipv4Match::Exact(kDip),
                        .proto = flow::kProtoTcp,
                        .src_port = PortMatch::Exact(dip_port)},
              .actions = {Action::SetIpv4Src(kVip), Action::SetL4Src(80), Action::DecTtl(),
                          Action::SetMac(kHostMac, kRouterMac), Action::Count(),
                          Action::Output(kUplinkPort)},
              .name = "dsr-return"};
}

Rule MuxFlow(uint64_t id, uint16_t client_port) {
  return Rule{
      .id = id,
      .priority = 200,
      .match = {.in_port = kUplinkPort,
                .src = Ipv4Match::Exact(kClient),
                .dst = Ipv4Match::Exact(kVip),
                .proto = flow::kProtoTcp,
                .src_port = PortMatch::Exact(client_port),
                .dst_port = PortMatch::Exact(80)},
      .actions = {Action::Encap({.type = Tunnel::kIpip, .outer_src = kMuxPa, .outer_dst = kHostPa}),
                  Action::SetMac(kMuxMac, kHostMac), Action::Count(), Action::Age(30),
                  Action::Output(kUplinkPort)},
      .name = "mux-flow"};
}

NicExecutorConfig Eswitch() {
  return NicExecutorConfig{.transfer = true, .transfer_proxy = kUplinkPort};
}

std::string RefuseAll(const FlowSpec&) { return kNotImplemented; }

std::string RefuseRawEncap(const FlowSpec& spec) {
  return spec.HasAction(RTE_FLOW_ACTION_TYPE_RAW_ENCAP) ? "RAW_ENCAP not supported (errno 95)" : "";
}

TEST(NicExecutorTest, RefusingPortLandsRulesInSoftwareWithTheReason) {
  FakeFlowApi nic;
  nic.refuse = RefuseAll;
  NicExecutor executor(&nic, Eswitch());
  for (const Rule& r : {Inbound(1, Tunnel::kIpip), Inbound(2, Tunnel::kGue), DsrReturn(3)}) {
    AddResult result = executor.Add(r);
    ASSERT_TRUE(result.ok) << result.error;
    EXPECT_EQ(result.placement, Placement::kSoftware);
  }
  const RuleStatus* status = executor.Status(3);
  ASSERT_NE(status, nullptr);
  EXPECT_EQ(status->placement, Placement::kSoftware);
  EXPECT_EQ(status->full_error, std::string("rte_flow_create: ") + kNotImplemented);
  EXPECT_EQ(status->partial_error, std::string("rte_flow_create: ") + kNotImplemented);

  const PlacementTotals& totals = executor.totals();
  EXPECT_EQ(totals.software, 3u);
  EXPECT_EQ(totals.nic + totals.partial, 0u);
  EXPECT_EQ(totals.decided_software, 3u);
  auto reasons = executor.FallbackReasons();
  EXPECT_EQ(reasons[std::string("rte_flow_create: ") + kNotImplemented], 3u);
  auto counters = executor.Counters();
  ASSERT_EQ(counters[2].first, "rules_software");
  EXPECT_EQ(counters[2].second, 3u);

  std::string error;
  SoftwareSnapshot snapshot = executor.Publish(&error);
  ASSERT_NE(snapshot.rules, nullptr) << error;
  EXPECT_EQ(snapshot.rules->rules().size(), 3u);
  EXPECT_EQ(snapshot.marks->size(), 0u);
  EXPECT_TRUE(nic.live.empty());
  EXPECT_EQ(executor.Testpmd(), "");
}

TEST(NicExecutorTest, AcceptedRulesAreFullyOffloadedAndDestroyedOnRemove) {
  FakeFlowApi nic;
  {
    NicExecutor executor(&nic, Eswitch());
    ASSERT_EQ(executor.Add(Inbound(1, Tunnel::kIpip)).placement, Placement::kNic);
    ASSERT_EQ(executor.Add(DsrReturn(2)).placement, Placement::kNic);
    EXPECT_EQ(nic.live.size(), 2u);
    EXPECT_EQ(executor.Status(1)->full_error, "");
    EXPECT_TRUE(executor.Status(1)->counted);
    EXPECT_EQ(executor.totals().nic, 2u);
    EXPECT_TRUE(executor.FallbackReasons().empty());
    EXPECT_NE(executor.Testpmd().find("flow create 0 priority 155 transfer"), std::string::npos);

    EXPECT_TRUE(executor.Remove(1));
    EXPECT_FALSE(executor.Remove(1));
    EXPECT_EQ(nic.live.size(), 1u);
    EXPECT_EQ(executor.totals().nic, 1u);
    EXPECT_EQ(executor.totals().removed, 1u);

    std::string error;
    SoftwareSnapshot snapshot = executor.Publish(&error);
    ASSERT_NE(snapshot.rules, nullptr) << error;
    EXPECT_TRUE(snapshot.rules->rules().empty());  // nothing left for software
  }
  EXPECT_TRUE(nic.live.empty()) << "the destructor must destroy what is left";
}

TEST(NicExecutorTest, RefusedActionsFallBackToPartialWithAMark) {
  FakeFlowApi nic;
  nic.refuse = RefuseRawEncap;
  NicExecutor executor(&nic, Eswitch());
  EXPECT_EQ(executor.Add(Inbound(1, Tunnel::kIpip)).placement, Placement::kPartial);
  EXPECT_EQ(executor.Add(Inbound(2, Tunnel::kGue)).placement, Placement::kPartial);
  EXPECT_EQ(executor.Add(DsrReturn(3)).placement, Placement::kNic);

  const RuleStatus* s1 = executor.Status(1);
  EXPECT_EQ(s1->full_error, "rte_flow_create: RAW_ENCAP not supported (errno 95)");
  EXPECT_EQ(s1->partial_error, "");
  EXPECT_NE(s1->mark, 0u);
  EXPECT_NE(s1->mark, executor.Status(2)->mark);
  EXPECT_EQ(s1->port, kUplinkPort);
  for (const auto& [flow, f] : nic.live) {
    if (f.rule_id == 1 || f.rule_id == 2) {
      EXPECT_TRUE(f.has_mark);
    }
  }

  std::string error;
  SoftwareSnapshot snapshot = executor.Publish(&error);
  ASSERT_NE(snapshot.rules, nullptr) << error;
  EXPECT_EQ(snapshot.rules->rules().size(), 2u);
  ASSERT_EQ(snapshot.marks->size(), 2u);
  ASSERT_NE(snapshot.marks->Find(s1->mark), nullptr);
  EXPECT_EQ(snapshot.marks->Find(s1->mark)->id, 1u);
  EXPECT_EQ(snapshot.marks->Find(12345), nullptr);
  EXPECT_EQ(executor.totals().partial, 2u);
  EXPECT_EQ(executor.totals().nic, 1u);
  EXPECT_NE(executor.Testpmd().find("mark id " + std::to_string(s1->mark) + " / queue index 0"),
            std::string::npos);
}

TEST(NicExecutorTest, UntranslatableRuleIsTriedPartiallyThenSoftware) {
  FakeFlowApi nic;
  NicExecutor executor(&nic, Eswitch());
  Rule slow{.id = 7,
            .match = {.in_port = kUplinkPort, .dst = Ipv4Match::Exact(kVip)},
            .actions = {Action::DecTtl(), Action::ToSoftware()}};
  EXPECT_EQ(executor.Add(slow).placement, Placement::kPartial);
  EXPECT_NE(executor.Status(7)->full_error.find("translate: "), std::string::npos);

  NicExecutorConfig no_partial = Eswitch();
  no_partial.allow_partial = false;
  NicExecutor software_only(&nic, no_partial);
  EXPECT_EQ(software_only.Add(slow).placement, Placement::kSoftware);
  EXPECT_EQ(software_only.Status(7)->partial_error, "");
}

TEST(NicExecutorTest, InvalidRuleIsRejected) {
  FakeFlowApi nic;
  NicExecutor executor(&nic, Eswitch());
  Rule bad{.id = 1, .actions = {Action::Output(1), Action::Count()}};
  AddResult result = executor.Add(bad);
  EXPECT_FALSE(result.ok);
  EXPECT_NE(result.error.find("terminal"), std::string::npos);
  EXPECT_EQ(executor.Status(1), nullptr);
}

TEST(NicExecutorTest, SameIdReplacesTheRule) {
  FakeFlowApi nic;
  NicExecutor executor(&nic, Eswitch());
  executor.Add(DsrReturn(1, 8080));
  executor.Add(DsrReturn(1, 8081));
  EXPECT_EQ(nic.live.size(), 1u);
  EXPECT_EQ(executor.totals().nic, 1u);
  EXPECT_EQ(executor.Statuses().size(), 1u);
}

// Create/delete cycles leave nothing behind: against a port that refuses everything (counts
// return to zero) and against one that accepts (every handle is destroyed, marks reused).
TEST(NicExecutorTest, CreateDeleteCyclesLeakNothing) {
  for (auto refuse : {RefuseAll, RefuseRawEncap, +[](const FlowSpec&) { return std::string(); }}) {
    FakeFlowApi nic;
    nic.refuse = refuse;
    NicExecutor executor(&nic, Eswitch());
    for (int cycle = 0; cycle < 200; ++cycle) {
      for (uint64_t id = 0; id < 10; ++id) {
        Rule r = id % 2 ? Inbound(id, Tunnel::kGue, kVip + static_cast<uint32_t>(id))
                        : DsrReturn(id, static_cast<uint16_t>(8000 + id));
        ASSERT_TRUE(executor.Add(r).ok);
      }
      for (uint64_t id = 0; id < 10; ++id) ASSERT_TRUE(executor.Remove(id));
      ASSERT_TRUE(nic.live.empty()) << "cycle " << cycle;
    }
    const PlacementTotals& t = executor.totals();
    EXPECT_EQ(t.nic + t.partial + t.software, 0u);
    EXPECT_EQ(t.decided_nic + t.decided_partial + t.decided_software, 2000u);
    EXPECT_EQ(t.removed, 2000u);
    EXPECT_EQ(t.destroy_errors, 0u);
    EXPECT_TRUE(executor.Statuses().empty());
    // Marks come back: the inbound rules (partial under RefuseRawEncap) reuse 1..5.
    for (uint64_t id = 1; id < 10; id += 2) executor.Add(Inbound(id, Tunnel::kGue, kVip + id));
    for (const RuleStatus& s : executor.Statuses()) EXPECT_LE(s.mark, 5u);
  }
}

TEST(NicExecutorTest, MarksRunOutIntoSoftware) {
  FakeFlowApi nic;
  nic.refuse = RefuseRawEncap;
  NicExecutorConfig config = Eswitch();
  config.max_mark = 2;
  NicExecutor executor(&nic, config);
  executor.Add(Inbound(1, Tunnel::kIpip));
  executor.Add(Inbound(2, Tunnel::kGue));
  EXPECT_EQ(executor.Add(Inbound(3, Tunnel::kIpip, kOtherVip)).placement, Placement::kSoftware);
  EXPECT_EQ(executor.Status(3)->partial_error, "no free mark (max_mark 2)");
  executor.Remove(1);
  EXPECT_EQ(executor.Add(Inbound(3, Tunnel::kIpip, kOtherVip)).placement, Placement::kPartial);
}

TEST(NicExecutorTest, AgeSweepRemovesAgedRulesAndReportsThem) {
  FakeFlowApi nic;
  NicExecutor executor(&nic, Eswitch());
  for (uint64_t id = 1; id <= 3; ++id) {
    ASSERT_EQ(executor.Add(MuxFlow(id, static_cast<uint16_t>(40000 + id))).placement,
              Placement::kNic);
  }
  nic.AgeOut(nic.FlowOf(2));
  nic.AgeOutContext(kUplinkPort, reinterpret_cast<void*>(uintptr_t{999999}));  // unknown: ignored
  std::vector<uint64_t> aged;
  EXPECT_EQ(executor.AgeSweep([&](uint64_t id) { aged.push_back(id); }), 1u);
  EXPECT_EQ(aged, std::vector<uint64_t>{2});
  EXPECT_EQ(executor.Status(2), nullptr);
  EXPECT_EQ(nic.FlowOf(2), nullptr);
  EXPECT_EQ(nic.live.size(), 2u);
  EXPECT_EQ(executor.totals().aged, 1u);
  EXPECT_EQ(executor.AgeSweep(nullptr), 0u);

  // A rule removed before its age report arrives is not reported twice.
  rte_flow* flow3 = nic.FlowOf(3);
  nic.AgeOut(flow3);
  executor.Remove(3);
  EXPECT_EQ(executor.AgeSweep([&](uint64_t id) { aged.push_back(id); }), 0u);
}

TEST(NicExecutorTest, QueryCountersFillPerRuleStats) {
  FakeFlowApi nic;
  NicExecutor executor(&nic, Eswitch());
  executor.Add(DsrReturn(1));
  Rule uncounted = DsrReturn(2, 9090);
  std::erase_if(uncounted.actions,
                [](const Action& a) { return a.type == flow::ActionType::kCount; });
  executor.Add(uncounted);
  nic.live[nic.FlowOf(1)].counts = FlowCounts{.packets = 10, .bytes = 1500};
  executor.QueryCounters();
  EXPECT_EQ(executor.Status(1)->counts.packets, 10u);
  EXPECT_EQ(executor.Status(1)->counts.bytes, 1500u);
  EXPECT_FALSE(executor.Status(2)->counted);
}

// The readings come from the fake NIC counting the frames a test injects.
std::vector<uint8_t> DsrFrame(uint8_t flags = fixture::kAck, uint16_t dip_port = 8080) {
  return (Eth{.dst = kVmPortMac, .src = kVmMac} / Ipv4{.src = kDip, .dst = kClient} /
          Tcp{.sport = dip_port, .dport = kClientPort, .flags = flags} /
          Payload{.data = std::string(100, 'a')})
      .Bytes();
}

TEST(NicExecutorTest, CountReadingsComeFromWhatTheNicMatched) {
  FakeFlowApi nic;
  NicExecutor executor(&nic, Eswitch());
  ASSERT_EQ(executor.Add(DsrReturn(1)).placement, Placement::kNic);
  ASSERT_EQ(executor.Add(DsrReturn(2, 9090)).placement, Placement::kNic);
  const std::vector<uint8_t> frame = DsrFrame();
  for (int i = 0; i < 3; ++i) {
    FakeFlowApi::Hit hit = nic.Inject(kVmPort, frame);
    EXPECT_EQ(hit.rule_id, 1u);
    EXPECT_FALSE(hit.to_software);
  }
  EXPECT_EQ(nic.Inject(kUplinkPort, frame).flow, nullptr);  // wrong port: a miss
  std::vector<CountChange> changes;
  EXPECT_EQ(executor.QueryCounters(SIZE_MAX, [&](const CountChange& c) { changes.push_back(c); }),
            2u);
  ASSERT_EQ(changes.size(), 1u);  // rule 2 saw nothing
  EXPECT_EQ(changes[0].id, 1u);
  EXPECT_EQ(changes[0].delta.packets, 3u);
  EXPECT_EQ(changes[0].delta.bytes, 3 * frame.size());
  EXPECT_EQ(executor.Status(1)->counts.packets, 3u);

  // Only what moved since the last reading is reported; totals add up the deltas.
  nic.Inject(kVmPort, frame);
  changes.clear();
  executor.QueryCounters(SIZE_MAX, [&](const CountChange& c) { changes.push_back(c); });
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].delta.packets, 1u);
  EXPECT_EQ(changes[0].total.packets, 4u);
  EXPECT_EQ(executor.totals().nic_packets, 4u);
  EXPECT_EQ(executor.totals().nic_bytes, 4 * frame.size());

  // A rule removed between sweeps still adds what it counted since the last one.
  nic.Inject(kVmPort, frame);
  nic.Inject(kVmPort, DsrFrame(fixture::kAck, 9090));
  executor.Remove(1);
  executor.Remove(2);
  EXPECT_EQ(executor.totals().nic_packets, 6u);
  EXPECT_EQ(executor.totals().count_query_errors, 0u);
}

TEST(NicExecutorTest, CountQueriesAreBatchedAcrossCalls) {
  FakeFlowApi nic;
  NicExecutor executor(&nic, Eswitch());
  for (uint64_t id = 1; id <= 5; ++id) {
    executor.Add(DsrReturn(id, static_cast<uint16_t>(8000 + id)));
    nic.live[nic.FlowOf(id)].counts = FlowCounts{.packets = id, .bytes = 100 * id};
  }
  std::vector<uint64_t> seen;
  auto note = [&](const CountChange& c) { seen.push_back(c.id); };
  EXPECT_EQ(executor.QueryCounters(2, note), 2u);
  EXPECT_EQ(executor.QueryCounters(2, note), 2u);
  EXPECT_EQ(executor.QueryCounters(2, note), 2u);  // wraps: 5, then 1 (unchanged)
  EXPECT_EQ(seen, (std::vector<uint64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(executor.totals().nic_packets, 15u);
  EXPECT_EQ(executor.totals().count_queries, 6u);
}

TEST(NicExecutorTest, FailedCountQueriesAreCountedByReasonAndKeepTheLastReading) {
  FakeFlowApi nic;
  NicExecutor executor(&nic, Eswitch());
  executor.Add(DsrReturn(1));
  executor.Add(DsrReturn(2, 9090));
  const std::vector<uint8_t> frame = DsrFrame();
  nic.Inject(kVmPort, frame);
  executor.QueryCounters();
  nic.refuse_query = [](uint64_t id) {
    return id == 1 ? "Operation not supported (errno 95)" : "counter is gone (errno 2)";
  };
  nic.Inject(kVmPort, frame);
  size_t changes = 0;
  EXPECT_EQ(executor.QueryCounters(SIZE_MAX, [&](const CountChange&) { ++changes; }), 2u);
  executor.QueryCounters();
  EXPECT_EQ(changes, 0u);
  EXPECT_EQ(executor.Status(1)->counts.packets, 1u);  // the last good reading
  EXPECT_EQ(executor.totals().count_query_errors, 4u);
  std::map<std::string, uint64_t> expected{
      {"rte_flow_query: Operation not supported (errno 95)", 2},
      {"rte_flow_query: counter is gone (errno 2)", 2}};
  EXPECT_EQ(executor.CountQueryErrors(), expected);
  bool listed = false;
  for (const auto& [name, value] : executor.Counters()) {
    if (name == "count_query_errors") listed = value == 4;
  }
  EXPECT_TRUE(listed);
  // The NIC answers again: the reading catches up.
  nic.refuse_query = [](uint64_t) { return ""; };
  executor.QueryCounters();
  EXPECT_EQ(executor.Status(1)->counts.packets, 2u);
  EXPECT_EQ(executor.totals().nic_packets, 2u);
}

TEST(NicExecutorTest, TcpFlagRuleSendsClosesOfAnOffloadedFlowToSoftware) {
  FakeFlowApi nic;
  NicExecutor executor(&nic, Eswitch());
  ASSERT_EQ(executor.Add(DsrReturn(1)).placement, Placement::kNic);
  Rule fin{.id = 2,
           .priority = 250,
           .match = {.in_port = kVmPort,
                     .proto = flow::kProtoTcp,
                     .tcp_flags = flow::kTcpFlagFin,
                     .tcp_flags_mask = flow::kTcpFlagFin},
           .actions = {Action::Count(), Action::ToSoftware()},
           .name = "fin to software"};
  ASSERT_EQ(executor.Add(fin).placement, Placement::kNic);
  EXPECT_EQ(nic.Inject(kVmPort, DsrFrame()).rule_id, 1u);
  FakeFlowApi::Hit hit = nic.Inject(kVmPort, DsrFrame(fixture::kFin | fixture::kAck));
  EXPECT_EQ(hit.rule_id, 2u);
  EXPECT_TRUE(hit.to_software);
  EXPECT_EQ(nic.Inject(kVmPort, DsrFrame(fixture::kRst)).rule_id, 1u);
  // Software keeps the rule as well, since the packets it sends there arrive unchanged.
  std::string error;
  SoftwareSnapshot snapshot = executor.Publish(&error);
  ASSERT_NE(snapshot.rules, nullptr) << error;
  ASSERT_EQ(snapshot.rules->rules().size(), 1u);
  EXPECT_EQ(snapshot.rules->rules()[0].id, 2u);
  EXPECT_NE(executor.Testpmd().find("tcp flags spec 0x1 flags mask 0x1 / end actions count / "
                                    "port_representor port_id 2 / end"),
            std::string::npos)
      << executor.Testpmd();
}

TEST(NicExecutorTest, TemplateApiSharesOneTablePerShape) {
  FakeFlowApi nic;
  nic.template_api = true;
  {
    NicExecutor executor(&nic, Eswitch());
    const PortCapabilities& caps = executor.Probe(kUplinkPort);
    EXPECT_TRUE(caps.validate_ok);
    EXPECT_TRUE(caps.template_api);
    EXPECT_EQ(nic.configures, 1);
    for (uint64_t id = 1; id <= 4; ++id) {
      ASSERT_EQ(executor.Add(MuxFlow(id, static_cast<uint16_t>(40000 + id))).placement,
                Placement::kNic);
      EXPECT_TRUE(executor.Status(id)->async);
    }
    executor.Add(DsrReturn(10));
    EXPECT_EQ(nic.async_creates, 5);
    EXPECT_EQ(nic.creates, 0);
    EXPECT_EQ(nic.tables.size(), 2u) << "one table for the mux flows, one for DSR";
    executor.Remove(1);
    EXPECT_EQ(nic.async_destroys, 1);
    EXPECT_EQ(nic.live.size(), 4u);
    EXPECT_EQ(executor.Probe(kUplinkPort).template_api, true);
    EXPECT_EQ(nic.configures, 1) << "probed once";
  }
  EXPECT_TRUE(nic.live.empty());
  EXPECT_TRUE(nic.tables.empty()) << "template tables destroyed with the executor";
}

TEST(NicExecutorTest, ProbeRecordsWhyAPortHasNoTemplateApi) {
  FakeFlowApi nic;
  nic.refuse = RefuseAll;
  NicExecutor executor(&nic, Eswitch());
  const PortCapabilities& caps = executor.Probe(3);
  EXPECT_FALSE(caps.validate_ok);
  EXPECT_EQ(caps.validate_error, std::string("rte_flow_validate: ") + kNotImplemented);
  EXPECT_FALSE(caps.template_api);
  EXPECT_EQ(caps.template_error, std::string("rte_flow_info_get: ") + kNotImplemented);
}

TEST(NicExecutorTest, GroupedRulesGetOneRootJumpPerPort) {
  FakeFlowApi nic;
  NicExecutorConfig config = Eswitch();
  config.group = 1;
  {
    NicExecutor executor(&nic, config);
    executor.Add(DsrReturn(1));
    executor.Add(DsrReturn(2, 9090));
    EXPECT_EQ(nic.live.size(), 3u) << "two rules and one root jump";
    EXPECT_EQ(
        executor.Testpmd().rfind(
            "flow create 0 priority 0 transfer pattern eth / end actions jump group 1 / end\n", 0),
        0u);
    executor.RemoveAll();
    EXPECT_EQ(nic.live.size(), 1u) << "the jump stays while the executor lives";
  }
  EXPECT_TRUE(nic.live.empty());

  // A refused root jump is the reason for the fallback.
  FakeFlowApi picky;
  picky.refuse = [](const FlowSpec& spec) {
    return spec.HasAction(RTE_FLOW_ACTION_TYPE_JUMP) ? "no jump" : "";
  };
  NicExecutor executor(&picky, config);
  EXPECT_EQ(executor.Add(DsrReturn(1)).placement, Placement::kPartial);
  EXPECT_EQ(executor.Status(1)->full_error, "root jump rule: rte_flow_create: no jump");
}

}  // namespace
}  // namespace sluice::nic
