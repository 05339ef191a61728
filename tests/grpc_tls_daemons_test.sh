#!/usr/bin/env bash
# Both daemons' gRPC over TCP with mutual TLS, as an operator runs them (loopback only, no
# lab): a throwaway PKI (tests/support/make_test_pki.sh); sluice-agent and sluice-mux on
# net_null ports with --grpc-listen 127.0.0.1:0 and --grpc-tls-*; sluicectl with the good
# client certificate gets an answer, without one, with one from another CA, or in plaintext
# it is refused. Broken TLS files stop a daemon before it starts, with the file named. Then the
# daemons as clients of a mutual-TLS mux: sluice-snatd (allocator.mux_tls) keeps the mux's
# SNAT ranges and serves its own API with mutual TLS; an agent pushes health verdicts to the
# mux (health_report.tls) and leases SNAT chunks from snatd (snat_allocator.tls) - and
# without the client certificate the same pushes are refused.
#
#   grpc_tls_daemons_test.sh BUILD_DIR
set -uo pipefail
BUILD=$(realpath "${1:?usage: $0 BUILD_DIR}")
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TMP=$(mktemp -d /tmp/sluice-tls-test-XXXXXX)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  for f in "$TMP"/*.log; do
    [[ -e "$f" ]] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
  done
  exit 1
}
say() { echo "== $*"; }

"$HERE/support/make_test_pki.sh" "$TMP/pki" >"$TMP/pki.log" 2>&1 || fail "making the PKI"
P=$TMP/pki
SERVER_TLS=(--grpc-tls-cert "$P/server.pem" --grpc-tls-key "$P/server.key" --grpc-tls-ca "$P/ca.pem")

cat >"$TMP/agent.yaml" <<EOF
agent:
  name: tls-agent
  uplink: "net_null0,no-rx=1"
  address: 10.101.0.21/24
  gateway: 10.101.0.1
vms:
  - { name: vm1, port: "net_null1,no-rx=1", mac: "02:00:0a:01:00:01", dip: 10.1.0.1, pa: 10.101.0.31,
      gateway: 10.1.0.254 }
nat:
  flow_state_file: $TMP/agent.flows
  flow_capacity: 4096
EOF
cat >"$TMP/mux.yaml" <<EOF
mux:
  name: tls-mux
  port: "net_null0,no-rx=1"
  address: 10.101.0.11/24
  gateway: 10.101.0.1
  flow_table_size: 4096
vips:
  - vip: 10.200.0.10
    port: 80
    protocol: tcp
    backends: [{ dip: 10.1.0.1, host: 10.101.0.31 }]
EOF

say "broken TLS files stop a daemon before it starts, naming the file"
expect_refused() {  # expect_refused DAEMON CONFIG MESSAGE ARGS...
  local daemon=$1 config=$2 message=$3 rc
  shift 3
  "$BUILD/bin/$daemon" -- --config "$config" --check-config --grpc-listen 127.0.0.1:0 "$@" \
    >"$TMP/check.out" 2>&1
  rc=$?
  ((rc == 1)) || fail "$daemon $* exited $rc, not 1: $(cat "$TMP/check.out")"
  grep -qF -- "$message" "$TMP/check.out" ||
    fail "$daemon $*: expected '$message', got: $(cat "$TMP/check.out")"
  echo "  $(cat "$TMP/check.out")"
}
for daemon in sluice-agent sluice-mux; do
  config=$TMP/${daemon#sluice-}.yaml
  expect_refused "$daemon" "$config" "--grpc-tls-key $P/client.key: is not the key of the certificate in $P/server.pem" \
    --grpc-tls-cert "$P/server.pem" --grpc-tls-key "$P/client.key"
  expect_refused "$daemon" "$config" "--grpc-tls-cert $P/missing.pem: cannot read: No such file or directory" \
    --grpc-tls-cert "$P/missing.pem" --grpc-tls-key "$P/server.key"
  expect_refused "$daemon" "$config" "--grpc-tls-ca $P/ca.key: not a PEM certificate" \
    --grpc-tls-cert "$P/server.pem" --grpc-tls-key "$P/server.key" --grpc-tls-ca "$P/ca.key"
  "$BUILD/bin/$daemon" -- --config "$config" --check-config --grpc-listen 127.0.0.1:0 \
    "${SERVER_TLS[@]}" >"$TMP/check.out" 2>&1 || fail "$daemon refused good TLS files: $(cat "$TMP/check.out")"
done

# start NAME BINARY CONFIG : runs a daemon with mTLS on 127.0.0.1:<any port>; sets PORT.
start() {
  local name=$1 binary=$2 config=$3 deadline line
  "$BUILD/bin/$binary" -l 0 --no-huge --no-shconf -m 128 --file-prefix "sl-tls-$name-$$" \
    --no-pci --no-telemetry --log-level lib.eal:warning -- --config "$config" \
    --grpc-socket "$TMP/$name.sock" --grpc-listen 127.0.0.1:0 "${SERVER_TLS[@]}" \
    --stats-socket "$TMP/$name.stats" \
    >"$TMP/$name.log" 2>&1 &
  PIDS+=($!)
  deadline=$(($(date +%s) + 30))
  while (($(date +%s) < deadline)); do
    line=$(grep -o '127\.0\.0\.1:[0-9]* (mutual TLS' "$TMP/$name.log")
    [[ -n "$line" ]] && break
    kill -0 "${PIDS[-1]}" 2>/dev/null || fail "$binary exited"
    sleep 0.1
  done
  [[ -n "$line" ]] || fail "$binary did not report its gRPC listener within 30 s"
  PORT=${line#127.0.0.1:}
  PORT=${PORT%% *}
  echo "  $binary: $(grep -o 'gRPC on .*' "$TMP/$name.log")"
}

ctl() { "$BUILD/bin/sluicectl" "$@" >"$TMP/ctl.out" 2>&1; }
GOOD=(--tls-ca "$P/ca.pem" --tls-cert "$P/client.pem" --tls-key "$P/client.key")
ROGUE=(--tls-ca "$P/ca.pem" --tls-cert "$P/rogue.pem" --tls-key "$P/rogue.key")

for daemon in agent mux; do
  say "sluice-$daemon with mutual TLS"
  start "$daemon" "sluice-$daemon" "$TMP/$daemon.yaml"
  target=127.0.0.1:$PORT
  ctl version --socket "$target" "${GOOD[@]}" || fail "good client refused: $(cat "$TMP/ctl.out")"
  grep -q "^sluice-$daemon tls-$daemon:" "$TMP/ctl.out" || fail "unexpected answer: $(cat "$TMP/ctl.out")"
  echo "  client certificate from the CA: $(tail -n 1 "$TMP/ctl.out")"
  for client in "no certificate:--tls-ca $P/ca.pem" "certificate from another CA:${ROGUE[*]}" \
    "plaintext:"; do
    read -r -a args <<<"${client#*:}"
    ctl version --socket "$target" "${args[@]}"
    rc=$?
    ((rc == 1)) || fail "${client%%:*}: sluicectl exited $rc, not 1: $(cat "$TMP/ctl.out")"
    grep -q "UNAVAILABLE" "$TMP/ctl.out" || fail "${client%%:*}: not UNAVAILABLE: $(cat "$TMP/ctl.out")"
    echo "  ${client%%:*}: refused ($(grep -o 'UNAVAILABLE.*' "$TMP/ctl.out" | head -c 80))"
  done
  # The unix socket next to it stays plain, guarded by its mode.
  ctl version --socket "$TMP/$daemon.sock" "${GOOD[@]}" || fail "unix socket: $(cat "$TMP/ctl.out")"
  [[ "$(stat -c %a "$TMP/$daemon.sock")" == 660 ]] || fail "socket mode $(stat -c %a "$TMP/$daemon.sock")"
done
say "sluice-snatd: the mux's SNAT ranges over mutual TLS, its own API with mutual TLS"
MUX_TARGET=127.0.0.1:$PORT
CLIENT_TLS="{ ca: $P/ca.pem, cert: $P/client.pem, key: $P/client.key }"
write_snatd() {  # write_snatd FILE MUX_TLS_LINE
  cat >"$1" <<EOF
allocator:
  name: tls-snatd
  state_file: $TMP/snatd.state
  resync_interval_ms: 200
$2
muxes:
  - address: $MUX_TARGET
pools:
  - { vip: 10.200.0.10, protocol: tcp, port_start: 21000, port_count: 256, chunk_ports: 32 }
EOF
}
write_snatd "$TMP/snatd-bad.yaml" "  mux_tls: { ca: $P/ca.pem, cert: $P/client.pem, key: $P/stray.key }"
"$BUILD/bin/sluice-snatd" --config "$TMP/snatd-bad.yaml" --check-config >"$TMP/check.out" 2>&1
rc=$?
((rc == 1)) && grep -qF "allocator.mux_tls: key $P/stray.key: is not the key" "$TMP/check.out" ||
  fail "a bad mux_tls key was not refused by name (rc $rc): $(cat "$TMP/check.out")"
echo "  $(cat "$TMP/check.out")"
write_snatd "$TMP/snatd.yaml" "  mux_tls: $CLIENT_TLS"
"$BUILD/bin/sluice-snatd" --config "$TMP/snatd.yaml" --grpc-socket "$TMP/snatd.sock" \
  --grpc-listen 127.0.0.1:0 "${SERVER_TLS[@]}" --metrics-listen 127.0.0.1:0 \
  >"$TMP/snatd.log" 2>&1 &
PIDS+=($!)
wait_log() {  # wait_log FILE PATTERN: sets LINE to the first match within 30 s
  local deadline=$(($(date +%s) + 30))
  LINE=
  while (($(date +%s) < deadline)); do
    LINE=$(grep -o -m1 "$2" "$1")
    [[ -n "$LINE" ]] && return 0
    kill -0 "${PIDS[-1]}" 2>/dev/null || fail "the process logging to $1 exited"
    sleep 0.1
  done
  fail "no '$2' in $1 within 30 s"
}
wait_log "$TMP/snatd.log" '127\.0\.0\.1:[0-9]* (mutual TLS'
SNATD_TARGET=${LINE% (*}
echo "  snatd serves on $SNATD_TARGET; the mux is $MUX_TARGET"
wait_log "$TMP/snatd.log" 'metrics on port [0-9]*'
METRICS_PORT=${LINE##* }
# until_ok COMMAND...: retries for 30 s (the daemons work in the background).
until_ok() {
  local deadline=$(($(date +%s) + 30))
  while (($(date +%s) < deadline)); do
    "$@" && return 0
    sleep 0.2
  done
  return 1
}
snatd_in_sync() {
  ctl get snat-chunks --socket "$SNATD_TARGET" "${GOOD[@]}" -o json &&
    grep -q '"in_sync": *true' "$TMP/ctl.out"
}
until_ok snatd_in_sync ||
  fail "snatd never synced the mux over TLS: $(cat "$TMP/ctl.out"; tail -5 "$TMP/snatd.log")"
echo "  snatd reached the mux with its client certificate (in sync)"
ctl get snat-chunks --socket "$SNATD_TARGET" --tls-ca "$P/ca.pem"
rc=$?
((rc == 1)) && grep -q UNAVAILABLE "$TMP/ctl.out" ||
  fail "snatd answered a client without a certificate (rc $rc): $(cat "$TMP/ctl.out")"
echo "  snatd's own API refuses a client without a certificate"
curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" >"$TMP/snatd.metrics" ||
  fail "no /metrics from snatd on port $METRICS_PORT"
grep -q '^sluice_snatd_mux_in_sync{mux="'"$MUX_TARGET"'"} 1' "$TMP/snatd.metrics" ||
  fail "snatd metrics lack the mux in sync: $(grep -i sync "$TMP/snatd.metrics")"
echo "  $(grep '^sluice_snatd_mux_in_sync' "$TMP/snatd.metrics")"

say "an agent reports health to the mux and leases SNAT chunks from snatd, both over mutual TLS"
write_agent() {  # write_agent FILE NAME TLS_LINE
  cat >"$1" <<EOF
agent:
  name: $2
  uplink: "net_null0,no-rx=1"
  address: 10.101.0.21/24
  gateway: 10.101.0.1
vms:
  - { name: vm1, port: "net_null1,no-rx=1", mac: "02:00:0a:01:00:01", dip: 10.1.0.1, pa: 10.101.0.31,
      gateway: 10.1.0.254 }
endpoints:
  - { vip: 10.200.0.10, port: 80, protocol: tcp, dip: 10.1.0.1 }
health_report:
  muxes: [{ name: tls-mux, grpc: "$MUX_TARGET" }]
  retry_max_ms: 500
$3
snat_allocator:
  address: $SNATD_TARGET
  low_water: 8
$3
  leases: [{ dip: 10.1.0.1, vip: 10.200.0.10, protocol: tcp }]
nat:
  flow_state_file: $TMP/$2.flows
  flow_capacity: 4096
EOF
}
write_agent "$TMP/agent-tls.yaml" tls-agent2 "  tls: $CLIENT_TLS"
start agent2 sluice-agent "$TMP/agent-tls.yaml"
agent_stats() {  # agent_stats NAME PATTERN: the agent's stats document (its stats socket)
  ctl stats --socket "$TMP/$1.stats" -o json && grep -q "$2" "$TMP/ctl.out"
}
until_ok agent_stats agent2 '"in_sync": *true' ||
  fail "health verdicts never reached the mux over TLS: $(cat "$TMP/ctl.out")"
echo "  health_report: in sync with tls-mux"
until_ok agent_stats agent2 '"chunks_granted": *[1-9]' ||
  fail "no SNAT chunk leased over TLS: $(cat "$TMP/ctl.out"; cat "$TMP/agent2.log")"
echo "  snat_allocator: $(grep -o '"chunks_granted": *[0-9]*' "$TMP/ctl.out")"
ctl get snat-ranges --socket "$MUX_TARGET" "${GOOD[@]}"
grep -q "10.101.0.21 .*allocator" "$TMP/ctl.out" ||
  fail "the mux does not route the leased chunk to the agent: $(cat "$TMP/ctl.out")"
echo "  the mux routes the chunk's replies to the agent: $(grep allocator "$TMP/ctl.out" | head -1)"

say "the same agent without client certificates is refused by both"
write_agent "$TMP/agent-plain.yaml" tls-agent3 ""
start agent3 sluice-agent "$TMP/agent-plain.yaml"
until_ok agent_stats agent3 '"pushes_failed": *[1-9]' ||
  fail "plaintext health pushes did not fail: $(cat "$TMP/ctl.out")"
grep -q '"in_sync": *true' "$TMP/ctl.out" && fail "a plaintext agent got in sync with the mTLS mux"
# Its allocator calls fail (it never gets past listing the chunks it holds) and it holds none.
until_ok agent_stats agent3 '"snat_allocator":{[^}]*"last_error":"[^"]' ||
  fail "plaintext allocator calls did not fail: $(cat "$TMP/ctl.out")"
grep -q '"chunks_granted": *[1-9]' "$TMP/ctl.out" && fail "a plaintext agent was granted a chunk"
echo "  health pushes failed and allocator calls failed without a certificate:" \
  "$(grep -o '"snat_allocator":{[^}]*"last_error":"[^"]*"' "$TMP/ctl.out" | grep -o '"last_error".*')"
echo "PASS"
