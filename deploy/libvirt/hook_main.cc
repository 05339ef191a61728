// sluice-libvirt-hook: libvirt's qemu hook for Sluice, installed as
// /etc/libvirt/hooks/qemu.d/sluice. See deploy/libvirt/README.md.
#include <signal.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common/strings.h"
#include "deploy/libvirt/grpc_agent_client.h"
#include "deploy/libvirt/hook.h"

namespace sluice::libvirt {
namespace {

constexpr char kDefaultConfig[] = "/etc/sluice/libvirt-hook.yaml";
constexpr size_t kMaxDomainXml = 16 << 20;
/// Left for writing logs and exiting after the agent call gives up.
constexpr std::chrono::milliseconds kExitMargin{300};
/// The watchdog fires this much before the deadline: the exit itself, and the scheduling
/// delay of a loaded host, must still fit.
constexpr std::chrono::milliseconds kWatchdogMargin{200};

volatile sig_atomic_t g_watchdog_exit = kExitOk;

void Usage() {
  fprintf(stderr,
          "usage: sluice-libvirt-hook [--agent TARGET] [--fail-closed] [--deadline-ms N]\n"
          "                           [--config FILE] <domain> <operation> <sub-operation> "
          "<extra>\n"
          "libvirt runs it with the domain XML on stdin. Settings: flags, then the environment\n"
          "(SLUICE_AGENT, SLUICE_HOOK_FAIL_CLOSED=1), then the config file (default %s:\n"
          "agent, fail_closed, deadline_ms). Agent default: unix:/run/sluice/agent-grpc.sock.\n",
          kDefaultConfig);
}

void OnWatchdog(int) {
  static const char kMessage[] =
      "sluice-libvirt-hook: deadline reached before the agent answered; giving up\n";
  ssize_t ignored = write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
  (void)ignored;
  _exit(g_watchdog_exit);
}

/// Bounds the whole process: whatever hangs (stdin, the agent), it exits by `after`.
void ArmWatchdog(std::chrono::milliseconds after, bool fail_closed) {
  g_watchdog_exit = fail_closed ? kExitAgentFailed : kExitOk;
  struct sigaction sa = {};
  sa.sa_handler = OnWatchdog;
  sigaction(SIGALRM, &sa, nullptr);
  const int64_t us =
      std::max<int64_t>(1000, std::chrono::duration_cast<std::chrono::microseconds>(after).count());
  itimerval timer = {};
  timer.it_value.tv_sec = us / 1000000;
  timer.it_value.tv_usec = us % 1000000;
  setitimer(ITIMER_REAL, &timer, nullptr);
}

/// Time since this process was forked (libvirt starts waiting then), from /proc/self/stat;
/// zero if it cannot be read.
std::chrono::milliseconds ProcessAge() {
  std::ifstream in("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Field 22 (starttime, clock ticks since boot) counts from after the ")" ending field 2.
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return {};
  std::istringstream fields(stat.substr(paren + 2));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i) {
  }
  uint64_t ticks = 0;
  timespec now;
  if (!ParseUint(field, &ticks) || clock_gettime(CLOCK_BOOTTIME, &now) != 0) return {};
  const int64_t start_ms = static_cast<int64_t>(ticks) * 1000 / sysconf(_SC_CLK_TCK);
  const int64_t now_ms = int64_t{now.tv_sec} * 1000 + now.tv_nsec / 1000000;
  return std::chrono::milliseconds(std::clamp<int64_t>(now_ms - start_ms, 0, 60000));
}

bool ReadAll(int fd, std::string* out) {
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n == 0) return true;
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    out->append(buf, static_cast<size_t>(n));
    if (out->size() > kMaxDomainXml) return false;
  }
}

