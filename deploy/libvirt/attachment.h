// Turns a parsed domain into what sluice-agent's AttachVm takes: one attachment per bound
// interface, with the agent-side name of the VM port and the DPDK devargs the agent opens
// for it (vhost-user socket, the VF's representor, or an af_packet port on the tap).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "deploy/libvirt/domain_xml.h"

namespace sluice::libvirt {

enum class PortKind { kVhostUser, kHostdev, kTap };

/// One bound interface as the agent sees it (sluice.v1.VmAttachment).
struct VmPortAttachment {
  /// "<domain>" when the domain binds one interface, "<domain>:<n>" (n = order of the
  /// Sluice <interface> elements, from 0) when it binds several.
  std::string name;
  PortKind kind = PortKind::kTap;
  std::string port;  ///< DPDK devargs of the VM's port on the host.
  std::array<uint8_t, 6> mac{};
  uint32_t dip = 0;
  uint32_t pa = 0;       ///< 0 = unset (the agent uses the host's PA).
  uint32_t gateway = 0;  ///< 0 = unset.
  std::vector<SluiceEndpoint> endpoints;
};

/// The agent-side names of a domain's bound interfaces (what DetachVm takes). Fails if the
/// domain name cannot be one ([A-Za-z0-9._-], at most 64 characters with the suffix).
absl::StatusOr<std::vector<std::string>> AttachmentNames(const Domain& domain);

/// Builds the attachments. A hostdev VF's representor is found through `sysfs_root`
/// (bus/pci/devices/<vf>/physfn and the PF's virtfn<N> links).
absl::StatusOr<std::vector<VmPortAttachment>> PlanAttachments(
    const Domain& domain, const std::string& sysfs_root = "/sys");

/// "0000:3b:00.0,representor=vf5" for a VF, from sysfs.
absl::StatusOr<std::string> VfRepresentorDevargs(const PciAddress& vf,
                                                 const std::string& sysfs_root);

}  // namespace sluice::libvirt
