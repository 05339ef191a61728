#include "offload/rte_flow/translate.h"

#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_gre.h>
#include <rte_ip.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "offload/packet/parse.h"

namespace sluice::nic {

using flow::ActionType;
using flow::Tunnel;

// Appends items, actions and raw headers to a FlowSpec, noting when capacity runs out.
class SpecBuilder {
 public:
  using ItemConf = FlowSpec::ItemConf;
  using ActionConf = FlowSpec::ActionConf;
  using RawHeader = FlowSpec::RawHeader;

  explicit SpecBuilder(FlowSpec* spec) : s_(spec) {}

  rte_flow_attr& attr() { return s_->attr_; }
  void set_port(uint16_t port) { s_->port_id_ = port; }
  void set_rule_id(uint64_t id) { s_->rule_id_ = id; }
  bool overflow() const { return overflow_; }

  // Adds an item whose spec and mask start zeroed; both are attached only if the mask ends
  // up non-zero (Seal), so an item without constraints is a bare "any".
  bool AddItem(rte_flow_item_type type, ItemConf** spec, ItemConf** mask) {
    if (s_->num_items_ == kMaxPatternItems) {
      overflow_ = true;
      return false;
    }
    size_t i = s_->num_items_++;
    memset(&s_->item_specs_[i], 0, sizeof(ItemConf));
    memset(&s_->item_masks_[i], 0, sizeof(ItemConf));
    s_->items_[i] = rte_flow_item{.type = type, .spec = nullptr, .last = nullptr, .mask = nullptr};
    *spec = &s_->item_specs_[i];
    *mask = &s_->item_masks_[i];
    return true;
  }

  ActionConf* AddAction(rte_flow_action_type type, bool with_conf) {
    if (s_->num_actions_ == kMaxFlowActions) {
      overflow_ = true;
      return nullptr;
    }
    size_t i = s_->num_actions_++;
    memset(&s_->action_confs_[i], 0, sizeof(ActionConf));
    s_->actions_[i] =
        rte_flow_action{.type = type, .conf = with_conf ? &s_->action_confs_[i] : nullptr};
    return &s_->action_confs_[i];
  }

  RawHeader* AddRaw() {
    if (s_->num_raw_ == kMaxRawHeaders) {
      overflow_ = true;
      return nullptr;
    }
    RawHeader* raw = &s_->raw_[s_->num_raw_++];
    raw->bytes.fill(0);
    raw->size = 0;
    return raw;
  }

  // Attaches spec/mask to items with a non-zero mask, and terminates both lists.
  void Seal() {
    for (size_t i = 0; i < s_->num_items_; ++i) {
      const auto* m = reinterpret_cast<const uint8_t*>(&s_->item_masks_[i]);
      if (std::any_of(m, m + sizeof(ItemConf), [](uint8_t b) { return b != 0; })) {
        s_->items_[i].spec = &s_->item_specs_[i];
        s_->items_[i].mask = &s_->item_masks_[i];
      }
    }
    s_->items_[s_->num_items_] = rte_flow_item{.type = RTE_FLOW_ITEM_TYPE_END};
    s_->actions_[s_->num_actions_] = rte_flow_action{.type = RTE_FLOW_ACTION_TYPE_END};
  }

