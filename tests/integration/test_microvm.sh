#!/usr/bin/env bash
# Remote compiles in QEMU microVMs (TCG here: this host's /dev/kvm cannot
# run guests), end to end through a real worker: the guest kernel, the agent
# initramfs and the debootstrap toolchain image are built (or taken from the
# cache) by the guest/ scripts, the image is imported with `hpcc image
# import`, and then:
#   - the worker refuses TCG unless worker.ini allows it;
#   - `hpcc gcc -c` compiles in a microVM, byte-identical to plain gcc;
#   - the audit row's vm column names the VM and its accelerator;
#   - a second tenant runs the same action in its own VM, byte-identical;
#     tenant A's VM never serves tenant B, and A's second compile reuses A's
#     warm VM;
#   - the VMM runs as nobody, with -nic none, -nodefaults and -sandbox on;
#   - without usable cgroups, [microvm] cgroup = required refuses to start
#     and auto starts with one warning;
#   - the jail (docs/isolation.md): the QEMU VMM runs with NoNewPrivs and a
#     seccomp filter, in its own cgroup hpcc-<worker pid>/<vm> with the
#     memory and pids limits of worker.ini; the worker split by process: the
#     VMM spawner (root) keeps the four capabilities VMMs need and fds 0-3,
#     every thread of the worker runs as hpcc-worker with none, bounding
#     sets too, and its state dir is hpcc-worker's (an unsafe-local worker
#     without [worker] user stays root and keeps none);
#   - a VMM that makes a forbidden syscall (a stand-in that opens an AF_INET
#     socket, then the real QEMU through the same stand-in) is killed by
#     SIGSYS, the worker logs it, the build passes by local fallback, and
#     the same worker then boots a real VM for the next compile;
#   - killing the VMM mid-exec still gives a passing build;
#   - kill -9 of the worker takes the spawner and every VMM with it; a
#     normal exit leaves no VMM or spawner either;
#   - a fake guest that breaks the protocol in five ways is torn down and
#     the build passes through a local compile.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/remote_lib.sh"
trap 'stop_worker; cleanup' EXIT
REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE_ROOT=${HPCC_CACHE_ROOT:-/var/cache/hpcc-dev}

KERNEL=$("$REPO/guest/build-kernel.sh" 2>"$WORK/kernel.log" | tail -n 1)
# The agent goes into the guest alone, so it must be static; a sanitizer
# build links it dynamically (the host side is what that build checks), and
# then the normal build's agent is used.
AGENT="$(dirname "$HPCC")/hpcc-agent"
readelf -l "$AGENT" 2>/dev/null | grep -q INTERP && AGENT="$REPO/build/hpcc-agent"
INITRD=$("$REPO/guest/build-initramfs.sh" "$AGENT" 2>"$WORK/initrd.log" | tail -n 1)
OCI=$("$REPO/guest/build-toolchain-image.sh" 2>"$WORK/toolchain.log" | tail -n 1)
IMAGES="$CACHE_ROOT/guest/images"
if [ ! -f "$KERNEL" ] || [ ! -f "$INITRD" ] || [ ! -d "$OCI" ]; then
  not_ok "guest artefacts (kernel '$KERNEL', initrd '$INITRD', image '$OCI')"
  tail -n 5 "$WORK"/kernel.log "$WORK"/initrd.log "$WORK"/toolchain.log
  exit 1
fi
"$HPCC" image import --dir "$IMAGES" "$OCI" >"$WORK/import.out" 2>&1
IMAGE=$(grep -o 'sha256:[0-9a-f]\{64\}' "$WORK/import.out" | head -n 1)
check "the toolchain image is imported ($IMAGE)" test -f "$IMAGES/${IMAGE#sha256:}.sqsh"

# The VMM runs as nobody: it must be able to reach the worker's run dirs.
chmod 711 "$WORK"
W="$WORK/worker"
"$HPCC" worker init "$W" --id w1 --listen 127.0.0.1:0 --signing-key "$W.signing.pem" --microvm \
  --kernel "$KERNEL" --initrd "$INITRD" --image "$IMAGE" >"$W.init" 2>&1
