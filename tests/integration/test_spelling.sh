#!/usr/bin/env bash
# A dependency spelled unnormalised under the root (-I/root/sub/../inc): a
# hit in another checkout renders that checkout's root with the compiler's
# own spelling of the rest, byte-identical to a plain compile there.
. "$(dirname "$0")/lib.sh"

A=$(new_project a)
mkdir -p "$A/inc" "$A/sub"
echo '#define X 1' >"$A/inc/x.h"
printf '#include "x.h"\nint f(void) { return X; }\n' >"$A/m.c"
B="$WORK/second-checkout-with-a-longer-name"
cp -a "$A" "$B"
touch -d '5 seconds ago' "$A/inc/x.h" "$A/m.c" "$B/inc/x.h" "$B/m.c"
sleep 0.1
zero_stats
(cd "$A" && "$HPCC" gcc -I"$A/sub/../inc" -c m.c -MD)
expect_counts "first checkout: a miss" 1 0
(cd "$B" && "$HPCC" gcc -I"$B/sub/../inc" -c m.c -MD && mv m.d hpcc.d && mv m.o hpcc.o &&
  gcc -I"$B/sub/../inc" -c m.c -MD -ffile-prefix-map="$B"=.)
expect_counts "second checkout: a hit" 1 1
same "$B/m.d" "$B/hpcc.d" "second checkout: .d == plain (keeps 'sub/../inc')"
same "$B/m.o" "$B/hpcc.o" "second checkout: object == plain"
check "second checkout: .d names its own root" grep -q "$B/sub/../inc/x.h" "$B/hpcc.d"
exit 0
