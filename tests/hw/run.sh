#!/usr/bin/env bash
# Replays Sluice's rte_flow rules (offload/rte_flow/testdata/*.txt, the golden testpmd form of
# every packet walk) on a real SR-IOV NIC whose e-switch is in switchdev mode, and checks the
# NIC creates every rule. Not part of ctest: it needs hardware and root. Without a capable
# NIC it prints "SKIP: no capable NIC ..." and exits 0.
#
# Usage:  tests/hw/run.sh [--setup]          (root)
#   SLUICE_HW_PCI=0000:3b:00.0    the PF's PCI address (default: first switchdev PF found)
#   SLUICE_HW_PF=ens1f0np0        the PF's netdev (only for --setup)
#   SLUICE_HW_VFS=2               VFs to create (--setup)
#
# Steps on a real NIC (what --setup does, mlx5 ConnectX-5/6/7 or BlueField; ice E810 works
# the same way but its ports must be bound to vfio-pci with dpdk-devbind.py):
#   1. Hugepages:  dpdk-hugepages.py --setup 2G
#   2. VFs:        echo 2 > /sys/class/net/$PF/device/sriov_numvfs
#   3. switchdev:  unbind the VFs from their driver (mlx5_core), then
#                  devlink dev eswitch set pci/$PCI mode switchdev
#                  devlink dev eswitch show pci/$PCI        → "mode switchdev"
#                  and rebind the VFs; one representor netdev per VF appears.
#   4. Replay:     dpdk-testpmd -a $PCI,representor=vf[0-1] -- -i
#                  ports: 0 = PF (uplink, also the transfer proxy), 1 = vf0 rep, 2 = vf1 rep
#                  (the golden files use 0 as uplink and 2 as the VM's representor); then
#                  `load offload/rte_flow/testdata/agent_inbound_ipip.txt` etc. and
#                  `flow list 0` shows the rules. This script does step 4 for every file.
#   5. In production the agent (sluice-agent, NIC executor = rte_flow) creates the same
#      rules itself; `sluicectl get nic-rules --testpmd` prints what it installed.
#   6. COUNT and the close rules (what the fake NIC in the unit tests stands in for; by hand,
#      after `load .../close_to_software.txt` and `load .../snat.txt`, `start`, and traffic
#      through the VF and the uplink):
#      - `flow query 0 <rule#> count` must show hits/bytes growing for the per-flow rules of
#        a busy flow: sluice-agent reads the same counters (rte_flow_query, ~1/s) into
#        `sluicectl get flows` (NIC_PKTS/NIC_BYTES) and `nic.nic_packets`; a PMD that cannot
#        query a counter shows in `nic.count_query_errors_by_reason`.
#      - a TCP FIN or RST of an offloaded connection must match the close rule (priority 5,
#        `tcp flags spec 0x1 flags mask 0x1`), not the flow's own rule: its `flow query`
#        count grows, and with the agent running the packet reaches it (port_representor of
#        the ethdev it came in on), `nic.closes_to_software` grows and the flow's rules leave
#        `flow list 0` (`sluicectl get nic-rules --testpmd`) at the close, not at its AGE.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TESTDATA="$REPO/offload/rte_flow/testdata"
setup=0
if [[ "${1:-}" == "--setup" ]]; then setup=1; fi

switchdev_pcis() {
  command -v devlink > /dev/null || return 0
  { devlink dev eswitch show 2> /dev/null || true; } |
    awk '/mode switchdev/ {sub("^pci/", "", $1); sub(":$", "", $1); print $1}'
}

vfio_pcis() {
  [[ -d /sys/bus/pci/drivers/vfio-pci ]] || return 0
  find /sys/bus/pci/drivers/vfio-pci -maxdepth 1 -name '0000:*' -printf '%f\n' || true
}

if ((setup)); then
  : "${SLUICE_HW_PF:?--setup needs SLUICE_HW_PF (the PF netdev)}"
  pci=$(basename "$(readlink -f "/sys/class/net/$SLUICE_HW_PF/device")")
  dpdk-hugepages.py --setup 2G
  echo "${SLUICE_HW_VFS:-2}" > "/sys/class/net/$SLUICE_HW_PF/device/sriov_numvfs"
  for vf in /sys/class/net/"$SLUICE_HW_PF"/device/virtfn*; do
    vf_pci=$(basename "$(readlink -f "$vf")")
    driver=$(basename "$(readlink -f "/sys/bus/pci/devices/$vf_pci/driver")" 2> /dev/null || true)
    [[ -n "$driver" ]] && echo "$vf_pci" > "/sys/bus/pci/drivers/$driver/unbind"
  done
  devlink dev eswitch set "pci/$pci" mode switchdev
  for vf in /sys/class/net/"$SLUICE_HW_PF"/device/virtfn*; do
    basename "$(readlink -f "$vf")" > /sys/bus/pci/drivers_probe || true
  done
  devlink dev eswitch show "pci/$pci"
fi

pci=${SLUICE_HW_PCI:-$(switchdev_pcis | head -n 1)}
if [[ -z "$pci" ]]; then
  vfio=$(vfio_pcis | head -n 1)
  if [[ -z "$vfio" ]]; then
    echo "SKIP: no capable NIC (no e-switch in switchdev mode in 'devlink dev eswitch show'," \
      "no device bound to vfio-pci); see the steps at the top of $0"
    exit 0
  fi
  echo "SKIP: no capable NIC: $vfio is bound to vfio-pci but no e-switch is in switchdev" \
    "mode; set SLUICE_HW_PCI to force a run"
  exit 0
fi
testpmd=$(command -v dpdk-testpmd || true)
if [[ -z "$testpmd" ]]; then
  echo "FAIL: dpdk-testpmd not found (Debian package dpdk-dev)"
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
passed=0
for file in "$TESTDATA"/*.txt; do
  name=$(basename "$file" .txt)
  expected=$(grep -c '^flow create' "$file" || true)
  { cat "$file"; echo "flow flush 0"; echo quit; } > "$work/commands"
  timeout 120 "$testpmd" -l 0,1 -a "$pci,representor=vf[0-1]" --file-prefix "sluice-hw-$$" \
    -- -i < "$work/commands" > "$work/$name.out" 2>&1 || true
  created=$(grep -c -E 'Flow rule #[0-9]+ created' "$work/$name.out" || true)
  if [[ "$created" == "$expected" ]]; then
    echo "ok   $name: $created/$expected rules created"
    passed=$((passed + 1))
  else
    echo "FAIL $name: $created/$expected rules created; the NIC said:"
    grep -E 'Bad arguments|port_flow_complain|Caught' "$work/$name.out" | sed 's/^/       /' || true
    failed=$((failed + 1))
  fi
done
echo "$passed passed, $failed failed"
((failed == 0))
