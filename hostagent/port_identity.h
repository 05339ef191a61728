// Which device a DPDK devargs string names, so two spellings of the same port compare equal:
// the agent's config says "net_af_packet1,iface=vm1", the libvirt hook sends
// "net_af_packet_vm1,iface=vm1"; "3b:00.0,representor=[5],dv_flow_en=1" and
// "0000:3b:00.0,representor=vf5" are the same VF representor. The identity is the driver and
// what selects the device (interface, socket path, PCI address, representor); the vdev's
// instance suffix, option order and tuning options (qpairs, client, queue sizes ...) are not
// part of it.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace sluice::agent {

struct PortIdentity {
  /// "pci" for a PCI device, else the vdev driver without its instance suffix
  /// ("net_af_packet", "net_vhost", ...).
  std::string driver;
  /// What selects the device: the PCI address (0000:3b:00.0, lower case), the kernel
  /// interface (af_packet, af_xdp, tap, pcap), the socket or device path (vhost, virtio_user,
  /// memif with its id), or, for a driver this file does not know, the whole devargs with
  /// its options sorted.
  std::string device;
  /// PCI only: the representor ("vf5", "pf1vf2", "sf3", a list or range as written), or "".
  std::string representor;

  bool operator==(const PortIdentity&) const = default;
  /// "net_af_packet iface=vm1", "pci 0000:3b:00.0 representor=vf5": for messages.
  std::string ToString() const;
};

/// Parses devargs ("<name>[,key=value]..."). INVALID_ARGUMENT for an empty name, a
/// malformed option, a PCI address out of range, or a known vdev driver without the option
/// that selects its device (net_af_packet without iface=).
absl::StatusOr<PortIdentity> ParsePortIdentity(const std::string& devargs);

/// True when both parse and name the same device; otherwise compares the text.
bool SamePort(const std::string& a, const std::string& b);

}  // namespace sluice::agent
