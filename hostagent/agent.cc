#include "hostagent/agent.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <tuple>

#include <rte_mbuf.h>

#include "hostagent/reject.h"
#include "offload/packet/fastpath_redirect.h"

namespace sluice::agent {
namespace {

constexpr flow::MacAddr kBroadcast = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
constexpr uint8_t kTcpFin = 0x01;
constexpr uint8_t kTcpSyn = 0x02;
constexpr uint8_t kTcpRst = 0x04;
constexpr uint8_t kTcpAck = 0x10;
constexpr uint64_t kNsPerS = 1'000'000'000;

bool IsTcpOrUdp(uint8_t proto) { return proto == flow::kProtoTcp || proto == flow::kProtoUdp; }

}  // namespace

uint64_t SystemWallClock::UnixSeconds() const {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec);
}

AgentDataPath::AgentDataPath(AgentConfig config, const PortMap& ports,
                             std::unique_ptr<NatFlowTable> flows, const WallClock* clock)
    : config_(std::move(config)),
      port_map_(ports),
      flows_(flows != nullptr ? std::move(flows)
                              : NatFlowTable::CreateAnonymous(config_.nat.flow_capacity)),
      snat_ports_(config_),
      clock_(clock != nullptr ? clock : &system_clock_) {
  index_of_port_.fill(-1);
  std::vector<uint32_t> uplink_addresses = {config_.address.addr};
  for (const VmConfig& vm : config_.vms) uplink_addresses.push_back(vm.pa);
  ports_.push_back(std::make_unique<AgentPort>(ports.uplink_port, ports.uplink_mac, -1,
                                               uplink_addresses));
  for (size_t v = 0; v < config_.vms.size(); ++v) {
    auto port = std::make_unique<AgentPort>(ports.vm_ports[v], ports.vm_port_macs[v],
                                            static_cast<int>(v),
                                            std::vector<uint32_t>{config_.vms[v].gateway});
    port->neighbors.Learn(config_.vms[v].dip, config_.vms[v].mac, 0);
    ports_.push_back(std::move(port));
  }
  for (size_t i = 0; i < ports_.size(); ++i) {
    index_of_port_[ports_[i]->port_id & 0xff] = static_cast<int16_t>(i);
  }
  endpoints_ = BuildLocalEndpoints(config_);
  published_config_ = config_;
  published_ports_ = ports;
  current_snapshot_ = std::make_unique<ConfigSnapshot>(AgentConfig{});
  current_snapshot_->generation = 1;
  published_.store(current_snapshot_.get());
  RestoreFlows();
}

std::vector<AgentDataPath::LocalEndpoint> AgentDataPath::BuildLocalEndpoints(
    const AgentConfig& config) const {
  std::vector<LocalEndpoint> out;
  for (const EndpointConfig& ep : config.endpoints) {
    int vm = 0;
    while (config.vms[vm].dip != ep.dip) ++vm;  // validated by the config reader / PublishConfig
    out.push_back(LocalEndpoint{.vip = ep.vip,
                                .port = ep.port,
                                .proto = ep.proto,
                                .vm = static_cast<uint8_t>(vm),
                                .dip_port = ep.dip_port,
                                .shared = SharesDipPort(config, ep)});
  }
  return out;
}

namespace {

uint64_t MacBits(const flow::MacAddr& mac) {
  uint64_t bits = 0;
  for (uint8_t b : mac) bits = bits << 8 | b;
  return bits;
}

flow::MacAddr MacOfBits(uint64_t bits) {
  flow::MacAddr mac;
  for (int i = 5; i >= 0; --i, bits >>= 8) mac[i] = static_cast<uint8_t>(bits);
  return mac;
}

}  // namespace

bool AgentDataPath::PublishConfig(const AgentConfig& next, std::string* error) {
  return Publish(next, nullptr, error);
}

bool AgentDataPath::PublishConfig(const AgentConfig& next, const PortMap& ports,
                                  std::string* error) {
  return Publish(next, &ports, error);
}

