#!/usr/bin/env bash
# Feeds every golden testpmd file (testdata/*.txt) to a real dpdk-testpmd on net_null ports.
# net_null has no rte_flow support, so each `flow create` must reach the PMD and come back
# "Function not implemented"; what this proves is that testpmd's parser accepts every line
# (a parse error prints "Bad arguments"). Exits 77 (ctest: skipped) without dpdk-testpmd.
#
#   testpmd_parse_test.sh <testdata dir>
set -euo pipefail

dir=${1:?usage: testpmd_parse_test.sh <testdata dir>}
testpmd=$(command -v dpdk-testpmd || true)
if [[ -z "$testpmd" ]]; then
  echo "SKIP: dpdk-testpmd not installed (Debian package dpdk-dev)"
  exit 77
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat "$dir"/*.txt > "$work/commands"
echo quit >> "$work/commands"
expected=$(grep -c '^flow create' "$work/commands" || true)

# Two lcores on one CPU (testpmd wants a forwarding core), no hugepages, no shared config,
# three null ports (the rules name ports 0..2), a small mbuf pool.
timeout 120 "$testpmd" --lcores 0@0,1@0 --no-huge --no-pci --no-shconf -m 256 \
  --file-prefix "sluice-testpmd-$$" --log-level lib.eal:error \
  --vdev net_null0 --vdev net_null1 --vdev net_null2 \
  -- -i --total-num-mbufs=2048 < "$work/commands" > "$work/out" 2>&1 || {
  echo "FAIL: dpdk-testpmd exited with $?"
  cat "$work/out"
  exit 1
}

bad=$(grep -c 'Bad arguments' "$work/out" || true)
answered=$(grep -c -E 'port_flow_complain|Flow rule #[0-9]+ created' "$work/out" || true)
if ((bad != 0 || answered != expected)); then
  echo "FAIL: $bad line(s) not parsed; $answered of $expected flow create lines reached the PMD"
  grep -B1 'Bad arguments' "$work/out" || true
  exit 1
fi
echo "OK: testpmd parsed all $expected flow create lines (and their set raw_* lines)"
