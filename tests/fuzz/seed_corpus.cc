// Writes the seed corpora of the fuzz targets into <repo>/tests/fuzz/corpus/<target>/:
// packets from the conformance fixture table and the lab's packet walks, the lab's YAML
// configs, the libvirt hook's domain XML samples, signed Fastpath redirects and the lab
// configs as gRPC requests. Files named "regress-*" (inputs that once crashed a target) and
// "found-*" (inputs fuzzing found, merged in with -merge=1) are left alone.
//
//   fuzz_seed_corpus <repo>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "hostagent/grpc_service.h"
#include "mux_lite/grpc_service.h"
#include "offload/packet/fastpath_redirect.h"
#include "offload/sw/fixture_builder.h"
#include "tests/fuzz/fuzz_lab.h"
#include "tests/fuzz/fuzz_lab_addresses.h"
#include "tests/fuzz/fuzz_support.h"

namespace sluice::fuzz {
namespace {

namespace fs = std::filesystem;
using fixture::Arp;
using fixture::Eth;
using fixture::Icmp;
using fixture::Ip;
using fixture::Ipv4;
using fixture::Packet;
using fixture::Payload;
using fixture::Tcp;
using fixture::Udp;
using fixture::kAck;
using fixture::kFin;
using fixture::kSyn;

fs::path g_corpus;
int g_written = 0;

void Write(const std::string& target, const std::string& name, const std::vector<uint8_t>& bytes) {
  fs::create_directories(g_corpus / target);
  std::ofstream out(g_corpus / target / name, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out.good()) {
    fprintf(stderr, "seed_corpus: cannot write %s/%s\n", target.c_str(), name.c_str());
    exit(1);
  }
  ++g_written;
}

void CopyFiles(const std::string& target, const fs::path& dir, const std::string& starts_with,
               const std::string& extension, const std::string& prefix) {
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != extension) continue;
    if (entry.path().filename().string().rfind(starts_with, 0) != 0) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
    Write(target, prefix + entry.path().filename().string(), bytes);
  }
}

void RemoveSeeds(const std::string& target) {
  if (!fs::exists(g_corpus / target)) return;
  for (const auto& entry : fs::directory_iterator(g_corpus / target)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("regress-", 0) != 0 && name.rfind("found-", 0) != 0) fs::remove(entry.path());
  }
}

std::vector<uint8_t> Records(std::initializer_list<std::pair<uint8_t, Packet>> packets) {
  std::vector<uint8_t> out;
  for (const auto& [port, packet] : packets) AppendRecord(&out, port, 0, packet.Bytes());
  return out;
}

std::vector<uint8_t> RedirectFrame(const packet::FastpathRedirect& r) {
  packet::FastpathKey key{};
  packet::ParseFastpathKey(lab::kFastpathKeyHex, &key);
  std::vector<uint8_t> frame(packet::kFastpathRedirectFrameLen);
  packet::BuildFastpathRedirectFrame(frame.data(), lab::kRouterMac, lab::kAgentUplinkMac,
                                     lab::kMux1, lab::kHost1, r, key);
  return frame;
}

void PacketSeeds() {
  RemoveSeeds("packet");
  std::vector<fixture::FixtureRow> rows = fixture::ConformanceFixtures();
  for (size_t i = 0; i < rows.size(); ++i) {
    std::vector<uint8_t> input = {static_cast<uint8_t>(i), static_cast<uint8_t>(rows[i].in_port)};
    std::vector<uint8_t> frame = rows[i].input.Bytes();
    input.insert(input.end(), frame.begin(), frame.end());
    Write("packet", "fixture-" + rows[i].name, input);
  }
  // The agent's rule set comes after the fixture rows: inbound to vm1's PA, vm1's reply.
  const uint8_t agent_set = static_cast<uint8_t>(rows.size());
  auto with = [&](uint8_t port, const Packet& p) {
    std::vector<uint8_t> input = {agent_set, port};
    std::vector<uint8_t> frame = p.Bytes();
    input.insert(input.end(), frame.begin(), frame.end());
    return input;
  };
  Write("packet", "agent-inbound-ipip", with(0, lab::InboundIpip(kSyn)));
  Write("packet", "agent-inbound-gue", with(0, lab::InboundGue(kSyn)));
  Write("packet", "agent-dsr-return", with(1, lab::Vm1Reply(kSyn | kAck)));
}

