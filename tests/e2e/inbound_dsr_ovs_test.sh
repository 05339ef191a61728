#!/usr/bin/env bash
# End-to-end: packet walks 1 and 2 with host2 on Open vSwitch (SLUICE_LAB_HOST2=ovs): the
# muxes send GRE to host2's VMs, host2's agent runs in vswitch mode (its own ovsdb-server and
# ovs-vswitchd in sl-host2, vm3/vm4 on the bridge) and OVS decaps, rewrites VIP→DIP
# (conntrack NAT: vm3/vm4 serve VIP1 and VIP2 on one DIP:port) and sends the replies straight
# to the router. Checks: every request to VIP2 (served by host2 only) answered by vm3 or vm4,
# both serve; VIP1 still served by all four VMs; no mux saw a reply (drops.no_rule == 0);
# OVS's flows counted the walks; sluicectl get stats shows OVS's datapath and hw-offload.
# Then restart host2's agent (kill -9) under live downloads: it reconciles without rewriting
# a flow and no download is lost. Needs root and OVS; exit 77 (skip) otherwise.
set -uo pipefail
export SLUICE_LAB_HOST2=ovs
# shellcheck source=deploy/lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../deploy/lab/lib.sh"

REQUESTS=200
PARALLEL=8

lab_skip_unless_root
command -v ovs-vswitchd >/dev/null || {
  echo "SKIP: needs Open vSwitch (ovs-vswitchd)"
  exit 77
}
trap 'lab_down quiet' EXIT
trap 'exit 130' INT TERM

