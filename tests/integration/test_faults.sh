#!/usr/bin/env bash
# hpcc never fails a build the plain compiler passes: corrupt cache entries,
# an unwritable cache directory, a daemon killed during or between compiles,
# a bad configuration file, and the in-process mode (no daemon).
. "$(dirname "$0")/lib.sh"

# ---- helpers (local to this file) ---------------------------------------
IMMUTABLE=()           # paths given chattr +i, undone before cleanup
faults_cleanup() {
  local p
  for p in "${IMMUTABLE[@]}"; do find "$p" \( -type f -o -type d \) -exec chattr -i {} + 2>/dev/null; done
  cleanup
}
trap faults_cleanup EXIT

skip() { echo "ok - $TEST_NAME: $* # SKIP"; }
daemon_pid() { "$HPCC" daemon status 2>/dev/null | sed -n 's/^pid \([0-9]*\)$/\1/p'; }
gone() { # the process has exited (a zombie not yet reaped by init counts)
  local st; st=$( { cut -d' ' -f3 "/proc/$1/stat"; } 2>/dev/null)
  [ -z "$st" ] || [ "$st" = Z ]
}
# wait_until SECONDS COMMAND...: polls every 0.1 s.
wait_until() {
  local n=$(($1 * 10)); shift
  while ((n-- > 0)); do "$@" && return 0; sleep 0.1; done
  return 1
}
# flip_byte FILE OFFSET: inverts one byte in place.
flip_byte() {
  local b; b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  printf "\\$(printf %03o $((255 - b)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
entry_files() { find "$HPCC_DIR/store" -type f \( -name '*.r' -o -name '*.m' \) | sort; }
# stderr_is_compilers DESC GOT PLAIN: GOT is PLAIN, or PLAIN plus one line
# "hpcc: warning: ..." (noted, so the report can say which).
stderr_is_compilers() {
  local d=$1 got=$2 plain=$3
  if cmp -s "$got" "$plain"; then ok "$d: stderr is exactly the compiler's"; return; fi
  if [ "$(grep -c '^hpcc: warning: ' "$got")" = 1 ] &&
     cmp -s <(grep -v '^hpcc: warning: ' "$got") "$plain"; then
    ok "$d: stderr is the compiler's plus one hpcc warning line"
    echo "# note: $d: $(grep '^hpcc: warning: ' "$got")"
    return
  fi
  not_ok "$d: stderr is not just the compiler's: $(head -c 300 "$got" | tr '\n' '|')"
}

P=$(new_project faults)
cd "$P" || exit 1
cat >a.c <<'SRC'
#include "a.h"
int twice(int x) { int unused; return A_VALUE * x * 2; }
SRC
echo '#define A_VALUE 7' >a.h
touch -d '10 seconds ago' a.c a.h
gcc -Wall -O2 -MD -c a.c -o a.o 2>plain.err || exit 1
mv a.o plain.o && mv a.d plain.d
compile() { "$HPCC" gcc -Wall -O2 -MD -c a.c -o a.o 2>"${1:-/dev/null}"; }

# ---- (a) corrupt entries ------------------------------------------------
zero_stats
compile
check "(a) first compile exit status 0" test $? = 0
same plain.o a.o "(a) miss object == plain"
mapfile -t entries < <(entry_files)
check "(a) the miss stored one manifest and one result" \
  test "${#entries[@]}" = 2 -a "$(printf '%s\n' "${entries[@]}" | grep -c '\.m$')" = 1
expect_stat miss 1 "(a) miss = 1"

# corrupt_round NAME N_MISS N_CORRUPT N_HIT MUTATOR: mutate entry files,
# compile (must pass, right object, counted corrupt), compile again (a hit).
corrupt_round() {
  local name=$1 miss=$2 corrupt=$3 hit=$4 mutate=$5 f
  for f in $(entry_files); do $mutate "$f"; done
  rm -f a.o a.d
  compile "$name.err"
  check "(a) $name: exit status 0" test $? = 0
  same plain.o a.o "(a) $name: object == plain"
  same plain.d a.d "(a) $name: .d == plain"
  same plain.err "$name.err" "(a) $name: stderr == plain"
  expect_stat corrupt_entries "$corrupt" "(a) $name: corrupt_entries = $corrupt"
  expect_stat miss "$miss" "(a) $name: counted as a miss ($miss)"
  expect_stat fallback 0 "(a) $name: no fallback"
  rm -f a.o a.d
  compile
  same plain.o a.o "(a) $name: next compile's object == plain"
  same plain.d a.d "(a) $name: next compile's .d == plain"
  expect_stat direct_hit "$hit" "(a) $name: next compile is a hit (entry rewritten)"
  check "(a) $name: two entry files again" test "$(entry_files | wc -l)" = 2
}
flip_middle() { flip_byte "$1" $(($(command stat -c %s "$1") / 2)); }
flip_last() { flip_byte "$1" $(($(command stat -c %s "$1") - 1)); }
flip_magic() { flip_byte "$1" 0; }
truncate_half() { truncate -s $(($(command stat -c %s "$1") / 2)) "$1"; }
truncate_zero() { truncate -s 0 "$1"; }
flip_result_only() { case $1 in *.r) flip_middle "$1" ;; esac; }
garbage_same_size() { head -c "$(command stat -c %s "$1")" /dev/urandom >"$1"; }

