// The lab's addresses and MACs (deploy/lab/config/host1.yaml, mux1.yaml) as the agent's data
// path tests use them: host1 with vm1 behind VIP 10.200.0.10, mux1, the router, a client.
#pragma once

#include <cstdint>

#include "offload/sw/fixture_builder.h"

namespace sluice::testing::lab {

inline const flow::MacAddr kRouterMac = fixture::Mac("02:00:00:00:00:01");
inline const flow::MacAddr kMuxMac = fixture::Mac("02:00:00:00:00:11");
inline const flow::MacAddr kVmMac = fixture::Mac("02:00:0a:01:00:01");
inline const flow::MacAddr kBroadcast = fixture::Mac("ff:ff:ff:ff:ff:ff");
inline const uint32_t kRouter = fixture::Ip("10.101.0.1");
inline const uint32_t kHostPa = fixture::Ip("10.101.0.21");
inline const uint32_t kVmPa = fixture::Ip("10.101.0.31");
inline const uint32_t kMuxPa = fixture::Ip("10.101.0.11");
inline const uint32_t kVip = fixture::Ip("10.200.0.10");
inline const uint32_t kDip = fixture::Ip("10.1.0.1");
inline const uint32_t kClient = fixture::Ip("10.100.0.2");

}  // namespace sluice::testing::lab
