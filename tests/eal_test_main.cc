// GoogleTest main for tests that need DPDK mbufs: a private EAL without hugepages or PCI.
// (DPDK 22.11 rejects --no-huge with --in-memory; --no-shconf keeps it from writing files.)
#include <unistd.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <rte_eal.h>

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  std::string prefix = "sluice-test-" + std::to_string(getpid());
  std::vector<std::string> args = {"test", "--no-huge", "--no-shconf", "--no-pci",
                                   "--no-telemetry", "-l", "0", "-m", "128",
                                   "--log-level", "lib.eal:error", "--file-prefix", prefix};
  std::vector<char*> argv_eal;
  for (auto& a : args) argv_eal.push_back(a.data());
  if (rte_eal_init(static_cast<int>(argv_eal.size()), argv_eal.data()) < 0) {
    fprintf(stderr, "rte_eal_init failed\n");
    return 1;
  }
  int rc = RUN_ALL_TESTS();
  rte_eal_cleanup();
  return rc;
}
