// Every reason Sluice's data path drops a packet. Each has a stable snake_case name that
// stats, logs and tests use; adding a reason means adding it here and to kDropReasonNames.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace sluice {

enum class DropReason : uint8_t {
  kMalformed = 0,       ///< Header fields that cannot be valid (bad IHL, bad total length ...).
  kTruncated,           ///< Frame shorter than the headers it announces.
  kNotIpv4,             ///< Ethertype we do not handle (IPv6, VLAN ...).
  kFragment,            ///< IPv4 fragment: L4 ports unknown, not load-balanced.
  kNoRule,              ///< No rule / VIP / endpoint matches.
  kDroppedByRule,       ///< A rule's explicit drop action.
  kTtlExceeded,         ///< TTL would reach zero.
  kNoBackend,           ///< VIP has no usable backend.
  kNeighborUnresolved,  ///< Next hop's MAC not yet known (ARP sent).
  kNoHeadroom,          ///< Not enough mbuf headroom to encapsulate.
  kTxFull,              ///< Port TX queue refused the packet.
  kNotForUs,            ///< Tunnel or ARP addressed to somebody else.
  kUnsupportedProto,    ///< L4 protocol the rule cannot rewrite.
  kCount
};

inline constexpr size_t kNumDropReasons = static_cast<size_t>(DropReason::kCount);

inline constexpr std::array<std::string_view, kNumDropReasons> kDropReasonNames = {
    "malformed",   "truncated",      "not_ipv4",    "fragment",           "no_rule",
    "dropped_by_rule", "ttl_exceeded", "no_backend", "neighbor_unresolved", "no_headroom",
    "tx_full",     "not_for_us",     "unsupported_proto",
};

inline constexpr std::string_view DropReasonName(DropReason r) {
  return kDropReasonNames[static_cast<size_t>(r)];
}

}  // namespace sluice
