#include "mux_lite/grpc_service.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "common/grpc_util.h"
#include "common/net_text.h"

namespace sluice::mux {
namespace {

uint32_t Ip(const char* text) { return *ParseIpv4(text); }

MuxConfig LabMux() {
  MuxConfig c{.name = "mux1",
              .port = "net_af_packet0,iface=eth0",
              .address = {.addr = Ip("10.101.0.11"), .length = 24},
              .gateway = Ip("10.101.0.1")};
  c.vips.push_back({.vip = Ip("10.200.0.10"),
                    .port = 80,
                    .proto = 6,
                    .backends = {{.dip = Ip("10.1.0.1"), .host = Ip("10.101.0.31")},
                                 {.dip = Ip("10.1.0.2"), .host = Ip("10.101.0.32")}}});
  c.snat_ranges.push_back({.vip = Ip("10.200.0.10"),
                           .port_start = 20000,
                           .port_count = 128,
                           .host = Ip("10.101.0.21")});
  return c;
}

// The data path seam: builds the real VIP table (so Maglev errors are real) and keeps it.
class FakeMuxRuntime : public MuxRuntime {
 public:
  explicit FakeMuxRuntime(const MuxConfig& boot) {
    std::string error;
    table_ = VipTable::Build(boot, &error);
    table_->generation = 1;
  }
  bool Reload(const MuxConfig& config, std::string* error) override {
    std::unique_ptr<VipTable> table = VipTable::Build(config, error);
    if (table == nullptr) return false;
    table->generation = table_->generation + 1;
    table_ = std::move(table);
    reloaded.push_back(config);
    return true;
  }
  uint64_t generation() const override { return table_->generation; }
  void ReadTable(const std::function<void(const VipTable&)>& read) const override { read(*table_); }
  void SetDraining(bool d) override { draining = d; }
  MuxRuntimeStatus Status() const override {
    return {.ready = true, .draining = draining, .counters = {{"new_flows", 3}}};
  }
  std::vector<MuxConfig> reloaded;
  bool draining = false;

 private:
  std::unique_ptr<VipTable> table_;
};

v1::Vip LabVip() {
  v1::Vip v;
  v.set_vip("10.200.0.10");
  v.set_port(80);
  v.set_protocol(v1::L4_PROTOCOL_TCP);
  for (const char* dip : {"10.1.0.1", "10.1.0.2"}) {
    v1::Backend* b = v.add_backends();
    b->set_dip(dip);
    b->set_host(std::string("10.101.0.3") + dip[7]);
  }
  return v;
}

class MuxServiceTest : public ::testing::Test {
 protected:
  MuxServiceTest() : runtime_(LabMux()), service_(&runtime_, LabMux()) {}

  void ExpectRefused(const v1::SetVipsRequest& request, grpc::StatusCode code,
                     const std::string& text) {
    v1::ChangeSummary changes;
    grpc::Status s = service_.SetVips(nullptr, &request, &changes);
    EXPECT_EQ(s.error_code(), code) << s.error_message();
    EXPECT_NE(s.error_message().find(text), std::string::npos) << s.error_message();
    ExpectUnchanged();
  }
  void ExpectUnchanged() {
    EXPECT_TRUE(runtime_.reloaded.empty());
    EXPECT_EQ(runtime_.generation(), 1u);
    MuxConfig desired = service_.desired();
    ASSERT_EQ(desired.vips.size(), 1u);
    EXPECT_EQ(desired.vips[0].backends.size(), 2u);
    EXPECT_EQ(desired.snat_ranges.size(), 1u);
  }

