#include "offload/flow/rule.h"

#include <bit>
#include <cstdio>

namespace sluice::flow {
namespace {

bool IsTerminal(ActionType type) {
  return type == ActionType::kOutput || type == ActionType::kDrop ||
         type == ActionType::kToSoftware;
}

const char* TunnelName(Tunnel t) {
  switch (t) {
    case Tunnel::kNone:
      return "none";
    case Tunnel::kIpip:
      return "ipip";
    case Tunnel::kGue:
      return "gue";
    case Tunnel::kGre:
      return "gre";
  }
  return "?";
}

std::string ProtoName(uint8_t proto) {
  switch (proto) {
    case kProtoIcmp:
      return "icmp";
    case kProtoIpip:
      return "ipip";
    case kProtoTcp:
      return "tcp";
    case kProtoUdp:
      return "udp";
    default:
      return std::to_string(proto);
  }
}

std::string Hex(uint32_t v) {
  char buf[16];
  snprintf(buf, sizeof(buf), "0x%x", v);
  return buf;
}

// "10.0.0.0/8" for a prefix mask, "10.0.0.1" for an exact one, "10.0.0.1/0xff00ff00" else.
std::string FormatIpv4Match(const Ipv4Match& m) {
  std::string s = FormatIpv4(m.addr & m.mask);
  if (m.mask == 0xffffffffu) return s;
  if (std::countl_one(m.mask) + std::countr_zero(m.mask) == 32) {
    return s + "/" + std::to_string(std::countl_one(m.mask));
  }
  return s + "/" + Hex(m.mask);
}

std::string FormatPortMatch(const PortMatch& m) {
  std::string s = std::to_string(m.port & m.mask);
  return m.mask == 0xffff ? s : s + "/" + Hex(m.mask);
}

}  // namespace

std::string FormatIpv4(uint32_t addr) {
  char buf[16];
  snprintf(buf, sizeof(buf), "%u.%u.%u.%u", addr >> 24, (addr >> 16) & 0xff, (addr >> 8) & 0xff,
           addr & 0xff);
  return buf;
}

std::string FormatMac(const MacAddr& mac) {
  char buf[18];
  snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
           mac[4], mac[5]);
  return buf;
}

std::string FormatTcpFlags(uint8_t flags, uint8_t mask) {
  static constexpr const char* kNames[8] = {"fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr"};
  std::string s;
  for (int bit = 0; bit < 8; ++bit) {
    if ((mask & (1u << bit)) == 0) continue;
    s += (flags & (1u << bit)) ? '+' : '-';
    s += kNames[bit];
  }
  return s;
}

std::string ToString(const Match& match) {
  std::string s;
  auto add = [&s](const std::string& field) {
    if (!s.empty()) s += ' ';
    s += field;
  };
  if (match.in_port) add("in_port=" + std::to_string(*match.in_port));
  if (match.tunnel != Tunnel::kNone) add(std::string("tunnel=") + TunnelName(match.tunnel));
  if (match.outer_src.mask != 0) add("outer_src=" + FormatIpv4Match(match.outer_src));
  if (match.outer_dst.mask != 0) add("outer_dst=" + FormatIpv4Match(match.outer_dst));
  if (match.src.mask != 0) add("src=" + FormatIpv4Match(match.src));
  if (match.dst.mask != 0) add("dst=" + FormatIpv4Match(match.dst));
  if (match.proto != 0) add("proto=" + ProtoName(match.proto));
  if (match.src_port.mask != 0) add("src_port=" + FormatPortMatch(match.src_port));
  if (match.dst_port.mask != 0) add("dst_port=" + FormatPortMatch(match.dst_port));
  if (match.tcp_flags_mask != 0) {
    add("tcp_flags=" + FormatTcpFlags(match.tcp_flags, match.tcp_flags_mask));
  }
  return s.empty() ? "any" : s;
}

