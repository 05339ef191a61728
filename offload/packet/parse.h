// Parsing of Ethernet / ARP / IPv4 / TCP / UDP / ICMP and of the mux→host tunnels
// (IPv4-in-IPv4, GUE, basic GRE carrying IPv4). Works on a contiguous byte range (one mbuf
// segment).
#pragma once

#include <cstdint>

#include "offload/flow/rule.h"
#include "offload/packet/drop_reason.h"

namespace sluice::packet {

inline constexpr uint16_t kEtherTypeIpv4 = 0x0800;
inline constexpr uint16_t kEtherTypeArp = 0x0806;
inline constexpr uint16_t kEthHeaderLen = 14;
inline constexpr uint16_t kIpv4HeaderLen = 20;  // without options
inline constexpr uint16_t kUdpHeaderLen = 8;
inline constexpr uint16_t kGreHeaderLen = 4;  ///< Basic GRE header (RFC 2784), no options.

/// What Parse found. Offsets are from the start of the frame; addresses and ports are in
/// host byte order. For a tunnelled packet, src/dst/proto/ports describe the inner packet.
struct ParsedPacket {
  uint16_t ether_type = 0;
  uint16_t l3_offset = 0;        ///< Outermost IPv4 header.
  uint16_t inner_l3_offset = 0;  ///< Innermost IPv4 header (== l3_offset without tunnel).
  uint16_t l4_offset = 0;        ///< L4 header of the innermost IPv4; 0 if none.
  flow::Tunnel tunnel = flow::Tunnel::kNone;
  uint32_t outer_src = 0;  ///< Outermost IPv4 addresses (== src/dst without tunnel).
  uint32_t outer_dst = 0;
  uint32_t src = 0;
  uint32_t dst = 0;
  uint8_t proto = 0;
  uint8_t ttl = 0;          ///< Of the innermost IPv4 header.
  uint8_t tcp_flags = 0;    ///< TCP only.
  uint16_t src_port = 0;    ///< TCP/UDP ports; for ICMP echo request/reply the identifier.
  uint16_t dst_port = 0;    ///< TCP/UDP ports; for ICMP echo the identifier as well.
  uint8_t icmp_type = 0;
  uint8_t icmp_code = 0;
  uint16_t outer_src_port = 0;  ///< GUE only: the outer UDP ports (0 otherwise).
  uint16_t outer_dst_port = 0;
};

enum class ParseStatus : uint8_t {
  kIpv4,  ///< An IPv4 packet (possibly tunnelled) — ParsedPacket filled in.
  kArp,   ///< An Ethernet/IPv4 ARP packet — use ParseArp.
  kDrop,  ///< Not usable; `*reason` says why.
};

/// Parses a frame. `gue_port` is the UDP destination port that marks GUE.
/// A packet with IPv4 options is accepted (options skipped). Fragments return kDrop/kFragment.
ParseStatus Parse(const uint8_t* frame, uint32_t len, uint16_t gue_port, ParsedPacket* out,
                  DropReason* reason);

/// An Ethernet/IPv4 ARP request or reply.
struct ArpPacket {
  uint16_t op = 0;  ///< 1 request, 2 reply.
  flow::MacAddr sender_mac{};
  uint32_t sender_ip = 0;
  flow::MacAddr target_mac{};
  uint32_t target_ip = 0;
};

/// Parses the ARP payload of a frame whose ether_type is ARP. Only Ethernet/IPv4 ARP.
bool ParseArp(const uint8_t* frame, uint32_t len, ArpPacket* out, DropReason* reason);

/// Writes a complete ARP frame (42 bytes) into `frame` (room for ≥ 42 bytes); returns length.
uint16_t BuildArp(uint8_t* frame, uint16_t op, const flow::MacAddr& eth_dst,
                  const flow::MacAddr& sender_mac, uint32_t sender_ip,
                  const flow::MacAddr& target_mac, uint32_t target_ip);

/// 5-tuple flow hash (src, dst, proto, ports), the same on every host and mux.
uint32_t FlowHash(uint32_t src, uint32_t dst, uint8_t proto, uint16_t src_port,
                  uint16_t dst_port);

/// GUE outer UDP source port for an inner flow hash: in 49152..65535 so that NIC RSS on the
/// outer header spreads the inner flows.
inline constexpr uint16_t GueSourcePort(uint32_t flow_hash) {
  return static_cast<uint16_t>(49152 + flow_hash % 16384);
}

}  // namespace sluice::packet