  FakeMuxRuntime runtime_;
  MuxService service_;
};

TEST_F(MuxServiceTest, SetVipsReloadsAndReportsWhatChanged) {
  v1::SetVipsRequest request;
  *request.add_vips() = LabVip();
  request.mutable_vips(0)->mutable_backends(1)->set_weight(3);
  v1::Vip* second = request.add_vips();
  *second = LabVip();
  second->set_vip("10.200.0.20");
  second->set_scheduler(v1::SCHEDULER_SOURCE_HASH);
  v1::ChangeSummary changes;
  grpc::Status s = service_.SetVips(nullptr, &request, &changes);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(runtime_.reloaded.size(), 1u);
  const MuxConfig& applied = runtime_.reloaded[0];
  ASSERT_EQ(applied.vips.size(), 2u);
  EXPECT_EQ(applied.vips[0].backends[1].weight, 3u);
  EXPECT_EQ(applied.vips[0].backends[0].weight, 1u);  // unset weight = 1
  EXPECT_EQ(applied.vips[1].scheduler, Scheduler::kSourceHash);
  EXPECT_EQ(applied.snat_ranges.size(), 1u);  // untouched
  EXPECT_EQ(applied.name, "mux1");            // restart-only fields as running
  ASSERT_EQ(changes.added_size(), 1);
  EXPECT_EQ(changes.added(0), "10.200.0.20:80/tcp");
  ASSERT_EQ(changes.changed_size(), 1);
  EXPECT_EQ(changes.changed(0), "10.200.0.10:80/tcp");
  EXPECT_EQ(changes.config_generation(), 2u);

  v1::ChangeSummary again;
  ASSERT_TRUE(service_.SetVips(nullptr, &request, &again).ok());
  EXPECT_EQ(runtime_.reloaded.size(), 1u);  // no-op: no table swap
  EXPECT_EQ(again.unchanged(), 3u);         // 2 VIPs + 1 SNAT range
}

TEST_F(MuxServiceTest, EachBadVipFieldIsNamed) {
  struct Case {
    const char* what;
    std::function<void(v1::SetVipsRequest*)> spoil;
    grpc::StatusCode code;
    const char* message;
  };
  const Case cases[] = {
      {"vip", [](auto* r) { r->mutable_vips(1)->set_vip("10.200.0.300"); }, grpc::INVALID_ARGUMENT,
       "vips[1].vip: '10.200.0.300' is not an IPv4 address"},
      {"port", [](auto* r) { r->mutable_vips(1)->set_port(65536); }, grpc::INVALID_ARGUMENT,
       "vips[1].port: 65536 is not a port"},
      {"protocol", [](auto* r) { r->mutable_vips(1)->set_protocol(v1::L4_PROTOCOL_UNSPECIFIED); },
       grpc::INVALID_ARGUMENT, "vips[1].protocol: required (TCP or UDP)"},
      {"scheduler",
       [](auto* r) { r->mutable_vips(1)->set_scheduler(static_cast<v1::Scheduler>(9)); },
       grpc::INVALID_ARGUMENT, "vips[1].scheduler: 9 is not a scheduler"},
      {"backend dip", [](auto* r) { r->mutable_vips(1)->mutable_backends(1)->set_dip("x"); },
       grpc::INVALID_ARGUMENT, "vips[1].backends[1].dip: 'x' is not an IPv4 address"},
      {"backend host", [](auto* r) { r->mutable_vips(1)->mutable_backends(0)->clear_host(); },
       grpc::INVALID_ARGUMENT, "vips[1].backends[0].host: required"},
      {"backend weight",
       [](auto* r) { r->mutable_vips(1)->mutable_backends(0)->set_weight(70000); },
       grpc::INVALID_ARGUMENT, "vips[1].backends[0].weight: 70000 is out of range (0..65535)"},
      {"backend encap",
       [](auto* r) {
         r->mutable_vips(1)->mutable_backends(0)->set_encap(static_cast<v1::Encap>(5));
       },
       grpc::INVALID_ARGUMENT, "vips[1].backends[0].encap: 5 is not an encapsulation"},
      {"backend twice",
       [](auto* r) { r->mutable_vips(1)->mutable_backends(1)->set_dip("10.1.0.1"); },
       grpc::INVALID_ARGUMENT, "vips[1].backends[1].dip: 10.1.0.1 is already backends[0]"},
      {"vip twice", [](auto* r) { r->mutable_vips(1)->set_vip("10.200.0.10"); },
       grpc::INVALID_ARGUMENT, "vips[1]: 10.200.0.10:80/tcp is already vips[0]"},
      {"vip is the mux", [](auto* r) { r->mutable_vips(1)->set_vip("10.101.0.11"); },
       grpc::INVALID_ARGUMENT, "vips[1].vip: 10.101.0.11 is this mux's own PA"},
      {"backend host is the mux",
       [](auto* r) { r->mutable_vips(1)->mutable_backends(0)->set_host("10.101.0.11"); },
       grpc::INVALID_ARGUMENT, "vips[1].backends[0].host: 10.101.0.11 is this mux, not a host"},
      {"vip port inside a SNAT range", [](auto* r) { r->mutable_vips(1)->set_port(20001); },
       grpc::INVALID_ARGUMENT, "ranges[0]: includes the VIP port 10.200.0.10:20001/tcp"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    v1::SetVipsRequest request;
    *request.add_vips() = LabVip();
    *request.add_vips() = LabVip();
    request.mutable_vips(1)->set_vip("10.200.0.20");
    if (std::string(c.what) == "vip port inside a SNAT range") {
      request.mutable_vips(1)->set_vip("10.200.0.10");
    }
    c.spoil(&request);
    ExpectRefused(request, c.code, c.message);
  }
}

TEST_F(MuxServiceTest, EachBadSnatRangeIsNamed) {
  struct Case {
    const char* what;
    std::function<void(v1::SetSnatRangesRequest*)> build;
    const char* message;
  };
  auto range = [](uint32_t start, uint32_t count, v1::L4Protocol proto) {
    v1::SnatRange r;
    r.set_vip("10.200.0.10");
    r.set_protocol(proto);
    r.set_port_start(start);
    r.set_port_count(count);
    r.set_host("10.101.0.21");
    return r;
  };
  const Case cases[] = {
      {"overlap (any protocol overlaps tcp)",
       [&](auto* r) {
         *r->add_ranges() = range(20000, 128, v1::L4_PROTOCOL_TCP);
         *r->add_ranges() = range(20127, 128, v1::L4_PROTOCOL_UNSPECIFIED);
       },
       "ranges[1].port_start: ports 20127..20254 overlap ranges[0] (ports 20000..20127 of host "
       "10.101.0.21)"},
      {"past 65535", [&](auto* r) { *r->add_ranges() = range(65000, 1000, v1::L4_PROTOCOL_TCP); },
       "ranges[0].port_count: ports 65000..65999 run past 65535"},
      {"count 0", [&](auto* r) { *r->add_ranges() = range(20000, 0, v1::L4_PROTOCOL_TCP); },
       "ranges[0].port_count: 0 is out of range"},
      {"host",
       [&](auto* r) {
         *r->add_ranges() = range(20000, 10, v1::L4_PROTOCOL_TCP);
         r->mutable_ranges(0)->set_host("host1");
       },
       "ranges[0].host: 'host1' is not an IPv4 address"},
      {"protocol",
       [&](auto* r) { *r->add_ranges() = range(20000, 10, static_cast<v1::L4Protocol>(99)); },
       "ranges[0].protocol: 99 is not a protocol"},
      {"encap",
       [&](auto* r) {
         *r->add_ranges() = range(20000, 10, v1::L4_PROTOCOL_TCP);
         r->mutable_ranges(0)->set_encap(static_cast<v1::Encap>(7));
       },
       "ranges[0].encap: 7 is not an encapsulation (ENCAP_IPIP, ENCAP_GUE or ENCAP_GRE)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    v1::SetSnatRangesRequest request;
    c.build(&request);
    v1::ChangeSummary changes;
    grpc::Status s = service_.SetSnatRanges(nullptr, &request, &changes);
    EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT) << s.error_message();
    EXPECT_NE(s.error_message().find(c.message), std::string::npos) << s.error_message();
    ExpectUnchanged();
  }
}

TEST_F(MuxServiceTest, OversizedVipIsRefusedAndTheTableKept) {
  v1::SetVipsRequest request;
  *request.add_vips() = LabVip();
  request.set_dry_run(true);
  v1::ChangeSummary changes;
  ASSERT_TRUE(service_.SetVips(nullptr, &request, &changes).ok());
  ExpectUnchanged();
  // More backends than a VIP may have.
  v1::Vip* vip = request.mutable_vips(0);
  for (int i = 3; i < 70000 && vip->backends_size() <= 65537; ++i) {
    v1::Backend* b = vip->add_backends();
    b->set_dip("10.2." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1));
    b->set_host("10.101.0.31");
  }
  request.set_dry_run(false);
  grpc::Status s = service_.SetVips(nullptr, &request, &changes);
  EXPECT_NE(s.error_code(), grpc::OK);
  EXPECT_NE(s.error_message().find("vips[0].backends"), std::string::npos) << s.error_message();
  ExpectUnchanged();
}

TEST_F(MuxServiceTest, UpsertAndDeleteVip) {
  v1::UpsertVipRequest upsert;
  *upsert.mutable_vip() = LabVip();
  upsert.mutable_vip()->set_port(443);
  v1::ChangeSummary changes;
  ASSERT_TRUE(service_.UpsertVip(nullptr, &upsert, &changes).ok());
  EXPECT_EQ(service_.desired().vips.size(), 2u);

  v1::DeleteVipRequest del;
  del.set_vip("10.200.0.10");
  del.set_port(8443);
  del.set_protocol(v1::L4_PROTOCOL_TCP);
  grpc::Status s = service_.DeleteVip(nullptr, &del, &changes);
  EXPECT_EQ(s.error_code(), grpc::NOT_FOUND);
  EXPECT_EQ(s.error_message(), "vip: 10.200.0.10:8443/tcp is not configured");
  del.set_port(443);
  v1::ChangeSummary deleted;
  ASSERT_TRUE(service_.DeleteVip(nullptr, &del, &deleted).ok());
  ASSERT_EQ(deleted.removed_size(), 1);
  EXPECT_EQ(deleted.removed(0), "10.200.0.10:443/tcp");
  EXPECT_EQ(service_.desired().vips.size(), 1u);
}

TEST_F(MuxServiceTest, UnhealthyBackendsLeaveMaglevAndComeBack) {
  v1::SetBackendHealthRequest request;
  request.set_reporter("host1");
  v1::BackendHealth* h = request.add_backends();
  h->set_dip("10.1.0.9");
  h->set_healthy(false);
  v1::ChangeSummary changes;
  // Not a backend here yet: remembered, nothing rebuilt.
  ASSERT_TRUE(service_.SetBackendHealth(nullptr, &request, &changes).ok());
  ASSERT_EQ(changes.changed_size(), 1);
  EXPECT_EQ(changes.changed(0), "10.1.0.9 (not a backend here) unhealthy");
  ExpectUnchanged();
  EXPECT_EQ(service_.unhealthy().count(0x0a010009), 1u);
  // Repeating the report changes nothing.
  changes.Clear();
  ASSERT_TRUE(service_.SetBackendHealth(nullptr, &request, &changes).ok());
  EXPECT_EQ(changes.changed_size(), 0);
  ExpectUnchanged();
  // One DIP twice in a request is refused.
  *request.add_backends() = *h;
  EXPECT_EQ(service_.SetBackendHealth(nullptr, &request, &changes).error_code(),
            grpc::INVALID_ARGUMENT);
  request.mutable_backends()->RemoveLast();
  h->set_healthy(true);
  changes.Clear();
  ASSERT_TRUE(service_.SetBackendHealth(nullptr, &request, &changes).ok());
  EXPECT_TRUE(service_.unhealthy().empty());
  ExpectUnchanged();
  h->set_healthy(false);

  h->set_dip("10.1.0.2");
  ASSERT_TRUE(service_.SetBackendHealth(nullptr, &request, &changes).ok());
  ASSERT_EQ(runtime_.reloaded.size(), 1u);
  EXPECT_EQ(runtime_.reloaded[0].vips[0].backends[1].weight, 0u);
  EXPECT_EQ(service_.desired().vips[0].backends[1].weight, 1u);  // configured weight kept

  // A VIP change while the DIP is sick keeps it out.
  v1::SetVipsRequest vips;
  *vips.add_vips() = LabVip();
  vips.mutable_vips(0)->mutable_backends(0)->set_weight(2);
  ASSERT_TRUE(service_.SetVips(nullptr, &vips, &changes).ok());
  EXPECT_EQ(runtime_.reloaded.back().vips[0].backends[1].weight, 0u);

  v1::GetVipsResponse got;
  ASSERT_TRUE(service_.GetVips(nullptr, nullptr, &got).ok());
  ASSERT_EQ(got.vips(0).backends_size(), 2);
  EXPECT_FALSE(got.vips(0).backends(1).healthy());
  EXPECT_EQ(got.vips(0).backends(1).backend().weight(), 1u);

  h->set_healthy(true);
  ASSERT_TRUE(service_.SetBackendHealth(nullptr, &request, &changes).ok());
  EXPECT_EQ(runtime_.reloaded.back().vips[0].backends[1].weight, 1u);
}

TEST_F(MuxServiceTest, StaleExpectedGenerationIsRefused) {
  v1::SetVipsRequest request;
  *request.add_vips() = LabVip();
  request.mutable_vips(0)->mutable_backends(0)->set_weight(5);
  request.set_expected_generation(4);
  ExpectRefused(request, grpc::FAILED_PRECONDITION,
                "expected_generation: the config is at generation 1, not 4");
}

TEST(MuxGrpcServerTest, ServesOnAUnixSocket) {
  char dir[] = "/tmp/sluice-mux-grpc-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string socket = std::string(dir) + "/mux.sock";
  FakeMuxRuntime runtime(LabMux());
  std::vector<MuxConfig> applied;
  MuxService service(&runtime, LabMux(), [&](const MuxConfig& c) { applied.push_back(c); });
  absl::StatusOr<std::unique_ptr<grpc::Server>> server =
      StartGrpcServer({.unix_socket = socket}, {&service});
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = v1::Mux::NewStub(DialSluice("unix:" + socket));
  {
    grpc::ClientContext context;
    v1::SetVipsRequest request;
    *request.add_vips() = LabVip();
    request.mutable_vips(0)->mutable_backends(0)->set_weight(4);
    v1::ChangeSummary changes;
    grpc::Status s = stub->SetVips(&context, request, &changes);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(changes.config_generation(), 2u);
    ASSERT_EQ(applied.size(), 1u);  // the daemon hears about it (BGP re-announce)
  }
  {
    grpc::ClientContext context;
    v1::GetVipsResponse vips;
    ASSERT_TRUE(stub->GetVips(&context, v1::GetVipsRequest(), &vips).ok());
    ASSERT_EQ(vips.vips_size(), 1);
    EXPECT_EQ(vips.vips(0).backends(0).backend().weight(), 4u);
    EXPECT_EQ(vips.config_generation(), 2u);
  }
  {
    grpc::ClientContext context;
    v1::DrainResponse drained;
    ASSERT_TRUE(stub->Drain(&context, v1::DrainRequest(), &drained).ok());
    EXPECT_TRUE(runtime.draining);
    grpc::ClientContext health_context;
    v1::HealthResponse health;
    ASSERT_TRUE(stub->Health(&health_context, v1::HealthRequest(), &health).ok());
    EXPECT_EQ(health.state(), v1::HealthResponse::STATE_DRAINING);
  }
  {
    // The first WatchHealth message comes at once.
    grpc::ClientContext context;
    auto reader = stub->WatchHealth(&context, v1::HealthRequest());
    v1::HealthResponse health;
    ASSERT_TRUE(reader->Read(&health));
    EXPECT_EQ(health.role(), "mux");
    context.TryCancel();
  }
  service.Shutdown();
  (*server)->Shutdown();
  unlink(socket.c_str());
  rmdir(dir);
}

}  // namespace
}  // namespace sluice::mux

