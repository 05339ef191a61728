#!/usr/bin/env bash
# The Sluice walking skeleton in one command (as root on Debian 12):
#   installs missing packages, builds, brings the namespace lab up (the daemons boot with
#   their own facts; `sluicectl apply -f cloud.yaml` gives them VIPs, backends, endpoints
#   and SNAT leases, as a cloud controller would, and the demo shows it), sends 200 HTTP
#   requests to the VIP from the client namespace (a new connection each), prints how they spread
#   over the VMs and the mux/agent counters, shows from the counters that the replies
#   bypassed the muxes (direct server return), shows SNAT (VMs connecting out as VIP:port)
#   and Fastpath (VM to a VIP on another host goes host to host after the handshake), kills
#   a mux under 100 live connections and shows none is lost (BGP withdrawal + identical
#   Maglev tables), and tears the lab down.
#
#   deploy/lab/demo.sh [--keep]     --keep leaves the lab up (deploy/lab/lab.sh down)
#
# Environment: SLUICE_BUILD (build dir, default <repo>/build), DEMO_REQUESTS (default 200),
# DEMO_PARALLEL (default 8), DEMO_FAILOVER (connections, default 100). Exits non-zero if any
# request failed or a connection was lost.
set -uo pipefail

keep=0
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    -h | --help)
      sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "demo: unknown argument '$arg' (usage: $0 [--keep])" >&2
      exit 2
      ;;
  esac
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export SLUICE_BUILD=${SLUICE_BUILD:-$REPO/build}
REQUESTS=${DEMO_REQUESTS:-200}
PARALLEL=${DEMO_PARALLEL:-8}

die() {
  echo "demo: $*" >&2
  exit 1
}
section() { printf '\n== %s ==\n' "$*"; }

[[ $EUID -eq 0 ]] || die "run as root (it installs packages and creates network namespaces)"

section "dependencies"
"$REPO/deploy/ensure-deps.sh" || die "installing packages failed"
echo "Debian packages present"

section "build ($SLUICE_BUILD)"
if [[ ! -f "$SLUICE_BUILD/build.ninja" ]]; then
  cmake -S "$REPO" -B "$SLUICE_BUILD" -G Ninja || die "cmake failed"
fi
ninja -C "$SLUICE_BUILD" || die "build failed"

# shellcheck source=deploy/lab/lib.sh
source "$REPO/deploy/lab/lib.sh"

if ((keep)); then
  trap 'echo; echo "demo: --keep: lab left up; deploy/lab/lab.sh status | down"' EXIT
else
  trap 'echo; lab_down' EXIT
fi
trap 'exit 130' INT TERM

# One lab per machine: wait for an end-to-end test (or another demo) to finish with it.
exec 9>/run/sluice-lab.lock
if ! flock -n 9; then
  echo "demo: the lab is in use (an e2e test or another demo); waiting up to 15 min"
  flock -w 900 9 || die "the lab stayed in use for 15 min"
fi

section "lab up"
lab_up || die "lab up failed (logs in $LAB_RUN)"

section "cloud state: the daemons booted without VIPs; sluicectl apply gave them theirs"
echo "  \$ sluicectl apply -f ${LAB_CONFIG_DIR#"$REPO"/}/cloud.yaml   (run by lab_up, the controller's part)"
sed 's/^/  /' <<<"$LAB_LAST_APPLY"
cloud_ok=1
for d in "${LAB_MUXES[@]}"; do
  echo "  --- $d: sluicectl get backends"
  "$LAB_BUILD/bin/sluicectl" get backends --socket "$(lab_grpc_socket "$d")" | sed 's/^/    /' ||
    cloud_ok=0
done
for d in "${LAB_AGENTS[@]}"; do
  echo "  --- $d: sluicectl get endpoints"
  "$LAB_BUILD/bin/sluicectl" get endpoints --socket "$(lab_grpc_socket "$d")" | sed 's/^/    /' ||
    cloud_ok=0
done
if ((cloud_ok)) && [[ -n "$LAB_LAST_APPLY" ]]; then
  echo "  => VIPs, backends, endpoints and SNAT leases came from sluicectl apply, not the daemons' YAML"
else
  echo "  => could not show the cloud state the daemons got from sluicectl apply"
fi

section "$REQUESTS HTTP requests to http://$LAB_VIP:$LAB_VIP_PORT/ from sl-client ($PARALLEL at a time, a new connection each)"
results=$(lab_http_requests "$REQUESTS" "$PARALLEL")
declare -A served=()
declare -A ports=()
ok=0
failed=0
failures=""
while IFS='|' read -r rc body port; do
  [[ -z "$rc" ]] && continue
  if [[ "$rc" == 0 && "$body" =~ ^vm[0-9]+$ ]]; then
    ok=$((ok + 1))
    served[$body]=$((${served[$body]:-0} + 1))
    ports[$port]=1
  else
    failed=$((failed + 1))
    failures+="  curl exit $rc, body '${body}'"$'\n'
  fi
done <<<"$results"
echo "answered: $ok of $REQUESTS, from ${#ports[@]} distinct client source ports"
if ((failed > 0)); then
  echo "FAILED requests: $failed"
  printf '%s' "$failures" | sort | uniq -c | head -10
fi

section "distribution over VMs"
for vm in "${LAB_VMS[@]}"; do
  n=${served[$vm]:-0}
  pct=0
  ((ok > 0)) && pct=$((n * 1000 / ok))
  bar=$(printf '%*s' $((n * 60 / (REQUESTS > 0 ? REQUESTS : 1))) '' | tr ' ' '#')
  printf '  %-4s (10.1.0.%s on %s)  %4d  %3d.%d%%  %s\n' "$vm" "${vm#vm}" \
    "${LAB_VM_HOST[$vm]}" "$n" $((pct / 10)) $((pct % 10)) "$bar"
