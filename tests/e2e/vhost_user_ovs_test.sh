#!/usr/bin/env bash
# End-to-end: a VM on a vhost-user port of ovs-vswitchd-dpdk carries the packet walks
# (SLUICE_LAB_HOST2=ovs-dpdk). host2's agent (vswitch mode) starts the DPDK build of OVS on
# hugepages the lab reserved, and adds vm3 from its YAML entry as a dpdkvhostuserclient port;
# vm3 (a namespace with the kernel's TCP stack) sits behind sluice-vhost-relay, which serves
# the vhost-user socket (virtio-user) and relays to vm3's veth. Checks:
#   - OVS runs DPDK, with one PMD core and pmd-maxsleep; vm3's port is dpdkvhostuserclient and
#     connected;
#   - walks 1+2: REQUESTS requests to VIP2 (vm3 and vm4) all answered, vm3 serves its share;
#     no mux sees a reply (DSR: drops.no_rule stays 0, host2's return flows count them);
#   - walk 3: vm3 connects out through SNAT (the internet server sees VIP1 and a port of vm3's
#     lease);
#   - the packets crossed the vhost-user port: OVS's statistics of that interface and the
#     relay's counters grew by at least the packets of those connections, nothing dropped;
#   - idle, the PMD thread sleeps (pmd-perf-show: sleep iterations).
# Needs root, ovs-vswitchd-dpdk and 2 MB hugepages; exit 77 (skip) without root or OVS-DPDK.
set -uo pipefail
export SLUICE_LAB_HOST2=ovs-dpdk
# shellcheck source=deploy/lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../deploy/lab/lib.sh"

REQUESTS=300
PARALLEL=8
SNAT_CONNECTIONS=20
VHOST_VM=vm3
VHOST_PORT=net_vhost_$VHOST_VM

lab_skip_unless_root
[[ -x $LAB_OVS_DPDK_VSWITCHD ]] || {
  echo "SKIP: needs $LAB_OVS_DPDK_VSWITCHD (openvswitch-switch-dpdk)"
  exit 77
}
trap 'lab_down quiet' EXIT
trap 'exit 130' INT TERM
started_ms=$(lab_now_ms)

lab_up || lab_fail "lab up failed"
echo "lab up in $((($(lab_now_ms) - started_ms) / 1000)) s"
ovs() { ovs-vsctl --db="unix:$LAB_OVS_RUN/db.sock" --timeout=10 "$@"; }
errors=()

# --- OVS-DPDK and the vhost-user port ------------------------------------------------------
[[ "$(lab_stat host2 ovs.vswitchd)" == dpdk ]] ||
  lab_fail "host2's agent did not start the DPDK build of ovs-vswitchd: $(lab_stat host2 ovs)"
[[ "$(ovs get Open_vSwitch . dpdk_initialized)" == true ]] || errors+=("OVS: dpdk_initialized is not true")
echo "  OVS: $(ovs get Open_vSwitch . dpdk_version), other_config $(ovs get Open_vSwitch . other_config)"
[[ "$(ovs get Open_vSwitch . other_config:pmd-maxsleep)" == '"1000"' ]] ||
  errors+=("OVS: pmd-maxsleep is not 1000")
[[ "$(ovs get Interface "$VHOST_PORT" type)" == dpdkvhostuserclient ]] ||
  lab_fail "$VHOST_PORT is not a dpdkvhostuserclient port: $(ovs list Interface "$VHOST_PORT")"
vhost_status=$(ovs get Interface "$VHOST_PORT" status)
echo "  $VHOST_PORT: $vhost_status"
[[ "$vhost_status" == *status=connected* ]] || errors+=("$VHOST_PORT not connected: $vhost_status")
[[ "$(ovs get Interface "$VHOST_PORT" ofport)" == 2 ]] ||
  errors+=("$VHOST_PORT is not OpenFlow port 2 (vm3, the first VM): $(ovs get Interface "$VHOST_PORT" ofport)")

# Counters: OVS's interface statistics (OVSDB, refreshed every 5 s) and the relay's (live).
ovs_stat() { ovs get Interface "$VHOST_PORT" "statistics:$1"; }
relay_stat() { lab_stat "relay-$VHOST_VM" "$1"; }
ovs_rx0=$(ovs_stat rx_packets) ovs_tx0=$(ovs_stat tx_packets)
relay_from_ovs0=$(relay_stat vhost.rx_packets) relay_to_ovs0=$(relay_stat vhost.tx_packets)
relay_drops0=$(($(relay_stat vhost.tx_dropped) + $(relay_stat kernel.tx_dropped)))

