#!/usr/bin/env bash
# bench/route.sh — the scheduler's Route call on loopback (see bench/README.md):
# a scheduler pinned to core 0 (HPCC_LOG_LEVEL=warn), the test IdP as the
# tenant's IdP (RS256 access token), WORKERS fake workers registered, and
# build/route_bench pinned to core 1 on one reused TLS channel:
#   a. open loop at RATE routes/s for OPEN_SECONDS s from THREADS threads, latency
#      counted from each call's scheduled send time (no coordinated omission),
#      and the scheduler's CPU time over that run as a share of one core;
#   b. closed loop, THREADS threads as fast as they can, 5 s.
# Target: p99 <= 1 ms at 5000 routes/s on one core.
# Builds nothing: BUILD (default build) must hold hpcc, hpccd and route_bench.
# Knobs: BUILD, RATE (5000), OPEN_SECONDS (10), THREADS (4), WORKERS (8),
# RESULTS (bench/results/route.txt), PERF_OUT (a file: perf record -g of the
# scheduler during the open loop, for `perf report -i FILE`), PERF_ARGS
# (perf record's options, default -g -F 997), DISTINCT_TOKENS (0: one access
# token for every call, the scheduler's verified-token cache answers all but
# the first; N: N tokens minted beforehand, used in turn, so with N over the
# cache's 4096 per tenant every Route verifies its token in full).
set -euo pipefail
die() { echo "bench: error: $*" >&2; exit 1; }
say() { echo "bench: $*" >&2; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-build}
[[ $BUILD = /* ]] || BUILD="$REPO/$BUILD"
HPCC="$BUILD/hpcc"
BENCH="$BUILD/route_bench"
RATE=${RATE:-5000}
SECONDS_OPEN=${OPEN_SECONDS:-10}
THREADS=${THREADS:-4}
WORKERS=${WORKERS:-8}
DISTINCT_TOKENS=${DISTINCT_TOKENS:-0}
RESULTS=${RESULTS:-$REPO/bench/results/route.txt}
TARGET_RATE=5000
TARGET_P99_US=1000
for v in RATE SECONDS_OPEN THREADS WORKERS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
done
[[ $DISTINCT_TOKENS =~ ^(0|[1-9][0-9]*)$ ]] || die "DISTINCT_TOKENS must be 0 or a positive integer"
for b in "$HPCC" "$BUILD/hpccd" "$BENCH"; do
  [ -x "$b" ] || die "$b is missing: build it first (make build, or ninja -C $BUILD hpcc hpccd route_bench)"
done
for t in node taskset curl python3; do
  command -v $t >/dev/null || die "$t is missing (scripts/deps.sh bench installs it)"
done
[ "$(nproc)" -ge 2 ] || die "needs 2 cores (the scheduler on one, the load on the other)"

W=$(mktemp -d /tmp/hpcc-bench-route.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
wait_file() { # FILE WHAT PID
  for _ in $(seq 200); do [ -s "$1" ] && return 0; kill -0 "$3" 2>/dev/null || break; sleep 0.05; done
  die "$2 did not start: $(cat "$W/$2.out" 2>/dev/null)"
}

# ---- the tenant's IdP ---------------------------------------------------------------
say "starting the test IdP"
NODE_PATH=$("$REPO/scripts/npm-deps.sh") node "$REPO/tests/idp/idp.js" --port 0 --port-file "$W/idp.port" \
  --alg RS256 --audience hpcc --user alice:pw >"$W/idp.out" 2>&1 &
pids+=($!)
wait_file "$W/idp.port" idp $!
IDP="http://127.0.0.1:$(cat "$W/idp.port")"
TOKENS_ARGS=()
if [ "$DISTINCT_TOKENS" -gt 0 ]; then
  say "minting $DISTINCT_TOKENS access tokens"
  # One keep-alive connection; each token differs (the IdP gives each a random jti).
  python3 - "$IDP" "$DISTINCT_TOKENS" >"$W/access-token" <<'PY'
import http.client, json, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
seen = set()
for _ in range(int(sys.argv[2])):
    conn.request("GET", "/test/token?aud=hpcc&exp_in=3600")
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        sys.exit(f"the IdP answered {r.status}")
    t = json.loads(body)["access_token"]
    if t in seen:
        sys.exit("the IdP minted the same token twice")
    seen.add(t)
    print(t)
PY
  TOKENS_ARGS=(--distinct-tokens "$DISTINCT_TOKENS")
else
  curl -sf "$IDP/test/token?aud=hpcc&exp_in=3600" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])' >"$W/access-token"
fi
[ -s "$W/access-token" ] || die "the IdP minted no access token"

# ---- the scheduler, alone on core 0 ---------------------------------------------------
IMAGE="sha256:$(printf 'hpcc route bench image' | sha256sum | cut -c1-64)"
TENANT=bench
"$HPCC" scheduler init "$W/sched" --listen 127.0.0.1:0 >"$W/init.out"
PIN=$(sed -n 's/^certificate pin *//p' "$W/init.out")
[ -n "$PIN" ] || die "hpcc scheduler init printed no pin: $(cat "$W/init.out")"
INI="$W/sched/scheduler.ini"
# A worker that registered stays healthy for the whole run without heartbeats.
sed -i -e 's/^heartbeat_interval_ms *=.*/heartbeat_interval_ms = 600000/' \
  -e 's/^\[scheduler\]$/[scheduler]\nallow_insecure_idp = true/' "$INI"
cat >>"$INI" <<EOF

[tenant $TENANT]
issuer = $IDP
audience = hpcc
client_id = hpcc-cli
images = $IMAGE
EOF
say "starting the scheduler on core 0"
# taskset and hpcc exec, so $! is the scheduler itself (hpccd).
HPCC_LOG_LEVEL=warn HPCC_LOG_FILE="$W/scheduler.log" taskset -c 0 "$HPCC" scheduler --config "$INI" \
  --port-file "$W/sched.port" >"$W/scheduler.out" 2>&1 &
SCHED_PID=$!
pids+=("$SCHED_PID")
wait_file "$W/sched.port" scheduler $SCHED_PID
[ "$(cat "/proc/$SCHED_PID/comm")" = hpccd ] || die "pid $SCHED_PID is $(cat "/proc/$SCHED_PID/comm"), not hpccd"
HZ=$(getconf CLK_TCK)
sched_ticks() { awk '{ print $14 + $15 }' "/proc/$SCHED_PID/stat"; }
now_ns() { date +%s%N; }

# ---- the load, on core 1 ----------------------------------------------------------------
LOAD1=$(cut -d' ' -f1 /proc/loadavg)
say "route_bench on core 1: $WORKERS workers, open loop $RATE/s for $SECONDS_OPEN s, then closed loop 5 s ($THREADS threads)"
C0='' C1='' C2='' C3='' T0='' T1='' status='' PERF_PID=''
while IFS= read -r line; do
  echo "$line" >>"$W/bench.out"
  case $line in
    open-start)
      C0=$(sched_ticks); T0=$(now_ns)
      if [ -n "${PERF_OUT:-}" ]; then
        perf record -q ${PERF_ARGS:--g -F 997} -p $SCHED_PID -o "$PERF_OUT" 2>"$W/perf.err" &
        PERF_PID=$!
        pids+=("$PERF_PID")
      fi ;;
    open-end)
      C1=$(sched_ticks); T1=$(now_ns)
      if [ -n "${PERF_PID:-}" ]; then kill -INT $PERF_PID; wait $PERF_PID || true; fi ;;
    closed-start) C2=$(sched_ticks) ;;
    closed-end) C3=$(sched_ticks) ;;
    exit=*) status=${line#exit=} ;;
  esac
done < <(taskset -c 1 "$BENCH" --target "127.0.0.1:$(cat "$W/sched.port")" --pin "$PIN" \
  --worker-token-file "$W/sched/worker-token" --tenant "$TENANT" --image "$IMAGE" \
  --access-token-file "$W/access-token" --rate "$RATE" --seconds "$SECONDS_OPEN" --threads "$THREADS" \
  --workers "$WORKERS" "${TOKENS_ARGS[@]}" 2>"$W/bench.err"; echo "exit=$?")
kill -0 $SCHED_PID 2>/dev/null || die "the scheduler died: $(tail -5 "$W/scheduler.out")"
cat "$W/bench.err" >&2
grep -q '^open ' "$W/bench.out" && grep -q '^closed ' "$W/bench.out" ||
  die "route_bench did not finish (exit ${status:-?}): $(cat "$W/bench.out")"
[ -n "$C1" ] && [ -n "$C3" ] || die "no CPU sample around the runs"
LOAD2=$(cut -d' ' -f1 /proc/loadavg)

# ---- report -----------------------------------------------------------------------------
mkdir -p "$(dirname "$RESULTS")"
python3 - "$RESULTS" "$W/bench.out" <<PY
import sys
runs = {}
for line in open(sys.argv[2]):
    f = line.split()
    if f and f[0] in ("open", "closed"):
        runs[f[0]] = {k: float(v) for k, v in (x.split("=", 1) for x in f[1:])}
o, c = runs["open"], runs["closed"]
cpu = ($C1 - $C0) / $HZ
wall = ($T1 - $T0) / 1e9
closed_cpu = ($C3 - $C2) / $HZ
def per_route(cpu_s, r):
    return 1e6 * cpu_s / r["count"] if r["count"] else float("nan")
def lat(r):
    return (f"p50 {r['p50_us']:7.0f} us   p90 {r['p90_us']:7.0f} us   p99 {r['p99_us']:7.0f} us   "
            f"p99.9 {r['p999_us']:7.0f} us   max {r['max_us']:7.0f} us")
ok = o["errors"] == 0 and o["p99_us"] <= $TARGET_P99_US and o["routes_per_s"] >= 0.99 * $RATE
verdict = ("PASS" if ok else "MISS") if $RATE == $TARGET_RATE else f"not comparable (this run: {$RATE}/s)"
lines = [
  "hpcc scheduler Route on loopback, $(date -u +%Y-%m-%d), $(nproc) cores, one reused TLS channel",
  "   scheduler on core 0 (HPCC_LOG_LEVEL=warn), route_bench on core 1; $WORKERS workers registered,",
  "   $( [ "$DISTINCT_TOKENS" -gt 0 ] && echo "$DISTINCT_TOKENS distinct RS256 access tokens in turn" || echo "one RS256 access token for every call") from the test IdP; load average $LOAD1 before, $LOAD2 after",
  "",
  f"a. open loop, {$RATE} routes/s for {$SECONDS_OPEN} s, {$THREADS} threads (latency from the scheduled send time)",
  f"   count {o['count']:.0f}   errors {o['errors']:.0f}   late sends {o['late']:.0f}   achieved {o['routes_per_s']:.0f} routes/s",
  "   " + lat(o),
  f"   scheduler CPU {cpu:.2f} s in {wall:.1f} s = {100 * cpu / wall:.1f} % of one core ({per_route(cpu, o):.0f} us per Route)",
  f"   route_bench CPU {100 * o['client_cpu_s'] / o['wall_s']:.0f} % of core 1 (near 100 %: the load generator was the limit)",
  f"   target p99 <= 1 ms at 5000 routes/s: {verdict} (p99 {o['p99_us'] / 1000:.2f} ms)",
  "",
  f"b. closed loop, {$THREADS} threads as fast as they can, {c['seconds']:.0f} s",
  f"   count {c['count']:.0f}   errors {c['errors']:.0f}   achieved {c['routes_per_s']:.0f} routes/s",
  "   " + lat(c),
  f"   scheduler CPU {closed_cpu:.2f} s = {100 * closed_cpu / c['wall_s']:.1f} % of one core ({per_route(closed_cpu, c):.0f} us per Route);"
  f" route_bench {100 * c['client_cpu_s'] / c['wall_s']:.0f} % of core 1",
]
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
[ "${status:-1}" = 0 ] || die "route_bench exited with status ${status:-?} (failed Routes above)"
