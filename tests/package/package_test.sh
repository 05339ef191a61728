#!/usr/bin/env bash
# Package test (issue 9): builds the Debian packages from a build tree, installs them with
# apt, checks what landed where, verifies the systemd units, validates the shipped configs
# with the installed daemons, runs the installed sluicectl, libvirt hook and agent, then
# removes (conffiles stay) and purges (nothing stays) and checks both against Debian policy.
#
#   tests/package/package_test.sh [BUILD_DIR]      (ctest: package_test, label "package")
#
# Needs root; exits 77 (skipped) without it, or when sluice packages or /etc/sluice are
# already on the machine (it never touches an existing install). Whatever happens, the trap
# purges what it installed and removes its namespaces and temporary files.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=$(realpath -m "${1:-${SLUICE_BUILD:-$REPO/build}}")
PKGS=(sluice-agent sluice-mux sluice-snatd sluicectl)
NS_HOST=sp$$-host # this run's namespaces: unique prefix, removed by the trap
NS_ROUTER=sp$$-rtr

say() { echo "package_test: [$SECONDS s] $*" >&2; }
fail() {
  echo "package_test: FAIL: $*" >&2
  exit 1
}
skip() {
  echo "package_test: SKIP: $*" >&2
  exit 77
}

((EUID == 0)) || skip "needs root (installs packages)"
for tool in dpkg-buildpackage dh apt-get dpkg-deb systemd-analyze flock ip; do
  command -v "$tool" >/dev/null || skip "$tool is not installed (deploy/ensure-deps.sh)"
done

# One package test per machine at a time (it installs into the machine's dpkg database).
exec 9>/run/sluice-package-test.lock
flock -w 600 9 || fail "another package test held /run/sluice-package-test.lock for 10 min"

pkg_status() { dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null | tr -d ' '; }
for p in "${PKGS[@]}"; do
  s=$(pkg_status "$p")
  [[ -z "$s" || "$s" == un || "$s" == pn ]] ||
    skip "$p is already on this machine (dpkg status '$s'): not touching an existing install"
done
[[ ! -e /etc/sluice ]] || skip "/etc/sluice exists: not touching an existing install"

TMP=$(mktemp -d /tmp/sluice-package-test.XXXXXX)
installed=0
agent_pid=

