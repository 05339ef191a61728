#include "vswitch/translate.h"

#include <bit>
#include <cstdio>

#include "absl/status/status.h"
#include "common/strings.h"

namespace sluice::vswitch {
namespace {

using flow::ActionType;
using flow::Tunnel;

std::string Hex(uint64_t v) {
  char buf[24];
  snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// "10.0.0.1", "10.0.0.0/24" or "10.0.0.1/255.0.255.0".
std::string Ipv4Text(const flow::Ipv4Match& m) {
  std::string s = flow::FormatIpv4(m.addr & m.mask);
  if (m.mask == 0xffffffffu) return s;
  if (std::countl_one(m.mask) + std::countr_zero(m.mask) == 32) {
    return s + "/" + std::to_string(std::countl_one(m.mask));
  }
  return s + "/" + flow::FormatIpv4(m.mask);
}

std::string PortText(const flow::PortMatch& m) {
  if (m.mask == 0xffff) return std::to_string(m.port);
  return Hex(m.port & m.mask) + "/" + Hex(m.mask);
}

class RuleTranslator {
 public:
  RuleTranslator(const flow::Rule& rule, const OvsPorts& ports, const RuleOptions& options)
      : rule_(rule), ports_(ports), options_(options) {}

  absl::StatusOr<std::vector<OvsFlow>> Run() {
    if (std::string invalid = flow::Validate(rule_); !invalid.empty()) {
      return absl::InvalidArgumentError(invalid);
    }
    if (rule_.id >= kBaseCookie) {
      return Refuse(absl::StatusCode::kInvalidArgument,
                    StrCat("id is in the range of base-flow cookies (>= ", Hex(kBaseCookie), ")"));
    }
    if (rule_.priority > kMaxRulePriority) {
      return Refuse(absl::StatusCode::kInvalidArgument,
                    StrCat("priority ", rule_.priority, " is above ", kMaxRulePriority,
                           " (OpenFlow has 16 bits; the top is kept for base flows)"));
    }
    flow_.cookie = rule_.id;
    flow_.priority = static_cast<uint16_t>(rule_.priority);
    if (absl::Status s = BuildMatch(); !s.ok()) return s;
    if (absl::Status s = BuildActions(); !s.ok()) return s;
    if (!options_.conntrack) return std::vector<OvsFlow>{flow_};
    return Conntrack();
  }

 private:
  absl::Status Refuse(absl::StatusCode code, const std::string& why) const {
    std::string who = StrCat("rule ", rule_.id);
    if (!rule_.name.empty()) who += " (\"" + rule_.name + "\")";
    return absl::Status(code, StrCat(who, ": ", why));
  }

  absl::StatusOr<uint32_t> OfPort(uint16_t ir_port, const char* what) const {
    auto it = ports_.ofport.find(ir_port);
    if (it == ports_.ofport.end()) {
      return Refuse(absl::StatusCode::kInvalidArgument,
                    StrCat(what, " port ", ir_port, " is not attached to the bridge"));
    }
    return it->second;
  }

  void Add(std::string field) {
    if (!flow_.match.empty()) flow_.match += ',';
    flow_.match += field;
  }

  absl::Status BuildMatch() {
    const flow::Match& m = rule_.match;
    switch (m.proto) {
      case flow::kProtoTcp:
        Add("tcp");
        break;
      case flow::kProtoUdp:
        Add("udp");
        break;
      case flow::kProtoIcmp:
        Add("icmp");
        break;
      case 0:
        Add("ip");
        break;
      default:
        Add(StrCat("ip,nw_proto=", m.proto));
        break;
    }
    switch (m.tunnel) {
      case Tunnel::kNone:
        if (m.outer_src.mask != 0 || m.outer_dst.mask != 0) {
          return Refuse(absl::StatusCode::kInvalidArgument,
                        "matches outer addresses without a tunnel; use src/dst");
        }
        if (m.in_port) {
          absl::StatusOr<uint32_t> port = OfPort(*m.in_port, "in");
          if (!port.ok()) return port.status();
          in_ofport_ = *port;
          Add(StrCat("in_port=", *port));
        }
        break;
      case Tunnel::kGre:
        // The userspace datapath pops GRE at the tunnel port: the inner packet comes in from
        // it with the outer addresses as tunnel metadata. (The uplink it arrived on is gone.)
        if (ports_.gre_port == 0) {
          return Refuse(absl::StatusCode::kFailedPrecondition,
                        "matches GRE but the bridge has no GRE port");
        }
        in_ofport_ = ports_.gre_port;
        Add(StrCat("in_port=", ports_.gre_port));
        if (m.outer_src.mask != 0) Add("tun_src=" + Ipv4Text(m.outer_src));
        if (m.outer_dst.mask != 0) Add("tun_dst=" + Ipv4Text(m.outer_dst));
        break;
      case Tunnel::kIpip:
        return Refuse(absl::StatusCode::kUnimplemented,
                      "matches IPv4-in-IPv4, which OVS's userspace datapath cannot decapsulate "
                      "(no ipip tunnel port); hosts behind OVS take GRE (mux backend encap: gre)");
      case Tunnel::kGue:
        return Refuse(absl::StatusCode::kUnimplemented,
                      "matches GUE (IPv4 in UDP without a header), for which OVS has no tunnel "
                      "port; hosts behind OVS take GRE (mux backend encap: gre)");
    }
    if (m.src.mask != 0) Add("nw_src=" + Ipv4Text(m.src));
    if (m.dst.mask != 0) Add("nw_dst=" + Ipv4Text(m.dst));
    if (m.src_port.mask != 0 || m.dst_port.mask != 0) {
      if (m.proto != flow::kProtoTcp && m.proto != flow::kProtoUdp) {
        return Refuse(absl::StatusCode::kUnimplemented,
                      "matches L4 ports without proto tcp or udp (OpenFlow's ICMP fields are "
                      "type and code, not the echo identifier)");
      }
      if (m.src_port.mask != 0) Add("tp_src=" + PortText(m.src_port));
      if (m.dst_port.mask != 0) Add("tp_dst=" + PortText(m.dst_port));
    }
    if (m.tcp_flags_mask != 0) {
      if (m.proto != flow::kProtoTcp) {
        return Refuse(absl::StatusCode::kInvalidArgument, "matches TCP flags without proto tcp");
      }
      Add("tcp_flags=" + flow::FormatTcpFlags(m.tcp_flags, m.tcp_flags_mask));
    }
    // The software executor drops fragments (no L4 ports to match on); so does a miss here.
    Add("nw_frag=no");
    return absl::OkStatus();
  }

  void Do(std::string action) {
    if (!flow_.actions.empty()) flow_.actions += ',';
    flow_.actions += action;
  }

  absl::Status BuildActions() {
    const char* l4 = rule_.match.proto == flow::kProtoUdp ? "udp" : "tcp";
    bool decapped = false;
    for (size_t i = 0; i < rule_.actions.size(); ++i) {
      const flow::Action& a = rule_.actions[i];
      switch (a.type) {
        case ActionType::kDecap:
          // Done by the GRE port before this flow sees the packet (tnl_pop). The packet now
          // has no Ethernet header of its own (packet_type=legacy_l3): a set_mac must follow.
          decapped = true;
          break;
        case ActionType::kEncap:
          return Refuse(absl::StatusCode::kUnimplemented,
                        StrCat("action ", i + 1, " (", flow::ToString(a),
                               ") is not translated: OVS's tunnel push takes the outer header "
                               "from its own route and neighbour tables, not from the rule"));
        case ActionType::kSetIpv4Src:
          Do("set_field:" + flow::FormatIpv4(a.ipv4) + "->ip_src");
          break;
        case ActionType::kSetIpv4Dst:
          Do("set_field:" + flow::FormatIpv4(a.ipv4) + "->ip_dst");
          break;
        case ActionType::kSetL4Src:
          Do(StrCat("set_field:", a.l4_port, "->", l4, "_src"));
          break;
        case ActionType::kSetL4Dst:
          Do(StrCat("set_field:", a.l4_port, "->", l4, "_dst"));
          break;
        case ActionType::kSetMac:
          Do("set_field:" + flow::FormatMac(a.mac_src) + "->eth_src");
          Do("set_field:" + flow::FormatMac(a.mac_dst) + "->eth_dst");
          decapped = false;
          break;
        case ActionType::kDecTtl:
          Do("dec_ttl");
          break;
        case ActionType::kCount:
          break;  // every OpenFlow flow counts packets and bytes
        case ActionType::kAge:
          flow_.idle_timeout = static_cast<uint16_t>(std::min<uint32_t>(a.age_seconds, 65535));
          break;
        case ActionType::kOutput: {
          if (decapped) return NeedsMac();
          absl::StatusOr<uint32_t> port = OfPort(a.out_port, "output");
          if (!port.ok()) return port.status();
          // OpenFlow drops output to the input port unless it is said explicitly.
          Do(*port == in_ofport_ ? std::string("in_port") : StrCat("output:", *port));
          break;
        }
        case ActionType::kDrop:
          Do("drop");
          break;
        case ActionType::kToSoftware:
          if (decapped) return NeedsMac();
          Do(ports_.slow_path_port != 0 ? StrCat("output:", ports_.slow_path_port)
                                        : std::string("controller"));
          break;
      }
    }
    return absl::OkStatus();
  }

  // Rewrites flow_ for per-flow NAT state (RuleOptions::conntrack).
  absl::StatusOr<std::vector<OvsFlow>> Conntrack() {
    const flow::Action* dst_ip = nullptr;
    const flow::Action* dst_port = nullptr;
    bool snat = false;
    for (const flow::Action& a : rule_.actions) {
      if (a.type == ActionType::kSetIpv4Dst) dst_ip = &a;
      if (a.type == ActionType::kSetL4Dst) dst_port = &a;
      if (a.type == ActionType::kSetIpv4Src || a.type == ActionType::kSetL4Src) snat = true;
    }
    const std::string zone = StrCat("zone=", options_.ct_zone);
    if (dst_ip != nullptr && !snat) {
      // Inbound: the DNAT is done (and recorded) by conntrack instead of set_field.
      std::string nat = "dst=" + flow::FormatIpv4(dst_ip->ipv4);
      if (dst_port != nullptr) nat += StrCat(":", dst_port->l4_port);
      const std::string ct = StrCat("ct(commit,", zone, ",nat(", nat, "))");
      std::string actions;
      bool placed = false;
      for (std::string_view part : SplitString(flow_.actions, ',')) {
        std::string p(part);
        if (p.ends_with("->ip_dst") || p.ends_with("->tcp_dst") || p.ends_with("->udp_dst")) {
          if (placed) continue;
          p = ct;
          placed = true;
        }
        actions += (actions.empty() ? "" : ",") + p;
      }
      flow_.actions = actions;
      return std::vector<OvsFlow>{flow_};
    }
    if (snat && dst_ip == nullptr && dst_port == nullptr) {
      // Return: un-NAT by the connection's state, then the rest of the rule in table 1.
      const uint32_t mark = static_cast<uint32_t>(rule_.id);
      OvsFlow replies = flow_;
      replies.table = 1;
      std::string actions;
      for (std::string_view part : SplitString(flow_.actions, ',')) {
        std::string p(part);
        if (p.ends_with("->ip_src") || p.ends_with("->tcp_src") || p.ends_with("->udp_src")) {
          continue;
        }
        actions += (actions.empty() ? "" : ",") + p;
      }
      replies.actions = actions;
      // Matched on the packet before un-NAT: its source is still the DIP:port.
      replies.match = StrCat("ct_state=+trk+rpl,reg0=", Hex(mark), ",", ProtoOnly());
      flow_.actions = StrCat("set_field:", Hex(mark), "->reg0,ct(", zone, ",nat,table=1)");
      return std::vector<OvsFlow>{flow_, replies};
    }
    return Refuse(absl::StatusCode::kInvalidArgument,
                  "conntrack NAT needs a rule that rewrites either the destination (inbound) or "
                  "the source (return), not both or neither");
  }

  std::string ProtoOnly() const {
    switch (rule_.match.proto) {
      case flow::kProtoTcp:
        return "tcp";
      case flow::kProtoUdp:
        return "udp";
      case flow::kProtoIcmp:
        return "icmp";
      default:
        return "ip";
    }
  }

  absl::Status NeedsMac() const {
    return Refuse(absl::StatusCode::kUnimplemented,
                  "decapsulates without a later set_mac: OVS's GRE port delivers the inner "
                  "IPv4 packet without the outer Ethernet header the IR keeps");
  }

  const flow::Rule& rule_;
  const OvsPorts& ports_;
  const RuleOptions& options_;
  OvsFlow flow_;
  uint32_t in_ofport_ = 0;
};

}  // namespace

std::string OvsFlow::Key() const {
  return StrCat("table=", table, ",priority=", priority, match.empty() ? "" : ",", match);
}

std::string OvsFlow::Text() const {
  std::string s = StrCat("table=", table, ",priority=", priority, ",cookie=", Hex(cookie));
  if (idle_timeout != 0) s += StrCat(",idle_timeout=", idle_timeout);
  if (!match.empty()) s += "," + match;
  return s + " actions=" + actions;
}

absl::StatusOr<OvsFlow> Translate(const flow::Rule& rule, const OvsPorts& ports) {
  absl::StatusOr<std::vector<OvsFlow>> flows = TranslateRule(rule, ports, RuleOptions{});
  if (!flows.ok()) return flows.status();
  return flows->front();
}

absl::StatusOr<std::vector<OvsFlow>> TranslateRule(const flow::Rule& rule, const OvsPorts& ports,
                                                   const RuleOptions& options) {
  return RuleTranslator(rule, ports, options).Run();
}

std::vector<OvsFlow> BaseFlows(const BaseFlowSpec& spec) {
  std::vector<OvsFlow> flows;
  auto add = [&flows](uint16_t priority, std::string match, std::string actions) {
    flows.push_back(OvsFlow{.cookie = kBaseCookie | flows.size(),
                            .priority = priority,
                            .match = std::move(match),
                            .actions = std::move(actions)});
  };
  const std::string uplink = StrCat("in_port=", spec.uplink_ofport);
  for (uint32_t pa : spec.tunnel_endpoints) {
    add(65000, StrCat("ip,", uplink, ",nw_dst=", flow::FormatIpv4(pa), ",nw_proto=47"), "LOCAL");
  }
  add(64000, "arp," + uplink, "LOCAL");
  add(64000, "in_port=LOCAL", StrCat("output:", spec.uplink_ofport));
  add(0, "", spec.slow_path_port != 0 ? StrCat("output:", spec.slow_path_port) : "drop");
  return flows;
}

}  // namespace sluice::vswitch
