#include "common/metrics.h"

#include <map>
#include <set>
#include <stdexcept>
#include <utility>

#include <nlohmann/json.hpp>
#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "absl/status/status.h"
#include "common/strings.h"

namespace sluice::metrics {
namespace {

using nlohmann::json;
using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

constexpr MetricType kCounter = MetricType::Counter;
constexpr MetricType kGauge = MetricType::Gauge;

/// A stats field with a fixed metric: `path` in the document ("flows.active"), the metric
/// name after the sluice_<role>_ prefix, its type and help.
struct Field {
  const char* path;
  const char* name;
  MetricType type;
  const char* help;
};

const Field kAgentFields[] = {
    {"ready", "ready", kGauge, "1 once the gateway is resolved and the rules are installed."},
    {"rx_packets", "rx_packets_total", kCounter, "Packets received on all ports."},
    {"tx_packets", "tx_packets_total", kCounter, "Packets sent on all ports."},
    {"inbound_packets", "inbound_packets_total", kCounter,
     "Packets decapsulated and delivered to a VM (IPIP and GUE)."},
    {"inbound_gue_packets", "inbound_gue_packets_total", kCounter,
     "Inbound packets that arrived in GUE."},
    {"dsr_return_packets", "dsr_return_packets_total", kCounter,
     "VM replies rewritten to the VIP by the stateless DSR rule."},
    {"stateful_return_packets", "stateful_return_packets_total", kCounter,
     "VM replies rewritten to the VIP from flow state."},
    {"snat_out_packets", "snat_out_packets_total", kCounter,
     "Outbound packets sent with source VIP:leased port."},
    {"snat_in_packets", "snat_in_packets_total", kCounter,
     "Replies to leased SNAT ports translated back to the VM."},
    {"fastpath_packets", "fastpath_packets_total", kCounter,
     "Packets encapsulated straight to a Fastpath peer host."},
    {"rejects_sent", "rejects_sent_total", kCounter, "TCP RSTs / ICMP unreachables sent to VMs."},
    {"executor_rx_packets", "executor_rx_packets_total", kCounter,
     "Packets handed to the software executor."},
    {"flows.capacity", "flow_table_capacity", kGauge, "Entries of the NAT flow table."},
    {"flows.active", "flows", kGauge, "Flows in the NAT flow table."},
    {"flows.created", "flows_created_total", kCounter, "NAT flows created."},
    {"flows.expired", "flows_expired_total", kCounter, "NAT flows aged out."},
    {"flows.restored_at_start", "flows_restored_at_start", kGauge,
     "Flows found in the state file at start."},
    {"flows.kept_at_start", "flows_kept_at_start", kGauge,
     "Flows of the state file kept at start (still valid for the config)."},
    {"fastpath.enabled", "fastpath_enabled", kGauge, "1 when a Fastpath key is configured."},
    {"hotplug.ports_hotplugged", "ports_hotplugged_total", kCounter,
     "VM ports probed and started at runtime (AttachVm of a VM new to the agent)."},
    {"hotplug.ports_unplugged", "ports_unplugged_total", kCounter,
     "Runtime-attached VM ports removed again (DetachVm)."},
    {"hotplug.ports_pending_removal", "ports_pending_removal", kGauge,
     "Detached VM ports waiting for the data path to let go of them."},
    {"hotplug.dpdk_ports", "dpdk_ports", kGauge, "DPDK ports the agent has open."},
    {"hotplug.mbufs_in_use", "mbufs_in_use", kGauge,
     "Mbufs of the agent's packet pool not free (in rings, queues or being processed)."},
    {"snat_allocator.enabled", "snat_allocator_enabled", kGauge,
     "1 when the agent leases SNAT ports from sluice-snatd (snat_allocator:)."},
    {"snat_allocator.chunks_requested", "snat_chunks_requested_total", kCounter,
     "SNAT port chunks asked of the allocator (a VM below low_water)."},
    {"snat_allocator.chunks_granted", "snat_chunks_granted_total", kCounter,
     "SNAT port chunks granted and put in the data path."},
    {"snat_allocator.chunks_refused", "snat_chunks_refused_total", kCounter,
     "SNAT chunk requests refused (pool exhausted, a mux down, the agent's checks)."},
    {"snat_allocator.chunks_returned", "snat_chunks_returned_total", kCounter,
     "Idle SNAT port chunks given back to the allocator."},
    {"snat_allocator.chunks_adopted", "snat_chunks_adopted_total", kCounter,
     "Chunks the allocator listed for this host at start, taken back into use."},
    {"snat_allocator.return_errors", "snat_chunk_return_errors_total", kCounter,
     "Failed ReturnChunk calls (retried)."},
    {"snat_allocator.chunks_active", "snat_chunks_active", kGauge,
     "Dynamic SNAT chunks in the data path."},
    {"snat_allocator.chunks_draining", "snat_chunks_draining", kGauge,
     "Chunks taken out of the data path, waiting for their last flows before the return."},
    {"fastpath.redirects_received", "fastpath_redirects_received_total", kCounter,
     "Fastpath redirects received."},
    {"nic.nic_packets", "nic_offloaded_packets_total", kCounter,
     "Packets the NIC's rules counted (COUNT readings of static and per-flow rules)."},
    {"nic.nic_bytes", "nic_offloaded_bytes_total", kCounter,
     "Bytes the NIC's rules counted (COUNT readings of static and per-flow rules)."},
    {"nic.count_query_errors", "nic_count_query_errors_total", kCounter,
     "COUNT queries (rte_flow_query) that failed."},
    {"nic.closes_to_software", "nic_closes_to_software_total", kCounter,
     "TCP FIN/RST segments the NIC's close rules handed to software."},
};

const Field kMuxFields[] = {
    {"ready", "ready", kGauge, "1 once the data path serves packets."},
    {"draining", "draining", kGauge, "1 while the mux is drained (VIPs withdrawn)."},
    {"polling", "polling", kGauge, "1 while every worker advances."},
    {"rx_packets", "rx_packets_total", kCounter, "Packets received."},
    {"tx_packets", "tx_packets_total", kCounter, "Packets sent."},
    {"vip_packets", "vip_packets_total", kCounter, "Packets to a VIP."},
    {"new_flows", "new_flows_total", kCounter, "Flows scheduled to a backend (first packets)."},
    {"cached_flow_packets", "cached_flow_packets_total", kCounter,
     "Packets of flows found in the flow table."},
    {"closing_flows", "closing_flows_total", kCounter, "Flows that saw FIN or RST."},
    {"snat_return_packets", "snat_return_packets_total", kCounter,
     "Replies to a SNAT port range, sent to the lessee host."},
    {"fastpath_redirects_sent", "fastpath_redirects_sent_total", kCounter,
     "Fastpath redirects sent to hosts."},
    {"local_packets", "local_packets_total", kCounter,
     "Packets to the mux PA itself, left to the kernel."},
    {"arp_replies_sent", "arp_replies_sent_total", kCounter, "ARP replies sent."},
    {"arp_requests_sent", "arp_requests_sent_total", kCounter, "ARP requests sent."},
    {"flow_table_capacity", "flow_table_capacity", kGauge, "Flow table entries (all workers)."},
    {"flow_table_live", "flows", kGauge, "Flows in the flow tables."},
    {"flow_table_evictions", "flow_table_evictions_total", kCounter,
     "Flows evicted from a full flow table bucket."},
    {"bytes_per_flow", "bytes_per_flow", kGauge, "Memory per tracked flow."},
    {"workers", "workers", kGauge, "Data-path worker lcores."},
    {"config_generation", "config_generation", kGauge, "Generation of the VIP tables in use."},
    {"bgp.enabled", "bgp_enabled", kGauge, "1 when the mux announces its VIPs by BGP."},
    {"bgp.announced_vips", "bgp_announced_vips", kGauge, "VIPs announced to the router."},
    {"bgp.errors", "bgp_errors_total", kCounter, "BGP speaker errors."},
    {"flow_offload.offered", "flow_offload_offered_total", kCounter,
     "Established flows offered to the NIC executor."},
    {"flow_offload.queue_full", "flow_offload_queue_full_total", kCounter,
     "Flows not offered because the offload ring was full."},
    {"flow_offload.aged_out", "flow_offload_aged_out_total", kCounter,
     "Offloaded flows aged out of the NIC."},
    {"flow_offload.nic_packets", "nic_offloaded_packets_total", kCounter,
     "Packets the NIC's per-flow rules counted (COUNT readings)."},
    {"flow_offload.nic_bytes", "nic_offloaded_bytes_total", kCounter,
     "Bytes the NIC's per-flow rules counted (COUNT readings)."},
    {"flow_offload.count_query_errors", "nic_count_query_errors_total", kCounter,
     "COUNT queries (rte_flow_query) that failed."},
    {"flow_offload.closes_to_software", "nic_closes_to_software_total", kCounter,
     "TCP FIN/RST segments the NIC's close rules handed to the mux's software."},
    {"reload.reloads", "reloads_total", kCounter, "Configuration reloads applied."},
    {"reload.errors", "reload_errors_total", kCounter, "Configuration reloads refused."},
};

/// Families being built, in first-use order.
class Builder {
 public:
  explicit Builder(std::string prefix) : prefix_(std::move(prefix)) {}