int Main(int argc, char** argv) {
  const auto start = std::chrono::steady_clock::now() - ProcessAge();
  HookOptions options;
  std::string config_path = kDefaultConfig;
  bool config_given = false;
  std::string flag_agent;
  bool flag_fail_closed = false;
  std::optional<uint64_t> flag_deadline_ms;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const char* name) -> const char* {
      if (i + 1 >= argc) {
        fprintf(stderr, "sluice-libvirt-hook: %s needs a value\n", name);
        return nullptr;
      }
      return argv[++i];
    };
    if (arg == "--agent") {
      const char* v = value("--agent");
      if (v == nullptr) return kExitUsage;
      flag_agent = v;
    } else if (arg == "--fail-closed") {
      flag_fail_closed = true;
    } else if (arg == "--deadline-ms") {
      const char* v = value("--deadline-ms");
      uint64_t ms = 0;
      if (v == nullptr || !ParseUint(v, &ms) || ms < 100 || ms > 30000) {
        fprintf(stderr, "sluice-libvirt-hook: --deadline-ms must be 100..30000\n");
        return kExitUsage;
      }
      flag_deadline_ms = ms;
    } else if (arg == "--config") {
      const char* v = value("--config");
      if (v == nullptr) return kExitUsage;
      config_path = v;
      config_given = true;
    } else if (arg == "-h" || arg == "--help") {
      Usage();
      return kExitOk;
    } else if (arg.size() > 2 && arg.rfind("--", 0) == 0) {
      fprintf(stderr, "sluice-libvirt-hook: unknown option %s\n", arg.c_str());
      Usage();
      return kExitUsage;
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() != 4) {
    Usage();
    return kExitUsage;
  }
  const HookCall call{.domain = positional[0],
                      .operation = positional[1],
                      .sub_operation = positional[2],
                      .extra = positional[3]};
  // Nothing to do (and nothing to read) for the operations Sluice ignores.
  if (ActionFor(call.operation) == HookAction::kIgnore) return kExitOk;

  openlog("sluice-libvirt-hook", LOG_PID, LOG_DAEMON);
  const std::string prefix = StrCat(call.domain, " ", call.operation, ": ");
  HookLog log = [&prefix](LogLevel level, const std::string& message) {
    const int priority = level == LogLevel::kError     ? LOG_ERR
                         : level == LogLevel::kWarning ? LOG_WARNING
                                                       : LOG_INFO;
    syslog(priority, "%s%s", prefix.c_str(), message.c_str());
    fprintf(stderr, "sluice-libvirt-hook: %s%s\n", prefix.c_str(), message.c_str());
  };

  absl::StatusOr<HookOptions> loaded = LoadHookConfig(config_path, options);
  if (loaded.ok()) {
    options = *loaded;
  } else if (config_given || !absl::IsNotFound(loaded.status())) {
    log(LogLevel::kError, StrCat("hook config: ", loaded.status().message()));
    return kExitUsage;
  }
  if (const char* env = getenv("SLUICE_AGENT"); env != nullptr && *env != '\0') {
    options.agent = env;
  }
  if (const char* env = getenv("SLUICE_HOOK_FAIL_CLOSED"); env != nullptr) {
    options.fail_closed = std::string(env) == "1" || std::string(env) == "true";
  }
  if (!flag_agent.empty()) options.agent = flag_agent;
  if (flag_fail_closed) options.fail_closed = true;
  if (flag_deadline_ms) options.deadline = std::chrono::milliseconds(*flag_deadline_ms);

  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
  ArmWatchdog(options.deadline - elapsed - kWatchdogMargin, options.fail_closed);
  const AgentClient::Deadline call_deadline =
      std::chrono::system_clock::now() + (options.deadline - elapsed - kExitMargin);

  std::string xml;
  if (!ReadAll(STDIN_FILENO, &xml)) {
    log(LogLevel::kError, StrCat("cannot read the domain XML from stdin: ",
                                 xml.size() > kMaxDomainXml ? "over 16 MiB" : strerror(errno)));
    return kExitBadDomain;
  }
  GrpcAgentClient agent(options.agent);
  return RunHook(call, xml, options, call_deadline, agent, log);
}

}  // namespace
}  // namespace sluice::libvirt

int main(int argc, char** argv) {
  const int code = sluice::libvirt::Main(argc, argv);
  fflush(stderr);
  closelog();
  // No destructors: gRPC's shutdown must not stretch the time libvirt waits.
  _exit(code);
}
