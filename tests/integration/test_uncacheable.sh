#!/usr/bin/env bash
# Commands hpcc must not cache run the real compiler untouched: the same
# files (names and bytes), stdout, stderr and exit status as the plain
# command, nothing stored, and exactly one `uncacheable.<reason>` counted.
# They run under a project root with -g where it matters, so that an added
# -ffile-prefix-map (hpcc's, for cacheable compiles) would show.
. "$(dirname "$0")/lib.sh"

# ---- helpers of this test ---------------------------------------------------

settle() { sleep 0.1; }
differ() { ! cmp -s "$1" "$2"; }
files_here() { find . -type f ! -path './.hpcc' | LC_ALL=C sort; }

# uc_case NAME REASON COMPILER ARGS...
#   Runs the command plainly and through hpcc in the cwd, from the same
#   starting files (stdin from $UC_STDIN, default /dev/null), and compares
#   every file each wrote, stdout, stderr and status; then checks that one
#   uncacheable.REASON was counted and nothing else.
UC_STDIN=/dev/null UC_NOCMP='' N=0
uc_case() {
  local name=$1 reason=$2; shift 2
  N=$((N + 1))
  local ref="$WORK/uref/$N" f ps hs
  mkdir -p "$ref/plain"
  files_here >"$ref/before"
  "$@" <"$UC_STDIN" >"$ref/plain.out" 2>"$ref/plain.err"; ps=$?
  files_here | LC_ALL=C comm -13 "$ref/before" - >"$ref/new.plain"
  while IFS= read -r f; do
    mkdir -p "$ref/plain/$(dirname "$f")" && mv -- "$f" "$ref/plain/$f"
  done <"$ref/new.plain"
  zero_stats
  "$HPCC" "$@" <"$UC_STDIN" >"$ref/hpcc.out" 2>"$ref/hpcc.err"; hs=$?
  files_here | LC_ALL=C comm -13 "$ref/before" - >"$ref/new.hpcc"
  check "$name: exit status $hs == plain's $ps" test "$hs" = "$ps"
  same "$ref/new.plain" "$ref/new.hpcc" "$name: the same files written ($(tr '\n' ' ' <"$ref/new.plain"))"
  while IFS= read -r f; do
    # shellcheck disable=SC2053
    if [ -n "$UC_NOCMP" ] && [[ "$f" == $UC_NOCMP ]]; then continue; fi
    same "$ref/plain/$f" "$f" "$name: $f == plain"
  done <"$ref/new.plain"
  same "$ref/plain.out" "$ref/hpcc.out" "$name: stdout == plain"
  same "$ref/plain.err" "$ref/hpcc.err" "$name: stderr == plain"
  expect_stat "uncacheable.$reason" 1 "$name: uncacheable.$reason = 1"
  expect_counts "$name: nothing else counted" 0 0 1
  while IFS= read -r f; do rm -f -- "$f"; done <"$ref/new.hpcc"
}

# ---- the project --------------------------------------------------------------

P=$(new_project uncacheable)
cd "$P" || exit 1
mkdir -p inc
echo '#define H1 11' >inc/h1.h
cat >a.c <<'EOF'
#include <stdio.h>
#include "h1.h"
int a_value(void) { return H1; }
EOF
cat >b.c <<'EOF'
int b_value(void) { return 2; }
EOF
cat >main.c <<'EOF'
#include <stdio.h>
int a_value(void);
int b_value(void);
int main(void) { printf("%d\n", a_value() + b_value()); return 0; }
EOF
cat >w.c <<'EOF'
int warns(int x) { int unused; return x; }
EOF
echo '#define HDR 1' >hdr.h
cat >x.s <<'EOF'
	.text
	.globl s_func
s_func:
	ret