bool AgentDataPath::Publish(const AgentConfig& next, const PortMap* ports, std::string* error) {
  std::lock_guard<std::mutex> lock(control_mu_);
  if (acked_generation_.load(std::memory_order_acquire) < vms_changed_generation_) {
    *error = "the data path has not adopted config generation " +
             std::to_string(vms_changed_generation_) +
             " (VMs attached or detached) yet; try again (is it polling?)";
    return false;
  }
  const AgentConfig& now = published_config_;
  const char* changed = nullptr;
  if (next.name != now.name) changed = "agent.name";
  if (next.uplink != now.uplink) changed = "agent.uplink";
  if (next.address.addr != now.address.addr || next.address.length != now.address.length) {
    changed = "agent.address";
  }
  if (next.gateway != now.gateway) changed = "agent.gateway";
  if (next.fastpath_key != now.fastpath_key) changed = "agent.fastpath_key";
  const NatConfig& a = next.nat;
  const NatConfig& b = now.nat;
  if (a.flow_state_file != b.flow_state_file || a.flow_capacity != b.flow_capacity ||
      a.tcp_syn_timeout_s != b.tcp_syn_timeout_s ||
      a.tcp_established_timeout_s != b.tcp_established_timeout_s ||
      a.tcp_closing_timeout_s != b.tcp_closing_timeout_s ||
      a.tcp_closed_timeout_s != b.tcp_closed_timeout_s || a.udp_timeout_s != b.udp_timeout_s ||
      a.snat_port_reuse_delay_s != b.snat_port_reuse_delay_s) {
    changed = "nat";
  }
  const bool vms_changed = next.vms != now.vms;
  if (vms_changed && ports == nullptr) changed = "vms";
  if (changed != nullptr) {
    *error = std::string(changed) + " cannot change while running (restart the agent)";
    return false;
  }
  // Where each running VM goes (-1: it leaves); new VMs' ports are checked against the rest.
  std::vector<int> new_index(now.vms.size(), -1);
  if (ports != nullptr) {
    if (ports->vm_ports.size() != next.vms.size() ||
        ports->vm_port_macs.size() != next.vms.size() ||
        ports->uplink_port != published_ports_.uplink_port) {
      *error = "the port map does not match the VMs";
      return false;
    }
    if (next.vms.size() > kMaxVms) {
      *error = "vms: at most " + std::to_string(kMaxVms) + " VMs per agent";
      return false;
    }
    std::array<bool, 256> used{};  // the data path finds ports by the low byte of their id
    used[ports->uplink_port & 0xff] = true;
    for (size_t v = 0; v < next.vms.size(); ++v) {
      const VmConfig& vm = next.vms[v];
      for (size_t w = 0; w < v; ++w) {
        if (next.vms[w].name == vm.name || next.vms[w].dip == vm.dip) {
          *error = "vms[" + std::to_string(v) + "]: VM '" + vm.name + "' twice (name or DIP)";
          return false;
        }
      }
      auto old = std::find_if(now.vms.begin(), now.vms.end(),
                              [&](const VmConfig& o) { return o.name == vm.name; });
      if (old != now.vms.end()) {
        const size_t o = static_cast<size_t>(old - now.vms.begin());
        if (!(*old == vm) || published_ports_.vm_ports[o] != ports->vm_ports[v]) {
          *error = "vms[" + std::to_string(v) + "]: VM '" + vm.name +
                   "' cannot change while running (detach it first)";
          return false;
        }
        new_index[o] = static_cast<int>(v);
      }
      if (used[ports->vm_ports[v] & 0xff]) {
        *error = "vms[" + std::to_string(v) + "].port: DPDK port " +
                 std::to_string(ports->vm_ports[v]) + " is in use by another port of the agent";
        return false;
      }
      used[ports->vm_ports[v] & 0xff] = true;
    }
  }
  auto has_vm = [&next](uint32_t dip) {
    return std::any_of(next.vms.begin(), next.vms.end(),
                       [dip](const VmConfig& vm) { return vm.dip == dip; });
  };
  for (size_t i = 0; i < next.endpoints.size(); ++i) {
    if (!has_vm(next.endpoints[i].dip)) {
      *error = "endpoints[" + std::to_string(i) + "].dip: " +
               flow::FormatIpv4(next.endpoints[i].dip) + " is not the DIP of any VM on this host";
      return false;
    }
  }
  for (size_t i = 0; i < next.snat_leases.size(); ++i) {
    if (!has_vm(next.snat_leases[i].dip)) {
      *error = "snat_leases[" + std::to_string(i) + "].dip: " +
               flow::FormatIpv4(next.snat_leases[i].dip) +
               " is not the DIP of any VM on this host";
      return false;
    }
  }
  auto snapshot = std::make_unique<ConfigSnapshot>(next);
  snapshot->endpoints = next.endpoints;
  snapshot->snat_leases = next.snat_leases;
  snapshot->local_endpoints = BuildLocalEndpoints(next);
  auto lease_key = [](const SnatLeaseConfig& l) {
    return std::tuple(l.dip, l.vip, l.proto, l.port_start, l.port_count);
  };
  // The SNAT pool is per VM index: rebuilt whenever the VMs change.
  snapshot->leases_changed = vms_changed || next.snat_leases.size() != now.snat_leases.size() ||
                             !std::equal(next.snat_leases.begin(), next.snat_leases.end(),
                                         now.snat_leases.begin(),
                                         [&](const SnatLeaseConfig& x, const SnatLeaseConfig& y) {
                                           return lease_key(x) == lease_key(y);
                                         });
  // Rules for the gateway MAC the data path uses now; if it changes meanwhile, the data path
  // builds them itself when adopting.
  const PortMap& next_ports = ports != nullptr ? *ports : published_ports_;
  if (vms_changed) {
    snapshot->vms_changed = true;
    snapshot->vms = next.vms;
    snapshot->port_map = next_ports;
    snapshot->new_index = new_index;
    snapshot->ports.resize(1 + next.vms.size());
    snapshot->removed_ports.reserve(now.vms.size());
    snapshot->uplink_addresses.push_back(next.address.addr);
    for (size_t v = 0; v < next.vms.size(); ++v) {
      snapshot->uplink_addresses.push_back(next.vms[v].pa);
      if (std::find(new_index.begin(), new_index.end(), static_cast<int>(v)) !=
          new_index.end()) {
        continue;  // a running VM: its port object moves over when adopted
      }
      auto port = std::make_unique<AgentPort>(next_ports.vm_ports[v], next_ports.vm_port_macs[v],
                                              static_cast<int>(v),
                                              std::vector<uint32_t>{next.vms[v].gateway});
      port->neighbors.Learn(next.vms[v].dip, next.vms[v].mac, 0);
      snapshot->ports[1 + v] = std::move(port);
    }
  }
  const uint64_t mac_bits = gateway_mac_bits_.load(std::memory_order_acquire);
  if (mac_bits != 0) {
    std::vector<flow::Rule> rules = BuildAgentRules(next, next_ports, MacOfBits(mac_bits));
    snapshot->rule_count = rules.size();
    snapshot->rules = sw::RuleTable::Build(std::move(rules), error);
    if (snapshot->rules == nullptr) return false;
    snapshot->rules_gateway_mac = mac_bits;
  }
  snapshot->generation = current_snapshot_->generation + 1;
  published_config_ = next;
  published_ports_ = next_ports;
  if (vms_changed) vms_changed_generation_ = snapshot->generation;
  ConfigSnapshot* raw = snapshot.get();
  retired_.push_back(std::move(current_snapshot_));
  current_snapshot_ = std::move(snapshot);
  published_.store(raw, std::memory_order_release);
  return true;
}

void AgentDataPath::AdoptConfig() {
  ConfigSnapshot* s = published_.load(std::memory_order_acquire);
  if (s->generation == acked_generation_.load(std::memory_order_relaxed)) return;
  // Swap, not copy: the snapshot leaves with the old tables and is freed off the data path.
  if (s->vms_changed) AdoptVms(*s);
  std::swap(endpoints_, s->local_endpoints);
  std::swap(config_.endpoints, s->endpoints);
  std::swap(config_.snat_leases, s->snat_leases);
  if (s->leases_changed) {
    {
      std::lock_guard<std::mutex> lock(snat_swap_mu_);  // only stats readers contend
      std::swap(snat_ports_, s->snat_ports);
    }
    // Live SNAT flows keep their ports where the new leases still give them to the same VM;
    // a flow whose port is no longer leased keeps translating until it ends.
    flows_->Scan(flows_->capacity(), [this](NatFlow& f) {
      if (f.kind == static_cast<uint8_t>(NatFlowKind::kSnat)) {
        snat_ports_.Claim(f.vm_index, f.proto, f.vip, f.vip_port);
      }
    });
  }
  if (offload_ != nullptr) {
    // A detached VM's, or a removed lease's or endpoint's flows leave the NIC at once; in
    // software they keep translating until they end, as before.
    flows_->Scan(flows_->capacity(), [this](NatFlow& f) {
      if ((f.offload & NatFlow::kOffered) && !Owned(f)) WithdrawFlow(f);
    });
  }
  if (ready()) {
    if (s->rules != nullptr && s->rules_gateway_mac == MacBits(gateway_mac_)) {
      executor_.SetRules(s->rules);
      installed_rules_.Reset();
      installed_rules_.Add(s->rule_count);
      PostRules(s->rules->rules());
    } else {
      InstallRules(gateway_mac_);
    }
  }
  acked_generation_.store(s->generation, std::memory_order_release);
}

