#!/usr/bin/env bash
# Installs the Debian 12 packages that building, testing and the lab need.
# Idempotent and non-interactive; silent when everything is already installed.
# Runs apt-get update only when something is missing. Needs root to install.
set -euo pipefail

PACKAGES=(
  # build
  cmake ninja-build g++ pkg-config ccache
  libdpdk-dev libyaml-cpp-dev libabsl-dev libgtest-dev libgmock-dev nlohmann-json3-dev
  libssl-dev
  # control plane (gRPC), libvirt domain XML, fuzzing
  protobuf-compiler protobuf-compiler-grpc libgrpc++-dev libprotobuf-dev libxml2-dev clang
  libclang-rt-dev
  # metrics: Prometheus text exposition over HTTP
  prometheus-cpp-dev
  # vswitch backend: Open vSwitch with DPDK (userspace datapath)
  openvswitch-switch openvswitch-switch-dpdk
  # packaging and its test (systemd-analyze verify)
  debhelper dpkg-dev fakeroot systemd
  # run: DPDK tools, the namespace lab, the demo and the end-to-end tests
  dpdk dpdk-dev iproute2 ethtool curl python3 procps kmod gobgpd bird2
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$pkg")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $EUID -ne 0 ]]; then
  echo "ensure-deps: missing packages: ${missing[*]}" >&2
  echo "ensure-deps: run as root (or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi

echo "ensure-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
