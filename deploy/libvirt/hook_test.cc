#include "deploy/libvirt/hook.h"

#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::libvirt {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string ReadTestdata(const std::string& name) {
  std::ifstream in(std::string(SLUICE_LIBVIRT_TESTDATA) + "/" + name);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class FakeAgent : public AgentClient {
 public:
  absl::Status AttachVm(const VmPortAttachment& a, Deadline deadline) override {
    attached.push_back(a.name);
    ports.push_back(a.port);
    last_deadline = deadline;
    return attach_status;
  }
  absl::Status DetachVm(const std::string& name, Deadline deadline) override {
    detached.push_back(name);
    last_deadline = deadline;
    return detach_status;
  }
  std::vector<std::string> attached;
  std::vector<std::string> detached;
  std::vector<std::string> ports;
  Deadline last_deadline{};
  absl::Status attach_status;
  absl::Status detach_status;
};

class HookTest : public ::testing::Test {
 protected:
  int Run(const std::string& domain, const std::string& op, const std::string& xml) {
    log_.clear();
    return RunHook({.domain = domain, .operation = op, .sub_operation = "begin", .extra = "-"}, xml,
                   options_, deadline_, agent_, [this](LogLevel level, const std::string& m) {
                     log_ += (level == LogLevel::kError     ? "E "
                              : level == LogLevel::kWarning ? "W "
                                                            : "I ") +
                             m + "\n";
                   });
  }
  HookOptions options_;
  AgentClient::Deadline deadline_ = std::chrono::system_clock::now() + std::chrono::seconds(2);
  FakeAgent agent_;
  std::string log_;
};

TEST_F(HookTest, ActionForOperation) {
  EXPECT_EQ(ActionFor("started"), HookAction::kAttach);
  EXPECT_EQ(ActionFor("stopped"), HookAction::kDetach);
  EXPECT_EQ(ActionFor("release"), HookAction::kDetach);
  for (const char* op : {"prepare", "start", "migrate", "restore", "reconnect", "attach"}) {
    EXPECT_EQ(ActionFor(op), HookAction::kIgnore) << op;
  }
}

TEST_F(HookTest, StartedAttachesEveryBinding) {
  options_.sysfs_root = "/nonexistent";
  EXPECT_EQ(Run("db1", "started", ReadTestdata("vhostuser_only.xml")), kExitOk) << log_;
  EXPECT_THAT(agent_.attached, ElementsAre("db1"));
  EXPECT_THAT(agent_.ports,
              ElementsAre("net_vhost_db1,iface=/run/sluice/vhost-db1-0.sock,client=0"));
  EXPECT_EQ(agent_.last_deadline, deadline_);
  options_.send_port = false;
  EXPECT_EQ(Run("db1", "started", ReadTestdata("vhostuser_only.xml")), kExitOk) << log_;
  EXPECT_THAT(agent_.ports, ElementsAre(::testing::_, ""));
  EXPECT_THAT(log_, HasSubstr("attached VM 'db1' (0b8c4f5e-9a0e-4a43-8d1c-2f6a3c1e7d10)"));
}

TEST_F(HookTest, StoppedAndReleaseDetach) {
  EXPECT_EQ(Run("db1", "stopped", ReadTestdata("vhostuser_only.xml")), kExitOk) << log_;
  EXPECT_EQ(Run("db1", "release", ReadTestdata("vhostuser_only.xml")), kExitOk) << log_;
  EXPECT_THAT(agent_.detached, ElementsAre("db1", "db1"));
  EXPECT_TRUE(agent_.attached.empty());
  // Already gone (agent restarted, or attach had failed): fine.
  agent_.detach_status = absl::NotFoundError("no VM named 'db1'");
  EXPECT_EQ(Run("db1", "release", ReadTestdata("vhostuser_only.xml")), kExitOk) << log_;
  EXPECT_THAT(log_, HasSubstr("'db1' was not attached"));
}

TEST_F(HookTest, DetachSurvivesMetadataEditedIntoSomethingInvalid) {
  EXPECT_EQ(Run("bad-dip", "stopped", ReadTestdata("bad_dip.xml")), kExitOk) << log_;
  EXPECT_THAT(agent_.detached, ElementsAre("bad-dip"));
  EXPECT_THAT(log_, HasSubstr("W VM 'bad-dip' stopped: stdin:5: <sluice:interface>: dip:"));
}

TEST_F(HookTest, OtherOperationsDoNothing) {
  for (const char* op : {"prepare", "start", "migrate", "restore", "reconnect", "attach"}) {
    EXPECT_EQ(Run("db1", op, ReadTestdata("vhostuser_only.xml")), kExitOk) << op;
    // Not even read: garbage is fine.
    EXPECT_EQ(Run("db1", op, "<<<"), kExitOk) << op;
  }
  EXPECT_TRUE(agent_.attached.empty());
  EXPECT_TRUE(agent_.detached.empty());
  EXPECT_EQ(log_, "");
}

