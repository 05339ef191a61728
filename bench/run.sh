#!/usr/bin/env bash
# Benchmarks that print ratios against a baseline measured in the same run.
#
#   bench/run.sh [mux|all] [--smoke] [--flows N] [--seconds S] [--rounds R] [--results FILE]
#
# mux (default): sluice-mux-bench and dpdk-testpmd (io and 5tswap forwarding) on the same
#   PMDs (net_pcap infinite_rx → net_null), the same frames (a pcap the mux bench writes) and
#   the same core, then a table: measured value, baseline, ratio, target (DESIGN.md "Targets").
#   Rounds alternate mux / testpmd io / testpmd 5tswap; the table shows the best round of each.
# all: mux, then the other benchmarks in bench/ (rte_flow_translate_bench).
# --smoke: 10k flows, short windows, one round (seconds, not minutes).
# --results FILE: also write the tables, with the machine they ran on, as Markdown (a full
#   `all` run writes bench/RESULTS.md unless told otherwise; a smoke run writes nothing).
#
# Environment: SLUICE_BUILD (default <repo>/build), SLUICE_BENCH_CPU (the forwarding core;
# default the last CPU this shell may use), TESTPMD (default dpdk-testpmd on PATH).
# Builds what it needs (Ninja). Logs stay in a temporary directory that is printed at the end.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${SLUICE_BUILD:-$REPO/build}
what=mux
smoke=0
flows=1000000
seconds=5
rounds=3
results=""
while (($#)); do
  case "$1" in
    mux | all) what=$1 ;;
    --smoke) smoke=1 ;;
    --flows) flows=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --results) results=$2; shift ;;
    -h | --help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
if ((smoke)); then
  flows=10000
  seconds=1
  rounds=1
fi
[[ -z "$results" && $what == all && $smoke == 0 ]] && results=$REPO/bench/RESULTS.md
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# --- build -----------------------------------------------------------------------------------
targets=(sluice-mux-bench)
[[ $what == all ]] && targets+=(rte_flow_translate_bench)
if [[ ! -f "$BUILD/build.ninja" ]]; then
  cmake -S "$REPO" -B "$BUILD" -G Ninja >/dev/null
fi
ninja -C "$BUILD" "${targets[@]}" >/dev/null
MUX_BENCH=$BUILD/bin/sluice-mux-bench

TMP=$(mktemp -d /tmp/sluice-bench.XXXXXX)
testpmd_pid=
cleanup() {
  if [[ -n "$testpmd_pid" ]] && kill -0 "$testpmd_pid" 2>/dev/null; then
    kill "$testpmd_pid" 2>/dev/null || true
  fi
  rm -f "$TMP/frames.pcap" "$TMP/testpmd.fifo"
}
trap cleanup EXIT

# --- cores -----------------------------------------------------------------------------------
read -r -a cpus <<<"$(python3 -c 'import os; print(*sorted(os.sched_getaffinity(0)))')"
fwd_cpu=${SLUICE_BENCH_CPU:-${cpus[-1]}}
main_cpu=$fwd_cpu
for c in "${cpus[@]}"; do
  if [[ $c != "$fwd_cpu" ]]; then main_cpu=$c; break; fi
done

TESTPMD=${TESTPMD:-$(command -v dpdk-testpmd || true)}
if [[ -z "$TESTPMD" ]]; then
  TESTPMD=$(dpkg -L dpdk 2>/dev/null | grep -m1 '/dpdk-testpmd$' || true)
fi

# --- dpdk-testpmd ----------------------------------------------------------------------------
# Runs testpmd interactively from a FIFO: start, wait, "show port stats 1" (the null port),
# wait `seconds`, show again, stop, quit. The second show's Tx-pps is the forwarding rate over
# the window (testpmd's own timing); the forwarding thread's CPU ticks from /proc over the
# same window give its CPU share. Prints "<wall pps> <cpu share>" or nothing if parsing failed.
task_ticks() {  # pid → "tid utime+stime" per thread
  local t
  for t in /proc/"$1"/task/*; do
    awk -v tid="${t##*/}" '{ sub(/^.*\) /, ""); print tid, $12 + $13 }' "$t/stat" 2>/dev/null || true
  done
}

