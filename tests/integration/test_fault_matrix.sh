#!/usr/bin/env bash
# The fault matrix (issue 8): each case injects one real fault into real
# processes on loopback (workers, a microVM, s3rver, the scheduler, the IdP,
# the daemon's cache) while `hpcc gcc -c` builds a few tiny files, and checks
#   build  - every compile exits 0;
#   bytes  - every object is byte-identical to plain gcc's, during the fault
#            and after it is removed (no bad entry is served later);
#   rows   - the worker's audit log verifies (`hpcc audit verify`), every row
#            the daemon received is in it, and the daemon received one row per
#            answer (remote.executed + remote.hit + remote.compile_failed).
# The last lines print the matrix as a table (docs/testing.md, "Fault matrix").
# FAULT_CASES="name ..." runs only those cases (names as in the table, with
# dashes for spaces); the microVM cases need the cached guest artefacts of
# test_microvm.sh and are skipped when they are not there.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/remote_lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
PIDS=()
MOUNTS=()
stop_all() {
  local p m
  for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  PIDS=()
  for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null; done
  MOUNTS=()
}
trap 'stop_all; stop_worker; cleanup' EXIT
T_START=$(date +%s)

# ---- bookkeeping: one matrix row per case ----------------------------------
MATRIX=()
wanted() { [ -z "${FAULT_CASES:-}" ] || [[ " $FAULT_CASES " == *" ${1// /-} "* ]]; }
# The rows column says n/a until a check saw at least one answer with its row.
case_begin() { CASE=$1; C_BUILD=yes; C_BYTES=yes; C_ROWS=n/a; C_T0=$(date +%s); echo "# case: $CASE"; }
case_end() { MATRIX+=("$CASE | $C_BUILD | $C_BYTES | $C_ROWS | $(($(date +%s) - C_T0)) s"); }
case_skip() { echo "ok - $TEST_NAME: $1 # SKIP $2"; MATRIX+=("$1 | skipped: $2 | - | - | -"); }
c_ok() { ok "$CASE: $*"; }
c_fail() { # COLUMN DESCRIPTION: a failed check marks its column of the matrix
  local col=$1; shift
  not_ok "$CASE: $*"
  case $col in build) C_BUILD=no ;; bytes) C_BYTES=no ;; rows) C_ROWS=no ;; esac
}
c_check() { # COLUMN DESCRIPTION COMMAND...
  local col=$1 d=$2; shift 2
  if "$@"; then c_ok "$d"; else c_fail "$col" "$d"; fi
}
num() { local v; v=$(stat "$1"); echo "${v:-0}"; }
remote_answers() { echo $(($(num remote.executed) + $(num remote.hit) + $(num remote.compile_failed))); }
fallbacks() { num fallback; }
wait_until_file() { for _ in $(seq 300); do [ -e "$1" ] && return 0; sleep 0.05; done; return 1; }

# ---- the project: tiny sources, written now (older than any compile) --------
P=$(new_project proj)
PLAIN="$WORK/plain"
mkdir -p "$P/inc" "$PLAIN"
printf '#pragma once\n#define SCALE 3\n' >"$P/inc/cfg.h"
printf '#pragma once\n#define SHARED 11\nint shared_helper(int);\n' >"$P/inc/shared.h"
NAMES=(f1 f2 f3 ex s3d1 s3d2 s3d3 s3s1 s3s2 cas1 cas2 sk1 sk2 sk3 df1 df2 sc1 sc2 sc3 id1 id2 id3 vm1 vm2 vm3)
i=0
for n in "${NAMES[@]}"; do
  i=$((i + 1))
  printf '#include "cfg.h"\n#include "shared.h"\nint %s(int x) { return x * SCALE + SHARED + %d; }\n' "$n" "$i" >"$P/$n.c"
done
# up.c includes a large header of incompressible text: its upload takes
# hundreds of kilobytes, so a proxy can hold it half-way.
head -c 300000 /dev/urandom | base64 -w 76 | sed 's|^|// |' >"$P/inc/blob.h"
printf '#include "blob.h"\nint up(int x) { return x + 1; }\n' >"$P/up.c"
head -c 300000 /dev/urandom | base64 -w 76 | sed 's|^|// |' >"$P/inc/blob2.h"   # for an upload cut short
printf '#include "blob2.h"\nint up2(int x) { return x + 2; }\n' >"$P/up2.c"
# big.c makes a large object of random bytes: its Execute reply is long, so
# a proxy can cut the stream in its middle.
{ echo 'const unsigned char big_data[] = {'; head -c 120000 /dev/urandom | od -An -tu1 -v | sed 's/\([0-9]\)  */\1, /g; s/$/,/'; echo '};'; } >"$P/big.c"
# heavy.c takes a while to compile under TCG (the VMM is killed during it).
{ echo '#include <string.h>'
  for i in $(seq 60); do
    printf 'int h%d(const char *s, int n) { int h = %d; for (int i = 0; i < n; i++) h = h * 31 + s[i] * %d; return h ^ (int)strlen(s); }\n' "$i" "$i" "$i"
  done; } >"$P/heavy.c"
