// The seam between the NIC executor and DPDK's rte_flow: every call the executor makes to
// a port goes through FlowApi, so tests can put a fake NIC (accepting some rules, refusing
// others) where DpdkFlowApi would call the PMD. Errors come back as a message naming the
// call, the PMD's reason and errno, e.g. "rte_flow_create: Function not implemented
// (errno 38)".
#pragma once

#include <rte_flow.h>

#include <cstdint>
#include <string>
#include <unordered_map>

#include "offload/rte_flow/translate.h"

namespace sluice::nic {

/// What the template (asynchronous) API of a port offers; zero queues means "not there".
struct FlowPortInfo {
  uint32_t max_queues = 0;
  uint32_t max_queue_size = 0;
  uint32_t max_counters = 0;
  uint32_t max_aging_objects = 0;
};

/// How the executor configures a port for the template API (one flow queue).
struct FlowPortConfig {
  uint32_t queue_size = 64;
  uint32_t nb_counters = 0;
  uint32_t nb_aging_objects = 0;
};

/// Packets and bytes a COUNT action has seen.
struct FlowCounts {
  uint64_t packets = 0;
  uint64_t bytes = 0;
};

/// One completed asynchronous operation.
struct FlowOpResult {
  bool ok = false;
  void* user_data = nullptr;
};

/// The rte_flow calls the executor uses. Methods returning int give 0 (or a count) on
/// success and a negative errno on failure; pointer-returning ones give nullptr on failure.
/// On failure `*error` is set.
class FlowApi {
 public:
  virtual ~FlowApi() = default;

  // Synchronous API.
  virtual int Validate(const FlowSpec& spec, std::string* error) = 0;
  virtual rte_flow* Create(const FlowSpec& spec, std::string* error) = 0;
  virtual int Destroy(uint16_t port, rte_flow* flow, std::string* error) = 0;
  /// Reads (without resetting) the counter of the rule's COUNT action.
  virtual int QueryCount(uint16_t port, rte_flow* flow, FlowCounts* counts, std::string* error) = 0;
  /// Fills up to `n` contexts of aged rules; returns how many (0 when none).
  virtual int GetAgedFlows(uint16_t port, void** contexts, uint32_t n, std::string* error) = 0;

  // Template / asynchronous API.
  virtual int InfoGet(uint16_t port, FlowPortInfo* info, std::string* error) = 0;
  virtual int Configure(uint16_t port, const FlowPortConfig& config, std::string* error) = 0;
  /// Pattern template from `shape`'s items and masks, actions template from its action types
  /// (every value supplied per rule), and a table of `nb_flows` rules joining the two.
  virtual rte_flow_template_table* CreateTemplateTable(const FlowSpec& shape, uint32_t nb_flows,
                                                       std::string* error) = 0;
  virtual int DestroyTemplateTable(uint16_t port, rte_flow_template_table* table,
                                   std::string* error) = 0;
  virtual rte_flow* AsyncCreate(uint32_t queue, rte_flow_template_table* table,
                                const FlowSpec& spec, void* user_data, std::string* error) = 0;
  virtual int AsyncDestroy(uint16_t port, uint32_t queue, rte_flow* flow, void* user_data,
                           std::string* error) = 0;
  virtual int Push(uint16_t port, uint32_t queue, std::string* error) = 0;
  /// Collects up to `n` completed operations; returns how many.
  virtual int Pull(uint16_t port, uint32_t queue, FlowOpResult* results, uint16_t n,
                   std::string* error) = 0;
};

/// FlowApi on real DPDK ports (the EAL must be up and the ports configured).
class DpdkFlowApi : public FlowApi {
 public:
  int Validate(const FlowSpec& spec, std::string* error) override;
  rte_flow* Create(const FlowSpec& spec, std::string* error) override;
  int Destroy(uint16_t port, rte_flow* flow, std::string* error) override;
  int QueryCount(uint16_t port, rte_flow* flow, FlowCounts* counts, std::string* error) override;
  int GetAgedFlows(uint16_t port, void** contexts, uint32_t n, std::string* error) override;
  int InfoGet(uint16_t port, FlowPortInfo* info, std::string* error) override;
  int Configure(uint16_t port, const FlowPortConfig& config, std::string* error) override;
  rte_flow_template_table* CreateTemplateTable(const FlowSpec& shape, uint32_t nb_flows,
                                               std::string* error) override;
  int DestroyTemplateTable(uint16_t port, rte_flow_template_table* table,
                           std::string* error) override;
  rte_flow* AsyncCreate(uint32_t queue, rte_flow_template_table* table, const FlowSpec& spec,
                        void* user_data, std::string* error) override;
  int AsyncDestroy(uint16_t port, uint32_t queue, rte_flow* flow, void* user_data,
                   std::string* error) override;
  int Push(uint16_t port, uint32_t queue, std::string* error) override;
  int Pull(uint16_t port, uint32_t queue, FlowOpResult* results, uint16_t n,
           std::string* error) override;

 private:
  struct Templates {
    rte_flow_pattern_template* pattern;
    rte_flow_actions_template* actions;
  };
  std::unordered_map<rte_flow_template_table*, Templates> templates_;  // destroyed with tables
};

}  // namespace sluice::nic
