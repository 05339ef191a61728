#include "common/strings.h"
#include "common/config_reader.h"

#include <algorithm>


namespace sluice {
namespace {

std::string MarkText(const std::string& file, const YAML::Mark& mark) {
  if (mark.is_null()) return file;
  return StrCat(file, ":", mark.line + 1, ":", mark.column + 1);
}

std::string JoinKeys(std::initializer_list<std::string_view> keys) {
  std::string out;
  for (std::string_view k : keys) {
    if (!out.empty()) out += ", ";
    out += k;
  }
  return out;
}

}  // namespace

absl::StatusOr<ConfigNode> ConfigNode::LoadString(const std::string& text,
                                                  const std::string& origin) {
  auto errors = std::make_shared<Errors>(Errors{.file = origin});
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        StrCat(MarkText(origin, e.mark), ": YAML syntax error: ", e.msg));
  }
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(
        StrCat(origin, ": expected a mapping at the top level"));
  }
  return ConfigNode(root, "", errors);
}

absl::StatusOr<ConfigNode> ConfigNode::LoadFile(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return absl::NotFoundError(StrCat(path, ": cannot open file"));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        StrCat(MarkText(path, e.mark), ": YAML syntax error: ", e.msg));
  }
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(StrCat(path, ": expected a mapping at the top level"));
  }
  return ConfigNode(root, "", std::make_shared<Errors>(Errors{.file = path}));
}

std::string ConfigNode::FieldPath(std::string_view key) const {
  return path_.empty() ? std::string(key) : StrCat(path_, ".", key);
}

void ConfigNode::FailAt(const YAML::Mark& mark, std::string_view field,
                        std::string_view message) {
  if (!errors_->first.empty()) return;
  errors_->first = StrCat(MarkText(errors_->file, mark), ": ", field, ": ", message);
}

void ConfigNode::Fail(std::string_view key, std::string_view message) {
  YAML::Node child = node_[std::string(key)];
  FailAt(child.IsDefined() ? child.Mark() : node_.Mark(), FieldPath(key), message);
}

absl::Status ConfigNode::status() const {
  if (errors_->first.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(errors_->first);
}

void ConfigNode::AllowOnly(std::initializer_list<std::string_view> allowed) {
  for (const auto& entry : node_) {
    std::string key = entry.first.as<std::string>("");
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      FailAt(entry.first.Mark(), FieldPath(key),
             StrCat("unknown field (expected one of: ", JoinKeys(allowed), ")"));
    }
  }
}

bool ConfigNode::Has(std::string_view key) const {
  return node_[std::string(key)].IsDefined() && !node_[std::string(key)].IsNull();
}

YAML::Node ConfigNode::Scalar(std::string_view key, bool required) {
  YAML::Node child = node_[std::string(key)];
  if (!child.IsDefined() || child.IsNull()) {
    if (required) FailAt(node_.Mark(), FieldPath(key), "required field is missing");
    return YAML::Node();
  }
  if (!child.IsScalar()) {
    FailAt(child.Mark(), FieldPath(key), "expected a single value");
    return YAML::Node();
  }
  return child;
}

std::string ConfigNode::String(std::string_view key) {
  YAML::Node n = Scalar(key, true);
  return n.IsDefined() && !n.IsNull() ? n.Scalar() : "";
}

std::string ConfigNode::OptionalString(std::string_view key, std::string fallback) {
  YAML::Node n = Scalar(key, false);
  return n.IsDefined() && !n.IsNull() ? n.Scalar() : fallback;
}

uint64_t ConfigNode::Uint(std::string_view key, uint64_t min, uint64_t max) {
  if (!Has(key)) {
    Scalar(key, true);
    return min;
  }
  return OptionalUint(key, min, min, max);
}

uint64_t ConfigNode::OptionalUint(std::string_view key, uint64_t fallback, uint64_t min,
                                  uint64_t max) {
  YAML::Node n = Scalar(key, false);
  if (!n.IsDefined() || n.IsNull()) return fallback;
  uint64_t value = 0;
  if (!ParseUint(n.Scalar(), &value)) {
    FailAt(n.Mark(), FieldPath(key), StrCat("'", n.Scalar(), "' is not a whole number"));
    return fallback;
  }
  if (value < min || value > max) {
    FailAt(n.Mark(), FieldPath(key), StrCat("must be between ", min, " and ", max,
                                                  ", got ", value));
    return fallback;
  }
  return value;
}

uint32_t ConfigNode::Ipv4(std::string_view key) {
  YAML::Node n = Scalar(key, true);
  if (!n.IsDefined() || n.IsNull()) return 0;
  absl::StatusOr<uint32_t> a = ParseIpv4(n.Scalar());
  if (!a.ok()) FailAt(n.Mark(), FieldPath(key), std::string(a.status().message()));
  return a.value_or(0);
}

Ipv4Prefix ConfigNode::Prefix(std::string_view key) {
  YAML::Node n = Scalar(key, true);
  if (!n.IsDefined() || n.IsNull()) return {};
  absl::StatusOr<Ipv4Prefix> p = ParseIpv4Prefix(n.Scalar());
  if (!p.ok()) FailAt(n.Mark(), FieldPath(key), std::string(p.status().message()));
  return p.value_or(Ipv4Prefix{});
}

std::array<uint8_t, 6> ConfigNode::Mac(std::string_view key) {
  YAML::Node n = Scalar(key, true);
  if (!n.IsDefined() || n.IsNull()) return {};
  absl::StatusOr<std::array<uint8_t, 6>> m = ParseMac(n.Scalar());
  if (!m.ok()) FailAt(n.Mark(), FieldPath(key), std::string(m.status().message()));
  return m.value_or(std::array<uint8_t, 6>{});
}

uint8_t ConfigNode::L4Protocol(std::string_view key) {
  YAML::Node n = Scalar(key, true);
  if (!n.IsDefined() || n.IsNull()) return 0;
  absl::StatusOr<uint8_t> p = ParseL4Protocol(n.Scalar());
  if (!p.ok()) FailAt(n.Mark(), FieldPath(key), std::string(p.status().message()));
  return p.value_or(0);
}

ConfigNode ConfigNode::Map(std::string_view key) {
  YAML::Node child = node_[std::string(key)];
  if (!child.IsDefined() || child.IsNull()) {
    FailAt(node_.Mark(), FieldPath(key), "required section is missing");
    return ConfigNode(YAML::Node(YAML::NodeType::Map), FieldPath(key), errors_);
  }
  if (!child.IsMap()) {
    FailAt(child.Mark(), FieldPath(key), "expected a mapping");
    return ConfigNode(YAML::Node(YAML::NodeType::Map), FieldPath(key), errors_);
  }
  return ConfigNode(child, FieldPath(key), errors_);
}

std::vector<ConfigNode> ConfigNode::Sequence(std::string_view key, bool required) {
  std::vector<ConfigNode> out;
  YAML::Node child = node_[std::string(key)];
  if (!child.IsDefined() || child.IsNull() || (child.IsSequence() && child.size() == 0)) {
    if (required) FailAt(node_.Mark(), FieldPath(key), "at least one entry is required");
    return out;
  }
  if (!child.IsSequence()) {
    FailAt(child.Mark(), FieldPath(key), "expected a list");
    return out;
  }
  for (size_t i = 0; i < child.size(); ++i) {
    std::string item_path = StrCat(FieldPath(key), "[", i, "]");
    if (!child[i].IsMap()) {
      FailAt(child[i].Mark(), item_path, "expected a mapping");
      continue;
    }
    out.push_back(ConfigNode(child[i], item_path, errors_));
  }
  return out;
}

}  // namespace sluice
