#include "offload/sw/executor.h"

#include <gtest/gtest.h>
#include <rte_errno.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <atomic>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "offload/sw/fixture_builder.h"

namespace sluice::sw {
namespace {

using flow::Action;
using flow::Ipv4Match;
using flow::PortMatch;
using flow::Rule;
using flow::Tunnel;
using namespace fixture;
using namespace fixture::addr;

class ExecutorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> next_pool{0};
    std::string name = "sw_exec_" + std::to_string(next_pool++);
    pool_ =
        rte_pktmbuf_pool_create(name.c_str(), 255, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    ASSERT_NE(pool_, nullptr) << rte_strerror(rte_errno);
  }
  void TearDown() override { rte_mempool_free(pool_); }

  rte_mbuf* Mbuf(const std::vector<uint8_t>& bytes) {
    rte_mbuf* m = rte_pktmbuf_alloc(pool_);
    EXPECT_NE(m, nullptr);
    char* data = rte_pktmbuf_append(m, static_cast<uint16_t>(bytes.size()));
    memcpy(data, bytes.data(), bytes.size());
    return m;
  }
  rte_mbuf* Mbuf(const Packet& p) { return Mbuf(p.Bytes()); }

  static std::vector<uint8_t> Bytes(const rte_mbuf* m) {
    const uint8_t* d = rte_pktmbuf_mtod(m, const uint8_t*);
    return {d, d + rte_pktmbuf_data_len(m)};
  }
  static packet::ParsedPacket ParseMbuf(const rte_mbuf* m) {
    packet::ParsedPacket pkt;
    DropReason reason;
    EXPECT_EQ(packet::Parse(rte_pktmbuf_mtod(m, const uint8_t*), rte_pktmbuf_data_len(m),
                            flow::kDefaultGuePort, &pkt, &reason),
              packet::ParseStatus::kIpv4);
    return pkt;
  }

  // Applies `actions` to `p` and checks that the ParsedPacket kept up to date by ApplyActions
  // equals a fresh parse of the result.
  Verdict ApplyAndCheck(const Packet& p, const std::vector<Action>& actions,
                        std::vector<uint8_t>* out = nullptr) {
    rte_mbuf* m = Mbuf(p);
    packet::ParsedPacket pkt = ParseMbuf(m);
    Verdict v = ApplyActions(m, &pkt, actions.data(), actions.size());
    if (v.kind != Verdict::Kind::kDrop) {
      packet::ParsedPacket fresh = ParseMbuf(m);
      EXPECT_EQ(pkt.l3_offset, fresh.l3_offset);
      EXPECT_EQ(pkt.inner_l3_offset, fresh.inner_l3_offset);
      EXPECT_EQ(pkt.l4_offset, fresh.l4_offset);
      EXPECT_EQ(pkt.tunnel, fresh.tunnel);
      EXPECT_EQ(pkt.outer_src, fresh.outer_src);
      EXPECT_EQ(pkt.outer_dst, fresh.outer_dst);
      EXPECT_EQ(pkt.outer_src_port, fresh.outer_src_port);
      EXPECT_EQ(pkt.outer_dst_port, fresh.outer_dst_port);
      EXPECT_EQ(pkt.src, fresh.src);
      EXPECT_EQ(pkt.dst, fresh.dst);
      EXPECT_EQ(pkt.proto, fresh.proto);
      EXPECT_EQ(pkt.ttl, fresh.ttl);
      EXPECT_EQ(pkt.src_port, fresh.src_port);
      EXPECT_EQ(pkt.dst_port, fresh.dst_port);
      EXPECT_EQ(VerifyChecksums(Bytes(m)), "");
    }
    if (out != nullptr) *out = Bytes(m);
    rte_pktmbuf_free(m);
    return v;
  }