void AgentDatapathSeeds() {
  using namespace lab;
  RemoveSeeds("agent_datapath");
  Write("agent_datapath", "inbound-ipip-connection",
        Records({{0, InboundIpip(kSyn)}, {1, Vm1Reply(kSyn | kAck)}, {0, InboundIpip(kAck)},
                 {0, InboundIpip(kFin | kAck)}, {1, Vm1Reply(kFin | kAck)}}));
  Write("agent_datapath", "inbound-gue", Records({{0, InboundGue(kSyn)}, {1, Vm1Reply(kSyn | kAck)}}));
  // VIP 10.200.0.20 shares vm1's DIP:port with VIP 10.200.0.10: the reply needs flow state.
  Write("agent_datapath", "shared-dip-port",
        Records({{0, InboundIpip(kSyn, kVip2)}, {1, Vm1Reply(kSyn | kAck)}}));
  // SNAT: vm1 opens a connection to the Internet; the reply comes back through a mux.
  const Packet out_syn = Eth{.dst = kAgentVmPortMac, .src = kVm1Mac} /
                         Ipv4{.src = kDip1, .dst = kInternet, .ttl = 64} /
                         Tcp{.sport = 33000, .dport = 443, .flags = kSyn};
  const Packet reply = Eth{.dst = kAgentUplinkMac, .src = kRouterMac} /
                       Ipv4{.src = kMux1, .dst = kHost1, .ttl = 63} /
                       Ipv4{.src = kInternet, .dst = kVip, .ttl = 60} /
                       Tcp{.sport = 443, .dport = 20000, .flags = kSyn | kAck};
  Write("agent_datapath", "snat-outbound", Records({{1, out_syn}, {0, reply}}));
  const Packet udp_out = Eth{.dst = kAgentVmPortMac, .src = kVm1Mac} /
                         Ipv4{.src = kDip1, .dst = kInternet} / Udp{.sport = 5353, .dport = 53} /
                         Payload{"query"};
  Write("agent_datapath", "snat-udp-no-lease", Records({{1, udp_out}}));
  const Packet spoofed = Eth{.dst = kAgentVmPortMac, .src = kVm1Mac} /
                         Ipv4{.src = Ip("10.9.9.9"), .dst = kInternet} /
                         Tcp{.sport = 1, .dport = 2, .flags = kSyn};
  Write("agent_datapath", "spoofed-source", Records({{1, spoofed}}));
  // ARP: the router asks for the host PA, vm1 asks for its gateway.
  Write("agent_datapath", "arp",
        Records({{0, Eth{.dst = kBroadcast, .src = kRouterMac} /
                         Arp{.op = 1, .sender_mac = kRouterMac, .sender_ip = kRouter,
                             .target_ip = kHost1}},
                 {1, Eth{.dst = kBroadcast, .src = kVm1Mac} /
                         Arp{.op = 1, .sender_mac = kVm1Mac, .sender_ip = kDip1,
                             .target_ip = kVmGateway}}}));
  // Fastpath: vm1 (SNAT'd as VIP:20000) talks to VIP2, whose DIP lives on host2; the mux
  // tells this host (the source side) to send straight to host2's VM PA.
  {
    std::vector<uint8_t> input;
    AppendRecord(&input, 1, 0,
                 (Eth{.dst = kAgentVmPortMac, .src = kVm1Mac} /
                  Ipv4{.src = kDip1, .dst = kVip2, .ttl = 64} /
                  Tcp{.sport = 33001, .dport = 80, .flags = kSyn})
                     .Bytes());
    AppendRecord(&input, 0, 1,
                 RedirectFrame({.flow_src = kVip, .flow_dst = kVip2, .flow_src_port = 20000,
                                .flow_dst_port = 80, .proto = 6, .dip = Ip("10.1.0.3"),
                                .dst_pa = Ip("10.101.0.33"), .src_host_pa = kHost1,
                                .timestamp_s = kFakeClockStart + 1}));
    AppendRecord(&input, 1, 0,
                 (Eth{.dst = kAgentVmPortMac, .src = kVm1Mac} /
                  Ipv4{.src = kDip1, .dst = kVip2, .ttl = 64} /
                  Tcp{.sport = 33001, .dport = 80, .flags = kAck} / Payload{"GET /"})
                     .Bytes());
    Write("agent_datapath", "fastpath-redirect", input);
  }
  Write("agent_datapath", "icmp-echo-inbound",
        Records({{0, Eth{.dst = kAgentUplinkMac, .src = kRouterMac} /
                         Ipv4{.src = kMux1, .dst = kVm1Pa, .ttl = 63} /
                         Ipv4{.src = kClient, .dst = kVip} / Icmp{.type = 8, .id = 7, .seq = 1}}}));
}

