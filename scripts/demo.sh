#!/usr/bin/env bash
# demo.sh — build a real C project twice through hpcc and show that the second
# build is served from the local cache with byte-identical results; then the
# whole system on one machine: a test OAuth2 IdP, `hpcc scheduler`, a worker
# whose compiles run in QEMU microVMs (TCG allowed: this machine cannot run
# KVM guests), and two developers who `hpcc login` and build a real project
# in two checkouts: the first compiles in the microVM, the second gets only
# one-round-trip remote hits. Prints the stats and the worker's audit rows.
# Run by `make demo` after the build. HPCC=path overrides build/hpcc.
# The first run also builds the guest kernel (~8 min) and the toolchain
# image (~2 min); both are cached under /var/cache/hpcc-dev/guest.
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
    for p in ${PIDS[@]+"${PIDS[@]}"}; do kill "$p" 2>/dev/null || true; done
    for p in ${PIDS[@]+"${PIDS[@]}"}; do wait "$p" 2>/dev/null || true; done
    rm -rf "$W"
}
PIDS=()
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

# ---- the whole system: IdP, scheduler, microVM worker, two developers ----------
echo
HPCCD="$(dirname "$HPCC")/hpccd"
[[ -x $HPCCD ]] || die "$HPCCD not found: run 'make build' first"
CACHE_ROOT=${HPCC_CACHE_ROOT:-/var/cache/hpcc-dev}
wait_file() { for _ in $(seq 400); do [[ -s $1 ]] && return 0; sleep 0.05; done; return 1; }
say "the whole system on loopback: test IdP -> hpcc scheduler -> microVM worker"
say "guest kernel, initramfs and toolchain image (cached after the first run) ..."
KERNEL=$("$REPO/guest/build-kernel.sh" 2>"$W/kernel.log" | tail -n 1) || { tail "$W/kernel.log" >&2; die "guest kernel"; }
INITRD=$("$REPO/guest/build-initramfs.sh" "$(dirname "$HPCC")/hpcc-agent" 2>"$W/initrd.log" | tail -n 1) ||
    { tail "$W/initrd.log" >&2; die "initramfs"; }
OCI=$("$REPO/guest/build-toolchain-image.sh" 2>"$W/toolchain.log" | tail -n 1) || { tail "$W/toolchain.log" >&2; die "toolchain image"; }
[[ -f $KERNEL && -f $INITRD && -d $OCI ]] || die "guest artefacts missing (kernel '$KERNEL', initrd '$INITRD', image '$OCI')"
IMAGES="$CACHE_ROOT/guest/images"
IMAGE=$("$HPCC" image import --dir "$IMAGES" "$OCI" 2>"$W/import.log") || { cat "$W/import.log" >&2; die "image import"; }
say "toolchain image $IMAGE (debootstrap bookworm + gcc, squashfs)"

# 1. The tenant's IdP (oauth2-mock-server with a password check and an aud claim).
NODE_PATH=$("$REPO/scripts/npm-deps.sh" 2>"$W/npm.log") || { cat "$W/npm.log" >&2; die "the test IdP's node modules"; }
NODE_PATH=$NODE_PATH node "$REPO/tests/idp/idp.js" --port 0 --port-file "$W/idp.port" --alg ES256 --audience hpcc \
    --user alice:alice-secret --user bob:bob-secret --expires-in 900 >"$W/idp.log" 2>&1 &
PIDS+=($!)
wait_file "$W/idp.port" || die "the IdP did not start: $(cat "$W/idp.log")"
IDP=http://127.0.0.1:$(cat "$W/idp.port")
say "1. IdP of tenant 'demo' at $IDP (ES256 tokens, users alice and bob)"

# 2. The scheduler, with one tenant.
"$HPCC" scheduler init "$W/sched" --listen 127.0.0.1:0 >"$W/sched.init" || die "hpcc scheduler init failed"
SPIN=$(sed -n 's/^certificate pin *//p' "$W/sched.init")
sed -i 's/^heartbeat_interval_ms = .*/heartbeat_interval_ms = 2000\nallow_insecure_idp = true/' "$W/sched/scheduler.ini"
{
    echo "[tenant demo]"
    echo "issuer = $IDP"
    echo "audience = hpcc"
    echo "client_id = hpcc-cli"
    echo "scope = openid offline_access"
    echo "images = $IMAGE"
} >>"$W/sched/scheduler.ini"
HPCC_LOG_FILE=$W/scheduler.log "$HPCC" scheduler --config "$W/sched/scheduler.ini" --port-file "$W/sched/port" \
    >"$W/scheduler.out" 2>&1 &
