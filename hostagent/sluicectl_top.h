// `sluicectl top`: a live view of one or more daemons (muxes and agents), refreshed from their
// stats sockets. Each frame shows, per daemon, its state and headline rates (packets, new
// flows, drops per second), the flow table fill, and the busiest counters with their rates —
// VIPs, backends, VMs and drop reasons included, as the stats document names them.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace sluice::ctl {

/// A stats document flattened to "path -> number": objects by key ("drops.no_rule"), arrays
/// of objects by the element's identifying fields ("vms[vm1].rx_packets",
/// "backends[10.200.0.10:80 10.1.0.1].packets"), arrays of numbers by index. Booleans are 0/1;
/// strings are skipped.
std::map<std::string, double> FlattenStats(const nlohmann::json& doc);

/// True for values that are a level, not a running count (flow table fill, capacities,
/// weights, generations): they are shown as they are, never as a rate.
bool IsGauge(const std::string& path);

struct TopSample {
  std::string source;  ///< The stats socket it came from.
  nlohmann::json doc;  ///< Null when the daemon could not be read.
  std::string error;   ///< Why, when doc is null.
};

/// One frame for one daemon: `previous` and `current` were taken `seconds` apart. At most
/// `max_rows` busiest counters are listed.
std::string RenderTopFrame(const TopSample& previous, const TopSample& current, double seconds,
                           size_t max_rows = 20);

/// `sluicectl top --socket STATS [--socket STATS ...] [--interval SECONDS] [--count N]
/// [--rows N]`: redraws every interval (clearing the screen on a terminal) until interrupted,
/// or prints N frames and exits. Returns the process exit code: 0, 1 if no daemon could be
/// read on the last frame, 2 on a bad command line.
int Top(const std::vector<std::string>& args);

}  // namespace sluice::ctl