# fill.c: its object is 300 MB of zeros after one byte, more than a microVM
# with 512 MB of RAM has for an exec's scratch tmpfs (half its RAM).
printf 'char fill_data[300000000] = { 1 };\n' >"$P/fill.c"
touch -d '10 seconds ago' "$P"/*.c "$P"/inc/*.h
plain() { (cd "$P" && gcc -O2 -Iinc -ffile-prefix-map="$P"=. -c "$1.c" -o "$PLAIN/$1.o"); }
for n in "${NAMES[@]}" up up2 big; do plain "$n"; done

compile_one() { (cd "$P" && "$HPCC" gcc -O2 -Iinc -c "$1.c" -o "$1.o") >>"$WORK/build.log" 2>&1; }
build() { # NAMES...: compiles each through hpcc; passes when every compile exits 0
  local n st=0
  for n in "$@"; do rm -f "$P/$n.o"; compile_one "$n" || st=1; done
  return $st
}
bytes_same() { # NAMES...: each object equals plain gcc's; prints the ones that differ
  local n bad=
  for n in "$@"; do cmp -s "$P/$n.o" "$PLAIN/$n.o" || bad="$bad $n"; done
  [ -z "$bad" ] || { echo "$bad"; return 1; }
}
case_bytes() { # DESCRIPTION NAMES...
  local d=$1 bad; shift
  if bad=$(bytes_same "$@"); then c_ok "$d: $# object(s) byte-identical to plain gcc"
  else c_fail bytes "$d: objects differ from plain gcc:$bad"; fi
}
case_build() { # DESCRIPTION NAMES...: a build through hpcc, then its bytes
  local d=$1; shift
  if build "$@"; then c_ok "$d: build passes"; else c_fail build "$d: build failed ($(tail -n 2 "$WORK/build.log" | tr '\n' '|'))"; fi
  case_bytes "$d" "$@"
}
# case_rows WORKER_DIR DESCRIPTION [nocount]: the worker's log verifies; every
# row the current daemon received is in it; one row per answer the daemon
# received (not with nocount: a daemon on a full disk cannot save its counters).
case_rows() {
  local w=$1 d=$2 drows="$HPCC_DIR/audit/rows.tsv" n_d n_a missing
  if ! "$HPCC" audit verify "$w/state/audit" >"$WORK/verify.out" 2>&1; then
    c_fail rows "$d: hpcc audit verify: $(tail -n 2 "$WORK/verify.out" | tr '\n' '|')"
    return
  fi
  n_d=$(cat "$drows" 2>/dev/null | wc -l)
  n_a=$(remote_answers)
  [ "${3:-}" = nocount ] && n_a=$n_d
  missing=$( (grep -vxF -f <(audit_rows "$w"; echo '#none') "$drows" 2>/dev/null || true) | wc -l)
  if [ "$missing" = 0 ] && [ "$n_d" = "$n_a" ]; then
    c_ok "$d: the audit log verifies and holds all $n_d row(s) of the $n_a answer(s) the daemon got"
    [ "$n_a" -gt 0 ] && [ "$C_ROWS" != no ] && C_ROWS=yes
  else
    c_fail rows "$d: $n_a answer(s), $n_d row(s) kept by the daemon, $missing of them not in the worker's log"
  fi
}

# ---- worker w1: unsafe-local, a shared tier on s3rver, a slow gcc on demand --
check "the test S3 server starts" start_test_s3 "$WORK/s3data" "$WORK/s3.port"
S3_PORT=$(cat "$WORK/s3.port")
PIDS+=("$S3_PID")
S3=http://127.0.0.1:$S3_PORT
printf '[default]\naws_access_key_id = AKWORKER\naws_secret_access_key = worker-secret\n' >"$WORK/s3-creds"
chmod 600 "$WORK/s3-creds"
# The worker reads it as hpcc-worker when it runs as that user (remote_lib.sh).
id hpcc-worker >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && chown hpcc-worker "$WORK/s3-creds"
mkdir -p "$WORK/slowbin" "$WORK/marks"
chmod 1777 "$WORK/marks"   # the slow gcc writes its mark as the worker's user
# A gcc that, while $WORK/slow.on exists, marks its start and sleeps before
# compiling: the worker can be killed in the middle of an exec.
cat >"$WORK/slowbin/gcc" <<EOF
#!/bin/sh
case " \$* " in *" -c "*) if [ -e "$WORK/slow.on" ]; then : >"$WORK/marks/exec.mark"; sleep 3; fi ;; esac
exec /usr/bin/gcc "\$@"
EOF
chmod +x "$WORK/slowbin/gcc"
W="$WORK/w1"
mkdir -p "$W"
"$HPCC" worker init "$W" --id w1 --listen 127.0.0.1:0 --signing-key "$W.signing.pem" --allow-unsafe-local \
  >"$W.init" 2>&1
sed -i "s|^allow_unsafe_local = true|allow_unsafe_local = true\nsearch_path = $WORK/slowbin:/usr/local/bin:/usr/bin:/bin|" \
  "$W/worker.ini"
printf '[s3]\nendpoint = %s\nregion = us-east-1\nbucket = hpcc\ncredentials_file = %s\ntimeout_ms = 1000\n' \
  "$S3" "$WORK/s3-creds" >>"$W/worker.ini"
check "worker w1 starts (unsafe-local, shared tier on s3rver)" start_worker "$W"
issue "$W" alpha "$WORK/alpha.tok"
W1_PORT=$WORKER_PORT
restart_w1() { start_worker "$W" && W1_PORT=$WORKER_PORT; }
direct() { use_remote alpha "$WORK/alpha.tok"; }   # the client talks to w1 itself

# start_proxy NAME OPTIONS...: fault_proxy.py in front of w1; sets PROXY_PID/PROXY_PORT.
start_proxy() {
  local name=$1; shift
  python3 "$HERE/fault_proxy.py" --target "127.0.0.1:$W1_PORT" --port-file "$WORK/$name.port" "$@" \
    >>"$WORK/proxy.log" 2>&1 &
  PROXY_PID=$!
  PIDS+=("$PROXY_PID")
  wait_file "$WORK/$name.port" && PROXY_PORT=$(cat "$WORK/$name.port")
}
stop_proxy() { kill "$PROXY_PID" 2>/dev/null; wait "$PROXY_PID" 2>/dev/null; }
kill9_w1() { kill -9 "$WORKER_PID" 2>/dev/null; wait "$WORKER_PID" 2>/dev/null; WORKER_PID=; }

# ---- worker kill -9 mid-upload -------------------------------------------------
if wanted "worker kill -9 mid-upload"; then
  case_begin "worker kill -9 mid-upload"
  start_proxy upload --stall-up-after 100000 --mark "$WORK/upload.mark"
  fresh_cache upload
  direct
  export HPCC_REMOTE_WORKER=127.0.0.1:$PROXY_PORT
  rm -f "$WORK/upload.mark" "$P/up.o"
  compile_one up &
  cpid=$!
  if wait_until_file "$WORK/upload.mark"; then
    c_ok "the upload is held by the proxy after 100 kB"
  else
    c_fail build "the upload never reached 100 kB"
  fi
  kill9_w1
  if wait $cpid; then c_ok "worker killed -9 mid-upload: the compile passes"; else c_fail build "the compile failed"; fi
  case_bytes "mid-upload" up
  n=$(($(num fallback.remote-unreachable) + $(num fallback.remote-error) + $(num fallback.remote-timeout)))
  c_check build "counted as a remote fallback ($n)" [ "$n" = 1 ]
  stop_proxy
  case_build "worker down" f1 f2
  case_rows "$W" "killed worker"
  c_check build "the worker restarts on its state" restart_w1
  fresh_cache upload2
  direct
  case_build "after the restart" up f1 f2
  c_check bytes "after the restart: remote answers, no fallback ($(counts))" \
    [ "$(remote_answers)" = 3 -a "$(fallbacks)" = 0 ]
  case_rows "$W" "after the restart"
  case_end
fi

# ---- worker kill -9 mid-exec ---------------------------------------------------
if wanted "worker kill -9 mid-exec"; then
  case_begin "worker kill -9 mid-exec"
  fresh_cache exec
  direct
  : >"$WORK/slow.on"
  rm -f "$WORK/marks/exec.mark" "$P/ex.o"
  compile_one ex &
  cpid=$!
  c_check build "the worker's gcc is running" wait_until_file "$WORK/marks/exec.mark"
  kill9_w1
  rm -f "$WORK/slow.on"
  if wait $cpid; then c_ok "worker killed -9 mid-exec: the compile passes"; else c_fail build "the compile failed"; fi
  case_bytes "mid-exec" ex
  case_rows "$W" "killed worker"
  c_check build "the worker restarts on its state" restart_w1
  fresh_cache exec2
  direct
  case_build "after the restart" ex f3
  c_check bytes "after the restart: remote answers, no fallback ($(counts))" \
    [ "$(remote_answers)" = 2 -a "$(fallbacks)" = 0 ]
  c_check bytes "the staging area is clean" test -z "$(ls -A "$W/state/staging" 2>/dev/null)"
  case_rows "$W" "after the restart"
  case_end
fi

# ---- S3 slow ------------------------------------------------------------------
if wanted "S3 slow"; then
  case_begin "S3 slow"
  fresh_cache s3slow
  direct
  # Every S3 request waits 3 s: past the worker's 1 s timeout.
  curl -sf "$S3/__test/delay?ms=3000&count=100000" >/dev/null
  t0=$(date +%s)
  case_build "S3 slow" s3s1 s3s2
  c_check build "S3 slow: the build does not wait for S3 (took $(($(date +%s) - t0)) s, limit 20)" \
    [ $(($(date +%s) - t0)) -lt 20 ]
  delayed=$(curl -sf "$S3/__test/stats" | sed -n 's/.*"delayed": *\([0-9]*\).*/\1/p')
  c_check build "S3 slow: the worker's S3 requests were delayed (${delayed:-0})" [ "${delayed:-0}" -ge 1 ]
  case_rows "$W" "S3 slow"
  curl -sf "$S3/__test/clear" >/dev/null
  fresh_cache s3slow2
  case_build "S3 fast again" s3s1 s3s2
  c_check bytes "S3 fast again: remote hits, no fallback ($(counts))" [ "$(num remote.hit)" = 2 -a "$(fallbacks)" = 0 ]
  case_rows "$W" "S3 fast again"
  case_end
