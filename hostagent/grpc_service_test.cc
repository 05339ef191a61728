#include "hostagent/grpc_service.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/grpc_util.h"
#include "common/net_text.h"

namespace sluice::agent {
namespace {

uint32_t Ip(const char* text) { return *ParseIpv4(text); }

// host1 of the lab: two VMs, one endpoint each, one SNAT lease each.
AgentConfig LabHost() {
  AgentConfig c{.name = "host1",
                .uplink = "net_af_packet0,iface=eth0",
                .address = {.addr = Ip("10.101.0.21"), .length = 24},
                .gateway = Ip("10.101.0.1")};
  c.vms.push_back({.name = "vm1",
                   .port = "net_af_packet1,iface=vm1",
                   .mac = {2, 0, 10, 1, 0, 1},
                   .dip = Ip("10.1.0.1"),
                   .pa = Ip("10.101.0.31"),
                   .gateway = Ip("10.1.0.254")});
  c.vms.push_back({.name = "vm2",
                   .port = "net_af_packet2,iface=vm2",
                   .mac = {2, 0, 10, 1, 0, 2},
                   .dip = Ip("10.1.0.2"),
                   .pa = Ip("10.101.0.32"),
                   .gateway = Ip("10.1.0.254")});
  c.endpoints = {
      {.vip = Ip("10.200.0.10"), .port = 80, .proto = 6, .dip = Ip("10.1.0.1"), .dip_port = 8080},
      {.vip = Ip("10.200.0.10"), .port = 80, .proto = 6, .dip = Ip("10.1.0.2"), .dip_port = 8080}};
  c.snat_leases = {{.dip = Ip("10.1.0.1"),
                    .vip = Ip("10.200.0.10"),
                    .proto = 6,
                    .port_start = 20000,
                    .port_count = 64},
                   {.dip = Ip("10.1.0.2"),
                    .vip = Ip("10.200.0.10"),
                    .proto = 6,
                    .port_start = 20064,
                    .port_count = 64}};
  return c;
}

// The data path seam: records what would be published; can refuse like the real one.
class FakeAgentRuntime : public AgentRuntime {
 public:
  bool PublishConfig(const AgentConfig& next, std::string* error) override {
    if (!refuse.empty()) {
      *error = refuse;
      return false;
    }
    published.push_back(next);
    ++generation_;
    return true;
  }
  uint64_t generation() const override { return generation_; }
  void ReclaimRetired() override {}
  void CountHotplugRefusal() override { ++hotplug_refusals; }
  bool PlugsVmPorts() const override { return plugs; }
  int hotplug_refusals = 0;
  bool plugs = false;
  AgentRuntimeStatus Status() const override {
    AgentRuntimeStatus s;
    s.ready = true;
    s.counters = {{"rx_packets", 7}};
    s.drops = {{"no_rule", 1}};
    s.vms.resize(2);
    return s;
  }
  bool CopyFlows(size_t limit, uint32_t, std::vector<NatFlow>* flows, uint64_t* total) override {
    for (size_t i = 0; i < std::min<size_t>(limit, 3); ++i) {
      flows->push_back(NatFlow{.dip = Ip("10.1.0.1"),
                               .remote = Ip("10.100.0.2"),
                               .vip = Ip("10.200.0.10"),
                               .dip_port = 8080,
                               .remote_port = static_cast<uint16_t>(40000 + i),
                               .vip_port = 80,
                               .proto = 6,
                               .kind = 2,
                               .state = 2});
    }
    *total = 3;
    return true;
  }
  // The flow to remote port 40001 is in the NIC, which counted 12 packets of it.
  bool NicFlow(const NatFlow& flow, NicFlowReading* out) const override {
    if (flow.remote_port != 40001) return false;
    *out = NicFlowReading{.rules_nic = 1, .packets = 12, .bytes = 3456};
    return true;
  }
  std::vector<AgentConfig> published;
  std::string refuse;
  uint64_t generation_ = 1;
};

v1::Endpoint Ep(const std::string& vip, uint32_t port, const std::string& dip,
                uint32_t dip_port = 8080) {
  v1::Endpoint ep;
  ep.set_vip(vip);
  ep.set_port(port);
  ep.set_protocol(v1::L4_PROTOCOL_TCP);
  ep.set_dip(dip);
  ep.set_dip_port(dip_port);
  return ep;
}

v1::SnatLease Lease(const std::string& dip, uint32_t start, uint32_t count) {
  v1::SnatLease l;
  l.set_dip(dip);
  l.set_vip("10.200.0.10");
  l.set_protocol(v1::L4_PROTOCOL_TCP);
  l.set_port_start(start);
  l.set_port_count(count);
  return l;
}

class AgentServiceTest : public ::testing::Test {
 protected:
  AgentServiceTest() : service_(&runtime_, LabHost()) {}

