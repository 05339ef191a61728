// Reads what the libvirt hook needs from a domain XML (libvirt's <domain> format, as the qemu
// hook receives it on stdin): the domain's name and UUID, its network interfaces and the
// Sluice bindings (DIP, PA, VIP endpoints per MAC) kept in a <metadata> child in Sluice's own
// XML namespace (kSluiceNamespace; the format is in deploy/libvirt/README.md).
//
// Every error names the origin, the line and the element, e.g.
//   "stdin:31: <sluice:endpoint>: vip '10.0.0.1:80' must be a.b.c.d:port/proto".
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace sluice::libvirt {

/// XML namespace of Sluice's element under <metadata>; the prefix is free, the URI is not.
inline constexpr char kSluiceNamespace[] = "http://sluice.dev/xmlns/libvirt/1";

enum class InterfaceType {
  kVhostUser,    ///< <interface type='vhostuser'>: a vhost-user socket (OVS-DPDK, DPDK vhost).
  kHostdev,      ///< <interface type='hostdev'>: an SR-IOV VF passed through by PCI address.
  kBridge,       ///< <interface type='bridge'>: a tap on a Linux or OVS bridge.
  kEthernet,     ///< <interface type='ethernet'>: a tap libvirt leaves unconnected.
  kNetwork,      ///< <interface type='network'>: a libvirt virtual network (tap in live XML).
  kUnsupported,  ///< Any other type (user, direct, mcast ...); Sluice may not bind to it.
};

/// libvirt's spelling of `type` ("vhostuser", "hostdev", ...).
std::string_view InterfaceTypeName(InterfaceType type);

struct PciAddress {
  uint16_t domain = 0;
  uint8_t bus = 0;
  uint8_t slot = 0;
  uint8_t function = 0;
  /// "0000:03:10.2", the form sysfs and DPDK use.
  std::string ToString() const;
  bool operator==(const PciAddress&) const = default;
};

struct DomainInterface {
  InterfaceType type = InterfaceType::kUnsupported;
  std::string type_name;                      ///< As written in the XML.
  std::optional<std::array<uint8_t, 6>> mac;  ///< Always present in a running domain's XML.
  std::string vhostuser_socket;               ///< kVhostUser: <source path>.
  std::string vhostuser_mode;                 ///< kVhostUser: <source mode> (client|server).
  std::optional<PciAddress> pci;              ///< kHostdev: the VF's <source><address>.
  std::string tap;                            ///< bridge/ethernet/network: <target dev>.
  std::string bridge;                         ///< kBridge: <source bridge>.
  std::string network;                        ///< kNetwork: <source network>.
  int line = 0;
};

/// A VIP endpoint served by one bound interface: vip:port/proto → DIP:dip_port.
struct SluiceEndpoint {
  uint32_t vip = 0;  ///< host order
  uint16_t port = 0;
  uint8_t proto = 6;
  uint16_t dip_port = 0;  ///< Defaults to `port`.
  int line = 0;
};

/// <sluice:interface>: what Sluice serves on the interface with this MAC.
struct SluiceBinding {
  std::array<uint8_t, 6> mac{};
  uint32_t dip = 0;      ///< The VM's address on this interface.
  uint32_t pa = 0;       ///< Underlay address muxes encapsulate to; 0 = the host's PA.
  uint32_t gateway = 0;  ///< The VM's default gateway the agent answers ARP for; 0 = none.
  std::vector<SluiceEndpoint> endpoints;
  size_t interface_index = 0;  ///< Into Domain::interfaces (the interface with this MAC).
  int line = 0;
};

/// Who the domain is, and whether it carries Sluice metadata at all.
struct DomainIdentity {
  std::string name;
  std::string uuid;  ///< Lower case, with dashes; empty if the XML has none.
  bool has_sluice_metadata = false;
};

struct Domain {
  DomainIdentity identity;
  std::vector<DomainInterface> interfaces;  ///< In document order.
  std::vector<SluiceBinding> bindings;      ///< Empty unless identity.has_sluice_metadata.
};

/// Parses and checks a whole domain. A domain without Sluice metadata parses fine (it is
/// simply not Sluice's); one with Sluice metadata must have interfaces, and every binding
/// must name, by MAC, an interface of a supported type that has what the agent needs (a
/// socket path, a PCI address or a tap name).
absl::StatusOr<Domain> ParseDomainXml(std::string_view xml, const std::string& origin);

/// Reads only the name, UUID and whether Sluice metadata is present (not its contents), so a
/// stopped VM can be detached even if its metadata was edited into something invalid.
absl::StatusOr<DomainIdentity> ParseDomainIdentity(std::string_view xml, const std::string& origin);

}  // namespace sluice::libvirt
