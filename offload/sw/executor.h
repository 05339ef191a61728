// The software executor: applies IR rules to DPDK mbuf bursts. It defines the reference
// semantics every other executor (rte_flow, OVS) must reproduce, and it is the path for
// first packets and for everything a NIC refuses to offload.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "offload/flow/rule.h"
#include "offload/packet/counter.h"
#include "offload/packet/drop_reason.h"
#include "offload/packet/parse.h"

struct rte_mbuf;

namespace sluice::sw {

/// What happened to one packet.
struct Verdict {
  enum class Kind : uint8_t { kOutput, kDrop, kToSoftware };
  Kind kind = Kind::kDrop;
  uint16_t port = 0;                         ///< kOutput: where to send it.
  DropReason reason = DropReason::kNoRule;   ///< kDrop: why.
  uint32_t rule_index = kNoRuleIndex;        ///< Matched rule, if any.
  static constexpr uint32_t kNoRuleIndex = UINT32_MAX;
};

/// An immutable, validated set of rules ordered for lookup. Built off the data path and
/// handed to an executor as a whole.
class RuleTable {
 public:
  /// Validates every rule (flow::Validate) and orders them by priority. On error returns
  /// nullptr and sets `*error` to a message naming the offending rule.
  static std::shared_ptr<const RuleTable> Build(std::vector<flow::Rule> rules,
                                                std::string* error);

  /// Highest-priority rule matching the packet, or nullptr.
  const flow::Rule* Lookup(const packet::ParsedPacket& pkt, uint16_t in_port,
                           uint32_t* index) const;

  const std::vector<flow::Rule>& rules() const { return rules_; }

 private:
  std::vector<flow::Rule> rules_;
};

/// Counters of one executor instance (one per lcore; single writer).
struct ExecutorCounters {
  Counter rx_packets;
  Counter output_packets;
  Counter to_software_packets;
  std::array<Counter, kNumDropReasons> drops;
  uint64_t TotalDrops() const;
};

/// Applies `n` actions to one packet, in order, until a terminal action. `pkt` must be the
/// result of packet::Parse on `m` and is kept up to date as the packet changes (so actions
/// after a decap see the inner packet). Used by the executor and by applications that apply
/// per-flow actions directly (the mux's encapsulation). Never frees `m`.
Verdict ApplyActions(rte_mbuf* m, packet::ParsedPacket* pkt, const flow::Action* actions,
                     size_t n);

class SoftwareExecutor {
 public:
  explicit SoftwareExecutor(uint16_t gue_port = flow::kDefaultGuePort);

  /// Replaces the rule set (data-path thread only, between bursts). Resets rule counters.
  void SetRules(std::shared_ptr<const RuleTable> table);

  /// Parses and processes `n` packets received on `in_port`. Fills `verdicts[i]` for each;
  /// the caller transmits kOutput packets and frees kDrop ones. Drops are counted here.
  void ProcessBurst(rte_mbuf** pkts, uint16_t n, uint16_t in_port, Verdict* verdicts);

  const ExecutorCounters& counters() const { return counters_; }
  /// Packets and bytes counted by a rule's kCount action, by rule index in the table.
  uint64_t RulePackets(uint32_t index) const;
  uint64_t RuleBytes(uint32_t index) const;
  const RuleTable* rules() const { return table_.get(); }

 private:
  Verdict ProcessOne(rte_mbuf* m, uint16_t in_port);

  uint16_t gue_port_;
  std::shared_ptr<const RuleTable> table_;
  std::unique_ptr<Counter[]> rule_packets_;  // one per rule of table_
  std::unique_ptr<Counter[]> rule_bytes_;
  ExecutorCounters counters_;
};

}  // namespace sluice::sw
