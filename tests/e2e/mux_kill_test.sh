#!/usr/bin/env bash
# End-to-end: a mux dies during a long TCP download (packet walk 5, first half).
#
#  1. start a 3 MB download at 300 kB/s from sl-client through the VIP;
#  2. find the mux carrying it (the one whose vip_packets rise: the client's ACKs);
#  3. kill -9 that mux;
#  4. assert BGP withdraws it: its gobgpd dies with it, BIRD in the router drops that next
#     hop within WITHDRAW_TIMEOUT_S;
#  5. assert the download resumes and completes with the right byte count, served by the
#     same VM throughout (the survivor's Maglev table is the same, so it picks the same DIP);
#  6. restart the killed mux WITHOUT a new `sluicectl apply`: it serves the VIPs and SNAT
#     ranges last pushed (mux.cloud_state_file), announces the VIP again and the router takes
#     it back within RETURN_TIMEOUT_S.
#
# Needs root; exit 77 (skip) otherwise.
set -uo pipefail
# shellcheck source=deploy/lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../deploy/lab/lib.sh"

BYTES=3000000
RATE=300000
WITHDRAW_TIMEOUT_S=5   # the session drops with the mux: the route must follow quickly
RESUME_TIMEOUT_S=60
RETURN_TIMEOUT_S=30    # the mux's start (EAL, port) and a new BGP session with BIRD

