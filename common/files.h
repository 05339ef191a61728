// Whole-file reads and crash-safe writes for the daemons' state files (the SNAT allocator's
// lease table, the agent's cloud state).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sluice {

/// Writes `text` to `path` atomically: a temporary file in the same directory, fsync,
/// rename over `path`, fsync of the directory. A crash leaves the old or the new file.
absl::Status WriteFileAtomically(const std::string& path, const std::string& text);
/// The file's contents; NOT_FOUND if it does not exist.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);

}  // namespace sluice
