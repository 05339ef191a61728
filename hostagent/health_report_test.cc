#include "hostagent/health_report.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>
#include <utility>

#include "common/strings.h"
#include "gtest/gtest.h"
#include "hostagent/agent_health.h"

namespace sluice::agent {
namespace {

using std::chrono::milliseconds;

constexpr auto kWait = std::chrono::seconds(10);

// A mux that records the sets it was sent; it can be down, block a push, or report that its
// connection was lost.
class FakeMux : public MuxHealthClient {
 public:
  explicit FakeMux(std::string target) : target_(std::move(target)) {}
  const std::string& target() const override { return target_; }

  absl::Status Push(const std::string& reporter, const std::vector<DipVerdict>& verdicts,
                    milliseconds) override {
    std::unique_lock<std::mutex> lock(mu_);
    ++attempts_;
    in_push_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return !block_; });
    in_push_ = false;
    if (down_) {
      cv_.notify_all();
      return absl::UnavailableError("connection refused");
    }
    reporter_ = reporter;
    pushes_.push_back(verdicts);
    cv_.notify_all();
    return absl::OkStatus();
  }
  bool ConnectionLost() override {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(lost_, false);
  }

  template <typename Pred>
  bool WaitFor(Pred pred) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, kWait, [&] { return pred(); });
  }
  void Set(bool* field, bool value) {
    std::lock_guard<std::mutex> lock(mu_);
    *field = value;
    cv_.notify_all();
  }
  // The last set this mux holds, as "dip=healthy" text.
  std::string Holds() {
    std::lock_guard<std::mutex> lock(mu_);
    return pushes_.empty() ? "(nothing)" : Text(pushes_.back());
  }
  static std::string Text(const std::vector<DipVerdict>& set) {
    std::string out;
    for (const DipVerdict& v : set) {
      out += (out.empty() ? "" : " ") + std::to_string(v.dip) + (v.healthy ? "=up" : "=down");
    }
    return out;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::string target_;
  std::string reporter_;
  std::vector<std::vector<DipVerdict>> pushes_;
  int attempts_ = 0;
  bool down_ = false;
  bool block_ = false;
  bool in_push_ = false;
  bool lost_ = false;
};

// The last set `m` was sent; call with m's lock held (inside WaitFor).
std::string Last(FakeMux& m) { return m.pushes_.empty() ? "" : FakeMux::Text(m.pushes_.back()); }

// Waits (bounded) until the reporter has taken mux `i`'s answer in: in_sync.
bool WaitInSync(const HealthReporter& reporter, size_t i) {
  const auto deadline = std::chrono::steady_clock::now() + kWait;
  while (!reporter.Status()[i].in_sync) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

HealthReportConfig FastRetries() {
  return {.timeout = milliseconds(100),
          .retry_min = milliseconds(10),
          .retry_max = milliseconds(40),
          .refresh = std::chrono::hours(1)};
}

struct Reporter {
  explicit Reporter(int muxes, HealthReportConfig config = FastRetries()) {
    std::vector<HealthReporter::Destination> to;
    for (int i = 0; i < muxes; ++i) {
      auto fake = std::make_unique<FakeMux>("unix:/mux" + std::to_string(i));
      fakes.push_back(fake.get());
      to.push_back({.name = "mux" + std::to_string(i), .client = std::move(fake)});
    }
    reporter = std::make_unique<HealthReporter>("host1", std::move(to), config);
  }
  std::vector<FakeMux*> fakes;  // owned by the reporter
  std::unique_ptr<HealthReporter> reporter;
};

TEST(LocalDipVerdictsTest, UncheckedAreHealthyDecidingAreLeftOut) {
  std::vector<DipVerdict> decided = {{.dip = 1, .healthy = false, .reason = "refused"},
                                     {.dip = 9, .healthy = false, .reason = "not checked now"}};
  std::vector<DipVerdict> v = LocalDipVerdicts({1, 2, 3}, {1, 3}, decided);
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].dip, 1u);
  EXPECT_FALSE(v[0].healthy);
  EXPECT_EQ(v[0].reason, "refused");
  EXPECT_EQ(v[1].dip, 2u);  // no check: healthy, so an old verdict on a mux is cleared
  EXPECT_TRUE(v[1].healthy);
  EXPECT_EQ(v[1].reason, "no health check");
  // 3 is still deciding; 9 is not local to this config any more.
}

