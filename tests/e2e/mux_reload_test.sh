#!/usr/bin/env bash
# End-to-end: config changes land in the muxes' data path as whole tables swapped under
# traffic. While 300 HTTP requests run, both muxes reload 20 times, alternately taking vm4
# out of Maglev (weight 0) and putting it back. Assertions: every request answered, every
# reload applied (config_generation), a refused reload (a broken file) keeps the running
# config.
#
# Needs root; exit 77 (skip) otherwise.
set -uo pipefail
if [[ $EUID -ne 0 ]]; then
  echo "SKIP: the lab needs root"
  exit 77
fi
CONFIGS=$(mktemp -d /tmp/sluice-reload-test.XXXXXX)
cp "$(dirname "${BASH_SOURCE[0]}")/../../deploy/lab/config/"*.yaml "$CONFIGS/"
export SLUICE_LAB_CONFIG_DIR=$CONFIGS
# shellcheck source=deploy/lab/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../deploy/lab/lib.sh"

RELOADS=20
load_pid=""
cleanup() {
  [[ -n "$load_pid" ]] && pkill -P "$load_pid" 2>/dev/null
  lab_down quiet
  rm -rf "$CONFIGS"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

generation_is() { [[ "$(lab_stat "$1" config_generation)" == "$2" ]]; }

lab_up || lab_fail "lab up failed"
lab_poll 15 0.5 lab_vip_answers || lab_fail "no answer from the VIP within 15s"
RESULTS=$LAB_RUN/reload_results.txt
lab_http_requests 300 4 >"$RESULTS" &
load_pid=$!

# Each reload must move a mux's table generation on by at least one (sluice-snatd may also
# push its SNAT chunks now and then, which moves it too).
generation_above() { (($(lab_stat "$1" config_generation) > $2)); }
declare -A before=()
for ((i = 1; i <= RELOADS; i++)); do
  weight=$((i % 2 == 1 ? 0 : 1))
  for m in "${LAB_MUXES[@]}"; do
    before[$m]=$(lab_stat "$m" config_generation) || lab_fail "cannot read $m stats"
    sed -i -E "s/(dip: 10\.1\.0\.4, host: 10\.101\.0\.34, weight: )[0-9]+/\1$weight/" \
      "$CONFIGS/$m.yaml"
    lab_request "$m" reload >/dev/null || lab_fail "$m did not take the reload request"
  done
  for m in "${LAB_MUXES[@]}"; do
    lab_poll 5 0.05 generation_above "$m" "${before[$m]}" ||
      lab_fail "$m is at config generation $(lab_stat "$m" config_generation), expected > ${before[$m]}"
  done
done
echo "$RELOADS reloads applied on both muxes while requests ran"

# A broken file is refused and the running table stays.
kept=$(lab_stat mux1 config_generation) || lab_fail "cannot read mux1 stats"
echo "vips: [" >>"$CONFIGS/mux1.yaml"
lab_request mux1 reload >/dev/null
refused() { (($(lab_stat mux1 reload.errors) >= 1)); }
lab_poll 5 0.05 refused || lab_fail "mux1 did not refuse a broken config"
generation_is mux1 "$kept" || lab_fail "mux1 changed its table on a broken config"
echo "broken config refused: $(lab_stat mux1 reload.last_error)"

lab_poll 120 0.5 lab_pid_gone "$load_pid" || lab_fail "requests still running after 120s"
load_pid=""
answered=$(grep -cE '^0\|vm[0-9]+\|' "$RESULTS")
total=$(wc -l <"$RESULTS")
echo "requests answered: $answered of $total"
((total == 300 && answered == 300)) || lab_fail "$((300 - answered)) requests failed: $(grep -vE '^0\|vm' "$RESULTS" | head -3 | tr '\n' ';')"
echo "PASS: no request failed across $RELOADS table swaps"
