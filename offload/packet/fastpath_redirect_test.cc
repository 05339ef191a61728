#include "offload/packet/fastpath_redirect.h"

#include <gtest/gtest.h>

#include <vector>

#include "offload/sw/fixture_builder.h"

namespace sluice::packet {
namespace {

FastpathKey Key(uint8_t seed) {
  FastpathKey k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(seed + i);
  return k;
}

FastpathRedirect Sample() {
  return {.flow_src = 0x0ac8000a, .flow_dst = 0x0ac80014, .flow_src_port = 20001,
          .flow_dst_port = 80, .proto = 6, .dip = 0x0a010003, .dst_pa = 0x0a650021,
          .src_host_pa = 0x0a650015, .timestamp_s = 1795000000};
}

TEST(FastpathRedirectTest, RoundTrips) {
  uint8_t payload[kFastpathRedirectLen];
  EncodeFastpathRedirect(Sample(), Key(1), payload);
  FastpathRedirect out;
  ASSERT_EQ(DecodeFastpathRedirect(payload, sizeof(payload), Key(1), &out), RedirectCheck::kOk);
  EXPECT_EQ(out.flow_src_port, 20001);
  EXPECT_EQ(out.dst_pa, 0x0a650021u);
  EXPECT_EQ(out.src_host_pa, 0x0a650015u);
  EXPECT_EQ(out.timestamp_s, 1795000000u);
}

TEST(FastpathRedirectTest, CarriesEachHostsEncap) {
  uint8_t payload[kFastpathRedirectLen];
  FastpathRedirect in = Sample();
  in.dst_encap = flow::Tunnel::kGre;  // the DIP's host is an Open vSwitch host
  EncodeFastpathRedirect(in, Key(1), payload);
  FastpathRedirect out;
  ASSERT_EQ(DecodeFastpathRedirect(payload, sizeof(payload), Key(1), &out), RedirectCheck::kOk);
  EXPECT_EQ(out.dst_encap, flow::Tunnel::kGre);
  EXPECT_EQ(out.src_encap, flow::Tunnel::kIpip);
  // An older mux leaves the bytes 0 (IPIP to the agents); kept as is, so it re-encodes.
  in.dst_encap = in.src_encap = flow::Tunnel::kNone;
  EncodeFastpathRedirect(in, Key(1), payload);
  ASSERT_EQ(DecodeFastpathRedirect(payload, sizeof(payload), Key(1), &out), RedirectCheck::kOk);
  EXPECT_EQ(out.dst_encap, flow::Tunnel::kNone);
  EXPECT_EQ(out.src_encap, flow::Tunnel::kNone);
  // An encap this agent does not know is malformed, even when authentic.
  in.src_encap = static_cast<flow::Tunnel>(9);
  EncodeFastpathRedirect(in, Key(1), payload);
  EXPECT_EQ(DecodeFastpathRedirect(payload, sizeof(payload), Key(1), &out),
            RedirectCheck::kMalformed);
}

TEST(FastpathRedirectTest, ForgeriesAreRejected) {
  uint8_t payload[kFastpathRedirectLen];
  EncodeFastpathRedirect(Sample(), Key(1), payload);
  FastpathRedirect out;
  EXPECT_EQ(DecodeFastpathRedirect(payload, sizeof(payload), Key(2), &out),
            RedirectCheck::kBadAuth);
  for (size_t i = 8; i < kFastpathRedirectLen; ++i) {  // any changed byte breaks the HMAC
    uint8_t copy[kFastpathRedirectLen];
    memcpy(copy, payload, sizeof(copy));
    copy[i] ^= 1;
    EXPECT_EQ(DecodeFastpathRedirect(copy, sizeof(copy), Key(1), &out), RedirectCheck::kBadAuth)
        << "byte " << i;
  }
  EXPECT_EQ(DecodeFastpathRedirect(payload, sizeof(payload) - 1, Key(1), &out),
            RedirectCheck::kMalformed);
  payload[0] = 'X';
  EXPECT_EQ(DecodeFastpathRedirect(payload, sizeof(payload), Key(1), &out),
            RedirectCheck::kMalformed);
}

TEST(FastpathRedirectTest, FrameIsAValidUdpPacketToTheHost) {
  std::vector<uint8_t> frame(kFastpathRedirectFrameLen);
  BuildFastpathRedirectFrame(frame.data(), fixture::Mac("02:00:00:00:00:11"),
                             fixture::Mac("02:00:00:00:00:21"), fixture::Ip("10.101.0.11"),
                             fixture::Ip("10.101.0.21"), Sample(), Key(1));
  EXPECT_EQ(fixture::VerifyChecksums(frame), "");
  ParsedPacket pkt;
  DropReason reason;
  ASSERT_EQ(Parse(frame.data(), static_cast<uint32_t>(frame.size()), flow::kDefaultGuePort, &pkt,
                  &reason),
            ParseStatus::kIpv4);
  EXPECT_EQ(pkt.proto, flow::kProtoUdp);
  EXPECT_EQ(pkt.dst_port, kFastpathUdpPort);
  EXPECT_EQ(pkt.dst, fixture::Ip("10.101.0.21"));
  FastpathRedirect out;
  EXPECT_EQ(DecodeFastpathRedirect(frame.data() + pkt.l4_offset + 8, kFastpathRedirectLen, Key(1),
                                   &out),
            RedirectCheck::kOk);
}

TEST(FastpathRedirectTest, KeyParsing) {
  FastpathKey k;
  EXPECT_TRUE(ParseFastpathKey(
      "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1F", &k));
  EXPECT_EQ(k[31], 0x1f);
  EXPECT_FALSE(ParseFastpathKey("0001", &k));
  EXPECT_FALSE(ParseFastpathKey(
      "zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", &k));
}

}  // namespace
}  // namespace sluice::packet
