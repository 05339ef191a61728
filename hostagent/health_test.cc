#include "hostagent/health.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hostagent/config.h"

namespace sluice::agent {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

constexpr uint32_t kLoopback = 0x7f000001;

// ---- the pure parts --------------------------------------------------------------------------

TEST(HealthJudgeTest, HttpStatusLine) {
  std::string detail;
  EXPECT_EQ(JudgeHttpResponse("", 200, &detail), ProbeVerdict::kNeedMore);
  EXPECT_EQ(JudgeHttpResponse("HTTP/1.1 200 OK", 200, &detail), ProbeVerdict::kNeedMore);
  EXPECT_EQ(JudgeHttpResponse("HTTP/1.1 200 OK\r\n", 200, &detail), ProbeVerdict::kOk);
  EXPECT_EQ(detail, "status 200");
  EXPECT_EQ(JudgeHttpResponse("HTTP/1.0 204\n", 204, &detail), ProbeVerdict::kOk);
  EXPECT_EQ(JudgeHttpResponse("HTTP/1.1 500 Internal Server Error\r\n", 200, &detail),
            ProbeVerdict::kFail);
  EXPECT_EQ(detail, "status 500, expected 200");
  EXPECT_EQ(JudgeHttpResponse("SSH-2.0-OpenSSH_9.2\r\n", 200, &detail), ProbeVerdict::kFail);
  EXPECT_EQ(detail, "not an HTTP/1.x status line: 'SSH-2.0-OpenSSH_9.2'");
  EXPECT_EQ(JudgeHttpResponse("HTTP/1.1 2000 OK\r\n", 200, &detail), ProbeVerdict::kFail);
  EXPECT_EQ(JudgeHttpResponse(std::string(5000, 'x'), 200, &detail), ProbeVerdict::kFail);
  EXPECT_THAT(detail, HasSubstr("no HTTP status line in the first 4096 bytes"));
}

std::string MysqlPacket(uint8_t seq, const std::string& payload) {
  std::string out;
  out.push_back(static_cast<char>(payload.size() & 0xff));
  out.push_back(static_cast<char>(payload.size() >> 8 & 0xff));
  out.push_back(static_cast<char>(payload.size() >> 16 & 0xff));
  out.push_back(static_cast<char>(seq));
  return out + payload;
}

/// A protocol-10 greeting as a MySQL 8 server sends it (the fields after the version are
/// filled with plausible values).
std::string MysqlGreeting(const std::string& version, uint8_t protocol = 10) {
  std::string p(1, static_cast<char>(protocol));
  p += version;
  p.push_back('\0');
  p += std::string("\x2a\x00\x00\x00", 4);                  // connection id 42
  p += "abcdefgh";                                          // auth-plugin-data part 1
  p.push_back('\0');                                        // filler
  p += std::string("\xff\xf7\xff\x02\x00\xff\xdf\x15", 8);  // capabilities, charset, status...
  p += std::string(10, '\0');
  p += "ijklmnopqrst";
  p.push_back('\0');
  p += "caching_sha2_password";
  p.push_back('\0');
  return MysqlPacket(0, p);
}

TEST(HealthJudgeTest, MysqlGreeting) {
  std::string detail;
  const std::string greeting = MysqlGreeting("8.0.36-0ubuntu0.22.04.1");
  for (size_t n = 0; n < greeting.size(); ++n) {
    ASSERT_EQ(JudgeMysqlGreeting(greeting.substr(0, n), &detail), ProbeVerdict::kNeedMore) << n;
  }
  EXPECT_EQ(JudgeMysqlGreeting(greeting, &detail), ProbeVerdict::kOk);
  EXPECT_EQ(detail, "MySQL 8.0.36-0ubuntu0.22.04.1");

  EXPECT_EQ(JudgeMysqlGreeting(MysqlGreeting("5.0", 9), &detail), ProbeVerdict::kFail);
  EXPECT_EQ(detail, "MySQL protocol version 9, expected 10");
  std::string err = MysqlPacket(0, std::string("\xff\x10\x04", 3) + "Too many connections");
  EXPECT_EQ(JudgeMysqlGreeting(err, &detail), ProbeVerdict::kFail);
  EXPECT_EQ(detail, "MySQL error 1040: Too many connections");
  EXPECT_EQ(JudgeMysqlGreeting(MysqlPacket(0, std::string("\x0a"
                                                          "8.0",
                                                          4)),
                               &detail),
            ProbeVerdict::kFail);
  EXPECT_THAT(detail, HasSubstr("without a complete server version"));
  EXPECT_EQ(JudgeMysqlGreeting(MysqlPacket(3, "\x0a"), &detail), ProbeVerdict::kFail);
  EXPECT_EQ(JudgeMysqlGreeting("HTTP/1.1 400 Bad Request\r\n", &detail), ProbeVerdict::kFail);
}

TEST(HealthJudgeTest, JitterStaysInItsBand) {
  EXPECT_EQ(JitteredInterval(milliseconds(100), milliseconds(0), 12345), milliseconds(100));
  std::set<int64_t> seen;
  for (uint64_t r = 0; r < 1000; ++r) {
    int64_t ms = JitteredInterval(milliseconds(100), milliseconds(10), r * 7919).count();
    EXPECT_GE(ms, 90);
    EXPECT_LE(ms, 110);
    seen.insert(ms);
  }
  EXPECT_EQ(seen.size(), 21u);  // every value of the band is reachable
  EXPECT_EQ(JitteredInterval(milliseconds(2), milliseconds(5), 0), milliseconds(1));
}

TEST(HealthJudgeTest, Validation) {
  HealthCheckConfig c = {.address = kLoopback, .port = 80};
  EXPECT_TRUE(ValidateHealthCheck(c).ok());
  auto error = [](HealthCheckConfig c) { return std::string(ValidateHealthCheck(c).message()); };
  EXPECT_THAT(error({.port = 80}), HasSubstr("address: must be set"));
  EXPECT_THAT(error({.address = kLoopback}), HasSubstr("port"));
  EXPECT_THAT(error({.address = kLoopback, .port = 1, .rise = 0}), HasSubstr("rise"));
  EXPECT_THAT(error({.address = kLoopback, .port = 1, .fall = 0}), HasSubstr("fall"));
  EXPECT_THAT(error({.address = kLoopback,
                     .port = 1,
                     .interval = milliseconds(100),
                     .jitter = milliseconds(60)}),
              HasSubstr("jitter: must be 0..interval/2"));
  EXPECT_THAT(error({.type = HealthProbeType::kHttp,
                     .address = kLoopback,
                     .port = 1,
                     .http_path = "healthz"}),
              HasSubstr("path: must start with '/'"));
  EXPECT_THAT(error({.type = HealthProbeType::kHttp,
                     .address = kLoopback,
                     .port = 1,
                     .http_path = "/a\r\nX: y"}),
              HasSubstr("control characters"));
  EXPECT_THAT(error({.type = HealthProbeType::kHttp,
                     .address = kLoopback,
                     .port = 1,
                     .http_expected_status = 99}),
              HasSubstr("expect_status"));
  EXPECT_EQ(*ParseHealthProbeType("mysql"), HealthProbeType::kMysql);
  EXPECT_EQ(*ParseHealthProbeType("https"), HealthProbeType::kHttps);
  EXPECT_THAT(std::string(ParseHealthProbeType("icmp").status().message()),
              HasSubstr("'icmp' is not a health check type"));
}

// ---- real servers on loopback ----------------------------------------------------------------

/// A TCP server on 127.0.0.1:<ephemeral>; `serve` runs for each accepted connection on the
/// server thread (it owns the fd and must close it, or hand it to `held`).
class TestServer {
 public:
  using Serve = std::function<void(int fd)>;
  /// `accepting` false: listen with a backlog of 0 and never accept (connections pile up in
  /// the kernel's queue; once it is full, new SYNs are dropped).
  TestServer(Serve serve, bool accepting = true) : serve_(std::move(serve)) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr = {
        .sin_family = AF_INET, .sin_port = 0, .sin_addr = {.s_addr = htonl(kLoopback)}};
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    EXPECT_EQ(listen(fd_, accepting ? 128 : 0), 0);
    stop_fd_ = eventfd(0, EFD_CLOEXEC);
    if (accepting) thread_ = std::thread([this] { Loop(); });
  }
  ~TestServer() {
    uint64_t one = 1;
    ssize_t n = write(stop_fd_, &one, sizeof(one));
    (void)n;
    if (thread_.joinable()) thread_.join();
    for (int fd : held_) close(fd);
    close(fd_);
    close(stop_fd_);
  }
  uint16_t port() const { return port_; }
  int connections() const { return connections_.load(); }
  /// Keeps a connection open, unanswered, until the server is destroyed.
  void Hold(int fd) { held_.push_back(fd); }

