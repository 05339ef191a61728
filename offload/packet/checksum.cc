#include "offload/packet/checksum.h"

#include <cstring>

namespace sluice::packet {
namespace {

// Folds a 32-bit one's-complement accumulator to 16 bits with end-around carry.
inline uint16_t Fold(uint32_t sum) {
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

}  // namespace

// Words are summed in memory order: the one's-complement sum is byte-order independent, so
// the result is already in network order when stored back with memcpy.
uint16_t OnesComplementSum(const void* data, uint32_t len, uint32_t initial) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  uint64_t sum = initial;
  while (len >= 8) {
    uint32_t a;
    uint32_t b;
    memcpy(&a, p, 4);
    memcpy(&b, p + 4, 4);
    sum += static_cast<uint64_t>(a) + b;
    p += 8;
    len -= 8;
  }
  while (len >= 2) {
    uint16_t w;
    memcpy(&w, p, 2);
    sum += w;
    p += 2;
    len -= 2;
  }
  if (len == 1) {
    const uint8_t last[2] = {*p, 0};
    uint16_t w;
    memcpy(&w, last, 2);
    sum += w;
  }
  sum = (sum & 0xffffffffu) + (sum >> 32);
  sum = (sum & 0xffffffffu) + (sum >> 32);
  return Fold(static_cast<uint32_t>(sum));
}

uint16_t Ipv4HeaderChecksum(const void* ipv4_header, uint32_t header_len) {
  return static_cast<uint16_t>(~OnesComplementSum(ipv4_header, header_len));
}

uint16_t ChecksumUpdate16(uint16_t checksum, uint16_t old_word, uint16_t new_word) {
  // RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m').
  uint32_t sum = static_cast<uint16_t>(~checksum) +
                 static_cast<uint32_t>(static_cast<uint16_t>(~old_word)) + new_word;
  return static_cast<uint16_t>(~Fold(sum));
}

uint16_t ChecksumUpdate32(uint16_t checksum, uint32_t old_value, uint32_t new_value) {
  uint32_t sum = static_cast<uint16_t>(~checksum);
  sum += static_cast<uint16_t>(~old_value) +
         static_cast<uint32_t>(static_cast<uint16_t>(~(old_value >> 16)));
  sum += (new_value & 0xffff) + (new_value >> 16);
  return static_cast<uint16_t>(~Fold(sum));
}

}  // namespace sluice::packet