  v1::SetEndpointsRequest LabEndpoints() {
    v1::SetEndpointsRequest r;
    *r.add_endpoints() = Ep("10.200.0.10", 80, "10.1.0.1");
    *r.add_endpoints() = Ep("10.200.0.10", 80, "10.1.0.2");
    return r;
  }

  // Sends `request`, expects `code` and a message containing `text`, and checks that nothing
  // was published and the running config is unchanged.
  void ExpectRefused(const v1::SetEndpointsRequest& request, grpc::StatusCode code,
                     const std::string& text) {
    v1::ChangeSummary response;
    grpc::Status s = service_.SetEndpoints(nullptr, &request, &response);
    EXPECT_EQ(s.error_code(), code) << s.error_message();
    EXPECT_NE(s.error_message().find(text), std::string::npos) << s.error_message();
    ExpectUnchanged();
  }
  void ExpectRefused(const v1::SetSnatLeasesRequest& request, grpc::StatusCode code,
                     const std::string& text) {
    v1::ChangeSummary response;
    grpc::Status s = service_.SetSnatLeases(nullptr, &request, &response);
    EXPECT_EQ(s.error_code(), code) << s.error_message();
    EXPECT_NE(s.error_message().find(text), std::string::npos) << s.error_message();
    ExpectUnchanged();
  }
  void ExpectUnchanged() {
    EXPECT_TRUE(runtime_.published.empty());
    AgentConfig running = service_.running();
    EXPECT_EQ(running.endpoints.size(), 2u);
    EXPECT_EQ(running.snat_leases.size(), 2u);
  }

  FakeAgentRuntime runtime_;
  AgentService service_;
};

TEST_F(AgentServiceTest, SetEndpointsPublishesTheWholeSetAndReportsChanges) {
  v1::SetEndpointsRequest request = LabEndpoints();
  *request.add_endpoints() = Ep("10.200.0.10", 81, "10.1.0.1");
  v1::ChangeSummary changes;
  ASSERT_TRUE(service_.SetEndpoints(nullptr, &request, &changes).ok());
  ASSERT_EQ(runtime_.published.size(), 1u);
  EXPECT_EQ(runtime_.published[0].endpoints.size(), 3u);
  EXPECT_EQ(runtime_.published[0].snat_leases.size(), 2u);  // untouched
  ASSERT_EQ(changes.added_size(), 1);
  EXPECT_EQ(changes.added(0), "10.200.0.10:81/tcp->10.1.0.1:8080");
  EXPECT_EQ(changes.removed_size(), 0);
  EXPECT_EQ(changes.config_generation(), 2u);

  // The same request again changes nothing and publishes nothing.
  v1::ChangeSummary again;
  ASSERT_TRUE(service_.SetEndpoints(nullptr, &request, &again).ok());
  EXPECT_EQ(runtime_.published.size(), 1u);
  EXPECT_EQ(again.added_size() + again.removed_size(), 0);
  EXPECT_EQ(again.unchanged(), 5u);  // 3 endpoints + 2 leases
}

TEST_F(AgentServiceTest, EndpointHealthChecksArriveAndAChangeOfCheckAloneIsPublished) {
  v1::SetEndpointsRequest request = LabEndpoints();
  v1::HealthCheck* h = request.mutable_endpoints(1)->mutable_health();
  h->set_type(v1::HEALTH_CHECK_TYPE_HTTP);
  h->set_path("/health");
  h->set_interval_ms(400);
  h->set_fall(2);
  h->set_netns("/run/netns/sl-vm2");
  v1::ChangeSummary changes;
  ASSERT_TRUE(service_.SetEndpoints(nullptr, &request, &changes).ok());
  ASSERT_EQ(runtime_.published.size(), 1u);
  ASSERT_EQ(changes.changed_size(), 1);
  EXPECT_EQ(changes.changed(0), "10.200.0.10:80/tcp->10.1.0.2:8080 health");
  const std::optional<HealthCheckConfig>& c = runtime_.published[0].endpoints[1].health;
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->type, HealthProbeType::kHttp);
  EXPECT_EQ(c->address, 0x0a010002u);
  EXPECT_EQ(c->port, 8080);  // the endpoint's dip_port
  EXPECT_EQ(c->http_path, "/health");
  EXPECT_EQ(c->http_expected_status, 200);
  EXPECT_EQ(c->interval, std::chrono::milliseconds(400));
  EXPECT_EQ(c->timeout, std::chrono::milliseconds(1000));
  EXPECT_EQ(c->rise, 2u);
  EXPECT_EQ(c->fall, 2u);
  EXPECT_EQ(c->netns, "/run/netns/sl-vm2");
  EXPECT_FALSE(runtime_.published[0].endpoints[0].health.has_value());