corrupt_round "byte flipped mid-file" 2 1 1 flip_middle
corrupt_round "last byte flipped" 3 2 2 flip_last
corrupt_round "magic flipped" 4 3 3 flip_magic
corrupt_round "truncated to half" 5 4 4 truncate_half
corrupt_round "truncated to zero" 6 5 5 truncate_zero
corrupt_round "result entry only corrupted" 7 6 6 flip_result_only
corrupt_round "random bytes of the same size" 8 7 7 garbage_same_size

# ---- (b) unwritable cache directory --------------------------------------
# The user's view: no log file, so anything hpcc says goes to stderr.
"$HPCC" daemon stop >/dev/null 2>&1
unwritable_case() { # name dir
  local name=$1 dir=$2 t0 t1 st err
  err="b-${name//[^a-zA-Z0-9]/_}.err"
  rm -f b.o
  t0=$(date +%s%N)
  (unset HPCC_LOG_FILE; HPCC_DIR=$dir "$HPCC" gcc -Wall -O2 -c a.c -o b.o 2>"$err")
  st=$?
  t1=$(date +%s%N)
  check "(b) $name: exit status 0 (got $st)" test "$st" = 0
  same plain.o b.o "(b) $name: object == plain"
  stderr_is_compilers "(b) $name" "$err" plain.err
  # A plain compile takes well under a second here; hpcc may add little.
  check "(b) $name: no multi-second stall (took $(((t1 - t0) / 1000000)) ms, limit 2000)" \
    test $(((t1 - t0) / 1000000)) -lt 2000
}
: >"$WORK/regular-file"
unwritable_case "cache dir under a regular file" "$WORK/regular-file/cache"
unwritable_case "cache dir under /proc" "/proc/hpcc-no-such-dir/cache"
mkdir -m 0700 "$WORK/immutable-cache"
if chattr +i "$WORK/immutable-cache" 2>/dev/null; then
  IMMUTABLE+=("$WORK/immutable-cache")
  unwritable_case "chattr +i cache dir" "$WORK/immutable-cache"
  check "(b) chattr +i cache dir: still empty" test -z "$(ls -A "$WORK/immutable-cache")"
else
  skip "(b) chattr +i not supported here"
fi
# A populated cache made immutable: hits still served (or at least correct).
mkdir -m 0700 "$WORK/ro-cache"
HPCC_DIR=$WORK/ro-cache compile
ro_pid=$(HPCC_DIR=$WORK/ro-cache daemon_pid)
HPCC_DIR=$WORK/ro-cache "$HPCC" daemon stop >/dev/null 2>&1
[ -z "$ro_pid" ] || wait_until 5 gone "$ro_pid"
rm -f "$WORK/ro-cache/daemon.sock"       # chattr cannot flag a socket
if find "$WORK/ro-cache" \( -type f -o -type d \) -exec chattr +i {} + 2>/dev/null; then
  IMMUTABLE+=("$WORK/ro-cache")
  unwritable_case "populated cache made chattr -R +i" "$WORK/ro-cache"
else
  skip "(b) chattr -R +i not supported here"
fi

# ---- (c) daemon killed while a compile runs ------------------------------
mkdir -p "$WORK/slowbin"
cat >"$WORK/slowbin/gcc" <<EOF
#!/bin/sh
# A slow gcc: compiles (-c) wait 2 s first, and say when they start.
case " \$* " in *" -c "*) : >"$WORK/slow.mark"; sleep 2 ;; esac
exec /usr/bin/gcc "\$@"
EOF
chmod +x "$WORK/slowbin/gcc"
cat >slow.c <<'SRC'
#include "a.h"
int slow(int x) { return A_VALUE + x; }
SRC
touch -d '10 seconds ago' slow.c
gcc -O2 -MD -c slow.c -o slow.o && mv slow.o plain-slow.o && mv slow.d plain-slow.d
zero_stats
"$HPCC" daemon start >/dev/null
old_pid=$(daemon_pid)
check "(c) a daemon runs (pid '$old_pid')" test -n "$old_pid"
rm -f "$WORK/slow.mark" slow.o slow.d
PATH="$WORK/slowbin:$PATH" "$HPCC" gcc -O2 -MD -c slow.c -o slow.o 2>slow.err &
job=$!
if wait_until 15 test -e "$WORK/slow.mark"; then
  ok "(c) the slow compile started"
else
  not_ok "(c) the slow compile never started (no RUN through the slow gcc?)"