check "worker init --microvm" grep -q '^kind = microvm' "$W/worker.ini"
check "worker init --microvm: [worker] user = hpcc-worker, key.pem is the user's" \
  eval 'grep -q "^user = hpcc-worker" "$W/worker.ini" && [ "$(command stat -c %U "$W/key.pem")" = hpcc-worker ]'
sed -i "s|^dir = state/images|dir = $IMAGES|; s|^idle_timeout = 300|idle_timeout = 600\nboot_timeout = 120|" \
  "$W/worker.ini"

# Without allow_tcg the worker must refuse to start on this host.
HPCC_LOG_FILE="$W/refused.log" "$HPCC" worker --config "$W/worker.ini" >"$W/refused.out" 2>&1
st=$?
if [ $st != 0 ] && grep -q allow_tcg "$W/refused.out" "$W/refused.log" 2>/dev/null; then
  ok "TCG is refused unless allow_tcg is set (exit $st)"
else
  not_ok "TCG refusal: exit $st, $(head -c 300 "$W/refused.out")"
fi
sed -i 's/^allow_tcg = false/allow_tcg = true/' "$W/worker.ini"

# A host without usable cgroups (a directory with no hierarchy stands in):
# cgroup = required refuses to start, auto warns in one line and runs.
mkdir -p "$WORK/nocgroup"
cp "$W/worker.ini" "$W/worker.ini.orig"
sed -i 's/^cgroup = auto/cgroup = required/' "$W/worker.ini"
HPCC_TEST_CGROUP_ROOT="$WORK/nocgroup" HPCC_LOG_FILE="$W/nocg.log" "$HPCC" worker --config "$W/worker.ini" \
  >"$W/nocg.out" 2>&1
st=$?
[ $st != 0 ] && grep -q 'cgroup = required, but no cgroup' "$W/nocg.out" "$W/nocg.log" 2>/dev/null &&
  ok "cgroup = required: the worker refuses to start without cgroups (exit $st)" ||
  not_ok "cgroup = required without cgroups: exit $st, $(head -c 300 "$W/nocg.out")"
sed -i 's/^cgroup = required/cgroup = auto/' "$W/worker.ini"
HPCC_TEST_CGROUP_ROOT="$WORK/nocgroup" start_worker "$W" &&
  [ "$(grep -c 'VMMs run without a cgroup' "$W/worker.log")" = 1 ] &&
  ok "cgroup = auto: the worker starts without cgroups, with one warning" ||
  not_ok "cgroup = auto without cgroups: $(grep -i cgroup "$W/worker.log" | head -c 300)"
stop_worker
mv "$W/worker.ini.orig" "$W/worker.ini"
# An unsafe-local worker started as root keeps no capability at all.
if start_worker "$WORK/ul"; then
  ul=$(awk '/^(CapEff|CapBnd|NoNewPrivs):/ {printf "%s ", $2}' "/proc/$WORKER_PID/status")
  [ "$ul" = "0000000000000000 0000000000000000 1 " ] &&
    ok "an unsafe-local worker keeps no capability (CapEff, CapBnd 0, NoNewPrivs)" ||
    not_ok "the unsafe-local worker's CapEff CapBnd NoNewPrivs: $ul"
else
  not_ok "unsafe-local worker start"
fi
stop_worker
check "the worker starts with allow_tcg = true" start_worker "$W"
issue "$W" alpha "$WORK/alpha.tok"
issue "$W" beta "$WORK/beta.tok"

