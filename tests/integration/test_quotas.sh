#!/usr/bin/env bash
# Per-tenant quotas end to end ([limits] in docs/worker.md), with a real
# worker on loopback (runtime unsafe-local) and the real daemon: a tenant
# over its upload quota, its compiles-at-once cap or its CAS cap gets
# RESOURCE_EXHAUSTED with a message naming the limit; its build still
# passes, locally, with objects byte-identical to plain gcc, counted as
# fallback.remote-quota; another tenant is unaffected; and once the window
# (or [audit] retain, for the CAS) has passed, remote compiles work again.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/remote_lib.sh"
trap 'stop_worker; cleanup' EXIT

W="$WORK/worker"
mkdir -p "$W"
check "worker starts" start_worker "$W"
stop_worker
cat >>"$W/worker.ini" <<'EOF'

[limits]
tenant = up upload_quota=8K upload_window=20s
tenant = ex max_execs_per_tenant=1
tenant = cap cas_quota=20K

[audit]
retain = 8s
EOF
check "worker restarts with [limits] tenant lines" start_worker "$W"
for t in up ex cap free; do issue "$W" "$t" "$WORK/$t.tok"; done

# A bad [limits] line is one error naming the key; the worker does not start.
sed 's/^tenant = ex .*/tenant = ex max_execs_per_tenant=lots/' "$W/worker.ini" >"$W/bad.ini"
out=$(timeout 20 "$HPCC" worker --config "$W/bad.ini" --port-file "$WORK/bad.port" 2>&1)
check "a bad tenant line: one error naming the key ($out)" \
  eval '[ -n "$out" ] && [ "$(printf "%s\n" "$out" | wc -l)" = 1 ] && printf "%s" "$out" | grep -q "max_execs_per_tenant .lots."'

# Sources, all written now (a file changed within a second of its compile
# is not cached). Comments of random base64 make sources that zstd cannot
# shrink much; the slow ones take gcc a second or more.
P="$(new_project p)"
big_source() { # FILE FUNCTION BYTES
  { echo '/*'; head -c "$3" /dev/urandom | base64 -w 76; echo '*/'; echo "int $2(void) { return 7; }"; } >"$1"
}
for i in 1 2; do big_source "$P/u$i.c" "u$i" 3700; done
for i in 1 2 3 4 5; do big_source "$P/c$i.c" "c$i" 4500; done
for i in 1 2 3 4; do
  printf '#define A(x) x x x x\n#define B(x) A(A(x))\n#define C(x) B(B(x))\nint e%d(volatile int *p) { B(C(*p += %d; *p ^= 3;)) return *p; }\n' \
    "$i" "$i" >"$P/e$i.c"