  void Add(const std::string& name, MetricType type, const std::string& help, double value,
           Labels labels = {}) {
    auto [it, inserted] = index_.emplace(name, families_.size());
    if (inserted) {
      MetricFamily family;
      family.name = prefix_ + name;
      family.help = help;
      family.type = type;
      families_.push_back(std::move(family));
    }
    ClientMetric sample;
    sample.label = std::move(labels);
    switch (type) {
      case MetricType::Counter:
        sample.counter.value = value;
        break;
      case MetricType::Gauge:
        sample.gauge.value = value;
        break;
      default:
        sample.untyped.value = value;
        break;
    }
    families_[it->second].metric.push_back(std::move(sample));
  }

  std::vector<MetricFamily> Take() { return std::move(families_); }

 private:
  std::string prefix_;
  std::vector<MetricFamily> families_;
  std::map<std::string, size_t> index_;
};

bool IsNumber(const json& v) { return v.is_number() || v.is_boolean(); }
double Number(const json& v) {
  if (v.is_boolean()) return v.get<bool>() ? 1 : 0;
  return v.get<double>();
}
std::string Text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

/// The value at a dotted path, or nullptr.
const json* At(const json& doc, const std::string& path) {
  const json* v = &doc;
  for (std::string_view key : SplitString(path, '.')) {
    if (!v->is_object()) return nullptr;
    auto it = v->find(std::string(key));
    if (it == v->end()) return nullptr;
    v = &*it;
  }
  return v;
}

/// Exports the numeric fields of `fields`, and "object of named numbers" fields as one
/// labelled family; records every path it used in `*used`.
void AddFields(const json& doc, const Field* begin, const Field* end, Builder* out,
               std::set<std::string>* used) {
  for (const Field* f = begin; f != end; ++f) {
    const json* v = At(doc, f->path);
    if (v == nullptr || !IsNumber(*v)) continue;
    out->Add(f->name, f->type, f->help, Number(*v));
    used->insert(f->path);
  }
}

void AddKeyed(const json& doc, const std::string& path, const std::string& name, MetricType type,
              const std::string& help, const std::string& label, Builder* out,
              std::set<std::string>* used) {
  const json* v = At(doc, path);
  if (v == nullptr || !v->is_object()) return;
  for (const auto& [key, value] : v->items()) {
    if (IsNumber(value)) out->Add(name, type, help, Number(value), {{label, key}});
  }
  used->insert(path);
}

/// "in_use/leased" (the agent's snat_*_ports) → numbers; false if not in that form.
bool ParseFraction(const std::string& text, uint64_t* in_use, uint64_t* leased) {
  std::vector<std::string_view> parts = SplitString(text, '/');
  return parts.size() == 2 && ParseUint(parts[0], in_use) && ParseUint(parts[1], leased) &&
         *in_use <= *leased;
}

void AddAgent(const json& doc, Builder* out, std::set<std::string>* used) {
  AddFields(doc, std::begin(kAgentFields), std::end(kAgentFields), out, used);
  AddKeyed(doc, "hotplug.failures", "hotplug_failures_total", kCounter,
           "Runtime VM attaches and detaches that failed, by reason.", "reason", out, used);
  AddKeyed(doc, "drops", "drops_total", kCounter,
           "Packets dropped, by reason (the names sluicectl stats shows).", "reason", out, used);
  if (const json* rules = At(doc, "rules_installed"); rules != nullptr && IsNumber(*rules)) {
    const json* executor = At(doc, "executor");
    const std::string name = executor != nullptr ? Text(*executor) : "software";
    // The agent's rules run where its executor puts them; the software executor is its own
    // last fallback level.
    out->Add("rules", kGauge, "Flow rules installed, by executor and fallback level.",
             Number(*rules), {{"executor", name}, {"level", name}});
    used->insert("rules_installed");
  }
  for (const char* side : {"source", "destination"}) {
    std::string path = StrCat("fastpath.redirects_applied_", side);
    if (const json* v = At(doc, path); v != nullptr && IsNumber(*v)) {
      out->Add("fastpath_redirects_applied_total", kCounter,
               "Fastpath redirects applied, as the source or the destination host.", Number(*v),
               {{"side", side}});
      used->insert(path);
    }
  }
  if (const json* vms = At(doc, "vms"); vms != nullptr && vms->is_array()) {
    for (const json& vm : *vms) {
      if (!vm.is_object()) continue;
      const std::string name = vm.contains("name") ? Text(vm["name"]) : "";
      auto number = [&](const char* key, const char* metric, MetricType type, const char* help) {
        if (vm.contains(key) && IsNumber(vm[key])) {
          out->Add(metric, type, help, Number(vm[key]), {{"vm", name}});
        }
      };
      number("rx_packets", "vm_rx_packets_total", kCounter, "Packets received from the VM.");
      number("tx_packets", "vm_tx_packets_total", kCounter, "Packets sent to the VM.");
      number("snat_ports_exhausted", "snat_ports_exhausted_total", kCounter,
             "New outbound connections refused for want of a SNAT port.");
      for (auto [key, protocol] : {std::pair{"snat_tcp_ports", "tcp"}, {"snat_udp_ports", "udp"}}) {
        uint64_t in_use = 0, leased = 0;
        if (!vm.contains(key) || !vm[key].is_string() ||
            !ParseFraction(vm[key].get<std::string>(), &in_use, &leased)) {
          continue;
        }
        Labels labels = {{"vm", name}, {"protocol", protocol}};
        out->Add("snat_ports_in_use", kGauge, "Leased SNAT ports held by flows.",
                 static_cast<double>(in_use), labels);
        out->Add("snat_ports_free", kGauge, "Leased SNAT ports free for new flows.",
                 static_cast<double>(leased - in_use), labels);
      }
    }
    used->insert("vms");
  }
  // Health checks (hostagent/agent_health.h): per DIP what the muxes are told, per check its
  // probes, per mux whether the pushes get through.
  auto text = [](const json& row, const char* key) {
    return row.contains(key) ? Text(row[key]) : std::string();
  };
  if (const json* dips = At(doc, "dip_health"); dips != nullptr && dips->is_array()) {
    for (const json& d : *dips) {
      if (!d.is_object()) continue;
      const std::string state = text(d, "state");
      if (state != "healthy" && state != "unhealthy" && state != "unchecked") continue;
      out->Add("dip_healthy", kGauge,
               "1 if the DIP is reported healthy to the muxes (or has no check), 0 if unhealthy.",
               state == "unhealthy" ? 0 : 1, {{"dip", text(d, "dip")}});
    }
    used->insert("dip_health");
  }
  if (const json* checks = At(doc, "health_checks"); checks != nullptr && checks->is_array()) {
    for (const json& c : *checks) {
      if (!c.is_object()) continue;
      Labels labels = {{"dip", text(c, "dip")}, {"check", text(c, "check")}};
      if (c.contains("probes") && IsNumber(c["probes"])) {
        out->Add("health_probes_total", kCounter, "Health probes run, by check.",
                 Number(c["probes"]), labels);
      }
      const std::string state = text(c, "state");
      if (state == "healthy" || state == "unhealthy") {
        out->Add("health_check_up", kGauge, "1 if the check passes (rise reached), 0 if it fails.",
                 state == "healthy" ? 1 : 0, labels);
      }
    }
    used->insert("health_checks");
  }
  if (const json* reports = At(doc, "health_reports"); reports != nullptr && reports->is_array()) {
    for (const json& r : *reports) {
      if (!r.is_object()) continue;
      const std::string mux = text(r, "mux");
      if (r.contains("in_sync") && r["in_sync"].is_boolean()) {
        out->Add("health_report_in_sync", kGauge,
                 "1 if the mux holds this agent's current health verdicts.",
                 r["in_sync"].get<bool>() ? 1 : 0, {{"mux", mux}});
      }
      for (auto [key, result] : {std::pair{"pushes_ok", "ok"}, {"pushes_failed", "failed"}}) {
        if (r.contains(key) && IsNumber(r[key])) {
          out->Add("health_report_pushes_total", kCounter,
                   "SetBackendHealth calls to each mux, by result.", Number(r[key]),
                   {{"mux", mux}, {"result", result}});
        }
      }
    }
    used->insert("health_reports");
  }
}

void AddMux(const json& doc, Builder* out, std::set<std::string>* used) {
  AddFields(doc, std::begin(kMuxFields), std::end(kMuxFields), out, used);
  AddKeyed(doc, "drops", "drops_total", kCounter,
           "Packets dropped, by reason (the names sluicectl stats shows).", "reason", out, used);
  if (const json* session = At(doc, "bgp.session"); session != nullptr) {
    out->Add("bgp_session", kGauge,
             "BGP session with the router: 1 for the current state (e.g. established).", 1,
             {{"state", Text(*session)}});
    used->insert("bgp.session");
  }
  // Flows the mux offered to the NIC executor, by the level that took them: the NIC (full
  // offload), partial (MARK + queue) or software (the mux's own flow cache).
  for (const char* level : {"nic", "partial", "software"}) {
    std::string path = StrCat("flow_offload.", level);
    if (const json* v = At(doc, path); v != nullptr && IsNumber(*v)) {
      out->Add("offloaded_flows_total", kCounter,
               "Established flows placed by the offload chain, by executor level.", Number(*v),
               {{"level", level}});
      used->insert(path);
    }
  }
  if (const json* workers = At(doc, "worker_rx_packets"); workers != nullptr && workers->is_array()) {
    for (size_t w = 0; w < workers->size(); ++w) {
      if (!IsNumber((*workers)[w])) continue;
      out->Add("worker_rx_packets_total", kCounter, "Packets received, by worker.",
               Number((*workers)[w]), {{"worker", std::to_string(w)}});
    }
    used->insert("worker_rx_packets");
  }
  for (const char* state : {"healthy", "unhealthy"}) {
    const std::string path = StrCat("backend_health.", state);
    if (const json* v = At(doc, path); v != nullptr && IsNumber(*v)) {
      out->Add("backends", kGauge, "Backends (VIP, DIP pairs) by the health their agents report.",
               Number(*v), {{"state", state}});
      used->insert(path);
    }
  }
  if (const json* vips = At(doc, "vips"); vips != nullptr && vips->is_array()) {
    for (const json& vip : *vips) {
      if (!vip.is_object() || !vip.contains("packets") || !IsNumber(vip["packets"])) continue;
      out->Add("vip_flow_packets_total", kCounter, "Packets to each VIP:port/protocol.",
               Number(vip["packets"]),
               {{"vip", vip.contains("vip") ? Text(vip["vip"]) : ""},
                {"port", vip.contains("port") ? Text(vip["port"]) : ""},
                {"protocol", vip.contains("protocol") ? Text(vip["protocol"]) : ""}});
    }
    used->insert("vips");
  }
  if (const json* backends = At(doc, "backends"); backends != nullptr && backends->is_array()) {
    for (const json& b : *backends) {
      if (!b.is_object()) continue;
      Labels labels = {{"vip", b.contains("vip") ? Text(b["vip"]) : ""},
                       {"dip", b.contains("dip") ? Text(b["dip"]) : ""},
                       {"host", b.contains("host") ? Text(b["host"]) : ""}};
      if (b.contains("packets") && IsNumber(b["packets"])) {
        out->Add("backend_packets_total", kCounter, "Packets sent to each backend.",
                 Number(b["packets"]), labels);
      }
      if (b.contains("flows") && IsNumber(b["flows"])) {
        out->Add("backend_flows_total", kCounter, "Flows scheduled to each backend.",
                 Number(b["flows"]), labels);
      }
      if (b.contains("healthy") && b["healthy"].is_boolean()) {
        out->Add("backend_healthy", kGauge,
                 "1 if the backend's agent reports it healthy, 0 if it is out of Maglev for it.",
                 b["healthy"].get<bool>() ? 1 : 0, labels);
      }
      if (b.contains("weight") && IsNumber(b["weight"])) {
        out->Add("backend_weight", kGauge, "Configured weight of each backend (0 = out of Maglev).",
                 Number(b["weight"]), labels);
      }
    }
    used->insert("backends");
  }
}

/// Numeric fields no table knows yet: untyped, named after their path.
void AddUnknown(const json& v, const std::string& path, const std::set<std::string>& used,
                Builder* out) {
  if (used.count(path) > 0) return;
  if (v.is_object()) {
    for (const auto& [key, child] : v.items()) {
      AddUnknown(child, path.empty() ? key : path + "." + key, used, out);
    }
    return;
  }
  if (!IsNumber(v)) return;
  std::string name;
  for (char c : path) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    name += ok ? c : '_';
  }
  out->Add(name, MetricType::Untyped, StrCat("Stats field ", path, "."), Number(v));
}

const Field kSnatdFields[] = {
    {"ready", "ready", kGauge, "1 once the allocator serves requests."},
    {"table_generation", "table_generation", kGauge, "Changes made to the lease table."},
    {"chunks_leased", "chunks_leased", kGauge, "SNAT port chunks leased to hosts."},
    {"chunks_requested", "chunks_requested_total", kCounter, "RequestChunk calls."},
    {"chunks_granted", "chunks_granted_total", kCounter,
     "Chunks granted (after every mux learnt where their replies go)."},
    {"chunks_refused", "chunks_refused_total", kCounter,
     "Requests refused (bad request, a mux unreachable)."},
    {"chunks_exhausted", "chunks_exhausted_total", kCounter,
     "Requests refused because the pool had no free chunk."},
    {"chunks_returned", "chunks_returned_total", kCounter, "Chunks given back by hosts."},
    {"mux_sync_errors", "mux_sync_errors_total", kCounter,
     "Failed attempts to bring a mux's SNAT ranges up to date."},
};

void AddSnatd(const json& doc, Builder* out, std::set<std::string>* used) {
  AddFields(doc, std::begin(kSnatdFields), std::end(kSnatdFields), out, used);
  if (const json* pools = At(doc, "pools"); pools != nullptr && pools->is_array()) {
    for (const json& p : *pools) {
      if (!p.is_object()) continue;
      const Labels labels = {{"pool", p.contains("pool") ? Text(p["pool"]) : ""}};
      if (p.contains("chunks") && IsNumber(p["chunks"])) {
        out->Add("pool_chunks", kGauge, "Chunks each pool is carved into.",
                 Number(p["chunks"]), labels);
      }
      if (p.contains("chunks_leased") && IsNumber(p["chunks_leased"])) {
        out->Add("pool_chunks_leased", kGauge, "Chunks of each pool leased to hosts.",
                 Number(p["chunks_leased"]), labels);
      }
    }
    used->insert("pools");
  }
  if (const json* muxes = At(doc, "muxes"); muxes != nullptr && muxes->is_array()) {
    for (const json& m : *muxes) {
      if (!m.is_object() || !m.contains("in_sync") || !m["in_sync"].is_boolean()) continue;
      out->Add("mux_in_sync", kGauge, "1 if the mux holds the current lease table.",
               m["in_sync"].get<bool>() ? 1 : 0,
               {{"mux", m.contains("address") ? Text(m["address"]) : ""}});
    }
    used->insert("muxes");
  }
  used->insert("chunks");  // one line per lease: sluicectl get leases, not a metric
}

}  // namespace

