#include "hostagent/port_identity.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <vector>

#include "common/strings.h"

namespace sluice::agent {
namespace {

std::string Lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

bool IsHex(std::string_view text, size_t min, size_t max) {
  return text.size() >= min && text.size() <= max &&
         std::all_of(text.begin(), text.end(),
                     [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; });
}

// What selects the device of a vdev driver: the options that name it, in this order.
struct VdevDriver {
  const char* name;
  const char* canonical;  ///< Aliases map to the driver's own name.
  std::vector<const char*> device_keys;
  bool needs_key;  ///< Without one of its keys the devargs names no device.
};

const std::vector<VdevDriver>& VdevDrivers() {
  static const std::vector<VdevDriver> drivers = {
      {"net_af_packet", "net_af_packet", {"iface"}, true},
      {"eth_af_packet", "net_af_packet", {"iface"}, true},
      {"net_af_xdp", "net_af_xdp", {"iface"}, true},
      {"net_tap", "net_tap", {"iface"}, false},
      {"net_tun", "net_tun", {"iface"}, false},
      {"net_pcap", "net_pcap", {"iface", "rx_iface", "rx_iface_in", "tx_iface", "rx_pcap",
                                "tx_pcap"}, true},
      {"eth_pcap", "net_pcap", {"iface", "rx_iface", "rx_iface_in", "tx_iface", "rx_pcap",
                                "tx_pcap"}, true},
      {"net_vhost", "net_vhost", {"iface"}, true},
      {"eth_vhost", "net_vhost", {"iface"}, true},
      {"net_virtio_user", "net_virtio_user", {"path"}, true},
      {"virtio_user", "net_virtio_user", {"path"}, true},
      {"net_memif", "net_memif", {"socket", "id"}, false},
  };
  return drivers;
}

// Paths compare after lexical normalisation ("/run//x/./s" is "/run/x/s").
std::string NormalPath(const std::string& key, const std::string& value) {
  if (key == "iface" && value.find('/') == std::string::npos) return value;  // an interface
  if (value.empty()) return value;
  return std::filesystem::path(value).lexically_normal().string();
}

// "0000:3b:00.0" or "3b:00.0" (domain 0) → "0000:3b:00.0"; "" if it is not a PCI address.
std::string CanonicalPci(const std::string& name) {
  std::vector<std::string_view> parts = SplitString(name, ':');
  std::string_view domain = "0000";
  if (parts.size() == 3) {
    domain = parts[0];
    parts.erase(parts.begin());
  }
  if (parts.size() != 2) return "";
  std::vector<std::string_view> dev_fn = SplitString(parts[1], '.');
  if (dev_fn.size() != 2 || !IsHex(domain, 4, 4) || !IsHex(parts[0], 2, 2) ||
      !IsHex(dev_fn[0], 2, 2) || dev_fn[1].size() != 1 || dev_fn[1][0] < '0' ||
      dev_fn[1][0] > '7') {
    return "";
  }
  return Lower(StrCat(domain, ":", parts[0], ":", dev_fn[0], ".", dev_fn[1]));
}

// "5", "[5]", "vf5", "vf[5]" → "vf5"; other forms (pf0vf5, sf3, vf[0-3]) as written, lower
// case, without spaces.
std::string CanonicalRepresentor(const std::string& value) {
  std::string v;
  for (char c : value) {
    if (c != ' ') v.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  std::string inner = v.rfind("vf", 0) == 0 ? v.substr(2) : v;
  if (inner.size() > 2 && inner.front() == '[' && inner.back() == ']') {
    inner = inner.substr(1, inner.size() - 2);
  }
  uint64_t n = 0;
  if (ParseUint(inner, &n)) return StrCat("vf", n);
  return v;
}

}  // namespace

std::string PortIdentity::ToString() const {
  std::string out = StrCat(driver, " ", device);
  if (!representor.empty()) out += " representor=" + representor;
  return out;
}

absl::StatusOr<PortIdentity> ParsePortIdentity(const std::string& devargs) {
  std::vector<std::string_view> fields = SplitString(devargs, ',');
  const std::string name(fields.empty() ? std::string_view() : fields[0]);
  if (name.empty()) {
    return absl::InvalidArgumentError(StrCat("port '", devargs, "': no device name"));
  }
  std::map<std::string, std::string> options;
  for (size_t i = 1; i < fields.size(); ++i) {
    std::string_view field = fields[i];
    const size_t eq = field.find('=');
    if (field.empty() || eq == 0) {
      return absl::InvalidArgumentError(
          StrCat("port '", devargs, "': option '", field, "' is not key=value"));
    }
    std::string key(field.substr(0, eq));
    std::string value(eq == std::string_view::npos ? std::string_view() : field.substr(eq + 1));
    options[key] = value;
  }
  PortIdentity id;
  const std::string pci = CanonicalPci(name);
  if (!pci.empty()) {
    id.driver = "pci";
    id.device = pci;
    if (auto it = options.find("representor"); it != options.end()) {
      id.representor = CanonicalRepresentor(it->second);
    }
    return id;
  }
  if (name.find(':') != std::string::npos && std::isxdigit(static_cast<unsigned char>(name[0]))) {
    return absl::InvalidArgumentError(
        StrCat("port '", devargs, "': '", name,
               "' is not a PCI address (domain:bus:device.function, e.g. 0000:3b:00.0)"));
  }
  const VdevDriver* driver = nullptr;
  const std::string lower_name = Lower(name);
  for (const VdevDriver& d : VdevDrivers()) {
    const size_t n = std::string_view(d.name).size();
    if (lower_name.compare(0, n, d.name) == 0 &&
        (driver == nullptr || n > std::string_view(driver->name).size())) {
      driver = &d;
    }
  }
  if (driver != nullptr) {
    id.driver = driver->canonical;
    for (const char* key : driver->device_keys) {
      auto it = options.find(key);
      if (it == options.end()) continue;
      id.device += StrCat(id.device.empty() ? "" : ",", key, "=", NormalPath(key, it->second));
    }
    if (id.device.empty()) {
      if (driver->needs_key) {
        return absl::InvalidArgumentError(StrCat("port '", devargs, "': ", driver->canonical,
                                                 " needs ", driver->device_keys[0],
                                                 "= to name its device"));
      }
      id.device = "name=" + lower_name;  // the PMD makes its own device for this name
    }
    return id;
  }
  // A driver this file does not know: the name and every option, in a fixed order.
  id.driver = lower_name;
  id.device = lower_name;
  for (const auto& [key, value] : options) id.device += StrCat(",", key, "=", value);
  return id;
}

bool SamePort(const std::string& a, const std::string& b) {
  absl::StatusOr<PortIdentity> x = ParsePortIdentity(a);
  absl::StatusOr<PortIdentity> y = ParsePortIdentity(b);
  if (x.ok() && y.ok()) return *x == *y;
  return a == b;
}

}  // namespace sluice::agent
