#include "controller/snat_allocator.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <tuple>

#include "common/config_reader.h"
#include "common/grpc_util.h"
#include "common/net_text.h"
#include "common/strings.h"
#include "sluice/v1/mux.grpc.pb.h"

namespace sluice::snatd {
namespace {

absl::StatusOr<SnatAllocatorConfig> ReadConfig(ConfigNode& root) {
  SnatAllocatorConfig config;
  root.AllowOnly({"allocator", "muxes", "pools"});
  ConfigNode a = root.Map("allocator");
  a.AllowOnly({"name", "state_file", "mux_timeout_ms", "resync_interval_ms", "mux_tls"});
  config.name = a.OptionalString("name", config.name);
  config.state_file = a.OptionalString("state_file", config.state_file);
  if (config.state_file.empty() || config.state_file[0] != '/') {
    a.Fail("state_file", "must be an absolute path");
  }
  config.mux_timeout_ms =
      static_cast<uint32_t>(a.OptionalUint("mux_timeout_ms", config.mux_timeout_ms, 10, 60000));
  config.resync_interval_ms = static_cast<uint32_t>(
      a.OptionalUint("resync_interval_ms", config.resync_interval_ms, 100, 3600 * 1000));
  config.mux_dial = ReadClientTls(a, "mux_tls");
  std::set<std::string> addresses;
  for (ConfigNode& m : root.Sequence("muxes", true)) {
    m.AllowOnly({"address"});
    const std::string address = m.String("address");
    if (address.empty()) m.Fail("address", "must not be empty");
    if (!addresses.insert(address).second) m.Fail("address", StrCat("'", address, "' twice"));
    config.muxes.push_back(address);
  }
  std::vector<ConfigNode> pool_nodes = root.Sequence("pools", true);
  for (ConfigNode& p : pool_nodes) {
    p.AllowOnly({"vip", "protocol", "port_start", "port_count", "chunk_ports"});
    SnatPoolConfig pool;
    pool.vip = p.Ipv4("vip");
    pool.proto = p.L4Protocol("protocol");
    pool.port_start = static_cast<uint16_t>(p.Uint("port_start", 1, 65535));
    pool.port_count = static_cast<uint32_t>(p.Uint("port_count", 1, 65535));
    pool.chunk_ports = static_cast<uint32_t>(p.OptionalUint("chunk_ports", 64, 1, 65535));
    config.pools.push_back(pool);
  }
  if (!root.status().ok()) return root.status();
  absl::Status pools = SnatLeaseTable::CheckPools(config.pools);
  if (!pools.ok()) {
    // "pools[i].field: why" → the file position of that pool.
    const std::string text(pools.message());
    const size_t open = text.find('[');
    uint64_t index = 0;
    if (open != std::string::npos &&
        ParseUint(text.substr(open + 1, text.find(']') - open - 1), &index) &&
        index < pool_nodes.size()) {
      const size_t dot = text.find('.'), colon = text.find(": ");
      pool_nodes[index].Fail(text.substr(dot + 1, colon - dot - 1), text.substr(colon + 2));
      return root.status();
    }
    return pools;
  }
  return config;
}

static_assert(static_cast<int>(HostEncap::kIpip) == v1::ENCAP_IPIP &&
              static_cast<int>(HostEncap::kGue) == v1::ENCAP_GUE &&
              static_cast<int>(HostEncap::kGre) == v1::ENCAP_GRE);

using RangeKey = std::tuple<std::string, int, uint32_t, uint32_t, std::string, bool, int>;
RangeKey KeyOf(const v1::SnatRange& r) {
  // A mux lists IPIP for a range it was given without an encapsulation: the same range.
  const int encap = r.encap() == v1::ENCAP_UNSPECIFIED ? v1::ENCAP_IPIP : r.encap();
  return {r.vip(), r.protocol(), r.port_start(), r.port_count(), r.host(), r.dynamic(), encap};
}

class GrpcMuxRangeClient final : public MuxRangeClient {
 public:
  GrpcMuxRangeClient(std::string address, uint32_t timeout_ms, const DialOptions& dial)
      : address_(std::move(address)),
        timeout_(timeout_ms),
        stub_(v1::Mux::NewStub(DialSluice(address_, dial))) {}
  const std::string& address() const override { return address_; }

