#include "offload/packet/parse.h"

#include <cstring>

namespace sluice::packet {
namespace {

constexpr uint16_t kArpLen = 28;
constexpr uint16_t kTcpHeaderLen = 20;
constexpr uint16_t kIcmpHeaderLen = 8;
constexpr uint8_t kIcmpEchoReply = 0;
constexpr uint8_t kIcmpEchoRequest = 8;

inline uint16_t Load16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
inline uint32_t Load32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | p[3];
}
inline void Store16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void Store32(uint8_t* p, uint32_t v) {
  Store16(p, static_cast<uint16_t>(v >> 16));
  Store16(p + 2, static_cast<uint16_t>(v));
}

// One IPv4 header as found at `offset`, bounded by `end` (the bytes its enclosing layer owns).
struct Ipv4Header {
  uint32_t src;
  uint32_t dst;
  uint16_t header_len;
  uint16_t end;  // offset just past the IPv4 packet (trailing padding excluded)
  uint8_t proto;
  uint8_t ttl;
};

bool ParseIpv4(const uint8_t* frame, uint32_t offset, uint32_t end, Ipv4Header* ip,
               DropReason* reason) {
  if (end < offset + kIpv4HeaderLen) {
    *reason = DropReason::kTruncated;
    return false;
  }
  const uint8_t* h = frame + offset;
  const uint16_t header_len = static_cast<uint16_t>((h[0] & 0x0f) * 4);
  if ((h[0] >> 4) != 4 || header_len < kIpv4HeaderLen) {
    *reason = DropReason::kMalformed;
    return false;
  }
  if (end < offset + header_len) {
    *reason = DropReason::kTruncated;
    return false;
  }
  const uint16_t total_len = Load16(h + 2);
  if (total_len < header_len) {
    *reason = DropReason::kMalformed;
    return false;
  }
  if (end < offset + total_len) {
    *reason = DropReason::kTruncated;
    return false;
  }
  const uint16_t frag = Load16(h + 6);
  if ((frag & 0x3fff) != 0) {  // MF set or a non-zero fragment offset
    *reason = DropReason::kFragment;
    return false;
  }
  ip->src = Load32(h + 12);
  ip->dst = Load32(h + 16);
  ip->header_len = header_len;
  ip->end = static_cast<uint16_t>(offset + total_len);
  ip->proto = h[9];
  ip->ttl = h[8];
  return true;
}

// Parses the L4 header of the innermost IPv4 packet, which spans [offset, end).
bool ParseL4(const uint8_t* frame, uint32_t offset, uint32_t end, uint8_t proto, ParsedPacket* out,
             DropReason* reason) {
  const uint8_t* l4 = frame + offset;
  const uint32_t avail = end - offset;
  switch (proto) {
    case flow::kProtoTcp: {
      if (avail < kTcpHeaderLen) {
        *reason = DropReason::kTruncated;
        return false;
      }
      const uint32_t header_len = (l4[12] >> 4) * 4u;
      if (header_len < kTcpHeaderLen) {
        *reason = DropReason::kMalformed;
        return false;
      }
      if (avail < header_len) {
        *reason = DropReason::kTruncated;
        return false;
      }
      out->src_port = Load16(l4);
      out->dst_port = Load16(l4 + 2);
      out->tcp_flags = l4[13];
      break;
    }
    case flow::kProtoUdp: {
      if (avail < kUdpHeaderLen) {
        *reason = DropReason::kTruncated;
        return false;
      }
      const uint16_t udp_len = Load16(l4 + 4);
      if (udp_len < kUdpHeaderLen) {
        *reason = DropReason::kMalformed;
        return false;
      }
      if (avail < udp_len) {
        *reason = DropReason::kTruncated;
        return false;
      }
      out->src_port = Load16(l4);
      out->dst_port = Load16(l4 + 2);
      break;
    }
    case flow::kProtoIcmp: {
      if (avail < kIcmpHeaderLen) {
        *reason = DropReason::kTruncated;
        return false;
      }
      out->icmp_type = l4[0];
      out->icmp_code = l4[1];
      if (out->icmp_type == kIcmpEchoRequest || out->icmp_type == kIcmpEchoReply) {
        out->src_port = Load16(l4 + 4);
        out->dst_port = out->src_port;
      }
      break;
    }
    default:
      return true;  // no L4 header we understand; l4_offset stays 0
  }
  out->l4_offset = static_cast<uint16_t>(offset);
  return true;
}

// True if a UDP datagram's payload is GUE variant 1 carrying IPv4 (first nibble 4).
bool IsGue(const uint8_t* frame, uint32_t udp_offset, uint32_t end, uint16_t gue_port) {
  if (end < udp_offset + kUdpHeaderLen + 1u) return false;
  const uint8_t* udp = frame + udp_offset;
  return Load16(udp + 2) == gue_port && (udp[kUdpHeaderLen] >> 4) == 4;
}

// True if an IPv4 protocol-47 payload is a basic GRE header (RFC 2784: no checksum, key or
// sequence number, version 0) carrying IPv4.
bool IsGreIpv4(const uint8_t* frame, uint32_t gre_offset, uint32_t end) {
  if (end < gre_offset + kGreHeaderLen + 1u) return false;
  const uint8_t* gre = frame + gre_offset;
  return Load16(gre) == 0 && Load16(gre + 2) == kEtherTypeIpv4 && (gre[kGreHeaderLen] >> 4) == 4;
}

}  // namespace

