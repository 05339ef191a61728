#include "hostagent/health.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "common/net_text.h"
#include "common/strings.h"

namespace sluice::agent {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr size_t kMaxHttpStatusLine = 4096;
constexpr size_t kMysqlGreetingNeeded = 1024;  ///< Enough of a greeting to judge it.
constexpr uint64_t kWakeToken = 0;             ///< epoll data of the eventfd; ids start at 1.

std::string Errno(const char* what, int err) { return StrCat(what, ": ", strerror(err)); }

bool IsHttp(HealthProbeType type) {
  return type == HealthProbeType::kHttp || type == HealthProbeType::kHttps;
}

/// The oldest error on this thread's OpenSSL queue, which it then clears.
std::string TlsError() {
  unsigned long err = ERR_get_error();
  ERR_clear_error();
  if (err == 0) return "connection closed";
  char buf[256];
  ERR_error_string_n(err, buf, sizeof(buf));
  return buf;
}

milliseconds Since(Clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - t);
}

std::string Target(const HealthCheckConfig& c) {
  std::string out = StrCat(HealthProbeTypeName(c.type), " ", Ipv4ToString(c.address), ":", c.port);
  if (IsHttp(c.type)) out += c.http_path;
  return out;
}

std::string HttpRequest(const HealthCheckConfig& c) {
  std::string host =
      c.http_host.empty() ? StrCat(Ipv4ToString(c.address), ":", c.port) : c.http_host;
  return StrCat("GET ", c.http_path, " HTTP/1.1\r\nHost: ", host,
                "\r\nUser-Agent: sluice-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n");
}

}  // namespace

std::string HealthCheckText(const HealthCheckConfig& config) { return Target(config); }

std::string_view HealthProbeTypeName(HealthProbeType type) {
  switch (type) {
    case HealthProbeType::kTcp:
      return "tcp";
    case HealthProbeType::kHttp:
      return "http";
    case HealthProbeType::kHttps:
      return "https";
    case HealthProbeType::kMysql:
      return "mysql";
  }
  return "?";
}

absl::StatusOr<HealthProbeType> ParseHealthProbeType(std::string_view text) {
  if (text == "tcp") return HealthProbeType::kTcp;
  if (text == "http") return HealthProbeType::kHttp;
  if (text == "https") return HealthProbeType::kHttps;
  if (text == "mysql") return HealthProbeType::kMysql;
  return absl::InvalidArgumentError(
      StrCat("'", text, "' is not a health check type (tcp, http, https or mysql)"));
}

std::string_view HealthStateName(HealthState state) {
  switch (state) {
    case HealthState::kUnknown:
      return "unknown";
    case HealthState::kHealthy:
      return "healthy";
    case HealthState::kUnhealthy:
      return "unhealthy";
  }
  return "?";
}

absl::Status ValidateHealthCheck(const HealthCheckConfig& c) {
  auto bad = [](std::string_view field, std::string_view why) {
    return absl::InvalidArgumentError(StrCat(field, ": ", why));
  };
  if (c.address == 0) return bad("address", "must be set");
  if (c.port == 0) return bad("port", "must be 1..65535");
  if (c.interval < milliseconds(10) || c.interval > milliseconds(3600 * 1000)) {
    return bad("interval", "must be 10 ms..1 h");
  }
  if (c.timeout < milliseconds(1) || c.timeout > milliseconds(600 * 1000)) {
    return bad("timeout", "must be 1 ms..10 min");
  }
  if (c.rise < 1 || c.rise > 1000) return bad("rise", "must be 1..1000");
  if (c.fall < 1 || c.fall > 1000) return bad("fall", "must be 1..1000");
  if (c.jitter < milliseconds(0) || c.jitter * 2 > c.interval) {
    return bad("jitter", "must be 0..interval/2");
  }
  if (IsHttp(c.type)) {
    if (c.http_path.empty() || c.http_path[0] != '/') return bad("path", "must start with '/'");
    for (char ch : c.http_path + c.http_host) {
      if (static_cast<unsigned char>(ch) <= ' ' || ch == 0x7f) {
        return bad("path", "path and host must not contain spaces or control characters");
      }
    }
    if (c.http_expected_status < 100 || c.http_expected_status > 599) {
      return bad("expect_status", "must be 100..599");
    }
  }
  return absl::OkStatus();
}

