// A counter with one writer (a data-path lcore) and any number of readers (stats). No locked
// instructions on the data path: relaxed load + store, which readers see atomically.
#pragma once

#include <atomic>
#include <cstdint>

namespace sluice {

class Counter {
 public:
  void Add(uint64_t n = 1) {
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint64_t Get() const { return value_.load(std::memory_order_relaxed); }
  void Reset() { value_.store(0, std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

}  // namespace sluice
