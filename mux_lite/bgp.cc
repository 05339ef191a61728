#include "mux_lite/bgp.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <algorithm>
#include <cstring>
#include <fstream>

#include "common/net_text.h"
#include "common/strings.h"

namespace sluice::mux {
namespace {

// Exec's `argv` in a child; the child gets `death_signal` when this thread's process dies.
pid_t Spawn(const std::vector<std::string>& argv, int stdout_fd, int death_signal) {
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid != 0) return pid;
  if (death_signal != 0) {
    prctl(PR_SET_PDEATHSIG, death_signal);
    if (getppid() != parent) _exit(127);
  }
  if (stdout_fd >= 0) {
    dup2(stdout_fd, STDOUT_FILENO);
    dup2(stdout_fd, STDERR_FILENO);
  }
  int devnull = open("/dev/null", O_RDONLY);
  if (devnull >= 0) dup2(devnull, STDIN_FILENO);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  execv(args[0], args.data());
  _exit(127);
}

const char* SessionStateName(int state) {
  static const char* kNames[] = {"unknown", "idle", "connect", "active",
                                 "opensent", "openconfirm", "established"};
  return state >= 0 && state <= 6 ? kNames[state] : "unknown";
}

}  // namespace

absl::StatusOr<std::string> RunCommand(const std::vector<std::string>& argv, int timeout_ms) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return absl::InternalError(StrCat("pipe: ", strerror(errno)));
  }
  pid_t pid = Spawn(argv, pipe_fds[1], SIGKILL);
  close(pipe_fds[1]);
  if (pid < 0) {
    close(pipe_fds[0]);
    return absl::InternalError(StrCat("fork: ", strerror(errno)));
  }
  std::string output;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  bool timed_out = false;
  for (;;) {
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    deadline - std::chrono::steady_clock::now())
                                    .count());
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd pfd{.fd = pipe_fds[0], .events = POLLIN, .revents = 0};
    if (poll(&pfd, 1, left) <= 0) continue;
    char buf[4096];
    ssize_t n = read(pipe_fds[0], buf, sizeof(buf));
    if (n <= 0) break;
    output.append(buf, static_cast<size_t>(n));
  }
  close(pipe_fds[0]);
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
  if (timed_out) {
    return absl::DeadlineExceededError(StrCat(argv[0], " did not answer within ", timeout_ms,
                                              " ms"));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
      return absl::NotFoundError(StrCat("cannot run ", argv[0]));
    }
    return absl::UnavailableError(StrCat(argv[0], " failed: ", output));
  }
  return output;
}

absl::StatusOr<std::unique_ptr<GobgpSpeaker>> GobgpSpeaker::Start(const BgpConfig& config,
                                                                  const std::string& name,
                                                                  const std::string& run_dir) {
  for (const std::string& binary : {config.gobgpd, config.gobgp}) {
    if (access(binary.c_str(), X_OK) != 0) {
      return absl::NotFoundError(StrCat("BGP speaker binary ", binary,
                                        " is missing (Debian package gobgpd)"));
    }
  }
  mkdir(run_dir.c_str(), 0750);
  std::string conf_path = StrCat(run_dir, "/gobgpd-", name, ".toml");
  {
    std::ofstream conf(conf_path);
    conf << "# Written by sluice-mux " << name << "; regenerated at every start.\n"
         << "[global.config]\n  as = " << config.local_as << "\n  router-id = \""
         << Ipv4ToString(config.router_id) << "\"\n  port = -1\n\n"
         << "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \""
         << Ipv4ToString(config.peer) << "\"\n    peer-as = " << config.peer_as << "\n"
         << "  [neighbors.timers.config]\n    hold-time = " << config.hold_time_s
         << "\n    keepalive-interval = " << std::max<uint32_t>(1, config.hold_time_s / 3)
         << "\n    connect-retry = 2\n"
         << "  [neighbors.transport.config]\n    local-address = \""
         << Ipv4ToString(config.router_id) << "\"\n";
    if (!conf) return absl::InternalError(StrCat("cannot write ", conf_path));
  }
  std::string log_path = StrCat(run_dir, "/gobgpd-", name, ".log");
  int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  pid_t pid = Spawn({config.gobgpd, "-f", conf_path, "--api-hosts",
                     StrCat("127.0.0.1:", config.api_port), "-l", "warn",
                     },
                    log_fd, SIGTERM);
  if (log_fd >= 0) close(log_fd);
  if (pid < 0) return absl::InternalError(StrCat("cannot start gobgpd: ", strerror(errno)));
  return std::unique_ptr<GobgpSpeaker>(new GobgpSpeaker(config, pid));
}

