#!/usr/bin/env bash
# End-to-end: a DIP fails its health check (DESIGN.md walk 5). With the lab up, requests
# flowing to the VIP and a few long downloads held open, vm4's HTTP server is stopped (by
# pid). The agent on host2 probes it from inside sl-vm4 (GET /health), finds it down and pushes
# the verdict to both muxes (SetBackendHealth), which take it out of Maglev. Checks:
#   - within 3 s of the stop both muxes hold vm4 unhealthy, and from 3 s after the stop
#     every new request is answered by another VM;
#   - the long downloads on the other VMs are untouched (they complete intact);
#   - vm4's server started again is seen healthy and serves new connections within 10 s;
#   - the agent's stats show the check, its probes and the pushes to both muxes.
# Needs root; exit 77 (skip) otherwise.
set -uo pipefail
# shellcheck source=deploy/lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../deploy/lab/lib.sh"

VICTIM=vm4
VICTIM_DIP=10.1.0.4
DOWNLOADS=8            # long downloads held open across the failure
DL_BYTES=200000
DL_RATE=20000          # bytes/s: ~10 s each
AFTER_REQUESTS=40      # new requests from 3 s after the stop
TAKE_OUT_S=3           # the goal: no new connection reaches the victim after this
COME_BACK_S=10

lab_skip_unless_root
load_pid=""
stream_pid=""
cleanup() {
  if [[ -n "$load_pid" ]]; then
    pkill -P "$load_pid" 2>/dev/null
    kill "$load_pid" 2>/dev/null
  fi
  [[ -n "$stream_pid" ]] && pkill -P "$stream_pid" 2>/dev/null
  lab_down quiet
}
trap cleanup EXIT
trap 'exit 130' INT TERM

lab_up || lab_fail "lab up failed"
lab_poll 15 0.5 lab_vip_answers || lab_fail "no answer from http://$LAB_VIP:$LAB_VIP_PORT/ within 15s"
lab_poll 15 0.2 lab_health_settled ||
  lab_fail "the agents' health checks did not settle (decided and pushed to both muxes) in 15s"
for vm in "${LAB_VMS[@]}"; do
  lab_muxes_see "10.1.0.${vm#vm}" healthy || lab_fail "$vm is not healthy on both muxes at start"
done
echo "health checks settled: every VM healthy on both muxes"

# Long downloads, each recording "<http code> <bytes> <vm that served it>".
dl_results=$LAB_RUN/health_downloads.txt
: >"$dl_results"
# shellcheck disable=SC2016  # expanded by the inner bash
seq "$DOWNLOADS" | lab_ns sl-client xargs -P "$DOWNLOADS" -I{} bash -c '
  body=$(mktemp)
  res=$(curl -s --max-time 60 -o "$body" -w "%{http_code} %{size_download}" "$1") || res="curl-exit-$? 0"
  echo "$res $(head -c 64 "$body" | awk "{print \$1; exit}")" >>"$2"
  rm -f "$body"' _ "http://$LAB_VIP:$LAB_VIP_PORT/stream?bytes=$DL_BYTES&rate=$DL_RATE" \
  "$dl_results" &
stream_pid=$!
_downloads_established() {
  (($(lab_ns sl-client ss -Htn state established "( dport = :$LAB_VIP_PORT )" | wc -l) >= DOWNLOADS))
}
lab_poll 15 0.1 _downloads_established || lab_fail "the $DOWNLOADS downloads did not all start"

# Continuous new connections: "<start ms> <curl exit> <body>" per request.
load_log=$LAB_RUN/health_load.txt
: >"$load_log"
(
  while true; do
    start=$(date +%s%3N)
    body=$(lab_ns sl-client curl -s --connect-timeout 2 --max-time 3 "http://$LAB_VIP:$LAB_VIP_PORT/")
    echo "$start $? ${body:-none}" >>"$load_log"
  done
) &
load_pid=$!
lab_poll 10 0.1 grep -q " 0 vm" "$load_log" || lab_fail "the request loop got no answer"

stop_ms=$(lab_now_ms)
lab_stop_vm "$VICTIM" || lab_fail "could not stop $VICTIM's server"
echo "stopped $VICTIM's HTTP server (pid) at t=0"
# How long the take-out took, as the muxes' stats show it (each look costs a little, so this
# is an upper bound); what the goal is judged by are the requests from t+3s below.
if ! lab_poll 10 0.05 lab_muxes_see "$VICTIM_DIP" unhealthy; then
  lab_fail "$VICTIM is not unhealthy on both muxes 10s after its server stopped (mux1: $(lab_backend_health mux1 $VICTIM_DIP), mux2: $(lab_backend_health mux2 $VICTIM_DIP))"
fi
out_ms=$(($(lab_now_ms) - stop_ms))
echo "  both muxes took $VICTIM out of Maglev after at most $out_ms ms"

