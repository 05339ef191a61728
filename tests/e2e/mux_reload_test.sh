#!/usr/bin/env bash
# End-to-end: config changes land in the muxes' data path as whole tables swapped under
# traffic, and a config-file reload does not drop what the cloud controller pushed.
# The lab's mux YAML holds boot facts only; the VIPs come from `sluicectl apply` (lab_up).
# While 300 HTTP requests run:
#  1. both muxes reload their boot file 5 times: the VIPs and SNAT ranges pushed over gRPC
#     stay (same VIPs, backends and ranges as before, BGP keeps announcing);
#  2. the test then gives each mux's file its own vips: (the file owns them from then on) and
#     both muxes reload 20 times, alternately taking vm4 out of Maglev (weight 0) and
#     putting it back.
# Assertions: every request answered, every reload applied (config_generation), a refused
# reload (a broken file) keeps the running config.
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

BOOT_RELOADS=5
RELOADS=20
CTL="$LAB_BUILD/bin/sluicectl"
load_pid=""
cleanup() {
  [[ -n "$load_pid" ]] && pkill -P "$load_pid" 2>/dev/null
  lab_down quiet
  rm -rf "$CONFIGS"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

generation_is() { [[ "$(lab_stat "$1" config_generation)" == "$2" ]]; }
# Each reload must move a mux's table generation on by at least one (sluice-snatd may also
# push its SNAT chunks now and then, which moves it too).
generation_above() { (($(lab_stat "$1" config_generation) > $2)); }
# What a mux serves: its VIPs with backends and weights, and its static SNAT ranges.
served() {
  "$CTL" get backends --socket "$(lab_grpc_socket "$1")" -o json |
    "$LAB_PYTHON" -c '
import json, sys
for v in json.load(sys.stdin).get("vips", []):
    for b in v.get("backends", []):
        print(v["vip"], v["port"], b["backend"]["dip"], b["backend"]["host"], b["backend"].get("weight", 1))'
  "$CTL" get snat-ranges --socket "$(lab_grpc_socket "$1")" -o json |
    "$LAB_PYTHON" -c '
import json, sys
for r in json.load(sys.stdin).get("ranges", []):
    if not r.get("dynamic"):
        print("snat", r["vip"], r["port_start"], r["port_count"], r["host"])'
}
# reload_all : one reload request to each mux, waits until each has swapped its table.
reload_all() {
  local m
  declare -A before=()
  for m in "${LAB_MUXES[@]}"; do
    before[$m]=$(lab_stat "$m" config_generation) || lab_fail "cannot read $m stats"
    lab_request "$m" reload >/dev/null || lab_fail "$m did not take the reload request"
  done
  for m in "${LAB_MUXES[@]}"; do
    lab_poll 5 0.05 generation_above "$m" "${before[$m]}" ||
      lab_fail "$m is at config generation $(lab_stat "$m" config_generation), expected > ${before[$m]}"
  done
}

lab_up || lab_fail "lab up failed"
lab_poll 15 0.5 lab_vip_answers || lab_fail "no answer from the VIP within 15s"
RESULTS=$LAB_RUN/reload_results.txt
lab_http_requests 300 4 >"$RESULTS" &
load_pid=$!

# 1. Boot-only files: a reload keeps what sluicectl apply pushed.
declare -A pushed=()
for m in "${LAB_MUXES[@]}"; do
  pushed[$m]=$(served "$m")
  [[ $(grep -c '^10\.200\.0\.' <<<"${pushed[$m]}") == 6 ]] ||
    lab_fail "$m does not serve cloud.yaml's 6 backends: ${pushed[$m]}"
done
for ((i = 1; i <= BOOT_RELOADS; i++)); do reload_all; done
for m in "${LAB_MUXES[@]}"; do
  [[ "$(served "$m")" == "${pushed[$m]}" ]] ||
    lab_fail "a reload of $m's boot file changed what sluicectl pushed: $(served "$m")"
done
lab_vip_routed_via "${LAB_MUXES[@]}" || lab_fail "the VIP is no longer announced by both muxes"
echo "$BOOT_RELOADS reloads of the boot files kept the pushed VIPs, backends and SNAT ranges"

# 2. The files take the VIPs over (a `vips:` key), then change vm4's weight 20 times.
for m in "${LAB_MUXES[@]}"; do
  cat >>"$CONFIGS/$m.yaml" <<'YAML'
vips:
  - vip: 10.200.0.10
    port: 80
    protocol: tcp
    backends:
      - { dip: 10.1.0.1, host: 10.101.0.31, weight: 1 }
      - { dip: 10.1.0.2, host: 10.101.0.32, weight: 1 }
      - { dip: 10.1.0.3, host: 10.101.0.33, weight: 1 }
      - { dip: 10.1.0.4, host: 10.101.0.34, weight: 1 }
  - vip: 10.200.0.20
    port: 80
    protocol: tcp
    backends:
      - { dip: 10.1.0.3, host: 10.101.0.33, weight: 1 }
      - { dip: 10.1.0.4, host: 10.101.0.34, weight: 1 }
YAML
done
for ((i = 1; i <= RELOADS; i++)); do
  weight=$((i % 2 == 1 ? 0 : 1))
  for m in "${LAB_MUXES[@]}"; do
    sed -i -E "s/(dip: 10\.1\.0\.4, host: 10\.101\.0\.34, weight: )[0-9]+/\1$weight/" \
      "$CONFIGS/$m.yaml"
  done
  reload_all
done
for m in "${LAB_MUXES[@]}"; do
  [[ $(grep -c '^10\.200\.0\.10 80 10\.1\.0\.4 10\.101\.0\.34 1$' <<<"$(served "$m")") == 1 ]] ||
    lab_fail "$m does not serve its file's last weight of vm4: $(served "$m")"
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
echo "PASS: no request failed across $BOOT_RELOADS + $RELOADS table swaps"
