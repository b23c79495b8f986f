#!/usr/bin/env bash
# bench/audit.sh — what the audit trail costs (issue 7's target: at most 2 %
# of throughput), on zlib's libz.a (Debian's source; 15 compiles), one
# worker on loopback (TLS, runtime unsafe-local), audit on vs off
# ([audit] enabled = false, which exists for this measurement only),
# alternating reps in one run:
#   misses: a fresh tenant per rep, so every compile runs on the worker and
#           each answer is an Execute row (fdatasync'ed before the reply);
#   hits:   HIT_BUILDS (5) builds, each from a fresh client cache on the same
#           tenant, so every compile is one Probe answered from the worker's
#           action cache (a row each too); their times are summed.
# Throughput is compiles per second of `make -jJOBS libz.a`; the report gives
# the medians and off/on - 1 as the cost.
# Knobs: HPCC (build/hpcc; hpccd beside it), REPS (5), JOBS (2), HIT_BUILDS (5),
# RESULTS (bench/results/audit.txt).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
REPS=${REPS:-5}
JOBS=${JOBS:-2}
HIT_BUILDS=${HIT_BUILDS:-5}
RESULTS=${RESULTS:-$REPO/bench/results/audit.txt}
[[ $REPS =~ ^[1-9][0-9]*$ && $HIT_BUILDS =~ ^[1-9][0-9]*$ ]] || die "REPS and HIT_BUILDS must be positive integers"
bench_clean_env 'HPCC_|CCACHE_'

W=$(mktemp -d /tmp/hpcc-bench-audit.XXXXXX)
export HPCC_CONFIG=$W/hpcc.ini
: >"$HPCC_CONFIG"
WPID=
cleanup() {
  for d in "$W"/cache-*; do [ -d "$d" ] && HPCC_DIR=$d "$HPCC" daemon stop >/dev/null 2>&1 || true; done
  [ -z "$WPID" ] || kill "$WPID" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] && echo "bench: kept $W" >&2 || rm -rf "$W"
}
trap cleanup EXIT
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

P=$("$REPO/scripts/fetch-project.sh" zlib "$W/zlib") || die "fetching zlib failed"
(cd "$P" && CC=gcc ./configure --static >/dev/null) || die "zlib's configure failed"
(cd "$P" && "$HPCC" init >/dev/null)
N=$(make -C "$P" -n -B libz.a CC=gcc | grep -c -- ' -c ' || true)
ZV=$(sed -n 's/^#define ZLIB_VERSION "\(.*\)"/\1/p' "$P/zlib.h")
say "zlib $ZV, make -j$JOBS libz.a: $N compiles"
build() { # LOG → wall seconds of make clean (untimed) + make -j libz.a through hpcc
  local TIMEFORMAT='%R'
  make -C "$P" -s clean >/dev/null 2>&1 || die "make clean failed"
  { time make -C "$P" -j"$JOBS" libz.a CC="$HPCC gcc" >"$1" 2>&1 || { tail -n 15 "$1" >&2; die "build failed"; }; } 2>&1
}
hstat() { "$HPCC" stats --json | sed -n "s/^  \"$1\": \\([0-9]*\\).*/\\1/p"; }

"$HPCC" worker init "$W/worker" --id bench --listen 127.0.0.1:0 --allow-unsafe-local \
  --signing-key "$W/signing.pem" >"$W/worker.init"
