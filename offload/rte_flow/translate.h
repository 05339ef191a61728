// Translation of flow-IR rules into rte_flow descriptions (attribute, pattern items with
// spec and mask, actions with their configuration structs), and the equivalent
// dpdk-testpmd `flow create` text. A FlowSpec owns every byte its pointers refer to.
#pragma once

#include <rte_flow.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "offload/flow/rule.h"

namespace sluice::nic {

/// Capacity of one FlowSpec; a rule needing more is refused with an error.
inline constexpr size_t kMaxPatternItems = 8;
inline constexpr size_t kMaxFlowActions = 24;
inline constexpr size_t kMaxRawHeaders = 4;  ///< RAW_DECAP + RAW_ENCAP per tunnel action.
inline constexpr size_t kMaxRawHeaderBytes = 64;

/// What the NIC is asked to do with a rule.
enum class OffloadMode : uint8_t {
  /// Match and every action in the NIC.
  kFull,
  /// Match in the NIC, then MARK (flow id) + QUEUE: the software executor applies the rule's
  /// actions to packets carrying the mark. Always an ingress (non-transfer) rule in group 0
  /// on the rule's in_port.
  kPartial,
};

/// How a rule is placed. Defaults give a non-transfer ingress rule in group 0 on port 0.
struct TranslateOptions {
  /// ethdev the rule is created on: the transfer proxy in transfer mode, else the port used
  /// when the match names no in_port (a match's in_port wins in non-transfer mode).
  uint16_t port_id = 0;
  /// E-switch rule: in_port becomes a REPRESENTED_PORT item and kOutput a REPRESENTED_PORT
  /// action (to the VF or wire the ethdev represents). Otherwise kOutput is PORT_ID.
  bool transfer = false;
  /// Group of kFull rules. Anything but 0 needs a root JUMP rule (BuildJump).
  uint32_t group = 0;
  /// The IR's priority (higher wins) maps to rte_flow's (lower wins) as
  /// `priority_levels - 1 - min(ir, priority_levels - 1)`.
  uint32_t priority_levels = 256;
  OffloadMode mode = OffloadMode::kFull;
  uint32_t mark_id = 0;  ///< kPartial: the MARK value the software executor looks up.
  uint16_t queue = 0;    ///< kPartial: the Rx queue marked packets go to.
  /// UDP destination port that identifies GUE in a kGue match.
  uint16_t gue_port = flow::kDefaultGuePort;
  /// AGE context reported by rte_flow_get_aged_flows; NULL lets the PMD report the handle.
  void* age_context = nullptr;
};

/// One rte_flow rule description, ready for rte_flow_validate/create. Neither copyable nor
/// movable: the item and action arrays point into the object itself.
class FlowSpec {
 public:
  FlowSpec() { Clear(); }
  FlowSpec(const FlowSpec&) = delete;
  FlowSpec& operator=(const FlowSpec&) = delete;

  /// Resets to an empty rule (no items, no actions) so the object can be reused.
  void Clear();

  const rte_flow_attr& attr() const { return attr_; }
  /// END-terminated pattern.
  const rte_flow_item* pattern() const { return items_.data(); }
  /// END-terminated action list.
  const rte_flow_action* actions() const { return actions_.data(); }
  size_t num_items() const { return num_items_; }      ///< Without the END item.
  size_t num_actions() const { return num_actions_; }  ///< Without the END action.

  uint16_t port_id() const { return port_id_; }  ///< ethdev the rule goes to.
  uint64_t rule_id() const { return rule_id_; }  ///< IR rule id it came from.
  bool HasAction(rte_flow_action_type type) const;

  /// The rule as dpdk-testpmd (22.11) commands: `set raw_decap|raw_encap N ... / end_set`
  /// lines for the raw headers it uses, then one `flow create <port> ...` line. Each line
  /// ends with '\n'.
  std::string ToTestpmd() const;

  /// Identifies the rule's shape for the template API: attribute, item types and masks,
  /// action types. Rules with equal keys share a pattern and an actions template.
  std::string ShapeKey() const;

 private:
  friend class SpecBuilder;

  union ItemConf {
    rte_flow_item_eth eth;
    rte_flow_item_ipv4 ipv4;
    rte_flow_item_tcp tcp;
    rte_flow_item_udp udp;
    rte_flow_item_gre gre;
    rte_flow_item_ethdev ethdev;
  };
  union ActionConf {
    rte_flow_action_raw_decap raw_decap;
    rte_flow_action_raw_encap raw_encap;
    rte_flow_action_set_ipv4 set_ipv4;
    rte_flow_action_set_tp set_tp;
    rte_flow_action_set_mac set_mac;
    rte_flow_action_count count;
    rte_flow_action_age age;
    rte_flow_action_ethdev ethdev;
    rte_flow_action_port_id port;
    rte_flow_action_queue queue;
    rte_flow_action_mark mark;
    rte_flow_action_jump jump;
  };
  struct RawHeader {
    std::array<uint8_t, kMaxRawHeaderBytes> bytes;
    size_t size;
  };

  rte_flow_attr attr_;
  std::array<rte_flow_item, kMaxPatternItems + 1> items_;
  std::array<ItemConf, kMaxPatternItems> item_specs_;
  std::array<ItemConf, kMaxPatternItems> item_masks_;
  std::array<rte_flow_action, kMaxFlowActions + 1> actions_;
  std::array<ActionConf, kMaxFlowActions> action_confs_;
  std::array<RawHeader, kMaxRawHeaders> raw_;
  size_t num_items_ = 0;
  size_t num_actions_ = 0;
  size_t num_raw_ = 0;
  uint16_t port_id_ = 0;
  uint64_t rule_id_ = 0;
};

/// Translates `rule` into `*out` (cleared first). Returns "" on success, else a message
/// saying what the NIC cannot express (e.g. a to_software action in kFull mode, a decap
/// without a set_mac that would give RAW_ENCAP the Ethernet addresses). In kPartial mode
/// only the match has to be expressible.
///
/// Tunnels: decap = RAW_DECAP(eth + outer ipv4 [+ udp]) + RAW_ENCAP(eth); encap =
/// RAW_DECAP(eth) + RAW_ENCAP(eth + outer ipv4 [+ udp]). The Ethernet header written by
/// RAW_ENCAP carries the rule's last set_mac, which is then not emitted separately. A GUE
/// encap whose source port is "flow hash" gets the port computed from the rule's exact
/// 5-tuple (the same hash software uses); without an exact 5-tuple it is refused.
std::string Translate(const flow::Rule& rule, const TranslateOptions& options, FlowSpec* out);

/// Builds the root rule `group 0 pattern eth / end actions jump group <options.group>` for
/// options.port_id (transfer if options.transfer), needed when rules live in a group > 0.
void BuildJump(const TranslateOptions& options, FlowSpec* out);

/// Every rule as dpdk-testpmd commands (what `sluicectl get nic-rules --testpmd` prints):
/// a `#` comment line with the IR rule, then its set/flow create lines; a rule that cannot
/// be translated gets a `# not offloadable: <why>` comment instead. When options.group > 0
/// the root JUMP rule comes first. In kPartial mode rule i gets mark options.mark_id + i.
std::string TestpmdRules(const std::vector<flow::Rule>& rules, const TranslateOptions& options);

}  // namespace sluice::nic