ProbeVerdict JudgeHttpResponse(std::string_view received, uint16_t expected, std::string* detail) {
  size_t eol = received.find('\n');
  if (eol == std::string_view::npos) {
    if (received.size() < kMaxHttpStatusLine) return ProbeVerdict::kNeedMore;
    *detail = StrCat("no HTTP status line in the first ", kMaxHttpStatusLine, " bytes");
    return ProbeVerdict::kFail;
  }
  std::string_view line = received.substr(0, eol);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  // "HTTP/1.1 200 OK": the version, one space, three digits, then a space or the end.
  uint64_t status = 0;
  if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || line[8] != ' ' ||
      !ParseUint(line.substr(9, 3), &status) || (line.size() > 12 && line[12] != ' ')) {
    std::string shown(line.substr(0, 40));
    for (char& ch : shown) {
      if (static_cast<unsigned char>(ch) < ' ') ch = '?';
    }
    *detail = StrCat("not an HTTP/1.x status line: '", shown, "'");
    return ProbeVerdict::kFail;
  }
  if (status != expected) {
    *detail = StrCat("status ", status, ", expected ", expected);
    return ProbeVerdict::kFail;
  }
  *detail = StrCat("status ", status);
  return ProbeVerdict::kOk;
}

ProbeVerdict JudgeMysqlGreeting(std::string_view received, std::string* detail) {
  if (received.size() < 4) return ProbeVerdict::kNeedMore;
  const auto* b = reinterpret_cast<const uint8_t*>(received.data());
  const size_t length = b[0] | b[1] << 8 | b[2] << 16;
  if (length == 0 || b[3] != 0) {
    *detail = StrCat("not a MySQL greeting (packet length ", length, ", sequence ", b[3], ")");
    return ProbeVerdict::kFail;
  }
  const size_t needed = std::min(length, kMysqlGreetingNeeded);
  if (received.size() - 4 < needed) return ProbeVerdict::kNeedMore;
  std::string_view payload = received.substr(4, needed);
  const auto first = static_cast<uint8_t>(payload[0]);
  if (first == 0xff) {  // ERR packet: code, then the message (no SQL state before the handshake)
    uint32_t code = payload.size() >= 3
                        ? static_cast<uint8_t>(payload[1]) | static_cast<uint8_t>(payload[2]) << 8
                        : 0;
    std::string message(payload.size() > 3 ? payload.substr(3, 200) : "");
    *detail = StrCat("MySQL error ", code, ": ", message);
    return ProbeVerdict::kFail;
  }
  if (first != 10) {
    *detail = StrCat("MySQL protocol version ", static_cast<int>(first), ", expected 10");
    return ProbeVerdict::kFail;
  }
  size_t nul = payload.find('\0', 1);
  // After the version: connection id (4), auth data part 1 (8), filler (1).
  if (nul == std::string_view::npos || nul == 1 || payload.size() < nul + 1 + 13) {
    *detail = "MySQL greeting without a complete server version and connection id";
    return ProbeVerdict::kFail;
  }
  std::string version(payload.substr(1, std::min<size_t>(nul - 1, 100)));
  for (char& ch : version) {
    if (static_cast<unsigned char>(ch) < ' ' || static_cast<unsigned char>(ch) > '~') ch = '?';
  }
  *detail = StrCat("MySQL ", version);
  return ProbeVerdict::kOk;
}

milliseconds JitteredInterval(milliseconds interval, milliseconds jitter, uint64_t random) {
  if (jitter.count() <= 0) return interval;
  const int64_t span = 2 * jitter.count() + 1;
  const int64_t offset =
      static_cast<int64_t>(random % static_cast<uint64_t>(span)) - jitter.count();
  return milliseconds(std::max<int64_t>(1, interval.count() + offset));
}

// ---------------------------------------------------------------------------------------------

struct HealthChecker::Loop {
  enum class Phase { kIdle, kConnecting, kTlsHandshake, kSending, kReceiving };

  struct Check {
    HealthCheckId id = 0;
    HealthCheckConfig config;
    int netns_fd = -1;
    int fd = -1;
    SSL* ssl = nullptr;  ///< kHttps, while connected.
    Phase phase = Phase::kIdle;
    Clock::time_point next_start;
    Clock::time_point started;
    std::string request;
    size_t sent = 0;
    std::string received;
    HealthStatus status;
  };

