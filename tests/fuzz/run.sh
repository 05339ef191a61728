#!/usr/bin/env bash
# Builds the fuzz targets as libFuzzer binaries (clang, ASan + UBSan) in their own build
# directory and fuzzes each one for a while, starting from its corpus in
# tests/fuzz/corpus/<name>/ (only read; new inputs go to the build directory).
#
#   tests/fuzz/run.sh [name...]     (default: every target; names as in corpus/)
#
# Environment: SLUICE_FUZZ_BUILD (default <repo>/build-fuzz), SLUICE_FUZZ_SECONDS per target
# (default 60). Exits 1 if any target crashes; the crashing input is left in
# <build>/fuzz-artifacts/<name>/ — fix the bug and add the input to the corpus as
# corpus/<name>/regress-<what>.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${SLUICE_FUZZ_BUILD:-$REPO/build-fuzz}
SECONDS_PER_TARGET=${SLUICE_FUZZ_SECONDS:-60}

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  for dir in "$REPO"/tests/fuzz/corpus/*/; do targets+=("$(basename "$dir")"); done
fi

if [[ ! -f "$BUILD/build.ninja" ]]; then
  CC=clang CXX=clang++ cmake -S "$REPO" -B "$BUILD" -G Ninja -DSLUICE_FUZZ=ON
fi
ninja -C "$BUILD" "${targets[@]/#/fuzz_}"

failed=()
for name in "${targets[@]}"; do
  work="$BUILD/fuzz-corpus/$name"
  artifacts="$BUILD/fuzz-artifacts/$name"
  mkdir -p "$work" "$artifacts"
  echo "=== fuzz_$name: ${SECONDS_PER_TARGET}s" >&2
  # -timeout: an input slower than 10 s is a hang; new inputs go to $work, the checked-in
  # corpus is the second (read-only) directory.
  if ! "$BUILD/fuzz/fuzz_$name" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 \
      -max_len=4096 -print_final_stats=1 -artifact_prefix="$artifacts/" \
      "$work" "$REPO/tests/fuzz/corpus/$name" 2> "$BUILD/fuzz-$name.log"; then
    failed+=("$name")
    tail -n 40 "$BUILD/fuzz-$name.log" >&2
  fi
  grep -E "stat::number_of_executed_units|stat::new_units_added" "$BUILD/fuzz-$name.log" >&2 || true
done

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: crashes in: ${failed[*]} (inputs in $BUILD/fuzz-artifacts/)" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${SECONDS_PER_TARGET}s each, no crash" >&2
