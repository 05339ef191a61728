#!/usr/bin/env bash
# End-to-end: dynamic SNAT leasing. vm4 (host2) has no static lease: host2's agent leases its
# ports in chunks of 32 from sluice-snatd (deploy/lab/config/snatd.yaml), which tells both
# muxes where each chunk's replies go before it answers. vm4 opens more concurrent
# connections to the internet server than one chunk holds: every one must complete, host2
# must hold ≥ 2 chunks, and both muxes' SNAT ranges and the allocator must list them. After
# the connections close (this test's host2.yaml: return_idle_s 3, reuse delay 2 s, closed
# timeout 1 s, low_water 16) the extra chunks go back: the agent keeps one, the allocator
# lists one, the muxes route one. Last, host2 is killed with -9 during a download from vm4
# and restarted: it adopts its chunk and the download completes. With SLUICE_LAB_HOST2=ovs
# (e2e_snat_dynamic_ovs_test) host2's agent runs in vswitch mode: it asks for its chunks with
# GRE, so the muxes send the replies to them as GRE, which OVS decaps. Needs root; exit 77
# (skip) otherwise.
set -uo pipefail
# shellcheck source=deploy/lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../deploy/lab/lib.sh"

CONNS=72     # > 2 chunks of 32: three, with 24 ports to spare
BYTES=150000
RATE=10000   # 15 s per download: all are open at once
DIP=10.1.0.4
CHUNK=32

