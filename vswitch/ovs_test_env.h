// Test-only: a private OVS with one bridge of dummy ports for the vswitch tests that need a
// real ovs-vswitchd. Packets are injected with `netdev-dummy/receive`; what a port sends is
// read back from its tx pcap file. The bridge's datapath type is "dummy", which is the
// userspace datapath (dpif-netdev) registered under another name, so flows, tunnel pop,
// set_field and dec_ttl run exactly as on a netdev bridge.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "vswitch/executor.h"
#include "vswitch/ovs_instance.h"

namespace sluice::vswitch::testing {

inline constexpr char kBridge[] = "svfix";
inline constexpr uint32_t kSlowPathOfport = 10;
inline constexpr uint32_t kProbeOfport = 11;
inline constexpr uint32_t kGreOfport = 20;

/// IR port n ↔ dummy port "p<n>" with OpenFlow number n + 1 (n = 0, 1, 2).
inline uint32_t OfportOf(uint16_t ir_port) { return ir_port + 1u; }

class DummyBridge {
 public:
  /// Starts OVS in a fresh run directory and builds the bridge with `hwaddr` as its MAC and
  /// `tunnel_ip` (host order, /24) as the tunnel endpoint address of its LOCAL port.
  static absl::StatusOr<std::unique_ptr<DummyBridge>> Start(const std::string& hwaddr,
                                                            uint32_t tunnel_ip);
  ~DummyBridge();

  OvsInstance& ovs() { return *ovs_; }
  OvsPorts Ports() const;
  BaseFlowSpec Base(uint32_t tunnel_ip) const;

  /// Injects `frame` on OpenFlow port `ofport`, then a probe frame behind it, and waits until
  /// the probe comes out (packets of one port are processed in order). Returns the frames
  /// every port sent meanwhile, by OpenFlow port (probe port excluded).
  absl::StatusOr<std::vector<std::pair<uint32_t, std::vector<uint8_t>>>> Send(
      uint32_t ofport, const std::vector<uint8_t>& frame);
  /// Drops every datapath flow so the next packet is classified by the current OpenFlow table.
  absl::Status PurgeDatapath();

 private:
  DummyBridge() = default;
  std::vector<std::vector<uint8_t>> ReadPcap(uint32_t ofport) const;
  std::string PortName(uint32_t ofport) const;

  std::string run_dir_;
  std::unique_ptr<OvsInstance> ovs_;
  std::vector<uint32_t> ofports_;
  std::vector<size_t> seen_;  // pcap records already returned, parallel to ofports_
};

}  // namespace sluice::vswitch::testing
