#include "deploy/libvirt/attachment.h"

#include <limits.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <system_error>

#include "common/strings.h"

namespace sluice::libvirt {
namespace {

constexpr size_t kMaxNameLength = 64;

bool NameCharOk(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' ||
         c == ':';
}

/// A DPDK vdev name suffix: letters, digits and '_' only.
std::string VdevSuffix(std::string_view text) {
  std::string out;
  for (char c : text) out.push_back(std::isalnum(static_cast<unsigned char>(c)) ? c : '_');
  return out;
}

std::string LinkTarget(const std::filesystem::path& link) {
  std::error_code ec;
  std::filesystem::path target = std::filesystem::read_symlink(link, ec);
  return ec ? std::string() : target.filename().string();
}

}  // namespace

absl::StatusOr<std::vector<std::string>> AttachmentNames(const Domain& domain) {
  const std::string& base = domain.identity.name;
  for (char c : base) {
    if (!NameCharOk(c)) {
      return absl::InvalidArgumentError(
          StrCat("domain name '", base,
                 "' cannot name a Sluice VM: only letters, digits and "
                 "'.', '_', '-', ':' are allowed"));
    }
  }
  std::vector<std::string> names;
  const size_t n = domain.bindings.size();
  for (size_t i = 0; i < n; ++i) names.push_back(n == 1 ? base : StrCat(base, ":", i));
  for (const std::string& name : names) {
    if (name.size() > kMaxNameLength) {
      return absl::InvalidArgumentError(StrCat("domain name '", base,
                                               "' is too long to name a Sluice VM port ('", name,
                                               "' is over ", kMaxNameLength, " characters)"));
    }
  }
  return names;
}

absl::StatusOr<std::string> VfRepresentorDevargs(const PciAddress& vf,
                                                 const std::string& sysfs_root) {
  namespace fs = std::filesystem;
  const std::string vf_name = vf.ToString();
  const fs::path devices = fs::path(sysfs_root) / "bus/pci/devices";
  const fs::path vf_dir = devices / vf_name;
  std::error_code ec;
  if (!fs::exists(vf_dir, ec)) {
    return absl::NotFoundError(
        StrCat("VF ", vf_name, ": no such PCI device (", vf_dir.string(), ")"));
  }
  const std::string pf_name = LinkTarget(vf_dir / "physfn");
  if (pf_name.empty()) {
    return absl::FailedPreconditionError(StrCat(
        "PCI device ", vf_name, " is not an SR-IOV VF (no physfn link in ", vf_dir.string(), ")"));
  }
  for (const fs::directory_entry& entry : fs::directory_iterator(devices / pf_name, ec)) {
    const std::string file = entry.path().filename().string();
    uint64_t index = 0;
    if (file.rfind("virtfn", 0) != 0 || !ParseUint(file.substr(6), &index)) continue;
    if (LinkTarget(entry.path()) == vf_name) {
      return StrCat(pf_name, ",representor=vf", index);
    }
  }
  return absl::FailedPreconditionError(
      StrCat("VF ", vf_name, ": its PF ", pf_name, " has no virtfn<N> link to it"));
}

absl::StatusOr<std::vector<VmPortAttachment>> PlanAttachments(const Domain& domain,
                                                              const std::string& sysfs_root) {
  absl::StatusOr<std::vector<std::string>> names = AttachmentNames(domain);
  if (!names.ok()) return names.status();
  std::vector<VmPortAttachment> out;
  for (size_t i = 0; i < domain.bindings.size(); ++i) {
    const SluiceBinding& b = domain.bindings[i];
    const DomainInterface& iface = domain.interfaces.at(b.interface_index);
    VmPortAttachment a{.name = (*names)[i],
                       .mac = b.mac,
                       .dip = b.dip,
                       .pa = b.pa,
                       .gateway = b.gateway,
                       .endpoints = b.endpoints};
    auto no_comma = [&](const std::string& value, const char* what) -> absl::Status {
      if (value.find(',') == std::string::npos) return absl::OkStatus();
      return absl::InvalidArgumentError(StrCat("line ", iface.line, ": ", what, " '", value,
                                               "' contains ',' and cannot be a DPDK devarg"));
    };
    switch (iface.type) {
      case InterfaceType::kVhostUser: {
        if (absl::Status s = no_comma(iface.vhostuser_socket, "vhost-user socket"); !s.ok()) {
          return s;
        }
        // mode='server': QEMU listens, so the agent's vhost port connects as the client.
        a.kind = PortKind::kVhostUser;
        a.port = StrCat("net_vhost_", VdevSuffix(a.name), ",iface=", iface.vhostuser_socket,
                        ",client=", iface.vhostuser_mode == "server" ? 1 : 0);
        break;
      }
      case InterfaceType::kHostdev: {
        absl::StatusOr<std::string> devargs = VfRepresentorDevargs(*iface.pci, sysfs_root);
        if (!devargs.ok()) {
          return absl::Status(devargs.status().code(),
                              StrCat("line ", iface.line,
                                     ": <interface type='hostdev'>: ", devargs.status().message()));
        }
        a.kind = PortKind::kHostdev;
        a.port = *devargs;
        break;
      }
      case InterfaceType::kBridge:
      case InterfaceType::kEthernet:
      case InterfaceType::kNetwork:
        if (absl::Status s = no_comma(iface.tap, "tap"); !s.ok()) return s;
        a.kind = PortKind::kTap;
        a.port = StrCat("net_af_packet_", VdevSuffix(iface.tap), ",iface=", iface.tap);
        break;
      case InterfaceType::kUnsupported:
        return absl::InvalidArgumentError(StrCat("line ", iface.line, ": interface type '",
                                                 iface.type_name,
                                                 "' cannot carry a Sluice binding"));
    }
    out.push_back(std::move(a));
  }
  return out;
}

}  // namespace sluice::libvirt
