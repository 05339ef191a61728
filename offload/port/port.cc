#include "offload/port/port.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>

#include <rte_bus.h>
#include <rte_dev.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

namespace sluice::port {
namespace {

constexpr uint16_t kRxDescriptors = 1024;
constexpr uint16_t kTxDescriptors = 1024;

}  // namespace

std::string DeviceName(const std::string& devargs) {
  return devargs.substr(0, devargs.find(','));
}

bool OpenPort(const std::string& devargs, rte_mempool* pool, uint16_t* port_id,
              std::string* error, uint16_t queues) {
  std::string name = DeviceName(devargs);
  if (rte_eth_dev_get_port_by_name(name.c_str(), port_id) != 0) {
    int rc = rte_dev_probe(devargs.c_str());
    if (rc != 0) {
      *error = "cannot probe DPDK device '" + devargs + "': " + rte_strerror(-rc);
      return false;
    }
    if (rte_eth_dev_get_port_by_name(name.c_str(), port_id) != 0) {
      *error = "device '" + devargs + "' probed but no ethdev port named '" + name + "'";
      return false;
    }
  }
  rte_eth_dev_info info;
  int rc = rte_eth_dev_info_get(*port_id, &info);
  if (rc != 0) {
    *error = "cannot read device info of '" + devargs + "': " + rte_strerror(-rc);
    return false;
  }
  if (queues == 0 || queues > info.max_rx_queues || queues > info.max_tx_queues) {
    *error = "port '" + devargs + "' has " + std::to_string(info.max_rx_queues) + " RX / " +
             std::to_string(info.max_tx_queues) + " TX queues, " + std::to_string(queues) +
             " needed (one per worker; net_af_packet takes qpairs=N)";
    return false;
  }
  rte_eth_conf conf;
  memset(&conf, 0, sizeof(conf));
  if (queues > 1) {
    // Hash what the port can of addresses and ports; a port that hashes nothing (the
    // software PMDs spread by their own means, e.g. af_packet's fanout) is left as it is.
    const uint64_t want = RTE_ETH_RSS_IPV4 | RTE_ETH_RSS_NONFRAG_IPV4_TCP |
                          RTE_ETH_RSS_NONFRAG_IPV4_UDP;
    conf.rx_adv_conf.rss_conf.rss_hf = want & info.flow_type_rss_offloads;
    if (conf.rx_adv_conf.rss_conf.rss_hf != 0) conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
  }
  rc = rte_eth_dev_configure(*port_id, queues, queues, &conf);
  if (rc == 0) {
    uint16_t rxd = kRxDescriptors, txd = kTxDescriptors;
    rte_eth_dev_adjust_nb_rx_tx_desc(*port_id, &rxd, &txd);
    int socket = rte_eth_dev_socket_id(*port_id);
    unsigned socket_id = socket < 0 ? 0 : static_cast<unsigned>(socket);
    for (uint16_t q = 0; rc == 0 && q < queues; ++q) {
      rc = rte_eth_rx_queue_setup(*port_id, q, rxd, socket_id, nullptr, pool);
      if (rc == 0) rc = rte_eth_tx_queue_setup(*port_id, q, txd, socket_id, nullptr);
    }
  }
  if (rc == 0) rc = rte_eth_dev_start(*port_id);
  if (rc != 0) {
    *error = "cannot start port '" + devargs + "': " + rte_strerror(-rc);
    return false;
  }
  return true;
}

flow::MacAddr PortMac(uint16_t port_id) {
  rte_ether_addr addr;
  flow::MacAddr mac{};
  if (rte_eth_macaddr_get(port_id, &addr) == 0) std::copy_n(addr.addr_bytes, 6, mac.begin());
  return mac;
}

void ClosePort(uint16_t port_id) {
  rte_eth_dev_stop(port_id);
  rte_eth_dev_close(port_id);
}

bool RemovePort(uint16_t port_id, std::string* error) {
  rte_eth_dev_info info;
  int rc = rte_eth_dev_info_get(port_id, &info);
  if (rc != 0 || info.device == nullptr) {
    *error = "port " + std::to_string(port_id) + " has no device: " + rte_strerror(-rc);
    return false;
  }
  rte_device* device = info.device;
  rte_eth_dev_stop(port_id);
  // Closing first releases the port; removing then detaches the device from its bus (for a
  // vdev, the driver finds no port left and frees the rest).
  rc = rte_eth_dev_close(port_id);
  if (rc != 0) {
    *error = "cannot close port " + std::to_string(port_id) + ": " + rte_strerror(-rc);
    return false;
  }
  rc = rte_dev_remove(device);
  if (rc != 0) {
    *error = "cannot remove the device of port " + std::to_string(port_id) + ": " +
             rte_strerror(-rc);
    return false;
  }
  return true;
}

uint16_t TxBuffer::Flush() {
  if (count_ == 0) return 0;
  uint16_t sent = rte_eth_tx_burst(port_id_, queue_, pkts_, count_);
  if (sent < count_) {
    rte_pktmbuf_free_bulk(pkts_ + sent, count_ - sent);
    tx_full_drops.Add(count_ - sent);
  }
  tx_packets.Add(sent);
  count_ = 0;
  return sent;
}

void IdleBackoff::Idle() {
  // Spin for a short while first: a burst often follows a burst.
  constexpr uint32_t kSpinPolls = 256;
  if (++empty_polls_ < kSpinPolls) return;
  uint32_t sleep_us = std::min<uint32_t>(max_sleep_us_, (empty_polls_ - kSpinPolls) * 10 + 10);
  usleep(sleep_us);
}

}  // namespace sluice::port
