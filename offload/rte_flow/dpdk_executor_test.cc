// The NIC executor on real DPDK ports (a private EAL, tests/eal_test_main.cc): net_null and
// net_ring refuse rte_flow rules, so the real DpdkFlowApi must fail, the fallback must land
// each rule in software with the PMD's reason, and the conformance fixture table
// (offload/sw/fixture_builder.h) must still come out right, through the software fallback
// and through partial offload (mark → MarkTable::Finish).
#include <gtest/gtest.h>
#include <rte_dev.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <atomic>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "offload/packet/parse.h"
#include "offload/rte_flow/executor.h"
#include "offload/rte_flow/fake_flow_api.h"
#include "offload/sw/fixture_builder.h"

namespace sluice::nic {
namespace {

using fixture::FixtureRow;
using fixture::Outcome;
using flow::Action;
using flow::Ipv4Match;
using flow::PortMatch;
using flow::Rule;
using namespace fixture::addr;

// Ports 0..2 as net_null vdevs (the fixture rules name ports 0 and 2), plus one net_ring.
class Ports {
 public:
  static Ports& Get() {
    static Ports ports;
    return ports;
  }
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  uint16_t ring() const { return ring_; }

 private:
  Ports() {
    for (int i = 0; i < 3; ++i) {
      std::string name = "net_null_rteflow" + std::to_string(i);
      uint16_t port = 0;
      if (rte_dev_probe(name.c_str()) != 0 || rte_eth_dev_get_port_by_name(name.c_str(), &port)) {
        error_ = "cannot create " + name;
        return;
      }
      if (port != i)
        error_ = name + " got port " + std::to_string(port) + ", want " + std::to_string(i);
    }
    // The ring PMD names the ethdev after the ring ("nodeaction=<ring>:<numa node>:CREATE").
    const char* ring = "rteflow_r0";
    int rc = rte_dev_probe("net_ring_rteflow,nodeaction=rteflow_r0:0:CREATE");
    if (rc != 0 || rte_eth_dev_get_port_by_name(ring, &ring_) != 0) {
      error_ = std::string("cannot create ") + ring + ": " + rte_strerror(-rc) + "; ports:";
      uint16_t p;
      RTE_ETH_FOREACH_DEV(p) {
        char name[RTE_ETH_NAME_MAX_LEN];
        if (rte_eth_dev_get_name_by_port(p, name) == 0) error_ += std::string(" ") + name;
      }
    }
  }
  std::string error_;
  uint16_t ring_ = 0;
};

Rule DsrReturn(uint64_t id, uint16_t in_port, uint16_t dip_port = 8080) {
  return Rule{.id = id,
              .priority = 100,
              .match = {.in_port = in_port,
                        .src = Ipv4Match::Exact(kDip),
                        .proto = flow::kProtoTcp,
                        .src_port = PortMatch::Exact(dip_port)},
              .actions = {Action::SetIpv4Src(kVip), Action::SetL4Src(80), Action::DecTtl(),
                          Action::SetMac(kHostMac, kRouterMac), Action::Count(),
                          Action::Output(kUplinkPort)},
              .name = "dsr-return"};
}

class DpdkNicExecutorTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(Ports::Get().ok()) << Ports::Get().error(); }
  DpdkFlowApi api_;
};

void ExpectRefusedIntoSoftware(NicExecutor& executor, const Rule& rule) {
  AddResult result = executor.Add(rule);
  ASSERT_TRUE(result.ok) << result.error;
  EXPECT_EQ(result.placement, Placement::kSoftware);
  const RuleStatus* status = executor.Status(rule.id);
  ASSERT_NE(status, nullptr);
  EXPECT_NE(status->full_error.find("rte_flow_create: "), std::string::npos) << status->full_error;
  EXPECT_NE(status->partial_error.find("rte_flow_create: "), std::string::npos)
      << status->partial_error;
  std::cout << "  port " << (rule.match.in_port ? *rule.match.in_port : 0) << " refused rule "
            << rule.id << ": full: " << status->full_error << "; partial: " << status->partial_error
            << "\n";
}

