// Strict reading of YAML configuration: every error names the file, line, column and the
// field's path (e.g. "mux1.yaml:12:9: vips[0].backends[1].weight: must be 1..65535"), and
// unknown fields are errors, not silently ignored.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "absl/status/status.h"
#include "common/net_text.h"

namespace sluice {

/// One YAML mapping being read. Getters record the first error and return a default, so a
/// reader is a flat list of field reads followed by one status() check.
class ConfigNode {
 public:
  /// Loads `path`; syntax errors come back with the file and line.
  static absl::StatusOr<ConfigNode> LoadFile(const std::string& path);
  /// Parses YAML text (tests, and configs that arrive over an API); `origin` names it.
  static absl::StatusOr<ConfigNode> LoadString(const std::string& text, const std::string& origin);

  /// Reports every key not in `allowed` as an unknown field.
  void AllowOnly(std::initializer_list<std::string_view> allowed);
  bool Has(std::string_view key) const;

  std::string String(std::string_view key);
  std::string OptionalString(std::string_view key, std::string fallback);
  uint64_t Uint(std::string_view key, uint64_t min, uint64_t max);
  uint64_t OptionalUint(std::string_view key, uint64_t fallback, uint64_t min, uint64_t max);
  uint32_t Ipv4(std::string_view key);
  Ipv4Prefix Prefix(std::string_view key);
  std::array<uint8_t, 6> Mac(std::string_view key);
  uint8_t L4Protocol(std::string_view key);
  /// A required mapping.
  ConfigNode Map(std::string_view key);
  /// A sequence of mappings; `required` makes a missing or empty one an error.
  std::vector<ConfigNode> Sequence(std::string_view key, bool required);

  /// Records an error about this node's `key` (e.g. a cross-field check).
  void Fail(std::string_view key, std::string_view message);
  /// OK, or the first error found anywhere in the document.
  absl::Status status() const;
  const std::string& path() const { return path_; }

 private:
  struct Errors {
    std::string file;
    std::string first;
  };
  ConfigNode(YAML::Node node, std::string path, std::shared_ptr<Errors> errors)
      : node_(std::move(node)), path_(std::move(path)), errors_(std::move(errors)) {}
  YAML::Node Scalar(std::string_view key, bool required);
  std::string FieldPath(std::string_view key) const;
  void FailAt(const YAML::Mark& mark, std::string_view field, std::string_view message);

  YAML::Node node_;
  std::string path_;
  std::shared_ptr<Errors> errors_;
};

}  // namespace sluice