# The measurement starts 3 s after the stop (the goal's deadline), not at the take-out.
_past_deadline() { (($(lab_now_ms) >= stop_ms + TAKE_OUT_S * 1000)); }
lab_poll 5 0.05 _past_deadline
results=$(lab_http_requests "$AFTER_REQUESTS" 4)
errors=()
declare -A served=()
answered=0
while IFS='|' read -r rc body _port; do
  [[ -z "$rc" ]] && continue
  if [[ "$rc" == 0 && "$body" =~ ^vm[1-4]$ ]]; then
    answered=$((answered + 1))
    served[$body]=$((${served[$body]:-0} + 1))
  else
    errors+=("request from t+3s failed: curl exit $rc, body '$body'")
  fi
done <<<"$results"
echo "  $AFTER_REQUESTS new requests from t+3s: answered $answered (vm1 ${served[vm1]:-0}, vm2 ${served[vm2]:-0}, vm3 ${served[vm3]:-0}, vm4 ${served[vm4]:-0})"
((${served[$VICTIM]:-0} == 0)) || errors+=("$VICTIM served ${served[$VICTIM]} new connections after t+3s")
((answered == AFTER_REQUESTS)) || errors+=("only $answered of $AFTER_REQUESTS requests answered after t+3s")
# The continuous loop too: nothing started from t+3s reached the victim or failed.
late=$(awk -v t="$((stop_ms + TAKE_OUT_S * 1000))" '$1 >= t' "$load_log")
late_total=$(grep -c . <<<"$late")
late_bad=$(awk -v v="$VICTIM" '$2 != 0 || $3 == v' <<<"$late" | grep -c .)
early_bad=$(awk -v t0="$stop_ms" -v t="$((stop_ms + TAKE_OUT_S * 1000))" \
  '$1 >= t0 && $1 < t && $2 != 0' "$load_log" | grep -c .)
echo "  request loop: $late_total started from t+3s, $late_bad failed or reached $VICTIM; $early_bad failed between t=0 and t+3s (connections the muxes sent to $VICTIM before it was out)"
((late_bad == 0)) || errors+=("$late_bad looped requests from t+3s failed or reached $VICTIM")

# Downloads on the other VMs keep going to the end.
lab_poll 90 0.5 lab_pid_gone "$stream_pid" || lab_fail "downloads still running 90s after they started"
stream_pid=""
others=0
intact=0
while read -r code size vm; do
  [[ "$vm" == "$VICTIM" ]] && continue
  others=$((others + 1))
  [[ "$code" == 200 && "$size" == "$DL_BYTES" ]] && intact=$((intact + 1))
done <"$dl_results"
echo "  long downloads on other VMs: $intact of $others complete ($(grep -c " $VICTIM$" "$dl_results") were on $VICTIM)"
((others > 0)) || errors+=("no long download landed on another VM than $VICTIM")
((intact == others)) || errors+=("$((others - intact)) downloads on healthy VMs were cut: $(tr '\n' ';' <"$dl_results")")

# Start it again: back in Maglev, serving new connections.
restart_ms=$(lab_now_ms)
lab_start_vm "$VICTIM"
lab_poll 10 0.1 lab_vm_serving "$VICTIM" || lab_fail "$VICTIM's server did not come back"
lab_poll "$COME_BACK_S" 0.05 lab_muxes_see "$VICTIM_DIP" healthy ||
  lab_fail "$VICTIM not healthy on both muxes ${COME_BACK_S}s after its server restarted"
back_ms=$(($(lab_now_ms) - restart_ms))
_victim_serves() { [[ $'\n'"$(lab_http_requests 12 4)" == *$'\n'"0|$VICTIM|"* ]]; }
lab_poll "$COME_BACK_S" 0.1 _victim_serves ||
  errors+=("$VICTIM healthy again but served no new connection within ${COME_BACK_S}s")
echo "  $VICTIM restarted: healthy on both muxes after $back_ms ms, serving new connections after $(($(lab_now_ms) - restart_ms)) ms"

# What the operator sees.
host2=$(lab_stats host2) || lab_fail "cannot read host2 stats"
check=$("$LAB_PYTHON" -c '
import json, sys
s = json.loads(sys.stdin.read())
dip = sys.argv[1]
checks = [c for c in s["health_checks"] if c["dip"] == dip]
reports = s["health_reports"]
ok = checks and checks[0]["probes"] > 0 and checks[0]["state"] == "healthy" and \
     [r["mux"] for r in reports] == ["mux1", "mux2"] and all(r["pushes_ok"] > 0 for r in reports)
print(("ok " if ok else "bad ") + json.dumps({"check": checks[:1], "reports": reports}))' \
  "$VICTIM_DIP" <<<"$host2")
echo "  host2 stats: ${check#* }" | cut -c1-300
[[ "$check" == ok* ]] || errors+=("host2's stats do not show the check and the pushes: $check")
lab_stats_table host2 | grep -A3 '^dip_health:' | sed 's/^/    /'

if ((${#errors[@]} > 0)); then
  printf '  %s\n' "${errors[@]}" >&2
  lab_fail "${#errors[@]} check(s) failed"
fi
echo "PASS: $VICTIM out of both muxes in $out_ms ms (goal ${TAKE_OUT_S}s), no new connection to it after t+3s, $intact downloads on healthy VMs intact, back in $back_ms ms"
