#include "mux_lite/flow_offload.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "offload/rte_flow/executor.h"
#include "offload/rte_flow/fake_flow_api.h"

namespace sluice::mux {
namespace {

const flow::MacAddr kMuxMac = {2, 0, 0, 0, 0, 0x11};
const flow::MacAddr kHostMac = {2, 0, 0, 0, 0, 0x21};

OffloadRequest Request(uint16_t sport) {
  return {.key = {.src = 0x0a640002, .dst = 0x0ac8000a, .src_port = sport, .dst_port = 80,
                  .proto = 6},
          .host_pa = 0x0a65001f,
          .next_hop_mac = kHostMac};
}

TEST(NicFlowOffloaderTest, AcceptingNicGetsOneRulePerEstablishedFlow) {
  nic::FakeFlowApi api;
  nic::NicExecutor executor(&api, {});
  NicFlowOffloader offloader(&executor, 0, 0x0a65000b, kMuxMac, flow::kDefaultGuePort, 300);
  for (uint16_t p = 1; p <= 3; ++p) ASSERT_TRUE(offloader.Offer(Request(p)));
  EXPECT_EQ(offloader.Drain(100), 3u);
  EXPECT_EQ(offloader.placement.nic.Get(), 3u);
  EXPECT_EQ(api.live.size(), 3u);
  EXPECT_EQ(flow::Validate(offloader.RuleFor(Request(1), 1)), "");
}

TEST(NicFlowOffloaderTest, RefusingPortLeavesFlowsInSoftwareWithTheReason) {
  nic::FakeFlowApi api;
  api.refuse = [](const nic::FlowSpec&) { return std::string("Function not implemented"); };
  nic::NicExecutor executor(&api, {});
  NicFlowOffloader offloader(&executor, 0, 0x0a65000b, kMuxMac, flow::kDefaultGuePort, 300);
  ASSERT_TRUE(offloader.Offer(Request(1)));
  offloader.Drain(100);
  EXPECT_EQ(offloader.placement.software.Get(), 1u);
  EXPECT_EQ(offloader.placement.nic.Get(), 0u);
  EXPECT_TRUE(api.live.empty());  // no rule leaks
  EXPECT_NE(offloader.last_refusal().find("Function not implemented"), std::string::npos)
      << offloader.last_refusal();
}

TEST(NicFlowOffloaderTest, FullRingIsCountedNotBlocking) {
  nic::FakeFlowApi api;
  nic::NicExecutor executor(&api, {});
  NicFlowOffloader offloader(&executor, 0, 0x0a65000b, kMuxMac, flow::kDefaultGuePort, 300);
  for (uint32_t i = 0; i < NicFlowOffloader::kRingSize; ++i) {
    ASSERT_TRUE(offloader.Offer(Request(static_cast<uint16_t>(i))));
  }
  EXPECT_FALSE(offloader.Offer(Request(1)));
  EXPECT_EQ(offloader.queue_full(), 1u);
  EXPECT_EQ(offloader.Drain(10), 10u);
  EXPECT_TRUE(offloader.Offer(Request(1)));
}

// Each worker lcore offers through its own ring; the control thread drains them all, fairly,
// and every flow gets its own rule.
TEST(NicFlowOffloaderTest, WorkersOfferThroughTheirOwnRings) {
  nic::FakeFlowApi api;
  nic::NicExecutor executor(&api, {});
  NicFlowOffloader offloader(&executor, 0, 0x0a65000b, kMuxMac, flow::kDefaultGuePort, 300,
                             /*workers=*/3);
  std::vector<std::thread> workers;
  for (size_t w = 0; w < 3; ++w) {
    workers.emplace_back([&offloader, w] {
      for (uint16_t p = 0; p < 100; ++p) {
        ASSERT_TRUE(offloader.Sink(w)->Offer(Request(static_cast<uint16_t>(w * 1000 + p))));
      }
    });
  }
  for (auto& t : workers) t.join();
  EXPECT_EQ(offloader.offered(), 300u);
  EXPECT_EQ(offloader.Drain(30), 30u);  // 10 from each ring
  EXPECT_EQ(offloader.Drain(1000), 270u);
  EXPECT_EQ(offloader.placement.nic.Get(), 300u);
  EXPECT_EQ(api.live.size(), 300u);  // distinct rule ids across workers
}

}  // namespace
}  // namespace sluice::mux
