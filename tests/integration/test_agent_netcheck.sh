#!/usr/bin/env bash
# The agent's network check (DESIGN §6), run on the host in network
# namespaces with `hpcc-agent --check-network`: a namespace holding only lo
# passes (exit 0); one holding the end of a veth pair is refused (exit 1)
# with the interface named; a sysfs that lists an interface, or one that
# hides the namespace's interface from the kernel's own list, is refused
# too; a missing sysfs is an error (exit 2). Needs root (ip netns).
. "$(dirname "$0")/lib.sh"

AGENT=$(dirname "$HPCC")/hpcc-agent
skip() { echo "ok - $TEST_NAME: $* # SKIP"; }

if [ "$(id -u)" -ne 0 ]; then
  skip "network check in namespaces (needs root)"
  exit 0
fi
if ! command -v ip >/dev/null; then
  skip "network check in namespaces (no ip command; apt-get install iproute2)"
  exit 0
fi
if [ ! -x "$AGENT" ]; then
  not_ok "no agent at $AGENT"
  exit 1
fi

# Names unique to this run; interface names stay within 15 bytes.
ns_lo=hpcc-nc-lo-$$
ns_veth=hpcc-nc-veth-$$
veth_host=hncA$$
veth_guest=hncB$$
netcheck_cleanup() {
  ip netns del "$ns_lo" 2>/dev/null
  ip netns del "$ns_veth" 2>/dev/null
  ip link del "$veth_host" 2>/dev/null
  cleanup
}
trap netcheck_cleanup EXIT

# run NS ARGS...: the agent's verdict line in $out, its status in $rc.
run() {
  local ns=$1; shift
  out=$(ip netns exec "$ns" "$AGENT" --check-network "$@" 2>&1)
  rc=$?
}

if ! ip netns add "$ns_lo" || ! ip netns add "$ns_veth" ||
   ! ip link add "$veth_host" type veth peer name "$veth_guest" netns "$ns_veth"; then
  not_ok "cannot create the namespaces and the veth pair"
  exit 1
fi

run "$ns_lo"
if [ "$rc" = 0 ] && [ "$out" = "network ok: only lo" ]; then
  ok "a namespace with only lo passes (exit 0: $out)"
else
  not_ok "only lo: expected exit 0 and 'network ok: only lo', got $rc: $out"
fi

run "$ns_veth"
if [ "$rc" = 1 ] && [[ "$out" == *"$veth_guest"* ]] && [[ "$out" == "network refused: "* ]]; then
  ok "a namespace with a veth end is refused, naming it (exit 1: $out)"
else
  not_ok "veth: expected exit 1 naming $veth_guest, got $rc: $out"
fi
if [[ "$out" == *"$veth_host"* ]]; then
  not_ok "veth: the host's end of the pair leaked into the namespace's verdict: $out"
fi

# A sysfs listing an interface besides lo is enough to refuse.
fake="$WORK/sysfs-eth"
mkdir -p "$fake/class/net/lo" "$fake/class/net/eth9"
run "$ns_lo" --sysfs "$fake"
if [ "$rc" = 1 ] && [[ "$out" == *eth9* ]]; then
  ok "an interface in sysfs is refused (exit 1: $out)"
else
  not_ok "sysfs with eth9: expected exit 1 naming eth9, got $rc: $out"
fi

# A sysfs that hides the interface: the kernel's own list still has it.
fake="$WORK/sysfs-lo"
mkdir -p "$fake/class/net/lo"
run "$ns_veth" --sysfs "$fake"
if [ "$rc" = 1 ] && [[ "$out" == *"$veth_guest"* ]]; then
  ok "an interface hidden from sysfs is still refused (exit 1: $out)"
else
  not_ok "sysfs without the veth: expected exit 1 naming $veth_guest, got $rc: $out"
fi

# No sysfs at all: an error, not a pass.
run "$ns_lo" --sysfs "$WORK/no-such-sysfs"
if [ "$rc" = 2 ] && [[ "$out" == "network check failed: "* ]]; then
  ok "a missing sysfs is an error (exit 2: $out)"
else
  not_ok "missing sysfs: expected exit 2, got $rc: $out"
fi

# Cleanup leaves nothing behind. Deleting a namespace destroys its end of
# the pair, and with it the host's end, but asynchronously: poll for it.
gone_all() {
  ! ip netns list | grep -qE "^($ns_lo|$ns_veth)( |$)" && ! ip link show "$veth_host" >/dev/null 2>&1
}
wait_gone() {
  local n=50
  while ((n-- > 0)); do gone_all && return 0; sleep 0.1; done
  return 1
}
ip netns del "$ns_lo"
ip netns del "$ns_veth"
check "namespaces and veth pair removed" wait_gone
