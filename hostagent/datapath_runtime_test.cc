// Runtime port hot-plug through the gRPC service's AttachVm / DetachVm, on real DPDK ports in
// a private EAL (tests/eal_test_main.cc): the boot ports are net_ring ethdevs, the
// hot-plugged VM ports are vdevs probed from devargs like the agent's (net_pcap, which reads
// what the "VM" sends from one pcap file and writes what it receives to another; net_null).
// The test thread is the data-path lcore: it adopts snapshots and processes bursts itself,
// and runs a detach (which waits for the lcore's ack) on a second thread.
#include "hostagent/datapath_runtime.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>

#include <gtest/gtest.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include "offload/port/port.h"
#include "offload/sw/fixture_builder.h"
#include "tests/support/lab_addresses.h"
#include "tests/support/ring_port.h"

namespace sluice::agent {
namespace {

using fixture::Arp;
using fixture::Eth;
using fixture::Ip;
using fixture::Ipv4;
using fixture::Payload;
using fixture::Tcp;
using namespace sluice::testing::lab;

const flow::MacAddr kVm9Mac = fixture::Mac("02:00:0a:01:00:09");
const uint32_t kVm9Dip = Ip("10.1.0.9");
const uint32_t kVm9Pa = Ip("10.101.0.39");
const uint32_t kVmGateway = Ip("10.1.0.254");

AgentConfig BootConfig() {
  return AgentConfig{
      .name = "host-hotplug",
      .uplink = "net_ring_up",
      .address = {.addr = kHostPa, .length = 24},
      .gateway = kRouter,
      .vms = {{.name = "vm1", .port = "net_ring_vm1", .mac = kVmMac, .dip = kDip, .pa = kVmPa,
               .gateway = kVmGateway}},
      .endpoints = {{.vip = kVip, .port = 80, .proto = 6, .dip = kDip, .dip_port = 8080}}};
}

// Frames of a pcap file (classic format, as net_pcap writes it).
std::vector<std::vector<uint8_t>> ReadPcap(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::vector<uint8_t>> frames;
  size_t at = 24;
  while (at + 16 <= data.size()) {
    uint32_t caplen;
    memcpy(&caplen, &data[at + 8], 4);
    at += 16;
    if (at + caplen > data.size()) break;
    frames.emplace_back(data.begin() + at, data.begin() + at + caplen);
    at += caplen;
  }
  return frames;
}

void WritePcap(const std::string& path, const std::vector<std::vector<uint8_t>>& frames) {
  std::ofstream out(path, std::ios::binary);
  const uint32_t header[6] = {0xa1b2c3d4, 0x00040002, 0, 0, 65535, 1};
  out.write(reinterpret_cast<const char*>(header), sizeof(header));
  for (const auto& f : frames) {
    const uint32_t record[4] = {0, 0, static_cast<uint32_t>(f.size()),
                                static_cast<uint32_t>(f.size())};
    out.write(reinterpret_cast<const char*>(record), sizeof(record));
    out.write(reinterpret_cast<const char*>(f.data()), static_cast<std::streamsize>(f.size()));
  }
}

class HotplugTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int n = 0;
    suffix_ = std::to_string(n++);
    dir_ = std::filesystem::temp_directory_path() /
           ("sluice-hotplug-" + std::to_string(getpid()) + "-" + suffix_);
    std::filesystem::create_directories(dir_);
    pool_ = rte_pktmbuf_pool_create(("hotplug_" + suffix_).c_str(), 2047, 0, 0,
                                    RTE_MBUF_DEFAULT_BUF_SIZE, 0);
    ASSERT_NE(pool_, nullptr);
    uplink_ = std::make_unique<testing::RingPort>("hp_up" + suffix_, pool_);
    vm1_ = std::make_unique<testing::RingPort>("hp_vm1_" + suffix_, pool_);
    ASSERT_TRUE(uplink_->ok() && vm1_->ok());
    uplink_mac_ = port::PortMac(uplink_->port_id());
    ports_ = PortMap{.uplink_port = uplink_->port_id(),
                     .uplink_mac = uplink_mac_,
                     .vm_ports = {vm1_->port_id()},
                     .vm_port_macs = {port::PortMac(vm1_->port_id())}};
    config_ = BootConfig();
    agent_ = std::make_unique<AgentDataPath>(config_, ports_);
    runtime_ = std::make_unique<DataPathRuntime>(
        agent_.get(), config_,
        DataPathRuntimeOptions{.pool = pool_,
                               .boot_ports = ports_,
                               .adopt_timeout = std::chrono::milliseconds(5000)});
    service_ = std::make_unique<AgentService>(runtime_.get(), config_);
    ports_at_start_ = rte_eth_dev_count_avail();
  }
  void TearDown() override {
    service_.reset();
    runtime_.reset();
    agent_.reset();
    vm1_.reset();
    uplink_.reset();
    rte_mempool_free(pool_);
    std::filesystem::remove_all(dir_);
  }