TEST(HealthReporterTest, EveryMuxGetsTheWholeSetOnEveryChange) {
  Reporter r(2);
  r.reporter->SetVerdicts({{.dip = 1, .healthy = false}, {.dip = 2, .healthy = true}});
  // (The reporter may first have sent the empty set it started with.)
  for (FakeMux* m : r.fakes) {
    EXPECT_TRUE(m->WaitFor([&] { return Last(*m) == "1=down 2=up"; })) << m->Holds();
    EXPECT_EQ(m->reporter_, "host1");
  }
  r.reporter->SetVerdicts({{.dip = 1, .healthy = true}, {.dip = 2, .healthy = true}});
  for (FakeMux* m : r.fakes) {
    EXPECT_TRUE(m->WaitFor([&] { return Last(*m) == "1=up 2=up"; })) << m->Holds();
  }
  ASSERT_TRUE(WaitInSync(*r.reporter, 0));
  std::vector<MuxReportStatus> status = r.reporter->Status();
  ASSERT_EQ(status.size(), 2u);
  EXPECT_EQ(status[0].mux, "mux0");
  EXPECT_EQ(status[0].target, "unix:/mux0");
  EXPECT_TRUE(status[0].in_sync);
  EXPECT_GE(status[0].pushes_ok, 2u);
  EXPECT_EQ(status[0].pushes_failed, 0u);
  EXPECT_GE(status[0].last_ok_ms_ago, 0);
}

TEST(HealthReporterTest, DownMuxIsRetriedWithBackoffAndGetsTheLatestSetWhenBack) {
  Reporter r(2);
  FakeMux* down = r.fakes[0];
  FakeMux* up = r.fakes[1];
  down->Set(&down->down_, true);
  r.reporter->SetVerdicts({{.dip = 1, .healthy = false}});
  EXPECT_TRUE(up->WaitFor([&] { return Last(*up) == "1=down"; }));  // not held back
  EXPECT_TRUE(down->WaitFor([&] { return down->attempts_ >= 4; }));
  // Backoff 10, 20, 40, 40 ... ms: a few attempts, not a busy loop.
  const int attempts_before = down->attempts_;
  const auto started = std::chrono::steady_clock::now();
  EXPECT_TRUE(down->WaitFor([&] { return down->attempts_ >= attempts_before + 3; }));
  EXPECT_GE(std::chrono::steady_clock::now() - started, milliseconds(3 * 40 - 20));

  MuxReportStatus s = r.reporter->Status()[0];
  EXPECT_FALSE(s.in_sync);
  EXPECT_GE(s.pushes_failed, 4u);
  EXPECT_NE(s.last_error.find("connection refused"), std::string::npos) << s.last_error;

  r.reporter->SetVerdicts({{.dip = 1, .healthy = true}});
  down->Set(&down->down_, false);
  EXPECT_TRUE(down->WaitFor([&] { return Last(*down) == "1=up"; })) << down->Holds();
  EXPECT_TRUE(up->WaitFor([&] { return Last(*up) == "1=up"; })) << up->Holds();
}

TEST(HealthReporterTest, LostConnectionSendsTheWholeSetAgain) {
  Reporter r(1);
  FakeMux* m = r.fakes[0];
  r.reporter->SetVerdicts({{.dip = 1, .healthy = false}, {.dip = 2, .healthy = true}});
  EXPECT_TRUE(m->WaitFor([&] { return Last(*m) == "1=down 2=up"; }));
  const size_t pushes = m->pushes_.size();
  m->Set(&m->lost_, true);  // the mux restarted: it holds nothing of ours
  EXPECT_TRUE(m->WaitFor([&] { return m->pushes_.size() == pushes + 1; }));
  EXPECT_EQ(m->Holds(), "1=down 2=up");
  EXPECT_EQ(r.reporter->Status()[0].resyncs, 1u);
}

TEST(HealthReporterTest, RefreshSendsTheSetAgainWithoutAChange) {
  HealthReportConfig config = FastRetries();
  config.refresh = milliseconds(30);
  Reporter r(1, config);
  FakeMux* m = r.fakes[0];
  r.reporter->SetVerdicts({{.dip = 7, .healthy = false}});
  EXPECT_TRUE(m->WaitFor([&] { return m->pushes_.size() >= 3; }));
  EXPECT_EQ(m->Holds(), "7=down");
}

