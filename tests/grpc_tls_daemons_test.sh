#!/usr/bin/env bash
# Both daemons' gRPC over TCP with mutual TLS, as an operator runs them (loopback only, no
# lab): a throwaway PKI (tests/support/make_test_pki.sh); sluice-agent and sluice-mux on
# net_null ports with --grpc-listen 127.0.0.1:0 and --grpc-tls-*; sluicectl with the good
# client certificate gets an answer, without one, with one from another CA, or in plaintext
# it is refused. Broken TLS files stop a daemon before it starts, with the file named.
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
echo "PASS"
