#include "deploy/libvirt/domain_xml.h"

#include <fstream>
#include <sstream>

#include "common/net_text.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::libvirt {
namespace {

using ::testing::HasSubstr;

std::string ReadTestdata(const std::string& name) {
  std::ifstream in(std::string(SLUICE_LIBVIRT_TESTDATA) + "/" + name);
  EXPECT_TRUE(in.good()) << name;
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::StatusOr<Domain> ParseSample(const std::string& name) {
  return ParseDomainXml(ReadTestdata(name), name);
}

uint32_t Ip(const char* text) { return *ParseIpv4(text); }

/// A domain with one ethernet interface and `metadata` as its Sluice <vm> contents.
std::string WithSluice(const std::string& sluice_children, const std::string& attrs = "") {
  return "<domain type='kvm'>\n"
         "  <name>t</name>\n"
         "  <metadata>\n"
         "    <s:vm xmlns:s='http://sluice.dev/xmlns/libvirt/1'" +
         attrs + ">\n" + sluice_children +
         "\n    </s:vm>\n"
         "  </metadata>\n"
         "  <devices>\n"
         "    <interface type='ethernet'><mac address='52:54:00:00:00:01'/>"
         "<target dev='tap1'/></interface>\n"
         "  </devices>\n"
         "</domain>\n";
}

TEST(DomainXmlTest, EveryInterfaceType) {
  absl::StatusOr<Domain> d = ParseSample("all_interface_types.xml");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->identity.name, "web1");
  EXPECT_EQ(d->identity.uuid, "4dea22b3-1d52-d8f3-2516-782e98ab3fa0");
  EXPECT_TRUE(d->identity.has_sluice_metadata);
  ASSERT_EQ(d->interfaces.size(), 6u);

  const DomainInterface& vhost = d->interfaces[0];
  EXPECT_EQ(vhost.type, InterfaceType::kVhostUser);
  EXPECT_EQ(MacToString(*vhost.mac), "52:54:00:10:00:01");
  EXPECT_EQ(vhost.vhostuser_socket, "/run/openvswitch/vhu-web1-0");
  EXPECT_EQ(vhost.vhostuser_mode, "server");

  const DomainInterface& vf = d->interfaces[1];
  EXPECT_EQ(vf.type, InterfaceType::kHostdev);
  ASSERT_TRUE(vf.pci.has_value());
  // The source address, not the guest-side <address> that follows it.
  EXPECT_EQ(vf.pci->ToString(), "0000:3b:02.5");

  EXPECT_EQ(d->interfaces[2].type, InterfaceType::kBridge);
  EXPECT_EQ(d->interfaces[2].bridge, "br-vms");
  EXPECT_EQ(d->interfaces[2].tap, "vnet3");
  EXPECT_EQ(d->interfaces[3].type, InterfaceType::kEthernet);
  EXPECT_EQ(d->interfaces[3].tap, "sl-tap4");
  EXPECT_EQ(d->interfaces[4].type, InterfaceType::kNetwork);
  EXPECT_EQ(d->interfaces[4].network, "default");
  EXPECT_EQ(d->interfaces[4].tap, "vnet5");
  EXPECT_EQ(d->interfaces[5].type, InterfaceType::kUnsupported);
  EXPECT_EQ(d->interfaces[5].type_name, "user");

  ASSERT_EQ(d->bindings.size(), 5u);
  const SluiceBinding& b0 = d->bindings[0];
  EXPECT_EQ(b0.interface_index, 0u);
  EXPECT_EQ(b0.dip, Ip("10.1.0.11"));
  EXPECT_EQ(b0.pa, Ip("192.168.10.21"));
  EXPECT_EQ(b0.gateway, Ip("10.1.0.1"));
  ASSERT_EQ(b0.endpoints.size(), 2u);
  EXPECT_EQ(b0.endpoints[0].vip, Ip("203.0.113.10"));
  EXPECT_EQ(b0.endpoints[0].port, 80);
  EXPECT_EQ(b0.endpoints[0].proto, 6);
  EXPECT_EQ(b0.endpoints[0].dip_port, 8080);
  EXPECT_EQ(b0.endpoints[1].port, 443);
  EXPECT_EQ(b0.endpoints[1].dip_port, 443);  // defaults to the VIP port
  EXPECT_EQ(d->bindings[1].pa, 0u);          // optional
  EXPECT_EQ(d->bindings[1].interface_index, 1u);
  ASSERT_EQ(d->bindings[2].endpoints.size(), 1u);
  EXPECT_EQ(d->bindings[2].endpoints[0].proto, 17);
  EXPECT_EQ(d->bindings[4].interface_index, 4u);
}

TEST(DomainXmlTest, AnyPrefixForTheSluiceNamespace) {
  absl::StatusOr<Domain> d = ParseSample("vhostuser_only.xml");
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->bindings.size(), 1u);
  EXPECT_EQ(d->bindings[0].endpoints[0].port, 3306);
  // A default namespace declaration works as well as a prefix.
  std::string xml = WithSluice(
      "<interface xmlns='http://sluice.dev/xmlns/libvirt/1' "
      "mac='52:54:00:00:00:01' dip='10.0.0.5'/>");
  d = ParseDomainXml(xml, "inline");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->bindings[0].dip, Ip("10.0.0.5"));
}

