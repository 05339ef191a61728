#include "mux_lite/flow_offload.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "offload/rte_flow/executor.h"
#include "offload/rte_flow/fake_flow_api.h"
#include "offload/sw/fixture_builder.h"

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
  EXPECT_EQ(api.live.size(), 3u + 2);  // and the FIN and RST rules of the port
  EXPECT_EQ(offloader.close_rules(), 2u);
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
  EXPECT_EQ(api.live.size(), 300u + 2);  // distinct rule ids across workers, + close rules
}

// The client's packets as the mux port sees them.
std::vector<uint8_t> ClientFrame(uint16_t sport, uint8_t flags) {
  using namespace fixture;
  return (Eth{.dst = kMuxMac, .src = kHostMac} / Ipv4{.src = 0x0a640002, .dst = 0x0ac8000a} /
          Tcp{.sport = sport, .dport = 80, .flags = flags} / Payload{.data = "hello"})
      .Bytes();
}

TEST(NicFlowOffloaderTest, CountsOfTheNicShowPerFlowAndInTotals) {
  nic::FakeFlowApi api;
  nic::NicExecutor executor(&api, {});
  NicFlowOffloader offloader(&executor, 0, 0x0a65000b, kMuxMac, flow::kDefaultGuePort, 300);
  ASSERT_TRUE(offloader.Offer(Request(1)));
  ASSERT_TRUE(offloader.Offer(Request(2)));
  offloader.Drain(100);
  const std::vector<uint8_t> frame = ClientFrame(2, fixture::kAck);
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(api.Inject(0, frame).to_software);
  EXPECT_EQ(offloader.QueryCounters(), 4u);  // 2 flows + 2 close rules
  size_t total = 0;
  std::vector<NicFlowOffloader::OffloadedFlow> flows = offloader.Flows(10, &total);
  ASSERT_EQ(total, 2u);
  ASSERT_EQ(flows.size(), 2u);
  EXPECT_EQ(flows[0].packets, 0u);
  EXPECT_EQ(flows[1].request.key.src_port, 2);
  EXPECT_EQ(flows[1].packets, 4u);
  EXPECT_EQ(flows[1].bytes, 4 * frame.size());
  EXPECT_EQ(offloader.nic_packets.Get(), 4u);
  EXPECT_EQ(offloader.nic_bytes.Get(), 4 * frame.size());
  // A failed query is counted with its reason and changes no reading.
  api.refuse_query = [](uint64_t) { return std::string("Operation not supported (errno 95)"); };
  api.Inject(0, frame);
  offloader.QueryCounters();
  EXPECT_EQ(offloader.count_query_errors.Get(), 4u);
  EXPECT_EQ(offloader.count_errors().begin()->first,
            "rte_flow_query: Operation not supported (errno 95)");
  EXPECT_EQ(offloader.Flows(10, &total)[1].packets, 4u);
  // An aged rule's flow leaves the list.
  api.AgeOut(api.FlowOf(2));
  offloader.Drain(1);
  EXPECT_EQ(offloader.Flows(10, &total).size(), 1u);
}

// The mux's flow table must see a client's FIN or RST even when the NIC encapsulates the
// flow's other packets: the close rules hand them to software.
TEST(NicFlowOffloaderTest, FinAndRstOfAnOffloadedFlowReachTheMux) {
  nic::FakeFlowApi api;
  nic::NicExecutor executor(&api, {});
  NicFlowOffloader offloader(&executor, 0, 0x0a65000b, kMuxMac, flow::kDefaultGuePort, 300);
  ASSERT_TRUE(offloader.Offer(Request(7)));
  offloader.Drain(100);
  nic::FakeFlowApi::Hit hit = api.Inject(0, ClientFrame(7, fixture::kAck));
  EXPECT_EQ(hit.rule_id, 1u);
  EXPECT_FALSE(hit.to_software);
  hit = api.Inject(0, ClientFrame(7, fixture::kFin | fixture::kAck));
  EXPECT_GE(hit.rule_id, NicFlowOffloader::kCloseRuleIdBase);
  EXPECT_TRUE(hit.to_software);
  EXPECT_TRUE(api.Inject(0, ClientFrame(7, fixture::kRst)).to_software);
  offloader.QueryCounters();
  EXPECT_EQ(offloader.closes_to_software.Get(), 2u);
  EXPECT_EQ(offloader.nic_packets.Get(), 1u);  // the flow's own rule saw only the data
  // Software saw the close and withdraws the flow's rule; the close rules stay.
  ASSERT_TRUE(offloader.Offer({.key = Request(7).key, .withdraw = true}));
  offloader.Drain(100);
  EXPECT_EQ(offloader.withdrawn.Get(), 1u);
  EXPECT_EQ(api.live.size(), 2u);
  EXPECT_EQ(api.Inject(0, ClientFrame(7, fixture::kAck)).flow, nullptr);  // to the mux again
}

TEST(NicFlowOffloaderTest, OfferCloseCyclesLeaveNoRuleBehind) {
  nic::FakeFlowApi api;
  nic::NicExecutor executor(&api, {});
  NicFlowOffloader offloader(&executor, 0, 0x0a65000b, kMuxMac, flow::kDefaultGuePort, 300);
  for (int cycle = 0; cycle < 50; ++cycle) {
    for (uint16_t p = 0; p < 20; ++p) ASSERT_TRUE(offloader.Offer(Request(1000 + p)));
    offloader.Drain(100);
    ASSERT_EQ(api.live.size(), 20u + 2) << "cycle " << cycle;
    for (uint16_t p = 0; p < 20; ++p) {
      ASSERT_TRUE(offloader.Offer({.key = Request(1000 + p).key, .withdraw = true}));
    }
    offloader.Drain(100);
    ASSERT_EQ(api.live.size(), 2u) << "cycle " << cycle;
  }
  size_t total = 0;
  EXPECT_TRUE(offloader.Flows(10, &total).empty());
  EXPECT_EQ(offloader.withdrawn.Get(), 1000u);
}

TEST(NicFlowOffloaderTest, APortThatRefusesTheCloseRulesSaysWhy) {
  nic::FakeFlowApi api;
  api.refuse = [](const nic::FlowSpec& spec) {
    return spec.HasAction(RTE_FLOW_ACTION_TYPE_QUEUE) ? std::string("QUEUE not supported") : "";
  };
  nic::NicExecutor executor(&api, {.allow_partial = false});
  NicFlowOffloader offloader(&executor, 0, 0x0a65000b, kMuxMac, flow::kDefaultGuePort, 300);
  ASSERT_TRUE(offloader.Offer(Request(7)));
  offloader.Drain(100);
  EXPECT_EQ(offloader.close_rules(), 0u);
  EXPECT_EQ(offloader.close_rules_error(), "rte_flow_create: QUEUE not supported");
  EXPECT_EQ(api.live.size(), 1u);  // the flow's rule; nothing of the close rules stays
}

}  // namespace
}  // namespace sluice::mux
