#include "controller/snat_lease_table.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <set>

#include "common/net_text.h"

namespace sluice::snatd {
namespace {

constexpr uint32_t kVip = 0x0ac8000a;  // 10.200.0.10
constexpr uint32_t kPa1 = 0x0a650015;  // 10.101.0.21
constexpr uint32_t kPa2 = 0x0a650016;
constexpr uint32_t kDip1 = 0x0a010001;
constexpr uint32_t kDip2 = 0x0a010002;

SnatPoolConfig Pool(uint16_t start, uint32_t count, uint32_t chunk, uint8_t proto = 6) {
  return {.vip = kVip, .proto = proto, .port_start = start, .port_count = count,
          .chunk_ports = chunk};
}

TEST(SnatLeaseTableTest, CarvesPoolsIntoChunksWithAShorterLastOne) {
  SnatLeaseTable table({Pool(20000, 150, 64)});
  std::vector<uint32_t> sizes;
  std::set<uint16_t> starts;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<SnatChunkLease> l = table.Lease("host1", kPa1, kDip1, kVip, 6);
    ASSERT_TRUE(l.ok()) << l.status();
    sizes.push_back(l->port_count);
    starts.insert(l->port_start);
    EXPECT_EQ(l->host, "host1");
    EXPECT_EQ(l->host_pa, kPa1);
  }
  EXPECT_EQ(starts, (std::set<uint16_t>{20000, 20064, 20128}));
  std::sort(sizes.begin(), sizes.end());
  EXPECT_EQ(sizes, (std::vector<uint32_t>{22, 64, 64}));
  EXPECT_EQ(table.Pools()[0].chunks, 3u);
  EXPECT_EQ(table.Pools()[0].chunks_leased, 3u);
}

TEST(SnatLeaseTableTest, ExhaustionNamesThePoolAndAnUnknownVipIsNotFound) {
  SnatLeaseTable table({Pool(20000, 128, 64), Pool(30000, 64, 64)});
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(table.Lease("h", kPa1, kDip1, kVip, 6).ok());
  absl::StatusOr<SnatChunkLease> full = table.Lease("h", kPa1, kDip1, kVip, 6);
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(full.status().message().find("10.200.0.10 tcp 20000-20127"), std::string::npos)
      << full.status();
  EXPECT_NE(full.status().message().find("10.200.0.10 tcp 30000-30063"), std::string::npos);
  // No UDP pool, and no pool for another VIP.
  EXPECT_EQ(table.Lease("h", kPa1, kDip1, kVip, 17).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(table.Lease("h", kPa1, kDip1, kVip + 1, 6).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(SnatLeaseTableTest, ReturnFreesTheChunkAndAReturnedChunkIsReusedLast) {
  SnatLeaseTable table({Pool(20000, 192, 64)});
  absl::StatusOr<SnatChunkLease> a = table.Lease("host1", kPa1, kDip1, kVip, 6);
  absl::StatusOr<SnatChunkLease> b = table.Lease("host1", kPa1, kDip1, kVip, 6);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(table.Release("host1", kDip1, kVip, 6, a->port_start).ok());
  // The never-leased third chunk goes out before the one just returned.
  absl::StatusOr<SnatChunkLease> c = table.Lease("host2", kPa2, kDip2, kVip, 6);
  ASSERT_TRUE(c.ok());
  EXPECT_NE(c->port_start, a->port_start);
  absl::StatusOr<SnatChunkLease> d = table.Lease("host2", kPa2, kDip2, kVip, 6);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->port_start, a->port_start);
  EXPECT_EQ(table.Leases().size(), 3u);
}

TEST(SnatLeaseTableTest, DoubleReturnAndForeignReturnAreRefused) {
  SnatLeaseTable table({Pool(20000, 128, 64)});
  absl::StatusOr<SnatChunkLease> a = table.Lease("host1", kPa1, kDip1, kVip, 6);
  ASSERT_TRUE(a.ok());
  const uint64_t generation = table.generation();
  EXPECT_EQ(table.Release("host2", kDip1, kVip, 6, a->port_start).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(table.Release("host1", kDip2, kVip, 6, a->port_start).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(table.generation(), generation);
  EXPECT_TRUE(table.Release("host1", kDip1, kVip, 6, a->port_start).ok());
  EXPECT_EQ(table.Release("host1", kDip1, kVip, 6, a->port_start).code(),
            absl::StatusCode::kNotFound);
  // Not the start of a chunk.
  EXPECT_EQ(table.Release("host1", kDip1, kVip, 6, a->port_start + 1).code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(table.Leases().empty());
}

TEST(SnatLeaseTableTest, StateRoundTripKeepsEveryLeaseAndNeverGrantsOneTwice) {
  const std::vector<SnatPoolConfig> pools = {Pool(20000, 256, 64), Pool(40000, 64, 32, 17)};
  SnatLeaseTable table(pools);
  ASSERT_TRUE(table.Lease("host1", kPa1, kDip1, kVip, 6).ok());
  ASSERT_TRUE(table.Lease("host2", kPa2, kDip2, kVip, 6, HostEncap::kGre).ok());
  ASSERT_TRUE(table.Lease("host2", kPa2, kDip2, kVip, 17, HostEncap::kGre).ok());
  const std::string text = table.Serialize();
  EXPECT_EQ(text.rfind("sluice-snatd-state 2\n", 0), 0u) << text;
  EXPECT_NE(text.find(" 10.101.0.22 10.1.0.2 gre\n"), std::string::npos) << text;

  SnatLeaseTable restored(pools);
  ASSERT_TRUE(restored.Restore(text, "state").ok()) << text;
  EXPECT_EQ(restored.Leases(), table.Leases());  // encapsulations included
  int gre = 0;
  for (const SnatChunkLease& l : restored.Leases()) gre += l.encap == HostEncap::kGre ? 1 : 0;
  EXPECT_EQ(gre, 2);
  EXPECT_EQ(restored.generation(), table.generation());
  // The two free TCP chunks are the only ones left.
  std::set<uint16_t> taken;
  for (const SnatChunkLease& l : table.Leases()) taken.insert(l.port_start);
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<SnatChunkLease> l = restored.Lease("host3", kPa1, kDip1, kVip, 6);
    ASSERT_TRUE(l.ok());
    EXPECT_EQ(taken.count(l->port_start), 0u) << l->port_start;
  }
  EXPECT_EQ(restored.Lease("host3", kPa1, kDip1, kVip, 6).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(SnatLeaseTableTest, RestoreRefusesChunksThePoolsDoNotHaveAndChangesNothing) {
  SnatLeaseTable old_layout({Pool(20000, 256, 64)});
  ASSERT_TRUE(old_layout.Lease("host1", kPa1, kDip1, kVip, 6).ok());
  SnatLeaseTable table({Pool(20000, 256, 32)});  // chunk size changed
  absl::Status s = table.Restore(old_layout.Serialize(), "snatd.state");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("snatd.state:3:"), std::string::npos) << s;
  EXPECT_TRUE(table.Leases().empty());

  SnatLeaseTable same({Pool(20000, 256, 64)});
  std::string twice = old_layout.Serialize();
  twice += twice.substr(twice.find("chunk"));
  EXPECT_EQ(same.Restore(twice, "s").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(same.Restore("garbage\n", "s").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(same.Restore("", "s").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(same.Leases().empty());
}

TEST(SnatLeaseTableTest, AVersionOneStateFileLoadsWithEveryChunkIpip) {
  // Written by a sluice-snatd from before chunks carried their host's encapsulation.
  const std::string v1 =
      "sluice-snatd-state 1\n"
      "generation 7\n"
      "chunk 10.200.0.10 tcp 20064 64 host2 10.101.0.22 10.1.0.2\n";
  SnatLeaseTable table({Pool(20000, 256, 64)});
  ASSERT_TRUE(table.Restore(v1, "snatd.state").ok());
  ASSERT_EQ(table.Leases().size(), 1u);
  EXPECT_EQ(table.Leases()[0].encap, HostEncap::kIpip);
  EXPECT_EQ(table.Leases()[0].host, "host2");
  EXPECT_EQ(table.generation(), 7u);
  // The next write is version 2, and reads back the same.
  const std::string v2 = table.Serialize();
  EXPECT_EQ(v2,
            "sluice-snatd-state 2\ngeneration 7\n"
            "chunk 10.200.0.10 tcp 20064 64 host2 10.101.0.22 10.1.0.2 ipip\n");
  SnatLeaseTable again({Pool(20000, 256, 64)});
  ASSERT_TRUE(again.Restore(v2, "snatd.state").ok());
  EXPECT_EQ(again.Leases(), table.Leases());
}

TEST(SnatLeaseTableTest, RestoreRefusesChunkLinesOfTheWrongVersionOrEncapsulation) {
  SnatLeaseTable table({Pool(20000, 256, 64)});
  // Version 1 has no encapsulation word, version 2 needs it.
  absl::Status s = table.Restore(
      "sluice-snatd-state 1\nchunk 10.200.0.10 tcp 20064 64 host2 10.101.0.22 10.1.0.2 gre\n",
      "snatd.state");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("snatd.state:2: want 'chunk VIP PROTOCOL PORT_START PORT_COUNT "
                             "HOST HOST_PA DIP'"),
            std::string::npos)
      << s;
  s = table.Restore(
      "sluice-snatd-state 2\nchunk 10.200.0.10 tcp 20064 64 host2 10.101.0.22 10.1.0.2\n",
      "snatd.state");
  EXPECT_NE(s.message().find("HOST_PA DIP ENCAP'"), std::string::npos) << s;
  s = table.Restore(
      "sluice-snatd-state 2\nchunk 10.200.0.10 tcp 20064 64 host2 10.101.0.22 10.1.0.2 vxlan\n",
      "snatd.state");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("snatd.state:2: encapsulation 'vxlan'"), std::string::npos) << s;
  EXPECT_NE(table.Restore("sluice-snatd-state 3\n", "s").message().find("not a sluice-snatd"),
            std::string::npos);
  EXPECT_TRUE(table.Leases().empty());
}

TEST(SnatLeaseTableTest, CheckPoolsNamesTheBadPool) {
  EXPECT_TRUE(SnatLeaseTable::CheckPools({Pool(20000, 100, 64), Pool(20100, 10, 5)}).ok());
  absl::Status overlap = SnatLeaseTable::CheckPools({Pool(20000, 100, 64), Pool(20099, 10, 5)});
  EXPECT_EQ(overlap.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(overlap.message().find("pools[1].port_start"), std::string::npos) << overlap;
  // Same ports of another protocol do not overlap.
  EXPECT_TRUE(SnatLeaseTable::CheckPools({Pool(20000, 100, 64), Pool(20000, 100, 64, 17)}).ok());
  EXPECT_NE(SnatLeaseTable::CheckPools({Pool(65500, 100, 10)}).message().find("pools[0].port_count"),
            std::string::npos);
  EXPECT_NE(SnatLeaseTable::CheckPools({Pool(20000, 10, 11)}).message().find("pools[0].chunk_ports"),
            std::string::npos);
}

TEST(WriteFileAtomicallyTest, ReplacesTheFileWhole) {
  char dir[] = "/tmp/snatd-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/state";
  EXPECT_EQ(ReadWholeFile(path).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(WriteFileAtomically(path, "one\n").ok());
  ASSERT_TRUE(WriteFileAtomically(path, "two\n").ok());
  EXPECT_EQ(*ReadWholeFile(path), "two\n");
  EXPECT_NE(access((path + ".tmp").c_str(), F_OK), 0);
  EXPECT_FALSE(WriteFileAtomically(std::string(dir) + "/missing/state", "x").ok());
  unlink(path.c_str());
  rmdir(dir);
}

}  // namespace
}  // namespace sluice::snatd