  std::string PcapDevargs(const std::string& name) {
    const std::string in = (dir_ / (name + "_in.pcap")).string();
    if (!std::filesystem::exists(in)) WritePcap(in, {});
    return "net_pcap_" + name + suffix_ + ",rx_pcap=" + in + ",tx_pcap=" +
           (dir_ / (name + "_out.pcap")).string();
  }

  v1::AttachVmRequest Vm9(const std::string& port) {
    v1::AttachVmRequest r;
    v1::VmAttachment* vm = r.mutable_vm();
    vm->set_name("vm9");
    vm->set_port(port);
    vm->set_mac("02:00:0a:01:00:09");
    vm->set_dip("10.1.0.9");
    vm->set_pa("10.101.0.39");
    vm->set_gateway("10.1.0.254");
    v1::Endpoint* ep = vm->add_endpoints();
    ep->set_vip("10.200.0.10");
    ep->set_port(80);
    ep->set_protocol(v1::L4_PROTOCOL_TCP);
    ep->set_dip_port(8080);
    return r;
  }

  grpc::Status Attach(const v1::AttachVmRequest& request) {
    v1::AttachVmResponse response;
    return service_->AttachVm(nullptr, &request, &response);
  }

  // The lcore's loop: adopt, poll every port, flush.
  void Poll() {
    agent_->AdoptConfig();
    rte_mbuf* pkts[32];
    for (size_t p = 0; p < agent_->ports().size(); ++p) {
      const uint16_t n = rte_eth_rx_burst(agent_->ports()[p]->port_id, 0, pkts, 32);
      if (n > 0) agent_->ProcessBurst(p, pkts, n, now_ns_);
    }
    agent_->FlushAll();
  }

  // Detaches `name` on another thread (it waits for the data path's ack) while this thread
  // runs the lcore.
  grpc::Status Detach(const std::string& name) {
    v1::DetachVmRequest request;
    request.set_name(name);
    auto done = std::async(std::launch::async, [&] {
      v1::DetachVmResponse response;
      return service_->DetachVm(nullptr, &request, &response);
    });
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (done.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready &&
           std::chrono::steady_clock::now() < deadline) {
      Poll();
    }
    return done.get();
  }

  void Receive(size_t port_index, const fixture::Packet& p) {
    rte_mbuf* m = testing::MbufFrom(pool_, p.Bytes());
    ASSERT_NE(m, nullptr);
    agent_->ProcessBurst(port_index, &m, 1, now_ns_);
    agent_->FlushAll();
  }

  void BecomeReady() {
    agent_->Housekeeping(pool_, now_ns_);
    agent_->FlushAll();
    uplink_->Sent();
    Receive(0, Eth{.dst = uplink_mac_, .src = kRouterMac} /
                   Arp{.op = 2, .sender_mac = kRouterMac, .sender_ip = kRouter,
                       .target_mac = uplink_mac_, .target_ip = kHostPa});
    agent_->Housekeeping(pool_, now_ns_);
    ASSERT_TRUE(agent_->ready());
  }

