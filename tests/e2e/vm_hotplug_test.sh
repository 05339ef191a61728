#!/usr/bin/env bash
# End-to-end: a VM attached to a running agent with a port the agent did not open at start
# (runtime port hot-plug), then detached. With the lab up:
#   - a new VM namespace sl-hpvm9 (DIP 10.1.0.9, PA 10.101.0.39) behind a new veth hpvm9 in
#     sl-host1, running the lab's HTTP server as "vm9";
#   - the libvirt hook's `started` call for a domain whose ethernet interface is hpvm9, with
#     Sluice metadata serving VIP 10.200.0.10:80 on port 8080: host1's agent probes
#     net_af_packet_hpvm9,iface=hpvm9 and the VM shows as hot-plugged in `sluicectl get vms`;
#   - vm9 resolves its gateway (the agent answers ARP on the new port);
#   - `sluicectl apply` adds 10.1.0.9 to the VIP's backends on both muxes and gives it a SNAT
#     lease: requests through the VIP reach vm9 (walk 1, inbound) and its replies go straight
#     to the router (walk 2, DSR; counted on its port), and vm9's own connections to the
#     "internet" server leave as VIP:port of its lease, a 1 MB download included (walk 3);
#   - host1's agent is killed (-9) and started again: it attaches vm9 again from its cloud
#     state file (agent.cloud_state_file), probing the port, with no new AttachVm; vm9 serves
#     the VIP and SNATs out again;
#   - apply without it, then the hook's `stopped` call (the cloud state forgets vm9): the agent detaches the VM and removes
#     its DPDK port (no packet socket on hpvm9 any more, hotplug counters), and no request
#     reaches vm9 while every request is answered; nothing of vm9 is left (no flow, no lease,
#     no port pending removal, the mbufs in use back where they were).
# Needs root; exit 77 (skip) otherwise.
set -uo pipefail
# shellcheck source=deploy/lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../deploy/lab/lib.sh"

NS=sl-hpvm9        # the new VM's namespace
IFACE=hpvm9        # its veth's host-side end in sl-host1 (the agent's new port)
DOMAIN=hpvm9       # the libvirt domain (= the VM's name on the agent)
MAC=02:00:0a:01:00:09
DIP=10.1.0.9
PA=10.101.0.39
REQUESTS=200
SNAT_FIRST=20192   # vm9's SNAT lease: 20192-20255 (the lab's static leases end at 20191)
SNAT_CONNECTIONS=16

