#!/usr/bin/env bash
# End-to-end: the control plane over gRPC under traffic. sluicectl plays the cloud
# controller: it pushes VIPs, backends, endpoints and SNAT leases to both muxes and both
# agents from a cloud.yaml. While HTTP requests run continuously through the VIP, `sluicectl
# apply` alternates between two desired states (the backends' weights of VIP 10.200.0.10:80,
# and a VIP port 10.200.0.10:8081 -> vm1:8081 added <-> removed, on both muxes and on
# host1's agent) until the daemons have reported 1000 updates (a VIP or an endpoint added,
# removed or changed on one daemon, as counted in their ChangeSummary; each apply makes 5:
# two VIPs on each mux and one endpoint on host1). Assertions: every apply succeeds, every request is
# answered, no packet reaches an agent without a rule (drops.no_rule unchanged) and no mux
# drops for want of a backend, each update lands (config generations advance, the last
# state is visible through `sluicectl get`), and bad input (a backend on an unknown host,
# overlapping SNAT leases) is refused with the field named and changes nothing.
#
# Needs root; exit 77 (skip) otherwise. SLUICE_GRPC_UPDATES overrides the 1000.
set -uo pipefail
if [[ $EUID -ne 0 ]]; then
  echo "SKIP: the lab needs root"
  exit 77
fi
# shellcheck source=deploy/lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../deploy/lab/lib.sh"

