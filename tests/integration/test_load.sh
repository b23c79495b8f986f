#!/usr/bin/env bash
# Load: many clients at once against one worker and one scheduler, all real
# processes on loopback (the test IdP, `hpcc scheduler`, an unsafe-local
# worker registered with it, LOAD_DAEMONS daemons of one tenant that sign in
# and route through the scheduler). Three waves:
#   1. LOAD_DAEMONS x LOAD_PER_DAEMON compiles started at once (misses);
#   2. the same again from fresh caches (remote hits);
#   3. LOAD_IDLE raw TCP connections that never speak, held open against
#      the worker and the scheduler while one more build runs.
# Checks: every compile exits 0 with plain gcc's bytes; every remote call was
# answered or refused cleanly (no remote-error, remote-timeout or
# remote-unreachable fallback); the worker's and the scheduler's memory,
# threads and fds stay under fixed bounds while it runs; idle connections
# are dropped once the handshake deadline passes. bench/load.sh runs this
# with more clients and prints the figures (the "# load:" lines).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/remote_lib.sh"
# HPCC_TEST_QUICK (the sanitizer pass): fewer clients, and ASan's own memory.
QUICK=${HPCC_TEST_QUICK:+1}
D=${LOAD_DAEMONS:-4}
PER=${LOAD_PER_DAEMON:-$((QUICK ? 25 : 50))}
FILES=${LOAD_FILES:-40}
IDLE=${LOAD_IDLE:-300}
# The worker's peak RSS measured 33 MiB at 200 in flight (max_calls 64).
MAX_WORKER_RSS_KB=${LOAD_MAX_WORKER_RSS_KB:-$((QUICK ? 1500000 : 400000))}
PIDS=()
stop_all() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done; PIDS=(); }
stop_daemons() { for d in $(seq "$D"); do HPCC_DIR="$WORK/$1$d" "$HPCC" daemon stop >/dev/null 2>&1; done; }
trap 'stop_daemons c; stop_daemons h; stop_all; cleanup' EXIT
export HPCC_LOG_LEVEL=info

# ---- servers --------------------------------------------------------------------
check "the test IdP starts" start_test_idp "$WORK/idp.port" dev:pw
PIDS+=("$IDP_PID")
IDP=http://127.0.0.1:$(cat "$WORK/idp.port")
S="$WORK/sched"
"$HPCC" scheduler init "$S" --listen 127.0.0.1:0 >"$WORK/sched.init" 2>&1
SPIN=$(sed -n 's/^certificate pin *//p' "$WORK/sched.init")
sed -i "s/^token_ttl = .*/token_ttl = 300\nallow_insecure_idp = true/" "$S/scheduler.ini"
printf '[tenant acme]\nissuer = %s\naudience = hpcc\nclient_id = hpcc-cli\nimages = %s\n' "$IDP" "$IMAGE" >>"$S/scheduler.ini"
check "the scheduler starts" start_test_scheduler "$S"
PIDS+=("$SCHED_PID")
W="$WORK/w1"
"$HPCC" worker init "$W" --id w1 --listen 127.0.0.1:0 --allow-unsafe-local --scheduler "127.0.0.1:$SCHED_PORT" \
  --scheduler-pin "$SPIN" --worker-token-file "$S/worker-token" >"$W.init" 2>&1
HPCC_LOG_FILE="$W.log" "$HPCC" worker --config "$W/worker.ini" --port-file "$W/port" >>"$W.out" 2>&1 &
WPID=$!
PIDS+=("$WPID")
check "the worker starts and registers with the scheduler" eval 'wait_file "$W/port" && wait_log "$S.log" "worker w1 registered"'
WPORT=$(cat "$W/port")
MAX_CALLS=$(sed -n 's/^max_calls = //p' "$W/worker.ini")
# A call holds up to 4 fds while it waits for an exec slot (its staging
# directory, the compiler's stdin); 32 more for the listener, grpc and logs.
MAX_WORKER_FDS=${LOAD_MAX_WORKER_FDS:-$((32 + 4 * MAX_CALLS))}

export HPCC_REMOTE_SCHEDULER=127.0.0.1:$SCHED_PORT HPCC_REMOTE_SCHEDULER_PIN=$SPIN HPCC_REMOTE_TENANT=acme \
  HPCC_REMOTE_IMAGE=$IMAGE
check "hpcc login against the IdP" eval 'HPCC_USERNAME=dev HPCC_PASSWORD=pw "$HPCC" login >"$WORK/login" 2>&1 </dev/null'

# ---- sources and plain objects -----------------------------------------------------
P=$(new_project proj)
mkdir -p "$P/plain" "$P/out"
printf '#define SCALE 3\n' >"$P/load.h"
for i in $(seq "$FILES"); do
  printf '#include "load.h"\nint f%d(int x) { return SCALE * x + %d; }\n' "$i" "$i" >"$P/f$i.c"