  struct Command {
    bool add = true;
    std::unique_ptr<Check> check;  // add
    HealthCheckId id = 0;          // remove
  };

  OnChange on_change;
  int epoll_fd = -1;
  int wake_fd = -1;
  int own_netns_fd = -1;
  std::thread thread;
  std::atomic<bool> stop{false};
  std::mt19937_64 rng{std::random_device{}()};

  mutable std::mutex mu;  // guards everything below
  std::vector<Command> commands;
  std::map<HealthCheckId, HealthStatus> statuses;
  HealthCheckId next_id = 1;

  std::map<HealthCheckId, std::unique_ptr<Check>> checks;  // loop thread only
  SSL_CTX* tls = nullptr;                                  // loop thread only, on first use

  ~Loop() {
    for (auto& [id, c] : checks) CloseCheck(*c);
    if (tls != nullptr) SSL_CTX_free(tls);
    for (Command& cmd : commands) {
      if (cmd.check && cmd.check->netns_fd >= 0) close(cmd.check->netns_fd);
    }
    for (int fd : {epoll_fd, wake_fd, own_netns_fd}) {
      if (fd >= 0) close(fd);
    }
  }

  void Wake() {
    uint64_t one = 1;
    ssize_t n = write(wake_fd, &one, sizeof(one));
    (void)n;  // Already pending is fine.
  }

  void CloseCheck(Check& c) {
    CloseSocket(c);
    if (c.netns_fd >= 0) close(c.netns_fd);
    c.netns_fd = -1;
  }

