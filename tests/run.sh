#!/usr/bin/env bash
# Runs every test: installs missing Debian packages, configures and builds (Ninja, ccache)
# and runs ctest (unit tests, then the end-to-end lab tests, which need root).
#
#   tests/run.sh [--bench] [ctest args...]
#   tests/run.sh --fuzz [target...]
#
# --bench also runs bench/run.sh afterwards, if present. --fuzz instead builds the fuzz
# targets with clang + libFuzzer in their own directory and fuzzes each for 60 s
# (tests/fuzz/run.sh; exits non-zero on a crash). Extra arguments go to ctest
# (e.g. -L unit, -R mux_kill). Environment: SLUICE_BUILD (default <repo>/build).
# Works without a terminal; exits non-zero if anything fails.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${SLUICE_BUILD:-$REPO/build}
bench=0
ctest_args=()
for arg in "$@"; do
  case "$arg" in
    --bench) bench=1 ;;
    *) ctest_args+=("$arg") ;;
  esac
done

"$REPO/deploy/ensure-deps.sh"

if [[ "${1:-}" == "--fuzz" ]]; then
  shift
  exec "$REPO/tests/fuzz/run.sh" "$@"
fi

if [[ ! -f "$BUILD/build.ninja" ]]; then
  cmake -S "$REPO" -B "$BUILD" -G Ninja
fi
ninja -C "$BUILD"

cd "$BUILD"
ctest --output-on-failure -j "$(nproc)" "${ctest_args[@]}"

if ((bench)); then
  if [[ -x "$REPO/bench/run.sh" ]]; then
    "$REPO/bench/run.sh"
  else
    echo "run.sh: --bench: no bench/run.sh yet" >&2
  fi
fi
