#include "hostagent/agent_health.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>

#include "common/net_text.h"
#include "common/strings.h"

namespace sluice::agent {

absl::StatusOr<std::vector<HealthCheckConfig>> HealthChecksOf(
    const std::vector<EndpointConfig>& endpoints) {
  std::vector<HealthCheckConfig> checks;
  for (size_t i = 0; i < endpoints.size(); ++i) {
    if (!endpoints[i].health) continue;
    const HealthCheckConfig& c = *endpoints[i].health;
    const std::string field = StrCat("endpoints[", i, "].health");
    if (absl::Status s = ValidateHealthCheck(c); !s.ok()) {
      return absl::InvalidArgumentError(StrCat(field, ".", s.message()));
    }
    if (!c.netns.empty()) {
      const int fd = open(c.netns.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        return absl::FailedPreconditionError(
            StrCat(field, ".netns: ", c.netns, ": ", std::strerror(errno)));
      }
      close(fd);
    }
    checks.push_back(c);
  }
  return checks;
}

absl::StatusOr<std::unique_ptr<AgentHealth>> AgentHealth::Create(
    const AgentConfig& config, std::vector<HealthReporter::Destination> muxes) {
  std::unique_ptr<AgentHealth> health(new AgentHealth());
  if (!muxes.empty()) {
    health->reporter_ =
        std::make_unique<HealthReporter>(config.name, std::move(muxes), config.health_report);
  }
  AgentHealth* self = health.get();
  absl::StatusOr<std::unique_ptr<DipHealthMonitor>> monitor =
      DipHealthMonitor::Create([self](const DipVerdict&) { self->Publish(); });
  if (!monitor.ok()) return monitor.status();
  health->monitor_ = std::move(*monitor);
  if (absl::Status s = health->Configure(config); !s.ok()) return s;
  return health;
}

absl::Status AgentHealth::Configure(const AgentConfig& config) {
  absl::StatusOr<std::vector<HealthCheckConfig>> checks = HealthChecksOf(config.endpoints);
  if (!checks.ok()) return checks.status();
  if (absl::Status s = monitor_->SetChecks(*checks); !s.ok()) return s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    local_dips_.clear();
    for (const VmConfig& vm : config.vms) local_dips_.insert(vm.dip);
    checked_dips_.clear();
    for (const HealthCheckConfig& c : *checks) checked_dips_.insert(c.address);
  }
  Publish();
  return absl::OkStatus();
}

void AgentHealth::Publish() {
  std::lock_guard<std::mutex> lock(mu_);
  if (monitor_ == nullptr) return;
  std::vector<DipVerdict> next = LocalDipVerdicts(local_dips_, checked_dips_, monitor_->Current());
  std::map<uint32_t, bool> before;
  for (const DipVerdict& v : verdicts_) before[v.dip] = v.healthy;
  for (const DipVerdict& v : next) {
    auto it = before.find(v.dip);
    if (checked_dips_.count(v.dip) != 0 && (it == before.end() || it->second != v.healthy)) {
      fprintf(stderr, "sluice-agent: DIP %s is %s: %s\n", Ipv4ToString(v.dip).c_str(),
              v.healthy ? "healthy" : "unhealthy", v.reason.c_str());
    }
  }
  verdicts_ = std::move(next);
  if (reporter_) reporter_->SetVerdicts(verdicts_);
}

std::vector<DipVerdict> AgentHealth::Verdicts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return verdicts_;
}

std::vector<DipCheckStatus> AgentHealth::Checks() const {
  std::map<uint32_t, bool> told;
  for (const DipVerdict& v : Verdicts()) told[v.dip] = v.healthy;
  std::vector<DipCheckStatus> out;
  for (const DipHealthMonitor::CheckStatus& c : monitor_->Checks()) {
    auto it = told.find(c.config.address);
    out.push_back({.dip = c.config.address,
                   .check = HealthCheckText(c.config),
                   .state = std::string(HealthStateName(c.status.state)),
                   .last_result = c.status.last_result,
                   .probes = c.status.probes,
                   .reported = it == told.end() ? ""
                               : it->second     ? "healthy"
                                                : "unhealthy"});
  }
  return out;
}

std::vector<MuxReportStatus> AgentHealth::Reports() const {
  return reporter_ ? reporter_->Status() : std::vector<MuxReportStatus>();
}

void AgentHealth::WriteStats(JsonWriter& j) const {
  std::set<uint32_t> local, checked;
  std::vector<DipVerdict> verdicts;
  {
    std::lock_guard<std::mutex> lock(mu_);
    local = local_dips_;
    checked = checked_dips_;
    verdicts = verdicts_;
  }
  std::map<uint32_t, const DipVerdict*> told;
  for (const DipVerdict& v : verdicts) told[v.dip] = &v;
  // One row per local DIP: what the muxes are told about it.
  j.Key("dip_health").BeginArray();
  for (uint32_t dip : local) {
    auto it = told.find(dip);
    const char* state = checked.count(dip) == 0 ? "unchecked"
                        : it == told.end()      ? "deciding"
                        : it->second->healthy   ? "healthy"
                                                : "unhealthy";
    j.BeginObject()
        .Field("dip", Ipv4ToString(dip))
        .Field("state", state)
        .Field("reason", it == told.end() ? "" : it->second->reason)
        .EndObject();
  }
  j.EndArray();
  j.Key("health_checks").BeginArray();
  for (const DipCheckStatus& c : Checks()) {
    j.BeginObject()
        .Field("dip", Ipv4ToString(c.dip))
        .Field("check", c.check)
        .Field("state", c.state)
        .Field("probes", c.probes)
        .Field("last_result", c.last_result)
        .EndObject();
  }
  j.EndArray();
  j.Key("health_reports").BeginArray();
  for (const MuxReportStatus& r : Reports()) {
    j.BeginObject()
        .Field("mux", r.mux)
        .Field("target", r.target)
        .Field("in_sync", r.in_sync)
        .Field("pushes_ok", r.pushes_ok)
        .Field("pushes_failed", r.pushes_failed)
        .Field("resyncs", r.resyncs)
        .Field("last_ok_ms_ago", r.last_ok_ms_ago)
        .Field("last_error", r.last_error)
        .EndObject();
  }
  j.EndArray();
}

}  // namespace sluice::agent
