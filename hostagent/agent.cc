#include "hostagent/agent.h"

#include <cstdio>
#include <cstring>

#include <rte_mbuf.h>

#include "offload/packet/parse.h"

namespace sluice::agent {
namespace {

constexpr flow::MacAddr kBroadcast = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

}  // namespace

AgentDataPath::AgentDataPath(AgentConfig config, const PortMap& ports)
    : config_(std::move(config)), port_map_(ports) {
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
      drops_[static_cast<size_t>(reason)].Add();
      rte_pktmbuf_free(m);
      continue;
    }
    if (memcmp(frame, in.mac.data(), 6) != 0 && memcmp(frame, kBroadcast.data(), 6) != 0) {
      drops_[static_cast<size_t>(DropReason::kNotForUs)].Add();
      rte_pktmbuf_free(m);
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

void AgentDataPath::Housekeeping(rte_mempool* pool, uint64_t now_ns) {
  AgentPort& uplink = *ports_[0];
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
  if (!ready() || uplink.neighbors.generation() != installed_generation_) {
    installed_generation_ = uplink.neighbors.generation();
    InstallRules(gateway_mac);
  }
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
  installed_rules_.Reset();
  installed_rules_.Add(rules.size());
  ready_.store(true);
}

void AgentDataPath::FlushAll() {
  for (auto& port : ports_) port->tx.Flush();
}

uint64_t AgentDataPath::Drops(DropReason reason) const {
  size_t r = static_cast<size_t>(reason);
  return drops_[r].Get() + executor_.counters().drops[r].Get();
}


}  // namespace sluice::agent
