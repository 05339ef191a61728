#include "mux_lite/mux.h"

#include <algorithm>
#include <cstring>

#include <rte_mbuf.h>

#include "offload/packet/parse.h"
#include "offload/sw/executor.h"

namespace sluice::mux {
namespace {

constexpr flow::MacAddr kBroadcast = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

}  // namespace

MuxDataPath::MuxDataPath(const MuxConfig& config, uint16_t port_id, const flow::MacAddr& mac)
    : config_(config),
      port_id_(port_id),
      mac_(mac),
      flows_(config.flow_table_size, config.flow_idle_timeout_s),
      arp_(mac, {config.address.addr}, &neighbors_) {}

std::unique_ptr<MuxDataPath> MuxDataPath::Create(const MuxConfig& config, uint16_t port_id,
                                                 const flow::MacAddr& mac, std::string* error) {
  std::unique_ptr<MuxDataPath> mux(new MuxDataPath(config, port_id, mac));
  for (const VipConfig& vip : config.vips) {
    auto state = std::make_unique<VipState>();
    state->config = vip;
    std::vector<MaglevBackend> backends;
    for (const BackendConfig& b : vip.backends) {
      backends.push_back({.key = flow::FormatIpv4(b.dip), .weight = b.weight});
      uint32_t hop = mux->NextHop(b.host);
      if (std::find(mux->next_hops_.begin(), mux->next_hops_.end(), hop) ==
          mux->next_hops_.end()) {
        mux->next_hops_.push_back(hop);
      }
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
    state->backend_packets = std::make_unique<Counter[]>(vip.backends.size());
    state->backend_flows = std::make_unique<Counter[]>(vip.backends.size());
    mux->vip_index_[VipKey(vip.vip, vip.port, vip.proto)] =
        static_cast<uint16_t>(mux->vips_.size());
    mux->vips_.push_back(std::move(state));
  }
  return mux;
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
  packet::ParseStatus status = packet::Parse(frame, len, flow::kDefaultGuePort, &pkt, &reason);
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
  if (pkt.tunnel != flow::Tunnel::kNone) return Drop(DropReason::kNoRule);
  auto it = vip_index_.find(VipKey(pkt.dst, pkt.dst_port, pkt.proto));
  if (it == vip_index_.end()) return Drop(DropReason::kNoRule);
  VipState& vip = *vips_[it->second];
  vip.packets.Add();
  counters_.vip_packets.Add();

  const uint32_t now_s = static_cast<uint32_t>(now_ns / 1'000'000'000) + 1;
  FlowKey key{.src = pkt.src, .dst = pkt.dst, .src_port = pkt.src_port,
              .dst_port = pkt.dst_port, .proto = pkt.proto};
  uint32_t hash = packet::FlowHash(pkt.src, pkt.dst, pkt.proto, pkt.src_port, pkt.dst_port);
  FlowEntry* flow = flows_.Find(key, hash, now_s);
  if (flow == nullptr) {
    if (!vip.has_backends) return Drop(DropReason::kNoBackend);
    uint32_t index = vip.maglev.Lookup(hash);
    const BackendConfig& backend = vip.config.backends[index];
    flow = flows_.Insert(key, hash, now_s);
    flow->host_pa = backend.host;
    flow->dip = backend.dip;
    flow->vip_index = it->second;
    flow->backend_index = static_cast<uint16_t>(index);
    counters_.new_flows.Add();
    vip.backend_flows[index].Add();
  } else {
    counters_.cached_flow_packets.Add();
  }
  vip.backend_packets[flow->backend_index].Add();

  flow::MacAddr next_hop_mac;
  if (!neighbors_.Lookup(NextHop(flow->host_pa), &next_hop_mac)) {
    return Drop(DropReason::kNeighborUnresolved);
  }
  const flow::Action actions[] = {
      flow::Action::Encap({.type = flow::Tunnel::kIpip,
                           .outer_src = config_.address.addr,
                           .outer_dst = flow->host_pa}),
      flow::Action::SetMac(mac_, next_hop_mac),
      flow::Action::Output(port_id_),
  };
  sw::Verdict verdict = sw::ApplyActions(m, &pkt, actions, std::size(actions));
  if (verdict.kind != sw::Verdict::Kind::kOutput) return Drop(verdict.reason);
  return Outcome::kTransmit;
}

uint16_t MuxDataPath::ResolveNextHops(rte_mempool* pool, uint64_t now_ns, rte_mbuf** out,
                                      uint16_t max) {
  uint16_t n = 0;
  for (uint32_t hop : next_hops_) {
    if (n == max || !neighbors_.ShouldRequest(hop, now_ns)) continue;
    rte_mbuf* m = rte_pktmbuf_alloc(pool);
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
  return std::all_of(next_hops_.begin(), next_hops_.end(),
                     [&](uint32_t hop) { return neighbors_.Lookup(hop, &mac); });
}

}  // namespace sluice::mux