fi

# ---- S3 down ------------------------------------------------------------------
if wanted "S3 down"; then
  case_begin "S3 down"
  fresh_cache s3down
  direct
  case_build "S3 up" s3d1
  # S3 stops while the worker compiles s3d2 (the slow gcc): its result
  # cannot reach the shared tier.
  : >"$WORK/slow.on"
  rm -f "$WORK/marks/exec.mark" "$P/s3d2.o"
  compile_one s3d2 &
  cpid=$!
  c_check build "s3d2 is compiling on the worker" wait_until_file "$WORK/marks/exec.mark"
  kill "$S3_PID"; wait "$S3_PID" 2>/dev/null
  if wait $cpid; then c_ok "S3 stopped mid-compile: the compile passes"; else c_fail build "the compile failed"; fi
  rm -f "$WORK/slow.on"
  case_bytes "S3 stopped mid-compile" s3d2
  case_build "S3 stopped" s3d3 f1
  c_check bytes "S3 stopped: the worker compiled or served every one ($(counts))" [ "$(remote_answers)" = 4 ]
  case_rows "$W" "S3 stopped"
  stop_worker
  c_check build "w1 restarts while S3 is down" restart_w1
  fresh_cache s3down1b
  direct
  case_build "w1 restarted, S3 down" s3d1 s3d2
  c_check bytes "w1 restarted, S3 down: hits from its disk ($(counts))" [ "$(num remote.hit)" = 2 -a "$(fallbacks)" = 0 ]
  case_rows "$W" "w1 restarted, S3 down"
  c_check build "S3 comes back on its port" start_test_s3 "$WORK/s3data" "$WORK/s3.port" "$S3_PORT"
  PIDS+=("$S3_PID")
  fresh_cache s3down2
  case_build "S3 back" s3d1 s3d2 s3d3
  c_check bytes "S3 back: every compile a remote hit ($(counts))" [ "$(num remote.hit)" = 3 -a "$(fallbacks)" = 0 ]
  case_rows "$W" "S3 back"
  case_end
