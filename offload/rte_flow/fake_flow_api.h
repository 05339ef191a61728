// Test-only: a FlowApi that pretends to be a NIC. `refuse` decides per rule (return a
// reason to refuse it); the fake keeps every live handle so tests can prove nothing leaks,
// lets a test age rules out, and matches frames a test injects against its live rules'
// patterns (Inject), counting them on the rule that wins like a NIC's COUNT would.
#pragma once

#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#include <cstdint>
#include <cstring>
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

  /// Returns "" to answer a COUNT query on the rule, else the error to fail it with.
  std::function<std::string(uint64_t rule_id)> refuse_query = [](uint64_t) { return ""; };

  /// One pattern item as the fake keeps it: its header's spec and mask bytes.
  struct Item {
    rte_flow_item_type type = RTE_FLOW_ITEM_TYPE_END;
    std::vector<uint8_t> spec, mask;  ///< Empty: matches any header of the type.
    uint16_t port = 0;                ///< REPRESENTED_PORT: the ethdev.
  };
  struct Flow {
    uint16_t port = 0;
    uint64_t rule_id = 0;
    bool async = false;
    bool has_mark = false;
    void* age_context = nullptr;
    FlowCounts counts;
    bool counted = false;
    bool jump = false;        ///< A root JUMP rule (Inject looks past it).
    bool transfer = false;
    uint32_t priority = 0;    ///< rte_flow's: lower wins.
    bool to_software = false; ///< Ends in PORT_REPRESENTOR or QUEUE without MARK.
    std::vector<Item> pattern;
  };

  /// What the NIC did with an injected frame.
  struct Hit {
    rte_flow* flow = nullptr;  ///< The rule that matched; nullptr: a miss (to software).
    uint64_t rule_id = 0;
    bool to_software = true;   ///< Reached the application: a miss, a to-software or marked rule.
  };
  /// A frame arriving at ethdev `in_port`: the highest-priority live rule whose pattern
  /// matches it (transfer rules by their represented port, ingress rules by their port;
  /// among equal priorities the older), which counts it (one packet, `len` bytes) if it has
  /// a COUNT.
  Hit Inject(uint16_t in_port, const uint8_t* frame, size_t len) {
    rte_flow* best = nullptr;
    for (auto& [flow, f] : live) {
      if (f.jump || !Matches(f, in_port, frame, len)) continue;
      if (best == nullptr || f.priority < live[best].priority) best = flow;
    }
    if (best == nullptr) return Hit{};
    Flow& f = live[best];
    if (f.counted) {
      ++f.counts.packets;
      f.counts.bytes += len;
    }
    return Hit{.flow = best, .rule_id = f.rule_id, .to_software = f.to_software || f.has_mark};
  }
  Hit Inject(uint16_t in_port, const std::vector<uint8_t>& frame) {
    return Inject(in_port, frame.data(), frame.size());
  }
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
    std::string why = refuse_query(it->second.rule_id);
    if (!why.empty()) {
      *error = "rte_flow_query: " + why;
      return -95;
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
    f.transfer = spec.attr().transfer != 0;
    f.priority = spec.attr().priority;
    for (size_t i = 0; i < spec.num_actions(); ++i) {
      const rte_flow_action& a = spec.actions()[i];
      if (a.type == RTE_FLOW_ACTION_TYPE_AGE) {
        f.age_context = static_cast<const rte_flow_action_age*>(a.conf)->context;
      }
      f.counted |= a.type == RTE_FLOW_ACTION_TYPE_COUNT;
      f.jump |= a.type == RTE_FLOW_ACTION_TYPE_JUMP;
      f.to_software |= a.type == RTE_FLOW_ACTION_TYPE_PORT_REPRESENTOR ||
                       a.type == RTE_FLOW_ACTION_TYPE_QUEUE;
    }
    for (size_t i = 0; i < spec.num_items(); ++i) {
      const rte_flow_item& item = spec.pattern()[i];
      Item kept{.type = item.type};
      if (item.type == RTE_FLOW_ITEM_TYPE_REPRESENTED_PORT) {
        kept.port = static_cast<const rte_flow_item_ethdev*>(item.spec)->port_id;
      } else if (item.spec != nullptr && item.mask != nullptr) {
        const size_t n = HeaderSize(item.type);
        const auto* sp = static_cast<const uint8_t*>(item.spec);
        const auto* mk = static_cast<const uint8_t*>(item.mask);
        kept.spec.assign(sp, sp + n);
        kept.mask.assign(mk, mk + n);
      }
      f.pattern.push_back(std::move(kept));
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

  // Bytes of the header at the start of each item struct (its `hdr`).
  static size_t HeaderSize(rte_flow_item_type type) {
    switch (type) {
      case RTE_FLOW_ITEM_TYPE_ETH:
        return sizeof(rte_ether_hdr);
      case RTE_FLOW_ITEM_TYPE_IPV4:
        return sizeof(rte_ipv4_hdr);
      case RTE_FLOW_ITEM_TYPE_TCP:
        return sizeof(rte_tcp_hdr);
      case RTE_FLOW_ITEM_TYPE_UDP:
        return sizeof(rte_udp_hdr);
      default:
        return 0;
    }
  }

  // Walks the pattern down the frame's headers, comparing each under its mask.
  static bool Matches(const Flow& f, uint16_t in_port, const uint8_t* frame, size_t len) {
    if (!f.transfer && f.port != in_port) return false;
    size_t offset = 0;
    uint8_t last_proto = 0;  // of the IPv4 header last walked
    for (const Item& item : f.pattern) {
      if (item.type == RTE_FLOW_ITEM_TYPE_REPRESENTED_PORT) {
        if (item.port != in_port) return false;
        continue;
      }
      const size_t n = HeaderSize(item.type);
      if (n == 0 || offset + n > len) return false;
      const uint8_t* h = frame + offset;
      for (size_t i = 0; i < item.mask.size(); ++i) {
        if ((h[i] & item.mask[i]) != (item.spec[i] & item.mask[i])) return false;
      }
      // Item types must follow the frame's: an IPv4 item over a non-IPv4 header, a TCP
      // item over UDP, do not match.
      if (item.type == RTE_FLOW_ITEM_TYPE_IPV4) {
        if ((h[0] >> 4) != 4) return false;
        last_proto = h[9];
        offset += (h[0] & 0xf) * 4u;
      } else if (item.type == RTE_FLOW_ITEM_TYPE_TCP) {
        if (last_proto != 6) return false;
        offset += (h[12] >> 4) * 4u;
      } else if (item.type == RTE_FLOW_ITEM_TYPE_UDP) {
        if (last_proto != 17) return false;
        offset += n;
      } else {
        offset += n;
      }
    }
    return true;
  }

  uintptr_t next_handle_ = 0x1000;
  std::map<uint16_t, std::vector<void*>> aged_;
  std::map<uint16_t, std::vector<FlowOpResult>> completions_;
};

}  // namespace sluice::nic
