// Real traffic through a private OVS (userspace datapath, datapath_type=netdev) in network
// namespaces of its own (sv-*): a client namespace sends real TCP to a VIP inside GRE (GreMux
// below: tun device → raw GRE socket, the mux's job; this kernel has no ip_gre module) to the
// host namespace, where ovs-vswitchd pops the tunnel,
// rewrites VIP:80 → DIP:8080 and delivers to a VM namespace on a veth port; the VM's reply is
// rewritten DIP:8080 → VIP:80 (DSR) and leaves on the uplink straight to the client. curl must
// get the VM's page, and the flows' counters must show OVS carried the packets.
//
// Addresses: client 198.51.100.7 (sv-cli, routed to svtun0), sv-cli eth0 10.0.1.254, host PA
// 10.0.1.1 (the bridge's LOCAL port in sv-host), VIP 10.200.0.10:80, VM 10.1.0.1:8080 (sv-vm).
// SLUICE_OVS_DPDK=1 runs the DPDK build of ovs-vswitchd when hugepages are free.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "common/strings.h"
#include "vswitch/executor.h"
#include "vswitch/ovs_instance.h"
#include "vswitch/process.h"

namespace sluice::vswitch {
namespace {

using flow::Action;
using flow::Ipv4Match;
using flow::PortMatch;
using flow::Rule;

constexpr char kHostNs[] = "sv-host";
constexpr char kClientNs[] = "sv-cli";
constexpr char kVmNs[] = "sv-vm";
constexpr char kBridgeName[] = "svbr";
constexpr char kBridgeMac[] = "02:5e:00:00:01:01";
constexpr char kVmMac[] = "02:5e:00:00:03:01";
constexpr char kClientMac[] = "02:5e:00:00:00:fe";
constexpr uint32_t kHostPa = 0x0a000101;  // 10.0.1.1
constexpr uint32_t kVip = 0x0ac8000a;     // 10.200.0.10
constexpr uint32_t kDip = 0x0a010001;     // 10.1.0.1
constexpr uint32_t kUplinkOfport = 1, kVmOfport = 2, kGreOfport = 20;

flow::MacAddr MacOf(const char* text) {
  unsigned v[6];
  sscanf(text, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]);
  flow::MacAddr m;
  for (int i = 0; i < 6; ++i) m[i] = static_cast<uint8_t>(v[i]);
  return m;
}

absl::Status Sh(const std::vector<std::string>& argv) {
  absl::StatusOr<std::string> r = RunChecked(argv);
  return r.ok() ? absl::OkStatus() : r.status();
}

std::vector<std::string> In(const char* ns, std::vector<std::string> argv) {
  argv.insert(argv.begin(), {"ip", "netns", "exec", ns});
  return argv;
}

// The mux's part for the test: in namespace `ns`, IPv4 packets routed to tun device `tun`
// are sent to `host_pa` inside a basic GRE header (protocol 0x0800) through a raw IP socket,
// so the kernel adds the outer IPv4 header and resolves the host's MAC by ARP.
class GreMux {
 public:
  GreMux(const char* ns, const char* tun, const char* host_pa) {
    std::promise<std::string> started;
    std::future<std::string> result = started.get_future();
    thread_ = std::thread([this, ns, tun, host_pa, &started] {
      std::string error = Open(ns, tun, host_pa);
      const bool ok = error.empty();
      started.set_value(std::move(error));
      if (ok) Run();
    });
    error_ = result.get();
  }
  ~GreMux() {
    stop_ = true;
    thread_.join();
    if (tun_fd_ >= 0) close(tun_fd_);
    if (raw_fd_ >= 0) close(raw_fd_);
  }
  const std::string& error() const { return error_; }
  uint64_t packets() const { return packets_; }

