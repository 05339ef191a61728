#include "hostagent/reject.h"

#include <cstring>

#include "offload/packet/checksum.h"

namespace sluice::agent {
namespace {

void Put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void Put32(uint8_t* p, uint32_t v) {
  Put16(p, static_cast<uint16_t>(v >> 16));
  Put16(p + 2, static_cast<uint16_t>(v));
}
uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t Get32(const uint8_t* p) { return uint32_t{Get16(p)} << 16 | Get16(p + 2); }

// Ethernet + IPv4 header (no options) for a packet of `l4_len` bytes of protocol `proto`.
uint8_t* WriteHeaders(uint8_t* out, const flow::MacAddr& dst_mac, const flow::MacAddr& src_mac,
                      uint32_t src, uint32_t dst, uint8_t proto, uint16_t l4_len) {
  memcpy(out, dst_mac.data(), 6);
  memcpy(out + 6, src_mac.data(), 6);
  Put16(out + 12, packet::kEtherTypeIpv4);
  uint8_t* ip = out + packet::kEthHeaderLen;
  memset(ip, 0, packet::kIpv4HeaderLen);
  ip[0] = 0x45;
  Put16(ip + 2, static_cast<uint16_t>(packet::kIpv4HeaderLen + l4_len));
  Put16(ip + 6, 0x4000);  // DF
  ip[8] = 64;
  ip[9] = proto;
  Put32(ip + 12, src);
  Put32(ip + 16, dst);
  const uint16_t sum = packet::Ipv4HeaderChecksum(ip, packet::kIpv4HeaderLen);
  memcpy(ip + 10, &sum, 2);
  return ip + packet::kIpv4HeaderLen;
}

}  // namespace

uint16_t BuildReject(const uint8_t* frame, const packet::ParsedPacket& pkt,
                     const flow::MacAddr& port_mac, uint32_t gateway, uint8_t* out) {
  flow::MacAddr vm_mac;
  memcpy(vm_mac.data(), frame + 6, 6);
  const uint8_t* ip = frame + pkt.l3_offset;
  const uint16_t ip_header_len = static_cast<uint16_t>((ip[0] & 0x0f) * 4);
  const uint16_t ip_total = Get16(ip + 2);
  if (pkt.proto == flow::kProtoTcp && pkt.l4_offset != 0) {
    const uint8_t* tcp = frame + pkt.l4_offset;
    const uint32_t seq = Get32(tcp + 4);
    const uint32_t ack = Get32(tcp + 8);
    const uint8_t flags = tcp[13];
    const uint32_t segment_len = ip_total - ip_header_len - (tcp[12] >> 4) * 4u +
                                 ((flags & 0x02) ? 1 : 0) + ((flags & 0x01) ? 1 : 0);
    constexpr uint16_t kTcpLen = 20;
    uint8_t* t = WriteHeaders(out, vm_mac, port_mac, pkt.dst, pkt.src, flow::kProtoTcp, kTcpLen);
    memset(t, 0, kTcpLen);
    Put16(t, pkt.dst_port);
    Put16(t + 2, pkt.src_port);
    if (flags & 0x10) {  // ACK set: RST with seq = their ACK, no ACK
      Put32(t + 4, ack);
      t[13] = 0x04;
    } else {
      Put32(t + 8, seq + segment_len);
      t[13] = 0x14;  // RST | ACK
    }
    t[12] = 5 << 4;
    uint8_t pseudo[12];
    Put32(pseudo, pkt.dst);
    Put32(pseudo + 4, pkt.src);
    pseudo[8] = 0;
    pseudo[9] = flow::kProtoTcp;
    Put16(pseudo + 10, kTcpLen);
    const uint16_t sum = static_cast<uint16_t>(
        ~packet::OnesComplementSum(t, kTcpLen, packet::OnesComplementSum(pseudo, 12)));
    memcpy(t + 16, &sum, 2);
    return static_cast<uint16_t>(t + kTcpLen - out);
  }
  if (pkt.proto == flow::kProtoUdp) {
    const uint16_t quoted = static_cast<uint16_t>(
        ip_header_len + (ip_total - ip_header_len < 8 ? ip_total - ip_header_len : 8));
    const uint16_t icmp_len = static_cast<uint16_t>(8 + quoted);
    uint8_t* c = WriteHeaders(out, vm_mac, port_mac, gateway, pkt.src, flow::kProtoIcmp,
                              icmp_len);
    memset(c, 0, 8);
    c[0] = kIcmpUnreachable;
    c[1] = kIcmpAdminProhibited;
    memcpy(c + 8, ip, quoted);
    const uint16_t sum = static_cast<uint16_t>(~packet::OnesComplementSum(c, icmp_len));
    memcpy(c + 2, &sum, 2);
    return static_cast<uint16_t>(c + icmp_len - out);
  }
  return 0;
}

}  // namespace sluice::agent
