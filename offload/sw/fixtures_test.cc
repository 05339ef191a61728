// Runs the conformance fixture table (offload/sw/fixture_builder.h) against the software
// executor: one mbuf per row, the row's rules installed, the verdict, output bytes, checksums
// and counters compared with the row's expectations.
#include <gtest/gtest.h>
#include <rte_errno.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "offload/sw/executor.h"
#include "offload/sw/fixture_builder.h"

namespace sluice::sw {
namespace {

using fixture::FixtureRow;
using fixture::Outcome;

std::string Hex(const uint8_t* b, size_t n) {
  std::string s;
  char buf[4];
  for (size_t i = 0; i < n; ++i) {
    snprintf(buf, sizeof(buf), "%02x", b[i]);
    s += buf;
    s += (i % 16 == 15) ? "\n" : " ";
  }
  return s;
}

// Explains the first difference between two frames.
std::string Diff(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want) {
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  if (i == got.size() && i == want.size()) return "";
  return "first difference at byte " + std::to_string(i) + " (got " + std::to_string(got.size()) +
         " bytes, want " + std::to_string(want.size()) + ")\ngot:\n" + Hex(got.data(), got.size()) +
         "\nwant:\n" + Hex(want.data(), want.size());
}

class SoftwareExecutorConformanceTest : public ::testing::TestWithParam<FixtureRow> {
 protected:
  void SetUp() override {
    static std::atomic<int> next_pool{0};
    std::string name = "sw_fixture_" + std::to_string(next_pool++);
    pool_ =
        rte_pktmbuf_pool_create(name.c_str(), 63, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    ASSERT_NE(pool_, nullptr) << rte_strerror(rte_errno);
  }
  void TearDown() override { rte_mempool_free(pool_); }

  rte_mbuf* MakeMbuf(const std::vector<uint8_t>& bytes, bool zero_headroom) {
    rte_mbuf* m = rte_pktmbuf_alloc(pool_);
    if (m == nullptr) return nullptr;
    if (zero_headroom) m->data_off = 0;
    char* data = rte_pktmbuf_append(m, static_cast<uint16_t>(bytes.size()));
    if (data == nullptr) {
      rte_pktmbuf_free(m);
      return nullptr;
    }
    memcpy(data, bytes.data(), bytes.size());
    return m;
  }

  rte_mempool* pool_ = nullptr;
};

TEST_P(SoftwareExecutorConformanceTest, Row) {
  const FixtureRow& row = GetParam();
  const std::vector<uint8_t> input = row.input.Bytes();
  std::string error;
  auto table = RuleTable::Build(row.rules, &error);
  ASSERT_NE(table, nullptr) << error;
  SoftwareExecutor executor;
  executor.SetRules(table);

  rte_mbuf* m = MakeMbuf(input, row.zero_headroom);
  ASSERT_NE(m, nullptr);
  Verdict verdict;
  executor.ProcessBurst(&m, 1, row.in_port, &verdict);

  // Verdict.
  const ExecutorCounters& c = executor.counters();
  EXPECT_EQ(c.rx_packets.Get(), 1u);
  switch (row.outcome) {
    case Outcome::kOutput:
      EXPECT_EQ(verdict.kind, Verdict::Kind::kOutput)
          << "dropped as " << DropReasonName(verdict.reason);
      EXPECT_EQ(verdict.port, row.out_port);
      break;
    case Outcome::kToSoftware:
      EXPECT_EQ(verdict.kind, Verdict::Kind::kToSoftware);
      break;
    case Outcome::kDrop:
      ASSERT_EQ(verdict.kind, Verdict::Kind::kDrop);
      EXPECT_EQ(DropReasonName(verdict.reason), DropReasonName(row.drop_reason));
      break;
  }

  // Counters: exactly one of output / to_software / one drop reason moved.
  EXPECT_EQ(c.output_packets.Get(), row.outcome == Outcome::kOutput ? 1u : 0u);
  EXPECT_EQ(c.to_software_packets.Get(), row.outcome == Outcome::kToSoftware ? 1u : 0u);
  for (size_t r = 0; r < kNumDropReasons; ++r) {
    const bool expected =
        row.outcome == Outcome::kDrop && static_cast<size_t>(row.drop_reason) == r;
    EXPECT_EQ(c.drops[r].Get(), expected ? 1u : 0u) << kDropReasonNames[r];
  }
  for (uint32_t i = 0; i < table->rules().size(); ++i) {
    const bool counted = row.counted_rule == table->rules()[i].id;
    EXPECT_EQ(executor.RulePackets(i), counted ? 1u : 0u) << "rule " << table->rules()[i].id;
    EXPECT_EQ(executor.RuleBytes(i), counted ? input.size() : 0u)
        << "rule " << table->rules()[i].id;
  }
  if (row.counted_rule) {
    ASSERT_LT(verdict.rule_index, table->rules().size());
    EXPECT_EQ(table->rules()[verdict.rule_index].id, *row.counted_rule);
  }

  // Output bytes, and checksums by full recomputation.
  if (row.outcome != Outcome::kDrop) {
    ASSERT_EQ(m->nb_segs, 1);
    const uint8_t* data = rte_pktmbuf_mtod(m, const uint8_t*);
    std::vector<uint8_t> got(data, data + rte_pktmbuf_data_len(m));
    EXPECT_EQ(rte_pktmbuf_pkt_len(m), rte_pktmbuf_data_len(m));
    const std::vector<uint8_t> want = row.output.Bytes();
    EXPECT_EQ(Diff(got, want), "");
    EXPECT_EQ(fixture::VerifyChecksums(got), "");
    EXPECT_EQ(fixture::VerifyChecksums(want), "") << "the fixture itself is inconsistent";
  }
  rte_pktmbuf_free(m);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, SoftwareExecutorConformanceTest,
                         ::testing::ValuesIn(fixture::ConformanceFixtures()),
                         [](const ::testing::TestParamInfo<FixtureRow>& info) {
                           return info.param.name;
                         });

TEST(ConformanceTableTest, NamesAreUniqueAndInputsWellFormedWhereExpected) {
  std::vector<FixtureRow> rows = fixture::ConformanceFixtures();
  std::set<std::string> names;
  for (const FixtureRow& row : rows) {
    EXPECT_TRUE(names.insert(row.name).second) << row.name;
    if (row.outcome != Outcome::kDrop || row.drop_reason == DropReason::kNoRule ||
        row.drop_reason == DropReason::kTtlExceeded) {
      EXPECT_EQ(fixture::VerifyChecksums(row.input.Bytes()), "") << row.name;
    }
  }
  EXPECT_GE(rows.size(), 30u);
}

}  // namespace
}  // namespace sluice::sw
