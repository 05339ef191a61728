// The offload/ conformance fixture table (offload/sw/fixture_builder.h) through a real private
// ovs-vswitchd: each row's rules are translated and committed as one bundle, its input frame
// is injected on the row's port, and what the bridge sends is compared byte for byte with
// the row's expected output. Rows OVS cannot express are listed below with the reason; a row
// not listed that fails, or a listed row that no longer differs, fails the test.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <set>

#include "offload/sw/fixture_builder.h"
#include "vswitch/executor.h"
#include "vswitch/ovs_test_env.h"
#include "vswitch/process.h"

namespace sluice::vswitch {
namespace {

using fixture::FixtureRow;
using fixture::Outcome;
using testing::DummyBridge;
using testing::OfportOf;

DummyBridge* g_bridge = nullptr;

// Rows whose rules OVS cannot take (translation refuses them) or whose outcome differs on OVS.
const std::string& MalformedReason() {
  static const auto* reason = new std::string(
      "malformed IPv4/L4 headers: OVS's flow extractor matches the frame as 'ip' with the "
      "fields it could not read left zero, and OpenFlow has no field for header lengths or "
      "consistency, so the catch-all rule forwards it unchanged where the software executor "
      "drops it");
  return *reason;
}

const std::map<std::string, std::string>& NotOnOvs() {
  const std::string& kMalformed = MalformedReason();
  static const auto* rows = new std::map<std::string, std::string>{
      {"ipip_decap_dnat_to_vm", "IPIP: OVS userspace has no ipip tunnel port (GRE row instead)"},
      {"gue_decap_dnat_to_vm", "GUE: OVS has no IP-in-UDP tunnel port (GRE row instead)"},
      {"ipip_rule_ignores_gue_packet", "IPIP rule: not expressible"},
      {"ipv4_options_kept_through_decap_dnat", "IPIP rule: not expressible"},
      {"ipip_encap_mux", "encap: OVS tunnel push takes the outer header from its own tables"},
      {"gue_encap_mux_flow_hash_source_port", "encap: not translated"},
      {"gue_encap_fixed_ports", "encap: not translated"},
      {"gre_encap_mux", "encap: not translated"},
      {"encap_without_headroom", "encap: not translated (and headroom is a software notion)"},
      {"no_matching_rule", "its only rule is an encap rule: not translated"},
      {"higher_priority_rule_wins", "one of its rules is an encap rule: not translated"},
      {"truncated_ipv4_header", kMalformed},
      {"ipv4_ihl_below_5", kMalformed},
      {"ipv4_total_length_beyond_frame", kMalformed},
      {"ipv4_total_length_below_header", kMalformed},
      {"truncated_tcp_header", kMalformed},
      {"tcp_data_offset_below_5", kMalformed},
      {"tcp_data_offset_beyond_packet", kMalformed},
      {"udp_length_below_8", kMalformed},
      {"truncated_icmp_header", kMalformed},
      {"inner_truncated_ipip", kMalformed},
      {"arp_request",
       "the bridge's LOCAL port owns the host PA and answers ARP for it (base flows), where "
       "the software executor hands ARP to the agent: the ARP reply leaves the uplink"},
      {"truncated_ethernet",
       "a frame shorter than an Ethernet header cannot be injected "
       "(netdev-dummy/receive parses it as a flow; no NIC delivers it)"},
  };
  return *rows;
}

std::string Hex(const std::vector<uint8_t>& b) {
  std::string s;
  char buf[4];
  for (size_t i = 0; i < b.size(); ++i) {
    snprintf(buf, sizeof(buf), "%02x", b[i]);
    s += buf;
    s += (i % 16 == 15) ? "\n" : " ";
  }
  return s;
}

class OvsConformanceTest : public ::testing::TestWithParam<FixtureRow> {};

TEST_P(OvsConformanceTest, Row) {
  const FixtureRow& row = GetParam();
  // One executor for all rows: each Commit replaces the previous row's flows (and leaves the
  // test's probe flow, which is not one of its cookies, alone).
  static OfctlChannel channel(&g_bridge->ovs(), testing::kBridge);
  static OvsExecutor executor(
      &channel, {.ports = g_bridge->Ports(), .base = g_bridge->Base(fixture::addr::kHostPa)});
  executor.RemoveAll();
  std::string refused;
  for (const flow::Rule& rule : row.rules) {
    AddOutcome added = executor.Add(rule);
    if (!added.ok) refused += added.error + "; ";
  }
  auto listed = NotOnOvs().find(row.name);
  if (!refused.empty()) {
    ASSERT_NE(listed, NotOnOvs().end()) << "refused but not listed as inexpressible: " << refused;
    GTEST_SKIP() << "not expressible on OVS: " << refused;
  }
  // Malformed rows run anyway and must show the documented OVS behaviour, so the list
  // cannot go stale.
  const bool forwarded_as_is = listed != NotOnOvs().end() && listed->second == MalformedReason();
  if (listed != NotOnOvs().end() && !forwarded_as_is) {
    GTEST_SKIP() << "differs on OVS: " << listed->second;
  }

  ASSERT_TRUE(executor.Commit().ok());
  ASSERT_TRUE(g_bridge->PurgeDatapath().ok());
  // Flows kept from the previous row keep their counters: compare differences.
  ASSERT_TRUE(g_bridge->ovs().Appctl({"revalidator/wait"}).ok());
  ASSERT_TRUE(executor.QueryCounters().ok());
  std::map<uint64_t, std::pair<uint64_t, uint64_t>> before;
  for (const OvsRuleStatus& s : executor.Statuses()) before[s.id] = {s.packets, s.bytes};

  const std::vector<uint8_t> input = row.input.Bytes();
  auto sent = g_bridge->Send(OfportOf(row.in_port), input);
  ASSERT_TRUE(sent.ok()) << sent.status();

  if (forwarded_as_is) {
    ASSERT_EQ(sent->size(), 1u) << MalformedReason();
    EXPECT_EQ((*sent)[0].first, OfportOf(1));
    EXPECT_EQ(Hex((*sent)[0].second), Hex(input));
    return;
  }
  switch (row.outcome) {
    case Outcome::kOutput:
    case Outcome::kToSoftware: {
      const uint32_t want_port =
          row.outcome == Outcome::kOutput ? OfportOf(row.out_port) : testing::kSlowPathOfport;
      ASSERT_EQ(sent->size(), 1u) << "frames sent: " << sent->size();
      EXPECT_EQ((*sent)[0].first, want_port);
      const std::vector<uint8_t> want = row.output.Bytes();
      EXPECT_EQ(Hex((*sent)[0].second), Hex(want));
      EXPECT_EQ(fixture::VerifyChecksums((*sent)[0].second), "");
      break;
    }
    case Outcome::kDrop:
      EXPECT_TRUE(sent->empty()) << "expected a drop (" << DropReasonName(row.drop_reason)
                                 << "), but port " << (*sent)[0].first << " sent\n"
                                 << Hex((*sent)[0].second);
      break;
  }

  // Counters: the counted rule saw this one packet, no other counting rule saw anything.
  ASSERT_TRUE(g_bridge->ovs().Appctl({"revalidator/wait"}).ok());
  ASSERT_TRUE(executor.QueryCounters().ok());
  for (const flow::Rule& rule : row.rules) {
    const bool counts = std::any_of(rule.actions.begin(), rule.actions.end(), [](const auto& a) {
      return a.type == flow::ActionType::kCount;
    });
    if (!counts) continue;
    const OvsRuleStatus* status = executor.Status(rule.id);
    const bool counted = row.counted_rule == rule.id;
    EXPECT_EQ(status->packets - before[rule.id].first, counted ? 1u : 0u) << "rule " << rule.id;
    if (counted && rule.match.tunnel == flow::Tunnel::kNone) {
      EXPECT_EQ(status->bytes - before[rule.id].second, input.size()) << "rule " << rule.id;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, OvsConformanceTest,
                         ::testing::ValuesIn(fixture::ConformanceFixtures()),
                         [](const ::testing::TestParamInfo<FixtureRow>& info) {
                           return info.param.name;
                         });

TEST(OvsConformanceTableTest, ListedRowsExist) {
  std::set<std::string> names;
  for (const FixtureRow& row : fixture::ConformanceFixtures()) names.insert(row.name);
  for (const auto& [name, why] : NotOnOvs()) EXPECT_TRUE(names.contains(name)) << name;
}

}  // namespace

}  // namespace sluice::vswitch

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (geteuid() != 0) {
    fprintf(stderr, "SKIP: needs root (ovs-vswitchd with dummy ports)\n");
    return 77;
  }
  if (sluice::vswitch::RunCommand({"ovs-vswitchd", "--version"}).exit_code != 0) {
    fprintf(stderr, "SKIP: ovs-vswitchd is not installed\n");
    return 77;
  }
  auto bridge = sluice::vswitch::testing::DummyBridge::Start("02:00:00:00:01:01",
                                                             sluice::fixture::addr::kHostPa);
  if (!bridge.ok()) {
    fprintf(stderr, "cannot start OVS: %s\n", std::string(bridge.status().message()).c_str());
    return 1;
  }
  sluice::vswitch::g_bridge = bridge->get();
  int rc = RUN_ALL_TESTS();
  sluice::vswitch::g_bridge = nullptr;
  return rc;
}