fi
kill -9 "$old_pid" 2>/dev/null
check "(c) daemon $old_pid killed during the compile" wait_until 5 gone "$old_pid"
wait "$job"
st=$?
check "(c) compile exit status 0 (got $st)" test "$st" = 0
same plain-slow.o slow.o "(c) object == plain"
same plain-slow.d slow.d "(c) .d == plain"
check "(c) stderr empty" test ! -s slow.err
expect_stat fallback.daemon-lost 1 "(c) counted as fallback.daemon-lost"

# ---- (d) daemon killed between compiles ----------------------------------
rm -f a.o a.d
zero_stats
compile                                 # hit or miss: makes sure a daemon runs
"$HPCC" stats >/dev/null                # flush its counters
pid1=$(daemon_pid)
check "(d) a daemon runs (pid '$pid1')" test -n "$pid1"
kill -9 "$pid1" 2>/dev/null
wait_until 5 gone "$pid1"
zero_stats
rm -f a.o a.d
compile d.err
check "(d) compile after kill -9: exit status 0" test $? = 0
same plain.o a.o "(d) object == plain"
same plain.d a.d "(d) .d == plain"
same plain.err d.err "(d) stderr == plain"
pid2=$(daemon_pid)
check "(d) a new daemon serves (old $pid1, new '$pid2')" test -n "$pid2" -a "$pid2" != "$pid1"
expect_stat direct_hit 1 "(d) the new daemon serves a hit"
expect_stat fallback 0 "(d) no fallback"

# ---- (e) bad configuration -------------------------------------------------
"$HPCC" daemon stop >/dev/null
zero_stats
printf '[cache]\nmax_sise = 1G\n' >"$WORK/bad.ini"
printf '[cache]\nmax_size = lots\n' >"$WORK/badvalue.ini"
bad_config_case() { # name config
  local name=$1 cfg=$2 st lines
  rm -f a.o a.d
  HPCC_CONFIG=$cfg "$HPCC" gcc -Wall -O2 -MD -c a.c -o a.o 2>"e.err"
  st=$?
  check "(e) $name: compile exit status 0 (got $st)" test "$st" = 0
  same plain.o a.o "(e) $name: object == plain"
  same plain.d a.d "(e) $name: .d == plain"
  lines=$(grep -c '^hpcc: warning: ' e.err)
  check "(e) $name: exactly one 'hpcc: warning:' line (got $lines)" test "$lines" = 1
  if cmp -s <(grep -v '^hpcc: warning: ' e.err) plain.err; then
    ok "(e) $name: the rest of stderr is the compiler's"
  else
    not_ok "(e) $name: stderr has more than the warning: $(tr '\n' '|' <e.err | head -c 300)"
  fi
  echo "# note: (e) $name: $(grep '^hpcc: warning: ' e.err)"
  HPCC_CONFIG=$cfg "$HPCC" stats >e.out 2>e.err
  st=$?
  check "(e) $name: hpcc stats exits non-zero (got $st)" test "$st" != 0
  check "(e) $name: hpcc stats prints a one-line error" test "$(wc -l <e.err)" = 1 -a "$(head -c 6 e.err)" = "hpcc: "
  check "(e) $name: hpcc stats prints nothing on stdout" test ! -s e.out
}
bad_config_case "unknown key" "$WORK/bad.ini"
HPCC_CONFIG=$WORK/bad.ini "$HPCC" gcc -O2 -c a.c -o a.o 2>e2.err
check "(e) unknown key: the warning names file, line and key" grep -q 'bad.ini:2:.*max_sise' e2.err
bad_config_case "bad value" "$WORK/badvalue.ini"
# README: a bad config "runs the real compiler instead and is counted under
# Fallbacks" (3 compiles above ran with a bad config).
expect_stat fallback.config-error 3 "(e) bad-config compiles counted as fallback.config-error"
check "(e) no daemon was started by a bad-config compile" test -z "$(daemon_pid)"

# ---- (f) HPCC_DAEMON=false: in-process ------------------------------------
"$HPCC" daemon stop >/dev/null
"$HPCC" clean --all >/dev/null
zero_stats
rm -f a.o a.d
HPCC_DAEMON=false compile f1.err
check "(f) in-process miss: exit status 0" test $? = 0
same plain.o a.o "(f) in-process miss: object == plain"
same plain.d a.d "(f) in-process miss: .d == plain"
same plain.err f1.err "(f) in-process miss: stderr == plain"
expect_stat miss 1 "(f) miss = 1"
expect_stat direct_hit 0 "(f) direct_hit = 0"
rm -f a.o a.d
HPCC_DAEMON=false compile f2.err
same plain.o a.o "(f) in-process hit: object == plain"
same plain.d a.d "(f) in-process hit: .d == plain"
same plain.err f2.err "(f) in-process hit: warning replayed"
expect_stat miss 1 "(f) still miss = 1"
expect_stat direct_hit 1 "(f) direct_hit = 1"
expect_stat files_stored 1 "(f) files_stored = 1"
"$HPCC" daemon status >/dev/null 2>&1
check "(f) no daemon was started (daemon status exits 3)" test $? = 3
exit 0
