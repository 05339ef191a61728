#include <rte_errno.h>
#include <rte_flow.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "offload/rte_flow/flow_api.h"

namespace sluice::nic {
namespace {

// "<call>: <PMD message> (errno N)". rte_errno is the PMD's code; `rc` a fallback.
int Fail(const char* call, const rte_flow_error& flow_error, int rc, std::string* error) {
  int code = rte_errno != 0 ? rte_errno : (rc < 0 ? -rc : EIO);
  std::string message = flow_error.message != nullptr ? flow_error.message : strerror(code);
  *error = std::string(call) + ": " + message + " (errno " + std::to_string(code) + ")";
  return -code;
}

template <typename T>
T* FailNull(const char* call, const rte_flow_error& flow_error, std::string* error) {
  Fail(call, flow_error, 0, error);
  return nullptr;
}

}  // namespace

int DpdkFlowApi::Validate(const FlowSpec& spec, std::string* error) {
  rte_flow_error e{};
  rte_errno = 0;
  int rc = rte_flow_validate(spec.port_id(), &spec.attr(), spec.pattern(), spec.actions(), &e);
  return rc == 0 ? 0 : Fail("rte_flow_validate", e, rc, error);
}

rte_flow* DpdkFlowApi::Create(const FlowSpec& spec, std::string* error) {
  rte_flow_error e{};
  rte_errno = 0;
  rte_flow* flow =
      rte_flow_create(spec.port_id(), &spec.attr(), spec.pattern(), spec.actions(), &e);
  return flow != nullptr ? flow : FailNull<rte_flow>("rte_flow_create", e, error);
}

int DpdkFlowApi::Destroy(uint16_t port, rte_flow* flow, std::string* error) {
  rte_flow_error e{};
  rte_errno = 0;
  int rc = rte_flow_destroy(port, flow, &e);
  return rc == 0 ? 0 : Fail("rte_flow_destroy", e, rc, error);
}

int DpdkFlowApi::QueryCount(uint16_t port, rte_flow* flow, FlowCounts* counts, std::string* error) {
  const rte_flow_action count[] = {{.type = RTE_FLOW_ACTION_TYPE_COUNT, .conf = nullptr},
                                   {.type = RTE_FLOW_ACTION_TYPE_END, .conf = nullptr}};
  rte_flow_query_count result{};
  rte_flow_error e{};
  rte_errno = 0;
  int rc = rte_flow_query(port, flow, count, &result, &e);
  if (rc != 0) return Fail("rte_flow_query", e, rc, error);
  counts->packets = result.hits_set ? result.hits : 0;
  counts->bytes = result.bytes_set ? result.bytes : 0;
  return 0;
}

int DpdkFlowApi::GetAgedFlows(uint16_t port, void** contexts, uint32_t n, std::string* error) {
  rte_flow_error e{};
  rte_errno = 0;
  int rc = rte_flow_get_aged_flows(port, contexts, n, &e);
  return rc >= 0 ? rc : Fail("rte_flow_get_aged_flows", e, rc, error);
}

int DpdkFlowApi::InfoGet(uint16_t port, FlowPortInfo* info, std::string* error) {
  rte_flow_port_info port_info{};
  rte_flow_queue_info queue_info{};
  rte_flow_error e{};
  rte_errno = 0;
  int rc = rte_flow_info_get(port, &port_info, &queue_info, &e);
  if (rc != 0) return Fail("rte_flow_info_get", e, rc, error);
  info->max_queues = port_info.max_nb_queues;
  info->max_queue_size = queue_info.max_size;
  info->max_counters = port_info.max_nb_counters;
  info->max_aging_objects = port_info.max_nb_aging_objects;
  return 0;
}

int DpdkFlowApi::Configure(uint16_t port, const FlowPortConfig& config, std::string* error) {
  rte_flow_port_attr port_attr{};
  port_attr.nb_counters = config.nb_counters;
  port_attr.nb_aging_objects = config.nb_aging_objects;
  rte_flow_queue_attr queue_attr{.size = config.queue_size};
  const rte_flow_queue_attr* queues[] = {&queue_attr};
  rte_flow_error e{};
  rte_errno = 0;
  int rc = rte_flow_configure(port, &port_attr, 1, queues, &e);
  return rc == 0 ? 0 : Fail("rte_flow_configure", e, rc, error);
}

rte_flow_template_table* DpdkFlowApi::CreateTemplateTable(const FlowSpec& shape, uint32_t nb_flows,
                                                          std::string* error) {
  const uint16_t port = shape.port_id();
  const rte_flow_attr& attr = shape.attr();
  rte_flow_error e{};

  // Pattern template: the items with their masks, no specs.
  std::vector<rte_flow_item> items(shape.num_items() + 1);
  for (size_t i = 0; i <= shape.num_items(); ++i) {
    items[i] = rte_flow_item{.type = shape.pattern()[i].type,
                             .spec = nullptr,
                             .last = nullptr,
                             .mask = shape.pattern()[i].mask};
  }
  rte_flow_pattern_template_attr pt_attr{};
  pt_attr.relaxed_matching = 0;
  pt_attr.ingress = attr.ingress;
  pt_attr.egress = attr.egress;
  pt_attr.transfer = attr.transfer;
  rte_errno = 0;
  rte_flow_pattern_template* pt =
      rte_flow_pattern_template_create(port, &pt_attr, items.data(), &e);
  if (pt == nullptr)
    return FailNull<rte_flow_template_table>("rte_flow_pattern_template_create", e, error);

  // Actions template: the action types; every value comes with each rule (masks unset).
  std::vector<rte_flow_action> masks(shape.num_actions() + 1);
  for (size_t i = 0; i <= shape.num_actions(); ++i) {
    masks[i] = rte_flow_action{.type = shape.actions()[i].type, .conf = nullptr};
  }
  rte_flow_actions_template_attr at_attr{};
  at_attr.ingress = attr.ingress;
  at_attr.egress = attr.egress;
  at_attr.transfer = attr.transfer;
  rte_errno = 0;
  rte_flow_actions_template* at =
      rte_flow_actions_template_create(port, &at_attr, shape.actions(), masks.data(), &e);
  if (at == nullptr) {
    Fail("rte_flow_actions_template_create", e, 0, error);
    rte_flow_pattern_template_destroy(port, pt, &e);
    return nullptr;
  }

  rte_flow_template_table_attr table_attr{};
  table_attr.flow_attr = attr;
  table_attr.nb_flows = nb_flows;
  rte_errno = 0;
  rte_flow_template_table* table =
      rte_flow_template_table_create(port, &table_attr, &pt, 1, &at, 1, &e);
  if (table == nullptr) {
    Fail("rte_flow_template_table_create", e, 0, error);
    rte_flow_actions_template_destroy(port, at, &e);
    rte_flow_pattern_template_destroy(port, pt, &e);
    return nullptr;
  }
  templates_[table] = Templates{.pattern = pt, .actions = at};
  return table;
}

int DpdkFlowApi::DestroyTemplateTable(uint16_t port, rte_flow_template_table* table,
                                      std::string* error) {
  rte_flow_error e{};
  rte_errno = 0;
  int rc = rte_flow_template_table_destroy(port, table, &e);
  if (rc != 0) return Fail("rte_flow_template_table_destroy", e, rc, error);
  auto it = templates_.find(table);
  if (it != templates_.end()) {
    rte_flow_actions_template_destroy(port, it->second.actions, &e);
    rte_flow_pattern_template_destroy(port, it->second.pattern, &e);
    templates_.erase(it);
  }
  return 0;
}

rte_flow* DpdkFlowApi::AsyncCreate(uint32_t queue, rte_flow_template_table* table,
                                   const FlowSpec& spec, void* user_data, std::string* error) {
  rte_flow_op_attr op{};
  rte_flow_error e{};
  rte_errno = 0;
  rte_flow* flow = rte_flow_async_create(spec.port_id(), queue, &op, table, spec.pattern(), 0,
                                         spec.actions(), 0, user_data, &e);
  return flow != nullptr ? flow : FailNull<rte_flow>("rte_flow_async_create", e, error);
}

int DpdkFlowApi::AsyncDestroy(uint16_t port, uint32_t queue, rte_flow* flow, void* user_data,
                              std::string* error) {
  rte_flow_op_attr op{};
  rte_flow_error e{};
  rte_errno = 0;
  int rc = rte_flow_async_destroy(port, queue, &op, flow, user_data, &e);
  return rc == 0 ? 0 : Fail("rte_flow_async_destroy", e, rc, error);
}

int DpdkFlowApi::Push(uint16_t port, uint32_t queue, std::string* error) {
  rte_flow_error e{};
  rte_errno = 0;
  int rc = rte_flow_push(port, queue, &e);
  return rc == 0 ? 0 : Fail("rte_flow_push", e, rc, error);
}

int DpdkFlowApi::Pull(uint16_t port, uint32_t queue, FlowOpResult* results, uint16_t n,
                      std::string* error) {
  rte_flow_op_result raw[32];
  if (n > 32) n = 32;
  rte_flow_error e{};
  rte_errno = 0;
  int rc = rte_flow_pull(port, queue, raw, n, &e);
  if (rc < 0) return Fail("rte_flow_pull", e, rc, error);
  for (int i = 0; i < rc; ++i) {
    results[i].ok = raw[i].status == RTE_FLOW_OP_SUCCESS;
    results[i].user_data = raw[i].user_data;
  }
  return rc;
}

}  // namespace sluice::nic
