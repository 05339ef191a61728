// How fast flow-IR rules become rte_flow descriptions, next to the software executor's
// rule-table build (sw::RuleTable::Build) measured in the same run, and the NIC executor's
// add+remove rate against a fake NIC that accepts everything (no PMD cost). Plain chrono
// timing; finishes in well under 5 s.
//
//   rte_flow_translate_bench [rules]   (default 20000)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "offload/flow/rule.h"
#include "offload/rte_flow/executor.h"
#include "offload/rte_flow/fake_flow_api.h"
#include "offload/rte_flow/translate.h"
#include "offload/sw/executor.h"

namespace {

using sluice::flow::Action;
using sluice::flow::Ipv4Match;
using sluice::flow::PortMatch;
using sluice::flow::Rule;
using sluice::flow::Tunnel;
using Clock = std::chrono::steady_clock;

constexpr double kMinSeconds = 0.25;  // per measurement

// A mix like an agent's and a mux's: inbound IPIP/GUE decap + NAT, DSR return, per-flow
// encap with count + age. Every rule distinct.
std::vector<Rule> MakeRules(size_t n) {
  std::vector<Rule> rules;
  rules.reserve(n);
  const sluice::flow::MacAddr a{2, 0, 0, 0, 0, 1}, b{2, 0, 0, 0, 0, 2};
  for (size_t i = 0; i < n; ++i) {
    const uint32_t vip = 0x0ac80000u + static_cast<uint32_t>(i);
    const uint32_t dip = 0x0a010000u + static_cast<uint32_t>(i);
    const auto port = static_cast<uint16_t>(1024 + i % 60000);
    Rule r{.id = i, .priority = 100};
    switch (i % 4) {
      case 0:
      case 1:
        r.match = {.in_port = 0,
                   .tunnel = i % 4 == 0 ? Tunnel::kIpip : Tunnel::kGue,
                   .outer_dst = Ipv4Match::Exact(0x0a000101),
                   .dst = Ipv4Match::Exact(vip),
                   .proto = sluice::flow::kProtoTcp,
                   .dst_port = PortMatch::Exact(80)};
        r.actions = {Action::Decap(),  Action::SetIpv4Dst(dip), Action::SetL4Dst(port),
                     Action::DecTtl(), Action::SetMac(a, b),    Action::Count(),
                     Action::Output(2)};
        break;
      case 2:
        r.match = {.in_port = 2,
                   .src = Ipv4Match::Exact(dip),
                   .proto = sluice::flow::kProtoTcp,
                   .src_port = PortMatch::Exact(port)};
        r.actions = {Action::SetIpv4Src(vip), Action::SetL4Src(80), Action::DecTtl(),
                     Action::SetMac(a, b),    Action::Count(),      Action::Output(0)};
        break;
      default:
        r.priority = 200;
        r.match = {.in_port = 0,
                   .src = Ipv4Match::Exact(0xc6336400u + static_cast<uint32_t>(i % 250)),
                   .dst = Ipv4Match::Exact(vip),
                   .proto = sluice::flow::kProtoTcp,
                   .src_port = PortMatch::Exact(port),
                   .dst_port = PortMatch::Exact(80)};
        r.actions = {
            Action::Encap({.type = Tunnel::kGue, .outer_src = 0x0a000002, .outer_dst = 0x0a000101}),
            Action::SetMac(a, b), Action::Count(), Action::Age(30), Action::Output(0)};
        break;
    }
    rules.push_back(std::move(r));
  }
  return rules;
}

// Runs `pass` (which handles `per_pass` rules) until kMinSeconds have passed; rules/s.
template <typename Pass>
double RulesPerSecond(size_t per_pass, Pass pass) {
  size_t done = 0;
  const Clock::time_point start = Clock::now();
  double seconds = 0;
  do {
    pass();
    done += per_pass;
    seconds = std::chrono::duration<double>(Clock::now() - start).count();
  } while (seconds < kMinSeconds);
  return static_cast<double>(done) / seconds;
}

}  // namespace

int main(int argc, char** argv) {
  const size_t n = argc > 1 ? strtoul(argv[1], nullptr, 10) : 20000;
  const std::vector<Rule> rules = MakeRules(n);

  // IR → rte_flow structures (one reused FlowSpec, as the executor does).
  sluice::nic::FlowSpec spec;
  const sluice::nic::TranslateOptions options{.transfer = true, .group = 1};
  size_t failures = 0;
  const double translate = RulesPerSecond(n, [&] {
    for (const Rule& r : rules) failures += !sluice::nic::Translate(r, options, &spec).empty();
  });
  if (failures != 0) {
    fprintf(stderr, "rte_flow_translate_bench: %zu rules failed to translate\n", failures);
    return 1;
  }

  // Baseline: the software executor's table build over the same rules (validate + order).
  std::string error;
  const double sw_build = RulesPerSecond(n, [&] {
    if (sluice::sw::RuleTable::Build(rules, &error) == nullptr) {
      fprintf(stderr, "rte_flow_translate_bench: %s\n", error.c_str());
      exit(1);
    }
  });

  // The whole NIC executor (validate, translate, fake create, bookkeeping) + remove.
  sluice::nic::FakeFlowApi nic;
  sluice::nic::NicExecutor executor(&nic, sluice::nic::NicExecutorConfig{.transfer = true});
  const double add_remove = RulesPerSecond(n, [&] {
    for (const Rule& r : rules) executor.Add(r);
    for (const Rule& r : rules) executor.Remove(r.id);
  });

  printf("rules: %zu (inbound ipip/gue decap+nat, dsr return, gue per-flow encap)\n", n);
  printf("translate IR -> rte_flow        %12.0f rules/s\n", translate);
  printf("sw::RuleTable::Build (baseline) %12.0f rules/s\n", sw_build);
  printf("ratio translate / sw build      %12.2f\n", translate / sw_build);
  printf("NicExecutor add+remove (fake)   %12.0f rules/s added and removed (ratio %.2f)\n",
         add_remove, add_remove / sw_build);
  return 0;
}