absl::StatusOr<std::vector<MetricFamily>> FamiliesFromStats(std::string_view text) {
  json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return absl::InvalidArgumentError("stats document is not a JSON object");
  }
  const json* role = At(doc, "role");
  if (role == nullptr || !role->is_string() ||
      (role->get<std::string>() != "agent" && role->get<std::string>() != "mux" &&
       role->get<std::string>() != "snatd")) {
    return absl::InvalidArgumentError(
        "stats document has no role \"agent\", \"mux\" or \"snatd\"");
  }
  const std::string role_name = role->get<std::string>();
  Builder out("sluice_" + role_name + "_");
  std::set<std::string> used;
  if (const json* name = At(doc, "name"); name != nullptr) {
    out.Add("info", kGauge, "Always 1; the daemon's configured name as a label.", 1,
            {{"name", Text(*name)}});
    used.insert("name");
  }
  if (role_name == "agent") {
    AddAgent(doc, &out, &used);
  } else if (role_name == "mux") {
    AddMux(doc, &out, &used);
  } else {
    AddSnatd(doc, &out, &used);
  }
  AddUnknown(doc, "", used, &out);
  return out.Take();
}

std::string TextFormat(const std::vector<MetricFamily>& families) {
  return prometheus::TextSerializer().Serialize(families);
}