P="$WORK/project"
mkdir -p "$P"
(cd "$P" && "$HPCC" init >/dev/null)
printf '#include <stdio.h>\nint main(void) { printf("%%d\\n", 6 * 7); return 0; }\n' >"$P/a.c"
printf 'int b(int x) { return x * 3; }\n' >"$P/b.c"
plain_obj() { # SRC OUT: plain gcc with the project's prefix map
  (cd "$P" && gcc -O2 -ffile-prefix-map="$P"=. -c "$1" -o "$2")
}
plain_obj a.c "$WORK/a.plain.o"
plain_obj b.c "$WORK/b.plain.o"
# The audit log's rows, sealed segments then current.tsv, without header and seal lines.
audit() { cat "$W"/state/audit/segment-*.tsv "$W/state/audit/current.tsv" 2>/dev/null | grep -v '^#'; }
col() { cut -f"$1"; }   # audit columns: 6 tenant, 8 vm, 12 cache

fresh_cache alpha1
use_remote alpha "$WORK/alpha.tok"
ms() { echo $(($(date +%s%N) / 1000000)); }
t0=$(ms)
(cd "$P" && "$HPCC" gcc -O2 -c a.c -o a.o) >"$WORK/a.out" 2>&1
check "compile in a microVM (cold VM: $(($(ms) - t0)) ms)" test -f "$P/a.o"
same "$P/a.o" "$WORK/a.plain.o" "the microVM object equals plain gcc's, byte for byte"
expect_stat remote.executed 1 "executed remotely"
row=$(audit | tail -n 1)
VM_A=$(echo "$row" | col 8)
if [[ "$VM_A" =~ ^vm-[0-9]{6}@qemu-tcg$ ]] && [ "$(echo "$row" | col 6)" = alpha ] &&
  [ "$(echo "$row" | col 12)" = store ]; then
  ok "audit row: tenant alpha, vm $VM_A, stored"
else
  not_ok "audit row: $row"
fi

