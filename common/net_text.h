// Text forms of network addresses used in configs and stats.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace sluice {

/// "10.0.0.1" → host-order address.
absl::StatusOr<uint32_t> ParseIpv4(std::string_view text);

struct Ipv4Prefix {
  uint32_t addr = 0;  ///< host order
  uint8_t length = 32;
  uint32_t Mask() const { return length == 0 ? 0 : ~uint32_t{0} << (32 - length); }
  bool Contains(uint32_t a) const { return (a & Mask()) == (addr & Mask()); }
};

/// "10.0.0.1/24" → address + prefix length (the address keeps its host bits).
absl::StatusOr<Ipv4Prefix> ParseIpv4Prefix(std::string_view text);

/// "02:00:0a:01:00:01" → bytes.
absl::StatusOr<std::array<uint8_t, 6>> ParseMac(std::string_view text);

/// "tcp" | "udp" → IP protocol number.
absl::StatusOr<uint8_t> ParseL4Protocol(std::string_view text);
std::string L4ProtocolName(uint8_t proto);

std::string Ipv4ToString(uint32_t addr);
std::string MacToString(const std::array<uint8_t, 6>& mac);

}  // namespace sluice
