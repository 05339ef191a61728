// The clear answer a VM gets when the agent cannot translate its new outbound connection
// (SNAT ports exhausted, no lease, flow table full): a TCP RST for TCP, an ICMP destination
// unreachable (type 3, code 13 "communication administratively prohibited") for UDP. These
// are new packets the agent originates, like ARP replies, not rewrites of the VM's packet.
#pragma once

#include <cstdint>

#include "offload/flow/rule.h"
#include "offload/packet/parse.h"

namespace sluice::agent {

/// Room `BuildReject` needs: Ethernet + IPv4 + ICMP + the quoted IPv4 header (≤ 60) + 8.
inline constexpr uint16_t kMaxRejectLen = 14 + 20 + 8 + 60 + 8;
inline constexpr uint8_t kIcmpUnreachable = 3;
inline constexpr uint8_t kIcmpAdminProhibited = 13;

/// Writes into `out` the reject for the VM's packet `frame` (parsed as `pkt`, not tunnelled):
/// TCP: RST from the destination (RFC 9293 reset generation: seq = the segment's ACK if it
/// had one, else seq 0 with ACK = seq + length); UDP: ICMP unreachable from `gateway`
/// quoting the IPv4 header and 8 bytes. Addressed to the VM's MAC (the frame's source) from
/// `port_mac`. Returns the frame length, 0 for other protocols. `out` may not alias `frame`.
uint16_t BuildReject(const uint8_t* frame, const packet::ParsedPacket& pkt,
                     const flow::MacAddr& port_mac, uint32_t gateway, uint8_t* out);

}  // namespace sluice::agent