  void CloseSocket(Check& c) {
    if (c.ssl != nullptr) SSL_free(c.ssl);
    c.ssl = nullptr;
    if (c.fd < 0) return;
    epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c.fd, nullptr);
    close(c.fd);
    c.fd = -1;
    c.phase = Phase::kIdle;
  }

  void Run() {
    std::vector<epoll_event> events(64);
    while (!stop.load()) {
      TakeCommands();
      const Clock::time_point now = Clock::now();
      Clock::time_point wake = now + milliseconds(1000);
      for (auto& [id, c] : checks) {
        wake = std::min(wake,
                        c->phase == Phase::kIdle ? c->next_start : c->started + c->config.timeout);
      }
      const int64_t wait_ms = std::max<int64_t>(
          0, std::chrono::duration_cast<milliseconds>(wake - now + std::chrono::microseconds(999))
                 .count());
      int n = epoll_wait(epoll_fd, events.data(), static_cast<int>(events.size()),
                         static_cast<int>(wait_ms));
      for (int i = 0; i < n; ++i) {
        if (events[i].data.u64 == kWakeToken) {
          uint64_t count;
          ssize_t r = read(wake_fd, &count, sizeof(count));
          (void)r;
          continue;
        }
        auto it = checks.find(events[i].data.u64);
        if (it != checks.end() && it->second->fd >= 0) OnEvent(*it->second, events[i].events);
      }
      const Clock::time_point after = Clock::now();
      for (auto& [id, c] : checks) {
        if (c->phase != Phase::kIdle && after >= c->started + c->config.timeout) {
          Finish(*c, false,
                 StrCat("timed out after ", c->config.timeout.count(), " ms ",
                        c->phase == Phase::kConnecting     ? "connecting"
                        : c->phase == Phase::kTlsHandshake ? "in the TLS handshake"
                        : IsHttp(c->config.type)           ? "waiting for the HTTP status line"
                                                           : "waiting for the MySQL greeting"));
        }
        if (c->phase == Phase::kIdle && after >= c->next_start) StartProbe(*c);
      }
    }
  }

  void TakeCommands() {
    std::vector<Command> taken;
    {
      std::lock_guard<std::mutex> lock(mu);
      taken.swap(commands);
    }
    for (Command& cmd : taken) {
      if (cmd.add) {
        Check& c = *cmd.check;
        c.next_start =
            Clock::now() +
            milliseconds(c.config.jitter.count() > 0 ? rng() % (c.config.jitter.count() + 1) : 0);
        checks[c.id] = std::move(cmd.check);
      } else if (auto it = checks.find(cmd.id); it != checks.end()) {
        CloseCheck(*it->second);
        checks.erase(it);
      }
    }
  }

  /// A socket in the check's network namespace.
  int MakeSocket(Check& c, std::string* error) {
    if (c.netns_fd >= 0 && setns(c.netns_fd, CLONE_NEWNET) != 0) {
      *error = Errno(StrCat("setns ", c.config.netns).c_str(), errno);
      return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const int socket_errno = errno;
    if (c.netns_fd >= 0 && setns(own_netns_fd, CLONE_NEWNET) != 0) {
      // Cannot get back: every later probe would run in the wrong namespace.
      if (fd >= 0) close(fd);
      *error = Errno("setns back to the agent's namespace", errno);
      return -1;
    }
    if (fd < 0) *error = Errno("socket", socket_errno);
    return fd;
  }

  void StartProbe(Check& c) {
    c.started = Clock::now();
    c.received.clear();
    c.sent = 0;
    std::string error;
    c.fd = MakeSocket(c, &error);
    if (c.fd < 0) return Finish(c, false, error);
    // Close with RST: a checker opening thousands of connections must not pile up TIME_WAIT.
    linger lin = {.l_onoff = 1, .l_linger = 0};
    setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lin, sizeof(lin));
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sockaddr_in addr = {.sin_family = AF_INET,
                        .sin_port = htons(c.config.port),
                        .sin_addr = {.s_addr = htonl(c.config.address)}};
    epoll_event ev = {.events = EPOLLOUT, .data = {.u64 = c.id}};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, c.fd, &ev) != 0) {
      return Finish(c, false, Errno("epoll_ctl", errno));
    }
    c.phase = Phase::kConnecting;
    if (connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 &&
        errno != EINPROGRESS) {
      return Finish(c, false, Errno("connect", errno));
    }
  }

  void Watch(Check& c, uint32_t events) {
    epoll_event ev = {.events = events, .data = {.u64 = c.id}};
    epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c.fd, &ev);
  }

  void OnEvent(Check& c, uint32_t events) {
    if (c.phase == Phase::kConnecting) {
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) return Finish(c, false, Errno("connect", err));
      if (!(events & EPOLLOUT)) return;
      switch (c.config.type) {
        case HealthProbeType::kTcp:
          return Finish(c, true, StrCat("connected in ", Since(c.started).count(), " ms"));
        case HealthProbeType::kHttp:
          c.request = HttpRequest(c.config);
          c.phase = Phase::kSending;
          break;
        case HealthProbeType::kHttps:
          if (std::string error; !StartTls(c, &error)) return Finish(c, false, error);
          c.phase = Phase::kTlsHandshake;
          break;
        case HealthProbeType::kMysql:
          c.phase = Phase::kReceiving;
          Watch(c, EPOLLIN | EPOLLRDHUP);
          return;
      }
    }
    if (c.phase == Phase::kTlsHandshake) {
      ERR_clear_error();
      const int r = SSL_do_handshake(c.ssl);
      if (r != 1) {
        const int err = SSL_get_error(c.ssl, r);
        if (err == SSL_ERROR_WANT_READ) return Watch(c, EPOLLIN);
        if (err == SSL_ERROR_WANT_WRITE) return Watch(c, EPOLLOUT);
        return Finish(c, false, StrCat("TLS handshake: ", TlsError()));
      }
      c.request = HttpRequest(c.config);
      c.phase = Phase::kSending;
    }
    if (c.phase == Phase::kSending) {
      const char* data = c.request.data() + c.sent;
      const size_t left = c.request.size() - c.sent;
      if (c.ssl != nullptr) {
        ERR_clear_error();
        const int n = SSL_write(c.ssl, data, static_cast<int>(left));
        if (n <= 0) {
          const int err = SSL_get_error(c.ssl, n);
          if (err == SSL_ERROR_WANT_READ) return Watch(c, EPOLLIN);
          if (err == SSL_ERROR_WANT_WRITE) return Watch(c, EPOLLOUT);
          return Finish(c, false, StrCat("TLS write: ", TlsError()));
        }
        c.sent += static_cast<size_t>(n);
      } else {
        ssize_t n = send(c.fd, data, left, MSG_NOSIGNAL);
        if (n < 0) {
          if (errno == EAGAIN || errno == EINTR) return Watch(c, EPOLLOUT);
          return Finish(c, false, Errno("send", errno));
        }
        c.sent += static_cast<size_t>(n);
      }
      if (c.sent < c.request.size()) return Watch(c, EPOLLOUT);
      c.phase = Phase::kReceiving;
      Watch(c, EPOLLIN | EPOLLRDHUP);
    }
    if (c.phase == Phase::kReceiving) Receive(c);
  }

  bool StartTls(Check& c, std::string* error) {
    if (tls == nullptr) {
      tls = SSL_CTX_new(TLS_client_method());
      if (tls == nullptr) {
        *error = StrCat("TLS: ", TlsError());
        return false;
      }
      SSL_CTX_set_verify(tls, SSL_VERIFY_NONE, nullptr);
      SSL_CTX_set_min_proto_version(tls, TLS1_2_VERSION);
      // A server closing without close_notify after its answer is an ordinary end here.
      SSL_CTX_set_options(tls, SSL_OP_IGNORE_UNEXPECTED_EOF);
    }
    c.ssl = SSL_new(tls);
    if (c.ssl == nullptr || SSL_set_fd(c.ssl, c.fd) != 1) {
      *error = StrCat("TLS: ", TlsError());
      return false;
    }
    const std::string& host = c.config.http_host;
    if (!host.empty() && !ParseIpv4(host).ok()) SSL_set_tlsext_host_name(c.ssl, host.c_str());
    SSL_set_connect_state(c.ssl);
    return true;
  }

  /// Reads what is there: >0 bytes, 0 at the end of the stream, -1 nothing yet, -2 error.
  ssize_t ReadSome(Check& c, char* buf, size_t size, std::string* error) {
    if (c.ssl == nullptr) {
      ssize_t n = recv(c.fd, buf, size, 0);
      if (n >= 0) return n;
      if (errno == EAGAIN || errno == EINTR) return -1;
      *error = Errno("recv", errno);
      return -2;
    }
    ERR_clear_error();
    const int n = SSL_read(c.ssl, buf, static_cast<int>(size));
    if (n > 0) return n;
    switch (SSL_get_error(c.ssl, n)) {
      case SSL_ERROR_ZERO_RETURN:
        return 0;
      case SSL_ERROR_WANT_READ:
        return -1;
      case SSL_ERROR_WANT_WRITE:
        Watch(c, EPOLLIN | EPOLLOUT | EPOLLRDHUP);
        return -1;
      case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0 && errno == 0) return 0;
        *error = errno != 0 ? Errno("TLS read", errno) : StrCat("TLS read: ", TlsError());
        return -2;
      default:
        *error = StrCat("TLS read: ", TlsError());
        return -2;
    }
  }

  void Receive(Check& c) {
    char buf[2048];
    for (;;) {
      std::string error;
      errno = 0;
      const ssize_t n = ReadSome(c, buf, sizeof(buf), &error);
      if (n == -1) return;
      if (n == -2) return Finish(c, false, error);
      if (n > 0) c.received.append(buf, static_cast<size_t>(n));
      std::string detail;
      ProbeVerdict verdict =
          IsHttp(c.config.type)
              ? JudgeHttpResponse(c.received, c.config.http_expected_status, &detail)
              : JudgeMysqlGreeting(c.received, &detail);
      if (verdict != ProbeVerdict::kNeedMore) {
        return Finish(c, verdict == ProbeVerdict::kOk, detail);
      }
      if (n == 0) {
        return Finish(c, false,
                      StrCat("connection closed after ", c.received.size(), " bytes, before ",
                             IsHttp(c.config.type) ? "an HTTP status line" : "a MySQL greeting"));
      }
    }
  }

  void Finish(Check& c, bool ok, const std::string& detail) {
    CloseSocket(c);
    HealthStatus& s = c.status;
    ++s.probes;
    s.last_result = StrCat(Target(c.config), ": ", detail);
    std::optional<HealthChange> change;
    if (ok) {
      ++s.consecutive_ok;
      s.consecutive_failed = 0;
      if (s.state != HealthState::kHealthy && s.consecutive_ok >= c.config.rise) {
        change = HealthChange{.id = c.id, .previous = s.state, .state = HealthState::kHealthy};
        change->reason = StrCat(s.last_result, " (", s.consecutive_ok, " in a row)");
      }
    } else {
      ++s.consecutive_failed;
      s.consecutive_ok = 0;
      if (s.state != HealthState::kUnhealthy && s.consecutive_failed >= c.config.fall) {
        change = HealthChange{.id = c.id, .previous = s.state, .state = HealthState::kUnhealthy};
        change->reason = StrCat(s.last_result, " (", s.consecutive_failed, " in a row)");
      }
    }
    if (change) {
      s.state = change->state;
      change->probes = s.probes;
    }
    const Clock::time_point next =
        c.started + JitteredInterval(c.config.interval, c.config.jitter, rng());
    c.next_start = std::max(next, Clock::now());
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = statuses.find(c.id);
      if (it == statuses.end()) return;  // Removed meanwhile: no callback.
      it->second = s;
    }
    if (change && on_change) on_change(*change);
  }
};

