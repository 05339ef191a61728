// Runs the sluice-libvirt-hook binary the way libvirt does (four arguments, domain XML on
// stdin) against an in-process fake sluice.v1.Agent, a socket nobody serves and a listener
// that never answers; checks exit codes, what the agent received and the time bound.
#include <grpcpp/grpcpp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sluice/v1/agent.grpc.pb.h"

namespace sluice::libvirt {
namespace {

using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

/// Over a short deadline, the time a loaded 2-core CI machine may take to schedule the exit
/// and the test's wake-up (the hook aims 200 ms under its deadline). 100 ms was seen to be
/// too little at load 20 (480 ms for a 400 ms deadline); a hook that ignored its deadline
/// would still take seconds (an unreachable agent, stdin that never ends) and fail.
constexpr std::chrono::milliseconds kSlack{500};

std::string ReadTestdata(const std::string& name) {
  std::ifstream in(std::string(SLUICE_LIBVIRT_TESTDATA) + "/" + name);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

struct HookRun {
  int exit_code = -1;
  std::string stderr_text;
  std::chrono::milliseconds elapsed{0};
};

struct RunOptions {
  std::vector<std::string> args;
  std::string stdin_text;
  bool keep_stdin_open = false;  ///< Never close stdin (a hung writer).
  std::vector<std::string> env;  ///< Extra "KEY=value".
};

/// fork+exec the hook; waits for its exit (at most 10 s) and measures fork → exit.
HookRun RunHookBinary(const RunOptions& o) {
  int in[2];
  int err[2];
  EXPECT_EQ(pipe(in), 0);
  EXPECT_EQ(pipe(err), 0);
  std::vector<std::string> argv_storage = {SLUICE_LIBVIRT_HOOK_BIN};
  argv_storage.insert(argv_storage.end(), o.args.begin(), o.args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  // The default config file must not leak into the test.
  std::vector<std::string> env_storage = {"PATH=/usr/bin:/bin"};
  env_storage.insert(env_storage.end(), o.env.begin(), o.env.end());
  std::vector<char*> envp;
  for (std::string& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);

  HookRun run;
  const Clock::time_point start = Clock::now();
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], STDIN_FILENO);
    dup2(err[1], STDERR_FILENO);
    close(in[0]);
    close(in[1]);
    close(err[0]);
    close(err[1]);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  close(in[0]);
  close(err[1]);
  if (!o.stdin_text.empty()) {
    ssize_t n = write(in[1], o.stdin_text.data(), o.stdin_text.size());
    (void)n;  // EPIPE when the hook does not read: fine.
  }
  if (!o.keep_stdin_open) close(in[1]);

  const Clock::time_point limit = start + std::chrono::seconds(10);
  char buf[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(limit - Clock::now());
    if (left.count() <= 0) break;
    pollfd p = {.fd = err[0], .events = POLLIN};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    ssize_t n = read(err[0], buf, sizeof(buf));
    if (n <= 0) break;
    run.stderr_text.append(buf, static_cast<size_t>(n));
  }
  // stderr closes a moment before the process can be reaped: wait on its pidfd.
  int status = 0;
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  EXPECT_GE(pidfd, 0);
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(limit - Clock::now());
  pollfd p = {.fd = pidfd, .events = POLLIN};
  poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
  close(pidfd);
  if (waitpid(pid, &status, WNOHANG) == 0) {
    ADD_FAILURE() << "the hook did not exit within 10 s";
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  run.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  if (o.keep_stdin_open) close(in[1]);
  close(err[0]);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return run;
}

class FakeAgentService final : public sluice::v1::Agent::Service {
 public:
  grpc::Status AttachVm(grpc::ServerContext*, const sluice::v1::AttachVmRequest* request,
                        sluice::v1::AttachVmResponse*) override {
    std::lock_guard<std::mutex> lock(mu_);
    attaches_.push_back(*request);
    return reply_;
  }
  grpc::Status DetachVm(grpc::ServerContext*, const sluice::v1::DetachVmRequest* request,
                        sluice::v1::DetachVmResponse*) override {
    std::lock_guard<std::mutex> lock(mu_);
    detaches_.push_back(request->name());
    return reply_;
  }
  void set_reply(grpc::Status s) {
    std::lock_guard<std::mutex> lock(mu_);
    reply_ = s;
  }
  std::vector<sluice::v1::AttachVmRequest> attaches() {
    std::lock_guard<std::mutex> lock(mu_);
    return attaches_;
  }
  std::vector<std::string> detaches() {
    std::lock_guard<std::mutex> lock(mu_);
    return detaches_;
  }

 private:
  std::mutex mu_;
  grpc::Status reply_;
  std::vector<sluice::v1::AttachVmRequest> attaches_;
  std::vector<std::string> detaches_;
};

class HookCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    signal(SIGPIPE, SIG_IGN);
    char tmpl[] = "/tmp/sluice-hook-cli-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
    if (silent_fd_ >= 0) close(silent_fd_);
    std::filesystem::remove_all(dir_);
  }

