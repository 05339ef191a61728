#include "common/strings.h"
#include "common/stats_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>


namespace sluice {
namespace {

absl::Status FillAddress(const std::string& path, sockaddr_un* addr) {
  if (path.size() >= sizeof(addr->sun_path)) {
    return absl::InvalidArgumentError(StrCat("socket path too long: ", path));
  }
  memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  memcpy(addr->sun_path, path.c_str(), path.size());
  return absl::OkStatus();
}

// Reads until newline or EOF, bounded.
std::string ReadLine(int fd) {
  std::string line;
  char c;
  while (line.size() < 4096 && read(fd, &c, 1) == 1 && c != '\n') line += c;
  return line;
}

bool WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

StatsServer::~StatsServer() { Stop(); }

absl::Status StatsServer::Start(const std::string& path, Handler handler) {
  sockaddr_un addr;
  if (absl::Status s = FillAddress(path, &addr); !s.ok()) return s;
  listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return absl::InternalError(StrCat("socket: ", strerror(errno)));
  unlink(path.c_str());
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listen_fd_, 16) != 0) {
    std::string err = strerror(errno);
    close(listen_fd_);
    listen_fd_ = -1;
    return absl::UnavailableError(StrCat("cannot listen on ", path, ": ", err));
  }
  chmod(path.c_str(), 0660);
  if (pipe2(wake_pipe_, O_CLOEXEC) != 0) {
    return absl::InternalError(StrCat("pipe: ", strerror(errno)));
  }
  path_ = path;
  handler_ = std::move(handler);
  thread_ = std::thread([this] { Serve(); });
  return absl::OkStatus();
}

void StatsServer::Stop() {
  if (thread_.joinable()) {
    char c = 'x';
    (void)!write(wake_pipe_[1], &c, 1);
    thread_.join();
  }
  for (int* fd : {&listen_fd_, &wake_pipe_[0], &wake_pipe_[1]}) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }
  if (!path_.empty()) unlink(path_.c_str());
  path_.clear();
}

void StatsServer::Serve() {
  for (;;) {
    pollfd fds[2] = {{.fd = listen_fd_, .events = POLLIN, .revents = 0},
                     {.fd = wake_pipe_[0], .events = POLLIN, .revents = 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents) return;
    if (!(fds[0].revents & POLLIN)) continue;
    int conn = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) continue;
    timeval tv{.tv_sec = 2, .tv_usec = 0};
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(conn, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    std::string reply = handler_(ReadLine(conn));
    if (reply.empty() || reply.back() != '\n') reply += '\n';
    WriteAll(conn, reply);
    close(conn);
  }
}

absl::StatusOr<std::string> QueryStatsSocket(const std::string& path, const std::string& request,
                                             int timeout_ms) {
  sockaddr_un addr;
  if (absl::Status s = FillAddress(path, &addr); !s.ok()) return s;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(StrCat("socket: ", strerror(errno)));
  timeval tv{.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    std::string err = strerror(errno);
    close(fd);
    return absl::UnavailableError(StrCat("cannot connect to ", path, ": ", err));
  }
  if (!WriteAll(fd, request + "\n")) {
    close(fd);
    return absl::UnavailableError(StrCat("cannot send to ", path));
  }
  std::string reply;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      close(fd);
      return absl::DeadlineExceededError(StrCat("no reply from ", path));
    }
    if (n == 0) break;
    reply.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return reply;
}

}  // namespace sluice
