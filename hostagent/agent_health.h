// The agent's health pipeline: the `health:` checks of its endpoints run in a DipHealthMonitor,
// and every change of a local DIP's verdict goes to the muxes of `health_report:` through a
// HealthReporter (never from the data path or the checker thread). The agent calls Configure
// with every config it adopts (boot YAML, gRPC SetEndpoints / AttachVm / DetachVm).
#pragma once

#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/json_writer.h"
#include "hostagent/config.h"
#include "hostagent/health.h"
#include "hostagent/health_report.h"

namespace sluice::agent {

/// Builds the monitor's check list from endpoints: one per endpoint with `health:`.
/// Errors name the endpoint ("endpoints[1].health.netns: ...") for a netns file that cannot
/// be opened (FAILED_PRECONDITION) or a check that does not validate (INVALID_ARGUMENT).
absl::StatusOr<std::vector<HealthCheckConfig>> HealthChecksOf(
    const std::vector<EndpointConfig>& endpoints);

class AgentHealth {
 public:
  /// `muxes` (one client per entry of config.health_report.muxes, same order) may be empty:
  /// the checks then run for stats only. Starts the checks of `config` (see Configure).
  static absl::StatusOr<std::unique_ptr<AgentHealth>> Create(
      const AgentConfig& config, std::vector<HealthReporter::Destination> muxes);

  /// The endpoints and VMs of a config about to be adopted: checks start and stop (running
  /// identical checks keep their state). On an error nothing changes.
  absl::Status Configure(const AgentConfig& config);

  std::vector<DipCheckStatus> Checks() const;
  std::vector<MuxReportStatus> Reports() const;
  /// The set the muxes are (being) told.
  std::vector<DipVerdict> Verdicts() const;
  /// "health_checks" and "health_reports" arrays for the stats document.
  void WriteStats(JsonWriter& j) const;

 private:
  AgentHealth() = default;
  /// Recomputes the verdict set from the monitor and hands it to the reporter.
  void Publish();

  mutable std::mutex mu_;  ///< Guards local_dips_, checked_dips_, verdicts_.
  std::set<uint32_t> local_dips_;
  std::set<uint32_t> checked_dips_;
  std::vector<DipVerdict> verdicts_;
  std::unique_ptr<HealthReporter> reporter_;   // null without muxes
  std::unique_ptr<DipHealthMonitor> monitor_;  // last: its thread stops first
};

}  // namespace sluice::agent