 private:
  void Loop() {
    for (;;) {
      pollfd p[2] = {{.fd = fd_, .events = POLLIN}, {.fd = stop_fd_, .events = POLLIN}};
      if (poll(p, 2, -1) < 0) continue;
      if (p[1].revents) return;
      int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      ++connections_;
      serve_(c);
    }
  }

  Serve serve_;
  int fd_ = -1;
  int stop_fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<int> connections_{0};
  std::vector<int> held_;
};

/// Reads an HTTP request head (up to the blank line), with a 2 s limit.
bool ReadRequest(int fd, std::string* request) {
  char buf[1024];
  while (request->find("\r\n\r\n") == std::string::npos) {
    pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 2000) <= 0) return false;
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) return false;
    request->append(buf, static_cast<size_t>(n));
  }
  return true;
}

void WriteAll(int fd, const std::string& data) {
  ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
  (void)n;
}

/// A port nothing listens on (bound once, then closed).
uint16_t ClosedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = {
      .sin_family = AF_INET, .sin_port = 0, .sin_addr = {.s_addr = htonl(kLoopback)}};
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

/// Records every change; waits for a condition on them with a time limit.
class Changes {
 public:
  HealthChecker::OnChange Callback() {
    return [this](const HealthChange& c) {
      std::lock_guard<std::mutex> lock(mu_);
      changes_.push_back(c);
      cv_.notify_all();
    };
  }
  /// Waits until `id` has reached `state` (true) or 5 s passed (false).
  bool WaitFor(HealthCheckId id, HealthState state, milliseconds limit = milliseconds(5000)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, limit, [&] {
      for (auto it = changes_.rbegin(); it != changes_.rend(); ++it) {
        if (it->id == id) return it->state == state;
      }
      return false;
    });
  }
  std::vector<HealthChange> Of(HealthCheckId id) {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<HealthChange> out;
    for (const HealthChange& c : changes_) {
      if (c.id == id) out.push_back(c);
    }
    return out;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<HealthChange> changes_;
};

