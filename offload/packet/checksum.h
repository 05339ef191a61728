// Internet checksums: full computation and incremental update (RFC 1624, eqn. 3).
#pragma once

#include <cstdint>

namespace sluice::packet {

/// One's-complement sum over `len` bytes, folded to 16 bits but not inverted.
uint16_t OnesComplementSum(const void* data, uint32_t len, uint32_t initial = 0);

/// The checksum to put into an IPv4 header (checksum field zeroed before calling).
uint16_t Ipv4HeaderChecksum(const void* ipv4_header, uint32_t header_len);

/// Incremental update of a checksum field (network order in, network order out) when a
/// 16-bit word changes from `old_word` to `new_word` (both network order).
uint16_t ChecksumUpdate16(uint16_t checksum, uint16_t old_word, uint16_t new_word);

/// Same for a 32-bit field (e.g. an IPv4 address), both values network order.
uint16_t ChecksumUpdate32(uint16_t checksum, uint32_t old_value, uint32_t new_value);

}  // namespace sluice::packet