ParseStatus Parse(const uint8_t* frame, uint32_t len, uint16_t gue_port, ParsedPacket* out,
                  DropReason* reason) {
  *out = ParsedPacket{};
  if (len < kEthHeaderLen) {
    *reason = DropReason::kTruncated;
    return ParseStatus::kDrop;
  }
  out->ether_type = Load16(frame + 12);
  if (out->ether_type == kEtherTypeArp) return ParseStatus::kArp;
  if (out->ether_type != kEtherTypeIpv4) {
    *reason = DropReason::kNotIpv4;
    return ParseStatus::kDrop;
  }
  if (len > UINT16_MAX) len = UINT16_MAX;  // an IPv4 packet cannot be longer anyway

  Ipv4Header outer;
  if (!ParseIpv4(frame, kEthHeaderLen, len, &outer, reason)) return ParseStatus::kDrop;
  out->l3_offset = kEthHeaderLen;
  out->outer_src = outer.src;
  out->outer_dst = outer.dst;

  Ipv4Header inner = outer;
  uint32_t inner_offset = kEthHeaderLen;
  const uint32_t outer_l4 = kEthHeaderLen + outer.header_len;
  if (outer.proto == flow::kProtoIpip) {
    out->tunnel = flow::Tunnel::kIpip;
    inner_offset = outer_l4;
  } else if (outer.proto == flow::kProtoUdp && IsGue(frame, outer_l4, outer.end, gue_port)) {
    const uint16_t udp_len = Load16(frame + outer_l4 + 4);
    if (udp_len < kUdpHeaderLen) {
      *reason = DropReason::kMalformed;
      return ParseStatus::kDrop;
    }
    if (outer.end < outer_l4 + udp_len) {
      *reason = DropReason::kTruncated;
      return ParseStatus::kDrop;
    }
    out->tunnel = flow::Tunnel::kGue;
    out->outer_src_port = Load16(frame + outer_l4);
    out->outer_dst_port = Load16(frame + outer_l4 + 2);
    inner_offset = outer_l4 + kUdpHeaderLen;
    outer.end = static_cast<uint16_t>(outer_l4 + udp_len);
  } else if (outer.proto == flow::kProtoGre && IsGreIpv4(frame, outer_l4, outer.end)) {
    out->tunnel = flow::Tunnel::kGre;
    inner_offset = outer_l4 + kGreHeaderLen;
  }
  if (out->tunnel != flow::Tunnel::kNone &&
      !ParseIpv4(frame, inner_offset, outer.end, &inner, reason)) {
    return ParseStatus::kDrop;
  }
  out->inner_l3_offset = static_cast<uint16_t>(inner_offset);
  out->src = inner.src;
  out->dst = inner.dst;
  out->proto = inner.proto;
  out->ttl = inner.ttl;
  // One level of tunnel only: an IPIP packet inside a tunnel is not looked into further.
  if (!ParseL4(frame, inner_offset + inner.header_len, inner.end, inner.proto, out, reason)) {
    return ParseStatus::kDrop;
  }
  return ParseStatus::kIpv4;
}