fi

# ---- corrupt CAS blob -----------------------------------------------------------
if wanted "corrupt CAS blob"; then
  case_begin "corrupt CAS blob"
  fresh_cache cas
  direct
  case_build "first build" cas1
  store="$W/state/tenants/alpha/store"
  hdr=$(sha256sum <"$P/inc/shared.h" | cut -c1-64)
  c_check bytes "shared.h is a blob in w1's CAS" test -f "$store/${hdr:0:2}/${hdr:2}.b"
  # Every stored file of tenant alpha gets one flipped byte: blobs, results, manifests.
  n=0
  for f in $(find "$store" -type f); do flip_byte "$f" $(($(command stat -c %s "$f") / 2)); n=$((n + 1)); done
  c_ok "flipped one byte in each of w1's $n stored files"
  fresh_cache cas2
  # cas1: a probe of a damaged result; cas2: a new action on the damaged header blob.
  case_build "damaged CAS" cas1 cas2 f1
  # Damaged entries are dropped: each compile runs again, or its result comes
  # from the shared tier (checked against its key there), never from the damaged file.
  c_check bytes "damaged CAS: answered by the worker, no fallback (remote.executed $(num remote.executed), remote.hit $(num remote.hit))" \
    [ "$(remote_answers)" = 3 -a "$(fallbacks)" = 0 ]
  case_rows "$W" "damaged CAS"
  fresh_cache cas3
  case_build "next build" cas1 cas2 f1
  c_check bytes "next build: remote hits, no fallback ($(counts))" [ "$(num remote.hit)" = 3 -a "$(fallbacks)" = 0 ]
  case_rows "$W" "next build"
  case_end
fi

# ---- truncated stream -------------------------------------------------------------
if wanted "truncated stream"; then
  case_begin "truncated stream"
  # The Execute reply carries big.o (120 kB of random bytes): cut after 60 kB.
  start_proxy cut --cut-down-after 60000
  fresh_cache cut
  direct
  export HPCC_REMOTE_WORKER=127.0.0.1:$PROXY_PORT
  case_build "stream cut mid-reply" big
  n=$(($(num fallback.remote-unreachable) + $(num fallback.remote-error) + $(num fallback.remote-timeout)))
  c_check build "counted as a remote fallback ($n)" [ "$n" -ge 1 ]
  case_rows "$W" "stream cut"
  case_build "the same cache again (local hit of the local compile)" big
  c_check bytes "a local hit ($(counts))" [ "$(num direct_hit)" = 1 ]
  stop_proxy
  fresh_cache cut2
  direct
  case_build "no proxy" big f2
  c_check bytes "no proxy: remote answers, no fallback ($(counts))" [ "$(remote_answers)" = 2 -a "$(fallbacks)" = 0 ]
  case_rows "$W" "no proxy"
  # An upload cut short (up2.c's 400 kB header): the worker must keep no part of it.
  start_proxy cutup --cut-up-after 150000
  fresh_cache cut-up
  direct
  export HPCC_REMOTE_WORKER=127.0.0.1:$PROXY_PORT
  case_build "an upload cut short" up2
  c_check build "an upload cut short: compiled locally ($(counts))" [ "$(fallbacks)" = 1 ]
  stop_proxy
  fresh_cache cut-up2
  direct
  case_build "an upload cut short, then no proxy" up2
  c_check bytes "then no proxy: compiled on the worker ($(counts), remote.executed $(num remote.executed))" \
    [ "$(remote_answers)" = 1 -a "$(fallbacks)" = 0 ]
  case_rows "$W" "an upload cut short, then no proxy"
  # Now a probe hit carries big.o: cut that reply too.
  start_proxy cut2 --cut-down-after 60000
  fresh_cache cut3
  direct
  export HPCC_REMOTE_WORKER=127.0.0.1:$PROXY_PORT
  case_build "a hit's reply cut" big
  c_check build "a hit's reply cut: compiled locally ($(counts), remote.hit $(num remote.hit))" \
    [ "$(num remote.hit)" = 0 -a "$(fallbacks)" -ge 1 ]
  case_rows "$W" "a hit's reply cut"
  stop_proxy
  case_end
