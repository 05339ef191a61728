#!/usr/bin/env bash
# End-to-end: packet walk 4, Fastpath. vm1 (host1) downloads 5 MB from VIP2, which only
# host2's VMs serve. The SYN goes vm1 -> host1 (SNAT to VIP:port) -> router -> mux -> host2;
# the SYN-ACK comes back through a mux's SNAT range to host1. When the mux sees the
# handshake complete it sends an authenticated redirect to both agents, and from then on
# host1 and host2 encapsulate to each other directly. Goal (issue 5): the muxes see < 1 % of
# the connection's packets, measured from counter deltas around the download (the work is
# lab_fastpath_download in deploy/lab/lib.sh, which the demo runs too). Needs root; exit 77
# (skip) otherwise.
set -uo pipefail
# shellcheck source=deploy/lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../deploy/lab/lib.sh"

lab_skip_unless_root
trap 'lab_down quiet' EXIT
trap 'exit 130' INT TERM

lab_up || lab_fail "lab up failed"
lab_poll 15 0.5 lab_vip_answers || lab_fail "no answer from the VIP within 15s"
echo "=== Fastpath report ==="
# With host2 on Open vSwitch a redirect becomes a flow through one ovs-ofctl round trip to
# ovs-vswitchd (measured here 20-220 ms, growing with the machine's load; the DPDK agent
# applies it in its data path within a round trip), and the connection stays on the muxes
# meanwhile: that variant downloads 30 MB at 2.5 MB/s (12 s), so the goal is about the
# connection's life, not about how fast the load lets a download finish (unthrottled, 20 MB
# took 0.4 s and an install of 100 ms was already > 1 %; fastpath.install_us_* in host2's stats).
bytes=5000000 rate=""
[[ $LAB_HOST2 == ovs ]] && bytes=30000000 rate=2500000
lab_fastpath_download "$bytes" "$rate" || lab_fail "Fastpath goal missed"
[[ $LAB_HOST2 == ovs ]] && echo "  host2 installed its Fastpath flow in $(lab_stat host2 fastpath.install_us_last) us"
bad_auth=$(lab_stat_sum drops.fastpath_redirect_bad_auth "${LAB_AGENTS[@]}")
((bad_auth == 0)) || lab_fail "$bad_auth redirects failed authentication"
((100 * $(lab_stat host1 fastpath.redirects_applied_source) > 0)) ||
  lab_fail "host1 applied no redirect"
# The other way round: vm3 (host2) downloads from VIP1; the connections Maglev gives to
# host1's VMs go host to host with host2 as the source (on OVS: its table-3 GRE flows).
source_applied() { (($(lab_stat host2 fastpath.redirects_applied_source) > 0)); }
for _ in 1 2 3 4 5 6 7 8 9 10; do
  got=$(lab_ns sl-vm3 curl -s --connect-timeout 3 --max-time 20 -o /dev/null \
    -w '%{size_download}' "http://$LAB_VIP:$LAB_VIP_PORT/stream?bytes=300000")
  [[ "$got" == 300000 ]] || lab_fail "vm3's download from VIP1 received $got of 300000 bytes"
  source_applied && break
done
source_applied || lab_fail "host2 applied no redirect as the source host"
echo "  vm3 (host2) -> VIP1: host2 applied $(lab_stat host2 fastpath.redirects_applied_source) redirect(s) as source, host1 $(lab_stat host1 fastpath.redirects_applied_destination) as destination"

