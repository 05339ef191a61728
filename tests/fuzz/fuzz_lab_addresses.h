// Addresses, MACs and packets of the lab (deploy/lab/config/host1.yaml, mux1.yaml) shared by
// the data-path fuzz targets and the seed corpus generator, so seeds reach the interesting
// code (the right MACs, PAs, VIPs and ports).
#pragma once

#include <cstdint>

#include "offload/sw/fixture_builder.h"

namespace sluice::fuzz::lab {

inline const uint32_t kRouter = fixture::Ip("10.101.0.1");
inline const uint32_t kMux1 = fixture::Ip("10.101.0.11");
inline const uint32_t kHost1 = fixture::Ip("10.101.0.21");
inline const uint32_t kVm1Pa = fixture::Ip("10.101.0.31");
inline const uint32_t kVip = fixture::Ip("10.200.0.10");
inline const uint32_t kVip2 = fixture::Ip("10.200.0.20");
inline const uint32_t kDip1 = fixture::Ip("10.1.0.1");
inline const uint32_t kVmGateway = fixture::Ip("10.1.0.254");
inline const uint32_t kClient = fixture::Ip("10.100.0.2");
inline const uint32_t kInternet = fixture::Ip("203.0.113.5");
inline const flow::MacAddr kRouterMac = fixture::Mac("02:00:00:00:00:01");
inline const flow::MacAddr kMuxMac = fixture::Mac("02:00:00:00:00:11");
inline const flow::MacAddr kBroadcast = fixture::Mac("ff:ff:ff:ff:ff:ff");
inline const flow::MacAddr kVm1Mac = fixture::Mac("02:00:0a:01:00:01");
/// The MACs of the agent fuzz target's ports (net_ring ethdevs all have the all-zero MAC).
inline const flow::MacAddr kAgentUplinkMac = fixture::Mac("00:00:00:00:00:00");
inline const flow::MacAddr kAgentVmPortMac = fixture::Mac("00:00:00:00:00:00");
inline constexpr char kFastpathKeyHex[] =
    "5c1ce0f5a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071829304152";
/// The agent fuzz target's fake wall clock at the start of each input.
inline constexpr uint64_t kFakeClockStart = 1'700'000'000;

/// A client's TCP segment to `vip`:80 as mux1 encapsulates it (IPv4-in-IPv4) to vm1's PA.
inline fixture::Packet InboundIpip(uint8_t flags, uint32_t vip = kVip) {
  using namespace fixture;
  return Eth{.dst = kAgentUplinkMac, .src = kRouterMac} /
         Ipv4{.src = kMux1, .dst = kVm1Pa, .ttl = 63} / Ipv4{.src = kClient, .dst = vip, .ttl = 62} /
         Tcp{.sport = 40000, .dport = 80, .flags = flags} / Payload{"GET / HTTP/1.1"};
}

/// The same in GUE.
inline fixture::Packet InboundGue(uint8_t flags) {
  using namespace fixture;
  return Eth{.dst = kAgentUplinkMac, .src = kRouterMac} /
         Ipv4{.src = kMux1, .dst = kVm1Pa, .ttl = 63} /
         Udp{.sport = 50000, .dport = flow::kDefaultGuePort, .zero_checksum = true} /
         Ipv4{.src = kClient, .dst = kVip, .ttl = 62} /
         Tcp{.sport = 40000, .dport = 80, .flags = flags} / Payload{"GET / HTTP/1.1"};
}

/// vm1's answer to the client (from DIP:8080), as the VM sends it to its port.
inline fixture::Packet Vm1Reply(uint8_t flags) {
  using namespace fixture;
  return Eth{.dst = kAgentVmPortMac, .src = kVm1Mac} /
         Ipv4{.src = kDip1, .dst = kClient, .ttl = 64} /
         Tcp{.sport = 8080, .dport = 40000, .flags = flags} / Payload{"HTTP/1.1 200 OK"};
}

}  // namespace sluice::fuzz::lab
