#!/usr/bin/env bash
# The Sluice network-namespace lab: client -> router (ECMP) -> mux1/mux2 -> host1/host2 ->
# vm1..vm4. See README.md here for the topology.
#
#   lab.sh up       build the topology, start the VMs' HTTP servers and the daemons, wait
#                   until every daemon is ready (a half-built lab is cleaned first)
#   lab.sh down     stop everything the lab started and delete its namespaces
#   lab.sh status   namespaces, processes, the VIP route, each daemon's stats
#
# Environment: SLUICE_BUILD (build dir, default <repo>/build), SLUICE_LAB_NO_DAEMONS=1
# (topology and VMs only), SLUICE_LAB_READY_TIMEOUT (seconds, default 30).
set -uo pipefail
# shellcheck source=deploy/lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case "${1:-}" in
  up)
    if ! lab_up; then
      lab_err "lab up failed; logs are in $LAB_RUN; cleaning up"
      lab_down quiet
      exit 1
    fi
    ;;
  down) lab_down ;;
  status) lab_status ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