  std::string StartFakeAgent() {
    const std::string path = dir_ + "/agent.sock";
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + path, grpc::InsecureServerCredentials());
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    EXPECT_TRUE(server_ != nullptr);
    return "unix:" + path;
  }

  /// A unix socket that accepts connections (in the kernel backlog) and never says a word.
  std::string StartSilentAgent() {
    const std::string path = dir_ + "/silent.sock";
    silent_fd_ = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
    EXPECT_EQ(bind(silent_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(silent_fd_, 64), 0);
    return "unix:" + path;
  }

  std::string Unreachable() const { return "unix:" + dir_ + "/nobody-listens.sock"; }

  std::vector<std::string> Args(const std::string& agent, const std::string& domain,
                                const std::string& op) const {
    return {"--agent", agent, "--config", NoConfig(), domain, op, "begin", "-"};
  }
  std::string NoConfig() const {
    const std::string path = dir_ + "/empty.yaml";
    std::ofstream(path) << "{}\n";
    return path;
  }

  std::string dir_;
  FakeAgentService service_;
  std::unique_ptr<grpc::Server> server_;
  int silent_fd_ = -1;
};

TEST_F(HookCliTest, StartedAndStoppedReachTheAgent) {
  const std::string agent = StartFakeAgent();
  HookRun run = RunHookBinary(
      {.args = Args(agent, "db1", "started"), .stdin_text = ReadTestdata("vhostuser_only.xml")});
  EXPECT_EQ(run.exit_code, 0) << run.stderr_text;
  EXPECT_LT(run.elapsed, std::chrono::milliseconds(1500));
  EXPECT_THAT(run.stderr_text, HasSubstr("attached 'db1'"));
  std::vector<sluice::v1::AttachVmRequest> attaches = service_.attaches();
  ASSERT_EQ(attaches.size(), 1u);
  const sluice::v1::VmAttachment& vm = attaches[0].vm();
  EXPECT_EQ(vm.name(), "db1");
  EXPECT_EQ(vm.port(), "net_vhost_db1,iface=/run/sluice/vhost-db1-0.sock,client=0");
  EXPECT_EQ(vm.interface_type(), sluice::v1::INTERFACE_TYPE_VHOSTUSER);
  EXPECT_EQ(vm.mac(), "52:54:00:20:00:01");
  EXPECT_EQ(vm.dip(), "10.1.0.21");
  EXPECT_EQ(vm.pa(), "");
  ASSERT_EQ(vm.endpoints_size(), 1);
  EXPECT_EQ(vm.endpoints(0).vip(), "203.0.113.20");
  EXPECT_EQ(vm.endpoints(0).port(), 3306u);
  EXPECT_EQ(vm.endpoints(0).protocol(), sluice::v1::L4_PROTOCOL_TCP);
  EXPECT_EQ(vm.endpoints(0).dip(), "10.1.0.21");
  EXPECT_EQ(vm.endpoints(0).dip_port(), 3306u);

  run = RunHookBinary(
      {.args = Args(agent, "db1", "stopped"), .stdin_text = ReadTestdata("vhostuser_only.xml")});
  EXPECT_EQ(run.exit_code, 0) << run.stderr_text;
  EXPECT_EQ(service_.detaches(), std::vector<std::string>{"db1"});
}

TEST_F(HookCliTest, AgentRefusalIsFailOpenUnlessFailClosed) {
  const std::string agent = StartFakeAgent();
  service_.set_reply(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                  "vm.port: no port 'net_vhost_db1' is configured"));
  RunOptions o = {.args = Args(agent, "db1", "started"),
                  .stdin_text = ReadTestdata("vhostuser_only.xml")};
  HookRun run = RunHookBinary(o);
  EXPECT_EQ(run.exit_code, 0) << run.stderr_text;
  EXPECT_THAT(run.stderr_text, HasSubstr("FAILED_PRECONDITION: vm.port: no port"));
  EXPECT_THAT(run.stderr_text, HasSubstr("fail-open"));