printf '\n[audit]\nenabled = true\n' >>"$W/worker/worker.ini"
WPORT=
start_worker() { # on|off, on the same port every time
  sed -i "s/^enabled = .*/enabled = $([ "$1" = on ] && echo true || echo false)/" "$W/worker/worker.ini"
  rm -f "$W/worker/port"
  [ -z "$WPORT" ] || sed -i "s/^listen = .*/listen = 127.0.0.1:$WPORT/" "$W/worker/worker.ini"
  HPCC_LOG_FILE="$W/worker.log" HPCC_LOG_LEVEL=info "$HPCC" worker --config "$W/worker/worker.ini" \
    --port-file "$W/worker/port" >>"$W/worker.out" 2>&1 &
  WPID=$!
  for _ in $(seq 200); do [ -s "$W/worker/port" ] && break; sleep 0.05; done
  [ -s "$W/worker/port" ] || die "the worker did not start: $(tail -n5 "$W/worker.out" "$W/worker.log" 2>/dev/null)"
  WPORT=$(cat "$W/worker/port")
}
stop_worker() { kill "$WPID"; wait "$WPID" 2>/dev/null || true; WPID=; }
# The worker's own measure at exit: "ROWS US_PER_ROW SYNCS" of its audit log.
audit_line() { sed -n 's/.*audit log: \([0-9]*\) rows, \([0-9]*\) fdatasyncs, \([0-9]*\) us per row.*/\1 \3 \2/p' "$W/worker.log" | tail -n 1; }
IMAGE=$("$HPCCD" worker host-image)
PIN=$(sed -n 's/^certificate pin *//p' "$W/worker.init")
rows() { cat "$W/worker/state/audit/"*.tsv 2>/dev/null | grep -vc '^#' || true; }

# One rep: a fresh tenant's build (misses), then fresh caches of the same
# tenant (hits), the worker restarted in between so that its exit line
# measures each phase's rows. Prints "miss_seconds hit_seconds"; with the
# audit on, appends "rows us_per_row syncs" of each phase to
# $W/rows-miss.txt and $W/rows-hit.txt.
rep() { # MODE REP
  local mode=$1 i=$2 tenant="t$1$2" r0 ms hs
  start_worker "$mode"
  "$HPCC" token issue --key "$W/signing.pem" --tenant "$tenant" --image "$IMAGE" --worker bench \
    --out "$W/$tenant.tok" >/dev/null
  export HPCC_REMOTE_WORKER=127.0.0.1:$WPORT HPCC_REMOTE_TENANT=$tenant HPCC_REMOTE_IMAGE=$IMAGE \
    HPCC_REMOTE_TOKEN_FILE=$W/$tenant.tok HPCC_REMOTE_PIN=$PIN
  r0=$(rows)
  export HPCC_DIR=$W/cache-$tenant-miss
  "$HPCC" daemon start >/dev/null; sleep 0.3
  ms=$(build "$W/miss.log")
  [ "$(hstat remote.executed)" = "$N" ] || die "$mode rep $i: $(hstat remote.executed) of $N compiles ran on the worker"
  "$HPCC" daemon stop >/dev/null
  stop_worker
  [ "$mode" = on ] && audit_line >>"$W/rows-miss.txt"
  start_worker "$mode"
  export HPCC_REMOTE_WORKER=127.0.0.1:$WPORT
  hs=0
  for h in $(seq "$HIT_BUILDS"); do
    export HPCC_DIR=$W/cache-$tenant-hit$h
    "$HPCC" daemon start >/dev/null; sleep 0.3
    local t; t=$(build "$W/hit.log")
    [ "$(hstat remote.hit)" = "$N" ] || die "$mode rep $i: $(hstat remote.hit) of $N compiles were remote hits"
    "$HPCC" daemon stop >/dev/null
    hs=$(awk -v a="$hs" -v b="$t" 'BEGIN { printf "%.3f", a + b }')
  done
  stop_worker
  [ "$mode" = on ] && audit_line >>"$W/rows-hit.txt"
  local want=$(((1 + HIT_BUILDS) * N)) got=$(( $(rows) - r0 ))
  [ "$mode" = off ] && want=0
  [ "$got" = "$want" ] || die "$mode rep $i: $got audit rows, expected $want"
  echo "$ms $hs"
}

say "warm-up rep (not counted)"
rep on 0 >/dev/null
: >"$W/on.txt"; : >"$W/off.txt"; : >"$W/rows-miss.txt"; : >"$W/rows-hit.txt"
for i in $(seq "$REPS"); do
  for mode in on off; do
    read -r ms hs < <(rep "$mode" "$i")
    say "rep $i audit $mode: misses ${ms}s, hits ${hs}s"
    echo "$ms $hs" >>"$W/$mode.txt"
  done