lab_up || lab_fail "lab up failed"
[[ "$(lab_stat host2 executor)" == vswitch ]] || lab_fail "host2 is not in vswitch mode"
vip2_answers() {
  [[ "$(lab_ns sl-client curl -s --connect-timeout 2 --max-time 3 \
    "http://$LAB_VIP2:$LAB_VIP_PORT/")" =~ ^vm[34]$ ]]
}
lab_poll 15 0.5 vip2_answers || lab_fail "no answer from http://$LAB_VIP2:$LAB_VIP_PORT/ within 15s"

errors=()
# count_answers VIP PATTERN: reads lab_http_requests output, fills served[], returns ok count.
declare -A served=()
count_answers() {
  local pattern=$1 rc body port
  ok=0
  bad=()
  while IFS='|' read -r rc body port; do
    [[ -z "$rc" ]] && continue
    if [[ "$rc" == 0 && "$body" =~ $pattern ]]; then
      ok=$((ok + 1))
      served[$body]=$((${served[$body]:-0} + 1))
    else
      bad+=("curl exit $rc, body '$body', source port $port")
    fi
  done
}

echo "sending $REQUESTS requests to http://$LAB_VIP2:$LAB_VIP_PORT/ (host2 only, $PARALLEL at a time)"
count_answers '^vm[34]$' < <(lab_http_requests "$REQUESTS" "$PARALLEL" / "$LAB_VIP2")
((ok == REQUESTS)) || errors+=("VIP2: $((REQUESTS - ok)) of $REQUESTS not answered by vm3/vm4 (first: ${bad[0]:-?})")
for vm in vm3 vm4; do
  echo "  $vm served ${served[$vm]:-0}"
  ((${served[$vm]:-0} > 0)) || errors+=("$vm was never served through OVS")
done

served=()
echo "sending 80 requests to http://$LAB_VIP:$LAB_VIP_PORT/ (host1 software, host2 OVS)"
count_answers '^vm[1-4]$' < <(lab_http_requests 80 "$PARALLEL")
((ok == 80)) || errors+=("VIP1: $((80 - ok)) of 80 not answered (first: ${bad[0]:-?})")
for vm in "${LAB_VMS[@]}"; do
  echo "  $vm served ${served[$vm]:-0}"
  ((${served[$vm]:-0} > 0)) || errors+=("$vm was never served on VIP1")
done

for d in "${LAB_MUXES[@]}"; do
  no_rule=$(lab_stat "$d" drops.no_rule) || lab_fail "cannot read $d stats"
  echo "  $d: vip_packets $(lab_stat "$d" vip_packets), drops.no_rule $no_rule"
  ((no_rule == 0)) || errors+=("$d drops.no_rule = $no_rule (expected 0: return traffic reached a mux)")
done

# Walk 3 (SNAT) through OVS conntrack: vm3 and vm4 connect out to the internet server, which
# must see VIP1 and a port of the VM's lease; its replies reach host2 through a mux in GRE.
# vm3's lease is static (cloud.yaml); vm4's first chunk comes from sluice-snatd, which tells
# the muxes to send its replies as GRE because host2's vswitch agent asked for it so.
declare -A vm_dip=([vm3]=10.1.0.3 [vm4]=10.1.0.4)
# vm_lease VM : "first last" of the VM's first lease on host2 (static or leased from snatd).
vm_lease() {
  "$LAB_BUILD/bin/sluicectl" get leases --socket "$(lab_grpc_socket host2)" -o json |
    "$LAB_PYTHON" -c '
import json, sys
for l in json.load(sys.stdin).get("leases", []):
    if l["dip"] == sys.argv[1]:
        print(l["port_start"], l["port_start"] + l["port_count"] - 1)
        break' "${vm_dip[$1]}"
}
has_lease() { [[ -n "$(vm_lease "$1")" ]]; }
for vm in vm3 vm4; do
  lab_poll 10 0.2 has_lease "$vm" || errors+=("$vm has no SNAT lease on host2")
  read -r first last <<<"$(vm_lease "$vm")"
  first=${first:-0} last=${last:-0}
  snat_ok=0
  for _ in $(seq 10); do
    out=$(lab_ns "sl-$vm" curl -s --connect-timeout 3 --max-time 5 \
      "http://$LAB_INTERNET:$LAB_INTERNET_PORT/peer") || out="curl-exit-$?"
    read -r name peer <<<"$out"
    ip=${peer%:*}
    port=${peer##*:}
    if [[ "$name" == internet && "$ip" == "$LAB_VIP" && "$port" =~ ^[0-9]+$ ]] &&
      ((port >= first && port <= last)); then
      snat_ok=$((snat_ok + 1))
    else
      last_bad="$out"
    fi
  done
  echo "  SNAT $vm -> $LAB_INTERNET: $snat_ok of 10 seen as $LAB_VIP:$first..$last"
  ((snat_ok == 10)) || errors+=("SNAT from $vm: $snat_ok of 10 (last: '${last_bad:-?}')")
done

# A packet no flow takes reaches the agent's slow-path port and is counted by reason: vm3
# sends UDP, for which it has no SNAT lease.
misses_before=$(lab_stat host2 slow_path.misses.vm_no_rule)
lab_ns sl-vm3 bash -c "echo probe >/dev/udp/$LAB_INTERNET/9999" ||
  errors+=("vm3 could not send a UDP datagram")
vm_miss_counted() { (($(lab_stat host2 slow_path.misses.vm_no_rule) > misses_before)); }
lab_poll 5 0.2 vm_miss_counted ||
  errors+=("host2 did not count vm3's UDP datagram as a vm_no_rule miss: $(lab_stat host2 slow_path)")
echo "  host2 slow path: $(lab_stat host2 slow_path.misses)"

# OVS's flow counters reach the OpenFlow table when its revalidators run (about every 0.5 s).
dsr_counted() { (($(lab_stat host2 stateful_return_packets) >= REQUESTS * 3)); }
lab_poll 10 0.5 dsr_counted || true
inbound=$(lab_stat host2 inbound_packets)
dsr=$(lab_stat host2 dsr_return_packets)
stateful=$(lab_stat host2 stateful_return_packets)
refused=$(lab_stat host2 ovs.rules_refused)
snat_out=$(lab_stat host2 snat_out_packets)
snat_in=$(lab_stat host2 snat_in_packets)
echo "  host2 (OVS) SNAT: snat_out_packets $snat_out, snat_in_packets $snat_in"
((snat_out >= 20 * 4 && snat_in >= 20 * 3)) || errors+=("host2 SNAT flows counted out $snat_out / in $snat_in packets")
echo "  host2 (OVS): inbound_packets $inbound, dsr_return_packets $dsr (from conntrack state: $stateful), rules on bridge $(lab_stat host2 ovs.rules_on_bridge), refused $refused"
((inbound >= REQUESTS * 4)) || errors+=("host2 OVS inbound flows counted $inbound packets (expected >= $((REQUESTS * 4)))")
((stateful >= REQUESTS * 3)) || errors+=("host2 OVS return flows counted $stateful packets (expected >= $((REQUESTS * 3)))")
((refused == 0)) || errors+=("host2: $refused rule(s) refused by OVS: $(lab_stat host2 ovs.refused)")

# sluicectl get stats (gRPC) reports OVS's datapath and hw-offload state.
grpc_stats=$("$LAB_BUILD/bin/sluicectl" get stats --socket "$(lab_grpc_socket host2)" -o json) ||
  lab_fail "sluicectl get stats on host2 failed"
hits=$(lab_json_get counters <<<"$grpc_stats" | "$LAB_PYTHON" -c '
import json, sys
c = {x["name"]: int(x.get("value", 0)) for x in json.load(sys.stdin)}
print(c["ovs_datapath_hits"], c["ovs_hw_offload"], c.get("ovs_datapath_flows", 0))')
read -r dp_hits hw_offload dp_flows <<<"$hits"
echo "  sluicectl get stats host2: ovs_datapath_hits $dp_hits, ovs_datapath_flows $dp_flows, ovs_hw_offload $hw_offload"
((dp_hits > REQUESTS)) || errors+=("sluicectl get stats: ovs_datapath_hits $dp_hits")
[[ "$hw_offload" == 0 ]] || errors+=("ovs_hw_offload should be 0 (no offload NIC here): $hw_offload")

# Agent restart under load: OVS keeps forwarding while the agent is gone; the new agent
# attaches to the same ovs-vswitchd and finds every flow already right.
bytes=60000
rate=20000
results=$LAB_RUN/ovs_restart_results.txt
: >"$results"
# shellcheck disable=SC2016  # expanded by the inner bash
seq 16 | lab_ns sl-client xargs -P 16 -I{} bash -c '
  curl -s --max-time 60 -o /dev/null -w "%{http_code} %{size_download}\n" "$1" >>"$2" 2>&1 ||
    echo "curl-exit-$? 0" >>"$2"' _ \
  "http://$LAB_VIP2:$LAB_VIP_PORT/stream?bytes=$bytes&rate=$rate" "$results" &
load_pid=$!
established() {
  (($(lab_ns sl-client ss -Htn state established "( dst $LAB_VIP2 )" | wc -l) >= 16))
}
lab_poll 20 0.2 established || errors+=("downloads from VIP2 did not all start")
lab_kill_daemon host2 KILL || lab_fail "could not kill host2's agent"
lab_start_daemon host2 || lab_fail "could not restart host2's agent"
lab_wait_ready host2 || lab_fail "host2's agent not ready after the restart"
kept=$(lab_stat host2 ovs.start_flows_kept)
written=$(lab_stat host2 ovs.start_flows_written)
removed=$(lab_stat host2 ovs.start_flows_removed)
echo "  host2 agent restarted (kill -9): reconcile kept $kept flows, wrote $written, removed $removed"
((kept > 0 && written == 0 && removed == 0)) ||
  errors+=("restart reconcile: kept $kept, written $written, removed $removed (expected all kept)")
lab_poll 60 0.5 lab_pid_gone "$load_pid" || errors+=("downloads still running 60s after the restart")
intact=$(grep -c "^200 $bytes$" "$results")
echo "  downloads across the agent restart: $intact of 16 intact"
((intact == 16)) || errors+=("only $intact of 16 downloads survived the agent restart: $(sort "$results" | uniq -c | tr '\n' ';')")

if ((${#errors[@]} > 0)); then
  printf '  - %s\n' "${errors[@]}" >&2
  lab_fail "${#errors[@]} check(s) failed"
fi
echo "PASS: host2 on OVS served every request (VIP2 $REQUESTS/$REQUESTS, VIP1 80/80), replies bypassed the muxes, and its agent restarted without touching a flow or losing a download"
