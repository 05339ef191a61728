// The NIC executor: puts flow-IR rules into a NIC's rte_flow tables and, rule by rule,
// falls back when the NIC refuses: full offload → partial (NIC matches and MARKs, software
// applies the actions by mark) → software executor. Every decision and its reason (the
// rte_flow error message) is kept per rule and added up for stats. Control plane only:
// one thread calls it; the data path gets immutable snapshots (Publish).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "offload/flow/rule.h"
#include "offload/rte_flow/flow_api.h"
#include "offload/rte_flow/translate.h"
#include "offload/sw/executor.h"

struct rte_mbuf;

namespace sluice::nic {

/// Where a rule ended up.
enum class Placement : uint8_t {
  kNic,       ///< Match and actions in the NIC.
  kPartial,   ///< Match in the NIC (MARK + QUEUE); actions in software by mark.
  kSoftware,  ///< Entirely in the software executor.
};

/// "nic", "partial", "software".
const char* PlacementName(Placement placement);

struct NicExecutorConfig {
  /// E-switch (transfer) rules created on `transfer_proxy`; otherwise ingress rules on the
  /// rule's in_port (or `default_port`).
  bool transfer = false;
  uint16_t transfer_proxy = 0;
  uint16_t default_port = 0;
  /// Group of fully offloaded rules; > 0 installs a root JUMP rule per port on first use.
  uint32_t group = 0;
  uint32_t priority_levels = 256;  ///< See TranslateOptions::priority_levels.
  bool allow_partial = true;
  uint16_t partial_queue = 0;          ///< Rx queue of partially offloaded (marked) packets.
  uint32_t max_mark = (1u << 20) - 1;  ///< Marks 1..max_mark identify partial rules.
  uint16_t gue_port = flow::kDefaultGuePort;
  /// Use the template/async API on ports whose rte_flow_info_get reports flow queues.
  bool use_template_api = true;
  FlowPortConfig template_port_config;  ///< For rte_flow_configure.
  uint32_t template_table_size = 4096;  ///< Rules per template table (one per rule shape).
  uint32_t async_poll_limit = 100000;   ///< Pulls before an async operation counts as lost.
};

/// What a port's probe found (rte_flow_validate of a representative rule, rte_flow_info_get).
struct PortCapabilities {
  bool validate_ok = false;
  std::string validate_error;  ///< Why the representative rule was refused.
  bool template_api = false;   ///< Port configured for the template/async API.
  std::string template_error;  ///< Why not (info_get/configure message, or "disabled").
  FlowPortInfo info;
};

/// Everything known about one rule.
struct RuleStatus {
  uint64_t id = 0;
  std::string name;
  Placement placement = Placement::kSoftware;
  std::string full_error;     ///< Why not fully offloaded ("" if it is).
  std::string partial_error;  ///< Why not partially offloaded ("" if it is or was not tried).
  uint16_t port = 0;          ///< ethdev holding the NIC rule (kNic, kPartial).
  uint32_t mark = 0;          ///< kPartial: the MARK id.
  bool async = false;         ///< Created through the template/async API.
  bool counted = false;       ///< kNic with a COUNT action: `counts` is maintained.
  FlowCounts counts;          ///< Last QueryCounters() result.
};

/// Totals for stats: current rules by placement and every decision since construction.
struct PlacementTotals {
  uint64_t nic = 0;
  uint64_t partial = 0;
  uint64_t software = 0;
  uint64_t decided_nic = 0;
  uint64_t decided_partial = 0;
  uint64_t decided_software = 0;
  uint64_t removed = 0;
  uint64_t aged = 0;
  uint64_t destroy_errors = 0;  ///< rte_flow_destroy failures (the handle is dropped anyway).
  /// COUNT readings of fully offloaded rules, summed over every rule since construction
  /// (a removed rule contributes its last reading, taken just before it is destroyed).
  uint64_t nic_packets = 0;
  uint64_t nic_bytes = 0;
  uint64_t count_queries = 0;       ///< rte_flow_query calls.
  uint64_t count_query_errors = 0;  ///< Of them failed (by reason: CountQueryErrors()).
};

/// A rule whose COUNT moved since the previous reading.
struct CountChange {
  uint64_t id = 0;
  FlowCounts total;  ///< The reading now.
  FlowCounts delta;  ///< Since the previous reading.
};

/// Partially offloaded rules by MARK id: an immutable snapshot for the data path.
class MarkTable {
 public:
  /// `rules[i]` is identified by `marks[i]`.
  MarkTable(std::vector<flow::Rule> rules, const std::vector<uint32_t>& marks);

  /// The rule a mark stands for, or nullptr.
  const flow::Rule* Find(uint32_t mark) const;
  size_t size() const { return rules_.size(); }

  /// Data path: if `m` carries a MARK (RTE_MBUF_F_RX_FDIR_ID) of this table, parses it and
  /// applies the rule's actions (sw::ApplyActions), fills `*verdict` and returns true.
  /// Unmarked packets and unknown marks return false: run them through the software
  /// executor. Does not allocate.
  bool Finish(rte_mbuf* m, uint16_t gue_port, sw::Verdict* verdict) const;

