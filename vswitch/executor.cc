#include "vswitch/executor.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "common/strings.h"
#include "vswitch/ovs_instance.h"
#include "vswitch/process.h"

namespace sluice::vswitch {
namespace {

// A flow of `diff-flows` output ("table=4 priority=100,tcp,in_port=1 cookie=0x1
// idle_timeout=9 actions=...") → what identifies it for delete_strict
// ("table=4,priority=100,tcp,in_port=1"): every field before the actions but the cookie and
// the timeouts, which are not part of the match.
std::string DiffKey(std::string_view line) {
  line = line.substr(0, line.find(" actions="));
  std::string key;
  for (std::string_view field : SplitString(line, ' ')) {
    if (field.empty() || field.starts_with("cookie=") || field.starts_with("idle_timeout=") ||
        field.starts_with("hard_timeout=") || field.starts_with("importance=")) {
      continue;
    }
    key += (key.empty() ? "" : ",") + std::string(field);
  }
  return key;
}

// The cookie of a `diff-flows` flow (0 if it has none).
uint64_t DiffCookie(std::string_view line) {
  const size_t at = line.find(" cookie=0x");
  uint64_t cookie = 0;
  if (at == std::string_view::npos) return 0;
  std::string_view hex = line.substr(at + 10);
  hex = hex.substr(0, hex.find_first_of(" ,"));
  return ParseUint(hex, &cookie, 16) ? cookie : 0;
}

// Value of "name=<number>" in a dump-flows line (decimal, or hex with 0x).
bool FieldValue(const std::string& line, const std::string& name, uint64_t* value) {
  size_t at = line.find(" " + name + "=");
  if (at == std::string::npos) return false;
  at += name.size() + 2;
  size_t end = line.find_first_of(", ", at);
  std::string text = line.substr(at, end == std::string::npos ? std::string::npos : end - at);
  if (text.rfind("0x", 0) == 0) return ParseUint(text.substr(2), value, 16);
  return ParseUint(text, value);
}

}  // namespace

OfctlChannel::OfctlChannel(const OvsInstance* ovs, std::string bridge)
    : ovs_(ovs), bridge_(std::move(bridge)) {}

absl::StatusOr<std::string> OfctlChannel::DumpFlows() {
  return ovs_->Ofctl({"dump-flows", ovs_->MgmtSocket(bridge_)});
}

std::vector<std::string> OfctlChannel::BundleArgv() const {
  return {"ovs-ofctl", "-O", "OpenFlow15", "--bundle", "add-flows", ovs_->MgmtSocket(bridge_), "-"};
}

absl::Status OfctlChannel::Bundle(const std::string& lines) {
  if (lines.empty()) return absl::OkStatus();  // an empty input would be a no-op bundle
  std::unique_ptr<PreparedCommand> command = std::move(standby_);
  if (command == nullptr) command = std::make_unique<PreparedCommand>(BundleArgv(), ovs_->Env());
  const CommandResult r = command->Finish(lines);
  standby_ = std::make_unique<PreparedCommand>(BundleArgv(), ovs_->Env());
  if (r.exit_code != 0) {
    std::string err = r.err;
    while (!err.empty() && err.back() == '\n') err.pop_back();
    return absl::InternalError(StrCat(JoinArgv(BundleArgv()), " failed (exit ", r.exit_code,
                                      "): ", err.empty() ? r.out : err));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> OfctlChannel::WriteScratch(const std::string& text) {
  std::string path = ovs_->run_dir() + "/" + bridge_ + ".desired-flows";
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::InternalError(StrCat("cannot write ", path, ": ", strerror(errno)));
  size_t done = 0;
  while (done < text.size()) {
    ssize_t w = write(fd, text.data() + done, text.size() - done);
    if (w <= 0) {
      close(fd);
      return absl::InternalError(StrCat("cannot write ", path, ": ", strerror(errno)));
    }
    done += static_cast<size_t>(w);
  }
  close(fd);
  return path;
}

absl::StatusOr<std::string> OfctlChannel::Diff(const std::string& desired) {
  absl::StatusOr<std::string> file = WriteScratch(desired);
  if (!file.ok()) return file.status();
  std::vector<std::string> argv = {
      "ovs-ofctl", "-O", "OpenFlow15", "diff-flows", ovs_->MgmtSocket(bridge_), *file};
  CommandResult r = RunCommand(argv, "", ovs_->Env());
  // Exit 2 means "they differ", which is an answer, not a failure.
  if (r.exit_code != 0 && r.exit_code != 2) {
    return absl::InternalError(StrCat(JoinArgv(argv), " failed (exit ", r.exit_code, "): ", r.err));
  }
  return r.out;
}

OvsExecutor::OvsExecutor(OpenFlowChannel* channel, OvsExecutorConfig config)
    : channel_(channel), config_(std::move(config)), base_(BaseFlows(config_.base)) {
  base_.insert(base_.end(), config_.extra_flows.begin(), config_.extra_flows.end());
}

AddOutcome OvsExecutor::Add(const flow::Rule& rule, const RuleOptions& options) {
  Entry entry{.rule = rule, .status = {.id = rule.id, .name = rule.name}};
  absl::StatusOr<std::vector<OvsFlow>> flows = TranslateRule(rule, config_.ports, options);
  if (flows.ok()) {
    entry.translated = true;
    entry.flows = *flows;
    for (const OvsFlow& f : *flows) {
      entry.status.flow += (entry.status.flow.empty() ? "" : "\n") + f.Text();
    }
  } else {
    entry.status.error = std::string(flows.status().message());
  }
  auto old = entries_.find(rule.id);
  if (old != entries_.end()) {
    entry.status.on_bridge = old->second.status.on_bridge && old->second.translated &&
                             entry.translated && old->second.flows == entry.flows;
  }
  AddOutcome outcome{.ok = entry.translated, .error = entry.status.error};
  entries_[rule.id] = std::move(entry);
  return outcome;
}

bool OvsExecutor::Remove(uint64_t id) { return entries_.erase(id) > 0; }

void OvsExecutor::RemoveAll() { entries_.clear(); }

void OvsExecutor::SetExtraFlows(std::vector<OvsFlow> flows) {
  config_.extra_flows = std::move(flows);
  base_ = BaseFlows(config_.base);
  base_.insert(base_.end(), config_.extra_flows.begin(), config_.extra_flows.end());
}

void OvsExecutor::SetConfig(OvsExecutorConfig config) {
  config_ = std::move(config);
  base_ = BaseFlows(config_.base);
  base_.insert(base_.end(), config_.extra_flows.begin(), config_.extra_flows.end());
}

std::map<std::pair<uint64_t, size_t>, OvsFlow> OvsExecutor::DesiredById() const {
  std::map<std::pair<uint64_t, size_t>, OvsFlow> desired;
  for (const OvsFlow& f : base_) desired[{f.cookie, 0}] = f;
  for (const auto& [id, e] : entries_) {
    if (!e.translated) continue;
    for (size_t i = 0; i < e.flows.size(); ++i) desired[{id, i}] = e.flows[i];
  }
  return desired;
}

std::string OvsExecutor::DesiredFlows() const {
  std::string text;
  for (const OvsFlow& f : base_) text += f.Text() + "\n";
  for (const auto& [id, e] : entries_) {
    if (!e.translated) continue;
    for (const OvsFlow& f : e.flows) text += f.Text() + "\n";
  }
  return text;
}

absl::Status OvsExecutor::Commit() {
  const auto desired = DesiredById();
  std::string deletes, adds;
  for (const auto& [cookie, flow] : installed_) {
    auto it = desired.find(cookie);
    if (it == desired.end() || it->second.Key() != flow.Key()) {
      deletes += "delete_strict " + flow.Key() + "\n";
    }
  }
  for (const auto& [cookie, flow] : desired) {
    auto it = installed_.find(cookie);
    if (it == installed_.end() || !(it->second == flow)) adds += "add " + flow.Text() + "\n";
  }
  if (!deletes.empty() || !adds.empty()) {
    // Deletes first: a new rule may take the match and priority of a removed one.
    if (absl::Status s = channel_->Bundle(deletes + adds); !s.ok()) {
      ++commit_errors_;
      return s;
    }
  }
  ++commits_;
  installed_ = desired;
  for (auto& [id, e] : entries_) e.status.on_bridge = e.translated;
  return absl::OkStatus();
}

absl::StatusOr<ReconcileReport> OvsExecutor::Reconcile() {
  const std::string desired = DesiredFlows();
  ReconcileReport report;
  report.desired = DesiredById().size();
  absl::StatusOr<std::string> diff = channel_->Diff(desired);
  if (!diff.ok()) return diff.status();
  // Only desired: add (an add replaces a flow of the same match and priority). Only on the
  // bridge and no desired flow has its match: delete_strict. Unmanaged flows: nothing.
  std::set<std::string> wanted_keys;
  std::vector<std::string> adds, unwanted_keys;
  for (std::string_view line : SplitString(*diff, '\n')) {
    if (line.size() < 2) continue;
    const std::string_view flow = line.substr(1);
    if (line[0] == '+') {
      adds.emplace_back(flow);
      wanted_keys.insert(DiffKey(flow));
    } else if (line[0] == '-') {
      if (config_.unmanaged_cookie_mask != 0 &&
          (DiffCookie(flow) & config_.unmanaged_cookie_mask) == config_.unmanaged_cookie) {
        ++report.unmanaged;
        continue;
      }
      unwanted_keys.push_back(DiffKey(flow));
    }
  }
  std::string bundle;
  for (const std::string& key : unwanted_keys) {
    if (wanted_keys.contains(key)) continue;
    ++report.removed;
    bundle += "delete_strict " + key + "\n";
  }
  for (const std::string& flow : adds) bundle += "add " + flow + "\n";
  report.added = adds.size();
  report.kept = report.desired - std::min(report.desired, report.added);
  if (!bundle.empty()) {
    if (absl::Status s = channel_->Bundle(bundle); !s.ok()) {
      ++commit_errors_;
      return s;
    }
  }
  ++commits_;
  installed_ = DesiredById();
  for (auto& [id, e] : entries_) e.status.on_bridge = e.translated;
  return report;
}

absl::Status OvsExecutor::QueryCounters() {
  absl::StatusOr<std::string> dump = channel_->DumpFlows();
  if (!dump.ok()) return dump.status();
  ReadCounters(*dump);
  return absl::OkStatus();
}

void OvsExecutor::ReadCounters(std::string_view dump) {
  for (std::string_view view : SplitString(dump, '\n')) {
    std::string line = " " + std::string(view);
    uint64_t cookie = 0, packets = 0, bytes = 0;
    if (!FieldValue(line, "cookie", &cookie)) continue;
    uint64_t table = 0;
    if (FieldValue(line, "table", &table) && table != 0) continue;  // counters: table 0 flow
    auto it = entries_.find(cookie);
    if (it == entries_.end()) continue;
    FieldValue(line, "n_packets", &packets);
    FieldValue(line, "n_bytes", &bytes);
    it->second.status.packets = packets;
    it->second.status.bytes = bytes;
  }
}

const OvsRuleStatus* OvsExecutor::Status(uint64_t id) const {
  auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : &it->second.status;
}

std::vector<OvsRuleStatus> OvsExecutor::Statuses() const {
  std::vector<OvsRuleStatus> out;
  for (const auto& [id, e] : entries_) out.push_back(e.status);
  return out;
}

std::vector<std::pair<std::string, uint64_t>> OvsExecutor::Counters() const {
  uint64_t on_bridge = 0, refused = 0, staged = 0;
  for (const auto& [id, e] : entries_) {
    if (!e.translated) {
      ++refused;
    } else if (e.status.on_bridge) {
      ++on_bridge;
    } else {
      ++staged;
    }
  }
  return {{"rules_on_bridge", on_bridge}, {"rules_refused", refused},
          {"rules_staged", staged},       {"base_flows", base_.size()},
          {"commits", commits_},          {"commit_errors", commit_errors_}};
}

}  // namespace sluice::vswitch