/// Converts the stats document at every scrape.
class MetricsServer::StatsCollectable : public prometheus::Collectable {
 public:
  explicit StatsCollectable(StatsSource stats) : stats_(std::move(stats)) {
    errors_ = &prometheus::BuildCounter()
                   .Name("sluice_metrics_stats_errors_total")
                   .Help("Scrapes whose stats document could not be converted.")
                   .Register(registry_)
                   .Add({});
  }

  std::vector<MetricFamily> Collect() const override {
    absl::StatusOr<std::vector<MetricFamily>> families = FamiliesFromStats(stats_());
    if (!families.ok()) errors_->Increment();
    std::vector<MetricFamily> own = registry_.Collect();
    if (!families.ok()) return own;
    families->insert(families->end(), own.begin(), own.end());
    return *std::move(families);
  }

 private:
  StatsSource stats_;
  prometheus::Registry registry_;
  prometheus::Counter* errors_;
};

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& listen,
                                                                     StatsSource stats) {
  if (listen.empty() || listen.find(':') == std::string::npos) {
    return absl::InvalidArgumentError(
        StrCat("metrics listen address \"", listen, "\" is not ADDR:PORT (e.g. 127.0.0.1:9464)"));
  }
  std::unique_ptr<MetricsServer> server(new MetricsServer);
  server->collectable_ = std::make_shared<StatsCollectable>(std::move(stats));
  try {
    server->exposer_ = std::make_unique<prometheus::Exposer>(listen, 1);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        StrCat("cannot serve metrics on ", listen, ": ", e.what()));
  }
  server->exposer_->RegisterCollectable(server->collectable_);
  std::vector<int> ports = server->exposer_->GetListeningPorts();
  if (ports.empty()) return absl::UnavailableError(StrCat("metrics on ", listen, ": no port bound"));
  server->port_ = ports.front();
  return server;
}

MetricsServer::~MetricsServer() {
  exposer_.reset();  // stop serving before the collectable goes away
}

absl::StatusOr<std::unique_ptr<MetricsServer>> ServeDaemonMetrics(const std::string& listen,
                                                                   StatsSource stats) {
  if (listen.empty()) return std::unique_ptr<MetricsServer>();
  return MetricsServer::Start(listen, std::move(stats));
}

}  // namespace sluice::metrics
