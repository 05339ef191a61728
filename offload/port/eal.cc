#include "offload/port/eal.h"

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

namespace sluice::port {

int InitEal(int argc, char** argv, std::string* error) {
  int consumed = rte_eal_init(argc, argv);
  if (consumed < 0) {
    *error = std::string("DPDK EAL initialisation failed: ") + rte_strerror(rte_errno);
    return -1;
  }
  return consumed;
}

rte_mempool* CreatePacketPool(const std::string& name, uint32_t mbufs, std::string* error) {
  rte_mempool* pool = rte_pktmbuf_pool_create(name.c_str(), mbufs, 256, 0,
                                              RTE_MBUF_DEFAULT_BUF_SIZE,
                                              static_cast<int>(rte_socket_id()));
  if (pool == nullptr) {
    *error = "cannot create mbuf pool '" + name + "' of " + std::to_string(mbufs) +
             " buffers: " + rte_strerror(rte_errno) + " (is -m / hugepage memory enough?)";
  }
  return pool;
}

}  // namespace sluice::port