 private:
  FlowSpec* s_;
  bool overflow_ = false;
};

namespace {

constexpr size_t kEthLen = sizeof(rte_ether_hdr);
constexpr size_t kIpv4Len = sizeof(rte_ipv4_hdr);
constexpr size_t kUdpLen = sizeof(rte_udp_hdr);
constexpr size_t kGreLen = packet::kGreHeaderLen;  // RFC 2784 base header: no options
// GRE c_rsvd0_ver bits a Sluice GRE packet has clear: checksum, key and sequence present
// (0xb000) and the version (0x0007). A packet with any of them set is not ours to decap in
// the NIC (the software parser refuses it too), so the match requires them clear.
constexpr uint16_t kGreFlagsVersionMask = 0xb007;
constexpr uint16_t kIpv4DontFragment = 0x4000;

// Size of the ItemConf member that belongs to `type` (for shape keys).
size_t ItemConfSize(rte_flow_item_type type) {
  switch (type) {
    case RTE_FLOW_ITEM_TYPE_ETH:
      return sizeof(rte_flow_item_eth);
    case RTE_FLOW_ITEM_TYPE_IPV4:
      return sizeof(rte_flow_item_ipv4);
    case RTE_FLOW_ITEM_TYPE_TCP:
      return sizeof(rte_flow_item_tcp);
    case RTE_FLOW_ITEM_TYPE_UDP:
      return sizeof(rte_flow_item_udp);
    case RTE_FLOW_ITEM_TYPE_GRE:
      return sizeof(rte_flow_item_gre);
    case RTE_FLOW_ITEM_TYPE_REPRESENTED_PORT:
      return sizeof(rte_flow_item_ethdev);
    default:
      return 0;
  }
}

uint32_t RtePriority(uint32_t ir_priority, uint32_t levels) {
  if (levels == 0) return 0;
  return levels - 1 - std::min(ir_priority, levels - 1);
}

// The 5-tuple as far as the rule pins it down; rewrites make fields known.
struct KnownTuple {
  uint32_t src = 0, dst = 0;
  uint16_t src_port = 0, dst_port = 0;
  uint8_t proto = 0;
  bool has_src = false, has_dst = false, has_src_port = false, has_dst_port = false;
  bool Complete() const {
    return has_src && has_dst && has_src_port && has_dst_port &&
           (proto == flow::kProtoTcp || proto == flow::kProtoUdp);
  }
};

void WriteEth(uint8_t* p, const flow::MacAddr& src, const flow::MacAddr& dst) {
  auto* eth = reinterpret_cast<rte_ether_hdr*>(p);
  memcpy(eth->dst_addr.addr_bytes, dst.data(), RTE_ETHER_ADDR_LEN);
  memcpy(eth->src_addr.addr_bytes, src.data(), RTE_ETHER_ADDR_LEN);
  eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
}

void WriteIpv4(uint8_t* p, uint32_t src, uint32_t dst, uint8_t proto, uint8_t ttl) {
  auto* ip = reinterpret_cast<rte_ipv4_hdr*>(p);
  ip->version_ihl = RTE_IPV4_VHL_DEF;
  ip->fragment_offset = rte_cpu_to_be_16(kIpv4DontFragment);
  ip->time_to_live = ttl;
  ip->next_proto_id = proto;
  ip->src_addr = rte_cpu_to_be_32(src);
  ip->dst_addr = rte_cpu_to_be_32(dst);
}

void WriteUdp(uint8_t* p, uint16_t src_port, uint16_t dst_port) {
  auto* udp = reinterpret_cast<rte_udp_hdr*>(p);
  udp->src_port = rte_cpu_to_be_16(src_port);
  udp->dst_port = rte_cpu_to_be_16(dst_port);
}

// The 4-byte GRE header Sluice sends and decaps: no flags, version 0, carrying IPv4.
void WriteGre(uint8_t* p) {
  memset(p, 0, kGreLen);
  reinterpret_cast<rte_gre_hdr*>(p)->proto = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
}

class RuleTranslator {
 public:
  RuleTranslator(const flow::Rule& rule, const TranslateOptions& options, FlowSpec* out)
      : rule_(rule), options_(options), b_(out) {}

  std::string Run() {
    const flow::Match& m = rule_.match;
    const bool partial = options_.mode == OffloadMode::kPartial;
    rte_flow_attr& attr = b_.attr();
    attr.priority = RtePriority(rule_.priority, options_.priority_levels);
    b_.set_rule_id(rule_.id);
    if (partial || !options_.transfer) {
      attr.ingress = 1;
      b_.set_port(m.in_port.value_or(options_.port_id));
    } else {
      attr.transfer = 1;
      b_.set_port(options_.port_id);
    }
    if (!partial) attr.group = options_.group;

    std::string error = BuildPattern(/*match_in_port=*/!partial && options_.transfer);
    if (error.empty()) error = partial ? BuildPartialActions() : BuildActions();
    if (error.empty() && b_.overflow()) {
      error = "needs more than " + std::to_string(kMaxPatternItems) + " pattern items, " +
              std::to_string(kMaxFlowActions) + " actions or " + std::to_string(kMaxRawHeaders) +
              " raw headers";
    }
    b_.Seal();
    return error;
  }

 private:
  std::string BuildPattern(bool match_in_port) {
    const flow::Match& m = rule_.match;
    SpecBuilder::ItemConf* spec;
    SpecBuilder::ItemConf* mask;
    if (match_in_port && m.in_port) {
      if (!b_.AddItem(RTE_FLOW_ITEM_TYPE_REPRESENTED_PORT, &spec, &mask)) return "";
      spec->ethdev.port_id = *m.in_port;
      mask->ethdev.port_id = 0xffff;
    }
    if (!b_.AddItem(RTE_FLOW_ITEM_TYPE_ETH, &spec, &mask)) return "";
    spec->eth.hdr.ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
    mask->eth.hdr.ether_type = 0xffff;

    const bool has_ports = m.src_port.mask != 0 || m.dst_port.mask != 0;
    if (has_ports && m.proto != flow::kProtoTcp && m.proto != flow::kProtoUdp) {
      return "matches an L4 port without proto tcp or udp; the NIC needs the L4 header type";
    }
    switch (m.tunnel) {
      case Tunnel::kNone:
        if (m.outer_src.mask != 0 || m.outer_dst.mask != 0) {
          return "matches outer addresses without a tunnel; set tunnel to ipip or gue";
        }
        break;
      case Tunnel::kIpip:
        AddIpv4(m.outer_src, m.outer_dst, flow::kProtoIpip);
        break;
      case Tunnel::kGue:
        AddIpv4(m.outer_src, m.outer_dst, flow::kProtoUdp);
        AddL4(flow::kProtoUdp, flow::PortMatch{}, flow::PortMatch::Exact(options_.gue_port));
        break;
      case Tunnel::kGre:
        AddIpv4(m.outer_src, m.outer_dst, flow::kProtoGre);
        AddGre();
        break;
    }
    AddIpv4(m.src, m.dst, m.proto);
    if (m.tcp_flags_mask != 0 && m.proto != flow::kProtoTcp) {
      return "matches TCP flags without proto tcp";
    }
    if (m.proto == flow::kProtoTcp || m.proto == flow::kProtoUdp) {
      AddL4(m.proto, m.src_port, m.dst_port, m.tcp_flags, m.tcp_flags_mask);
    }
    return "";
  }

