// The hand-off between a data-path lcore and the control thread that owns the NIC executor:
// a single-producer/single-consumer ring of small fixed-size messages (flows offered to the
// NIC, flows withdrawn, and the answers going back). Lock-free, no allocation after
// construction, never blocks: a full ring refuses the message and counts it. The mux's
// workers and the agent's lcore use it; only the control thread calls rte_flow.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "offload/packet/counter.h"

namespace sluice::nic {

/// `T` must be trivially copyable; `kSize` a power of two.
template <typename T, uint32_t kSize>
class OfferRing {
  static_assert((kSize & (kSize - 1)) == 0, "kSize must be a power of two");

 public:
  static constexpr uint32_t kCapacity = kSize;

  /// Producer side. False (and `full` counted) when the consumer has not caught up.
  bool Push(const T& message) {
    const uint32_t head = head_.load(std::memory_order_relaxed);
    if (head - tail_.load(std::memory_order_acquire) == kSize) {
      full.Add();
      return false;
    }
    slots_[head & (kSize - 1)] = message;
    head_.store(head + 1, std::memory_order_release);
    pushed.Add();
    return true;
  }

  /// Consumer side. False when empty.
  bool Pop(T* message) {
    const uint32_t tail = tail_.load(std::memory_order_relaxed);
    if (tail == head_.load(std::memory_order_acquire)) return false;
    *message = slots_[tail & (kSize - 1)];
    tail_.store(tail + 1, std::memory_order_release);
    return true;
  }

  /// Messages waiting (either side; a snapshot).
  uint32_t size() const {
    return head_.load(std::memory_order_acquire) - tail_.load(std::memory_order_acquire);
  }

  Counter pushed;  ///< Written by the producer.
  Counter full;    ///< Written by the producer: messages refused for want of room.

 private:
  std::array<T, kSize> slots_{};
  alignas(64) std::atomic<uint32_t> head_{0};  ///< Written by the producer.
  alignas(64) std::atomic<uint32_t> tail_{0};  ///< Written by the consumer.
};

}  // namespace sluice::nic