TEST(DomainXmlTest, NoMetadataIsNotOurs) {
  for (const char* name : {"no_metadata.xml", "foreign_metadata.xml"}) {
    absl::StatusOr<Domain> d = ParseSample(name);
    ASSERT_TRUE(d.ok()) << name << ": " << d.status();
    EXPECT_FALSE(d->identity.has_sluice_metadata) << name;
    EXPECT_TRUE(d->bindings.empty());
    EXPECT_EQ(d->interfaces.size(), 1u);
    absl::StatusOr<DomainIdentity> id = ParseDomainIdentity(ReadTestdata(name), name);
    ASSERT_TRUE(id.ok()) << id.status();
    EXPECT_FALSE(id->has_sluice_metadata);
  }
}

TEST(DomainXmlTest, MalformedXmlNamesTheLine) {
  absl::StatusOr<Domain> d = ParseSample("malformed.xml");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  // <interface> opened on line 4 is closed by </devices> on line 6.
  EXPECT_THAT(d.status().message(), HasSubstr("malformed.xml:6: malformed XML:"));
  EXPECT_THAT(d.status().message(), HasSubstr("interface"));

  EXPECT_THAT(ParseDomainXml("", "stdin").status().message(), HasSubstr("stdin: empty input"));
  EXPECT_THAT(ParseDomainXml("<network><name>x</name></network>", "stdin").status().message(),
              HasSubstr("stdin:1: <network>: the root element must be libvirt's <domain>"));
  EXPECT_THAT(ParseDomainXml("<domain><uuid>1</uuid></domain>", "stdin").status().message(),
              HasSubstr("stdin:1: <domain>: has no <name>"));
  EXPECT_THAT(ParseDomainXml("<domain>\n<name>a</name>\n<uuid>xyz</uuid></domain>", "stdin")
                  .status()
                  .message(),
              HasSubstr("stdin:3: <uuid>: 'xyz' is not a UUID"));
}

TEST(DomainXmlTest, NoInterfaces) {
  absl::StatusOr<Domain> d = ParseSample("no_interfaces.xml");
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(d.status().message(),
              HasSubstr("no_interfaces.xml:8: <devices>: domain 'lonely' has Sluice metadata "
                        "but no <interface> under <devices>"));
}

