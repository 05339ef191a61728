#include "common/strings.h"
#include "common/net_text.h"

#include <cstdio>


namespace sluice {

absl::StatusOr<uint32_t> ParseIpv4(std::string_view text) {
  std::vector<std::string_view> parts = SplitString(text, '.');
  if (parts.size() != 4) {
    return absl::InvalidArgumentError(StrCat("'", text, "' is not an IPv4 address"));
  }
  uint32_t addr = 0;
  for (std::string_view part : parts) {
    uint64_t octet = 0;
    if (part.empty() || part.size() > 3 || !ParseUint(part, &octet) || octet > 255) {
      return absl::InvalidArgumentError(StrCat("'", text, "' is not an IPv4 address"));
    }
    addr = addr << 8 | static_cast<uint32_t>(octet);
  }
  return addr;
}

absl::StatusOr<Ipv4Prefix> ParseIpv4Prefix(std::string_view text) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    return absl::InvalidArgumentError(
        StrCat("'", text, "' is not an IPv4 prefix (expected a.b.c.d/len)"));
  }
  absl::StatusOr<uint32_t> addr = ParseIpv4(text.substr(0, slash));
  if (!addr.ok()) return addr.status();
  uint64_t length = 0;
  if (!ParseUint(text.substr(slash + 1), &length) || length > 32) {
    return absl::InvalidArgumentError(
        StrCat("'", text, "' has a bad prefix length (0..32)"));
  }
  return Ipv4Prefix{.addr = *addr, .length = static_cast<uint8_t>(length)};
}

absl::StatusOr<std::array<uint8_t, 6>> ParseMac(std::string_view text) {
  std::vector<std::string_view> parts = SplitString(text, ':');
  std::array<uint8_t, 6> mac{};
  if (parts.size() != 6) {
    return absl::InvalidArgumentError(StrCat("'", text, "' is not a MAC address"));
  }
  for (size_t i = 0; i < 6; ++i) {
    uint64_t byte = 0;
    if (parts[i].size() != 2 || !ParseUint(parts[i], &byte, 16)) {
      return absl::InvalidArgumentError(StrCat("'", text, "' is not a MAC address"));
    }
    mac[i] = static_cast<uint8_t>(byte);
  }
  return mac;
}

absl::StatusOr<uint8_t> ParseL4Protocol(std::string_view text) {
  if (text == "tcp") return uint8_t{6};
  if (text == "udp") return uint8_t{17};
  return absl::InvalidArgumentError(
      StrCat("'", text, "' is not a supported protocol (tcp or udp)"));
}

std::string L4ProtocolName(uint8_t proto) {
  switch (proto) {
    case 6:
      return "tcp";
    case 17:
      return "udp";
    case 1:
      return "icmp";
    default:
      return StrCat(proto);
  }
}

std::string Ipv4ToString(uint32_t a) {
  char buf[16];
  snprintf(buf, sizeof(buf), "%u.%u.%u.%u", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff, a & 0xff);
  return buf;
}

std::string MacToString(const std::array<uint8_t, 6>& m) {
  char buf[18];
  snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
  return buf;
}

}  // namespace sluice