fi

# ---- clock skew on tokens --------------------------------------------------------
if wanted "clock skew on tokens"; then
  case_begin "clock skew on tokens"
  now=$(date +%s)
  issue "$W" alpha "$WORK/skew20.tok" --issued-at $((now + 20))     # within the 30 s allowed
  issue "$W" alpha "$WORK/skew120.tok" --issued-at $((now + 120))   # from the future
  issue "$W" alpha "$WORK/skewpast.tok" --issued-at $((now - 400))  # expired
  fresh_cache skew20
  use_remote alpha "$WORK/skew20.tok"
  case_build "issuer 20 s ahead" sk1
  c_check bytes "issuer 20 s ahead: accepted, compiled remotely ($(counts))" [ "$(num remote.executed)" = 1 ]
  case_rows "$W" "issuer 20 s ahead"
  fresh_cache skew120
  use_remote alpha "$WORK/skew120.tok"
  case_build "issuer 120 s ahead" sk2
  c_check bytes "issuer 120 s ahead: refused, compiled locally ($(counts))" \
    [ "$(num remote.executed)" = 0 -a "$(num fallback)" = 1 ]
  case_rows "$W" "issuer 120 s ahead"
  fresh_cache skewpast
  use_remote alpha "$WORK/skewpast.tok"
  case_build "token expired 100 s ago" sk3
  c_check bytes "expired: refused, compiled locally ($(counts))" [ "$(num remote.executed)" = 0 -a "$(num fallback)" = 1 ]
  case_rows "$W" "expired"
  fresh_cache skew-ok
  direct
  case_build "a good token" sk2 sk3 sk1
  c_check bytes "a good token: remote answers, no fallback ($(counts))" [ "$(remote_answers)" = 3 -a "$(fallbacks)" = 0 ]
  case_rows "$W" "a good token"
  case_end
fi

# ---- local cache disk full --------------------------------------------------------
if wanted "local cache disk full"; then
  case_begin "local cache disk full"
  "$HPCC" daemon stop >/dev/null 2>&1
  D="$WORK/smalldisk"
  mkdir -p "$D"
  if mount -t tmpfs -o size=2m,mode=0700 tmpfs "$D" 2>"$WORK/mount.err"; then
    MOUNTS+=("$D")
    export HPCC_DIR="$D/cache"
    direct
    case_build "a 2 MB cache disk" df1
    dd if=/dev/zero of="$D/filler" bs=64k 2>/dev/null
    c_ok "the cache's filesystem is full ($(df --output=avail "$D" | tail -n 1 | tr -d ' ') kB free)"
    case_build "disk full" df2 f3 df1
    HPCC_DAEMON=false case_build "disk full, in-process (no daemon)" f2
    case_rows "$W" "disk full" nocount
    rm -f "$D/filler"
    case_build "space again" df2 f3 df1
    case_build "space again, a second time" df2 f3 df1
    c_check bytes "space again: local hits now ($(counts))" [ "$(num direct_hit)" -ge 3 ]
    c_check build "no temporary file left in the cache" test -z "$(ls -A "$HPCC_DIR/tmp" 2>/dev/null)"
    case_rows "$W" "space again"
    "$HPCC" daemon stop >/dev/null 2>&1
    umount "$D" && MOUNTS=()
    case_end
  else
    case_skip "local cache disk full" "cannot mount a tmpfs: $(head -n 1 "$WORK/mount.err")"
  fi
fi

# ---- corrupt local entry -----------------------------------------------------------
if wanted "corrupt local entry"; then
  case_begin "corrupt local entry"
  fresh_cache local
  direct
  case_build "first build" f1 f2 f3
  n=0
  for f in $(find "$HPCC_DIR/store" -type f \( -name '*.r' -o -name '*.m' \)); do
    flip_byte "$f" $(($(command stat -c %s "$f") / 2)); n=$((n + 1))
  done
  c_check bytes "flipped a byte in each of the $n local entries" [ "$n" -ge 3 ]
  case_build "damaged entries" f1 f2 f3
  c_check bytes "each damaged entry counted, none served (corrupt_entries $(num corrupt_entries), direct_hit $(num direct_hit))" \
    [ "$(num corrupt_entries)" -ge 3 -a "$(num direct_hit)" = 0 ]
  case_build "next build" f1 f2 f3
  c_check bytes "next build: local hits ($(counts))" [ "$(num direct_hit)" = 3 ]
  case_rows "$W" "local entries"
  case_end
fi
stop_worker

