#include "offload/rte_flow/executor.h"

#include <rte_mbuf.h>

#include <algorithm>
#include <utility>

#include "offload/packet/parse.h"

namespace sluice::nic {

const char* PlacementName(Placement placement) {
  switch (placement) {
    case Placement::kNic:
      return "nic";
    case Placement::kPartial:
      return "partial";
    case Placement::kSoftware:
      return "software";
  }
  return "?";
}

// --- MarkTable ----------------------------------------------------------------------------

MarkTable::MarkTable(std::vector<flow::Rule> rules, const std::vector<uint32_t>& marks)
    : rules_(std::move(rules)) {
  uint32_t max_mark = 0;
  for (uint32_t mark : marks) max_mark = std::max(max_mark, mark);
  by_mark_.assign(rules_.empty() ? 0 : max_mark + 1, -1);
  for (size_t i = 0; i < rules_.size() && i < marks.size(); ++i) {
    by_mark_[marks[i]] = static_cast<int32_t>(i);
  }
}

const flow::Rule* MarkTable::Find(uint32_t mark) const {
  if (mark >= by_mark_.size() || by_mark_[mark] < 0) return nullptr;
  return &rules_[by_mark_[mark]];
}

bool MarkTable::Finish(rte_mbuf* m, uint16_t gue_port, sw::Verdict* verdict) const {
  if ((m->ol_flags & RTE_MBUF_F_RX_FDIR_ID) == 0) return false;
  const flow::Rule* rule = Find(m->hash.fdir.hi);
  if (rule == nullptr) return false;
  packet::ParsedPacket pkt;
  DropReason reason = DropReason::kMalformed;
  if (packet::Parse(rte_pktmbuf_mtod(m, const uint8_t*), rte_pktmbuf_data_len(m), gue_port, &pkt,
                    &reason) != packet::ParseStatus::kIpv4) {
    *verdict = sw::Verdict{.kind = sw::Verdict::Kind::kDrop, .reason = reason};
    return true;
  }
  *verdict = sw::ApplyActions(m, &pkt, rule->actions.data(), rule->actions.size());
  return true;
}

// --- NicExecutor --------------------------------------------------------------------------

NicExecutor::NicExecutor(FlowApi* api, NicExecutorConfig config)
    : api_(api), config_(std::move(config)) {}

NicExecutor::~NicExecutor() {
  RemoveAll();
  std::string error;
  for (auto& [port, state] : ports_) {
    if (state.jump != nullptr) api_->Destroy(port, state.jump, &error);
    for (auto& [shape, table] : state.tables) api_->DestroyTemplateTable(port, table, &error);
  }
}

TranslateOptions NicExecutor::Options(OffloadMode mode) const {
  return TranslateOptions{
      .port_id = config_.transfer ? config_.transfer_proxy : config_.default_port,
      .transfer = config_.transfer,
      .group = config_.group,
      .priority_levels = config_.priority_levels,
      .mode = mode,
      .queue = config_.partial_queue,
      .gue_port = config_.gue_port};
}

NicExecutor::PortState& NicExecutor::Port(uint16_t port) {
  Probe(port);
  return ports_[port];
}

const PortCapabilities& NicExecutor::Probe(uint16_t port) {
  auto [it, inserted] = ports_.try_emplace(port);
  PortCapabilities& caps = it->second.caps;
  if (!inserted) return caps;

  // A representative rule: the shape of a DSR return (5-tuple match, NAT, count).
  flow::Rule probe{.id = 0,
                   .match = {.in_port = port,
                             .src = flow::Ipv4Match::Exact(0x0a000001),
                             .proto = flow::kProtoTcp,
                             .src_port = flow::PortMatch::Exact(80)},
                   .actions = {flow::Action::SetIpv4Src(0x0a000002), flow::Action::Count(),
                               flow::Action::Drop()},
                   .name = "probe"};
  TranslateOptions options = Options(OffloadMode::kFull);
  options.port_id = port;
  FlowSpec spec;  // not scratch_: Add() may be holding a translation there
  std::string error = Translate(probe, options, &spec);
  if (error.empty() && api_->Validate(spec, &error) == 0) {
    caps.validate_ok = true;
  } else {
    caps.validate_error = error;
  }

  if (!config_.use_template_api) {
    caps.template_error = "disabled by configuration";
  } else if (api_->InfoGet(port, &caps.info, &error) != 0) {
    caps.template_error = error;
  } else if (caps.info.max_queues == 0) {
    caps.template_error = "rte_flow_info_get: no flow queues";
  } else {
    FlowPortConfig pc = config_.template_port_config;
    if (caps.info.max_queue_size != 0)
      pc.queue_size = std::min(pc.queue_size, caps.info.max_queue_size);
    if (api_->Configure(port, pc, &error) == 0) {
      caps.template_api = true;
    } else {
      caps.template_error = error;
    }
  }
  return caps;
}

std::string NicExecutor::EnsureJump(uint16_t port) {
  if (config_.group == 0) return "";
  PortState& state = Port(port);
  if (!state.jump_tried) {
    state.jump_tried = true;
    TranslateOptions options = Options(OffloadMode::kFull);
    options.port_id = port;
    FlowSpec spec;  // not scratch_: Add() is holding the rule's translation there
    BuildJump(options, &spec);
    std::string error;
    state.jump = api_->Create(spec, &error);
    if (state.jump == nullptr) state.jump_error = "root jump rule: " + error;
  }
  return state.jump_error;
}

bool NicExecutor::WaitForOp(uint16_t port, void* user_data, std::string* error) {
  FlowOpResult results[16];
  for (uint32_t polls = 0; polls < config_.async_poll_limit; ++polls) {
    int n = api_->Pull(port, 0, results, 16, error);
    if (n < 0) return false;
    for (int i = 0; i < n; ++i) {
      if (results[i].user_data != user_data) continue;
      if (!results[i].ok) *error = "asynchronous rte_flow operation failed";
      return results[i].ok;
    }
  }
  *error = "asynchronous rte_flow operation did not complete after " +
           std::to_string(config_.async_poll_limit) + " pulls";
  return false;
}

rte_flow* NicExecutor::Install(const FlowSpec& spec, bool* async, std::string* error) {
  const uint16_t port = spec.port_id();
  PortState& state = Port(port);
  *async = state.caps.template_api;
  if (!*async) return api_->Create(spec, error);

  std::string key = spec.ShapeKey();
  auto it = state.tables.find(key);
  if (it == state.tables.end()) {
    rte_flow_template_table* table =
        api_->CreateTemplateTable(spec, config_.template_table_size, error);
    if (table == nullptr) return nullptr;
    it = state.tables.emplace(std::move(key), table).first;
  }
  void* op = reinterpret_cast<void*>(static_cast<uintptr_t>(next_token_++));
  rte_flow* flow = api_->AsyncCreate(0, it->second, spec, op, error);
  if (flow == nullptr) return nullptr;
  if (api_->Push(port, 0, error) != 0 || !WaitForOp(port, op, error)) {
    *error = "rte_flow_async_create: " + *error;
    return nullptr;
  }
  return flow;
}

bool NicExecutor::Uninstall(uint16_t port, rte_flow* flow, bool async, std::string* error) {
  if (!async) return api_->Destroy(port, flow, error) == 0;
  void* op = reinterpret_cast<void*>(static_cast<uintptr_t>(next_token_++));
  return api_->AsyncDestroy(port, 0, flow, op, error) == 0 && api_->Push(port, 0, error) == 0 &&
         WaitForOp(port, op, error);
}

uint32_t NicExecutor::AllocMark() {
  if (!free_marks_.empty()) {
    uint32_t mark = free_marks_.back();
    free_marks_.pop_back();
    return mark;
  }
  return next_mark_ <= config_.max_mark ? next_mark_++ : 0;
}

void NicExecutor::FreeMark(uint32_t mark) {
  if (mark != 0) free_marks_.push_back(mark);
}

void NicExecutor::Count(Placement placement, int delta) {
  uint64_t* current = placement == Placement::kNic       ? &totals_.nic
                      : placement == Placement::kPartial ? &totals_.partial
                                                         : &totals_.software;
  *current += static_cast<uint64_t>(static_cast<int64_t>(delta));
  if (delta > 0) {
    (placement == Placement::kNic       ? totals_.decided_nic
     : placement == Placement::kPartial ? totals_.decided_partial
                                        : totals_.decided_software) += 1;
  }
}

AddResult NicExecutor::Add(const flow::Rule& rule) {
  std::string invalid = flow::Validate(rule);
  if (!invalid.empty()) return AddResult{.ok = false, .error = invalid};
  Remove(rule.id);

  Entry entry{.rule = rule};
  RuleStatus& status = entry.status;
  status.id = rule.id;
  status.name = rule.name;

  // 1. Full offload.
  TranslateOptions options = Options(OffloadMode::kFull);
  const bool ages =
      std::any_of(rule.actions.begin(), rule.actions.end(),
                  [](const flow::Action& a) { return a.type == flow::ActionType::kAge; });
  uint64_t token = 0;
  if (ages) {
    token = next_token_++;
    options.age_context = reinterpret_cast<void*>(static_cast<uintptr_t>(token));
  }
  std::string error = Translate(rule, options, &scratch_);
  if (!error.empty()) {
    status.full_error = "translate: " + error;
  } else {
    const uint16_t port = scratch_.port_id();
    error = EnsureJump(port);
    if (error.empty()) entry.flow = Install(scratch_, &status.async, &error);
    if (entry.flow != nullptr) {
      status.placement = Placement::kNic;
      status.port = port;
      status.counted = scratch_.HasAction(RTE_FLOW_ACTION_TYPE_COUNT);
      if (ages) {
        entry.age_token = token;
        age_tokens_[token] = rule.id;
      }
    } else {
      status.full_error = error;
    }
  }

  // 2. Partial offload: the NIC classifies and marks, software rewrites.
  if (entry.flow == nullptr && config_.allow_partial) {
    uint32_t mark = AllocMark();
    if (mark == 0) {
      status.partial_error = "no free mark (max_mark " + std::to_string(config_.max_mark) + ")";
    } else {
      options = Options(OffloadMode::kPartial);
      options.mark_id = mark;
      error = Translate(rule, options, &scratch_);
      if (error.empty()) entry.flow = Install(scratch_, &status.async, &error);
      if (entry.flow != nullptr) {
        status.placement = Placement::kPartial;
        status.port = scratch_.port_id();
        status.mark = mark;
      } else {
        status.partial_error = error.empty() ? "refused" : error;
        FreeMark(mark);
      }
    }
  }

  // 3. Software.
  if (entry.flow == nullptr) {
    status.placement = Placement::kSoftware;
    status.async = false;
  }
  Placement placement = status.placement;
  Count(placement, +1);
  entries_.emplace(rule.id, std::move(entry));
  return AddResult{.ok = true, .placement = placement};
}

bool NicExecutor::Remove(uint64_t id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return false;
  Entry& entry = it->second;
  if (entry.flow != nullptr && entry.status.counted) {
    CountChange last;
    ReadCount(id, entry, &last);  // what it counted since the last sweep goes into the totals
  }
  if (entry.flow != nullptr) {
    std::string error;
    if (!Uninstall(entry.status.port, entry.flow, entry.status.async, &error)) {
      ++totals_.destroy_errors;
    }
  }
  if (entry.status.placement == Placement::kPartial) FreeMark(entry.status.mark);
  if (entry.age_token != 0) age_tokens_.erase(entry.age_token);
  Count(entry.status.placement, -1);
  ++totals_.removed;
  entries_.erase(it);
  return true;
}

void NicExecutor::RemoveAll() {
  while (!entries_.empty()) Remove(entries_.begin()->first);
}

size_t NicExecutor::AgeSweep(const std::function<void(uint64_t id)>& on_aged) {
  constexpr uint32_t kBatch = 64;
  void* contexts[kBatch];
  std::vector<uint64_t> aged;
  for (auto& [port, state] : ports_) {
    for (int rounds = 0; rounds < 1024; ++rounds) {
      std::string error;
      int n = api_->GetAgedFlows(port, contexts, kBatch, &error);
      if (n <= 0) break;
      for (int i = 0; i < n; ++i) {
        auto token = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(contexts[i]));
        auto it = age_tokens_.find(token);
        if (it == age_tokens_.end()) continue;  // already removed
        aged.push_back(it->second);
        age_tokens_.erase(it);
      }
      if (static_cast<uint32_t>(n) < kBatch) break;
    }
  }
  for (uint64_t id : aged) {
    auto it = entries_.find(id);
    if (it != entries_.end()) it->second.age_token = 0;
    Remove(id);
    ++totals_.aged;
    if (on_aged) on_aged(id);
  }
  return aged.size();
}

