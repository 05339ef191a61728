#include "vswitch/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "common/strings.h"

extern char** environ;

namespace sluice::vswitch {
namespace {

// environ plus `extra` (an extra NAME=value replaces an inherited NAME).
std::vector<std::string> BuildEnv(const std::vector<std::string>& extra) {
  std::vector<std::string> env = extra;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry(*e);
    std::string name = entry.substr(0, entry.find('='));
    bool overridden = false;
    for (const std::string& x : extra) {
      if (x.compare(0, name.size() + 1, name + "=") == 0) overridden = true;
    }
    if (!overridden) env.push_back(entry);
  }
  return env;
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

std::string JoinArgv(const std::vector<std::string>& argv) {
  std::string s;
  for (const std::string& a : argv) {
    if (!s.empty()) s += ' ';
    if (a.find_first_of(" \t'\"") == std::string::npos && !a.empty()) {
      s += a;
    } else {
      s += "'" + a + "'";
    }
  }
  return s;
}

PreparedCommand::PreparedCommand(const std::vector<std::string>& argv,
                                 const std::vector<std::string>& env) {
  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (argv.empty()) {
    error_ = "no command";
    return;
  }
  if (pipe2(in_pipe, O_CLOEXEC) != 0) {
    error_ = StrCat("pipe: ", strerror(errno));
    return;
  }
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
    error_ = StrCat("pipe: ", strerror(errno));
    close(in_pipe[0]);
    close(in_pipe[1]);
    return;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_pipe[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  std::vector<std::string> args = argv;
  std::vector<std::string> envs = BuildEnv(env);
  std::vector<char*> c_args = CStrings(args);
  std::vector<char*> c_env = CStrings(envs);
  int rc = posix_spawnp(&pid_, c_args[0], &actions, nullptr, c_args.data(), c_env.data());
  posix_spawn_file_actions_destroy(&actions);
  close(in_pipe[0]);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (rc != 0) {
    close(in_pipe[1]);
    close(out_pipe[0]);
    close(err_pipe[0]);
    pid_ = -1;
    error_ = StrCat("cannot start ", argv[0], ": ", strerror(rc));
    return;
  }
  in_fd_ = in_pipe[1];
  out_fd_ = out_pipe[0];
  err_fd_ = err_pipe[0];
}

PreparedCommand::~PreparedCommand() {
  if (pid_ < 0) return;
  // Never used: it must not act on an empty input.
  kill(pid_, SIGKILL);
  Finish("");
}

CommandResult PreparedCommand::Finish(const std::string& input) {
  CommandResult result;
  if (pid_ < 0) {
    result.err = error_.empty() ? "command already finished" : error_;
    return result;
  }
  // Feed stdin and drain stdout/stderr together so neither side blocks on a full pipe.
  size_t written = 0;
  int in_fd = in_fd_;
  if (input.empty()) {
    close(in_fd);
    in_fd = -1;
  } else {
    fcntl(in_fd, F_SETFL, O_NONBLOCK);
  }
  int open_fds = 2;
  bool out_open = true, err_open = true;
  while (open_fds > 0 || in_fd >= 0) {
    pollfd fds[3];
    int n = 0;
    if (out_open) fds[n++] = {.fd = out_fd_, .events = POLLIN, .revents = 0};
    if (err_open) fds[n++] = {.fd = err_fd_, .events = POLLIN, .revents = 0};
    if (in_fd >= 0) fds[n++] = {.fd = in_fd, .events = POLLOUT, .revents = 0};
    if (poll(fds, n, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < n; ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == in_fd) {
        ssize_t w = write(in_fd, input.data() + written, input.size() - written);
        if (w > 0) written += static_cast<size_t>(w);
        if (w < 0 && errno != EAGAIN) written = input.size();
        if (written == input.size()) {
          close(in_fd);
          in_fd = -1;
        }
        continue;
      }
      char buf[65536];
      ssize_t r = read(fds[i].fd, buf, sizeof(buf));
      if (r > 0) {
        (fds[i].fd == out_fd_ ? result.out : result.err).append(buf, static_cast<size_t>(r));
      } else if (r == 0 || errno != EINTR) {
        if (fds[i].fd == out_fd_) out_open = false;
        if (fds[i].fd == err_fd_) err_open = false;
        --open_fds;
      }
    }
  }
  if (in_fd >= 0) close(in_fd);
  close(out_fd_);
  close(err_fd_);
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& input,
                         const std::vector<std::string>& env) {
  PreparedCommand command(argv, env);
  return command.Finish(input);
}

absl::StatusOr<std::string> RunChecked(const std::vector<std::string>& argv,
                                       const std::string& input,
                                       const std::vector<std::string>& env) {
  CommandResult r = RunCommand(argv, input, env);
  if (r.exit_code != 0) {
    std::string err = r.err;
    while (!err.empty() && err.back() == '\n') err.pop_back();
    return absl::InternalError(
        StrCat(JoinArgv(argv), " failed (exit ", r.exit_code, "): ", err.empty() ? r.out : err));
  }
  return r.out;
}

absl::StatusOr<pid_t> SpawnDaemon(const std::vector<std::string>& argv, const std::string& log_path,
                                  const std::vector<std::string>& env) {
  int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return absl::FailedPreconditionError(StrCat("cannot open ", log_path, ": ", strerror(errno)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, log_fd, 1);
  posix_spawn_file_actions_adddup2(&actions, log_fd, 2);
  std::vector<std::string> args = argv;
  std::vector<std::string> envs = BuildEnv(env);
  std::vector<char*> c_args = CStrings(args);
  std::vector<char*> c_env = CStrings(envs);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, c_args[0], &actions, nullptr, c_args.data(), c_env.data());
  posix_spawn_file_actions_destroy(&actions);
  close(log_fd);
  if (rc != 0) {
    return absl::FailedPreconditionError(
        StrCat("cannot start ", JoinArgv(argv), ": ", strerror(rc)));
  }
  return pid;
}

bool ChildAlive(pid_t pid) {
  if (pid <= 0) return false;
  int status = 0;
  pid_t r = waitpid(pid, &status, WNOHANG);
  return r == 0;
}

void StopChild(pid_t pid, std::chrono::milliseconds grace) {
  if (pid <= 0) return;
  if (kill(pid, SIGTERM) != 0) {
    waitpid(pid, nullptr, WNOHANG);
    return;
  }
  absl::Status exited = WaitFor([pid] { return !ChildAlive(pid); }, grace, "exit");
  if (!exited.ok()) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
}

absl::Status WaitFor(const std::function<bool()>& ready, std::chrono::milliseconds timeout,
                     const std::string& what) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto pause = std::chrono::milliseconds(2);
  while (true) {
    if (ready()) return absl::OkStatus();
    if (std::chrono::steady_clock::now() >= deadline) {
      return absl::DeadlineExceededError(
          StrCat("timed out after ", timeout.count(), " ms waiting for ", what));
    }
    std::this_thread::sleep_for(pause);  // polling interval of a condition, not a sync sleep
    pause = std::min(pause * 2, std::chrono::milliseconds(100));
  }
}

}  // namespace sluice::vswitch