# ---- worker disk full (not in the issue's list: its audit log must survive) ---
if wanted "worker disk full"; then
  case_begin "worker disk full"
  WD="$WORK/workerdisk"
  mkdir -p "$WD"
  if mount -t tmpfs -o size=4m tmpfs "$WD" 2>"$WORK/mount.err"; then
    MOUNTS+=("$WD")
    W3="$WD/w3"
    mkdir -p "$W3"
    "$HPCC" worker init "$W3" --id w3 --listen 127.0.0.1:0 --signing-key "$W3.signing.pem" \
      --allow-unsafe-local >"$W3.init" 2>&1
    c_check build "worker w3 starts on a 4 MB filesystem" start_worker "$W3"
    issue "$W3" alpha "$WORK/w3.tok"
    fresh_cache wdisk
    use_remote alpha "$WORK/w3.tok"
    case_build "space" df1
    c_check build "space: compiled on w3 ($(counts))" [ "$(num remote.executed)" = 1 ]
    dd if=/dev/zero of="$WD/filler" bs=4k 2>/dev/null
    c_ok "w3's filesystem is full ($(df --output=avail "$WD" | tail -n 1 | tr -d ' ') kB free)"
    case_build "w3's disk full" df2 f3
    c_check build "w3's disk full: compiled locally, counted ($(counts))" [ "$(fallbacks)" -ge 1 ]
    case_rows "$W3" "w3's disk full"
    rm -f "$WD/filler"
    fresh_cache wdisk2
    case_build "space again" df2 f3 df1
    c_check bytes "space again: remote answers, no fallback ($(counts))" [ "$(remote_answers)" = 3 -a "$(fallbacks)" = 0 ]
    case_rows "$W3" "space again"
    stop_worker
    umount "$WD" && MOUNTS=()
    case_end
  else
    case_skip "worker disk full" "cannot mount a tmpfs: $(head -n 1 "$WORK/mount.err")"
  fi
fi

# ---- scheduler and IdP -------------------------------------------------------------
if wanted "scheduler down" || wanted "IdP down"; then
  IDPP="$WORK/idp.port"
  check "the test IdP starts" start_test_idp "$IDPP" alice:secret-a
  PIDS+=("$IDP_PID")
  IDP_PORT=$(cat "$IDPP")
  S="$WORK/sched"
  "$HPCC" scheduler init "$S" --listen 127.0.0.1:0 >"$WORK/sched.init" 2>&1
  SPIN=$(sed -n 's/^certificate pin *//p' "$WORK/sched.init")
  sed -i "s/^heartbeat_interval_ms = .*/heartbeat_interval_ms = 300/; s/^token_ttl = .*/token_ttl = 300\nallow_insecure_idp = true\njwks_min_interval = 1/" \
    "$S/scheduler.ini"
  printf '[tenant acme]\nissuer = http://127.0.0.1:%s\naudience = hpcc\nclient_id = hpcc-cli\nimages = %s\n' \
    "$IDP_PORT" "$IMAGE" >>"$S/scheduler.ini"
  check "the scheduler starts" start_test_scheduler "$S"
  PIDS+=("$SCHED_PID")
  sed -i "s/^listen = .*/listen = 127.0.0.1:$SCHED_PORT/" "$S/scheduler.ini"   # restarts keep the port
  W2="$WORK/w2"
  "$HPCC" worker init "$W2" --id w2 --listen 127.0.0.1:0 --allow-unsafe-local --scheduler "127.0.0.1:$SCHED_PORT" \
    --scheduler-pin "$SPIN" --worker-token-file "$S/worker-token" >"$W2.init" 2>&1
  HPCC_LOG_FILE="$W2/worker.log" HPCC_LOG_LEVEL=info "$HPCC" worker --config "$W2/worker.ini" \
    --port-file "$W2/port" >>"$W2/worker.out" 2>&1 &
  PIDS+=($!)
  check "worker w2 registers with the scheduler" wait_log "$S.log" "worker w2 registered"
  no_remote
  export HPCC_REMOTE_SCHEDULER=127.0.0.1:$SCHED_PORT HPCC_REMOTE_SCHEDULER_PIN=$SPIN HPCC_REMOTE_TENANT=acme \
    HPCC_REMOTE_IMAGE=$IMAGE
  login() { HPCC_USERNAME=alice HPCC_PASSWORD=secret-a "$HPCC" login </dev/null >>"$WORK/login.out" 2>&1; }
  routed_cache() { # NAME: a new cache signed in with the saved tokens
    fresh_cache "$1"
    mkdir -m 700 -p "$HPCC_DIR" && cp -r "$WORK/auth-saved" "$HPCC_DIR/auth"
  }
  fresh_cache login
  check "alice logs in" login
  cp -r "$HPCC_DIR/auth" "$WORK/auth-saved"
fi