TEST_F(DpdkNicExecutorTest, NullPortRefusesAndTheRuleLandsInSoftware) {
  NicExecutor executor(&api_, NicExecutorConfig{});
  const PortCapabilities& caps = executor.Probe(2);
  EXPECT_FALSE(caps.validate_ok);
  EXPECT_NE(caps.validate_error.find("rte_flow_validate"), std::string::npos);
  EXPECT_FALSE(caps.template_api);
  EXPECT_NE(caps.template_error.find("rte_flow_info_get"), std::string::npos);
  ExpectRefusedIntoSoftware(executor, DsrReturn(1, 2));
  EXPECT_EQ(executor.totals().software, 1u);
  EXPECT_EQ(executor.FallbackReasons().size(), 1u);

  std::string error;
  SoftwareSnapshot snapshot = executor.Publish(&error);
  ASSERT_NE(snapshot.rules, nullptr) << error;
  ASSERT_EQ(snapshot.rules->rules().size(), 1u);
  EXPECT_EQ(snapshot.rules->rules()[0].id, 1u);
}

TEST_F(DpdkNicExecutorTest, TransferRulesOnANullProxyAreRefusedToo) {
  NicExecutor executor(&api_, NicExecutorConfig{.transfer = true, .transfer_proxy = 0, .group = 1});
  AddResult result = executor.Add(DsrReturn(1, 2));
  EXPECT_EQ(result.placement, Placement::kSoftware);
  EXPECT_NE(executor.Status(1)->full_error.find("root jump rule: rte_flow_create"),
            std::string::npos)
      << executor.Status(1)->full_error;
}

TEST_F(DpdkNicExecutorTest, RingPortRefusesAndTheRuleLandsInSoftware) {
  NicExecutor executor(&api_, NicExecutorConfig{});
  ExpectRefusedIntoSoftware(executor, DsrReturn(1, Ports::Get().ring()));
  EXPECT_FALSE(executor.Probe(Ports::Get().ring()).validate_ok);
}

TEST_F(DpdkNicExecutorTest, CreateDeleteCyclesOnARefusingPortReturnToZero) {
  NicExecutor executor(&api_, NicExecutorConfig{});
  for (int cycle = 0; cycle < 100; ++cycle) {
    for (uint16_t i = 0; i < 10; ++i) {
      ASSERT_TRUE(executor.Add(DsrReturn(i, i % 3, static_cast<uint16_t>(8000 + i))).ok);
    }
    for (uint16_t i = 0; i < 10; ++i) ASSERT_TRUE(executor.Remove(i));
  }
  const PlacementTotals& t = executor.totals();
  EXPECT_EQ(t.nic + t.partial + t.software, 0u);
  EXPECT_EQ(t.decided_software, 1000u);
  EXPECT_EQ(t.destroy_errors, 0u);
  EXPECT_TRUE(executor.Statuses().empty());
  EXPECT_TRUE(executor.FallbackReasons().empty());
}

// --- the conformance table through the fallback paths ------------------------------------------

class FallbackConformanceTest : public ::testing::TestWithParam<FixtureRow> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(Ports::Get().ok()) << Ports::Get().error();
    static std::atomic<int> next_pool{0};
    std::string name = "rteflow_fx_" + std::to_string(next_pool++);
    pool_ =
        rte_pktmbuf_pool_create(name.c_str(), 63, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    ASSERT_NE(pool_, nullptr) << rte_strerror(rte_errno);
  }
  void TearDown() override { rte_mempool_free(pool_); }

  rte_mbuf* MakeMbuf(const FixtureRow& row) {
    const std::vector<uint8_t> bytes = row.input.Bytes();
    rte_mbuf* m = rte_pktmbuf_alloc(pool_);
    if (m == nullptr) return nullptr;
    if (row.zero_headroom) m->data_off = 0;
    char* data = rte_pktmbuf_append(m, static_cast<uint16_t>(bytes.size()));
    if (data == nullptr) {
      rte_pktmbuf_free(m);
      return nullptr;
    }
    memcpy(data, bytes.data(), bytes.size());
    return m;
  }

  static void ExpectOutcome(const FixtureRow& row, const sw::Verdict& verdict, rte_mbuf* m) {
    switch (row.outcome) {
      case Outcome::kOutput:
        ASSERT_EQ(verdict.kind, sw::Verdict::Kind::kOutput)
            << "dropped as " << DropReasonName(verdict.reason);
        EXPECT_EQ(verdict.port, row.out_port);
        break;
      case Outcome::kToSoftware:
        ASSERT_EQ(verdict.kind, sw::Verdict::Kind::kToSoftware);
        break;
      case Outcome::kDrop:
        ASSERT_EQ(verdict.kind, sw::Verdict::Kind::kDrop);
        EXPECT_EQ(DropReasonName(verdict.reason), DropReasonName(row.drop_reason));
        return;
    }
    const uint8_t* data = rte_pktmbuf_mtod(m, const uint8_t*);
    EXPECT_EQ(std::vector<uint8_t>(data, data + rte_pktmbuf_data_len(m)), row.output.Bytes());
  }

  rte_mempool* pool_ = nullptr;
};

