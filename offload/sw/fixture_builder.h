// Test-only: a small packet builder (`Eth{...} / Ipv4{...} / Tcp{...} / Payload{"..."}`) that
// fills in lengths, protocol numbers and checksums, an independent checksum verifier, and the
// conformance fixture table that every executor (software, rte_flow, OVS) must reproduce:
// input packet + rules → expected output packet or drop reason + counters.
//
// Header-only and free of DPDK so any executor's test can include it.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "offload/flow/rule.h"
#include "offload/packet/drop_reason.h"
#include "offload/packet/parse.h"

namespace sluice::fixture {

/// "10.0.0.1" → host-order address. Aborts on a malformed literal (it is a test bug).
inline uint32_t Ip(std::string_view dotted) {
  unsigned a, b, c, d;
  char tail;
  std::string s(dotted);
  if (sscanf(s.c_str(), "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) != 4 || a > 255 || b > 255 ||
      c > 255 || d > 255) {
    fprintf(stderr, "fixture: bad IPv4 literal '%s'\n", s.c_str());
    abort();
  }
  return a << 24 | b << 16 | c << 8 | d;
}

/// "02:00:00:00:00:01" → MAC. Aborts on a malformed literal.
inline flow::MacAddr Mac(std::string_view text) {
  unsigned v[6];
  std::string s(text);
  if (sscanf(s.c_str(), "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) {
    fprintf(stderr, "fixture: bad MAC literal '%s'\n", s.c_str());
    abort();
  }
  flow::MacAddr mac;
  for (int i = 0; i < 6; ++i) mac[i] = static_cast<uint8_t>(v[i]);
  return mac;
}

inline constexpr uint8_t kFin = 0x01;
inline constexpr uint8_t kSyn = 0x02;
inline constexpr uint8_t kRst = 0x04;
inline constexpr uint8_t kPsh = 0x08;
inline constexpr uint8_t kAck = 0x10;

/// Layers. Unset optional fields are derived (ether type, protocol, lengths, checksums).
struct Eth {
  flow::MacAddr dst{};
  flow::MacAddr src{};
  std::optional<uint16_t> type;  ///< Default: from the next layer (IPv4 or ARP).
};

struct Ipv4 {
  uint32_t src = 0;
  uint32_t dst = 0;
  uint8_t ttl = 64;
  uint8_t tos = 0;
  uint16_t id = 0;
  bool df = false;
  bool mf = false;
  uint16_t frag_offset = 0;           ///< In 8-byte units.
  std::optional<uint8_t> proto;       ///< Default: from the next layer.
  std::optional<uint8_t> ihl;         ///< Default: 5 + options / 4.
  std::optional<uint16_t> total_len;  ///< Default: the bytes from this header to the end.
  std::vector<uint8_t> options;       ///< Multiple of 4 bytes.
};

struct Tcp {
  uint16_t sport = 0;
  uint16_t dport = 0;
  uint8_t flags = kAck;
  uint32_t seq = 1;
  uint32_t ack = 0;
  uint16_t window = 65535;
  std::optional<uint8_t> data_offset;  ///< Default 5 (no options).
};

struct Udp {
  uint16_t sport = 0;
  uint16_t dport = 0;
  bool zero_checksum = false;  ///< Send without checksum (0), as GUE and some UDP do.
  std::optional<uint16_t> len;
};

struct Icmp {
  uint8_t type = 8;  ///< 8 echo request, 0 echo reply.
  uint8_t code = 0;
  uint16_t id = 0;
  uint16_t seq = 0;
};

struct Arp {
  uint16_t op = 1;
  flow::MacAddr sender_mac{};
  uint32_t sender_ip = 0;
  flow::MacAddr target_mac{};
  uint32_t target_ip = 0;
};

struct Payload {
  std::string data;
};

/// Basic GRE header (RFC 2784: no checksum, key or sequence number).
struct Gre {
  uint16_t flags = 0;  ///< C/K/S bits and version; 0x2000 = a key follows (as the next layer).
  std::optional<uint16_t> protocol;  ///< Default: from the next layer (IPv4 → 0x0800).
};

using Layer = std::variant<Eth, Ipv4, Tcp, Udp, Icmp, Arp, Payload, Gre>;

namespace internal {

inline void Put16(std::vector<uint8_t>& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v >> 8);
  b[at + 1] = static_cast<uint8_t>(v);
}
inline void Append16(std::vector<uint8_t>& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}
inline void Append32(std::vector<uint8_t>& b, uint32_t v) {
  Append16(b, static_cast<uint16_t>(v >> 16));
  Append16(b, static_cast<uint16_t>(v));
}
inline void AppendMac(std::vector<uint8_t>& b, const flow::MacAddr& m) {
  b.insert(b.end(), m.begin(), m.end());
}
inline uint16_t Get16(const std::vector<uint8_t>& b, size_t at) {
  return static_cast<uint16_t>(b[at] << 8 | b[at + 1]);
}
inline uint32_t Get32(const std::vector<uint8_t>& b, size_t at) {
  return static_cast<uint32_t>(Get16(b, at)) << 16 | Get16(b, at + 2);
}

/// Plain RFC 1071 sum in host order, written independently of offload/packet/checksum.cc.
inline uint32_t Sum(const std::vector<uint8_t>& b, size_t at, size_t len, uint32_t sum = 0) {
  for (size_t i = 0; i + 1 < len; i += 2) sum += Get16(b, at + i);
  if (len % 2 == 1) sum += static_cast<uint32_t>(b[at + len - 1]) << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return sum;
}
inline uint32_t PseudoHeaderSum(uint32_t src, uint32_t dst, uint8_t proto, size_t len) {
  return (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + proto +
         static_cast<uint32_t>(len);
}
inline uint16_t Finish(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

}  // namespace internal

/// A packet as a list of layers; `Bytes()` serialises it.
struct Packet {
  std::vector<Layer> layers;
  size_t truncate_to = SIZE_MAX;

  /// The same packet cut after `n` bytes (checksums and lengths computed before the cut).
  Packet TruncatedTo(size_t n) const {
    Packet p = *this;
    p.truncate_to = n;
    return p;
  }

  std::vector<uint8_t> Bytes() const {
    using namespace internal;
    std::vector<uint8_t> b;
    std::vector<size_t> at;
    for (const Layer& layer : layers) {
      at.push_back(b.size());
      if (auto* e = std::get_if<Eth>(&layer)) {
        AppendMac(b, e->dst);
        AppendMac(b, e->src);
        Append16(b, 0);
      } else if (auto* ip = std::get_if<Ipv4>(&layer)) {
        b.push_back(0x45);
        b.push_back(ip->tos);
        Append16(b, 0);
        Append16(b, ip->id);
        Append16(b, static_cast<uint16_t>((ip->df ? 0x4000 : 0) | (ip->mf ? 0x2000 : 0) |
                                          (ip->frag_offset & 0x1fff)));
        b.push_back(ip->ttl);
        b.push_back(0);
        Append16(b, 0);
        Append32(b, ip->src);
        Append32(b, ip->dst);
        b.insert(b.end(), ip->options.begin(), ip->options.end());
      } else if (auto* t = std::get_if<Tcp>(&layer)) {
        Append16(b, t->sport);
        Append16(b, t->dport);
        Append32(b, t->seq);
        Append32(b, t->ack);
        b.push_back(static_cast<uint8_t>(t->data_offset.value_or(5) << 4));
        b.push_back(t->flags);
        Append16(b, t->window);
        Append32(b, 0);  // checksum, urgent pointer
      } else if (auto* u = std::get_if<Udp>(&layer)) {
        Append16(b, u->sport);
        Append16(b, u->dport);
        Append32(b, 0);
      } else if (auto* c = std::get_if<Icmp>(&layer)) {
        b.push_back(c->type);
        b.push_back(c->code);
        Append16(b, 0);
        Append16(b, c->id);
        Append16(b, c->seq);
      } else if (auto* a = std::get_if<Arp>(&layer)) {
        Append16(b, 1);
        Append16(b, 0x0800);
        b.push_back(6);
        b.push_back(4);
        Append16(b, a->op);
        AppendMac(b, a->sender_mac);
        Append32(b, a->sender_ip);
        AppendMac(b, a->target_mac);
        Append32(b, a->target_ip);
      } else if (auto* p = std::get_if<Payload>(&layer)) {
        b.insert(b.end(), p->data.begin(), p->data.end());
      } else if (auto* g = std::get_if<Gre>(&layer)) {
        Append16(b, g->flags);
        Append16(b, 0);  // protocol type (filled below)
      }
    }
    // Fix lengths, protocols and checksums innermost first, so outer sums cover final bytes.
    for (size_t i = layers.size(); i-- > 0;) {
      const size_t o = at[i];
      const size_t len = b.size() - o;
      const Layer* next = i + 1 < layers.size() ? &layers[i + 1] : nullptr;
      const Ipv4* enclosing = nullptr;
      for (size_t j = i; j-- > 0;) {
        if ((enclosing = std::get_if<Ipv4>(&layers[j])) != nullptr) break;
      }
      if (auto* e = std::get_if<Eth>(&layers[i])) {
        uint16_t type = 0;
        if (next && std::holds_alternative<Ipv4>(*next)) type = 0x0800;
        if (next && std::holds_alternative<Arp>(*next)) type = 0x0806;
        Put16(b, o + 12, e->type.value_or(type));
      } else if (auto* ip = std::get_if<Ipv4>(&layers[i])) {
        uint8_t proto = 0;
        if (next && std::holds_alternative<Ipv4>(*next)) proto = flow::kProtoIpip;
        if (next && std::holds_alternative<Tcp>(*next)) proto = flow::kProtoTcp;
        if (next && std::holds_alternative<Udp>(*next)) proto = flow::kProtoUdp;
        if (next && std::holds_alternative<Icmp>(*next)) proto = flow::kProtoIcmp;
        if (next && std::holds_alternative<Gre>(*next)) proto = flow::kProtoGre;
        const size_t header_len = 20 + ip->options.size();
        b[o] = static_cast<uint8_t>(0x40 | ip->ihl.value_or(static_cast<uint8_t>(header_len / 4)));
        Put16(b, o + 2, ip->total_len.value_or(static_cast<uint16_t>(len)));
        b[o + 9] = ip->proto.value_or(proto);
        Put16(b, o + 10, Finish(Sum(b, o, header_len)));
      } else if (std::holds_alternative<Tcp>(layers[i])) {
        uint32_t pseudo =
            enclosing ? PseudoHeaderSum(enclosing->src, enclosing->dst, flow::kProtoTcp, len) : 0;
        Put16(b, o + 16, Finish(Sum(b, o, len, pseudo)));
      } else if (auto* u = std::get_if<Udp>(&layers[i])) {
        Put16(b, o + 4, u->len.value_or(static_cast<uint16_t>(len)));
        if (!u->zero_checksum) {
          uint32_t pseudo =
              enclosing ? PseudoHeaderSum(enclosing->src, enclosing->dst, flow::kProtoUdp, len) : 0;
          uint16_t sum = Finish(Sum(b, o, len, pseudo));
          Put16(b, o + 6, sum == 0 ? 0xffff : sum);
        }
      } else if (std::holds_alternative<Icmp>(layers[i])) {
        Put16(b, o + 2, Finish(Sum(b, o, len)));
      } else if (auto* g = std::get_if<Gre>(&layers[i])) {
        const bool ipv4 = next && std::holds_alternative<Ipv4>(*next);
        Put16(b, o + 2, g->protocol.value_or(ipv4 ? 0x0800 : 0));
      }
    }
    if (b.size() > truncate_to) b.resize(truncate_to);
    return b;
  }
};

/// `packet / layer` appends a layer.
inline Packet operator/(Packet p, Layer l) {
  p.layers.push_back(std::move(l));
  return p;
}
template <typename L>
requires(std::is_constructible_v<Layer, L> &&
         !std::is_same_v<std::decay_t<L>, Packet>) inline Packet
operator/(L first, Layer second) {
  return Packet{{Layer(std::move(first)), std::move(second)}};
}

/// Recomputes every IPv4 header checksum and every TCP/UDP/ICMP checksum (with pseudo-header)
/// of an Ethernet frame, looking through IPIP, GRE (basic header, IPv4) and GUE (UDP to
/// `gue_port`). Returns "" if all
/// are correct, else what is wrong.
inline std::string VerifyChecksums(const std::vector<uint8_t>& b,
                                   uint16_t gue_port = flow::kDefaultGuePort) {
  using namespace internal;
  if (b.size() < 14 || Get16(b, 12) != 0x0800) return "";
  size_t o = 14;
  for (int level = 0; level < 2; ++level) {
    if (b.size() < o + 20) return "IPv4 header truncated at " + std::to_string(o);
    const size_t header_len = (b[o] & 0x0f) * 4u;
    const size_t total_len = Get16(b, o + 2);
    if (header_len < 20 || b.size() < o + total_len || total_len < header_len) {
      return "IPv4 lengths inconsistent at " + std::to_string(o);
    }
    if (Sum(b, o, header_len) != 0xffff) {
      return "IPv4 header checksum wrong at offset " + std::to_string(o);
    }
    const uint32_t src = Get32(b, o + 12);
    const uint32_t dst = Get32(b, o + 16);
    const uint8_t proto = b[o + 9];
    const size_t l4 = o + header_len;
    const size_t l4_len = total_len - header_len;
    if ((Get16(b, o + 6) & 0x3fff) != 0) return "";  // fragment: L4 not checkable
    if (proto == flow::kProtoIpip && level == 0) {
      o = l4;
      continue;
    }
    if (proto == flow::kProtoGre && level == 0 && l4_len > 4 && Get16(b, l4) == 0 &&
        Get16(b, l4 + 2) == 0x0800) {
      o = l4 + 4;
      continue;
    }
    if (proto == flow::kProtoTcp) {
      if (Sum(b, l4, l4_len, PseudoHeaderSum(src, dst, proto, l4_len)) != 0xffff) {
        return "TCP checksum wrong at offset " + std::to_string(l4);
      }
    } else if (proto == flow::kProtoUdp && l4_len >= 8) {
      if (Get16(b, l4 + 6) != 0 &&
          Sum(b, l4, l4_len, PseudoHeaderSum(src, dst, proto, l4_len)) != 0xffff) {
        return "UDP checksum wrong at offset " + std::to_string(l4);
      }
      if (level == 0 && Get16(b, l4 + 2) == gue_port && l4_len > 8 && (b[l4 + 8] >> 4) == 4) {
        o = l4 + 8;
        continue;
      }
    } else if (proto == flow::kProtoIcmp) {
      if (Sum(b, l4, l4_len) != 0xffff) return "ICMP checksum wrong at " + std::to_string(l4);
    }
    return "";
  }
  return "";
}

/// What an executor must do with a fixture's input packet.
enum class Outcome : uint8_t { kOutput, kDrop, kToSoftware };

/// One conformance case.
struct FixtureRow {
  std::string name;  ///< Test name: [A-Za-z0-9_] only.
  Packet input;
  uint16_t in_port = 0;
  std::vector<flow::Rule> rules;
  Outcome outcome = Outcome::kDrop;
  uint16_t out_port = 0;                         ///< kOutput.
  Packet output;                                 ///< kOutput and kToSoftware: the packet sent on.
  DropReason drop_reason = DropReason::kNoRule;  ///< kDrop.
  /// The rule (by id) whose count action must see this packet (1 packet, input length bytes);
  /// every other rule's counter must stay 0.
  std::optional<uint64_t> counted_rule;
  /// Software executor: put the frame at the very start of the mbuf buffer (no headroom).
  bool zero_headroom = false;
};

/// GoogleTest prints a row by its name.
inline void PrintTo(const FixtureRow& row, std::ostream* os) { *os << row.name; }

/// The addresses every fixture uses: a client on the Internet, a VIP announced by the mux,
/// a DIP (the VM behind the VIP) on a host, and the physical addresses of mux and host.
namespace addr {
inline const uint32_t kClient = Ip("198.51.100.7");
inline const uint32_t kVip = Ip("10.200.0.10");
inline const uint32_t kOtherVip = Ip("10.200.0.99");
inline const uint32_t kDip = Ip("10.1.0.1");
inline const uint32_t kMuxPa = Ip("10.0.0.2");
inline const uint32_t kHostPa = Ip("10.0.1.1");
inline const flow::MacAddr kRouterMac = Mac("02:00:00:00:00:01");
inline const flow::MacAddr kMuxMac = Mac("02:00:00:00:00:02");
inline const flow::MacAddr kHostMac = Mac("02:00:00:00:01:01");
inline const flow::MacAddr kVmPortMac = Mac("02:00:00:00:02:01");
inline const flow::MacAddr kVmMac = Mac("02:00:00:00:03:01");
inline constexpr uint16_t kUplinkPort = 0;
inline constexpr uint16_t kVmPort = 2;
inline constexpr uint16_t kClientPort = 40000;
}  // namespace addr

/// The conformance table.
inline std::vector<FixtureRow> ConformanceFixtures() {
  using namespace addr;
  using flow::Action;
  using flow::Ipv4Match;
  using flow::PortMatch;
  using flow::Rule;
  using flow::Tunnel;

  // The host agent's inbound rule: decap, DNAT VIP:80 → DIP:8080, TTL, MACs, to the VM.
  auto inbound = [](Tunnel tunnel) {
    return Rule{.id = 1,
                .priority = 100,
                .match = {.in_port = kUplinkPort,
                          .tunnel = tunnel,
                          .outer_dst = Ipv4Match::Exact(kHostPa),
                          .dst = Ipv4Match::Exact(kVip),
                          .proto = flow::kProtoTcp,
                          .dst_port = PortMatch::Exact(80)},
                .actions = {Action::Decap(), Action::SetIpv4Dst(kDip), Action::SetL4Dst(8080),
                            Action::DecTtl(), Action::SetMac(kVmPortMac, kVmMac), Action::Count(),
                            Action::Output(kVmPort)},
                .name = "inbound vip=10.200.0.10:80 dip=10.1.0.1:8080"};
  };
  // The host agent's DSR return rule: the VM answers as the VIP straight to the client.
  const Rule dsr_return{
      .id = 2,
      .priority = 100,
      .match = {.in_port = kVmPort,
                .src = Ipv4Match::Exact(kDip),
                .proto = flow::kProtoTcp,
                .src_port = PortMatch::Exact(8080)},
      .actions = {Action::Count(), Action::SetIpv4Src(kVip), Action::SetL4Src(80), Action::DecTtl(),
                  Action::SetMac(kHostMac, kRouterMac), Action::Output(kUplinkPort)},
      .name = "dsr-return dip=10.1.0.1:8080 as vip=10.200.0.10:80"};
  // The mux's per-flow encapsulation towards the host owning the DIP.
  auto mux_encap = [](flow::EncapParams params) {
    return Rule{.id = 3,
                .priority = 10,
                .match = {.dst = Ipv4Match::Exact(kVip),
                          .proto = flow::kProtoTcp,
                          .dst_port = PortMatch::Exact(80)},
                .actions = {Action::Encap(params), Action::SetMac(kMuxMac, kHostMac),
                            Action::Count(), Action::Output(kUplinkPort)},
                .name = "mux vip=10.200.0.10:80 -> host 10.0.1.1"};
  };

  const Payload hello{"hello, sluice"};
  const Packet client_syn = Eth{.dst = kMuxMac, .src = kRouterMac} /
                            Ipv4{.src = kClient, .dst = kVip, .ttl = 60, .tos = 0x10} /
                            Tcp{.sport = kClientPort, .dport = 80, .flags = kSyn} / hello;
  const Packet vm_syn = Eth{.dst = kVmMac, .src = kVmPortMac} /
                        Ipv4{.src = kClient, .dst = kDip, .ttl = 59, .tos = 0x10} /
                        Tcp{.sport = kClientPort, .dport = 8080, .flags = kSyn} / hello;
  const Eth to_host{.dst = kHostMac, .src = kRouterMac};
  const Ipv4 mux_to_host{.src = kMuxPa, .dst = kHostPa, .ttl = 63};
  const Ipv4 client_to_vip{.src = kClient, .dst = kVip, .ttl = 60, .tos = 0x10};
  const Tcp syn_to_vip{.sport = kClientPort, .dport = 80, .flags = kSyn};
  const Eth from_vm{.dst = kVmPortMac, .src = kVmMac};
  const Rule inbound_ipip = inbound(Tunnel::kIpip);

  std::vector<FixtureRow> rows;
  rows.push_back({.name = "ipip_decap_dnat_to_vm",
                  .input = to_host / mux_to_host / client_to_vip / syn_to_vip / hello,
                  .in_port = kUplinkPort,
                  .rules = {inbound_ipip},
                  .outcome = Outcome::kOutput,
                  .out_port = kVmPort,
                  .output = vm_syn,
                  .counted_rule = 1});
  rows.push_back(
      {.name = "gue_decap_dnat_to_vm",
       .input = to_host / mux_to_host /
                Udp{.sport = 51234, .dport = flow::kDefaultGuePort, .zero_checksum = true} /
                client_to_vip / syn_to_vip / hello,
       .in_port = kUplinkPort,
       .rules = {inbound(Tunnel::kGue)},
       .outcome = Outcome::kOutput,
       .out_port = kVmPort,
       .output = vm_syn,
       .counted_rule = 1});
  rows.push_back({.name = "gre_decap_dnat_to_vm",
                  .input = to_host / mux_to_host / Gre{} / client_to_vip / syn_to_vip / hello,
                  .in_port = kUplinkPort,
                  .rules = {inbound(Tunnel::kGre)},
                  .outcome = Outcome::kOutput,
                  .out_port = kVmPort,
                  .output = vm_syn,
                  .counted_rule = 1});
  rows.push_back({.name = "gre_rule_ignores_ipip_packet",
                  .input = to_host / mux_to_host / client_to_vip / syn_to_vip / hello,
                  .in_port = kUplinkPort,
                  .rules = {inbound(Tunnel::kGre)},
                  .outcome = Outcome::kDrop,
                  .drop_reason = DropReason::kNoRule});
  rows.push_back({.name = "gre_with_key_is_not_decapsulated",
                  .input = to_host / mux_to_host / Gre{.flags = 0x2000, .protocol = 0x0800} /
                           Payload{std::string("\0\0\0\x2a", 4)} / client_to_vip / syn_to_vip /
                           hello,
                  .in_port = kUplinkPort,
                  .rules = {inbound(Tunnel::kGre)},
                  .outcome = Outcome::kDrop,
                  .drop_reason = DropReason::kNoRule});
  rows.push_back({.name = "ipip_rule_ignores_gue_packet",
                  .input = to_host / mux_to_host /
                           Udp{.sport = 51234, .dport = flow::kDefaultGuePort} / client_to_vip /
                           syn_to_vip / hello,
                  .in_port = kUplinkPort,
                  .rules = {inbound_ipip},
                  .outcome = Outcome::kDrop,
                  .drop_reason = DropReason::kNoRule});
  rows.push_back({.name = "ipv4_options_kept_through_decap_dnat",
                  .input = to_host / mux_to_host /
                           Ipv4{.src = kClient, .dst = kVip, .ttl = 60, .options = {1, 1, 1, 0}} /
                           syn_to_vip / hello,
                  .in_port = kUplinkPort,
                  .rules = {inbound_ipip},
                  .outcome = Outcome::kOutput,
                  .out_port = kVmPort,
                  .output = Eth{.dst = kVmMac, .src = kVmPortMac} /
                            Ipv4{.src = kClient, .dst = kDip, .ttl = 59, .options = {1, 1, 1, 0}} /
                            Tcp{.sport = kClientPort, .dport = 8080, .flags = kSyn} / hello,
                  .counted_rule = 1});
  rows.push_back(
      {.name = "dsr_return_snat_dec_ttl",
       .input =
           from_vm / Ipv4{.src = kDip, .dst = kClient, .ttl = 64} /
           Tcp{.sport = 8080, .dport = kClientPort, .flags = kSyn | kAck, .seq = 777, .ack = 2} /
           Payload{"response"},
       .in_port = kVmPort,
       .rules = {dsr_return},
       .outcome = Outcome::kOutput,
       .out_port = kUplinkPort,
       .output =
           Eth{.dst = kRouterMac, .src = kHostMac} / Ipv4{.src = kVip, .dst = kClient, .ttl = 63} /
           Tcp{.sport = 80, .dport = kClientPort, .flags = kSyn | kAck, .seq = 777, .ack = 2} /
           Payload{"response"},
       .counted_rule = 2});
  rows.push_back({.name = "dsr_return_ttl_1_exceeded",
                  .input = from_vm / Ipv4{.src = kDip, .dst = kClient, .ttl = 1} /
                           Tcp{.sport = 8080, .dport = kClientPort} / Payload{"late"},
                  .in_port = kVmPort,
                  .rules = {dsr_return},
                  .outcome = Outcome::kDrop,
                  .drop_reason = DropReason::kTtlExceeded,
                  .counted_rule = 2});
  rows.push_back(
      {.name = "ipip_encap_mux",
       .input = client_syn,
       .in_port = kUplinkPort,
       .rules = {mux_encap({.type = Tunnel::kIpip, .outer_src = kMuxPa, .outer_dst = kHostPa})},
       .outcome = Outcome::kOutput,
       .out_port = kUplinkPort,
       .output = Eth{.dst = kHostMac, .src = kMuxMac} /
                 Ipv4{.src = kMuxPa, .dst = kHostPa, .ttl = 64, .tos = 0x10, .df = true} /
                 client_to_vip / syn_to_vip / hello,
       .counted_rule = 3});
  rows.push_back(
      {.name = "gue_encap_mux_flow_hash_source_port",
       .input = client_syn,
       .in_port = kUplinkPort,
       .rules = {mux_encap(
           {.type = Tunnel::kGue, .outer_src = kMuxPa, .outer_dst = kHostPa, .ttl = 32})},
       .outcome = Outcome::kOutput,
       .out_port = kUplinkPort,
       .output = Eth{.dst = kHostMac, .src = kMuxMac} /
                 Ipv4{.src = kMuxPa, .dst = kHostPa, .ttl = 32, .tos = 0x10, .df = true} /
                 Udp{.sport = packet::GueSourcePort(
                         packet::FlowHash(kClient, kVip, flow::kProtoTcp, kClientPort, 80)),
                     .dport = flow::kDefaultGuePort,
                     .zero_checksum = true} /
                 client_to_vip / syn_to_vip / hello,
       .counted_rule = 3});
  rows.push_back(
      {.name = "gue_encap_fixed_ports",
       .input = client_syn,
       .in_port = kUplinkPort,
       .rules = {mux_encap({.type = Tunnel::kGue,
                            .outer_src = kMuxPa,
                            .outer_dst = kHostPa,
                            .gue_dst_port = 7777,
                            .gue_src_port = 1234})},
       .outcome = Outcome::kOutput,
       .out_port = kUplinkPort,
       .output = Eth{.dst = kHostMac, .src = kMuxMac} /
                 Ipv4{.src = kMuxPa, .dst = kHostPa, .ttl = 64, .tos = 0x10, .df = true} /
                 Udp{.sport = 1234, .dport = 7777, .zero_checksum = true} / client_to_vip /
                 syn_to_vip / hello,
       .counted_rule = 3});
  rows.push_back(
      {.name = "gre_encap_mux",
       .input = client_syn,
       .in_port = kUplinkPort,
       .rules = {mux_encap({.type = Tunnel::kGre, .outer_src = kMuxPa, .outer_dst = kHostPa})},
       .outcome = Outcome::kOutput,
       .out_port = kUplinkPort,
       .output = Eth{.dst = kHostMac, .src = kMuxMac} /
                 Ipv4{.src = kMuxPa, .dst = kHostPa, .ttl = 64, .tos = 0x10, .df = true} / Gre{} /
                 client_to_vip / syn_to_vip / hello,
       .counted_rule = 3});
  rows.push_back(
      {.name = "encap_without_headroom",
       .input = client_syn,
       .in_port = kUplinkPort,
       .rules = {mux_encap({.type = Tunnel::kIpip, .outer_src = kMuxPa, .outer_dst = kHostPa})},
       .outcome = Outcome::kDrop,
       .drop_reason = DropReason::kNoHeadroom,
       .counted_rule = 3,
       .zero_headroom = true});

  const Rule udp_dnat{
      .id = 4,
      .priority = 100,
      .match = {.dst = Ipv4Match::Exact(kVip),
                .proto = flow::kProtoUdp,
                .dst_port = PortMatch::Exact(53)},
      .actions = {Action::SetIpv4Dst(kDip), Action::SetL4Dst(5353), Action::Output(kVmPort)},
      .name = "udp dnat vip:53 -> dip:5353"};
  rows.push_back(
      {.name = "udp_dnat_checksum_updated",
       .input = Eth{.dst = kHostMac, .src = kRouterMac} / Ipv4{.src = kClient, .dst = kVip} /
                Udp{.sport = 33333, .dport = 53} / Payload{"query"},
       .rules = {udp_dnat},
       .outcome = Outcome::kOutput,
       .out_port = kVmPort,
       .output = Eth{.dst = kHostMac, .src = kRouterMac} / Ipv4{.src = kClient, .dst = kDip} /
                 Udp{.sport = 33333, .dport = 5353} / Payload{"query"}});
  rows.push_back(
      {.name = "udp_zero_checksum_stays_zero",
       .input = Eth{.dst = kHostMac, .src = kRouterMac} / Ipv4{.src = kClient, .dst = kVip} /
                Udp{.sport = 33333, .dport = 53, .zero_checksum = true} / Payload{"query"},
       .rules = {udp_dnat},
       .outcome = Outcome::kOutput,
       .out_port = kVmPort,
       .output = Eth{.dst = kHostMac, .src = kRouterMac} / Ipv4{.src = kClient, .dst = kDip} /
                 Udp{.sport = 33333, .dport = 5353, .zero_checksum = true} / Payload{"query"}});
  rows.push_back(
      {.name = "icmp_echo_through_dst_rewrite",
       .input = Eth{.dst = kHostMac, .src = kRouterMac} /
                Ipv4{.src = kClient, .dst = kVip, .ttl = 50} /
                Icmp{.type = 8, .id = 0x4242, .seq = 7} / Payload{"ping"},
       .rules = {Rule{.id = 5,
                      .priority = 100,
                      .match = {.dst = Ipv4Match::Exact(kVip), .proto = flow::kProtoIcmp},
                      .actions = {Action::SetIpv4Dst(kDip), Action::DecTtl(),
                                  Action::SetMac(kVmPortMac, kVmMac), Action::Count(),
                                  Action::Output(kVmPort)},
                      .name = "icmp to vip"}},
       .outcome = Outcome::kOutput,
       .out_port = kVmPort,
       .output = Eth{.dst = kVmMac, .src = kVmPortMac} /
                 Ipv4{.src = kClient, .dst = kDip, .ttl = 49} /
                 Icmp{.type = 8, .id = 0x4242, .seq = 7} / Payload{"ping"},
       .counted_rule = 5});
  rows.push_back(
      {.name = "no_matching_rule",
       .input = Eth{.dst = kMuxMac, .src = kRouterMac} / Ipv4{.src = kClient, .dst = kOtherVip} /
                Tcp{.sport = kClientPort, .dport = 80} / hello,
       .rules = {mux_encap({.outer_src = kMuxPa, .outer_dst = kHostPa})},
       .outcome = Outcome::kDrop,
       .drop_reason = DropReason::kNoRule});
  rows.push_back(
      {.name = "higher_priority_rule_wins",
       .input = client_syn,
       .rules = {mux_encap({.outer_src = kMuxPa, .outer_dst = kHostPa}),
                 Rule{.id = 6,
                      .priority = 50,
                      .match = {.src = Ipv4Match{.addr = Ip("198.51.100.0"), .mask = 0xffffff00u}},
                      .actions = {Action::Count(), Action::Drop()},
                      .name = "block 198.51.100.0/24"}},
       .outcome = Outcome::kDrop,
       .drop_reason = DropReason::kDroppedByRule,
       .counted_rule = 6});
  rows.push_back({.name = "to_software_unchanged",
                  .input = client_syn,
                  .rules = {Rule{.id = 7,
                                 .match = {.proto = flow::kProtoTcp},
                                 .actions = {Action::ToSoftware()},
                                 .name = "slow path"}},
                  .outcome = Outcome::kToSoftware,
                  .output = client_syn});

  // Malformed input: the right drop reason, never a crash. A catch-all rule makes sure the
  // drop comes from parsing, not from a missing rule.
  const Rule catch_all{.id = 9, .actions = {Action::Output(1)}, .name = "catch-all"};
  auto malformed = [&](std::string name, Packet input, DropReason reason) {
    rows.push_back({.name = std::move(name),
                    .input = std::move(input),
                    .rules = {catch_all},
                    .outcome = Outcome::kDrop,
                    .drop_reason = reason});
  };
  const Eth eth{.dst = kHostMac, .src = kRouterMac};
  const Ipv4 ip{.src = kClient, .dst = kVip};
  const Tcp tcp{.sport = kClientPort, .dport = 80};
  malformed("truncated_ethernet", (eth / ip / tcp).TruncatedTo(10), DropReason::kTruncated);
  malformed("truncated_ipv4_header", (eth / ip / tcp).TruncatedTo(14 + 12), DropReason::kTruncated);
  malformed("ipv4_ihl_below_5", eth / Ipv4{.src = kClient, .dst = kVip, .ihl = 4} / tcp,
            DropReason::kMalformed);
  malformed("ipv4_total_length_beyond_frame",
            eth / Ipv4{.src = kClient, .dst = kVip, .total_len = 200} / tcp / hello,
            DropReason::kTruncated);
  malformed("ipv4_total_length_below_header",
            eth / Ipv4{.src = kClient, .dst = kVip, .total_len = 16} / tcp, DropReason::kMalformed);
  malformed(
      "truncated_tcp_header",
      eth / Ipv4{.src = kClient, .dst = kVip, .proto = flow::kProtoTcp} / Payload{"0123456789"},
      DropReason::kTruncated);
  malformed("tcp_data_offset_below_5",
            eth / ip / Tcp{.sport = kClientPort, .dport = 80, .data_offset = 3} / hello,
            DropReason::kMalformed);
  malformed("tcp_data_offset_beyond_packet",
            eth / ip / Tcp{.sport = kClientPort, .dport = 80, .data_offset = 15} / hello,
            DropReason::kTruncated);
  malformed("udp_length_below_8",
            eth / ip / Udp{.sport = 1, .dport = 2, .zero_checksum = true, .len = 4} / hello,
            DropReason::kMalformed);
  malformed("truncated_icmp_header",
            eth / Ipv4{.src = kClient, .dst = kVip, .proto = flow::kProtoIcmp} / Payload{"abc"},
            DropReason::kTruncated);
  malformed("ipv4_first_fragment", eth / Ipv4{.src = kClient, .dst = kVip, .mf = true} / tcp,
            DropReason::kFragment);
  malformed(
      "ipv4_later_fragment",
      eth / Ipv4{.src = kClient, .dst = kVip, .frag_offset = 100, .proto = flow::kProtoTcp} / hello,
      DropReason::kFragment);
  malformed("inner_truncated_ipip",
            to_host / mux_to_host / Ipv4{.src = kClient, .dst = kVip, .total_len = 400} / tcp,
            DropReason::kTruncated);
  malformed(
      "ipv6_ethertype",
      Eth{.dst = kHostMac, .src = kRouterMac, .type = 0x86dd} / Payload{std::string(40, '\0')},
      DropReason::kNotIpv4);
  malformed(
      "vlan_ethertype",
      Eth{.dst = kHostMac, .src = kRouterMac, .type = 0x8100} / Payload{std::string(40, '\0')},
      DropReason::kNotIpv4);
  malformed(
      "arp_request",
      Eth{.dst = Mac("ff:ff:ff:ff:ff:ff"), .src = kRouterMac} / Arp{.op = 1,
                                                                    .sender_mac = kRouterMac,
                                                                    .sender_ip = Ip("10.0.1.254"),
                                                                    .target_ip = kHostPa},
      DropReason::kNotIpv4);
  return rows;
}

}  // namespace sluice::fixture