 private:
  std::vector<flow::Rule> rules_;
  std::vector<int32_t> by_mark_;  // mark → index into rules_, -1 if none
};

/// What the software side needs: the rules it runs (partial and software ones, so a packet
/// whose mark was lost still finds its rule) and the mark table.
struct SoftwareSnapshot {
  std::shared_ptr<const sw::RuleTable> rules;
  std::shared_ptr<const MarkTable> marks;
};

/// Result of NicExecutor::Add.
struct AddResult {
  bool ok = false;  ///< False only for a rule that fails flow::Validate.
  Placement placement = Placement::kSoftware;
  std::string error;  ///< !ok: what is wrong with the rule.
};

class NicExecutor {
 public:
  /// `api` must outlive the executor.
  NicExecutor(FlowApi* api, NicExecutorConfig config);
  /// Destroys every NIC rule, root JUMP rule and template table it created.
  ~NicExecutor();
  NicExecutor(const NicExecutor&) = delete;
  NicExecutor& operator=(const NicExecutor&) = delete;

  /// Probes `port` once (later calls return the cached result). On a port with flow queues
  /// this also calls rte_flow_configure, which PMDs want before the port starts.
  const PortCapabilities& Probe(uint16_t port);

  /// Places a rule, replacing one with the same id: full offload, else partial, else
  /// software. The reasons for each fallback are in Status(id).
  AddResult Add(const flow::Rule& rule);
  /// Removes a rule (destroying its NIC rule). False if the id is unknown.
  bool Remove(uint64_t id);
  void RemoveAll();

  /// Drains rte_flow_get_aged_flows on every port, removes the aged rules and calls
  /// `on_aged(id)` for each so the caller drops its own state. Returns how many aged.
  size_t AgeSweep(const std::function<void(uint64_t id)>& on_aged);
  /// Reads the COUNT of up to `max` fully offloaded rules that have one into their statuses,
  /// continuing after the rule the previous call stopped at (wrapping), so a caller can
  /// spread a large table over several calls. Calls `on_change` for each rule whose reading
  /// moved. A failed query keeps the previous reading and is counted by its reason. Returns
  /// how many rules it queried.
  size_t QueryCounters(size_t max = SIZE_MAX,
                       const std::function<void(const CountChange&)>& on_change = nullptr);
  /// Why COUNT queries failed (the rte_flow message) → how many times.
  const std::map<std::string, uint64_t>& CountQueryErrors() const { return count_errors_; }

  const RuleStatus* Status(uint64_t id) const;
  /// All rule statuses, by id.
  std::vector<RuleStatus> Statuses() const;
  const PlacementTotals& totals() const { return totals_; }
  /// The totals as named counters for the stats socket: "rules_nic", "rules_partial",
  /// "rules_software", "decided_nic", "decided_partial", "decided_software", "removed",
  /// "aged", "destroy_errors", "nic_packets", "nic_bytes", "count_queries",
  /// "count_query_errors".
  std::vector<std::pair<std::string, uint64_t>> Counters() const;
  /// Why rules are not fully offloaded: full_error → number of current rules.
  std::map<std::string, uint64_t> FallbackReasons() const;

  /// Builds the software side's snapshot (rule table + mark table) from the current rules.
  /// On a RuleTable::Build error returns empty pointers and sets `*error`.
  SoftwareSnapshot Publish(std::string* error) const;

  /// The rules currently in the NIC (root JUMP rules first) as dpdk-testpmd commands.
  std::string Testpmd() const;

 private:
  struct Entry {
    flow::Rule rule;
    RuleStatus status;
    rte_flow* flow = nullptr;
    uint64_t age_token = 0;
  };
  struct PortState {
    PortCapabilities caps;
    rte_flow* jump = nullptr;
    bool jump_tried = false;
    std::string jump_error;
    std::unordered_map<std::string, rte_flow_template_table*> tables;  // by FlowSpec::ShapeKey
  };

  TranslateOptions Options(OffloadMode mode) const;
  PortState& Port(uint16_t port);
  // Creates the NIC rule for `spec`, through the template API where the port has it.
  rte_flow* Install(const FlowSpec& spec, bool* async, std::string* error);
  bool Uninstall(uint16_t port, rte_flow* flow, bool async, std::string* error);
  bool WaitForOp(uint16_t port, void* user_data, std::string* error);
  std::string EnsureJump(uint16_t port);
  uint32_t AllocMark();
  void FreeMark(uint32_t mark);
  void Count(Placement placement, int delta);
  // Queries one counted rule's COUNT; true if the reading moved (`*change` filled).
  bool ReadCount(uint64_t id, Entry& entry, CountChange* change);

  FlowApi* api_;
  NicExecutorConfig config_;
  std::map<uint64_t, Entry> entries_;
  std::unordered_map<uint64_t, uint64_t> age_tokens_;  // AGE context → rule id
  std::map<uint16_t, PortState> ports_;
  std::vector<uint32_t> free_marks_;
  uint32_t next_mark_ = 1;
  uint64_t next_token_ = 1;
  PlacementTotals totals_;
  std::map<std::string, uint64_t> count_errors_;
  uint64_t count_cursor_ = 0;  // QueryCounters resumes after this rule id
  FlowSpec scratch_;  // translation target, reused
};

}  // namespace sluice::nic
