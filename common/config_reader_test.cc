#include "common/config_reader.h"

#include <gtest/gtest.h>

namespace sluice {
namespace {

TEST(ConfigReaderTest, ReadsFieldsOfAllKinds) {
  auto root = ConfigNode::LoadString(R"(
top:
  name: mux1
  address: 10.101.0.11/24
  gateway: 10.101.0.1
  mac: "02:00:0a:01:00:01"
  proto: tcp
  weight: 7
items:
  - { a: 1 }
  - { a: 2 }
)",
                                     "t.yaml");
  ASSERT_TRUE(root.ok()) << root.status();
  ConfigNode top = root->Map("top");
  top.AllowOnly({"name", "address", "gateway", "mac", "proto", "weight"});
  EXPECT_EQ(top.String("name"), "mux1");
  Ipv4Prefix p = top.Prefix("address");
  EXPECT_EQ(p.addr, 0x0a65000bu);
  EXPECT_EQ(p.length, 24);
  EXPECT_EQ(top.Ipv4("gateway"), 0x0a650001u);
  EXPECT_EQ(top.Mac("mac")[5], 1);
  EXPECT_EQ(top.L4Protocol("proto"), 6);
  EXPECT_EQ(top.Uint("weight", 1, 100), 7u);
  EXPECT_EQ(top.OptionalUint("absent", 42, 0, 100), 42u);
  std::vector<ConfigNode> items = root->Sequence("items", true);
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[1].Uint("a", 0, 9), 2u);
  EXPECT_TRUE(root->status().ok()) << root->status();
}

TEST(ConfigReaderTest, UnknownFieldNamesFileLineAndField) {
  auto root = ConfigNode::LoadString("mux:\n  name: a\n  gatway: 1.2.3.4\n", "mux1.yaml");
  ASSERT_TRUE(root.ok());
  ConfigNode mux = root->Map("mux");
  mux.AllowOnly({"name", "gateway"});
  EXPECT_EQ(std::string(root->status().message()),
            "mux1.yaml:3:3: mux.gatway: unknown field (expected one of: name, gateway)");
}

TEST(ConfigReaderTest, BadValuesAreReportedWithTheirPath) {
  auto root = ConfigNode::LoadString("vips:\n  - { vip: 10.0.0.300, port: 80 }\n", "v.yaml");
  ASSERT_TRUE(root.ok());
  std::vector<ConfigNode> vips = root->Sequence("vips", true);
  ASSERT_EQ(vips.size(), 1u);
  vips[0].Ipv4("vip");
  EXPECT_EQ(std::string(root->status().message()),
            "v.yaml:2:12: vips[0].vip: '10.0.0.300' is not an IPv4 address");
}

TEST(ConfigReaderTest, OutOfRangeAndMissing) {
  auto root = ConfigNode::LoadString("a: 70000\n", "x.yaml");
  ASSERT_TRUE(root.ok());
  root->Uint("a", 1, 65535);
  EXPECT_NE(root->status().message().find("a: must be between 1 and 65535, got 70000"),
            std::string::npos)
      << root->status();
  auto other = ConfigNode::LoadString("b: 1\n", "y.yaml");
  ASSERT_TRUE(other.ok());
  other->String("name");
  EXPECT_NE(other->status().message().find("name: required field is missing"), std::string::npos);
}

TEST(ConfigReaderTest, SyntaxErrorHasLine) {
  auto root = ConfigNode::LoadString("a: [1, 2\nb: 3\n", "bad.yaml");
  ASSERT_FALSE(root.ok());
  EXPECT_NE(root.status().message().find("bad.yaml:"), std::string::npos) << root.status();
  EXPECT_NE(root.status().message().find("YAML syntax error"), std::string::npos);
}

TEST(ConfigReaderTest, MissingFileIsNotFound) {
  auto root = ConfigNode::LoadFile("/nonexistent/sluice.yaml");
  EXPECT_EQ(root.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace sluice
