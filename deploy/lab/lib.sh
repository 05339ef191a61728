# shellcheck shell=bash
# The network-namespace lab as bash functions: lab.sh, demo.sh and the end-to-end tests
# source this file and call lab_up / lab_down / lab_stats ... (see README.md in this
# directory for the topology). Needs root. Functions return non-zero on failure and say why
# on stderr; none of them exits the caller's shell.
#
# Environment:
#   SLUICE_BUILD              build directory holding bin/ (default <repo>/build)
#   SLUICE_LAB_RUN            run directory for pids, logs, sockets (default /run/sluice-lab)
#   SLUICE_LAB_NO_DAEMONS=1   lab_up builds the topology and VMs but starts no daemons
#   SLUICE_LAB_READY_TIMEOUT  seconds lab_wait_ready waits for each daemon (default 30)
#   SLUICE_LAB_CONFIG_DIR     daemon configs and cloud.yaml (default deploy/lab/config; tests
#                             use copies)
#   SLUICE_LAB_HOST2=ovs      host2 runs Open vSwitch: its agent in vswitch mode (its own
#                             ovsdb-server + ovs-vswitchd, run dir $SLUICE_LAB_RUN/ovs-host2,
#                             inside sl-host2), vm3/vm4's host-side veths as bridge ports, and
#                             the muxes send GRE to host2 (cloud.yaml: host2 encap gre).
#                             Configs are generated from the ones in SLUICE_LAB_CONFIG_DIR into
#                             $SLUICE_LAB_RUN/config-ovs.
#   SLUICE_LAB_HOST2=ovs-dpdk the same with the DPDK build of ovs-vswitchd (2 MB hugepages
#                             reserved, and given back, by the lab: SLUICE_LAB_HUGEPAGES,
#                             default 512) and vm3 on a vhost-user port (dpdkvhostuserclient):
#                             sluice-vhost-relay joins the socket to vm3's veth (LAB_VHOST_VMS).

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_REPO=$(cd "$LAB_DIR/../.." && pwd)
LAB_BUILD=$(realpath -m "${SLUICE_BUILD:-$LAB_REPO/build}")
LAB_RUN=${SLUICE_LAB_RUN:-/run/sluice-lab}
LAB_CONFIG_DIR=${SLUICE_LAB_CONFIG_DIR:-$LAB_DIR/config}
LAB_HOST2=${SLUICE_LAB_HOST2:-dpdk}
LAB_OVS_RUN=$LAB_RUN/ovs-host2
# SLUICE_LAB_HOST2=ovs-dpdk: the VMs on vhost-user ports, their sockets, the hugepages.
LAB_VHOST_VMS=()
[[ $LAB_HOST2 == ovs-dpdk ]] && LAB_VHOST_VMS=(vm3)
LAB_VHOST_DIR=$LAB_RUN/vhost
LAB_HUGEPAGES=${SLUICE_LAB_HUGEPAGES:-512}
LAB_HUGEPAGES_STATE=$LAB_RUN/hugepages.state
LAB_OVS_DPDK_VSWITCHD=/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk
# Debian's python3 (ensure-deps installs it); a python3 on PATH can be a slow wrapper (pyenv).
LAB_PYTHON=${SLUICE_LAB_PYTHON:-$([[ -x /usr/bin/python3 ]] && echo /usr/bin/python3 || echo python3)}

LAB_VIP=10.200.0.10
LAB_VIP_PORT=80
LAB_VM_PORT=8080
LAB_VIP2=10.200.0.20           # served only by host2's VMs (vm3, vm4): the Fastpath walk
LAB_INTERNET=10.100.0.2        # the "internet" server in sl-client (SNAT walk)
LAB_INTERNET_PORT=9000
LAB_NAMESPACES=(sl-client sl-router sl-mux1 sl-mux2 sl-host1 sl-host2 sl-vm1 sl-vm2 sl-vm3 sl-vm4)
# shellcheck disable=SC2034  # used by the scripts that source this file
LAB_MUXES=(mux1 mux2)
# shellcheck disable=SC2034
LAB_AGENTS=(host1 host2)
# sluice-snatd (the SNAT port allocator, config/snatd.yaml) starts after the muxes it informs
# and before the agents that lease from it; it runs in sl-router (it only needs the unix
# sockets of the muxes' gRPC APIs and its own, under $LAB_RUN).
LAB_DAEMONS=(mux1 mux2 snatd host1 host2)
LAB_VMS=(vm1 vm2 vm3 vm4)
declare -A LAB_MUX_PA=([mux1]=10.101.0.11 [mux2]=10.101.0.12)
declare -A LAB_VM_HOST=([vm1]=host1 [vm2]=host1 [vm3]=host2 [vm4]=host2)
# DPDK lcore per daemon: spread over the machine's two cores.
# mux1 runs two data-path workers (mux.workers: 2, two af_packet queue pairs spread by the
# kernel's fanout hash), mux2 one: the same flows must land on the same VMs either way.
declare -A LAB_LCORE=([mux1]=0,1 [host1]=0 [mux2]=1 [host2]=1)

lab_log() { echo "lab: $*" >&2; }
lab_err() { echo "lab: error: $*" >&2; }

# Runs a command inside a lab namespace.
lab_ns() {
  local ns=$1
  shift
  ip netns exec "$ns" "$@"
}

# Milliseconds since the epoch (for poll deadlines).
lab_now_ms() { date +%s%3N; }

# lab_poll TIMEOUT_S INTERVAL_S CMD... : runs CMD until it succeeds (returns 0) or the timeout
# passes (returns 1). Every wait in the lab is one of these, never a bare sleep.
lab_poll() {
  local timeout_s=$1 interval_s=$2
  shift 2
  local deadline=$(($(lab_now_ms) + ${timeout_s%.*} * 1000))
  while true; do
    "$@" && return 0
    (($(lab_now_ms) >= deadline)) && return 1
    sleep "$interval_s"
  done
}

# ---------------------------------------------------------------------------------------
# Processes. Each process the lab starts has $LAB_RUN/<name>.pid and <name>.log.

