#!/usr/bin/env bash
# End-to-end: a VM attached to a running agent with a port the agent did not open at start
# (runtime port hot-plug), then detached. With the lab up:
#   - a new VM namespace sl-hpvm9 (DIP 10.1.0.9, PA 10.101.0.39) behind a new veth hpvm9 in
#     sl-host1, running the lab's HTTP server as "vm9";
#   - the libvirt hook's `started` call for a domain whose ethernet interface is hpvm9, with
#     Sluice metadata serving VIP 10.200.0.10:80 on port 8080: host1's agent probes
#     net_af_packet_hpvm9,iface=hpvm9 and the VM shows as hot-plugged in `sluicectl get vms`;
#   - `sluicectl apply` adds 10.1.0.9 to the VIP's backends on both muxes: requests through
#     the VIP reach vm9 (and the others still answer);
#   - apply without it, then the hook's `stopped` call: the agent detaches the VM and removes
#     its DPDK port (no packet socket on hpvm9 any more, hotplug counters), and no request
#     reaches vm9 while every request is answered.
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

lab_up || lab_fail "lab up failed"
lab_poll 15 0.5 lab_vip_answers || lab_fail "no answer from http://$LAB_VIP:$LAB_VIP_PORT/ within 15s"
"$CTL" apply -f <(write_cloud) >/dev/null || lab_fail "apply of the lab's cloud failed"
ports_at_start=$(lab_stat host1 hotplug.dpdk_ports) || lab_fail "host1 has no hotplug stats"

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
# The agent answers ARP for the VM's gateway on the new port (it does not answer pings).
gateway_resolved() {
  lab_ns "$NS" ping -c 1 -W 0.3 10.1.0.254 >/dev/null 2>&1
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

# Detach: the controller takes it out of the VIP first, then the VM stops.
"$CTL" apply -f <(write_cloud) || lab_fail "apply removing $DIP failed"
out=$(hook stopped 2>&1) || lab_fail "hook stopped failed: $out"
vms=$("$CTL" get vms --socket "$(lab_grpc_socket host1)") || lab_fail "get vms failed"
grep -q "^$DOMAIN " <<<"$vms" && lab_fail "$DOMAIN is still listed after the detach"
[[ $(lab_stat host1 hotplug.ports_unplugged) == 1 ]] || lab_fail "ports_unplugged is not 1"
[[ $(lab_stat host1 hotplug.dpdk_ports) == "$ports_at_start" ]] ||
  lab_fail "host1's DPDK ports did not go back to $ports_at_start"
vm9_port_open && lab_fail "the agent still has a packet socket on $IFACE"
counts=$(vip_answers "$REQUESTS")
echo "after the detach: $(tr '\n' ' ' <<<"$counts")"
failed=$(awk '$1 == "failed" { print $2 }' <<<"$counts")
((failed == 0)) || lab_fail "$failed of $REQUESTS requests failed after the detach"
grep -q "^vm9 " <<<"$counts" && lab_fail "vm9 still answered after the detach"
for reason in $(lab_stats host1 | "$LAB_PYTHON" -c \
  'import json,sys; f=json.load(sys.stdin)["hotplug"]["failures"]; print(" ".join(k for k,v in f.items() if v))'); do
  lab_fail "host1 counted a hot-plug failure: $reason"
done
echo "PASS: vm9 hot-plugged on host1 through the libvirt hook, served the VIP, detached, port removed"