void AgentDataPath::AdoptVms(ConfigSnapshot& s) {
  FlushAll();  // nothing stays queued for a port that leaves
  // Flows of VMs that leave go (from the NIC too); the others follow their VM's new index.
  // Their SNAT ports need no release: the pool is rebuilt for the new VMs below.
  flows_->Scan(flows_->capacity(), [&](NatFlow& f) {
    const int to = f.vm_index < s.new_index.size() ? s.new_index[f.vm_index] : -1;
    if (to >= 0) {
      f.vm_index = static_cast<uint8_t>(to);
      return;
    }
    if (offload_ != nullptr) WithdrawFlow(f);
    flows_->Remove(&f);
    counters_.flows_expired.Add();
  });
  s.ports[0] = std::move(ports_[0]);
  for (size_t v = 0; v < s.new_index.size(); ++v) {
    if (s.new_index[v] >= 0) {
      s.ports[1 + s.new_index[v]] = std::move(ports_[1 + v]);
    } else {
      s.removed_ports.push_back(std::move(ports_[1 + v]));  // capacity reserved
    }
  }
  {
    std::lock_guard<std::mutex> lock(snat_swap_mu_);  // only stats readers contend
    for (size_t i = 1; i < s.ports.size(); ++i) s.ports[i]->vm_index = static_cast<int>(i - 1);
    std::swap(ports_, s.ports);
    std::swap(config_.vms, s.vms);
  }
  std::swap(port_map_, s.port_map);
  ports_[0]->arp.SetOwnedAddresses(std::move(s.uplink_addresses));
  index_of_port_.fill(-1);
  for (size_t i = 0; i < ports_.size(); ++i) {
    index_of_port_[ports_[i]->port_id & 0xff] = static_cast<int16_t>(i);
  }
}

size_t AgentDataPath::ReclaimRetired() {
  std::lock_guard<std::mutex> lock(control_mu_);
  const uint64_t acked = acked_generation_.load(std::memory_order_acquire);
  std::erase_if(retired_, [acked](const std::unique_ptr<ConfigSnapshot>& s) {
    return s->generation < acked;
  });
  return retired_.size();
}

uint64_t AgentDataPath::published_generation() const {
  return published_.load(std::memory_order_acquire)->generation;
}

// Flows of a previous run stay if they still fit the config: same VM at the same index,
// SNAT port still leased to it, inbound endpoint still configured.
void AgentDataPath::RestoreFlows() {
  flows_restored_ = flows_->size();
  flows_->RemoveIf([this](const NatFlow& f) {
    if (f.vm_index >= config_.vms.size() || config_.vms[f.vm_index].dip != f.dip) return true;
    if (f.kind == static_cast<uint8_t>(NatFlowKind::kInbound)) {
      const LocalEndpoint* ep = FindEndpoint(f.vm_index, f.vip, f.vip_port, f.proto);
      return ep == nullptr || ep->dip_port != f.dip_port;
    }
    return !snat_ports_.Claim(f.vm_index, f.proto, f.vip, f.vip_port);
  });
  flows_kept_ = flows_->size();
  // The previous process's NIC rules went with its executor: offer the flows afresh.
  flows_->Scan(flows_->capacity(), [](NatFlow& f) { f.offload = 0; });
}

const AgentDataPath::LocalEndpoint* AgentDataPath::FindEndpoint(int vm, uint32_t vip,
                                                                uint16_t port,
                                                                uint8_t proto) const {
  for (const LocalEndpoint& ep : endpoints_) {
    if (ep.vm == vm && ep.vip == vip && ep.port == port && ep.proto == proto) return &ep;
  }
  return nullptr;
}

const AgentDataPath::LocalEndpoint* AgentDataPath::ReturnEndpoint(int vm, uint8_t proto,
                                                                  uint16_t dip_port) const {
  for (const LocalEndpoint& ep : endpoints_) {
    if (ep.vm == vm && ep.dip_port == dip_port && ep.proto == proto) return &ep;
  }
  return nullptr;
}

int AgentDataPath::VmOfPa(uint32_t pa) const {
  for (size_t v = 0; v < config_.vms.size(); ++v) {
    if (config_.vms[v].pa == pa) return static_cast<int>(v);
  }
  return -1;
}

bool AgentDataPath::Drop(rte_mbuf* m, AgentDrop reason) {
  counters_.drops[static_cast<size_t>(reason)].Add();
  rte_pktmbuf_free(m);
  return true;
}

bool AgentDataPath::Drop(rte_mbuf* m, DropReason reason) {
  drops_[static_cast<size_t>(reason)].Add();
  rte_pktmbuf_free(m);
  return true;
}

void AgentDataPath::ProcessBurst(size_t port_index, rte_mbuf** pkts, uint16_t n,
                                 uint64_t now_ns) {
  AgentPort& in = *ports_[port_index];
  rte_mbuf* to_executor[64];
  uint16_t count = 0;
  for (uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    in.rx_packets.Add();
    uint8_t* frame = rte_pktmbuf_mtod(m, uint8_t*);
    uint32_t len = rte_pktmbuf_data_len(m);
    DropReason reason = DropReason::kTruncated;
    if (len < packet::kEthHeaderLen) {
      Drop(m, reason);
      continue;
    }
    if (memcmp(frame, in.mac.data(), 6) != 0 && memcmp(frame, kBroadcast.data(), 6) != 0) {
      Drop(m, DropReason::kNotForUs);
      continue;
    }
    uint16_t ether_type = static_cast<uint16_t>(frame[12] << 8 | frame[13]);
    if (ether_type == packet::kEtherTypeArp) {
      uint32_t reply_len = 0;
      switch (in.arp.Handle(frame, len, now_ns, &reason, &reply_len)) {
        case port::ArpOutcome::kReply:
          m->data_len = static_cast<uint16_t>(reply_len);
          m->pkt_len = reply_len;
          in.tx.Push(m);
          continue;
        case port::ArpOutcome::kDrop:
          drops_[static_cast<size_t>(reason)].Add();
          break;
        case port::ArpOutcome::kConsumed:
          break;
      }
      rte_pktmbuf_free(m);
      continue;
    }
    // The flow layer looks at every IPv4 packet first; what it leaves goes to the static
    // rules (and a packet Parse rejects goes there too, to be counted by the executor).
    packet::ParsedPacket pkt;
    if (m->nb_segs == 1 &&
        packet::Parse(frame, len, flow::kDefaultGuePort, &pkt, &reason) ==
            packet::ParseStatus::kIpv4) {
      const bool consumed =
          in.vm_index >= 0 ? FromVm(in, m, &pkt, now_ns) : FromUplink(m, &pkt, now_ns);
      if (consumed) continue;
    }
    to_executor[count++] = m;
  }
  sw::Verdict verdicts[64];
  executor_.ProcessBurst(to_executor, count, in.port_id, verdicts);
  for (uint16_t i = 0; i < count; ++i) {
    int16_t out = verdicts[i].kind == sw::Verdict::Kind::kOutput
                      ? index_of_port_[verdicts[i].port & 0xff]
                      : int16_t{-1};
    if (out >= 0) {
      const flow::Rule& rule = executor_.rules()->rules()[verdicts[i].rule_index];
      walk_packets_[static_cast<size_t>(KindOf(rule))].Add();
      ports_[out]->tx.Push(to_executor[i]);
    } else {
      if (verdicts[i].kind == sw::Verdict::Kind::kToSoftware) {
        drops_[static_cast<size_t>(DropReason::kNoRule)].Add();
      }
      rte_pktmbuf_free(to_executor[i]);
    }
  }
}