std::string ToString(const Action& action) {
  switch (action.type) {
    case ActionType::kDecap:
      return "decap";
    case ActionType::kEncap: {
      const EncapParams& p = action.encap;
      std::string s = std::string("encap(") + TunnelName(p.type) + " " + FormatIpv4(p.outer_src) +
                      "->" + FormatIpv4(p.outer_dst) + " ttl=" + std::to_string(p.ttl);
      if (p.type == Tunnel::kGue) {
        s += " dst_port=" + std::to_string(p.gue_dst_port) + " src_port=" +
             (p.gue_src_port == 0 ? std::string("flow_hash") : std::to_string(p.gue_src_port));
      }
      return s + ")";
    }
    case ActionType::kSetIpv4Src:
      return "set_ipv4_src(" + FormatIpv4(action.ipv4) + ")";
    case ActionType::kSetIpv4Dst:
      return "set_ipv4_dst(" + FormatIpv4(action.ipv4) + ")";
    case ActionType::kSetL4Src:
      return "set_l4_src(" + std::to_string(action.l4_port) + ")";
    case ActionType::kSetL4Dst:
      return "set_l4_dst(" + std::to_string(action.l4_port) + ")";
    case ActionType::kSetMac:
      return "set_mac(src=" + FormatMac(action.mac_src) + " dst=" + FormatMac(action.mac_dst) + ")";
    case ActionType::kDecTtl:
      return "dec_ttl";
    case ActionType::kCount:
      return "count";
    case ActionType::kAge:
      return "age(" + std::to_string(action.age_seconds) + "s)";
    case ActionType::kOutput:
      return "output(" + std::to_string(action.out_port) + ")";
    case ActionType::kDrop:
      return "drop";
    case ActionType::kToSoftware:
      return "to_software";
  }
  return "unknown_action(" + std::to_string(static_cast<int>(action.type)) + ")";
}

std::string ToString(const Rule& rule) {
  std::string s = "rule " + std::to_string(rule.id);
  if (!rule.name.empty()) s += " \"" + rule.name + "\"";
  s += " priority=" + std::to_string(rule.priority) + " match{" + ToString(rule.match) +
       "} actions[";
  for (size_t i = 0; i < rule.actions.size(); ++i) {
    if (i > 0) s += ", ";
    s += ToString(rule.actions[i]);
  }
  return s + "]";
}

std::string Validate(const Rule& rule) {
  std::string who = "rule " + std::to_string(rule.id);
  if (!rule.name.empty()) who += " (\"" + rule.name + "\")";
  if (rule.actions.empty()) {
    return who + ": has no actions; end it with output, drop or to_software";
  }
  if (rule.match.tcp_flags_mask != 0 && rule.match.proto != kProtoTcp) {
    return who + ": matches TCP flags (" +
           FormatTcpFlags(rule.match.tcp_flags, rule.match.tcp_flags_mask) +
           "), so the match must set proto to tcp (it is " +
           (rule.match.proto == 0 ? std::string("any") : ProtoName(rule.match.proto)) + ")";
  }
  int decaps = 0;
  for (size_t i = 0; i < rule.actions.size(); ++i) {
    const Action& a = rule.actions[i];
    const bool last = i + 1 == rule.actions.size();
    const std::string where = who + ": action " + std::to_string(i + 1) + " (" + ToString(a) + ")";
    if (static_cast<uint8_t>(a.type) > static_cast<uint8_t>(ActionType::kToSoftware)) {
      return where + " has an unknown type";
    }
    if (IsTerminal(a.type) && !last) {
      return where + " is terminal but is followed by " +
             std::to_string(rule.actions.size() - i - 1) +
             " more action(s); move it to the end or remove the others";
    }
    if (!IsTerminal(a.type) && last) {
      return where + " is the last action but not terminal; end the rule with output, drop " +
             "or to_software";
    }
    switch (a.type) {
      case ActionType::kDecap:
        if (rule.match.tunnel == Tunnel::kNone) {
          return where +
                 " needs the match to name a tunnel (ipip, gue or gre), else non-tunnelled " +
                 "packets would hit it";
        }
        if (++decaps > 1) return where + " is a second decap; only one tunnel level is removed";
        break;
      case ActionType::kEncap:
        if (a.encap.type == Tunnel::kNone) {
          return where + " has no tunnel type; use ipip, gue or gre";
        }
        break;
      case ActionType::kSetL4Src:
      case ActionType::kSetL4Dst:
        if (rule.match.proto != kProtoTcp && rule.match.proto != kProtoUdp) {
          return where + " rewrites an L4 port, so the match must set proto to tcp or udp (it " +
                 "is " +
                 (rule.match.proto == 0 ? std::string("any") : ProtoName(rule.match.proto)) + ")";
        }
        break;
      default:
        break;
    }
  }
  return "";
}

}  // namespace sluice::flow
