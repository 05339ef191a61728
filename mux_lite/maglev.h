// Weighted Maglev hashing (Eisenbud et al., NSDI 2016): a lookup table of M (prime) slots,
// each naming a backend, built so that every mux with the same backend set builds the same
// table and a backend change moves few flows.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sluice::mux {

inline constexpr uint32_t kDefaultMaglevSize = 65537;

struct MaglevBackend {
  std::string key;      ///< Stable identity (e.g. "10.1.0.1"); order of backends is irrelevant.
  uint32_t weight = 1;  ///< 0 = not in the table (drained or sick).
};

class MaglevTable {
 public:
  /// Builds the table. Errors (non-prime size, no backend with weight > 0, duplicate key)
  /// return false with `*error` set. Slot values index `backends` as given.
  bool Build(const std::vector<MaglevBackend>& backends, uint32_t size, std::string* error);

  /// Backend index for a flow hash. Table must be built.
  uint32_t Lookup(uint32_t hash) const { return slots_[hash % slots_.size()]; }

  uint32_t size() const { return static_cast<uint32_t>(slots_.size()); }
  const std::vector<uint32_t>& slots() const { return slots_; }

 private:
  std::vector<uint32_t> slots_;
};

bool IsPrime(uint32_t n);

}  // namespace sluice::mux
