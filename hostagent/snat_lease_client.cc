#include "hostagent/snat_lease_client.h"

#include <ctime>

#include "common/net_text.h"
#include "common/strings.h"

namespace sluice::agent {
namespace {

bool Contains(const SnatLeaseConfig& l, uint32_t vip, uint8_t proto, uint16_t port) {
  return l.vip == vip && l.proto == proto && port >= l.port_start &&
         uint32_t{port} < uint32_t{l.port_start} + l.port_count;
}

bool SameChunk(const SnatLeaseConfig& a, const SnatLeaseConfig& b) {
  return a.dip == b.dip && a.vip == b.vip && a.proto == b.proto && a.port_start == b.port_start &&
         a.port_count == b.port_count;
}

uint32_t FlowsOn(const SnatLeaseConfig& chunk, const std::vector<SnatPortUse>& uses) {
  uint32_t n = 0;
  for (const SnatPortUse& u : uses) n += Contains(chunk, u.vip, u.proto, u.port) ? 1 : 0;
  return n;
}

std::string ChunkName(const SnatLeaseConfig& l) {
  return StrCat(Ipv4ToString(l.vip), ":", l.port_start, "+", l.port_count, "/",
                L4ProtocolName(l.proto), " of ", Ipv4ToString(l.dip));
}

}  // namespace

uint64_t SteadyControlClock::NowMs() const {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1'000'000;
}

SnatLeaseClient::SnatLeaseClient(SnatAllocatorClientConfig config, SnatAllocatorApi* allocator,
                                 SnatLeaseAgent* agent, const ControlClock* clock)
    : config_(std::move(config)),
      allocator_(allocator),
      agent_(agent),
      clock_(clock),
      next_request_ms_(config_.leases.size(), 0) {}

void SnatLeaseClient::Fail(const std::string& what, const absl::Status& why) {
  std::lock_guard<std::mutex> lock(status_mu_);
  status_.last_error = StrCat(what, ": ", why.message());
}

void SnatLeaseClient::Adopt() {
  absl::StatusOr<std::vector<SnatLeaseConfig>> listed = allocator_->ListChunks();
  if (!listed.ok()) {
    Fail("ListLeases", listed.status());
    return;
  }
  const std::vector<SnatLeaseConfig> leases = agent_->Leases();
  for (const SnatLeaseConfig& chunk : *listed) {
    bool wanted = false;
    for (const SnatDynamicLeaseConfig& t : config_.leases) {
      wanted |= t.dip == chunk.dip && t.vip == chunk.vip && t.proto == chunk.proto;
    }
    bool held = false;
    for (const HeldChunk& h : held_) held |= SameChunk(h.lease, chunk);
    if (held) continue;
    if (!wanted || !agent_->VmAttached(chunk.dip)) {
      absl::Status s = allocator_->ReturnChunk(chunk);
      if (s.ok() || absl::IsNotFound(s)) {
        std::lock_guard<std::mutex> lock(status_mu_);
        ++status_.chunks_returned;
      } else {
        Fail(StrCat("returning ", ChunkName(chunk), " (no VM wants it)"), s);
      }
      continue;
    }
    bool live = false;
    for (const SnatLeaseConfig& l : leases) live |= SameChunk(l, chunk) && l.dynamic;
    if (!live) {
      absl::Status added = agent_->AddDynamicLease(chunk);
      if (!added.ok()) {
        Fail(StrCat("adopting ", ChunkName(chunk)), added);
        continue;
      }
    }
    held_.push_back({.lease = chunk});
    std::lock_guard<std::mutex> lock(status_mu_);
    ++status_.chunks_adopted;
  }
  adopted_ = true;
}

void SnatLeaseClient::ServeTarget(const SnatDynamicLeaseConfig& target,
                                  const std::vector<SnatLeaseConfig>& leases,
                                  const std::vector<SnatPortUse>& uses, uint64_t now) {
  uint64_t leased = 0, in_use = 0;
  for (const SnatLeaseConfig& l : leases) {
    if (l.dip != target.dip || l.proto != target.proto) continue;
    leased += l.port_count;
    for (const SnatPortUse& u : uses) {
      in_use += u.dip == target.dip && Contains(l, u.vip, u.proto, u.port) ? 1 : 0;
    }
  }
  const uint64_t free_ports = leased > in_use ? leased - in_use : 0;
  const size_t index = static_cast<size_t>(&target - config_.leases.data());

  // Idle bookkeeping for this target's live chunks.
  HeldChunk* candidate = nullptr;
  for (HeldChunk& h : held_) {
    if (h.draining || h.lease.dip != target.dip || h.lease.vip != target.vip ||
        h.lease.proto != target.proto) {
      continue;
    }
    if (FlowsOn(h.lease, uses) > 0) {
      h.idle_since_ms.reset();
    } else if (!h.idle_since_ms) {
      h.idle_since_ms = now;
    }
    if (h.idle_since_ms && now - *h.idle_since_ms >= uint64_t{config_.return_idle_s} * 1000 &&
        free_ports >= uint64_t{h.lease.port_count} + config_.low_water) {
      candidate = &h;  // the newest such chunk: older ones stay
    }
  }

  if (free_ports < config_.low_water) {
    if (now < next_request_ms_[index]) return;
    {
      std::lock_guard<std::mutex> lock(status_mu_);
      ++status_.chunks_requested;
    }
    absl::StatusOr<SnatLeaseConfig> chunk =
        allocator_->RequestChunk(target.dip, target.vip, target.proto);
    absl::Status added = chunk.ok() ? agent_->AddDynamicLease(*chunk) : chunk.status();
    if (!added.ok()) {
      if (chunk.ok()) {
        // The agent refused it (e.g. it overlaps a static lease): give it straight back.
        absl::Status back = allocator_->ReturnChunk(*chunk);
        if (!back.ok() && !absl::IsNotFound(back)) {
          std::lock_guard<std::mutex> lock(status_mu_);
          ++status_.return_errors;
        }
      }
      next_request_ms_[index] = now + config_.retry_interval_ms;
      Fail(StrCat("chunk of ", Ipv4ToString(target.vip), "/", L4ProtocolName(target.proto),
                  " for ", Ipv4ToString(target.dip)),
           added);
      std::lock_guard<std::mutex> lock(status_mu_);
      ++status_.chunks_refused;
      return;
    }
    held_.push_back({.lease = *chunk});
    std::lock_guard<std::mutex> lock(status_mu_);
    ++status_.chunks_granted;
    return;
  }

  if (candidate != nullptr) {
    // Out of the data path first, so no new flow takes one of its ports; returned once a
    // later look at the flow table finds none on it.
    absl::Status removed = agent_->RemoveDynamicLease(candidate->lease);
    if (!removed.ok()) {
      Fail(StrCat("removing ", ChunkName(candidate->lease)), removed);
      return;
    }
    candidate->draining = true;
  }
}

void SnatLeaseClient::ReturnDrained(const std::vector<SnatPortUse>& uses) {
  std::erase_if(held_, [&](const HeldChunk& h) {
    if (!h.draining || FlowsOn(h.lease, uses) > 0) return false;
    absl::Status s = allocator_->ReturnChunk(h.lease);
    if (!s.ok() && !absl::IsNotFound(s)) {
      Fail(StrCat("returning ", ChunkName(h.lease)), s);
      std::lock_guard<std::mutex> lock(status_mu_);
      ++status_.return_errors;
      return false;  // again next tick
    }
    std::lock_guard<std::mutex> lock(status_mu_);
    ++status_.chunks_returned;
    return true;
  });
}

void SnatLeaseClient::Tick() {
  if (!adopted_) Adopt();
  absl::StatusOr<std::vector<SnatPortUse>> uses = agent_->SnatPortsInUse();
  if (!uses.ok()) {
    Fail("reading the flow table", uses.status());
    return;
  }
  // Chunks the agent dropped by itself (DetachVm) drain like removed ones.
  const std::vector<SnatLeaseConfig> before = agent_->Leases();
  for (HeldChunk& h : held_) {
    bool live = false;
    for (const SnatLeaseConfig& l : before) live |= l.dynamic && SameChunk(l, h.lease);
    if (!live) h.draining = true;
  }
  // Draining chunks are judged on flows read after their removal took effect (this tick's
  // read happened after last tick's removal), so a flow that slipped in is seen.
  ReturnDrained(*uses);
  if (adopted_) {
    for (const SnatDynamicLeaseConfig& target : config_.leases) {
      if (!agent_->VmAttached(target.dip)) continue;
      ServeTarget(target, agent_->Leases(), *uses, clock_->NowMs());
    }
  }
  std::lock_guard<std::mutex> lock(status_mu_);
  status_.chunks_active.clear();
  status_.chunks_draining.clear();
  for (const HeldChunk& h : held_) {
    (h.draining ? status_.chunks_draining : status_.chunks_active).push_back(h.lease);
  }
}

SnatLeaseClientStatus SnatLeaseClient::Status() const {
  std::lock_guard<std::mutex> lock(status_mu_);
  return status_;
}

}  // namespace sluice::agent
