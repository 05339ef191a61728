// The mux's cloud state file (`mux.cloud_state_file`): the VIPs (with their backends) and
// the SNAT ranges the cloud controller and sluice-snatd last pushed over gRPC, written after
// every accepted change and served again at start. A mux that restarts (crash, upgrade)
// then announces its VIPs and forwards their flows at once instead of waiting, VIP-less,
// for the controller's next apply; the allocator's next resync corrects its chunks as usual.
// What the YAML file itself configures (`vips:` / `snat_ranges:` keys) wins over the state
// file. Format: proto sluice.v1.MuxCloudState as protobuf JSON.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "mux_lite/config.h"

namespace sluice::mux {

/// Writes `config`'s VIPs and SNAT ranges to `path` atomically.
absl::Status SaveMuxCloudState(const std::string& path, const MuxConfig& config,
                               uint64_t generation);

/// What LoadMuxCloudState took from the file.
struct AdoptedMuxState {
  size_t vips = 0;
  size_t snat_ranges = 0;
};

/// Gives `config` the VIPs and SNAT ranges in `path`, each only if the YAML has no key for
/// them (MuxConfig::file_sets_*). NOT_FOUND when there is no file (first start); any other
/// error (unreadable, malformed, another mux's, a VIP that is this mux's own PA) leaves
/// `config` unchanged and says why, naming the entry.
absl::StatusOr<AdoptedMuxState> LoadMuxCloudState(const std::string& path, MuxConfig* config);

}  // namespace sluice::mux
