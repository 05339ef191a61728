#include "deploy/libvirt/domain_xml.h"

#include <libxml/parser.h>
#include <libxml/tree.h>

#include <cctype>
#include <climits>
#include <cstdio>
#include <initializer_list>
#include <map>
#include <memory>
#include <set>
#include <tuple>

#include "common/net_text.h"
#include "common/strings.h"

namespace sluice::libvirt {
namespace {

constexpr std::string_view kSluiceNamespacePrefix = "http://sluice.dev/xmlns/libvirt/";

struct DocDeleter {
  void operator()(xmlDoc* doc) const { xmlFreeDoc(doc); }
};
using XmlDocument = std::unique_ptr<xmlDoc, DocDeleter>;

std::string_view Name(const xmlNode* node) { return reinterpret_cast<const char*>(node->name); }

std::string_view NamespaceOf(const xmlNode* node) {
  if (node->ns == nullptr || node->ns->href == nullptr) return {};
  return reinterpret_cast<const char*>(node->ns->href);
}

bool IsElement(const xmlNode* node, std::string_view ns, std::string_view name) {
  return node->type == XML_ELEMENT_NODE && NamespaceOf(node) == ns && Name(node) == name;
}

std::vector<xmlNode*> Children(const xmlNode* node) {
  std::vector<xmlNode*> out;
  for (xmlNode* c = node->children; c != nullptr; c = c->next) {
    if (c->type == XML_ELEMENT_NODE) out.push_back(c);
  }
  return out;
}

std::vector<xmlNode*> ChildrenNamed(const xmlNode* node, std::string_view name) {
  std::vector<xmlNode*> out;
  for (xmlNode* c : Children(node)) {
    if (IsElement(c, "", name)) out.push_back(c);
  }
  return out;
}

std::optional<std::string> Attribute(const xmlNode* node, const char* name) {
  xmlChar* value = xmlGetNoNsProp(node, reinterpret_cast<const xmlChar*>(name));
  if (value == nullptr) return std::nullopt;
  std::string out(reinterpret_cast<const char*>(value));
  xmlFree(value);
  return out;
}

std::string_view Trim(std::string_view s) {
  const char* ws = " \t\r\n";
  size_t first = s.find_first_not_of(ws);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(ws) - first + 1);
}

std::string Text(const xmlNode* node) {
  xmlChar* content = xmlNodeGetContent(node);
  if (content == nullptr) return {};
  std::string out(Trim(reinterpret_cast<const char*>(content)));
  xmlFree(content);
  return out;
}

int Line(const xmlNode* node) { return static_cast<int>(xmlGetLineNo(node)); }

/// "<sluice:interface>" or "<interface type='hostdev'>", as the user wrote it.
std::string Describe(const xmlNode* node) {
  std::string name(Name(node));
  if (node->ns != nullptr && node->ns->prefix != nullptr) {
    name = StrCat(reinterpret_cast<const char*>(node->ns->prefix), ":", name);
  }
  if (node->ns == nullptr) {
    if (std::optional<std::string> type = Attribute(node, "type")) {
      return StrCat("<", name, " type='", *type, "'>");
    }
  }
  return StrCat("<", name, ">");
}

/// Reads a libvirt PCI address attribute: "0x1f" hex or decimal, like libvirt's base-0 parse.
bool ParsePciField(std::string_view text, uint64_t max, uint64_t* value) {
  text = Trim(text);
  bool ok = text.size() > 2 && (text.substr(0, 2) == "0x" || text.substr(0, 2) == "0X")
                ? ParseUint(text.substr(2), value, 16)
                : ParseUint(text, value, 10);
  return ok && *value <= max;
}

/// Normalises "4dea22b3-1d52-d8f3-2516-782e98ab3fa0" (dashes anywhere, any case).
bool NormaliseUuid(std::string_view text, std::string* out) {
  std::string hex;
  for (char c : Trim(text)) {
    if (c == '-') continue;
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
    hex.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  if (hex.size() != 32) return false;
  *out = StrCat(hex.substr(0, 8), "-", hex.substr(8, 4), "-", hex.substr(12, 4), "-",
                hex.substr(16, 4), "-", hex.substr(20));
  return true;
}

/// Keeps the first error libxml2 reports while parsing.
struct FirstError {
  bool seen = false;
  int line = 0;
  std::string message;
  static void Record(void* self, xmlError* err) {
    auto* first = static_cast<FirstError*>(self);
    if (first->seen || err == nullptr || err->level < XML_ERR_ERROR) return;
    first->seen = true;
    first->line = err->line;
    first->message = err->message != nullptr ? std::string(Trim(err->message)) : "unknown error";
  }
};

class DomainReader {
 public:
  explicit DomainReader(std::string origin) : origin_(std::move(origin)) {}

  absl::Status Read(std::string_view xml) {
    if (Trim(xml).empty()) {
      return absl::InvalidArgumentError(
          StrCat(origin_, ": empty input: expected a libvirt domain XML"));
    }
    if (xml.size() > INT_MAX) {
      return absl::InvalidArgumentError(StrCat(origin_, ": domain XML too large"));
    }
    std::unique_ptr<xmlParserCtxt, decltype(&xmlFreeParserCtxt)> ctxt(xmlNewParserCtxt(),
                                                                      xmlFreeParserCtxt);
    if (ctxt == nullptr) return absl::ResourceExhaustedError("libxml2: out of memory");
    // libxml2 carries on after some errors; the first one is the one to show.
    FirstError first;
    xmlSetStructuredErrorFunc(&first, &FirstError::Record);
    doc_.reset(xmlCtxtReadMemory(
        ctxt.get(), xml.data(), static_cast<int>(xml.size()), origin_.c_str(), nullptr,
        XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_BIG_LINES));
    xmlSetStructuredErrorFunc(nullptr, nullptr);
    if (doc_ == nullptr || !ctxt->wellFormed) {
      if (!first.seen) {
        const xmlError* err = xmlCtxtGetLastError(ctxt.get());
        if (err != nullptr) FirstError::Record(&first, const_cast<xmlError*>(err));
      }
      return absl::InvalidArgumentError(StrCat(origin_, ":", first.line, ": malformed XML: ",
                                               first.seen ? first.message : "unknown error"));
    }
    xmlNode* root = xmlDocGetRootElement(doc_.get());
    if (root == nullptr) {
      return absl::InvalidArgumentError(StrCat(origin_, ": no root element"));
    }
    // A domain's status XML wraps the definition; accept both.
    if (IsElement(root, "", "domstatus")) {
      std::vector<xmlNode*> inner = ChildrenNamed(root, "domain");
      if (inner.size() != 1) return Fail(root, "must contain exactly one <domain>");
      root = inner[0];
    }
    if (!IsElement(root, "", "domain")) {
      return Fail(root, "the root element must be libvirt's <domain>");
    }
    domain_node_ = root;
    return absl::OkStatus();
  }

  absl::Status ReadIdentity(DomainIdentity* identity) {
    std::vector<xmlNode*> names = ChildrenNamed(domain_node_, "name");
    if (names.empty()) return Fail(domain_node_, "has no <name>");
    if (names.size() > 1) return Fail(names[1], "a domain has one <name>");
    identity->name = Text(names[0]);
    if (identity->name.empty()) return Fail(names[0], "is empty");
    std::vector<xmlNode*> uuids = ChildrenNamed(domain_node_, "uuid");
    if (uuids.size() > 1) return Fail(uuids[1], "a domain has one <uuid>");
    if (!uuids.empty() && !NormaliseUuid(Text(uuids[0]), &identity->uuid)) {
      return Fail(uuids[0], StrCat("'", Text(uuids[0]), "' is not a UUID (32 hex digits)"));
    }
    absl::StatusOr<xmlNode*> sluice = SluiceElement();
    if (!sluice.ok()) return sluice.status();
    identity->has_sluice_metadata = *sluice != nullptr;
    return absl::OkStatus();
  }

  absl::Status ReadInterfaces(std::vector<DomainInterface>* interfaces) {
    std::vector<xmlNode*> devices = ChildrenNamed(domain_node_, "devices");
    if (devices.size() > 1) return Fail(devices[1], "a domain has one <devices>");
    devices_node_ = devices.empty() ? nullptr : devices[0];
    if (devices_node_ == nullptr) return absl::OkStatus();
    for (xmlNode* node : ChildrenNamed(devices_node_, "interface")) {
      DomainInterface iface;
      absl::Status status = ReadInterface(node, &iface);
      if (!status.ok()) return status;
      interfaces->push_back(std::move(iface));
    }
    return absl::OkStatus();
  }

  /// Reads the bindings and ties each to its interface; `domain` has interfaces already.
  absl::Status ReadBindings(Domain* domain) {
    absl::StatusOr<xmlNode*> vm = SluiceElement();
    if (!vm.ok()) return vm.status();
    if (*vm == nullptr) return absl::OkStatus();
    if (domain->interfaces.empty()) {
      xmlNode* where = devices_node_ != nullptr ? devices_node_ : domain_node_;
      return Fail(where, StrCat("domain '", domain->identity.name,
                                "' has Sluice metadata but no <interface> under <devices>"));
    }
    if (absl::Status s = AllowOnlyAttributes(*vm, {}); !s.ok()) return s;
    if (absl::Status s = CheckSluiceContent(*vm, true); !s.ok()) return s;
    std::map<std::array<uint8_t, 6>, int> mac_lines;
    std::map<uint32_t, int> dip_lines;
    for (xmlNode* child : SluiceChildren(*vm)) {
      if (Name(child) != "interface") {
        return Fail(child, "unknown element (a Sluice <vm> holds <interface> elements)");
      }
      SluiceBinding binding;
      if (absl::Status s = ReadBinding(child, &binding); !s.ok()) return s;
      auto [mac_it, new_mac] = mac_lines.emplace(binding.mac, binding.line);
      if (!new_mac) {
        return Fail(child, StrCat("mac ", MacToString(binding.mac),
                                  " is bound twice (first at line ", mac_it->second, ")"));
      }
      auto [dip_it, new_dip] = dip_lines.emplace(binding.dip, binding.line);
      if (!new_dip) {
        return Fail(child, StrCat("dip ", Ipv4ToString(binding.dip), " is already bound at line ",
                                  dip_it->second));
      }
      if (absl::Status s = MatchInterface(child, domain->interfaces, &binding); !s.ok()) return s;
      domain->bindings.push_back(std::move(binding));
    }
    if (domain->bindings.empty()) {
      return Fail(*vm, "binds no interface: add <interface mac='..' dip='..'/> children");
    }
    return absl::OkStatus();
  }

 private:
  absl::Status Fail(const xmlNode* node, std::string_view message) const {
    return absl::InvalidArgumentError(
        StrCat(origin_, ":", Line(node), ": ", Describe(node), ": ", message));
  }

  /// The <metadata> child in Sluice's namespace, nullptr if there is none.
  absl::StatusOr<xmlNode*> SluiceElement() {
    std::vector<xmlNode*> metadata = ChildrenNamed(domain_node_, "metadata");
    if (metadata.size() > 1) return Fail(metadata[1], "a domain has one <metadata>");
    if (metadata.empty()) return nullptr;
    xmlNode* found = nullptr;
    for (xmlNode* child : Children(metadata[0])) {
      std::string_view ns = NamespaceOf(child);
      if (ns.substr(0, kSluiceNamespacePrefix.size()) != kSluiceNamespacePrefix) continue;
      if (ns != kSluiceNamespace) {
        return Fail(child, StrCat("namespace '", ns, "' is not supported by this hook (it reads ",
                                  kSluiceNamespace, ")"));
      }
      if (Name(child) != "vm") {
        return Fail(child, "unknown element: Sluice metadata is one <vm> element");
      }
      if (found != nullptr) {
        return Fail(child,
                    StrCat("second Sluice <vm> element (the first is at line ", Line(found), ")"));
      }
      found = child;
    }
    return found;
  }

  /// Element children of a Sluice element; anything else inside it is an error.
  std::vector<xmlNode*> SluiceChildren(xmlNode* node) {
    std::vector<xmlNode*> out;
    for (xmlNode* c = node->children; c != nullptr; c = c->next) {
      if (c->type == XML_ELEMENT_NODE) out.push_back(c);
    }
    return out;
  }

  absl::Status CheckSluiceContent(xmlNode* node, bool allow_children) {
    for (xmlNode* c = node->children; c != nullptr; c = c->next) {
      if (c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) {
        std::string text(Trim(reinterpret_cast<const char*>(c->content)));
        if (!text.empty()) return Fail(node, StrCat("unexpected text '", text, "'"));
      } else if (c->type == XML_ELEMENT_NODE) {
        if (!allow_children) return Fail(c, StrCat("unexpected element inside ", Describe(node)));
        if (NamespaceOf(c) != kSluiceNamespace) {
          return Fail(c, StrCat("element outside the Sluice namespace inside ", Describe(node)));
        }
      }
    }
    return absl::OkStatus();
  }

  absl::Status AllowOnlyAttributes(const xmlNode* node,
                                   std::initializer_list<std::string_view> allowed) {
    for (const xmlAttr* a = node->properties; a != nullptr; a = a->next) {
      std::string_view name = reinterpret_cast<const char*>(a->name);
      bool ok = a->ns == nullptr;
      if (ok) {
        ok = false;
        for (std::string_view want : allowed) ok = ok || want == name;
      }
      if (!ok) {
        std::string list;
        for (std::string_view want : allowed) list = StrCat(list, list.empty() ? "" : ", ", want);
        return Fail(node, StrCat("unknown attribute '", name,
                                 "' (allowed: ", list.empty() ? "none" : list, ")"));
      }
    }
    return absl::OkStatus();
  }

  absl::Status RequiredIpv4(const xmlNode* node, const char* attr, uint32_t* out) {
    std::optional<std::string> text = Attribute(node, attr);
    if (!text) return Fail(node, StrCat("missing attribute '", attr, "'"));
    return OptionalIpv4(node, attr, out);
  }

  absl::Status OptionalIpv4(const xmlNode* node, const char* attr, uint32_t* out) {
    std::optional<std::string> text = Attribute(node, attr);
    if (!text) return absl::OkStatus();
    absl::StatusOr<uint32_t> addr = ParseIpv4(Trim(*text));
    if (!addr.ok()) return Fail(node, StrCat(attr, ": ", addr.status().message()));
    if (*addr == 0) return Fail(node, StrCat(attr, ": 0.0.0.0 is not a usable address"));
    *out = *addr;
    return absl::OkStatus();
  }

  absl::Status ReadBinding(xmlNode* node, SluiceBinding* binding) {
    binding->line = Line(node);
    if (absl::Status s = AllowOnlyAttributes(node, {"mac", "dip", "pa", "gateway"}); !s.ok()) {
      return s;
    }
    if (absl::Status s = CheckSluiceContent(node, true); !s.ok()) return s;
    std::optional<std::string> mac = Attribute(node, "mac");
    if (!mac) return Fail(node, "missing attribute 'mac' (the <interface>'s <mac address>)");
    absl::StatusOr<std::array<uint8_t, 6>> parsed_mac = ParseMac(Trim(*mac));
    if (!parsed_mac.ok()) return Fail(node, StrCat("mac: ", parsed_mac.status().message()));
    binding->mac = *parsed_mac;
    if (absl::Status s = RequiredIpv4(node, "dip", &binding->dip); !s.ok()) return s;
    if (absl::Status s = OptionalIpv4(node, "pa", &binding->pa); !s.ok()) return s;
    if (absl::Status s = OptionalIpv4(node, "gateway", &binding->gateway); !s.ok()) return s;
    std::set<std::tuple<uint32_t, uint16_t, uint8_t>> seen;
    for (xmlNode* child : SluiceChildren(node)) {
      if (Name(child) != "endpoint") {
        return Fail(child, "unknown element (a Sluice <interface> holds <endpoint> elements)");
      }
      SluiceEndpoint ep;
      if (absl::Status s = ReadEndpoint(child, &ep); !s.ok()) return s;
      if (!seen.insert({ep.vip, ep.port, ep.proto}).second) {
        return Fail(child, StrCat(Ipv4ToString(ep.vip), ":", ep.port, "/", L4ProtocolName(ep.proto),
                                  " is listed twice for this interface"));
      }
      binding->endpoints.push_back(ep);
    }
    return absl::OkStatus();
  }

  absl::Status ReadEndpoint(xmlNode* node, SluiceEndpoint* ep) {
    ep->line = Line(node);
    if (absl::Status s = AllowOnlyAttributes(node, {"vip", "dip_port"}); !s.ok()) return s;
    if (absl::Status s = CheckSluiceContent(node, false); !s.ok()) return s;
    std::optional<std::string> vip = Attribute(node, "vip");
    if (!vip) return Fail(node, "missing attribute 'vip' (a.b.c.d:port/proto)");
    std::string_view text = Trim(*vip);
    size_t colon = text.find(':');
    size_t slash = text.find('/');
    if (colon == std::string_view::npos || slash == std::string_view::npos || slash < colon) {
      return Fail(node,
                  StrCat("vip '", text, "' must be a.b.c.d:port/proto, e.g. 203.0.113.10:80/tcp"));
    }
    absl::StatusOr<uint32_t> addr = ParseIpv4(text.substr(0, colon));
    if (!addr.ok()) return Fail(node, StrCat("vip: ", addr.status().message()));
    uint64_t port = 0;
    if (!ParseUint(text.substr(colon + 1, slash - colon - 1), &port) || port == 0 || port > 65535) {
      return Fail(node, StrCat("vip '", text, "': port must be 1..65535"));
    }
    absl::StatusOr<uint8_t> proto = ParseL4Protocol(text.substr(slash + 1));
    if (!proto.ok()) return Fail(node, StrCat("vip: ", proto.status().message()));
    ep->vip = *addr;
    ep->port = static_cast<uint16_t>(port);
    ep->proto = *proto;
    ep->dip_port = ep->port;
    if (std::optional<std::string> dip_port = Attribute(node, "dip_port")) {
      uint64_t value = 0;
      if (!ParseUint(Trim(*dip_port), &value) || value == 0 || value > 65535) {
        return Fail(node, StrCat("dip_port '", *dip_port, "' must be 1..65535"));
      }
      ep->dip_port = static_cast<uint16_t>(value);
    }
    return absl::OkStatus();
  }

  absl::Status MatchInterface(xmlNode* node, const std::vector<DomainInterface>& interfaces,
                              SluiceBinding* binding) {
    const std::string mac = MacToString(binding->mac);
    std::optional<size_t> match;
    for (size_t i = 0; i < interfaces.size(); ++i) {
      if (interfaces[i].mac != binding->mac) continue;
      if (match) {
        return Fail(node,
                    StrCat("mac ", mac, " is ambiguous: the <interface>s at lines ",
                           interfaces[*match].line, " and ", interfaces[i].line, " both have it"));
      }
      match = i;
    }
    if (!match) return Fail(node, StrCat("mac ", mac, " matches no <interface> under <devices>"));
    const DomainInterface& iface = interfaces[*match];
    binding->interface_index = *match;
    std::string where = StrCat("mac ", mac, " is the <interface type='", iface.type_name,
                               "'> at line ", iface.line, ", which ");
    switch (iface.type) {
      case InterfaceType::kVhostUser:
        if (iface.vhostuser_socket.empty()) {
          return Fail(node, StrCat(where, "has no <source path> (vhost-user socket)"));
        }
        break;
      case InterfaceType::kHostdev:
        if (!iface.pci) {
          return Fail(node, StrCat(where, "has no <source><address type='pci'> (the VF)"));
        }
        break;
      case InterfaceType::kBridge:
      case InterfaceType::kEthernet:
      case InterfaceType::kNetwork:
        if (iface.tap.empty()) {
          return Fail(node, StrCat(where,
                                   "has no <target dev> (the tap; libvirt sets it in a "
                                   "running domain's XML)"));
        }
        break;
      case InterfaceType::kUnsupported:
        return Fail(node, StrCat(where,
                                 "Sluice cannot serve (supported: vhostuser, hostdev, "
                                 "bridge, ethernet, network)"));
    }
    return absl::OkStatus();
  }

  absl::Status ReadInterface(xmlNode* node, DomainInterface* iface) {
    iface->line = Line(node);
    std::optional<std::string> type = Attribute(node, "type");
    if (!type) return Fail(node, "missing attribute 'type'");
    iface->type_name = *type;
    static const std::map<std::string, InterfaceType, std::less<>> kTypes = {
        {"vhostuser", InterfaceType::kVhostUser},
        {"hostdev", InterfaceType::kHostdev},
        {"bridge", InterfaceType::kBridge},
        {"ethernet", InterfaceType::kEthernet},
        {"network", InterfaceType::kNetwork}};
    auto it = kTypes.find(*type);
    iface->type = it == kTypes.end() ? InterfaceType::kUnsupported : it->second;

    std::vector<xmlNode*> macs = ChildrenNamed(node, "mac");
    if (macs.size() > 1) return Fail(macs[1], "an <interface> has one <mac>");
    if (!macs.empty()) {
      std::optional<std::string> address = Attribute(macs[0], "address");
      if (!address) return Fail(macs[0], "missing attribute 'address'");
      absl::StatusOr<std::array<uint8_t, 6>> mac = ParseMac(Trim(*address));
      if (!mac.ok()) return Fail(macs[0], std::string(mac.status().message()));
      iface->mac = *mac;
    }
    std::vector<xmlNode*> sources = ChildrenNamed(node, "source");
    std::vector<xmlNode*> targets = ChildrenNamed(node, "target");
    xmlNode* source = sources.empty() ? nullptr : sources[0];
    if (!targets.empty()) iface->tap = Attribute(targets[0], "dev").value_or("");
    switch (iface->type) {
      case InterfaceType::kVhostUser:
        if (source != nullptr) {
          iface->vhostuser_socket = Attribute(source, "path").value_or("");
          iface->vhostuser_mode = Attribute(source, "mode").value_or("");
        }
        break;
      case InterfaceType::kHostdev:
        if (source != nullptr) {
          for (xmlNode* address : ChildrenNamed(source, "address")) {
            if (Attribute(address, "type").value_or("pci") != "pci") continue;
            PciAddress pci;
            if (absl::Status s = ReadPciAddress(address, &pci); !s.ok()) return s;
            iface->pci = pci;
          }
        }
        break;
      case InterfaceType::kBridge:
        if (source != nullptr) iface->bridge = Attribute(source, "bridge").value_or("");
        break;
      case InterfaceType::kNetwork:
        if (source != nullptr) iface->network = Attribute(source, "network").value_or("");
        break;
      case InterfaceType::kEthernet:
      case InterfaceType::kUnsupported:
        break;
    }
    return absl::OkStatus();
  }

  absl::Status ReadPciAddress(xmlNode* node, PciAddress* pci) {
    struct Field {
      const char* name;
      uint64_t max;
      uint64_t value = 0;
    };
    Field fields[] = {{"domain", 0xffff}, {"bus", 0xff}, {"slot", 0x1f}, {"function", 0x7}};
    for (Field& f : fields) {
      std::optional<std::string> text = Attribute(node, f.name);
      if (!text) continue;  // libvirt defaults a missing field to 0.
      if (!ParsePciField(*text, f.max, &f.value)) {
        char max[16];
        snprintf(max, sizeof(max), "0x%llx", static_cast<unsigned long long>(f.max));
        return Fail(node, StrCat(f.name, " '", *text, "' is not a number 0..", max));
      }
    }
    pci->domain = static_cast<uint16_t>(fields[0].value);
    pci->bus = static_cast<uint8_t>(fields[1].value);
    pci->slot = static_cast<uint8_t>(fields[2].value);
    pci->function = static_cast<uint8_t>(fields[3].value);
    return absl::OkStatus();
  }

  std::string origin_;
  XmlDocument doc_;
  xmlNode* domain_node_ = nullptr;
  xmlNode* devices_node_ = nullptr;
};

}  // namespace

std::string_view InterfaceTypeName(InterfaceType type) {
  switch (type) {
    case InterfaceType::kVhostUser:
      return "vhostuser";
    case InterfaceType::kHostdev:
      return "hostdev";
    case InterfaceType::kBridge:
      return "bridge";
    case InterfaceType::kEthernet:
      return "ethernet";
    case InterfaceType::kNetwork:
      return "network";
    case InterfaceType::kUnsupported:
      break;
  }
  return "unsupported";
}

std::string PciAddress::ToString() const {
  char buf[16];
  snprintf(buf, sizeof(buf), "%04x:%02x:%02x.%x", domain, bus, slot, function);
  return buf;
}

absl::StatusOr<Domain> ParseDomainXml(std::string_view xml, const std::string& origin) {
  DomainReader reader(origin);
  Domain domain;
  if (absl::Status s = reader.Read(xml); !s.ok()) return s;
  if (absl::Status s = reader.ReadIdentity(&domain.identity); !s.ok()) return s;
  if (absl::Status s = reader.ReadInterfaces(&domain.interfaces); !s.ok()) return s;
  if (absl::Status s = reader.ReadBindings(&domain); !s.ok()) return s;
  return domain;
}

absl::StatusOr<DomainIdentity> ParseDomainIdentity(std::string_view xml,
                                                   const std::string& origin) {
  DomainReader reader(origin);
  DomainIdentity identity;
  if (absl::Status s = reader.Read(xml); !s.ok()) return s;
  if (absl::Status s = reader.ReadIdentity(&identity); !s.ok()) return s;
  return identity;
}

}  // namespace sluice::libvirt