void MuxDatapathSeeds() {
  using namespace lab;
  RemoveSeeds("mux_datapath");
  auto client = [](uint32_t vip, uint8_t flags, uint16_t sport = 40000) {
    return Eth{.dst = kMuxMac, .src = kRouterMac} / Ipv4{.src = kClient, .dst = vip, .ttl = 63} /
           Tcp{.sport = sport, .dport = 80, .flags = flags} / Payload{"x"};
  };
  Write("mux_datapath", "client-connection",
        Records({{0, client(kVip, kSyn)}, {0, client(kVip, kAck)}, {0, client(kVip, kFin | kAck)}}));
  Write("mux_datapath", "gue-backend-source-hash", Records({{0, client(kVip2, kSyn)}}));
  // A VM SNAT'd as VIP:20000 connects to VIP2: Fastpath redirects once established.
  const Packet intra = Eth{.dst = kMuxMac, .src = kRouterMac} /
                       Ipv4{.src = kVip, .dst = kVip2, .ttl = 63} /
                       Tcp{.sport = 20000, .dport = 80, .flags = kSyn};
  const Packet intra_ack = Eth{.dst = kMuxMac, .src = kRouterMac} /
                           Ipv4{.src = kVip, .dst = kVip2, .ttl = 63} /
                           Tcp{.sport = 20000, .dport = 80, .flags = kAck};
  Write("mux_datapath", "fastpath", Records({{0, intra}, {0, intra_ack}}));
  Write("mux_datapath", "snat-return",
        Records({{0, Eth{.dst = kMuxMac, .src = kRouterMac} /
                         Ipv4{.src = kInternet, .dst = kVip, .ttl = 60} /
                         Tcp{.sport = 443, .dport = 20130, .flags = kSyn | kAck}}}));
  Write("mux_datapath", "arp-for-mux",
        Records({{0, Eth{.dst = kBroadcast, .src = kRouterMac} /
                         Arp{.op = 1, .sender_mac = kRouterMac, .sender_ip = kRouter,
                             .target_ip = kMux1}}}));
  Write("mux_datapath", "local-bgp",
        Records({{0, Eth{.dst = kMuxMac, .src = kRouterMac} /
                         Ipv4{.src = kRouter, .dst = kMux1} /
                         Tcp{.sport = 179, .dport = 50000, .flags = kSyn}}}));
  Write("mux_datapath", "udp-and-icmp-to-vip",
        Records({{0, Eth{.dst = kMuxMac, .src = kRouterMac} /
                         Ipv4{.src = kClient, .dst = kVip} / Udp{.sport = 1, .dport = 80}},
                 {0, Eth{.dst = kMuxMac, .src = kRouterMac} / Ipv4{.src = kClient, .dst = kVip} /
                         Icmp{.type = 8, .id = 1}}}));
}

