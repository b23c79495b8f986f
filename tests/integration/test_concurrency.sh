#!/usr/bin/env bash
# A real parallel build: 300 sources sharing headers, built by make -j8
# through hpcc (misses, then hits after make clean), every object compared
# with a plain build's; then two copies of the tree built at once against
# one cache.
. "$(dirname "$0")/lib.sh"

N=300                                   # sources, main.c included

# ---- helpers (local to this file) ---------------------------------------
# compare_tree DIR DESC: every object and .d of DIR equals the plain build's.
compare_tree() {
  local dir=$1 desc=$2 f n=0 bad=0 missing=0 first=""
  for f in "$PLAIN"/obj/*.o "$PLAIN"/obj/*.d; do
    n=$((n + 1))
    if [ ! -e "$dir/obj/${f##*/}" ]; then
      missing=$((missing + 1)); first=${first:-${f##*/}}
    elif ! cmp -s "$f" "$dir/obj/${f##*/}"; then
      bad=$((bad + 1)); first=${first:-${f##*/}}
    fi
  done
  check "$desc: all $N objects and $N .d files == plain ($n compared, $bad differ, $missing missing${first:+, first $first})" \
    test "$n" = $((2 * N)) -a "$bad" = 0 -a "$missing" = 0
  same "$PLAIN/prog.out" <("$dir/prog") "$desc: the program's output == plain"
}
count_entries() { find "$HPCC_DIR/store" -type f -name "*.$1" | wc -l; }
# stats_line: a few counters, for the log.
stats_line() {
  echo "# stats: miss=$(stat miss) direct_hit=$(stat direct_hit) merged=$(stat merged_inflight)" \
    "fallback=$(stat fallback) uncacheable=$(stat uncacheable) corrupt=$(stat corrupt_entries)"
}
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

# ---- the tree -------------------------------------------------------------
T=$(new_project tree)
mkdir -p "$T/src" "$T/include"
cat >"$T/include/common.h" <<'EOF'
#ifndef COMMON_H
#define COMMON_H
#include <stdint.h>
#define SCALE 3
static inline int64_t mix(int64_t a, int64_t b) { return a * 31 + b * SCALE; }
#endif
EOF
cat >"$T/include/util.h" <<'EOF'
#ifndef UTIL_H
#define UTIL_H
#include "common.h"
#define CLAMP(x, lo, hi) ((x) < (lo) ? (lo) : (x) > (hi) ? (hi) : (x))
#endif
EOF
{
  echo '#include <stdio.h>'
  echo '#include "common.h"'
  for i in $(seq 1 $((N - 1))); do printf 'int64_t f%03d(int64_t);\n' "$i"; done
  echo 'int main(void) { int64_t s = 0;'
  for i in $(seq 1 $((N - 1))); do printf ' s = mix(s, f%03d(%d));\n' "$i" "$i"; done
  echo ' printf("%lld\n", (long long)s); return 0; }'
} >"$T/src/main.c"
for i in $(seq 1 $((N - 1))); do
  printf '#include "common.h"\n#include "util.h"\nint64_t f%03d(int64_t x) { int64_t k = %d; return CLAMP(mix(x, k), -%d, %d * 1000); }\n' \
    "$i" "$i" "$i" "$i" >"$T/src/f$(printf %03d "$i").c"
done
cat >"$T/Makefile" <<EOF
CC = $HPCC gcc
CFLAGS = -O2 -Wall -Iinclude
SRCS = \$(wildcard src/*.c)
OBJS = \$(SRCS:src/%.c=obj/%.o)
all: prog
prog: \$(OBJS)
	\$(CC) -o \$@ \$(OBJS)
obj/%.o: src/%.c | obj
	\$(CC) \$(CFLAGS) -MMD -c \$< -o \$@
obj:
	mkdir -p obj
clean:
	rm -rf obj prog
-include \$(OBJS:.o=.d)
EOF
find "$T" -type f -exec touch -d '1 minute ago' {} +
check "generated $N sources" test "$(ls "$T"/src/*.c | wc -l)" = "$N"

# The plain build, the reference.
PLAIN=$WORK/plain
t0=$(date +%s%N)
make -C "$T" -j2 CC=gcc >/dev/null 2>"$WORK/plain.err" || { not_ok "plain build failed"; exit 0; }
mkdir -p "$PLAIN"
mv "$T/obj" "$PLAIN/obj"
mv "$T/prog" "$PLAIN/prog"
"$PLAIN/prog" >"$PLAIN/prog.out"
echo "# note: plain build took $(ms_since "$t0") ms"

# ---- make -j8: misses, then hits ------------------------------------------
zero_stats
t0=$(date +%s%N)
make -C "$T" -j8 >/dev/null 2>"$WORK/miss.err"
check "make -j8 (cold cache): exit status 0" test $? = 0
echo "# note: cold build took $(ms_since "$t0") ms"
same "$WORK/plain.err" "$WORK/miss.err" "make -j8 (cold cache): stderr == plain build's"
compare_tree "$T" "make -j8 (cold cache)"
stats_line
expect_stat miss "$N" "make -j8 (cold cache): miss = $N"
expect_stat direct_hit 0 "make -j8 (cold cache): direct_hit = 0"
expect_stat uncacheable.not-compile 1 "make -j8 (cold cache): the link counted as not-compile"
expect_stat fallback 0 "make -j8 (cold cache): no fallback"
expect_stat files_stored "$N" "make -j8 (cold cache): files_stored = $N"
check "store holds $N results (got $(count_entries r))" test "$(count_entries r)" = "$N"
check "store holds $N manifests (got $(count_entries m))" test "$(count_entries m)" = "$N"

make -C "$T" clean >/dev/null
zero_stats
t0=$(date +%s%N)
make -C "$T" -j8 >/dev/null 2>"$WORK/hit.err"
check "make -j8 after make clean: exit status 0" test $? = 0
echo "# note: warm build took $(ms_since "$t0") ms"
same "$WORK/plain.err" "$WORK/hit.err" "make -j8 after make clean: stderr == plain build's"
compare_tree "$T" "make -j8 after make clean"
stats_line
expect_stat direct_hit "$N" "make -j8 after make clean: direct_hit = $N"
expect_stat miss 0 "make -j8 after make clean: miss = 0"
expect_stat fallback 0 "make -j8 after make clean: no fallback"

# Every stored entry decoded (all 300 were hits) and none was corrupt.
expect_stat corrupt_entries 0 "make -j8 after make clean: corrupt_entries = 0"
# And each entry file by itself: every result and manifest has the header
# magic, and a byte count that matches what the stats say.
bad=0
while read -r f; do [ "$(head -c 4 "$f")" = HPCE ] || bad=$((bad + 1)); done \
  < <(find "$HPCC_DIR/store" -type f \( -name '*.r' -o -name '*.m' \))
check "every entry file starts with the store magic ($bad do not)" test "$bad" = 0
disk=$(find "$HPCC_DIR/store" -type f \( -name '*.r' -o -name '*.m' \) -printf '%s\n' | awk '{s += $1} END {print s + 0}')
expect_stat cache_size "$disk" "cache_size = bytes of entry files on disk ($disk)"
expect_stat cache_files $((2 * N)) "cache_files = $((2 * N))"

# ---- two copies of the tree at once, one cache -----------------------------
make -C "$T" clean >/dev/null
cp -a "$T" "$WORK/copy1"
cp -a "$T" "$WORK/copy2"
# Evict the least recently used half of the cache, so that the two builds
# race on about 150 misses (concurrent stores of the same keys) and share
# about 150 hits.
size=$(stat cache_size)
"$HPCC" clean --max-size $((size * 10 / 18)) >/dev/null
r_left=$(count_entries r) m_left=$(count_entries m)
uncached=$((N - (r_left < m_left ? r_left : m_left)))  # at least this many lost an entry file
at_most=$((2 * N - r_left - m_left))                   # at most this many did
echo "# note: after evicting half: $r_left results, $m_left manifests left"
check "half the cache evicted ($r_left results left, between 1 and $((N - 1)))" \
  test "$r_left" -gt 0 -a "$r_left" -lt "$N"
zero_stats
t0=$(date +%s%N)
make -C "$WORK/copy1" -j4 >/dev/null 2>"$WORK/copy1.err" &
j1=$!
make -C "$WORK/copy2" -j4 >/dev/null 2>"$WORK/copy2.err" &
j2=$!
wait "$j1"; s1=$?
wait "$j2"; s2=$?
echo "# note: two concurrent builds took $(ms_since "$t0") ms"
check "two trees at once: both make -j4 exit 0 ($s1, $s2)" test "$s1" = 0 -a "$s2" = 0
same "$WORK/plain.err" "$WORK/copy1.err" "two trees at once: copy 1 stderr == plain build's"
same "$WORK/plain.err" "$WORK/copy2.err" "two trees at once: copy 2 stderr == plain build's"
compare_tree "$WORK/copy1" "two trees at once, copy 1"
compare_tree "$WORK/copy2" "two trees at once, copy 2"
stats_line
miss=$(stat miss) hit=$(stat direct_hit)
check "two trees at once: miss + direct_hit = $((2 * N)) (got $miss + $hit)" test $((miss + hit)) = $((2 * N))
check "two trees at once: every evicted source compiled (miss $miss >= $uncached)" test "$miss" -ge "$uncached"
check "two trees at once: cached sources not compiled (miss $miss <= 2 x $at_most)" \
  test "$miss" -le $((2 * at_most))
expect_stat fallback 0 "two trees at once: no fallback"
expect_stat corrupt_entries 0 "two trees at once: corrupt_entries = 0"
check "two trees at once: store holds $N results (got $(count_entries r))" test "$(count_entries r)" = "$N"
check "two trees at once: store holds $N manifests (got $(count_entries m))" test "$(count_entries m)" = "$N"
# The shared entries serve the original tree too (root-relative keys).
make -C "$T" clean >/dev/null
zero_stats
make -C "$T" -j8 >/dev/null 2>&1
compare_tree "$T" "original tree from the copies' entries"
expect_stat direct_hit "$N" "original tree from the copies' entries: direct_hit = $N"
exit 0