TEST(HealthReporterTest, AVerdictChangeNeverWaitsForAMux) {
  Reporter r(1);
  FakeMux* m = r.fakes[0];
  m->Set(&m->block_, true);
  r.reporter->SetVerdicts({{.dip = 1, .healthy = false}});
  EXPECT_TRUE(m->WaitFor([&] { return m->in_push_; }));
  // The mux thread is stuck in a push; the caller (the checker thread) is not.
  auto set = std::async(std::launch::async, [&] {
    r.reporter->SetVerdicts({{.dip = 1, .healthy = true}});
    r.reporter->Status();
  });
  EXPECT_EQ(set.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  m->Set(&m->block_, false);
  EXPECT_TRUE(m->WaitFor([&] { return Last(*m) == "1=up"; })) << m->Holds();
  EXPECT_TRUE(WaitInSync(*r.reporter, 0));
}

// A TCP listener on 127.0.0.1 that can be closed (the "VM" whose server dies).
class Listener {
 public:
  Listener() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(listen(fd_, 64), 0);
    socklen_t len = sizeof(a);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~Listener() { Close(); }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

AgentConfig OneVm(uint16_t port, bool with_check) {
  AgentConfig config;
  config.name = "host1";
  config.vms.push_back({.name = "vm1", .dip = INADDR_LOOPBACK});
  config.vms.push_back({.name = "vm2", .dip = INADDR_LOOPBACK + 1});
  EndpointConfig ep{.vip = 0x0ac8000a, .port = 80, .dip = INADDR_LOOPBACK, .dip_port = port};
  if (with_check) {
    ep.health = HealthCheckConfig{.type = HealthProbeType::kTcp,
                                  .address = INADDR_LOOPBACK,
                                  .port = port,
                                  .interval = milliseconds(20),
                                  .timeout = milliseconds(200),
                                  .rise = 1,
                                  .fall = 1};
  }
  config.endpoints.push_back(ep);
  return config;
}

TEST(AgentHealthTest, ChecksOfTheEndpointsReachTheMuxes) {
  Listener vm;
  auto fake = std::make_unique<FakeMux>("unix:/mux1");
  FakeMux* mux = fake.get();
  std::vector<HealthReporter::Destination> to;
  to.push_back({.name = "mux1", .client = std::move(fake)});
  const AgentConfig config = OneVm(vm.port(), true);
  absl::StatusOr<std::unique_ptr<AgentHealth>> health = AgentHealth::Create(config, std::move(to));
  ASSERT_TRUE(health.ok()) << health.status();
  const std::string up = StrCat(INADDR_LOOPBACK, "=up ", INADDR_LOOPBACK + 1, "=up");
  const std::string down = StrCat(INADDR_LOOPBACK, "=down ", INADDR_LOOPBACK + 1, "=up");
  EXPECT_TRUE(mux->WaitFor([&] { return !mux->pushes_.empty() && Last(*mux) == up; }))
      << mux->Holds();

  vm.Close();  // the VM's server dies
  EXPECT_TRUE(mux->WaitFor([&] { return Last(*mux) == down; })) << mux->Holds();
  std::vector<DipCheckStatus> checks = (*health)->Checks();
  ASSERT_EQ(checks.size(), 1u);
  EXPECT_EQ(checks[0].state, "unhealthy");
  EXPECT_EQ(checks[0].reported, "unhealthy");
  EXPECT_GE(checks[0].probes, 2u);
  EXPECT_NE(checks[0].last_result.find("tcp 127.0.0.1:"), std::string::npos)
      << checks[0].last_result;
  JsonWriter j;
  j.BeginObject();
  (*health)->WriteStats(j);
  j.EndObject();
  EXPECT_NE(j.str().find("\"dip_health\":[{\"dip\":\"127.0.0.1\",\"state\":\"unhealthy\""),
            std::string::npos)
      << j.str();
  EXPECT_NE(j.str().find("\"health_reports\":[{\"mux\":\"mux1\""), std::string::npos) << j.str();

  // The endpoint loses its check (a gRPC SetEndpoints without health): the muxes hear that
  // the DIP is healthy again rather than keeping it out for ever.
  ASSERT_TRUE((*health)->Configure(OneVm(vm.port(), false)).ok());
  EXPECT_TRUE(mux->WaitFor([&] { return Last(*mux) == up; })) << mux->Holds();
  EXPECT_TRUE((*health)->Checks().empty());
}

TEST(AgentHealthTest, ACheckThatCannotStartIsRefusedAndNothingChanges) {
  Listener vm;
  AgentConfig config = OneVm(vm.port(), true);
  absl::StatusOr<std::unique_ptr<AgentHealth>> health = AgentHealth::Create(config, {});
  ASSERT_TRUE(health.ok()) << health.status();
  AgentConfig bad = config;
  bad.endpoints[0].health->netns = "/run/netns/sluice-test-does-not-exist";
  absl::Status s = (*health)->Configure(bad);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("endpoints[0].health.netns: /run/netns/sluice-test-does-not-exist"),
            std::string::npos)
      << s;
  bad.endpoints[0].health->netns.clear();
  bad.endpoints[0].health->rise = 0;
  s = (*health)->Configure(bad);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("endpoints[0].health.rise"), std::string::npos) << s;
  ASSERT_EQ((*health)->Checks().size(), 1u);
  EXPECT_EQ((*health)->Checks()[0].check, StrCat("tcp 127.0.0.1:", vm.port()));
}

}  // namespace
}  // namespace sluice::agent