bool AgentDataPath::FromVm(AgentPort& in, rte_mbuf* m, packet::ParsedPacket* pkt,
                           uint64_t now_ns) {
  const VmConfig& vm = config_.vms[in.vm_index];
  if (pkt->outer_src != vm.dip || pkt->src != vm.dip) return Drop(m, AgentDrop::kSpoofedSource);
  if (pkt->tunnel != flow::Tunnel::kNone || !IsTcpOrUdp(pkt->proto)) return false;
  NatFlow* f =
      flows_->FindInside(pkt->proto, pkt->src, pkt->src_port, pkt->dst, pkt->dst_port);
  if (f == nullptr) {
    if (const LocalEndpoint* ep = ReturnEndpoint(in.vm_index, pkt->proto, pkt->src_port)) {
      // A reply from a served port: stateless DSR, unless the port serves several VIPs and
      // the connection is unknown (which VIP would it leave with?).
      return ep->shared ? Drop(m, AgentDrop::kNatNoFlow) : false;
    }
    return NewSnatFlow(in, m, pkt, now_ns);
  }
  Track(*f, *pkt, /*from_vm=*/true, now_ns);
  OffloadOnPacket(*f, now_ns);
  return TranslateOutbound(*f, m, pkt, now_ns);
}

bool AgentDataPath::NewSnatFlow(AgentPort& in, rte_mbuf* m, packet::ParsedPacket* pkt,
                                uint64_t now_ns) {
  const bool tcp = pkt->proto == flow::kProtoTcp;
  // Only a SYN opens a TCP flow: a segment of a connection the agent does not know cannot
  // be given the VIP port the remote knows it by.
  if (tcp && (pkt->tcp_flags & (kTcpSyn | kTcpAck | kTcpRst)) != kTcpSyn) {
    return Drop(m, AgentDrop::kNatNoFlow);
  }
  if (!ready()) return Drop(m, DropReason::kNeighborUnresolved);
  const uint8_t vm = static_cast<uint8_t>(in.vm_index);
  if (!snat_ports_.HasLease(vm, pkt->proto)) return Reject(in, m, *pkt, AgentDrop::kSnatNoLease);
  uint32_t vip = 0;
  uint16_t port = 0;
  if (!snat_ports_.Take(vm, pkt->proto, &vip, &port)) {
    in.snat_ports_exhausted.Add();
    return Reject(in, m, *pkt, AgentDrop::kSnatPortsExhausted);
  }
  NatFlow* f = flows_->Insert(NatFlow{
      .dip = pkt->src,
      .remote = pkt->dst,
      .vip = vip,
      .dip_port = pkt->src_port,
      .remote_port = pkt->dst_port,
      .vip_port = port,
      .proto = pkt->proto,
      .kind = static_cast<uint8_t>(NatFlowKind::kSnat),
      .vm_index = vm,
      .state = static_cast<uint8_t>(tcp ? NatFlowState::kTcpSyn : NatFlowState::kUdp),
      .created_unix_s = static_cast<uint32_t>(clock_->UnixSeconds()),
      .last_seen_ns = now_ns});
  if (f == nullptr) {
    snat_ports_.Release(vm, pkt->proto, vip, port);
    return Reject(in, m, *pkt, AgentDrop::kFlowTableFull);
  }
  counters_.flows_created.Add();
  return TranslateOutbound(*f, m, pkt, now_ns);
}

bool AgentDataPath::Reject(AgentPort& in, rte_mbuf* m, const packet::ParsedPacket& pkt,
                           AgentDrop why) {
  counters_.drops[static_cast<size_t>(why)].Add();
  uint8_t reply[kMaxRejectLen];
  const uint16_t len = BuildReject(rte_pktmbuf_mtod(m, const uint8_t*), pkt, in.mac,
                                   config_.vms[in.vm_index].gateway, reply);
  if (len == 0 || len > rte_pktmbuf_data_len(m) + rte_pktmbuf_tailroom(m)) {
    rte_pktmbuf_free(m);
    return true;
  }
  memcpy(rte_pktmbuf_mtod(m, uint8_t*), reply, len);
  m->data_len = len;
  m->pkt_len = len;
  in.tx.Push(m);
  counters_.rejects_sent.Add();
  return true;
}

bool AgentDataPath::TranslateOutbound(NatFlow& f, rte_mbuf* m, packet::ParsedPacket* pkt,
                                      uint64_t now_ns) {
  if (!ready()) return Drop(m, DropReason::kNeighborUnresolved);
  AgentPort& uplink = *ports_[0];
  FlowNextHop hop{.mac = gateway_mac_};
  if (f.fastpath_pa != 0 && PeerEncap(f.fastpath_pa, &hop.tunnel)) {
    hop.fastpath = uplink.neighbors.Lookup(f.fastpath_pa, &hop.mac);
    if (!hop.fastpath) {
      hop.mac = gateway_mac_;
      WantNeighbor(f.fastpath_pa, now_ns);  // via the router until resolved
    }
  }
  // An offered flow's rules follow it onto the Fastpath.
  if (offload_ != nullptr && (f.offload & NatFlow::kOffered) &&
      hop.fastpath != ((f.offload & NatFlow::kOfferedFastpath) != 0)) {
    OfferFlow(f, now_ns);
  }
  const bool fastpath = hop.fastpath;
  flow::Action actions[kMaxFlowActions];
  const size_t n = OutboundActions(f, config_, port_map_, hop, 0, actions);
  const sw::Verdict v = sw::ApplyActions(m, pkt, actions, n);
  if (v.kind != sw::Verdict::Kind::kOutput) return Drop(m, v.reason);
  if (f.kind == static_cast<uint8_t>(NatFlowKind::kSnat)) {
    counters_.snat_out_packets.Add();
  } else {
    counters_.stateful_return_packets.Add();
  }
  if (fastpath) counters_.fastpath_packets.Add();
  uplink.tx.Push(m);
  return true;
}

bool AgentDataPath::TranslateInbound(const NatFlow& f, rte_mbuf* m, packet::ParsedPacket* pkt) {
  flow::Action actions[kMaxFlowActions];
  const size_t n = InboundActions(f, config_, port_map_, 0, actions);
  const sw::Verdict v = sw::ApplyActions(m, pkt, actions, n);
  if (v.kind != sw::Verdict::Kind::kOutput) return Drop(m, v.reason);
  counters_.snat_in_packets.Add();
  ports_[1 + f.vm_index]->tx.Push(m);
  return true;
}

