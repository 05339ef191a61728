#include "hostagent/agent_control.h"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <utility>
#include <vector>

#include "common/net_text.h"
#include "hostagent/health_report.h"

namespace sluice::agent {

absl::StatusOr<std::unique_ptr<AgentHealth>> StartAgentHealth(const AgentConfig& config) {
  std::vector<HealthReporter::Destination> report_to;
  for (const HealthReportMux& m : config.health_report.muxes) {
    report_to.push_back(
        {.name = m.name,
         .client = NewGrpcMuxHealthClient(m.grpc, config.health_report.retry_max,
                                          config.health_report.dial)});
  }
  return AgentHealth::Create(config, std::move(report_to));
}

bool HealthCheckedRuntime::PublishConfig(const AgentConfig& next, std::string* error) {
  if (absl::Status s = health_->Configure(next); !s.ok()) {
    *error = std::string(s.message());
    return false;
  }
  if (!data_path_->PublishConfig(next, error)) {
    if (absl::Status s = health_->Configure(published_); !s.ok()) {
      fprintf(stderr, "sluice-agent: restoring the previous health checks: %s\n",
              std::string(s.message()).c_str());
    }
    return false;
  }
  published_ = next;
  return true;
}

AgentRuntimeStatus HealthCheckedRuntime::Status() const {
  AgentRuntimeStatus s = data_path_->Status();
  s.health_checks = health_->Checks();
  s.health_reports = health_->Reports();
  return s;
}

std::unique_ptr<GrpcSnatAllocator> ConnectSnatAllocator(AgentConfig* config) {
  if (!config->snat_allocator) return nullptr;
  const SnatAllocatorClientConfig& a = *config->snat_allocator;
  // The muxes send the replies to its chunks the way this host's data path decaps: Open
  // vSwitch's userspace datapath has no IPIP, so a vswitch-mode host takes GRE.
  const v1::Encap encap = config->datapath == Datapath::kVswitch ? v1::ENCAP_GRE : v1::ENCAP_IPIP;
  auto allocator = std::make_unique<GrpcSnatAllocator>(
      a.address, config->name, config->address.addr, encap,
      std::chrono::milliseconds(a.timeout_ms), a.dial);
  absl::StatusOr<std::vector<SnatLeaseConfig>> held = allocator->ListChunks();
  if (!held.ok()) {
    fprintf(stderr, "sluice-agent %s: SNAT allocator %s: %s (its chunks are adopted later)\n",
            config->name.c_str(), a.address.c_str(), std::string(held.status().message()).c_str());
    return allocator;
  }
  for (const SnatLeaseConfig& chunk : *held) {
    bool wanted = false, overlaps = false;
    for (const SnatDynamicLeaseConfig& t : a.leases) {
      wanted |= t.dip == chunk.dip && t.vip == chunk.vip && t.proto == chunk.proto;
    }
    for (const SnatLeaseConfig& l : config->snat_leases) {
      overlaps |= l.vip == chunk.vip && l.proto == chunk.proto &&
                  chunk.port_start < uint32_t{l.port_start} + l.port_count &&
                  l.port_start < uint32_t{chunk.port_start} + chunk.port_count;
    }
    if (wanted && !overlaps) config->snat_leases.push_back(chunk);
  }
  return allocator;
}

SnatLeaseLoop::SnatLeaseLoop(const AgentConfig& config, SnatAllocatorApi* allocator,
                             AgentService* service, AgentRuntime* runtime)
    : agent_(service, runtime, config.nat.flow_capacity,
             std::chrono::milliseconds(config.snat_allocator->timeout_ms)),
      client_(*config.snat_allocator, allocator, &agent_, &clock_) {
  thread_ = std::jthread([this, name = config.name,
                          interval = config.snat_allocator->check_interval_ms](
                             std::stop_token stop) {
    std::mutex mu;
    std::condition_variable_any wake;
    SnatLeaseClientStatus logged;
    while (!stop.stop_requested()) {
      client_.Tick();
      const SnatLeaseClientStatus now = client_.Status();
      if (now.last_error != logged.last_error && !now.last_error.empty()) {
        fprintf(stderr, "sluice-agent %s: SNAT allocator: %s\n", name.c_str(),
                now.last_error.c_str());
      }
      if (now.chunks_granted != logged.chunks_granted ||
          now.chunks_returned != logged.chunks_returned ||
          now.chunks_adopted != logged.chunks_adopted) {
        fprintf(stderr,
                "sluice-agent %s: SNAT chunks: %zu active, %zu draining (granted %lu, "
                "returned %lu, adopted %lu)\n",
                name.c_str(), now.chunks_active.size(), now.chunks_draining.size(),
                static_cast<unsigned long>(now.chunks_granted),
                static_cast<unsigned long>(now.chunks_returned),
                static_cast<unsigned long>(now.chunks_adopted));
      }
      logged = now;
      std::unique_lock<std::mutex> lock(mu);
      wake.wait_for(lock, stop, std::chrono::milliseconds(interval), [] { return false; });
    }
  });
}

void SnatLeaseLoop::Stop() {
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
  }
}

void WriteLeaseStats(JsonWriter& j, const AgentConfig& config, const SnatLeaseClient* client) {
  j.Key("snat_allocator").BeginObject().Field("enabled", client != nullptr);
  if (client != nullptr) {
    const SnatLeaseClientStatus s = client->Status();
    j.Field("address", config.snat_allocator->address)
        .Field("chunks_requested", s.chunks_requested)
        .Field("chunks_granted", s.chunks_granted)
        .Field("chunks_refused", s.chunks_refused)
        .Field("chunks_returned", s.chunks_returned)
        .Field("chunks_adopted", s.chunks_adopted)
        .Field("return_errors", s.return_errors)
        .Field("chunks_active", static_cast<uint64_t>(s.chunks_active.size()))
        .Field("chunks_draining", static_cast<uint64_t>(s.chunks_draining.size()))
        .Field("last_error", s.last_error);
    j.Key("chunks").BeginArray();
    for (const auto* list : {&s.chunks_active, &s.chunks_draining}) {
      for (const SnatLeaseConfig& l : *list) {
        j.BeginObject()
            .Field("dip", Ipv4ToString(l.dip))
            .Field("vip", Ipv4ToString(l.vip))
            .Field("protocol", L4ProtocolName(l.proto))
            .Field("port_start", uint64_t{l.port_start})
            .Field("port_count", uint64_t{l.port_count})
            .Field("state", list == &s.chunks_active ? "active" : "draining")
            .EndObject();
      }
    }
    j.EndArray();
  }
  j.EndObject();
}

}  // namespace sluice::agent
