#!/usr/bin/env bash
# demo.sh — build a real C project twice through hpcc and show that the second
# build is served from the cache with byte-identical results; then two
# developers' checkouts against one worker on loopback (TLS, runtime
# unsafe-local): the first compiles remotely, the second is all remote hits.
# Run by `make demo` after the build. HPCC=path overrides build/hpcc.
#
# The project is libzstd's lib/ from Debian's source archive (see
# scripts/fetch-project.sh): 33 objects (32 C files with -MMD -MP -MF
# dependency files, one .S), built by `make -C lib libzstd.a` with its own flags.
set -euo pipefail

die() { echo "demo: error: $*" >&2; exit 1; }
say() { echo "demo: $*"; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HPCC=${HPCC:-$REPO/build/hpcc}
[[ $HPCC == /* ]] || HPCC=$PWD/$HPCC
[[ -x $HPCC ]] || die "$HPCC not found: run 'make build' first (or set HPCC=...)"
for c in make gcc; do command -v "$c" >/dev/null || die "needs $c"; done
JOBS=$(nproc)

# A private cache, daemon and configuration: nothing of the user's is used or touched.
while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^HPCC_' || true)
W=$(mktemp -d "${TMPDIR:-/tmp}/hpcc-demo.XXXXXX")
export HPCC_DIR=$W/cache HPCC_CONFIG=$W/hpcc.ini
: >"$HPCC_CONFIG"
cleanup() {
    "$HPCC" daemon stop >/dev/null 2>&1 || true
    for c in "$W"/cache-*; do HPCC_DIR=$c "$HPCC" daemon stop >/dev/null 2>&1 || true; done
    if [[ -n ${WORKER_PID:-} ]]; then kill "$WORKER_PID" 2>/dev/null; wait "$WORKER_PID" 2>/dev/null || true; fi
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

P=$("$REPO/scripts/fetch-project.sh" libzstd "$W/libzstd") || die "fetching libzstd failed"
VERSION=$(dpkg-parsechangelog -l "$P/debian/changelog" -S Version 2>/dev/null || echo '?')
(cd "$P" && "$HPCC" init >/dev/null) || die "hpcc init failed"
"$HPCC" clean --all >/dev/null || die "hpcc clean --all failed"
"$HPCC" stats --zero >/dev/null || die "hpcc stats --zero failed"

say "$("$HPCC" --version) on libzstd $VERSION (Debian source), make -j$JOBS -C lib libzstd.a CC=\"hpcc gcc\""
say "project $P (marked with 'hpcc init'), cache $HPCC_DIR"

build() {   # build N -> wall time in seconds
    local t0 t1
    t0=$EPOCHREALTIME
    if ! make -C "$P/lib" -j"$JOBS" libzstd.a CC="$HPCC gcc" >"$W/build$1.log" 2>&1; then
        tail -n 15 "$W/build$1.log" >&2
        die "build $1 failed (log above)"
    fi
    t1=$EPOCHREALTIME
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }'
}

echo
say "build 1, empty cache ..."
s1=$(build 1)
say "build 1 took $s1 s"
"$HPCC" stats | sed 's/^/    /'
# Keep the first build's outputs (objects, .d files, the archive) to compare.
mkdir -p "$W/first"
(cd "$P/lib" && cp -a obj libzstd.a "$W/first/")

echo
make -C "$P/lib" clean >/dev/null 2>&1 || die "make clean failed"
"$HPCC" stats --zero >/dev/null
say "make clean; counters zeroed; build 2, warm cache ..."
s2=$(build 2)
say "build 2 took $s2 s"
"$HPCC" stats | sed 's/^/    /'

echo
# Compare every output of the two builds byte for byte.
n_o=0 n_d=0 diff=()
while IFS= read -r -d '' f; do
    rel=${f#"$W/first/"}
    case $rel in *.o) n_o=$((n_o + 1)) ;; *.d) n_d=$((n_d + 1)) ;; esac
    cmp -s "$f" "$P/lib/$rel" || diff+=("$rel")
done < <(find "$W/first" -type f -print0)
[[ -f $P/lib/libzstd.a ]] || diff+=(libzstd.a)
((n_o > 0)) || die "the first build produced no objects"

json=$("$HPCC" stats --json)
hits=$(grep -o '"direct_hit": [0-9]*' <<<"$json" | grep -o '[0-9]*$')
misses=$(grep -o '"miss": [0-9]*' <<<"$json" | grep -o '[0-9]*$')
ok=1
if ((${#diff[@]})); then
    ok=
    say "DIFFERENT between the two builds: ${diff[*]}"
else
    say "cmp: all $n_o objects, $n_d dependency files and libzstd.a are byte-identical in both builds"
fi
if [[ ${misses:-1} -ne 0 || ${hits:-0} -eq 0 ]]; then
    ok=
    say "expected only hits in build 2, got ${hits:-?} hits and ${misses:-?} misses"
else
    say "build 2: $hits hits, 0 misses; $s1 s -> $s2 s"
fi
[[ -n $ok ]] || exit 1

# ---- two developers, one worker ------------------------------------------------
echo
HPCCD="$(dirname "$HPCC")/hpccd"
[[ -x $HPCCD ]] || die "$HPCCD not found: run 'make build' first"
say "remote: a worker on loopback (TLS 1.3, pinned certificate, runtime unsafe-local)"
"$HPCC" worker init "$W/worker" --id demo-worker --listen 127.0.0.1:0 --allow-unsafe-local \
    --signing-key "$W/signing.pem" >"$W/worker.init" ||
    die "hpcc worker init failed"
HPCC_LOG_FILE=$W/worker.log "$HPCC" worker --config "$W/worker/worker.ini" --port-file "$W/worker/port" \
    >"$W/worker.out" 2>&1 &
WORKER_PID=$!
for _ in $(seq 100); do [[ -s $W/worker/port ]] && break; sleep 0.05; done
[[ -s $W/worker/port ]] || die "the worker did not start: $(cat "$W/worker.out")"
IMAGE=$("$HPCCD" worker host-image)
"$HPCC" token issue --key "$W/signing.pem" --tenant demo --image "$IMAGE" --worker demo-worker \
    --out "$W/token" || die "hpcc token issue failed"
export HPCC_REMOTE_WORKER=127.0.0.1:$(cat "$W/worker/port") HPCC_REMOTE_TENANT=demo HPCC_REMOTE_IMAGE=$IMAGE \
    HPCC_REMOTE_TOKEN_FILE=$W/token HPCC_REMOTE_PIN=$(sed -n 's/^certificate pin *//p' "$W/worker.init")
say "worker 127.0.0.1:$(cat "$W/worker/port"), pin $HPCC_REMOTE_PIN, tenant demo, image $IMAGE"

remote_build() { # NAME DIR → builds DIR/lib (the caller set HPCC_DIR), prints the wall time
    local t0=$EPOCHREALTIME
    make -C "$2/lib" -j"$JOBS" libzstd.a CC="$HPCC gcc" >"$W/$1.log" 2>&1 || { tail -n 15 "$W/$1.log" >&2; die "$1's build failed"; }
    awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'
}
A=$("$REPO/scripts/fetch-project.sh" libzstd "$W/alice/src/libzstd") && (cd "$A" && "$HPCC" init >/dev/null)
B=$("$REPO/scripts/fetch-project.sh" libzstd "$W/bob/work/checkouts/libzstd-2") && (cd "$B" && "$HPCC" init >/dev/null)
"$HPCC" daemon stop >/dev/null 2>&1 || true
export HPCC_DIR=$W/cache-alice HPCC_LOG_FILE=$W/alice-hpcc.log
say "alice builds $A (empty local cache: misses compile on the worker) ..."
ta=$(remote_build alice "$A")
say "alice's build took $ta s"
"$HPCC" stats | sed 's/^/    /'
echo
"$HPCC" daemon stop >/dev/null 2>&1 || true
export HPCC_DIR=$W/cache-bob HPCC_LOG_FILE=$W/bob-hpcc.log
say "bob builds $B (another path, another empty local cache) ..."
tb=$(remote_build bob "$B")
say "bob's build took $tb s"
"$HPCC" stats | sed 's/^/    /'
json=$("$HPCC" stats --json)
rhits=$(grep -o '"remote.hit": [0-9]*' <<<"$json" | grep -o '[0-9]*$')
rmiss=$(grep -o '"miss": [0-9]*' <<<"$json" | grep -o '[0-9]*$')
n=0 diff=()
while IFS= read -r -d '' f; do
    rel=${f#"$A/lib/"}
    n=$((n + 1))
    cmp -s "$f" "$B/lib/$rel" || diff+=("$rel")
done < <(find "$A/lib/obj" -name '*.o' -print0)
echo
if ((${#diff[@]})); then
    say "DIFFERENT between alice's and bob's objects: ${diff[*]}"
    exit 1
fi
say "cmp: all $n objects of alice's and bob's checkouts are byte-identical"
say "bob: $rhits remote hits (one round trip each), $rmiss misses; $ta s -> $tb s"
say "worker log: $(grep -c 'executed' "$W/worker.log") executions, $(grep -c 'probe' "$W/worker.log") probes"
[[ ${rmiss:-1} -eq 0 && ${rhits:-0} -gt 0 ]] || { tail -n 5 "$W"/*-hpcc.log >&2; die "expected only remote hits in bob's build"; }
