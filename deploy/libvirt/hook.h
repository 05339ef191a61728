// What `sluice-libvirt-hook` does with one libvirt qemu hook call: decide whether the call
// concerns Sluice, read the domain XML and tell the agent. Kept apart from main() so tests
// drive it with a fake AgentClient and a captured log.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "deploy/libvirt/agent_client.h"

namespace sluice::libvirt {

/// Exit codes libvirt sees. Non-zero from `prepare`/`start`/`started` fails the VM start.
enum HookExit : int {
  kExitOk = 0,            ///< Done, not a Sluice VM, an operation we ignore, or fail-open.
  kExitUsage = 64,        ///< Bad command line or hook configuration.
  kExitBadDomain = 65,    ///< The domain XML or its Sluice metadata is invalid.
  kExitAgentFailed = 69,  ///< Fail-closed only: the agent was unreachable, slow or refused.
};

struct HookOptions {
  /// gRPC target of sluice-agent.
  std::string agent = "unix:/run/sluice/agent-grpc.sock";
  /// Exit kExitAgentFailed (stopping the VM start) instead of 0 when the agent fails.
  bool fail_closed = false;
  /// The whole hook, from start to exit, never takes longer than this.
  std::chrono::milliseconds deadline{2000};
  /// Send each interface's DPDK devargs as VmAttachment.port (the agent compares them with
  /// its configured port by device, not by text). false: leave it empty (the agent then uses
  /// the configured one).
  bool send_port = true;
  /// Where VFs' representors are looked up (bus/pci/devices/...).
  std::string sysfs_root = "/sys";
};

/// libvirt's four arguments: <domain> <operation> <sub-operation> <extra>.
struct HookCall {
  std::string domain;
  std::string operation;
  std::string sub_operation;
  std::string extra;
};

enum class HookAction { kIgnore, kAttach, kDetach };

/// `started` → kAttach; `stopped` and `release` → kDetach; anything else → kIgnore.
HookAction ActionFor(std::string_view operation);

enum class LogLevel { kInfo, kWarning, kError };
using HookLog = std::function<void(LogLevel, const std::string&)>;

/// Runs one call. `domain_xml` is what libvirt wrote on stdin; `deadline` bounds the agent
/// call. Never throws; every outcome is logged and mapped to a HookExit.
int RunHook(const HookCall& call, std::string_view domain_xml, const HookOptions& options,
            AgentClient::Deadline deadline, AgentClient& agent, const HookLog& log);

/// Settings from a hook config file ("key: value" YAML: agent, fail_closed, deadline_ms,
/// send_port) over `base`. NOT_FOUND if the file does not exist (the caller decides whether
/// that matters: the default path may be absent).
absl::StatusOr<HookOptions> LoadHookConfig(const std::string& path, HookOptions base);

}  // namespace sluice::libvirt