  absl::Status Sync(const std::vector<SnatPoolConfig>& pools,
                    const std::vector<SnatChunkLease>& leases) override {
    for (int attempt = 0; attempt < 3; ++attempt) {
      v1::GetSnatRangesResponse current;
      {
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + timeout_);
        context.set_wait_for_ready(true);  // a mux (re)starting: wait, up to the deadline
        grpc::Status s = stub_->GetSnatRanges(&context, v1::GetSnatRangesRequest(), &current);
        if (!s.ok()) return Error("GetSnatRanges", s);
      }
      bool changed = false;
      absl::StatusOr<std::vector<v1::SnatRange>> merged =
          MergeSnatRanges(current.ranges(), pools, leases, &changed);
      if (!merged.ok()) {
        return absl::Status(merged.status().code(),
                            StrCat("mux ", address_, ": ", merged.status().message()));
      }
      if (!changed) return absl::OkStatus();
      v1::SetSnatRangesRequest request;
      for (v1::SnatRange& r : *merged) *request.add_ranges() = std::move(r);
      request.set_expected_generation(current.config_generation());
      v1::ChangeSummary summary;
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + timeout_);
      context.set_wait_for_ready(true);
      grpc::Status s = stub_->SetSnatRanges(&context, request, &summary);
      if (s.ok()) return absl::OkStatus();
      // Someone changed the mux between our read and write: read again.
      if (s.error_code() != grpc::StatusCode::FAILED_PRECONDITION ||
          s.error_message().find("expected_generation") == std::string::npos) {
        return Error("SetSnatRanges", s);
      }
    }
    return absl::UnavailableError(
        StrCat("mux ", address_, ": its config kept changing under SetSnatRanges"));
  }

 private:
  absl::Status Error(const char* call, const grpc::Status& s) const {
    return absl::UnavailableError(
        StrCat("mux ", address_, ": ", call, ": ", s.error_message(), " (", s.error_code(), ")"));
  }
  std::string address_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<v1::Mux::Stub> stub_;
};

}  // namespace

absl::StatusOr<SnatAllocatorConfig> LoadSnatAllocatorConfig(const std::string& path) {
  absl::StatusOr<ConfigNode> root = ConfigNode::LoadFile(path);
  if (!root.ok()) return root.status();
  return ReadConfig(*root);
}

absl::StatusOr<SnatAllocatorConfig> ParseSnatAllocatorConfig(const std::string& yaml,
                                                             const std::string& origin) {
  absl::StatusOr<ConfigNode> root = ConfigNode::LoadString(yaml, origin);
  if (!root.ok()) return root.status();
  return ReadConfig(*root);
}

std::unique_ptr<MuxRangeClient> MakeGrpcMuxRangeClient(const std::string& address,
                                                       uint32_t timeout_ms,
                                                       const DialOptions& dial) {
  return std::make_unique<GrpcMuxRangeClient>(address, timeout_ms, dial);
}

v1::Encap HostEncapToProto(HostEncap encap) { return static_cast<v1::Encap>(encap); }

absl::StatusOr<HostEncap> HostEncapField(int value, const std::string& field) {
  switch (value) {
    case v1::ENCAP_UNSPECIFIED:
    case v1::ENCAP_IPIP:
      return HostEncap::kIpip;
    case v1::ENCAP_GUE:
      return HostEncap::kGue;
    case v1::ENCAP_GRE:
      return HostEncap::kGre;
    default:
      return FieldError(field, StrCat(value, " is not an encapsulation (ENCAP_IPIP, ENCAP_GUE "
                                             "or ENCAP_GRE)"));
  }
}

absl::StatusOr<std::vector<v1::SnatRange>> MergeSnatRanges(
    const google::protobuf::RepeatedPtrField<v1::SnatRange>& current,
    const std::vector<SnatPoolConfig>& pools, const std::vector<SnatChunkLease>& leases,
    bool* changed) {
  std::vector<v1::SnatRange> out;
  for (const v1::SnatRange& r : current) {
    absl::StatusOr<uint32_t> vip = ParseIpv4(r.vip());
    const uint32_t first = r.port_start();
    const uint32_t last = first + r.port_count() - 1;
    bool inside = false;
    for (const SnatPoolConfig& p : pools) {
      const uint32_t p_last = uint32_t{p.port_start} + p.port_count - 1;
      const bool same_proto = r.protocol() == v1::L4_PROTOCOL_UNSPECIFIED ||
                              static_cast<int>(r.protocol()) == p.proto;
      if (!vip.ok() || *vip != p.vip || !same_proto || last < p.port_start || p_last < first) {
        continue;
      }
      if (first < p.port_start || last > p_last ||
          r.protocol() == v1::L4_PROTOCOL_UNSPECIFIED) {
        return absl::FailedPreconditionError(
            StrCat("its SNAT range ", r.vip(), ":", first, "-", last, " (host ", r.host(),
                   ") overlaps the allocator's pool ", PoolText(p),
                   " without being one of its chunks; take it out of the mux's snat_ranges or "
                   "the pool"));
      }
      inside = true;
    }
    if (!inside) out.push_back(r);
  }
  for (const SnatChunkLease& l : leases) {
    v1::SnatRange r;
    r.set_vip(Ipv4ToString(l.vip));
    r.set_protocol(ProtocolToProto(l.proto));
    r.set_port_start(l.port_start);
    r.set_port_count(l.port_count);
    r.set_host(Ipv4ToString(l.host_pa));
    r.set_dynamic(true);
    r.set_encap(HostEncapToProto(l.encap));
    out.push_back(std::move(r));
  }
  std::set<RangeKey> before, after;
  for (const v1::SnatRange& r : current) before.insert(KeyOf(r));
  for (const v1::SnatRange& r : out) after.insert(KeyOf(r));
  *changed = before != after;
  return out;
}

