// Test-only: a FlowApi that pretends to be a NIC. `refuse` decides per rule (return a
// reason to refuse it); the fake keeps every live handle so tests can prove nothing leaks,
// and lets a test age rules out and set counters.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "offload/rte_flow/flow_api.h"

namespace sluice::nic {

class FakeFlowApi : public FlowApi {
 public:
  /// Returns "" to accept `spec`, else the error message to refuse it with.
  std::function<std::string(const FlowSpec&)> refuse = [](const FlowSpec&) { return ""; };
  /// Report flow queues from InfoGet (the template/async API).
  bool template_api = false;

  struct Flow {
    uint16_t port = 0;
    uint64_t rule_id = 0;
    bool async = false;
    bool has_mark = false;
    void* age_context = nullptr;
    FlowCounts counts;
  };
  std::map<rte_flow*, Flow> live;                          ///< Rules in the "NIC".
  std::map<rte_flow_template_table*, std::string> tables;  ///< Live tables by shape.
  int validates = 0, creates = 0, destroys = 0, async_creates = 0, async_destroys = 0;
  int configures = 0;

  /// Makes rte_flow_get_aged_flows report the rule behind `flow`.
  void AgeOut(rte_flow* flow) { aged_[live.at(flow).port].push_back(live.at(flow).age_context); }
  void AgeOutContext(uint16_t port, void* context) { aged_[port].push_back(context); }
  /// The live handle of an IR rule, or nullptr.
  rte_flow* FlowOf(uint64_t rule_id) const {
    for (const auto& [flow, f] : live) {
      if (f.rule_id == rule_id) return flow;
    }
    return nullptr;
  }

  int Validate(const FlowSpec& spec, std::string* error) override {
    ++validates;
    std::string why = refuse(spec);
    if (why.empty()) return 0;
    *error = "rte_flow_validate: " + why;
    return -95;
  }
  rte_flow* Create(const FlowSpec& spec, std::string* error) override {
    ++creates;
    return Accept(spec, false, "rte_flow_create: ", error);
  }
  int Destroy(uint16_t port, rte_flow* flow, std::string* error) override {
    ++destroys;
    return Drop(port, flow, error);
  }
  int QueryCount(uint16_t port, rte_flow* flow, FlowCounts* counts, std::string* error) override {
    auto it = live.find(flow);
    if (it == live.end() || it->second.port != port) {
      *error = "rte_flow_query: no such flow";
      return -22;
    }
    *counts = it->second.counts;
    return 0;
  }
  int GetAgedFlows(uint16_t port, void** contexts, uint32_t n, std::string*) override {
    std::vector<void*>& aged = aged_[port];
    uint32_t k = 0;
    while (k < n && !aged.empty()) {
      contexts[k++] = aged.front();
      aged.erase(aged.begin());
    }
    return static_cast<int>(k);
  }
  int InfoGet(uint16_t, FlowPortInfo* info, std::string* error) override {
    if (!template_api) {
      *error = "rte_flow_info_get: Function not implemented (errno 38)";
      return -38;
    }
    *info = FlowPortInfo{.max_queues = 4, .max_queue_size = 32, .max_counters = 1024};
    return 0;
  }
  int Configure(uint16_t, const FlowPortConfig&, std::string*) override {
    ++configures;
    return 0;
  }
  rte_flow_template_table* CreateTemplateTable(const FlowSpec& shape, uint32_t,
                                               std::string* error) override {
    std::string why = refuse(shape);
    if (!why.empty()) {
      *error = "rte_flow_template_table_create: " + why;
      return nullptr;
    }
    auto* table = reinterpret_cast<rte_flow_template_table*>(NextHandle());
    tables[table] = shape.ShapeKey();
    return table;
  }
  int DestroyTemplateTable(uint16_t, rte_flow_template_table* table, std::string*) override {
    return tables.erase(table) == 1 ? 0 : -22;
  }
  rte_flow* AsyncCreate(uint32_t, rte_flow_template_table* table, const FlowSpec& spec,
                        void* user_data, std::string* error) override {
    ++async_creates;
    if (tables.count(table) == 0 || tables[table] != spec.ShapeKey()) {
      *error = "rte_flow_async_create: rule does not fit the table's templates";
      return nullptr;
    }
    rte_flow* flow = Accept(spec, true, "rte_flow_async_create: ", error);
    if (flow != nullptr)
      completions_[spec.port_id()].push_back({.ok = true, .user_data = user_data});
    return flow;
  }
  int AsyncDestroy(uint16_t port, uint32_t, rte_flow* flow, void* user_data,
                   std::string* error) override {
    ++async_destroys;
    int rc = Drop(port, flow, error);
    if (rc == 0) completions_[port].push_back({.ok = true, .user_data = user_data});
    return rc;
  }
  int Push(uint16_t, uint32_t, std::string*) override { return 0; }
  int Pull(uint16_t port, uint32_t, FlowOpResult* results, uint16_t n, std::string*) override {
    std::vector<FlowOpResult>& done = completions_[port];
    uint16_t k = 0;
    while (k < n && !done.empty()) {
      results[k++] = done.front();
      done.erase(done.begin());
    }
    return k;
  }

 private:
  uintptr_t NextHandle() { return next_handle_ += 64; }

  rte_flow* Accept(const FlowSpec& spec, bool async, const std::string& call, std::string* error) {
    std::string why = refuse(spec);
    if (!why.empty()) {
      *error = call + why;
      return nullptr;
    }
    auto* flow = reinterpret_cast<rte_flow*>(NextHandle());
    Flow f{.port = spec.port_id(),
           .rule_id = spec.rule_id(),
           .async = async,
           .has_mark = spec.HasAction(RTE_FLOW_ACTION_TYPE_MARK)};
    for (size_t i = 0; i < spec.num_actions(); ++i) {
      if (spec.actions()[i].type == RTE_FLOW_ACTION_TYPE_AGE) {
        f.age_context = static_cast<const rte_flow_action_age*>(spec.actions()[i].conf)->context;
      }
    }
    live[flow] = f;
    return flow;
  }
  int Drop(uint16_t port, rte_flow* flow, std::string* error) {
    auto it = live.find(flow);
    if (it == live.end() || it->second.port != port) {
      *error = "rte_flow_destroy: no such flow on port " + std::to_string(port);
      return -22;
    }
    live.erase(it);
    return 0;
  }

  uintptr_t next_handle_ = 0x1000;
  std::map<uint16_t, std::vector<void*>> aged_;
  std::map<uint16_t, std::vector<FlowOpResult>> completions_;
};

}  // namespace sluice::nic
