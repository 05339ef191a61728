// Running the OVS command-line tools and daemons: a command with captured output and exit
// status, a long-running child we own by pid, and waiting on a condition with a deadline.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sluice::vswitch {

/// What a finished command printed and how it ended.
struct CommandResult {
  int exit_code = -1;  ///< -1 if it could not be started or was killed by a signal.
  std::string out;
  std::string err;
};

/// Runs `argv` (argv[0] searched in PATH) with `input` on stdin, waits for it and captures
/// stdout and stderr. `env` entries ("NAME=value") are added to the environment.
CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& input = "",
                         const std::vector<std::string>& env = {});

/// A command started before its input is known, waiting on its stdin: Finish() feeds the
/// input, closes stdin and collects the result. What it saves is the process start (exec,
/// dynamic linking, library init), ~0.1 s for ovs-ofctl on a loaded 2-core machine. A command
/// destroyed unfinished is killed, never run on empty input.
class PreparedCommand {
 public:
  PreparedCommand(const std::vector<std::string>& argv, const std::vector<std::string>& env = {});
  ~PreparedCommand();
  PreparedCommand(const PreparedCommand&) = delete;
  PreparedCommand& operator=(const PreparedCommand&) = delete;
  /// Once; later calls (or a command that did not start) return exit_code -1 with the reason.
  CommandResult Finish(const std::string& input);

 private:
  std::string error_;
  pid_t pid_ = -1;
  int in_fd_ = -1, out_fd_ = -1, err_fd_ = -1;
};

/// As RunCommand, but a non-zero exit is an error whose message names the command and
/// quotes its stderr; returns stdout.
absl::StatusOr<std::string> RunChecked(const std::vector<std::string>& argv,
                                       const std::string& input = "",
                                       const std::vector<std::string>& env = {});

/// Starts `argv` in the background with stdout/stderr appended to `log_path`. Returns the pid.
absl::StatusOr<pid_t> SpawnDaemon(const std::vector<std::string>& argv, const std::string& log_path,
                                  const std::vector<std::string>& env = {});

/// True if `pid` (our child) is still running; reaps it if it exited.
bool ChildAlive(pid_t pid);

/// Sends SIGTERM, waits up to `grace` for the child to exit, then SIGKILL. Reaps it.
void StopChild(pid_t pid, std::chrono::milliseconds grace);

/// Polls `ready` (with a short, growing back-off) until it returns true or `timeout` passes.
/// Returns DEADLINE_EXCEEDED naming `what` on timeout.
absl::Status WaitFor(const std::function<bool()>& ready, std::chrono::milliseconds timeout,
                     const std::string& what);

/// "a b 'c d'": argv as one line for error messages.
std::string JoinArgv(const std::vector<std::string>& argv);

}  // namespace sluice::vswitch