  void AddIpv4(const flow::Ipv4Match& src, const flow::Ipv4Match& dst, uint8_t proto) {
    SpecBuilder::ItemConf* spec;
    SpecBuilder::ItemConf* mask;
    if (!b_.AddItem(RTE_FLOW_ITEM_TYPE_IPV4, &spec, &mask)) return;
    spec->ipv4.hdr.src_addr = rte_cpu_to_be_32(src.addr & src.mask);
    mask->ipv4.hdr.src_addr = rte_cpu_to_be_32(src.mask);
    spec->ipv4.hdr.dst_addr = rte_cpu_to_be_32(dst.addr & dst.mask);
    mask->ipv4.hdr.dst_addr = rte_cpu_to_be_32(dst.mask);
    if (proto != 0) {
      spec->ipv4.hdr.next_proto_id = proto;
      mask->ipv4.hdr.next_proto_id = 0xff;
    }
  }

  // GRE carrying IPv4, with no checksum, key or sequence number and version 0.
  void AddGre() {
    SpecBuilder::ItemConf* spec;
    SpecBuilder::ItemConf* mask;
    if (!b_.AddItem(RTE_FLOW_ITEM_TYPE_GRE, &spec, &mask)) return;
    spec->gre.c_rsvd0_ver = 0;
    mask->gre.c_rsvd0_ver = rte_cpu_to_be_16(kGreFlagsVersionMask);
    spec->gre.protocol = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
    mask->gre.protocol = 0xffff;
  }

  void AddL4(uint8_t proto, const flow::PortMatch& src, const flow::PortMatch& dst,
             uint8_t tcp_flags = 0, uint8_t tcp_flags_mask = 0) {
    SpecBuilder::ItemConf* spec;
    SpecBuilder::ItemConf* mask;
    const bool tcp = proto == flow::kProtoTcp;
    if (!b_.AddItem(tcp ? RTE_FLOW_ITEM_TYPE_TCP : RTE_FLOW_ITEM_TYPE_UDP, &spec, &mask)) return;
    const uint16_t sp = rte_cpu_to_be_16(src.port & src.mask);
    const uint16_t sm = rte_cpu_to_be_16(src.mask);
    const uint16_t dp = rte_cpu_to_be_16(dst.port & dst.mask);
    const uint16_t dm = rte_cpu_to_be_16(dst.mask);
    if (tcp) {
      spec->tcp.hdr.src_port = sp;
      mask->tcp.hdr.src_port = sm;
      spec->tcp.hdr.dst_port = dp;
      mask->tcp.hdr.dst_port = dm;
      spec->tcp.hdr.tcp_flags = tcp_flags & tcp_flags_mask;
      mask->tcp.hdr.tcp_flags = tcp_flags_mask;
    } else {
      spec->udp.hdr.src_port = sp;
      mask->udp.hdr.src_port = sm;
      spec->udp.hdr.dst_port = dp;
      mask->udp.hdr.dst_port = dm;
    }
  }

  std::string BuildPartialActions() {
    SpecBuilder::ActionConf* c = b_.AddAction(RTE_FLOW_ACTION_TYPE_MARK, true);
    if (c != nullptr) c->mark.id = options_.mark_id;
    c = b_.AddAction(RTE_FLOW_ACTION_TYPE_QUEUE, true);
    if (c != nullptr) c->queue.index = options_.queue;
    return "";
  }

  std::string Where(size_t i) const {
    return "action " + std::to_string(i + 1) + " (" + flow::ToString(rule_.actions[i]) + ")";
  }

