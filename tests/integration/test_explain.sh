#!/usr/bin/env bash
# hpcc explain: after seeded changes it names the changed -D, the changed
# header line (was/now), an added header, a changed compiler (local mode) and
# a changed image (remote mode, a worker serving two images); it says
# "nothing changed" after a hit, and one clear line with a non-zero exit for
# an object with no record, for a damaged record, and notes an object
# modified after hpcc wrote it.
. "$(dirname "$0")/lib.sh"
HAVE_REMOTE=
if [ -x "$(dirname "$HPCC")/hpccd" ]; then
  . "$(dirname "$0")/remote_lib.sh"
  HAVE_REMOTE=1
fi
trap '[ -n "$HAVE_REMOTE" ] && stop_worker; cleanup' EXIT

P=$(new_project explain)
cd "$P" || exit 1
P=$(pwd -P)
mkdir -p inc
printf '#pragma once\n#define A 1\n#define BUFSZ 4096\n#define C 3\n' >inc/config.h
printf '#include "config.h"\nint f(void) { return LEVEL + BUFSZ; }\n' >a.c
printf '#!/bin/sh\nexec gcc "$@"\n' >mycc
chmod +x mycc
settle() { touch -d '10 seconds ago' "$@"; sleep 0.1; }  # not "modified during the compile"
settle a.c inc/config.h mycc
LEVEL=1
CC=gcc
build() { "$HPCC" "$CC" -Iinc -DLEVEL=$LEVEL -c a.c -o a.o; }
explain() { "$HPCC" explain "$@" >"$WORK/out" 2>&1; echo $? >"$WORK/rc"; }
has() { grep -qF -- "$1" "$WORK/out"; }
rc_is() { [ "$(cat "$WORK/rc")" = "$1" ]; }
show_on_fail() { [ "$T_FAILS" = "$1" ] || sed 's/^/# /' "$WORK/out"; }

# ---- no record, first compile, hit -----------------------------------------
explain a.o
check "no record yet: one line, exit 1" eval 'rc_is 1 && has "no record of a.o" && [ $(wc -l <"$WORK/out") = 1 ]'
build
explain a.o
f=$T_FAILS
check "first compile: nothing to compare with" eval 'rc_is 0 && has "the first compile of it on record"'
build
explain a.o
check "hit: served from the cache, nothing changed" eval 'rc_is 0 && has "a.o was served from the cache (hit at" && has "nothing changed"'
explain --json a.o
check "--json: status hit" eval 'rc_is 0 && has "\"status\": \"hit\""'
show_on_fail "$f"

# ---- (1) a changed -D ----------------------------------------------------
f=$T_FAILS
LEVEL=2 build
LEVEL=2
explain a.o
check "-D changed: named with was/now" has "flag changed: -DLEVEL=1 -> -DLEVEL=2"
check "-D changed: compared with the last hit, all inputs identical" eval 'has "last hit" && has "3 inputs compared, 3 identical"'
show_on_fail "$f"
build  # a hit: the reference for the next change

# ---- (2) a changed header line ---------------------------------------------
f=$T_FAILS
sed -i 's/4096/8192/' inc/config.h
settle inc/config.h
build
explain a.o
check "header line changed: file and line named" has "header changed: inc/config.h, first changed line 3:"
check "header line changed: was/now texts" eval 'has "was: #define BUFSZ 4096" && has "now: #define BUFSZ 8192"'
check "header line changed: no flag reported" eval '! has "flag "'
show_on_fail "$f"
build

# ---- (3) an added header ----------------------------------------------------
f=$T_FAILS
echo '#define EXTRA 1' >inc/extra.h
printf '#include "config.h"\n#include "extra.h"\nint f(void) { return LEVEL + BUFSZ; }\n' >a.c
settle a.c inc/extra.h
build
explain a.o
check "header added: named" has "header added: inc/extra.h"
check "header added: the source's changed line" eval 'has "source changed: a.c, first changed line 2:" && has "now: #include \"extra.h\""'
show_on_fail "$f"
build

# ---- (4) a changed compiler (local mode's "image") -------------------------
f=$T_FAILS
CC=$P/mycc
build
build
printf '#!/bin/sh\n# another compiler\nexec gcc "$@"\n' >mycc
settle mycc
build
explain a.o
check "compiler changed: named with both identities" eval 'has "compiler changed: $P/mycc (sha256:" && has ") -> $P/mycc (sha256:"'
check "compiler changed: flags and inputs identical" eval '! has "flag " && has "4 inputs compared, 4 identical"'
show_on_fail "$f"
if command -v clang >/dev/null; then
  CC=clang
  build
  explain a.o
  check "gcc -> clang: compiler changed" eval 'has "compiler changed: $P/mycc (sha256:" && has "clang (sha256:"'
  show_on_fail "$f"