  uint64_t TotalDrops() {
    uint64_t n = 0;
    for (size_t r = 0; r < kNumDropReasons; ++r) n += agent_->Drops(static_cast<DropReason>(r));
    for (size_t r = 0; r < kNumAgentDrops; ++r) n += agent_->Drops(static_cast<AgentDrop>(r));
    return n;
  }

  fixture::Packet InboundTo(uint32_t pa, uint16_t sport) {
    return Eth{.dst = uplink_mac_, .src = kMuxMac} / Ipv4{.src = kMuxPa, .dst = pa} /
           Ipv4{.src = kClient, .dst = kVip, .ttl = 63} /
           Tcp{.sport = sport, .dport = 80, .flags = fixture::kSyn} / Payload{"hi"};
  }

  std::string suffix_;
  std::filesystem::path dir_;
  rte_mempool* pool_ = nullptr;
  std::unique_ptr<testing::RingPort> uplink_, vm1_;
  flow::MacAddr uplink_mac_{};
  PortMap ports_;
  AgentConfig config_;
  std::unique_ptr<AgentDataPath> agent_;
  std::unique_ptr<DataPathRuntime> runtime_;
  std::unique_ptr<AgentService> service_;
  unsigned ports_at_start_ = 0;
  uint64_t now_ns_ = 1'000'000'000;
};

TEST_F(HotplugTest, AttachProbesThePortTrafficReachesItDetachRemovesIt) {
  BecomeReady();
  // What the new VM sends first (read by its port's RX): an ARP request for its gateway.
  const std::string devargs = PcapDevargs("vm9");
  const flow::MacAddr bcast = fixture::Mac("ff:ff:ff:ff:ff:ff");
  WritePcap((dir_ / "vm9_in.pcap").string(),
            {(Eth{.dst = bcast, .src = kVm9Mac} /
              Arp{.op = 1, .sender_mac = kVm9Mac, .sender_ip = kVm9Dip, .target_ip = kVmGateway})
                 .Bytes()});
  grpc::Status s = Attach(Vm9(devargs));
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(rte_eth_dev_count_avail(), ports_at_start_ + 1);
  EXPECT_EQ(runtime_->hotplug_stats().ports_hotplugged, 1u);
  // Published, not adopted: the data path does not poll or send on the port yet.
  EXPECT_EQ(agent_->ports().size(), 2u);
  const uint64_t drops = TotalDrops();
  Receive(0, InboundTo(kVm9Pa, 40000));
  EXPECT_EQ(TotalDrops(), drops + 1);

  // Nothing may overtake a VM change the data path has not adopted (it takes only the newest
  // snapshot).
  std::string error;
  EXPECT_FALSE(agent_->PublishConfig(service_->running(), &error));
  EXPECT_NE(error.find("has not adopted config generation 2 (VMs attached or detached)"),
            std::string::npos)
      << error;

  Poll();  // adopts
  ASSERT_EQ(agent_->ports().size(), 3u);
  const uint16_t vm9_port = agent_->ports()[2]->port_id;
  const flow::MacAddr vm9_port_mac = port::PortMac(vm9_port);
  EXPECT_EQ(agent_->ports()[2]->rx_packets.Get(), 1u);  // the ARP request, answered
  // The uplink answers ARP for the new VM's PA; inbound traffic for the VIP reaches it.
  Receive(0, Eth{.dst = bcast, .src = kMuxMac} /
                 Arp{.op = 1, .sender_mac = kMuxMac, .sender_ip = kMuxPa, .target_ip = kVm9Pa});
  ASSERT_EQ(uplink_->Sent().size(), 1u);
  Receive(0, InboundTo(kVm9Pa, 40001));
  Poll();

  v1::GetVmsResponse vms;
  ASSERT_TRUE(service_->GetVms(nullptr, nullptr, &vms).ok());
  ASSERT_EQ(vms.vms_size(), 2);
  EXPECT_TRUE(vms.vms(1).hotplugged());
  EXPECT_EQ(vms.vms(1).dpdk_port(), vm9_port);
  EXPECT_EQ(vms.vms(1).tx_packets(), 2u);  // ARP reply + the inbound SYN

  s = Detach("vm9");
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(agent_->ports().size(), 2u);
  EXPECT_EQ(rte_eth_dev_count_avail(), ports_at_start_);
  uint16_t id;
  EXPECT_NE(rte_eth_dev_get_port_by_name(port::DeviceName(devargs).c_str(), &id), 0);
  EXPECT_EQ(runtime_->hotplug_stats().ports_unplugged, 1u);
  // What the VM received, as its port wrote it (closed now, so complete).
  const auto out = ReadPcap((dir_ / "vm9_out.pcap").string());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], (Eth{.dst = kVm9Mac, .src = vm9_port_mac} /
                     Arp{.op = 2, .sender_mac = vm9_port_mac, .sender_ip = kVmGateway,
                         .target_mac = kVm9Mac, .target_ip = kVm9Dip})
                        .Bytes());
  EXPECT_EQ(out[1], (Eth{.dst = kVm9Mac, .src = vm9_port_mac} /
                     Ipv4{.src = kClient, .dst = kVm9Dip, .ttl = 62} /
                     Tcp{.sport = 40001, .dport = 8080, .flags = fixture::kSyn} / Payload{"hi"})
                        .Bytes());
  // Gone from the data path: its PA is no longer answered, its VIP traffic no longer sent.
  Receive(0, Eth{.dst = bcast, .src = kMuxMac} /
                 Arp{.op = 1, .sender_mac = kMuxMac, .sender_ip = kMuxPa, .target_ip = kVm9Pa});
  EXPECT_TRUE(uplink_->Sent().empty());
  // vm1, a boot VM, is untouched.
  Receive(0, InboundTo(kVmPa, 40002));
  EXPECT_EQ(vm1_->Sent().size(), 1u);
}

