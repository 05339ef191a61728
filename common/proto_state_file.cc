#include "common/proto_state_file.h"

#include <google/protobuf/util/json_util.h>

#include "absl/status/statusor.h"
#include "common/files.h"
#include "common/strings.h"

namespace sluice {

absl::Status WriteProtoStateFile(const std::string& path,
                                 const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(message, &json, options).ok()) {
    return absl::InternalError(StrCat(path, ": cannot encode ", message.GetTypeName()));
  }
  return WriteFileAtomically(path, json);
}

absl::Status ReadProtoStateFile(const std::string& path, const std::string& what,
                                google::protobuf::Message* message) {
  absl::StatusOr<std::string> text = ReadWholeFile(path);
  if (!text.ok()) return text.status();
  auto parsed = google::protobuf::util::JsonStringToMessage(*text, message);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        StrCat(path, ": not a ", what, " file: ", std::string(parsed.message())));
  }
  return absl::OkStatus();
}

}  // namespace sluice