 private:
  std::string Open(const char* ns, const char* tun, const char* host_pa) {
    int ns_fd = open(StrCat("/var/run/netns/", ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (ns_fd < 0 || setns(ns_fd, CLONE_NEWNET) != 0) return StrCat("setns: ", strerror(errno));
    close(ns_fd);
    tun_fd_ = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (tun_fd_ < 0) return StrCat("/dev/net/tun: ", strerror(errno));
    ifreq ifr{};
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    strncpy(ifr.ifr_name, tun, IFNAMSIZ - 1);
    if (ioctl(tun_fd_, TUNSETIFF, &ifr) != 0) return StrCat("TUNSETIFF: ", strerror(errno));
    raw_fd_ = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_GRE);
    if (raw_fd_ < 0) return StrCat("raw GRE socket: ", strerror(errno));
    to_.sin_family = AF_INET;
    if (inet_pton(AF_INET, host_pa, &to_.sin_addr) != 1) return "bad host PA";
    return "";
  }
  void Run() {
    uint8_t buf[2048];
    buf[0] = buf[1] = 0;  // GRE: no checksum, key or sequence; version 0
    buf[2] = 0x08;
    buf[3] = 0x00;  // protocol type IPv4
    while (!stop_) {
      pollfd p{.fd = tun_fd_, .events = POLLIN, .revents = 0};
      if (poll(&p, 1, 50) <= 0) continue;
      ssize_t n = read(tun_fd_, buf + 4, sizeof(buf) - 4);
      if (n <= 0 || (buf[4] >> 4) != 4) continue;
      if (sendto(raw_fd_, buf, static_cast<size_t>(n) + 4, 0, reinterpret_cast<sockaddr*>(&to_),
                 sizeof(to_)) > 0) {
        ++packets_;
      }
    }
  }

  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> packets_{0};
  int tun_fd_ = -1;
  int raw_fd_ = -1;
  sockaddr_in to_{};
  std::string error_;
};

class OvsTrafficTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DeleteNamespaces();
    char dir[] = "/tmp/sv-traffic-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    for (const char* ns : {kHostNs, kClientNs, kVmNs})
      ASSERT_TRUE(Sh({"ip", "netns", "add", ns}).ok());
    // Uplink: sv-host/sv-up ↔ sv-cli/eth0. VM: sv-host/sv-vm1 ↔ sv-vm/eth0.
    ASSERT_TRUE(Sh({"ip", "link", "add", "sv-up", "netns", kHostNs, "type", "veth", "peer", "name",
                    "eth0", "netns", kClientNs})
                    .ok());
    ASSERT_TRUE(Sh({"ip", "link", "add", "sv-vm1", "netns", kHostNs, "type", "veth", "peer", "name",
                    "eth0", "netns", kVmNs})
                    .ok());
    for (const std::vector<std::string>& cmd : std::vector<std::vector<std::string>>{
             In(kHostNs, {"ip", "link", "set", "lo", "up"}),
             In(kHostNs, {"ip", "link", "set", "sv-up", "up"}),
             In(kHostNs, {"ip", "link", "set", "sv-vm1", "up"}),
             // Client + mux + router: the client address behind a GRE tunnel to the host PA.
             In(kClientNs, {"ip", "link", "set", "lo", "up"}),
             In(kClientNs, {"ip", "link", "set", "eth0", "address", kClientMac}),
             In(kClientNs, {"ip", "addr", "add", "10.0.1.254/24", "dev", "eth0"}),
             In(kClientNs, {"ip", "link", "set", "eth0", "up"}),
             In(kClientNs, {"ethtool", "-K", "eth0", "tx", "off"}),
             In(kClientNs, {"ip", "addr", "add", "198.51.100.7/32", "dev", "lo"}),
             In(kClientNs, {"sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"}),
             In(kClientNs, {"sysctl", "-qw", "net.ipv4.conf.eth0.rp_filter=0"}),
             // The VM: its gateway is the bridge's MAC (the VM port's MAC in the rules).
             In(kVmNs, {"ip", "link", "set", "lo", "up"}),
             In(kVmNs, {"ip", "link", "set", "eth0", "address", kVmMac}),
             In(kVmNs, {"ip", "addr", "add", "10.1.0.1/24", "dev", "eth0"}),
             In(kVmNs, {"ip", "link", "set", "eth0", "up"}),
             In(kVmNs, {"ethtool", "-K", "eth0", "tx", "off"}),
             In(kVmNs, {"ip", "route", "add", "default", "via", "10.1.0.254"}),
             In(kVmNs, {"ip", "neigh", "replace", "10.1.0.254", "lladdr", kBridgeMac, "dev", "eth0",
                        "nud", "permanent"}),
         }) {
      absl::Status s = Sh(cmd);
      ASSERT_TRUE(s.ok()) << s;
    }
    mux_ = std::make_unique<GreMux>(kClientNs, "svtun0", "10.0.1.1");
    ASSERT_EQ(mux_->error(), "");
    for (const std::vector<std::string>& cmd : std::vector<std::vector<std::string>>{
             In(kClientNs, {"ip", "link", "set", "svtun0", "mtu", "1400", "up"}),
             In(kClientNs,
                {"ip", "route", "add", "10.200.0.10/32", "dev", "svtun0", "src", "198.51.100.7"}),
             In(kClientNs, {"ip", "route", "add", "10.200.0.11/32", "dev", "svtun0", "src",
                            "198.51.100.7"})}) {
      absl::Status s = Sh(cmd);
      ASSERT_TRUE(s.ok()) << s;
    }
    std::filesystem::create_directories(dir_ + "/www");
    std::ofstream(dir_ + "/www/index.html") << "served by sv-vm through OVS\n";
    absl::StatusOr<pid_t> web =
        SpawnDaemon(In(kVmNs, {"python3", "-m", "http.server", "8080", "--bind", "10.1.0.1",
                               "--directory", dir_ + "/www"}),
                    dir_ + "/http.log");
    ASSERT_TRUE(web.ok()) << web.status();
    web_pid_ = *web;
    absl::Status up = WaitFor(
        [] {
          return RunCommand(In(kVmNs, {"curl", "-sf", "-o", "/dev/null", "--max-time", "1",
                                       "http://10.1.0.1:8080/"}))
                     .exit_code == 0;
        },
        std::chrono::seconds(15), "the VM's HTTP server");
    ASSERT_TRUE(up.ok()) << up;

