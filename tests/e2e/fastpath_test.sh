#!/usr/bin/env bash
# End-to-end: packet walk 4, Fastpath. vm1 (host1) downloads 5 MB from VIP2, which only
# host2's VMs serve. The SYN goes vm1 -> host1 (SNAT to VIP:port) -> router -> mux -> host2;
# the SYN-ACK comes back through a mux's SNAT range to host1. When the mux sees the
# handshake complete it sends an authenticated redirect to both agents, and from then on
# host1 and host2 encapsulate to each other directly. Goal (issue 5): the muxes see < 1 % of
# the connection's packets. Measured from counter deltas around the download: mux packets
# (VIP + SNAT return) against all packets of the connection (those plus the agents'
# fastpath_packets). Needs root; exit 77 (skip) otherwise.
set -uo pipefail
# shellcheck source=deploy/lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../deploy/lab/lib.sh"

BYTES=5000000

fail() {
  echo "FAIL: $*" >&2
  lab_dump_diagnostics
  exit 1
}

if [[ $EUID -ne 0 ]]; then
  echo "SKIP: the lab needs root"
  exit 77
fi
trap 'lab_down quiet' EXIT
trap 'exit 130' INT TERM

lab_up || fail "lab up failed"
lab_poll 15 0.5 lab_vip_answers || fail "no answer from the VIP within 15s"

mux_packets() {
  echo $(($(lab_stat_sum vip_packets "${LAB_MUXES[@]}") +
    $(lab_stat_sum snat_return_packets "${LAB_MUXES[@]}")))
}
mux_before=$(mux_packets) || fail "could not read the muxes' stats"
fp_before=$(lab_stat_sum fastpath_packets "${LAB_AGENTS[@]}") || fail "could not read the agents' stats"
out=$(lab_ns sl-vm1 curl -s --connect-timeout 3 --max-time 30 -o /dev/null \
  -w '%{http_code} %{size_download}' "http://$LAB_VIP2:$LAB_VIP_PORT/stream?bytes=$BYTES")
mux=$(($(mux_packets) - mux_before))
fastpath=$(($(lab_stat_sum fastpath_packets "${LAB_AGENTS[@]}") - fp_before))
total=$((mux + fastpath))

echo "=== Fastpath report ==="
echo "  vm1 -> http://$LAB_VIP2/stream ($BYTES bytes): $out"
echo "  packets through the muxes:        $mux"
echo "  packets host to host (Fastpath):  $fastpath"
echo "  redirects: muxes sent $(lab_stat_sum fastpath_redirects_sent "${LAB_MUXES[@]}"), host1 applied $(lab_stat host1 fastpath.redirects_applied_source) as source, host2 applied $(lab_stat host2 fastpath.redirects_applied_destination) as destination"
bad_auth=$(lab_stat_sum drops.fastpath_redirect_bad_auth "${LAB_AGENTS[@]}")
[[ "$out" == "200 $BYTES" ]] || fail "the download did not complete: '$out'"
((total > 1000)) || fail "only $total packets counted for a $BYTES-byte download"
((bad_auth == 0)) || fail "$bad_auth redirects failed authentication"
# mux share < 1 %, in integers: 100 * mux < total
pct=$(awk -v m="$mux" -v t="$total" 'BEGIN { printf "%.2f", 100 * m / t }')
echo "  mux share of the connection: $pct %"
((100 * mux < total)) || fail "the muxes carried $pct % of the connection's packets (goal < 1 %)"
echo "PASS: after the handshake the connection went host to host"