cleanup() {
  local rc=$?
  if [[ -n "$agent_pid" ]] && kill -0 "$agent_pid" 2>/dev/null; then
    kill -TERM "$agent_pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$agent_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$agent_pid" 2>/dev/null
  fi
  ip netns del "$NS_HOST" 2>/dev/null
  ip netns del "$NS_ROUTER" 2>/dev/null
  if ((installed)); then
    say "cleanup: purging ${PKGS[*]}"
    apt-get -o DPkg::Lock::Timeout=300 purge -y "${PKGS[@]}" >>"$TMP/cleanup.log" 2>&1 ||
      dpkg --purge "${PKGS[@]}" >>"$TMP/cleanup.log" 2>&1 ||
      say "cleanup: purge failed, see $TMP/cleanup.log"
  fi
  if ((rc == 0)); then rm -rf "$TMP"; else say "logs kept in $TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ---------------------------------------------------------------------------------------
say "building the packages from $BUILD"
"$REPO/deploy/debian/build-debs.sh" "$BUILD" "$TMP/deb" >"$TMP/build-debs.log" 2>&1 || {
  cat "$TMP/build-debs.log" >&2
  fail "deploy/debian/build-debs.sh failed"
}
declare -A DEB
for p in "${PKGS[@]}"; do
  debs=("$TMP"/deb/"${p}"_*.deb)
  [[ -f "${debs[0]}" ]] || fail "no ${p}_*.deb was built: $(cd "$TMP/deb" && echo *)"
  DEB[$p]=${debs[0]}
done

# Depends: the DPDK, gRPC and libxml2 libraries come from dpkg-shlibdeps, gobgpd by hand.
depends_of() { dpkg-deb -f "${DEB[$1]}" Depends; }
expect_depends() {
  local pkg=$1 re=$2
  depends_of "$pkg" | grep -qE "$re" || fail "$pkg: Depends lacks /$re/: $(depends_of "$pkg")"
}
expect_depends sluice-agent '(^|, )librte-'
expect_depends sluice-agent '(^|, )libgrpc\+\+'
expect_depends sluice-agent '(^|, )libxml2'
expect_depends sluice-agent '(^|, )libyaml-cpp'
expect_depends sluice-mux '(^|, )gobgpd($|,| )'
expect_depends sluice-mux '(^|, )librte-'
expect_depends sluice-mux '(^|, )librte-mempool-ring23'
expect_depends sluice-agent '(^|, )librte-net-af-packet23'
expect_depends sluicectl '(^|, )libc6'
expect_depends sluice-snatd '(^|, )libgrpc\+\+'

# conffiles: every file under /etc, except the hook, which is a symlink.
conffiles_of() { dpkg-deb --ctrl-tarfile "${DEB[$1]}" | tar -xOf - ./conffiles 2>/dev/null; }
expect_conffiles() {
  local pkg=$1 got want
  got=$(conffiles_of "$pkg" | sort)
  want=$(printf '%s\n' "${@:2}" | sort)
  [[ "$got" == "$want" ]] || fail "$pkg conffiles: got [${got//$'\n'/ }], want [${want//$'\n'/ }]"
}
expect_conffiles sluice-agent /etc/sluice/agent.yaml /etc/sluice/libvirt-hook.yaml \
  /etc/default/sluice-agent
expect_conffiles sluice-mux /etc/sluice/mux.yaml /etc/default/sluice-mux
expect_conffiles sluice-snatd /etc/sluice/snatd.yaml /etc/default/sluice-snatd

# Every path the packages ship, and whether it existed before the install (shared
# directories like /usr/sbin did; /etc/sluice must not outlive the purge).
declare -A PRE_EXISTED CONFFILE
PATHS=()
for p in "${PKGS[@]}"; do
  while IFS= read -r path; do
    path=${path#.}
    path=${path%/}
    [[ -n "$path" ]] || continue
    PATHS+=("$path")
    if [[ -e "$path" || -L "$path" ]]; then PRE_EXISTED[$path]=1; fi
  done < <(dpkg-deb --fsys-tarfile "${DEB[$p]}" | tar -tf -)
  while IFS= read -r c; do [[ -n "$c" ]] && CONFFILE[$c]=1; done < <(conffiles_of "$p")
done

# ---------------------------------------------------------------------------------------
say "installing ${PKGS[*]} with apt"
installed=1
apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends \
  "${DEB[@]}" >"$TMP/install.log" 2>&1 || {
  tail -n 30 "$TMP/install.log" >&2
  fail "apt-get install of the packages failed"
}
for p in "${PKGS[@]}"; do
  [[ "$(pkg_status "$p")" == ii ]] || fail "$p: dpkg status '$(pkg_status "$p")' after install"
done
for path in "${PATHS[@]}"; do
  [[ -e "$path" || -L "$path" ]] || fail "$path is in a package but not on disk after install"
done
for f in /usr/sbin/sluice-agent /usr/sbin/sluice-mux /usr/sbin/sluice-snatd /usr/bin/sluicectl \
  /usr/libexec/sluice/sluice-libvirt-hook; do
  [[ -x "$f" ]] || fail "$f is not an executable file"
  if ldd "$f" | grep -q 'not found'; then fail "$f: $(ldd "$f" | grep 'not found')"; fi
done
for f in /lib/systemd/system/sluice-agent.service /lib/systemd/system/sluice-mux.service \
  /lib/systemd/system/sluice-snatd.service /usr/share/doc/sluice-snatd/README.md \
  /usr/share/doc/sluice-agent/setup.md /usr/share/doc/sluice-mux/setup.md \
  /usr/share/doc/sluice-agent/examples/vswitch.conf; do
  [[ -f "$f" ]] || fail "$f was not installed"
done
HOOK=/etc/libvirt/hooks/qemu.d/sluice
[[ -L "$HOOK" && "$(readlink -f "$HOOK")" == /usr/libexec/sluice/sluice-libvirt-hook ]] ||
  fail "$HOOK is not a symlink to /usr/libexec/sluice/sluice-libvirt-hook"
# Units are installed disabled (the config must be written for this host first).
[[ ! -e /etc/systemd/system/multi-user.target.wants/sluice-agent.service ]] ||
  fail "sluice-agent.service was enabled by the install"

# ---------------------------------------------------------------------------------------
say "sluicectl version"
want_version=$(dpkg-query -W -f='${Version}' sluicectl)
got=$(/usr/bin/sluicectl version) || fail "sluicectl version exited $?"
[[ "$got" == "sluicectl ${want_version%%-*}" ]] ||
  fail "sluicectl version printed '$got', the package is $want_version"

say "the shipped configs parse (--check-config)"
/usr/sbin/sluice-agent -- --config /etc/sluice/agent.yaml --check-config >"$TMP/check.log" 2>&1 ||
  fail "/etc/sluice/agent.yaml does not parse: $(cat "$TMP/check.log")"
/usr/sbin/sluice-mux -- --config /etc/sluice/mux.yaml --check-config >"$TMP/check.log" 2>&1 ||
  fail "/etc/sluice/mux.yaml does not parse: $(cat "$TMP/check.log")"
/usr/sbin/sluice-snatd --config /etc/sluice/snatd.yaml --check-config >"$TMP/check.log" 2>&1 ||
  fail "/etc/sluice/snatd.yaml does not parse: $(cat "$TMP/check.log")"
# ... and a broken one is refused with its file and line (what ExecStartPre/ExecReload show).
sed 's/^  gateway: 192.0.2.1$/  gateway: 192.0.2.999/' /etc/sluice/mux.yaml >"$TMP/bad-mux.yaml"
cmp -s /etc/sluice/mux.yaml "$TMP/bad-mux.yaml" && fail "could not break mux.yaml for the test"
if /usr/sbin/sluice-mux -- --config "$TMP/bad-mux.yaml" --check-config >"$TMP/check.log" 2>&1; then
  fail "sluice-mux --check-config accepted a gateway of 192.0.2.999"
fi
grep -q "$TMP/bad-mux.yaml:[0-9]" "$TMP/check.log" ||
  fail "the config error does not name file:line: $(cat "$TMP/check.log")"

say "systemd-analyze verify"
verify() {
  local out
  if ! out=$(systemd-analyze verify "$@" 2>&1); then
    fail "systemd-analyze verify $*: $out"
  fi
  # verify exits 0 on some warnings; ours must have none about our units.
  if grep -E 'sluice' <<<"$out" | grep -qvE '^$'; then
    fail "systemd-analyze verify $* warns: $out"
  fi
}
verify /lib/systemd/system/sluice-agent.service /lib/systemd/system/sluice-mux.service \
  /lib/systemd/system/sluice-snatd.service
# The vSwitch-mode drop-in, applied to a copy of the unit.
mkdir -p "$TMP/units/sluice-agent.service.d"
cp /lib/systemd/system/sluice-agent.service "$TMP/units/"
cp /usr/share/doc/sluice-agent/examples/vswitch.conf "$TMP/units/sluice-agent.service.d/"
SYSTEMD_UNIT_PATH="$TMP/units:" verify "$TMP/units/sluice-agent.service"

# ---------------------------------------------------------------------------------------
say "the installed libvirt hook"
XML=$REPO/deploy/libvirt/testdata/vhostuser_only.xml
# libvirt runs hooks with a clean environment and no flags: only the config file counts.
run_hook() { env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@" "$HOOK" db1 started begin - <"$XML"; }
# Operations the hook ignores exit 0 at once.
env -i "$HOOK" db1 prepare begin - </dev/null >"$TMP/hook.log" 2>&1 ||
  fail "hook 'prepare' exited $?: $(cat "$TMP/hook.log")"
# No agent listening on the default socket: fail-open (the default) lets the VM start...
run_hook >"$TMP/hook.log" 2>&1 ||
  fail "fail-open hook exited $? with no agent: $(cat "$TMP/hook.log")"
# ... fail-closed refuses it with 69, and a broken domain XML is 65.
run_hook SLUICE_HOOK_FAIL_CLOSED=1 >"$TMP/hook.log" 2>&1
rc=$?
((rc == 69)) || fail "fail-closed hook with no agent exited $rc, want 69: $(cat "$TMP/hook.log")"
XML=$REPO/deploy/libvirt/testdata/malformed.xml
run_hook >"$TMP/hook.log" 2>&1
rc=$?
((rc == 65)) || fail "hook on malformed XML exited $rc, want 65: $(cat "$TMP/hook.log")"

# ---------------------------------------------------------------------------------------
# The installed agent, on af_packet ports in two private namespaces ("router" answers ARP
# for the gateway), without hugepages; ready = gateway resolved and rules installed.
say "the installed agent in namespaces $NS_HOST, $NS_ROUTER"
ip netns add "$NS_ROUTER" && ip netns add "$NS_HOST" || fail "cannot create namespaces"
ip -n "$NS_HOST" link add up0 type veth peer eth0 netns "$NS_ROUTER" &&
  ip -n "$NS_HOST" link add vm0 type veth peer vm0p &&
  ip -n "$NS_ROUTER" addr add 192.0.2.1/24 dev eth0 &&
  ip -n "$NS_ROUTER" link set eth0 up && ip -n "$NS_ROUTER" link set lo up &&
  ip -n "$NS_HOST" link set up0 up && ip -n "$NS_HOST" link set vm0 up &&
  ip -n "$NS_HOST" link set vm0p up || fail "cannot build the test topology"
mkdir -p "$TMP/run"
AGENT_GRPC=$TMP/run/agent-grpc.sock
sed -e 's|^  uplink: .*|  uplink: "net_af_packet0,iface=up0"|' \
  -e 's|^    port: "0000:3b:00.0,representor=vf0"|    port: "net_af_packet_vm0,iface=vm0"|' \
  -e "s|^  flow_state_file: .*|  flow_state_file: $TMP/run/agent.flows|" \
  /etc/sluice/agent.yaml >"$TMP/agent.yaml"
grep -q 'iface=vm0' "$TMP/agent.yaml" && grep -q 'iface=up0' "$TMP/agent.yaml" ||
  fail "could not adapt /etc/sluice/agent.yaml to the test ports"
ip netns exec "$NS_HOST" /usr/sbin/sluice-agent -l 0 --no-huge --no-shconf -m 256 \
  --file-prefix "sp$$" --no-pci --no-telemetry --log-level lib.eal:warning -- \
  --config "$TMP/agent.yaml" --stats-socket "$TMP/run/agent.sock" --run-dir "$TMP/run" \
  --grpc-socket "$AGENT_GRPC" </dev/null >"$TMP/agent.log" 2>&1 &
agent_pid=$!
ready=0
for _ in $(seq 300); do # up to 30 s
  kill -0 "$agent_pid" 2>/dev/null || break
  if /usr/bin/sluicectl stats --socket "$TMP/run/agent.sock" -o json 2>/dev/null |
    grep -q '"ready": *true'; then
    ready=1
    break
  fi
  sleep 0.1
done
((ready)) || fail "the installed sluice-agent did not report ready: $(tail -n 20 "$TMP/agent.log")"

# The installed hook against the installed agent, fail-closed so that exit 0 means the agent
# accepted, and the installed sluicectl reading the agent's VM table over gRPC. A domain web1
# whose MAC differs from the running VM's is refused (69); VM web1 (tests/package/web1.xml, a
# tap NIC) stops (detached: the agent removes it with its port) and starts (attached again,
# its port probed anew).
say "the installed hook against the installed agent"
XML=$REPO/tests/package/web1.xml
hook_env=(SLUICE_HOOK_FAIL_CLOSED=1 "SLUICE_AGENT=unix:$AGENT_GRPC")
hook_call() { env -i PATH=/usr/bin:/bin "${hook_env[@]}" "$HOOK" web1 "$@" >"$TMP/hook.log" 2>&1; }
read_vms() {
  /usr/bin/sluicectl get vms --socket "$AGENT_GRPC" -o json >"$TMP/vms.json" 2>&1 ||
    fail "sluicectl get vms: $(cat "$TMP/vms.json")"
}
web1_attached() {
  read_vms
  grep -q '"name": *"web1"' "$TMP/vms.json" || fail "no VM web1 in: $(cat "$TMP/vms.json")"
  grep -qE '"attached": *true' "$TMP/vms.json"
}
web1_attached || fail "web1 is not attached after the agent started: $(cat "$TMP/vms.json")"
sed 's/52:54:00:10:00:01/52:54:00:10:00:99/g' "$XML" >"$TMP/web1-other-mac.xml"
hook_call started begin - <"$TMP/web1-other-mac.xml"
rc=$?
((rc == 69)) || fail "the agent did not refuse web1 with another MAC (hook exit $rc, want 69)"
web1_attached || fail "a refused 'started' changed web1: $(cat "$TMP/vms.json")"
grep -q '52:54:00:10:00:01' "$TMP/vms.json" || fail "web1's MAC changed: $(cat "$TMP/vms.json")"
hook_call stopped end - <"$XML" || fail "hook 'web1 stopped' exited $?: $(cat "$TMP/hook.log")"
read_vms
grep -q '"name": *"web1"' "$TMP/vms.json" &&
  fail "web1 is still on the agent after 'stopped': $(cat "$TMP/vms.json")"
hook_call started begin - <"$XML" || fail "hook 'web1 started' exited $?: $(cat "$TMP/hook.log")"
web1_attached || fail "web1 is not attached after 'started': $(cat "$TMP/vms.json")"

kill -TERM "$agent_pid"
for _ in $(seq 100); do kill -0 "$agent_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$agent_pid" 2>/dev/null && fail "sluice-agent ignored SIGTERM for 10 s"
wait "$agent_pid"
rc=$?
agent_pid=
((rc == 0)) || fail "sluice-agent exited $rc on SIGTERM: $(tail -n 20 "$TMP/agent.log")"

# ---------------------------------------------------------------------------------------
# Remove: conffiles stay (including an edited one), everything else goes.
echo "# edited by the operator" >>/etc/sluice/agent.yaml
say "apt-get remove"
apt-get -o DPkg::Lock::Timeout=300 remove -y "${PKGS[@]}" >"$TMP/remove.log" 2>&1 || {
  tail -n 30 "$TMP/remove.log" >&2
  fail "apt-get remove failed"
}
for p in sluice-agent sluice-mux; do
  s=$(pkg_status "$p")
  [[ "$s" == rc ]] || fail "$p: dpkg status '$s' after remove, want rc"
done
for path in "${PATHS[@]}"; do
  [[ -n "${PRE_EXISTED[$path]:-}" ]] && continue
  if [[ -n "${CONFFILE[$path]:-}" ]]; then
    [[ -f "$path" ]] || fail "conffile $path is gone after remove (only purge removes it)"
  elif [[ -d "$path" && ! -L "$path" ]]; then
    # A directory may stay only to hold conffiles.
    left=$(find "$path" -mindepth 1 \( -type f -o -type l \))
    for f in $left; do
      [[ -n "${CONFFILE[$f]:-}" ]] || fail "$f is left after remove and is not a conffile"
    done
    [[ -n "$left" ]] || fail "empty directory $path is left after remove"
  elif [[ -e "$path" || -L "$path" ]]; then
    fail "$path is left after remove and is not a conffile"
  fi
done
grep -q 'edited by the operator' /etc/sluice/agent.yaml || fail "remove lost the edited conffile"

# Purge: nothing at all.
say "apt-get purge"
apt-get -o DPkg::Lock::Timeout=300 purge -y "${PKGS[@]}" >"$TMP/purge.log" 2>&1 || {
  tail -n 30 "$TMP/purge.log" >&2
  fail "apt-get purge failed"
}
installed=0
for p in "${PKGS[@]}"; do
  s=$(pkg_status "$p")
  [[ -z "$s" || "$s" == un || "$s" == pn ]] || fail "$p: dpkg status '$s' after purge"
done
for path in "${PATHS[@]}"; do
  [[ -n "${PRE_EXISTED[$path]:-}" ]] && continue
  [[ ! -e "$path" && ! -L "$path" ]] || fail "$path is left after purge"
done
for d in /etc/sluice /usr/libexec/sluice; do
  [[ ! -e "$d" ]] || fail "$d is left after purge"
done
leftovers=$(find /etc -name '*.dpkg-*' -path '*sluice*' 2>/dev/null)
[[ -z "$leftovers" ]] || fail "dpkg leftovers after purge: $leftovers"

say "PASS"