HealthCheckConfig Fast(HealthProbeType type, uint16_t port) {
  return {.type = type,
          .address = kLoopback,
          .port = port,
          .interval = milliseconds(20),
          .timeout = milliseconds(500),
          .rise = 1,
          .fall = 1};
}

class HealthCheckerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<HealthChecker>> c = HealthChecker::Create(changes_.Callback());
    ASSERT_TRUE(c.ok()) << c.status();
    checker_ = std::move(*c);
  }
  HealthCheckId Add(const HealthCheckConfig& config) {
    absl::StatusOr<HealthCheckId> id = checker_->Add(config);
    EXPECT_TRUE(id.ok()) << id.status();
    return id.value_or(0);
  }
  std::string Reason(HealthCheckId id) {
    std::vector<HealthChange> c = changes_.Of(id);
    return c.empty() ? "" : c.back().reason;
  }

  Changes changes_;  // outlives the checker, whose thread calls it
  std::unique_ptr<HealthChecker> checker_;
};

TEST_F(HealthCheckerTest, TcpConnectAndRefused) {
  TestServer server([](int fd) { close(fd); });
  HealthCheckId up = Add(Fast(HealthProbeType::kTcp, server.port()));
  HealthCheckId down = Add(Fast(HealthProbeType::kTcp, ClosedPort()));
  ASSERT_TRUE(changes_.WaitFor(up, HealthState::kHealthy));
  ASSERT_TRUE(changes_.WaitFor(down, HealthState::kUnhealthy));
  EXPECT_THAT(Reason(up), HasSubstr("tcp 127.0.0.1:"));
  EXPECT_THAT(Reason(up), HasSubstr(": connected in "));
  EXPECT_THAT(Reason(down), HasSubstr("connect: Connection refused (1 in a row)"));
  EXPECT_EQ(changes_.Of(up).front().previous, HealthState::kUnknown);
}

TEST_F(HealthCheckerTest, TcpConnectTimeout) {
  // Backlog 0 and no accept(): fill the queue, then further SYNs go unanswered.
  TestServer server(nullptr, /*accepting=*/false);
  std::vector<int> fillers;
  for (int i = 0; i < 4; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    sockaddr_in addr = {.sin_family = AF_INET,
                        .sin_port = htons(server.port()),
                        .sin_addr = {.s_addr = htonl(kLoopback)}};
    connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    fillers.push_back(fd);
  }
  HealthCheckConfig c = Fast(HealthProbeType::kTcp, server.port());
  c.timeout = milliseconds(100);
  c.interval = milliseconds(200);
  HealthCheckId id = Add(c);
  ASSERT_TRUE(changes_.WaitFor(id, HealthState::kUnhealthy));
  EXPECT_THAT(Reason(id), HasSubstr("timed out after 100 ms connecting"));
  for (int fd : fillers) close(fd);
}

