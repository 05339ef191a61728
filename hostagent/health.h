// Health checks of the local DIPs: TCP connect, HTTP(S) GET with an expected status, MySQL
// handshake greeting. One thread multiplexes every check with epoll; each check has its
// interval (± jitter), timeout and rise/fall counts, and a state change is reported through a
// callback (the agent pushes it to the muxes, which take sick DIPs out of Maglev).
//
// In the agent's YAML a check belongs to an endpoint; it probes the endpoint's DIP:
//   endpoints:
//     - { vip: 10.200.0.10, port: 80, protocol: tcp, dip: 10.1.0.1, dip_port: 8080,
//         health: { type: http, path: /healthz, expect_status: 200, interval_ms: 500,
//                   timeout_ms: 300, rise: 2, fall: 2, jitter_ms: 50 } }
// Keys: type (tcp|http|https|mysql, required), port (default dip_port), path (default /),
// host (Host header and TLS SNI), expect_status (200) — the last three for http(s) only —
// interval_ms (2000), timeout_ms (1000), rise (2), fall (3), jitter_ms (0, at most interval_ms/2),
// netns (a netns file path).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace sluice::agent {

/// kHttps: TLS (the certificate is not verified: the check is about the server being alive),
/// then the same GET as kHttp.
enum class HealthProbeType { kTcp, kHttp, kHttps, kMysql };

/// "tcp" | "http" | "https" | "mysql".
std::string_view HealthProbeTypeName(HealthProbeType type);
absl::StatusOr<HealthProbeType> ParseHealthProbeType(std::string_view text);

struct HealthCheckConfig {
  HealthProbeType type = HealthProbeType::kTcp;
  uint32_t address = 0;  ///< IPv4, host order.
  uint16_t port = 0;
  std::string http_path = "/";
  std::string http_host;  ///< Host header; empty = "address:port".
  uint16_t http_expected_status = 200;
  std::chrono::milliseconds interval{2000};  ///< From one probe's start to the next's.
  std::chrono::milliseconds timeout{1000};   ///< Connect + request + answer.
  uint32_t rise = 2;                         ///< Consecutive successes that make a check healthy.
  uint32_t fall = 3;                         ///< Consecutive failures that make it unhealthy.
  /// Every interval is lengthened or shortened by a random amount up to this, and the first
  /// probe waits a random 0..jitter, so checks started together spread out.
  std::chrono::milliseconds jitter{0};
  /// Network namespace file (e.g. /run/netns/vm1) the probe socket is created in; empty = the
  /// agent's own. Needs CAP_SYS_ADMIN.
  std::string netns;

  bool operator==(const HealthCheckConfig&) const = default;
};

/// Checks ranges and text fields (ports, counts, path without CR/LF, jitter ≤ interval/2).
absl::Status ValidateHealthCheck(const HealthCheckConfig& config);

/// What a check probes, for stats and logs: "http 10.1.0.1:8080/health", "tcp 10.1.0.1:22".
std::string HealthCheckText(const HealthCheckConfig& config);

enum class HealthState { kUnknown, kHealthy, kUnhealthy };
std::string_view HealthStateName(HealthState state);

using HealthCheckId = uint64_t;

struct HealthChange {
  HealthCheckId id = 0;
  HealthState previous = HealthState::kUnknown;
  HealthState state = HealthState::kUnknown;
  /// The probe that tipped it, e.g. "http 10.1.0.1:8080/: status 500, expected 200 (3 in a row)".
  std::string reason;
  uint64_t probes = 0;  ///< Probes run by this check so far, this one included.
};

struct HealthStatus {
  HealthState state = HealthState::kUnknown;
  uint32_t consecutive_ok = 0;
  uint32_t consecutive_failed = 0;
  uint64_t probes = 0;
  std::string last_result;  ///< "" before the first probe.
};

/// How a probe's answer so far is judged.
enum class ProbeVerdict { kNeedMore, kOk, kFail };

