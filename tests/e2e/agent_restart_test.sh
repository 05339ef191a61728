#!/usr/bin/env bash
# End-to-end: kill -9 an agent during live connections and start it again (issue 5 item 4).
# Live on host1 when it dies: slow inbound downloads through the VIP (stateless DSR rules)
# and slow SNAT downloads from vm1/vm2 to the internet server (per-flow NAT state, which
# must come back from the agent's flow state file). The agent is restarted at once with
# only its boot YAML: its endpoints and SNAT leases (given by `sluicectl apply` at lab up)
# come back from its cloud state file (agent.cloud_state_file) before any controller call.
# Every download must complete intact, and the restarted agent must report that it
# restored the SNAT flows. Needs root; exit 77 (skip) otherwise.
set -uo pipefail
# shellcheck source=deploy/lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../deploy/lab/lib.sh"

INBOUND=24
SNAT_PER_VM=8
BYTES=120000
RATE=20000   # 6 s per download: all are mid-transfer when the agent dies

lab_skip_unless_root
load_pids=()
cleanup() {
  local p
  for p in "${load_pids[@]}"; do pkill -P "$p" 2>/dev/null; done
  lab_down quiet
}
trap cleanup EXIT
trap 'exit 130' INT TERM

lab_up || lab_fail "lab up failed"
lab_poll 15 0.5 lab_vip_answers || lab_fail "no answer from the VIP within 15s"

RESULTS=$LAB_RUN/agent_restart_results.txt
: >"$RESULTS"
# download NS LABEL URL COUNT : COUNT parallel curls in NS, one result line each.
download() {
  # shellcheck disable=SC2016  # expanded by the inner bash
  seq "$4" | lab_ns "$1" xargs -P "$4" -I{} bash -c '
    curl -s --max-time 90 -o /dev/null -w "$1 %{http_code} %{size_download}\n" "$2" >>"$3" 2>&1 ||
      echo "$1 curl-exit-$? 0" >>"$3"' _ "$2" "$3" "$RESULTS" &
  load_pids+=($!)
}
download sl-client inbound "http://$LAB_VIP:$LAB_VIP_PORT/stream?bytes=$BYTES&rate=$RATE" "$INBOUND"
for vm in vm1 vm2; do
  download "sl-$vm" "snat-$vm" \
    "http://$LAB_INTERNET:$LAB_INTERNET_PORT/stream?bytes=$BYTES&rate=$RATE" "$SNAT_PER_VM"
done
want=$((INBOUND + 2 * SNAT_PER_VM))

snat_flows_up() { (($(lab_stat host1 flows.active) >= 2 * SNAT_PER_VM)); }
lab_poll 20 0.2 snat_flows_up ||
  lab_fail "host1 has $(lab_stat host1 flows.active) NAT flows, want >= $((2 * SNAT_PER_VM))"
established() {
  (($(lab_ns sl-client ss -Htn state established "( dport = :$LAB_VIP_PORT )" | wc -l) >= INBOUND))
}
lab_poll 20 0.2 established || lab_fail "the inbound downloads did not all start"
echo "  live: $INBOUND inbound downloads, $((2 * SNAT_PER_VM)) SNAT downloads from host1's VMs"
echo "  host1 NAT flows before the kill: $(lab_stat host1 flows.active)"

killed_ms=$(lab_now_ms)
lab_kill_daemon host1 KILL || lab_fail "could not kill host1's agent"
lab_start_daemon host1 || lab_fail "could not start host1's agent again"
lab_wait_ready host1 || lab_fail "host1's agent did not come back"
echo "  kill -9 host1's agent, restarted and ready after $(($(lab_now_ms) - killed_ms)) ms"
# Before anyone applies anything again: the cloud state is the one sluicectl applied.
served=$("$LAB_BUILD/bin/sluicectl" get endpoints --socket "$(lab_grpc_socket host1)" -o json |
  "$LAB_PYTHON" -c 'import json, sys; print(len(json.load(sys.stdin).get("endpoints", [])))')
leased=$("$LAB_BUILD/bin/sluicectl" get leases --socket "$(lab_grpc_socket host1)" -o json |
  "$LAB_PYTHON" -c 'import json, sys; print(len(json.load(sys.stdin).get("leases", [])))')
grep -q "cloud state .*host1.cloud-state.json: 2 endpoint(s), 2 SNAT lease(s)" "$LAB_RUN/host1.log" ||
  lab_fail "host1 did not start with its cloud state file: $(grep 'cloud state' "$LAB_RUN/host1.log" | tail -1)"
[[ $served == 2 && $leased == 2 ]] ||
  lab_fail "the restarted agent serves $served endpoints and $leased SNAT leases, want 2 and 2"
echo "  restarted agent: $served endpoints and $leased SNAT leases from its cloud state file"
restored=$(lab_stat host1 flows.restored_at_start)
kept=$(lab_stat host1 flows.kept_at_start)
echo "  restarted agent: restored $restored flows from $(lab_stat host1 flows.state_file), kept $kept"

for p in "${load_pids[@]}"; do
  lab_poll 120 0.5 lab_pid_gone "$p" || lab_fail "downloads still running 120s after the restart"
done
load_pids=()
ok=$(grep -c " 200 $BYTES$" "$RESULTS")
total=$(wc -l <"$RESULTS")
echo "=== agent restart report ==="
for kind in inbound snat-vm1 snat-vm2; do
  echo "  $kind: $(grep -c "^$kind 200 $BYTES$" "$RESULTS") of $(grep -c "^$kind " "$RESULTS") intact"
done
echo "  lost: $((want - ok)) of $want"
((kept >= 2 * SNAT_PER_VM)) || lab_fail "the restarted agent kept $kept flows, want >= $((2 * SNAT_PER_VM))"
((total == want && ok == want)) ||
  lab_fail "$((want - ok)) connections lost: $(grep -v " 200 $BYTES$" "$RESULTS" | head -5 | tr '\n' ';')"
echo "PASS: no connection lost when the agent was killed and restarted"
