// Announcing the mux's VIPs by BGP. `BgpSpeaker` is the seam; `GobgpSpeaker` runs gobgpd as
// a child of the mux (it dies with the mux, so a crashed mux's session drops and the router
// withdraws at once) and drives it through gobgpd's gRPC API with the `gobgp` client that
// Debian ships with it. `VipAnnouncer` keeps what is announced equal to what should be.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mux_lite/config.h"

namespace sluice::mux {

class BgpSpeaker {
 public:
  virtual ~BgpSpeaker() = default;
  /// Announces `prefix`/32 with `next_hop`.
  virtual absl::Status Announce(uint32_t prefix, uint32_t next_hop) = 0;
  virtual absl::Status Withdraw(uint32_t prefix) = 0;
  /// "established", "active", "connect", ... or "unreachable" when the speaker's API is down.
  virtual std::string SessionState() = 0;
};

class GobgpSpeaker : public BgpSpeaker {
 public:
  /// Writes gobgpd's config under `run_dir` and starts it. Fails with a clear message when
  /// the binaries are missing or the process cannot start.
  static absl::StatusOr<std::unique_ptr<GobgpSpeaker>> Start(const BgpConfig& config,
                                                             const std::string& name,
                                                             const std::string& run_dir);
  ~GobgpSpeaker() override;

  absl::Status Announce(uint32_t prefix, uint32_t next_hop) override;
  absl::Status Withdraw(uint32_t prefix) override;
  std::string SessionState() override;

 private:
  GobgpSpeaker(BgpConfig config, pid_t pid) : config_(std::move(config)), pid_(pid) {}
  /// Runs the gobgp client with `args`; returns its output or an error with its output.
  absl::StatusOr<std::string> Client(const std::vector<std::string>& args);

  BgpConfig config_;
  pid_t pid_;
};

/// Announces every VIP while the mux should attract traffic and withdraws them otherwise.
/// Failed calls are retried on the next Update; each failure is counted.
class VipAnnouncer {
 public:
  VipAnnouncer(BgpSpeaker* speaker, std::vector<uint32_t> vips, uint32_t next_hop);

  /// Called periodically with whether the mux is ready, polling and not draining.
  void Update(bool should_announce);
  /// After a config reload: VIPs no longer configured are withdrawn, new ones announced at
  /// the next Update.
  void SetVips(const std::vector<uint32_t>& vips);

  bool announced() const { return announced_count_ == vips_.size() && !vips_.empty(); }
  size_t announced_count() const { return announced_count_; }
  uint64_t errors() const { return errors_; }
  const std::string& last_error() const { return last_error_; }

 private:
  void WithdrawPending();

  BgpSpeaker* speaker_;
  std::vector<uint32_t> vips_;
  std::vector<bool> is_announced_;
  std::vector<uint32_t> pending_withdraw_;  ///< Removed from config, withdrawal not yet done.
  size_t announced_count_ = 0;
  uint32_t next_hop_;
  uint64_t errors_ = 0;
  std::string last_error_;
};

/// Runs `argv` with a time limit; returns its exit status and combined output.
absl::StatusOr<std::string> RunCommand(const std::vector<std::string>& argv, int timeout_ms);

}  // namespace sluice::mux
