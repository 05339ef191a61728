#include "hostagent/snat_ports.h"

#include <gtest/gtest.h>

namespace sluice::agent {
namespace {

constexpr uint32_t kVip = 0x0ac8000a;
constexpr uint32_t kVip2 = 0x0ac80014;

AgentConfig Config() {
  return AgentConfig{
      .vms = {{.name = "vm1", .dip = 0x0a010001}, {.name = "vm2", .dip = 0x0a010002}},
      .snat_leases = {
          {.dip = 0x0a010001, .vip = kVip, .proto = 6, .port_start = 20000, .port_count = 3},
          {.dip = 0x0a010001, .vip = kVip2, .proto = 6, .port_start = 30000, .port_count = 2},
          {.dip = 0x0a010002, .vip = kVip, .proto = 17, .port_start = 20064, .port_count = 1},
      }};
}

TEST(SnatPortPoolTest, HandsOutLeasedPortsThenRunsOut) {
  SnatPortPool pool(Config());
  EXPECT_EQ(pool.Leased(0, 6), 5u);
  EXPECT_EQ(pool.Leased(0, 17), 0u);
  EXPECT_FALSE(pool.HasLease(0, 17));
  EXPECT_TRUE(pool.HasLease(1, 17));
  std::vector<std::pair<uint32_t, uint16_t>> got;
  uint32_t vip;
  uint16_t port;
  while (pool.Take(0, 6, &vip, &port)) got.emplace_back(vip, port);
  EXPECT_EQ(got, (std::vector<std::pair<uint32_t, uint16_t>>{
                     {kVip, 20000}, {kVip, 20001}, {kVip, 20002}, {kVip2, 30000}, {kVip2, 30001}}));
  EXPECT_EQ(pool.InUse(0, 6), 5u);
  EXPECT_FALSE(pool.Take(0, 17, &vip, &port));  // no UDP lease for vm1
  EXPECT_FALSE(pool.Take(7, 6, &vip, &port));   // no such VM
  EXPECT_FALSE(pool.Take(0, 1, &vip, &port));   // not TCP/UDP
}

TEST(SnatPortPoolTest, ReleasedPortsQueueBehindTheOnesFreeLonger) {
  SnatPortPool pool(Config());
  uint32_t vip;
  uint16_t port;
  ASSERT_TRUE(pool.Take(0, 6, &vip, &port));
  EXPECT_EQ(port, 20000);
  pool.Release(0, 6, vip, port);
  EXPECT_EQ(pool.InUse(0, 6), 0u);
  std::vector<uint16_t> order;
  while (pool.Take(0, 6, &vip, &port)) order.push_back(port);
  EXPECT_EQ(order, (std::vector<uint16_t>{20001, 20002, 30000, 30001, 20000}));
  pool.Release(0, 6, kVip, 20002);
  pool.Release(0, 6, kVip, 20002);  // twice: no effect
  pool.Release(0, 6, kVip, 29999);  // not leased: no effect
  ASSERT_TRUE(pool.Take(0, 6, &vip, &port));
  EXPECT_EQ(port, 20002);
  EXPECT_FALSE(pool.Take(0, 6, &vip, &port));
}

TEST(SnatPortPoolTest, ClaimedPortsOfRestoredFlowsAreSkipped) {
  SnatPortPool pool(Config());
  EXPECT_TRUE(pool.Claim(0, 6, kVip, 20001));
  EXPECT_FALSE(pool.Claim(0, 6, kVip, 20001));  // already in use
  EXPECT_FALSE(pool.Claim(0, 6, kVip, 20005));  // not leased
  EXPECT_FALSE(pool.Claim(1, 6, kVip, 20000));  // leased to vm1, not vm2
  EXPECT_EQ(pool.InUse(0, 6), 1u);
  std::vector<uint16_t> order;
  uint32_t vip;
  uint16_t port;
  while (pool.Take(0, 6, &vip, &port)) order.push_back(port);
  EXPECT_EQ(order, (std::vector<uint16_t>{20000, 20002, 30000, 30001}));
  pool.Release(0, 6, kVip, 20001);
  ASSERT_TRUE(pool.Take(0, 6, &vip, &port));
  EXPECT_EQ(port, 20001);
}

TEST(SnatPortPoolTest, KnowsWhichPortsAreLeased) {
  SnatPortPool pool(Config());
  EXPECT_TRUE(pool.IsLeased(kVip, 6, 20000));
  EXPECT_TRUE(pool.IsLeased(kVip, 6, 20002));
  EXPECT_FALSE(pool.IsLeased(kVip, 6, 20003));
  EXPECT_TRUE(pool.IsLeased(kVip, 17, 20064));
  EXPECT_FALSE(pool.IsLeased(kVip, 17, 20000));
  EXPECT_FALSE(pool.IsLeased(kVip2, 6, 20000));
}

}  // namespace
}  // namespace sluice::agent