TEST_F(HealthCheckerTest, HttpStatusAndTimeout) {
  std::atomic<int> status{200};
  TestServer server([&status](int fd) {
    std::string request;
    if (ReadRequest(fd, &request) && request.rfind("GET /healthz HTTP/1.1\r\n", 0) == 0 &&
        request.find("\r\nHost: ") != std::string::npos) {
      WriteAll(fd, "HTTP/1.1 " + std::to_string(status.load()) +
                       " X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }
    close(fd);
  });
  HealthCheckConfig c = Fast(HealthProbeType::kHttp, server.port());
  c.http_path = "/healthz";
  HealthCheckId id = Add(c);
  ASSERT_TRUE(changes_.WaitFor(id, HealthState::kHealthy));
  EXPECT_THAT(Reason(id), HasSubstr("http 127.0.0.1:"));
  EXPECT_THAT(Reason(id), HasSubstr("/healthz: status 200 (1 in a row)"));
  status = 500;
  ASSERT_TRUE(changes_.WaitFor(id, HealthState::kUnhealthy));
  EXPECT_THAT(Reason(id), HasSubstr("status 500, expected 200"));
  status = 200;
  ASSERT_TRUE(changes_.WaitFor(id, HealthState::kHealthy));

  // A server that accepts and never answers.
  TestServer* self = nullptr;
  TestServer mute([&self](int fd) { self->Hold(fd); });
  self = &mute;
  HealthCheckConfig s = Fast(HealthProbeType::kHttp, mute.port());
  s.timeout = milliseconds(100);
  s.interval = milliseconds(200);
  HealthCheckId quiet = Add(s);
  ASSERT_TRUE(changes_.WaitFor(quiet, HealthState::kUnhealthy));
  EXPECT_THAT(Reason(quiet), HasSubstr("timed out after 100 ms waiting for the HTTP status line"));
}

TEST_F(HealthCheckerTest, HttpServerClosingEarly) {
  TestServer server([](int fd) {
    std::string request;
    ReadRequest(fd, &request);
    WriteAll(fd, "HTTP/1.1 2");
    close(fd);
  });
  HealthCheckId id = Add(Fast(HealthProbeType::kHttp, server.port()));
  ASSERT_TRUE(changes_.WaitFor(id, HealthState::kUnhealthy));
  EXPECT_THAT(Reason(id),
              HasSubstr("connection closed after 10 bytes, before an HTTP status line"));
}

TEST_F(HealthCheckerTest, MysqlGreetings) {
  TestServer good([](int fd) {
    WriteAll(fd, MysqlGreeting("10.11.6-MariaDB-0+deb12u1"));
    close(fd);
  });
  // The greeting arrives in two pieces.
  TestServer split([](int fd) {
    std::string g = MysqlGreeting("8.0.36");
    WriteAll(fd, g.substr(0, 7));
    WriteAll(fd, g.substr(7));
    close(fd);
  });
  TestServer busy([](int fd) {
    WriteAll(fd, MysqlPacket(0, std::string("\xff\x10\x04", 3) + "Too many connections"));
    close(fd);
  });
  TestServer http([](int fd) {
    WriteAll(fd, "HTTP/1.1 400 Bad Request\r\n\r\n");
    close(fd);
  });
  HealthCheckId ok = Add(Fast(HealthProbeType::kMysql, good.port()));
  HealthCheckId ok2 = Add(Fast(HealthProbeType::kMysql, split.port()));
  HealthCheckId err = Add(Fast(HealthProbeType::kMysql, busy.port()));
  HealthCheckId wrong = Add(Fast(HealthProbeType::kMysql, http.port()));
  ASSERT_TRUE(changes_.WaitFor(ok, HealthState::kHealthy));
  ASSERT_TRUE(changes_.WaitFor(ok2, HealthState::kHealthy));
  ASSERT_TRUE(changes_.WaitFor(err, HealthState::kUnhealthy));
  ASSERT_TRUE(changes_.WaitFor(wrong, HealthState::kUnhealthy));
  EXPECT_THAT(Reason(ok), HasSubstr("mysql 127.0.0.1:"));
  EXPECT_THAT(Reason(ok), HasSubstr(": MySQL 10.11.6-MariaDB-0+deb12u1"));
  EXPECT_THAT(Reason(ok2), HasSubstr("MySQL 8.0.36"));
  EXPECT_THAT(Reason(err), HasSubstr("MySQL error 1040: Too many connections"));
  EXPECT_THAT(Reason(wrong), HasSubstr("not a MySQL greeting"));

  // Accepts and stays silent: the greeting never comes.
  TestServer* self = nullptr;
  TestServer mute([&self](int fd) { self->Hold(fd); });
  self = &mute;
  HealthCheckConfig c = Fast(HealthProbeType::kMysql, mute.port());
  c.timeout = milliseconds(100);
  c.interval = milliseconds(200);
  HealthCheckId quiet = Add(c);
  ASSERT_TRUE(changes_.WaitFor(quiet, HealthState::kUnhealthy));
  EXPECT_THAT(Reason(quiet), HasSubstr("timed out after 100 ms waiting for the MySQL greeting"));
}

TEST_F(HealthCheckerTest, RiseAndFallCountConsecutiveProbes) {
  // Request n (from 1) is answered with script[n-1], then the last entry forever.
  const std::vector<int> script = {200, 200, 500, 200, 500, 500, 500, 200, 200};
  std::atomic<size_t> served{0};
  TestServer server([&](int fd) {
    std::string request;
    if (ReadRequest(fd, &request)) {
      size_t n = served++;
      int status = script[std::min(n, script.size() - 1)];
      WriteAll(fd, "HTTP/1.1 " + std::to_string(status) + " X\r\n\r\n");
    }
    close(fd);
  });
  HealthCheckConfig c = Fast(HealthProbeType::kHttp, server.port());
  c.rise = 2;
  c.fall = 3;
  HealthCheckId id = Add(c);
  ASSERT_TRUE(changes_.WaitFor(id, HealthState::kHealthy));
  ASSERT_TRUE(changes_.WaitFor(id, HealthState::kUnhealthy));
  ASSERT_TRUE(changes_.WaitFor(id, HealthState::kHealthy));
  std::vector<HealthChange> changes = changes_.Of(id);
  ASSERT_EQ(changes.size(), 3u);
  // Healthy after 2 successes; one 500 between 200s changes nothing; 3 failures in a row
  // (probes 5-7) make it unhealthy; 2 successes (probes 8-9) bring it back.
  EXPECT_EQ(changes[0].previous, HealthState::kUnknown);
  EXPECT_EQ(changes[0].state, HealthState::kHealthy);
  EXPECT_EQ(changes[0].probes, 2u);
  EXPECT_EQ(changes[1].state, HealthState::kUnhealthy);
  EXPECT_EQ(changes[1].probes, 7u);
  EXPECT_THAT(changes[1].reason, HasSubstr("status 500, expected 200 (3 in a row)"));
  EXPECT_EQ(changes[2].state, HealthState::kHealthy);
  EXPECT_EQ(changes[2].probes, 9u);
  std::optional<HealthStatus> s = checker_->Status(id);
  ASSERT_TRUE(s.has_value());
  EXPECT_GE(s->probes, 9u);
  EXPECT_EQ(s->state, HealthState::kHealthy);
  EXPECT_EQ(s->consecutive_failed, 0u);
}

TEST_F(HealthCheckerTest, ManyChecksOnOneThreadAndRemove) {
  TestServer server([](int fd) { close(fd); });
  std::vector<HealthCheckId> ids;
  for (int i = 0; i < 200; ++i) {
    HealthCheckConfig c = Fast(HealthProbeType::kTcp, i % 2 ? server.port() : ClosedPort());
    c.interval = milliseconds(200);
    c.jitter = milliseconds(50);
    ids.push_back(Add(c));
  }
  EXPECT_EQ(checker_->size(), 200u);
  for (size_t i = 0; i < ids.size(); ++i) {
    ASSERT_TRUE(changes_.WaitFor(ids[i], i % 2 ? HealthState::kHealthy : HealthState::kUnhealthy))
        << i;
  }
  for (HealthCheckId id : ids) EXPECT_TRUE(checker_->Remove(id));
  EXPECT_FALSE(checker_->Remove(ids[0]));
  EXPECT_EQ(checker_->size(), 0u);
  EXPECT_FALSE(checker_->Status(ids[0]).has_value());
}

TEST_F(HealthCheckerTest, BadConfigAndNetns) {
  EXPECT_EQ(checker_->Add({.address = kLoopback}).status().code(),
            absl::StatusCode::kInvalidArgument);
  HealthCheckConfig c = Fast(HealthProbeType::kTcp, 1);
  c.netns = "/run/netns/sluice-health-test-does-not-exist";
  EXPECT_EQ(checker_->Add(c).status().code(), absl::StatusCode::kNotFound);

  // A probe made in a named namespace: our own, so it reaches the loopback server.
  TestServer server([](int fd) { close(fd); });
  c = Fast(HealthProbeType::kTcp, server.port());
  c.netns = "/proc/self/ns/net";
  HealthCheckId id = Add(c);
  ASSERT_TRUE(changes_.WaitFor(id, HealthState::kHealthy)) << checker_->Status(id)->last_result;
}

/// A server-side TLS context with a fresh self-signed P-256 certificate.
class TestTlsContext {
 public:
  TestTlsContext() {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("sluice-test"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    EXPECT_GT(X509_sign(cert, key, EVP_sha256()), 0);
    ctx_ = SSL_CTX_new(TLS_server_method());
    EXPECT_EQ(SSL_CTX_use_certificate(ctx_, cert), 1);
    EXPECT_EQ(SSL_CTX_use_PrivateKey(ctx_, key), 1);
    X509_free(cert);
    EVP_PKEY_free(key);
  }
  ~TestTlsContext() { SSL_CTX_free(ctx_); }
  SSL_CTX* get() const { return ctx_; }

 private:
  SSL_CTX* ctx_ = nullptr;
};

/// Serves one HTTPS request on a blocking fd: TLS accept, read the head, answer `status`.
// `on_sni` gets the client's server name before the response goes out, so a test that saw
// the check's verdict can rely on it having been called.
void ServeHttps(SSL_CTX* ctx, int fd, int status,
                const std::function<void(const std::string&)>& on_sni) {
  timeval limit = {.tv_sec = 2, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  if (SSL_accept(ssl) == 1) {
    const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (name != nullptr) on_sni(name);
    std::string request;
    char buf[1024];
    while (request.find("\r\n\r\n") == std::string::npos) {
      int n = SSL_read(ssl, buf, sizeof(buf));
      if (n <= 0) break;
      request.append(buf, static_cast<size_t>(n));
    }
    std::string response = "HTTP/1.1 " + std::to_string(status) + " X\r\nConnection: close\r\n\r\n";
    SSL_write(ssl, response.data(), static_cast<int>(response.size()));
    SSL_shutdown(ssl);
  }
  SSL_free(ssl);
  close(fd);
}

TEST_F(HealthCheckerTest, Https) {
  TestTlsContext tls;
  std::atomic<int> status{200};
  std::mutex sni_mu;
  std::string sni;
  TestServer server([&](int fd) {
    ServeHttps(tls.get(), fd, status.load(), [&](const std::string& name) {
      std::lock_guard<std::mutex> lock(sni_mu);
      sni = name;
    });
  });
  HealthCheckConfig c = Fast(HealthProbeType::kHttps, server.port());
  c.http_path = "/ready";
  c.http_host = "web.example";
  HealthCheckId id = Add(c);
  ASSERT_TRUE(changes_.WaitFor(id, HealthState::kHealthy)) << checker_->Status(id)->last_result;
  EXPECT_THAT(Reason(id), HasSubstr("https 127.0.0.1:"));
  EXPECT_THAT(Reason(id), HasSubstr("/ready: status 200"));
  {
    std::lock_guard<std::mutex> lock(sni_mu);
    EXPECT_EQ(sni, "web.example");
  }
  status = 503;
  ASSERT_TRUE(changes_.WaitFor(id, HealthState::kUnhealthy));
  EXPECT_THAT(Reason(id), HasSubstr("status 503, expected 200"));

  // Plain HTTP where TLS is expected: the handshake fails.
  TestServer plain([](int fd) {
    WriteAll(fd, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
    close(fd);
  });
  HealthCheckId wrong = Add(Fast(HealthProbeType::kHttps, plain.port()));
  ASSERT_TRUE(changes_.WaitFor(wrong, HealthState::kUnhealthy));
  EXPECT_THAT(Reason(wrong), HasSubstr("TLS handshake: "));

  // Accepts, never answers the ClientHello.
  TestServer* self = nullptr;
  TestServer mute([&self](int fd) { self->Hold(fd); });
  self = &mute;
  HealthCheckConfig q = Fast(HealthProbeType::kHttps, mute.port());
  q.timeout = milliseconds(100);
  q.interval = milliseconds(200);
  HealthCheckId quiet = Add(q);
  ASSERT_TRUE(changes_.WaitFor(quiet, HealthState::kUnhealthy));
  EXPECT_THAT(Reason(quiet), HasSubstr("timed out after 100 ms in the TLS handshake"));
}

// ---- per DIP ---------------------------------------------------------------------------------

class DipChanges {
 public:
  DipHealthMonitor::OnChange Callback() {
    return [this](const DipHealthMonitor::DipHealth& h) {
      std::lock_guard<std::mutex> lock(mu_);
      all_.push_back(h);
      cv_.notify_all();
    };
  }
  /// Waits until the latest report for `dip` says `healthy`.
  bool WaitFor(uint32_t dip, bool healthy) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, milliseconds(5000), [&] {
      for (auto it = all_.rbegin(); it != all_.rend(); ++it) {
        if (it->dip == dip) return it->healthy == healthy;
      }
      return false;
    });
  }
  size_t CountFor(uint32_t dip) {
    std::lock_guard<std::mutex> lock(mu_);
    return std::count_if(all_.begin(), all_.end(), [dip](const auto& h) { return h.dip == dip; });
  }
  std::string LastReason(uint32_t dip) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = all_.rbegin(); it != all_.rend(); ++it) {
      if (it->dip == dip) return it->reason;
    }
    return "";
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<DipHealthMonitor::DipHealth> all_;
};

TEST(DipHealthMonitorTest, OneSickCheckMakesTheDipSick) {
  TestServer up([](int fd) { close(fd); });
  const uint16_t refused = ClosedPort();
  DipChanges changes;
  absl::StatusOr<std::unique_ptr<DipHealthMonitor>> m =
      DipHealthMonitor::Create(changes.Callback());
  ASSERT_TRUE(m.ok()) << m.status();
  DipHealthMonitor& monitor = **m;

  const uint32_t dip2 = kLoopback + 1;  // 127.0.0.2: nothing listens there
  HealthCheckConfig a = Fast(HealthProbeType::kTcp, up.port());
  HealthCheckConfig b = Fast(HealthProbeType::kTcp, refused);
  HealthCheckConfig c = Fast(HealthProbeType::kTcp, up.port());
  c.address = dip2;
  // a twice: two endpoints with the same check share one.
  ASSERT_TRUE(monitor.SetChecks({a, a, c}).ok());
  ASSERT_TRUE(changes.WaitFor(kLoopback, true));
  ASSERT_TRUE(changes.WaitFor(dip2, false));
  EXPECT_THAT(changes.LastReason(dip2), HasSubstr("tcp 127.0.0.2:"));

  // A failing check joins the healthy DIP: it turns unhealthy.
  ASSERT_TRUE(monitor.SetChecks({a, b, c}).ok());
  ASSERT_TRUE(changes.WaitFor(kLoopback, false));
  EXPECT_THAT(changes.LastReason(kLoopback), HasSubstr("Connection refused"));
  EXPECT_EQ(changes.CountFor(kLoopback), 2u);

  // The failing check goes: healthy again, at once (the other check is healthy).
  ASSERT_TRUE(monitor.SetChecks({a, c}).ok());
  ASSERT_TRUE(changes.WaitFor(kLoopback, true));
  // DIP 2 loses its only check while unhealthy: reported healthy (the mux default).
  ASSERT_TRUE(monitor.SetChecks({a}).ok());
  ASSERT_TRUE(changes.WaitFor(dip2, true));
  EXPECT_EQ(changes.LastReason(dip2), "no health check any more");
  std::vector<DipHealthMonitor::DipHealth> now = monitor.Current();
  ASSERT_EQ(now.size(), 1u);
  EXPECT_EQ(now[0].dip, kLoopback);
  EXPECT_TRUE(now[0].healthy);

  // A bad check refuses the whole set.
  HealthCheckConfig bad = a;
  bad.rise = 0;
  absl::Status s = monitor.SetChecks({a, bad});
  EXPECT_THAT(std::string(s.message()), HasSubstr("checks[1].rise"));
  EXPECT_EQ(monitor.Current().size(), 1u);
}

// ---- the agent config's health: --------------------------------------------------------------

constexpr const char* kAgentYaml = R"(
agent:
  name: host1
  uplink: "net_af_packet0,iface=eth0"
  address: 10.101.0.21/24
  gateway: 10.101.0.1
vms:
  - name: vm1
    port: "net_af_packet1,iface=vm1"
    mac: "02:00:0a:01:00:01"
    dip: 10.1.0.1
    pa: 10.101.0.31
    gateway: 10.1.0.254
endpoints:
  - vip: 10.200.0.10
    port: 80
    protocol: tcp
    dip: 10.1.0.1
    dip_port: 8080
HEALTH)";

absl::StatusOr<AgentConfig> WithHealth(const std::string& health) {
  std::string yaml = kAgentYaml;
  yaml.replace(yaml.find("HEALTH"), 6, health);
  return ParseAgentConfig(yaml, "host.yaml");
}

TEST(HealthConfigTest, EndpointHealth) {
  absl::StatusOr<AgentConfig> c = WithHealth("");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->endpoints[0].health.has_value());

  c = WithHealth("    health: { type: tcp }");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->endpoints[0].health.has_value());
  const HealthCheckConfig& tcp = *c->endpoints[0].health;
  EXPECT_EQ(tcp.type, HealthProbeType::kTcp);
  EXPECT_EQ(tcp.address, 0x0a010001u);  // the DIP
  EXPECT_EQ(tcp.port, 8080);            // dip_port
  EXPECT_EQ(tcp.interval, milliseconds(2000));
  EXPECT_EQ(tcp.timeout, milliseconds(1000));
  EXPECT_EQ(tcp.rise, 2u);
  EXPECT_EQ(tcp.fall, 3u);
  EXPECT_TRUE(ValidateHealthCheck(tcp).ok());

  c = WithHealth(
      "    health:\n"
      "      type: http\n"
      "      port: 8081\n"
      "      path: /healthz\n"
      "      host: web.example\n"
      "      expect_status: 204\n"
      "      interval_ms: 500\n"
      "      timeout_ms: 200\n"
      "      rise: 1\n"
      "      fall: 2\n"
      "      jitter_ms: 50\n"
      "      netns: /run/netns/vm1\n");
  ASSERT_TRUE(c.ok()) << c.status();
  const HealthCheckConfig& http = *c->endpoints[0].health;
  EXPECT_EQ(http.type, HealthProbeType::kHttp);
  EXPECT_EQ(http.port, 8081);
  EXPECT_EQ(http.http_path, "/healthz");
  EXPECT_EQ(http.http_host, "web.example");
  EXPECT_EQ(http.http_expected_status, 204);
  EXPECT_EQ(http.interval, milliseconds(500));
  EXPECT_EQ(http.timeout, milliseconds(200));
  EXPECT_EQ(http.rise, 1u);
  EXPECT_EQ(http.fall, 2u);
  EXPECT_EQ(http.jitter, milliseconds(50));
  EXPECT_EQ(http.netns, "/run/netns/vm1");
  EXPECT_TRUE(ValidateHealthCheck(http).ok());

  c = WithHealth("    health: { type: https, path: /ready, host: web.example }");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->endpoints[0].health->type, HealthProbeType::kHttps);
  EXPECT_EQ(c->endpoints[0].health->http_path, "/ready");

  c = WithHealth("    health: { type: mysql, port: 3306 }");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->endpoints[0].health->type, HealthProbeType::kMysql);
}

