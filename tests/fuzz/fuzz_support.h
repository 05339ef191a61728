// Shared helpers of the fuzz targets: invariant checks that abort (so libFuzzer and the
// replay driver report them as crashes) and the record format of the multi-packet
// data-path targets.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

/// Aborts with a message when an invariant of the code under test does not hold.
#define FUZZ_CHECK(cond, ...)                                          \
  do {                                                                 \
    if (!(cond)) {                                                     \
      fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                    \
      fprintf(stderr, "\n");                                           \
      abort();                                                         \
    }                                                                  \
  } while (0)

namespace sluice::fuzz {

/// One packet of a data-path input: which port it arrives on, how far the clock moves
/// before it, and the frame.
struct Record {
  uint8_t port_selector = 0;
  uint8_t clock_step = 0;
  std::vector<uint8_t> frame;
};

/// Input format: repeated [port selector][clock step][length hi][length lo][frame bytes].
/// A short last frame takes what is left; frames are capped at `max_frame`.
inline std::vector<Record> SplitRecords(const uint8_t* data, size_t size, size_t max_frame,
                                        size_t max_records) {
  std::vector<Record> out;
  size_t at = 0;
  while (at + 4 <= size && out.size() < max_records) {
    Record r{.port_selector = data[at], .clock_step = data[at + 1]};
    size_t len = static_cast<size_t>(data[at + 2]) << 8 | data[at + 3];
    at += 4;
    len = std::min({len, size - at, max_frame});
    r.frame.assign(data + at, data + at + len);
    at += len;
    out.push_back(std::move(r));
  }
  return out;
}

/// The inverse of SplitRecords, for seed corpora.
inline void AppendRecord(std::vector<uint8_t>* out, uint8_t port_selector, uint8_t clock_step,
                         const std::vector<uint8_t>& frame) {
  out->push_back(port_selector);
  out->push_back(clock_step);
  out->push_back(static_cast<uint8_t>(frame.size() >> 8));
  out->push_back(static_cast<uint8_t>(frame.size()));
  out->insert(out->end(), frame.begin(), frame.end());
}

}  // namespace sluice::fuzz
