// A private Open vSwitch: its own ovsdb-server and ovs-vswitchd with a private run
// directory (database, sockets, pid and log files), so nothing collides with a system OVS
// or another test. Started and stopped by pid; readiness is awaited, never assumed.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sluice::vswitch {

struct OvsInstanceConfig {
  /// Private run directory (created): conf.db, db.sock, vswitchd.ctl, <bridge>.mgmt, logs.
  std::string run_dir;
  /// If set, ovs-vswitchd runs in this network namespace (`ip netns exec`), so its
  /// internal ports and the kernel interfaces it attaches are that namespace's.
  std::string netns;
  /// Use the DPDK build of ovs-vswitchd when hugepages are mounted and free; otherwise
  /// (and when false) the plain build. Both run the userspace (netdev) datapath.
  bool want_dpdk = false;
  std::string dpdk_vswitchd = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk";
  std::string plain_vswitchd = "ovs-vswitchd";
  std::string dpdk_socket_mem = "512";
  /// other_config:pmd-cpu-mask with the DPDK build: the cores of the PMD threads that poll
  /// DPDK and vhost-user ports ("0x2"; "" = OVS's default, one per NUMA node's first core).
  std::string pmd_cpu_mask;
  /// other_config:pmd-maxsleep (OVS 3.1+, 0..10000 us): how long a PMD thread may sleep per
  /// iteration when its queues are idle or lightly loaded. 0 = OVS's default (busy polling).
  uint32_t pmd_max_sleep_us = 0;
  /// `--file-prefix` of DPDK's EAL; default derived from the run directory.
  std::string dpdk_file_prefix;
  /// `--enable-dummy`: dummy ports (packets injected with netdev-dummy/receive, sent ones
  /// written to pcap files) and the "dummy" datapath type, which is the userspace datapath
  /// (dpif-netdev) under another name. For conformance tests.
  bool enable_dummy = false;
  std::string schema = "/usr/share/openvswitch/vswitch.ovsschema";
  std::chrono::milliseconds timeout{15000};
};

/// True if 2 MB hugepages are mounted (hugetlbfs) and some are free.
bool HugepagesAvailable();

class OvsInstance {
 public:
  /// Creates the database, starts ovsdb-server and ovs-vswitchd and waits until both
  /// answer. On failure stops whatever started and says which step failed (log excerpt).
  static absl::StatusOr<std::unique_ptr<OvsInstance>> Start(OvsInstanceConfig config);
  /// Uses the ovsdb-server and ovs-vswitchd already running with `config.run_dir` (both must
  /// answer on their sockets). The instance does not own them: Stop() and the destructor
  /// leave them running. NOT_FOUND if nothing answers there.
  static absl::StatusOr<std::unique_ptr<OvsInstance>> Attach(OvsInstanceConfig config);
  /// Attach if an instance answers in `config.run_dir`, else Start.
  static absl::StatusOr<std::unique_ptr<OvsInstance>> AttachOrStart(OvsInstanceConfig config);
  ~OvsInstance();
  OvsInstance(const OvsInstance&) = delete;
  OvsInstance& operator=(const OvsInstance&) = delete;

  /// Stops ovs-vswitchd, then ovsdb-server (SIGTERM, then SIGKILL after a grace period), if
  /// this instance owns them.
  void Stop();
  /// Gives up ownership: the daemons keep running after this object is gone, so their flows
  /// and conntrack state outlive the process that started them (an agent restart).
  void Release() { owned_ = false; }
  /// True if this object started the daemons and will stop them.
  bool owned() const { return owned_; }
  /// True if both daemons answer on their sockets.
  bool Alive() const;

  /// ovs-vsctl against the private database. Waits for ovs-vswitchd to apply the change
  /// (no --no-wait) up to the configured timeout.
  absl::StatusOr<std::string> Vsctl(const std::vector<std::string>& args) const;
  /// ovs-appctl against the private ovs-vswitchd.
  absl::StatusOr<std::string> Appctl(const std::vector<std::string>& args) const;
  /// ovs-ofctl -O OpenFlow15 with `args` (the bridge target is `MgmtSocket(bridge)`).
  absl::StatusOr<std::string> Ofctl(const std::vector<std::string>& args,
                                    const std::string& input = "") const;

  /// "unix:<run_dir>/<bridge>.mgmt": the bridge's OpenFlow management socket.
  std::string MgmtSocket(const std::string& bridge) const;
  std::string DbSocket() const { return "unix:" + config_.run_dir + "/db.sock"; }
  const std::string& run_dir() const { return config_.run_dir; }
  bool dpdk() const { return dpdk_; }
  pid_t vswitchd_pid() const { return vswitchd_pid_; }
  pid_t ovsdb_pid() const { return ovsdb_pid_; }
  /// Environment for OVS tools so they look in the private run directory only.
  std::vector<std::string> Env() const;

 private:
  explicit OvsInstance(OvsInstanceConfig config) : config_(std::move(config)) {}
  absl::Status StartOvsdb();
  absl::Status StartVswitchd();
  std::string LogTail(const std::string& file) const;

  OvsInstanceConfig config_;
  pid_t ovsdb_pid_ = -1;
  pid_t vswitchd_pid_ = -1;
  bool dpdk_ = false;
  bool owned_ = true;
};

/// The datapath's view for stats (`dpctl/show`, `dpctl/dump-flows -m`): what the agent
/// reports for an OVS host, including how many datapath flows hw-offload pushed to a NIC.
struct DatapathStats {
  uint64_t flows = 0;                ///< Datapath (megaflow) entries.
  uint64_t offloaded = 0;            ///< Of those, fully in hardware ("offloaded:yes").
  uint64_t partially_offloaded = 0;  ///< Match in hardware, actions in software.
  uint64_t hits = 0;                 ///< Lookups that found a datapath flow.
  uint64_t misses = 0;               ///< Upcalls to ovs-vswitchd.
  uint64_t lost = 0;                 ///< Upcalls dropped.
};
absl::StatusOr<DatapathStats> ReadDatapathStats(const OvsInstance& ovs);

/// A port of a bridge. `ofport` is requested (ofport_request) so OpenFlow numbers are stable.
struct PortSpec {
  std::string name;
  std::string type;  ///< "" (system/kernel interface), "dummy", "gre", "internal", "dpdk", "afxdp".
  uint32_t ofport = 0;
  std::map<std::string, std::string> options;
};

struct BridgeSpec {
  std::string name;
  std::string datapath_type = "netdev";
  std::string hwaddr;  ///< MAC of the bridge's LOCAL port ("" = OVS picks).
  std::vector<PortSpec> ports;
  /// other_config:hw-offload (global, Open_vSwitch table) — see vswitch/README.md.
  bool hw_offload = false;
};

/// Creates or updates the bridge and its ports (idempotent: existing ones are kept), with
/// fail_mode=secure (no NORMAL switching until flows say so) and OpenFlow15 only, then
/// checks every port got its requested OpenFlow number and reports an interface's `error`.
absl::Status EnsureBridge(const OvsInstance& ovs, const BridgeSpec& spec);

/// Removes port `port` from `bridge` (nothing if it is not there).
absl::Status RemovePort(const OvsInstance& ovs, const std::string& bridge,
                        const std::string& port);

}  // namespace sluice::vswitch