lab_skip_unless_root
CTL="$LAB_BUILD/bin/sluicectl"
HOOK="$LAB_BUILD/bin/sluice-libvirt-hook"
[[ -x "$HOOK" ]] || lab_fail "$HOOK is not built (ninja -C $LAB_BUILD sluice-libvirt-hook)"
WORK=$(mktemp -d /tmp/sluice-hotplug-e2e.XXXXXX)
cleanup() {
  lab_stop hpvm9
  lab_ns_exists "$NS" && ip netns del "$NS"
  lab_down quiet
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# cloud.yaml: the lab's VIPs and leases; $1 = with-vm9 adds 10.1.0.9 to VIP 10.200.0.10:80.
write_cloud() {
  cat <<EOF
muxes:
  - { name: mux1, grpc: $(lab_grpc_socket mux1) }
  - { name: mux2, grpc: $(lab_grpc_socket mux2) }
agents:
  - { name: host1, grpc: $(lab_grpc_socket host1) }
  - { name: host2, grpc: $(lab_grpc_socket host2) }
vips:
  - vip: 10.200.0.10
    port: 80
    protocol: tcp
    backends:
      - { dip: 10.1.0.1, port: 8080 }
      - { dip: 10.1.0.2, port: 8080 }
      - { dip: 10.1.0.3, port: 8080 }
      - { dip: 10.1.0.4, port: 8080 }
EOF
  [[ ${1:-} == with-vm9 ]] && echo "      - { dip: $DIP, port: 8080 }"
  cat <<EOF
  - vip: 10.200.0.20
    port: 80
    protocol: tcp
    backends:
      - { dip: 10.1.0.3, port: 8080 }
      - { dip: 10.1.0.4, port: 8080 }
snat:
  - { dip: 10.1.0.1, vip: 10.200.0.10, protocol: tcp, port_start: 20000, port_count: 64 }
  - { dip: 10.1.0.2, vip: 10.200.0.10, protocol: tcp, port_start: 20064, port_count: 64 }
  - { dip: 10.1.0.3, vip: 10.200.0.10, protocol: tcp, port_start: 20128, port_count: 64 }
EOF
  [[ ${1:-} == with-vm9 ]] &&
    echo "  - { dip: $DIP, vip: 10.200.0.10, protocol: tcp, port_start: $SNAT_FIRST, port_count: 64 }"
  return 0
}

# The running domain's XML as libvirt hands it to the hook.
cat >"$WORK/domain.xml" <<EOF
<domain type='kvm' id='9'>
  <name>$DOMAIN</name>
  <uuid>0b9c6a6e-6f0e-4d59-9d3a-5d1f00000009</uuid>
  <metadata>
    <sluice:vm xmlns:sluice="http://sluice.dev/xmlns/libvirt/1">
      <sluice:interface mac="$MAC" dip="$DIP" pa="$PA" gateway="10.1.0.254">
        <sluice:endpoint vip="10.200.0.10:80/tcp" dip_port="8080"/>
      </sluice:interface>
    </sluice:vm>
  </metadata>
  <devices>
    <interface type='ethernet'>
      <mac address='$MAC'/>
      <target dev='$IFACE' managed='no'/>
      <model type='virtio'/>
    </interface>
  </devices>
</domain>
EOF
hook() {
  "$HOOK" --agent "unix:$(lab_grpc_socket host1)" --fail-closed --deadline-ms 5000 \
    "$DOMAIN" "$1" begin - <"$WORK/domain.xml"
}
# Requests through the VIP: prints how many each VM answered ("vm1 40" ...) and "failed N".
vip_answers() {
  lab_http_requests "$1" 8 | awk -F'|' '$1 != 0 || $2 !~ /^vm[0-9]+$/ { failed++; next }
    { n[$2]++ } END { for (vm in n) print vm, n[vm]; print "failed", failed + 0 }'
}
# True while some process in sl-host1 (the agent's af_packet port) has a packet socket on IFACE.
vm9_port_open() {
  local idx
  idx=$(lab_ns sl-host1 cat "/sys/class/net/$IFACE/ifindex") || return 1
  lab_ns sl-host1 awk -v idx="$idx" 'NR > 1 && $5 == idx { found = 1 } END { exit !found }' \
    /proc/net/packet
}

# json_count KEY: how many entries of the JSON list KEY on stdin are about vm9's DIP.
json_count() {
  "$LAB_PYTHON" -c 'import json, sys
print(sum(e.get("dip") == sys.argv[2] for e in json.load(sys.stdin).get(sys.argv[1], [])))' "$1" "$DIP"
}
vm9_flows() {
  "$CTL" get flows --socket "$(lab_grpc_socket host1)" --dip "$DIP" -o json | json_count flows
}

lab_up || lab_fail "lab up failed"
lab_poll 15 0.5 lab_vip_answers || lab_fail "no answer from http://$LAB_VIP:$LAB_VIP_PORT/ within 15s"
"$CTL" apply -f <(write_cloud) >/dev/null || lab_fail "apply of the lab's cloud failed"
ports_at_start=$(lab_stat host1 hotplug.dpdk_ports) || lab_fail "host1 has no hotplug stats"
mbufs_at_start=$(lab_stat host1 hotplug.mbufs_in_use) || lab_fail "host1 has no mbufs_in_use"

# The new VM: namespace, veth into sl-host1, address, default route, HTTP server.
lab_ns_create "$NS" || lab_fail "cannot create $NS"
lab_veth sl-host1 "$IFACE" "$NS" eth0 1500 "$MAC" || lab_fail "cannot create the veth $IFACE"
ip -n "$NS" addr add "$DIP/24" dev eth0 || lab_fail "cannot address $NS"
ip -n "$NS" route add default via 10.1.0.254 || lab_fail "cannot route $NS"
lab_start hpvm9 "$NS" "$LAB_PYTHON" -u "$LAB_DIR/vm_http_server.py" --name vm9 --port "$LAB_VM_PORT"
vm9_serving() { [[ "$(lab_ns "$NS" curl -s --max-time 1 "http://$DIP:$LAB_VM_PORT/")" == vm9 ]]; }
lab_poll 10 0.1 vm9_serving || lab_fail "vm9's HTTP server did not start"

# Attach through the libvirt hook.
out=$(hook started 2>&1) || lab_fail "hook started failed: $out"
vms=$("$CTL" get vms --socket "$(lab_grpc_socket host1)") || lab_fail "get vms failed"
echo "$vms"
grep -E "^$DOMAIN +$DIP .* yes +hotplug:[0-9]+ " <<<"$vms" >/dev/null ||
  lab_fail "$DOMAIN is not listed as a hot-plugged, attached VM"
[[ $(lab_stat host1 hotplug.ports_hotplugged) == 1 ]] || lab_fail "ports_hotplugged is not 1"
[[ $(lab_stat host1 hotplug.dpdk_ports) == $((ports_at_start + 1)) ]] ||
  lab_fail "host1 has not one DPDK port more"
vm9_port_open || lab_fail "no packet socket of the agent on $IFACE"
# The agent answers ARP for the VM's gateway on the new port (it answers no pings, and the
# lab needs no ping binary): a UDP datagram to the gateway makes vm9's kernel resolve it.
gateway_resolved() {
  lab_ns "$NS" "$LAB_PYTHON" -c 'import socket; socket.socket(socket.AF_INET,
    socket.SOCK_DGRAM).sendto(b"arp?", ("10.1.0.254", 9))' 2>/dev/null
  ip -n "$NS" neigh show 10.1.0.254 | grep -q lladdr
}
lab_poll 10 0.2 gateway_resolved || lab_fail "vm9 cannot resolve its gateway 10.1.0.254"

"$CTL" apply -f <(write_cloud with-vm9) || lab_fail "apply adding $DIP to the VIP failed"
counts=$(vip_answers "$REQUESTS")
echo "with vm9: $(tr '\n' ' ' <<<"$counts")"
failed=$(awk '$1 == "failed" { print $2 }' <<<"$counts")
vm9=$(awk '$1 == "vm9" { print $2 }' <<<"$counts")
((failed == 0)) || lab_fail "$failed of $REQUESTS requests failed with vm9 attached"
((${vm9:-0} >= REQUESTS / 20)) || lab_fail "vm9 answered ${vm9:-0} of $REQUESTS requests"
(($(wc -l <<<"$counts") == 6)) || lab_fail "not every VM answered: $counts"
# vm9's replies left through its own port and went straight to the router (DSR).
vm9_stat() {
  lab_stats host1 | "$LAB_PYTHON" -c 'import json, sys
print(next(v[sys.argv[1]] for v in json.load(sys.stdin)["vms"] if v["name"] == sys.argv[2]))' "$1" "$DOMAIN"
}
vm9_rx=$(vm9_stat rx_packets) && vm9_tx=$(vm9_stat tx_packets) || lab_fail "no stats of $DOMAIN"
echo "vm9's port: rx $vm9_rx tx $vm9_tx packets; host1 dsr_return_packets $(lab_stat host1 dsr_return_packets)"
((vm9_rx > 0 && vm9_tx > 0)) || lab_fail "vm9's port carried rx $vm9_rx / tx $vm9_tx packets"

# Walk 3 from the hot-plugged VM: the internet server sees the VIP and a port of vm9's lease.
url="http://$LAB_INTERNET:$LAB_INTERNET_PORT"
snat_out_before=$(lab_stat host1 snat_out_packets)
# shellcheck disable=SC2016  # expanded by the inner bash
out=$(seq "$SNAT_CONNECTIONS" | lab_ns "$NS" xargs -P 4 -I{} bash -c \
  'curl -s --connect-timeout 3 --max-time 10 "$1/peer" || echo "curl-exit-$?"' _ "$url")
ok=0
while read -r name peer; do
  [[ -z "$name" ]] && continue
  port=${peer##*:}
  if [[ $name == internet && ${peer%:*} == "$LAB_VIP" && $port =~ ^[0-9]+$ ]] &&
    ((port >= SNAT_FIRST && port < SNAT_FIRST + 64)); then
    ok=$((ok + 1))
  else
    lab_fail "vm9's connection: the server answered '$name $peer' (want internet $LAB_VIP:$SNAT_FIRST-$((SNAT_FIRST + 63)))"
  fi
done <<<"$out"
((ok == SNAT_CONNECTIONS)) || lab_fail "only $ok of $SNAT_CONNECTIONS SNAT connections of vm9 answered"
size=$(lab_ns "$NS" curl -s --max-time 20 -o /dev/null -w '%{size_download}' \
  "$url/stream?bytes=1000000")
[[ $size == 1000000 ]] || lab_fail "vm9's SNAT download received $size of 1000000 bytes"
flows_of_vm9=$(vm9_flows) || lab_fail "get flows failed"
((flows_of_vm9 > 0)) || lab_fail "host1 shows no NAT flow of $DIP after its connections"
echo "vm9 SNAT: $flows_of_vm9 flows, $ok connections seen as $LAB_VIP:$SNAT_FIRST-$((SNAT_FIRST + 63)), 1 MB download intact; host1 snat_out_packets +$(($(lab_stat host1 snat_out_packets) - snat_out_before))"

# kill -9 the agent and start it again: vm9 comes back from the cloud state file, no AttachVm.
STATE_FILE=$LAB_RUN/host1.cloud-state.json
state_vms() {
  "$LAB_PYTHON" -c 'import json, sys
print(" ".join(v["name"] for v in json.load(open(sys.argv[1])).get("vms", [])))' "$STATE_FILE"
}
[[ $(state_vms) == "$DOMAIN" ]] || lab_fail "$STATE_FILE lists VMs '$(state_vms)', want '$DOMAIN'"
lab_kill_daemon host1 KILL || lab_fail "could not kill host1's agent"
lab_start_daemon host1 || lab_fail "could not start host1's agent again"
lab_wait_ready host1 || lab_fail "host1's agent did not come back"
grep -q "VM(s) attached at runtime: $DOMAIN\$" "$LAB_RUN/host1.log" ||
  lab_fail "host1's log does not say it attached $DOMAIN again from its cloud state"
vms=$("$CTL" get vms --socket "$(lab_grpc_socket host1)") || lab_fail "get vms failed"
echo "$vms"
grep -E "^$DOMAIN +$DIP .* yes +hotplug:[0-9]+ " <<<"$vms" >/dev/null ||
  lab_fail "$DOMAIN is not attached (hot-plugged) after the agent's restart"
vm9_port_open || lab_fail "no packet socket of the restarted agent on $IFACE"
lab_poll 10 0.2 lab_vip_answers || lab_fail "the VIP does not answer after host1's restart"
counts=$(vip_answers "$REQUESTS")
echo "after host1's restart: $(tr '\n' ' ' <<<"$counts")"
failed=$(awk '$1 == "failed" { print $2 }' <<<"$counts")
vm9=$(awk '$1 == "vm9" { print $2 }' <<<"$counts")
((failed == 0)) || lab_fail "$failed of $REQUESTS requests failed after host1's restart"
((${vm9:-0} >= REQUESTS / 20)) || lab_fail "vm9 answered ${vm9:-0} of $REQUESTS requests after host1's restart"
peer=$(lab_ns "$NS" curl -s --connect-timeout 3 --max-time 10 "$url/peer")
port=${peer##*:}
[[ $peer == "internet $LAB_VIP:"* ]] && ((port >= SNAT_FIRST && port < SNAT_FIRST + 64)) ||
  lab_fail "vm9's SNAT connection after host1's restart: the server answered '$peer'"
echo "vm9 after host1's restart (no AttachVm): answered $vm9 of $REQUESTS, SNAT as $LAB_VIP:$port"

# Detach: the controller takes it out of the VIP first, then the VM stops.
"$CTL" apply -f <(write_cloud) || lab_fail "apply removing $DIP failed"
out=$(hook stopped 2>&1) || lab_fail "hook stopped failed: $out"
vms=$("$CTL" get vms --socket "$(lab_grpc_socket host1)") || lab_fail "get vms failed"
grep -q "^$DOMAIN " <<<"$vms" && lab_fail "$DOMAIN is still listed after the detach"
[[ $(lab_stat host1 hotplug.ports_unplugged) == 1 ]] || lab_fail "ports_unplugged is not 1"
[[ -z $(state_vms) ]] || lab_fail "$STATE_FILE still lists VMs after the detach: $(state_vms)"
[[ $(lab_stat host1 hotplug.dpdk_ports) == "$ports_at_start" ]] ||
  lab_fail "host1's DPDK ports did not go back to $ports_at_start"
vm9_port_open && lab_fail "the agent still has a packet socket on $IFACE"
counts=$(vip_answers "$REQUESTS")
echo "after the detach: $(tr '\n' ' ' <<<"$counts")"
failed=$(awk '$1 == "failed" { print $2 }' <<<"$counts")
((failed == 0)) || lab_fail "$failed of $REQUESTS requests failed after the detach"
grep -q "^vm9 " <<<"$counts" && lab_fail "vm9 still answered after the detach"
# Nothing of vm9 left behind.
[[ $(lab_stat host1 hotplug.ports_pending_removal) == 0 ]] || lab_fail "a port is pending removal"
flows_of_vm9=$(vm9_flows) || lab_fail "get flows failed"
((flows_of_vm9 == 0)) || lab_fail "host1 still has $flows_of_vm9 flows of $DIP"
leases=$("$CTL" get leases --socket "$(lab_grpc_socket host1)" --dip "$DIP" -o json) ||
  lab_fail "get leases failed"
[[ $(json_count leases <<<"$leases") == 0 ]] || lab_fail "host1 still has leases of $DIP: $leases"
mbufs_back() { (($(lab_stat host1 hotplug.mbufs_in_use) <= mbufs_at_start)); }
lab_poll 5 0.2 mbufs_back ||
  lab_fail "host1 has $(lab_stat host1 hotplug.mbufs_in_use) mbufs in use, $mbufs_at_start before vm9"
echo "nothing of vm9 left: no flow, no lease, no port pending removal, mbufs in use $(lab_stat host1 hotplug.mbufs_in_use) (at start $mbufs_at_start)"
for reason in $(lab_stats host1 | "$LAB_PYTHON" -c \
  'import json,sys; f=json.load(sys.stdin)["hotplug"]["failures"]; print(" ".join(k for k,v in f.items() if v))'); do
  lab_fail "host1 counted a hot-plug failure: $reason"
done
echo "PASS: vm9 hot-plugged on host1 through the libvirt hook, served the VIP and SNAT, came back after the agent's kill -9 from its cloud state, detached, port removed"