UPDATES=${SLUICE_GRPC_UPDATES:-1000}
WORK=$(mktemp -d /tmp/sluice-grpc-test.XXXXXX)
CTL="$LAB_BUILD/bin/sluicectl"
load_pid=""
cleanup() {
  touch "$WORK/stop"
  [[ -n "$load_pid" ]] && lab_poll 30 0.2 lab_pid_gone "$load_pid"
  lab_down quiet
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# cloud.yaml for the lab. $1: the weight of vm2 and vm4 in VIP 10.200.0.10:80 (vm1 and vm3
# get 3 - $1); $2: "extra" adds the VIP port 8081 served by vm1:8081.
# SLUICE_LAB_HOST2=ovs: host2 decapsulates GRE (encap: gre, for its backends and its SNAT
# ranges; its vswitch agent asks sluice-snatd for vm4's chunks with GRE too).
write_cloud() {
  local weight=$1 extra=${2:-} other=$((3 - $1)) host2_encap=""
  [[ $LAB_HOST2 == ovs ]] && host2_encap=", encap: gre"
  cat <<EOF
muxes:
  - { name: mux1, grpc: $(lab_grpc_socket mux1) }
  - { name: mux2, grpc: $(lab_grpc_socket mux2) }
agents:
  - { name: host1, grpc: $(lab_grpc_socket host1) }
  - { name: host2, grpc: $(lab_grpc_socket host2)$host2_encap }
vips:
  - vip: 10.200.0.10
    port: 80
    protocol: tcp
    backends:
      - { dip: 10.1.0.1, port: 8080, weight: $other }
      - { dip: 10.1.0.2, port: 8080, weight: $weight }
      - { dip: 10.1.0.3, port: 8080, weight: $other }
      - { dip: 10.1.0.4, port: 8080, weight: $weight }
  - vip: 10.200.0.20
    port: 80
    protocol: tcp
    backends:
      - { dip: 10.1.0.3, port: 8080 }
      - { dip: 10.1.0.4, port: 8080 }
EOF
  if [[ $extra == extra ]]; then
    cat <<EOF
  - vip: 10.200.0.10
    port: 8081
    protocol: tcp
    backends:
      - { dip: 10.1.0.1, port: 8081 }
EOF
  fi
  cat <<EOF
snat:
  - { dip: 10.1.0.1, vip: 10.200.0.10, protocol: tcp, port_start: 20000, port_count: 64 }
  - { dip: 10.1.0.2, vip: 10.200.0.10, protocol: tcp, port_start: 20064, port_count: 64 }
  - { dip: 10.1.0.3, vip: 10.200.0.10, protocol: tcp, port_start: 20128, port_count: 64 }
EOF
  # vm4 has no static lease: host2 leases its ports from sluice-snatd (the lab's host2.yaml).
  # A static one here would make its dynamic chunk surplus, and the agent would return it
  # (a SNAT range change on the muxes in the middle of the generation count below).
}

mux_generation() { lab_stat "$1" config_generation; }
no_rule_drops() { echo $(($(lab_stat host1 drops.no_rule) + $(lab_stat host2 drops.no_rule))); }
no_backend_drops() { echo $(($(lab_stat mux1 drops.no_backend) + $(lab_stat mux2 drops.no_backend))); }

lab_up || lab_fail "lab up failed"
lab_poll 15 0.5 lab_vip_answers || lab_fail "no answer from the VIP within 15s"
# host2 leases vm4's first SNAT chunk from sluice-snatd at start: let that (a SNAT range
# change on both muxes) happen before the generations are counted.
vm4_leased() {
  "$CTL" get leases --socket "$(lab_grpc_socket host2)" -o json | grep -q '"dynamic": true'
}
if [[ $LAB_HOST2 != ovs ]]; then
  lab_poll 20 0.2 vm4_leased || lab_fail "host2 leased no SNAT chunk for vm4 within 20s"
fi
"$CTL" health -f <(write_cloud 1) || lab_fail "not every daemon is healthy"

write_cloud 1 >"$WORK/a.yaml"
write_cloud 2 extra >"$WORK/b.yaml"
"$CTL" apply -f "$WORK/a.yaml" || lab_fail "first apply failed"

# Bad input: refused with the field named, exit 2, and nothing changes anywhere.
gen_before=$(mux_generation mux1)
write_cloud 1 | sed 's/{ dip: 10.1.0.4, port: 8080, weight: 1 }/{ dip: 10.1.0.9, port: 8080 }/' \
  >"$WORK/unknown_host.yaml"
out=$("$CTL" apply -f "$WORK/unknown_host.yaml" 2>&1)
rc=$?
[[ $rc == 2 && $out == *"vips[0].backends[3].dip: 10.1.0.9 is not a VM of any agent listed"* ]] ||
  lab_fail "a backend on an unknown host was not refused precisely (exit $rc): $out"
echo "refused: $out"
write_cloud 1 | sed 's/port_start: 20064, port_count: 64/port_start: 20000, port_count: 10/' \
  >"$WORK/overlap.yaml"
out=$("$CTL" apply -f "$WORK/overlap.yaml" 2>&1)
rc=$?
[[ $rc == 2 && $out == *"snat[1].port_start: ports 20000..20009 overlap the lease of 10.1.0.1"* ]] ||
  lab_fail "overlapping SNAT leases were not refused precisely (exit $rc): $out"
echo "refused: $out"
[[ $(mux_generation mux1) == "$gen_before" ]] || lab_fail "a refused apply changed mux1's tables"

RESULTS=$WORK/results.txt
: >"$RESULTS"
(
  while [[ ! -e $WORK/stop ]]; do lab_http_requests 40 4 >>"$RESULTS"; done
) &
load_pid=$!
lab_poll 10 0.1 test -s "$RESULTS" || lab_fail "no request completed within 10s"

no_rule_before=$(no_rule_drops)
no_backend_before=$(no_backend_drops)
gen1_before=$(mux_generation mux1)
start_ms=$(lab_now_ms)
updates=0 applies=0
while ((updates < UPDATES)); do
  file=$WORK/a.yaml
  ((applies % 2 == 0)) && file=$WORK/b.yaml
  if ! out=$("$CTL" apply -f "$file" 2>&1); then
    lab_fail "apply $((applies + 1)) ($(basename "$file")) failed after $updates updates: $out"
  fi
  ((applies == 0)) && echo "$out"
  applies=$((applies + 1))
  # "+10.200.0.10:8081/tcp", "-10...", "~10.200.0.10:80/tcp": one per VIP or endpoint changed.
  n=$(grep -oE ' [+~-][0-9]' <<<"$out" | wc -l)
  ((n > 0)) || lab_fail "apply $applies changed nothing: $out"
  updates=$((updates + n))
done
elapsed_ms=$(($(lab_now_ms) - start_ms))
echo "$updates updates in $applies applies (${elapsed_ms} ms) while requests ran"
touch "$WORK/stop"
lab_poll 60 0.2 lab_pid_gone "$load_pid" || lab_fail "requests still running 60s after the updates"
load_pid=""

# Every apply swapped each mux's VIP tables once (the SNAT ranges do not change).
gen1_after=$(mux_generation mux1)
((gen1_after - gen1_before == applies)) ||
  lab_fail "mux1 went from generation $gen1_before to $gen1_after over $applies applies"
final=$WORK/a.yaml
((applies % 2 == 1)) && final=$WORK/b.yaml
want_weight=1 want_8081=0
[[ $final == "$WORK/b.yaml" ]] && want_weight=2 want_8081=1
backends=$("$CTL" get backends --socket "$(lab_grpc_socket mux2)")
echo "$backends"
grep -qE "^10\.200\.0\.10:80/tcp +10\.1\.0\.4 +10\.101\.0\.34 +$want_weight " <<<"$backends" ||
  lab_fail "mux2 does not show vm4 with weight $want_weight"
endpoints=$("$CTL" get endpoints --socket "$(lab_grpc_socket host1)")
echo "$endpoints"
(($(grep -c '^10\.200\.0\.10:8081/tcp' <<<"$endpoints") == want_8081)) ||
  lab_fail "host1's endpoints do not match the last update"

answered=$(grep -cE '^0\|vm[0-9]+\|' "$RESULTS")
total=$(wc -l <"$RESULTS")
echo "requests answered: $answered of $total"
((total >= 100)) || lab_fail "only $total requests ran during the updates"
((answered == total)) ||
  lab_fail "$((total - answered)) requests failed: $(grep -vE '^0\|vm' "$RESULTS" | head -3 | tr '\n' ';')"
no_rule_after=$(no_rule_drops)
no_backend_after=$(no_backend_drops)
echo "agent no_rule drops: $no_rule_before -> $no_rule_after; mux no_backend drops: $no_backend_before -> $no_backend_after"
((no_rule_after == no_rule_before)) || lab_fail "packets reached an agent with no rule during the updates"
((no_backend_after == no_backend_before)) || lab_fail "a mux dropped packets for want of a backend"
echo "PASS: $updates gRPC updates ($applies sluicectl applies) under traffic, $total requests, none failed"
