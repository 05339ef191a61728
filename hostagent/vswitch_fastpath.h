// vswitch mode's per-connection Fastpath flows as agent state. Which flows on the bridge are
// Fastpath flows is in their cookie; what connection each carries is read back from the flow
// itself (its match and GRE actions are the redirect's fields), so a restarted agent rebuilds
// its Fastpath bookkeeping from the bridge, keeps the flows the current config would still
// install (untouched: counters and OVS's idle timer go on) and removes the others, counted by
// reason. No state file: the flow carries everything the bookkeeping needs.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "hostagent/config.h"
#include "offload/packet/fastpath_redirect.h"
#include "vswitch/executor.h"
#include "vswitch/translate.h"

namespace sluice::agent {

/// Cookie of every per-connection Fastpath flow: kFastpathCookie | a 16-bit sequence number.
/// The marking a restarted agent recognises them by; the executor's Reconcile leaves this
/// class alone (OvsExecutorConfig::unmanaged_cookie), the agent installs and removes them.
inline constexpr uint64_t kFastpathCookie = vswitch::kBaseCookie | 0x80000;
inline constexpr uint64_t kFastpathCookieMask = ~uint64_t{0xffff};
inline bool IsFastpathCookie(uint64_t cookie) {
  return (cookie & kFastpathCookieMask) == kFastpathCookie;
}

/// One flow as `ovs-ofctl dump-flows` prints it (or as the agent wrote it).
struct DumpedFlow {
  uint64_t cookie = 0;
  uint8_t table = 0;
  uint16_t priority = 0;
  uint16_t idle_timeout = 0;
  uint64_t packets = 0;
  std::string match;  ///< Without priority, in OVS's field order or the writer's.
  std::string actions;

  /// Table, priority and the match with its fields sorted: the same for a flow as written
  /// and as OVS prints it back; unique on a bridge.
  std::string Identity() const;
};
/// A `dump-flows` line; false for a line that is no flow (the reply header, empty).
bool ParseDumpedFlow(std::string_view line, DumpedFlow* flow);
DumpedFlow FromOvsFlow(const vswitch::OvsFlow& flow);

/// Why a Fastpath flow the agent finds (at start, or after a config change) is removed.
enum class FastpathStale : uint8_t {
  kUnreadable = 0,  ///< Fastpath cookie, but not a flow FastpathFlows makes.
  kLocalPaGone,     ///< Its GRE source (the host PA; destination side: the VM's PA) is no
                    ///< longer an address of this host.
  kSnatLeaseGone,   ///< Source side: no VM here has a lease of the flow's VIP:port.
  kEndpointGone,    ///< Destination side: the VM, or its endpoint for the VIP:port, is gone.
  kChanged,         ///< Still ours, but the config would install another flow for it now
                    ///< (another VM port or DIP port, conntrack or not, peer outside the
                    ///< underlay).
  kCount
};
inline constexpr size_t kNumFastpathStale = static_cast<size_t>(FastpathStale::kCount);
inline constexpr std::array<std::string_view, kNumFastpathStale> kFastpathStaleNames = {
    "unreadable", "local_pa_gone", "snat_lease_gone", "endpoint_gone", "changed"};

/// The connection one Fastpath flow carries, with the flow.
struct FastpathConnection {
  bool source = false;  ///< Source side (table 4: our VM's SNAT'd packets) or destination.
  /// The redirect's fields as far as the flow carries them (the source side has no DIP;
  /// no timestamp or encapsulations).
  packet::FastpathRedirect redirect;
  uint32_t peer_pa = 0;  ///< Where the flow sends its packets in GRE.
  DumpedFlow flow;
};

/// Reads the connection of a Fastpath flow and checks that `config` (its VMs on OpenFlow
/// ports `vm_ofports`) would install exactly this flow for it now: FastpathFlows for the
/// redirect the flow was made from must give the same table, priority, match and actions
/// (the idle timeout is left to OVS). Returns why not, or nullopt and `*connection`.
std::optional<FastpathStale> CheckFastpathFlow(const DumpedFlow& flow, const AgentConfig& config,
                                               const std::vector<uint32_t>& vm_ofports,
                                               FastpathConnection* connection);

/// The bridge's Fastpath flows read at an agent start.
struct FastpathAdoption {
  std::vector<FastpathConnection> adopted;  ///< Valid: kept on the bridge as they are.
  std::vector<DumpedFlow> stale;            ///< To remove.
  std::array<uint64_t, kNumFastpathStale> stale_by_reason{};
  uint16_t next_sequence = 0;  ///< Continues after the newest cookie in use.
};
FastpathAdoption AdoptFastpathFlows(std::string_view dump, const AgentConfig& config,
                                    const std::vector<uint32_t>& vm_ofports);

/// What an agent start does with the bridge it finds: reads its flows, adopts the Fastpath
/// flows `config` still installs (untouched) and removes the others (one bundle), then
/// reconciles the executor's staged flows (Fastpath flows are outside its cookie class).
struct StartReconcile {
  FastpathAdoption fastpath;
  vswitch::ReconcileReport flows;
};
absl::StatusOr<StartReconcile> ReconcileAtStart(vswitch::OpenFlowChannel* channel,
                                                vswitch::OvsExecutor* executor,
                                                const AgentConfig& config,
                                                const std::vector<uint32_t>& vm_ofports);

/// Bundle lines removing exactly these flows (`delete_strict` by table, priority, match and
/// the exact cookie).
std::string DeleteStrictLines(const std::vector<DumpedFlow>& flows);

}  // namespace sluice::agent