file_size() { stat -c %s "$DOWNLOAD" 2>/dev/null || echo 0; }
now_ms() { lab_now_ms; }
secs_since() { awk -v a="$1" -v b="$(now_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }

lab_skip_unless_root
curl_pid=""
cleanup() {
  [[ -n "$curl_pid" ]] && kill "$curl_pid" 2>/dev/null
  lab_down quiet
}
trap cleanup EXIT
trap 'exit 130' INT TERM

lab_up || lab_fail "lab up failed"
lab_poll 15 0.5 lab_vip_answers || lab_fail "no answer from http://$LAB_VIP:$LAB_VIP_PORT/ within 15s"
DOWNLOAD=$LAB_RUN/mux_kill_download.bin
CURL_OUT=$LAB_RUN/mux_kill_curl.txt
rm -f "$DOWNLOAD" "$CURL_OUT"

# 1. The download.
url="http://$LAB_VIP:$LAB_VIP_PORT/stream?bytes=$BYTES&rate=$RATE"
echo "downloading $BYTES bytes at $RATE B/s: $url"
lab_ns sl-client curl -s --max-time 180 -o "$DOWNLOAD" \
  -w '%{http_code} %{size_download} %{local_port}\n' "$url" >"$CURL_OUT" 2>&1 &
curl_pid=$!
started_ms=$(now_ms)
download_started() { (($(file_size) >= 100000)); }
lab_poll 15 0.05 download_started || lab_fail "the download did not start (size $(file_size) after 15s; curl: $(cat "$CURL_OUT"))"

# 2. Which mux carries it: its vip_packets rise while the download runs.
declare -A vip_before=()
for d in "${LAB_MUXES[@]}"; do vip_before[$d]=$(lab_stat "$d" vip_packets) || lab_fail "cannot read $d stats"; done
victim=""
find_carrier() {
  local d delta best=0
  for d in "${LAB_MUXES[@]}"; do
    delta=$(($(lab_stat "$d" vip_packets) - ${vip_before[$d]}))
    if ((delta >= 10 && delta > best)); then
      best=$delta
      victim=$d
    fi
  done
  [[ -n "$victim" ]]
}
lab_poll 10 0.2 find_carrier || lab_fail "neither mux's vip_packets rose during the download"
survivor=""
for d in "${LAB_MUXES[@]}"; do [[ "$d" != "$victim" ]] && survivor=$d; done
carried=""
for d in "${LAB_MUXES[@]}"; do
  carried+=" $d +$(($(lab_stat "$d" vip_packets) - ${vip_before[$d]}))"
done
echo "flow carried by $victim (vip_packets since the download started:$carried)"

# 3. Kill it and watch.
survivor_vip_before=$(lab_stat "$survivor" vip_packets)
survivor_flows_before=$(lab_stat "$survivor" new_flows)
bytes_at_kill=$(file_size)
lab_kill_daemon "$victim" KILL || lab_fail "could not kill $victim"
killed_ms=$(now_ms)
echo "killed $victim (kill -9) at $bytes_at_kill bytes, $(secs_since "$started_ms") s into the download"

# 4. BGP withdraws it: the mux's gobgpd dies with it, the session drops, BIRD removes that
#    next hop and the router rehashes the flow onto the survivor.
lab_poll "$WITHDRAW_TIMEOUT_S" 0.05 lab_vip_routed_via "$survivor" ||
  lab_fail "the router still routes $LAB_VIP via $(lab_vip_nexthops | tr '\n' ' ') ${WITHDRAW_TIMEOUT_S}s after the kill"
withdrawn_ms=$(now_ms)
withdraw_report="withdrawn by BGP $(secs_since "$killed_ms") s after the kill; route now via ${LAB_MUX_PA[$survivor]} only"
echo "$withdraw_report"

# 5. Resume and complete.
resumed_after=""
size_at_withdrawal=$(file_size)
resume_deadline=$((withdrawn_ms + RESUME_TIMEOUT_S * 1000))
while lab_pid_alive "$curl_pid" && (($(now_ms) < resume_deadline)); do
  if [[ -z "$resumed_after" ]] && (($(file_size) > size_at_withdrawal)); then
    resumed_after=$(secs_since "$withdrawn_ms")
  fi
  sleep 0.1
done
if lab_pid_alive "$curl_pid"; then
  lab_fail "download did not complete within ${RESUME_TIMEOUT_S}s of the withdrawal ($(file_size) of $BYTES bytes)"
fi
wait "$curl_pid"
curl_rc=$?
curl_pid=""
[[ -z "$resumed_after" ]] && (($(file_size) > size_at_withdrawal)) && resumed_after="<0.1"
read -r http_code _ local_port <"$CURL_OUT" || true
final_size=$(file_size)
vms_in_body=$(awk '/ sluice lab stream$/ {print $1}' "$DOWNLOAD" | sort | uniq -c | awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}')
survivor_vip=$(($(lab_stat "$survivor" vip_packets) - survivor_vip_before))
survivor_flows=$(($(lab_stat "$survivor" new_flows) - survivor_flows_before))

echo
echo "=== mux kill report ==="
echo "  download:          $BYTES bytes at $RATE B/s from sl-client:${local_port:-?} to $LAB_VIP:$LAB_VIP_PORT"
echo "  carried by:        $victim, killed with SIGKILL at $bytes_at_kill bytes"
echo "  withdrawal:        $withdraw_report"
echo "  after withdrawal:  resumed after ${resumed_after:-never} s via $survivor (its vip_packets +$survivor_vip, new_flows +$survivor_flows)"
echo "  result:            curl exit $curl_rc, HTTP ${http_code:-?}, $final_size of $BYTES bytes, $(secs_since "$started_ms") s in all"
echo "  served by:         ${vms_in_body:-nothing}"
echo "======================="

((curl_rc == 0)) || lab_fail "curl exited $curl_rc after the withdrawal ($(cat "$CURL_OUT"))"
[[ "$http_code" == 200 ]] || lab_fail "HTTP status '$http_code'"
((final_size == BYTES)) || lab_fail "downloaded $final_size bytes, expected $BYTES"
[[ "$vms_in_body" != *,* ]] || lab_fail "the body came from more than one VM: $vms_in_body"

# 6. The killed mux comes back with what the controller pushed, without a new apply.
pushed_vips() {
  "$LAB_BUILD/bin/sluicectl" get vips --socket "$(lab_grpc_socket "$1")" -o json |
    "$LAB_PYTHON" -c 'import json, sys; v = json.load(sys.stdin).get("vips", []); print(len(v), sum(len(x.get("backends", [])) for x in v))'
}
want_vips=$(pushed_vips "$survivor") || lab_fail "cannot read $survivor's VIPs"
restart_ms=$(now_ms)
{ lab_start_daemon "$victim" && lab_wait_ready "$victim"; } || lab_fail "$victim did not start again"
got_vips=$(pushed_vips "$victim") || lab_fail "cannot read the restarted $victim's VIPs"
grep -q "cloud state .*$victim.cloud-state.json: [1-9][0-9]* VIP(s)" "$LAB_RUN/$victim.log" ||
  lab_fail "$victim did not start with its cloud state file: $(grep 'cloud state' "$LAB_RUN/$victim.log" | tail -1)"
[[ "$got_vips" == "$want_vips" ]] ||
  lab_fail "the restarted $victim serves '$got_vips' (VIPs backends), $survivor '$want_vips'"
lab_poll "$RETURN_TIMEOUT_S" 0.1 lab_vip_routed_via "${LAB_MUXES[@]}" ||
  lab_fail "the router did not take $victim back within ${RETURN_TIMEOUT_S}s (next hops: $(lab_vip_nexthops | tr '\n' ' '))"
returned_s=$(secs_since "$restart_ms")
lab_vip_answers || lab_fail "the VIP does not answer after $victim came back"
echo "restarted $victim: $got_vips (VIPs backends) from its cloud state file, no apply; routed again after ${returned_s} s"
echo "PASS: the download survived the mux kill (BGP withdrew the dead mux)"