  std::string BuildActions() {
    const flow::Match& m = rule_.match;
    const std::vector<flow::Action>& actions = rule_.actions;
    const flow::Action* last_mac = nullptr;
    bool has_tunnel_action = false;
    for (const flow::Action& a : actions) {
      if (a.type == ActionType::kSetMac) last_mac = &a;
      if (a.type == ActionType::kDecap || a.type == ActionType::kEncap) has_tunnel_action = true;
    }
    if (has_tunnel_action && last_mac == nullptr) {
      return "decap/encap without a set_mac: RAW_ENCAP must write the Ethernet header, and the "
             "packet's own addresses are unknown to the NIC; add a set_mac";
    }

    KnownTuple tuple;
    tuple.has_src = m.src.mask == 0xffffffffu;
    tuple.src = m.src.addr;
    tuple.has_dst = m.dst.mask == 0xffffffffu;
    tuple.dst = m.dst.addr;
    tuple.has_src_port = m.src_port.mask == 0xffff;
    tuple.src_port = m.src_port.port;
    tuple.has_dst_port = m.dst_port.mask == 0xffff;
    tuple.dst_port = m.dst_port.port;
    tuple.proto = m.proto;
    bool tunnelled = m.tunnel != Tunnel::kNone;

    for (size_t i = 0; i < actions.size(); ++i) {
      const flow::Action& a = actions[i];
      SpecBuilder::ActionConf* c = nullptr;
      const bool rewrites_inner = a.type == ActionType::kSetIpv4Src ||
                                  a.type == ActionType::kSetIpv4Dst ||
                                  a.type == ActionType::kSetL4Src ||
                                  a.type == ActionType::kSetL4Dst || a.type == ActionType::kDecTtl;
      if (rewrites_inner && tunnelled) {
        return Where(i) +
               " rewrites the inner header of a tunnelled packet; the NIC would "
               "rewrite the outer one (move it after the decap or before the encap)";
      }
      switch (a.type) {
        case ActionType::kDecap: {
          SpecBuilder::RawHeader* decap = b_.AddRaw();
          SpecBuilder::RawHeader* encap = b_.AddRaw();
          if (decap == nullptr || encap == nullptr) break;
          WriteEth(decap->bytes.data(), flow::MacAddr{}, flow::MacAddr{});
          WriteIpv4(decap->bytes.data() + kEthLen, 0, 0, flow::OuterProtocol(m.tunnel), 0);
          reinterpret_cast<rte_ipv4_hdr*>(decap->bytes.data() + kEthLen)->fragment_offset = 0;
          decap->size = kEthLen + kIpv4Len;
          if (m.tunnel == Tunnel::kGue) {
            WriteUdp(decap->bytes.data() + decap->size, 0, options_.gue_port);
            decap->size += kUdpLen;
          } else if (m.tunnel == Tunnel::kGre) {
            WriteGre(decap->bytes.data() + decap->size);
            decap->size += kGreLen;
          }
          WriteEth(encap->bytes.data(), last_mac->mac_src, last_mac->mac_dst);
          encap->size = kEthLen;
          AddRawActions(*decap, *encap);
          tunnelled = false;
          break;
        }
        case ActionType::kEncap: {
          const flow::EncapParams& p = a.encap;
          if (p.type == Tunnel::kNone) return Where(i) + " has no tunnel type";
          const bool gue = p.type == Tunnel::kGue;
          uint16_t sport = p.gue_src_port;
          if (gue && sport == 0) {
            if (!tuple.Complete()) {
              return Where(i) +
                     " takes the GUE source port from the flow hash, which the "
                     "NIC cannot compute; it needs an exact tcp/udp 5-tuple match "
                     "or a fixed gue_src_port";
            }
            sport = packet::GueSourcePort(packet::FlowHash(tuple.src, tuple.dst, tuple.proto,
                                                           tuple.src_port, tuple.dst_port));
          }
          SpecBuilder::RawHeader* decap = b_.AddRaw();
          SpecBuilder::RawHeader* encap = b_.AddRaw();
          if (decap == nullptr || encap == nullptr) break;
          WriteEth(decap->bytes.data(), flow::MacAddr{}, flow::MacAddr{});
          decap->size = kEthLen;
          WriteEth(encap->bytes.data(), last_mac->mac_src, last_mac->mac_dst);
          WriteIpv4(encap->bytes.data() + kEthLen, p.outer_src, p.outer_dst, flow::OuterProtocol(p.type),
                    p.ttl);
          encap->size = kEthLen + kIpv4Len;
          if (gue) {
            WriteUdp(encap->bytes.data() + encap->size, sport, p.gue_dst_port);
            encap->size += kUdpLen;
          } else if (p.type == Tunnel::kGre) {
            WriteGre(encap->bytes.data() + encap->size);
            encap->size += kGreLen;
          }
          AddRawActions(*decap, *encap);
          tunnelled = true;
          break;
        }
        case ActionType::kSetIpv4Src:
        case ActionType::kSetIpv4Dst: {
          const bool src = a.type == ActionType::kSetIpv4Src;
          c = b_.AddAction(
              src ? RTE_FLOW_ACTION_TYPE_SET_IPV4_SRC : RTE_FLOW_ACTION_TYPE_SET_IPV4_DST, true);
          if (c != nullptr) c->set_ipv4.ipv4_addr = rte_cpu_to_be_32(a.ipv4);
          (src ? tuple.has_src : tuple.has_dst) = true;
          (src ? tuple.src : tuple.dst) = a.ipv4;
          break;
        }
        case ActionType::kSetL4Src:
        case ActionType::kSetL4Dst: {
          const bool src = a.type == ActionType::kSetL4Src;
          c = b_.AddAction(src ? RTE_FLOW_ACTION_TYPE_SET_TP_SRC : RTE_FLOW_ACTION_TYPE_SET_TP_DST,
                           true);
          if (c != nullptr) c->set_tp.port = rte_cpu_to_be_16(a.l4_port);
          (src ? tuple.has_src_port : tuple.has_dst_port) = true;
          (src ? tuple.src_port : tuple.dst_port) = a.l4_port;
          break;
        }
        case ActionType::kSetMac:
          if (has_tunnel_action) break;  // written by the tunnel action's RAW_ENCAP
          c = b_.AddAction(RTE_FLOW_ACTION_TYPE_SET_MAC_SRC, true);
          if (c != nullptr) memcpy(c->set_mac.mac_addr, a.mac_src.data(), RTE_ETHER_ADDR_LEN);
          c = b_.AddAction(RTE_FLOW_ACTION_TYPE_SET_MAC_DST, true);
          if (c != nullptr) memcpy(c->set_mac.mac_addr, a.mac_dst.data(), RTE_ETHER_ADDR_LEN);
          break;
        case ActionType::kDecTtl:
          b_.AddAction(RTE_FLOW_ACTION_TYPE_DEC_TTL, false);
          break;
        case ActionType::kCount:
          b_.AddAction(RTE_FLOW_ACTION_TYPE_COUNT, true);  // id 0: a counter of its own
          break;
        case ActionType::kAge:
          if (a.age_seconds == 0 || a.age_seconds > 0xffffffu) {
            return Where(i) + ": the NIC's AGE timeout must be 1..16777215 s";
          }
          c = b_.AddAction(RTE_FLOW_ACTION_TYPE_AGE, true);
          if (c != nullptr) {
            c->age.timeout = a.age_seconds;
            c->age.context = options_.age_context;
          }
          break;
        case ActionType::kOutput:
          if (options_.transfer) {
            c = b_.AddAction(RTE_FLOW_ACTION_TYPE_REPRESENTED_PORT, true);
            if (c != nullptr) c->ethdev.port_id = a.out_port;
          } else {
            c = b_.AddAction(RTE_FLOW_ACTION_TYPE_PORT_ID, true);
            if (c != nullptr) c->port.id = a.out_port;
          }
          break;
        case ActionType::kDrop:
          b_.AddAction(RTE_FLOW_ACTION_TYPE_DROP, false);
          break;
        case ActionType::kToSoftware: {
          // The packet reaches the application as it came in (the miss path): on the
          // e-switch through the ethdev that represents its in_port, otherwise on the Rx
          // queue. Software then runs it through its own tables, so nothing may have
          // changed it on the way.
          for (size_t j = 0; j < i; ++j) {
            if (actions[j].type != ActionType::kCount && actions[j].type != ActionType::kAge) {
              return Where(i) + " follows " + Where(j) +
                     "; the NIC can hand software only the packet as it arrived (put "
                     "to_software after count/age only)";
            }
          }
          if (options_.transfer) {
            c = b_.AddAction(RTE_FLOW_ACTION_TYPE_PORT_REPRESENTOR, true);
            if (c != nullptr) c->ethdev.port_id = m.in_port.value_or(options_.port_id);
          } else {
            c = b_.AddAction(RTE_FLOW_ACTION_TYPE_QUEUE, true);
            if (c != nullptr) c->queue.index = options_.queue;
          }
          break;
        }
      }
    }
    return "";
  }