lab_skip_unless_root
WORK=$(mktemp -d /tmp/sluice-snat-dynamic.XXXXXX)
load_pid=
cleanup() {
  [[ -n "$load_pid" ]] && pkill -P "$load_pid" 2>/dev/null
  lab_down quiet
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The lab's configs with short idle and reuse times on host2.
cp "$LAB_DIR"/config/*.yaml "$WORK/" || lab_fail "cannot copy the lab configs"
sed -i -e 's/^\(  return_idle_s:\).*/\1 3/' -e 's/^\(  low_water:\).*/\1 16/' "$WORK/host2.yaml"
cat >>"$WORK/host2.yaml" <<'EOF2'
  snat_port_reuse_delay_s: 2
  tcp_closed_timeout_s: 1
EOF2
grep -q '^  return_idle_s: 3' "$WORK/host2.yaml" || lab_fail "host2.yaml has no snat_allocator.return_idle_s"
export SLUICE_LAB_CONFIG_DIR=$WORK
LAB_CONFIG_DIR=$WORK

CTL=$LAB_BUILD/bin/sluicectl
HOST2=$(lab_grpc_socket host2)
SNATD=$(lab_grpc_socket snatd)

# dynamic_chunks : vm4's dynamic leases on host2, one "start count" per line.
dynamic_chunks() {
  "$CTL" get leases --socket "$HOST2" -o json | "$LAB_PYTHON" -c '
import json, sys
for l in json.load(sys.stdin).get("leases", []):
    if l.get("dynamic") and l["dip"] == sys.argv[1]:
        print(l["port_start"], l["port_count"])' "$DIP"
}
# allocator_chunks : host2's chunks in the allocator, "start count" per line.
allocator_chunks() {
  "$CTL" get snat-chunks --socket "$SNATD" --host host2 -o json | "$LAB_PYTHON" -c '
import json, sys
for c in json.load(sys.stdin).get("chunks", []):
    print(c["port_start"], c["port_count"])'
}
# mux_chunks MUX : the mux's SNAT ranges to host2's PA inside the allocator's pool, with the
# encapsulation host2 decaps (GRE on Open vSwitch, IPIP for the DPDK agent).
ENCAP=ENCAP_IPIP
[[ $LAB_HOST2 == ovs ]] && ENCAP=ENCAP_GRE
mux_chunks() {
  "$CTL" get snat-ranges --socket "$(lab_grpc_socket "$1")" -o json | "$LAB_PYTHON" -c '
import json, sys
for r in json.load(sys.stdin).get("ranges", []):
    encap = r.get("encap", "ENCAP_UNSPECIFIED").replace("UNSPECIFIED", "IPIP")
    if r["host"] == "10.101.0.22" and 21000 <= r["port_start"] < 22024:
        print(r["port_start"], r["port_count"], "" if encap == sys.argv[1] else encap)' "$ENCAP" |
    sed "s/ *$//" | sort -n
}
count_lines() { grep -c . || true; }
chunks_at_least() { (($(dynamic_chunks | count_lines) >= $1)); }
chunks_exactly() { (($(dynamic_chunks | count_lines) == $1)); }
allocator_has_exactly() { (($(allocator_chunks | count_lines) == $1)); }

lab_up || lab_fail "lab up failed"
lab_poll 10 0.2 chunks_at_least 1 || lab_fail "host2 leased no chunk for vm4 within 10s"
echo "  at start vm4 holds: $(dynamic_chunks | tr '\n' ' ')"

RESULTS=$WORK/results.txt
: >"$RESULTS"
url="http://$LAB_INTERNET:$LAB_INTERNET_PORT/stream?bytes=$BYTES&rate=$RATE"
# Connections open one every 100 ms (a busy VM, not a burst within one agent tick): the
# agent must stay ahead of them by leasing as vm4 runs low.
# shellcheck disable=SC2016  # expanded by the inner bash
lab_ns sl-vm4 bash -c '
  for i in $(seq "$1"); do
    (curl -s --max-time 90 -o /dev/null -w "%{http_code} %{size_download}\n" "$2" >>"$3" 2>&1 ||
      echo "curl-exit-$? 0" >>"$3") &
    sleep 0.1
  done
  wait' _ "$CONNS" "$url" "$RESULTS" &
load_pid=$!

# While they are all open: at least two chunks, everywhere.
lab_poll 30 0.2 chunks_at_least $(((CONNS + CHUNK - 1) / CHUNK)) ||
  lab_fail "vm4 holds $(dynamic_chunks | count_lines) chunks with $CONNS connections open (want ≥ $(((CONNS + CHUNK - 1) / CHUNK)))"
held=$(dynamic_chunks | sort -n)
echo "  with $CONNS connections open vm4 holds: $(tr '\n' ' ' <<<"$held")"
errors=()
in_allocator=$(allocator_chunks | sort -n)
[[ "$in_allocator" == "$held" ]] || errors+=("allocator lists '$in_allocator', agent holds '$held'")
for m in "${LAB_MUXES[@]}"; do
  routed=$(mux_chunks "$m")
  [[ "$routed" == "$held" ]] || errors+=("$m routes '$routed' to host2, agent holds '$held'")
done

wait "$load_pid"
load_pid=
ok=$(grep -c "^200 $BYTES\$" "$RESULTS")
echo "  $ok of $CONNS downloads complete"
((ok == CONNS)) || errors+=("only $ok of $CONNS downloads completed: $(grep -v "^200 $BYTES\$" "$RESULTS" | sort | uniq -c | tr '\n' ';')")
exhausted=$(lab_stat host2 drops.snat_ports_exhausted)
((exhausted == 0)) || errors+=("$exhausted connections of host2's VMs refused: SNAT ports exhausted")

# Closed, past the reuse delay and idle for return_idle_s: back to one chunk.
lab_poll 60 0.5 chunks_exactly 1 || errors+=("vm4 still holds $(dynamic_chunks | count_lines) chunks 60 s after its connections closed")
lab_poll 10 0.2 allocator_has_exactly 1 || errors+=("the allocator still lists $(allocator_chunks | count_lines) chunks of host2")
kept=$(dynamic_chunks)
for m in "${LAB_MUXES[@]}"; do
  routed=$(mux_chunks "$m")
  [[ "$routed" == "$kept" ]] || errors+=("after the returns $m routes '$routed', agent holds '$kept'")
done
granted=$(lab_stat host2 snat_allocator.chunks_granted)
returned=$(lab_stat host2 snat_allocator.chunks_returned)
refused=$(lab_stat host2 snat_allocator.chunks_refused)
echo "  host2: chunks granted $granted, returned $returned, refused $refused; keeps: $kept"
echo "  allocator: $("$CTL" stats --socket "$(lab_socket snatd)" -o json | lab_json_get chunks_leased) chunk(s) leased"
((returned >= 1 && returned == granted - 1)) ||
  errors+=("host2 returned $returned of $granted chunks (want all but one)")

# kill -9 of host2 during a download on the kept chunk: the restarted agent takes the chunk
# back from the allocator before it restores its flows, so the download goes on.
lab_ns sl-vm4 curl -s --max-time 60 -o /dev/null -w "%{http_code} %{size_download}\n" \
  "http://$LAB_INTERNET:$LAB_INTERNET_PORT/stream?bytes=80000&rate=10000" >"$WORK/restart.txt" 2>&1 &
load_pid=$!
# An established SNAT flow of vm4 in host2's table (DPDK agent) or conntrack (vswitch mode).
flow_on_vm4() {
  "$CTL" get flows --socket "$HOST2" --dip "$DIP" -o json | "$LAB_PYTHON" -c '
import json, sys
flows = json.load(sys.stdin).get("flows", [])
sys.exit(0 if any(f.get("kind") == "KIND_SNAT" and f.get("state") == "established"
                  for f in flows) else 1)'
}
lab_poll 5 0.1 flow_on_vm4 || errors+=("no flow on host2 for vm4's download")
lab_kill_daemon host2 KILL || lab_fail "could not kill host2"
{ lab_start_daemon host2 && lab_wait_ready host2; } || lab_fail "host2 did not come back"
wait "$load_pid"
load_pid=
got=$(cat "$WORK/restart.txt")
adopted=$(lab_stat host2 snat_allocator.chunks_adopted)
echo "  across kill -9 of host2: download '$got', chunks adopted $adopted, now $(dynamic_chunks)"
[[ "$got" == "200 80000" ]] || errors+=("vm4's download across the agent restart ended '$got'")
[[ "$(dynamic_chunks)" == "$kept" ]] || errors+=("after the restart vm4 holds '$(dynamic_chunks)', not '$kept'")
((adopted == 1)) || errors+=("the restarted host2 adopted $adopted chunks (want 1)")
allocator_has_exactly 1 || errors+=("after the restart the allocator lists $(allocator_chunks | count_lines) chunks")

if ((${#errors[@]} > 0)); then
  printf '  %s\n' "${errors[@]}" >&2
  lab_fail "${#errors[@]} problem(s)"
fi
echo "PASS: vm4 leased chunks as it ran low, every mux routed them, idle ones went back,"
echo "      and a restarted agent kept its chunk and its connection"