done

section "mux counters (sluicectl stats)"
for d in "${LAB_MUXES[@]}"; do
  echo "--- $d"
  lab_stats_table "$d" | sed 's/^/    /'
done
section "agent counters (sluicectl stats)"
for d in "${LAB_AGENTS[@]}"; do
  echo "--- $d"
  lab_stats_table "$d" | sed 's/^/    /'
done

section "live view: sluicectl top (one 2 s frame while 200 more requests run)"
lab_http_requests 200 "$PARALLEL" >/dev/null &
top_traffic=$!
top_sockets=()
for d in "${LAB_MUXES[@]}" "${LAB_AGENTS[@]}"; do top_sockets+=(--socket "$(lab_socket "$d")"); done
"$LAB_BUILD/bin/sluicectl" top "${top_sockets[@]}" --interval 2 --count 1 --rows 8 | sed 's/^/  /' ||
  echo "  (sluicectl top could not read the daemons)"
wait "$top_traffic" || true

section "Prometheus metrics (scraped from each daemon's --metrics-listen $LAB_METRICS_LISTEN)"
for d in "${LAB_MUXES[@]}"; do
  printf '  %-5s sluice_mux_new_flows_total %s  sluice_mux_vip_packets_total %s\n' "$d" \
    "$(lab_metric "$d" sluice_mux_new_flows_total || echo '?')" \
    "$(lab_metric "$d" sluice_mux_vip_packets_total || echo '?')"
done
for d in "${LAB_AGENTS[@]}"; do
  printf '  %-5s sluice_agent_inbound_packets_total %s  sluice_agent_dsr_return_packets_total %s  sluice_agent_stateful_return_packets_total %s\n' \
    "$d" "$(lab_metric "$d" sluice_agent_inbound_packets_total || echo '?')" \
    "$(lab_metric "$d" sluice_agent_dsr_return_packets_total || echo '?')" \
    "$(lab_metric "$d" sluice_agent_stateful_return_packets_total || echo '?')"
done

section "did the replies bypass the muxes?"
dsr_ok=1
vip_total=$(lab_stat_sum vip_packets "${LAB_MUXES[@]}") || dsr_ok=0
no_rule_total=$(lab_stat_sum drops.no_rule "${LAB_MUXES[@]}") || dsr_ok=0
dsr_total=$(lab_stat_sum dsr_return_packets "${LAB_AGENTS[@]}") || dsr_ok=0
inbound_total=$(lab_stat_sum inbound_packets "${LAB_AGENTS[@]}") || dsr_ok=0
if ((dsr_ok)); then
  for d in "${LAB_MUXES[@]}"; do
    printf '  %-5s vip_packets %-6s drops.no_rule %s\n' "$d" "$(lab_stat "$d" vip_packets)" \
      "$(lab_stat "$d" drops.no_rule)"
  done
  for d in "${LAB_AGENTS[@]}"; do
    printf '  %-5s inbound_packets %-6s dsr_return_packets %s\n' "$d" \
      "$(lab_stat "$d" inbound_packets)" "$(lab_stat "$d" dsr_return_packets)"
  done
  echo
  echo "  client->VIP packets through the muxes: $vip_total (decapsulated by the agents: $inbound_total)"
  echo "  VM replies the agents sent straight to the router (DSR): $dsr_total"
  echo "  packets the muxes saw that were not to a VIP (a reply through a mux would land here): $no_rule_total"
  if ((no_rule_total == 0 && dsr_total > 0)); then
    echo "  => replies bypassed the muxes: all $dsr_total reply packets went VM -> agent -> router -> client."
  else
    echo "  => NOT shown: expected mux drops.no_rule == 0 and agents' dsr_return_packets > 0."
    dsr_ok=0
  fi
else
  echo "  could not read the daemons' stats"
fi

walks_ok=1
section "SNAT: each VM connects out to the internet server ($LAB_INTERNET:$LAB_INTERNET_PORT)"
for vm in "${LAB_VMS[@]}"; do
  seen=$(lab_ns "sl-$vm" curl -s --connect-timeout 3 --max-time 5 \
    "http://$LAB_INTERNET:$LAB_INTERNET_PORT/peer") || walks_ok=0
  printf '  %-4s (DIP 10.1.0.%s): the server saw the connection come from %s\n' "$vm" "${vm#vm}" \
    "${seen#internet }"
done
echo "  => sources are VIP:port from each VM's leased range; replies went back via a mux's"
echo "     snat_ranges to the leasing host (mux snat_return_packets: $(lab_stat_sum snat_return_packets "${LAB_MUXES[@]}"))"

section "Fastpath: a VM on host1 downloads from VIP2 ($LAB_VIP2), served on host2"
lab_fastpath_download 5000000 || walks_ok=0

failover_ok=1
section "mux failure: ${DEMO_FAILOVER:-100} live connections, kill -9 mux1"
if ! lab_mux_failover "${DEMO_FAILOVER:-100}"; then
  echo "  => connections were lost"
  failover_ok=0
else
  echo "  => no connection lost: BGP withdrew mux1, mux2 built the same Maglev table"
fi

echo
if ((failed > 0 || ok == 0)); then
  echo "demo: $failed of $REQUESTS requests failed"
  exit 1
fi
if ((!walks_ok)); then
  echo "demo: the SNAT or Fastpath walk failed"
  exit 1
fi
if ((!failover_ok)); then
  echo "demo: connections were lost when a mux died"
  exit 1
fi
if ((!cloud_ok)); then
  echo "demo: the daemons' cloud state could not be read back"
  exit 1
fi
if ((!dsr_ok)); then
  echo "demo: the counters do not show direct server return"
  exit 1
fi
echo "demo: all $ok requests answered"