  void AddRawActions(const SpecBuilder::RawHeader& decap, const SpecBuilder::RawHeader& encap) {
    SpecBuilder::ActionConf* c = b_.AddAction(RTE_FLOW_ACTION_TYPE_RAW_DECAP, true);
    if (c != nullptr) {
      c->raw_decap.data = const_cast<uint8_t*>(decap.bytes.data());
      c->raw_decap.size = decap.size;
    }
    c = b_.AddAction(RTE_FLOW_ACTION_TYPE_RAW_ENCAP, true);
    if (c != nullptr) {
      c->raw_encap.data = const_cast<uint8_t*>(encap.bytes.data());
      c->raw_encap.preserve = nullptr;
      c->raw_encap.size = encap.size;
    }
  }

  const flow::Rule& rule_;
  const TranslateOptions& options_;
  SpecBuilder b_;
};

// --- testpmd text -------------------------------------------------------------------------

std::string Ip(rte_be32_t be) { return flow::FormatIpv4(rte_be_to_cpu_32(be)); }

std::string MacText(const uint8_t* bytes) {
  flow::MacAddr mac;
  memcpy(mac.data(), bytes, mac.size());
  return flow::FormatMac(mac);
}

std::string Hex(uint32_t v) {
  char buf[16];
  snprintf(buf, sizeof(buf), "0x%x", v);
  return buf;
}

// " <name> is <value>" for a full mask, " <name> spec <v> <name> mask <m>" for a partial one,
// nothing for an empty one.
template <typename Format, typename MaskFormat>
void Field(std::string* s, const char* name, uint32_t spec, uint32_t mask, uint32_t full,
           Format format, MaskFormat mask_format) {
  if (mask == 0) return;
  if (mask == full) {
    *s += std::string(" ") + name + " is " + format(spec);
  } else {
    *s += std::string(" ") + name + " spec " + format(spec) + " " + name + " mask " +
          mask_format(mask);
  }
}

std::string Ipv4Text(uint32_t host_order) { return flow::FormatIpv4(host_order); }
std::string DecText(uint32_t v) { return std::to_string(v); }

std::string ItemText(const rte_flow_item& item) {
  std::string s;
  switch (item.type) {
    case RTE_FLOW_ITEM_TYPE_ETH: {
      s = "eth";
      if (item.mask == nullptr) return s;
      const auto* sp = static_cast<const rte_flow_item_eth*>(item.spec);
      const auto* mk = static_cast<const rte_flow_item_eth*>(item.mask);
      static constexpr uint8_t kNoMac[RTE_ETHER_ADDR_LEN] = {};
      if (memcmp(mk->hdr.dst_addr.addr_bytes, kNoMac, RTE_ETHER_ADDR_LEN) != 0) {
        s += " dst spec " + MacText(sp->hdr.dst_addr.addr_bytes) + " dst mask " +
             MacText(mk->hdr.dst_addr.addr_bytes);
      }
      if (memcmp(mk->hdr.src_addr.addr_bytes, kNoMac, RTE_ETHER_ADDR_LEN) != 0) {
        s += " src spec " + MacText(sp->hdr.src_addr.addr_bytes) + " src mask " +
             MacText(mk->hdr.src_addr.addr_bytes);
      }
      Field(&s, "type", rte_be_to_cpu_16(sp->hdr.ether_type), rte_be_to_cpu_16(mk->hdr.ether_type),
            0xffff, Hex, Hex);
      return s;
    }
    case RTE_FLOW_ITEM_TYPE_IPV4: {
      s = "ipv4";
      if (item.mask == nullptr) return s;
      const auto* sp = static_cast<const rte_flow_item_ipv4*>(item.spec);
      const auto* mk = static_cast<const rte_flow_item_ipv4*>(item.mask);
      Field(&s, "src", rte_be_to_cpu_32(sp->hdr.src_addr), rte_be_to_cpu_32(mk->hdr.src_addr),
            0xffffffffu, Ipv4Text, Ipv4Text);
      Field(&s, "dst", rte_be_to_cpu_32(sp->hdr.dst_addr), rte_be_to_cpu_32(mk->hdr.dst_addr),
            0xffffffffu, Ipv4Text, Ipv4Text);
      Field(&s, "proto", sp->hdr.next_proto_id, mk->hdr.next_proto_id, 0xff, DecText, Hex);
      return s;
    }
    case RTE_FLOW_ITEM_TYPE_TCP:
    case RTE_FLOW_ITEM_TYPE_UDP: {
      const bool tcp = item.type == RTE_FLOW_ITEM_TYPE_TCP;
      s = tcp ? "tcp" : "udp";
      if (item.mask == nullptr) return s;
      rte_be16_t sp_src, sp_dst, mk_src, mk_dst;
      if (tcp) {
        const auto* sp = static_cast<const rte_flow_item_tcp*>(item.spec);
        const auto* mk = static_cast<const rte_flow_item_tcp*>(item.mask);
        sp_src = sp->hdr.src_port, sp_dst = sp->hdr.dst_port;
        mk_src = mk->hdr.src_port, mk_dst = mk->hdr.dst_port;
      } else {
        const auto* sp = static_cast<const rte_flow_item_udp*>(item.spec);
        const auto* mk = static_cast<const rte_flow_item_udp*>(item.mask);
        sp_src = sp->hdr.src_port, sp_dst = sp->hdr.dst_port;
        mk_src = mk->hdr.src_port, mk_dst = mk->hdr.dst_port;
      }
      Field(&s, "src", rte_be_to_cpu_16(sp_src), rte_be_to_cpu_16(mk_src), 0xffff, DecText, Hex);
      Field(&s, "dst", rte_be_to_cpu_16(sp_dst), rte_be_to_cpu_16(mk_dst), 0xffff, DecText, Hex);
      if (tcp) {  // testpmd 22.11 calls hdr.tcp_flags "flags"
        Field(&s, "flags", static_cast<const rte_flow_item_tcp*>(item.spec)->hdr.tcp_flags,
              static_cast<const rte_flow_item_tcp*>(item.mask)->hdr.tcp_flags, 0xff, Hex, Hex);
      }
      return s;
    }
    case RTE_FLOW_ITEM_TYPE_GRE: {
      s = "gre";
      if (item.mask == nullptr) return s;
      const auto* sp = static_cast<const rte_flow_item_gre*>(item.spec);
      const auto* mk = static_cast<const rte_flow_item_gre*>(item.mask);
      Field(&s, "c_rsvd0_ver", rte_be_to_cpu_16(sp->c_rsvd0_ver),
            rte_be_to_cpu_16(mk->c_rsvd0_ver), 0xffff, Hex, Hex);
      Field(&s, "protocol", rte_be_to_cpu_16(sp->protocol), rte_be_to_cpu_16(mk->protocol),
            0xffff, Hex, Hex);
      return s;
    }
    case RTE_FLOW_ITEM_TYPE_REPRESENTED_PORT: {
      s = "represented_port";
      if (item.mask == nullptr) return s;
      const auto* sp = static_cast<const rte_flow_item_ethdev*>(item.spec);
      return s + " ethdev_port_id is " + std::to_string(sp->port_id);
    }
    default:
      return "unknown_item_" + std::to_string(item.type);
  }
}

// A raw header (eth [/ ipv4 [/ udp|gre]]) as testpmd `set raw_*` items.
std::string RawText(const uint8_t* data, size_t size) {
  std::string s;
  if (size < kEthLen) return "end_set";
  const auto* eth = reinterpret_cast<const rte_ether_hdr*>(data);
  static constexpr uint8_t kNoMac[RTE_ETHER_ADDR_LEN] = {};
  s = "eth";
  if (memcmp(eth->src_addr.addr_bytes, kNoMac, RTE_ETHER_ADDR_LEN) != 0) {
    s += " src is " + MacText(eth->src_addr.addr_bytes);
  }
  if (memcmp(eth->dst_addr.addr_bytes, kNoMac, RTE_ETHER_ADDR_LEN) != 0) {
    s += " dst is " + MacText(eth->dst_addr.addr_bytes);
  }
  s += " type is " + Hex(rte_be_to_cpu_16(eth->ether_type));
  if (size >= kEthLen + kIpv4Len) {
    const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(data + kEthLen);
    s += " / ipv4 version_ihl is " + Hex(ip->version_ihl);
    if (ip->src_addr != 0) s += " src is " + Ip(ip->src_addr);
    if (ip->dst_addr != 0) s += " dst is " + Ip(ip->dst_addr);
    s += " proto is " + std::to_string(ip->next_proto_id);
    if (ip->time_to_live != 0) s += " ttl is " + std::to_string(ip->time_to_live);
    if (ip->fragment_offset != 0) {
      s += " fragment_offset is " + Hex(rte_be_to_cpu_16(ip->fragment_offset));
    }
    if (ip->next_proto_id == flow::kProtoGre && size >= kEthLen + kIpv4Len + kGreLen) {
      const auto* gre = reinterpret_cast<const rte_gre_hdr*>(data + kEthLen + kIpv4Len);
      s += " / gre protocol is " + Hex(rte_be_to_cpu_16(gre->proto));
    } else if (size >= kEthLen + kIpv4Len + kUdpLen) {
      const auto* udp = reinterpret_cast<const rte_udp_hdr*>(data + kEthLen + kIpv4Len);
      s += " / udp";
      if (udp->src_port != 0) s += " src is " + std::to_string(rte_be_to_cpu_16(udp->src_port));
      if (udp->dst_port != 0) s += " dst is " + std::to_string(rte_be_to_cpu_16(udp->dst_port));
    }
  }
  return s + " / end_set";
}

}  // namespace

void FlowSpec::Clear() {
  memset(&attr_, 0, sizeof(attr_));
  for (auto& item : items_) item = rte_flow_item{.type = RTE_FLOW_ITEM_TYPE_END};
  for (auto& action : actions_) action = rte_flow_action{.type = RTE_FLOW_ACTION_TYPE_END};
  num_items_ = 0;
  num_actions_ = 0;
  num_raw_ = 0;
  port_id_ = 0;
  rule_id_ = 0;
}

bool FlowSpec::HasAction(rte_flow_action_type type) const {
  for (size_t i = 0; i < num_actions_; ++i) {
    if (actions_[i].type == type) return true;
  }
  return false;
}

std::string FlowSpec::ToTestpmd() const {
  std::string sets;
  std::string line = "flow create " + std::to_string(port_id_);
  if (attr_.group != 0) line += " group " + std::to_string(attr_.group);
  line += " priority " + std::to_string(attr_.priority);
  if (attr_.ingress) line += " ingress";
  if (attr_.egress) line += " egress";
  if (attr_.transfer) line += " transfer";
  line += " pattern";
  for (size_t i = 0; i < num_items_; ++i) line += " " + ItemText(items_[i]) + " /";
  line += " end actions";
  int decap_index = 0;
  int encap_index = 0;
  for (size_t i = 0; i < num_actions_; ++i) {
    const rte_flow_action& a = actions_[i];
    const ActionConf* c = static_cast<const ActionConf*>(a.conf);
    std::string text;
    switch (a.type) {
      case RTE_FLOW_ACTION_TYPE_RAW_DECAP:
        sets += "set raw_decap " + std::to_string(decap_index) + " " +
                RawText(c->raw_decap.data, c->raw_decap.size) + "\n";
        text = "raw_decap index " + std::to_string(decap_index++);
        break;
      case RTE_FLOW_ACTION_TYPE_RAW_ENCAP:
        sets += "set raw_encap " + std::to_string(encap_index) + " " +
                RawText(c->raw_encap.data, c->raw_encap.size) + "\n";
        text = "raw_encap index " + std::to_string(encap_index++);
        break;
      case RTE_FLOW_ACTION_TYPE_SET_IPV4_SRC:
        text = "set_ipv4_src ipv4_addr " + Ip(c->set_ipv4.ipv4_addr);
        break;
      case RTE_FLOW_ACTION_TYPE_SET_IPV4_DST:
        text = "set_ipv4_dst ipv4_addr " + Ip(c->set_ipv4.ipv4_addr);
        break;
      case RTE_FLOW_ACTION_TYPE_SET_TP_SRC:
        text = "set_tp_src port " + std::to_string(rte_be_to_cpu_16(c->set_tp.port));
        break;
      case RTE_FLOW_ACTION_TYPE_SET_TP_DST:
        text = "set_tp_dst port " + std::to_string(rte_be_to_cpu_16(c->set_tp.port));
        break;
      case RTE_FLOW_ACTION_TYPE_SET_MAC_SRC:
        text = "set_mac_src mac_addr " + MacText(c->set_mac.mac_addr);
        break;
      case RTE_FLOW_ACTION_TYPE_SET_MAC_DST:
        text = "set_mac_dst mac_addr " + MacText(c->set_mac.mac_addr);
        break;
      case RTE_FLOW_ACTION_TYPE_DEC_TTL:
        text = "dec_ttl";
        break;
      case RTE_FLOW_ACTION_TYPE_COUNT:
        text = "count";
        break;
      case RTE_FLOW_ACTION_TYPE_AGE:
        text = "age timeout " + std::to_string(c->age.timeout);
        break;
      case RTE_FLOW_ACTION_TYPE_REPRESENTED_PORT:
        text = "represented_port ethdev_port_id " + std::to_string(c->ethdev.port_id);
        break;
      case RTE_FLOW_ACTION_TYPE_PORT_REPRESENTOR:
        text = "port_representor port_id " + std::to_string(c->ethdev.port_id);
        break;
      case RTE_FLOW_ACTION_TYPE_PORT_ID:
        text = "port_id id " + std::to_string(c->port.id);
        break;
      case RTE_FLOW_ACTION_TYPE_QUEUE:
        text = "queue index " + std::to_string(c->queue.index);
        break;
      case RTE_FLOW_ACTION_TYPE_MARK:
        text = "mark id " + std::to_string(c->mark.id);
        break;
      case RTE_FLOW_ACTION_TYPE_JUMP:
        text = "jump group " + std::to_string(c->jump.group);
        break;
      case RTE_FLOW_ACTION_TYPE_DROP:
        text = "drop";
        break;
      default:
        text = "unknown_action_" + std::to_string(a.type);
        break;
    }
    line += " " + text + " /";
  }
  line += " end\n";
  return sets + line;
}

std::string FlowSpec::ShapeKey() const {
  std::string key;
  key.reserve(256);
  key.push_back(static_cast<char>(attr_.ingress | attr_.egress << 1 | attr_.transfer << 2));
  key.append(reinterpret_cast<const char*>(&attr_.group), sizeof(attr_.group));
  for (size_t i = 0; i < num_items_; ++i) {
    key.push_back('i');
    key.append(reinterpret_cast<const char*>(&items_[i].type), sizeof(items_[i].type));
    if (items_[i].mask != nullptr) {
      key.append(static_cast<const char*>(items_[i].mask), ItemConfSize(items_[i].type));
    }
  }
  for (size_t i = 0; i < num_actions_; ++i) {
    key.push_back('a');
    key.append(reinterpret_cast<const char*>(&actions_[i].type), sizeof(actions_[i].type));
  }
  return key;
}

std::string Translate(const flow::Rule& rule, const TranslateOptions& options, FlowSpec* out) {
  out->Clear();
  return RuleTranslator(rule, options, out).Run();
}

void BuildJump(const TranslateOptions& options, FlowSpec* out) {
  out->Clear();
  SpecBuilder b(out);
  b.set_port(options.port_id);
  if (options.transfer) {
    b.attr().transfer = 1;
  } else {
    b.attr().ingress = 1;
  }
  SpecBuilder::ItemConf* spec;
  SpecBuilder::ItemConf* mask;
  b.AddItem(RTE_FLOW_ITEM_TYPE_ETH, &spec, &mask);
  SpecBuilder::ActionConf* c = b.AddAction(RTE_FLOW_ACTION_TYPE_JUMP, true);
  c->jump.group = options.group;
  b.Seal();
}

std::string TestpmdRules(const std::vector<flow::Rule>& rules, const TranslateOptions& options) {
  std::string out;
  FlowSpec spec;
  if (options.group != 0 && options.mode == OffloadMode::kFull) {
    BuildJump(options, &spec);
    out += "# root: send everything to group " + std::to_string(options.group) + "\n";
    out += spec.ToTestpmd();
  }
  TranslateOptions rule_options = options;
  for (const flow::Rule& rule : rules) {
    out += "# " + flow::ToString(rule) + "\n";
    std::string error = Translate(rule, rule_options, &spec);
    ++rule_options.mark_id;
    if (!error.empty()) {
      out += "# not offloadable: " + error + "\n";
      continue;
    }
    out += spec.ToTestpmd();
  }
  return out;
}

}  // namespace sluice::nic