bool AgentDataPath::FromUplink(rte_mbuf* m, packet::ParsedPacket* pkt, uint64_t now_ns) {
  if (pkt->tunnel == flow::Tunnel::kNone) {
    if (pkt->proto == flow::kProtoUdp && pkt->dst_port == packet::kFastpathUdpPort &&
        OwnsAddress(pkt->dst)) {
      HandleRedirect(m, *pkt, now_ns);
      return true;
    }
    return false;
  }
  if (!IsTcpOrUdp(pkt->proto)) return false;
  NatFlow* f =
      flows_->FindOutside(pkt->proto, pkt->dst, pkt->dst_port, pkt->src, pkt->src_port);
  if (pkt->outer_dst == config_.address.addr) {
    // To the host PA: a reply to one of our SNAT ports (from a mux, or a Fastpath peer).
    if (f != nullptr && f->kind == static_cast<uint8_t>(NatFlowKind::kSnat)) {
      RelearnPeerEncap(*f, *pkt);
      Track(*f, *pkt, /*from_vm=*/false, now_ns);
      OffloadOnPacket(*f, now_ns);
      return TranslateInbound(*f, m, pkt);
    }
    if (snat_ports_.IsLeased(pkt->dst, pkt->proto, pkt->dst_port)) {
      return Drop(m, AgentDrop::kNatNoFlow);
    }
    return false;
  }
  // To a VM's PA: the static inbound rules translate; the flow layer only keeps state.
  if (f != nullptr) {
    if (f->kind == static_cast<uint8_t>(NatFlowKind::kInbound)) {
      RelearnPeerEncap(*f, *pkt);
      Track(*f, *pkt, /*from_vm=*/false, now_ns);
      OffloadOnPacket(*f, now_ns);
    }
    return false;
  }
  const int vm = VmOfPa(pkt->outer_dst);
  if (vm < 0) return false;
  const LocalEndpoint* ep = FindEndpoint(vm, pkt->dst, pkt->dst_port, pkt->proto);
  if (ep == nullptr || !ep->shared) return false;
  const bool tcp = pkt->proto == flow::kProtoTcp;
  if (tcp && (pkt->tcp_flags & kTcpRst)) return false;
  const uint32_t dip = config_.vms[vm].dip;
  if (flows_->FindInside(pkt->proto, dip, ep->dip_port, pkt->src, pkt->src_port) != nullptr) {
    return false;  // the VM already uses that 4-tuple for a connection of its own
  }
  // Any packet of the connection says which VIP it came to, so a flow can start mid-way
  // (e.g. after it aged out while idle).
  NatFlowState state = NatFlowState::kUdp;
  if (tcp) {
    state = (pkt->tcp_flags & (kTcpSyn | kTcpAck)) == kTcpSyn ? NatFlowState::kTcpSyn
                                                              : NatFlowState::kTcpEstablished;
  }
  f = flows_->Insert(NatFlow{.dip = dip,
                             .remote = pkt->src,
                             .vip = pkt->dst,
                             .dip_port = ep->dip_port,
                             .remote_port = pkt->src_port,
                             .vip_port = pkt->dst_port,
                             .proto = pkt->proto,
                             .kind = static_cast<uint8_t>(NatFlowKind::kInbound),
                             .vm_index = static_cast<uint8_t>(vm),
                             .state = static_cast<uint8_t>(state),
                             .created_unix_s = static_cast<uint32_t>(clock_->UnixSeconds()),
                             .last_seen_ns = now_ns});
  if (f == nullptr) return Drop(m, AgentDrop::kFlowTableFull);
  counters_.flows_created.Add();
  Track(*f, *pkt, /*from_vm=*/false, now_ns);
  OffloadOnPacket(*f, now_ns);
  return false;
}

void AgentDataPath::Track(NatFlow& f, const packet::ParsedPacket& pkt, bool from_vm,
                          uint64_t now_ns) {
  f.last_seen_ns = now_ns;
  const bool from_opener = (f.kind == static_cast<uint8_t>(NatFlowKind::kSnat)) == from_vm;
  if (f.proto != flow::kProtoTcp) {
    if (!from_opener) f.offload |= NatFlow::kAnswered;  // both ways: established
    return;
  }
  const uint8_t flags = pkt.tcp_flags;
  const NatFlowState state = StateOf(f);
  if (flags & kTcpRst) {
    SetState(f, NatFlowState::kClosed);
    return;
  }
  if ((flags & (kTcpSyn | kTcpAck)) == kTcpSyn && from_opener && state == NatFlowState::kClosed) {
    // The same 4-tuple opens again (TIME_WAIT reuse): same translation, new life.
    f.fins = 0;
    SetState(f, NatFlowState::kTcpSyn);
    return;
  }
  if ((flags & (kTcpSyn | kTcpAck)) == (kTcpSyn | kTcpAck) && !from_opener &&
      state == NatFlowState::kTcpSyn) {
    SetState(f, NatFlowState::kTcpEstablished);
  }
  if (flags & kTcpFin) {
    f.fins |= from_vm ? NatFlow::kFinFromVm : NatFlow::kFinFromRemote;
    if (f.fins == (NatFlow::kFinFromVm | NatFlow::kFinFromRemote)) {
      SetState(f, NatFlowState::kClosed);
    } else if (StateOf(f) != NatFlowState::kClosed) {
      SetState(f, NatFlowState::kTcpClosing);
    }
  }
}

