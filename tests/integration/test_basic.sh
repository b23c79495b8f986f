#!/usr/bin/env bash
# Miss then hit: the object from a hit is byte-identical to a plain compile's,
# warnings are replayed, and the counters move as they should.
. "$(dirname "$0")/lib.sh"

P=$(new_project basic)
cd "$P"
cat >a.c <<'SRC'
#include <stdio.h>
#include "a.h"
int main(void) { int unused; printf("%d\n", A_VALUE); return 0; }
SRC
echo '#define A_VALUE 42' >a.h

gcc -Wall -O2 -c a.c -o plain.o 2>plain.err
zero_stats
"$HPCC" gcc -Wall -O2 -c a.c -o a.o 2>miss.err
check "miss exit status 0" test $? = 0
same plain.o a.o "miss object == plain object"
same plain.err miss.err "miss stderr == plain stderr"
expect_stat miss 1
rm a.o
"$HPCC" gcc -Wall -O2 -c a.c -o a.o 2>hit.err
check "hit exit status 0" test $? = 0
same plain.o a.o "hit object == plain object"
same plain.err hit.err "hit replays the warning"
expect_stat direct_hit 1

# A changed header is a miss; its new object is right.
echo '#define A_VALUE 43' >a.h
touch -d '2 seconds ago' a.h
gcc -Wall -O2 -c a.c -o plain2.o 2>/dev/null
"$HPCC" gcc -Wall -O2 -c a.c -o a.o 2>/dev/null
same plain2.o a.o "changed header: fresh object"
expect_stat miss 2
# Back to the old header content: the first result is found again.
echo '#define A_VALUE 42' >a.h
touch -d '3 seconds ago' a.h
"$HPCC" gcc -Wall -O2 -c a.c -o a.o 2>/dev/null
same plain.o a.o "header reverted: old result served"
expect_stat direct_hit 2

# A compile error: same status and message as plain, nothing cached.
echo 'int broken(' >bad.c
gcc -c bad.c -o bad.o 2>plain-bad.err; plain_status=$?
"$HPCC" gcc -c bad.c -o bad.o 2>hpcc-bad.err; hpcc_status=$?
check "error exit status matches ($plain_status)" test "$plain_status" = "$hpcc_status"
same plain-bad.err hpcc-bad.err "error message matches"
expect_stat uncacheable.compile-failed 1
"$HPCC" gcc -c bad.c -o bad.o 2>/dev/null
expect_stat uncacheable.compile-failed 2 "a failed compile is never a hit"

# Linking is not a compile: passed through, counted.
"$HPCC" gcc a.o -o prog && ./prog >out.txt
check "link through hpcc works" grep -qx 42 out.txt
expect_stat uncacheable.not-compile 1
exit 0
