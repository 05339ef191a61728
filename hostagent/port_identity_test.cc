#include "hostagent/port_identity.h"

#include "gtest/gtest.h"

namespace sluice::agent {
namespace {

std::string Id(const std::string& devargs) {
  absl::StatusOr<PortIdentity> id = ParsePortIdentity(devargs);
  return id.ok() ? id->ToString() : "error: " + std::string(id.status().message());
}

// Spellings of one device that the agent's config and the libvirt hook produce.
struct SamePair {
  const char* config;
  const char* hook;
};

TEST(PortIdentityTest, SpellingsOfOneDeviceAreTheSamePort) {
  const SamePair same[] = {
      // tap: the config's vdev name and the hook's (net_af_packet_<tap>) differ.
      {"net_af_packet1,iface=vm1", "net_af_packet_vm1,iface=vm1"},
      {"net_af_packet1,iface=vnet0,qpairs=2", "net_af_packet_vnet0,iface=vnet0"},
      {"eth_af_packet3,iface=vnet0", "net_af_packet_vnet0,iface=vnet0"},
      {"net_af_xdp0,iface=ens1f0,start_queue=0", "net_af_xdp_x,iface=ens1f0"},
      // vhost-user: the socket is the device; client= and queues= are options.
      {"net_vhost0,iface=/run/openvswitch/vhu-web1,client=1",
       "net_vhost_web1,client=1,iface=/run/openvswitch/vhu-web1"},
      {"net_vhost0,iface=/run/openvswitch//vhu-web1,queues=2",
       "net_vhost_web1,iface=/run/openvswitch/vhu-web1,client=1"},
      {"net_virtio_user0,path=/dev/vhost-net,queues=1", "virtio_user5,path=/dev/vhost-net"},
      // VF representors: short and full PCI address, case, every form of "VF 5".
      {"0000:3b:00.0,representor=vf5", "0000:3B:00.0,representor=vf5"},
      {"3b:00.0,representor=vf5", "0000:3b:00.0,representor=vf5"},
      {"0000:3b:00.0,representor=[5]", "0000:3b:00.0,representor=vf5"},
      {"0000:3b:00.0,dv_flow_en=1,representor=vf[5]", "0000:3b:00.0,representor=vf5"},
      {"0000:3b:00.0,representor=5", "0000:3b:00.0,representor=vf5"},
      {"0000:3b:00.0,representor=pf0vf5", "0000:3b:00.0,representor=PF0VF5"},
      {"net_ring0", "net_ring0"},
      {"net_tap0", "net_tap0,mac=fixed"},
  };
  for (const SamePair& p : same) {
    EXPECT_TRUE(SamePort(p.config, p.hook)) << p.config << " vs " << p.hook << ": " << Id(p.config)
                                            << " / " << Id(p.hook);
  }
}

TEST(PortIdentityTest, DifferentDevicesAreDifferentPorts) {
  const SamePair different[] = {
      {"net_af_packet1,iface=vm1", "net_af_packet1,iface=vm2"},
      {"net_af_packet1,iface=vm1", "net_af_xdp1,iface=vm1"},  // another driver on the tap
      {"net_vhost0,iface=/run/a.sock", "net_vhost0,iface=/run/b.sock"},
      {"0000:3b:00.0,representor=vf5", "0000:3b:00.0,representor=vf6"},
      {"0000:3b:00.0,representor=vf5", "0000:3b:00.1,representor=vf5"},
      {"0000:3b:00.0,representor=vf5", "0000:3b:00.0"},  // the PF itself
      {"0001:3b:00.0", "0000:3b:00.0"},
      {"net_tap0", "net_tap1"},
      {"net_ring0", "net_ring1"},
      {"net_memif0,socket=/run/m.sock,id=1", "net_memif0,socket=/run/m.sock,id=2"},
  };
  for (const SamePair& p : different) {
    EXPECT_FALSE(SamePort(p.config, p.hook)) << p.config << " vs " << p.hook;
  }
}

TEST(PortIdentityTest, IdentityNamesDriverAndDevice) {
  EXPECT_EQ(Id("net_af_packet_vnet0,iface=vnet0,qpairs=4"), "net_af_packet iface=vnet0");
  EXPECT_EQ(Id("3B:00.0,representor=[7]"), "pci 0000:3b:00.0 representor=vf7");
  EXPECT_EQ(Id("net_vhost_web1,iface=/run/x/./vhu,client=1"), "net_vhost iface=/run/x/vhu");
  EXPECT_EQ(Id("net_pcap0,rx_pcap=/tmp/in.pcap,tx_pcap=/tmp/out.pcap"),
            "net_pcap rx_pcap=/tmp/in.pcap,tx_pcap=/tmp/out.pcap");
  EXPECT_EQ(Id("net_tap0"), "net_tap name=net_tap0");
  // A driver not known here: the whole devargs, options sorted.
  EXPECT_EQ(Id("net_foo0,b=2,a=1"), "net_foo0 net_foo0,a=1,b=2");
  EXPECT_TRUE(SamePort("net_foo0,b=2,a=1", "net_foo0,a=1,b=2"));
  EXPECT_FALSE(SamePort("net_foo0,a=1", "net_foo0,a=1,b=2"));
}

TEST(PortIdentityTest, MalformedDevargsAreRefused) {
  EXPECT_EQ(Id(""), "error: port '': no device name");
  EXPECT_EQ(Id(",iface=x"), "error: port ',iface=x': no device name");
  EXPECT_EQ(Id("net_af_packet0"), "error: port 'net_af_packet0': net_af_packet needs iface= to "
                                  "name its device");
  EXPECT_EQ(Id("net_vhost0,client=1"),
            "error: port 'net_vhost0,client=1': net_vhost needs iface= to name its device");
  EXPECT_EQ(Id("net_af_packet0,=x"), "error: port 'net_af_packet0,=x': option '=x' is not "
                                     "key=value");
  EXPECT_EQ(Id("net_af_packet0,iface=a,,"),
            "error: port 'net_af_packet0,iface=a,,': option '' is not key=value");
  EXPECT_EQ(Id("0000:3b:00.9"), "error: port '0000:3b:00.9': '0000:3b:00.9' is not a PCI address "
                                "(domain:bus:device.function, e.g. 0000:3b:00.0)");
  EXPECT_EQ(Id("3b:0.0"), "error: port '3b:0.0': '3b:0.0' is not a PCI address "
                          "(domain:bus:device.function, e.g. 0000:3b:00.0)");
  // Unparseable on either side: only the same text is the same port.
  EXPECT_TRUE(SamePort("net_af_packet0", "net_af_packet0"));
  EXPECT_FALSE(SamePort("net_af_packet0", "net_af_packet1"));
}

}  // namespace
}  // namespace sluice::agent
