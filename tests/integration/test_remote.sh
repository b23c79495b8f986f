#!/usr/bin/env bash
# Remote compiles against a real worker on loopback over TLS (runtime
# unsafe-local): misses compile on the worker and match a plain compile byte
# for byte; a second checkout at another path gets one-round-trip remote
# hits; only changed files are uploaded; tenants share nothing; every kind
# of bad token or pin is refused with nothing stored, and the build still
# passes through a local compile; a worker killed mid-compile or gone costs
# nothing but time.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/remote_lib.sh"
trap 'stop_worker; cleanup' EXIT

N=4
write_project() { # DIR
  local d=$1
  mkdir -p "$d/src" "$d/include/p" "$d/build"
  printf '#pragma once\n#define SCALE 3\n' >"$d/include/p/config.h"
  printf '#pragma once\n#include <stdio.h>\n#include "p/config.h"\nint util(int);\n' >"$d/include/p/util.h"
  for i in $(seq $N); do
    printf '#include "p/util.h"\nint f%d(int x) { printf("%%s %%d\\n", __FILE__, x); return x * SCALE + %d; }\n' \
      "$i" "$i" >"$d/src/f$i.c"
  done
  printf '#include "p/config.h"\nint g(void) { return SCALE; }\n' >"$d/src/g.c"
  cat >"$d/build/Makefile" <<'MK'
OBJS = $(patsubst ../src/%.c,%.o,$(wildcard ../src/*.c))
all: $(OBJS)
%.o: ../src/%.c
	$(CC) -g -O2 -I../include -MD -c $< -o $@
MK
  (cd "$d" && "$HPCC" init >/dev/null)
}
build() { # DIR [JOBS] → builds with make -jJOBS (default 2) through hpcc
  make -s -C "$1/build" -j"${2:-2}" CC="$HPCC gcc" >"$WORK/make.out" 2>&1
}
plain() { # DIR OUTDIR → the same compiles with plain gcc and the root's prefix map
  local d=$1 out=$2; mkdir -p "$out"
  for s in "$d"/src/*.c; do
    local b; b=$(basename "$s" .c)
    (cd "$d/build" && gcc -g -O2 -I../include -ffile-prefix-map="$d"=. -MD -MF "$out/$b.d" -MT "$b.o" \
      -c "../src/$b.c" -o "$out/$b.o")
  done
}
all_same() { # DIR1 DIR2 description
  local bad=0
  for o in "$1"/*.o; do cmp -s "$o" "$2/$(basename "$o")" || bad=$((bad + 1)); done
  [ "$bad" = 0 ] && [ "$(ls "$1"/*.o | wc -l)" = $((N + 1)) ] && ok "$3" || not_ok "$3 ($bad differ)"
}
clean_objs() { rm -f "$1"/build/*.o "$1"/build/*.d; }
W="$WORK/worker"
mkdir -p "$W"
check "worker starts (TLS on loopback, unsafe-local allowed)" start_worker "$W"
issue "$W" alpha "$WORK/alpha.tok"
issue "$W" beta "$WORK/beta.tok"

P1="$WORK/one/checkout"
P2="$WORK/second-checkout-with-a-longer-path"
write_project "$P1"
write_project "$P2"
plain "$P1" "$WORK/plain1"
plain "$P2" "$WORK/plain2"

# ---- misses compile remotely ------------------------------------------------
fresh_cache a1
use_remote alpha "$WORK/alpha.tok"
check "build through the worker passes" build "$P1"
expect_stat remote.executed $((N + 1)) "every compile ran on the worker"
expect_stat fallback 0 "no fallback"
expect_stat remote.blobs_uploaded $((N + 3)) "sources and the two headers uploaded once each (make -j2)"
all_same "$P1/build" "$WORK/plain1" "remote objects == plain gcc objects, byte for byte"
deps_same() { # BUILD PLAIN description
  local n=0
  for i in $(seq $N); do cmp -s "$1/f$i.d" "$2/f$i.d" && n=$((n + 1)); done
  check "$3 ($n/$N)" [ "$n" = $N ]
}
deps_same "$P1/build" "$WORK/plain1" "remote miss: .d files == gcc's"

clean_objs "$P1"
zero_stats
build "$P1"
expect_stat direct_hit $((N + 1)) "rebuild: local hits, no remote call"
expect_stat remote.hit 0 "rebuild: nothing asked of the worker"

# ---- a second developer: one round trip per compile --------------------------
fresh_cache a2
probes_before=$(grep -c 'probe .* from tenant alpha' "$W/worker.log")
check "second checkout builds" build "$P2"
expect_stat remote.hit $((N + 1)) "second checkout: every compile a remote hit"
expect_stat miss 0 "second checkout: no miss"
expect_stat remote.blobs_uploaded 0 "second checkout: nothing uploaded"
probes=$(( $(grep -c 'probe .* from tenant alpha' "$W/worker.log") - probes_before ))
check "one round trip per hit ($probes probes for $((N + 1)) compiles)" [ "$probes" = $((N + 1)) ]
all_same "$P2/build" "$P1/build" "second checkout's objects == first's"
all_same "$P2/build" "$WORK/plain2" "second checkout's objects == plain gcc there"
deps_same "$P2/build" "$WORK/plain2" "remote hit: .d files == gcc's there"
max_probe=$(sed -n 's/.*request \([0-9]*\) bytes (token \([0-9]*\)).*/\1 \2/p' "$W/worker.log" |
  awk '{ d = $1 - $2; if (d > m) m = d } END { print m + 0 }')
check "a probe is tens of bytes plus the token ($max_probe bytes beyond it)" [ "$max_probe" -gt 0 ] && [ "$max_probe" -le 64 ]

# ---- only changed files travel ------------------------------------------------
fresh_cache a1
printf '#pragma once\n#define SCALE 4\n' >"$P1/include/p/config.h"
clean_objs "$P1"
zero_stats
build "$P1"
expect_stat remote.executed $((N + 1)) "header change: every dependant recompiled remotely"
expect_stat remote.blobs_uploaded 1 "header change: only the changed header uploaded"
plain "$P1" "$WORK/plain1b"
all_same "$P1/build" "$WORK/plain1b" "after the change: objects == plain gcc"

# ---- tenants share nothing; two executions give the same bytes ---------------
fresh_cache b1
use_remote beta "$WORK/beta.tok"
clean_objs "$P1"
build "$P1"
expect_stat remote.hit 0 "tenant beta: no hit on alpha's results"
expect_stat remote.executed $((N + 1)) "tenant beta: compiled again"
all_same "$P1/build" "$WORK/plain1b" "a second execution gives identical bytes"

# ---- refusals: the build passes locally, the worker stores nothing -----------
refused() { # name counter [pin]
  local name=$1 counter=$2
  fresh_cache "r-$name"
  use_remote alpha "$WORK/$name.tok" "${3:-$WORKER_PIN}"
  local before; before=$(stored_files "$W")
  clean_objs "$P1"
  if build "$P1"; then ok "$name: build passes"; else not_ok "$name: build failed"; fi
  all_same "$P1/build" "$WORK/plain1b" "$name: objects == plain gcc"
  local n; n=$(stat "fallback.$counter")
  check "$name: refused and counted ($counter = $n)" [ "${n:-0}" -ge 1 ]
  expect_stat remote.executed 0 "$name: nothing ran remotely"
  check "$name: the worker stored nothing" [ "$(stored_files "$W")" = "$before" ]
}
cp "$WORK/alpha.tok" "$WORK/pin.tok"
refused pin remote-unreachable "sha256:$(printf '%064d' 0)"
issue "$W" alpha "$WORK/expired.tok" --issued-at $(( $(date +%s) - 400 ))
refused expired remote-refused
"$HPCC" token issue --key "$W.signing.pem" --tenant alpha --image "$IMAGE" --worker w2 --out "$WORK/worker.tok"
refused worker remote-refused
"$HPCC" token issue --key "$W.signing.pem" --tenant alpha --image "sha256:$(printf '%064d' 7)" --worker w1 --out "$WORK/image.tok"
HPCC_REMOTE_IMAGE_SAVED=$IMAGE
IMAGE="sha256:$(printf '%064d' 7)"; refused image remote-refused; IMAGE=$HPCC_REMOTE_IMAGE_SAVED
python3 - "$WORK/alpha.tok" "$WORK/tampered.tok" <<'PY'
import sys, base64
t = open(sys.argv[1]).read().strip()
raw = bytearray(base64.urlsafe_b64decode(t + '=' * (-len(t) % 4)))
raw[-3] ^= 1   # inside the signature: the daemon sees valid claims, the worker a bad signature
open(sys.argv[2], 'w').write(base64.urlsafe_b64encode(bytes(raw)).decode().rstrip('=') + '\n')
PY
chmod 600 "$WORK/tampered.tok"
refused tampered remote-refused
mkdir -p "$WORK/other"
"$HPCC" worker init "$WORK/other" --id w1 --signing-key "$WORK/other.signing.pem" >/dev/null
"$HPCC" token issue --key "$WORK/other.signing.pem" --tenant alpha --image "$IMAGE" --worker w1 --out "$WORK/forged.tok"
refused forged remote-refused
cp "$WORK/beta.tok" "$WORK/wrongtenant.tok"
refused wrongtenant remote-token

# ---- the worker goes away ----------------------------------------------------
fresh_cache down
use_remote alpha "$WORK/alpha.tok"
awk 'BEGIN { print "int big(int x) {"; for (i = 0; i < 2500; i++) printf "  x = x * %d + (x >> %d) ^ %d;\n", i + 3, i % 7 + 1, i; print "  return x; }" }' >"$P1/src/big.c"
(cd "$P1/build" && gcc -g -O2 -I../include -ffile-prefix-map="$P1"=. -c ../src/big.c -o "$WORK/big-plain.o")
(cd "$P1/build" && "$HPCC" gcc -g -O2 -I../include -c ../src/big.c -o big.o) &
cpid=$!
for _ in $(seq 200); do grep -q 'big' "$W/worker.log" 2>/dev/null && break; ls "$W"/state/staging/exec-* >/dev/null 2>&1 && break; sleep 0.02; done
kill -9 "$WORKER_PID"; wait "$WORKER_PID" 2>/dev/null; WORKER_PID=
wait $cpid
check "worker killed mid-compile: the compile still passes" [ $? = 0 ]
same "$P1/build/big.o" "$WORK/big-plain.o" "worker killed mid-compile: object == plain gcc"
n=$(( $(stat fallback.remote-unreachable) + $(stat fallback.remote-error) ))
check "worker killed mid-compile: counted as a remote fallback ($n)" [ "$n" -ge 1 ]
rm -f "$P1/src/big.c" "$P1/build/big.o"

clean_objs "$P1"
start=$(date +%s%N)
check "worker down: build passes" build "$P1"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
all_same "$P1/build" "$WORK/plain1b" "worker down: objects == plain gcc"
check "worker down: no long waits ($ms ms)" [ "$ms" -lt 20000 ]

# ---- preprocessed mode ------------------------------------------------------
start_worker "$W"
use_remote alpha "$WORK/alpha.tok"
fresh_cache pp
export HPCC_REMOTE_MODE=preprocessed
clean_objs "$P1"
check "preprocessed mode: build passes" build "$P1"
expect_stat remote.executed $((N + 1)) "preprocessed mode: compiled on the worker"
expect_stat fallback 0 "preprocessed mode: no fallback"
# Columns in the line table follow the expanded source (as with distcc):
# with -g, only the debug sections differ.
mkdir -p "$WORK/pp-stripped" "$WORK/plain-stripped"
for o in "$P1"/build/*.o; do objcopy --strip-debug "$o" "$WORK/pp-stripped/$(basename "$o")"; done
for o in "$WORK"/plain1b/*.o; do objcopy --strip-debug "$o" "$WORK/plain-stripped/$(basename "$o")"; done
all_same "$WORK/pp-stripped" "$WORK/plain-stripped" "preprocessed mode: objects == plain gcc without debug sections"
unset HPCC_REMOTE_MODE

# ---- unsafe-local must be allowed explicitly ------------------------------------
mkdir -p "$WORK/strict"
"$HPCC" worker init "$WORK/strict" --id w9 --listen 127.0.0.1:0 --signing-key "$WORK/strict.signing.pem" >/dev/null
out=$("$HPCC" worker init "$WORK/nokey" --id w8 2>&1); s=$?
check "worker init needs a signing or verification key (exit $s)" [ $s = 2 ]
out=$("$HPCC" worker init "$WORK/inside" --id w8 --signing-key "$WORK/inside/k.pem" 2>&1); s=$?
check "worker init refuses a signing key inside the worker directory (exit $s)" [ $s = 2 ]
out=$("$HPCC" worker --config "$WORK/strict/worker.ini" 2>&1); s=$?
check "a worker refuses unsafe-local unless allowed (exit $s)" [ $s != 0 ]
check "and says how to allow it" grep -q allow_unsafe_local <<<"$out"
kill "$WORKER_PID"; wait "$WORKER_PID"; s=$?; WORKER_PID=
check "SIGTERM stops the worker cleanly (exit $s)" [ $s = 0 ]
exit 0