TEST(DomainXmlTest, BadMetadataSamples) {
  struct Case {
    const char* file;
    const char* error;
  } cases[] = {
      {"bad_dip.xml", "bad_dip.xml:5: <sluice:interface>: dip: '10.1.0.300' is not an IPv4"},
      {"bad_vip.xml",
       "bad_vip.xml:6: <sluice:endpoint>: vip '203.0.113.10:80' must be a.b.c.d:port/proto"},
      {"unbound_mac.xml",
       "unbound_mac.xml:5: <sluice:interface>: mac 52:54:00:62:00:99 matches no <interface>"},
      {"bad_pci.xml",
       "bad_pci.xml:12: <address type='pci'>: slot '0x20' is not a number "
       "0..0x1f"},
      {"unknown_attribute.xml",
       "unknown_attribute.xml:5: <sluice:interface>: unknown attribute 'vip' (allowed: mac, "
       "dip, pa, gateway)"},
      {"future_namespace.xml",
       "future_namespace.xml:4: <sluice:vm>: namespace 'http://sluice.dev/xmlns/libvirt/2' is "
       "not supported"},
      {"unsupported_type.xml",
       "unsupported_type.xml:5: <sluice:interface>: mac 52:54:00:66:00:01 is the <interface "
       "type='direct'> at line 9, which Sluice cannot serve"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<Domain> d = ParseSample(c.file);
    ASSERT_FALSE(d.ok()) << c.file;
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << c.file;
    EXPECT_THAT(d.status().message(), HasSubstr(c.error)) << c.file;
  }
}

TEST(DomainXmlTest, IdentityIgnoresBadMetadataContents) {
  absl::StatusOr<DomainIdentity> id = ParseDomainIdentity(ReadTestdata("bad_dip.xml"), "x");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->name, "bad-dip");
  EXPECT_TRUE(id->has_sluice_metadata);
}

