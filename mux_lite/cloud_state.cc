#include "mux_lite/cloud_state.h"

#include <google/protobuf/util/json_util.h>

#include "common/files.h"
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
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(state, &json, options).ok()) {
    return absl::InternalError(StrCat(path, ": cannot encode the cloud state"));
  }
  return WriteFileAtomically(path, json);
}

absl::StatusOr<AdoptedMuxState> LoadMuxCloudState(const std::string& path, MuxConfig* config) {
  absl::StatusOr<std::string> text = ReadWholeFile(path);
  if (!text.ok()) return text.status();
  v1::MuxCloudState state;
  auto parsed = google::protobuf::util::JsonStringToMessage(*text, &state);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        StrCat(path, ": not a mux cloud state file: ", std::string(parsed.message())));
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
