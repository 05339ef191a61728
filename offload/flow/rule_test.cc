#include "offload/flow/rule.h"

#include <gtest/gtest.h>

namespace sluice::flow {
namespace {

constexpr uint32_t kVip = 0x0ac8000a;  // 10.200.0.10
constexpr uint32_t kDip = 0x0a010001;  // 10.1.0.1

Rule InboundRule() {
  return Rule{.id = 7,
              .priority = 100,
              .match = {.in_port = 0,
                        .tunnel = Tunnel::kIpip,
                        .outer_dst = Ipv4Match::Exact(0x0a000101),
                        .dst = Ipv4Match::Exact(kVip),
                        .proto = kProtoTcp,
                        .dst_port = PortMatch::Exact(80)},
              .actions = {Action::Decap(), Action::SetIpv4Dst(kDip), Action::SetL4Dst(8080),
                          Action::DecTtl(), Action::Count(), Action::Output(2)},
              .name = "inbound"};
}

TEST(FormatTest, Addresses) {
  EXPECT_EQ(FormatIpv4(0xc6336407), "198.51.100.7");
  EXPECT_EQ(FormatIpv4(0), "0.0.0.0");
  EXPECT_EQ(FormatIpv4(0xffffffff), "255.255.255.255");
  EXPECT_EQ(FormatMac({0x02, 0, 0, 0xab, 0xcd, 0xef}), "02:00:00:ab:cd:ef");
}

TEST(FormatTest, Match) {
  EXPECT_EQ(ToString(Match{}), "any");
  EXPECT_EQ(ToString(InboundRule().match),
            "in_port=0 tunnel=ipip outer_dst=10.0.1.1 dst=10.200.0.10 proto=tcp dst_port=80");
  Match m{.src = {.addr = 0x0a000000, .mask = 0xff000000},
          .dst = {.addr = 0x0a000001, .mask = 0xff00ff00},
          .proto = 47,
          .src_port = {.port = 0x1200, .mask = 0xff00}};
  EXPECT_EQ(ToString(m), "src=10.0.0.0/8 dst=10.0.0.0/0xff00ff00 proto=47 src_port=4608/0xff00");
  Match fin{.proto = kProtoTcp, .tcp_flags = kTcpFlagFin, .tcp_flags_mask = kTcpFlagFin};
  EXPECT_EQ(ToString(fin), "proto=tcp tcp_flags=+fin");
  EXPECT_EQ(FormatTcpFlags(kTcpFlagSyn, kTcpFlagSyn | kTcpFlagAck), "+syn-ack");
  EXPECT_EQ(FormatTcpFlags(0xff, 0), "");
}

TEST(MatchTest, TcpFlagsUnderMask) {
  Match rst{.proto = kProtoTcp, .tcp_flags = kTcpFlagRst, .tcp_flags_mask = kTcpFlagRst};
  EXPECT_TRUE(rst.MatchesTcpFlags(kTcpFlagRst));
  EXPECT_TRUE(rst.MatchesTcpFlags(kTcpFlagRst | kTcpFlagAck));
  EXPECT_FALSE(rst.MatchesTcpFlags(kTcpFlagFin | kTcpFlagAck));
  Match not_syn{.proto = kProtoTcp, .tcp_flags = 0, .tcp_flags_mask = kTcpFlagSyn};
  EXPECT_TRUE(not_syn.MatchesTcpFlags(kTcpFlagAck));
  EXPECT_FALSE(not_syn.MatchesTcpFlags(kTcpFlagSyn));
  EXPECT_TRUE(Match{}.MatchesTcpFlags(0xff));
}

TEST(FormatTest, Actions) {
  EXPECT_EQ(ToString(Action::Decap()), "decap");
  EXPECT_EQ(ToString(Action::Encap(
                {.type = Tunnel::kIpip, .outer_src = 0x0a000002, .outer_dst = 0x0a000101})),
            "encap(ipip 10.0.0.2->10.0.1.1 ttl=64)");
  EXPECT_EQ(ToString(Action::Encap({.type = Tunnel::kGue, .outer_src = 1, .outer_dst = 2})),
            "encap(gue 0.0.0.1->0.0.0.2 ttl=64 dst_port=6080 src_port=flow_hash)");
  EXPECT_EQ(ToString(Action::SetIpv4Src(kDip)), "set_ipv4_src(10.1.0.1)");
  EXPECT_EQ(ToString(Action::SetIpv4Dst(kVip)), "set_ipv4_dst(10.200.0.10)");
  EXPECT_EQ(ToString(Action::SetL4Src(80)), "set_l4_src(80)");
  EXPECT_EQ(ToString(Action::SetL4Dst(8080)), "set_l4_dst(8080)");
  EXPECT_EQ(ToString(Action::SetMac({2, 0, 0, 0, 0, 1}, {2, 0, 0, 0, 0, 2})),
            "set_mac(src=02:00:00:00:00:01 dst=02:00:00:00:00:02)");
  EXPECT_EQ(ToString(Action::DecTtl()), "dec_ttl");
  EXPECT_EQ(ToString(Action::Count()), "count");
  EXPECT_EQ(ToString(Action::Age(30)), "age(30s)");
  EXPECT_EQ(ToString(Action::Output(3)), "output(3)");
  EXPECT_EQ(ToString(Action::Drop()), "drop");
  EXPECT_EQ(ToString(Action::ToSoftware()), "to_software");
}

TEST(FormatTest, Rule) {
  EXPECT_EQ(ToString(InboundRule()),
            "rule 7 \"inbound\" priority=100 match{in_port=0 tunnel=ipip outer_dst=10.0.1.1 "
            "dst=10.200.0.10 proto=tcp dst_port=80} actions[decap, set_ipv4_dst(10.1.0.1), "
            "set_l4_dst(8080), dec_ttl, count, output(2)]");
}

TEST(ValidateTest, AcceptsWellFormedRules) {
  EXPECT_EQ(Validate(InboundRule()), "");
  EXPECT_EQ(Validate(Rule{.actions = {Action::Drop()}}), "");
  EXPECT_EQ(Validate(Rule{.actions = {Action::Age(10), Action::ToSoftware()}}), "");
  Rule udp{.match = {.proto = kProtoUdp}, .actions = {Action::SetL4Src(1), Action::Output(0)}};
  EXPECT_EQ(Validate(udp), "");
}

void ExpectInvalid(const Rule& rule, const std::string& must_contain) {
  std::string error = Validate(rule);
  EXPECT_NE(error.find(must_contain), std::string::npos)
      << "error: '" << error << "' should contain '" << must_contain << "'";
  EXPECT_NE(error.find("rule " + std::to_string(rule.id)), std::string::npos) << error;
}

TEST(ValidateTest, RejectsWithActionableMessages) {
  Rule r = InboundRule();
  r.actions.clear();
  ExpectInvalid(r, "has no actions");

  r = InboundRule();
  r.actions.pop_back();
  ExpectInvalid(r, "action 5 (count) is the last action but not terminal");

  r = InboundRule();
  r.actions.insert(r.actions.begin() + 1, Action::Drop());
  ExpectInvalid(r, "action 2 (drop) is terminal but is followed by 5 more action(s)");

  r = InboundRule();
  r.match.tunnel = Tunnel::kNone;
  ExpectInvalid(r, "action 1 (decap) needs the match to name a tunnel");

  r = InboundRule();
  r.actions.insert(r.actions.begin(), Action::Decap());
  ExpectInvalid(r, "action 2 (decap) is a second decap");

  r = InboundRule();
  r.match.proto = 0;
  ExpectInvalid(r,
                "action 3 (set_l4_dst(8080)) rewrites an L4 port, so the match must set "
                "proto to tcp or udp (it is any)");
  r.match.proto = kProtoIcmp;
  ExpectInvalid(r, "(it is icmp)");

  r = Rule{.id = 3, .actions = {Action::Encap({.type = Tunnel::kNone}), Action::Output(1)}};
  ExpectInvalid(r, "has no tunnel type");

  r = InboundRule();
  r.match.proto = kProtoUdp;
  r.match.tcp_flags = r.match.tcp_flags_mask = kTcpFlagFin;
  ExpectInvalid(r, "matches TCP flags (+fin), so the match must set proto to tcp (it is udp)");

  r = InboundRule();
  EXPECT_NE(Validate(Rule{.id = 1, .actions = {}, .name = "x"}).find("rule 1 (\"x\")"),
            std::string::npos);
}

}  // namespace
}  // namespace sluice::flow
