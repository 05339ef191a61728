// A daemon's state file holding one protobuf message as JSON (field names as in the .proto):
// the agent's and the mux's cloud state. Written atomically (common/files.h), read back
// strictly: an unknown field or a value of the wrong type is refused, not skipped.
#pragma once

#include <google/protobuf/message.h>

#include <string>

#include "absl/status/status.h"

namespace sluice {

/// Encodes `message` as indented JSON and writes it to `path` atomically.
absl::Status WriteProtoStateFile(const std::string& path, const google::protobuf::Message& message);

/// Reads `path` into `message`. NOT_FOUND when there is no file; INVALID_ARGUMENT
/// "<path>: not a <what> file: <parser's reason>" when it does not parse.
absl::Status ReadProtoStateFile(const std::string& path, const std::string& what,
                                google::protobuf::Message* message);

}  // namespace sluice