# Reconcile, don't wipe (OVS variant): a long-lived Fastpath connection crosses a kill -9 and
# restart of host2's agent. The new agent adopts the Fastpath flows it finds on the bridge
# (their connections are valid in its config) without touching them, so the connection keeps
# going host to host: it completes and the muxes see none of its packets after the restart.
# The DPDK agent (default variant) restores the connection from its flow state file and learns
# the peer's encapsulation again from the peer's first packet: until then a few of host2's
# packets take the router and a mux (at most RELEARN_SLACK), then host to host again.
RELEARN_SLACK=20
if true; then
  echo "=== host2's agent killed (-9) and restarted under a Fastpath connection ==="
  bytes=3000000
  rate=150000
  result=$LAB_RUN/fastpath_restart_result.txt
  : >"$result"
  applied_before=$(lab_stat host2 fastpath.redirects_applied_destination)
  lab_ns sl-vm1 curl -s --connect-timeout 3 --max-time 60 -o /dev/null \
    -w '%{http_code} %{size_download}' \
    "http://$LAB_VIP2:$LAB_VIP_PORT/stream?bytes=$bytes&rate=$rate" >"$result" 2>&1 &
  load_pid=$!
  mux_packets() {
    echo $(($(lab_stat_sum vip_packets "${LAB_MUXES[@]}") +
      $(lab_stat_sum snat_return_packets "${LAB_MUXES[@]}")))
  }
  redirected() {
    (($(lab_stat host2 fastpath.redirects_applied_destination) > applied_before)) || return 1
    [[ $LAB_HOST2 != ovs ]] || (($(lab_stat host2 fastpath.flows) > 0))
  }
  lab_poll 15 0.2 redirected || lab_fail "host2 applied no redirect for the long download"
  mux_at_kill=$(mux_packets)
  lab_kill_daemon host2 KILL || lab_fail "could not kill host2's agent"
  lab_start_daemon host2 || lab_fail "could not restart host2's agent"
  lab_wait_ready host2 || lab_fail "host2's agent not ready after the restart"
  mux_after_restart=$(mux_packets)
  fp_after_restart=$(lab_stat host2 fastpath_packets)
  if [[ $LAB_HOST2 == ovs ]]; then
    adopted=$(lab_stat host2 fastpath.adopted_at_start)
    stale=$(lab_stat host2 fastpath.removed_stale)
    echo "  host2 restarted: Fastpath flows adopted $adopted, removed as stale $stale;" \
      "reconcile kept $(lab_stat host2 ovs.start_flows_kept), wrote $(lab_stat host2 ovs.start_flows_written), removed $(lab_stat host2 ovs.start_flows_removed)"
    ((adopted > 0)) || lab_fail "host2's restarted agent adopted no Fastpath flow"
    slack=0
  else
    kept=$(lab_stat host2 flows.kept_at_start)
    echo "  host2 restarted: $kept NAT flow(s) kept from its flow state file"
    ((kept > 0)) || lab_fail "host2's restarted agent kept no flow from its state file"
    slack=$RELEARN_SLACK
  fi
  pid_gone() { lab_pid_gone "$load_pid"; }
  lab_poll 60 0.5 pid_gone || lab_fail "the long download still runs 60 s after the restart"
  mux_end=$(mux_packets)
  fp_end=$(lab_stat host2 fastpath_packets)
  echo "  download across the restart: HTTP/size '$(cat "$result")'; mux packets while the" \
    "agent was down: $((mux_after_restart - mux_at_kill)), after the restart: $((mux_end - mux_after_restart));" \
    "host2 Fastpath packets after the restart: $((fp_end - fp_after_restart))"
  [[ "$(cat "$result")" == "200 $bytes" ]] || lab_fail "the download did not survive the agent restart"
  if [[ $LAB_HOST2 != ovs ]]; then
    relearned=$(lab_stat host2 fastpath.peers_relearned)
    echo "  host2 learnt $relearned Fastpath peer encapsulation(s) again from the peer's packets"
    ((relearned > 0)) || lab_fail "host2 did not learn its Fastpath peer's encapsulation again"
  fi
  ((mux_end - mux_after_restart <= slack)) ||
    lab_fail "the muxes carried $((mux_end - mux_after_restart)) packets after host2's restart (allowed $slack: the connection left the Fastpath)"
  ((fp_end > fp_after_restart)) || lab_fail "host2's Fastpath flows carried nothing after the restart"
fi
echo "PASS: after the handshake the connection went host to host"
