#include "mux_lite/cloud_state.h"

#include "common/proto_state_file.h"
#include "common/strings.h"
#include "mux_lite/grpc_service.h"
#include "sluice/v1/mux_state.pb.h"

namespace sluice::mux {

absl::Status SaveMuxCloudState(const std::string& path, const MuxConfig& config,
                               uint64_t generation) {
  v1::MuxCloudState state;
  state.set_mux(config.name);
  state.set_config_generation(generation);
  for (const VipConfig& vip : config.vips) VipToProto(vip, state.add_vips());
  for (const SnatRangeConfig& range : config.snat_ranges) {
    SnatRangeToProto(range, state.add_snat_ranges());
  }
  return WriteProtoStateFile(path, state);
}

absl::StatusOr<AdoptedMuxState> LoadMuxCloudState(const std::string& path, MuxConfig* config) {
  v1::MuxCloudState state;
  if (absl::Status read = ReadProtoStateFile(path, "mux cloud state", &state); !read.ok()) {
    return read;
  }
  if (state.mux() != config->name) {
    return absl::FailedPreconditionError(
        StrCat(path, ": written by mux '", state.mux(), "', this is '", config->name, "'"));
  }
  // The same checks as a gRPC request carrying these (errors name "vips[i]..." / "ranges[i]").
  absl::StatusOr<std::vector<VipConfig>> vips = VipsFromProto(state.vips());
  if (!vips.ok()) return absl::InvalidArgumentError(StrCat(path, ": ", std::string(vips.status().message())));
  absl::StatusOr<std::vector<SnatRangeConfig>> ranges = SnatRangesFromProto(state.snat_ranges());
  if (!ranges.ok()) {
    return absl::InvalidArgumentError(StrCat(path, ": ", std::string(ranges.status().message())));
  }
  MuxConfig next = *config;
  AdoptedMuxState adopted;
  if (!config->file_sets_vips) {
    next.vips = std::move(*vips);
    adopted.vips = next.vips.size();
  }
  if (!config->file_sets_snat_ranges) {
    next.snat_ranges = std::move(*ranges);
    adopted.snat_ranges = next.snat_ranges.size();
  }
  absl::Status checked = CheckAgainstMux(next, *config);
  if (!checked.ok()) {
    return absl::FailedPreconditionError(StrCat(path, ": ", std::string(checked.message())));
  }
  *config = std::move(next);
  return adopted;
}

}  // namespace sluice::mux
