#!/usr/bin/env bash
# End-to-end: with many live TCP connections through the lab, one mux dies (kill -9). BGP
# withdraws it, the router rehashes its flows onto the other mux, which builds the same
# Maglev table and so sends every flow to the VM it was already talking to. Goal and
# assertion: no connection lost (packet walk 5; issue 4 item 7).
#
# Needs root; exit 77 (skip) otherwise.
set -uo pipefail
# shellcheck source=deploy/lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../deploy/lab/lib.sh"

CONNECTIONS=${SLUICE_FAILOVER_CONNECTIONS:-120}
BYTES=160000
RATE=20000   # 8 s per download: all are mid-transfer when the mux dies

fail() {
  echo "FAIL: $*" >&2
  lab_dump_diagnostics
  exit 1
}
if [[ $EUID -ne 0 ]]; then
  echo "SKIP: the lab needs root"
  exit 77
fi
load_pid=""
cleanup() {
  [[ -n "$load_pid" ]] && pkill -P "$load_pid" 2>/dev/null
  lab_down quiet
}
trap cleanup EXIT
trap 'exit 130' INT TERM

lab_up || fail "lab up failed"
lab_poll 15 0.5 lab_vip_answers || fail "no answer from the VIP within 15s"
RESULTS=$LAB_RUN/failover_results.txt
: >"$RESULTS"

url="http://$LAB_VIP:$LAB_VIP_PORT/stream?bytes=$BYTES&rate=$RATE"
# shellcheck disable=SC2016  # expanded by the inner bash
seq "$CONNECTIONS" | lab_ns sl-client xargs -P "$CONNECTIONS" -I{} bash -c '
  curl -s --max-time 90 -o /dev/null -w "%{http_code} %{size_download} %{local_port}\n" "$1" \
    >>"$2" 2>&1 || echo "curl-exit-$? 0 0" >>"$2"' _ "$url" "$RESULTS" &
load_pid=$!

established() {
  local n
  n=$(lab_ns sl-client ss -Htn state established "( dport = :$LAB_VIP_PORT )" | wc -l)
  ((n >= CONNECTIONS))
}
lab_poll 30 0.2 established ||
  fail "only $(lab_ns sl-client ss -Htn state established | wc -l) of $CONNECTIONS connections established"
declare -A flows=()
for m in "${LAB_MUXES[@]}"; do flows[$m]=$(lab_stat "$m" new_flows); done
echo "$CONNECTIONS connections established (new flows: mux1 ${flows[mux1]}, mux2 ${flows[mux2]})"

killed_ms=$(lab_now_ms)
lab_kill_daemon mux1 KILL || fail "could not kill mux1"
lab_poll 5 0.05 lab_vip_routed_via mux2 || fail "BGP did not withdraw mux1 within 5s"
echo "killed mux1; BGP withdrew it after $(( $(lab_now_ms) - killed_ms )) ms"

lab_poll 120 0.5 lab_pid_gone "$load_pid" || fail "downloads still running 120s after the kill"
load_pid=""
ok=$(grep -c "^200 $BYTES " "$RESULTS")
total=$(wc -l <"$RESULTS")
lost=$((CONNECTIONS - ok))
echo
echo "=== mux failover report ==="
echo "  live connections when mux1 died: $CONNECTIONS (each $BYTES bytes at $RATE B/s)"
echo "  completed intact:                $ok"
echo "  lost:                            $lost"
echo "  survivor mux2: vip_packets $(lab_stat mux2 vip_packets), new_flows $(lab_stat mux2 new_flows)"
echo "==========================="
((total == CONNECTIONS)) || fail "$total results for $CONNECTIONS downloads"
((lost == 0)) || fail "$lost connections lost: $(grep -v "^200 $BYTES " "$RESULTS" | head -5 | tr '\n' ';')"
echo "PASS: no connection lost when a mux died"