  o.args.insert(o.args.begin(), "--fail-closed");
  run = RunHookBinary(o);
  EXPECT_EQ(run.exit_code, 69) << run.stderr_text;
  EXPECT_THAT(run.stderr_text, HasSubstr("fail-closed"));
}

TEST_F(HookCliTest, UnreachableAgentHoldsTheStartAtMostTwoSeconds) {
  HookRun run = RunHookBinary({.args = Args(Unreachable(), "db1", "started"),
                               .stdin_text = ReadTestdata("vhostuser_only.xml")});
  EXPECT_EQ(run.exit_code, 0) << run.stderr_text;
  EXPECT_LE(run.elapsed, std::chrono::milliseconds(2000)) << run.stderr_text;
  EXPECT_THAT(run.stderr_text, HasSubstr("AttachVm 'db1'"));
  EXPECT_THAT(run.stderr_text, HasSubstr("fail-open"));

  // Fail-closed from the environment, with a shorter deadline.
  run = RunHookBinary({.args = {"--agent", Unreachable(), "--config", NoConfig(), "--deadline-ms",
                                "500", "db1", "started", "begin", "-"},
                       .stdin_text = ReadTestdata("vhostuser_only.xml"),
                       .env = {"SLUICE_HOOK_FAIL_CLOSED=1"}});
  EXPECT_EQ(run.exit_code, 69) << run.stderr_text;
  EXPECT_LE(run.elapsed, std::chrono::milliseconds(500) + kSlack) << run.stderr_text;
}

TEST_F(HookCliTest, SilentAgentHoldsTheStartAtMostTwoSeconds) {
  const std::string agent = StartSilentAgent();
  HookRun run = RunHookBinary(
      {.args = Args(agent, "db1", "started"), .stdin_text = ReadTestdata("vhostuser_only.xml")});
  EXPECT_EQ(run.exit_code, 0) << run.stderr_text;
  EXPECT_LE(run.elapsed, std::chrono::milliseconds(2000)) << run.stderr_text;
  // It did wait for the agent rather than give up at once.
  EXPECT_GE(run.elapsed, std::chrono::milliseconds(1400)) << run.stderr_text;
  EXPECT_THAT(run.stderr_text,
              ::testing::AnyOf(HasSubstr("DEADLINE_EXCEEDED"), HasSubstr("deadline reached")));

  // Fail-closed and the deadline from the config file.
  const std::string config = dir_ + "/hook.yaml";
  std::ofstream(config) << "agent: " << agent << "\nfail_closed: true\ndeadline_ms: 400\n";
  run = RunHookBinary({.args = {"--config", config, "db1", "stopped", "end", "-"},
                       .stdin_text = ReadTestdata("vhostuser_only.xml")});
  EXPECT_EQ(run.exit_code, 69) << run.stderr_text;
  EXPECT_LE(run.elapsed, std::chrono::milliseconds(400) + kSlack) << run.stderr_text;
  // The call gives up first, or on a loaded machine the watchdog ends it.
  EXPECT_THAT(run.stderr_text,
              ::testing::AnyOf(HasSubstr("DetachVm 'db1'"), HasSubstr("deadline reached")));
}