TEST(DomainXmlTest, InlineMetadataErrors) {
  const std::string iface = "<s:interface mac='52:54:00:00:00:01' dip='10.0.0.5'";
  struct Case {
    std::string children;
    std::string attrs;
    const char* error;
  } cases[] = {
      {"", "", "<s:vm>: binds no interface"},
      {iface + "/>", " version='2'", "<s:vm>: unknown attribute 'version' (allowed: none)"},
      {iface + "/><s:host/>", "", "<s:host>: unknown element (a Sluice <vm> holds <interface>"},
      {iface + "/>hello", "", "<s:vm>: unexpected text 'hello'"},
      {iface + "/><x:foo xmlns:x='urn:x'/>", "", "<x:foo>: element outside the Sluice namespace"},
      {"<s:interface dip='10.0.0.5'/>", "", "missing attribute 'mac'"},
      {"<s:interface mac='52:54:00:00:00:01'/>", "", "missing attribute 'dip'"},
      {"<s:interface mac='52:54:00:00:01' dip='10.0.0.5'/>", "",
       "mac: '52:54:00:00:01' is not a MAC address"},
      {iface + " pa='1.2.3'/>", "", "pa: '1.2.3' is not an IPv4 address"},
      {iface + " gateway='0.0.0.0'/>", "", "gateway: 0.0.0.0 is not a usable address"},
      {iface + "/>" + iface + "/>", "", "mac 52:54:00:00:00:01 is bound twice (first at line 5)"},
      {iface + "><s:endpoint vip='1.2.3.4:0/tcp'/></s:interface>", "", "port must be 1..65535"},
      {iface + "><s:endpoint vip='1.2.3.4:80/sctp'/></s:interface>", "",
       "'sctp' is not a supported protocol"},
      {iface + "><s:endpoint vip='1.2.3.4:80/tcp' dip_port='70000'/></s:interface>", "",
       "dip_port '70000' must be 1..65535"},
      {iface + "><s:endpoint vip='1.2.3.4:80/tcp'/><s:endpoint vip='1.2.3.4:80/tcp'/>"
               "</s:interface>",
       "", "1.2.3.4:80/tcp is listed twice"},
      {iface + "><s:endpoint vip='1.2.3.4:80/tcp'>x</s:endpoint></s:interface>", "",
       "<s:endpoint>: unexpected text 'x'"},
      {iface + "><s:endpoint vip='1.2.3.4:80/tcp' weight='3'/></s:interface>", "",
       "unknown attribute 'weight' (allowed: vip, dip_port)"},
      {iface + "><s:lease/></s:interface>", "", "<s:lease>: unknown element"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<Domain> d = ParseDomainXml(WithSluice(c.children, c.attrs), "inline");
    ASSERT_FALSE(d.ok()) << c.children;
    EXPECT_THAT(d.status().message(), HasSubstr(c.error)) << c.children;
    EXPECT_THAT(d.status().message(), HasSubstr("inline:")) << c.children;
  }
}

TEST(DomainXmlTest, SecondSluiceElementAndDuplicateDip) {
  std::string two_vms =
      "<domain><name>a</name><metadata>\n"
      "<s:vm xmlns:s='http://sluice.dev/xmlns/libvirt/1'/>\n"
      "<t:vm xmlns:t='http://sluice.dev/xmlns/libvirt/1'/>\n"
      "</metadata></domain>";
  EXPECT_THAT(ParseDomainIdentity(two_vms, "x").status().message(),
              HasSubstr("x:3: <t:vm>: second Sluice <vm> element (the first is at line 2)"));

  std::string two_ifaces =
      "<domain><name>a</name><metadata>\n"
      "<s:vm xmlns:s='http://sluice.dev/xmlns/libvirt/1'>\n"
      "<s:interface mac='52:54:00:00:00:01' dip='10.0.0.5'/>\n"
      "<s:interface mac='52:54:00:00:00:02' dip='10.0.0.5'/>\n"
      "</s:vm></metadata><devices>\n"
      "<interface type='ethernet'><mac address='52:54:00:00:00:01'/><target dev='a'/>"
      "</interface>\n"
      "<interface type='ethernet'><mac address='52:54:00:00:00:02'/><target dev='b'/>"
      "</interface>\n"
      "</devices></domain>";
  EXPECT_THAT(ParseDomainXml(two_ifaces, "x").status().message(),
              HasSubstr("x:4: <s:interface>: dip 10.0.0.5 is already bound at line 3"));
}

TEST(DomainXmlTest, BoundInterfaceMissingWhatTheAgentNeeds) {
  auto domain = [](const std::string& iface) {
    return "<domain><name>a</name><metadata>"
           "<s:vm xmlns:s='http://sluice.dev/xmlns/libvirt/1'>"
           "<s:interface mac='52:54:00:00:00:01' dip='10.0.0.5'/></s:vm></metadata>\n"
           "<devices>\n" +
           iface + "\n</devices></domain>";
  };
  EXPECT_THAT(ParseDomainXml(domain("<interface type='bridge'><mac address='52:54:00:00:00:01'/>"
                                    "<source bridge='br0'/></interface>"),
                             "x")
                  .status()
                  .message(),
              HasSubstr("type='bridge'> at line 3, which has no <target dev>"));
  EXPECT_THAT(ParseDomainXml(domain("<interface type='vhostuser'><mac address='52:54:00:00:00:01'/>"
                                    "</interface>"),
                             "x")
                  .status()
                  .message(),
              HasSubstr("has no <source path>"));
  EXPECT_THAT(ParseDomainXml(domain("<interface type='hostdev'><mac address='52:54:00:00:00:01'/>"
                                    "<source/></interface>"),
                             "x")
                  .status()
                  .message(),
              HasSubstr("has no <source><address type='pci'>"));
  EXPECT_THAT(
      ParseDomainXml(domain("<interface><mac address='52:54:00:00:00:01'/></interface>"), "x")
          .status()
          .message(),
      HasSubstr("x:3: <interface>: missing attribute 'type'"));
  EXPECT_THAT(
      ParseDomainXml(domain("<interface type='ethernet'><mac address='zz'/></interface>"), "x")
          .status()
          .message(),
      HasSubstr("x:3: <mac>: 'zz' is not a MAC address"));
  // Decimal PCI fields are accepted as libvirt does; missing ones default to 0.
  absl::StatusOr<Domain> d =
      ParseDomainXml(domain("<interface type='hostdev'><mac address='52:54:00:00:00:01'/>"
                            "<source><address type='pci' bus='59' slot='2'/></source>"
                            "</interface>"),
                     "x");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->interfaces[0].pci->ToString(), "0000:3b:02.0");
}

TEST(DomainXmlTest, DomstatusWrapperAndEntitiesAreNotExpanded) {
  std::string status =
      "<domstatus state='running' pid='42'><domain type='kvm' id='1'><name>w</name>"
      "</domain></domstatus>";
  absl::StatusOr<DomainIdentity> id = ParseDomainIdentity(status, "x");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->name, "w");

  // An external entity is never fetched (XML_PARSE_NONET, no entity substitution).
  std::string xxe =
      "<!DOCTYPE domain [<!ENTITY x SYSTEM 'file:///etc/hostname'>]>"
      "<domain><name>&x;</name></domain>";
  id = ParseDomainIdentity(xxe, "x");
  EXPECT_TRUE(!id.ok() || id->name.empty() || id->name == "&x;") << id->name;
}

}  // namespace
}  // namespace sluice::libvirt