  // It reads back as it was sent (GetEndpoints), and the same request is a no-op.
  v1::GetEndpointsResponse got;
  ASSERT_TRUE(service_.GetEndpoints(nullptr, nullptr, &got).ok());
  ASSERT_EQ(got.endpoints_size(), 2);
  EXPECT_EQ(got.endpoints(1).health().path(), "/health");
  EXPECT_EQ(got.endpoints(1).health().port(), 8080u);
  v1::SetEndpointsRequest back;
  *back.mutable_endpoints() = got.endpoints();
  v1::ChangeSummary again;
  ASSERT_TRUE(service_.SetEndpoints(nullptr, &back, &again).ok());
  EXPECT_EQ(runtime_.published.size(), 1u);
  EXPECT_EQ(again.changed_size(), 0);
}

TEST_F(AgentServiceTest, DryRunChangesNothing) {
  v1::SetEndpointsRequest request;
  *request.add_endpoints() = Ep("10.200.0.10", 80, "10.1.0.1");
  request.set_dry_run(true);
  v1::ChangeSummary changes;
  ASSERT_TRUE(service_.SetEndpoints(nullptr, &request, &changes).ok());
  EXPECT_EQ(changes.removed_size(), 1);
  ExpectUnchanged();
}

TEST_F(AgentServiceTest, EachBadEndpointFieldIsNamed) {
  struct Case {
    const char* what;
    std::function<void(v1::Endpoint*)> spoil;
    grpc::StatusCode code;
    const char* message;
  };
  const Case cases[] = {
      {"vip", [](v1::Endpoint* e) { e->set_vip("10.200.0"); }, grpc::INVALID_ARGUMENT,
       "endpoints[1].vip: '10.200.0' is not an IPv4 address"},
      {"vip empty", [](v1::Endpoint* e) { e->set_vip(""); }, grpc::INVALID_ARGUMENT,
       "endpoints[1].vip: required"},
      {"port", [](v1::Endpoint* e) { e->set_port(0); }, grpc::INVALID_ARGUMENT,
       "endpoints[1].port: 0 is not a port"},
      {"port big", [](v1::Endpoint* e) { e->set_port(70000); }, grpc::INVALID_ARGUMENT,
       "endpoints[1].port: 70000 is not a port"},
      {"protocol", [](v1::Endpoint* e) { e->set_protocol(v1::L4_PROTOCOL_UNSPECIFIED); },
       grpc::INVALID_ARGUMENT, "endpoints[1].protocol: required (TCP or UDP)"},
      {"protocol value", [](v1::Endpoint* e) { e->set_protocol(static_cast<v1::L4Protocol>(1)); },
       grpc::INVALID_ARGUMENT, "endpoints[1].protocol: 1 is not a protocol"},
      {"dip", [](v1::Endpoint* e) { e->set_dip("10.1.0.x"); }, grpc::INVALID_ARGUMENT,
       "endpoints[1].dip: '10.1.0.x' is not an IPv4 address"},
      {"dip unknown", [](v1::Endpoint* e) { e->set_dip("10.1.0.9"); }, grpc::NOT_FOUND,
       "endpoints[1].dip: 10.1.0.9 is not the DIP of any VM on this host"},
      {"dip_port", [](v1::Endpoint* e) { e->set_dip_port(65536); }, grpc::INVALID_ARGUMENT,
       "endpoints[1].dip_port: 65536 is not a port"},
      {"duplicate", [](v1::Endpoint* e) { e->set_dip("10.1.0.1"); }, grpc::INVALID_ARGUMENT,
       "endpoints[1]: 10.200.0.10:80/tcp->10.1.0.1:8080 is the same endpoint as endpoints[0]"},
      {"health type", [](v1::Endpoint* e) { e->mutable_health()->set_port(80); },
       grpc::INVALID_ARGUMENT, "endpoints[1].health.type: required (TCP, HTTP, HTTPS or MYSQL)"},
      {"health path on tcp",
       [](v1::Endpoint* e) {
         e->mutable_health()->set_type(v1::HEALTH_CHECK_TYPE_TCP);
         e->mutable_health()->set_path("/x");
       },
       grpc::INVALID_ARGUMENT, "endpoints[1].health.path: only for type HTTP or HTTPS"},
      {"health status",
       [](v1::Endpoint* e) {
         e->mutable_health()->set_type(v1::HEALTH_CHECK_TYPE_HTTP);
         e->mutable_health()->set_expect_status(700);
       },
       grpc::INVALID_ARGUMENT, "endpoints[1].health.expect_status: 700 is not 100..599"},
      {"health jitter",
       [](v1::Endpoint* e) {
         e->mutable_health()->set_type(v1::HEALTH_CHECK_TYPE_TCP);
         e->mutable_health()->set_interval_ms(100);
         e->mutable_health()->set_jitter_ms(60);
       },
       grpc::INVALID_ARGUMENT, "endpoints[1].health.jitter_ms: must be 0..interval/2"},
      {"health netns",
       [](v1::Endpoint* e) {
         e->mutable_health()->set_type(v1::HEALTH_CHECK_TYPE_TCP);
         e->mutable_health()->set_netns("run/netns/vm1");
       },
       grpc::INVALID_ARGUMENT, "endpoints[1].health.netns: 'run/netns/vm1' is not an absolute"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    v1::SetEndpointsRequest request = LabEndpoints();
    c.spoil(request.mutable_endpoints(1));
    ExpectRefused(request, c.code, c.message);
  }
}

TEST_F(AgentServiceTest, EachBadLeaseFieldIsNamed) {
  struct Case {
    const char* what;
    std::function<void(v1::SetSnatLeasesRequest*)> build;
    grpc::StatusCode code;
    const char* message;
  };
  const Case cases[] = {
      {"count 0", [](auto* r) { *r->add_leases() = Lease("10.1.0.1", 20000, 0); },
       grpc::INVALID_ARGUMENT, "leases[0].port_count: 0 is out of range"},
      {"past 65535", [](auto* r) { *r->add_leases() = Lease("10.1.0.1", 65500, 100); },
       grpc::INVALID_ARGUMENT, "leases[0].port_count: ports 65500..65599 run past 65535"},
      {"start 0", [](auto* r) { *r->add_leases() = Lease("10.1.0.1", 0, 10); },
       grpc::INVALID_ARGUMENT, "leases[0].port_start: 0 is not a port"},
      {"unknown dip", [](auto* r) { *r->add_leases() = Lease("10.1.0.7", 20000, 10); },
       grpc::NOT_FOUND, "leases[0].dip: 10.1.0.7 is not the DIP of any VM on this host"},
      {"overlap",
       [](auto* r) {
         *r->add_leases() = Lease("10.1.0.1", 20000, 64);
         *r->add_leases() = Lease("10.1.0.2", 20063, 64);
       },
       grpc::INVALID_ARGUMENT,
       "leases[1].port_start: ports 20063..20126 overlap leases[0] (ports 20000..20063 of "
       "10.1.0.1)"},
      {"over an endpoint", [](auto* r) { *r->add_leases() = Lease("10.1.0.1", 1, 100); },
       grpc::INVALID_ARGUMENT,
       "leases[0].port_start: ports 1..100 include the endpoint 10.200.0.10:80/tcp"},
      {"multicast vip",
       [](auto* r) {
         *r->add_leases() = Lease("10.1.0.1", 20000, 10);
         r->mutable_leases(0)->set_vip("239.0.0.1");
       },
       grpc::INVALID_ARGUMENT, "leases[0].vip: 239.0.0.1 is not a unicast address"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    v1::SetSnatLeasesRequest request;
    c.build(&request);
    ExpectRefused(request, c.code, c.message);
  }
}

TEST_F(AgentServiceTest, StaleExpectedGenerationIsRefused) {
  v1::SetEndpointsRequest request = LabEndpoints();
  request.set_expected_generation(7);
  ExpectRefused(request, grpc::FAILED_PRECONDITION,
                "expected_generation: the config is at generation 1, not 7");
  request.set_expected_generation(1);
  v1::ChangeSummary changes;
  EXPECT_TRUE(service_.SetEndpoints(nullptr, &request, &changes).ok());
}

TEST_F(AgentServiceTest, DataPathRefusalKeepsTheRunningConfig) {
  runtime_.refuse = "vms cannot change while running (restart the agent)";
  v1::SetEndpointsRequest request;
  *request.add_endpoints() = Ep("10.200.0.10", 80, "10.1.0.1");
  v1::ChangeSummary changes;
  grpc::Status s = service_.SetEndpoints(nullptr, &request, &changes);
  EXPECT_EQ(s.error_code(), grpc::FAILED_PRECONDITION);
  EXPECT_EQ(s.error_message(), runtime_.refuse);
  EXPECT_EQ(service_.running().endpoints.size(), 2u);
}

v1::AttachVmRequest AttachVm2() {
  v1::AttachVmRequest r;
  v1::VmAttachment* vm = r.mutable_vm();
  vm->set_name("vm2");
  vm->set_mac("02:00:0a:01:00:02");
  vm->set_dip("10.1.0.2");
  vm->set_interface_type(v1::INTERFACE_TYPE_TAP);
  v1::Endpoint* ep = vm->add_endpoints();
  *ep = Ep("10.200.0.20", 80, "", 8080);
  *vm->add_snat_leases() = Lease("", 20064, 32);
  return r;
}

TEST_F(AgentServiceTest, AttachVmReplacesThatVmsEndpointsAndLeases) {
  v1::AttachVmRequest request = AttachVm2();
  v1::AttachVmResponse response;
  grpc::Status s = service_.AttachVm(nullptr, &request, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(runtime_.published.size(), 1u);
  const AgentConfig& next = runtime_.published[0];
  ASSERT_EQ(next.endpoints.size(), 2u);
  EXPECT_EQ(next.endpoints[0].dip, Ip("10.1.0.1"));  // vm1's stays
  EXPECT_EQ(next.endpoints[1].vip, Ip("10.200.0.20"));
  EXPECT_EQ(next.endpoints[1].dip, Ip("10.1.0.2"));
  ASSERT_EQ(next.snat_leases.size(), 2u);
  EXPECT_EQ(next.snat_leases[1].port_count, 32u);
  EXPECT_EQ(response.changes().added_size(), 2);
  EXPECT_EQ(response.changes().removed_size(), 2);
}

// The libvirt hook sends the port as it derives it from the domain XML
// ("net_af_packet_<tap>,iface=<tap>"); the agent's config spells the same device
// "net_af_packet2,iface=vm2". The device is what counts, not the text.
TEST_F(AgentServiceTest, AttachVmMatchesThePortByDeviceNotByText) {
  ASSERT_EQ(service_.running().vms[1].port, "net_af_packet2,iface=vm2");
  for (const char* port : {"net_af_packet_vm2,iface=vm2", "net_af_packet9,qpairs=1,iface=vm2",
                           "eth_af_packet2,iface=vm2"}) {
    SCOPED_TRACE(port);
    v1::AttachVmRequest request = AttachVm2();
    request.mutable_vm()->set_port(port);
    v1::AttachVmResponse response;
    grpc::Status s = service_.AttachVm(nullptr, &request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  v1::AttachVmRequest request = AttachVm2();
  request.mutable_vm()->set_port("net_af_packet_vm1,iface=vm1");
  v1::AttachVmResponse response;
  grpc::Status s = service_.AttachVm(nullptr, &request, &response);
  EXPECT_EQ(s.error_code(), grpc::FAILED_PRECONDITION);
  EXPECT_EQ(s.error_message(),
            "vm.port: net_af_packet_vm1,iface=vm1 (net_af_packet iface=vm1) differs from the "
            "configured net_af_packet2,iface=vm2 (net_af_packet iface=vm2) of VM 'vm2' (changing "
            "it needs a restart)");
}

TEST_F(AgentServiceTest, AttachVmRefusals) {
  struct Case {
    const char* what;
    std::function<void(v1::VmAttachment*)> spoil;
    grpc::StatusCode code;
    const char* message;
  };
  const Case cases[] = {
      {"name", [](auto* vm) { vm->set_name("vm 2"); }, grpc::INVALID_ARGUMENT,
       "vm.name: 'vm 2' is not a VM name"},
      {"mac", [](auto* vm) { vm->set_mac("02:00:0a"); }, grpc::INVALID_ARGUMENT,
       "vm.mac: '02:00:0a' is not a MAC address"},
      {"dip", [](auto* vm) { vm->set_dip(""); }, grpc::INVALID_ARGUMENT, "vm.dip: required"},
      {"pa", [](auto* vm) { vm->set_pa("1.2.3"); }, grpc::INVALID_ARGUMENT,
       "vm.pa: '1.2.3' is not an IPv4 address"},
      {"endpoint of another dip", [](auto* vm) { vm->mutable_endpoints(0)->set_dip("10.1.0.1"); },
       grpc::INVALID_ARGUMENT, "vm.endpoints[0].dip: 10.1.0.1 is not this VM's DIP 10.1.0.2"},
      {"endpoint port", [](auto* vm) { vm->mutable_endpoints(0)->set_port(0); },
       grpc::INVALID_ARGUMENT, "vm.endpoints[0].port: 0 is not a port"},
      {"lease overlapping vm1's",
       [](auto* vm) { vm->mutable_snat_leases(0)->set_port_start(20050); }, grpc::INVALID_ARGUMENT,
       "vm.snat_leases[0].port_start: ports 20050..20081 overlap"},
      {"unknown vm",
       [](auto* vm) {
         vm->set_name("vm9");
         vm->set_dip("10.1.0.9");
       },
       grpc::FAILED_PRECONDITION, "vm.name: no VM 'vm9' has a DPDK port configured on this agent"},
      {"new name, dip in use", [](auto* vm) { vm->set_name("vm9"); }, grpc::FAILED_PRECONDITION,
       "vm.dip: 10.1.0.2 is already VM 'vm2'"},
      {"mac differs", [](auto* vm) { vm->set_mac("02:00:0a:01:00:09"); }, grpc::FAILED_PRECONDITION,
       "vm.mac: 02:00:0a:01:00:09 differs from the configured 02:00:0a:01:00:02 of VM 'vm2'"},
      {"port differs", [](auto* vm) { vm->set_port("net_vhost0,iface=/tmp/x"); },
       grpc::FAILED_PRECONDITION,
       "vm.port: net_vhost0,iface=/tmp/x (net_vhost iface=/tmp/x) differs from the configured"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    v1::AttachVmRequest request = AttachVm2();
    c.spoil(request.mutable_vm());
    v1::AttachVmResponse response;
    grpc::Status s = service_.AttachVm(nullptr, &request, &response);
    EXPECT_EQ(s.error_code(), c.code) << s.error_message();
    EXPECT_NE(s.error_message().find(c.message), std::string::npos) << s.error_message();
    ExpectUnchanged();
  }
}

v1::AttachVmRequest AttachNewVm9() {
  v1::AttachVmRequest r;
  v1::VmAttachment* vm = r.mutable_vm();
  vm->set_name("vm9");
  vm->set_port("net_af_packet_vm9,iface=vm9");
  vm->set_mac("02:00:0a:01:00:09");
  vm->set_dip("10.1.0.9");
  vm->set_pa("10.101.0.39");
  vm->set_gateway("10.1.0.254");
  *vm->add_endpoints() = Ep("10.200.0.10", 80, "", 8080);
  return r;
}

TEST_F(AgentServiceTest, AttachVmOfANewVmAddsItWithItsPortAndDetachRemovesIt) {
  runtime_.plugs = true;
  v1::AttachVmRequest request = AttachNewVm9();
  v1::AttachVmResponse response;
  grpc::Status s = service_.AttachVm(nullptr, &request, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(runtime_.published.size(), 1u);
  const AgentConfig& next = runtime_.published[0];
  ASSERT_EQ(next.vms.size(), 3u);
  EXPECT_EQ(next.vms[2].name, "vm9");
  EXPECT_EQ(next.vms[2].port, "net_af_packet_vm9,iface=vm9");
  EXPECT_EQ(next.vms[2].pa, Ip("10.101.0.39"));
  ASSERT_EQ(next.endpoints.size(), 3u);
  EXPECT_EQ(next.endpoints[2].dip, Ip("10.1.0.9"));
  ASSERT_EQ(response.changes().added_size(), 2);
  EXPECT_EQ(response.changes().added(0), "vm vm9");

  v1::GetVmsResponse vms;
  ASSERT_TRUE(service_.GetVms(nullptr, nullptr, &vms).ok());
  ASSERT_EQ(vms.vms_size(), 3);
  EXPECT_FALSE(vms.vms(0).hotplugged());
  EXPECT_TRUE(vms.vms(2).hotplugged());
  EXPECT_TRUE(vms.vms(2).attached());

  // Attaching it again with the same port is the re-attach of a VM it has.
  v1::AttachVmRequest again = AttachNewVm9();
  ASSERT_TRUE(service_.AttachVm(nullptr, &again, &response).ok());

  v1::DetachVmRequest detach;
  detach.set_name("vm9");
  v1::DetachVmResponse detached;
  s = service_.DetachVm(nullptr, &detach, &detached);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(runtime_.published.back().vms.size(), 2u);
  EXPECT_EQ(runtime_.published.back().endpoints.size(), 2u);
  vms.Clear();
  ASSERT_TRUE(service_.GetVms(nullptr, nullptr, &vms).ok());
  EXPECT_EQ(vms.vms_size(), 2);
  EXPECT_EQ(service_.DetachVm(nullptr, &detach, &detached).error_code(), grpc::NOT_FOUND);
  EXPECT_EQ(runtime_.hotplug_refusals, 0);
}

TEST_F(AgentServiceTest, AttachVmOfANewVmRefusals) {
  struct Case {
    const char* what;
    std::function<void(v1::VmAttachment*)> spoil;
    grpc::StatusCode code;
    const char* message;
  };
  const Case cases[] = {
      {"no port", [](auto* vm) { vm->clear_port(); }, grpc::INVALID_ARGUMENT,
       "vm.port: required"},
      {"devargs", [](auto* vm) { vm->set_port("net_af_packet_vm9,qpairs=1"); },
       grpc::INVALID_ARGUMENT, "vm.port: 'net_af_packet_vm9,qpairs=1': "},
      {"vm1's port", [](auto* vm) { vm->set_port("net_af_packet_x,iface=vm1"); },
       grpc::FAILED_PRECONDITION, "vm.port: net_af_packet_x,iface=vm1 is the port of VM 'vm1'"},
      {"the uplink", [](auto* vm) { vm->set_port("net_af_packet9,iface=eth0"); },
       grpc::FAILED_PRECONDITION, "vm.port: net_af_packet9,iface=eth0 is the agent's uplink"},
      {"no pa", [](auto* vm) { vm->clear_pa(); }, grpc::INVALID_ARGUMENT, "vm.pa: required"},
      {"no gateway", [](auto* vm) { vm->clear_gateway(); }, grpc::INVALID_ARGUMENT,
       "vm.gateway: required"},
      {"pa outside", [](auto* vm) { vm->set_pa("10.102.0.39"); }, grpc::INVALID_ARGUMENT,
       "vm.pa: 10.102.0.39 is not an address of the host's prefix 10.101.0.21/24"},
      {"pa in use", [](auto* vm) { vm->set_pa("10.101.0.31"); }, grpc::FAILED_PRECONDITION,
       "vm.pa: 10.101.0.31 is already VM 'vm1''s PA"},
      {"endpoint over a lease",
       [](auto* vm) { *vm->add_snat_leases() = Lease("", 20010, 4); }, grpc::INVALID_ARGUMENT,
       "vm.snat_leases[0]"},
  };
  runtime_.plugs = true;
  int refusals = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    v1::AttachVmRequest request = AttachNewVm9();
    c.spoil(request.mutable_vm());
    v1::AttachVmResponse response;
    grpc::Status s = service_.AttachVm(nullptr, &request, &response);
    EXPECT_EQ(s.error_code(), c.code) << s.error_message();
    EXPECT_NE(s.error_message().find(c.message), std::string::npos) << s.error_message();
    EXPECT_EQ(runtime_.hotplug_refusals, ++refusals);
    ExpectUnchanged();
    EXPECT_EQ(service_.running().vms.size(), 2u);
  }
  // The runtime refusing (the port cannot be probed): its message, nothing changes.
  runtime_.refuse = "vm.port: cannot probe DPDK device 'net_af_packet_vm9,iface=vm9': No such device";
  v1::AttachVmRequest request = AttachNewVm9();
  v1::AttachVmResponse response;
  grpc::Status s = service_.AttachVm(nullptr, &request, &response);
  EXPECT_EQ(s.error_code(), grpc::FAILED_PRECONDITION);
  EXPECT_EQ(s.error_message(), runtime_.refuse);
  EXPECT_EQ(response.changes().added_size(), 0);
  ExpectUnchanged();
}

TEST_F(AgentServiceTest, DetachVmRemovesItsStateAndBlocksEndpointsUntilAttached) {
  v1::DetachVmRequest unknown;
  unknown.set_name("vm9");
  v1::DetachVmResponse response;
  EXPECT_EQ(service_.DetachVm(nullptr, &unknown, &response).error_code(), grpc::NOT_FOUND);
  ExpectUnchanged();

  v1::DetachVmRequest detach;
  detach.set_name("vm1");
  ASSERT_TRUE(service_.DetachVm(nullptr, &detach, &response).ok());
  ASSERT_EQ(runtime_.published.size(), 1u);
  EXPECT_EQ(runtime_.published[0].endpoints.size(), 1u);
  EXPECT_EQ(runtime_.published[0].snat_leases.size(), 1u);

  v1::SetEndpointsRequest request = LabEndpoints();
  v1::ChangeSummary changes;
  grpc::Status s = service_.SetEndpoints(nullptr, &request, &changes);
  EXPECT_EQ(s.error_code(), grpc::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("endpoints[0].dip: 10.1.0.1 is VM 'vm1', which is detached"),
            std::string::npos)
      << s.error_message();

  v1::GetVmsResponse vms;
  ASSERT_TRUE(service_.GetVms(nullptr, nullptr, &vms).ok());
  ASSERT_EQ(vms.vms_size(), 2);
  EXPECT_FALSE(vms.vms(0).attached());
  EXPECT_TRUE(vms.vms(1).attached());
  EXPECT_EQ(vms.host_pa(), "10.101.0.21");
}

// The service behind a real gRPC server on a unix socket, called through a stub.
TEST_F(AgentServiceTest, DynamicLeasesGoLiveAndSurviveSetSnatLeases) {
  const SnatLeaseConfig chunk{.dip = Ip("10.1.0.1"), .vip = Ip("10.200.0.10"), .proto = 6,
                              .port_start = 21000, .port_count = 32};
  ASSERT_TRUE(service_.AddDynamicLease(chunk, std::chrono::milliseconds(100)).ok());
  ASSERT_EQ(runtime_.published.size(), 1u);
  ASSERT_EQ(runtime_.published[0].snat_leases.size(), 3u);
  EXPECT_TRUE(runtime_.published[0].snat_leases[2].dynamic);
  // Adding it again is a no-op.
  ASSERT_TRUE(service_.AddDynamicLease(chunk, std::chrono::milliseconds(100)).ok());
  EXPECT_EQ(runtime_.published.size(), 1u);

  // The controller replaces the static leases; the dynamic one stays.
  v1::SetSnatLeasesRequest request;
  *request.add_leases() = Lease("10.1.0.2", 20064, 64);
  v1::ChangeSummary changes;
  ASSERT_TRUE(service_.SetSnatLeases(nullptr, &request, &changes).ok());
  AgentConfig running = service_.running();
  ASSERT_EQ(running.snat_leases.size(), 2u);
  EXPECT_EQ(running.snat_leases[1].port_start, 21000);
  EXPECT_TRUE(running.snat_leases[1].dynamic);
  v1::GetLeasesResponse leases;
  ASSERT_TRUE(service_.GetLeases(nullptr, nullptr, &leases).ok());
  EXPECT_TRUE(leases.leases(1).dynamic());

  // A static lease over the chunk is refused, naming the dynamic one.
  *request.add_leases() = Lease("10.1.0.1", 21010, 4);
  grpc::Status overlap = service_.SetSnatLeases(nullptr, &request, &changes);
  EXPECT_EQ(overlap.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(overlap.error_message().find("(dynamic)"), std::string::npos)
      << overlap.error_message();
  // Nobody may set a dynamic lease through the API.
  v1::SetSnatLeasesRequest forged;
  *forged.add_leases() = Lease("10.1.0.1", 30000, 4);
  forged.mutable_leases(0)->set_dynamic(true);
  grpc::Status refused = service_.SetSnatLeases(nullptr, &forged, &changes);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(refused.error_message().find("leases[0].dynamic"), std::string::npos);

  ASSERT_TRUE(service_.RemoveDynamicLease(chunk, std::chrono::milliseconds(100)).ok());
  EXPECT_EQ(service_.running().snat_leases.size(), 1u);
  EXPECT_EQ(service_.RemoveDynamicLease(chunk, std::chrono::milliseconds(100)).code(),
            absl::StatusCode::kNotFound);
}

TEST_F(AgentServiceTest, DynamicLeaseWaitsForTheDataPath) {
  struct StalledRuntime : FakeAgentRuntime {
    uint64_t adopted_generation() const override { return 1; }  // never adopts
  } stalled;
  AgentService service(&stalled, LabHost());
  const SnatLeaseConfig chunk{.dip = Ip("10.1.0.2"), .vip = Ip("10.200.0.10"), .proto = 6,
                              .port_start = 21000, .port_count = 32};
  EXPECT_EQ(service.AddDynamicLease(chunk, std::chrono::milliseconds(20)).code(),
            absl::StatusCode::kDeadlineExceeded);
  // A detached VM gets no chunk.
  v1::DetachVmRequest detach;
  detach.set_name("vm1");
  v1::DetachVmResponse detached;
  ASSERT_TRUE(service_.DetachVm(nullptr, &detach, &detached).ok());
  EXPECT_FALSE(service_.VmAttached(Ip("10.1.0.1")));
  EXPECT_TRUE(service_.VmAttached(Ip("10.1.0.2")));
  EXPECT_EQ(service_.AddDynamicLease({.dip = Ip("10.1.0.1"), .vip = Ip("10.200.0.10"), .proto = 6,
                                      .port_start = 21000, .port_count = 32},
                                     std::chrono::milliseconds(100))
                .code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(AgentGrpcServerTest, ServesOnAUnixSocket) {
  char dir[] = "/tmp/sluice-agent-grpc-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string socket = std::string(dir) + "/agent.sock";
  FakeAgentRuntime runtime;
  AgentService service(&runtime, LabHost());
  absl::StatusOr<std::unique_ptr<grpc::Server>> server =
      StartGrpcServer({.unix_socket = socket}, {&service});
  ASSERT_TRUE(server.ok()) << server.status();
  struct stat st;
  ASSERT_EQ(stat(socket.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);

  auto stub = v1::Agent::NewStub(DialSluice(socket));
  {
    grpc::ClientContext context;
    v1::HealthResponse health;
    ASSERT_TRUE(stub->Health(&context, v1::HealthRequest(), &health).ok());
    EXPECT_EQ(health.state(), v1::HealthResponse::STATE_SERVING);
    EXPECT_EQ(health.name(), "host1");
  }
  {
    grpc::ClientContext context;
    v1::SetEndpointsRequest request;
    *request.add_endpoints() = Ep("10.200.0.10", 80, "10.1.0.77");
    v1::ChangeSummary changes;
    grpc::Status s = stub->SetEndpoints(&context, request, &changes);
    EXPECT_EQ(s.error_code(), grpc::NOT_FOUND);
    EXPECT_EQ(s.error_message(),
              "endpoints[0].dip: 10.1.0.77 is not the DIP of any VM on this host");
  }
  {
    grpc::ClientContext context;
    v1::GetFlowsRequest request;
    request.set_limit(2);
    v1::GetFlowsResponse flows;
    ASSERT_TRUE(stub->GetFlows(&context, request, &flows).ok());
    ASSERT_EQ(flows.flows_size(), 2);
    EXPECT_EQ(flows.total(), 3u);
    EXPECT_EQ(flows.flows(1).remote_port(), 40001u);
    EXPECT_EQ(flows.flows(0).state(), "established");
    EXPECT_EQ(flows.flows(0).nic(), "");
    EXPECT_EQ(flows.flows(0).nic_packets(), 0u);
    EXPECT_EQ(flows.flows(1).nic(), "nic");
    EXPECT_EQ(flows.flows(1).nic_packets(), 12u);
    EXPECT_EQ(flows.flows(1).nic_bytes(), 3456u);
  }
  {
    grpc::ClientContext context;
    v1::AgentStats stats;
    ASSERT_TRUE(stub->GetStats(&context, v1::GetStatsRequest(), &stats).ok());
    ASSERT_EQ(stats.counters_size(), 1);
    EXPECT_EQ(stats.counters(0).name(), "rx_packets");
    EXPECT_EQ(stats.vms_size(), 2);
  }
  service.Shutdown();
  (*server)->Shutdown();
  unlink(socket.c_str());
  rmdir(dir);
}

}  // namespace
}  // namespace sluice::agent