TEST_F(HookCliTest, StdinThatNeverEndsIsCutByTheWatchdog) {
  RunOptions o = {.args = {"--agent", Unreachable(), "--config", NoConfig(), "--deadline-ms", "300",
                           "db1", "started", "begin", "-"},
                  .stdin_text = "<domain>",
                  .keep_stdin_open = true};
  HookRun run = RunHookBinary(o);
  EXPECT_EQ(run.exit_code, 0) << run.stderr_text;
  EXPECT_LE(run.elapsed, std::chrono::milliseconds(300) + kSlack) << run.stderr_text;
  EXPECT_THAT(run.stderr_text, HasSubstr("deadline reached"));
  o.args.insert(o.args.begin(), "--fail-closed");
  run = RunHookBinary(o);
  EXPECT_EQ(run.exit_code, 69) << run.stderr_text;
}

TEST_F(HookCliTest, NotOursMalformedIgnoredAndUsage) {
  const std::string agent = StartFakeAgent();
  HookRun run = RunHookBinary(
      {.args = Args(agent, "plain", "started"), .stdin_text = ReadTestdata("no_metadata.xml")});
  EXPECT_EQ(run.exit_code, 0) << run.stderr_text;
  EXPECT_THAT(run.stderr_text, HasSubstr("no Sluice metadata"));

  run = RunHookBinary(
      {.args = Args(agent, "broken", "started"), .stdin_text = ReadTestdata("malformed.xml")});
  EXPECT_EQ(run.exit_code, 65) << run.stderr_text;
  EXPECT_THAT(run.stderr_text, HasSubstr("stdin:6: malformed XML: Opening and ending tag "
                                         "mismatch: interface line 4 and devices"));

  run = RunHookBinary(
      {.args = Args(agent, "lonely", "started"), .stdin_text = ReadTestdata("no_interfaces.xml")});
  EXPECT_EQ(run.exit_code, 65) << run.stderr_text;
  EXPECT_THAT(run.stderr_text, HasSubstr("no <interface> under <devices>"));

  // Ignored operations read nothing and print nothing.
  for (const char* op : {"prepare", "start", "migrate", "reconnect"}) {
    run = RunHookBinary({.args = Args(agent, "db1", op)});
    EXPECT_EQ(run.exit_code, 0) << op << run.stderr_text;
    EXPECT_EQ(run.stderr_text, "") << op;
  }
  EXPECT_TRUE(service_.attaches().empty());
  EXPECT_TRUE(service_.detaches().empty());

  run = RunHookBinary({.args = {"db1", "started", "begin"}});
  EXPECT_EQ(run.exit_code, 64);
  EXPECT_THAT(run.stderr_text, HasSubstr("usage:"));
  run = RunHookBinary({.args = {"--bogus", "db1", "started", "begin", "-"}});
  EXPECT_EQ(run.exit_code, 64);
  const std::string bad = dir_ + "/bad.yaml";
  std::ofstream(bad) << "fail_closed: maybe\n";
  run = RunHookBinary({.args = {"--config", bad, "db1", "started", "begin", "-"},
                       .stdin_text = ReadTestdata("vhostuser_only.xml")});
  EXPECT_EQ(run.exit_code, 64);
  EXPECT_THAT(run.stderr_text, HasSubstr("fail_closed: must be true or false"));
}

}  // namespace
}  // namespace sluice::libvirt
