// A unix-socket endpoint that answers one-line requests ("stats") with a JSON document.
// It runs on its own thread and only reads data-path counters; the gRPC API of a later
// issue supersedes it.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sluice {

class StatsServer {
 public:
  /// Called on the server thread with the request line (without newline); returns the reply.
  using Handler = std::function<std::string(const std::string& request)>;

  StatsServer() = default;
  ~StatsServer();
  StatsServer(const StatsServer&) = delete;
  StatsServer& operator=(const StatsServer&) = delete;

  /// Binds `path` (replacing a stale socket file, mode 0660) and starts serving.
  absl::Status Start(const std::string& path, Handler handler);
  void Stop();

 private:
  void Serve();
  std::string path_;
  Handler handler_;
  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};
  std::thread thread_;
};

/// Client side: sends `request` to the socket at `path` and returns the whole reply.
absl::StatusOr<std::string> QueryStatsSocket(const std::string& path, const std::string& request,
                                             int timeout_ms = 2000);

}  // namespace sluice