# --- walks 1+2: inbound through the VIP, DSR return ----------------------------------------
vip2_answers() {
  [[ "$(lab_ns sl-client curl -s --connect-timeout 2 --max-time 3 \
    "http://$LAB_VIP2:$LAB_VIP_PORT/")" =~ ^vm[34]$ ]]
}
lab_poll 15 0.5 vip2_answers || lab_fail "no answer from http://$LAB_VIP2:$LAB_VIP_PORT/ within 15s"
mux_no_rule0=$(lab_stat_sum drops.no_rule "${LAB_MUXES[@]}")
returns0=$(lab_stat host2 stateful_return_packets)
declare -A served=()
ok=0
bad=()
walk_started_ms=$(lab_now_ms)
while IFS='|' read -r rc body port; do
  [[ -z "$rc" ]] && continue
  if [[ "$rc" == 0 && "$body" =~ ^vm[34]$ ]]; then
    ok=$((ok + 1))
    served[$body]=$((${served[$body]:-0} + 1))
  else
    bad+=("curl exit $rc, body '$body', source port $port")
  fi
done < <(lab_http_requests "$REQUESTS" "$PARALLEL" / "$LAB_VIP2")
echo "  $REQUESTS requests to http://$LAB_VIP2:$LAB_VIP_PORT/ in $(($(lab_now_ms) - walk_started_ms)) ms:" \
  "$ok answered; vm3 (vhost-user) ${served[vm3]:-0}, vm4 (kernel veth) ${served[vm4]:-0}"
((ok == REQUESTS)) || errors+=("VIP2: $((REQUESTS - ok)) of $REQUESTS not answered (first: ${bad[0]:-?})")
vm3_served=${served[vm3]:-0}
((vm3_served >= REQUESTS / 5)) ||
  errors+=("vm3 (vhost-user) served only $vm3_served of $REQUESTS (Maglev gives it about half)")
mux_no_rule=$(($(lab_stat_sum drops.no_rule "${LAB_MUXES[@]}") - mux_no_rule0))
((mux_no_rule == 0)) || errors+=("the muxes dropped $mux_no_rule packets without a rule (replies reached a mux)")

# --- walk 3: SNAT out of the vhost-user VM -------------------------------------------------
lease=$(grep -oE "dip: 10\.1\.0\.3, vip: $LAB_VIP, protocol: tcp, port_start: [0-9]+, port_count: [0-9]+" \
  "$LAB_CONFIG_DIR/cloud.yaml" | head -1)
first=$(sed -E 's/.*port_start: ([0-9]+).*/\1/' <<<"$lease")
count=$(sed -E 's/.*port_count: ([0-9]+).*/\1/' <<<"$lease")
[[ -n "$lease" ]] || lab_fail "no static SNAT lease of vm3 in $LAB_CONFIG_DIR/cloud.yaml"
last=$((first + count - 1))
snat_ok=0
for _ in $(seq "$SNAT_CONNECTIONS"); do
  out=$(lab_ns "sl-$VHOST_VM" curl -s --connect-timeout 3 --max-time 5 \
    "http://$LAB_INTERNET:$LAB_INTERNET_PORT/peer") || out="curl-exit-$?"
  read -r name peer <<<"$out"
  ip=${peer%:*}
  port=${peer##*:}
  if [[ "$name" == internet && "$ip" == "$LAB_VIP" && "$port" =~ ^[0-9]+$ ]] &&
    ((port >= first && port <= last)); then
    snat_ok=$((snat_ok + 1))
  else
    last_bad=$out
  fi
done
echo "  SNAT $VHOST_VM -> $LAB_INTERNET:$LAB_INTERNET_PORT: $snat_ok of $SNAT_CONNECTIONS seen as $LAB_VIP:$first..$last"
((snat_ok == SNAT_CONNECTIONS)) ||
  errors+=("SNAT from $VHOST_VM: $snat_ok of $SNAT_CONNECTIONS (last: '${last_bad:-?}')")

# --- the packets crossed the vhost-user port -----------------------------------------------
# Every connection (vm3's inbound ones and its SNAT ones) is at least 4 packets each way
# (handshake, request or response, FIN, ACKs), all through the vhost-user port.
conns=$((vm3_served + snat_ok))
want=$((conns * 4))
# OVS's flow counters reach the OpenFlow table on the revalidators' next run.
returns_counted() { (($(lab_stat host2 stateful_return_packets) - returns0 >= REQUESTS * 3)); }
lab_poll 10 0.5 returns_counted || true
returns=$(($(lab_stat host2 stateful_return_packets) - returns0))
echo "  host2 DSR return flows: $returns packets (VIP2's replies rewritten to the VIP, out to the router)"
((returns >= REQUESTS * 3)) || errors+=("host2's DSR return flows counted $returns packets (expected >= $((REQUESTS * 3)))")
# OVSDB's interface statistics are refreshed every 5 s (other_config:stats-update-interval).
ovs_counted() {
  (($(ovs_stat rx_packets) - ovs_rx0 >= want && $(ovs_stat tx_packets) - ovs_tx0 >= want))
}
lab_poll 15 0.5 ovs_counted || true
ovs_rx=$(($(ovs_stat rx_packets) - ovs_rx0))
ovs_tx=$(($(ovs_stat tx_packets) - ovs_tx0))
relay_from_ovs=$(($(relay_stat vhost.rx_packets) - relay_from_ovs0))
relay_to_ovs=$(($(relay_stat vhost.tx_packets) - relay_to_ovs0))
relay_drops=$(($(relay_stat vhost.tx_dropped) + $(relay_stat kernel.tx_dropped) - relay_drops0))
echo "  $conns connections of vm3; at least $want packets each way through the vhost-user port:"
echo "    OVS interface $VHOST_PORT: rx_packets +$ovs_rx (from vm3), tx_packets +$ovs_tx (to vm3)," \
  "tx_dropped $(ovs_stat tx_dropped), rx_dropped $(ovs_stat rx_dropped)"
echo "    sluice-vhost-relay: from OVS +$relay_from_ovs, to OVS +$relay_to_ovs, dropped +$relay_drops;" \
  "all: $(lab_stats "relay-$VHOST_VM")"
((ovs_rx >= want)) || errors+=("OVS received $ovs_rx packets on $VHOST_PORT (expected >= $want)")
((ovs_tx >= want)) || errors+=("OVS sent $ovs_tx packets on $VHOST_PORT (expected >= $want)")
((relay_from_ovs >= want)) || errors+=("the relay received $relay_from_ovs packets from OVS (expected >= $want)")
((relay_to_ovs >= want)) || errors+=("the relay sent $relay_to_ovs packets to OVS (expected >= $want)")
((relay_drops == 0)) || errors+=("the relay dropped $relay_drops packets")

# --- idle: the PMD thread sleeps -----------------------------------------------------------
perf=$(ovs-appctl -t "$LAB_OVS_RUN/ovs-vswitchd.ctl" dpif-netdev/pmd-perf-show)
sleep_line=$(grep -m1 'sleep iterations' <<<"$perf")
used_line=$(grep -m1 'Used TSC cycles' <<<"$perf")
echo "  OVS PMD thread:$used_line;$sleep_line"
sleep_pct=$(sed -E 's/.*\( *([0-9.]+) % of iterations.*/\1/' <<<"$sleep_line")
[[ "$sleep_pct" =~ ^[0-9.]+$ ]] && awk -v p="$sleep_pct" 'BEGIN { exit !(p >= 50) }' ||
  errors+=("the PMD thread slept in '$sleep_pct' % of its iterations (expected >= 50: pmd-maxsleep)")

if ((${#errors[@]} > 0)); then
  printf '  - %s\n' "${errors[@]}" >&2
  tail -n 30 "$LAB_OVS_RUN/ovs-vswitchd.log" >&2
  lab_fail "${#errors[@]} check(s) failed"
fi
echo "PASS: vm3 on a vhost-user port of ovs-vswitchd-dpdk served $vm3_served of $REQUESTS VIP2 requests" \
  "(all $REQUESTS answered, DSR), connected out through SNAT $snat_ok/$SNAT_CONNECTIONS, and" \
  "$ovs_rx/$ovs_tx packets crossed its dpdkvhostuserclient port ($(($(lab_now_ms) - started_ms)) ms)"
