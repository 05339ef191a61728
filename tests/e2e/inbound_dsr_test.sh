#!/usr/bin/env bash
# End-to-end: packet walks 1 and 2 (inbound through the muxes, direct server return).
# Brings the lab up, sends 200 HTTP requests to the VIP from sl-client (a new connection
# each) and checks: every request answered with a VM name, every VM served, no mux saw a
# packet that was not to a VIP (drops.no_rule == 0, so no reply crossed a mux), the agents
# sent replies straight to the router (dsr_return_packets > 0), the muxes carried the
# client->VIP packets (vip_packets > 0). Needs root; exit 77 (skip) otherwise.
set -uo pipefail
# shellcheck source=deploy/lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../deploy/lab/lib.sh"

REQUESTS=200
PARALLEL=8

lab_skip_unless_root
trap 'lab_down quiet' EXIT
trap 'exit 130' INT TERM

lab_up || lab_fail "lab up failed"
# Fail fast (instead of 200 timeouts) if the data path does not work at all.
lab_poll 15 0.5 lab_vip_answers || lab_fail "no answer from http://$LAB_VIP:$LAB_VIP_PORT/ within 15s"

echo "sending $REQUESTS requests to http://$LAB_VIP:$LAB_VIP_PORT/ ($PARALLEL at a time)"
results=$(lab_http_requests "$REQUESTS" "$PARALLEL")
declare -A served=()
ok=0
bad=()
while IFS='|' read -r rc body port; do
  [[ -z "$rc" ]] && continue
  if [[ "$rc" == 0 && "$body" =~ ^vm[1-4]$ ]]; then
    ok=$((ok + 1))
    served[$body]=$((${served[$body]:-0} + 1))
  else
    bad+=("curl exit $rc, body '$body', source port $port")
  fi
done <<<"$results"

errors=()
((ok == REQUESTS)) || errors+=("$((REQUESTS - ok)) of $REQUESTS requests not answered with a VM name (first: ${bad[0]:-?})")
for vm in "${LAB_VMS[@]}"; do
  echo "  $vm served ${served[$vm]:-0}"
  ((${served[$vm]:-0} > 0)) || errors+=("$vm was never served")
done

for d in "${LAB_MUXES[@]}"; do
  no_rule=$(lab_stat "$d" drops.no_rule) || lab_fail "cannot read $d stats"
  vip=$(lab_stat "$d" vip_packets) || lab_fail "cannot read $d stats"
  echo "  $d: vip_packets $vip, drops.no_rule $no_rule"
  ((no_rule == 0)) || errors+=("$d drops.no_rule = $no_rule (expected 0: return traffic reached a mux)")
done
vip_total=$(lab_stat_sum vip_packets "${LAB_MUXES[@]}") || lab_fail "cannot read mux stats"
dsr_total=$(lab_stat_sum dsr_return_packets "${LAB_AGENTS[@]}") || lab_fail "cannot read agent stats"
echo "  muxes vip_packets total $vip_total; agents dsr_return_packets total $dsr_total"
((vip_total > 0)) || errors+=("muxes' vip_packets total is 0")
((dsr_total > 0)) || errors+=("agents' dsr_return_packets total is 0")

# VIP2 is served by vm3/vm4 on the same DIP:port as VIP1: their replies are ambiguous for a
# stateless rule, so host2 keeps per-flow state and each reply must leave as the VIP the
# client asked for (curl would not accept it otherwise).
vip2_ok=0
for _ in $(seq 20); do
  body=$(lab_ns sl-client curl -s --connect-timeout 3 --max-time 5 "http://$LAB_VIP2:$LAB_VIP_PORT/")
  [[ "$body" == vm3 || "$body" == vm4 ]] && vip2_ok=$((vip2_ok + 1))
done
stateful=$(lab_stat host2 stateful_return_packets) || lab_fail "cannot read host2 stats"
echo "  VIP2 ($LAB_VIP2, shares vm3/vm4's DIP:port with VIP1): $vip2_ok of 20 answered; host2 stateful_return_packets $stateful"
((vip2_ok == 20)) || errors+=("only $vip2_ok of 20 requests to VIP2 answered by vm3/vm4")
((stateful > 0)) || errors+=("host2 translated no reply from flow state")

# The agent's rules as rte_flow sees them: af_packet ports refuse rte_flow, so every rule
# stays in software with the PMD's reason, and each has a replayable testpmd form or says why
# it has none.
nic_rules=$("$LAB_BUILD/bin/sluicectl" get nic-rules --stats-socket "$(lab_socket host1)" --testpmd)
placed=$(grep -c '^# placement: software' <<<"$nic_rules")
creates=$(grep -c '^flow create ' <<<"$nic_rules")
untranslated=$(grep -c '^# not offloadable: ' <<<"$nic_rules")
echo "  host1 nic-rules: $placed rules in software (port refuses rte_flow), $creates testpmd" \
  "'flow create' lines, $untranslated not expressible in rte_flow" \
  "($(grep -o '^# not offloadable: [^;]*' <<<"$nic_rules" | sort -u | sed 's/^# not offloadable: //' | paste -sd,))"
((placed > 0 && creates > 0 && creates + untranslated >= placed)) ||
  errors+=("sluicectl get nic-rules: '$(head -3 <<<"$nic_rules")'")
fallback=$(lab_stat host1 nic.fallback_reasons) || lab_fail "cannot read host1 stats"
[[ "$fallback" == *"not implemented"* || "$fallback" == *"not supported"* || "$fallback" == *"rte_flow"* ]] ||
  errors+=("host1 nic.fallback_reasons does not give the port's reason: $fallback")

# Every daemon's Prometheus endpoint (scraped in its namespace) counts what the stats say.
for d in "${LAB_MUXES[@]}"; do
  m=$(lab_metric "$d" sluice_mux_vip_packets_total) || { errors+=("$d: no sluice_mux_vip_packets_total at /metrics"); continue; }
  s=$(lab_stat "$d" vip_packets)
  echo "  $d /metrics: sluice_mux_vip_packets_total $m (stats vip_packets $s)"
  ((m > 0 && m >= s)) || errors+=("$d: sluice_mux_vip_packets_total $m vs stats $s")
done
for d in "${LAB_AGENTS[@]}"; do
  m=$(lab_metric "$d" sluice_agent_inbound_packets_total) ||
    { errors+=("$d: no sluice_agent_inbound_packets_total at /metrics"); continue; }
  echo "  $d /metrics: sluice_agent_inbound_packets_total $m"
  ((m > 0)) || errors+=("$d: sluice_agent_inbound_packets_total is 0")
done

if ((${#errors[@]} > 0)); then
  printf '  - %s\n' "${errors[@]}" >&2
  lab_fail "${#errors[@]} check(s) failed"
fi
echo "PASS: $ok/$REQUESTS answered, every VM served, replies bypassed the muxes ($dsr_total DSR packets, 0 no_rule drops on the muxes)"
