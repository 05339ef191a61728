#include "mux_lite/maglev.h"

#include <algorithm>
#include <numeric>
#include <unordered_set>

namespace sluice::mux {
namespace {

// 64-bit FNV-1a followed by a murmur3 finaliser: deterministic on every machine.
uint64_t HashKey(const std::string& key, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char c : key) {
    h ^= c;
    h *= 1099511628211ull;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

}  // namespace

bool IsPrime(uint32_t n) {
  if (n < 2) return false;
  for (uint64_t d = 2; d * d <= n; ++d) {
    if (n % d == 0) return false;
  }
  return true;
}

bool MaglevTable::Build(const std::vector<MaglevBackend>& backends, uint32_t size,
                        std::string* error) {
  if (!IsPrime(size)) {
    *error = "Maglev table size " + std::to_string(size) + " is not a prime";
    return false;
  }
  std::unordered_set<std::string> seen;
  for (const MaglevBackend& b : backends) {
    if (!seen.insert(b.key).second) {
      *error = "backend '" + b.key + "' appears twice";
      return false;
    }
  }
  // Fill in key order, not config order, so every mux builds the same table.
  std::vector<uint32_t> order;
  uint32_t max_weight = 0;
  for (uint32_t i = 0; i < backends.size(); ++i) {
    if (backends[i].weight == 0) continue;
    order.push_back(i);
    max_weight = std::max(max_weight, backends[i].weight);
  }
  if (order.empty()) {
    *error = "no backend with a weight above zero";
    return false;
  }
  std::sort(order.begin(), order.end(),
            [&](uint32_t a, uint32_t b) { return backends[a].key < backends[b].key; });

  const uint32_t n = static_cast<uint32_t>(order.size());
  std::vector<uint32_t> offset(n), skip(n), next(n, 0);
  std::vector<double> credit(n, 0.0);
  for (uint32_t i = 0; i < n; ++i) {
    const std::string& key = backends[order[i]].key;
    offset[i] = static_cast<uint32_t>(HashKey(key, 0x5bd1e995) % size);
    skip[i] = static_cast<uint32_t>(HashKey(key, 0x9e3779b9) % (size - 1) + 1);
  }
  constexpr uint32_t kEmpty = UINT32_MAX;
  slots_.assign(size, kEmpty);
  uint32_t filled = 0;
  // Each round a backend earns weight/max_weight of a turn; a whole turn claims its next
  // preferred free slot. Slot counts end up proportional to weight.
  while (filled < size) {
    for (uint32_t i = 0; i < n && filled < size; ++i) {
      credit[i] += static_cast<double>(backends[order[i]].weight) / max_weight;
      while (credit[i] >= 1.0 && filled < size) {
        credit[i] -= 1.0;
        uint32_t slot;
        do {
          slot = static_cast<uint32_t>((offset[i] + uint64_t{next[i]} * skip[i]) % size);
          ++next[i];
        } while (slots_[slot] != kEmpty);
        slots_[slot] = order[i];
        ++filled;
      }
    }
  }
  return true;
}

}  // namespace sluice::mux