bool NicExecutor::ReadCount(uint64_t id, Entry& entry, CountChange* change) {
  ++totals_.count_queries;
  std::string error;
  FlowCounts now;
  if (api_->QueryCount(entry.status.port, entry.flow, &now, &error) != 0) {
    ++totals_.count_query_errors;
    ++count_errors_[error.empty() ? "rte_flow_query failed" : error];
    return false;
  }
  const FlowCounts before = entry.status.counts;
  // A counter never runs backwards; a PMD that reports less (a reset) starts a new reading.
  const FlowCounts delta{.packets = now.packets >= before.packets ? now.packets - before.packets
                                                                  : now.packets,
                         .bytes = now.bytes >= before.bytes ? now.bytes - before.bytes : now.bytes};
  entry.status.counts = now;
  if (delta.packets == 0 && delta.bytes == 0) return false;
  totals_.nic_packets += delta.packets;
  totals_.nic_bytes += delta.bytes;
  *change = CountChange{.id = id, .total = now, .delta = delta};
  return true;
}

size_t NicExecutor::QueryCounters(size_t max,
                                  const std::function<void(const CountChange&)>& on_change) {
  size_t queried = 0;
  size_t visited = 0;
  const size_t n = entries_.size();
  auto it = entries_.upper_bound(count_cursor_);
  while (queried < max && visited < n) {
    if (it == entries_.end()) it = entries_.begin();
    ++visited;
    auto& [id, entry] = *it;
    count_cursor_ = id;
    ++it;
    if (entry.flow == nullptr || !entry.status.counted) continue;
    ++queried;
    CountChange change;
    if (ReadCount(id, entry, &change) && on_change) on_change(change);
  }
  return queried;
}

