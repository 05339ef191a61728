// Reports the health verdicts of this host's DIPs to the muxes (sluice.v1.Mux/SetBackendHealth)
// so they take sick DIPs out of Maglev. One thread per mux: a verdict change never waits for
// the network, a mux that is down is retried with exponential backoff, and every push carries
// the whole verdict set, so a mux that restarted or was unreachable gets everything again as
// soon as it answers. A lost connection (the mux restarted) triggers a push by itself, and a
// periodic refresh repairs anything else (e.g. a mux whose state was reset some other way).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "common/tls_files.h"
#include "hostagent/health.h"

namespace sluice::agent {

/// A mux the verdicts go to.
struct HealthReportMux {
  std::string name;  ///< For stats and logs.
  std::string grpc;  ///< "unix:/run/sluice/mux.grpc.sock", "/path" or "host:port".

  bool operator==(const HealthReportMux&) const = default;
};

/// The agent's `health_report:` section: where its verdicts go and how pushes are retried.
struct HealthReportConfig {
  std::vector<HealthReportMux> muxes;
  std::chrono::milliseconds timeout{1000};    ///< Deadline of one push.
  std::chrono::milliseconds retry_min{100};   ///< First retry after a failed push ...
  std::chrono::milliseconds retry_max{5000};  ///< ... doubling up to this.
  std::chrono::milliseconds refresh{30000};   ///< Whole set again even without a change.
  DialOptions dial;  ///< `tls:` towards muxes on TCP (mutual TLS with cert + key).

  bool operator==(const HealthReportConfig&) const = default;
};

using DipVerdict = DipHealthMonitor::DipHealth;

/// What the muxes should hold for this host: the monitor's verdict for each DIP whose checks
/// have decided (`decided`); healthy ("no health check") for a local DIP without checks, so a
/// verdict left on a mux by an earlier run is cleared; nothing for a DIP whose checks are still
/// deciding (the muxes keep what they have). Sorted by DIP.
std::vector<DipVerdict> LocalDipVerdicts(const std::set<uint32_t>& local_dips,
                                         const std::set<uint32_t>& checked_dips,
                                         const std::vector<DipVerdict>& decided);

/// The seam to one mux: sends the whole verdict set. The gRPC implementation is
/// NewGrpcMuxHealthClient; unit tests use a fake.
class MuxHealthClient {
 public:
  virtual ~MuxHealthClient() = default;
  virtual const std::string& target() const = 0;
  /// One SetBackendHealth call with every verdict; OK or why not.
  virtual absl::Status Push(const std::string& reporter, const std::vector<DipVerdict>& verdicts,
                            std::chrono::milliseconds timeout) = 0;
  /// True when the connection that carried the last successful push has gone since (the mux
  /// restarted or became unreachable): the set must be pushed again.
  virtual bool ConnectionLost() = 0;
};

/// A client for "unix:/path", "/path" or "host:port" (TLS per `dial` on TCP); reconnects with
/// gRPC's backoff capped at `retry_max` so a mux that comes back is found quickly.
std::unique_ptr<MuxHealthClient> NewGrpcMuxHealthClient(const std::string& target,
                                                        std::chrono::milliseconds retry_max,
                                                        const DialOptions& dial = {});

/// How the reports to one mux stand (stats, GetStats).
struct MuxReportStatus {
  std::string mux;       ///< Its name.
  std::string target;    ///< Its gRPC address.
  bool in_sync = false;  ///< The mux holds the current set (last push OK, nothing newer).
  uint64_t pushes_ok = 0;
  uint64_t pushes_failed = 0;
  uint64_t resyncs = 0;         ///< Whole-set pushes after a lost connection.
  std::string last_error;       ///< Of the last failed push ("" if none yet).
  int64_t last_ok_ms_ago = -1;  ///< -1: never.
};

/// One check as the stats show it.
struct DipCheckStatus {
  uint32_t dip = 0;
  std::string check;  ///< HealthCheckText: "http 10.1.0.1:8080/health".
  std::string state;  ///< "unknown" | "healthy" | "unhealthy"
  std::string last_result;
  uint64_t probes = 0;
  std::string reported;  ///< What the muxes are told for the DIP: "healthy" | "unhealthy" | "".
};

class HealthReporter {
 public:
  struct Destination {
    std::string name;
    std::unique_ptr<MuxHealthClient> client;
  };
  /// Starts one thread per mux. `reporter` names this agent in the muxes' logs. Only the
  /// timing fields of `config` are used (the muxes come as `muxes`).
  HealthReporter(std::string reporter, std::vector<Destination> muxes,
                 const HealthReportConfig& config);
  /// Stops the threads (a push in flight finishes within its timeout).
  ~HealthReporter();

  /// The whole set the muxes should hold now. Returns at once; the mux threads push it.
  void SetVerdicts(std::vector<DipVerdict> verdicts);
  std::vector<MuxReportStatus> Status() const;

  HealthReporter(const HealthReporter&) = delete;
  HealthReporter& operator=(const HealthReporter&) = delete;

 private:
  struct Mux {
    std::unique_ptr<MuxHealthClient> client;
    MuxReportStatus status;
    bool failing = false;         ///< The last push failed (logged once per outage).
    uint64_t pushed_version = 0;  ///< Version of the set the mux acknowledged; 0 = none.
    std::chrono::steady_clock::time_point last_ok{};
    std::thread thread;
  };
  void Run(Mux* mux);

  const std::string reporter_;
  const HealthReportConfig config_;
  mutable std::mutex mu_;
  std::condition_variable changed_;
  bool stop_ = false;
  std::vector<DipVerdict> verdicts_;
  uint64_t version_ = 1;
  std::vector<std::unique_ptr<Mux>> muxes_;
};

}  // namespace sluice::agent