done
touch -d '10 seconds ago' "$P"/*.c "$P/load.h"
(cd "$P" && for i in $(seq "$FILES"); do gcc -O2 -ffile-prefix-map="$P"=. -c "f$i.c" -o "plain/f$i.o" || exit 1; done)

# ---- sampling --------------------------------------------------------------------
# sample PID FILE: appends "rss_kb hwm_kb threads fds" every 0.1 s until killed.
sample() {
  while :; do
    awk '/^VmRSS/ { r = $2 } /^VmHWM/ { h = $2 } /^Threads/ { t = $2 } END { printf "%s %s %s ", r, h, t }' \
      "/proc/$1/status" 2>/dev/null || return
    ls "/proc/$1/fd" 2>/dev/null | wc -l
    sleep 0.1
  done >>"$2"
}
peak() { # FILE COLUMN → the largest value
  awk -v c="$2" '$c > m { m = $c } END { print m + 0 }' "$1"
}

# wave PREFIX: D daemons (caches PREFIX1..PREFIXD, each signed in) each get
# PER compiles, all started at once; prints nothing, leaves out/PREFIX*.rc.
wave() {
  local d j k pids=()
  for d in $(seq "$D"); do
    mkdir -m 700 -p "$WORK/$1$d"
    [ -d "$WORK/$1$d/auth" ] || cp -r "$HPCC_DIR/auth" "$WORK/$1$d/auth"
    HPCC_DIR="$WORK/$1$d" "$HPCC" daemon start >/dev/null 2>&1
  done
  for d in $(seq "$D"); do
    for j in $(seq "$PER"); do
      k=$(((d * PER + j) % FILES + 1))
      (cd "$P" && HPCC_DIR="$WORK/$1$d" "$HPCC" gcc -O2 -c "f$k.c" -o "out/$d-$j.o" 2>"out/$1$d-$j.err"
       echo "$? $k" >"out/$1$d-$j.rc") &
      pids+=($!)
    done
  done
  wait "${pids[@]}"
}
# verify PREFIX DESC: every compile of the wave passed with plain gcc's bytes.
verify() {
  local bad=0 rc k f n=0 o
  for f in "$P"/out/"$1"*.rc; do
    read -r rc k <"$f"
    n=$((n + 1))
    o=${f%.rc}.o; o=$P/out/${o#$P/out/$1}  # out/<daemon>-<job>.o: the same paths in each wave
    if [ "$rc" != 0 ] || ! cmp -s "$o" "$P/plain/f$k.o"; then
      bad=$((bad + 1)); [ $bad -le 3 ] && echo "# $(basename "$f"): exit $rc: $(head -c 200 "${f%.rc}.err")"
    fi
  done
  check "$2: all $n compiles exit 0 with plain gcc's bytes ($bad bad)" test "$bad" = 0 -a "$n" = $((D * PER))
}
# sum PREFIX COUNTER: the counter summed over the wave's daemons.
sum() {
  local d t=0 v
  for d in $(seq "$D"); do v=$(HPCC_DIR="$WORK/$1$d" stat "$2"); t=$((t + ${v:-0})); done
  echo $t
}
clean_answers() { # PREFIX DESC: no fallback but refusals
  local e t u
  e=$(sum "$1" fallback.remote-error); t=$(sum "$1" fallback.remote-timeout); u=$(sum "$1" fallback.remote-unreachable)
  check "$2: every remote call answered or refused cleanly (remote-error $e, remote-timeout $t, remote-unreachable $u)" \
    test "$e$t$u" = 000
}

# ---- wave 1: misses --------------------------------------------------------------
rm -f "$WORK/w.samples" "$WORK/s.samples"
sample "$WPID" "$WORK/w.samples" & SAMPLER_W=$!
sample "$SCHED_PID" "$WORK/s.samples" & SAMPLER_S=$!
t0=$(date +%s%N)
wave c
t1=$(date +%s%N)
verify c "wave 1 ($((D * PER)) compiles in flight from $D daemons)"
clean_answers c "wave 1"
exec1=$(sum c remote.executed); hit1=$(sum c remote.hit); ref1=$(sum c fallback.remote-refused)
echo "# load: wave 1: $((D * PER)) compiles at once from $D daemons: $exec1 executed remotely, $hit1 remote hits, $ref1 refused (busy) and compiled locally, $(((t1 - t0) / 1000000)) ms"
check "wave 1: the worker executed some and refused the rest cleanly (executed $exec1 + hit $hit1 + refused $ref1 > 0)" \
  test $((exec1 + hit1)) -gt 0
stop_daemons c

# ---- wave 2: hits from fresh caches --------------------------------------------------
# The same compiles (same sources, same output paths, so the same actions).
rm -f "$P"/out/*.o
t0=$(date +%s%N)
wave h
t1=$(date +%s%N)
verify h "wave 2 (fresh caches)"
clean_answers h "wave 2"
exec2=$(sum h remote.executed); hit2=$(sum h remote.hit); ref2=$(sum h fallback.remote-refused)
echo "# load: wave 2: $((D * PER)) compiles at once from fresh caches: $hit2 remote hits, $exec2 executed, $ref2 refused, $(((t1 - t0) / 1000000)) ms"
# Only what the worker compiled in wave 1 can hit (it refused the rest), and
# probes are refused too while it is busy.
check "wave 2: compiles stored by the worker in wave 1 are remote hits ($hit2 of $((D * PER)))" test "$hit2" -gt 0
stop_daemons h
kill "$SAMPLER_W" "$SAMPLER_S" 2>/dev/null; wait "$SAMPLER_W" "$SAMPLER_S" 2>/dev/null

w_hwm=$(peak "$WORK/w.samples" 2); w_thr=$(peak "$WORK/w.samples" 3); w_fds=$(peak "$WORK/w.samples" 4)
s_hwm=$(peak "$WORK/s.samples" 2); s_thr=$(peak "$WORK/s.samples" 3); s_fds=$(peak "$WORK/s.samples" 4)
echo "# load: worker peak: RSS $((w_hwm / 1024)) MiB, $w_thr threads, $w_fds fds (max_calls $MAX_CALLS)"
echo "# load: scheduler peak: RSS $((s_hwm / 1024)) MiB, $s_thr threads, $s_fds fds"
check "the worker's memory stayed bounded (peak RSS $w_hwm KiB <= $MAX_WORKER_RSS_KB)" test "$w_hwm" -le "$MAX_WORKER_RSS_KB"
check "the worker's fds stayed bounded (peak $w_fds <= $MAX_WORKER_FDS)" test "$w_fds" -le "$MAX_WORKER_FDS"
check "the worker's threads stayed bounded by max_calls (peak $w_thr <= $MAX_CALLS + 32)" \
  test "$w_thr" -le $((MAX_CALLS + 32))
check "the scheduler's fds stayed bounded (peak $s_fds <= 128)" test "$s_fds" -le 128
check "the worker is still running" kill -0 "$WPID"
check "the scheduler is still running" kill -0 "$SCHED_PID"

# ---- wave 3: idle connections -------------------------------------------------------
# IDLE sockets to each server that never send a byte (nor a TLS hello).
python3 - "$WPORT" "$SCHED_PORT" "$IDLE" "$WORK/idle.ready" <<'PY' &
import socket, sys, time
socks = []
for port in (int(sys.argv[1]), int(sys.argv[2])):
    for _ in range(int(sys.argv[3])):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port)))
        except OSError:
            break
open(sys.argv[4], "w").write("%d\n" % len(socks))
time.sleep(600)  # killed below: the sockets must outlive the servers' deadline
PY
IDLE_PID=$!
idle_t0=$(date +%s)
PIDS+=("$IDLE_PID")
wait_file "$WORK/idle.ready"
sleep 0.5
fds_idle=$(ls "/proc/$WPID/fd" | wc -l)
echo "# load: $(cat "$WORK/idle.ready") idle connections held open; worker fds now $fds_idle"
mkdir -m 700 -p "$WORK/x1" && cp -r "$HPCC_DIR/auth" "$WORK/x1/auth"
printf '#include "load.h"\nint g(int x) { return SCALE - x; }\n' >"$P/g.c"
touch -d '10 seconds ago' "$P/g.c"
(cd "$P" && gcc -O2 -ffile-prefix-map="$P"=. -c g.c -o plain/g.o)
(cd "$P" && HPCC_DIR="$WORK/x1" "$HPCC" gcc -O2 -c g.c -o out/g.o)
check "with $IDLE idle connections open, a build still passes with plain gcc's bytes" cmp -s "$P/out/g.o" "$P/plain/g.o"
check "... and it was compiled by the worker" test "$(HPCC_DIR="$WORK/x1" stat remote.executed)" = 1
HPCC_DIR="$WORK/x1" "$HPCC" daemon stop >/dev/null 2>&1
# The servers close connections that have not finished their handshake
# within rpc.h's RPC_HANDSHAKE_TIMEOUT_MS (30 s).
# grpc's own default is 120 s: a drop within 50 s of connecting is ours.
fds_after=$fds_idle
while [ $(($(date +%s) - idle_t0)) -lt 50 ]; do
  fds_after=$(ls "/proc/$WPID/fd" | wc -l)
  [ "$fds_after" -lt $((fds_idle - IDLE / 2)) ] && break
  sleep 0.2
done
idle_s=$(($(date +%s) - idle_t0))
echo "# load: worker fds: $fds_idle with the idle connections, $fds_after ${idle_s} s after they connected"
check "the worker dropped the idle connections at its handshake deadline ($fds_idle fds -> $fds_after in $idle_s s)" \
  test "$fds_after" -lt $((fds_idle - IDLE / 2))
s_fds_after=$(ls "/proc/$SCHED_PID/fd" | wc -l)
check "the scheduler dropped them too ($s_fds_after fds)" test "$s_fds_after" -lt $((IDLE / 2))
kill "$IDLE_PID" 2>/dev/null
exit 0
