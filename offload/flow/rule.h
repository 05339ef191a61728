// The flow-rule IR: one description of what Sluice does to a packet, executed by the
// software executor (offload/sw), the NIC executor (offload/rte_flow) and the vSwitch
// executor (vswitch/). A rule is a match plus an ordered list of actions.
//
// All addresses and ports in the IR are in host byte order.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sluice::flow {

/// Encapsulation of mux→host traffic.
enum class Tunnel : uint8_t {
  kNone = 0,
  kIpip,  ///< IPv4-in-IPv4, IP protocol 4.
  kGue,   ///< GUE variant 1: IPv4 directly inside UDP (no GUE header).
  kGre,   ///< GRE (RFC 2784, 4-byte header, no key/checksum/sequence) carrying IPv4 (0x0800):
          ///< the encapsulation OVS's userspace datapath decapsulates natively (vswitch/).
};

/// Default UDP destination port of GUE-encapsulated traffic.
inline constexpr uint16_t kDefaultGuePort = 6080;

inline constexpr uint8_t kProtoIcmp = 1;
inline constexpr uint8_t kProtoIpip = 4;
inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;
inline constexpr uint8_t kProtoGre = 47;

/// The IP protocol of a tunnel's outer IPv4 header (IPIP for kIpip; kNone has no outer header
/// and is answered as IPIP too).
constexpr uint8_t OuterProtocol(Tunnel tunnel) {
  return tunnel == Tunnel::kGue ? kProtoUdp : tunnel == Tunnel::kGre ? kProtoGre : kProtoIpip;
}

using MacAddr = std::array<uint8_t, 6>;

/// An IPv4 address with a mask; mask 0 matches anything.
struct Ipv4Match {
  uint32_t addr = 0;
  uint32_t mask = 0;
  static Ipv4Match Exact(uint32_t a) { return {.addr = a, .mask = 0xffffffffu}; }
  bool Matches(uint32_t a) const { return (a & mask) == (addr & mask); }
};

/// An L4 port with a mask; mask 0 matches anything.
struct PortMatch {
  uint16_t port = 0;
  uint16_t mask = 0;
  static PortMatch Exact(uint16_t p) { return {.port = p, .mask = 0xffff}; }
  bool Matches(uint16_t p) const { return (p & mask) == (port & mask); }
};

/// What a rule matches. `tunnel == kNone` matches on the outermost IPv4 header whether or
/// not it carries a tunnel; `kIpip`/`kGue`/`kGre` require that tunnel and then src/dst/proto/ports
/// refer to the inner packet while outer_src/outer_dst refer to the outer header.
struct Match {
  std::optional<uint16_t> in_port;
  Tunnel tunnel = Tunnel::kNone;
  Ipv4Match outer_src;
  Ipv4Match outer_dst;
  Ipv4Match src;
  Ipv4Match dst;
  uint8_t proto = 0;  ///< IP protocol; 0 matches any.
  PortMatch src_port;
  PortMatch dst_port;
  /// TCP flags (byte 13 of the TCP header: FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10,
  /// URG 0x20, ECE 0x40, CWR 0x80) under `tcp_flags_mask`; mask 0 matches any. Needs proto
  /// tcp. One rule matches one value under one mask: "FIN or RST" takes two rules.
  uint8_t tcp_flags = 0;
  uint8_t tcp_flags_mask = 0;
  bool MatchesTcpFlags(uint8_t flags) const {
    return (flags & tcp_flags_mask) == (tcp_flags & tcp_flags_mask);
  }
};

inline constexpr uint8_t kTcpFlagFin = 0x01;
inline constexpr uint8_t kTcpFlagSyn = 0x02;
inline constexpr uint8_t kTcpFlagRst = 0x04;
inline constexpr uint8_t kTcpFlagAck = 0x10;