  rte_mempool* pool_ = nullptr;
};

const Packet kTcpPacket = Eth{.dst = kHostMac, .src = kRouterMac} /
                          Ipv4{.src = kClient, .dst = kVip, .ttl = 30} /
                          Tcp{.sport = kClientPort, .dport = 80} / Payload{"payload"};

TEST_F(ExecutorTest, EncapThenDecapRestoresThePacket) {
  for (Tunnel t : {Tunnel::kIpip, Tunnel::kGue}) {
    std::vector<uint8_t> out;
    Verdict v =
        ApplyAndCheck(kTcpPacket,
                      {Action::Encap({.type = t, .outer_src = kMuxPa, .outer_dst = kHostPa}),
                       Action::Decap(), Action::Output(4)},
                      &out);
    EXPECT_EQ(v.kind, Verdict::Kind::kOutput);
    EXPECT_EQ(v.port, 4);
    EXPECT_EQ(out, kTcpPacket.Bytes());
  }
}

TEST_F(ExecutorTest, ParsedPacketFollowsEveryAction) {
  const Packet ipip = Eth{} / Ipv4{.src = kMuxPa, .dst = kHostPa} /
                      Ipv4{.src = kClient, .dst = kVip} / Udp{.sport = 1000, .dport = 53} /
                      Payload{"q"};
  const Packet gue = Eth{} / Ipv4{.src = kMuxPa, .dst = kHostPa} /
                     Udp{.sport = 50001, .dport = 6080} /
                     Ipv4{.src = kClient, .dst = kVip, .options = {1, 1, 1, 1}} /
                     Tcp{.sport = 1, .dport = 80} / Payload{"x"};
  const std::vector<Action> rewrite = {Action::SetIpv4Src(Ip("1.2.3.4")),
                                       Action::SetIpv4Dst(Ip("5.6.7.8")), Action::SetL4Src(11),
                                       Action::SetL4Dst(22), Action::DecTtl()};
  for (const Packet* p : {&ipip, &gue, &kTcpPacket}) {
    std::vector<Action> actions = rewrite;
    actions.push_back(Action::ToSoftware());
    EXPECT_EQ(ApplyAndCheck(*p, actions).kind, Verdict::Kind::kToSoftware);
    if (p != &kTcpPacket) {
      actions.insert(actions.begin(), Action::Decap());
      EXPECT_EQ(ApplyAndCheck(*p, actions).kind, Verdict::Kind::kToSoftware);
    }
    actions = rewrite;
    actions.push_back(Action::Encap({.type = Tunnel::kGue, .outer_src = 9, .outer_dst = 10}));
    actions.insert(actions.end(), rewrite.begin(), rewrite.end());
    actions.push_back(Action::Output(0));
    Verdict v = ApplyAndCheck(*p, actions);
    if (p == &kTcpPacket) {
      EXPECT_EQ(v.kind, Verdict::Kind::kOutput);
    } else {
      // One tunnel level only: encapsulating a tunnelled packet is refused.
      EXPECT_EQ(v.kind, Verdict::Kind::kDrop);
      EXPECT_EQ(v.reason, DropReason::kMalformed);
    }
  }
}

TEST_F(ExecutorTest, DecapDropsEthernetPadding) {
  std::vector<uint8_t> in = (Eth{} / Ipv4{.src = kMuxPa, .dst = kHostPa} /
                             Ipv4{.src = kClient, .dst = kVip} / Udp{.sport = 1, .dport = 2})
                                .Bytes();
  in.resize(in.size() + 18, 0);  // trailing padding
  rte_mbuf* m = Mbuf(in);
  packet::ParsedPacket pkt = ParseMbuf(m);
  const Action actions[] = {Action::Decap(), Action::Output(0)};
  ASSERT_EQ(ApplyActions(m, &pkt, actions, 2).kind, Verdict::Kind::kOutput);
  EXPECT_EQ(Bytes(m),
            (Eth{} / Ipv4{.src = kClient, .dst = kVip} / Udp{.sport = 1, .dport = 2}).Bytes());
  EXPECT_EQ(rte_pktmbuf_pkt_len(m), 14u + 28u);
  rte_pktmbuf_free(m);
}

TEST_F(ExecutorTest, RandomRewritesKeepChecksumsExact) {
  std::mt19937 rng(42);
  for (int iter = 0; iter < 2000; ++iter) {
    const uint32_t src = rng(), dst = rng(), new_src = rng(), new_dst = rng();
    const uint16_t sp = static_cast<uint16_t>(rng()), dp = static_cast<uint16_t>(rng());
    const uint16_t new_sp = static_cast<uint16_t>(rng()), new_dp = static_cast<uint16_t>(rng());
    const uint8_t ttl = static_cast<uint8_t>(2 + rng() % 254);
    const std::string data(rng() % 40, static_cast<char>(rng()));
    const bool tcp = iter % 2 == 0;
    auto make = [&](uint32_t s, uint32_t d, uint16_t a, uint16_t b, uint8_t t) {
      Packet p = Eth{} / Ipv4{.src = s, .dst = d, .ttl = t, .id = static_cast<uint16_t>(iter)};
      if (tcp)
        return p / Tcp{.sport = a, .dport = b, .seq = static_cast<uint32_t>(iter)} / Payload{data};
      return p / Udp{.sport = a, .dport = b} / Payload{data};
    };
    std::vector<uint8_t> out;
    ASSERT_EQ(ApplyAndCheck(make(src, dst, sp, dp, ttl),
                            {Action::SetIpv4Src(new_src), Action::SetIpv4Dst(new_dst),
                             Action::SetL4Src(new_sp), Action::SetL4Dst(new_dp), Action::DecTtl(),
                             Action::Output(0)},
                            &out)
                  .kind,
              Verdict::Kind::kOutput);
    ASSERT_EQ(out, make(new_src, new_dst, new_sp, new_dp, static_cast<uint8_t>(ttl - 1)).Bytes())
        << "iteration " << iter;
  }
}

TEST_F(ExecutorTest, IcmpEchoIdentifierRewrite) {
  auto echo = [](uint16_t id) {
    return Eth{} / Ipv4{.src = kClient, .dst = kVip} / Icmp{.type = 8, .id = id, .seq = 3} /
           Payload{"ping"};
  };
  std::vector<uint8_t> out;
  EXPECT_EQ(ApplyAndCheck(echo(0x1111), {Action::SetL4Src(0x2222), Action::Output(0)}, &out).kind,
            Verdict::Kind::kOutput);
  EXPECT_EQ(out, echo(0x2222).Bytes());
  EXPECT_EQ(ApplyAndCheck(echo(0x1111), {Action::SetL4Dst(0x3333), Action::Output(0)}, &out).kind,
            Verdict::Kind::kOutput);
  EXPECT_EQ(out, echo(0x3333).Bytes());

  Packet unreachable = Eth{} / Ipv4{.src = kClient, .dst = kVip} / Icmp{.type = 3, .code = 1};
  Verdict v = ApplyAndCheck(unreachable, {Action::SetL4Dst(1), Action::Output(0)});
  EXPECT_EQ(v.kind, Verdict::Kind::kDrop);
  EXPECT_EQ(v.reason, DropReason::kUnsupportedProto);
  Packet gre = Eth{} / Ipv4{.src = kClient, .dst = kVip, .proto = 47} / Payload{"gre"};
  v = ApplyAndCheck(gre, {Action::SetL4Src(1), Action::Output(0)});
  EXPECT_EQ(v.reason, DropReason::kUnsupportedProto);
}

TEST_F(ExecutorTest, ActionErrors) {
  Verdict v = ApplyAndCheck(kTcpPacket, {Action::Decap(), Action::Output(0)});
  EXPECT_EQ(v.kind, Verdict::Kind::kDrop);
  EXPECT_EQ(v.reason, DropReason::kMalformed);

  v = ApplyAndCheck(kTcpPacket, {Action::SetMac(kMuxMac, kHostMac)});
  EXPECT_EQ(v.kind, Verdict::Kind::kDrop);
  EXPECT_EQ(v.reason, DropReason::kDroppedByRule);

  v = ApplyAndCheck(kTcpPacket, {Action::Drop()});
  EXPECT_EQ(v.reason, DropReason::kDroppedByRule);

  v = ApplyAndCheck(kTcpPacket, {Action::Count(), Action::Age(5), Action::ToSoftware()});
  EXPECT_EQ(v.kind, Verdict::Kind::kToSoftware);

  v = ApplyAndCheck(kTcpPacket, {Action::Encap({.type = Tunnel::kNone}), Action::Output(0)});
  EXPECT_EQ(v.reason, DropReason::kMalformed);
}

TEST_F(ExecutorTest, MultiSegmentMbufIsMalformed) {
  rte_mbuf* head = Mbuf(kTcpPacket);
  rte_mbuf* tail = Mbuf(std::vector<uint8_t>(10, 0));
  ASSERT_EQ(rte_pktmbuf_chain(head, tail), 0);
  packet::ParsedPacket pkt = ParseMbuf(head);
  const Action out = Action::Output(0);
  Verdict v = ApplyActions(head, &pkt, &out, 1);
  EXPECT_EQ(v.reason, DropReason::kMalformed);

  SoftwareExecutor executor;
  std::string error;
  executor.SetRules(RuleTable::Build({Rule{.id = 1, .actions = {out}}}, &error));
  executor.ProcessBurst(&head, 1, 0, &v);
  EXPECT_EQ(v.kind, Verdict::Kind::kDrop);
  EXPECT_EQ(executor.counters().drops[static_cast<size_t>(DropReason::kMalformed)].Get(), 1u);
  rte_pktmbuf_free(head);
}

TEST(RuleTableTest, BuildRejectsInvalidRulesNamingThem) {
  std::string error;
  EXPECT_EQ(RuleTable::Build({Rule{.id = 1, .actions = {Action::Output(0)}},
                              Rule{.id = 2, .actions = {Action::Count()}, .name = "broken"}},
                             &error),
            nullptr);
  EXPECT_NE(error.find("rule 2 (\"broken\")"), std::string::npos) << error;

  EXPECT_EQ(RuleTable::Build({Rule{.id = 1, .actions = {Action::Output(0)}, .name = "a"},
                              Rule{.id = 1, .actions = {Action::Drop()}, .name = "b"}},
                             &error),
            nullptr);
  EXPECT_NE(error.find("rule 1 (\"b\")"), std::string::npos) << error;
}

TEST(RuleTableTest, PriorityThenInstallationOrder) {
  std::string error;
  auto table = RuleTable::Build(
      {Rule{.id = 1, .priority = 1, .actions = {Action::Output(1)}},
       Rule{.id = 2, .priority = 5, .actions = {Action::Output(2)}},
       Rule{.id = 3, .priority = 5, .actions = {Action::Output(3)}},
       Rule{.id = 4, .priority = 9, .match = {.in_port = 7}, .actions = {Action::Output(4)}}},
      &error);
  ASSERT_NE(table, nullptr) << error;
  ASSERT_EQ(table->rules().size(), 4u);
  EXPECT_EQ(table->rules()[0].id, 4u);
  EXPECT_EQ(table->rules()[1].id, 2u);
  EXPECT_EQ(table->rules()[2].id, 3u);
  EXPECT_EQ(table->rules()[3].id, 1u);
  packet::ParsedPacket pkt;
  uint32_t index;
  EXPECT_EQ(table->Lookup(pkt, 0, &index)->id, 2u);
  EXPECT_EQ(index, 1u);
  EXPECT_EQ(table->Lookup(pkt, 7, &index)->id, 4u);
}

TEST(RuleTableTest, MatchWithoutTunnelSeesTheOutermostHeader) {
  std::string error;
  auto table =
      RuleTable::Build({Rule{.id = 1,
                             .match = {.dst = Ipv4Match::Exact(kHostPa),
                                       .proto = flow::kProtoUdp,
                                       .dst_port = PortMatch::Exact(6080)},
                             .actions = {Action::ToSoftware()}},
                        Rule{.id = 2,
                             .match = {.dst = Ipv4Match::Exact(kHostPa), .proto = flow::kProtoIpip},
                             .actions = {Action::Drop()}},
                        Rule{.id = 3,
                             .match = {.tunnel = Tunnel::kGue, .dst = Ipv4Match::Exact(kVip)},
                             .actions = {Action::Decap(), Action::Output(1)}}},
                       &error);
  ASSERT_NE(table, nullptr) << error;
  uint32_t index;
  packet::ParsedPacket gue{.tunnel = Tunnel::kGue,
                           .outer_dst = kHostPa,
                           .dst = kVip,
                           .proto = flow::kProtoTcp,
                           .dst_port = 80,
                           .outer_dst_port = 6080};
  EXPECT_EQ(table->Lookup(gue, 0, &index)->id, 1u);
  gue.outer_dst_port = 6081;
  EXPECT_EQ(table->Lookup(gue, 0, &index)->id, 3u);
  packet::ParsedPacket ipip{
      .tunnel = Tunnel::kIpip, .outer_dst = kHostPa, .dst = kVip, .proto = flow::kProtoTcp};
  EXPECT_EQ(table->Lookup(ipip, 0, &index)->id, 2u);
  packet::ParsedPacket plain{.outer_dst = kVip, .dst = kVip, .proto = flow::kProtoTcp};
  EXPECT_EQ(table->Lookup(plain, 0, &index), nullptr);
  EXPECT_EQ(index, Verdict::kNoRuleIndex);
}

TEST(RuleTableTest, TcpFlagsMatchTheHeaderTheAddressesReferTo) {
  std::string error;
  auto table = RuleTable::Build(
      {Rule{.id = 1,
            .priority = 10,
            .match = {.tunnel = Tunnel::kIpip,
                      .proto = flow::kProtoTcp,
                      .tcp_flags = flow::kTcpFlagFin,
                      .tcp_flags_mask = flow::kTcpFlagFin},
            .actions = {Action::ToSoftware()}},
       Rule{.id = 2,
            .priority = 10,
            .match = {.proto = flow::kProtoTcp,
                      .tcp_flags = flow::kTcpFlagRst,
                      .tcp_flags_mask = flow::kTcpFlagRst},
            .actions = {Action::ToSoftware()}},
       Rule{.id = 3, .match = {.proto = flow::kProtoTcp}, .actions = {Action::Output(1)}},
       Rule{.id = 4,
            .match = {.tunnel = Tunnel::kIpip, .proto = flow::kProtoTcp},
            .actions = {Action::Decap(), Action::Output(1)}}},
      &error);
  ASSERT_NE(table, nullptr) << error;
  uint32_t index;
  packet::ParsedPacket ipip{.tunnel = Tunnel::kIpip,
                            .outer_dst = kHostPa,
                            .dst = kVip,
                            .proto = flow::kProtoTcp,
                            .tcp_flags = flow::kTcpFlagFin | flow::kTcpFlagAck};
  EXPECT_EQ(table->Lookup(ipip, 0, &index)->id, 1u);
  ipip.tcp_flags = flow::kTcpFlagAck;
  EXPECT_EQ(table->Lookup(ipip, 0, &index)->id, 4u);
  // The RST rule names no tunnel, so it looks at the outermost header: not TCP.
  ipip.tcp_flags = flow::kTcpFlagRst;
  EXPECT_EQ(table->Lookup(ipip, 0, &index)->id, 4u);
  packet::ParsedPacket plain{.outer_dst = kVip,
                             .dst = kVip,
                             .proto = flow::kProtoTcp,
                             .tcp_flags = flow::kTcpFlagRst | flow::kTcpFlagAck};
  EXPECT_EQ(table->Lookup(plain, 0, &index)->id, 2u);
  plain.tcp_flags = flow::kTcpFlagFin;
  EXPECT_EQ(table->Lookup(plain, 0, &index)->id, 3u);
  plain.proto = flow::kProtoUdp;
  plain.tcp_flags = flow::kTcpFlagRst;  // a UDP packet never matches a TCP-flags rule
  EXPECT_EQ(table->Lookup(plain, 0, &index), nullptr);
}

TEST_F(ExecutorTest, BurstCountersAndRuleSwap) {
  SoftwareExecutor executor;
  Verdict verdicts[4];
  rte_mbuf* burst[4] = {Mbuf(kTcpPacket), Mbuf(kTcpPacket), Mbuf(kTcpPacket),
                        Mbuf(Eth{} / Arp{.op = 1})};
  executor.ProcessBurst(burst, 4, 0, verdicts);  // no rules yet
  EXPECT_EQ(executor.counters().drops[static_cast<size_t>(DropReason::kNoRule)].Get(), 3u);
  EXPECT_EQ(executor.counters().drops[static_cast<size_t>(DropReason::kNotIpv4)].Get(), 1u);

  std::string error;
  executor.SetRules(
      RuleTable::Build({Rule{.id = 8,
                             .match = {.dst = Ipv4Match::Exact(kVip)},
                             .actions = {Action::Count(), Action::DecTtl(), Action::Output(3)}}},
                       &error));
  for (int i = 0; i < 3; ++i) rte_pktmbuf_free(burst[i]);
  for (int i = 0; i < 3; ++i) burst[i] = Mbuf(kTcpPacket);
  executor.ProcessBurst(burst, 4, 0, verdicts);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(verdicts[i].kind, Verdict::Kind::kOutput);
    EXPECT_EQ(verdicts[i].port, 3);
    EXPECT_EQ(verdicts[i].rule_index, 0u);
  }
  EXPECT_EQ(verdicts[3].kind, Verdict::Kind::kDrop);
  EXPECT_EQ(verdicts[3].rule_index, Verdict::kNoRuleIndex);
  const ExecutorCounters& c = executor.counters();
  EXPECT_EQ(c.rx_packets.Get(), 8u);
  EXPECT_EQ(c.output_packets.Get(), 3u);
  EXPECT_EQ(c.TotalDrops(), 5u);
  EXPECT_EQ(executor.RulePackets(0), 3u);
  EXPECT_EQ(executor.RuleBytes(0), 3 * kTcpPacket.Bytes().size());
  EXPECT_EQ(executor.RulePackets(1), 0u);  // out of range

  executor.SetRules(RuleTable::Build({}, &error));  // a new table resets rule counters
  EXPECT_EQ(executor.RulePackets(0), 0u);
  for (rte_mbuf* m : burst) rte_pktmbuf_free(m);
}

}  // namespace
}  // namespace sluice::sw