TEST(HealthConfigTest, BadHealthIsNamed) {
  struct Case {
    const char* health;
    const char* error;
  } cases[] = {
      {"    health: { type: icmp }",
       "host.yaml:20:21: endpoints[0].health.type: 'icmp' is not "
       "a health check type"},
      {"    health: { port: 80 }", "endpoints[0].health.type"},
      {"    health: { type: tcp, path: /x }", "endpoints[0].health.path: only for type: http"},
      {"    health: { type: http, path: x }", "endpoints[0].health.path: must start with '/'"},
      {"    health: { type: http, expect_status: 700 }", "endpoints[0].health.expect_status"},
      {"    health: { type: tcp, interval_ms: 100, jitter_ms: 60 }",
       "endpoints[0].health.jitter_ms: must be at most interval_ms / 2"},
      {"    health: { type: tcp, rise: 0 }", "endpoints[0].health.rise"},
      {"    health: { type: tcp, timeout: 3 }", "endpoints[0].health.timeout"},
      {"    health: { type: tcp, netns: vm1 }", "endpoints[0].health.netns: must be an absolute"},
      {"    health: tcp", "endpoints[0].health"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<AgentConfig> config = WithHealth(c.health);
    ASSERT_FALSE(config.ok()) << c.health;
    EXPECT_THAT(std::string(config.status().message()), HasSubstr(c.error)) << c.health;
  }
}

}  // namespace
}  // namespace sluice::agent
