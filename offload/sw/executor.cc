#include "offload/sw/executor.h"

#include <rte_byteorder.h>
#include <rte_mbuf.h>

#include <algorithm>
#include <cstring>
#include <unordered_set>

#include "offload/packet/checksum.h"

namespace sluice::sw {
namespace {

using flow::ActionType;
using flow::Tunnel;
using packet::ParsedPacket;

constexpr uint16_t kIpv4FlagDf = 0x4000;
constexpr uint8_t kIcmpEchoReply = 0;
constexpr uint8_t kIcmpEchoRequest = 8;

// Byte offsets inside headers.
constexpr uint16_t kIpTotalLen = 2;
constexpr uint16_t kIpTtl = 8;
constexpr uint16_t kIpChecksum = 10;
constexpr uint16_t kIpSrc = 12;
constexpr uint16_t kIpDst = 16;
constexpr uint16_t kTcpChecksum = 16;
constexpr uint16_t kUdpChecksum = 6;
constexpr uint16_t kIcmpChecksum = 2;
constexpr uint16_t kIcmpId = 4;

// Raw (network order) 16/32-bit access at any alignment.
inline uint16_t Raw16(const uint8_t* p) {
  uint16_t v;
  memcpy(&v, p, 2);
  return v;
}
inline uint32_t Raw32(const uint8_t* p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
inline void SetRaw16(uint8_t* p, uint16_t v) { memcpy(p, &v, 2); }
inline void SetRaw32(uint8_t* p, uint32_t v) { memcpy(p, &v, 4); }

inline Verdict Drop(DropReason reason) {
  Verdict v;
  v.kind = Verdict::Kind::kDrop;
  v.reason = reason;
  return v;
}

// Incrementally updates the 16-bit checksum at `field` for a 16- or 32-bit change.
inline void Update16(uint8_t* field, uint16_t old_word, uint16_t new_word) {
  SetRaw16(field, packet::ChecksumUpdate16(Raw16(field), old_word, new_word));
}
inline void Update32(uint8_t* field, uint32_t old_value, uint32_t new_value) {
  SetRaw16(field, packet::ChecksumUpdate32(Raw16(field), old_value, new_value));
}

// UDP: a zero checksum means "none" and stays zero; a computed zero is sent as 0xffff.
inline void UpdateUdp16(uint8_t* field, uint16_t old_word, uint16_t new_word) {
  if (Raw16(field) == 0) return;
  uint16_t sum = packet::ChecksumUpdate16(Raw16(field), old_word, new_word);
  SetRaw16(field, sum == 0 ? 0xffff : sum);
}
inline void UpdateUdp32(uint8_t* field, uint32_t old_value, uint32_t new_value) {
  if (Raw16(field) == 0) return;
  uint16_t sum = packet::ChecksumUpdate32(Raw16(field), old_value, new_value);
  SetRaw16(field, sum == 0 ? 0xffff : sum);
}

// Decap and Encap return false with `*reason` set if the packet must be dropped.
bool Decap(rte_mbuf* m, ParsedPacket* pkt, DropReason* reason) {
  if (pkt->tunnel == Tunnel::kNone) {
    *reason = DropReason::kMalformed;
    return false;
  }
  uint8_t* frame = rte_pktmbuf_mtod(m, uint8_t*);
  const uint16_t outer_len = pkt->inner_l3_offset - pkt->l3_offset;
  const uint16_t inner_total = rte_be_to_cpu_16(Raw16(frame + pkt->inner_l3_offset + kIpTotalLen));
  memmove(frame + outer_len, frame, pkt->l3_offset);
  rte_pktmbuf_adj(m, outer_len);
  // Drop whatever followed the outer packet (Ethernet padding).
  const uint32_t new_len = static_cast<uint32_t>(pkt->l3_offset) + inner_total;
  if (rte_pktmbuf_data_len(m) > new_len) rte_pktmbuf_trim(m, rte_pktmbuf_data_len(m) - new_len);
  pkt->inner_l3_offset = pkt->l3_offset;
  if (pkt->l4_offset != 0) pkt->l4_offset -= outer_len;
  pkt->outer_src = pkt->src;
  pkt->outer_dst = pkt->dst;
  pkt->outer_src_port = 0;
  pkt->outer_dst_port = 0;
  pkt->tunnel = Tunnel::kNone;
  return true;
}

bool Encap(rte_mbuf* m, ParsedPacket* pkt, const flow::EncapParams& params, DropReason* reason) {
  // One tunnel level only, as in Parse: ParsedPacket cannot describe two.
  if (params.type == Tunnel::kNone || pkt->tunnel != Tunnel::kNone) {
    *reason = DropReason::kMalformed;
    return false;
  }
  const bool gue = params.type == Tunnel::kGue;
  const bool gre = params.type == Tunnel::kGre;
  const uint16_t outer_len = packet::kIpv4HeaderLen + (gue ? packet::kUdpHeaderLen : 0) +
                             (gre ? packet::kGreHeaderLen : 0);
  const uint16_t l2_len = pkt->l3_offset;
  uint8_t* frame = rte_pktmbuf_mtod(m, uint8_t*);
  const uint8_t* inner = frame + l2_len;
  const uint16_t inner_total = rte_be_to_cpu_16(Raw16(inner + kIpTotalLen));
  if (static_cast<uint32_t>(inner_total) + outer_len > UINT16_MAX) {
    *reason = DropReason::kMalformed;
    return false;
  }
  const uint8_t tos = inner[1];
  const uint32_t new_len = static_cast<uint32_t>(l2_len) + inner_total;
  if (rte_pktmbuf_data_len(m) > new_len) rte_pktmbuf_trim(m, rte_pktmbuf_data_len(m) - new_len);
  uint8_t* front = reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(m, outer_len));
  if (front == nullptr) {
    *reason = DropReason::kNoHeadroom;
    return false;
  }
  memmove(front, front + outer_len, l2_len);

  uint8_t* ip = front + l2_len;
  ip[0] = 0x45;
  ip[1] = tos;
  SetRaw16(ip + kIpTotalLen, rte_cpu_to_be_16(static_cast<uint16_t>(inner_total + outer_len)));
  SetRaw16(ip + 4, 0);  // identification: DF is set, so never fragmented
  SetRaw16(ip + 6, rte_cpu_to_be_16(kIpv4FlagDf));
  ip[kIpTtl] = params.ttl;
  ip[9] = flow::OuterProtocol(params.type);
  SetRaw16(ip + kIpChecksum, 0);
  SetRaw32(ip + kIpSrc, rte_cpu_to_be_32(params.outer_src));
  SetRaw32(ip + kIpDst, rte_cpu_to_be_32(params.outer_dst));
  SetRaw16(ip + kIpChecksum, packet::Ipv4HeaderChecksum(ip, packet::kIpv4HeaderLen));

  uint16_t sport = 0;
  if (gue) {
    uint8_t* udp = ip + packet::kIpv4HeaderLen;
    sport = params.gue_src_port != 0
                ? params.gue_src_port
                : packet::GueSourcePort(packet::FlowHash(pkt->src, pkt->dst, pkt->proto,
                                                         pkt->src_port, pkt->dst_port));
    SetRaw16(udp, rte_cpu_to_be_16(sport));
    SetRaw16(udp + 2, rte_cpu_to_be_16(params.gue_dst_port));
    SetRaw16(udp + 4, rte_cpu_to_be_16(static_cast<uint16_t>(inner_total + packet::kUdpHeaderLen)));
    SetRaw16(udp + kUdpChecksum, 0);  // allowed for UDP over IPv4
  }
  if (gre) {
    uint8_t* header = ip + packet::kIpv4HeaderLen;
    SetRaw16(header, 0);  // no checksum, key or sequence number; version 0
    SetRaw16(header + 2, rte_cpu_to_be_16(packet::kEtherTypeIpv4));
  }
  pkt->inner_l3_offset += outer_len;
  if (pkt->l4_offset != 0) pkt->l4_offset += outer_len;
  pkt->tunnel = params.type;
  pkt->outer_src = params.outer_src;
  pkt->outer_dst = params.outer_dst;
  pkt->outer_src_port = sport;
  pkt->outer_dst_port = gue ? params.gue_dst_port : 0;
  return true;
}

// A rewrite of the inner packet of a GUE tunnel invalidates the outer UDP checksum, which
// covers it; zero ("no checksum", allowed over IPv4) is always correct.
inline void ClearOuterUdpChecksum(uint8_t* frame, const ParsedPacket& pkt) {
  if (pkt.tunnel != Tunnel::kGue) return;
  SetRaw16(frame + pkt.inner_l3_offset - packet::kUdpHeaderLen + kUdpChecksum, 0);
}

void SetIpv4(uint8_t* frame, ParsedPacket* pkt, bool source, uint32_t addr) {
  ClearOuterUdpChecksum(frame, *pkt);
  uint8_t* ip = frame + pkt->inner_l3_offset;
  uint8_t* field = ip + (source ? kIpSrc : kIpDst);
  const uint32_t old_value = Raw32(field);
  const uint32_t new_value = rte_cpu_to_be_32(addr);
  SetRaw32(field, new_value);
  Update32(ip + kIpChecksum, old_value, new_value);
  if (pkt->l4_offset != 0) {
    uint8_t* l4 = frame + pkt->l4_offset;
    if (pkt->proto == flow::kProtoTcp) Update32(l4 + kTcpChecksum, old_value, new_value);
    if (pkt->proto == flow::kProtoUdp) UpdateUdp32(l4 + kUdpChecksum, old_value, new_value);
    // ICMP's checksum has no pseudo-header.
  }
  (source ? pkt->src : pkt->dst) = addr;
  if (pkt->tunnel == Tunnel::kNone) (source ? pkt->outer_src : pkt->outer_dst) = addr;
}

bool SetL4Port(uint8_t* frame, ParsedPacket* pkt, bool source, uint16_t port) {
  if (pkt->l4_offset == 0) return false;
  ClearOuterUdpChecksum(frame, *pkt);
  uint8_t* l4 = frame + pkt->l4_offset;
  const uint16_t new_word = rte_cpu_to_be_16(port);
  switch (pkt->proto) {
    case flow::kProtoTcp:
    case flow::kProtoUdp: {
      uint8_t* field = l4 + (source ? 0 : 2);
      const uint16_t old_word = Raw16(field);
      SetRaw16(field, new_word);
      if (pkt->proto == flow::kProtoTcp) {
        Update16(l4 + kTcpChecksum, old_word, new_word);
      } else {
        UpdateUdp16(l4 + kUdpChecksum, old_word, new_word);
      }
      (source ? pkt->src_port : pkt->dst_port) = port;
      return true;
    }
    case flow::kProtoIcmp: {
      // The echo identifier plays both ports.
      if (pkt->icmp_type != kIcmpEchoRequest && pkt->icmp_type != kIcmpEchoReply) return false;
      const uint16_t old_word = Raw16(l4 + kIcmpId);
      SetRaw16(l4 + kIcmpId, new_word);
      Update16(l4 + kIcmpChecksum, old_word, new_word);
      pkt->src_port = port;
      pkt->dst_port = port;
      return true;
    }
    default:
      return false;
  }
}

bool DecTtl(uint8_t* frame, ParsedPacket* pkt) {
  uint8_t* ip = frame + pkt->inner_l3_offset;
  if (ip[kIpTtl] <= 1) return false;
  ClearOuterUdpChecksum(frame, *pkt);
  const uint16_t old_word = Raw16(ip + kIpTtl);  // TTL and protocol share a word
  --ip[kIpTtl];
  Update16(ip + kIpChecksum, old_word, Raw16(ip + kIpTtl));
  pkt->ttl = ip[kIpTtl];
  return true;
}

bool MatchesRule(const flow::Match& m, const ParsedPacket& pkt, uint16_t in_port) {
  if (m.in_port && *m.in_port != in_port) return false;
  // TCP flags belong to the TCP header the match's addresses refer to: the inner one under a
  // tunnel match, the outermost one otherwise (Validate makes such a match name proto tcp).
  if (m.tcp_flags_mask != 0 &&
      (pkt.proto != flow::kProtoTcp || (m.tunnel == Tunnel::kNone && pkt.tunnel != Tunnel::kNone) ||
       !m.MatchesTcpFlags(pkt.tcp_flags))) {
    return false;
  }
  if (m.tunnel != Tunnel::kNone) {
    return pkt.tunnel == m.tunnel && m.outer_src.Matches(pkt.outer_src) &&
           m.outer_dst.Matches(pkt.outer_dst) && m.src.Matches(pkt.src) && m.dst.Matches(pkt.dst) &&
           (m.proto == 0 || m.proto == pkt.proto) && m.src_port.Matches(pkt.src_port) &&
           m.dst_port.Matches(pkt.dst_port);
  }
  // No tunnel in the match: everything refers to the outermost header.
  if (!m.outer_src.Matches(pkt.outer_src) || !m.outer_dst.Matches(pkt.outer_dst) ||
      !m.src.Matches(pkt.outer_src) || !m.dst.Matches(pkt.outer_dst)) {
    return false;
  }
  switch (pkt.tunnel) {
    case Tunnel::kNone:
      return (m.proto == 0 || m.proto == pkt.proto) && m.src_port.Matches(pkt.src_port) &&
             m.dst_port.Matches(pkt.dst_port);
    case Tunnel::kIpip:
      return (m.proto == 0 || m.proto == flow::kProtoIpip) && m.src_port.Matches(0) &&
             m.dst_port.Matches(0);
    case Tunnel::kGue:
      return (m.proto == 0 || m.proto == flow::kProtoUdp) &&
             m.src_port.Matches(pkt.outer_src_port) && m.dst_port.Matches(pkt.outer_dst_port);
    case Tunnel::kGre:
      return (m.proto == 0 || m.proto == flow::kProtoGre) && m.src_port.Matches(0) &&
             m.dst_port.Matches(0);
  }
  return false;
}

bool HasCount(const flow::Rule& rule) {
  return std::any_of(rule.actions.begin(), rule.actions.end(),
                     [](const flow::Action& a) { return a.type == ActionType::kCount; });
}

}  // namespace

uint64_t ExecutorCounters::TotalDrops() const {
  uint64_t total = 0;
  for (const Counter& c : drops) total += c.Get();
  return total;
}

Verdict ApplyActions(rte_mbuf* m, ParsedPacket* pkt, const flow::Action* actions, size_t n) {
  if (m->nb_segs != 1) return Drop(DropReason::kMalformed);
  DropReason reason = DropReason::kMalformed;
  for (size_t i = 0; i < n; ++i) {
    const flow::Action& a = actions[i];
    uint8_t* frame = rte_pktmbuf_mtod(m, uint8_t*);
    switch (a.type) {
      case ActionType::kDecap:
        if (!Decap(m, pkt, &reason)) return Drop(reason);
        break;
      case ActionType::kEncap:
        if (!Encap(m, pkt, a.encap, &reason)) return Drop(reason);
        break;
      case ActionType::kSetIpv4Src:
      case ActionType::kSetIpv4Dst:
        SetIpv4(frame, pkt, a.type == ActionType::kSetIpv4Src, a.ipv4);
        break;
      case ActionType::kSetL4Src:
      case ActionType::kSetL4Dst:
        if (!SetL4Port(frame, pkt, a.type == ActionType::kSetL4Src, a.l4_port)) {
          return Drop(DropReason::kUnsupportedProto);
        }
        break;
      case ActionType::kSetMac:
        memcpy(frame, a.mac_dst.data(), 6);
        memcpy(frame + 6, a.mac_src.data(), 6);
        break;
      case ActionType::kDecTtl:
        if (!DecTtl(frame, pkt)) return Drop(DropReason::kTtlExceeded);
        break;
      case ActionType::kCount:  // counted by the executor against the rule
      case ActionType::kAge:    // NIC executors only
        break;
      case ActionType::kOutput:
        return Verdict{.kind = Verdict::Kind::kOutput, .port = a.out_port};
      case ActionType::kDrop:
        return Drop(DropReason::kDroppedByRule);
      case ActionType::kToSoftware:
        return Verdict{.kind = Verdict::Kind::kToSoftware};
    }
  }
  return Drop(DropReason::kDroppedByRule);  // no terminal action: Validate prevents this
}

std::shared_ptr<const RuleTable> RuleTable::Build(std::vector<flow::Rule> rules,
                                                  std::string* error) {
  std::unordered_set<uint64_t> ids;
  for (const flow::Rule& rule : rules) {
    std::string problem = flow::Validate(rule);
    if (!problem.empty()) {
      *error = problem;
      return nullptr;
    }
    if (!ids.insert(rule.id).second) {
      *error = "rule " + std::to_string(rule.id) + " (\"" + rule.name +
               "\"): id is used by another rule of the set; rule ids must be unique";
      return nullptr;
    }
  }
  std::stable_sort(rules.begin(), rules.end(), [](const flow::Rule& a, const flow::Rule& b) {
    return a.priority > b.priority;
  });
  auto table = std::make_shared<RuleTable>();
  table->rules_ = std::move(rules);
  return table;
}

// A linear scan in priority order. The next step is an exact-match hash on the common
// fully-specified 5-tuple (+ tunnel) shape, with the scan kept for wildcard rules.
const flow::Rule* RuleTable::Lookup(const ParsedPacket& pkt, uint16_t in_port,
                                    uint32_t* index) const {
  for (size_t i = 0; i < rules_.size(); ++i) {
    if (MatchesRule(rules_[i].match, pkt, in_port)) {
      *index = static_cast<uint32_t>(i);
      return &rules_[i];
    }
  }
  *index = Verdict::kNoRuleIndex;
  return nullptr;
}

SoftwareExecutor::SoftwareExecutor(uint16_t gue_port) : gue_port_(gue_port) {}

void SoftwareExecutor::SetRules(std::shared_ptr<const RuleTable> table) {
  const size_t n = table ? table->rules().size() : 0;
  rule_packets_ = std::make_unique<Counter[]>(n);
  rule_bytes_ = std::make_unique<Counter[]>(n);
  table_ = std::move(table);
}

void SoftwareExecutor::ProcessBurst(rte_mbuf** pkts, uint16_t n, uint16_t in_port,
                                    Verdict* verdicts) {
  for (uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    Verdict& v = verdicts[i];
    counters_.rx_packets.Add();
    v = ProcessOne(m, in_port);
    switch (v.kind) {
      case Verdict::Kind::kOutput:
        counters_.output_packets.Add();
        break;
      case Verdict::Kind::kToSoftware:
        counters_.to_software_packets.Add();
        break;
      case Verdict::Kind::kDrop:
        counters_.drops[static_cast<size_t>(v.reason)].Add();
        break;
    }
  }
}

Verdict SoftwareExecutor::ProcessOne(rte_mbuf* m, uint16_t in_port) {
  if (m->nb_segs != 1) return Drop(DropReason::kMalformed);
  ParsedPacket pkt;
  DropReason reason = DropReason::kMalformed;
  const uint32_t len = rte_pktmbuf_data_len(m);
  switch (packet::Parse(rte_pktmbuf_mtod(m, const uint8_t*), len, gue_port_, &pkt, &reason)) {
    case packet::ParseStatus::kIpv4:
      break;
    case packet::ParseStatus::kArp:
      return Drop(DropReason::kNotIpv4);  // ARP belongs to the application, not to rules
    case packet::ParseStatus::kDrop:
      return Drop(reason);
  }
  if (table_ == nullptr) return Drop(DropReason::kNoRule);
  uint32_t index;
  const flow::Rule* rule = table_->Lookup(pkt, in_port, &index);
  if (rule == nullptr) return Drop(DropReason::kNoRule);
  if (HasCount(*rule)) {
    rule_packets_[index].Add();
    rule_bytes_[index].Add(len);
  }
  Verdict v = ApplyActions(m, &pkt, rule->actions.data(), rule->actions.size());
  v.rule_index = index;
  return v;
}

uint64_t SoftwareExecutor::RulePackets(uint32_t index) const {
  return table_ != nullptr && index < table_->rules().size() ? rule_packets_[index].Get() : 0;
}

uint64_t SoftwareExecutor::RuleBytes(uint32_t index) const {
  return table_ != nullptr && index < table_->rules().size() ? rule_bytes_[index].Get() : 0;
}

}  // namespace sluice::sw
