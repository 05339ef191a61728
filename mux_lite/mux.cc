#include "mux_lite/mux.h"

#include <algorithm>
#include <cstring>
#include <ctime>

#include <rte_mbuf.h>

#include "offload/packet/fastpath_redirect.h"
#include "offload/sw/executor.h"

namespace sluice::mux {
namespace {

constexpr flow::MacAddr kBroadcast = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
constexpr uint8_t kTcpFin = 0x01;
constexpr uint8_t kTcpSyn = 0x02;
constexpr uint8_t kTcpRst = 0x04;
constexpr uint8_t kTcpAck = 0x10;

}  // namespace

MuxDataPath::MuxDataPath(const MuxConfig& config, uint16_t port_id, const flow::MacAddr& mac,
                         rte_mempool* pool, port::NeighborTable* neighbors)
    : config_(config),
      port_id_(port_id),
      mac_(mac),
      pool_(pool),
      flows_(config.flow_table_size, config.flow_timeouts),
      own_neighbors_(neighbors == nullptr ? std::make_unique<port::NeighborTable>() : nullptr),
      neighbors_(neighbors == nullptr ? *own_neighbors_ : *neighbors),
      arp_(mac, {config.address.addr}, &neighbors_) {}

std::unique_ptr<VipTable> VipTable::Build(const MuxConfig& config, std::string* error) {
  auto table = std::make_unique<VipTable>();
  auto need_next_hop = [&](uint32_t pa) {
    uint32_t hop = config.address.Contains(pa) ? pa : config.gateway;
    if (std::find(table->next_hops.begin(), table->next_hops.end(), hop) ==
        table->next_hops.end()) {
      table->next_hops.push_back(hop);
    }
  };
  for (const VipConfig& vip : config.vips) {
    auto state = std::make_unique<VipState>();
    state->config = vip;
    std::vector<MaglevBackend> backends;
    for (const BackendConfig& b : vip.backends) {
      backends.push_back({.key = flow::FormatIpv4(b.dip), .weight = b.weight});
      need_next_hop(b.host);
    }
    std::string build_error;
    state->has_backends = state->maglev.Build(backends, config.maglev_size, &build_error);
    bool all_weights_zero = std::all_of(vip.backends.begin(), vip.backends.end(),
                                        [](const BackendConfig& b) { return b.weight == 0; });
    if (!state->has_backends && !all_weights_zero) {
      *error = "VIP " + flow::FormatIpv4(vip.vip) + ":" + std::to_string(vip.port) + ": " +
               build_error;
      return nullptr;
    }
    state->wrr_current.assign(vip.backends.size(), 0);
    state->backend_packets = std::make_unique<Counter[]>(vip.backends.size());
    state->backend_flows = std::make_unique<Counter[]>(vip.backends.size());
    table->index[VipKey(vip.vip, vip.port, vip.proto)] = static_cast<uint16_t>(table->vips.size());
    table->vips.push_back(std::move(state));
  }
  table->snat_ranges = config.snat_ranges;
  for (const SnatRangeConfig& range : config.snat_ranges) need_next_hop(range.host);
  return table;
}

const SnatRangeConfig* VipTable::FindSnatRange(uint32_t addr, uint8_t proto,
                                               uint16_t port) const {
  for (const SnatRangeConfig& range : snat_ranges) {
    if (range.Contains(addr, proto, port)) return &range;
  }
  return nullptr;
}

std::unique_ptr<MuxDataPath> MuxDataPath::Create(const MuxConfig& config, uint16_t port_id,
                                                 const flow::MacAddr& mac, rte_mempool* pool,
                                                 std::string* error,
                                                 port::NeighborTable* neighbors) {
  std::unique_ptr<VipTable> table = VipTable::Build(config, error);
  if (table == nullptr) return nullptr;
  std::unique_ptr<MuxDataPath> mux(new MuxDataPath(config, port_id, mac, pool, neighbors));
  table->generation = 1;
  mux->table_.store(table.release());
  mux->acked_generation_.store(1);
  return mux;
}

MuxDataPath::~MuxDataPath() { delete table_.load(); }

bool MuxDataPath::Reload(const MuxConfig& config, std::string* error) {
  const char* changed = nullptr;
  if (config.name != config_.name) changed = "mux.name";
  if (config.port != config_.port) changed = "mux.port";
  if (config.address.addr != config_.address.addr ||
      config.address.length != config_.address.length) {
    changed = "mux.address";
  }
  if (config.gateway != config_.gateway) changed = "mux.gateway";
  if (config.flow_table_size != config_.flow_table_size) changed = "mux.flow_table_size";
  if (config.workers != config_.workers) changed = "mux.workers";
  if (config.gue_port != config_.gue_port) changed = "mux.gue_port";
  if (config.maglev_size != config_.maglev_size) changed = "mux.maglev_size";
  if (config.bgp.enabled != config_.bgp.enabled || config.bgp.peer != config_.bgp.peer ||
      config.bgp.local_as != config_.bgp.local_as || config.bgp.peer_as != config_.bgp.peer_as) {
    changed = "bgp";
  }
  if (changed != nullptr) {
    *error = std::string(changed) + " cannot change while running (restart the mux)";
    return false;
  }
  std::unique_ptr<VipTable> table = VipTable::Build(config, error);
  if (table == nullptr) return false;
  std::lock_guard<std::mutex> lock(control_mu_);
  table->generation = table_.load()->generation + 1;
  retired_.emplace_back(table_.exchange(table.release(), std::memory_order_acq_rel));
  return true;
}

size_t MuxDataPath::ReclaimRetired() {
  std::lock_guard<std::mutex> lock(control_mu_);
  uint64_t acked = acked_generation_.load(std::memory_order_acquire);
  std::erase_if(retired_, [acked](const std::unique_ptr<VipTable>& t) {
    return t->generation < acked;
  });
  return retired_.size();
}

uint32_t MuxDataPath::PickBackend(VipState& vip, const packet::ParsedPacket& pkt,
                                  uint32_t hash) {
  switch (vip.config.scheduler) {
    case Scheduler::kMaglev:
      return vip.maglev.Lookup(hash);
    case Scheduler::kSourceHash:
      return vip.maglev.Lookup(packet::FlowHash(pkt.src, 0, 0, 0, 0));
    case Scheduler::kWeightedRoundRobin: {
      int64_t total = 0;
      uint32_t best = 0;
      for (uint32_t i = 0; i < vip.wrr_current.size(); ++i) {
        int64_t w = vip.config.backends[i].weight;
        vip.wrr_current[i] += w;
        total += w;
        if (vip.wrr_current[i] > vip.wrr_current[best]) best = i;
      }
      vip.wrr_current[best] -= total;
      return best;
    }
  }
  return 0;
}

bool MuxDataPath::Encapsulate(rte_mbuf* m, packet::ParsedPacket* pkt, flow::Tunnel tunnel,
                              uint32_t host, DropReason* reason) {
  flow::MacAddr next_hop_mac;
  if (!neighbors_.Lookup(NextHop(host), &next_hop_mac)) {
    *reason = DropReason::kNeighborUnresolved;
    return false;
  }
  const flow::Action actions[] = {
      flow::Action::Encap({.type = tunnel,
                           .outer_src = config_.address.addr,
                           .outer_dst = host,
                           .gue_dst_port = config_.gue_port}),
      flow::Action::SetMac(mac_, next_hop_mac),
      flow::Action::Output(port_id_),
  };
  sw::Verdict verdict = sw::ApplyActions(m, pkt, actions, std::size(actions));
  *reason = verdict.reason;
  return verdict.kind == sw::Verdict::Kind::kOutput;
}

MuxDataPath::Outcome MuxDataPath::Process(rte_mbuf* m, uint64_t now_ns) {
  counters_.rx_packets.Add();
  if (m->nb_segs != 1) return Drop(DropReason::kMalformed);
  uint8_t* frame = rte_pktmbuf_mtod(m, uint8_t*);
  uint32_t len = rte_pktmbuf_data_len(m);
  if (len < packet::kEthHeaderLen) return Drop(DropReason::kTruncated);
  if (memcmp(frame, mac_.data(), 6) != 0 && memcmp(frame, kBroadcast.data(), 6) != 0) {
    return Drop(DropReason::kNotForUs);
  }
  packet::ParsedPacket pkt;
  DropReason reason = DropReason::kMalformed;
  packet::ParseStatus status = packet::Parse(frame, len, config_.gue_port, &pkt, &reason);
  if (status == packet::ParseStatus::kArp) {
    uint32_t reply_len = 0;
    switch (arp_.Handle(frame, len, now_ns, &reason, &reply_len)) {
      case port::ArpOutcome::kReply:
        m->data_len = static_cast<uint16_t>(reply_len);
        m->pkt_len = reply_len;
        return Outcome::kTransmit;
      case port::ArpOutcome::kConsumed:
        return Outcome::kFree;
      case port::ArpOutcome::kDrop:
        return Drop(reason);
    }
  }
  if (status == packet::ParseStatus::kDrop) return Drop(reason);
  if (pkt.outer_dst == config_.address.addr) {
    counters_.local_packets.Add();
    return Outcome::kFree;
  }
  if (pkt.tunnel != flow::Tunnel::kNone) return Drop(DropReason::kNoRule);
  VipTable& table = *table_.load(std::memory_order_acquire);
  auto it = table.index.find(VipKey(pkt.dst, pkt.dst_port, pkt.proto));
  if (it == table.index.end()) {
    const SnatRangeConfig* range = table.FindSnatRange(pkt.dst, pkt.proto, pkt.dst_port);
    if (range == nullptr) return Drop(DropReason::kNoRule);
    if (!Encapsulate(m, &pkt, range->encap, range->host, &reason)) return Drop(reason);
    counters_.snat_return_packets.Add();
    return Outcome::kTransmit;
  }
  VipState& vip = *table.vips[it->second];
  vip.packets.Add();
  counters_.vip_packets.Add();

  const uint32_t now_s = static_cast<uint32_t>(now_ns / 1'000'000'000) + 1;
  FlowKey key{.src = pkt.src, .dst = pkt.dst, .src_port = pkt.src_port,
              .dst_port = pkt.dst_port, .proto = pkt.proto};
  uint32_t hash = packet::FlowHash(pkt.src, pkt.dst, pkt.proto, pkt.src_port, pkt.dst_port);
  FlowEntry* flow = flows_.Find(key, hash, now_s);
  // A flow created under an older table keeps its host (that is the point of the table);
  // its stats go to the backend at the same position only if that is still the same host.
  bool indices_valid = flow != nullptr && flow->vip_index == it->second &&
                       flow->backend_index < vip.config.backends.size() &&
                       vip.config.backends[flow->backend_index].host == flow->host_pa;
  // A SYN that is not a retransmission of a live connection's SYN (the client reused the
  // 4-tuple of a connection that closed, or whose backend has since been taken out) is a
  // new connection: it gets the current table's decision, like on every other mux, instead
  // of the old connection's backend.
  if (flow != nullptr && pkt.proto == flow::kProtoTcp && (pkt.tcp_flags & kTcpSyn) &&
      !(pkt.tcp_flags & kTcpAck) &&
      ((flow->flags & FlowEntry::kClosing) || !BackendInService(vip, *flow, indices_valid))) {
    counters_.reopened_flows.Add();
    flows_.Erase(flow);
    flow = nullptr;
  }
  if (flow == nullptr) {
    if (!vip.has_backends) return Drop(DropReason::kNoBackend);
    uint32_t index = PickBackend(vip, pkt, hash);
    const BackendConfig& backend = vip.config.backends[index];
    flow = flows_.Insert(key, hash, now_s);
    flow->host_pa = backend.host;
    flow->vip_index = it->second;
    flow->backend_index = static_cast<uint16_t>(index);
    flow->tunnel = static_cast<uint8_t>(backend.encap);
    indices_valid = true;
    counters_.new_flows.Add();
    vip.backend_flows[index].Add();
  } else {
    counters_.cached_flow_packets.Add();
    flow::MacAddr next_hop_mac;
    if (offload_ != nullptr && pkt.proto == flow::kProtoTcp && (pkt.tcp_flags & kTcpAck) &&
        !(pkt.tcp_flags & (kTcpSyn | kTcpRst | kTcpFin)) &&
        !(flow->flags & FlowEntry::kOffloadOffered) &&
        neighbors_.Lookup(NextHop(flow->host_pa), &next_hop_mac)) {
      flow->flags |= FlowEntry::kOffloadOffered;
      offload_->Offer({.key = flow->key,
                       .host_pa = flow->host_pa,
                       .tunnel = static_cast<flow::Tunnel>(flow->tunnel),
                       .next_hop_mac = next_hop_mac});
    }
    // The handshake is done once the client acknowledges without SYN: an intra-cloud flow
    // (its source is a SNAT port range we know) can now go host to host.
    if (config_.fastpath && pkt.proto == flow::kProtoTcp && (pkt.tcp_flags & kTcpAck) &&
        !(pkt.tcp_flags & (kTcpSyn | kTcpRst | kTcpFin)) &&
        !(flow->flags & FlowEntry::kRedirected) && indices_valid) {
      if (const SnatRangeConfig* source = table.FindSnatRange(pkt.src, pkt.proto, pkt.src_port)) {
        flow->flags |= FlowEntry::kRedirected;
        SendFastpathRedirects(table, *flow, *source);
      }
    }
  }
  if (pkt.proto == flow::kProtoTcp && (pkt.tcp_flags & (kTcpFin | kTcpRst))) {
    if (!(flow->flags & FlowEntry::kClosing)) counters_.closing_flows.Add();
    flows_.MarkClosing(flow, now_s);
    // The NIC's close rule handed us this segment: the flow's own NIC rule goes now, so a
    // new connection on the same 4-tuple reaches the scheduler again.
    if (offload_ != nullptr && (flow->flags & FlowEntry::kOffloadOffered)) {
      flow->flags &= static_cast<uint8_t>(~FlowEntry::kOffloadOffered);
      offload_->Offer({.key = flow->key, .withdraw = true});
    }
  }
  if (indices_valid) vip.backend_packets[flow->backend_index].Add();
  if (!Encapsulate(m, &pkt, static_cast<flow::Tunnel>(flow->tunnel), flow->host_pa, &reason)) {
    return Drop(reason);
  }
  return Outcome::kTransmit;
}

namespace {

inline uint16_t Load16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
inline uint32_t Load32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}
inline void Store16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void Store32(uint8_t* p, uint32_t v) {
  Store16(p, static_cast<uint16_t>(v >> 16));
  Store16(p + 2, static_cast<uint16_t>(v));
}

}  // namespace

// Accepts exactly the frames on which Parse returns kIpv4 without a tunnel, with the fields
// below, and Process gets past its frame checks (our MAC, not the mux PA); the rest of the
// TCP/UDP checks are Parse's (packet/parse.cc ParseIpv4 and ParseL4).
bool MuxDataPath::ReadFlowPacket(const rte_mbuf* m, FlowPacket* out) const {
  constexpr uint32_t kL4 = packet::kEthHeaderLen + packet::kIpv4HeaderLen;
  constexpr uint16_t kTcpHeaderLen = 20;
  if (m->nb_segs != 1) return false;
  const uint8_t* frame = rte_pktmbuf_mtod(m, const uint8_t*);
  const uint32_t len = rte_pktmbuf_data_len(m);
  if (len < kL4 + packet::kUdpHeaderLen || memcmp(frame, mac_.data(), 6) != 0 ||
      Load16(frame + 12) != packet::kEtherTypeIpv4) {
    return false;
  }
  const uint8_t* ip = frame + packet::kEthHeaderLen;
  const uint16_t total_len = Load16(ip + 2);
  const uint8_t proto = ip[9];
  // Version 4 without options; no MF flag or fragment offset; the packet inside the frame.
  if (ip[0] != 0x45 || (Load16(ip + 6) & 0x3fff) != 0 ||
      packet::kEthHeaderLen + uint32_t{total_len} > len || total_len < packet::kIpv4HeaderLen) {
    return false;
  }
  const uint8_t* l4 = frame + kL4;
  const uint32_t l4_avail = total_len - packet::kIpv4HeaderLen;
  if (proto == flow::kProtoTcp) {
    if (l4_avail < kTcpHeaderLen) return false;
    const uint32_t header_len = (l4[12] >> 4) * 4u;
    if (header_len < kTcpHeaderLen || l4_avail < header_len) return false;
    out->tcp_flags = l4[13];
  } else if (proto == flow::kProtoUdp) {
    if (l4_avail < packet::kUdpHeaderLen) return false;
    const uint16_t udp_len = Load16(l4 + 4);
    if (udp_len < packet::kUdpHeaderLen || l4_avail < udp_len ||
        Load16(l4 + 2) == config_.gue_port) {
      return false;
    }
    out->tcp_flags = 0;
  } else {
    return false;
  }
  const uint32_t dst = Load32(ip + 16);
  if (dst == config_.address.addr) return false;
  out->key = FlowKey{.src = Load32(ip + 12), .dst = dst, .src_port = Load16(l4),
                     .dst_port = Load16(l4 + 2), .proto = proto};
  out->hash = packet::FlowHash(out->key.src, dst, proto, out->key.src_port, out->key.dst_port);
  out->ip_total_len = total_len;
  return true;
}

MuxDataPath::Outcome MuxDataPath::ForwardFlow(rte_mbuf* m, const FlowPacket& p,
                                              uint64_t now_ns) {
  const FlowKey& key = p.key;
  const bool tcp = key.proto == flow::kProtoTcp;
  if (tcp && (p.tcp_flags & (kTcpSyn | kTcpFin | kTcpRst))) return Process(m, now_ns);
  VipTable& table = *table_.load(std::memory_order_acquire);
  auto it = table.index.find(VipKey(key.dst, key.dst_port, key.proto));
  if (it == table.index.end()) return Process(m, now_ns);
  VipState& vip = *table.vips[it->second];
  const uint32_t now_s = static_cast<uint32_t>(now_ns / 1'000'000'000) + 1;
  // Find only pushes the flow's expiry to now_s + timeout: Process finding it again for a
  // packet handed on below does exactly the same.
  FlowEntry* flow = flows_.Find(key, p.hash, now_s);
  if (flow == nullptr) return Process(m, now_ns);
  const bool indices_valid = flow->vip_index == it->second &&
                             flow->backend_index < vip.config.backends.size() &&
                             vip.config.backends[flow->backend_index].host == flow->host_pa;
  const bool ack = tcp && (p.tcp_flags & kTcpAck);
  if (ack && offload_ != nullptr && !(flow->flags & FlowEntry::kOffloadOffered)) {
    return Process(m, now_ns);
  }
  if (ack && config_.fastpath && !(flow->flags & FlowEntry::kRedirected) && indices_valid &&
      table.FindSnatRange(key.src, key.proto, key.src_port) != nullptr) {
    return Process(m, now_ns);
  }
  const auto tunnel = static_cast<flow::Tunnel>(flow->tunnel);
  const uint16_t outer_len =
      packet::kIpv4HeaderLen + (tunnel == flow::Tunnel::kGue   ? packet::kUdpHeaderLen
                                : tunnel == flow::Tunnel::kGre ? packet::kGreHeaderLen
                                                               : 0);
  flow::MacAddr next_hop_mac;
  if ((tunnel != flow::Tunnel::kIpip && tunnel != flow::Tunnel::kGue &&
       tunnel != flow::Tunnel::kGre) ||
      uint32_t{p.ip_total_len} + outer_len > UINT16_MAX ||
      rte_pktmbuf_headroom(m) < outer_len ||
      !neighbors_.Lookup(NextHop(flow->host_pa), &next_hop_mac)) {
    return Process(m, now_ns);  // drops it, with the reason
  }
  counters_.rx_packets.Add();
  vip.packets.Add();
  counters_.vip_packets.Add();
  counters_.cached_flow_packets.Add();
  if (indices_valid) vip.backend_packets[flow->backend_index].Add();

  // What Encapsulate's IR actions (encap, set MAC, output) do to such a packet: cut any
  // Ethernet padding, prepend the outer header, put the next hop's and our MAC in front.
  const uint32_t inner_end = packet::kEthHeaderLen + uint32_t{p.ip_total_len};
  if (rte_pktmbuf_data_len(m) > inner_end) {
    rte_pktmbuf_trim(m, static_cast<uint16_t>(rte_pktmbuf_data_len(m) - inner_end));
  }
  const uint8_t tos = rte_pktmbuf_mtod(m, const uint8_t*)[packet::kEthHeaderLen + 1];
  auto* front = reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(m, outer_len));
  memcpy(front, next_hop_mac.data(), 6);
  memcpy(front + 6, mac_.data(), 6);
  Store16(front + 12, packet::kEtherTypeIpv4);
  uint8_t* ip = front + packet::kEthHeaderLen;
  const uint16_t total_len = static_cast<uint16_t>(p.ip_total_len + outer_len);
  const uint8_t outer_proto = flow::OuterProtocol(tunnel);
  constexpr uint8_t kTtl = flow::EncapParams{}.ttl;
  constexpr uint16_t kDontFragment = 0x4000;
  const uint32_t src = config_.address.addr;
  const uint32_t dst = flow->host_pa;
  ip[0] = 0x45;
  ip[1] = tos;
  Store16(ip + 2, total_len);
  Store16(ip + 4, 0);
  Store16(ip + 6, kDontFragment);
  ip[8] = kTtl;
  ip[9] = outer_proto;
  Store32(ip + 12, src);
  Store32(ip + 16, dst);
  // The header checksum from its words (one's-complement sums do not depend on byte order).
  uint32_t sum = (0x4500u | tos) + total_len + kDontFragment + (uint32_t{kTtl} << 8 | outer_proto) +
                 (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff);
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  Store16(ip + 10, static_cast<uint16_t>(~sum));
  uint8_t* after = ip + packet::kIpv4HeaderLen;
  if (tunnel == flow::Tunnel::kGue) {
    Store16(after, packet::GueSourcePort(p.hash));
    Store16(after + 2, config_.gue_port);
    Store16(after + 4, static_cast<uint16_t>(p.ip_total_len + packet::kUdpHeaderLen));
    Store16(after + 6, 0);
  } else if (tunnel == flow::Tunnel::kGre) {
    Store16(after, 0);
    Store16(after + 2, packet::kEtherTypeIpv4);
  }
  return Outcome::kTransmit;
}

void MuxDataPath::ProcessBurst(rte_mbuf* const* pkts, uint16_t n, uint64_t now_ns,
                               Outcome* outcomes) {
  // Per batch of up to kBatch packets: read each packet's flow key and hash and start loading
  // its tag line; then handle the packets in order, starting to load the entries the tags of
  // the packet kEntriesAhead places on point to. Tag lines get the whole first pass to
  // arrive, entry lines the handling of the packets before theirs, and the misses of a batch
  // are in flight together instead of one after another.
  constexpr uint16_t kBatch = 32;
  constexpr uint16_t kEntriesAhead = 8;
  FlowPacket flow_packets[kBatch];
  bool is_flow[kBatch];
  for (uint16_t base = 0; base < n; base += kBatch) {
    const uint16_t count = std::min<uint16_t>(kBatch, static_cast<uint16_t>(n - base));
    rte_mbuf* const* batch = pkts + base;
    for (uint16_t i = 0; i < count; ++i) {
      is_flow[i] = ReadFlowPacket(batch[i], &flow_packets[i]);
      if (is_flow[i]) flows_.PrefetchTags(flow_packets[i].hash);
    }
    for (uint16_t i = 0; i < count && i < kEntriesAhead; ++i) {
      if (is_flow[i]) flows_.PrefetchEntries(flow_packets[i].hash);
    }
    for (uint16_t i = 0; i < count; ++i) {
      const uint16_t ahead = static_cast<uint16_t>(i + kEntriesAhead);
      if (ahead < count && is_flow[ahead]) flows_.PrefetchEntries(flow_packets[ahead].hash);
      outcomes[base + i] = is_flow[i] ? ForwardFlow(batch[i], flow_packets[i], now_ns)
                                      : Process(batch[i], now_ns);
    }
  }
}

bool MuxDataPath::BackendInService(const VipState& vip, const FlowEntry& flow,
                                   bool indices_valid) {
  if (indices_valid) return vip.config.backends[flow.backend_index].weight > 0;
  for (const BackendConfig& b : vip.config.backends) {
    if (b.host == flow.host_pa && b.weight > 0) return true;
  }
  return false;
}

void MuxDataPath::SendFastpathRedirects(const VipTable& table, const FlowEntry& flow,
                                        const SnatRangeConfig& source) {
  const VipState& vip = *table.vips[flow.vip_index];
  const BackendConfig& backend = vip.config.backends[flow.backend_index];
  packet::FastpathRedirect redirect{
      .flow_src = flow.key.src,
      .flow_dst = flow.key.dst,
      .flow_src_port = flow.key.src_port,
      .flow_dst_port = flow.key.dst_port,
      .proto = flow.key.proto,
      .dip = backend.dip,
      .dst_pa = flow.host_pa,
      .src_host_pa = source.host,
      .timestamp_s = static_cast<uint64_t>(time(nullptr)),
      .dst_encap = static_cast<flow::Tunnel>(flow.tunnel),
      .src_encap = source.encap,
  };
  for (uint32_t host : {source.host, flow.host_pa}) {
    flow::MacAddr next_hop_mac;
    if (control_tx_count_ == std::size(control_tx_) ||
        !neighbors_.Lookup(NextHop(host), &next_hop_mac)) {
      counters_.drops[static_cast<size_t>(DropReason::kNeighborUnresolved)].Add();
      continue;
    }
    rte_mbuf* m = rte_pktmbuf_alloc(pool_);
    if (m == nullptr) continue;
    uint8_t* frame = reinterpret_cast<uint8_t*>(
        rte_pktmbuf_append(m, static_cast<uint16_t>(packet::kFastpathRedirectFrameLen)));
    packet::BuildFastpathRedirectFrame(frame, mac_, next_hop_mac, config_.address.addr, host,
                                       redirect, config_.fastpath_key);
    control_tx_[control_tx_count_++] = m;
    counters_.fastpath_redirects_sent.Add();
  }
}

uint32_t MuxDataPath::TakeOffloadActivity(uint64_t now_ns, uint32_t max) {
  if (offload_ == nullptr) return 0;
  const uint32_t now_s = static_cast<uint32_t>(now_ns / 1'000'000'000) + 1;  // as Process
  FlowKey key;
  uint32_t n = 0;
  while (n < max && offload_->TakeActive(&key)) {
    ++n;
    // Find pushes the entry's expiry out; a flow already gone (evicted, closed) stays gone.
    if (flows_.Find(key, packet::FlowHash(key.src, key.dst, key.proto, key.src_port,
                                          key.dst_port),
                    now_s) != nullptr) {
      counters_.nic_refreshed_flows.Add();
    }
  }
  return n;
}

uint16_t MuxDataPath::TakeControlPackets(rte_mbuf** out, uint16_t max) {
  uint16_t n = std::min(max, control_tx_count_);
  std::copy_n(control_tx_, n, out);
  std::copy(control_tx_ + n, control_tx_ + control_tx_count_, control_tx_);
  control_tx_count_ = static_cast<uint16_t>(control_tx_count_ - n);
  return n;
}

uint16_t MuxDataPath::ResolveNextHops(uint64_t now_ns, rte_mbuf** out, uint16_t max) {
  uint16_t n = 0;
  for (uint32_t hop : table_.load(std::memory_order_acquire)->next_hops) {
    if (n == max || !neighbors_.ShouldRequest(hop, now_ns)) continue;
    rte_mbuf* m = rte_pktmbuf_alloc(pool_);
    if (m == nullptr) break;
    uint16_t len = arp_.BuildRequest(rte_pktmbuf_mtod(m, uint8_t*), config_.address.addr, hop);
    m->data_len = len;
    m->pkt_len = len;
    out[n++] = m;
    counters_.arp_requests_sent.Add();
  }
  return n;
}

bool MuxDataPath::NextHopsResolved() const {
  flow::MacAddr mac;
  const std::vector<uint32_t>& next_hops = table_.load(std::memory_order_acquire)->next_hops;
  return std::all_of(next_hops.begin(), next_hops.end(),
                     [&](uint32_t hop) { return neighbors_.Lookup(hop, &mac); });
}

}  // namespace sluice::mux
