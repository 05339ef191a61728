#include "hostagent/vswitch_fastpath.h"

#include <algorithm>

#include "common/net_text.h"
#include "common/strings.h"
#include "hostagent/vswitch_agent.h"

namespace sluice::agent {
namespace {

// "ct_state=+rpl+trk" and "ct_state=+trk+rpl" are the same match.
std::string SortedCtState(std::string_view field) {
  const std::string_view flags = field.substr(field.find('=') + 1);
  std::vector<std::string> parts;
  for (size_t i = 0; i < flags.size();) {
    size_t next = flags.find_first_of("+-", i + 1);
    if (next == std::string_view::npos) next = flags.size();
    parts.emplace_back(flags.substr(i, next - i));
    i = next;
  }
  std::sort(parts.begin(), parts.end());
  std::string out = "ct_state=";
  for (const std::string& p : parts) out += p;
  return out;
}

std::vector<std::string> SortedMatch(std::string_view match) {
  std::vector<std::string> fields;
  for (std::string_view f : SplitString(match, ',')) {
    if (f.empty()) continue;
    fields.push_back(f.starts_with("ct_state=") ? SortedCtState(f) : std::string(f));
  }
  std::sort(fields.begin(), fields.end());
  return fields;
}

// "name=value" fields of a match, and its bare words (tcp, udp).
struct MatchFields {
  std::map<std::string, std::string, std::less<>> values;
  std::vector<std::string> words;
};
MatchFields ReadMatch(std::string_view match) {
  MatchFields m;
  for (std::string_view f : SplitString(match, ',')) {
    const size_t eq = f.find('=');
    if (eq == std::string_view::npos) {
      m.words.emplace_back(f);
    } else {
      m.values[std::string(f.substr(0, eq))] = std::string(f.substr(eq + 1));
    }
  }
  return m;
}

bool Ip(const std::map<std::string, std::string, std::less<>>& values, std::string_view name,
        uint32_t* out) {
  auto it = values.find(name);
  if (it == values.end()) return false;
  absl::StatusOr<uint32_t> ip = ParseIpv4(it->second);
  if (!ip.ok()) return false;
  *out = *ip;
  return true;
}

bool Port(const std::map<std::string, std::string, std::less<>>& values, std::string_view name,
          uint16_t* out) {
  auto it = values.find(name);
  uint64_t n = 0;
  if (it == values.end() || !ParseUint(it->second, &n) || n > 65535) return false;
  *out = static_cast<uint16_t>(n);
  return true;
}

// The value of a "name=<number>" field of a dump line's statistics part.
bool Number(std::string_view field, std::string_view name, uint64_t* out) {
  if (!field.starts_with(name) || field.size() <= name.size() || field[name.size()] != '=') {
    return false;
  }
  std::string_view v = field.substr(name.size() + 1);
  if (v.starts_with("0x")) return ParseUint(v.substr(2), out, 16);
  return ParseUint(v, out);
}

}  // namespace

std::string DumpedFlow::Identity() const {
  std::string id = StrCat("table=", table, ",priority=", priority);
  for (const std::string& f : SortedMatch(match)) id += "," + f;
  return id;
}

bool ParseDumpedFlow(std::string_view line, DumpedFlow* flow) {
  const size_t actions = line.find(" actions=");
  if (actions == std::string_view::npos) return false;
  *flow = DumpedFlow{};
  flow->actions = std::string(line.substr(actions + 9));
  bool have_cookie = false;
  // " cookie=0x1, duration=1.2s, table=4, n_packets=3, ..., priority=200,tcp,nw_src=..."
  std::vector<std::string_view> fields = SplitString(line.substr(0, actions), ' ');
  for (std::string_view f : fields) {
    if (f.empty()) continue;
    const bool last = f.back() != ',';
    if (!last) f.remove_suffix(1);
    uint64_t n = 0;
    if (Number(f, "cookie", &n)) {
      flow->cookie = n;
      have_cookie = true;
    } else if (Number(f, "table", &n)) {
      flow->table = static_cast<uint8_t>(n);
    } else if (Number(f, "n_packets", &n)) {
      flow->packets = n;
    } else if (Number(f, "idle_timeout", &n)) {
      flow->idle_timeout = static_cast<uint16_t>(n);
    } else if (last) {
      // The match, led by the priority unless it is OpenFlow's default.
      flow->priority = 32768;
      if (f.starts_with("priority=")) {
        const size_t comma = f.find(',');
        if (!ParseUint(f.substr(9, comma == std::string_view::npos ? f.npos : comma - 9), &n)) {
          return false;
        }
        flow->priority = static_cast<uint16_t>(n);
        f = comma == std::string_view::npos ? std::string_view() : f.substr(comma + 1);
      }
      flow->match = std::string(f);
    }
  }
  return have_cookie;
}

DumpedFlow FromOvsFlow(const vswitch::OvsFlow& flow) {
  return DumpedFlow{.cookie = flow.cookie,
                    .table = flow.table,
                    .priority = flow.priority,
                    .idle_timeout = flow.idle_timeout,
                    .match = flow.match,
                    .actions = flow.actions};
}

std::optional<FastpathStale> CheckFastpathFlow(const DumpedFlow& flow, const AgentConfig& config,
                                               const std::vector<uint32_t>& vm_ofports,
                                               FastpathConnection* connection) {
  if (!IsFastpathCookie(flow.cookie)) return FastpathStale::kUnreadable;
  const MatchFields m = ReadMatch(flow.match);
  packet::FastpathRedirect r;
  for (const std::string& w : m.words) {
    if (w == "tcp") r.proto = flow::kProtoTcp;
    if (w == "udp") r.proto = flow::kProtoUdp;
  }
  if (r.proto == 0) return FastpathStale::kUnreadable;
  // The actions: [set_field:VIP->ip_src,set_field:port->tcp_src,]dec_ttl,
  // set_field:local PA->tun_src,set_field:peer PA->tun_dst,output:<GRE port>.
  std::map<std::string, std::string, std::less<>> set;
  for (std::string_view a : SplitString(flow.actions, ',')) {
    if (!a.starts_with("set_field:")) continue;
    const size_t arrow = a.find("->");
    if (arrow == std::string_view::npos) return FastpathStale::kUnreadable;
    set[std::string(a.substr(arrow + 2))] = std::string(a.substr(10, arrow - 10));
  }
  uint32_t local_pa = 0, peer_pa = 0;
  if (!Ip(set, "tun_src", &local_pa) || !Ip(set, "tun_dst", &peer_pa)) {
    return FastpathStale::kUnreadable;
  }
  const bool source = flow.table == kSnatOutTable;
  uint64_t in_port = 0;
  size_t vm = config.vms.size();
  if (!source) {
    auto it = m.values.find("in_port");
    if (it == m.values.end() || !ParseUint(it->second, &in_port)) return FastpathStale::kUnreadable;
    for (size_t v = 0; v < config.vms.size() && v < vm_ofports.size(); ++v) {
      if (vm_ofports[v] == in_port) vm = v;
    }
  }
  if (source) {  // table 4: the SNAT'd 5-tuple of our VM's connection
    if (!Ip(m.values, "nw_src", &r.flow_src) || !Port(m.values, "tp_src", &r.flow_src_port) ||
        !Ip(m.values, "nw_dst", &r.flow_dst) || !Port(m.values, "tp_dst", &r.flow_dst_port)) {
      return FastpathStale::kUnreadable;
    }
    r.src_host_pa = local_pa;
    r.dst_pa = peer_pa;
  } else if (flow.table == 0) {  // the DIP's replies, rewritten to the VIP here
    const std::string l4 = r.proto == flow::kProtoTcp ? "tcp_src" : "udp_src";
    if (!Ip(m.values, "nw_src", &r.dip) || !Ip(m.values, "nw_dst", &r.flow_src) ||
        !Port(m.values, "tp_dst", &r.flow_src_port) || !Ip(set, "ip_src", &r.flow_dst) ||
        !Port(set, l4, &r.flow_dst_port)) {
      return FastpathStale::kUnreadable;
    }
    r.dst_pa = local_pa;
    r.src_host_pa = peer_pa;
  } else if (flow.table == 1) {  // the DIP's replies after conntrack's un-NAT
    if (!Ip(m.values, "nw_src", &r.flow_dst) || !Port(m.values, "tp_src", &r.flow_dst_port) ||
        !Ip(m.values, "nw_dst", &r.flow_src) || !Port(m.values, "tp_dst", &r.flow_src_port)) {
      return FastpathStale::kUnreadable;
    }
    r.dst_pa = local_pa;
    r.src_host_pa = peer_pa;
    if (vm == config.vms.size()) return FastpathStale::kEndpointGone;
    r.dip = config.vms[vm].dip;
  } else {
    return FastpathStale::kUnreadable;
  }
  // The local end of the tunnel must still be ours.
  bool local = source ? local_pa == config.address.addr : false;
  for (const VmConfig& v : config.vms) local |= !source && v.pa == local_pa;
  if (!local) return FastpathStale::kLocalPaGone;
  if (!config.address.Contains(peer_pa)) return FastpathStale::kChanged;

  std::vector<vswitch::OvsFlow> flows;
  const RedirectOutcome outcome = FastpathFlows(config, vm_ofports, r, flow.cookie, &flows);
  if (source && outcome != RedirectOutcome::kAppliedSource) return FastpathStale::kSnatLeaseGone;
  if (!source && outcome != RedirectOutcome::kAppliedDestination) {
    return FastpathStale::kEndpointGone;
  }
  if (flows.size() != 1) return FastpathStale::kChanged;
  const DumpedFlow want = FromOvsFlow(flows[0]);
  if (want.Identity() != flow.Identity() || want.actions != flow.actions) {
    return FastpathStale::kChanged;
  }
  *connection =
      FastpathConnection{.source = source, .redirect = r, .peer_pa = peer_pa, .flow = flow};
  return std::nullopt;
}

FastpathAdoption AdoptFastpathFlows(std::string_view dump, const AgentConfig& config,
                                    const std::vector<uint32_t>& vm_ofports) {
  FastpathAdoption out;
  uint16_t newest = 0;
  bool any = false;
  for (std::string_view line : SplitString(dump, '\n')) {
    DumpedFlow flow;
    if (!ParseDumpedFlow(line, &flow) || !IsFastpathCookie(flow.cookie)) continue;
    const auto sequence = static_cast<uint16_t>(flow.cookie & 0xffff);
    if (!any || static_cast<int16_t>(sequence - newest) > 0) newest = sequence;
    any = true;
    FastpathConnection connection;
    if (std::optional<FastpathStale> why =
            CheckFastpathFlow(flow, config, vm_ofports, &connection)) {
      ++out.stale_by_reason[static_cast<size_t>(*why)];
      out.stale.push_back(std::move(flow));
    } else {
      out.adopted.push_back(std::move(connection));
    }
  }
  out.next_sequence = any ? static_cast<uint16_t>(newest + 1) : 0;
  return out;
}

absl::StatusOr<StartReconcile> ReconcileAtStart(vswitch::OpenFlowChannel* channel,
                                                vswitch::OvsExecutor* executor,
                                                const AgentConfig& config,
                                                const std::vector<uint32_t>& vm_ofports) {
  absl::StatusOr<std::string> dump = channel->DumpFlows();
  if (!dump.ok()) return dump.status();
  StartReconcile out;
  out.fastpath = AdoptFastpathFlows(*dump, config, vm_ofports);
  if (!out.fastpath.stale.empty()) {
    if (absl::Status s = channel->Bundle(DeleteStrictLines(out.fastpath.stale)); !s.ok()) return s;
  }
  absl::StatusOr<vswitch::ReconcileReport> report = executor->Reconcile();
  if (!report.ok()) return report.status();
  out.flows = *report;
  return out;
}

std::string DeleteStrictLines(const std::vector<DumpedFlow>& flows) {
  std::string lines;
  for (const DumpedFlow& f : flows) {
    lines += StrCat("delete_strict table=", f.table, ",priority=", f.priority, ",cookie=0x");
    char hex[17];
    snprintf(hex, sizeof(hex), "%llx", static_cast<unsigned long long>(f.cookie));
    lines += StrCat(hex, "/-1", f.match.empty() ? "" : ",", f.match, "\n");
  }
  return lines;
}

}  // namespace sluice::agent