PIDS+=($!)
wait_file "$W/sched/port" || die "the scheduler did not start: $(cat "$W/scheduler.out")"
SCHED=127.0.0.1:$(cat "$W/sched/port")
say "2. hpcc scheduler at $SCHED (pin ${SPIN:0:23}...), route-only: it never sees a source"

# 3. A worker with the microVM runtime that registers with the scheduler.
chmod 711 "$W"   # the VMMs run as unprivileged users and must reach the worker's run directories
"$HPCC" worker init "$W/worker" --id vm-worker-1 --listen 127.0.0.1:0 --microvm --allow-tcg \
    --kernel "$KERNEL" --initrd "$INITRD" --image "$IMAGE" \
    --scheduler "$SCHED" --scheduler-pin "$SPIN" --worker-token-file "$W/sched/worker-token" >"$W/worker.init" ||
    die "hpcc worker init failed"
sed -i "s|^dir = state/images|dir = $IMAGES|; s|^boot_timeout = .*|boot_timeout = 120|" "$W/worker/worker.ini"
HPCC_LOG_FILE=$W/worker.log "$HPCC" worker --config "$W/worker/worker.ini" --port-file "$W/worker/port" \
    >"$W/worker.out" 2>&1 &
PIDS+=($!)
wait_file "$W/worker/port" || die "the worker did not start: $(cat "$W/worker.out")"
for _ in $(seq 100); do grep -q 'worker vm-worker-1 registered' "$W/scheduler.log" 2>/dev/null && break; sleep 0.1; done
grep -q 'worker vm-worker-1 registered' "$W/scheduler.log" || die "the worker did not register: $(tail -3 "$W/worker.log")"
say "3. worker vm-worker-1 on 127.0.0.1:$(cat "$W/worker/port"), registered; compiles run in QEMU microVMs" \
    "(no network device, one VM per tenant; TCG on this machine)"

# 4. Two developers: each signs in and builds zlib in a checkout of their own.
ZLIB=$("$REPO/scripts/fetch-project.sh" zlib "$W/zlib-src") || die "fetching zlib failed"
ZVER=$(sed -n 's/^#define ZLIB_VERSION "\(.*\)"/\1/p' "$ZLIB/zlib.h")
checkout() { # DIR → a configured zlib tree marked as a project root
    mkdir -p "$(dirname "$1")" && cp -a "$ZLIB" "$1" &&
        (cd "$1" && CC=gcc ./configure --static >/dev/null && "$HPCC" init >/dev/null)
}
checkout "$W/alice/src/zlib" && checkout "$W/bob/work/zlib-copy" && checkout "$W/plain/zlib" ||
    die "configuring zlib failed"