// Real null ports refuse every rule: the rows run in the software executor the NIC executor
// published, and must come out exactly as the software executor alone makes them.
TEST_P(FallbackConformanceTest, SoftwareFallbackOnRefusingPorts) {
  const FixtureRow& row = GetParam();
  DpdkFlowApi api;
  NicExecutor executor(&api, NicExecutorConfig{});
  for (const Rule& rule : row.rules) {
    AddResult result = executor.Add(rule);
    if (!result.ok) GTEST_SKIP() << "row holds an invalid rule: " << result.error;
    ASSERT_EQ(result.placement, Placement::kSoftware);
  }
  std::string error;
  SoftwareSnapshot snapshot = executor.Publish(&error);
  ASSERT_NE(snapshot.rules, nullptr) << error;
  sw::SoftwareExecutor software;
  software.SetRules(snapshot.rules);
  rte_mbuf* m = MakeMbuf(row);
  ASSERT_NE(m, nullptr);
  sw::Verdict verdict;
  software.ProcessBurst(&m, 1, row.in_port, &verdict);
  ExpectOutcome(row, verdict, m);
  rte_pktmbuf_free(m);
}

// A NIC that only takes MARK + QUEUE: every rule is partially offloaded. The "NIC" marks the
// packet with the mark of the rule it matches; MarkTable::Finish must then produce the row's
// output. Unmatched packets carry no mark and go through the software executor.
TEST_P(FallbackConformanceTest, PartialOffloadFinishedByMark) {
  const FixtureRow& row = GetParam();
  FakeFlowApi nic;
  nic.refuse = [](const FlowSpec& spec) {
    return spec.HasAction(RTE_FLOW_ACTION_TYPE_MARK) ? "" : "only MARK + QUEUE (errno 95)";
  };
  NicExecutor executor(&nic, NicExecutorConfig{});
  for (const Rule& rule : row.rules) {
    AddResult result = executor.Add(rule);
    if (!result.ok) GTEST_SKIP() << "row holds an invalid rule: " << result.error;
    ASSERT_EQ(result.placement, Placement::kPartial) << executor.Status(rule.id)->partial_error;
  }
  std::string error;
  SoftwareSnapshot snapshot = executor.Publish(&error);
  ASSERT_NE(snapshot.rules, nullptr) << error;

  rte_mbuf* m = MakeMbuf(row);
  ASSERT_NE(m, nullptr);
  // The NIC's classification: the same match semantics, so the software lookup stands in.
  packet::ParsedPacket pkt;
  DropReason reason;
  const Rule* matched = nullptr;
  if (packet::Parse(rte_pktmbuf_mtod(m, const uint8_t*), rte_pktmbuf_data_len(m),
                    flow::kDefaultGuePort, &pkt, &reason) == packet::ParseStatus::kIpv4) {
    uint32_t index;
    matched = snapshot.rules->Lookup(pkt, row.in_port, &index);
  }
  if (matched != nullptr) {
    m->ol_flags |= RTE_MBUF_F_RX_FDIR | RTE_MBUF_F_RX_FDIR_ID;
    m->hash.fdir.hi = executor.Status(matched->id)->mark;
  }
  sw::Verdict verdict;
  if (!snapshot.marks->Finish(m, flow::kDefaultGuePort, &verdict)) {
    EXPECT_EQ(matched, nullptr) << "a marked packet must be finished by its mark";
    sw::SoftwareExecutor software;
    software.SetRules(snapshot.rules);
    software.ProcessBurst(&m, 1, row.in_port, &verdict);
  }
  ExpectOutcome(row, verdict, m);
  rte_pktmbuf_free(m);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FallbackConformanceTest,
                         ::testing::ValuesIn(fixture::ConformanceFixtures()),
                         [](const ::testing::TestParamInfo<FixtureRow>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace sluice::nic