    absl::StatusOr<std::unique_ptr<OvsInstance>> ovs =
        OvsInstance::Start({.run_dir = dir_ + "/ovs",
                            .netns = kHostNs,
                            .want_dpdk = getenv("SLUICE_OVS_DPDK") != nullptr});
    ASSERT_TRUE(ovs.ok()) << ovs.status();
    ovs_ = std::move(*ovs);
    absl::Status bridged = EnsureBridge(
        *ovs_, {.name = kBridgeName,
                .datapath_type = "netdev",
                .hwaddr = kBridgeMac,
                .ports = {{.name = "sv-up", .ofport = kUplinkOfport},
                          {.name = "sv-vm1", .ofport = kVmOfport},
                          {.name = "svgre",
                           .type = "gre",
                           .ofport = kGreOfport,
                           .options = {{"remote_ip", "flow"}, {"packet_type", "legacy_l3"}}}}});
    ASSERT_TRUE(bridged.ok()) << bridged;
    // The bridge's LOCAL port is the host's tunnel endpoint.
    for (const std::vector<std::string>& cmd : std::vector<std::vector<std::string>>{
             In(kHostNs, {"ip", "addr", "add", "10.0.1.1/24", "dev", kBridgeName}),
             In(kHostNs, {"ip", "link", "set", kBridgeName, "up"})}) {
      absl::Status s = Sh(cmd);
      ASSERT_TRUE(s.ok()) << s;
    }
  }

  void TearDown() override {
    mux_.reset();
    if (ovs_) ovs_->Stop();
    if (web_pid_ > 0) StopChild(web_pid_, std::chrono::seconds(2));
    DeleteNamespaces();
    std::error_code ignored;
    if (!dir_.empty() && getenv("SLUICE_KEEP") == nullptr)
      std::filesystem::remove_all(dir_, ignored);
  }