done
"$HPCC" audit verify "$W/worker/state/audit" >"$W/verify.txt" || die "the audit log does not verify: $(cat "$W/verify.txt")"
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

med() { awk -v c="$2" '{ print $c }' "$W/$1.txt" | median; }
ON_MISS=$(med on 1) OFF_MISS=$(med off 1) ON_HIT=$(med on 2) OFF_HIT=$(med off 2)
tput() { awk -v n="$N" -v s="$1" -v k="${2:-1}" 'BEGIN { printf "%.1f", n * k / s }'; }
cost() { awk -v on="$1" -v off="$2" 'BEGIN { printf "%+.1f%%", (on / off - 1) * 100 }'; }
# The worker's measure: mean microseconds an answer waited for its row
# (write and fdatasync), rows per sync, and that wait as a share of the
# time each compile held a make slot (build seconds x JOBS / compiles).
US_MISS=$(awk '{ r += $1; u += $1 * $2 } END { printf "%.0f", u / r }' "$W/rows-miss.txt")
US_HIT=$(awk '{ r += $1; u += $1 * $2 } END { printf "%.0f", u / r }' "$W/rows-hit.txt")
RPS_MISS=$(awk '{ r += $1; s += $3 } END { printf "%.2f", r / s }' "$W/rows-miss.txt")
RPS_HIT=$(awk '{ r += $1; s += $3 } END { printf "%.2f", r / s }' "$W/rows-hit.txt")
share() { awk -v us="$1" -v s="$2" -v n="$3" -v j="$JOBS" 'BEGIN { printf "%.2f%%", us / (s * 1e6 * j / n) * 100 }'; }
mkdir -p "$(dirname "$RESULTS")"
{
  echo "hpcc audit cost, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores"
  echo "project: zlib $ZV (Debian source), make -j$JOBS libz.a, $N compiles; $REPS reps each, alternating"
  echo "load average at start $LOAD_START, at end $LOAD_END"
  echo
  printf '%-28s %12s %12s %14s\n' "" "audit on" "audit off" "cost (time)"
  printf '%-28s %11ss %11ss %14s\n' "misses (Execute), build" "$ON_MISS" "$OFF_MISS" "$(cost "$ON_MISS" "$OFF_MISS")"
  printf '%-28s %12s %12s\n' "  compiles per second" "$(tput "$ON_MISS")" "$(tput "$OFF_MISS")"
  printf '%-28s %11ss %11ss %14s\n' "remote hits, $HIT_BUILDS builds" "$ON_HIT" "$OFF_HIT" "$(cost "$ON_HIT" "$OFF_HIT")"
  printf '%-28s %12s %12s\n' "  compiles per second" "$(tput "$ON_HIT" "$HIT_BUILDS")" "$(tput "$OFF_HIT" "$HIT_BUILDS")"
  echo
  echo "the worker's own measure (mean wait of an answer for its row, write + fdatasync; rows per sync;"
  echo "that wait as a share of a compile's make slot, build seconds x $JOBS / compiles, audit on):"
  printf '%-28s %8s us %10s rows/sync %10s of a slot\n' "misses (Execute)" "$US_MISS" "$RPS_MISS" "$(share "$US_MISS" "$ON_MISS" "$N")"
  printf '%-28s %8s us %10s rows/sync %10s of a slot\n' "remote hits (Probe)" "$US_HIT" "$RPS_HIT" "$(share "$US_HIT" "$ON_HIT" "$((N * HIT_BUILDS))")"
  echo
  echo "target: at most 2 % throughput cost. Every rep checked: remote.executed = $N (misses),"
  echo "remote.hit = $N (each hit build), $(((1 + HIT_BUILDS) * N)) rows per audited rep and none with the audit off;"
  echo "the whole log verified at the end: $(cat "$W/verify.txt")"
} | tee "$RESULTS"