bool ParseArp(const uint8_t* frame, uint32_t len, ArpPacket* out, DropReason* reason) {
  if (len < kEthHeaderLen + kArpLen) {
    *reason = DropReason::kTruncated;
    return false;
  }
  if (Load16(frame + 12) != kEtherTypeArp) {
    *reason = DropReason::kNotIpv4;
    return false;
  }
  const uint8_t* arp = frame + kEthHeaderLen;
  if (Load16(arp) != 1 || Load16(arp + 2) != kEtherTypeIpv4) {
    *reason = DropReason::kNotIpv4;  // not Ethernet/IPv4 ARP
    return false;
  }
  const uint16_t op = Load16(arp + 6);
  if (arp[4] != 6 || arp[5] != 4 || (op != 1 && op != 2)) {
    *reason = DropReason::kMalformed;
    return false;
  }
  out->op = op;
  memcpy(out->sender_mac.data(), arp + 8, 6);
  out->sender_ip = Load32(arp + 14);
  memcpy(out->target_mac.data(), arp + 18, 6);
  out->target_ip = Load32(arp + 24);
  return true;
}

uint16_t BuildArp(uint8_t* frame, uint16_t op, const flow::MacAddr& eth_dst,
                  const flow::MacAddr& sender_mac, uint32_t sender_ip,
                  const flow::MacAddr& target_mac, uint32_t target_ip) {
  // Copy the inputs first: callers may pass references into the frame being overwritten.
  const flow::MacAddr dst = eth_dst;
  const flow::MacAddr sha = sender_mac;
  const flow::MacAddr tha = target_mac;
  memcpy(frame, dst.data(), 6);
  memcpy(frame + 6, sha.data(), 6);
  Store16(frame + 12, kEtherTypeArp);
  uint8_t* arp = frame + kEthHeaderLen;
  Store16(arp, 1);
  Store16(arp + 2, kEtherTypeIpv4);
  arp[4] = 6;
  arp[5] = 4;
  Store16(arp + 6, op);
  memcpy(arp + 8, sha.data(), 6);
  Store32(arp + 14, sender_ip);
  memcpy(arp + 18, tha.data(), 6);
  Store32(arp + 24, target_ip);
  return kEthHeaderLen + kArpLen;
}

namespace {

inline uint32_t Rotl32(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

// One murmur3_32 body round.
inline uint32_t MurmurMix(uint32_t h, uint32_t k) {
  k *= 0xcc9e2d51u;
  k = Rotl32(k, 15);
  k *= 0x1b873593u;
  h ^= k;
  h = Rotl32(h, 13);
  return h * 5 + 0xe6546b64u;
}

}  // namespace

// murmur3_32 over (src, dst, ports, proto) with a fixed seed: deterministic on every host.
uint32_t FlowHash(uint32_t src, uint32_t dst, uint8_t proto, uint16_t src_port, uint16_t dst_port) {
  constexpr uint32_t kSeed = 0x51c3e5a1u;
  uint32_t h = kSeed;
  h = MurmurMix(h, src);
  h = MurmurMix(h, dst);
  h = MurmurMix(h, static_cast<uint32_t>(src_port) << 16 | dst_port);
  h = MurmurMix(h, proto);
  h ^= 16;  // length in bytes
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

}  // namespace sluice::packet
