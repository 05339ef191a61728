#include "common/net_text.h"

#include <gtest/gtest.h>

namespace sluice {
namespace {

TEST(NetTextTest, Ipv4RoundTrip) {
  EXPECT_EQ(*ParseIpv4("10.200.0.10"), 0x0ac8000au);
  EXPECT_EQ(Ipv4ToString(0x0ac8000a), "10.200.0.10");
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "a.b.c.d", "1..2.3"}) {
    EXPECT_FALSE(ParseIpv4(bad).ok()) << bad;
  }
}

TEST(NetTextTest, Prefix) {
  auto p = ParseIpv4Prefix("10.101.0.21/24");
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->Contains(0x0a650016));
  EXPECT_FALSE(p->Contains(0x0a660016));
  EXPECT_FALSE(ParseIpv4Prefix("10.0.0.1").ok());
  EXPECT_FALSE(ParseIpv4Prefix("10.0.0.1/33").ok());
  EXPECT_TRUE(ParseIpv4Prefix("0.0.0.0/0")->Contains(0x01020304));
}

TEST(NetTextTest, Mac) {
  auto m = ParseMac("02:00:0a:01:00:ff");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(MacToString(*m), "02:00:0a:01:00:ff");
  EXPECT_FALSE(ParseMac("02:00:0a:01:00").ok());
  EXPECT_FALSE(ParseMac("02:00:0a:01:00:zz").ok());
}

TEST(NetTextTest, Protocol) {
  EXPECT_EQ(*ParseL4Protocol("udp"), 17);
  EXPECT_FALSE(ParseL4Protocol("sctp").ok());
}

}  // namespace
}  // namespace sluice