const RuleStatus* NicExecutor::Status(uint64_t id) const {
  auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : &it->second.status;
}

std::vector<RuleStatus> NicExecutor::Statuses() const {
  std::vector<RuleStatus> out;
  out.reserve(entries_.size());
  for (const auto& [id, entry] : entries_) out.push_back(entry.status);
  return out;
}

std::vector<std::pair<std::string, uint64_t>> NicExecutor::Counters() const {
  return {{"rules_nic", totals_.nic},
          {"rules_partial", totals_.partial},
          {"rules_software", totals_.software},
          {"decided_nic", totals_.decided_nic},
          {"decided_partial", totals_.decided_partial},
          {"decided_software", totals_.decided_software},
          {"removed", totals_.removed},
          {"aged", totals_.aged},
          {"destroy_errors", totals_.destroy_errors},
          {"nic_packets", totals_.nic_packets},
          {"nic_bytes", totals_.nic_bytes},
          {"count_queries", totals_.count_queries},
          {"count_query_errors", totals_.count_query_errors}};
}

std::map<std::string, uint64_t> NicExecutor::FallbackReasons() const {
  std::map<std::string, uint64_t> reasons;
  for (const auto& [id, entry] : entries_) {
    if (entry.status.placement != Placement::kNic) ++reasons[entry.status.full_error];
  }
  return reasons;
}