namespace sluice::mux {
namespace {

// A file reload (SIGHUP / `reload`) replaces what the file configures but keeps the SNAT
// allocator's chunks, unless the file now configures those ports itself.
TEST_F(MuxServiceTest, SnatRangesAndBackendsCarryTheirHostsEncap) {
  // host2's VMs sit on Open vSwitch: the mux must send it GRE, replies and new flows alike.
  v1::SetSnatRangesRequest ranges;
  v1::SnatRange* r = ranges.add_ranges();
  r->set_vip("10.200.0.10");
  r->set_protocol(v1::L4_PROTOCOL_TCP);
  r->set_port_start(20128);
  r->set_port_count(128);
  r->set_host("10.101.0.22");
  r->set_encap(v1::ENCAP_GRE);
  v1::ChangeSummary changes;
  ASSERT_TRUE(service_.SetSnatRanges(nullptr, &ranges, &changes).ok());
  ASSERT_EQ(service_.desired().snat_ranges.size(), 1u);
  EXPECT_EQ(service_.desired().snat_ranges[0].encap, flow::Tunnel::kGre);
  EXPECT_EQ(runtime_.reloaded.back().snat_ranges[0].encap, flow::Tunnel::kGre);
  v1::GetSnatRangesRequest get_ranges;
  v1::GetSnatRangesResponse got;
  ASSERT_TRUE(service_.GetSnatRanges(nullptr, &get_ranges, &got).ok());
  ASSERT_EQ(got.ranges_size(), 1);
  EXPECT_EQ(got.ranges(0).encap(), v1::ENCAP_GRE);
  // Unspecified stays IPIP; changing only the encap is a change.
  r->clear_encap();
  v1::ChangeSummary to_ipip;
  ASSERT_TRUE(service_.SetSnatRanges(nullptr, &ranges, &to_ipip).ok());
  EXPECT_EQ(service_.desired().snat_ranges[0].encap, flow::Tunnel::kIpip);
  EXPECT_EQ(to_ipip.added_size(), 1) << to_ipip.DebugString();
  EXPECT_EQ(to_ipip.removed_size(), 1) << to_ipip.DebugString();

  v1::SetVipsRequest vips;
  *vips.add_vips() = LabVip();
  vips.mutable_vips(0)->mutable_backends(1)->set_encap(v1::ENCAP_GRE);
  ASSERT_TRUE(service_.SetVips(nullptr, &vips, &changes).ok());
  EXPECT_EQ(service_.desired().vips[0].backends[1].encap, flow::Tunnel::kGre);
  v1::GetVipsRequest get_vips;
  v1::GetVipsResponse listed;
  ASSERT_TRUE(service_.GetVips(nullptr, &get_vips, &listed).ok());
  EXPECT_EQ(listed.vips(0).backends(1).backend().encap(), v1::ENCAP_GRE);
}

TEST_F(MuxServiceTest, FileReloadKeepsTheAllocatorsChunks) {
  v1::SetSnatRangesRequest request;
  for (const auto& [start, dynamic] : {std::pair{20000u, false}, {21000u, true}, {21032u, true}}) {
    v1::SnatRange* r = request.add_ranges();
    r->set_vip("10.200.0.10");
    r->set_protocol(v1::L4_PROTOCOL_TCP);
    r->set_port_start(start);
    r->set_port_count(start == 20000 ? 128 : 32);
    r->set_host("10.101.0.22");
    r->set_dynamic(dynamic);
  }
  v1::ChangeSummary changes;
  ASSERT_TRUE(service_.SetSnatRanges(nullptr, &request, &changes).ok());

  MuxConfig file = LabMux();  // configures 20000..20127 only
  file.snat_ranges.push_back({.vip = Ip("10.200.0.10"), .proto = 6, .port_start = 21040,
                              .port_count = 8, .host = Ip("10.101.0.21")});
  ASSERT_TRUE(service_.ReplaceConfig(file).ok());
  const MuxConfig desired = service_.desired();
  ASSERT_EQ(desired.snat_ranges.size(), 3u);
  EXPECT_EQ(desired.snat_ranges[0].port_start, 20000);  // the file's
  EXPECT_FALSE(desired.snat_ranges[0].dynamic);
  EXPECT_EQ(desired.snat_ranges[1].port_start, 21040);  // the file's, over the 2nd chunk
  EXPECT_EQ(desired.snat_ranges[2].port_start, 21000);  // the allocator's, kept
  EXPECT_TRUE(desired.snat_ranges[2].dynamic);
  EXPECT_EQ(runtime_.reloaded.back().snat_ranges.size(), 3u);
}

}  // namespace
}  // namespace sluice::mux