TEST_F(HotplugTest, FailuresUndoEverythingAndNameTheField) {
  const unsigned mbufs = rte_mempool_avail_count(pool_);
  // A device that cannot be probed (no such interface).
  grpc::Status s = Attach(Vm9("net_af_packet_hp" + suffix_ + ",iface=slnoif0"));
  EXPECT_EQ(s.error_code(), grpc::FAILED_PRECONDITION);
  EXPECT_EQ(s.error_message().rfind("vm.port: cannot probe DPDK device", 0), 0u)
      << s.error_message();
  // A pcap file that does not exist.
  s = Attach(Vm9("net_pcap_hp" + suffix_ + ",rx_pcap=/nonexistent/in.pcap,tx_pcap=" +
                 (dir_ / "x.pcap").string()));
  EXPECT_EQ(s.error_code(), grpc::FAILED_PRECONDITION);
  EXPECT_EQ(s.error_message().rfind("vm.port: cannot probe DPDK device", 0), 0u)
      << s.error_message();
  // Devargs that do not parse, a DIP in use: refused before anything is probed.
  s = Attach(Vm9("net_af_packet_x,qpairs=2"));
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message().rfind("vm.port: ", 0), 0u) << s.error_message();
  v1::AttachVmRequest dup = Vm9(PcapDevargs("dup"));
  dup.mutable_vm()->set_dip("10.1.0.1");
  s = Attach(dup);
  EXPECT_EQ(s.error_code(), grpc::FAILED_PRECONDITION);
  EXPECT_EQ(s.error_message(), "vm.dip: 10.1.0.1 is already VM 'vm1'");
  // A device name that exists already (the uplink's ring) is not reconfigured.
  char uplink_name[RTE_ETH_NAME_MAX_LEN];
  ASSERT_EQ(rte_eth_dev_get_name_by_port(uplink_->port_id(), uplink_name), 0);
  s = Attach(Vm9(std::string(uplink_name) + ",iface=whatever"));
  EXPECT_EQ(s.error_code(), grpc::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find(std::string("vm.port: DPDK device '") + uplink_name +
                                   "' exists already"),
            std::string::npos)
      << s.error_message();
  // An endpoint the data path cannot take (its lease overlaps): the probed port goes again.
  v1::AttachVmRequest bad_lease = Vm9(PcapDevargs("lease"));
  v1::SnatLease* l = bad_lease.mutable_vm()->add_snat_leases();
  l->set_vip("10.200.0.10");
  l->set_protocol(v1::L4_PROTOCOL_TCP);
  l->set_port_start(80);
  l->set_port_count(1);
  s = Attach(bad_lease);
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT) << s.error_message();

  EXPECT_EQ(rte_eth_dev_count_avail(), ports_at_start_);
  EXPECT_EQ(rte_mempool_avail_count(pool_), mbufs);
  EXPECT_EQ(service_->running().vms.size(), 1u);
  EXPECT_EQ(agent_->published_generation(), 1u);
  const HotplugStats stats = runtime_->hotplug_stats();
  EXPECT_EQ(stats.ports_hotplugged, 0u);
  EXPECT_EQ(stats.failures[static_cast<size_t>(HotplugFailure::kProbe)], 2u);
  EXPECT_EQ(stats.failures[static_cast<size_t>(HotplugFailure::kInvalidRequest)], 2u);
  EXPECT_EQ(stats.failures[static_cast<size_t>(HotplugFailure::kPortInUse)], 1u);
  // And a good attach still works afterwards.
  s = Attach(Vm9(PcapDevargs("vm9")));
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_TRUE(Detach("vm9").ok());
}