# The reference: plain gcc, with the prefix map hpcc injects (so paths inside objects match).
ZFLAGS=$(sed -n 's/^CFLAGS=//p' "$W/plain/zlib/Makefile")
make -s -C "$W/plain/zlib" -j"$JOBS" libz.a CFLAGS="$ZFLAGS -ffile-prefix-map=$W/plain/zlib=." >/dev/null 2>&1 ||
    die "the plain build of zlib failed"
{
    echo "[remote]"
    echo "scheduler = $SCHED"
    echo "scheduler_pin = $SPIN"
    echo "tenant = demo"
    echo "image = $IMAGE"
} >"$W/client.ini"
export HPCC_CONFIG=$W/client.ini
dev() { # NAME PASSWORD DIR → login, build, stats; sets DEV_TIME
    local name=$1 pw=$2 dir=$3
    "$HPCC" daemon stop >/dev/null 2>&1 || true
    export HPCC_DIR=$W/cache-$name HPCC_LOG_FILE=$W/$name-hpcc.log
    say "$name: hpcc login (password grant at the tenant's IdP, which the scheduler names)"
    HPCC_USERNAME=$name HPCC_PASSWORD=$pw "$HPCC" login </dev/null | sed 's/^/    /'
    [[ ${PIPESTATUS[0]} == 0 ]] || die "$name's login failed"
    "$HPCC" stats --zero >/dev/null
    say "$name builds zlib $ZVER in $dir: make -j$JOBS libz.a CC=\"hpcc gcc\" ..."
    local t0=$EPOCHREALTIME
    make -C "$dir" -j"$JOBS" libz.a CC="$HPCC gcc" >"$W/$name.log" 2>&1 ||
        { tail -n 15 "$W/$name.log" >&2; die "$name's build failed"; }
    DEV_TIME=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    say "$name's build took $DEV_TIME s"
    "$HPCC" stats | sed 's/^/    /'
    "$HPCC" daemon status 2>/dev/null | grep -E '^remote_(scheduler|worker)' | sed 's/^/    /'
}
echo
dev alice alice-secret "$W/alice/src/zlib"
ta=$DEV_TIME
aexec=$("$HPCC" stats --json | grep -o '"remote.executed": [0-9]*' | grep -o '[0-9]*$')
echo
dev bob bob-secret "$W/bob/work/zlib-copy"
tb=$DEV_TIME
json=$("$HPCC" stats --json)
rhits=$(grep -o '"remote.hit": [0-9]*' <<<"$json" | grep -o '[0-9]*$')
rmiss=$(grep -o '"miss": [0-9]*' <<<"$json" | grep -o '[0-9]*$')
rexec=$(grep -o '"remote.executed": [0-9]*' <<<"$json" | grep -o '[0-9]*$')

echo
n=0 diff=()
for o in "$W/plain/zlib"/*.o; do
    b=$(basename "$o")
    [[ -f $W/alice/src/zlib/$b ]] || continue
    n=$((n + 1))
    cmp -s "$o" "$W/alice/src/zlib/$b" && cmp -s "$o" "$W/bob/work/zlib-copy/$b" || diff+=("$b")
done
((n > 0)) || die "no objects to compare"
if ((${#diff[@]})); then
    say "DIFFERENT from a plain gcc build: ${diff[*]}"
    exit 1
fi
say "cmp: all $n objects of alice's and bob's checkouts are byte-identical to a plain gcc build on this host"
say "alice: ${aexec:-0} compiles in the microVM, $ta s; bob: ${rhits:-0} remote hits (one round trip each)," \
    "${rexec:-0} remote compiles, $tb s"
echo
AUDIT=$W/worker/state/audit/current.tsv   # the live segment; '#' lines are its header (and a seal)
say "the worker's audit log ($(grep -vc '^#' "$AUDIT") rows in current.tsv, hash-chained, written before each answer); the last 5:"
printf '    %-27s %-7s %-22s %-6s %-5s %-7s %s\n' time tenant vm cache exit ms action
grep -v '^#' "$AUDIT" | tail -n 5 | awk -F'\t' '{ printf "    %-27s %-7s %-22s %-6s %-5s %-7s %.23s\n", $1, $6, $8, $12, $10, $9, $11 }'
[[ ${aexec:-0} -gt 0 && ${rhits:-0} -gt 0 && ${rexec:-1} -eq 0 ]] ||
    die "expected alice's compiles in the microVM and only remote hits for bob"
say "hpcc audit verify (chain, seq and seals of every segment):"
"$HPCC" audit verify "$W/worker/state/audit" | sed 's/^/    /'
[[ ${PIPESTATUS[0]} == 0 ]] || die "the worker's audit log does not verify"
# Bob's daemon kept the rows of his jobs: inspect one by the object's digest,
# then have the worker run that compile again in a fresh microVM.
obj=$(sha256sum <"$W/bob/work/zlib-copy/adler32.o" | cut -c1-12)
say "hpcc inspect $obj   (bob's adler32.o, by its digest)"
"$HPCC" inspect "$obj" | sed 's/^/    /'
say "hpcc reproduce $obj   (the worker re-runs it, caches bypassed)"
"$HPCC" reproduce "$obj" | sed 's/^/    /'
[[ ${PIPESTATUS[0]} == 0 ]] || die "adler32.o's compile did not reproduce"