void AgentDataPath::HandleRedirect(rte_mbuf* m, const packet::ParsedPacket& pkt,
                                   uint64_t now_ns) {
  counters_.fastpath_redirects_received.Add();
  const uint8_t* frame = rte_pktmbuf_mtod(m, const uint8_t*);
  const uint8_t* ip = frame + pkt.l3_offset;
  const uint32_t ip_total = static_cast<uint32_t>(ip[2] << 8 | ip[3]);
  const uint32_t headers = static_cast<uint32_t>(pkt.l4_offset - pkt.l3_offset) +
                           packet::kUdpHeaderLen;
  if (ip_total < headers) {
    Drop(m, AgentDrop::kFastpathRedirectMalformed);
    return;
  }
  if (!config_.fastpath_key) {
    Drop(m, AgentDrop::kFastpathRedirectBadAuth);
    return;
  }
  packet::FastpathRedirect r;
  switch (packet::DecodeFastpathRedirect(frame + pkt.l4_offset + packet::kUdpHeaderLen,
                                         ip_total - headers, *config_.fastpath_key, &r)) {
    case packet::RedirectCheck::kOk:
      break;
    case packet::RedirectCheck::kMalformed:
      Drop(m, AgentDrop::kFastpathRedirectMalformed);
      return;
    case packet::RedirectCheck::kBadAuth:
      Drop(m, AgentDrop::kFastpathRedirectBadAuth);
      return;
  }
  const uint64_t now_s = clock_->UnixSeconds();
  if ((now_s > r.timestamp_s ? now_s - r.timestamp_s : r.timestamp_s - now_s) > kFastpathMaxAgeS) {
    Drop(m, AgentDrop::kFastpathRedirectStale);
    return;
  }
  if (!config_.address.Contains(r.dst_pa) || !config_.address.Contains(r.src_host_pa) ||
      !IsTcpOrUdp(r.proto)) {
    Drop(m, AgentDrop::kFastpathRedirectMalformed);
    return;
  }
  // A redirect older than the flow it names was meant for an earlier flow of that 4-tuple.
  auto fresh_for = [&r](const NatFlow& f) {
    return r.timestamp_s + kFastpathClockSkewS >= f.created_unix_s &&
           StateOf(f) != NatFlowState::kClosed;
  };
  bool stale = false;
  uint32_t peers[2];
  size_t num_peers = 0;
  // Source side: we own the SNAT port the flow comes from.
  if (r.src_host_pa == config_.address.addr && !OwnsAddress(r.dst_pa)) {
    NatFlow* f = flows_->FindOutside(r.proto, r.flow_src, r.flow_src_port, r.flow_dst,
                                     r.flow_dst_port);
    if (f != nullptr && f->kind == static_cast<uint8_t>(NatFlowKind::kSnat)) {
      if (fresh_for(*f)) {
        f->fastpath_pa = r.dst_pa;
        LearnPeerEncap(r.dst_pa, r.dst_encap);
        f->offload |= NatFlow::kOfferStale;  // an offered flow's rules go onto the Fastpath
        counters_.fastpath_redirects_source.Add();
        peers[num_peers++] = r.dst_pa;
      } else {
        stale = true;
      }
    }
  }
  // Destination side: the chosen DIP is one of our VMs, reached at its PA.
  const int vm = VmOfPa(r.dst_pa);
  if (vm >= 0 && config_.vms[vm].dip == r.dip && r.src_host_pa != config_.address.addr) {
    const LocalEndpoint* ep = FindEndpoint(vm, r.flow_dst, r.flow_dst_port, r.proto);
    if (ep != nullptr) {
      NatFlow* f =
          flows_->FindInside(r.proto, r.dip, ep->dip_port, r.flow_src, r.flow_src_port);
      if (f == nullptr) {
        // A DIP:port serving one VIP keeps no state; now it needs some, to know where the
        // flow's replies go.
        const bool tcp = r.proto == flow::kProtoTcp;
        f = flows_->Insert(NatFlow{
            .dip = r.dip,
            .remote = r.flow_src,
            .vip = r.flow_dst,
            .dip_port = ep->dip_port,
            .remote_port = r.flow_src_port,
            .vip_port = r.flow_dst_port,
            .proto = r.proto,
            .kind = static_cast<uint8_t>(NatFlowKind::kInbound),
            .vm_index = static_cast<uint8_t>(vm),
            .state = static_cast<uint8_t>(tcp ? NatFlowState::kTcpEstablished
                                              : NatFlowState::kUdp),
            .created_unix_s = static_cast<uint32_t>(now_s),
            .last_seen_ns = now_ns});
        if (f != nullptr) counters_.flows_created.Add();
      }
      if (f != nullptr && f->kind == static_cast<uint8_t>(NatFlowKind::kInbound) &&
          f->vip == r.flow_dst && f->vip_port == r.flow_dst_port) {
        if (fresh_for(*f)) {
          f->fastpath_pa = r.src_host_pa;
          LearnPeerEncap(r.src_host_pa, r.src_encap);
          f->offload |= NatFlow::kOfferStale;
          counters_.fastpath_redirects_destination.Add();
          peers[num_peers++] = r.src_host_pa;
        } else {
          stale = true;
        }
      }
    }
  }
  if (num_peers == 0) {
    Drop(m, stale ? AgentDrop::kFastpathRedirectStale : AgentDrop::kFastpathRedirectNotOurs);
    return;
  }
  // Ask for the peer's MAC at once (the redirect's mbuf becomes the ARP request), so the
  // flow leaves the mux within a round trip on the underlay.
  AgentPort& uplink = *ports_[0];
  bool reused = false;
  for (size_t i = 0; i < num_peers; ++i) {
    flow::MacAddr mac;
    if (uplink.neighbors.Lookup(peers[i], &mac)) continue;
    if (!reused && uplink.neighbors.ShouldRequest(peers[i], now_ns)) {
      const uint16_t len = uplink.arp.BuildRequest(rte_pktmbuf_mtod(m, uint8_t*),
                                                   config_.address.addr, peers[i]);
      m->data_len = len;
      m->pkt_len = len;
      uplink.tx.Push(m);
      reused = true;
    } else {
      WantNeighbor(peers[i], now_ns);
    }
  }
  if (!reused) rte_pktmbuf_free(m);
}

void AgentDataPath::LearnPeerEncap(uint32_t pa, flow::Tunnel tunnel) {
  if (tunnel == flow::Tunnel::kNone) tunnel = flow::Tunnel::kIpip;  // an older mux's redirect
  const size_t n = peer_encaps_.size();
  size_t i = (pa * 2654435761u) % n;
  for (size_t probe = 0; probe < n; ++probe, i = (i + 1) % n) {
    if (peer_encaps_[i].pa == pa || peer_encaps_[i].pa == 0) break;
  }
  // A full table (more peers than slots) overwrites the home slot: a forgotten peer's flows
  // go via the router until its next redirect.
  if (peer_encaps_[i].pa != pa && peer_encaps_[i].pa != 0) i = (pa * 2654435761u) % n;
  peer_encaps_[i] = {.pa = pa, .tunnel = tunnel};
}

void AgentDataPath::RelearnPeerEncap(const NatFlow& f, const packet::ParsedPacket& pkt) {
  flow::Tunnel known;
  if (f.fastpath_pa == 0 || pkt.outer_src != f.fastpath_pa || PeerEncap(f.fastpath_pa, &known)) {
    return;
  }
  LearnPeerEncap(f.fastpath_pa, pkt.tunnel);
  counters_.fastpath_peers_relearned.Add();
}

bool AgentDataPath::PeerEncap(uint32_t pa, flow::Tunnel* tunnel) const {
  const size_t n = peer_encaps_.size();
  size_t i = (pa * 2654435761u) % n;
  for (size_t probe = 0; probe < n; ++probe, i = (i + 1) % n) {
    if (peer_encaps_[i].pa == 0) return false;
    if (peer_encaps_[i].pa == pa) {
      *tunnel = peer_encaps_[i].tunnel;
      return true;
    }
  }
  return false;
}

void AgentDataPath::WantNeighbor(uint32_t ip, uint64_t now_ns) {
  if (wanted_count_ < wanted_neighbors_.size() &&
      ports_[0]->neighbors.ShouldRequest(ip, now_ns)) {
    wanted_neighbors_[wanted_count_++] = ip;
  }
}