if wanted "scheduler down"; then
  case_begin "scheduler down"
  routed_cache sched1
  case_build "through the scheduler" sc1
  c_check bytes "routed to w2 ($(counts))" [ "$(num remote.executed)" = 1 ]
  case_rows "$W2" "through the scheduler"
  kill "$SCHED_PID"; wait "$SCHED_PID" 2>/dev/null
  routed_cache sched2
  case_build "scheduler down" sc2 sc3 sc1
  c_check bytes "scheduler down: compiled locally, counted ($(counts))" \
    [ "$(num remote.executed)" = 0 -a "$(num fallback.remote-unreachable)" -ge 1 ]
  case_rows "$W2" "scheduler down"
  c_check build "the scheduler restarts on its port" start_test_scheduler "$S"
  PIDS+=("$SCHED_PID")
  registered_again() {
    for _ in $(seq 100); do [ "$(grep -c 'worker w2 registered' "$S.log")" -ge 2 ] && return 0; sleep 0.1; done
    return 1
  }
  c_check build "w2 registers again" registered_again
  routed_cache sched3
  case_build "scheduler back" sc2 sc3 sc1
  c_check bytes "scheduler back: remote answers, no fallback ($(counts))" [ "$(remote_answers)" = 3 -a "$(fallbacks)" = 0 ]
  case_rows "$W2" "scheduler back"
  case_end
fi

if wanted "IdP down"; then
  case_begin "IdP down"
  kill "$IDP_PID"; wait "$IDP_PID" 2>/dev/null
  routed_cache idp1
  case_build "IdP down, token still valid" id1
  c_check bytes "the scheduler's cached keys still verify it: compiled remotely ($(counts))" \
    [ "$(num remote.executed)" = 1 ]
  case_rows "$W2" "IdP down"
  # A scheduler restarted while the IdP is down has no keys to check tokens with.
  kill "$SCHED_PID"; wait "$SCHED_PID" 2>/dev/null
  c_check build "the scheduler restarts while the IdP is down" start_test_scheduler "$S"
  PIDS+=("$SCHED_PID")
  routed_cache idp2
  case_build "IdP down, scheduler without keys" id2 id3
  c_check bytes "IdP down, scheduler without keys: compiled locally ($(counts))" [ "$(num remote.executed)" = 0 ]
  out=$(HPCC_USERNAME=alice HPCC_PASSWORD=secret-a "$HPCC" login </dev/null 2>&1); st=$?
  c_check build "hpcc login with the IdP down fails in one line (exit $st)" \
    eval '[ $st != 0 ] && [ "$(wc -l <<<"$out")" = 1 ]'
  case_rows "$W2" "IdP down, scheduler without keys"
  c_check build "the IdP comes back on its port (new keys)" start_test_idp "$IDPP" alice:secret-a "$IDP_PORT"
  PIDS+=("$IDP_PID")
  fresh_cache idp3
  sleep 1.1   # the scheduler asks a failed IdP again after jwks_min_interval
  c_check build "alice logs in again" login
  case_build "IdP back" id2 id3 id1
  c_check bytes "IdP back: remote answers, no fallback ($(counts))" [ "$(remote_answers)" = 3 -a "$(fallbacks)" = 0 ]
  case_rows "$W2" "IdP back"
  case_end
fi
unset HPCC_REMOTE_SCHEDULER HPCC_REMOTE_SCHEDULER_PIN

# ---- microVM: VMM killed, agent hung, guest filling its disk --------------------------
VM_CASES=("VMM killed" "agent hung" "guest filling its disk")
vm_wanted=
for c in "${VM_CASES[@]}"; do wanted "$c" && vm_wanted=1; done
if [ -n "$vm_wanted" ]; then
  CACHE_ROOT=${HPCC_CACHE_ROOT:-/var/cache/hpcc-dev}
  AGENT="$(dirname "$HPCC")/hpcc-agent"
  readelf -l "$AGENT" 2>/dev/null | grep -q INTERP && AGENT="$REPO_DIR/build/hpcc-agent"
  # Only when test_microvm.sh (or make demo) has built the kernel and the
  # toolchain image once: a first build takes about ten minutes, more than
  # this script's budget. The scripts then only print the cached paths (or
  # rebuild what changed: the initramfs in seconds).
  VM_SKIP= KERNEL= INITRD= OCI=
  if compgen -G "$CACHE_ROOT/guest/kernel-*/vmlinux" >/dev/null && compgen -G "$CACHE_ROOT/guest/toolchain-*" >/dev/null; then
    KERNEL=$(timeout 300 "$REPO_DIR/guest/build-kernel.sh" 2>"$WORK/kernel.log" | tail -n 1)
    INITRD=$(timeout 300 "$REPO_DIR/guest/build-initramfs.sh" "$AGENT" 2>"$WORK/initrd.log" | tail -n 1)
    OCI=$(timeout 300 "$REPO_DIR/guest/build-toolchain-image.sh" 2>"$WORK/toolchain.log" | tail -n 1)
  fi
  if [ ! -f "$KERNEL" ] || [ ! -f "$INITRD" ] || [ ! -d "$OCI" ]; then
    VM_SKIP="guest kernel, initramfs or toolchain image not built yet (test_microvm.sh builds them)"
  elif [ ! -x /usr/bin/qemu-system-x86_64 ]; then
    VM_SKIP="no qemu-system-x86_64"
  fi