SoftwareSnapshot NicExecutor::Publish(std::string* error) const {
  std::vector<flow::Rule> software_rules;
  std::vector<flow::Rule> marked_rules;
  std::vector<uint32_t> marks;
  for (const auto& [id, entry] : entries_) {
    // A NIC rule that hands its packets to software stays in software's table too: those
    // packets arrive unchanged and must meet the same rule there.
    const bool to_software = !entry.rule.actions.empty() &&
                             entry.rule.actions.back().type == flow::ActionType::kToSoftware;
    if (entry.status.placement == Placement::kNic && !to_software) continue;
    software_rules.push_back(entry.rule);
    if (entry.status.placement == Placement::kPartial) {
      marked_rules.push_back(entry.rule);
      marks.push_back(entry.status.mark);
    }
  }
  auto table = sw::RuleTable::Build(std::move(software_rules), error);
  if (table == nullptr) return {};
  return SoftwareSnapshot{
      .rules = std::move(table),
      .marks = std::make_shared<const MarkTable>(std::move(marked_rules), marks)};
}

std::string NicExecutor::Testpmd() const {
  std::string out;
  FlowSpec spec;
  for (const auto& [port, state] : ports_) {
    if (state.jump == nullptr) continue;
    TranslateOptions options = Options(OffloadMode::kFull);
    options.port_id = port;
    BuildJump(options, &spec);
    out += spec.ToTestpmd();
  }
  for (const auto& [id, entry] : entries_) {
    if (entry.status.placement == Placement::kSoftware) continue;
    TranslateOptions options = Options(
        entry.status.placement == Placement::kNic ? OffloadMode::kFull : OffloadMode::kPartial);
    options.mark_id = entry.status.mark;
    out += "# " + flow::ToString(entry.rule) + " (" + PlacementName(entry.status.placement) + ")\n";
    if (Translate(entry.rule, options, &spec).empty()) out += spec.ToTestpmd();
  }
  return out;
}

}  // namespace sluice::nic