fi
CC=gcc

# ---- the object changed behind hpcc's back ---------------------------------
f=$T_FAILS
build
build
echo junk >>a.o
explain a.o
check "modified object: said so, and still explained" eval 'rc_is 0 && has "a.o was not last written by hpcc (or was modified since)"'
show_on_fail "$f"

# ---- a damaged record -------------------------------------------------------
f=$T_FAILS
h=$(printf %s "$P/a.o" | sha256sum | cut -c1-64)
rec="$HPCC_DIR/explain/store/${h:0:2}/${h:2}.r"
check "the record is where docs/explain.md says" test -f "$rec"
head -c 300 /dev/urandom >"$rec"
explain a.o
check "damaged record: one line, exit 1, no crash" eval 'rc_is 1 && has "is damaged" && [ $(wc -l <"$WORK/out") = 1 ]'
explain a.o
check "damaged record: removed, then no record" eval 'rc_is 1 && has "no record of a.o"'
"$HPCC" gcc -Iinc -DLEVEL=3 -c a.c -o a.o
explain a.o
check "damaged record: the next compile writes a new one" eval 'rc_is 0 && has "the first compile of it on record"'
explain
check "no object: usage, exit 2" eval 'rc_is 2 && has "usage: hpcc explain"'
show_on_fail "$f"

# ---- remote mode: a changed image ------------------------------------------
if [ -z "$HAVE_REMOTE" ]; then
  echo "ok - $TEST_NAME: remote image change # SKIP no hpccd beside $HPCC"
  exit 0
fi
f=$T_FAILS
IMAGE2="sha256:$(printf '%064d' 7)"
W="$WORK/worker"
mkdir -p "$W"
start_worker "$W" && stop_worker
sed -i "s|^images = .*|images = $IMAGE $IMAGE2|" "$W/worker.ini"
check "worker starts, serving two images" start_worker "$W"
issue "$W" alpha "$WORK/one.tok"
"$HPCC" token issue --key "$W.signing.pem" --tenant alpha --image "$IMAGE2" --worker w1 --out "$WORK/two.tok" \
  >/dev/null
"$HPCC" daemon stop >/dev/null 2>&1
use_remote alpha "$WORK/one.tok"
remote_build() { "$HPCC" gcc -Iinc -DLEVEL=3 -c a.c -o a.o; }
wait_record() { # PATTERN: the record is written after the reply in remote mode
  for _ in $(seq 50); do explain a.o; has "$1" && return 0; sleep 0.1; done
  return 1
}
remote_build
check "remote build: a worker's result" wait_record "compiled remotely (a worker's result) and stored"
remote_build
check "remote: a hit of the image-keyed entry" wait_record "was served from the cache (hit at"
"$HPCC" daemon stop >/dev/null 2>&1
export HPCC_REMOTE_IMAGE="$IMAGE2" HPCC_REMOTE_TOKEN_FILE="$WORK/two.tok"
remote_build
check "image changed: named with both digests" wait_record "image changed: $IMAGE -> $IMAGE2"
check "image changed: nothing else" eval '! has "flag " && ! has "header " && has "inputs compared"'
check "image changed: the worker compiled it" eval '[ "$(stat remote.executed)" -ge 2 ]'
show_on_fail "$f"

# The local cache emptied: the worker's cache answers (a direct hit on its
# Probe), and the record has the inputs that compile read.
f=$T_FAILS
remote_build
"$HPCC" daemon stop >/dev/null 2>&1
rm -rf "$HPCC_DIR/store"
remote_build
check "worker's cached result after a local clean: recorded as a hit from the worker's cache" \
  wait_record "was served from a worker's cache and stored (hit at"
check "worker's cached result: counted as a remote hit" eval '[ "$(stat remote.hit)" -ge 1 ]'
explain --json a.o
check "worker's cached result: a remote-hit entry with its inputs recorded" \
  eval 'has "\"status\": \"hit\"" && grep -q "\"kind\": \"remote-hit\".*\"inputs\": 3}" "$WORK/out"'
show_on_fail "$f"
"$HPCC" daemon stop >/dev/null 2>&1
no_remote
exit 0