run_testpmd() {  # mode log
  local mode=$1 log=$2 fifo=$TMP/testpmd.fifo fd waited=0
  local mbufs=$((flows + 32768))
  local mem=$((512 + (flows + 32768) * 700 / 1048576))
  rm -f "$fifo"
  mkfifo "$fifo"
  stdbuf -oL "$TESTPMD" --lcores "0@$main_cpu,1@$fwd_cpu" --no-huge --no-shconf -m "$mem" \
    --no-pci --no-telemetry --file-prefix "sluice-bench-testpmd-$$" \
    --vdev "net_pcap0,rx_pcap=$TMP/frames.pcap,infinite_rx=1" --vdev net_null0,no-rx=1 \
    -- -i --nb-cores=1 --forward-mode="$mode" --burst=32 --mbuf-size=384 \
    --total-num-mbufs="$mbufs" --no-flush-rx <"$fifo" >"$log" 2>&1 &
  testpmd_pid=$!
  exec {fd}>"$fifo"
  until grep -q 'testpmd>' "$log" 2>/dev/null; do
    if ! kill -0 "$testpmd_pid" 2>/dev/null || ((waited > 1200)); then
      exec {fd}>&-
      kill "$testpmd_pid" 2>/dev/null || true
      wait "$testpmd_pid" 2>/dev/null || true
      testpmd_pid=
      return 0
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  local warmup=1
  ((smoke)) && warmup=0.3
  echo start >&"$fd"
  sleep "$warmup"
  echo "show port stats 1" >&"$fd"
  local t0 t1
  t0=$(date +%s.%N)
  task_ticks "$testpmd_pid" >"$TMP/ticks0"
  sleep "$seconds"
  echo "show port stats 1" >&"$fd"
  t1=$(date +%s.%N)
  task_ticks "$testpmd_pid" >"$TMP/ticks1"
  sleep 0.3
  echo stop >&"$fd"
  echo quit >&"$fd"
  exec {fd}>&-
  for _ in $(seq 100); do kill -0 "$testpmd_pid" 2>/dev/null || break; sleep 0.1; done
  kill "$testpmd_pid" 2>/dev/null || true
  wait "$testpmd_pid" 2>/dev/null || true
  testpmd_pid=
  local hz share
  hz=$(getconf CLK_TCK)
  share=$(awk -v t0="$t0" -v t1="$t1" -v hz="$hz" '
    NR == FNR { before[$1] = $2; next }
    ($1 in before) && $2 - before[$1] > best { best = $2 - before[$1] }
    END { if (t1 > t0) printf "%.3f", best / hz / (t1 - t0) }' "$TMP/ticks0" "$TMP/ticks1")
  # The two "show port stats 1" blocks: TX-packets and Tx-pps of each, in order.
  awk -v share="$share" '
    /NIC statistics for port 1 / { in1 = 1 }
    in1 && /TX-packets:/ { tx[++n] = $2 }
    in1 && /Tx-pps:/ { pps[n] = $2; in1 = 0 }
    END { if (n >= 2 && pps[2] > 0 && share > 0) print pps[2], share }' "$log"
}

# --- rounds ----------------------------------------------------------------------------------
mux_args=(--flows "$flows" --seconds "$seconds" --lcore "$fwd_cpu" --pcap "$TMP/frames.pcap")
((smoke)) && mux_args=(--smoke "${mux_args[@]:2}")
result() {  # log name
  awk -v k="$2" '$1 == "result" && $2 == k { print $3 }' "$1"
}
best() {  # max|min values...
  local how=$1
  shift
  printf '%s\n' "$@" | awk -v how="$how" 'NF {
      if (n++ == 0 || (how == "max" && $1 > v) || (how == "min" && $1 < v)) v = $1 }
    END { if (n) print v }'
}

echo "bench/run.sh: $flows flows, forwarding core $fwd_cpu (testpmd main lcore on $main_cpu)," \
  "$rounds round(s) of ${seconds} s windows; logs in $TMP" >&2
declare -a est est_wall est_share io_inproc newf newf_wall maglev bpf slot live tp_io tp_io_wall \
  tp_io_share tp_5t tp_5t_wall tp_5t_share