# True if PID is a live (not zombie) process.
lab_pid_alive() {
  local pid=$1 state
  [[ -n "$pid" && -r /proc/$pid/stat ]] || return 1
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

lab_pid_of() {
  local f=$LAB_RUN/$1.pid
  [[ -r "$f" ]] && cat "$f"
}

# lab_start NAME NS CMD... : starts CMD in namespace NS in the background, logging to
# $LAB_RUN/NAME.log, and records its pid ("ip netns exec" execs, so $! is CMD's pid).
lab_start() {
  local name=$1 ns=$2
  shift 2
  ip netns exec "$ns" "$@" </dev/null >>"$LAB_RUN/$name.log" 2>&1 &
  echo $! >"$LAB_RUN/$name.pid"
  disown $!  # killing it later is the lab's business; no "Killed" job notices
}

# lab_stop_pid PID [TIMEOUT_S] : SIGTERM, then SIGKILL if it has not exited in time.
lab_stop_pid() {
  local pid=$1 timeout_s=${2:-5}
  lab_pid_alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  if ! lab_poll "$timeout_s" 0.05 lab_pid_gone "$pid"; then
    lab_log "pid $pid ignored SIGTERM for ${timeout_s}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null
    lab_poll 5 0.05 lab_pid_gone "$pid"
  fi
}
lab_pid_gone() { ! lab_pid_alive "$1"; }

# lab_stop NAME : stops the process recorded as NAME, if its pid file still names a lab
# process (guards against a recycled pid from a stale pid file).
lab_stop() {
  local name=$1 pid
  pid=$(lab_pid_of "$name") || return 0
  if lab_pid_alive "$pid" &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qE 'sluice-|vm_http_server|bird'; then
    lab_stop_pid "$pid"
  fi
  rm -f "$LAB_RUN/$name.pid"
}

# ---------------------------------------------------------------------------------------
# Topology.

lab_ns_exists() { [[ -e "/run/netns/$1" ]]; }

# A namespace with lo up and IPv6 off (set before any interface is created, so every new
# interface inherits it).
lab_ns_create() {
  local ns=$1
  ip netns add "$ns" || return 1
  if [[ -d /proc/sys/net/ipv6 ]]; then
    lab_ns "$ns" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 \
      net.ipv6.conf.default.disable_ipv6=1 >/dev/null || return 1
  fi
  ip -n "$ns" link set lo up
}

# Offloads off on a veth end: the DPDK af_packet apps need real checksums and no GSO/GRO
# super-frames.
lab_no_offloads() {
  local ns=$1 ifname=$2
  lab_ns "$ns" ethtool -K "$ifname" tx off rx off tso off gso off gro off >/dev/null 2>&1 || {
    lab_err "ethtool -K $ifname in $ns failed"
    return 1
  }
  if [[ -d /proc/sys/net/ipv6 ]]; then
    lab_ns "$ns" sysctl -q -w "net.ipv6.conf.$ifname.disable_ipv6=1" >/dev/null 2>&1 || true
  fi
}

# lab_veth NS_A IF_A NS_B IF_B MTU [MAC_B] : a veth pair between two namespaces, both ends
# up with offloads off.
lab_veth() {
  local ns_a=$1 if_a=$2 ns_b=$3 if_b=$4 mtu=$5 mac_b=${6:-}
  local peer_opts=(name "$if_b" mtu "$mtu")
  [[ -n "$mac_b" ]] && peer_opts+=(address "$mac_b")
  ip -n "$ns_a" link add name "$if_a" mtu "$mtu" type veth peer "${peer_opts[@]}" netns "$ns_b" ||
    return 1
  lab_no_offloads "$ns_a" "$if_a" && lab_no_offloads "$ns_b" "$if_b" || return 1
  ip -n "$ns_a" link set "$if_a" up && ip -n "$ns_b" link set "$if_b" up
}

# The route that sends VIP traffic to the muxes comes from BGP: each mux's gobgpd announces
# its VIPs to BIRD in sl-router, which installs one ECMP route per VIP (merge paths) into the
# router's kernel. lab_set_vip_route NEXTHOP... overrides it by hand (for experiments).
lab_set_vip_route() {
  (($# > 0)) || {
    lab_err "lab_set_vip_route: no next hop"
    return 1
  }
  local hops=() nh
  for nh in "$@"; do hops+=(nexthop via "$nh"); done
  ip -n sl-router route replace "$LAB_VIP/32" "${hops[@]}"
}

# The VIP's next hops in the router's kernel, one per line (from BGP).
lab_vip_nexthops() {
  ip -n sl-router route show "${1:-$LAB_VIP}/32" 2>/dev/null | grep -oE 'via [0-9.]+' |
    awk '{print $2}' | sort
}
# True when the router's route for the VIP names exactly the given muxes' PAs.
lab_vip_routed_via() {
  local want got m
  want=$(for m in "$@"; do echo "${LAB_MUX_PA[$m]}"; done | sort)
  got=$(lab_vip_nexthops)
  [[ "$got" == "$want" ]]
}

# BIRD in sl-router: passive eBGP sessions with both muxes, ECMP into the kernel.
lab_start_router_bgp() {
  local conf=$LAB_RUN/bird.conf m
  {
    echo "# Written by deploy/lab/lib.sh: the lab router's BGP speaker."
    echo "router id 10.101.0.1;"
    echo "protocol device {}"
    echo "protocol kernel { ipv4 { import none; export all; }; merge paths yes; }"
    for m in "${LAB_MUXES[@]}"; do
      echo "protocol bgp $m { local 10.101.0.1 as 65000; neighbor ${LAB_MUX_PA[$m]} as 65001;"
      echo "  passive on; hold time 9; ipv4 { import all; export none; }; }"
    done
  } >"$conf"
  lab_start bird sl-router bird -f -c "$conf" -s "$LAB_RUN/bird.ctl"
}

lab_create_topology() {
  local ns n h vm
  for ns in "${LAB_NAMESPACES[@]}"; do lab_ns_create "$ns" || return 1; done

  # Router: forwards, hashes ECMP on the L4 5-tuple, and does not drop DSR replies whose
  # source (the VIP) routes back out another interface.
  lab_ns sl-router sysctl -q -w net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1 \
    net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 >/dev/null || return 1

  # client <-> router
  lab_veth sl-router to-client sl-client eth0 1500 || return 1
  ip -n sl-router addr add 10.100.0.1/24 dev to-client || return 1
  ip -n sl-client addr add 10.100.0.2/24 dev eth0 || return 1
  ip -n sl-client route add default via 10.100.0.1 || return 1

  # Underlay: the router's bridge br-ul with one port per mux and per host. The MTU leaves
  # room for the IPv4-in-IPv4 header on 1500-byte VM packets.
  ip -n sl-router link add name br-ul mtu 1600 address 02:00:0a:65:00:01 type bridge || return 1
  lab_no_offloads sl-router br-ul || return 1
  for n in mux1 mux2 host1 host2; do
    lab_veth sl-router "r-$n" "sl-$n" eth0 1600 || return 1
    ip -n sl-router link set "r-$n" master br-ul || return 1
  done
  # The muxes' BGP sessions run over the kernel stack, so their PAs are on eth0 for the
  # kernel too (the DPDK app, on the same interface and MAC, leaves that traffic alone).
  for n in mux1 mux2; do
    ip -n "sl-$n" addr add "${LAB_MUX_PA[$n]}/24" dev eth0 || return 1
  done
  ip -n sl-router link set br-ul mtu 1600 up || return 1
  ip -n sl-router addr add 10.101.0.1/24 dev br-ul || return 1
  local ifname
  for ifname in to-client br-ul r-mux1 r-mux2 r-host1 r-host2; do
    lab_ns sl-router sysctl -q -w "net.ipv4.conf.$ifname.rp_filter=0" >/dev/null || return 1
  done

  # VMs: one veth each; the host-side end (vmN) is the agent's DPDK port.
  for n in 1 2 3 4; do
    vm=vm$n
    h=${LAB_VM_HOST[$vm]}
    lab_veth "sl-$h" "$vm" "sl-$vm" eth0 1500 "02:00:0a:01:00:0$n" || return 1
    ip -n "sl-$vm" addr add "10.1.0.$n/24" dev eth0 || return 1
    ip -n "sl-$vm" route add default via 10.1.0.254 || return 1
  done

  lab_start_router_bgp
}

# ---------------------------------------------------------------------------------------
# VM HTTP servers.

lab_vm_serving() {
  local vm=$1 n=${1#vm}
  [[ "$(lab_ns "sl-$vm" curl -s --max-time 1 "http://10.1.0.$n:$LAB_VM_PORT/")" == "$vm" ]]
}

lab_internet_serving() {
  [[ "$(lab_ns sl-client curl -s --max-time 1 "http://$LAB_INTERNET:$LAB_INTERNET_PORT/")" == internet ]]
}

# lab_start_vm VM : starts VM's HTTP server in its namespace (pid in $LAB_RUN/VM.pid).
lab_start_vm() {
  lab_start "$1" "sl-$1" "$LAB_PYTHON" -u "$LAB_DIR/vm_http_server.py" --name "$1" \
    --port "$LAB_VM_PORT"
}

# lab_stop_vm VM : stops VM's HTTP server by its pid (SIGTERM) and waits until it is gone:
# its listener closes, new connections are refused, its open connections are reset.
lab_stop_vm() {
  local pid
  pid=$(lab_pid_of "$1") || {
    lab_err "no pid file for $1"
    return 1
  }
  kill -TERM "$pid" || return 1
  lab_poll 10 0.05 lab_pid_gone "$pid" || {
    lab_err "$1's server (pid $pid) still alive 10s after SIGTERM"
    return 1
  }
}

lab_start_vms() {
  local vm
  for vm in "${LAB_VMS[@]}"; do lab_start_vm "$vm"; done
  # A server "outside the cloud" for the VMs' outbound (SNAT) connections.
  lab_start internet sl-client "$LAB_PYTHON" -u "$LAB_DIR/vm_http_server.py" --name internet \
    --port "$LAB_INTERNET_PORT"
  if ! lab_poll 10 0.1 lab_internet_serving; then
    lab_err "the internet server did not answer on $LAB_INTERNET:$LAB_INTERNET_PORT within 10s"
    tail -n 20 "$LAB_RUN/internet.log" >&2
    return 1
  fi
  for vm in "${LAB_VMS[@]}"; do
    if ! lab_poll 10 0.1 lab_vm_serving "$vm"; then
      lab_err "$vm's HTTP server did not answer on 10.1.0.${vm#vm}:$LAB_VM_PORT within 10s"
      tail -n 20 "$LAB_RUN/$vm.log" >&2
      return 1
    fi
  done
}

# ---------------------------------------------------------------------------------------
# Daemons.

# DPDK memory options: no hugepages and nothing left on disk. DPDK 22.11 (Debian 12) refuses
# "--no-huge --in-memory" ("Option --legacy-mem is not compatible with --in-memory": no-huge
# implies legacy memory), so the lab uses --no-shconf, which is what --in-memory adds on top
# of hugepage unlinking. SLUICE_LAB_EAL_MEMORY overrides (e.g. "--in-memory" with hugepages).
read -r -a LAB_EAL_MEMORY <<<"${SLUICE_LAB_EAL_MEMORY:---no-huge --no-shconf}"

lab_daemon_kind() {
  case $1 in
    mux*) echo mux ;;
    snatd) echo snatd ;;
    *) echo agent ;;
  esac
}
lab_socket() { echo "$LAB_RUN/$1.sock"; }
# The daemon's gRPC API (sluicectl apply/get/health --socket).
lab_grpc_socket() { echo "$LAB_RUN/$1.grpc.sock"; }

lab_check_binaries() {
  local b missing=0
  for b in sluice-mux sluice-agent sluice-snatd sluicectl; do
    if [[ ! -x "$LAB_BUILD/bin/$b" ]]; then
      lab_err "$LAB_BUILD/bin/$b is missing: build first (ninja -C $LAB_BUILD) or set SLUICE_BUILD"
      missing=1
    fi
  done
  return $missing
}

lab_start_daemon() {
  local d=$1 kind
  kind=$(lab_daemon_kind "$d")
  rm -f "$(lab_socket "$d")"
  echo "=== $(date '+%F %T') starting sluice-$kind $d" >>"$LAB_RUN/$d.log"
  if [[ $kind == snatd ]]; then
    lab_start "$d" sl-router "$LAB_BUILD/bin/sluice-snatd" --config "$LAB_CONFIG_DIR/$d.yaml" \
      --stats-socket "$(lab_socket "$d")" --grpc-socket "$(lab_grpc_socket "$d")"
    return
  fi
  lab_start "$d" "sl-$d" "$LAB_BUILD/bin/sluice-$kind" \
    -l "${LAB_LCORE[$d]}" "${LAB_EAL_MEMORY[@]}" -m 256 --file-prefix "sl-$d" --no-pci \
    --no-telemetry --log-level lib.eal:warning \
    -- --config "$LAB_CONFIG_DIR/$d.yaml" --stats-socket "$(lab_socket "$d")" --run-dir "$LAB_RUN" \
    --grpc-socket "$(lab_grpc_socket "$d")" --metrics-listen "$LAB_METRICS_LISTEN"
}

# Every daemon serves Prometheus text on the loopback of its own namespace (one address for
# all: each namespace has its own loopback).
LAB_METRICS_LISTEN=127.0.0.1:9464
# lab_metrics DAEMON : scrapes the daemon's /metrics from inside its namespace.
lab_metrics() {
  ip netns exec "sl-$1" "$LAB_PYTHON" - "http://$LAB_METRICS_LISTEN/metrics" <<'PY'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    sys.stdout.write(r.read().decode())
PY
}
# lab_metric DAEMON NAME : the sum of every sample of metric NAME (all label sets).
lab_metric() {
  lab_metrics "$1" | awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $NF; f = 1 }
    END { if (!f) exit 1; printf "%d\n", s }'
}

# Prints the daemon's stats as one JSON object.
lab_stats() { "$LAB_BUILD/bin/sluicectl" stats --socket "$(lab_socket "$1")" -o json; }
lab_stats_table() { "$LAB_BUILD/bin/sluicectl" stats --socket "$(lab_socket "$1")" -o table; }

# lab_request DAEMON REQUEST : one request on the daemon's stats socket ("reload", "drain",
# "resume", "stats"); prints the one-line answer.
lab_request() {
  "$LAB_PYTHON" - "$(lab_socket "$1")" "$2" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
print(s.recv(4096).decode().strip())
PY
}

# Reads JSON on stdin and prints the value at a dotted path ("drops.no_rule", "vms.0.name").
lab_json_get() {
  "$LAB_PYTHON" -c '
import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v[int(k)] if isinstance(v, list) else v[k]
print(json.dumps(v) if isinstance(v, (bool, dict, list)) else v)' "$1"
}

# lab_stat DAEMON PATH : one value from the daemon's stats, e.g. lab_stat mux1 drops.no_rule
lab_stat() {
  local json
  json=$(lab_stats "$1") || return 1
  lab_json_get "$2" <<<"$json"
}

# lab_stat_sum PATH DAEMON... : the sum of one numeric stat over several daemons.
lab_stat_sum() {
  local path=$1 d v total=0
  shift
  for d in "$@"; do
    v=$(lab_stat "$d" "$path") || return 1
    total=$((total + v))
  done
  echo "$total"
}

lab_daemon_ready() { [[ "$(lab_stat "$1" ready 2>/dev/null)" == true ]]; }

# lab_backend_health MUX DIP : prints "healthy" or "unhealthy" for DIP as MUX holds it (the
# agents' health checks, SetBackendHealth), "absent" if DIP is no backend there. Every VIP
# with DIP as a backend must agree.
lab_backend_health() {
  local json
  json=$(lab_stats "$1") || return 1
  "$LAB_PYTHON" -c '
import json, sys
states = {b["healthy"] for b in json.load(sys.stdin)["backends"] if b["dip"] == sys.argv[1]}
print("absent" if not states else "mixed" if len(states) > 1 else
      "healthy" if states.pop() else "unhealthy")' "$2" <<<"$json"
}

# lab_muxes_see DIP STATE : true when every mux holds DIP in STATE (healthy|unhealthy).
lab_muxes_see() {
  local m
  for m in "${LAB_MUXES[@]}"; do
    [[ "$(lab_backend_health "$m" "$1" 2>/dev/null)" == "$2" ]] || return 1
  done
}

# lab_health_settled : true when every agent's checks have decided (no DIP "deciding") and
# every mux it reports to holds its current verdicts.
lab_health_settled() {
  local a json
  for a in "${LAB_AGENTS[@]}"; do
    json=$(lab_stats "$a" 2>/dev/null) || return 1
    "$LAB_PYTHON" -c '
import json, sys
s = json.load(sys.stdin)
ok = all(d["state"] != "deciding" for d in s["dip_health"]) and \
     all(r["in_sync"] for r in s["health_reports"])
sys.exit(0 if ok else 1)' <<<"$json" || return 1
  done
}

lab_log_tail() {
  echo "----- last lines of $LAB_RUN/$1.log -----" >&2
  tail -n "${2:-30}" "$LAB_RUN/$1.log" >&2 2>/dev/null
  echo "-----" >&2
}

# lab_wait_ready [DAEMON...] : waits until each daemon's stats say "ready": true. On a
# timeout or a daemon that exited, prints its log tail and fails.
lab_wait_ready() {
  local timeout_s=${SLUICE_LAB_READY_TIMEOUT:-30} d pid
  (($# > 0)) || set -- "${LAB_DAEMONS[@]}"
  for d in "$@"; do
    if ! lab_poll "$timeout_s" 0.1 lab_ready_or_dead "$d"; then
      lab_err "$d did not report ready within ${timeout_s}s"
      lab_log_tail "$d"
      return 1
    fi
    pid=$(lab_pid_of "$d")
    if ! lab_pid_alive "$pid"; then
      lab_err "$d (pid $pid) exited before it was ready"
      lab_log_tail "$d"
      return 1
    fi
  done
}
lab_ready_or_dead() { lab_pid_gone "$(lab_pid_of "$1")" || lab_daemon_ready "$1"; }

# lab_kill_daemon DAEMON [SIGNAL] : kills one daemon by pid (default SIGKILL, a crash) and
# waits until it is gone.
lab_kill_daemon() {
  local d=$1 sig=${2:-KILL} pid
  pid=$(lab_pid_of "$d") || {
    lab_err "no pid file for $d"
    return 1
  }
  kill "-$sig" "$pid" || return 1
  lab_poll 10 0.05 lab_pid_gone "$pid" || {
    lab_err "$d (pid $pid) still alive 10s after SIG$sig"
    return 1
  }
}

lab_start_daemons() {
  local d
  for d in "${LAB_DAEMONS[@]}"; do lab_start_daemon "$d" || return 1; done
  lab_wait_ready "${LAB_DAEMONS[@]}"
}

# lab_apply_cloud : the cloud controller's part. The daemons boot with their own facts only;
# `sluicectl apply -f cloud.yaml` gives every mux its VIPs, backends and SNAT ranges and
# every agent its endpoints (with health checks) and SNAT leases. Idempotent: run it again
# after editing cloud.yaml. A restarted daemon needs no new apply: muxes and agents keep
# what was pushed (mux.cloud_state_file, agent.cloud_state_file). What changed goes to $LAB_RUN/apply.log; on a refusal, to stderr too.
lab_apply_cloud() {
  local cloud=$LAB_CONFIG_DIR/cloud.yaml out rc
  out=$("$LAB_BUILD/bin/sluicectl" apply -f "$cloud" 2>&1)
  rc=$?
  {
    echo "=== $(date '+%F %T') sluicectl apply -f $cloud (exit $rc)"
    echo "$out"
  } >>"$LAB_RUN/apply.log"
  if ((rc != 0)); then
    lab_err "sluicectl apply -f $cloud failed (exit $rc):"
    echo "$out" >&2
    return 1
  fi
  LAB_LAST_APPLY=$out
}

# ---------------------------------------------------------------------------------------
# Traffic and diagnostics.

# lab_http_requests COUNT PARALLEL [PATH [VIP]] : COUNT HTTP GETs to the VIP from sl-client, each
# its own curl (a new connection, so a new source port), PARALLEL at a time. Prints one
# line per request: "<curl exit code>|<body without newlines>|<client source port>".
lab_http_requests() {
  local count=$1 parallel=$2 url="http://${4:-$LAB_VIP}:$LAB_VIP_PORT${3:-/}"
  # shellcheck disable=SC2016  # expanded by the inner bash
  seq "$count" | lab_ns sl-client xargs -P "$parallel" -I{} bash -c '
    out=$(curl -s --connect-timeout 3 --max-time 10 -w "|%{local_port}" "$1")
    rc=$?
    echo "$rc|$(printf %s "$out" | tr -d "\n")"' _ "$url"
}

# True if one request to the VIP from sl-client is answered by a VM.
lab_vip_answers() {
  [[ "$(lab_ns sl-client curl -s --connect-timeout 2 --max-time 3 \
    "http://$LAB_VIP:$LAB_VIP_PORT/")" =~ ^vm[0-9]+$ ]]
}

# For the e2e tests: lab_skip_unless_root exits 77 (ctest's skip) when not root; lab_fail
# MESSAGE prints it with the lab's diagnostics and exits 1.
lab_skip_unless_root() {
  if [[ $EUID -ne 0 ]]; then
    echo "SKIP: the lab needs root"
    exit 77
  fi
}
lab_fail() {
  echo "FAIL: $*" >&2
  lab_dump_diagnostics
  exit 1
}

# Every daemon's stats and log tail, and the router's view: for failure reports.
lab_dump_diagnostics() {
  local d
  {
    echo "===== lab diagnostics ====="
    lab_status
    echo
    echo "router neighbours:"
    ip -n sl-router neigh show 2>/dev/null | sed 's/^/  /'
    for d in "${LAB_DAEMONS[@]}" "${LAB_VMS[@]}"; do
      [[ -e "$LAB_RUN/$d.log" ]] && lab_log_tail "$d" 15 2>&1
    done
    echo "===== end of diagnostics ====="
  } >&2
}

# lab_mux_failover N : N slow downloads (20 s each, so connections that start late still
# overlap) through the VIP from sl-client; once all N are
# established, kill -9 mux1, wait for BGP to withdraw it, wait for every download to end,
# and print a report. Returns 0 when none was lost, 1 otherwise (or when a step failed).
lab_mux_failover() {
  local n=$1 bytes=400000 rate=20000 results=$LAB_RUN/failover_results.txt load_pid killed_ms
  : >"$results"
  # shellcheck disable=SC2016  # expanded by the inner bash
  seq "$n" | lab_ns sl-client xargs -P "$n" -I{} bash -c '
    curl -s --max-time 90 -o /dev/null -w "%{http_code} %{size_download}\n" "$1" >>"$2" 2>&1 ||
      echo "curl-exit-$? 0" >>"$2"' _ \
    "http://$LAB_VIP:$LAB_VIP_PORT/stream?bytes=$bytes&rate=$rate" "$results" &
  load_pid=$!
  _lab_all_established() {
    (($(lab_ns sl-client ss -Htn state established "( dport = :$LAB_VIP_PORT )" | wc -l) >= n))
  }
  if ! lab_poll 30 0.2 _lab_all_established; then
    lab_err "only $(lab_ns sl-client ss -Htn state established | wc -l) of $n connections established"
    pkill -P "$load_pid" 2>/dev/null
    return 1
  fi
  echo "  $n connections established (new flows so far: mux1 $(lab_stat mux1 new_flows), mux2 $(lab_stat mux2 new_flows))"
  killed_ms=$(lab_now_ms)
  lab_kill_daemon mux1 KILL || return 1
  if ! lab_poll 5 0.05 lab_vip_routed_via mux2; then
    lab_err "BGP did not withdraw mux1 within 5s"
    pkill -P "$load_pid" 2>/dev/null
    return 1
  fi
  echo "  killed mux1 (kill -9); BGP withdrew it after $(($(lab_now_ms) - killed_ms)) ms"
  if ! lab_poll 120 0.5 lab_pid_gone "$load_pid"; then
    lab_err "downloads still running 120s after the kill"
    pkill -P "$load_pid" 2>/dev/null
    return 1
  fi
  local ok total
  ok=$(grep -c "^200 $bytes$" "$results")
  total=$(wc -l <"$results")
  echo "  live connections when mux1 died: $n (each $bytes bytes at $rate B/s)"
  echo "  completed intact: $ok of $total; lost: $((n - ok))"
  echo "  survivor mux2: vip_packets $(lab_stat mux2 vip_packets), new_flows $(lab_stat mux2 new_flows)"
  ((total == n && ok == n))
}

# lab_fastpath_download BYTES [RATE] : vm1 (host1) downloads BYTES (at RATE B/s) from VIP2 (served by host2's VMs)
# and reports, from counter deltas, how many of the connection's packets crossed a mux (VIP
# and SNAT-return packets) and how many went host to host (the agents' fastpath_packets).
# Returns 0 if the download completed and the muxes carried < 1 % of the packets.
lab_fastpath_download() {
  local bytes=$1 rate=${2:-} url out mux_before fp_before mux fastpath total pct
  _lab_mux_packets() {
    echo $(($(lab_stat_sum vip_packets "${LAB_MUXES[@]}") +
      $(lab_stat_sum snat_return_packets "${LAB_MUXES[@]}")))
  }
  mux_before=$(_lab_mux_packets) || return 1
  fp_before=$(lab_stat_sum fastpath_packets "${LAB_AGENTS[@]}") || return 1
  url="http://$LAB_VIP2:$LAB_VIP_PORT/stream?bytes=$bytes${rate:+&rate=$rate}"
  out=$(lab_ns sl-vm1 curl -s --connect-timeout 3 --max-time 60 -o /dev/null \
    -w '%{http_code} %{size_download}' "$url")
  mux=$(($(_lab_mux_packets) - mux_before))
  fastpath=$(($(lab_stat_sum fastpath_packets "${LAB_AGENTS[@]}") - fp_before))
  total=$((mux + fastpath))
  pct=$(awk -v m="$mux" -v t="$total" 'BEGIN { printf "%.2f", t ? 100 * m / t : 100 }')
  echo "  vm1 (host1) -> http://$LAB_VIP2/stream, $bytes bytes${rate:+ at $rate B/s}: HTTP/size '$out'"
  echo "  packets through the muxes: $mux; host to host (Fastpath): $fastpath; mux share $pct %"
  echo "  redirects: muxes sent $(lab_stat_sum fastpath_redirects_sent "${LAB_MUXES[@]}"), host1 applied $(lab_stat host1 fastpath.redirects_applied_source) as source, host2 $(lab_stat host2 fastpath.redirects_applied_destination) as destination; rejected as forged: $(lab_stat_sum drops.fastpath_redirect_bad_auth "${LAB_AGENTS[@]}")"
  [[ "$out" == "200 $bytes" ]] || {
    lab_err "the Fastpath download did not complete"
    return 1
  }
  ((total > 0 && 100 * mux < total)) || {
    lab_err "the muxes carried $pct % of the connection's packets (goal < 1 %)"
    return 1
  }
}

# ---------------------------------------------------------------------------------------
# Whole lab.

lab_require_root() {
  [[ $EUID -eq 0 ]] && return 0
  lab_err "the lab needs root (network namespaces, veths)"
  return 1
}

lab_check_tools() {
  local t missing=()
  for t in ip ethtool python3 curl sysctl; do
    command -v "$t" >/dev/null || missing+=("$t")
  done
  ((${#missing[@]} == 0)) && return 0
  lab_err "missing tools: ${missing[*]} (run deploy/ensure-deps.sh)"
  return 1
}

# SLUICE_LAB_HOST2=ovs: the daemon configs for host2 on Open vSwitch, generated from the
# default ones into $LAB_RUN/config-ovs (LAB_CONFIG_DIR then points there): host2.yaml gets
# agent.datapath: vswitch, kernel interface names for its ports and a vswitch: section;
# cloud.yaml names host2 with encap: gre (OVS decaps GRE, not IPIP), so the muxes send GRE
# to its VMs and for replies to its static SNAT ports. The same `sluicectl apply` pushes it.
# vm4's chunks from sluice-snatd come with GRE too: the vswitch agent asks for them so.
lab_generate_ovs_configs() {
  local src=$LAB_CONFIG_DIR dst=$LAB_RUN/config-ovs
  mkdir -p "$dst" || return 1
  local args=("$src" "$dst" "$LAB_OVS_RUN" "$LAB_VHOST_DIR" "${LAB_VHOST_VMS[@]}")
  "$LAB_PYTHON" - "${args[@]}" <<'PY' || return 1
import pathlib, re, sys
src, dst, ovs_run, vhost_dir = map(pathlib.Path, sys.argv[1:5])
vhost_vms = sys.argv[5:]
for f in src.glob("*.yaml"):
    text = f.read_text()
    if f.name == "cloud.yaml":
        text, n = re.subn(r"(\{ name: host2, [^}\n]*?)\s*\}", r"\1, encap: gre }", text)
        if n != 1:
            sys.exit(f"{f}: no agent host2 to switch to GRE")
    if f.name == "host2.yaml":
        text, n = re.subn(r'uplink: "net_af_packet\d+,iface=(\w+)".*',
                          r"datapath: vswitch   # the rules run in Open vSwitch (vswitch: below)\n"
                          r"  uplink: \1   # kernel interface; a port of the OVS bridge", text)
        text, m = re.subn(r'port: "net_af_packet\d+,iface=(\w+)"', r"port: \1", text)
        if n != 1 or m == 0:
            sys.exit(f"{f}: uplink or VM ports not in the expected form")
        text += (f"vswitch:\n  bridge: br-sl\n  run_dir: {ovs_run}\n"
                 "  slow_path_port: sl-slowpath\n")
        # ovs-dpdk: these VMs' ports are vhost-user sockets the "VM" (sluice-vhost-relay)
        # serves; OVS connects to them (dpdkvhostuserclient). One PMD thread on host2's core,
        # sleeping when idle.
        for vm in vhost_vms:
            text, n = re.subn(rf"port: {vm}\n",
                              f'port: "net_vhost_{vm},iface={vhost_dir}/{vm}.sock,client=1"\n',
                              text)
            if n != 1:
                sys.exit(f"{f}: no port of {vm} to put on vhost-user")
        if vhost_vms:
            text += ("  dpdk: true\n  pmd_cpu_mask: \"0x2\"\n"
                     "  pmd_max_sleep_us: 1000\n")
    (dst / f.name).write_text(text)
PY
  LAB_CONFIG_DIR=$dst
}

# Stops host2's OVS daemons (SLUICE_LAB_HOST2=ovs; started by its agent, which leaves them
# running so flows and conntrack survive an agent restart) by their pid files.
lab_stop_ovs() {
  local f pid
  for f in "$LAB_OVS_RUN/ovs-vswitchd.pid" "$LAB_OVS_RUN/ovsdb-server.pid"; do
    [[ -r "$f" ]] || continue
    pid=$(cat "$f")
    if lab_pid_alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q ovs; then
      lab_stop_pid "$pid"
    fi
  done
  rm -rf "$LAB_OVS_RUN"
}

# SLUICE_LAB_HOST2=ovs-dpdk: 2 MB hugepages for ovs-vswitchd-dpdk and the vhost relays.
# Mounts hugetlbfs at /dev/hugepages if none is mounted and raises vm.nr_hugepages until
# LAB_HUGEPAGES are free; $LAB_HUGEPAGES_STATE records what it changed, and
# lab_hugepages_release (lab_down) puts it back.
lab_hugepages_reserve() {
  local before free
  before=$(cat /proc/sys/vm/nr_hugepages) || return 1
  echo "nr_hugepages=$before mounted=0" >"$LAB_HUGEPAGES_STATE" || return 1
  if ! grep -q ' hugetlbfs ' /proc/mounts; then
    if ! { mkdir -p /dev/hugepages && mount -t hugetlbfs none /dev/hugepages; }; then
      lab_err "cannot mount hugetlbfs at /dev/hugepages"
      return 1
    fi
    echo "nr_hugepages=$before mounted=1" >"$LAB_HUGEPAGES_STATE"
  fi
  free=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
  if ((free < LAB_HUGEPAGES)); then
    echo $((before + LAB_HUGEPAGES - free)) >/proc/sys/vm/nr_hugepages
    free=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
  fi
  if ((free < LAB_HUGEPAGES)); then
    lab_err "only $free of $LAB_HUGEPAGES 2 MB hugepages free after raising vm.nr_hugepages:" \
      "$(grep -E '^(HugePages_|Hugepagesize)' /proc/meminfo | tr '\n' ' ')"
    return 1
  fi
}

lab_hugepages_release() {
  [[ -r "$LAB_HUGEPAGES_STATE" ]] || return 0
  local nr_hugepages=0 mounted=0
  # shellcheck disable=SC1090  # "nr_hugepages=N mounted=0|1", written above
  source <(tr ' ' '\n' <"$LAB_HUGEPAGES_STATE" | grep -E '^(nr_hugepages|mounted)=[0-9]+$')
  if ((mounted == 1)) && grep -q ' /dev/hugepages hugetlbfs ' /proc/mounts; then
    umount /dev/hugepages || lab_err "could not unmount /dev/hugepages (still in use?)"
  fi
  echo "$nr_hugepages" >/proc/sys/vm/nr_hugepages
  rm -f "$LAB_HUGEPAGES_STATE"
}

# lab_start_vhost_relays : for each VM of LAB_VHOST_VMS, sluice-vhost-relay in its host's
# namespace: it serves $LAB_VHOST_DIR/<vm>.sock (virtio-user, vhost-user server mode; the
# agent's OVS port connects to it) and relays to and from the VM's veth (net_af_packet on the
# host-side end). Stats socket $LAB_RUN/relay-<vm>.sock (lab_stat relay-vm3 vhost.rx_packets).
lab_start_vhost_relays() {
  local vm h
  ((${#LAB_VHOST_VMS[@]} > 0)) || return 0
  mkdir -p "$LAB_VHOST_DIR" || return 1
  for vm in "${LAB_VHOST_VMS[@]}"; do
    h=${LAB_VM_HOST[$vm]}
    rm -f "$LAB_VHOST_DIR/$vm.sock" "$(lab_socket "relay-$vm")"
    # The veth end is no interface of the host's own stack: it never answers the VM's ARP.
    lab_ns "sl-$h" sysctl -q -w "net.ipv4.conf.$vm.arp_ignore=8" >/dev/null || return 1
    lab_start "relay-$vm" "sl-$h" "$LAB_BUILD/bin/sluice-vhost-relay" -l "${LAB_LCORE[$h]}" \
      --in-memory --single-file-segments -m 64 --file-prefix "sl-relay-$vm" --no-pci \
      --no-telemetry --log-level lib.eal:warning -- \
      --vhost "net_virtio_user_$vm,path=$LAB_VHOST_DIR/$vm.sock,server=1,queue_size=256" \
      --kernel "net_af_packet_$vm,iface=$vm" --stats-socket "$(lab_socket "relay-$vm")"
  done
  # Listening: the relay waits (in its virtio-user probe) for OVS to connect.
  lab_poll 30 0.1 lab_vhost_listening || {
    lab_err "the vhost relays of ${LAB_VHOST_VMS[*]} did not listen on $LAB_VHOST_DIR within 30s"
    for vm in "${LAB_VHOST_VMS[@]}"; do lab_log_tail "relay-$vm"; done
    return 1
  }
}
lab_vhost_listening() {
  local vm
  for vm in "${LAB_VHOST_VMS[@]}"; do
    lab_pid_alive "$(lab_pid_of "relay-$vm")" && [[ -S "$LAB_VHOST_DIR/$vm.sock" ]] || return 1
  done
}

# True when OVS has connected to every vhost relay: the relay runs and its virtio-user link
# is up.
lab_vhost_connected() {
  local vm
  for vm in "${LAB_VHOST_VMS[@]}"; do
    lab_daemon_ready "relay-$vm" &&
      [[ "$(lab_stat "relay-$vm" vhost.link_up 2>/dev/null)" == true ]] || return 1
  done
}

# Builds the topology, starts the VMs' HTTP servers and the daemons, and waits until every
# daemon is ready. A half-built lab from before is removed first.
lab_up() {
  local vm
  lab_require_root && lab_check_tools || return 1
  if [[ "${SLUICE_LAB_NO_DAEMONS:-0}" != 1 ]]; then
    lab_check_binaries || return 1
  fi
  case "$LAB_HOST2" in
    dpdk) ;;
    ovs) command -v ovs-vswitchd >/dev/null || {
      lab_err "SLUICE_LAB_HOST2=ovs needs Open vSwitch (run deploy/ensure-deps.sh)"
      return 1
    } ;;
    ovs-dpdk)
      [[ -x $LAB_OVS_DPDK_VSWITCHD ]] || {
        lab_err "SLUICE_LAB_HOST2=ovs-dpdk needs $LAB_OVS_DPDK_VSWITCHD (openvswitch-switch-dpdk)"
        return 1
      }
      [[ -x $LAB_BUILD/bin/sluice-vhost-relay ]] || {
        lab_err "$LAB_BUILD/bin/sluice-vhost-relay is missing: ninja -C $LAB_BUILD sluice-vhost-relay"
        return 1
      }
      ;;
    *)
      lab_err "SLUICE_LAB_HOST2='$LAB_HOST2': expected dpdk (default), ovs or ovs-dpdk"
      return 1
      ;;
  esac
  lab_down quiet
  mkdir -p "$LAB_RUN" || return 1
  rm -f "$LAB_RUN"/*.log
  if [[ "$LAB_HOST2" == ovs || "$LAB_HOST2" == ovs-dpdk ]]; then
    lab_generate_ovs_configs || {
      lab_err "could not generate the OVS configs"
      return 1
    }
    lab_log "host2 on Open vSwitch (configs in $LAB_CONFIG_DIR)"
  fi
  # The agents' NAT flow state files (deploy/lab/config/host*.yaml) and the SNAT allocator's
  # lease table (config/snatd.yaml): a new lab starts empty.
  # and the daemons' cloud state (what sluicectl applied; {mux,agent}.cloud_state_file).
  rm -f /dev/shm/sluice-lab-*.flows "$LAB_RUN/snatd.state" "$LAB_RUN"/*.cloud-state.json \
    "$LAB_RUN/apply.log"
  lab_log "creating namespaces and links"
  lab_create_topology || {
    lab_err "could not build the topology"
    return 1
  }
  lab_log "starting VM HTTP servers"
  lab_start_vms || return 1
  if ((${#LAB_VHOST_VMS[@]} > 0)); then
    lab_log "reserving $LAB_HUGEPAGES hugepages; vhost-user relays for ${LAB_VHOST_VMS[*]}"
    lab_hugepages_reserve && lab_start_vhost_relays || return 1
  fi
  if [[ "${SLUICE_LAB_NO_DAEMONS:-0}" == 1 ]]; then
    lab_log "SLUICE_LAB_NO_DAEMONS=1: topology and VMs up, no daemons"
    return 0
  fi
  lab_log "starting sluice daemons from $LAB_BUILD/bin"
  lab_start_daemons || return 1
  if ! lab_poll 30 0.2 lab_vhost_connected; then
    lab_err "OVS did not connect to the vhost-user sockets of ${LAB_VHOST_VMS[*]} within 30s"
    for vm in "${LAB_VHOST_VMS[@]}"; do lab_log_tail "relay-$vm"; done
    return 1
  fi
  # The daemons are up with their boot facts only; the muxes announce nothing yet.
  lab_apply_cloud || return 1
  lab_log "cloud state from sluicectl apply -f $LAB_CONFIG_DIR/cloud.yaml:" \
    "$(grep -c . <<<"$LAB_LAST_APPLY") daemon parts applied (log: $LAB_RUN/apply.log)"
  if ! lab_poll 30 0.2 lab_vip_routed_via "${LAB_MUXES[@]}"; then
    lab_err "the router did not learn $LAB_VIP from both muxes by BGP within 30s"
    birdc -s "$LAB_RUN/bird.ctl" show protocols >&2 2>&1
    return 1
  fi
  lab_log "up: ${LAB_DAEMONS[*]} ready; VIP $LAB_VIP:$LAB_VIP_PORT via BGP from ${LAB_MUXES[*]}"
}

# Stops every process the lab started (by pid file, then anything still inside a lab
# namespace) and deletes the namespaces. Never fails when nothing exists. "quiet" skips the
# progress message.
lab_down() {
  local quiet=${1:-} name f ns pids pid
  [[ "$quiet" == quiet ]] || lab_log "tearing down"
  if [[ -d "$LAB_RUN" ]]; then
    for f in "$LAB_RUN"/*.pid; do
      [[ -e "$f" ]] || continue
      name=$(basename "$f" .pid)
      lab_stop "$name"
    done
    rm -f "$LAB_RUN"/*.sock
    lab_stop_ovs
    # After the relays and ovs-vswitchd-dpdk (their pid files above) let go of them.
    lab_hugepages_release
    rm -rf "$LAB_VHOST_DIR"
  fi
  for ns in "${LAB_NAMESPACES[@]}"; do
    lab_ns_exists "$ns" || continue
    pids=$(ip netns pids "$ns" 2>/dev/null)
    for pid in $pids; do lab_stop_pid "$pid" 2; done
    ip netns del "$ns" 2>/dev/null || lab_err "could not delete namespace $ns"
  done
  # DPDK's (empty, with --no-shconf) runtime directories of the lab's file prefixes.
  for name in "${LAB_DAEMONS[@]}"; do
    [[ $name == snatd ]] || rm -rf "/var/run/dpdk/sl-$name"
  done
  # ovs-vswitchd-dpdk's (OvsInstance: "sv" + its run dir) and the vhost relays'.
  rm -rf /var/run/dpdk/sl-relay-* "/var/run/dpdk/sv${LAB_OVS_RUN//\//_}"
  return 0
}

lab_status() {
  local ns pids d f pid
  echo "namespaces:"
  for ns in "${LAB_NAMESPACES[@]}"; do
    if lab_ns_exists "$ns"; then
      pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
      printf '  %-10s up    pids: %s\n' "$ns" "${pids:-none}"
    else
      printf '  %-10s absent\n' "$ns"
    fi
  done
  echo
  echo "processes:"
  compgen -G "$LAB_RUN/*.pid" >/dev/null || echo "  none"
  for f in "$LAB_RUN"/*.pid; do
    [[ -e "$f" ]] || continue
    d=$(basename "$f" .pid)
    pid=$(cat "$f")
    if lab_pid_alive "$pid"; then
      printf '  %-6s pid %-7s %s\n' "$d" "$pid" "$(tr '\0' ' ' <"/proc/$pid/cmdline" | cut -c1-100)"
    else
      printf '  %-6s pid %-7s DEAD (see %s)\n' "$d" "$pid" "$LAB_RUN/$d.log"
    fi
  done
  if lab_ns_exists sl-router; then
    echo
    echo "router route to the VIP:"
    ip -n sl-router route show "$LAB_VIP/32" | sed 's/^/  /'
  fi
  for d in "${LAB_DAEMONS[@]}"; do
    [[ -S "$(lab_socket "$d")" ]] || continue
    echo
    echo "== $d stats =="
    lab_stats_table "$d" 2>&1 | sed 's/^/  /'
  done
}
