#include "hostagent/reject.h"

#include <gtest/gtest.h>

#include "offload/sw/fixture_builder.h"

namespace sluice::agent {
namespace {

using fixture::Eth;
using fixture::Ip;
using fixture::Ipv4;
using fixture::Mac;
using fixture::Payload;
using fixture::Tcp;
using fixture::Udp;

const flow::MacAddr kVmMac = Mac("02:00:0a:01:00:01");
const flow::MacAddr kPortMac = Mac("02:00:00:00:aa:01");

std::vector<uint8_t> RejectOf(const fixture::Packet& p) {
  std::vector<uint8_t> in = p.Bytes();
  packet::ParsedPacket pkt;
  DropReason reason;
  EXPECT_EQ(packet::Parse(in.data(), static_cast<uint32_t>(in.size()), flow::kDefaultGuePort,
                          &pkt, &reason),
            packet::ParseStatus::kIpv4);
  std::vector<uint8_t> out(kMaxRejectLen);
  out.resize(BuildReject(in.data(), pkt, kPortMac, Ip("10.1.0.254"), out.data()));
  return out;
}

TEST(RejectTest, SynGetsRstAckForSeqPlusOne) {
  auto out = RejectOf(Eth{.dst = kPortMac, .src = kVmMac} /
                      Ipv4{.src = Ip("10.1.0.1"), .dst = Ip("10.100.0.2")} /
                      Tcp{.sport = 40000, .dport = 80, .flags = fixture::kSyn, .seq = 41});
  EXPECT_EQ(out, (Eth{.dst = kVmMac, .src = kPortMac} /
                  Ipv4{.src = Ip("10.100.0.2"), .dst = Ip("10.1.0.1"), .df = true} /
                  Tcp{.sport = 80, .dport = 40000, .flags = fixture::kRst | fixture::kAck,
                      .seq = 0, .ack = 42, .window = 0})
                     .Bytes());
}

TEST(RejectTest, SegmentWithAckGetsRstAtItsAckNumber) {
  auto out = RejectOf(Eth{.dst = kPortMac, .src = kVmMac} /
                      Ipv4{.src = Ip("10.1.0.1"), .dst = Ip("10.100.0.2")} /
                      Tcp{.sport = 40000, .dport = 80, .flags = fixture::kAck | fixture::kFin,
                          .seq = 41, .ack = 999} /
                      Payload{"abc"});
  EXPECT_EQ(out, (Eth{.dst = kVmMac, .src = kPortMac} /
                  Ipv4{.src = Ip("10.100.0.2"), .dst = Ip("10.1.0.1"), .df = true} /
                  Tcp{.sport = 80, .dport = 40000, .flags = fixture::kRst, .seq = 999,
                      .ack = 0, .window = 0})
                     .Bytes());
}

TEST(RejectTest, UdpGetsIcmpAdminProhibitedQuotingHeaderAnd8Bytes) {
  const fixture::Packet in = Eth{.dst = kPortMac, .src = kVmMac} /
                             Ipv4{.src = Ip("10.1.0.1"), .dst = Ip("10.100.0.2")} /
                             Udp{.sport = 5000, .dport = 53} / Payload{"longer than eight"};
  const std::vector<uint8_t> bytes = in.Bytes();
  auto out = RejectOf(in);
  EXPECT_EQ(out, (Eth{.dst = kVmMac, .src = kPortMac} /
                  Ipv4{.src = Ip("10.1.0.254"), .dst = Ip("10.1.0.1"), .df = true} /
                  fixture::Icmp{.type = 3, .code = 13} /
                  Payload{std::string(bytes.begin() + 14, bytes.begin() + 14 + 28)})
                     .Bytes());
  EXPECT_EQ(fixture::VerifyChecksums(out), "");
}

TEST(RejectTest, OtherProtocolsGetNothing) {
  EXPECT_TRUE(RejectOf(Eth{.dst = kPortMac, .src = kVmMac} /
                       Ipv4{.src = Ip("10.1.0.1"), .dst = Ip("10.100.0.2")} /
                       fixture::Icmp{.type = 8})
                  .empty());
}

}  // namespace
}  // namespace sluice::agent
