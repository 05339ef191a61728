#include "offload/packet/checksum.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

namespace sluice::packet {
namespace {

// A reference sum in host order, written the obvious way (RFC 1071 section 4.1).
uint16_t ReferenceChecksum(const std::vector<uint8_t>& b) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < b.size(); i += 2) sum += static_cast<uint32_t>(b[i] << 8 | b[i + 1]);
  if (b.size() % 2 == 1) sum += static_cast<uint32_t>(b.back()) << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return htons(static_cast<uint16_t>(~sum));
}

uint16_t WordAt(const std::vector<uint8_t>& b, size_t at) {
  uint16_t w;
  memcpy(&w, &b[at], 2);
  return w;
}

void SetWord(std::vector<uint8_t>& b, size_t at, uint16_t w) { memcpy(&b[at], &w, 2); }

// Checksum of `b` with the checksum field (bytes 0..1) zeroed, network order.
uint16_t FullChecksum(std::vector<uint8_t> b) {
  SetWord(b, 0, 0);
  return static_cast<uint16_t>(~OnesComplementSum(b.data(), static_cast<uint32_t>(b.size())));
}

TEST(ChecksumTest, KnownIpv4Header) {
  // The example header from Wikipedia's "IPv4 header checksum" article.
  const uint8_t header[20] = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                              0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
  EXPECT_EQ(ntohs(Ipv4HeaderChecksum(header, sizeof(header))), 0xb861);
  uint8_t with_sum[20];
  memcpy(with_sum, header, 20);
  with_sum[10] = 0xb8;
  with_sum[11] = 0x61;
  EXPECT_EQ(OnesComplementSum(with_sum, 20), 0xffff);  // verifies to all ones
}

TEST(ChecksumTest, MatchesReferenceOnRandomDataOfEveryLength) {
  std::mt19937 rng(1071);
  for (size_t len = 0; len < 200; ++len) {
    std::vector<uint8_t> b(len);
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    std::vector<uint8_t> unaligned(len + 1);
    memcpy(unaligned.data() + 1, b.data(), len);
    const uint16_t expected = ReferenceChecksum(b);
    EXPECT_EQ(static_cast<uint16_t>(~OnesComplementSum(b.data(), static_cast<uint32_t>(len))),
              expected)
        << "len " << len;
    EXPECT_EQ(
        static_cast<uint16_t>(~OnesComplementSum(unaligned.data() + 1, static_cast<uint32_t>(len))),
        expected)
        << "unaligned len " << len;
  }
}

TEST(ChecksumTest, InitialValueIsAddedInOnesComplement) {
  const uint8_t data[4] = {0xff, 0xff, 0x00, 0x01};
  // 0xffff + 0x0001 = 0x10000 → folds to 0x0001; plus initial 0xfffe → 0xffff.
  EXPECT_EQ(ntohs(OnesComplementSum(data, 4, htons(0xfffe))), 0xffff);
  EXPECT_EQ(ntohs(OnesComplementSum(data, 4)), 0x0001);
}

// Incremental update (RFC 1624 eqn. 3) against full recomputation. Results must be equal;
// they may differ only as +0/-0 when every other word is zero, which no IPv4/TCP/UDP header
// can be, so that case is accepted only when the data is all zero.
void ExpectIncrementalMatchesFull(const std::vector<uint8_t>& before, size_t at,
                                  uint16_t new_word) {
  std::vector<uint8_t> after = before;
  SetWord(after, at, new_word);
  const uint16_t old_sum = FullChecksum(before);
  const uint16_t expected = FullChecksum(after);
  const uint16_t got = ChecksumUpdate16(old_sum, WordAt(before, at), new_word);
  std::vector<uint8_t> rest = after;
  SetWord(rest, 0, 0);
  bool all_zero = true;
  for (uint8_t x : rest) all_zero = all_zero && x == 0;
  if (all_zero) {
    EXPECT_TRUE(got == 0 || got == 0xffff);
  } else {
    EXPECT_EQ(got, expected) << "old checksum " << std::hex << old_sum << " word " << at;
  }
}

TEST(ChecksumTest, Incremental16MatchesFullOnRandomData) {
  std::mt19937 rng(1624);
  for (int iter = 0; iter < 200000; ++iter) {
    std::vector<uint8_t> b(2 * (2 + rng() % 20));
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    if (iter % 7 == 0) std::fill(b.begin(), b.end(), 0);
    if (iter % 11 == 0) std::fill(b.begin(), b.end(), 0xff);
    const size_t at = 2 * (1 + rng() % (b.size() / 2 - 1));
    uint16_t new_word = static_cast<uint16_t>(rng());
    switch (iter % 5) {
      case 0:
        new_word = 0x0000;
        break;
      case 1:
        new_word = 0xffff;
        break;
      default:
        break;
    }
    ExpectIncrementalMatchesFull(b, at, new_word);
  }
}

TEST(ChecksumTest, IncrementalCornerCases) {
  // Old checksum 0x0000: the data sums to 0xffff.
  std::vector<uint8_t> b = {0, 0, 0xff, 0xff, 0, 0};
  ASSERT_EQ(FullChecksum(b), 0x0000);
  ExpectIncrementalMatchesFull(b, 4, htons(0x1234));
  ExpectIncrementalMatchesFull(b, 2, 0x0000);
  ExpectIncrementalMatchesFull(b, 2, 0xffff);

  // New checksum 0x0000: choose the new word so that the data sums to 0xffff.
  std::mt19937 rng(3);
  for (int iter = 0; iter < 10000; ++iter) {
    std::vector<uint8_t> d(12);
    for (auto& x : d) x = static_cast<uint8_t>(rng());
    SetWord(d, 0, 0);
    const size_t at = 2 + 2 * (rng() % 5);
    std::vector<uint8_t> others = d;
    SetWord(others, at, 0);
    const uint16_t rest = OnesComplementSum(others.data(), 12);
    const uint16_t new_word = static_cast<uint16_t>(~rest);
    std::vector<uint8_t> after = d;
    SetWord(after, at, new_word);
    ASSERT_EQ(FullChecksum(after), 0x0000);
    ExpectIncrementalMatchesFull(d, at, new_word);
  }
}

TEST(ChecksumTest, Incremental32MatchesFullOnRandomData) {
  std::mt19937 rng(32);
  for (int iter = 0; iter < 100000; ++iter) {
    std::vector<uint8_t> b(20);
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    const size_t at = 4 + 4 * (rng() % 4);
    uint32_t old_value;
    memcpy(&old_value, &b[at], 4);
    uint32_t new_value = static_cast<uint32_t>(rng());
    if (iter % 4 == 0) new_value = 0;
    if (iter % 4 == 1) new_value = 0xffffffffu;
    std::vector<uint8_t> after = b;
    memcpy(&after[at], &new_value, 4);
    EXPECT_EQ(ChecksumUpdate32(FullChecksum(b), old_value, new_value), FullChecksum(after));
  }
}

TEST(ChecksumTest, UnchangedWordLeavesChecksum) {
  EXPECT_EQ(ChecksumUpdate16(htons(0x1234), htons(0xabcd), htons(0xabcd)), htons(0x1234));
  EXPECT_EQ(ChecksumUpdate32(htons(0x1234), 0xdeadbeef, 0xdeadbeef), htons(0x1234));
}

}  // namespace
}  // namespace sluice::packet