EOF
gcc -E -Iinc a.c -o x.i
cp x.i x.ii
cat >date.c <<'EOF'
const char *built_on(void) { return __DATE__; }
EOF
# __TIMESTAMP__ is the mtime of the file it is expanded in.
echo 'static inline const char *header_stamp(void) { return __TIMESTAMP__; }' >inc/stamp.h
printf '#include "stamp.h"\nconst char *stamp(void) { return header_stamp(); }\n' >stamp.c
echo 'const char *src_stamp(void) { return __TIMESTAMP__; }' >srcstamp.c
cat >time.c <<'EOF'
const char *built_at(void) { return __DATE__ " " __TIME__; }
EOF
touch -d '10 seconds ago' -- * inc/*
settle

# ---- the cases -------------------------------------------------------------------

uc_case "-E to a file"                   preprocess-only  gcc -g -Iinc -E a.c -o a.i
uc_case "-E to stdout"                   preprocess-only  gcc -Iinc -E a.c
uc_case "-E -dM"                         preprocess-only  gcc -Iinc -E -dM a.c
uc_case "-S -g"                          assembly-output  gcc -g -O1 -Iinc -S a.c -o a.s
uc_case "-S, default output name"        assembly-output  gcc -Iinc -S a.c
uc_case "-M alone"                       preprocess-only  gcc -Iinc -M a.c
uc_case "-MM -MF"                        preprocess-only  gcc -Iinc -MM -MF mm.d a.c
uc_case "-M with -MD (still -E)"         preprocess-only  gcc -Iinc -M -MD -c a.c -o m.o
uc_case "-fsyntax-only"                  syntax-only      gcc -Wall -fsyntax-only w.c
uc_case "two sources"                    multiple-sources gcc -g -Iinc -c a.c b.c
uc_case "stdin source -"                 stdin            gcc -g -x c -c - -o stdin.o
UC_STDIN=b.c
uc_case "stdin source - (with input)"    stdin            gcc -g -x c -c - -o stdin.o
UC_STDIN=/dev/null
uc_case "-o -"                           output-stdout    gcc -Iinc -c a.c -o -
uc_case "-save-temps"                    save-temps       gcc -g -Iinc -save-temps -c a.c -o st.o
uc_case "-save-temps=obj"                save-temps       gcc -Iinc -save-temps=obj -c a.c -o st2.o
# Two plain compiles of a precompiled header differ already: only the
# file's existence is compared.
UC_NOCMP='*.gch'
uc_case "a header as source (pch)"       pch              gcc -c hdr.h
uc_case "-x c-header -o .gch (pch)"      pch              gcc -x c-header -c hdr.h -o hdr2.h.gch
UC_NOCMP=''
uc_case ".s source"                      language         gcc -c x.s -o xs.o
uc_case "-x assembler"                   language         gcc -x assembler -c x.s -o xa.o
uc_case ".i source"                      language         gcc -g -c x.i -o xi.o
uc_case ".ii source"                     language         g++ -c x.ii -o xii.o
uc_case "-B dir"                         unsupported-option gcc -B /usr/bin/ -g -Iinc -c a.c -o bb.o
uc_case "-Bdir (joined)"                 unsupported-option gcc -B/usr/bin/ -Iinc -c a.c -o bb2.o
# Linking, with and without compiling first.
gcc -g -Iinc -c a.c -o a.o && gcc -g -c b.c -o b.o && gcc -g -c main.c -o main.o
uc_case "linking objects"                not-compile      gcc -g a.o b.o main.o -o prog
uc_case "compile and link one source"    not-compile      gcc -g -Iinc main.c a.o b.o -o prog2
uc_case "compile and link, default a.out" not-compile     gcc -Iinc a.c b.c main.c

# __DATE__ / __TIME__ / __TIMESTAMP__ without SOURCE_DATE_EPOCH.
unset SOURCE_DATE_EPOCH
# (Under the root without -g: hpcc learns of the macros only from the
# compile it runs, with its prefix map, which shows only in debug info.)
uc_case "__DATE__ in the source"         time-macros      gcc -c date.c -o date.o
uc_case "__DATE__ again: still not cached" time-macros    gcc -c date.c -o date.o
UC_NOCMP='*/time.o'   # __TIME__ may tick between the two compiles
uc_case "__TIME__ in the source"         time-macros      gcc -c time.c -o time.o
UC_NOCMP=''
uc_case "__TIMESTAMP__ in a header"      time-macros      gcc -Iinc -c stamp.c -o stamp.o
uc_case "__TIMESTAMP__ in the source"    time-macros      gcc -c srcstamp.c -o srcstamp.o
NR="$WORK/noroot"   # no project marker: no prefix map, -g must match the untouched compile
mkdir -p "$NR" && cp date.c "$NR/" && touch -d '10 seconds ago' "$NR/date.c" && settle
(cd "$NR" && uc_case "no root: __DATE__ with -g" time-macros gcc -g -c date.c -o date.o)
N=$((N + 1))
# With SOURCE_DATE_EPOCH it is cached: a miss, then a hit, outputs as plain.
export SOURCE_DATE_EPOCH=1700000000
for src in date time; do
  SOURCE_DATE_EPOCH=1700000000 gcc -c $src.c -o $src.plain.o -ffile-prefix-map="$P"=.
  zero_stats
  rm -f $src.o; "$HPCC" gcc -c $src.c -o $src.o
  same $src.plain.o $src.o "SOURCE_DATE_EPOCH set, $src.c: miss object == plain"
  expect_counts "SOURCE_DATE_EPOCH set, $src.c: a miss" 1 0 0
  rm -f $src.o; "$HPCC" gcc -c $src.c -o $src.o
  same $src.plain.o $src.o "SOURCE_DATE_EPOCH set, $src.c: hit object == plain"
  expect_counts "SOURCE_DATE_EPOCH set, $src.c: a hit" 1 1 0