uint64_t AgentDataPath::IdleTimeoutNs(const NatFlow& f, NatFlowState state) const {
  const NatConfig& nat = config_.nat;
  uint64_t s = nat.udp_timeout_s;
  switch (state) {
    case NatFlowState::kTcpSyn:
      s = nat.tcp_syn_timeout_s;
      break;
    case NatFlowState::kTcpEstablished:
      s = nat.tcp_established_timeout_s;
      break;
    case NatFlowState::kTcpClosing:
      s = nat.tcp_closing_timeout_s;
      break;
    case NatFlowState::kClosed:
      // A closed SNAT flow holds its port for the reuse delay (and keeps translating late
      // packets meanwhile).
      s = f.kind == static_cast<uint8_t>(NatFlowKind::kSnat)
              ? std::max(nat.tcp_closed_timeout_s, nat.snat_port_reuse_delay_s)
              : nat.tcp_closed_timeout_s;
      break;
    case NatFlowState::kUdp:
    case NatFlowState::kFree:
      break;
  }
  return s * kNsPerS;
}

bool AgentDataPath::ExpireIdle(NatFlow& f, NatFlowState state, uint64_t now_ns) {
  if (state != NatFlowState::kClosed && f.kind == static_cast<uint8_t>(NatFlowKind::kSnat)) {
    // Idled out: the port still waits out its reuse delay.
    SetState(f, NatFlowState::kClosed);
    f.last_seen_ns = now_ns;
    return false;
  }
  FreeFlow(&f);
  return true;
}

void AgentDataPath::FreeFlow(NatFlow* f) {
  if (offload_ != nullptr) WithdrawFlow(*f);
  if (f->kind == static_cast<uint8_t>(NatFlowKind::kSnat)) {
    snat_ports_.Release(f->vm_index, f->proto, f->vip, f->vip_port);
  }
  flows_->Remove(f);
  counters_.flows_expired.Add();
}

void AgentDataPath::AgeFlows(uint64_t now_ns) {
  const uint32_t capacity = flows_->capacity();
  const uint32_t budget = std::min<uint32_t>(capacity, std::max<uint32_t>(1024, capacity / 8));
  flows_->Scan(std::min<uint32_t>(budget, 65536), [&](NatFlow& f) {
    // A flow the NIC serves sends its packets past software: the NIC's AGE (an answer in
    // TakeOffloadNotices) says when it is idle, not last_seen_ns.
    if ((f.offload & NatFlow::kNicServed) == 0) {
      const NatFlowState state = StateOf(f);
      const uint64_t idle = now_ns > f.last_seen_ns ? now_ns - f.last_seen_ns : 0;
      if (idle >= IdleTimeoutNs(f, state) && ExpireIdle(f, state, now_ns)) return;
    }
    if (offload_ != nullptr) ReconcileOffload(f, now_ns);
  });
}

// --- per-flow NIC offload -----------------------------------------------------------------

void AgentDataPath::SetFlowOffload(FlowOffloadChannel* channel) {
  offload_ = channel;
  offload_backlog_.clear();
  offload_backlog_.reserve(channel != nullptr ? FlowOffloadChannel::kRingSize / 4 : 0);
  offload_backlog_head_ = 0;
}

bool AgentDataPath::Established(const NatFlow& f) {
  const NatFlowState state = StateOf(f);
  return state == NatFlowState::kTcpEstablished ||
         (state == NatFlowState::kUdp && (f.offload & NatFlow::kAnswered) != 0);
}

bool AgentDataPath::Owned(const NatFlow& f) const {
  if (f.vm_index >= config_.vms.size()) return false;
  if (f.kind == static_cast<uint8_t>(NatFlowKind::kSnat)) {
    return snat_ports_.LeasedTo(f.vm_index, f.proto, f.vip, f.vip_port);
  }
  const LocalEndpoint* ep = FindEndpoint(f.vm_index, f.vip, f.vip_port, f.proto);
  return ep != nullptr && ep->dip_port == f.dip_port;
}

namespace {

uint8_t OfferGeneration(const NatFlow& f) {
  return static_cast<uint8_t>(f.offload >> NatFlow::kGenerationShift);
}

}  // namespace

bool AgentDataPath::OfferFlow(NatFlow& f, uint64_t now_ns) {
  if (!ready()) return false;
  FlowOffer offer{.op = FlowOffer::Op::kOffer, .next_hop_mac = gateway_mac_};
  if (f.fastpath_pa != 0 && PeerEncap(f.fastpath_pa, &offer.tunnel)) {
    // Not before the peer's MAC is known: the NIC would keep sending it via the router.
    if (!ports_[0]->neighbors.Lookup(f.fastpath_pa, &offer.next_hop_mac)) {
      WantNeighbor(f.fastpath_pa, now_ns);
      return false;
    }
    offer.fastpath = true;
  }
  offer.generation = static_cast<uint8_t>((OfferGeneration(f) + 1) & 7);
  offer.flow = f;
  if (!SendOffload(offer, /*must_deliver=*/false)) return false;
  f.offload = static_cast<uint8_t>(
      (f.offload & (NatFlow::kAnswered | NatFlow::kNicServed)) | NatFlow::kOffered |
      (offer.fastpath ? NatFlow::kOfferedFastpath : 0) |
      offer.generation << NatFlow::kGenerationShift);
  counters_.flows_offered.Add();
  return true;
}

void AgentDataPath::WithdrawFlow(NatFlow& f) {
  if ((f.offload & NatFlow::kOffered) == 0) return;
  SendOffload(FlowOffer{.op = FlowOffer::Op::kWithdraw, .generation = OfferGeneration(f),
                        .flow = f},
              /*must_deliver=*/true);
  f.offload = static_cast<uint8_t>(f.offload & (NatFlow::kAnswered | 7u << NatFlow::kGenerationShift));
  counters_.flows_withdrawn.Add();
}

void AgentDataPath::ReconcileOffload(NatFlow& f, uint64_t now_ns) {
  flow::Tunnel tunnel;
  if ((f.offload & NatFlow::kOffered) == 0) {
    if (Established(f) && Owned(f)) OfferFlow(f, now_ns);
  } else if (!Established(f)) {
    WithdrawFlow(f);  // (ownership changes only with a config: AdoptConfig withdraws then)
  } else if ((f.offload & NatFlow::kOfferStale) ||
             (f.fastpath_pa != 0 && (f.offload & NatFlow::kOfferedFastpath) == 0 &&
              PeerEncap(f.fastpath_pa, &tunnel))) {
    OfferFlow(f, now_ns);  // a new next hop: replace the rules
  }
}

bool AgentDataPath::SendOffload(const FlowOffer& message, bool must_deliver) {
  if (offload_backlog_head_ == offload_backlog_.size() && offload_->offers.Push(message)) {
    return true;
  }
  if (!must_deliver) return false;
  if (offload_backlog_.size() < offload_backlog_.capacity()) {
    offload_backlog_.push_back(message);  // within the reserved capacity: no allocation
    return true;
  }
  counters_.offload_withdrawals_lost.Add();
  return false;
}

void AgentDataPath::FlushOffloadBacklog() {
  while (offload_backlog_head_ < offload_backlog_.size() &&
         offload_->offers.Push(offload_backlog_[offload_backlog_head_])) {
    ++offload_backlog_head_;
  }
  if (offload_backlog_head_ == offload_backlog_.size()) {
    offload_backlog_.clear();
    offload_backlog_head_ = 0;
  }
}