TEST_F(HotplugTest, FiftyAttachDetachCyclesLeakNoPortsOrMbufs) {
  BecomeReady();
  const std::string in = (dir_ / "cycle_in.pcap").string();
  const flow::MacAddr bcast = fixture::Mac("ff:ff:ff:ff:ff:ff");
  WritePcap(in, {(Eth{.dst = bcast, .src = kVm9Mac} /
                  Arp{.op = 1, .sender_mac = kVm9Mac, .sender_ip = kVm9Dip,
                      .target_ip = kVmGateway})
                     .Bytes()});
  const unsigned mbufs = rte_mempool_avail_count(pool_);
  for (int i = 0; i < 50; ++i) {
    SCOPED_TRACE(i);
    // Alternately a pcap port (traffic both ways) and a null port (it receives nothing).
    const std::string devargs =
        i % 2 == 0 ? "net_pcap_cycle" + suffix_ + ",rx_pcap=" + in + ",tx_pcap=" +
                         (dir_ / "cycle_out.pcap").string()
                   : "net_null_cycle" + suffix_ + ",no-rx=1";
    grpc::Status s = Attach(Vm9(devargs));
    ASSERT_TRUE(s.ok()) << s.error_message();
    Poll();
    ASSERT_EQ(agent_->ports().size(), 3u);
    Receive(0, InboundTo(kVm9Pa, static_cast<uint16_t>(41000 + i)));
    s = Detach("vm9");
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(agent_->ports().size(), 2u);
    ASSERT_EQ(rte_eth_dev_count_avail(), ports_at_start_);
  }
  agent_->ReclaimRetired();
  EXPECT_EQ(rte_mempool_avail_count(pool_), mbufs);
  const HotplugStats stats = runtime_->hotplug_stats();
  EXPECT_EQ(stats.ports_hotplugged, 50u);
  EXPECT_EQ(stats.ports_unplugged, 50u);
  EXPECT_EQ(stats.ports_pending_removal, 0u);
  // The flows the SYNs created went with the VM.
  EXPECT_EQ(agent_->flows().size(), 0u);
}

}  // namespace
}  // namespace sluice::agent
