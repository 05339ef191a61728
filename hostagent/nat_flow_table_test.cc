#include "hostagent/nat_flow_table.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

namespace sluice::agent {
namespace {

NatFlow Flow(uint32_t n, NatFlowState state = NatFlowState::kTcpEstablished) {
  return NatFlow{.dip = 0x0a010001,
                 .remote = 0x0a640002,
                 .vip = 0x0ac8000a,
                 .dip_port = static_cast<uint16_t>(30000 + n),
                 .remote_port = 9000,
                 .vip_port = static_cast<uint16_t>(20000 + n),
                 .proto = 6,
                 .kind = static_cast<uint8_t>(NatFlowKind::kSnat),
                 .state = static_cast<uint8_t>(state),
                 .last_seen_ns = 1000 + n};
}

class StateFile {
 public:
  StateFile() {
    char name[] = "/tmp/sluice-nat-test-XXXXXX";
    int fd = mkstemp(name);
    close(fd);
    unlink(name);  // OpenFile creates it
    path_ = name;
  }
  ~StateFile() { unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(NatFlowTableTest, FindsByEitherSideAndRemoves) {
  auto table = NatFlowTable::CreateAnonymous(64);
  ASSERT_NE(table, nullptr);
  NatFlow* f = table->Insert(Flow(1));
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(table->size(), 1u);
  EXPECT_EQ(table->FindInside(6, 0x0a010001, 30001, 0x0a640002, 9000), f);
  EXPECT_EQ(table->FindOutside(6, 0x0ac8000a, 20001, 0x0a640002, 9000), f);
  EXPECT_EQ(table->FindInside(17, 0x0a010001, 30001, 0x0a640002, 9000), nullptr);  // protocol
  EXPECT_EQ(table->FindInside(6, 0x0a010001, 30001, 0x0a640002, 9001), nullptr);   // port
  EXPECT_EQ(table->FindOutside(6, 0x0ac8000a, 20001, 0x0a640003, 9000), nullptr);  // remote
  table->Remove(f);
  EXPECT_EQ(table->size(), 0u);
  EXPECT_EQ(table->FindInside(6, 0x0a010001, 30001, 0x0a640002, 9000), nullptr);
  EXPECT_EQ(table->FindOutside(6, 0x0ac8000a, 20001, 0x0a640002, 9000), nullptr);
}

TEST(NatFlowTableTest, FixedCapacityAndSlotsAreReused) {
  auto table = NatFlowTable::CreateAnonymous(16);
  std::vector<NatFlow*> flows;
  for (uint32_t n = 0; n < 16; ++n) {
    flows.push_back(table->Insert(Flow(n)));
    ASSERT_NE(flows.back(), nullptr) << n;
  }
  EXPECT_EQ(table->Insert(Flow(16)), nullptr);
  table->Remove(flows[7]);
  NatFlow* again = table->Insert(Flow(16));
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again, flows[7]);
  for (uint32_t n = 0; n < 17; ++n) {
    EXPECT_EQ(table->FindInside(6, 0x0a010001, static_cast<uint16_t>(30000 + n), 0x0a640002,
                                9000) != nullptr,
              n != 7)
        << n;
  }
}

TEST(NatFlowTableTest, ManyFlowsInSmallBuckets) {
  auto table = NatFlowTable::CreateAnonymous(4096);
  for (uint32_t n = 0; n < 4096; ++n) ASSERT_NE(table->Insert(Flow(n)), nullptr);
  for (uint32_t n = 0; n < 4096; n += 2) {
    table->Remove(table->FindOutside(6, 0x0ac8000a, static_cast<uint16_t>(20000 + n), 0x0a640002,
                                     9000));
  }
  EXPECT_EQ(table->size(), 2048u);
  for (uint32_t n = 0; n < 4096; ++n) {
    NatFlow* f =
        table->FindInside(6, 0x0a010001, static_cast<uint16_t>(30000 + n), 0x0a640002, 9000);
    ASSERT_EQ(f != nullptr, n % 2 == 1) << n;
    if (f != nullptr) {
      EXPECT_EQ(f->vip_port, 20000 + n);
    }
  }
}

TEST(NatFlowTableTest, ScanSpreadsOverCallsAndMayRemove) {
  auto table = NatFlowTable::CreateAnonymous(64);
  for (uint32_t n = 0; n < 10; ++n) table->Insert(Flow(n));
  int visited = 0;
  table->Scan(32, [&](NatFlow&) { ++visited; });
  EXPECT_EQ(visited, 10);  // inserts fill the front
  visited = 0;
  table->Scan(32, [&](NatFlow&) { ++visited; });
  EXPECT_EQ(visited, 0);   // the back half
  table->Scan(64, [&](NatFlow& f) { table->Remove(&f); });
  EXPECT_EQ(table->size(), 0u);
}

TEST(NatFlowTableTest, RemoveIfFiltersRestoredFlows) {
  auto table = NatFlowTable::CreateAnonymous(64);
  for (uint32_t n = 0; n < 10; ++n) table->Insert(Flow(n));
  EXPECT_EQ(table->RemoveIf([](const NatFlow& f) { return f.vip_port >= 20005; }), 5u);
  EXPECT_EQ(table->size(), 5u);
  EXPECT_EQ(table->FindOutside(6, 0x0ac8000a, 20006, 0x0a640002, 9000), nullptr);
  EXPECT_NE(table->FindOutside(6, 0x0ac8000a, 20004, 0x0a640002, 9000), nullptr);
}

TEST(NatFlowTableTest, FlowsSurviveAProcessKilledWithSigkill) {
  StateFile file;
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::string note;
    auto table = NatFlowTable::OpenFile(file.path(), 256, &note);
    if (!table.ok()) _exit(1);
    for (uint32_t n = 0; n < 100; ++n) (*table)->Insert(Flow(n));
    (*table)->Remove((*table)->FindInside(6, 0x0a010001, 30042, 0x0a640002, 9000));
    (*table)->FindInside(6, 0x0a010001, 30007, 0x0a640002, 9000)->fastpath_pa = 0x0a650016;
    raise(SIGKILL);
    _exit(2);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;

  std::string note;
  auto table = NatFlowTable::OpenFile(file.path(), 256, &note);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(note, "");
  EXPECT_EQ((*table)->restored(), 99u);
  EXPECT_EQ((*table)->size(), 99u);
  EXPECT_EQ((*table)->FindInside(6, 0x0a010001, 30042, 0x0a640002, 9000), nullptr);
  NatFlow* f = (*table)->FindOutside(6, 0x0ac8000a, 20007, 0x0a640002, 9000);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->fastpath_pa, 0x0a650016u);
  EXPECT_EQ(f->last_seen_ns, 1007u);
  EXPECT_EQ(StateOf(*f), NatFlowState::kTcpEstablished);
  // The restored table works like a new one.
  EXPECT_NE((*table)->Insert(Flow(42)), nullptr);
  EXPECT_EQ((*table)->size(), 100u);
}

TEST(NatFlowTableTest, ASecondOpenOfTheSameFileIsRefused) {
  StateFile file;
  std::string note;
  auto first = NatFlowTable::OpenFile(file.path(), 64, &note);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(note, "new file");
  auto second = NatFlowTable::OpenFile(file.path(), 64, &note);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(std::string(second.status().message()).find("locked by another process"),
            std::string::npos)
      << second.status();
  first->reset();
  EXPECT_TRUE(NatFlowTable::OpenFile(file.path(), 64, &note).ok());
}

TEST(NatFlowTableTest, AFileThatDoesNotFitStartsEmptyAndSaysWhy) {
  StateFile file;
  std::string note;
  {
    auto table = NatFlowTable::OpenFile(file.path(), 64, &note);
    ASSERT_TRUE(table.ok());
    (*table)->Insert(Flow(1));
  }
  {
    auto table = NatFlowTable::OpenFile(file.path(), 128, &note);
    ASSERT_TRUE(table.ok());
    EXPECT_EQ(note, "size 2688 does not fit 128 entries; starting empty");
    EXPECT_EQ((*table)->size(), 0u);
  }
  // Same size, not a state file.
  {
    int fd = open(file.path().c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(pwrite(fd, "garbage!", 8, 0), 8);
    close(fd);
    auto table = NatFlowTable::OpenFile(file.path(), 128, &note);
    ASSERT_TRUE(table.ok());
    EXPECT_EQ(note, "not a flow state file of this version; starting empty");
  }
  EXPECT_FALSE(NatFlowTable::OpenFile("/nonexistent-dir/x.flows", 64, &note).ok());
}

TEST(NatFlowTableTest, CorruptAndDuplicateEntriesAreDroppedAtOpen) {
  StateFile file;
  std::string note;
  {
    auto table = NatFlowTable::OpenFile(file.path(), 64, &note);
    ASSERT_TRUE(table.ok());
    (*table)->Insert(Flow(1));
  }
  // Entry 1: a duplicate of entry 0; entry 2: a bad state; entry 3: fields written but the
  // process died before the state (the insert never finished).
  int fd = open(file.path().c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  NatFlow dup = Flow(1);
  NatFlow bad = Flow(2);
  bad.state = 200;
  NatFlow half = Flow(3, NatFlowState::kFree);
  ASSERT_EQ(pwrite(fd, &dup, sizeof(dup), 128 + 1 * sizeof(NatFlow)), 40);
  ASSERT_EQ(pwrite(fd, &bad, sizeof(bad), 128 + 2 * sizeof(NatFlow)), 40);
  ASSERT_EQ(pwrite(fd, &half, sizeof(half), 128 + 3 * sizeof(NatFlow)), 40);
  close(fd);
  auto table = NatFlowTable::OpenFile(file.path(), 64, &note);
  ASSERT_TRUE(table.ok());
  EXPECT_EQ((*table)->size(), 1u);
  EXPECT_EQ((*table)->FindOutside(6, 0x0ac8000a, 20002, 0x0a640002, 9000), nullptr);
  EXPECT_EQ((*table)->FindOutside(6, 0x0ac8000a, 20003, 0x0a640002, 9000), nullptr);
  for (int n = 0; n < 63; ++n) EXPECT_NE((*table)->Insert(Flow(100 + n)), nullptr) << n;
  EXPECT_EQ((*table)->Insert(Flow(200)), nullptr);
}

}  // namespace
}  // namespace sluice::agent