done
# Another SOURCE_DATE_EPOCH is another __DATE__: not the same entry.
SOURCE_DATE_EPOCH=1600000000 gcc -c time.c -o time.plain2.o -ffile-prefix-map="$P"=.
zero_stats
rm -f time.o; SOURCE_DATE_EPOCH=1600000000 "$HPCC" gcc -c time.c -o time.o
same time.plain2.o time.o "another SOURCE_DATE_EPOCH: object == plain"
expect_counts "another SOURCE_DATE_EPOCH: a miss" 1 0 0
# __TIMESTAMP__ is the mtime of the file it is in, which SOURCE_DATE_EPOCH
# does not fix: touching that file (same contents) changes the plain object.
for f in stamp.c:inc/stamp.h srcstamp.c:srcstamp.c; do
  src=${f%%:*} touched=${f#*:} o=${src%.c}
  gcc -Iinc -c $src -o $o.plain.o -ffile-prefix-map="$P"=.
  zero_stats
  rm -f $o.o; "$HPCC" gcc -Iinc -c $src -o $o.o
  same $o.plain.o $o.o "SOURCE_DATE_EPOCH set, __TIMESTAMP__ in $touched: object == plain"
  touch -d '2001-02-03 04:05:06' $touched; settle
  gcc -Iinc -c $src -o $o.plain2.o -ffile-prefix-map="$P"=.
  rm -f $o.o; "$HPCC" gcc -Iinc -c $src -o $o.o
  check "touching $touched changed the plain object" differ $o.plain.o $o.plain2.o
  same $o.plain2.o $o.o "SOURCE_DATE_EPOCH set, $touched touched (same contents): object == plain"
done
unset SOURCE_DATE_EPOCH

# HPCC_DISABLE=1: untouched, counted as disabled, nothing stored.
export HPCC_DISABLE=1
uc_case "HPCC_DISABLE=1"                 disabled         gcc -g -Iinc -c a.c -o dis.o
uc_case "HPCC_DISABLE=1 again (no hit)"  disabled         gcc -g -Iinc -c a.c -o dis.o
unset HPCC_DISABLE
zero_stats
gcc -g -Iinc -c a.c -o dis.plain.o -ffile-prefix-map="$P"=.
"$HPCC" gcc -g -Iinc -c a.c -o dis.o
same dis.plain.o dis.o "enabled again: object == plain (with the prefix map)"
expect_counts "enabled again: a miss, as nothing was stored while disabled" 1 0 0
# HPCC_DISABLE belongs to the command it is set for: a daemon that such a
# command happened to start must not disable the commands after it.
"$HPCC" daemon stop >/dev/null 2>&1
for _ in $(seq 100); do "$HPCC" daemon status >/dev/null 2>&1 || break; sleep 0.05; done
rm -f dis2.o dis3.o
HPCC_DISABLE=1 "$HPCC" gcc -g -Iinc -c b.c -o dis2.o
zero_stats
gcc -g -c b.c -o dis3.plain.o -ffile-prefix-map="$P"=.
"$HPCC" gcc -g -c b.c -o dis3.o
same dis3.plain.o dis3.o "after a disabled command started the daemon: object == plain"
expect_counts "after a disabled command started the daemon: caching again (a miss)" 1 0 0
exit 0