fi
if [ -n "$vm_wanted" ] && [ -z "$VM_SKIP" ]; then
  IMAGES="$CACHE_ROOT/guest/images"
  "$HPCC" image import --dir "$IMAGES" "$OCI" >"$WORK/import.out" 2>&1
  VIMAGE=$(grep -o 'sha256:[0-9a-f]\{64\}' "$WORK/import.out" | head -n 1)
  chmod 711 "$WORK"   # the VMM runs as an unprivileged uid
  WM="$WORK/wm"
  "$HPCC" worker init "$WM" --id wm --listen 127.0.0.1:0 --signing-key "$WM.signing.pem" --microvm \
    --kernel "$KERNEL" --initrd "$INITRD" --image "$VIMAGE" --allow-tcg >"$WM.init" 2>&1
  # 512 MB of RAM: an exec's scratch tmpfs is 256 MB. exec_timeout 20 s (a
  # loaded host runs heavy.c under TCG in time): a hung guest is given up after 35 s.
  sed -i "s|^dir = state/images|dir = $IMAGES|; s|^idle_timeout = 300|idle_timeout = 600\nboot_timeout = 120|; s|^exec_timeout = .*|exec_timeout = 20|" \
    "$WM/worker.ini"
  sed -i 's/^allow_tcg = false/allow_tcg = true/; s/^memory = .*/memory = 512M/' "$WM/worker.ini"
  grep -q '^memory' "$WM/worker.ini" || sed -i 's/^\[microvm\]/[microvm]\nmemory = 512M/' "$WM/worker.ini"
  check "the microVM worker starts" start_worker "$WM"
  SAVED_IMAGE=$IMAGE
  IMAGE=$VIMAGE
  issue "$WM" alpha "$WORK/vm.tok"
  use_remote alpha "$WORK/vm.tok"
  qemu_pids() { pgrep -f -- "$WM/state/vms/" || true; }
  fresh_cache vm-warm
  check "a warm-up compile in a microVM" build vm1
  check "it ran in the VM ($(counts))" [ "$(num remote.executed)" = 1 ]
  vm_exec_wait() { # waits until an exec is in flight in the VM
    for _ in $(seq 600); do compgen -G "$WM/state/staging/exec-*" >/dev/null && return 0; sleep 0.05; done
    return 1
  }
else
  for c in "${VM_CASES[@]}"; do wanted "$c" && case_skip "$c" "$VM_SKIP"; done
fi

if [ -n "$vm_wanted" ] && [ -z "$VM_SKIP" ] && wanted "VMM killed"; then
  case_begin "VMM killed"
  fresh_cache vmm
  rm -f "$P/heavy.o"
  compile_one heavy &
  cpid=$!
  killed=
  if vm_exec_wait; then sleep 0.3; for p in $(qemu_pids); do kill -9 "$p" && killed=1; done; fi
  c_check build "killed the VMM mid-exec" test -n "$killed"
  if wait $cpid; then c_ok "the compile passes"; else c_fail build "the compile failed"; fi
  plain heavy
  case_bytes "VMM killed" heavy
  case_rows "$WM" "VMM killed"
  fresh_cache vmm2
  case_build "next build" heavy vm2
  c_check bytes "next build: remote answers, no fallback ($(counts))" [ "$(remote_answers)" = 2 -a "$(fallbacks)" = 0 ]
  case_rows "$WM" "next build"
  case_end
fi

if [ -n "$vm_wanted" ] && [ -z "$VM_SKIP" ] && wanted "agent hung"; then
  case_begin "agent hung"
  fresh_cache hung
  rm -f "$P/vm3.o"
  t0=$(date +%s)
  compile_one vm3 &
  cpid=$!
  stopped=
  if vm_exec_wait; then for p in $(qemu_pids); do kill -STOP "$p" && stopped="$stopped $p"; done; fi
  c_check build "the VMM is stopped mid-exec (SIGSTOP:$stopped)" test -n "$stopped"
  if wait $cpid; then
    c_ok "the compile passes ($(($(date +%s) - t0)) s; remote.executed $(num remote.executed), fallback $(fallbacks))"
  else
    c_fail build "the compile failed"
  fi
  case_bytes "agent hung" vm3
  c_check build "the worker gave up on the hung VM" grep -q "tearing it down\|retrying once\|did not answer" "$WM/worker.log"
  case_rows "$WM" "agent hung"
  for p in $stopped; do kill -CONT "$p" 2>/dev/null; done
  fresh_cache hung2
  case_build "next build" vm3 vm1
  c_check bytes "next build: remote answers, no fallback ($(counts))" [ "$(remote_answers)" = 2 -a "$(fallbacks)" = 0 ]
  case_rows "$WM" "next build"
  case_end
fi

if [ -n "$vm_wanted" ] && [ -z "$VM_SKIP" ] && wanted "guest filling its disk"; then
  case_begin "guest filling its disk"
  plain fill
  fresh_cache fill
  case_build "a 300 MB object in a 256 MB scratch" fill
  c_check bytes "not compiled remotely ($(counts), remote.compile_failed $(num remote.compile_failed))" \
    [ "$(num remote.executed)" = 0 ]
  case_rows "$WM" "disk filled"
  fresh_cache fill2
  case_build "next build" fill vm2
  case_rows "$WM" "next build"
  rm -f "$P/fill.o" "$PLAIN/fill.o"
  case_end
fi
[ -n "$vm_wanted" ] && [ -z "$VM_SKIP" ] && { stop_worker; IMAGE=$SAVED_IMAGE; }

# ---- the matrix -------------------------------------------------------------------------
echo "# matrix: case | build passed | bytes identical | rows intact | time"
for row in "${MATRIX[@]}"; do echo "# matrix: $row"; done
echo "# total $(($(date +%s) - T_START)) s"
exit 0