GobgpSpeaker::~GobgpSpeaker() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }
}

absl::StatusOr<std::string> GobgpSpeaker::Client(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {config_.gobgp, "-u", "127.0.0.1", "-p",
                                   std::to_string(config_.api_port)};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, 2000);
}

absl::Status GobgpSpeaker::Announce(uint32_t prefix, uint32_t next_hop) {
  return Client({"global", "rib", "add", "-a", "ipv4", Ipv4ToString(prefix) + "/32", "nexthop",
                 Ipv4ToString(next_hop)})
      .status();
}

absl::Status GobgpSpeaker::Withdraw(uint32_t prefix) {
  return Client({"global", "rib", "del", "-a", "ipv4", Ipv4ToString(prefix) + "/32"}).status();
}

std::string GobgpSpeaker::SessionState() {
  absl::StatusOr<std::string> out = Client({"neighbor", Ipv4ToString(config_.peer), "-j"});
  if (!out.ok()) return "unreachable";
  const std::string key = "\"session_state\":";
  size_t at = out->find(key);
  if (at == std::string::npos) return "idle";
  return SessionStateName(atoi(out->c_str() + at + key.size()));
}

VipAnnouncer::VipAnnouncer(BgpSpeaker* speaker, std::vector<uint32_t> vips, uint32_t next_hop)
    : speaker_(speaker),
      vips_(std::move(vips)),
      is_announced_(vips_.size(), false),
      next_hop_(next_hop) {}

void VipAnnouncer::SetVips(const std::vector<uint32_t>& vips) {
  std::vector<uint32_t> kept;
  std::vector<bool> kept_state;
  for (size_t i = 0; i < vips_.size(); ++i) {
    if (std::find(vips.begin(), vips.end(), vips_[i]) != vips.end()) {
      kept.push_back(vips_[i]);
      kept_state.push_back(is_announced_[i]);
    } else if (is_announced_[i]) {
      pending_withdraw_.push_back(vips_[i]);
      --announced_count_;
    }
  }
  for (uint32_t vip : vips) {
    if (std::find(kept.begin(), kept.end(), vip) == kept.end()) {
      kept.push_back(vip);
      kept_state.push_back(false);
    }
  }
  vips_ = std::move(kept);
  is_announced_ = std::move(kept_state);
  WithdrawPending();
}

void VipAnnouncer::WithdrawPending() {
  std::erase_if(pending_withdraw_, [this](uint32_t vip) {
    absl::Status s = speaker_->Withdraw(vip);
    if (s.ok()) return true;
    ++errors_;
    last_error_ = std::string(s.message());
    return false;
  });
}

void VipAnnouncer::Update(bool should_announce) {
  WithdrawPending();
  for (size_t i = 0; i < vips_.size(); ++i) {
    if (is_announced_[i] == should_announce) continue;
    absl::Status s = should_announce ? speaker_->Announce(vips_[i], next_hop_)
                                     : speaker_->Withdraw(vips_[i]);
    if (!s.ok()) {
      ++errors_;
      last_error_ = std::string(s.message());
      continue;
    }
    is_announced_[i] = should_announce;
    announced_count_ += should_announce ? 1 : -1;
  }
}

}  // namespace sluice::mux
