// A private, hugepage-free EAL for fuzz targets that need mbufs (started once per process),
// and mbufs made from fuzz input.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <rte_eal.h>
#include <rte_mbuf.h>

namespace sluice::fuzz {

/// Brings up a private EAL (no hugepages, no PCI, no shared files) once per process.
inline void StartPrivateEal() {
  static bool started = false;
  if (started) return;
  std::string prefix = "sluice-fuzz-" + std::to_string(getpid());
  std::vector<std::string> args = {"fuzz", "--no-huge", "--no-shconf", "--no-pci",
                                   "--no-telemetry", "-l", "0", "-m", "256",
                                   "--log-level", "*:crit", "--file-prefix", prefix};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(argv.size()), argv.data()) < 0) {
    fprintf(stderr, "fuzz: rte_eal_init failed\n");
    abort();
  }
  started = true;
}

/// Copies `frame` (possibly empty) into a fresh mbuf from `pool`; nullptr if the pool is
/// empty.
inline rte_mbuf* MbufFrom(rte_mempool* pool, const std::vector<uint8_t>& frame) {
  rte_mbuf* m = rte_pktmbuf_alloc(pool);
  if (m == nullptr) return nullptr;
  char* dst = rte_pktmbuf_append(m, static_cast<uint16_t>(frame.size()));
  if (dst == nullptr) {
    rte_pktmbuf_free(m);
    return nullptr;
  }
  if (!frame.empty()) memcpy(dst, frame.data(), frame.size());
  return m;
}

}  // namespace sluice::fuzz
