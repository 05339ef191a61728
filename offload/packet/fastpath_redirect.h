// The Fastpath redirect: the control message a mux sends to the two hosts of an
// intra-cloud connection once its handshake is done, so they encapsulate to each other
// directly from then on. Authenticated with HMAC-SHA256 under a key shared by the muxes and
// agents (a VM cannot forge one without the key); a timestamp bounds replays.
//
// Wire format: a UDP datagram (port kFastpathUdpPort both ways) from the mux PA to the host
// PA, not encapsulated. Payload, big-endian, kFastpathRedirectLen bytes:
//    0  "SLFP"            4  version (1)        5  type (1 = redirect)   6  reserved (0)
//    8  flow src IPv4    12  flow dst IPv4     16  flow src port        18  flow dst port
//   20  IP protocol      21  dst host's encap  22  src host's encap   23  reserved (0)
//   24  DIP chosen by the mux
//   28  dst PA (the backend's PA, i.e. the destination VM's underlay address)
//   32  src host PA (the host owning the flow's SNAT source port)
//   36  timestamp, unix seconds (8)            44  HMAC-SHA256 over bytes 0..43 (32)
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "offload/flow/rule.h"

namespace sluice::packet {

inline constexpr uint16_t kFastpathUdpPort = 6090;
inline constexpr size_t kFastpathRedirectLen = 76;
/// Frame length of a redirect: Ethernet + IPv4 + UDP + payload.
inline constexpr size_t kFastpathRedirectFrameLen = 14 + 20 + 8 + kFastpathRedirectLen;

using FastpathKey = std::array<uint8_t, 32>;

/// One redirect. The flow is as the mux saw it (source = the SNAT'd VIP:port of the client
/// VM, destination = the VIP:port it connected to); addresses/ports in host order.
struct FastpathRedirect {
  uint32_t flow_src = 0;
  uint32_t flow_dst = 0;
  uint16_t flow_src_port = 0;
  uint16_t flow_dst_port = 0;
  uint8_t proto = 0;
  uint32_t dip = 0;
  uint32_t dst_pa = 0;
  uint32_t src_host_pa = 0;
  uint64_t timestamp_s = 0;
  /// What each host decapsulates from its Fastpath peer (the mux's backend and SNAT range
  /// `encap:`; GRE for an Open vSwitch host). kNone (0 on the wire, an older mux) means IPIP
  /// to the agents; decoding keeps it, so a payload re-encodes byte for byte.
  flow::Tunnel dst_encap = flow::Tunnel::kIpip;
  flow::Tunnel src_encap = flow::Tunnel::kIpip;
};

enum class RedirectCheck : uint8_t {
  kOk,
  kMalformed,  ///< Wrong length, magic, version or type.
  kBadAuth,    ///< HMAC does not verify: forged or wrong key.
};

/// Writes the kFastpathRedirectLen-byte payload, HMAC included.
void EncodeFastpathRedirect(const FastpathRedirect& redirect, const FastpathKey& key,
                            uint8_t* payload);

/// Checks and decodes a payload (constant-time HMAC comparison).
RedirectCheck DecodeFastpathRedirect(const uint8_t* payload, size_t len, const FastpathKey& key,
                                     FastpathRedirect* out);

/// Writes a complete Ethernet/IPv4/UDP frame (kFastpathRedirectFrameLen bytes) carrying the
/// redirect from `src_ip` to `dst_ip`; IPv4 checksum set, UDP checksum 0.
void BuildFastpathRedirectFrame(uint8_t* frame, const flow::MacAddr& src_mac,
                                const flow::MacAddr& dst_mac, uint32_t src_ip, uint32_t dst_ip,
                                const FastpathRedirect& redirect, const FastpathKey& key);

/// Parses "64 hex digits" into a key; false if malformed.
bool ParseFastpathKey(const char* hex, FastpathKey* key);

}  // namespace sluice::packet