/// Judges the bytes an HTTP server sent so far against the expected status.
ProbeVerdict JudgeHttpResponse(std::string_view received, uint16_t expected_status,
                               std::string* detail);
/// Judges a MySQL server's initial handshake packet (protocol 10, a server version string).
ProbeVerdict JudgeMysqlGreeting(std::string_view received, std::string* detail);

/// interval + a uniform offset in [-jitter, +jitter] picked by `random`, never below 1 ms.
std::chrono::milliseconds JitteredInterval(std::chrono::milliseconds interval,
                                           std::chrono::milliseconds jitter, uint64_t random);

class HealthChecker {
 public:
  /// Called on the checker thread for every state change (kUnknown → the first verdict
  /// included). It may call Add/Remove/Status; it should not block.
  using OnChange = std::function<void(const HealthChange&)>;

  /// Starts the checker thread.
  static absl::StatusOr<std::unique_ptr<HealthChecker>> Create(OnChange on_change);
  /// Stops the thread; no callback runs after this returns.
  ~HealthChecker();

  /// Starts checking; the first probe runs within `jitter`. INVALID_ARGUMENT on a bad config,
  /// NOT_FOUND if the netns file cannot be opened.
  absl::StatusOr<HealthCheckId> Add(const HealthCheckConfig& config);
  /// Stops a check: a probe in flight is abandoned and no callback follows, except one that
  /// was already running when Remove was called. False if the id is unknown.
  bool Remove(HealthCheckId id);
  std::optional<HealthStatus> Status(HealthCheckId id) const;
  size_t size() const;

  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

 private:
  struct Loop;
  explicit HealthChecker(std::unique_ptr<Loop> loop);
  std::unique_ptr<Loop> loop_;
};

/// Health per DIP, which is what the muxes take (sluice.v1.Mux/SetBackendHealth): runs the
/// checks of the agent's endpoints (identical checks once) and reports a DIP unhealthy as soon
/// as one of its checks is, healthy when all of them are. A DIP is reported first when its
/// checks have decided; a check added later does not flap it while it decides.
class DipHealthMonitor {
 public:
  struct DipHealth {
    uint32_t dip = 0;  ///< host order
    bool healthy = false;
    std::string reason;  ///< The check result behind it.
  };
  /// Called on the checker thread for each change (from SetChecks' caller when a change comes
  /// from removing checks). Not under any lock of the monitor: it may call Current().
  using OnChange = std::function<void(const DipHealth&)>;

  static absl::StatusOr<std::unique_ptr<DipHealthMonitor>> Create(OnChange on_change);
  ~DipHealthMonitor();

  /// The desired set of checks (`address` is the DIP). Checks already running with the same
  /// config keep their state; the others start or stop. Checked as a whole: on an error
  /// nothing changes. A DIP left without checks that was unhealthy is reported healthy.
  absl::Status SetChecks(const std::vector<HealthCheckConfig>& checks);
  /// Every DIP whose health is decided.
  std::vector<DipHealth> Current() const;
  /// Every running check with its state, probe count and last result.
  struct CheckStatus {
    HealthCheckConfig config;
    HealthStatus status;
  };
  std::vector<CheckStatus> Checks() const;

 private:
  struct Check {
    HealthCheckConfig config;
    HealthState state = HealthState::kUnknown;
    std::string reason;
  };
  DipHealthMonitor() = default;
  void OnCheckChange(const HealthChange& change);
  /// Recomputes `dip`; appends to `out` if its reported state changes. Needs mu_.
  void Reaggregate(uint32_t dip, std::vector<DipHealth>* out);

  OnChange on_change_;
  mutable std::mutex mu_;
  std::map<HealthCheckId, Check> checks_;
  std::map<uint32_t, DipHealth> reported_;
  std::unique_ptr<HealthChecker> checker_;  // last: its thread stops before the rest goes
};

}  // namespace sluice::agent