done
touch -d '10 seconds ago' "$P"/*.c
for f in "$P"/*.c; do
  b=$(basename "$f" .c)
  (cd "$P" && gcc -O1 -ffile-prefix-map="$P"=. -c "$b.c" -o "plain-$b.o")
done
compile() { (cd "$P" && "$HPCC" gcc -O1 -c "$1.c" -o "$1.o"); }
same_plain() { # NAME...
  local n
  for n in "$@"; do cmp -s "$P/$n.o" "$P/plain-$n.o" || return 1; done
}
quota_log() { grep -c "refused: tenant $1: $2 quota" "$W/worker.log"; }

# ---- upload quota: 8 KiB per 20 s (long enough for two compiles on a loaded machine) --
fresh_cache up1
use_remote up "$WORK/up.tok"
first=$(date +%s)
check "tenant up: u1.c builds" compile u1
expect_stat remote.executed 1 "tenant up: u1.c (5 KiB) compiled on the worker"
check "tenant up: u2.c builds although over the upload quota" compile u2
expect_stat fallback.remote-quota 1 "tenant up: u2.c refused (upload quota) and counted as fallback.remote-quota"
expect_stat remote.executed 1 "tenant up: u2.c not compiled remotely"
expect_stat fallback.remote-refused 0 "tenant up: not counted as any other refusal"
check "tenant up: objects == plain gcc" same_plain u1 u2
check "the daemon's log has the worker's words: limit, tenant, figure, retry" \
  grep -q "tenant up: upload quota 8 KiB per 20 s reached; retry in [0-9]* s" "$HPCC_LOG_FILE"
check "the worker logged the refusal" [ "$(quota_log up upload)" -ge 1 ]

fresh_cache free1
use_remote free "$WORK/free.tok"
check "tenant free: u2.c builds" compile u2
expect_stat remote.executed 1 "tenant free: unaffected, u2.c compiled on the worker"
expect_stat fallback.remote-quota 0 "tenant free: no quota refusal"

while [ "$(date +%s)" -lt $((first + 21)) ]; do sleep 0.5; done
fresh_cache up2
use_remote up "$WORK/up.tok"
check "tenant up, after the window: u2.c builds" compile u2
expect_stat remote.executed 1 "tenant up, after the window: u2.c compiled on the worker"
expect_stat fallback.remote-quota 0 "tenant up, after the window: no refusal"
check "tenant up, after the window: u2.o == plain gcc" same_plain u2

# ---- compiles at once: 1 for tenant ex -----------------------------------------
parallel_build() {
  local i pids=()
  for i in 1 2 3 4; do compile "e$i" & pids+=($!); done
  local rc=0
  for i in "${pids[@]}"; do wait "$i" || rc=1; done
  return $rc
}
fresh_cache ex1
use_remote ex "$WORK/ex.tok"
"$HPCC" daemon start >/dev/null 2>&1
check "tenant ex: four slow compiles at once build" parallel_build
executed=$(stat remote.executed); refusedq=$(stat fallback.remote-quota)
echo "# quotas: tenant ex, 4 compiles at once with a cap of 1: ${executed:-0} executed remotely, ${refusedq:-0} refused"
check "tenant ex: some compiled remotely (${executed:-0}), some refused by the cap (${refusedq:-0})" \
  eval '[ "${executed:-0}" -ge 1 ] && [ "${refusedq:-0}" -ge 1 ]'
check "tenant ex: executed + refused = 4" [ $((${executed:-0} + ${refusedq:-0})) = 4 ]
check "tenant ex: objects == plain gcc" same_plain e1 e2 e3 e4
check "the worker logged an exec quota refusal" [ "$(quota_log ex exec)" -ge 1 ]
rm -f "$P"/e?.o
fresh_cache free2
use_remote free "$WORK/free.tok"
"$HPCC" daemon start >/dev/null 2>&1
check "tenant free: four slow compiles at once build" parallel_build
expect_stat remote.executed 4 "tenant free: all four compiled on the worker"
expect_stat fallback.remote-quota 0 "tenant free: no refusal"
check "tenant free: objects == plain gcc" same_plain e1 e2 e3 e4

# ---- CAS cap: 20 KiB for tenant cap, everything kept for [audit] retain (8 s) ----
store_bytes() { find "$W/state/tenants/$1/store" -type f -name '*.?' -printf '%s\n' 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'; }
fresh_cache cap1
use_remote cap "$WORK/cap.tok"
ok_all=true
for i in 1 2 3 4 5; do compile "c$i" || ok_all=false; done
cap_end=$(date +%s)
check "tenant cap: five sources build" $ok_all
executed=$(stat remote.executed); refusedq=$(stat fallback.remote-quota)
echo "# quotas: tenant cap, 5 sources of ~6 KiB against a 20 KiB CAS cap: ${executed:-0} executed remotely, ${refusedq:-0} refused; store $(store_bytes cap) bytes"
check "tenant cap: the first compiled remotely, later ones refused (${executed:-0} executed, ${refusedq:-0} refused)" \
  eval '[ "${executed:-0}" -ge 1 ] && [ "${refusedq:-0}" -ge 1 ]'
check "tenant cap: objects == plain gcc" same_plain c1 c2 c3 c4 c5
check "tenant cap: its store stays under the cap ($(store_bytes cap) bytes <= 20480)" [ "$(store_bytes cap)" -le 20480 ]
check "the worker logged a CAS quota refusal" [ "$(quota_log cap CAS)" -ge 1 ]
check "the daemon's log names the CAS quota" grep -q "tenant cap: CAS quota 20 KiB reached" "$HPCC_LOG_FILE"
fresh_cache free3
use_remote free "$WORK/free.tok"
check "tenant free: c5.c builds" compile c5
expect_stat remote.executed 1 "tenant free: unaffected by cap's CAS quota"

# Once [audit] retain has passed for every entry, eviction makes room: remote again.
while [ "$(date +%s)" -lt $((cap_end + 10)) ]; do sleep 0.5; done
fresh_cache cap2
use_remote cap "$WORK/cap.tok"
check "tenant cap, after retain: c5.c builds" compile c5
expect_stat remote.executed 1 "tenant cap, after retain: older entries evicted, c5.c compiled on the worker"
expect_stat fallback.remote-quota 0 "tenant cap, after retain: no refusal"
check "tenant cap, after retain: store still under the cap ($(store_bytes cap) bytes)" [ "$(store_bytes cap)" -le 20480 ]
check "tenant cap, after retain: c5.o == plain gcc" same_plain c5

"$HPCC" daemon stop >/dev/null 2>&1
stop_worker
check "the worker's last words count the refusals per limit" \
  grep -q "quota refusals: upload [1-9][0-9]*, execs [1-9][0-9]*, vms 0, cas [1-9][0-9]*" "$W/worker.log"
[ "$T_FAILS" = 0 ]