SnatAllocator::SnatAllocator(SnatAllocatorConfig config,
                             std::vector<std::unique_ptr<MuxRangeClient>> muxes)
    : config_(std::move(config)), muxes_(std::move(muxes)), table_(config_.pools) {
  for (const auto& mux : muxes_) mux_status_.push_back({.address = mux->address()});
}

absl::Status SnatAllocator::LoadState() {
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<std::string> text = ReadWholeFile(config_.state_file);
  if (absl::IsNotFound(text.status())) return absl::OkStatus();
  if (!text.ok()) return text.status();
  return table_.Restore(*text, config_.state_file);
}

absl::Status SnatAllocator::Persist() {
  return WriteFileAtomically(config_.state_file, table_.Serialize());
}

absl::Status SnatAllocator::SyncAll() {
  const std::vector<SnatChunkLease> leases = table_.Leases();
  absl::Status first = absl::OkStatus();
  for (size_t m = 0; m < muxes_.size(); ++m) {
    absl::Status s = muxes_[m]->Sync(config_.pools, leases);
    MuxSyncStatus& status = mux_status_[m];
    status.in_sync = s.ok();
    if (s.ok()) {
      status.synced_generation = table_.generation();
      status.last_error.clear();
    } else {
      ++counters_.mux_sync_errors;
      status.last_error = std::string(s.message());
      if (first.ok()) first = s;
    }
  }
  return first;
}

void SnatAllocator::Refuse(const absl::Status& why) {
  ++counters_.chunks_refused;
  if (absl::IsResourceExhausted(why)) ++counters_.chunks_exhausted;
  counters_.last_error = std::string(why.message());
}

absl::StatusOr<SnatChunkLease> SnatAllocator::RequestChunk(const std::string& host,
                                                           uint32_t host_pa, uint32_t dip,
                                                           uint32_t vip, uint8_t proto,
                                                           HostEncap encap) {
  std::lock_guard<std::mutex> lock(mu_);
  ++counters_.chunks_requested;
  absl::StatusOr<SnatChunkLease> lease = table_.Lease(host, host_pa, dip, vip, proto, encap);
  if (!lease.ok()) {
    Refuse(lease.status());
    return lease.status();
  }
  auto undo = [&](const absl::Status& why) -> absl::Status {
    // Best effort: the muxes that took the chunk forget it again (Resync retries the rest).
    table_.Release(host, dip, vip, proto, lease->port_start).IgnoreError();
    Persist().IgnoreError();
    SyncAll().IgnoreError();
    Refuse(why);
    return why;
  };
  // Recorded before any mux hears of it, so a restart can never hand it out again.
  absl::Status persisted = Persist();
  if (!persisted.ok()) {
    return undo(absl::UnavailableError(StrCat("state file: ", persisted.message())));
  }
  absl::Status synced = SyncAll();
  if (!synced.ok()) {
    return undo(absl::UnavailableError(
        StrCat(synced.message(), " (chunk not leased: every mux must know a chunk before the "
                                 "host may use it; ask again later)")));
  }
  ++counters_.chunks_granted;
  return lease;
}

absl::Status SnatAllocator::ReturnChunk(const std::string& host, uint32_t dip, uint32_t vip,
                                        uint8_t proto, uint16_t port_start) {
  std::lock_guard<std::mutex> lock(mu_);
  absl::Status released = table_.Release(host, dip, vip, proto, port_start);
  if (!released.ok()) return released;
  ++counters_.chunks_returned;
  absl::Status persisted = Persist();
  if (!persisted.ok()) counters_.last_error = StrCat("state file: ", persisted.message());
  // The muxes may keep the old range → host entry until the next Resync: harmless, nobody
  // sends from those ports, and a later grant of the chunk waits for every mux.
  SyncAll().IgnoreError();
  return absl::OkStatus();
}

SnatAllocator::Snapshot SnatAllocator::List(const std::string& host) const {
  std::lock_guard<std::mutex> lock(mu_);
  Snapshot out{.pools = table_.Pools(),
               .muxes = mux_status_,
               .generation = table_.generation(),
               .counters = counters_};
  for (SnatChunkLease& l : table_.Leases()) {
    if (host.empty() || l.host == host) out.chunks.push_back(std::move(l));
  }
  return out;
}

void SnatAllocator::Resync() {
  std::lock_guard<std::mutex> lock(mu_);
  SyncAll().IgnoreError();
}

}  // namespace sluice::snatd
