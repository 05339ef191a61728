#include "vswitch/ovs_test_env.h"

#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/strings.h"
#include "offload/flow/rule.h"
#include "vswitch/process.h"

namespace sluice::vswitch::testing {
namespace {

std::string HexBytes(const std::vector<uint8_t>& b) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (uint8_t v : b) {
    s += digits[v >> 4];
    s += digits[v & 15];
  }
  return s;
}

const std::vector<uint8_t> kProbeFrame = {0x02, 0,   0,    0,    0x0f, 0x0f, 0x02, 0,
                                          0,    0,   0x0e, 0x0e, 0x88, 0xb5, 's',  'v',
                                          '-',  'p', 'r',  'o',  'b',  'e'};

}  // namespace

absl::StatusOr<std::unique_ptr<DummyBridge>> DummyBridge::Start(const std::string& hwaddr,
                                                                uint32_t tunnel_ip) {
  char dir[] = "/tmp/sv-ovs-XXXXXX";
  if (mkdtemp(dir) == nullptr) return absl::InternalError("mkdtemp failed");
  std::unique_ptr<DummyBridge> bridge(new DummyBridge());
  bridge->run_dir_ = dir;
  absl::StatusOr<std::unique_ptr<OvsInstance>> ovs =
      OvsInstance::Start({.run_dir = dir, .enable_dummy = true});
  if (!ovs.ok()) return ovs.status();
  bridge->ovs_ = std::move(*ovs);
  bridge->ofports_ = {1, 2, 3, kSlowPathOfport, kProbeOfport};
  BridgeSpec spec{.name = kBridge, .datapath_type = "dummy", .hwaddr = hwaddr};
  for (uint32_t ofport : bridge->ofports_) {
    spec.ports.push_back(
        {.name = bridge->PortName(ofport),
         .type = "dummy",
         .ofport = ofport,
         .options = {{"tx_pcap", StrCat(dir, "/", bridge->PortName(ofport), ".pcap")}}});
  }
  spec.ports.push_back({.name = "svgre",
                        .type = "gre",
                        .ofport = kGreOfport,
                        .options = {{"remote_ip", "flow"}, {"packet_type", "legacy_l3"}}});
  if (absl::Status s = EnsureBridge(*bridge->ovs_, spec); !s.ok()) return s;
  bridge->seen_.assign(bridge->ofports_.size(), 0);
  const std::string ip = flow::FormatIpv4(tunnel_ip);
  const std::string net = flow::FormatIpv4(tunnel_ip & 0xffffff00u);
  for (std::vector<std::string> cmd :
       {std::vector<std::string>{"netdev-dummy/ip4addr", kBridge, ip + "/24"},
        std::vector<std::string>{"ovs/route/add", net + "/24", kBridge}}) {
    absl::StatusOr<std::string> r = bridge->ovs_->Appctl(cmd);
    if (!r.ok()) return r.status();
  }
  // The probe flow sits above everything the executor installs and is not one of its cookies.
  absl::StatusOr<std::string> probe = bridge->ovs_->Ofctl(
      {"add-flow", bridge->ovs_->MgmtSocket(kBridge),
       StrCat("table=0,priority=65535,cookie=0x5eed,dl_type=0x88b5 actions=output:",
              kProbeOfport)});
  if (!probe.ok()) return probe.status();
  return bridge;
}

DummyBridge::~DummyBridge() {
  if (ovs_) ovs_->Stop();
  std::error_code ignored;
  if (!run_dir_.empty()) std::filesystem::remove_all(run_dir_, ignored);
}

std::string DummyBridge::PortName(uint32_t ofport) const {
  if (ofport == kSlowPathOfport) return "slow";
  if (ofport == kProbeOfport) return "probe";
  return StrCat("p", ofport - 1);
}

OvsPorts DummyBridge::Ports() const {
  return {.ofport = {{0, OfportOf(0)}, {1, OfportOf(1)}, {2, OfportOf(2)}},
          .gre_port = kGreOfport,
          .slow_path_port = kSlowPathOfport};
}

BaseFlowSpec DummyBridge::Base(uint32_t tunnel_ip) const {
  // Misses are dropped, as the software executor does (kNoRule).
  return {.uplink_ofport = OfportOf(0), .tunnel_endpoints = {tunnel_ip}, .slow_path_port = 0};
}

std::vector<std::vector<uint8_t>> DummyBridge::ReadPcap(uint32_t ofport) const {
  std::ifstream in(StrCat(run_dir_, "/", PortName(ofport), ".pcap"), std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string d = ss.str();
  std::vector<std::vector<uint8_t>> records;
  size_t o = 24;  // global header
  while (o + 16 <= d.size()) {
    uint32_t caplen = 0;
    for (int i = 3; i >= 0; --i) caplen = caplen << 8 | static_cast<uint8_t>(d[o + 8 + i]);
    if (o + 16 + caplen > d.size()) break;  // record still being written
    records.emplace_back(d.begin() + o + 16, d.begin() + o + 16 + caplen);
    o += 16 + caplen;
  }
  return records;
}

absl::Status DummyBridge::PurgeDatapath() {
  absl::StatusOr<std::string> r = ovs_->Appctl({"revalidator/purge"});
  return r.ok() ? absl::OkStatus() : r.status();
}

absl::StatusOr<std::vector<std::pair<uint32_t, std::vector<uint8_t>>>> DummyBridge::Send(
    uint32_t ofport, const std::vector<uint8_t>& frame) {
  const std::string port = PortName(ofport);
  const size_t probe_index = ofports_.size() - 1;
  for (const std::vector<uint8_t>& f : {frame, kProbeFrame}) {
    absl::StatusOr<std::string> r = ovs_->Appctl({"netdev-dummy/receive", port, HexBytes(f)});
    if (!r.ok()) return r.status();
  }
  absl::Status probed = WaitFor([&] { return ReadPcap(kProbeOfport).size() > seen_[probe_index]; },
                                std::chrono::seconds(10),
                                "the probe frame behind the test frame to leave the bridge");
  if (!probed.ok()) return probed;
  seen_[probe_index] = ReadPcap(kProbeOfport).size();
  std::vector<std::pair<uint32_t, std::vector<uint8_t>>> sent;
  for (size_t i = 0; i < probe_index; ++i) {
    std::vector<std::vector<uint8_t>> records = ReadPcap(ofports_[i]);
    for (size_t r = seen_[i]; r < records.size(); ++r) sent.emplace_back(ofports_[i], records[r]);
    seen_[i] = records.size();
  }
  return sent;
}

}  // namespace sluice::vswitch::testing
