#!/usr/bin/env bash
# The per-user daemon: its socket (place and mode), status/stop, the idle
# timeout, refusal of other users (SO_PEERCRED), a race-free start under
# many concurrent first compiles, and merging of identical in-flight compiles.
. "$(dirname "$0")/lib.sh"

# ---- helpers (local to this file) ---------------------------------------
PUB=$(mktemp -d /tmp/hpcc-daemon-pub.XXXXXX)   # world-readable, for user nobody
chmod 755 "$PUB"
daemon_cleanup() {
  chmod 700 "$WORK" "$HPCC_DIR" 2>/dev/null
  [ -d "$WORK/xdg" ] && XDG_RUNTIME_DIR=$WORK/xdg "$HPCC" daemon stop >/dev/null 2>&1
  rm -rf "$PUB"
  cleanup
}
trap daemon_cleanup EXIT

daemon_pid() { "$HPCC" daemon status 2>/dev/null | sed -n 's/^pid \([0-9]*\)$/\1/p'; }
wait_until() { # SECONDS COMMAND...: polls every 0.1 s
  local n=$(($1 * 10)); shift
  while ((n-- > 0)); do "$@" && return 0; sleep 0.1; done
  return 1
}
gone() { # the process has exited (a zombie not yet reaped by init counts)
  local st; st=$( { cut -d' ' -f3 "/proc/$1/stat"; } 2>/dev/null)
  [ -z "$st" ] || [ "$st" = Z ]
}
# Pids of `hpcc daemon run` processes serving this test's cache dir.
daemons_for_cache() {
  local p
  for p in /proc/[0-9]*; do
    [ "$( { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null)" = "hpcc daemon run " ] || continue
    { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -qxF "HPCC_DIR=$HPCC_DIR" && echo "${p#/proc/}"
  done
}
fnv1a_hex() { # the socket name's hash (see ipc.c)
  local s=$1 h=$((0xcbf29ce484222325)) i c
  for ((i = 0; i < ${#s}; i++)); do
    c=$(printf %d "'${s:i:1}")
    h=$(((h ^ c) * 0x100000001b3))
  done
  printf '%016x' "$h"
}
mode_of() { command stat -c %a "$1" 2>/dev/null; }
stop_daemon() { # stops the daemon and waits until its process is gone
  local p; p=$(daemon_pid)
  "$HPCC" daemon stop >/dev/null 2>&1
  [ -z "$p" ] || wait_until 5 gone "$p"
}

P=$(new_project daemon)
cd "$P" || exit 1
echo 'int f(int x) { return x + 1; }' >a.c
touch -d '10 seconds ago' a.c
gcc -O2 -c a.c -o plain.o || exit 1

# ---- socket, status, stop ------------------------------------------------
"$HPCC" gcc -O2 -c a.c -o a.o
same plain.o a.o "first compile (starts the daemon): object == plain"
SOCK=$HPCC_DIR/daemon.sock
check "socket is at \$HPCC_DIR/daemon.sock" test -S "$SOCK"
check "socket mode is 0600 (got $(mode_of "$SOCK"))" test "$(mode_of "$SOCK")" = 600
check "socket belongs to us" test "$(command stat -c %u "$SOCK")" = "$(id -u)"
"$HPCC" daemon status >status.out
check "daemon status exits 0" test $? = 0
pid=$(sed -n 's/^pid \([0-9]*\)$/\1/p' status.out)
check "daemon status shows a pid ('$pid')" test -n "$pid"
check "that pid is a running 'hpcc daemon run'" \
  test "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" = "hpcc daemon run "
check "daemon status names the cache dir" grep -qxF "cache_dir $HPCC_DIR" status.out
"$HPCC" daemon stop >stop.out
check "daemon stop exits 0" test $? = 0
check "daemon stop: the process exits" wait_until 3 gone "$pid"
check "daemon stop: the socket is removed" test ! -e "$SOCK"
"$HPCC" daemon status >status.out
check "daemon status after stop exits 3" test $? = 3
check "daemon status after stop says 'no daemon running'" grep -qx "no daemon running" status.out

# ---- socket under $XDG_RUNTIME_DIR ---------------------------------------
mkdir -m 700 "$WORK/xdg"
XSOCK=$WORK/xdg/hpcc/$(fnv1a_hex "$HPCC_DIR").sock
rm -f a.o
XDG_RUNTIME_DIR=$WORK/xdg "$HPCC" gcc -O2 -c a.c -o a.o
same plain.o a.o "XDG_RUNTIME_DIR: object == plain"
check "XDG_RUNTIME_DIR: socket is \$XDG_RUNTIME_DIR/hpcc/<hash of cache dir>.sock" test -S "$XSOCK"
check "XDG_RUNTIME_DIR: socket mode is 0600 (got $(mode_of "$XSOCK"))" test "$(mode_of "$XSOCK")" = 600
check "XDG_RUNTIME_DIR: \$XDG_RUNTIME_DIR/hpcc is mode 0700 (got $(mode_of "$WORK/xdg/hpcc"))" \
  test "$(mode_of "$WORK/xdg/hpcc")" = 700
check "XDG_RUNTIME_DIR: no socket in the cache dir" test ! -e "$SOCK"
xpid=$(XDG_RUNTIME_DIR=$WORK/xdg "$HPCC" daemon status | sed -n 's/^pid //p')
check "XDG_RUNTIME_DIR: daemon status shows a pid ('$xpid')" test -n "$xpid"
XDG_RUNTIME_DIR=$WORK/xdg "$HPCC" daemon stop >/dev/null
check "XDG_RUNTIME_DIR: daemon stop stops it" wait_until 3 gone "$xpid"
check "XDG_RUNTIME_DIR: its socket is removed" test ! -e "$XSOCK"

# ---- idle timeout --------------------------------------------------------
HPCC_DAEMON_IDLE_TIMEOUT=2 "$HPCC" daemon start >/dev/null
ipid=$(daemon_pid)                      # the last request it gets
t0=$(date +%s%N)
check "idle timeout 2: daemon started ('$ipid')" test -n "$ipid"
wait_until 8 test ! -e "$SOCK"
ms_sock=$((($(date +%s%N) - t0) / 1000000))
wait_until 8 gone "$ipid"
ms=$((($(date +%s%N) - t0) / 1000000))
check "idle timeout 2: stops listening within 4 s of the last request (took $ms_sock ms)" test "$ms_sock" -le 4000
check "idle timeout 2: not before 1 s (took $ms_sock ms)" test "$ms_sock" -ge 1000
check "idle timeout 2: the process exits within 4 s (took $ms ms)" test "$ms" -le 4000
# A compile in progress is not idleness: a 3 s compile with a 1 s timeout.
mkdir -p "$WORK/slowbin"
cat >"$WORK/slowbin/gcc" <<'EOF'
#!/bin/sh
# A slow gcc: compiles (-c) wait SLOW_SECONDS first.
case " $* " in *" -c "*) sleep "${SLOW_SECONDS:-2}" ;; esac
exec /usr/bin/gcc "$@"
EOF
chmod +x "$WORK/slowbin/gcc"
zero_stats
rm -f a.o
HPCC_DAEMON_IDLE_TIMEOUT=1 SLOW_SECONDS=3 PATH="$WORK/slowbin:$PATH" "$HPCC" gcc -O2 -c a.c -o a.o
check "idle timeout 1, 3 s compile: exit status 0" test $? = 0
same plain.o a.o "idle timeout 1, 3 s compile: object == plain"
expect_stat miss 1 "idle timeout 1, 3 s compile: the daemon stayed for it (miss = 1)"
expect_stat fallback 0 "idle timeout 1, 3 s compile: no fallback"
stop_daemon

# ---- stop then start at once (a restart) ---------------------------------
"$HPCC" daemon start >/dev/null
spid=$(daemon_pid)
"$HPCC" daemon stop >/dev/null
"$HPCC" daemon start >restart.out 2>&1
echo "# note: 'daemon start' right after 'daemon stop' said: $(tr '\n' ' ' <restart.out)"
wait_until 3 gone "$spid"
sleep 0.5
npid=$(daemon_pid)
check "daemon stop; daemon start: a new daemon runs afterwards (old $spid, now '$npid')" \
  test -n "$npid" -a "$npid" != "$spid"
stop_daemon

# ---- another uid is refused ----------------------------------------------
if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null || ! id nobody >/dev/null 2>&1; then
  echo "ok - $TEST_NAME: another uid is refused # SKIP needs root, setpriv and user nobody"
else
  "$HPCC" daemon start >/dev/null
  rpid=$(daemon_pid)
  check "daemon for the uid test runs ('$rpid')" test -n "$rpid"
  install -m 755 "$HPCC" "$PUB/hpcc"
  : >"$PUB/empty.ini"
  chmod 644 "$PUB/empty.ini"
  NOBODY_UID=$(id -u nobody)
  as_nobody() { # runs hpcc as nobody against our daemon's socket
    setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups \
      env -i PATH=/usr/bin:/bin HPCC_CONFIG="$PUB/empty.ini" HPCC_DIR="$PUB/nobody-cache" \
      HPCC_SOCKET="$SOCK" "$PUB/hpcc" "$@"
  }
  refusals() { grep -c "refused a connection from uid $NOBODY_UID" "$HPCC_LOG_FILE"; }
  refused_once() { [ "$(refusals)" = 1 ]; }
  chmod 711 "$WORK" "$HPCC_DIR"        # let nobody reach the socket itself
  as_nobody daemon status >nobody1.out 2>nobody1.err
  st=$?
  check "socket mode 0600 keeps nobody out (exit $st, no answer)" test "$st" != 0 -a ! -s nobody1.out
  check "socket mode 0600: the connection never reached the daemon" test "$(refusals)" = 0
  echo "# note: nobody vs 0600 socket: $(tr '\n' ' ' <nobody1.err)"
  chmod 666 "$SOCK"                    # now only SO_PEERCRED stands in the way
  as_nobody daemon status >nobody2.out 2>nobody2.err
  st=$?
  chmod 600 "$SOCK"
  chmod 700 "$WORK" "$HPCC_DIR"
  check "world-writable socket: nobody gets no answer (exit $st)" test "$st" != 0
  check "world-writable socket: nothing of the daemon's status leaks" test ! -s nobody2.out
  echo "# note: nobody vs 0666 socket: $(tr '\n' ' ' <nobody2.err)"
  check "the daemon logs that it refused uid $NOBODY_UID" wait_until 3 refused_once
  check "the daemon still serves us after refusing ('$(daemon_pid)')" test "$(daemon_pid)" = "$rpid"
  stop_daemon
fi

# ---- 20 concurrent first compiles, no daemon running ----------------------
for i in $(seq 1 20); do
  printf '#include <stdint.h>\nint64_t f%d(int64_t x) { return x * %d + 1; }\n' "$i" "$i" >"c$i.c"
done
touch -d '10 seconds ago' c*.c
for i in $(seq 1 20); do gcc -O2 -c "c$i.c" -o "plain-c$i.o"; done
check "no daemon before the concurrent start" test -z "$(daemons_for_cache)"
zero_stats
pids=()
for i in $(seq 1 20); do
  "$HPCC" gcc -O2 -c "c$i.c" -o "c$i.o" 2>"c$i.err" &
  pids+=($!)
done
fails=0
for p in "${pids[@]}"; do wait "$p" || fails=$((fails + 1)); done
check "20 concurrent first compiles: all exit 0 ($fails failed)" test "$fails" = 0
bad=0
for i in $(seq 1 20); do cmp -s "plain-c$i.o" "c$i.o" || bad=$((bad + 1)); done
check "20 concurrent first compiles: all 20 objects == plain ($bad differ)" test "$bad" = 0
check "20 concurrent first compiles: stderr empty" test -z "$(cat c*.err)"
sleep 1                                 # losers of the start race exit quietly
mapfile -t dpids < <(daemons_for_cache)
check "exactly one daemon process for the cache dir (got ${#dpids[@]}: ${dpids[*]})" test "${#dpids[@]}" = 1
check "it is the one daemon status names" test "${dpids[0]:-x}" = "$(daemon_pid)"
expect_stat miss 20 "20 concurrent first compiles: miss = 20"
expect_stat fallback 0 "20 concurrent first compiles: no fallback"
for i in $(seq 1 20); do "$HPCC" gcc -O2 -c "c$i.c" -o "c$i.o"; done
expect_stat direct_hit 20 "then 20 hits"

# ---- identical in-flight compiles are merged -------------------------------
cat >m.c <<'SRC'
#include <stdio.h>
int m(void) { return puts("merged"); }
SRC
touch -d '10 seconds ago' m.c
gcc -O2 -MD -c m.c -o m.o && mv m.o plain-m.o && mv m.d plain-m.d
zero_stats
pids=()
for i in $(seq 1 10); do
  SLOW_SECONDS=2 PATH="$WORK/slowbin:$PATH" "$HPCC" gcc -O2 -MD -c m.c -o m.o 2>"m$i.err" &
  pids+=($!)
done
fails=0
for p in "${pids[@]}"; do wait "$p" || fails=$((fails + 1)); done
check "10 identical parallel compiles: all exit 0 ($fails failed)" test "$fails" = 0
same plain-m.o m.o "10 identical parallel compiles: object == plain"
same plain-m.d m.d "10 identical parallel compiles: .d == plain"
check "10 identical parallel compiles: stderr empty" test -z "$(cat m*.err)"
miss=$(stat miss) hit=$(stat direct_hit) merged=$(stat merged_inflight)
echo "# note: identical in-flight: miss=$miss direct_hit=$hit merged_inflight=$merged"
check "10 identical parallel compiles: compiled once (miss = 1, got $miss)" test "$miss" = 1
check "10 identical parallel compiles: miss + direct_hit = 10 (got $miss + $hit)" test $((miss + hit)) = 10
check "10 identical parallel compiles: some merged with the in-flight one (got $merged)" test "$merged" -ge 1
check "merged_inflight counts hits (merged $merged <= direct_hit $hit)" test "$merged" -le "$hit"
expect_stat fallback 0 "10 identical parallel compiles: no fallback"
exit 0
