#include "hostagent/health_report.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdio>
#include <map>

#include "common/grpc_util.h"
#include "common/net_text.h"
#include "common/strings.h"
#include "sluice/v1/mux.grpc.pb.h"

namespace sluice::agent {
namespace {

// How often a mux thread looks at its connection while nothing else happens.
constexpr std::chrono::milliseconds kConnectionPoll{100};

class GrpcMuxHealthClient final : public MuxHealthClient {
 public:
  GrpcMuxHealthClient(const std::string& target, std::chrono::milliseconds retry_max,
                      DialOptions dial)
      : target_(target) {
    // gRPC's own reconnect backoff would grow to minutes; a mux that comes back must be seen
    // within our retry cap.
    dial.max_reconnect_backoff = std::max(retry_max, std::chrono::milliseconds(100));
    channel_ = DialSluice(target, dial);
    stub_ = v1::Mux::NewStub(channel_);
  }

  const std::string& target() const override { return target_; }

  absl::Status Push(const std::string& reporter, const std::vector<DipVerdict>& verdicts,
                    std::chrono::milliseconds timeout) override {
    v1::SetBackendHealthRequest request;
    request.set_reporter(reporter);
    for (const DipVerdict& v : verdicts) {
      v1::BackendHealth* b = request.add_backends();
      b->set_dip(Ipv4ToString(v.dip));
      b->set_healthy(v.healthy);
      b->set_reason(v.reason);
    }
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + timeout);
    v1::ChangeSummary changes;
    grpc::Status s = stub_->SetBackendHealth(&context, request, &changes);
    if (s.ok()) return absl::OkStatus();
    absl::Status status = FromGrpcStatus(s);
    return absl::Status(status.code(), StrCat("SetBackendHealth: ", status.message()));
  }

  bool ConnectionLost() override { return channel_->GetState(false) != GRPC_CHANNEL_READY; }

 private:
  std::string target_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Mux::Stub> stub_;
};

}  // namespace

std::vector<DipVerdict> LocalDipVerdicts(const std::set<uint32_t>& local_dips,
                                         const std::set<uint32_t>& checked_dips,
                                         const std::vector<DipVerdict>& decided) {
  std::map<uint32_t, DipVerdict> out;
  for (uint32_t dip : local_dips) {
    if (checked_dips.count(dip) == 0) {
      out[dip] = DipVerdict{.dip = dip, .healthy = true, .reason = "no health check"};
    }
  }
  for (const DipVerdict& v : decided) {
    if (checked_dips.count(v.dip) != 0) out[v.dip] = v;
  }
  std::vector<DipVerdict> sorted;
  for (auto& [dip, v] : out) sorted.push_back(std::move(v));
  return sorted;
}

std::unique_ptr<MuxHealthClient> NewGrpcMuxHealthClient(const std::string& target,
                                                        std::chrono::milliseconds retry_max,
                                                        const DialOptions& dial) {
  return std::make_unique<GrpcMuxHealthClient>(target, retry_max, dial);
}

HealthReporter::HealthReporter(std::string reporter, std::vector<Destination> muxes,
                               const HealthReportConfig& config)
    : reporter_(std::move(reporter)), config_(config) {
  for (Destination& d : muxes) {
    auto mux = std::make_unique<Mux>();
    mux->status.mux = d.name;
    mux->status.target = d.client->target();
    mux->client = std::move(d.client);
    muxes_.push_back(std::move(mux));
  }
  for (auto& mux : muxes_) mux->thread = std::thread([this, m = mux.get()] { Run(m); });
}

HealthReporter::~HealthReporter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  changed_.notify_all();
  for (auto& mux : muxes_) mux->thread.join();
}

void HealthReporter::SetVerdicts(std::vector<DipVerdict> verdicts) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto same = [](const DipVerdict& a, const DipVerdict& b) {
      return a.dip == b.dip && a.healthy == b.healthy && a.reason == b.reason;
    };
    if (std::equal(verdicts.begin(), verdicts.end(), verdicts_.begin(), verdicts_.end(), same)) {
      return;
    }
    verdicts_ = std::move(verdicts);
    ++version_;
    for (auto& mux : muxes_) mux->status.in_sync = false;
  }
  changed_.notify_all();
}

std::vector<MuxReportStatus> HealthReporter::Status() const {
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  std::vector<MuxReportStatus> out;
  for (const auto& mux : muxes_) {
    MuxReportStatus s = mux->status;
    if (mux->status.pushes_ok > 0) {
      s.last_ok_ms_ago =
          std::chrono::duration_cast<std::chrono::milliseconds>(now - mux->last_ok).count();
    }
    out.push_back(std::move(s));
  }
  return out;
}

void HealthReporter::Run(Mux* mux) {
  using Clock = std::chrono::steady_clock;
  std::chrono::milliseconds backoff{0};
  Clock::time_point next_attempt = Clock::now();
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (mux->pushed_version != 0) {
      lock.unlock();
      const bool lost = mux->client->ConnectionLost();
      lock.lock();
      if (stop_) break;
      if (lost) {
        // The mux restarted or went away: it may hold nothing of ours any more.
        mux->pushed_version = 0;
        mux->status.in_sync = false;
        ++mux->status.resyncs;
      }
    }
    Clock::time_point now = Clock::now();
    const bool due = mux->pushed_version != version_ || now - mux->last_ok >= config_.refresh;
    if (due && now >= next_attempt) {
      const std::vector<DipVerdict> verdicts = verdicts_;
      const uint64_t version = version_;
      lock.unlock();
      absl::Status pushed = mux->client->Push(reporter_, verdicts, config_.timeout);
      lock.lock();
      now = Clock::now();
      if (pushed.ok()) {
        if (mux->failing) {
          fprintf(stderr, "sluice-agent: health report to %s delivered again\n",
                  mux->status.mux.c_str());
          mux->failing = false;
        }
        mux->pushed_version = version;
        mux->status.in_sync = version == version_;
        ++mux->status.pushes_ok;
        mux->last_ok = now;
        backoff = std::chrono::milliseconds(0);
        next_attempt = now;
      } else {
        if (!mux->failing) {
          fprintf(stderr, "sluice-agent: health report to %s (%s) failed, retrying: %s\n",
                  mux->status.mux.c_str(), mux->status.target.c_str(),
                  std::string(pushed.message()).c_str());
          mux->failing = true;
        }
        mux->pushed_version = 0;
        mux->status.in_sync = false;
        ++mux->status.pushes_failed;
        mux->status.last_error = std::string(pushed.message());
        backoff =
            backoff.count() == 0 ? config_.retry_min : std::min(backoff * 2, config_.retry_max);
        next_attempt = now + backoff;
      }
      continue;
    }
    Clock::time_point wake =
        due ? next_attempt : std::min(now + kConnectionPoll, mux->last_ok + config_.refresh);
    changed_.wait_until(lock, wake);
  }
}

}  // namespace sluice::agent