  static void DeleteNamespaces() {
    for (const char* ns : {kHostNs, kClientNs, kVmNs}) RunCommand({"ip", "netns", "delete", ns});
  }

  Rule Inbound(uint64_t id, uint32_t vip) {
    return Rule{.id = id,
                .priority = 100,
                .match = {.in_port = 0,
                          .tunnel = flow::Tunnel::kGre,
                          .outer_dst = Ipv4Match::Exact(kHostPa),
                          .dst = Ipv4Match::Exact(vip),
                          .proto = flow::kProtoTcp,
                          .dst_port = PortMatch::Exact(80)},
                .actions = {Action::Decap(), Action::SetIpv4Dst(kDip), Action::SetL4Dst(8080),
                            Action::DecTtl(), Action::SetMac(MacOf(kBridgeMac), MacOf(kVmMac)),
                            Action::Count(), Action::Output(1)},
                .name = StrCat("inbound-gre vip=", flow::FormatIpv4(vip), ":80 dip=10.1.0.1:8080")};
  }
  Rule Return(uint64_t id) {
    return Rule{.id = id,
                .priority = 100,
                .match = {.in_port = 1,
                          .src = Ipv4Match::Exact(kDip),
                          .proto = flow::kProtoTcp,
                          .src_port = PortMatch::Exact(8080)},
                .actions = {Action::SetIpv4Src(kVip), Action::SetL4Src(80), Action::DecTtl(),
                            Action::SetMac(MacOf(kBridgeMac), MacOf(kClientMac)), Action::Count(),
                            Action::Output(0)},
                .name = "dsr-return dip=10.1.0.1:8080"};
  }
  OvsExecutorConfig ExecutorConfig() const {
    return {.ports = {.ofport = {{0, kUplinkOfport}, {1, kVmOfport}}, .gre_port = kGreOfport},
            .base = {.uplink_ofport = kUplinkOfport, .tunnel_endpoints = {kHostPa}}};
  }
  // Waits until OVS has learnt the tunnel endpoint address of its LOCAL port: GRE to it is
  // then popped (tnl_pop) instead of handed to the kernel.
  absl::Status WaitForTunnelPop() {
    const std::string gre_flow = StrCat("in_port=", kUplinkOfport, ",dl_dst=", kBridgeMac,
                                        ",ip,nw_src=10.0.1.254,nw_dst=10.0.1.1,nw_proto=47");
    return WaitFor(
        [&] {
          absl::StatusOr<std::string> trace =
              ovs_->Appctl({"ofproto/trace", kBridgeName, gre_flow});
          return trace.ok() && trace->find("tnl_pop(") != std::string::npos;
        },
        std::chrono::seconds(20), "ovs-vswitchd to pop GRE sent to 10.0.1.1");
  }
  // Runs `n` curls to http://<vip>/; returns how many got the VM's page, `*error` the last
  // failure.
  int Curl(const std::string& vip, int n, std::string* error) {
    int ok = 0;
    for (int i = 0; i < n; ++i) {
      CommandResult r = RunCommand(In(kClientNs, {"curl", "-s", "--connect-timeout", "5",
                                                  "--max-time", "10", "http://" + vip + "/"}));
      if (r.exit_code == 0 && r.out == "served by sv-vm through OVS\n") {
        ++ok;
      } else {
        *error = StrCat("curl ", vip, " exit ", r.exit_code, ": ", r.out, r.err);
      }
    }
    return ok;
  }

  std::string dir_;
  pid_t web_pid_ = -1;
  std::unique_ptr<OvsInstance> ovs_;
  std::unique_ptr<GreMux> mux_;
};

