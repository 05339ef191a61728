// Bringing up DPDK for a Sluice daemon: EAL from the command line, one mbuf pool.
#pragma once

#include <cstdint>
#include <string>

struct rte_mempool;

namespace sluice::port {

/// Runs rte_eal_init on the EAL part of argv (everything before "--"). On success returns
/// the number of arguments consumed (argv[consumed] is "--" or the end); on failure -1 and
/// `*error` says why.
int InitEal(int argc, char** argv, std::string* error);

/// Creates the packet buffer pool shared by a daemon's ports.
rte_mempool* CreatePacketPool(const std::string& name, uint32_t mbufs, std::string* error);

}  // namespace sluice::port
