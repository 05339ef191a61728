#!/usr/bin/env bash
# End-to-end: with many live TCP connections through the lab, one mux dies (kill -9). BGP
# withdraws it, the router rehashes its flows onto the other mux, which builds the same
# Maglev table and so sends every flow to the VM it was already talking to. Goal and
# assertion: no connection lost (packet walk 5; issue 4 item 7). The work is
# lab_mux_failover in deploy/lab/lib.sh, which the demo runs too.
#
# Needs root; exit 77 (skip) otherwise.
set -uo pipefail
# shellcheck source=deploy/lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../deploy/lab/lib.sh"

CONNECTIONS=${SLUICE_FAILOVER_CONNECTIONS:-120}
lab_skip_unless_root
trap 'lab_down quiet' EXIT
trap 'exit 130' INT TERM

lab_up || lab_fail "lab up failed"
lab_poll 15 0.5 lab_vip_answers || lab_fail "no answer from the VIP within 15s"
echo "=== mux failover report ==="
lab_mux_failover "$CONNECTIONS" || lab_fail "connections were lost (or a step failed) when mux1 died"
echo "PASS: no connection lost when a mux died"
