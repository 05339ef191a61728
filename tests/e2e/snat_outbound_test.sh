#!/usr/bin/env bash
# End-to-end: packet walk 3, SNAT. Each VM opens connections to an "internet" server in
# sl-client (outside the cloud). Its agent rewrites the source to VIP:port with a port from
# the VM's lease (deploy/lab/config/host*.yaml); the server must see exactly that. The reply
# to VIP:port reaches a mux (BGP), which finds the port in its snat_ranges and encapsulates it
# to the leasing host, whose agent reverses the translation. vm4's ports are leased
# dynamically from sluice-snatd, so each VM's leases are read from its agent (static and
# dynamic). Checked: every request answered,
# every source seen by the server is the VIP with a port inside the right VM's leases, a
# 1 MB download through SNAT arrives intact, and the counters of agents and muxes show the
# walk (snat_out / snat_in on the agents, snat_return on the muxes, no drops for want of a
# flow), and every established flow was offered to the NIC executor (refused here, with the
# port's reason). Needs root; exit 77 (skip) otherwise.
set -uo pipefail
# shellcheck source=deploy/lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../deploy/lab/lib.sh"

PER_VM=16
declare -A VM_DIP=([vm1]=10.1.0.1 [vm2]=10.1.0.2 [vm3]=10.1.0.3 [vm4]=10.1.0.4)

# vm_leases VM : "first last" of each lease of the VM's DIP on its agent.
vm_leases() {
  "$LAB_BUILD/bin/sluicectl" get leases --socket "$(lab_grpc_socket "${LAB_VM_HOST[$1]}")" -o json |
    "$LAB_PYTHON" -c '
import json, sys
for l in json.load(sys.stdin).get("leases", []):
    if l["dip"] == sys.argv[1]:
        print(l["port_start"], l["port_start"] + l["port_count"] - 1)' "${VM_DIP[$1]}"
}
# in_leases PORT LEASES : whether PORT lies in one of the "first last" lines.
in_leases() {
  local first last
  while read -r first last; do
    [[ -n "$first" ]] && (($1 >= first && $1 <= last)) && return 0
  done <<<"$2"
  return 1
}
has_leases() { [[ -n "$(vm_leases "$1")" ]]; }

lab_skip_unless_root
trap 'lab_down quiet' EXIT
trap 'exit 130' INT TERM

lab_up || lab_fail "lab up failed"

url="http://$LAB_INTERNET:$LAB_INTERNET_PORT"
errors=()
for vm in "${LAB_VMS[@]}"; do
  # vm4's first chunk comes from the allocator once host2 is up.
  lab_poll 10 0.2 has_leases "$vm" || errors+=("$vm has no SNAT lease on ${LAB_VM_HOST[$vm]}")
  # shellcheck disable=SC2016  # expanded by the inner bash
  out=$(seq "$PER_VM" | lab_ns "sl-$vm" xargs -P 4 -I{} bash -c \
    'curl -s --connect-timeout 3 --max-time 10 "$1/peer" || echo "curl-exit-$?"' _ "$url")
  ok=0
  ports=()
  while read -r name peer; do
    [[ -z "$name" ]] && continue
    ip=${peer%:*}
    port=${peer##*:}
    if [[ "$name" == internet && "$ip" == "$LAB_VIP" && "$port" =~ ^[0-9]+$ ]]; then
      ok=$((ok + 1))
      ports+=("$port")
    else
      errors+=("$vm: server answered '$name $peer' (want internet $LAB_VIP:PORT)")
    fi
  done <<<"$out"
  # Read after the connections: a chunk leased while they ran counts too.
  leases=$(vm_leases "$vm")
  for port in "${ports[@]}"; do
    in_leases "$port" "$leases" ||
      errors+=("$vm: the server saw port $port, outside $vm's leases ($(tr '\n' ' ' <<<"$leases"))")
  done
  distinct=$(printf '%s\n' "${ports[@]}" | sort -u | wc -l)
  echo "  $vm: $ok of $PER_VM answered; the server saw $LAB_VIP with $distinct distinct ports in $(tr '\n' ' ' <<<"$leases")"
  ((ok == PER_VM)) || errors+=("$vm: only $ok of $PER_VM connections answered")
done

# A longer transfer: many segments each way through the translation and the mux's return.
size=$(lab_ns sl-vm3 curl -s --max-time 20 -o /dev/null -w '%{size_download}' \
  "$url/stream?bytes=1000000")
echo "  vm3: 1000000-byte download through SNAT received $size bytes"
[[ "$size" == 1000000 ]] || errors+=("vm3's SNAT download received $size of 1000000 bytes")

# SLUICE_LAB_HOST2=ovs: host2 SNATs through OVS conntrack; a reply without its connection is
# its snat_reply_no_conntrack_state miss, and it has no NIC executor.
dpdk_agents=("${LAB_AGENTS[@]}") dpdk_vms=("${LAB_VMS[@]}")
[[ $LAB_HOST2 == ovs ]] && dpdk_agents=(host1) dpdk_vms=(vm1 vm2)
snat_out=$(lab_stat_sum snat_out_packets "${LAB_AGENTS[@]}")
snat_in=$(lab_stat_sum snat_in_packets "${LAB_AGENTS[@]}")
mux_return=$(lab_stat_sum snat_return_packets "${LAB_MUXES[@]}")
no_flow=$(lab_stat_sum drops.nat_no_flow "${dpdk_agents[@]}")
if [[ $LAB_HOST2 == ovs ]]; then
  no_flow=$((no_flow + $(lab_stat host2 slow_path.misses.snat_reply_no_conntrack_state)))
fi
exhausted=$(lab_stat_sum drops.snat_ports_exhausted "${LAB_AGENTS[@]}")
echo "  agents: snat_out_packets $snat_out, snat_in_packets $snat_in, nat_no_flow drops $no_flow, exhausted $exhausted"
echo "  muxes:  snat_return_packets $mux_return"
((snat_out > 0 && snat_in > 0)) || errors+=("the agents did not count SNAT traffic")
((mux_return >= snat_in)) ||
  errors+=("the muxes returned $mux_return packets but the agents translated $snat_in back")
((no_flow == 0)) || errors+=("$no_flow packets dropped for want of a NAT flow")
((exhausted == 0)) || errors+=("$exhausted connections refused: SNAT ports exhausted")

# Each established SNAT flow was offered to the rte_flow NIC executor (two rules: out and
# in); the lab's af_packet ports refuse rte_flow, so every per-flow rule is left to the flow
# table, counted with the PMD's reason.
offers=$(lab_stat_sum nic.flows.offers "${dpdk_agents[@]}")
refused=$(lab_stat_sum nic.flows.rules_software "${dpdk_agents[@]}")
reasons=$(lab_stat host1 nic.flows.software_reasons) || lab_fail "cannot read host1 stats"
echo "  agents: $offers flows offered to the NIC executor, $refused per-flow rules left in software: $reasons"
((offers >= ${#dpdk_vms[@]} * PER_VM && refused >= 2 * ${#dpdk_vms[@]} * PER_VM)) ||
  errors+=("the agents offered $offers flows to the NIC executor ($refused rules refused)")
[[ "$reasons" == *"not implemented"* || "$reasons" == *"not supported"* || "$reasons" == *"rte_flow"* ]] ||
  errors+=("host1 nic.flows.software_reasons does not give the port's reason: $reasons")

if ((${#errors[@]} > 0)); then
  printf '  %s\n' "${errors[@]}" >&2
  lab_fail "${#errors[@]} problem(s)"
fi
echo "PASS: SNAT outbound and its replies through the muxes"