for ((r = 1; r <= rounds; r++)); do
  echo "  round $r: sluice-mux-bench" >&2
  if ! "$MUX_BENCH" "${mux_args[@]}" >"$TMP/mux.$r.log" 2>&1; then
    echo "run.sh: sluice-mux-bench failed:" >&2
    cat "$TMP/mux.$r.log" >&2
    exit 1
  fi
  est+=("$(result "$TMP/mux.$r.log" established_mpps)")
  est_wall+=("$(result "$TMP/mux.$r.log" established_mpps_wall)")
  est_share+=("$(result "$TMP/mux.$r.log" established_cpu_share)")
  io_inproc+=("$(result "$TMP/mux.$r.log" io_forward_inprocess_mpps)")
  newf+=("$(result "$TMP/mux.$r.log" new_flows_per_s)")
  newf_wall+=("$(result "$TMP/mux.$r.log" new_flows_per_s_wall)")
  maglev+=("$(result "$TMP/mux.$r.log" maglev_build_ms)")
  bpf+=("$(result "$TMP/mux.$r.log" bytes_per_flow)")
  slot+=("$(result "$TMP/mux.$r.log" table_bytes_per_slot)")
  live+=("$(result "$TMP/mux.$r.log" table_bytes_per_live_flow)")
  if [[ -n "$TESTPMD" ]]; then
    for mode in io 5tswap; do
      echo "  round $r: dpdk-testpmd $mode" >&2
      run_testpmd "$mode" "$TMP/testpmd-$mode.$r.log" >"$TMP/testpmd.result"
      pps='' share=''
      read -r pps share <"$TMP/testpmd.result" || true
      if [[ -z "$pps" ]]; then
        echo "run.sh: could not parse dpdk-testpmd $mode output ($TMP/testpmd-$mode.$r.log)" >&2
        continue
      fi
      per_cpu=$(awk -v p="$pps" -v s="$share" 'BEGIN {
        if (s > 1) s = 1; printf "%.3f", p / s / 1e6 }')
      wall=$(awk -v p="$pps" 'BEGIN { printf "%.3f", p / 1e6 }')
      if [[ $mode == io ]]; then
        tp_io+=("$per_cpu") tp_io_wall+=("$wall") tp_io_share+=("$share")
      else
        tp_5t+=("$per_cpu") tp_5t_wall+=("$wall") tp_5t_share+=("$share")
      fi
    done
  fi
done

# --- table -----------------------------------------------------------------------------------
B_EST=$(best max "${est[@]}")
B_IO=$(best max "${tp_io[@]}")
B_5T=$(best max "${tp_5t[@]}")
B_NEW=$(best max "${newf[@]}")
B_MAGLEV=$(best min "${maglev[@]}")
B_BPF=$(best max "${bpf[@]}")
B_SLOT=$(best max "${slot[@]}")
B_LIVE=$(best max "${live[@]}")
B_INPROC=$(best max "${io_inproc[@]}")

{
awk -v flows="$flows" -v core="$fwd_cpu" -v rounds="$rounds" -v est="$B_EST" -v io="$B_IO" \
  -v t5="$B_5T" -v newf="$B_NEW" -v maglev="$B_MAGLEV" -v bpf="$B_BPF" -v slot="$B_SLOT" \
  -v live="$B_LIVE" -v inproc="$B_INPROC" '
  function verdict(ok) { return ok ? "met" : "NOT MET" }
  function row(metric, value, base, ratio, target, v) {
    printf "%-34s %10s  %-22s %6s  %-16s %s\n", metric, value, base, ratio, target, v }
  BEGIN {
    printf "\nSluice mux, %d flows in the table, one core (%d), best of %d round(s); " \
           "rates are per CPU-second of the forwarding thread\n\n", flows, core, rounds
    row("metric", "sluice", "baseline (same run)", "ratio", "target", "")
    row("------", "------", "-------------------", "-----", "------", "")
    if (io != "") {
      r = est / io
      row("established flows, Mpps", sprintf("%.2f", est), sprintf("testpmd io %.2f", io),
          sprintf("%.2f", r), ">= 0.5x io", verdict(r >= 0.5))
    } else {
      row("established flows, Mpps", sprintf("%.2f", est), "testpmd io: n/a", "-",
          ">= 0.5x io", "no baseline")
    }
    if (t5 != "") {
      r = est / t5
      row("established flows, Mpps", sprintf("%.2f", est), sprintf("testpmd 5tswap %.2f", t5),
          sprintf("%.2f", r), ">= 0.9x 5tswap", verdict(r >= 0.9))
    } else {
      row("established flows, Mpps", sprintf("%.2f", est), "testpmd 5tswap: n/a", "-",
          ">= 0.9x 5tswap", "no baseline")
    }
    row("established flows, Mpps", sprintf("%.2f", est), sprintf("in-process io %.2f", inproc),
        sprintf("%.2f", inproc > 0 ? est / inproc : 0), "(info)", "")
    row("new flows per second per core", sprintf("%.2f M", newf / 1e6), "-", "-", ">= 2 M/s",
        verdict(newf >= 2e6))
    row("Maglev build 65537 x 1000, ms", sprintf("%.2f", maglev), "-", "-", "<= 5 ms",
        verdict(maglev <= 5))
    row("memory per flow, bytes", sprintf("%d", bpf),
        sprintf("%.1f/slot %.1f/live", slot, live), "-", "<= 64 B", verdict(live <= 64 && bpf <= 64))
  }'
} | tee "$TMP/mux-table.txt"