void AgentDataPath::TakeOffloadNotices(uint64_t now_ns) {
  FlowOffloadNotice n;
  while (offload_->notices.Pop(&n)) {
    NatFlow* f = flows_->FindInside(n.ref.proto, n.ref.dip, n.ref.dip_port, n.ref.remote,
                                    n.ref.remote_port);
    if (f == nullptr || !(NatFlowRef::Of(*f) == n.ref) ||
        (f->offload & NatFlow::kOffered) == 0 || OfferGeneration(*f) != n.generation) {
      counters_.offload_notices_stale.Add();
      continue;
    }
    if (n.kind == FlowOffloadNotice::Kind::kActive) {
      // The NIC carried packets of the flow since its previous reading: as good as software
      // seeing one now (idle time, and the aged-flow check below, count from here).
      f->last_seen_ns = std::max(f->last_seen_ns, now_ns);
      continue;
    }
    if (n.kind == FlowOffloadNotice::Kind::kPlaced) {
      if (n.nic_rules > 0) {
        f->offload |= NatFlow::kNicServed;
      } else {
        f->offload &= static_cast<uint8_t>(~NatFlow::kNicServed);
      }
      continue;
    }
    // Aged: the NIC holds none of the flow's rules any more. Idle since software last saw
    // it, it goes as an idle flow goes (a SNAT port waits out its reuse delay); otherwise
    // software serves it again and the aging scan offers it anew.
    f->offload = static_cast<uint8_t>(f->offload & (NatFlow::kAnswered | 7u << NatFlow::kGenerationShift));
    counters_.flows_aged_in_nic.Add();
    const NatFlowState state = StateOf(*f);
    const uint64_t idle = now_ns > f->last_seen_ns ? now_ns - f->last_seen_ns : 0;
    if (idle >= IdleTimeoutNs(*f, state)) ExpireIdle(*f, state, now_ns);
  }
}

bool AgentDataPath::CopyFlows(size_t limit, uint32_t dip, std::chrono::milliseconds timeout,
                              std::vector<NatFlow>* flows, uint64_t* total) {
  std::lock_guard<std::mutex> one_at_a_time(copy_request_mu_);
  std::unique_lock<std::mutex> lock(copy_mu_);
  copy_limit_ = limit;
  copy_dip_ = dip;
  copy_flows_.clear();
  copy_flows_.reserve(std::min<size_t>(limit, flows_->capacity()));
  copy_pending_.store(true, std::memory_order_release);
  if (!copy_done_.wait_for(lock, timeout, [this] { return !copy_pending_.load(); })) {
    copy_pending_.store(false);
    return false;
  }
  *flows = std::move(copy_flows_);
  *total = copy_total_;
  return true;
}

void AgentDataPath::ServeFlowCopy() {
  {
    std::lock_guard<std::mutex> lock(copy_mu_);
    if (!copy_pending_.load()) return;  // the caller gave up
    copy_total_ = flows_->size();
    flows_->Scan(flows_->capacity(), [this](NatFlow& f) {
      if (copy_flows_.size() < copy_limit_ && (copy_dip_ == 0 || f.dip == copy_dip_)) {
        copy_flows_.push_back(f);
      }
    });
    copy_pending_.store(false, std::memory_order_release);
  }
  copy_done_.notify_all();
}

void AgentDataPath::Housekeeping(rte_mempool* pool, uint64_t now_ns) {
  if (copy_pending_.load(std::memory_order_acquire)) ServeFlowCopy();
  if (offload_ != nullptr) {
    FlushOffloadBacklog();
    TakeOffloadNotices(now_ns);
  }
  AgeFlows(now_ns);
  AgentPort& uplink = *ports_[0];
  for (size_t i = 0; i < wanted_count_; ++i) {
    if (rte_mbuf* m = rte_pktmbuf_alloc(pool)) {
      uint16_t len = uplink.arp.BuildRequest(rte_pktmbuf_mtod(m, uint8_t*),
                                             config_.address.addr, wanted_neighbors_[i]);
      m->data_len = len;
      m->pkt_len = len;
      uplink.tx.Push(m);
    }
  }
  wanted_count_ = 0;
  flow::MacAddr gateway_mac;
  if (!uplink.neighbors.Lookup(config_.gateway, &gateway_mac)) {
    if (uplink.neighbors.ShouldRequest(config_.gateway, now_ns)) {
      if (rte_mbuf* m = rte_pktmbuf_alloc(pool)) {
        uint16_t len = uplink.arp.BuildRequest(rte_pktmbuf_mtod(m, uint8_t*),
                                               config_.address.addr, config_.gateway);
        m->data_len = len;
        m->pkt_len = len;
        uplink.tx.Push(m);
      }
    }
    return;
  }
  if (!ready() || gateway_mac != gateway_mac_) InstallRules(gateway_mac);
}

void AgentDataPath::InstallRules(const flow::MacAddr& gateway_mac) {
  std::string error;
  std::vector<flow::Rule> rules = BuildAgentRules(config_, port_map_, gateway_mac);
  auto table = sw::RuleTable::Build(rules, &error);
  if (table == nullptr) {
    fprintf(stderr, "sluice-agent %s: rules rejected: %s\n", config_.name.c_str(),
            error.c_str());
    return;
  }
  executor_.SetRules(table);
  PostRules(table->rules());
  if (offload_ != nullptr && ready() && gateway_mac != gateway_mac_) {
    // Flows offered via the router carry its old MAC: the aging scan offers them again.
    flows_->Scan(flows_->capacity(), [](NatFlow& f) {
      if ((f.offload & NatFlow::kOffered) && (f.offload & NatFlow::kOfferedFastpath) == 0) {
        f.offload |= NatFlow::kOfferStale;
      }
    });
  }
  gateway_mac_ = gateway_mac;
  gateway_mac_bits_.store(MacBits(gateway_mac), std::memory_order_release);
  installed_rules_.Reset();
  installed_rules_.Add(rules.size());
  ready_.store(true);
}

void AgentDataPath::PostRules(const std::vector<flow::Rule>& rules) {
  if (!rule_listener_) return;
  std::vector<flow::Rule> nic_rules;
  nic_rules.reserve(rules.size());
  for (const flow::Rule& rule : rules) {
    const size_t e = rule.id / 4;  // rules.h: id = endpoint index * 4 + kind
    if (KindOf(rule) != RuleKind::kDsrReturn && e < endpoints_.size() && endpoints_[e].shared) {
      continue;
    }
    nic_rules.push_back(rule);
  }
  rule_listener_(nic_rules);
}

void AgentDataPath::FlushAll() {
  for (auto& port : ports_) port->tx.Flush();
}

uint64_t AgentDataPath::Drops(DropReason reason) const {
  size_t r = static_cast<size_t>(reason);
  return drops_[r].Get() + executor_.counters().drops[r].Get();
}

}  // namespace sluice::agent