namespace sluice::mux {
namespace {

// The lab's muxes boot without VIPs and the controller pushes them: a reload of such a file
// keeps what was pushed (the file says nothing about VIPs or SNAT ranges).
TEST_F(MuxServiceTest, FileReloadWithoutVipsKeepsWhatTheControllerPushed) {
  v1::SetVipsRequest vips;
  *vips.add_vips() = LabVip();
  vips.mutable_vips(0)->set_vip("10.200.0.20");
  *vips.add_vips() = LabVip();
  v1::ChangeSummary changes;
  ASSERT_TRUE(service_.SetVips(nullptr, &vips, &changes).ok());

  MuxConfig boot = LabMux();
  boot.vips.clear();
  boot.snat_ranges.clear();
  boot.file_sets_vips = false;
  boot.file_sets_snat_ranges = false;
  ASSERT_TRUE(service_.ReplaceConfig(boot).ok());
  MuxConfig desired = service_.desired();
  EXPECT_EQ(desired.vips.size(), 2u);
  EXPECT_EQ(desired.snat_ranges.size(), 1u);
  EXPECT_EQ(runtime_.reloaded.back().vips.size(), 2u);

  // A file with `vips: []` owns them: the reload empties the table.
  boot.file_sets_vips = true;
  ASSERT_TRUE(service_.ReplaceConfig(boot).ok());
  desired = service_.desired();
  EXPECT_TRUE(desired.vips.empty());
  EXPECT_EQ(desired.snat_ranges.size(), 1u);
}

}  // namespace
}  // namespace sluice::mux