enum class ActionType : uint8_t {
  kDecap,       ///< Remove the outer IPv4 (and UDP for GUE, GRE header for GRE); the Ethernet
                ///< header stays.
  kEncap,       ///< Insert an outer IPv4 (and UDP for GUE, GRE for GRE) after the Ethernet header.
  kSetIpv4Src,  ///< Rewrite the (innermost) IPv4 source; checksums updated incrementally.
  kSetIpv4Dst,
  kSetL4Src,  ///< Rewrite the TCP/UDP source port; checksum updated incrementally.
  kSetL4Dst,
  kSetMac,     ///< Rewrite Ethernet source and destination.
  kDecTtl,     ///< Decrement the IPv4 TTL; a packet whose TTL would reach 0 is dropped.
  kCount,      ///< Count packets and bytes against the rule.
  kAge,        ///< Rule expires after `age_seconds` without a hit (NIC executors).
  kOutput,     ///< Send out of `port`. Terminal.
  kDrop,       ///< Drop (counted as kDroppedByRule). Terminal.
  kToSoftware  ///< Hand to the owning application's slow path. Terminal.
};

/// Parameters of kEncap.
struct EncapParams {
  Tunnel type = Tunnel::kIpip;
  uint32_t outer_src = 0;
  uint32_t outer_dst = 0;
  uint8_t ttl = 64;
  uint16_t gue_dst_port = kDefaultGuePort;
  /// GUE outer UDP source port; 0 means "derive from the inner flow hash" so RSS spreads it.
  uint16_t gue_src_port = 0;
};

/// One action. Only the fields that belong to `type` are meaningful.
struct Action {
  ActionType type = ActionType::kDrop;
  uint32_t ipv4 = 0;         ///< kSetIpv4Src/kSetIpv4Dst
  uint16_t l4_port = 0;      ///< kSetL4Src/kSetL4Dst
  uint16_t out_port = 0;     ///< kOutput
  uint32_t age_seconds = 0;  ///< kAge
  MacAddr mac_src{};         ///< kSetMac
  MacAddr mac_dst{};         ///< kSetMac
  EncapParams encap;         ///< kEncap

  static Action Decap() { return {.type = ActionType::kDecap}; }
  static Action Encap(const EncapParams& p) { return {.type = ActionType::kEncap, .encap = p}; }
  static Action SetIpv4Src(uint32_t a) { return {.type = ActionType::kSetIpv4Src, .ipv4 = a}; }
  static Action SetIpv4Dst(uint32_t a) { return {.type = ActionType::kSetIpv4Dst, .ipv4 = a}; }
  static Action SetL4Src(uint16_t p) { return {.type = ActionType::kSetL4Src, .l4_port = p}; }
  static Action SetL4Dst(uint16_t p) { return {.type = ActionType::kSetL4Dst, .l4_port = p}; }
  static Action SetMac(const MacAddr& src, const MacAddr& dst) {
    return {.type = ActionType::kSetMac, .mac_src = src, .mac_dst = dst};
  }
  static Action DecTtl() { return {.type = ActionType::kDecTtl}; }
  static Action Count() { return {.type = ActionType::kCount}; }
  static Action Age(uint32_t s) { return {.type = ActionType::kAge, .age_seconds = s}; }
  static Action Output(uint16_t port) { return {.type = ActionType::kOutput, .out_port = port}; }
  static Action Drop() { return {.type = ActionType::kDrop}; }
  static Action ToSoftware() { return {.type = ActionType::kToSoftware}; }
};

/// A rule: higher `priority` wins; among equal priorities the earlier-installed rule wins.
struct Rule {
  uint64_t id = 0;  ///< Caller-chosen, unique within a rule set.
  uint32_t priority = 0;
  Match match;
  std::vector<Action> actions;
  std::string name;  ///< For stats and logs, e.g. "inbound vip=10.200.0.10:80 dip=10.1.0.1".
};

/// Human-readable one-line forms, used in logs, stats and test failure messages.
std::string FormatIpv4(uint32_t addr);
std::string FormatMac(const MacAddr& mac);
/// TCP flags under a mask as OVS writes them: "+fin", "+syn-ack"; a flag in the mask is
/// '+' when set in `flags`, '-' when clear ("0x100/0x100" style for bits without a name).
std::string FormatTcpFlags(uint8_t flags, uint8_t mask);
std::string ToString(const Match& match);
std::string ToString(const Action& action);
std::string ToString(const Rule& rule);

/// Returns an empty string if the rule is well formed, else a message saying what is wrong
/// (e.g. no terminal action, an action after a terminal one, decap without a tunnel match).
std::string Validate(const Rule& rule);

}  // namespace sluice::flow