absl::StatusOr<std::unique_ptr<HealthChecker>> HealthChecker::Create(OnChange on_change) {
  auto loop = std::make_unique<Loop>();
  loop->on_change = std::move(on_change);
  loop->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (loop->epoll_fd < 0) return absl::InternalError(Errno("epoll_create1", errno));
  loop->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (loop->wake_fd < 0) return absl::InternalError(Errno("eventfd", errno));
  epoll_event ev = {.events = EPOLLIN, .data = {.u64 = kWakeToken}};
  if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, loop->wake_fd, &ev) != 0) {
    return absl::InternalError(Errno("epoll_ctl", errno));
  }
  std::unique_ptr<HealthChecker> checker(new HealthChecker(std::move(loop)));
  Loop* l = checker->loop_.get();
  l->thread = std::thread([l] {
    // The namespace probes return to after visiting a check's netns.
    l->own_netns_fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    l->Run();
  });
  return checker;
}

HealthChecker::HealthChecker(std::unique_ptr<Loop> loop) : loop_(std::move(loop)) {}

HealthChecker::~HealthChecker() {
  loop_->stop.store(true);
  loop_->Wake();
  if (loop_->thread.joinable()) loop_->thread.join();
}

absl::StatusOr<HealthCheckId> HealthChecker::Add(const HealthCheckConfig& config) {
  if (absl::Status s = ValidateHealthCheck(config); !s.ok()) return s;
  auto check = std::make_unique<Loop::Check>();
  check->config = config;
  if (!config.netns.empty()) {
    check->netns_fd = open(config.netns.c_str(), O_RDONLY | O_CLOEXEC);
    if (check->netns_fd < 0) {
      return absl::NotFoundError(Errno(StrCat("netns ", config.netns).c_str(), errno));
    }
  }
  HealthCheckId id;
  {
    std::lock_guard<std::mutex> lock(loop_->mu);
    id = loop_->next_id++;
    check->id = id;
    loop_->statuses[id] = HealthStatus{};
    loop_->commands.push_back({.add = true, .check = std::move(check)});
  }
  loop_->Wake();
  return id;
}

