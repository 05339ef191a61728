// Prometheus metrics of the daemons: their stats document (the JSON `sluicectl stats` shows,
// built by StatsJson in hostagent/main.cc and mux_lite/main.cc) turned into metric families
// (per-drop-reason counters, flows, rules per executor and level, SNAT ports, BGP session
// state ...) and served in the Prometheus text format on GET /metrics, using prometheus-cpp.
// Both daemons go through the same document, so metrics and `sluicectl stats` always agree.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace prometheus {
class Exposer;
struct MetricFamily;
}  // namespace prometheus

namespace sluice::metrics {

/// Returns the daemon's current stats JSON; called on the HTTP server's thread per scrape.
using StatsSource = std::function<std::string()>;

/// Converts one stats document into metric families named sluice_<role>_... (role from its
/// "role" field: "agent", "mux" or "snatd"). Known fields get their documented names, types and
/// labels; a numeric field this table does not know yet is exported as an untyped metric
/// named after its path, so nothing a daemon counts is left out. Fails on malformed JSON or
/// a missing/unknown role.
absl::StatusOr<std::vector<prometheus::MetricFamily>> FamiliesFromStats(std::string_view json);

/// The Prometheus text exposition (version 0.0.4) of `families`.
std::string TextFormat(const std::vector<prometheus::MetricFamily>& families);

/// Serves GET /metrics over HTTP. A scrape whose stats document does not convert answers
/// with the exposer's own metrics only, and sluice_metrics_stats_errors_total counts it.
class MetricsServer {
 public:
  /// Listens on `listen` ("ADDR:PORT"; port 0 picks a free one, see port()). Errors name the
  /// address that could not be bound.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& listen,
                                                               StatsSource stats);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  /// The TCP port actually bound.
  int port() const { return port_; }

 private:
  class StatsCollectable;
  MetricsServer() = default;
  std::shared_ptr<StatsCollectable> collectable_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
};

/// For daemons: starts a MetricsServer on `listen` unless it is empty (then returns nullptr
/// and OK), so main() needs one call for its `--metrics-listen ADDR` option.
absl::StatusOr<std::unique_ptr<MetricsServer>> ServeDaemonMetrics(const std::string& listen,
                                                                   StatsSource stats);

}  // namespace sluice::metrics
