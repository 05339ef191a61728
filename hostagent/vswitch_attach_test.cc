// vswitch mode, AttachVm/DetachVm at runtime against a real private ovs-vswitchd: a VM that is
// not in the agent's boot config gets its bridge port through OVSDB and its flows (its
// gateway's ARP answered by the bridge: real packets from its namespace), DetachVm takes
// flows, port and PA away again, and a VM whose port OVS cannot serve is refused with nothing
// changed. The test runs in its own network and mount namespaces (the agent's `ip` commands,
// /proc/net/arp and /sys/class/net then see only its interfaces); the router and the VMs are
// namespaces svd-* of that private mount namespace. Needs root and Open vSwitch (else skip).
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/strings.h"
#include "hostagent/grpc_service.h"
#include "hostagent/vswitch_agent.h"
#include "vswitch/ovs_instance.h"
#include "vswitch/process.h"

namespace sluice::agent {
namespace {

constexpr char kRouterNs[] = "svd-rt";
constexpr char kVm1Ns[] = "svd-vm1";
constexpr char kVm2Ns[] = "svd-vm2";
constexpr char kVm2Mac[] = "02:00:0a:01:00:06";

absl::StatusOr<std::string> Cmd(const std::vector<std::string>& argv) {
  return vswitch::RunChecked(argv);
}
std::vector<std::string> In(const std::string& ns, std::vector<std::string> argv) {
  argv.insert(argv.begin(), {"ip", "netns", "exec", ns});
  return argv;
}
std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Private network + mount namespaces with their own /sys (so /sys/class/net is this
// namespace's), entered once before any thread starts.
absl::Status EnterPrivateNamespaces() {
  if (unshare(CLONE_NEWNET | CLONE_NEWNS) != 0) {
    return absl::InternalError(StrCat("unshare: ", strerror(errno)));
  }
  if (mount("", "/", nullptr, MS_PRIVATE | MS_REC, nullptr) != 0 ||
      umount2("/sys", MNT_DETACH) != 0 || mount("sysfs", "/sys", "sysfs", 0, nullptr) != 0) {
    return absl::InternalError(StrCat("remounting /sys: ", strerror(errno)));
  }
  return absl::OkStatus();
}

class VswitchAttachTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0 || system("command -v ovs-vswitchd >/dev/null") != 0) {
      skip_ = true;
      return;
    }
    absl::Status s = EnterPrivateNamespaces();
    ASSERT_TRUE(s.ok()) << s;
    char dir[] = "/tmp/svd-attach-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    for (const char* ns : {kRouterNs, kVm1Ns, kVm2Ns}) ASSERT_TRUE(Cmd({"ip", "netns", "add", ns}).ok());
    for (const std::vector<std::string>& cmd : std::vector<std::vector<std::string>>{
             {"ip", "link", "set", "lo", "up"},
             {"ip", "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", kRouterNs},
             {"ip", "link", "add", "vm1p", "type", "veth", "peer", "name", "eth0", "netns", kVm1Ns},
             {"ip", "link", "add", "vm2p", "type", "veth", "peer", "name", "eth0", "netns", kVm2Ns},
             {"ip", "link", "set", "up0", "up"},
             {"ip", "link", "set", "vm1p", "up"},
             {"ip", "link", "set", "vm2p", "up"},
             In(kRouterNs, {"ip", "addr", "add", "10.9.0.1/24", "dev", "eth0"}),
             In(kRouterNs, {"ip", "link", "set", "eth0", "up"}),
             In(kVm1Ns, {"ip", "link", "set", "eth0", "address", "02:00:0a:01:00:05"}),
             In(kVm1Ns, {"ip", "addr", "add", "10.1.0.5/24", "dev", "eth0"}),
             In(kVm1Ns, {"ip", "link", "set", "eth0", "up"}),
             In(kVm2Ns, {"ip", "link", "set", "eth0", "address", kVm2Mac}),
             In(kVm2Ns, {"ip", "addr", "add", "10.1.0.6/24", "dev", "eth0"}),
             In(kVm2Ns, {"ip", "link", "set", "eth0", "up"}),
         }) {
      absl::StatusOr<std::string> r = Cmd(cmd);
      ASSERT_TRUE(r.ok()) << r.status();
    }
  }
  static void TearDownTestSuite() {
    if (skip_) return;
    agent_.reset();
    // The agent leaves OVS running (restarts keep flows): stop it by its pid files. The
    // namespaces go with this process's network and mount namespaces.
    for (const char* file : {"ovs-vswitchd.pid", "ovsdb-server.pid"}) {
      const pid_t pid = static_cast<pid_t>(atoi(ReadFile(dir_ + "/" + file).c_str()));
      if (pid <= 1 || kill(pid, SIGTERM) != 0) continue;
      (void)vswitch::WaitFor([pid] { return kill(pid, 0) != 0; }, std::chrono::seconds(10),
                             StrCat(file, " to exit"));
    }
    for (const char* ns : {kRouterNs, kVm1Ns, kVm2Ns}) (void)Cmd({"ip", "netns", "delete", ns});
    (void)Cmd({"rm", "-rf", dir_});
  }
  void SetUp() override {
    if (skip_) GTEST_SKIP() << "needs root and Open vSwitch";
  }