bool HealthChecker::Remove(HealthCheckId id) {
  {
    std::lock_guard<std::mutex> lock(loop_->mu);
    if (loop_->statuses.erase(id) == 0) return false;
    loop_->commands.push_back({.add = false, .id = id});
  }
  loop_->Wake();
  return true;
}

std::optional<HealthStatus> HealthChecker::Status(HealthCheckId id) const {
  std::lock_guard<std::mutex> lock(loop_->mu);
  auto it = loop_->statuses.find(id);
  if (it == loop_->statuses.end()) return std::nullopt;
  return it->second;
}

size_t HealthChecker::size() const {
  std::lock_guard<std::mutex> lock(loop_->mu);
  return loop_->statuses.size();
}

// ---------------------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<DipHealthMonitor>> DipHealthMonitor::Create(OnChange on_change) {
  std::unique_ptr<DipHealthMonitor> monitor(new DipHealthMonitor());
  monitor->on_change_ = std::move(on_change);
  DipHealthMonitor* self = monitor.get();
  absl::StatusOr<std::unique_ptr<HealthChecker>> checker =
      HealthChecker::Create([self](const HealthChange& c) { self->OnCheckChange(c); });
  if (!checker.ok()) return checker.status();
  monitor->checker_ = std::move(*checker);
  return monitor;
}