TEST_F(OvsTrafficTest, CurlThroughGreDecapDnatAndDsr) {
  OfctlChannel channel(ovs_.get(), kBridgeName);
  OvsExecutor executor(&channel, ExecutorConfig());
  ASSERT_TRUE(executor.Add(Inbound(1, kVip)).ok);
  ASSERT_TRUE(executor.Add(Return(2)).ok);
  absl::StatusOr<ReconcileReport> report = executor.Reconcile();
  ASSERT_TRUE(report.ok()) << report.status();
  absl::Status popping = WaitForTunnelPop();
  ASSERT_TRUE(popping.ok()) << popping;

  std::string error;
  EXPECT_EQ(Curl("10.200.0.10", 20, &error), 20) << error << "\nflows:\n"
                                                 << channel.DumpFlows().value_or("?");

  ASSERT_TRUE(ovs_->Appctl({"revalidator/wait"}).ok());
  ASSERT_TRUE(executor.QueryCounters().ok());
  // At least SYN, ACK, request, ACK of the response and FIN per connection, both ways.
  EXPECT_GE(executor.Status(1)->packets, 20u * 4);
  EXPECT_GE(executor.Status(2)->packets, 20u * 3);
  EXPECT_GE(mux_->packets(), 20u * 4);
  RecordProperty("dpdk", ovs_->dpdk() ? "yes" : "no");
  absl::StatusOr<DatapathStats> dp = ReadDatapathStats(*ovs_);
  ASSERT_TRUE(dp.ok()) << dp.status();
  EXPECT_GT(dp->hits + dp->misses, 20u * 8);
  EXPECT_EQ(dp->offloaded, 0u) << "no offload-capable NIC here";
}

// One DIP:port behind two VIPs: the reply's source VIP exists only per connection, so the
// inbound DNAT is recorded in OVS conntrack and replies are un-NATed from it. A reply with
// the wrong VIP would be reset by the client's TCP, so every curl must succeed on both.
TEST_F(OvsTrafficTest, SharedDipPortUsesConntrackNatState) {
  OfctlChannel channel(ovs_.get(), kBridgeName);
  OvsExecutor executor(&channel, ExecutorConfig());
  const RuleOptions ct{.conntrack = true};
  ASSERT_TRUE(executor.Add(Inbound(1, kVip), ct).ok);
  ASSERT_TRUE(executor.Add(Inbound(3, kVip + 1), ct).ok);
  ASSERT_TRUE(executor.Add(Return(2), ct).ok);
  absl::StatusOr<ReconcileReport> report = executor.Reconcile();
  ASSERT_TRUE(report.ok()) << report.status();
  absl::Status popping = WaitForTunnelPop();
  ASSERT_TRUE(popping.ok()) << popping;

  std::string error;
  for (int round = 0; round < 5; ++round) {
    EXPECT_EQ(Curl("10.200.0.10", 2, &error), 2) << error;
    EXPECT_EQ(Curl("10.200.0.11", 2, &error), 2) << error;
  }
  if (!error.empty()) ADD_FAILURE() << "flows:\n" << channel.DumpFlows().value_or("?");
  ASSERT_TRUE(ovs_->Appctl({"revalidator/wait"}).ok());
  ASSERT_TRUE(executor.QueryCounters().ok());
  EXPECT_GE(executor.Status(1)->packets, 10u * 4);
  EXPECT_GE(executor.Status(3)->packets, 10u * 4);
  EXPECT_GE(executor.Status(2)->packets, 20u * 3);
  absl::StatusOr<std::string> conns = ovs_->Appctl({"dpctl/dump-conntrack"});
  ASSERT_TRUE(conns.ok());
  EXPECT_NE(conns->find("dst=10.200.0.11"), std::string::npos) << *conns;
}

}  // namespace
}  // namespace sluice::vswitch

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (const char* tool : {"ovs-vswitchd", "curl", "python3", "ethtool"}) {
    if (geteuid() != 0 ||
        sluice::vswitch::RunCommand({"sh", "-c", std::string("command -v ") + tool}).exit_code !=
            0) {
      fprintf(stderr, "SKIP: needs root and %s\n", tool);
      return 77;
    }
  }
  return RUN_ALL_TESTS();
}