echo
echo "Per round (wall-clock Mpps, CPU share of the forwarding thread):"
for ((i = 0; i < rounds; i++)); do
  printf '  round %d: mux %s (%s), testpmd io %s (%s), testpmd 5tswap %s (%s), new flows %s/s wall\n' \
    $((i + 1)) "${est_wall[i]:-?}" "${est_share[i]:-?}" "${tp_io_wall[i]:-n/a}" \
    "${tp_io_share[i]:-?}" "${tp_5t_wall[i]:-n/a}" "${tp_5t_share[i]:-?}" "${newf_wall[i]:-?}"
done
low_share=$(printf '%s\n' "${est_share[@]}" "${tp_io_share[@]}" "${tp_5t_share[@]}" |
  awk 'NF && $1 < 0.9 { n++ } END { print n + 0 }')
if ((low_share > 0)); then
  echo "NOTE: $low_share measurement(s) got less than 90 % of their core (other load on this" \
    "machine); per-CPU-second rates correct for descheduling, not for cache interference."
fi
[[ -z "$TESTPMD" ]] && echo "dpdk-testpmd not found (Debian package dpdk): no testpmd baseline"
echo "DESIGN.md reference (another machine): testpmd io ~25.8 Mpps, 5tswap ~16.8 Mpps."
echo "Logs: $TMP"

: >"$TMP/translate.txt"
if [[ $what == all ]]; then
  echo
  echo "== rte_flow_translate_bench"
  if ((smoke)); then
    "$BUILD/bin/rte_flow_translate_bench" 2000 | tee "$TMP/translate.txt"
  else
    "$BUILD/bin/rte_flow_translate_bench" | tee "$TMP/translate.txt"
  fi
fi

if [[ -n "$results" ]]; then
  {
    echo "# Sluice benchmark results"
    echo
    echo "Written by \`bench/run.sh $what\` on $(date -u '+%Y-%m-%d %H:%M UTC'). Ratios compare"
    echo "against baselines measured in the same run on the same core; absolute numbers depend"
    echo "on the machine and its load."
    echo
    echo "| machine | |"
    echo "|---|---|"
    echo "| CPU | $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1) |"
    echo "| cores | $(nproc) (forwarding core $fwd_cpu) |"
    echo "| kernel | $(uname -r) |"
    echo "| DPDK | $(pkg-config --modversion libdpdk 2>/dev/null) |"
    echo "| load average (start / end) | $load_start / $(cut -d' ' -f1-3 /proc/loadavg) |"
    echo "| flows, rounds | $flows, $rounds |"
    echo
    echo "## Mux (DESIGN.md targets)"
    echo
    echo '```'
    cat "$TMP/mux-table.txt"
    echo '```'
    if [[ -s "$TMP/translate.txt" ]]; then
      echo
      echo "## rte_flow translation vs software rule install"
      echo
      echo '```'
      cat "$TMP/translate.txt"
      echo '```'
    fi
  } >"$results"
  echo "Results written to $results"
fi