DipHealthMonitor::~DipHealthMonitor() { checker_.reset(); }

absl::Status DipHealthMonitor::SetChecks(const std::vector<HealthCheckConfig>& wanted) {
  for (size_t i = 0; i < wanted.size(); ++i) {
    if (absl::Status s = ValidateHealthCheck(wanted[i]); !s.ok()) {
      return absl::InvalidArgumentError(StrCat("checks[", i, "].", s.message()));
    }
  }
  std::vector<DipHealth> changes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Identical wanted checks share one running check.
    std::vector<bool> kept(wanted.size(), false);
    std::vector<HealthCheckId> gone;
    for (const auto& [id, check] : checks_) {
      bool needed = false;
      for (size_t i = 0; i < wanted.size(); ++i) {
        if (wanted[i] == check.config) kept[i] = needed = true;
      }
      if (!needed) gone.push_back(id);
    }
    std::vector<HealthCheckId> added;
    for (size_t i = 0; i < wanted.size(); ++i) {
      if (kept[i]) continue;
      for (size_t j = i + 1; j < wanted.size(); ++j) {
        if (wanted[j] == wanted[i]) kept[j] = true;
      }
      absl::StatusOr<HealthCheckId> id = checker_->Add(wanted[i]);
      if (!id.ok()) {
        for (HealthCheckId a : added) {
          checker_->Remove(a);
          checks_.erase(a);
        }
        return absl::Status(id.status().code(), StrCat("checks[", i, "]: ", id.status().message()));
      }
      added.push_back(*id);
      checks_[*id] = Check{.config = wanted[i]};
    }
    std::set<uint32_t> touched;
    for (HealthCheckId id : gone) {
      checker_->Remove(id);
      touched.insert(checks_[id].config.address);
      checks_.erase(id);
    }
    for (uint32_t dip : touched) Reaggregate(dip, &changes);
  }
  for (const DipHealth& c : changes) {
    if (on_change_) on_change_(c);
  }
  return absl::OkStatus();
}

std::vector<DipHealthMonitor::DipHealth> DipHealthMonitor::Current() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<DipHealth> out;
  for (const auto& [dip, health] : reported_) out.push_back(health);
  return out;
}

std::vector<DipHealthMonitor::CheckStatus> DipHealthMonitor::Checks() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<CheckStatus> out;
  for (const auto& [id, check] : checks_) {
    std::optional<HealthStatus> status = checker_->Status(id);
    out.push_back({.config = check.config, .status = status.value_or(HealthStatus{})});
  }
  return out;
}

void DipHealthMonitor::OnCheckChange(const HealthChange& change) {
  std::vector<DipHealth> changes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = checks_.find(change.id);
    if (it == checks_.end()) return;
    it->second.state = change.state;
    it->second.reason = change.reason;
    Reaggregate(it->second.config.address, &changes);
  }
  for (const DipHealth& c : changes) {
    if (on_change_) on_change_(c);
  }
}

void DipHealthMonitor::Reaggregate(uint32_t dip, std::vector<DipHealth>* out) {
  size_t total = 0;
  size_t healthy = 0;
  const Check* sick = nullptr;
  const Check* any = nullptr;
  for (const auto& [id, check] : checks_) {
    if (check.config.address != dip) continue;
    ++total;
    any = &check;
    if (check.state == HealthState::kHealthy) ++healthy;
    if (check.state == HealthState::kUnhealthy && sick == nullptr) sick = &check;
  }
  auto reported = reported_.find(dip);
  std::optional<DipHealth> now;
  if (total == 0) {
    // No checks left: the mux's default (healthy) applies again.
    if (reported != reported_.end() && !reported->second.healthy) {
      out->push_back({.dip = dip, .healthy = true, .reason = "no health check any more"});
    }
    if (reported != reported_.end()) reported_.erase(reported);
    return;
  }
  if (sick != nullptr) {
    now = DipHealth{.dip = dip, .healthy = false, .reason = sick->reason};
  } else if (healthy == total) {
    now = DipHealth{.dip = dip, .healthy = true, .reason = any->reason};
  } else {
    return;  // Some checks still deciding: keep what was reported.
  }
  if (reported != reported_.end() && reported->second.healthy == now->healthy) return;
  reported_[dip] = *now;
  out->push_back(*now);
}

}  // namespace sluice::agent
