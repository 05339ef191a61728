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
  }
  if (indices_valid) vip.backend_packets[flow->backend_index].Add();
  if (!Encapsulate(m, &pkt, static_cast<flow::Tunnel>(flow->tunnel), flow->host_pa, &reason)) {
    return Drop(reason);
  }
  return Outcome::kTransmit;
}

void MuxDataPath::PrefetchFlow(const rte_mbuf* m) const {
  const uint8_t* frame = rte_pktmbuf_mtod(m, const uint8_t*);
  const uint32_t len = rte_pktmbuf_data_len(m);
  constexpr uint32_t kNeed = packet::kEthHeaderLen + packet::kIpv4HeaderLen + 4;
  if (len < kNeed || frame[12] != 0x08 || frame[13] != 0x00) return;
  const uint8_t* ip = frame + packet::kEthHeaderLen;
  const uint8_t proto = ip[9];
  // No options (IHL 5), not a fragment; TCP or UDP.
  if (ip[0] != 0x45 || (ip[6] & 0x3f) != 0 || ip[7] != 0 ||
      (proto != flow::kProtoTcp && proto != flow::kProtoUdp)) {
    return;
  }
  auto be32 = [](const uint8_t* p) {
    return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
  };
  const uint8_t* l4 = ip + packet::kIpv4HeaderLen;
  flows_.Prefetch(packet::FlowHash(be32(ip + 12), be32(ip + 16), proto,
                                   static_cast<uint16_t>(l4[0] << 8 | l4[1]),
                                   static_cast<uint16_t>(l4[2] << 8 | l4[3])));
}

void MuxDataPath::ProcessBurst(rte_mbuf* const* pkts, uint16_t n, uint64_t now_ns,
                               Outcome* outcomes) {
  // Far enough ahead that a bucket arrives before its packet's turn, near enough that the
  // buckets in flight stay within what the core can track (4 lines each).
  constexpr uint16_t kAhead = 4;
  for (uint16_t i = 0; i < n && i < kAhead; ++i) PrefetchFlow(pkts[i]);
  for (uint16_t i = 0; i < n; ++i) {
    if (i + kAhead < n) PrefetchFlow(pkts[i + kAhead]);
    outcomes[i] = Process(pkts[i], now_ns);
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