  AgentConfig Config() const {
    const std::string yaml = StrCat(R"(
agent:
  name: svd-host
  datapath: vswitch
  uplink: up0
  address: 10.9.0.2/24
  gateway: 10.9.0.1
vswitch:
  bridge: svdbr
  run_dir: )", dir_, R"(
  slow_path_port: svd-slow
vms:
  - { name: vm1, port: vm1p, mac: "02:00:0a:01:00:05", dip: 10.1.0.5, pa: 10.9.0.35, gateway: 10.1.0.254 }
endpoints:
  - { vip: 10.200.0.10, port: 80, protocol: tcp, dip: 10.1.0.5, dip_port: 8080 }
)");
    absl::StatusOr<AgentConfig> c = ParseAgentConfig(yaml, "svd-host.yaml");
    EXPECT_TRUE(c.ok()) << c.status();
    return *c;
  }
  static std::string Vsctl(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"ovs-vsctl", "--db=unix:" + dir_ + "/db.sock"};
    argv.insert(argv.end(), args.begin(), args.end());
    absl::StatusOr<std::string> r = Cmd(argv);
    return r.ok() ? *r : "error: " + std::string(r.status().message());
  }
  static std::string Flows() {
    absl::StatusOr<std::string> r =
        Cmd({"ovs-ofctl", "-O", "OpenFlow15", "dump-flows", "unix:" + dir_ + "/svdbr.mgmt"});
    return r.ok() ? *r : "error: " + std::string(r.status().message());
  }
  static v1::AttachVmRequest Vm2(const std::string& port) {
    v1::AttachVmRequest r;
    v1::VmAttachment* vm = r.mutable_vm();
    vm->set_name("vm2");
    vm->set_port(port);
    vm->set_mac(kVm2Mac);
    vm->set_dip("10.1.0.6");
    vm->set_pa("10.9.0.36");
    vm->set_gateway("10.1.0.254");
    v1::Endpoint* ep = vm->add_endpoints();
    ep->set_vip("10.200.0.10");
    ep->set_port(80);
    ep->set_protocol(v1::L4_PROTOCOL_TCP);
    ep->set_dip_port(8080);
    return r;
  }
  // vm2's gateway resolved in its namespace, by the bridge's ARP answer, to vm2p's MAC.
  static absl::Status Vm2ResolvesItsGateway() {
    const std::string want = ReadFile("/sys/class/net/vm2p/address").substr(0, 17);
    std::string last;
    absl::Status s = vswitch::WaitFor(
        [&] {
          // A datagram to the gateway's discard port makes vm2's kernel ARP for it.
          absl::StatusOr<std::string> ping = Cmd(In(
              kVm2Ns, {"python3", "-c",
                       "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
                       ".sendto(b'', ('10.1.0.254', 9))"}));
          absl::StatusOr<std::string> neigh = Cmd(In(kVm2Ns, {"ip", "neigh", "show", "10.1.0.254"}));
          last = (neigh.ok() ? *neigh : std::string(neigh.status().message())) + " / ping: " +
                 (ping.ok() ? *ping : std::string(ping.status().message()));
          return last.find("lladdr " + want) != std::string::npos;
        },
        std::chrono::seconds(10), "vm2's gateway to resolve to " + want);
    if (!s.ok()) return absl::DeadlineExceededError(StrCat(s.message(), "; last: ", last));
    return s;
  }

  static inline bool skip_ = false;
  static inline std::string dir_;
  static inline std::unique_ptr<VswitchAgent> agent_;
};

