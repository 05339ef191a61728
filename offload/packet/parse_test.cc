#include "offload/packet/parse.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "offload/sw/fixture_builder.h"

namespace sluice::packet {
namespace {

using fixture::Eth;
using fixture::Icmp;
using fixture::Ip;
using fixture::Ipv4;
using fixture::Mac;
using fixture::Packet;
using fixture::Payload;
using fixture::Tcp;
using fixture::Udp;

const flow::MacAddr kA = Mac("02:00:00:00:00:0a");
const flow::MacAddr kB = Mac("02:00:00:00:00:0b");
const uint32_t kClient = Ip("198.51.100.7");
const uint32_t kVip = Ip("10.200.0.10");
const uint32_t kMux = Ip("10.0.0.2");
const uint32_t kHost = Ip("10.0.1.1");

struct Result {
  ParseStatus status;
  ParsedPacket pkt;
  DropReason reason = DropReason::kCount;
};

Result ParseBytes(const std::vector<uint8_t>& b, uint16_t gue_port = flow::kDefaultGuePort) {
  Result r;
  r.status = Parse(b.data(), static_cast<uint32_t>(b.size()), gue_port, &r.pkt, &r.reason);
  return r;
}
Result ParsePacket(const Packet& p) { return ParseBytes(p.Bytes()); }

TEST(ParseTest, PlainTcp) {
  Result r = ParsePacket(Eth{.dst = kA, .src = kB} / Ipv4{.src = kClient, .dst = kVip, .ttl = 9} /
                         Tcp{.sport = 1234, .dport = 80, .flags = fixture::kSyn} / Payload{"x"});
  ASSERT_EQ(r.status, ParseStatus::kIpv4);
  EXPECT_EQ(r.pkt.ether_type, kEtherTypeIpv4);
  EXPECT_EQ(r.pkt.l3_offset, 14);
  EXPECT_EQ(r.pkt.inner_l3_offset, 14);
  EXPECT_EQ(r.pkt.l4_offset, 34);
  EXPECT_EQ(r.pkt.tunnel, flow::Tunnel::kNone);
  EXPECT_EQ(r.pkt.src, kClient);
  EXPECT_EQ(r.pkt.dst, kVip);
  EXPECT_EQ(r.pkt.outer_src, kClient);
  EXPECT_EQ(r.pkt.outer_dst, kVip);
  EXPECT_EQ(r.pkt.proto, flow::kProtoTcp);
  EXPECT_EQ(r.pkt.ttl, 9);
  EXPECT_EQ(r.pkt.tcp_flags, fixture::kSyn);
  EXPECT_EQ(r.pkt.src_port, 1234);
  EXPECT_EQ(r.pkt.dst_port, 80);
}

TEST(ParseTest, OptionsAreSkippedAndPaddingIgnored) {
  std::vector<uint8_t> b = (Eth{} / Ipv4{.src = kClient, .dst = kVip, .options = {1, 1, 1, 0}} /
                            Udp{.sport = 5, .dport = 53})
                               .Bytes();
  b.resize(60, 0);  // Ethernet minimum-size padding
  Result r = ParseBytes(b);
  ASSERT_EQ(r.status, ParseStatus::kIpv4);
  EXPECT_EQ(r.pkt.l4_offset, 14 + 24);
  EXPECT_EQ(r.pkt.dst_port, 53);
}

TEST(ParseTest, IcmpEchoIdentifierInBothPorts) {
  Result r = ParsePacket(Eth{} / Ipv4{.src = kClient, .dst = kVip} /
                         Icmp{.type = 0, .id = 0x4242, .seq = 1});
  ASSERT_EQ(r.status, ParseStatus::kIpv4);
  EXPECT_EQ(r.pkt.icmp_type, 0);
  EXPECT_EQ(r.pkt.src_port, 0x4242);
  EXPECT_EQ(r.pkt.dst_port, 0x4242);

  r = ParsePacket(Eth{} / Ipv4{.src = kClient, .dst = kVip} / Icmp{.type = 3, .code = 4});
  ASSERT_EQ(r.status, ParseStatus::kIpv4);
  EXPECT_EQ(r.pkt.icmp_type, 3);
  EXPECT_EQ(r.pkt.icmp_code, 4);
  EXPECT_EQ(r.pkt.src_port, 0);
}

TEST(ParseTest, Ipip) {
  Result r =
      ParsePacket(Eth{} / Ipv4{.src = kMux, .dst = kHost} /
                  Ipv4{.src = kClient, .dst = kVip, .ttl = 7} / Tcp{.sport = 1234, .dport = 80});
  ASSERT_EQ(r.status, ParseStatus::kIpv4);
  EXPECT_EQ(r.pkt.tunnel, flow::Tunnel::kIpip);
  EXPECT_EQ(r.pkt.l3_offset, 14);
  EXPECT_EQ(r.pkt.inner_l3_offset, 34);
  EXPECT_EQ(r.pkt.l4_offset, 54);
  EXPECT_EQ(r.pkt.outer_src, kMux);
  EXPECT_EQ(r.pkt.outer_dst, kHost);
  EXPECT_EQ(r.pkt.src, kClient);
  EXPECT_EQ(r.pkt.dst, kVip);
  EXPECT_EQ(r.pkt.ttl, 7);
  EXPECT_EQ(r.pkt.dst_port, 80);
}

TEST(ParseTest, Gue) {
  Result r = ParsePacket(Eth{} / Ipv4{.src = kMux, .dst = kHost} /
                         Udp{.sport = 50000, .dport = 6080, .zero_checksum = true} /
                         Ipv4{.src = kClient, .dst = kVip} / Udp{.sport = 9, .dport = 53});
  ASSERT_EQ(r.status, ParseStatus::kIpv4);
  EXPECT_EQ(r.pkt.tunnel, flow::Tunnel::kGue);
  EXPECT_EQ(r.pkt.inner_l3_offset, 14 + 20 + 8);
  EXPECT_EQ(r.pkt.l4_offset, 14 + 20 + 8 + 20);
  EXPECT_EQ(r.pkt.outer_src_port, 50000);
  EXPECT_EQ(r.pkt.outer_dst_port, 6080);
  EXPECT_EQ(r.pkt.src, kClient);
  EXPECT_EQ(r.pkt.proto, flow::kProtoUdp);
  EXPECT_EQ(r.pkt.dst_port, 53);
}

TEST(ParseTest, GueOnlyOnConfiguredPortAndWithIpv4Payload) {
  Packet other_port = Eth{} / Ipv4{.src = kMux, .dst = kHost} / Udp{.sport = 1, .dport = 6081} /
                      Ipv4{.src = kClient, .dst = kVip} / Udp{.sport = 9, .dport = 53};
  Result r = ParsePacket(other_port);
  ASSERT_EQ(r.status, ParseStatus::kIpv4);
  EXPECT_EQ(r.pkt.tunnel, flow::Tunnel::kNone);
  EXPECT_EQ(r.pkt.dst_port, 6081);
  r = ParseBytes(other_port.Bytes(), 6081);
  EXPECT_EQ(r.pkt.tunnel, flow::Tunnel::kGue);

  r = ParsePacket(Eth{} / Ipv4{.src = kMux, .dst = kHost} / Udp{.sport = 1, .dport = 6080} /
                  Payload{"\x60 not ipv4"});
  ASSERT_EQ(r.status, ParseStatus::kIpv4);
  EXPECT_EQ(r.pkt.tunnel, flow::Tunnel::kNone);
  EXPECT_EQ(r.pkt.dst_port, 6080);
}

TEST(ParseTest, OneTunnelLevelOnly) {
  Result r =
      ParsePacket(Eth{} / Ipv4{.src = kMux, .dst = kHost} / Ipv4{.src = kClient, .dst = kVip} /
                  Ipv4{.src = 1, .dst = 2} / Tcp{.sport = 1, .dport = 2});
  ASSERT_EQ(r.status, ParseStatus::kIpv4);
  EXPECT_EQ(r.pkt.tunnel, flow::Tunnel::kIpip);
  EXPECT_EQ(r.pkt.src, kClient);
  EXPECT_EQ(r.pkt.proto, flow::kProtoIpip);
  EXPECT_EQ(r.pkt.l4_offset, 0);
  EXPECT_EQ(r.pkt.dst_port, 0);
}

TEST(ParseTest, ArpIsReportedAsArp) {
  Result r = ParsePacket(Eth{} / fixture::Arp{.op = 1, .sender_ip = 1, .target_ip = 2});
  EXPECT_EQ(r.status, ParseStatus::kArp);
  EXPECT_EQ(r.pkt.ether_type, kEtherTypeArp);
}

struct BadCase {
  const char* name;
  Packet packet;
  DropReason reason;
};

TEST(ParseTest, MalformedInputDropsWithReason) {
  const Ipv4 ip{.src = kClient, .dst = kVip};
  const Tcp tcp{.sport = 1, .dport = 80};
  const std::vector<BadCase> cases = {
      {"empty", Packet{}, DropReason::kTruncated},
      {"short eth", (Eth{} / ip / tcp).TruncatedTo(13), DropReason::kTruncated},
      {"eth only", (Eth{} / ip / tcp).TruncatedTo(14), DropReason::kTruncated},
      {"short ipv4", (Eth{} / ip / tcp).TruncatedTo(33), DropReason::kTruncated},
      {"ihl 4", Eth{} / Ipv4{.ihl = 4} / tcp, DropReason::kMalformed},
      {"ihl beyond frame", (Eth{} / Ipv4{.ihl = 15} / tcp).TruncatedTo(40), DropReason::kTruncated},
      {"total length > frame", Eth{} / Ipv4{.total_len = 100} / tcp, DropReason::kTruncated},
      {"total length < ihl", Eth{} / Ipv4{.total_len = 19} / tcp, DropReason::kMalformed},
      {"short tcp", Eth{} / Ipv4{.proto = 6} / Payload{"123"}, DropReason::kTruncated},
      {"tcp doff 4", Eth{} / ip / Tcp{.data_offset = 4}, DropReason::kMalformed},
      {"tcp doff 6", Eth{} / ip / Tcp{.data_offset = 6}, DropReason::kTruncated},
      {"short udp", Eth{} / Ipv4{.proto = 17} / Payload{"1234567"}, DropReason::kTruncated},
      {"udp len 7", Eth{} / ip / Udp{.len = 7}, DropReason::kMalformed},
      {"udp len > ip", Eth{} / ip / Udp{.len = 9}, DropReason::kTruncated},
      {"short icmp", Eth{} / Ipv4{.proto = 1} / Payload{"1234567"}, DropReason::kTruncated},
      {"mf", Eth{} / Ipv4{.mf = true} / tcp, DropReason::kFragment},
      {"offset", Eth{} / Ipv4{.frag_offset = 1, .proto = 6} / Payload{"x"}, DropReason::kFragment},
      {"inner fragment", Eth{} / ip / Ipv4{.mf = true} / tcp, DropReason::kFragment},
      {"inner ihl 3", Eth{} / ip / Ipv4{.ihl = 3} / tcp, DropReason::kMalformed},
      {"inner beyond outer", Eth{} / ip / Ipv4{.total_len = 60} / tcp, DropReason::kTruncated},
      {"inner tcp short", (Eth{} / ip / Ipv4{} / tcp).TruncatedTo(14 + 40 + 10),
       DropReason::kTruncated},
      {"gue udp len beyond ip",
       Eth{} / ip / Udp{.dport = 6080, .zero_checksum = true, .len = 200} / Ipv4{} / tcp,
       DropReason::kTruncated},
      {"ipv6", Eth{.type = 0x86dd} / Payload{std::string(40, 'x')}, DropReason::kNotIpv4},
      {"vlan", Eth{.type = 0x8100} / ip / tcp, DropReason::kNotIpv4},
  };
  for (const BadCase& c : cases) {
    std::vector<uint8_t> b = c.packet.Bytes();
    Result r = ParseBytes(b);
    EXPECT_EQ(r.status, ParseStatus::kDrop) << c.name;
    EXPECT_EQ(DropReasonName(r.reason), DropReasonName(c.reason)) << c.name;
  }
  // IPv4 version other than 4.
  std::vector<uint8_t> b = (Eth{} / ip / tcp).Bytes();
  b[14] = 0x65;
  Result r = ParseBytes(b);
  EXPECT_EQ(r.status, ParseStatus::kDrop);
  EXPECT_EQ(r.reason, DropReason::kMalformed);
}

TEST(ParseTest, EveryTruncationOfValidPacketsIsSafe) {
  const std::vector<Packet> packets = {
      Eth{} / Ipv4{.src = kMux, .dst = kHost} / Ipv4{.src = kClient, .dst = kVip} /
          Tcp{.sport = 1, .dport = 80} / Payload{"data"},
      Eth{} / Ipv4{.src = kMux, .dst = kHost} / Udp{.sport = 1, .dport = 6080} /
          Ipv4{.src = kClient, .dst = kVip} / Udp{.sport = 1, .dport = 53} / Payload{"q"},
      Eth{} / Ipv4{.src = kClient, .dst = kVip} / Icmp{.id = 1} / Payload{"ping"},
  };
  for (const Packet& p : packets) {
    std::vector<uint8_t> full = p.Bytes();
    ASSERT_EQ(ParseBytes(full).status, ParseStatus::kIpv4);
    for (size_t len = 0; len < full.size(); ++len) {
      // Exact-size heap copy so that sanitizers catch any read past the end.
      std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<long>(len));
      Result r = ParseBytes(cut);
      EXPECT_EQ(r.status, ParseStatus::kDrop) << len;
      EXPECT_EQ(r.reason, DropReason::kTruncated) << len;
    }
  }
}

TEST(ParseTest, RandomBytesNeverCrash) {
  std::mt19937 rng(99);
  for (int iter = 0; iter < 20000; ++iter) {
    std::vector<uint8_t> b = (Eth{} / Ipv4{.src = kMux, .dst = kHost} /
                              Ipv4{.src = kClient, .dst = kVip} / Tcp{.sport = 1, .dport = 2})
                                 .Bytes();
    for (int flips = 0; flips < 4; ++flips) b[rng() % b.size()] = static_cast<uint8_t>(rng());
    b.resize(rng() % (b.size() + 1));
    Result r = ParseBytes(b);
    if (r.status == ParseStatus::kIpv4 && r.pkt.l4_offset != 0) {
      EXPECT_LE(r.pkt.l4_offset, b.size());
    }
  }
}

TEST(ArpTest, BuildThenParse) {
  uint8_t frame[64] = {};
  const uint16_t len = BuildArp(frame, 2, kA, kB, Ip("10.0.0.1"), kA, Ip("10.0.0.2"));
  ASSERT_EQ(len, 42);
  EXPECT_EQ(frame[12], 0x08);
  EXPECT_EQ(frame[13], 0x06);
  EXPECT_EQ(0, memcmp(frame, kA.data(), 6));
  EXPECT_EQ(0, memcmp(frame + 6, kB.data(), 6));
  ArpPacket arp;
  DropReason reason;
  ASSERT_TRUE(ParseArp(frame, len, &arp, &reason));
  EXPECT_EQ(arp.op, 2);
  EXPECT_EQ(arp.sender_mac, kB);
  EXPECT_EQ(arp.sender_ip, Ip("10.0.0.1"));
  EXPECT_EQ(arp.target_mac, kA);
  EXPECT_EQ(arp.target_ip, Ip("10.0.0.2"));
  ParsedPacket pkt;
  EXPECT_EQ(Parse(frame, len, flow::kDefaultGuePort, &pkt, &reason), ParseStatus::kArp);
}

TEST(ArpTest, BuildFromFieldsOfTheSameFrame) {
  // The ARP responder answers in place, passing MACs it parsed out of the same frame.
  uint8_t frame[42];
  BuildArp(frame, 1, kA, kB, 1, kA, 2);
  ArpPacket arp;
  DropReason reason;
  ASSERT_TRUE(ParseArp(frame, 42, &arp, &reason));
  flow::MacAddr& sender_in_frame = *reinterpret_cast<flow::MacAddr*>(frame + 22);
  BuildArp(frame, 2, sender_in_frame, kA, 2, sender_in_frame, 1);
  ASSERT_TRUE(ParseArp(frame, 42, &arp, &reason));
  EXPECT_EQ(arp.target_mac, kB);
}

TEST(ArpTest, Rejects) {
  uint8_t frame[42];
  BuildArp(frame, 1, kA, kB, 1, kA, 2);
  ArpPacket arp;
  DropReason reason;
  EXPECT_FALSE(ParseArp(frame, 41, &arp, &reason));
  EXPECT_EQ(reason, DropReason::kTruncated);
  frame[15] = 6;  // hardware type 6 (IEEE 802)
  EXPECT_FALSE(ParseArp(frame, 42, &arp, &reason));
  EXPECT_EQ(reason, DropReason::kNotIpv4);
  frame[15] = 1;
  frame[21] = 3;  // op 3 (RARP)
  EXPECT_FALSE(ParseArp(frame, 42, &arp, &reason));
  EXPECT_EQ(reason, DropReason::kMalformed);
}

TEST(FlowHashTest, DeterministicKnownValuesAndSpread) {
  // Pinned: the mux and every host must agree, across builds and machines.
  const uint32_t h = FlowHash(Ip("198.51.100.7"), Ip("10.200.0.10"), 6, 40000, 80);
  EXPECT_EQ(h, FlowHash(Ip("198.51.100.7"), Ip("10.200.0.10"), 6, 40000, 80));
  EXPECT_NE(h, FlowHash(Ip("198.51.100.7"), Ip("10.200.0.10"), 17, 40000, 80));
  EXPECT_NE(h, FlowHash(Ip("198.51.100.7"), Ip("10.200.0.10"), 6, 40001, 80));
  EXPECT_NE(h, FlowHash(Ip("10.200.0.10"), Ip("198.51.100.7"), 6, 80, 40000));
  EXPECT_EQ(FlowHash(0, 0, 0, 0, 0), 2890348146u);

  // Sequential client ports spread over buckets like a random function would.
  constexpr int kBuckets = 64;
  constexpr int kFlows = 64000;
  std::vector<int> count(kBuckets);
  std::set<uint16_t> gue_ports;
  for (int i = 0; i < kFlows; ++i) {
    uint32_t hash =
        FlowHash(Ip("198.51.100.7"), Ip("10.200.0.10"), 6, static_cast<uint16_t>(1024 + i), 80);
    ++count[hash % kBuckets];
    uint16_t port = GueSourcePort(hash);
    EXPECT_GE(port, 49152);
    gue_ports.insert(port);
  }
  for (int c : count) {
    EXPECT_GT(c, kFlows / kBuckets * 8 / 10);
    EXPECT_LT(c, kFlows / kBuckets * 12 / 10);
  }
  EXPECT_GT(gue_ports.size(), 15000u);
}

}  // namespace
}  // namespace sluice::packet
