#!/usr/bin/env bash
# Masquerade: symlinks named gcc, cc and g++ pointing at hpcc, first in PATH.
# Compiles go through hpcc, hpcc finds the real compiler further along PATH
# and never runs itself as "the compiler" (the masquerade directory twice in
# PATH, a second copy of hpcc in another masquerade directory, a masquerade
# link called by its full path); unknown names fail like a shell would.
. "$(dirname "$0")/lib.sh"

HPCC_ABS=$(readlink -f "$HPCC")
ORIG_PATH=$PATH
MASQ=$WORK/masq
MASQ2=$WORK/masq2
LIMIT=20                                # seconds; a correct compile takes well under 1

# ---- helpers (local to this file) ---------------------------------------
# A compiler that finds itself would loop (exec or spawn) forever. Those
# processes are ours: break the loop by removing the links, then end every
# process running from this test's directory, or serving its cache, by pid.
kill_strays() {
  local p c pids
  rm -rf "$MASQ" "$MASQ2"
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    pids=()
    for p in /proc/[0-9]*; do
      c=$( { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null)
      case $c in
        "$WORK"/*) pids+=("${p#/proc/}") ;;
        "hpcc daemon run ")
          { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -qxF "HPCC_DIR=$HPCC_DIR" && pids+=("${p#/proc/}") ;;
      esac
    done
    [ "${#pids[@]}" = 0 ] && return 0
    kill -9 "${pids[@]}" 2>/dev/null
    sleep 0.3
  done
}
masq_cleanup() {
  PATH=$ORIG_PATH
  kill_strays
  cleanup
}
trap masq_cleanup EXIT

# through DESC WANT(miss|hit) PLAIN OUT PATHVALUE COMMAND...: runs COMMAND
# with PATH=PATHVALUE under a time limit; exit 0, OUT == PLAIN, and exactly
# one more miss or one more hit (two misses would mean hpcc ran hpcc).
through() {
  local desc=$1 want=$2 plain=$3 out=$4 path=$5 st m0 h0 m1 h1 got why=""
  shift 5
  rm -f "$out"
  m0=$(stat miss) h0=$(stat direct_hit)
  PATH=$path timeout -k 2 "$LIMIT" "$@" 2>"$WORK/through.err"
  st=$?
  [ "$st" = 124 ] || [ "$st" = 137 ] && why=", killed after ${LIMIT} s: hpcc looped"
  check "$desc: exit status 0 (got $st$why)" test "$st" = 0
  same "$plain" "$out" "$desc: object == plain"
  check "$desc: stderr empty" test ! -s "$WORK/through.err"
  m1=$(stat miss) h1=$(stat direct_hit)
  got="misses +$((m1 - m0)), hits +$((h1 - h0))"
  if [ "$want" = miss ]; then
    check "$desc: exactly one miss counted ($got)" test $((m1 - m0)) = 1 -a "$h1" = "$h0"
  else
    check "$desc: exactly one hit counted ($got)" test $((h1 - h0)) = 1 -a "$m1" = "$m0"
  fi
}

P=$(new_project masquerade)
cd "$P" || exit 1
echo 'int f(int x) { return x * 5; }' >a.c
printf '#include <vector>\nint g(int n) { std::vector<int> v(n, 2); return (int)v.size() * v[0]; }\n' >b.cpp
touch -d '10 seconds ago' a.c b.cpp
for o in a a-cc a-2 a-3 a-4 a-5 a-w a-h abs abs2; do /usr/bin/gcc -O2 -c a.c -o "plain-$o.o"; done
/usr/bin/cc -O2 -c a.c -o plain-a-cc.o
/usr/bin/g++ -O2 -c b.cpp -o plain-b.o

mkdir -p "$MASQ" "$MASQ2"
for c in gcc cc g++ nosuchcc; do ln -s "$HPCC_ABS" "$MASQ/$c"; done
cp "$HPCC_ABS" "$MASQ2/hpcc"
for c in gcc cc g++; do ln -s hpcc "$MASQ2/$c"; done
M=$MASQ:$ORIG_PATH
zero_stats

# ---- gcc, cc, g++ through the links ----------------------------------------
check "PATH finds the masquerade gcc first" test "$(PATH=$M command -v gcc)" = "$MASQ/gcc"
through "masquerade gcc (miss)" miss plain-a.o a.o "$M" gcc -O2 -c a.c -o a.o
through "masquerade gcc (hit)" hit plain-a.o a.o "$M" gcc -O2 -c a.c -o a.o
through "masquerade cc (miss)" miss plain-a-cc.o a-cc.o "$M" cc -O2 -c a.c -o a-cc.o
through "masquerade cc (hit)" hit plain-a-cc.o a-cc.o "$M" cc -O2 -c a.c -o a-cc.o
through "masquerade g++ (miss)" miss plain-b.o b.o "$M" g++ -O2 -c b.cpp -o b.o
through "masquerade g++ (hit)" hit plain-b.o b.o "$M" g++ -O2 -c b.cpp -o b.o

# ---- hpcc never takes itself for the compiler --------------------------------
through "masquerade dir twice in PATH" miss plain-a-2.o a-2.o "$MASQ:$MASQ:$ORIG_PATH" \
  gcc -O2 -c a.c -o a-2.o
through "masquerade dir, then a second copy's masquerade dir" miss plain-a-3.o a-3.o \
  "$MASQ:$MASQ2:$ORIG_PATH" gcc -O2 -c a.c -o a-3.o
through "a second copy's masquerade dir first, then ours" miss plain-a-4.o a-4.o \
  "$MASQ2:$MASQ:$ORIG_PATH" gcc -O2 -c a.c -o a-4.o
through "second copy's dir twice around ours" miss plain-a-5.o a-5.o \
  "$MASQ2:$MASQ:$MASQ2:$ORIG_PATH" gcc -O2 -c a.c -o a-5.o
through "hpcc wrap -- gcc (masquerade dir in PATH)" miss plain-a-w.o a-w.o "$M" \
  "$HPCC" wrap -- gcc -O2 -c a.c -o a-w.o
through "hpcc gcc (masquerade dir in PATH)" miss plain-a-h.o a-h.o "$M" \
  "$HPCC" gcc -O2 -c a.c -o a-h.o

# A masquerade link called by its full path (as CMake records the compiler
# it found in PATH). In-process, so that a loop stays in timeout's process
# group (through the daemon it would spawn an unbounded chain).
export HPCC_DAEMON=false
LIMIT=5                                 # a loop starts ~40 processes a second: keep it short
through "masquerade link called by full path (\$MASQ/gcc -c)" miss plain-abs.o abs.o "$M" \
  "$MASQ/gcc" -O2 -c a.c -o abs.o
through "hpcc given a masquerade link's full path (hpcc \$MASQ/gcc -c)" miss plain-abs2.o abs2.o "$M" \
  "$HPCC" "$MASQ/gcc" -O2 -c a.c -o abs2.o
unset HPCC_DAEMON
LIMIT=20
kill_strays
mkdir -p "$MASQ"
ln -s "$HPCC_ABS" "$MASQ/nosuchcc"

# ---- unknown compilers --------------------------------------------------------
# unknown DESC COMMAND...: exit 127 and one line on stderr, nothing compiled.
unknown() {
  local desc=$1 st
  shift
  rm -f u.o
  PATH=$M timeout -k 2 "$LIMIT" "$@" >"$WORK/u.out" 2>"$WORK/u.err"
  st=$?
  check "$desc: exit status 127 (got $st)" test "$st" = 127
  check "$desc: one line on stderr (got $(wc -l <"$WORK/u.err"))" test "$(wc -l <"$WORK/u.err")" = 1
  check "$desc: the line starts 'hpcc: ' and names the compiler" \
    grep -q '^hpcc: .*nosuchcc' "$WORK/u.err"
  check "$desc: nothing on stdout, no object" test ! -s "$WORK/u.out" -a ! -e u.o
  echo "# note: $desc: $(cat "$WORK/u.err")"
}
m0=$(stat miss) h0=$(stat direct_hit) u0=$(stat uncacheable)
unknown "masquerade link named nosuchcc" nosuchcc -c a.c -o u.o
unknown "hpcc nosuchcc" "$HPCC" nosuchcc -c a.c -o u.o
unknown "hpcc wrap -- nosuchcc" "$HPCC" wrap -- nosuchcc -c a.c -o u.o
expect_stat miss "$m0" "unknown compilers: no miss counted"
expect_stat direct_hit "$h0" "unknown compilers: no hit counted"
expect_stat uncacheable "$u0" "unknown compilers: nothing counted as uncacheable"
exit 0
