#include "vswitch/ovs_instance.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/strings.h"
#include "vswitch/process.h"

namespace sluice::vswitch {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '"')) s.pop_back();
  size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '"')) ++i;
  return s.substr(i);
}

}  // namespace

bool HugepagesAvailable() {
  std::string mounts = ReadFile("/proc/mounts");
  if (mounts.find(" hugetlbfs ") == std::string::npos) return false;
  std::string meminfo = ReadFile("/proc/meminfo");
  size_t at = meminfo.find("HugePages_Free:");
  if (at == std::string::npos) return false;
  return strtoul(meminfo.c_str() + at + strlen("HugePages_Free:"), nullptr, 10) > 0;
}

std::vector<std::string> OvsInstance::Env() const {
  const std::string& d = config_.run_dir;
  return {"OVS_RUNDIR=" + d, "OVS_DBDIR=" + d, "OVS_LOGDIR=" + d, "OVS_SYSCONFDIR=" + d};
}

std::string OvsInstance::LogTail(const std::string& file) const {
  std::string text = ReadFile(config_.run_dir + "/" + file);
  if (text.size() > 1500) text = "..." + text.substr(text.size() - 1500);
  return text.empty() ? "(log empty)" : text;
}

absl::StatusOr<std::unique_ptr<OvsInstance>> OvsInstance::Start(OvsInstanceConfig config) {
  if (config.run_dir.empty()) return absl::InvalidArgumentError("run_dir must be set");
  if (mkdir(config.run_dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::FailedPreconditionError(
        StrCat("cannot create run_dir ", config.run_dir, ": ", strerror(errno)));
  }
  if (config.dpdk_file_prefix.empty()) {
    std::string p = config.run_dir;
    for (char& c : p) {
      if (c == '/') c = '_';
    }
    config.dpdk_file_prefix = "sv" + p;
  }
  std::unique_ptr<OvsInstance> ovs(new OvsInstance(std::move(config)));
  if (absl::Status s = ovs->StartOvsdb(); !s.ok()) {
    ovs->Stop();
    return s;
  }
  if (absl::Status s = ovs->StartVswitchd(); !s.ok()) {
    ovs->Stop();
    return s;
  }
  return ovs;
}

absl::StatusOr<std::unique_ptr<OvsInstance>> OvsInstance::Attach(OvsInstanceConfig config) {
  if (config.run_dir.empty()) return absl::InvalidArgumentError("run_dir must be set");
  std::unique_ptr<OvsInstance> ovs(new OvsInstance(std::move(config)));
  ovs->owned_ = false;
  if (!ovs->Alive()) {
    return absl::NotFoundError(
        StrCat("no ovsdb-server and ovs-vswitchd answer in ", ovs->config_.run_dir));
  }
  auto pid_from = [&](const char* file) {
    return static_cast<pid_t>(strtol(ReadFile(ovs->config_.run_dir + "/" + file).c_str(),
                                     nullptr, 10));
  };
  ovs->ovsdb_pid_ = pid_from("ovsdb-server.pid");
  ovs->vswitchd_pid_ = pid_from("ovs-vswitchd.pid");
  CommandResult dpdk = RunCommand({"ovs-vsctl", "--db=" + ovs->DbSocket(), "--no-wait",
                                   "--timeout=2", "get", "Open_vSwitch", ".", "dpdk_initialized"},
                                  "", ovs->Env());
  ovs->dpdk_ = dpdk.exit_code == 0 && Trim(dpdk.out) == "true";
  return ovs;
}

absl::StatusOr<std::unique_ptr<OvsInstance>> OvsInstance::AttachOrStart(OvsInstanceConfig config) {
  absl::StatusOr<std::unique_ptr<OvsInstance>> attached = Attach(config);
  if (attached.ok() || !absl::IsNotFound(attached.status())) return attached;
  return Start(std::move(config));
}

bool OvsInstance::Alive() const {
  return RunCommand({"ovs-vsctl", "--db=" + DbSocket(), "--no-wait", "--timeout=2", "show"}, "",
                    Env())
                 .exit_code == 0 &&
         RunCommand({"ovs-appctl", "--timeout=2", "-t", config_.run_dir + "/ovs-vswitchd.ctl",
                     "version"},
                    "", Env())
                 .exit_code == 0;
}

absl::Status OvsInstance::StartOvsdb() {
  const std::string& d = config_.run_dir;
  const std::string db = d + "/conf.db";
  if (access(db.c_str(), F_OK) != 0) {
    absl::StatusOr<std::string> created =
        RunChecked({"ovsdb-tool", "create", db, config_.schema}, "", Env());
    if (!created.ok()) return created.status();
  }
  absl::StatusOr<pid_t> pid =
      SpawnDaemon({"ovsdb-server", db, "--remote=punix:" + d + "/db.sock",
                   "--pidfile=" + d + "/ovsdb-server.pid", "--unixctl=" + d + "/ovsdb-server.ctl",
                   "--log-file=" + d + "/ovsdb-server.log"},
                  d + "/ovsdb-server.stderr", Env());
  if (!pid.ok()) return pid.status();
  ovsdb_pid_ = *pid;
  absl::Status ready = WaitFor(
      [this] {
        if (!ChildAlive(ovsdb_pid_)) return true;  // reported below
        return RunCommand({"ovs-vsctl", "--db=" + DbSocket(), "--no-wait", "--timeout=2", "init"},
                          "", Env())
                   .exit_code == 0;
      },
      config_.timeout, "ovsdb-server to accept " + DbSocket());
  if (!ChildAlive(ovsdb_pid_)) {
    return absl::InternalError(StrCat("ovsdb-server exited at start; log: ",
                                      LogTail("ovsdb-server.log"), LogTail("ovsdb-server.stderr")));
  }
  return ready;
}

absl::Status OvsInstance::StartVswitchd() {
  const std::string& d = config_.run_dir;
  dpdk_ =
      config_.want_dpdk && HugepagesAvailable() && access(config_.dpdk_vswitchd.c_str(), X_OK) == 0;
  if (dpdk_) {
    std::vector<std::string> set_args = {
        "ovs-vsctl", "--db=" + DbSocket(), "--no-wait", "set", "Open_vSwitch", ".",
        "other_config:dpdk-init=true", "other_config:dpdk-socket-mem=" + config_.dpdk_socket_mem,
        "other_config:dpdk-extra=--file-prefix=" + config_.dpdk_file_prefix + " --no-pci"};
    if (!config_.pmd_cpu_mask.empty()) {
      set_args.push_back("other_config:pmd-cpu-mask=" + config_.pmd_cpu_mask);
    }
    if (config_.pmd_max_sleep_us > 0) {
      set_args.push_back(StrCat("other_config:pmd-maxsleep=", config_.pmd_max_sleep_us));
    }
    absl::StatusOr<std::string> set = RunChecked(set_args, "", Env());
    if (!set.ok()) return set.status();
  }
  std::vector<std::string> argv;
  if (!config_.netns.empty()) argv = {"ip", "netns", "exec", config_.netns};
  argv.push_back(dpdk_ ? config_.dpdk_vswitchd : config_.plain_vswitchd);
  argv.insert(argv.end(),
              {DbSocket(), "--pidfile=" + d + "/ovs-vswitchd.pid",
               "--unixctl=" + d + "/ovs-vswitchd.ctl", "--log-file=" + d + "/ovs-vswitchd.log"});
  if (config_.enable_dummy) {
    argv.push_back("--enable-dummy");
    argv.push_back("--disable-system");
  }
  absl::StatusOr<pid_t> pid = SpawnDaemon(argv, d + "/ovs-vswitchd.stderr", Env());
  if (!pid.ok()) return pid.status();
  vswitchd_pid_ = *pid;
  absl::Status ready = WaitFor(
      [this] {
        if (!ChildAlive(vswitchd_pid_)) return true;
        return RunCommand({"ovs-appctl", "-t", config_.run_dir + "/ovs-vswitchd.ctl", "version"},
                          "", Env())
                   .exit_code == 0;
      },
      config_.timeout, "ovs-vswitchd to answer on its unixctl socket");
  if (!ChildAlive(vswitchd_pid_)) {
    return absl::InternalError(StrCat("ovs-vswitchd exited at start; log: ",
                                      LogTail("ovs-vswitchd.log"), LogTail("ovs-vswitchd.stderr")));
  }
  if (!ready.ok()) return ready;
  if (dpdk_) {
    absl::Status dpdk_ready = WaitFor(
        [this] {
          CommandResult r = RunCommand({"ovs-vsctl", "--db=" + DbSocket(), "--no-wait", "get",
                                        "Open_vSwitch", ".", "dpdk_initialized"},
                                       "", Env());
          return r.exit_code == 0 && Trim(r.out) == "true";
        },
        config_.timeout, "DPDK initialisation in ovs-vswitchd (dpdk_initialized)");
    if (!dpdk_ready.ok()) {
      return absl::InternalError(
          StrCat(dpdk_ready.message(), "; log: ", LogTail("ovs-vswitchd.log")));
    }
  }
  // A change without --no-wait returns once ovs-vswitchd reports it applied it (cur_cfg).
  absl::StatusOr<std::string> synced =
      Vsctl({"set", "Open_vSwitch", ".", "external_ids:sluice-run-dir=" + d});
  return synced.ok() ? absl::OkStatus() : synced.status();
}

OvsInstance::~OvsInstance() { Stop(); }

void OvsInstance::Stop() {
  if (!owned_) return;
  StopChild(vswitchd_pid_, std::chrono::milliseconds(5000));
  vswitchd_pid_ = -1;
  StopChild(ovsdb_pid_, std::chrono::milliseconds(5000));
  ovsdb_pid_ = -1;
}

absl::StatusOr<std::string> OvsInstance::Vsctl(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {
      "ovs-vsctl", "--db=" + DbSocket(),
      StrCat("--timeout=", std::max<int64_t>(1, config_.timeout.count() / 1000))};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunChecked(argv, "", Env());
}

absl::StatusOr<std::string> OvsInstance::Appctl(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {"ovs-appctl", "-t", config_.run_dir + "/ovs-vswitchd.ctl"};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunChecked(argv, "", Env());
}

absl::StatusOr<std::string> OvsInstance::Ofctl(const std::vector<std::string>& args,
                                               const std::string& input) const {
  std::vector<std::string> argv = {"ovs-ofctl", "-O", "OpenFlow15"};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunChecked(argv, input, Env());
}

std::string OvsInstance::MgmtSocket(const std::string& bridge) const {
  return "unix:" + config_.run_dir + "/" + bridge + ".mgmt";
}

namespace {
uint64_t NumberAfter(const std::string& text, const std::string& key) {
  size_t at = text.find(key);
  return at == std::string::npos ? 0 : strtoull(text.c_str() + at + key.size(), nullptr, 10);
}
}  // namespace

absl::StatusOr<DatapathStats> ReadDatapathStats(const OvsInstance& ovs) {
  absl::StatusOr<std::string> show = ovs.Appctl({"dpctl/show"});
  if (!show.ok()) return show.status();
  absl::StatusOr<std::string> dump = ovs.Appctl({"dpctl/dump-flows", "-m"});
  if (!dump.ok()) return dump.status();
  DatapathStats stats;
  stats.hits = NumberAfter(*show, "hit:");
  stats.misses = NumberAfter(*show, "missed:");
  stats.lost = NumberAfter(*show, "lost:");
  for (std::string_view line : SplitString(*dump, '\n')) {
    if (line.find("actions:") == std::string_view::npos) continue;
    ++stats.flows;
    if (line.find("offloaded:yes") != std::string_view::npos) ++stats.offloaded;
    if (line.find("offloaded:partial") != std::string_view::npos) ++stats.partially_offloaded;
  }
  return stats;
}

absl::Status EnsureBridge(const OvsInstance& ovs, const BridgeSpec& spec) {
  std::vector<std::string> args = {"--may-exist",
                                   "add-br",
                                   spec.name,
                                   "--",
                                   "set",
                                   "Bridge",
                                   spec.name,
                                   "datapath_type=" + spec.datapath_type,
                                   "fail_mode=secure",
                                   "protocols=OpenFlow15"};
  if (!spec.hwaddr.empty()) args.push_back("other_config:hwaddr=\"" + spec.hwaddr + "\"");
  args.insert(args.end(), {"--", "set", "Open_vSwitch", ".",
                           StrCat("other_config:hw-offload=", spec.hw_offload ? "true" : "false")});
  for (const PortSpec& port : spec.ports) {
    args.insert(args.end(), {"--", "--may-exist", "add-port", spec.name, port.name, "--", "set",
                             "Interface", port.name, StrCat("ofport_request=", port.ofport)});
    if (!port.type.empty()) args.push_back("type=" + port.type);
    for (const auto& [key, value] : port.options) {
      args.push_back("options:" + key + "=\"" + value + "\"");
    }
  }
  absl::StatusOr<std::string> done = ovs.Vsctl(args);
  if (!done.ok()) return done.status();
  for (const PortSpec& port : spec.ports) {
    absl::StatusOr<std::string> ofport = ovs.Vsctl({"get", "Interface", port.name, "ofport"});
    if (!ofport.ok()) return ofport.status();
    if (Trim(*ofport) != std::to_string(port.ofport)) {
      absl::StatusOr<std::string> error = ovs.Vsctl({"get", "Interface", port.name, "error"});
      return absl::FailedPreconditionError(
          StrCat("bridge ", spec.name, " port ", port.name, " has OpenFlow port ", Trim(*ofport),
                 ", wanted ", port.ofport, "; interface error: ",
                 error.ok() ? Trim(*error) : std::string(error.status().message())));
    }
  }
  return absl::OkStatus();
}

absl::Status RemovePort(const OvsInstance& ovs, const std::string& bridge,
                        const std::string& port) {
  absl::StatusOr<std::string> done = ovs.Vsctl({"--if-exists", "del-port", bridge, port});
  return done.ok() ? absl::OkStatus() : done.status();
}

}  // namespace sluice::vswitch
