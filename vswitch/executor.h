// The vSwitch executor: flow-IR rules as OpenFlow 1.5 flows on an OVS bridge (userspace
// datapath). Rules are staged with Add/Remove and reach the bridge all-or-nothing with
// Commit (one OpenFlow bundle). Reconcile compares the bridge's flows with the desired set
// and fixes only the differences, so an agent restart keeps flows (and their counters and
// the connections they carry) that are already right; flows of an unmanaged cookie class
// (the agent's per-connection Fastpath flows) are left to their owner. Control plane only,
// one thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "offload/flow/rule.h"
#include "vswitch/process.h"
#include "vswitch/translate.h"

namespace sluice::vswitch {

class OvsInstance;

/// How flows reach a bridge: the seam between the executor and OVS.
class OpenFlowChannel {
 public:
  virtual ~OpenFlowChannel() = default;
  /// The bridge's flows in `ovs-ofctl dump-flows` form (one per line).
  virtual absl::StatusOr<std::string> DumpFlows() = 0;
  /// Applies `lines` ("add <flow>", "delete_strict <key>") as one bundle: all or nothing.
  virtual absl::Status Bundle(const std::string& lines) = 0;
  /// `ovs-ofctl diff-flows <bridge> <desired>`: "-flow" only on the bridge, "+flow" only
  /// desired (statistics ignored), each as "[table=N ]priority=P,<match> cookie=C
  /// [idle_timeout=T ]actions=A" (a form add-flows reads back). Empty when they agree.
  virtual absl::StatusOr<std::string> Diff(const std::string& desired) = 0;
};

/// OpenFlowChannel through `ovs-ofctl -O OpenFlow15 --bundle` on the bridge's management
/// socket (why not a native OpenFlow connection: vswitch/README.md).
class OfctlChannel : public OpenFlowChannel {
 public:
  /// `ovs` must outlive the channel; scratch files go to its run directory.
  OfctlChannel(const OvsInstance* ovs, std::string bridge);
  absl::StatusOr<std::string> DumpFlows() override;
  absl::Status Bundle(const std::string& lines) override;
  absl::StatusOr<std::string> Diff(const std::string& desired) override;

 private:
  absl::StatusOr<std::string> WriteScratch(const std::string& text);
  std::vector<std::string> BundleArgv() const;
  const OvsInstance* ovs_;
  std::string bridge_;
  /// The next Bundle's ovs-ofctl, already started and waiting for its flows on stdin: a
  /// change reaches the bridge without a process start (the Fastpath's latency).
  std::unique_ptr<PreparedCommand> standby_;
};

struct OvsExecutorConfig {
  OvsPorts ports;
  BaseFlowSpec base;  ///< Tunnel steering, ARP, table miss (see BaseFlows).
  /// Flows wanted on the bridge besides the rules and base flows (a mirror, a monitoring
  /// flow); their cookies must not collide with rule ids or base cookies.
  std::vector<OvsFlow> extra_flows;
  /// Flows on the bridge whose `cookie & unmanaged_cookie_mask == unmanaged_cookie` are not
  /// the executor's (the agent installs and removes them itself: per-connection Fastpath
  /// flows): Reconcile neither compares nor removes them, Commit never names them. Mask 0:
  /// every flow is the executor's.
  uint64_t unmanaged_cookie = 0;
  uint64_t unmanaged_cookie_mask = 0;
};

struct OvsRuleStatus {
  uint64_t id = 0;
  std::string name;
  bool on_bridge = false;  ///< Part of the last successful Commit/Reconcile.
  std::string error;       ///< Why OVS cannot take it ("" if it can).
  std::string flow;        ///< The OpenFlow text ("" if refused).
  uint64_t packets = 0;    ///< Last QueryCounters().
  uint64_t bytes = 0;
};

struct AddOutcome {
  bool ok = false;
  std::string error;
};

/// What Reconcile found and did.
struct ReconcileReport {
  size_t desired = 0;  ///< Flows wanted (base + rules).
  size_t kept = 0;     ///< Already on the bridge exactly as wanted: untouched.
  size_t added = 0;    ///< Missing or different on the bridge: (re)written.
  size_t removed = 0;  ///< On the bridge but not wanted (match not in the desired set).
  size_t unmanaged = 0;  ///< Flows of the unmanaged cookie class on the bridge: untouched.
};

class OvsExecutor {
 public:
  /// `channel` must outlive the executor.
  OvsExecutor(OpenFlowChannel* channel, OvsExecutorConfig config);

  /// Stages a rule (replacing one with the same id). A rule OVS cannot express is kept
  /// with its reason in Status(id) and never reaches the bridge.
  AddOutcome Add(const flow::Rule& rule, const RuleOptions& options = {});
  /// Stages a removal. False if the id is unknown.
  bool Remove(uint64_t id);
  void RemoveAll();
  /// Replaces OvsExecutorConfig::extra_flows (flows that follow the config, e.g. SNAT with
  /// conntrack); like rules, the difference reaches the bridge with the next Commit.
  void SetExtraFlows(std::vector<OvsFlow> flows);
  /// Replaces the whole config (ports added or removed at runtime: the port map, the base
  /// flows' tunnel endpoints, the extra flows). Rules staged afterwards translate with the
  /// new port map; the difference reaches the bridge with the next Commit.
  void SetConfig(OvsExecutorConfig config);

  /// Sends every staged change as one bundle (adds, replacements, strict deletes). On
  /// error the bridge is unchanged and the changes stay staged.
  absl::Status Commit();
  /// Reads the bridge's flows, keeps those equal to the desired set and fixes the rest
  /// (one bundle of adds and strict deletes). For a restart: nothing that is already right
  /// is touched, nor any flow of the unmanaged cookie class.
  absl::StatusOr<ReconcileReport> Reconcile();
  /// Reads n_packets/n_bytes of every rule's flow (by cookie) into its status.
  absl::Status QueryCounters();
  /// The same from a `dump-flows` text the caller already read.
  void ReadCounters(std::string_view dump);

  const OvsRuleStatus* Status(uint64_t id) const;
  std::vector<OvsRuleStatus> Statuses() const;
  /// Rules on the bridge / refused / staged changes not yet committed, for stats.
  std::vector<std::pair<std::string, uint64_t>> Counters() const;
  /// Every desired flow (base flows, then rules by id), as `add-flows` text.
  std::string DesiredFlows() const;

 private:
  struct Entry {
    flow::Rule rule;
    OvsRuleStatus status;
    bool translated = false;
    std::vector<OvsFlow> flows;  // first: table 0 (counters); conntrack return: table 1 too
  };
  // Every desired flow by (cookie, index within its rule).
  std::map<std::pair<uint64_t, size_t>, OvsFlow> DesiredById() const;

  OpenFlowChannel* channel_;
  OvsExecutorConfig config_;
  std::vector<OvsFlow> base_;
  std::map<uint64_t, Entry> entries_;
  std::map<std::pair<uint64_t, size_t>, OvsFlow> installed_;  // believed on the bridge
  uint64_t commits_ = 0;
  uint64_t commit_errors_ = 0;
};

}  // namespace sluice::vswitch
