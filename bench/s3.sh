#!/usr/bin/env bash
# bench/s3.sh — a full build whose every compile is a hit served through
# hpcc's shared S3 tier (the worker's own disk cold), against ccache 4.7 with
# its Redis remote storage (remote_only), in one run, on zlib's libz.a (15
# compiles, Debian's source). Everything on loopback: the test S3 server
# (tests/s3, s3rver behind a SigV4 check), one worker (TLS, runtime
# unsafe-local, direct mode with a routing token), Debian's redis-server.
#
#   hpcc:   a first build under a fresh tenant runs every compile on the worker,
#           which writes results, sources and direct manifests to S3 behind.
#           Once S3 holds them, each timed rep: stop the worker, delete its
#           state/tenants (disk cold), start it, a fresh client cache dir
#           (HPCC_DIR; its daemon started before the timer), `make clean`, time
#           `make -j2 libz.a`. Checks: remote.hit = compiles, nothing executed,
#           the worker's "shared tier: s3 hits" >= compiles, objects
#           byte-identical to the first build.
#   ccache: remote_storage = redis://127.0.0.1:PORT, remote_only = true (no
#           local storage, so every hit comes from Redis); one populating build,
#           then the timed builds. Check: remote_storage_hit = compiles.
# Reps alternate hpcc, ccache. Medians per build and per compile, the ratio.
# Knobs: HPCC (default build/hpcc; hpccd beside it), REPS (5), JOBS (2),
# RESULTS (bench/results/s3.txt), KEEP=1 keeps the work directory.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
REPS=${REPS:-5}
JOBS=${JOBS:-2}
RESULTS=${RESULTS:-$REPO/bench/results/s3.txt}
[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "REPS must be a positive integer"
bench_need ccache redis-server redis-cli node curl make gcc python3
bench_clean_env 'HPCC_|CCACHE_|AWS_'

W=$(mktemp -d /tmp/hpcc-bench-s3.XXXXXX)
export HPCC_CONFIG=$W/hpcc.ini CCACHE_CONFIGPATH=$W/ccache.conf
: >"$HPCC_CONFIG"; : >"$CCACHE_CONFIGPATH"
pids=() WPID=
cleanup() {
  for d in "$W"/cache-*; do [ -d "$d" ] && HPCC_DIR=$d "$HPCC" daemon stop >/dev/null 2>&1 || true; done
  [ -z "$WPID" ] || kill "$WPID" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] && echo "bench: kept $W" >&2 || rm -rf "$W"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- the project ------------------------------------------------------------------
P=$("$REPO/scripts/fetch-project.sh" zlib "$W/zlib") || die "fetching zlib failed"
(cd "$P" && CC=gcc ./configure --static >/dev/null) || die "zlib's configure failed"
(cd "$P" && "$HPCC" init >/dev/null)
N=$(make -C "$P" -n -B libz.a CC=gcc | grep -c -- ' -c ' || true)
ZV=$(sed -n 's/^#define ZLIB_VERSION "\(.*\)"/\1/p' "$P/zlib.h")
say "zlib $ZV, make -j$JOBS libz.a: $N compiles"
build() { # CC LOG → wall seconds of make clean (untimed) + make -j libz.a
  local TIMEFORMAT='%R'
  make -C "$P" -s clean >/dev/null 2>&1 || die "make clean failed"
  { time make -C "$P" -j"$JOBS" libz.a CC="$1" >"$2" 2>&1 || { tail -n 15 "$2" >&2; die "build with CC='$1' failed"; }; } 2>&1
}
objects_sum() { (cd "$P" && find . -maxdepth 1 -name '*.o' | sort | xargs sha256sum); }

# ---- the S3 server --------------------------------------------------------------
S3_MODULES=$("$REPO/scripts/npm-deps.sh" "$REPO/tests/s3" 2>"$W/npm.log") || die "npm modules of tests/s3: $(tail -n3 "$W/npm.log")"
NODE_PATH=$S3_MODULES node "$REPO/tests/s3/s3.js" --port 0 --port-file "$W/s3.port" --dir "$W/s3data" \
  --bucket hpcc --access-key AKBENCH --secret-key bench-secret >"$W/s3.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do [ -s "$W/s3.port" ] && break; sleep 0.05; done
[ -s "$W/s3.port" ] || die "the S3 server did not start: $(tail -n5 "$W/s3.log")"
S3=http://127.0.0.1:$(cat "$W/s3.port")
printf '[default]\naws_access_key_id = AKBENCH\naws_secret_access_key = bench-secret\n' >"$W/creds"
chmod 600 "$W/creds"
s3count() { # PREFIX → number of keys under it (first 1000)
  curl -s --aws-sigv4 "aws:amz:us-east-1:s3" --user AKBENCH:bench-secret \
    -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
    "$S3/hpcc?list-type=2&prefix=${1//\//%2F}" | grep -o '<Key>' | wc -l
}
s3puts() { curl -sf "$S3/__test/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["methods"].get("PUT", 0))'; }

# ---- the worker (direct mode: a routing token signed with its key) -----------------
say "worker on loopback (TLS, runtime unsafe-local) with [s3] $S3"
"$HPCC" worker init "$W/worker" --id bench --listen 127.0.0.1:0 --allow-unsafe-local \
  --signing-key "$W/signing.pem" >"$W/worker.init"
printf '[s3]\nendpoint = %s\nregion = us-east-1\nbucket = hpcc\ncredentials_file = %s\ntimeout_ms = 2000\n' \
  "$S3" "$W/creds" >>"$W/worker/worker.ini"
WPORT=
start_worker() { # the same port every time, so the client's settings stay valid
  rm -f "$W/worker/port"
  [ -z "$WPORT" ] || sed -i "s/^listen = .*/listen = 127.0.0.1:$WPORT/" "$W/worker/worker.ini"
  HPCC_LOG_FILE="$W/worker.log" HPCC_LOG_LEVEL=info "$HPCC" worker --config "$W/worker/worker.ini" \
    --port-file "$W/worker/port" >>"$W/worker.out" 2>&1 &
  WPID=$!
  for _ in $(seq 200); do [ -s "$W/worker/port" ] && break; sleep 0.05; done
  [ -s "$W/worker/port" ] || die "the worker did not start: $(tail -n5 "$W/worker.out" "$W/worker.log" 2>/dev/null)"
  WPORT=$(cat "$W/worker/port")
}
stop_worker() { # sets TIER: the worker's shared-tier line at shutdown
  kill "$WPID"; wait "$WPID" 2>/dev/null || true; WPID=
  TIER=$(grep 'shared tier: s3 hits' "$W/worker.log" | tail -n1 | sed 's/.*shared tier: //' || true)
}
start_worker
grep -q "shared tier: s3 bucket hpcc" "$W/worker.log" || die "the worker does not use the shared tier: $(tail -n5 "$W/worker.log")"
IMAGE=$("$HPCCD" worker host-image)
TENANT=s3bench
"$HPCC" token issue --key "$W/signing.pem" --tenant "$TENANT" --image "$IMAGE" --worker bench --out "$W/tok" >/dev/null
PIN=$(sed -n 's/^certificate pin *//p' "$W/worker.init")
export HPCC_REMOTE_WORKER=127.0.0.1:$WPORT HPCC_REMOTE_TENANT=$TENANT HPCC_REMOTE_IMAGE=$IMAGE \
  HPCC_REMOTE_TOKEN_FILE=$W/tok HPCC_REMOTE_PIN=$PIN
hstat() { "$HPCC" stats --json | sed -n "s/^  \"$1\": \\([0-9]*\\).*/\\1/p"; }

# ---- hpcc: populate the worker and S3 ------------------------------------------------
say "hpcc: first build (every compile runs on the worker; results go to S3 behind)"
export HPCC_DIR=$W/cache-populate
build "$HPCC gcc" "$W/populate.log" >/dev/null
ex=$(hstat remote.executed)
[ "$ex" = "$N" ] || die "first hpcc build: $ex of $N compiles executed remotely"
objects_sum >"$W/objects.ref"
"$HPCC" daemon stop >/dev/null
for _ in $(seq 300); do
  [ "$(s3count "v1/$TENANT/ac/")" -ge "$N" ] && [ "$(s3count "v1/$TENANT/dm/")" -ge "$N" ] && break; sleep 0.1
done
AC=$(s3count "v1/$TENANT/ac/") DM=$(s3count "v1/$TENANT/dm/")
[ "$AC" -ge "$N" ] && [ "$DM" -ge "$N" ] || die "S3 holds only $AC results and $DM manifests for $N compiles"
p0=-1; for _ in $(seq 100); do p1=$(s3puts); [ "$p1" = "$p0" ] && break; p0=$p1; sleep 0.3; done   # queue drained
stop_worker; POP_TIER=$TIER
CAS=$(s3count "v1/$TENANT/cas/")
say "S3 holds $AC results, $DM direct manifests, $CAS blobs; worker: $POP_TIER"

# ---- ccache: Redis, populate --------------------------------------------------------
RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no >"$W/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
redis-cli -p "$RPORT" ping >/dev/null 2>&1 || die "redis-server did not start: $(tail -n3 "$W/redis.log")"
export CCACHE_DIR=$W/ccache CCACHE_REMOTE_STORAGE=redis://127.0.0.1:$RPORT CCACHE_REMOTE_ONLY=true
say "ccache: first build (remote_only, Redis on port $RPORT)"
build "ccache gcc" "$W/ccache-populate.log" >/dev/null
ccache -z >/dev/null
ccstat() { ccache --print-stats | awk -F'\t' -v k="$1" '$1 == k { print $2 }'; }

# ---- timed builds, alternating ----------------------------------------------------------
H_ALL=() D_ALL=() C_ALL=() TIERS=() BAD=()
for ((r = 1; r <= REPS; r++)); do
  # hpcc: worker disk cold, fresh client cache, daemon up before the timer.
  rm -rf "$W/worker/state/tenants"
  start_worker
  export HPCC_DIR=$W/cache-$r
  "$HPCC" daemon start >/dev/null
  sleep 0.3   # its channel to the worker connects at start, as between a developer's builds
  t=$(build "$HPCC gcc" "$W/hpcc-$r.log")
  rh=$(hstat remote.hit) ex=$(hstat remote.executed)
  "$HPCC" daemon stop >/dev/null
  objects_sum | cmp -s - "$W/objects.ref" || BAD+=("hpcc rep $r: objects differ from the first build")
  # Context: the same build again, fresh client cache, the worker's disk now warm (no S3).
  export HPCC_DIR=$W/cache-$r-disk
  "$HPCC" daemon start >/dev/null
  sleep 0.3
  D_ALL+=("$(build "$HPCC gcc" "$W/hpcc-$r-disk.log")")
  [ "$(hstat remote.hit)" = "$N" ] || BAD+=("hpcc rep $r, worker disk warm: remote.hit $(hstat remote.hit) (expected $N)")
  "$HPCC" daemon stop >/dev/null
  stop_worker; tier=$TIER
  s3h=$(sed -n 's/^s3 hits \([0-9]*\) .*/\1/p' <<<"$tier")
  [ "$rh" = "$N" ] && [ "$ex" = 0 ] || BAD+=("hpcc rep $r: remote.hit $rh, remote.executed $ex (expected $N, 0)")
  [ "${s3h:-0}" -ge "$N" ] || BAD+=("hpcc rep $r: the worker's tier says s3 hits ${s3h:-?} (< $N): not served from S3")
  H_ALL+=("$t") TIERS+=("$tier")
  say "rep $r/$REPS  hpcc   $t s (worker disk warm: ${D_ALL[-1]} s)  remote.hit $rh/$N  executed $ex  worker tier: $tier"
  # ccache: nothing local (remote_only), every hit from Redis.
  ccache -z >/dev/null
  t=$(build "ccache gcc" "$W/ccache-$r.log")
  ch=$(ccstat remote_storage_hit) cm=$(ccstat cache_miss)
  [ "${ch:-0}" = "$N" ] && [ "${cm:-0}" = 0 ] || BAD+=("ccache rep $r: remote_storage_hit ${ch:-0}, cache_miss ${cm:-0} (expected $N, 0)")
  C_ALL+=("$t")
  say "rep $r/$REPS  ccache $t s  remote_storage_hit ${ch:-0}/$N  miss ${cm:-0}"
done
CC_STATS=$(ccache --print-stats | awk -F'\t' '$1 ~ /^(direct_cache_hit|preprocessed_cache_hit|cache_miss|remote_storage_hit|remote_storage_miss|remote_storage_error|local_storage_hit)$/ { printf "%s=%s ", $1, $2 }')
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- report ---------------------------------------------------------------------------
HM=$(printf '%s\n' "${H_ALL[@]}" | median)
CM=$(printf '%s\n' "${C_ALL[@]}" | median)
DM_=$(printf '%s\n' "${D_ALL[@]}" | median)
mkdir -p "$(dirname "$RESULTS")"
{
  echo "hpcc shared S3 tier vs ccache Redis remote storage — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores"
  echo "project: zlib $ZV (Debian source), make -j$JOBS libz.a, $N compiles; load average at start $LOAD_START, at end $LOAD_END"
  echo "$("$HPCC" version 2>/dev/null | head -n1), $(ccache --version | head -n1), redis $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p'), gcc $(gcc -dumpfullversion)"
  echo "hpcc: worker on loopback (TLS), [s3] = tests/s3 (s3rver + SigV4) on loopback; before each rep the worker is"
  echo "      restarted with state/tenants deleted and the client gets a fresh HPCC_DIR (daemon started untimed)"
  echo "ccache: remote_storage = redis://127.0.0.1 (redis-server --save '' --appendonly no), remote_only = true"
  echo
  awk -v h="$HM" -v c="$CM" -v d="$DM_" -v n="$N" 'BEGIN {
    printf "  %-40s %8.3f s  %7.1f ms/compile\n", "hpcc S3-tier hit build (median)", h, 1000 * h / n
    printf "  %-40s %8.3f s  %7.1f ms/compile\n", "ccache Redis-remote hit build (median)", c, 1000 * c / n
    printf "  %-40s %8.3f s  %7.1f ms/compile   (context: worker disk warm, no S3)\n", "hpcc worker-disk hit build (median)", d, 1000 * d / n
  }'
  echo "  reps (s): hpcc=[${H_ALL[*]}] ccache=[${C_ALL[*]}] hpcc-disk=[${D_ALL[*]}]"
  echo "  populate: S3 held $AC results, $DM direct manifests, $CAS blobs; worker tier then: $POP_TIER"
  echo "  worker tier at shutdown, per rep: $(printf '[%s] ' "${TIERS[@]}")"
  echo "  ccache counters over the last timed rep: $CC_STATS"
  echo
  echo "s3-tier hit vs ccache redis-remote hit: $(awk -v h="$HM" -v c="$CM" 'BEGIN { printf "%.2fx", h / c }') (target <= 1.0x)"
  echo "(context) worker-disk hit vs ccache redis-remote hit: $(awk -v h="$DM_" -v c="$CM" 'BEGIN { printf "%.2fx", h / c }')"
  for b in "${BAD[@]}"; do echo "WARNING: $b"; done
  if awk -v a="${LOAD_START%% *}" 'BEGIN { exit !(a >= 1.0) }'; then
    echo "WARNING: load average was ${LOAD_START%% *} at start: other work shared the $(nproc) cores, timings are noisy"
  fi
} >"$W/report.txt"
cp "$W/report.txt" "$RESULTS"
echo
cat "$W/report.txt"
echo "(written to ${RESULTS#"$REPO"/})"
((${#BAD[@]} == 0)) || exit 1