TEST_F(HookTest, NotOursIsLoggedAndLeftAlone) {
  EXPECT_EQ(Run("plain", "started", ReadTestdata("no_metadata.xml")), kExitOk);
  EXPECT_THAT(log_, HasSubstr("I VM 'plain' (11111111-2222-3333-4444-555555555555) started: no "
                              "Sluice metadata"));
  EXPECT_EQ(Run("other-app", "stopped", ReadTestdata("foreign_metadata.xml")), kExitOk);
  EXPECT_TRUE(agent_.attached.empty());
  EXPECT_TRUE(agent_.detached.empty());
}

TEST_F(HookTest, BadDomainsAreRefusedWithThePreciseError) {
  struct Case {
    const char* domain;
    const char* file;
    const char* error;
  } cases[] = {
      {"broken", "malformed.xml", "E domain 'broken' started: stdin:6: malformed XML"},
      {"lonely", "no_interfaces.xml", "stdin:8: <devices>: domain 'lonely' has Sluice metadata"},
      {"bad-vip", "bad_vip.xml", "E VM 'bad-vip' not attached: stdin:6: <sluice:endpoint>"},
      {"wrong-mac", "unbound_mac.xml", "mac 52:54:00:62:00:99 matches no <interface>"},
      {"bad-vf", "bad_pci.xml", "slot '0x20' is not a number"},
      {"web1", "no_metadata.xml",
       "libvirt named domain 'web1' but the XML on stdin describes "
       "'plain'"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(Run(c.domain, "started", ReadTestdata(c.file)), kExitBadDomain) << c.file;
    EXPECT_THAT(log_, HasSubstr(c.error)) << c.file;
  }
  EXPECT_TRUE(agent_.attached.empty());
}

TEST_F(HookTest, AgentFailureIsFailOpenByDefault) {
  agent_.attach_status = absl::UnavailableError("connect: No such file or directory");
  EXPECT_EQ(Run("db1", "started", ReadTestdata("vhostuser_only.xml")), kExitOk);
  EXPECT_THAT(log_, HasSubstr("W AttachVm 'db1' of VM 'db1' (0b8c4f5e-9a0e-4a43-8d1c-2f6a3c1e7d10)"
                              " failed: UNAVAILABLE: connect: No such file or directory (agent "
                              "unix:/run/sluice/agent-grpc.sock); fail-open"));

  options_.fail_closed = true;
  EXPECT_EQ(Run("db1", "started", ReadTestdata("vhostuser_only.xml")), kExitAgentFailed);
  EXPECT_THAT(log_, HasSubstr("E AttachVm 'db1'"));
  EXPECT_THAT(log_, HasSubstr("fail-closed"));
  agent_.detach_status = absl::DeadlineExceededError("Deadline Exceeded");
  EXPECT_EQ(Run("db1", "stopped", ReadTestdata("vhostuser_only.xml")), kExitAgentFailed);
}

TEST_F(HookTest, StopsAtTheFirstFailedAttachment) {
  FakeAgent agent;
  agent_.attach_status = absl::InvalidArgumentError("vm.dip: already attached");
  options_.sysfs_root = "/nonexistent";
  // web1 binds a VF, whose representor is not in this sysfs: refused before the agent.
  EXPECT_EQ(Run("web1", "started", ReadTestdata("all_interface_types.xml")), kExitBadDomain);
  EXPECT_THAT(log_, HasSubstr("VF 0000:3b:02.5: no such PCI device"));
  EXPECT_TRUE(agent_.attached.empty());
}

TEST(HookConfigTest, LoadsAndChecks) {
  char path[] = "/tmp/sluice-hook-conf-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  auto write = [&](const std::string& text) { std::ofstream(path) << text; };

  write("agent: unix:/tmp/a.sock\nfail_closed: true\ndeadline_ms: 1500\nsend_port: false\n");
  absl::StatusOr<HookOptions> o = LoadHookConfig(path, HookOptions{});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->agent, "unix:/tmp/a.sock");
  EXPECT_TRUE(o->fail_closed);
  EXPECT_EQ(o->deadline, std::chrono::milliseconds(1500));
  EXPECT_FALSE(o->send_port);

  write("fail_closed: yes\n");
  EXPECT_THAT(LoadHookConfig(path, HookOptions{}).status().message(),
              HasSubstr("fail_closed: must be true or false"));
  write("agent: x\ntimeout: 3\n");
  EXPECT_THAT(LoadHookConfig(path, HookOptions{}).status().message(), HasSubstr("timeout"));
  write("deadline_ms: 60000\n");
  EXPECT_FALSE(LoadHookConfig(path, HookOptions{}).ok());
  unlink(path);
  EXPECT_EQ(LoadHookConfig(path, HookOptions{}).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace sluice::libvirt