qemu_pids() { pgrep -f -- "$W/state/vms/" || true; }
# A process that runs (a zombie, reparented to a reaper that has not
# waited yet, does not).
alive() { [ -e "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
pid=$(qemu_pids | head -n 1)
if [ -n "$pid" ]; then
  uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline")
  [ "$uid" -ge 1900000000 ] && ok "the VMM runs as its VM's own uid ($uid)" || not_ok "the VMM runs as uid '$uid'"
  if [[ "$cmdline" == *"-nic none"* && "$cmdline" == *"-nodefaults"* && "$cmdline" == *"-sandbox on"* &&
    "$cmdline" != *netdev* && "$cmdline" != *virtio-net* && "$cmdline" == *"-accel tcg"* ]]; then
    ok "the VMM's command line: -accel tcg, -nic none, -nodefaults, -sandbox on, no netdev"
  else
    not_ok "VMM command line: $cmdline"
  fi
  nnp=$(awk '/^NoNewPrivs:/ {print $2}' "/proc/$pid/status")
  sec=$(awk '/^Seccomp:/ {print $2}' "/proc/$pid/status")
  filters=$(awk '/^Seccomp_filters:/ {print $2}' "/proc/$pid/status")
  # Ours, then QEMU's own (-sandbox on) on top.
  [ "$nnp" = 1 ] && [ "$sec" = 2 ] && [ "${filters:-0}" -ge 2 ] &&
    ok "the VMM runs with NoNewPrivs and seccomp filters (ours and QEMU's: $filters)" ||
    not_ok "the VMM's NoNewPrivs '$nnp', Seccomp '$sec', filters '$filters'"
  mem_cg=$(awk -F: '$2 == "memory" {print $3}' "/proc/$pid/cgroup")
  pids_cg=$(awk -F: '$2 == "pids" {print $3}' "/proc/$pid/cgroup")
  if [[ "$mem_cg" == */hpcc-$WORKER_PID/vm-* && "$pids_cg" == */hpcc-$WORKER_PID/vm-* ]]; then
    ok "the VMM runs in its own cgroup (memory $mem_cg, pids $pids_cg)"
  else
    not_ok "the VMM's cgroups: $(tr '\n' ' ' <"/proc/$pid/cgroup")"
  fi
  limit=$(cat "/sys/fs/cgroup/memory$mem_cg/memory.limit_in_bytes" 2>/dev/null)
  pmax=$(cat "/sys/fs/cgroup/pids$pids_cg/pids.max" 2>/dev/null)
  # memory = 1G in worker.ini, plus 512 MiB for the VMM; pids 256.
  [ "$limit" = $(((1024 + 512) << 20)) ] && [ "$pmax" = 256 ] &&
    ok "the VMM's cgroup limits: memory $limit bytes, pids.max $pmax" ||
    not_ok "the VMM's cgroup limits: memory '$limit', pids.max '$pmax'"
  echo "# VMM after one compile: $(cat "/sys/fs/cgroup/pids$pids_cg/pids.current") tasks," \
    "peak memory $(($(cat "/sys/fs/cgroup/memory$mem_cg/memory.max_usage_in_bytes") >> 20)) MiB"
else
  not_ok "no VMM process found after the first compile"
fi
# Split by process: the VMM spawner (root) keeps CHOWN, KILL, SETGID, SETUID
# only and holds no fd but 0-3; the worker runs as hpcc-worker, every thread
# (gRPC, stores, the VM pool's, the main one) without any capability.
caps_of() { awk '/^(CapEff|CapBnd|NoNewPrivs):/ {printf "%s ", $2}' "$1"; }
WUID=$(id -u hpcc-worker)
SPAWNER=$(pgrep -P "$WORKER_PID" -x vmm-spawner | head -n 1)
sp_caps=$( [ -n "$SPAWNER" ] && caps_of "/proc/$SPAWNER/status")
sp_uid=$( [ -n "$SPAWNER" ] && awk '/^Uid:/ {print $2 $3 $4 $5}' "/proc/$SPAWNER/status")
sp_fds=$( [ -n "$SPAWNER" ] && ls "/proc/$SPAWNER/fd" | sort -n | tr '\n' ' ')
[ "$sp_caps" = "00000000000000e1 00000000000000e1 1 " ] && [ "$sp_uid" = 0000 ] && [ "$sp_fds" = "0 1 2 3 " ] &&
  ok "the VMM spawner (pid $SPAWNER) keeps CHOWN, KILL, SETGID, SETUID, NoNewPrivs, fds 0-3 only" ||
  not_ok "the VMM spawner: pid '$SPAWNER', caps '$sp_caps', uid '$sp_uid', fds '$sp_fds'"
bad= threads=0
for t in /proc/$WORKER_PID/task/*; do
  threads=$((threads + 1))
  c=$(caps_of "$t/status")
  u=$(awk '/^Uid:/ {print $2 " " $3 " " $4 " " $5}' "$t/status")
  g=$(awk '/^Groups:/ {print $2}' "$t/status")
  [ "$c" = "0000000000000000 0000000000000000 1 " ] && [ "$u" = "$WUID $WUID $WUID $WUID" ] && [ -z "$g" ] ||
    bad="$bad $(cat "$t/comm"):$c:$u:$g"
done
[ -z "$bad" ] && [ "$threads" -gt 3 ] &&
  ok "all $threads threads of the worker run as hpcc-worker ($WUID) with CapEff, CapBnd 0 and no groups" ||
  not_ok "worker threads with privileges:$bad ($threads threads)"
[ "$(command stat -c %U "$W/state")" = hpcc-worker ] && [ "$(command stat -c %U:%a "$W/state/vms")" = root:711 ] &&
  [ -z "$(find "$W/state" -path "$W/state/vms" -prune -o ! -user hpcc-worker -print)" ] &&
  ok "the state dir belongs to hpcc-worker (vms/ to root, the spawner's)" ||
  not_ok "state dir owners: $(find "$W/state" -maxdepth 2 -printf '%p %u\n' | head -n 8 | tr '\n' ' ')"

# Warm reuse: the same tenant's next compile runs in the same VM.
t0=$(ms)
(cd "$P" && "$HPCC" gcc -O2 -c b.c -o b.o) >"$WORK/b.out" 2>&1
same "$P/b.o" "$WORK/b.plain.o" "second compile (warm VM, $(($(ms) - t0)) ms) equals plain gcc's"
[ "$(audit | tail -n 1 | col 8)" = "$VM_A" ] && ok "tenant alpha's VM is reused warm" ||
  not_ok "alpha's second compile ran in $(audit | tail -n 1 | col 8), not $VM_A"

# hpcc reproduce: a.c's compile again, in alpha's VM, caches bypassed.
a_src=$(sha256sum <"$P/a.c" | cut -c1-16)
out=$(cd "$P" && "$HPCC" reproduce "$a_src" 2>&1); st=$?
[ $st = 0 ] && grep -q "^reproducible" <<<"$out" && grep -q "sha256:$(sha256sum <"$WORK/a.plain.o" | cut -d' ' -f1)" <<<"$out" &&
  ok "hpcc reproduce in the microVM: reproducible, plain gcc's digest" || not_ok "hpcc reproduce: $out"
row=$(audit | tail -n 1)
[ "$(echo "$row" | col 8)" = "$VM_A" ] && [ "$(echo "$row" | col 12)" = miss ] &&
  ok "the re-execution is its own row: alpha's VM $VM_A, nothing stored" || not_ok "reproduce's row: $row"

# Tenant beta: the same action again, in beta's own VM.
cp "$P/a.o" "$WORK/a.alpha.o"
rm -f "$P/a.o"
fresh_cache beta1
use_remote beta "$WORK/beta.tok"
(cd "$P" && "$HPCC" gcc -O2 -c a.c -o a.o) >"$WORK/a2.out" 2>&1
same "$P/a.o" "$WORK/a.alpha.o" "two execs of one action (two tenants, two VMs) give byte-identical objects"
row=$(audit | tail -n 1)
VM_B=$(echo "$row" | col 8)
if [ "$(echo "$row" | col 6)" = beta ] && [ -n "$VM_B" ] && [ "$VM_B" != "$VM_A" ]; then
  ok "tenant beta ran in its own VM ($VM_B, not $VM_A)"
else
  not_ok "beta's row: $row"
fi
uids=$(for p in $(qemu_pids); do awk '/^Uid:/ {print $2}' "/proc/$p/status"; done | sort -u | wc -l)
[ "$uids" = 2 ] && ok "alpha's and beta's VMMs run as two different uids" || not_ok "VMM uids: $uids distinct"
mixed=$(audit | awk -F'\t' '{ t[$8] = t[$8] " " $6 } END { for (v in t) { split(t[v], a, " "); for (i in a) if (a[i] != a[1]) print v } }')
[ -z "$mixed" ] && ok "no VM ever served two tenants" || not_ok "VMs that served two tenants: $mixed"

# Two compiles at once share beta's VM (two vCPUs, two slots).
printf 'int c1(int x) { return x - 1; }\n' >"$P/c1.c"
printf 'int c2(int x) { return x - 2; }\n' >"$P/c2.c"
plain_obj c1.c "$WORK/c1.plain.o"
plain_obj c2.c "$WORK/c2.plain.o"
(cd "$P" && "$HPCC" gcc -O2 -c c1.c -o c1.o) >"$WORK/c1.out" 2>&1 &
p1=$!
(cd "$P" && "$HPCC" gcc -O2 -c c2.c -o c2.o) >"$WORK/c2.out" 2>&1 &
p2=$!
wait $p1 $p2
same "$P/c1.o" "$WORK/c1.plain.o" "two compiles at once: the first equals plain gcc's"
same "$P/c2.o" "$WORK/c2.plain.o" "two compiles at once: the second equals plain gcc's"
both=$(audit | tail -n 2 | col 8 | sort -u)
[ "$both" = "$VM_B" ] && ok "both ran in beta's one VM" || not_ok "the two compiles ran in: $both"

# Kill the VMM in the middle of an exec: the build still passes.
{
  echo '#include <string.h>'
  for i in $(seq 60); do
    printf 'int f%d(const char *s, int n) { int h = %d; for (int i = 0; i < n; i++) h = h * 31 + s[i] * %d; return h ^ (int)strlen(s); }\n' "$i" "$i" "$i"
  done
} >"$P/heavy.c"
plain_obj heavy.c "$WORK/heavy.plain.o"
fresh_cache alpha2
use_remote alpha "$WORK/alpha.tok"
(cd "$P" && "$HPCC" gcc -O2 -c heavy.c -o heavy.o) >"$WORK/heavy.out" 2>&1 &
bpid=$!
killed=
for _ in $(seq 600); do
  if compgen -G "$W/state/staging/exec-*" >/dev/null; then
    sleep 0.3
    for p in $(qemu_pids); do kill -9 "$p" && killed=1; done
    break
  fi
  sleep 0.05
done
wait $bpid
st=$?
[ -n "$killed" ] && ok "killed the VMM mid-exec" || not_ok "could not catch an exec in flight"
[ $st = 0 ] && same "$P/heavy.o" "$WORK/heavy.plain.o" "the build passes after the VMM was killed mid-exec" ||
  not_ok "build after the VMM kill: exit $st"
expect_stat remote.executed 1 "the exec was retried on a fresh VM (no local fallback)"
grep -q 'retrying once\|VMM exited\|killed by signal\|tearing it down' "$W/worker.log" && ok "the worker noticed the dead VM" ||
  not_ok "no sign of the dead VM in the worker log"

# Killing the (unprivileged) worker takes the spawner and every VMM with it.
[ -n "$(qemu_pids)" ] && ok "VMs run before the worker is killed" || not_ok "no VM runs before the kill"
SPAWNER=$(pgrep -P "$WORKER_PID" -x vmm-spawner | head -n 1)
kill -9 "$WORKER_PID"
wait "$WORKER_PID" 2>/dev/null
WORKER_PID=
sleep 0.5
left=$(qemu_pids)
[ -n "$SPAWNER" ] && ! alive "$SPAWNER" && [ -z "$left" ] &&
  ok "kill -9 of the worker: the spawner and every VMM exit" ||
  not_ok "after kill -9 of the worker: spawner '$SPAWNER' $(alive "$SPAWNER" && echo alive), VMMs '$left'"

# A VMM that makes a forbidden syscall: killed by SIGSYS, the worker carries on.
PROBE="$(dirname "$HPCC")/tests/unit/jail_probe"
cp "$PROBE" "$WORK/jail_probe" && chmod 755 "$WORK/jail_probe"
echo socket-inet >"$WORK/jail_probe.mode"
chmod 644 "$WORK/jail_probe.mode"
cp "$W/worker.ini" "$W/worker.ini.qemu"
sed -i "s|^vmm = qemu|vmm = qemu\nbinary = $WORK/jail_probe|" "$W/worker.ini"
from=$(($(wc -l <"$W/worker.log") + 1))
start_worker "$W" || not_ok "worker start with the forbidden-syscall VMM"
first_worker=$WORKER_PID
fresh_cache forbidden1
use_remote alpha "$WORK/alpha.tok"
printf 'int forbidden(void) { return 99; }\n' >"$P/forbidden.c"
plain_obj forbidden.c "$WORK/forbidden.plain.o"
(cd "$P" && "$HPCC" gcc -O2 -c forbidden.c -o forbidden.o) >"$WORK/forbidden.out" 2>&1
st=$?
[ $st = 0 ] && cmp -s "$P/forbidden.o" "$WORK/forbidden.plain.o" && [ "$(stat remote.executed)" = 0 ] &&
  ok "a VMM killed by its seccomp filter: the build passes through a local compile" ||
  not_ok "forbidden-syscall VMM: exit $st, remote.executed $(stat remote.executed)"
tail -n +"$from" "$W/worker.log" | grep -q 'killed by its seccomp filter (SIGSYS' &&
  ok "the worker logs the VMM's seccomp kill" || not_ok "no seccomp kill in the worker log"
# The same worker, the same stand-in, which now execs the real QEMU.
echo exec >"$WORK/jail_probe.mode"
kill -0 "$first_worker" 2>/dev/null && ok "the worker is still up" || not_ok "the worker died"
fresh_cache forbidden2
use_remote alpha "$WORK/alpha.tok"
printf 'int after_forbidden(void) { return 98; }\n' >"$P/after.c"
plain_obj after.c "$WORK/after.plain.o"
(cd "$P" && "$HPCC" gcc -O2 -c after.c -o after.o) >"$WORK/after.out" 2>&1
st=$?
[ $st = 0 ] && cmp -s "$P/after.o" "$WORK/after.plain.o" && [ "$(stat remote.executed)" = 1 ] &&
  [ "$WORKER_PID" = "$first_worker" ] &&
  ok "the same worker then runs the next compile in a fresh VM (QEMU under the same filter)" ||
  not_ok "after the seccomp kill: exit $st, remote.executed $(stat remote.executed)"
first_spawner=$(pgrep -P "$WORKER_PID" -x vmm-spawner | head -n 1)
stop_worker
sleep 0.5
[ -z "$(qemu_pids)" ] && [ -n "$first_spawner" ] && ! alive "$first_spawner" &&
  ok "the worker's exit leaves no VMM and no spawner" || not_ok "left after the stop: VMMs '$(qemu_pids)'"
mv "$W/worker.ini.qemu" "$W/worker.ini"
# Its VM groups go; its own group too where the parent is writable without
# CAP_DAC_OVERRIDE (a hierarchy's 0555 root is not: the next worker sweeps it).
left=$(find /sys/fs/cgroup/memory /sys/fs/cgroup/pids -maxdepth 5 -type d -path "*/hpcc-$first_worker/*" 2>/dev/null)
[ -z "$left" ] && ok "the worker's exit removes its VMs' cgroups" || not_ok "cgroups left: $left"

# A fake guest that breaks the protocol: torn down, the build passes.
gcc -O2 -o "$WORK/fake_guest" "$(dirname "$0")/fake_guest.c" || not_ok "building fake_guest"
sed -i "s|^vmm = qemu|vmm = qemu\nbinary = $WORK/fake_guest|" "$W/worker.ini"
declare -A why=([garbage]="non-zero flag byte" [oversize]="length over the cap" [unknown-exec]="not waiting"
  [hello-twice]="a second hello" [network]="reports a network interface")
for mode in garbage oversize unknown-exec hello-twice network; do
  echo "$mode" >"$WORK/fake_guest.mode"
  from=$(($(wc -l <"$W/worker.log") + 1))
  start_worker "$W" || { not_ok "worker start for fake guest $mode"; continue; }
  fresh_cache "fake-$mode"
  use_remote alpha "$WORK/alpha.tok"
  printf 'int fake_%s(void) { return %d; }\n' "${mode//-/_}" "${#mode}" >"$P/fake.c"
  rm -f "$P/fake.o"
  (cd "$P" && "$HPCC" gcc -O2 -c fake.c -o fake.o) >"$WORK/fake.out" 2>&1
  st=$?
  plain_obj fake.c "$WORK/fake.plain.o"
  if [ $st = 0 ] && cmp -s "$P/fake.o" "$WORK/fake.plain.o" && [ "$(stat remote.executed)" = 0 ]; then
    ok "fake guest '$mode': the build passes through a local compile"
  else
    not_ok "fake guest '$mode': exit $st, remote.executed $(stat remote.executed)"
  fi
  tail -n +"$from" "$W/worker.log" | grep -q "${why[$mode]}" && ok "fake guest '$mode': refused (${why[$mode]})" ||
    not_ok "fake guest '$mode': the worker log does not say '${why[$mode]}'"
  sleep 1.5
  [ -z "$(pgrep -f "$WORK/fake_guest" || true)" ] && ok "fake guest '$mode': the VM is torn down" ||
    not_ok "fake guest '$mode': still running"
  stop_worker
done
exit 0