TEST_F(VswitchAttachTest, AttachAndDetachAVmNotInTheBootConfig) {
  absl::StatusOr<std::unique_ptr<VswitchAgent>> agent = VswitchAgent::Start(Config());
  ASSERT_TRUE(agent.ok()) << agent.status();
  agent_ = std::move(*agent);
  AgentService service(agent_.get(), Config());
  ASSERT_EQ(Vsctl({"list-ports", "svdbr"}).find("vm2p"), std::string::npos);

  // The libvirt hook's spelling of a tap/veth port.
  v1::AttachVmRequest attach = Vm2("net_af_packet_vm2,iface=vm2p");
  v1::AttachVmResponse attached;
  grpc::Status s = service.AttachVm(nullptr, &attach, &attached);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(attached.changes().added(0), "vm vm2") << attached.DebugString();
  EXPECT_EQ(Vsctl({"get", "Interface", "vm2p", "ofport"}), "3\n");  // lowest free after vm1
  const std::string flows = Flows();
  EXPECT_NE(flows.find("arp,in_port=3,arp_tpa=10.1.0.254,arp_op=1"), std::string::npos) << flows;
  EXPECT_NE(flows.find("in_port=3,nw_src=10.1.0.6"), std::string::npos) << flows;  // DSR return
  EXPECT_NE(flows.find("tun_dst=10.9.0.36,in_port=300,nw_dst=10.200.0.10"), std::string::npos)
      << flows;
  EXPECT_NE(ReadFile("/proc/net/fib_trie").find("10.9.0.36"), std::string::npos);
  absl::Status resolved = Vm2ResolvesItsGateway();
  EXPECT_TRUE(resolved.ok()) << resolved << "\n" << Flows();
  v1::GetVmsResponse vms;
  ASSERT_TRUE(service.GetVms(nullptr, nullptr, &vms).ok());
  ASSERT_EQ(vms.vms_size(), 2);
  EXPECT_EQ(vms.vms(1).vm().name(), "vm2");
  EXPECT_TRUE(vms.vms(1).attached());

  // A vhost-user socket QEMU connects to: OVS cannot serve it at that path. Nothing changes.
  v1::AttachVmRequest vhost = Vm2("net_vhost_vm3,iface=/tmp/svd-vm3.sock,client=0");
  vhost.mutable_vm()->set_name("vm3");
  vhost.mutable_vm()->set_dip("10.1.0.7");
  vhost.mutable_vm()->set_pa("10.9.0.37");
  vhost.mutable_vm()->clear_endpoints();
  v1::AttachVmResponse refused;
  s = service.AttachVm(nullptr, &vhost, &refused);
  EXPECT_EQ(s.error_code(), grpc::FAILED_PRECONDITION) << s.error_message();
  EXPECT_NE(s.error_message().find("mode='server'"), std::string::npos) << s.error_message();
  EXPECT_EQ(Vsctl({"list-ports", "svdbr"}).find("net_vhost_vm3"), std::string::npos);
  EXPECT_EQ(service.running().vms.size(), 2u);

  // Detach: flows, port and PA go.
  v1::DetachVmRequest detach;
  detach.set_name("vm2");
  v1::DetachVmResponse detached;
  s = service.DetachVm(nullptr, &detach, &detached);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(Vsctl({"list-ports", "svdbr"}).find("vm2p"), std::string::npos);
  EXPECT_EQ(Flows().find("in_port=3,"), std::string::npos) << Flows();
  EXPECT_EQ(Flows().find("in_port=3 "), std::string::npos) << Flows();
  EXPECT_EQ(Flows().find("10.1.0.6"), std::string::npos) << Flows();
  EXPECT_EQ(ReadFile("/proc/net/fib_trie").find("10.9.0.36"), std::string::npos);
  EXPECT_EQ(service.running().vms.size(), 1u);
  EXPECT_NE(Flows().find("in_port=2,nw_src=10.1.0.5"), std::string::npos);  // vm1 untouched

  // And back, on the same OpenFlow port.
  s = service.AttachVm(nullptr, &attach, &attached);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(Vsctl({"get", "Interface", "vm2p", "ofport"}), "3\n");
  (void)Cmd(In(kVm2Ns, {"ip", "neigh", "flush", "all"}));
  resolved = Vm2ResolvesItsGateway();
  EXPECT_TRUE(resolved.ok()) << resolved;
}

}  // namespace
}  // namespace sluice::agent