void RedirectSeeds() {
  using namespace lab;
  RemoveSeeds("fastpath_redirect");
  std::vector<uint8_t> frame =
      RedirectFrame({.flow_src = kVip, .flow_dst = kVip2, .flow_src_port = 20000,
                     .flow_dst_port = 80, .proto = 6, .dip = Ip("10.1.0.3"),
                     .dst_pa = Ip("10.101.0.33"), .src_host_pa = kHost1,
                     .timestamp_s = kFakeClockStart});
  std::vector<uint8_t> payload(frame.end() - packet::kFastpathRedirectLen, frame.end());
  Write("fastpath_redirect", "valid", payload);
  payload.back() ^= 1;
  Write("fastpath_redirect", "bad-hmac", payload);
  std::string key = std::string("K") + kFastpathKeyHex;
  Write("fastpath_redirect", "key-text", std::vector<uint8_t>(key.begin(), key.end()));
}

// [kind][serialized request], kinds as in grpc_requests_fuzzer.cc.
void GrpcSeed(const std::string& name, uint8_t kind, const google::protobuf::Message& request) {
  std::string bytes = request.SerializeAsString();
  std::vector<uint8_t> input = {kind};
  input.insert(input.end(), bytes.begin(), bytes.end());
  Write("grpc_requests", name, input);
}

void GrpcSeeds() {
  RemoveSeeds("grpc_requests");
  const agent::AgentConfig agent = LabAgentConfig();
  v1::SetEndpointsRequest endpoints;
  for (const auto& ep : agent.endpoints) agent::EndpointToProto(ep, endpoints.add_endpoints());
  GrpcSeed("agent-set-endpoints", 0, endpoints);
  v1::SetSnatLeasesRequest leases;
  for (const auto& lease : agent.snat_leases) agent::SnatLeaseToProto(lease, leases.add_leases());
  GrpcSeed("agent-set-snat-leases", 1, leases);
  const mux::MuxConfig mux = LabMuxConfig();
  v1::SetVipsRequest vips;
  for (const auto& vip : mux.vips) mux::VipToProto(vip, vips.add_vips());
  GrpcSeed("mux-set-vips", 2, vips);
  v1::SetSnatRangesRequest ranges;
  for (const auto& range : mux.snat_ranges) mux::SnatRangeToProto(range, ranges.add_ranges());
  GrpcSeed("mux-set-snat-ranges", 3, ranges);
}

}  // namespace
}  // namespace sluice::fuzz

int main(int argc, char** argv) {
  using namespace sluice::fuzz;
  if (argc != 2) {
    fprintf(stderr, "usage: %s REPO\n", argv[0]);
    return 2;
  }
  const fs::path repo = argv[1];
  g_corpus = repo / "tests/fuzz/corpus";
  PacketSeeds();
  AgentDatapathSeeds();
  MuxDatapathSeeds();
  RedirectSeeds();
  GrpcSeeds();
  RemoveSeeds("agent_config");
  CopyFiles("agent_config", repo / "deploy/lab/config", "host", ".yaml", "lab-");
  // The lab's boot configs carry no VIPs (sluicectl apply pushes them); these have them.
  auto text = [](const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); };
  Write("agent_config", "lab-host1-with-cloud-state.yaml",
        text(LabYaml("host1.yaml", kLabCloudStateHost1)));
  RemoveSeeds("mux_config");
  CopyFiles("mux_config", repo / "deploy/lab/config", "mux", ".yaml", "lab-");
  Write("mux_config", "lab-mux1-with-cloud-state.yaml",
        text(LabYaml("mux1.yaml", kLabCloudStateMux)));
  RemoveSeeds("domain_xml");
  CopyFiles("domain_xml", repo / "deploy/libvirt/testdata", "", ".xml", "sample-");
  printf("seed_corpus: wrote %d files under %s\n", g_written, g_corpus.c_str());
  return 0;
}
