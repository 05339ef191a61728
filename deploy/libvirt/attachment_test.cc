#include "deploy/libvirt/attachment.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/net_text.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice::libvirt {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string ReadTestdata(const std::string& name) {
  std::ifstream in(std::string(SLUICE_LIBVIRT_TESTDATA) + "/" + name);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

/// A sysfs tree in a temporary directory: PF 0000:3b:00.0 with VFs 0000:3b:02.0..02.7 as
/// virtfn0..7, the way the kernel links them.
class FakeSysfs {
 public:
  FakeSysfs() {
    char tmpl[] = "/tmp/sluice-sysfs-XXXXXX";
    root_ = mkdtemp(tmpl);
    const fs::path devices = root_ / "bus/pci/devices";
    fs::create_directories(devices / "0000:3b:00.0");
    for (int i = 0; i < 8; ++i) {
      const std::string vf = "0000:3b:02." + std::to_string(i);
      fs::create_directories(devices / vf);
      fs::create_symlink("../0000:3b:00.0", devices / vf / "physfn");
      fs::create_symlink("../" + vf, devices / "0000:3b:00.0" / ("virtfn" + std::to_string(i)));
    }
    fs::create_directories(devices / "0000:00:1f.0");  // not a VF
  }
  ~FakeSysfs() { fs::remove_all(root_); }
  std::string root() const { return root_.string(); }

 private:
  fs::path root_;
};

TEST(AttachmentTest, OnePerBindingWithDevargs) {
  FakeSysfs sysfs;
  absl::StatusOr<Domain> d = ParseDomainXml(ReadTestdata("all_interface_types.xml"), "x");
  ASSERT_TRUE(d.ok()) << d.status();
  absl::StatusOr<std::vector<VmPortAttachment>> plan = PlanAttachments(*d, sysfs.root());
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->size(), 5u);
  const std::vector<VmPortAttachment>& a = *plan;
  EXPECT_EQ(a[0].name, "web1:0");
  EXPECT_EQ(a[0].kind, PortKind::kVhostUser);
  // QEMU is the vhost-user server, so the agent's port is the client.
  EXPECT_EQ(a[0].port, "net_vhost_web1_0,iface=/run/openvswitch/vhu-web1-0,client=1");
  EXPECT_EQ(a[0].dip, *ParseIpv4("10.1.0.11"));
  EXPECT_EQ(a[0].endpoints.size(), 2u);
  EXPECT_EQ(a[1].kind, PortKind::kHostdev);
  EXPECT_EQ(a[1].port, "0000:3b:00.0,representor=vf5");
  EXPECT_EQ(a[2].kind, PortKind::kTap);
  EXPECT_EQ(a[2].port, "net_af_packet_vnet3,iface=vnet3");
  EXPECT_EQ(a[3].port, "net_af_packet_sl_tap4,iface=sl-tap4");
  EXPECT_EQ(a[4].name, "web1:4");
  EXPECT_EQ(MacToString(a[4].mac), "52:54:00:10:00:05");

  absl::StatusOr<std::vector<std::string>> names = AttachmentNames(*d);
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(names->front(), "web1:0");
}

TEST(AttachmentTest, SingleBindingUsesTheDomainName) {
  absl::StatusOr<Domain> d = ParseDomainXml(ReadTestdata("vhostuser_only.xml"), "x");
  ASSERT_TRUE(d.ok()) << d.status();
  absl::StatusOr<std::vector<VmPortAttachment>> plan = PlanAttachments(*d, "/nonexistent");
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->size(), 1u);
  EXPECT_EQ((*plan)[0].name, "db1");
  EXPECT_EQ((*plan)[0].port, "net_vhost_db1,iface=/run/sluice/vhost-db1-0.sock,client=0");
}

TEST(AttachmentTest, VfErrors) {
  FakeSysfs sysfs;
  EXPECT_THAT(VfRepresentorDevargs({.bus = 0x3b, .slot = 3}, sysfs.root()).status().message(),
              HasSubstr("VF 0000:3b:03.0: no such PCI device"));
  EXPECT_THAT(VfRepresentorDevargs({.bus = 0, .slot = 0x1f}, sysfs.root()).status().message(),
              HasSubstr("PCI device 0000:00:1f.0 is not an SR-IOV VF"));
  absl::StatusOr<std::string> ok = VfRepresentorDevargs({.bus = 0x3b, .slot = 2}, sysfs.root());
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, "0000:3b:00.0,representor=vf0");

  absl::StatusOr<Domain> d = ParseDomainXml(ReadTestdata("all_interface_types.xml"), "x");
  ASSERT_TRUE(d.ok());
  absl::StatusOr<std::vector<VmPortAttachment>> plan = PlanAttachments(*d, "/nonexistent");
  EXPECT_THAT(plan.status().message(),
              HasSubstr("line 37: <interface type='hostdev'>: VF 0000:3b:02.5: no such PCI"));
}

TEST(AttachmentTest, NamesTheAgentCannotTake) {
  Domain d;
  d.identity.name = "my vm";
  d.bindings.resize(1);
  EXPECT_THAT(AttachmentNames(d).status().message(),
              HasSubstr("domain name 'my vm' cannot name a Sluice VM"));
  d.identity.name = std::string(63, 'a');
  EXPECT_TRUE(AttachmentNames(d).ok());
  d.bindings.resize(2);
  EXPECT_THAT(AttachmentNames(d).status().message(), HasSubstr("is over 64 characters"));
}

}  // namespace
}  // namespace sluice::libvirt
