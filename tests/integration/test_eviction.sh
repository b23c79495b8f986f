#!/usr/bin/env bash
# Size limit and LRU eviction: with HPCC_MAX_SIZE small, the cache stays
# under it, the least recently used entries go first (a hit refreshes an
# entry), and `hpcc clean` evicts on demand or empties the cache.
. "$(dirname "$0")/lib.sh"

MAX_K=200
export HPCC_MAX_SIZE=${MAX_K}K
MAX=$((MAX_K * 1024))
N=30                                     # sources of ~8 KB of object each

# ---- helpers (local to this file) ---------------------------------------
entry_bytes() { # bytes of entry files on disk
  find "$HPCC_DIR/store" -type f \( -name '*.r' -o -name '*.m' \) -printf '%s\n' 2>/dev/null |
    awk '{s += $1} END {print s + 0}'
}
entry_count() { find "$HPCC_DIR/store" -type f \( -name '*.r' -o -name '*.m' \) 2>/dev/null | wc -l; }
hc() { "$HPCC" gcc -O2 -c "s$1.c" -o "s$1.o"; }      # compile source N
# hit_or_miss DESC N WANT: compiles source N, says whether it was a hit.
hit_or_miss() {
  local desc=$1 n=$2 want=$3 h0 m0 h1 m1 got
  h0=$(stat direct_hit) m0=$(stat miss)
  rm -f "s$n.o"
  hc "$n"
  same "plain-s$n.o" "s$n.o" "$desc: object == plain"
  h1=$(stat direct_hit) m1=$(stat miss)
  if [ $((h1 - h0)) = 1 ] && [ "$m1" = "$m0" ]; then got=hit
  elif [ $((m1 - m0)) = 1 ] && [ "$h1" = "$h0" ]; then got=miss
  else got="hits +$((h1 - h0)), misses +$((m1 - m0))"; fi
  check "$desc: a $want (got: $got)" test "$got" = "$want"
}
# bounded DESC: the cache is within the limit, and the stats agree with the disk.
bounded() {
  local size files disk count
  size=$(stat cache_size) files=$(stat cache_files)
  disk=$(entry_bytes) count=$(entry_count)
  check "$1: cache_size $size <= max $MAX" test "${size:-x}" -le "$MAX"
  check "$1: bytes on disk $disk <= max $MAX" test "$disk" -le "$MAX"
  check "$1: cache_size = bytes on disk ($size vs $disk)" test "$size" = "$disk"
  check "$1: cache_files = entry files on disk ($files vs $count)" test "$files" = "$count"
}

P=$(new_project eviction)
cd "$P" || exit 1
for i in $(seq 1 "$N"); do
  {
    printf 'static const unsigned char blob%d[8000] __attribute__((used)) = {' "$i"
    od -An -tu1 -v -N8000 /dev/urandom | tr -s ' \n' ',' | sed 's/^,//; s/,$//'
    printf '};\nint get%d(int k) { return blob%d[k %% 8000]; }\n' "$i" "$i"
  } >"s$i.c"
done
touch -d '1 minute ago' s*.c
for i in $(seq 1 "$N"); do gcc -O2 -c "s$i.c" -o "plain-s$i.o" || exit 1; done
echo "# note: one object is $(command stat -c %s plain-s1.o) bytes; limit $MAX bytes"

# scenario NAME: the LRU scenario against an empty cache, in the current mode.
scenario() {
  local name=$1 i
  "$HPCC" clean --all >/dev/null
  zero_stats
  for i in $(seq 1 16); do hc "$i"; sleep 0.01; done   # 16 entries: under the limit
  expect_stat cleanups 0 "$name: no cleanup while under the limit"
  hit_or_miss "$name: s1 again (refreshes it)" 1 hit
  for i in $(seq 17 "$N"); do hc "$i"; sleep 0.01; done
  "$HPCC" stats >/dev/null                               # flushes the daemon
  local c; c=$(stat cleanups)
  check "$name: cleanups > 0 (got $c)" test "${c:-0}" -gt 0
  check "$name: evicted_files > 0 (got $(stat evicted_files))" test "$(stat evicted_files)" -gt 0
  bounded "$name"
  hit_or_miss "$name: most recently compiled (s$N)" "$N" hit
  hit_or_miss "$name: s1, used after s2..s16" 1 hit
  hit_or_miss "$name: the oldest unused (s2)" 2 miss
  "$HPCC" stats >/dev/null
  bounded "$name, after more compiles"
}
scenario "daemon"
"$HPCC" daemon stop >/dev/null
HPCC_DAEMON=false scenario "in-process"

# ---- hpcc clean --------------------------------------------------------------
for i in $(seq 1 10); do hc "$i"; done
"$HPCC" stats >/dev/null
before=$(entry_count)
c0=$(stat cleanups)
"$HPCC" clean --max-size 100K >clean.out 2>clean.err
check "clean --max-size 100K: exit status 0" test $? = 0
echo "# note: clean --max-size 100K said: $(cat clean.out)"
size=$(stat cache_size)
check "clean --max-size 100K: cache_size $size <= 90% of 100K (92160)" test "${size:-x}" -le 92160
check "clean --max-size 100K: on disk too ($(entry_bytes))" test "$(entry_bytes)" -le 92160
check "clean --max-size 100K: cache_size = bytes on disk" test "$size" = "$(entry_bytes)"
check "clean --max-size 100K: something was evicted ($before -> $(entry_count) files)" test "$(entry_count)" -lt "$before"
expect_stat cleanups $((c0 + 1)) "clean --max-size 100K: cleanups + 1"

"$HPCC" clean --max-size foo >clean.out 2>clean.err
st=$?
check "clean --max-size foo: exit status 2 (got $st)" test "$st" = 2
check "clean --max-size foo: one line on stderr (got $(wc -l <clean.err))" test "$(wc -l <clean.err)" = 1
check "clean --max-size foo: the error starts 'hpcc: '" test "$(head -c 6 clean.err)" = "hpcc: "
check "clean --max-size foo: nothing on stdout" test ! -s clean.out
check "clean --max-size foo: nothing evicted" test "$(entry_count)" -gt 0
"$HPCC" clean --max-size >clean.out 2>clean.err
st=$?
check "clean --max-size (no value): exit status 2 (got $st)" test "$st" = 2
check "clean --max-size (no value): one line on stderr" test "$(wc -l <clean.err)" = 1

"$HPCC" clean --max-size 0 >clean.out 2>clean.err
check "clean --max-size 0: exit status 0" test $? = 0
check "clean --max-size 0: no entry files left (got $(entry_count))" test "$(entry_count)" = 0
expect_stat cache_size 0 "clean --max-size 0: cache_size = 0"
expect_stat cache_files 0 "clean --max-size 0: cache_files = 0"
hit_or_miss "after clean --max-size 0: s3" 3 miss

for i in 4 5 6; do hc "$i"; done
"$HPCC" clean --all >clean.out 2>clean.err
check "clean --all: exit status 0" test $? = 0
check "clean --all: no entry files left (got $(entry_count))" test "$(entry_count)" = 0
expect_stat cache_size 0 "clean --all: cache_size = 0"
expect_stat cache_files 0 "clean --all: cache_files = 0"
hit_or_miss "after clean --all: s4" 4 miss
hit_or_miss "after clean --all: s4 again" 4 hit
exit 0
