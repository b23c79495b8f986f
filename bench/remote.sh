#!/usr/bin/env bash
# bench/remote.sh — remote mode against its peers, in one run, on libzstd's
# lib/ (Debian's source; see bench/README.md):
#   a. hit latency, p50 and p99 (hyperfine -N, RUNS runs) of one compile
#      (decompress/zstd_decompress.c): hpcc local hit; hpcc remote hit (a
#      worker on loopback over TLS, the local store emptied before each run,
#      so each run is a local miss answered by one probe); ccache 4.7 with
#      Redis remote storage on loopback (remote_only = true);
#   b. client CPU per remote miss over every C file of lib/ (-O2, fresh
#      tenant, so every compile runs on the worker) against distcc's client
#      (distccd on loopback), both as a share of the plain compile's CPU;
#   c. bytes on the wire and the zstd ratio of a preprocessed C++ TU that
#      includes the usual standard headers (preprocessed mode, default level).
# Knobs: HPCC (default build/hpcc; hpccd must sit beside it), RUNS (200),
# RESULTS (bench/results/remote.txt).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUNS=${RUNS:-200}
RESULTS=${RESULTS:-$REPO/bench/results/remote.txt}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer"
bench_need ccache redis-server distcc distccd hyperfine python3

W=$(mktemp -d /tmp/hpcc-bench-remote.XXXXXX)
pids=()
cleanup() {
  for d in "$W"/cache-*; do HPCC_DIR=$d "$HPCC" daemon stop >/dev/null 2>&1 || true; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

P=$("$REPO/scripts/fetch-project.sh" libzstd "$W/src") || die "fetching libzstd failed"
(cd "$P" && "$HPCC" init >/dev/null)
LIB="$P/lib"
HIT_SRC=decompress/zstd_decompress.c
CFLAGS=(-O2 -I. -Icommon -DZSTD_MULTITHREAD=0)
mapfile -t SOURCES < <(cd "$LIB" && ls common/*.c compress/*.c decompress/*.c dictBuilder/*.c | sort)
OBJ="$P/obj"   # inside the project root: outputs outside it compile locally
mkdir -p "$OBJ"

# ---- the worker ---------------------------------------------------------------
say "starting a worker on loopback (TLS, runtime unsafe-local)"
"$HPCC" worker init "$W/worker" --id bench --listen 127.0.0.1:0 --allow-unsafe-local \
  --signing-key "$W/signing.pem" >"$W/worker.init"
HPCC_LOG_FILE="$W/worker.log" HPCC_LOG_LEVEL=warn "$HPCC" worker --config "$W/worker/worker.ini" \
  --port-file "$W/worker/port" >"$W/worker.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$W/worker/port" ] && break; sleep 0.05; done
[ -s "$W/worker/port" ] || die "the worker did not start: $(cat "$W/worker.out")"
IMAGE=$("$HPCCD" worker host-image)
remote_env() { # TENANT → environment for a remote client of that tenant
  "$HPCC" token issue --key "$W/signing.pem" --tenant "$1" --image "$IMAGE" --worker bench \
    --out "$W/$1.tok"
  echo "HPCC_REMOTE_WORKER=127.0.0.1:$(cat "$W/worker/port") HPCC_REMOTE_TENANT=$1 HPCC_REMOTE_IMAGE=$IMAGE" \
    "HPCC_REMOTE_TOKEN_FILE=$W/$1.tok HPCC_REMOTE_PIN=$(sed -n 's/^certificate pin *//p' "$W/worker.init")"
}

# ---- a. hit latency -------------------------------------------------------------
pct() { # JSON → "p50 p99" in ms
  python3 - "$1" <<'PY'
import json, sys
t = sorted(json.load(open(sys.argv[1]))["results"][0]["times"])
q = lambda p: t[min(len(t) - 1, int(round(p * (len(t) - 1))))] * 1000
print(f"{q(0.50):.2f} {q(0.99):.2f}")
PY
}
HIT_CMD=(gcc "${CFLAGS[@]}" -c "$HIT_SRC" -o "$OBJ/hit.o")

say "a. local hit"
export HPCC_DIR="$W/cache-local"
(cd "$LIB" && "$HPCC" "${HIT_CMD[@]}")
(cd "$LIB" && hyperfine -N --runs "$RUNS" --warmup 20 --export-json "$W/local.json" \
  "$HPCC ${HIT_CMD[*]}" >/dev/null)
read -r LOCAL_P50 LOCAL_P99 < <(pct "$W/local.json")

say "a. remote hit (local store emptied before every run)"
export HPCC_DIR="$W/cache-remote"
env $(remote_env latency) bash -c "cd '$LIB' && '$HPCC' ${HIT_CMD[*]}"
env $(remote_env latency) bash -c "cd '$LIB' && '$HPCC' daemon stop >/dev/null; rm -rf '$HPCC_DIR/store'; '$HPCC' ${HIT_CMD[*]}"
rh0=$(env $(remote_env latency) "$HPCC" stats --json | sed -n 's/^  "remote.hit": \([0-9]*\).*/\1/p')
# The daemon stores a remote result after it has answered: let that finish
# (untimed) before the store is emptied for the next run.
printf '#!/bin/sh\nsleep 0.02\nrm -rf "%s/store" 2>/dev/null || { sleep 0.05; rm -rf "%s/store"; }\n' \
  "$HPCC_DIR" "$HPCC_DIR" >"$W/prepare.sh"
chmod +x "$W/prepare.sh"
(cd "$LIB" && env $(remote_env latency) hyperfine -N --runs "$RUNS" --warmup 5 \
  --prepare "$W/prepare.sh" --export-json "$W/remote.json" "$HPCC ${HIT_CMD[*]}" >/dev/null)
rh=$(( $("$HPCC" stats --json | sed -n 's/^  "remote.hit": \([0-9]*\).*/\1/p') - rh0 ))
read -r REMOTE_P50 REMOTE_P99 < <(pct "$W/remote.json")
[ "$rh" -ge "$RUNS" ] || die "only $rh of the timed runs were remote hits"
"$HPCC" daemon stop >/dev/null

say "a. ccache with Redis remote storage (remote_only)"
RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no >"$W/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
export CCACHE_DIR="$W/ccache" CCACHE_REMOTE_STORAGE="redis://127.0.0.1:$RPORT" CCACHE_REMOTE_ONLY=true
(cd "$LIB" && ccache "${HIT_CMD[@]}" && ccache -z >/dev/null)
(cd "$LIB" && hyperfine -N --runs "$RUNS" --warmup 20 --export-json "$W/ccache.json" \
  "ccache ${HIT_CMD[*]}" >/dev/null)
read -r CC_P50 CC_P99 < <(pct "$W/ccache.json")
cc_remote_hits=$(ccache --print-stats | sed -n 's/^remote_storage_hit\t//p')
[ "${cc_remote_hits:-0}" -ge "$RUNS" ] || die "ccache: only ${cc_remote_hits:-0} remote hits"
unset CCACHE_DIR CCACHE_REMOTE_STORAGE CCACHE_REMOTE_ONLY

# ---- b. client CPU per remote miss -------------------------------------------------
cpu_of() { # command... → "user+sys seconds" of the command and its children
  /usr/bin/time -f '%U %S' -o "$W/time" "$@" >/dev/null 2>"$W/cpu.err" || { cat "$W/cpu.err" >&2; return 1; }
  awk '{ printf "%.3f", $1 + $2 }' "$W/time"
}
compile_all() { # WRAPPER... → compiles every source, two at a time
  printf '%s\n' "${SOURCES[@]}" | (cd "$LIB" && xargs -P2 -I{} sh -c \
    "$* ${CFLAGS[*]} -c {} -o $OBJ/\$(echo {} | tr / _).o")
}
daemon_cpu() { # → "self children" seconds of the running daemon
  local pid; pid=$("$HPCC" daemon status | sed -n 's/^pid //p')
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f %.3f\n", ($14 + $15) / hz, ($16 + $17) / hz }' "/proc/$pid/stat"
}
say "b. plain compile CPU of ${#SOURCES[@]} files"
PLAIN_CPU=$(cpu_of bash -c "$(declare -f compile_all); SOURCES=(${SOURCES[*]}); CFLAGS=(${CFLAGS[*]}); W=$W; LIB=$LIB; OBJ=$OBJ; compile_all gcc")

say "b. hpcc remote misses (fresh tenant)"
export HPCC_DIR="$W/cache-miss"
eval "export $(remote_env "miss$$")"
"$HPCC" daemon start >/dev/null
read -r D0_SELF D0_CHILD < <(daemon_cpu)
WRAP_CPU=$(cpu_of bash -c "$(declare -f compile_all); SOURCES=(${SOURCES[*]}); CFLAGS=(${CFLAGS[*]}); W=$W; LIB=$LIB; OBJ=$OBJ; compile_all $HPCC gcc")
read -r D1_SELF D1_CHILD < <(daemon_cpu)
executed=$("$HPCC" stats --json | sed -n 's/^  "remote.executed": \([0-9]*\).*/\1/p')
[ "$executed" = "${#SOURCES[@]}" ] || die "only $executed of ${#SOURCES[@]} compiles ran remotely"
"$HPCC" daemon stop >/dev/null
unset HPCC_REMOTE_WORKER HPCC_REMOTE_TENANT HPCC_REMOTE_IMAGE HPCC_REMOTE_TOKEN_FILE HPCC_REMOTE_PIN
SHIP_CPU=$(awk -v a="$WRAP_CPU" -v b="$D0_SELF" -v c="$D1_SELF" 'BEGIN { printf "%.3f", a + c - b }')
SCAN_CPU=$(awk -v b="$D0_CHILD" -v c="$D1_CHILD" 'BEGIN { printf "%.3f", c - b }')

say "b. distcc client (distccd on loopback)"
DPORT=$(free_port)
# distccd drops root for its own user, so it logs to stderr, not into $W.
distccd --daemon --no-detach --allow 127.0.0.1 --listen 127.0.0.1 --port "$DPORT" --jobs 2 \
  --log-stderr --log-level info 2>"$W/distccd.log" &
pids+=($!)
sleep 0.5
mkdir -p "$W/distcc"
export DISTCC_HOSTS="127.0.0.1:$DPORT/2" DISTCC_FALLBACK=0 DISTCC_DIR="$W/distcc"
DISTCC_CPU=$(cpu_of bash -c "$(declare -f compile_all); SOURCES=(${SOURCES[*]}); CFLAGS=(${CFLAGS[*]}); W=$W; LIB=$LIB; OBJ=$OBJ; compile_all distcc gcc")
unset DISTCC_HOSTS DISTCC_FALLBACK
grep -q 'COMPILE_OK' "$W/distccd.log" || die "distccd compiled nothing (see $W/distccd.log)"

# ---- c. preprocessed C++ on the wire ---------------------------------------------
say "c. preprocessed C++ TU"
mkdir -p "$W/cxx" && (cd "$W/cxx" && "$HPCC" init >/dev/null)
cat >"$W/cxx/tu.cc" <<'CXX'
#include <algorithm>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>
int main() {
  std::map<std::string, std::vector<int>> m;
  m["a"].push_back(1);
  std::ostringstream os;
  for (auto &kv : m) os << kv.first << kv.second.size();
  std::cout << os.str() << std::endl;
}
CXX
PP_BYTES=$(cd "$W/cxx" && g++ -O2 -E tu.cc | wc -c)
export HPCC_DIR="$W/cache-cxx" HPCC_REMOTE_MODE=preprocessed
eval "export $(remote_env "cxx$$")"
(cd "$W/cxx" && "$HPCC" g++ -O2 -c tu.cc -o tu.o)
WIRE=$("$HPCC" stats --json | sed -n 's/^  "remote.bytes_uploaded": \([0-9]*\).*/\1/p')
cxx_exec=$("$HPCC" stats --json | sed -n 's/^  "remote.executed": \([0-9]*\).*/\1/p')
[ "$cxx_exec" = 1 ] || die "the C++ TU did not compile remotely"
"$HPCC" daemon stop >/dev/null
unset HPCC_REMOTE_MODE

# ---- report ---------------------------------------------------------------------
mkdir -p "$(dirname "$RESULTS")"
python3 - "$RESULTS" <<PY
import sys
r = lambda a, b: a / b if b else float('nan')
lines = [
  "hpcc remote mode vs ccache (Redis remote) and distcc, $(date -u +%Y-%m-%d), $(nproc) cores, libzstd lib/",
  "",
  "a. hit latency of one compile ($HIT_SRC, -O2), $RUNS runs each",
  f"   hpcc local hit            p50 {$LOCAL_P50:8.2f} ms   p99 {$LOCAL_P99:8.2f} ms",
  f"   hpcc remote hit           p50 {$REMOTE_P50:8.2f} ms   p99 {$REMOTE_P99:8.2f} ms   (one probe; local store emptied each run)",
  f"   ccache 4.7 + Redis        p50 {$CC_P50:8.2f} ms   p99 {$CC_P99:8.2f} ms   (remote_only)",
  f"   remote hit / ccache-Redis hit: p50 {r($REMOTE_P50, $CC_P50):.2f}x  p99 {r($REMOTE_P99, $CC_P99):.2f}x   (target p50 <= 0.7x)",
  "",
  "b. client CPU per remote miss, ${#SOURCES[@]} files, -O2, 2 at a time",
  f"   plain compile CPU                     {$PLAIN_CPU:8.2f} s",
  f"   hpcc hashing + shipping (wrapper+daemon) {$SHIP_CPU:8.3f} s  = {100*r($SHIP_CPU, $PLAIN_CPU):5.2f} % of compile CPU (target <= 2 %)",
  f"   hpcc dependency scan (cc -M)          {$SCAN_CPU:8.3f} s  = {100*r($SCAN_CPU, $PLAIN_CPU):5.2f} %",
  f"   hpcc client total                     {$SHIP_CPU + $SCAN_CPU:8.3f} s  = {100*r($SHIP_CPU + $SCAN_CPU, $PLAIN_CPU):5.2f} %",
  f"   distcc client (cpp + send)            {$DISTCC_CPU:8.3f} s  = {100*r($DISTCC_CPU, $PLAIN_CPU):5.2f} %",
  "",
  "c. preprocessed C++ TU (11 standard headers), preprocessed mode, zstd level 3",
  f"   -E output {$PP_BYTES} bytes, on the wire {$WIRE} bytes: ratio {r($PP_BYTES, $WIRE):.1f}x (target >= 5x)",
]
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
