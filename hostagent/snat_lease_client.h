// Dynamic SNAT leasing on the agent's control thread (never the data path): keeps each
// configured VM's free SNAT ports above a low-water mark by asking the SNAT allocator
// (sluice-snatd) for chunks, and gives back chunks that stayed unused. The allocator, the
// agent and the clock are seams, so the decisions are tested with fakes.
//
// Per tick, for each (DIP, VIP, protocol) in `snat_allocator.leases`:
//  - free = ports of every lease of that DIP/protocol (static and dynamic) minus those held
//    by SNAT flows (open, closing, or waiting out the reuse delay);
//  - free < low_water: RequestChunk; the allocator answers only once every mux routes the
//    chunk to this host, then the chunk goes live (AddDynamicLease: the same path as
//    SetSnatLeases; returns once the data path uses it). Refusals back off retry_interval_ms;
//  - a dynamic chunk no flow has used for return_idle_s, whose ports leave ≥ low_water
//    free when it goes, is first removed from the agent (no new flow can take its ports),
//    then — at a later tick, from a fresh look at the flow table — returned once no flow
//    holds any of its ports (a flow that slipped in before the removal keeps translating and
//    the chunk waits for it to end and its reuse delay to pass).
// At start the chunks the allocator lists for this host are adopted (after a restart or a
// lost reply), and listed chunks no VM is configured for any more are returned.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "hostagent/config.h"

namespace sluice::agent {

/// Monotonic milliseconds.
class ControlClock {
 public:
  virtual ~ControlClock() = default;
  virtual uint64_t NowMs() const = 0;
};

/// CLOCK_MONOTONIC.
class SteadyControlClock : public ControlClock {
 public:
  uint64_t NowMs() const override;
};

/// The allocator, for this host (its name and PA are the implementation's).
class SnatAllocatorApi {
 public:
  virtual ~SnatAllocatorApi() = default;
  /// A chunk of vip/proto for `dip` (as a dynamic lease), routed to this host by every mux.
  virtual absl::StatusOr<SnatLeaseConfig> RequestChunk(uint32_t dip, uint32_t vip,
                                                       uint8_t proto) = 0;
  /// NOT_FOUND means the allocator no longer has it leased (already returned).
  virtual absl::Status ReturnChunk(const SnatLeaseConfig& chunk) = 0;
  /// Every chunk the allocator has leased to this host.
  virtual absl::StatusOr<std::vector<SnatLeaseConfig>> ListChunks() = 0;
};

/// A SNAT flow's port, as the client needs it.
struct SnatPortUse {
  uint32_t dip = 0;
  uint32_t vip = 0;
  uint8_t proto = 0;
  uint16_t port = 0;
};

/// The agent, as the client drives it.
class SnatLeaseAgent {
 public:
  virtual ~SnatLeaseAgent() = default;
  /// Every lease the data path serves now, static and dynamic.
  virtual std::vector<SnatLeaseConfig> Leases() = 0;
  /// False for a DIP whose VM is detached (or unknown).
  virtual bool VmAttached(uint32_t dip) = 0;
  /// Adds / removes one dynamic lease; returns once the data path uses the new leases.
  virtual absl::Status AddDynamicLease(const SnatLeaseConfig& lease) = 0;
  virtual absl::Status RemoveDynamicLease(const SnatLeaseConfig& lease) = 0;
  /// The ports of every SNAT flow in the flow table (whatever its state).
  virtual absl::StatusOr<std::vector<SnatPortUse>> SnatPortsInUse() = 0;
};

struct SnatLeaseClientStatus {
  uint64_t chunks_requested = 0;
  uint64_t chunks_granted = 0;
  uint64_t chunks_refused = 0;   ///< By the allocator (exhausted, a mux down, ...) or the agent.
  uint64_t chunks_returned = 0;
  uint64_t chunks_adopted = 0;   ///< Found leased to this host at start.
  uint64_t return_errors = 0;
  std::string last_error;
  std::vector<SnatLeaseConfig> chunks_active;    ///< Live in the data path.
  std::vector<SnatLeaseConfig> chunks_draining;  ///< Removed, waiting for their flows to end.
};

class SnatLeaseClient {
 public:
  /// All pointers must outlive the client.
  SnatLeaseClient(SnatAllocatorClientConfig config, SnatAllocatorApi* allocator,
                  SnatLeaseAgent* agent, const ControlClock* clock);

  /// One round of decisions (see the file comment). Call every check_interval_ms.
  void Tick();
  SnatLeaseClientStatus Status() const;

 private:
  struct HeldChunk {
    SnatLeaseConfig lease;
    bool draining = false;
    std::optional<uint64_t> idle_since_ms;  ///< No flow on its ports since then.
  };
  void Adopt();
  void Fail(const std::string& what, const absl::Status& why);
  void ServeTarget(const SnatDynamicLeaseConfig& target, const std::vector<SnatLeaseConfig>& leases,
                   const std::vector<SnatPortUse>& uses, uint64_t now);
  void ReturnDrained(const std::vector<SnatPortUse>& uses);

  const SnatAllocatorClientConfig config_;
  SnatAllocatorApi* allocator_;
  SnatLeaseAgent* agent_;
  const ControlClock* clock_;
  bool adopted_ = false;
  std::vector<HeldChunk> held_;
  std::vector<uint64_t> next_request_ms_;  ///< Per target: back-off after a refusal.
  mutable std::mutex status_mu_;  ///< Guards status_ (read by the stats thread).
  SnatLeaseClientStatus status_;
};

}  // namespace sluice::agent
