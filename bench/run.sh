#!/usr/bin/env bash
# bench/run.sh — compare hpcc with ccache, sccache and plain gcc on a real C
# project (libzstd's lib/, from Debian's source archive). See bench/README.md.
#
# Measures, in one run, each tool with its own private cache directory:
#   a. single-file hit latency (hyperfine -N) of one compile of the project;
#   b. warm rebuild: `make clean` then a full `make -jN` with a warm cache;
#   c. cold build: empty cache, full `make -jN`, against plain gcc.
# Prints a table and the ratios, and writes them to bench/results/latest.txt.
#
# Knobs (environment):
#   HPCC=path        hpcc binary (default: build/hpcc of this repository)
#   TOOLS="..."      subset of: plain ccache sccache hpcc (default: all four)
#   PROJECT=libzstd  Debian source package (only libzstd is described below)
#   JOBS=N           make -jN (default: number of cores)
#   REPS_COLD=3      cold builds per tool (median reported)
#   REPS_WARM=5      warm rebuilds per tool (median reported)
#   HIT_RUNS=300     hyperfine runs per cache tool (HIT_WARMUP=20 before them)
#   PLAIN_RUNS=10    hyperfine runs of the plain compile (it takes ~2 s)
#   MAKE_VARS=...    extra make variables (default for libzstd: LIBZSTD=., see below)
#   RESULTS=path     where to write the report (default: bench/results/latest.txt)
set -euo pipefail

die() { echo "bench: error: $*" >&2; exit 1; }
say() { echo "bench: $*" >&2; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HPCC=${HPCC:-$REPO/build/hpcc}
TOOLS=${TOOLS:-plain ccache sccache hpcc}
PROJECT=${PROJECT:-libzstd}
JOBS=${JOBS:-$(nproc)}
REPS_COLD=${REPS_COLD:-3}
REPS_WARM=${REPS_WARM:-5}
HIT_RUNS=${HIT_RUNS:-300}
HIT_WARMUP=${HIT_WARMUP:-20}
PLAIN_RUNS=${PLAIN_RUNS:-10}
RESULTS=${RESULTS:-$REPO/bench/results/latest.txt}

for n in JOBS REPS_COLD REPS_WARM HIT_RUNS HIT_WARMUP PLAIN_RUNS; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive integer (got '${!n}')"
done

# ---- the project ----------------------------------------------------------
# BUILD_DIR: where make runs; TARGET: what it builds; HIT_SRC: the file of the
# hit-latency test (as the Makefile names it); OBJ_GLOB: the objects to count.
case $PROJECT in
libzstd)
    BUILD_SUBDIR=lib
    TARGET=libzstd.a
    # zstd_decompress.c: 2,400 lines, ~25 project headers, ~1.9 s at -O3 —
    # a middle-of-the-road file (the lib's files take 0.1 s to 18 s).
    HIT_SRC=decompress/zstd_decompress.c
    # LIBZSTD=. : zstd's default LIBZSTD=./ makes the sources `.//dir/x.c`,
    # and ccache 4.7.5 then resolves `#include "../common/x.h"` to the
    # absolute `/dir/../common/x.h`, fails to stat it and silently drops to
    # preprocessor mode (direct_cache_miss + preprocessed_cache_hit on every
    # warm compile). `./dir/x.c` keeps ccache in its default direct mode, so
    # it is measured at its best. MAKE_VARS= (empty) reproduces the quirk.
    MAKE_VARS=${MAKE_VARS-LIBZSTD=.}
    ;;
*) die "PROJECT=$PROJECT: no build recipe in bench/run.sh (only libzstd)" ;;
esac

# ---- tools -------------------------------------------------------------------
declare -A WANT=()
for t in $TOOLS; do
    case $t in plain|ccache|sccache|hpcc) WANT[$t]=1 ;; *) die "unknown tool in TOOLS: $t" ;; esac
done
want() { [[ -n ${WANT[$1]:-} ]]; }
ORDER=()
for t in plain ccache sccache hpcc; do want "$t" && ORDER+=("$t"); done
CACHERS=()
for t in ccache sccache hpcc; do want "$t" && CACHERS+=("$t"); done

missing=()
command -v gcc >/dev/null || missing+=(gcc)
command -v make >/dev/null || missing+=(make)
command -v hyperfine >/dev/null || missing+=(hyperfine)
command -v jq >/dev/null || missing+=(jq)
want ccache && ! command -v ccache >/dev/null && missing+=(ccache)
want sccache && ! command -v sccache >/dev/null && missing+=(sccache)
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    [[ $(id -u) -eq 0 ]] || die "need root to apt-get install ${missing[*]}"
    apt-get update -qq >&2 || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 \
        || die "apt-get install ${missing[*]} failed"
fi
if want hpcc; then
    [[ $HPCC == /* ]] || HPCC=$PWD/$HPCC
    [[ -x $HPCC ]] || die "$HPCC not found: build hpcc first, or set HPCC=..., or TOOLS='plain ccache sccache'"
fi

# Only the settings this script makes: drop inherited cache configuration.
while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^(CCACHE_|SCCACHE_|HPCC_)' || true)

W=$(mktemp -d "${TMPDIR:-/tmp}/hpcc-bench.XXXXXX")
SCCACHE_STARTED=
cleanup() {
    set +e
    if [[ -n $SCCACHE_STARTED ]]; then sccache --stop-server >/dev/null 2>&1; fi
    if want hpcc && [[ -x ${HPCC:-} ]]; then "$HPCC" daemon stop >/dev/null 2>&1; fi
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ccache: defaults only. An empty config file in a private CCACHE_DIR: no
# user or system ccache.conf applies, so direct mode is on (ccache's default:
# a manifest hit skips the preprocessor; on a manifest miss it falls back to
# preprocessor mode), depend mode is off, compiler_check=mtime.
export CCACHE_DIR=$W/ccache
mkdir -p "$CCACHE_DIR" && : >"$CCACHE_DIR/ccache.conf"
# sccache 0.4 (Debian): a local-disk cache, its own server on a free port so a
# user's server is neither used nor stopped, no idle shutdown during the run,
# and an empty config file. 0.4 has no direct mode (SCCACHE_DIRECT came in
# 0.7): every request, hit or not, runs the preprocessor.
export SCCACHE_DIR=$W/sccache SCCACHE_CONF=$W/sccache.conf SCCACHE_IDLE_TIMEOUT=0
export SCCACHE_CACHE_SIZE=10G SCCACHE_ERROR_LOG=$W/sccache.err
: >"$SCCACHE_CONF"
free_port() {
    local p
    for _ in $(seq 50); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
    done
    die "no free TCP port for the sccache server"
}
export SCCACHE_SERVER_PORT
SCCACHE_SERVER_PORT=$(free_port)
# hpcc: a private cache directory (its daemon serves it) and an empty config
# file. A private copy of the binary: a rebuild of build/hpcc during the run
# (ninja replaces the file) must not break or change the measurements.
export HPCC_DIR=$W/hpcc HPCC_CONFIG=$W/hpcc.ini
: >"$HPCC_CONFIG"
if want hpcc; then
    mkdir -p "$W/bin"
    cp "$HPCC" "$W/bin/hpcc" || die "cannot copy $HPCC"
    HPCC_ORIG=$HPCC
    HPCC=$W/bin/hpcc
fi

cc_of() {
    case $1 in
    plain) echo gcc ;;
    ccache) echo "ccache gcc" ;;
    sccache) echo "sccache gcc" ;;
    hpcc) echo "$HPCC gcc" ;;
    esac
}

sccache_restart() {
    sccache --stop-server >/dev/null 2>&1 || true
    sccache --start-server >"$W/sccache-start.log" 2>&1 \
        || die "sccache --start-server failed: $(tail -n1 "$W/sccache-start.log")"
    SCCACHE_STARTED=1
}

# Empty a tool's cache and zero its counters.
reset_cache() {
    case $1 in
    plain) ;;
    ccache) ccache --clear >/dev/null && ccache --zero-stats >/dev/null ;;
    sccache)
        sccache --stop-server >/dev/null 2>&1 || true
        rm -rf "$SCCACHE_DIR"
        sccache_restart
        sccache --zero-stats >/dev/null ;;
    hpcc)
        "$HPCC" clean --all >/dev/null || die "hpcc clean --all failed"
        "$HPCC" stats --zero >/dev/null || die "hpcc stats --zero failed" ;;
    esac
}

zero_stats() {
    case $1 in
    plain) ;;
    ccache) ccache --zero-stats >/dev/null ;;
    sccache) sccache --zero-stats >/dev/null ;;
    hpcc) "$HPCC" stats --zero >/dev/null ;;
    esac
}

# One line of counters: "hits misses other" plus a readable detail string.
# hits/misses are what matter for the warm check; other = calls not cached
# on purpose (make's probes: --version, links, stdin compiles, ...).
stats_line() {
    local j
    case $1 in
    ccache)
        ccache --print-stats | awk -F'\t' '
            { v[$1] = $2 }
            END {
                h = v["direct_cache_hit"] + v["preprocessed_cache_hit"]; m = v["cache_miss"]
                o = 0; d = ""
                for (k in v) if (k !~ /^(direct_cache|preprocessed_cache|cache_miss|local_storage|remote_storage|cache_size|files_in_cache|stats_|primary_storage|secondary_storage)/ && v[k] > 0) { o += v[k]; d = d " " k "=" v[k] }
                printf "%d %d %d direct_hit=%d preprocessed_hit=%d miss=%d%s\n", h, m, o, v["direct_cache_hit"], v["preprocessed_cache_hit"], m, d
            }' ;;
    sccache)
        j=$(sccache --show-stats --stats-format json) || die "sccache --show-stats failed"
        jq -r '.stats |
            ([.cache_hits.counts[]] | add // 0) as $h | ([.cache_misses.counts[]] | add // 0) as $m |
            (.requests_not_compile + .requests_not_cacheable + .requests_unsupported_compiler + .non_cacheable_compilations) as $o |
            "\($h) \($m) \($o) hits=\($h) misses=\($m) not_compile=\(.requests_not_compile) not_cacheable=\(.requests_not_cacheable) unsupported=\(.requests_unsupported_compiler) non_cacheable=\(.non_cacheable_compilations) errors=\(.cache_errors.counts | [.[]] | add // 0)"' <<<"$j" ;;
    hpcc)
        j=$("$HPCC" stats --json) || die "hpcc stats --json failed"
        jq -r '"\(.direct_hit) \(.miss) \(.uncacheable + .fallback) direct_hit=\(.direct_hit) miss=\(.miss) uncacheable=\(.uncacheable) fallback=\(.fallback)" +
            ([to_entries[] | select((.key | test("^(uncacheable|fallback)[.]")) and .value > 0) | " \(.key)=\(.value)"] | join(""))' <<<"$j" ;;
    esac
}

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) exit 1; print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.3f", a / b }'; }

# ---- fetch and prepare -----------------------------------------------------
say "fetching $PROJECT"
P=$("$REPO/scripts/fetch-project.sh" "$PROJECT" "$W/src") || die "fetching $PROJECT failed"
VERSION=$PROJECT-$(dpkg-parsechangelog -l "$P/debian/changelog" -S Version 2>/dev/null || echo '?')
B=$P/$BUILD_SUBDIR
if want hpcc; then
    (cd "$P" && "$HPCC" init >/dev/null) || die "hpcc init in $P failed"
fi

# CPU seconds (user+sys, itself and its reaped children) used so far by a
# tool's server process, as "PID SECONDS"; nothing if it has none running.
# The sccache server runs the preprocessor and compiler as its own children,
# outside make's process tree, so a build's CPU time must include it.
server_cpu() {
    local pid='' stat
    case $1 in
    sccache) pid=$(ss -Hltnp "sport = :$SCCACHE_SERVER_PORT" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2) ;;
    hpcc) pid=$("$HPCC" daemon status 2>/dev/null | awk '$1 == "pid" { print $2; exit }') ;;
    esac
    [[ -n $pid && -r /proc/$pid/stat ]] || return 0
    stat=$(<"/proc/$pid/stat") || return 0
    # Fields after the ")" that ends the command name: utime is the 12th.
    awk -v pid="$pid" -v hz="$CLK_TCK" '{ sub(/^.*\) /, ""); printf "%s %.2f\n", pid, ($12 + $13 + $14 + $15) / hz }' <<<"$stat"
}
CLK_TCK=$(getconf CLK_TCK)

# build TOOL LOG -> prints "WALL CPU" in seconds: the wall time of make, and
# the CPU time of make's process tree plus that of the tool's server.
build() {
    local cc t s0 s1 TIMEFORMAT='%R %U %S'
    cc=$(cc_of "$1")
    make -C "$B" clean >/dev/null 2>&1 || die "make clean failed"
    s0=$(server_cpu "$1")
    # shellcheck disable=SC2086 # MAKE_VARS: VAR=value words
    if ! { time make -C "$B" -j"$JOBS" "$TARGET" CC="$cc" $MAKE_VARS >"$2" 2>&1; } 2>"$2.time"; then
        tail -n 15 "$2" >&2
        die "build with CC='$cc' failed (log above)"
    fi
    s1=$(server_cpu "$1")
    t=$(tail -n1 "$2.time")
    awk -v t="$t" -v s0="$s0" -v s1="$s1" 'BEGIN {
        split(t, a, " "); split(s0, b, " "); split(s1, c, " ")
        srv = (c[1] == "") ? 0 : (c[1] == b[1]) ? c[2] - b[2] : c[2]
        printf "%.3f %.2f\n", a[1], a[2] + a[3] + srv
    }'
}
count_objects() { find "$B/obj" -name '*.o' | wc -l; }
# Wall time of a `make` with nothing to do (right after a plain build): make's
# parse-time compiler probes and its own work, a floor under any warm rebuild.
noop_make() {
    local TIMEFORMAT='%R'
    # shellcheck disable=SC2086
    { time make -C "$B" -j"$JOBS" "$TARGET" CC=gcc $MAKE_VARS >"$W/noop.log" 2>&1; } 2>&1 | tail -n1
}

declare -A COLD=() WARM=() COLD_ALL=() WARM_ALL=() COLD_CPU=() WARM_CPU=() COLD_CPU_ALL=() WARM_CPU_ALL=() HIT_MEAN=() HIT_MEDIAN=() HIT_RUNS_DONE=() STATS=()
OBJS=
say "project $VERSION, make -j$JOBS $TARGET $MAKE_VARS in $BUILD_SUBDIR/; tools: ${ORDER[*]}"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
say "load average at start: $LOAD_START (other work on this machine skews the timings)"

# ---- c. cold builds (interleaved: rep 1 of every tool, then rep 2, ...) ----
for ((r = 1; r <= REPS_COLD; r++)); do
    for t in "${ORDER[@]}"; do
        reset_cache "$t"
        read -r s c < <(build "$t" "$W/cold-$t-$r.log")
        COLD_ALL[$t]+="$s "
        COLD_CPU_ALL[$t]+="$c "
        say "cold  $r/$REPS_COLD  $(printf '%-8s' "$t") ${s} s  (cpu ${c} s)"
        [[ -n $OBJS ]] || OBJS=$(count_objects)
        [[ $t != plain || -n ${NOOP:-} ]] || NOOP=$(noop_make)
    done
done
for t in "${ORDER[@]}"; do
    COLD[$t]=$(tr ' ' '\n' <<<"${COLD_ALL[$t]}" | grep . | median)
    COLD_CPU[$t]=$(tr ' ' '\n' <<<"${COLD_CPU_ALL[$t]}" | grep . | median)
done

# ---- b. warm rebuilds (each cache holds the last cold build) ---------------
for t in "${CACHERS[@]}"; do zero_stats "$t"; done
for ((r = 1; r <= REPS_WARM; r++)); do
    for t in "${CACHERS[@]}"; do
        read -r s c < <(build "$t" "$W/warm-$t-$r.log")
        WARM_ALL[$t]+="$s "
        WARM_CPU_ALL[$t]+="$c "
        say "warm  $r/$REPS_WARM  $(printf '%-8s' "$t") ${s} s  (cpu ${c} s)"
    done
done
WARN=()
for t in "${CACHERS[@]}"; do
    WARM[$t]=$(tr ' ' '\n' <<<"${WARM_ALL[$t]}" | grep . | median)
    WARM_CPU[$t]=$(tr ' ' '\n' <<<"${WARM_CPU_ALL[$t]}" | grep . | median)
    STATS[$t]=$(stats_line "$t")
    read -r h m _ <<<"${STATS[$t]}"
    if ((m > 0)); then
        WARN+=("$t: $m cache misses in the warm rebuilds (expected 0)")
    fi
    if ((h < REPS_WARM * (OBJS - 1))); then
        WARN+=("$t: only $h hits in $REPS_WARM warm rebuilds of $OBJS objects")
    fi
done

# ---- a. single-file hit latency --------------------------------------------
# The exact command make runs for HIT_SRC (with this tool's CC), after a warm
# build: every cache tool answers it from its cache (the warm-up runs too).
hit_command() {
    # shellcheck disable=SC2086
    make -C "$B" -n -B V=1 "$TARGET" CC="$(cc_of "$1")" $MAKE_VARS 2>/dev/null \
        | grep -F -- " -c " | grep -F -- "$HIT_SRC" | head -n1
}
for t in "${ORDER[@]}"; do
    if [[ $t == plain ]]; then runs=$PLAIN_RUNS warm=1; else runs=$HIT_RUNS warm=$HIT_WARMUP; fi
    cmd=$(hit_command "$t")
    [[ -n $cmd ]] || die "cannot find the compile command of $HIT_SRC in make -n output"
    # The object directory of this CC (the last build was another tool's).
    out=$(grep -oE -- ' -o [^ ]+' <<<"$cmd" | tail -n1 | cut -c5-)
    mkdir -p "$B/$(dirname "$out")"
    [[ $t == plain ]] || zero_stats "$t"
    say "hit   $(printf '%-8s' "$t") hyperfine -N, $warm warm-up + $runs runs"
    (cd "$B" && hyperfine -N --style none --warmup "$warm" --runs "$runs" \
        --export-json "$W/hit-$t.json" --command-name "$t" "$cmd" >"$W/hit-$t.log" 2>&1) \
        || { tail -n 5 "$W/hit-$t.log" >&2; die "hyperfine for $t failed"; }
    HIT_MEAN[$t]=$(jq -r '.results[0].mean * 1000' "$W/hit-$t.json")
    HIT_MEDIAN[$t]=$(jq -r '.results[0].median * 1000' "$W/hit-$t.json")
    HIT_RUNS_DONE[$t]=$runs
    if [[ $t != plain ]]; then
        read -r h m _ < <(stats_line "$t")
        ((m == 0)) || WARN+=("$t: $m misses during the hit-latency runs (expected 0)")
        ((h >= warm + runs)) || WARN+=("$t: $h hits for $((warm + runs)) hit-latency runs")
        STATS[$t.hit]=$(stats_line "$t")
    fi
done

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v a="${LOAD_START%% *}" 'BEGIN { exit !(a >= 1.0) }'; then
    WARN+=("load average was ${LOAD_START%% *} before the run started: other work competed for the $(nproc) cores, timings are noisy")
fi

# ---- report ------------------------------------------------------------------
fmt_ms() { [[ -n ${1:-} ]] && awk -v v="$1" 'BEGIN { printf "%.2f", v }' || echo "-"; }
cell() { printf '%12s' "${1:--}"; }
{
    echo "hpcc benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "project: $VERSION (Debian source), make -j$JOBS -C $BUILD_SUBDIR $TARGET $MAKE_VARS, $OBJS objects, default flags (-O3)"
    echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), load average at start $LOAD_START, at end $LOAD_END"
    echo "gcc $(gcc -dumpfullversion)$(want ccache && echo ", $(ccache --version | head -n1)")$(want sccache && echo ", $(sccache --version)")$(want hpcc && echo ", $("$HPCC" --version 2>/dev/null | head -n1 || echo 'hpcc ?') (copy of $HPCC_ORIG)")"
    echo
    printf '%-30s' ""; for t in "${ORDER[@]}"; do cell "$t"; done; echo
    printf '%-30s' "a. hit latency, mean (ms)"; for t in "${ORDER[@]}"; do cell "$(fmt_ms "${HIT_MEAN[$t]:-}")"; done; echo
    printf '%-30s' "   hit latency, median (ms)"; for t in "${ORDER[@]}"; do cell "$(fmt_ms "${HIT_MEDIAN[$t]:-}")"; done; echo
    printf '%-30s' "b. warm rebuild, median (s)"; for t in "${ORDER[@]}"; do cell "${WARM[$t]:-}"; done; echo
    printf '%-30s' "   warm rebuild, CPU (s)"; for t in "${ORDER[@]}"; do cell "${WARM_CPU[$t]:-}"; done; echo
    printf '%-30s' "c. cold build, median (s)"; for t in "${ORDER[@]}"; do cell "${COLD[$t]:-}"; done; echo
    printf '%-30s' "   cold build, CPU (s)"; for t in "${ORDER[@]}"; do cell "${COLD_CPU[$t]:-}"; done; echo
    echo
    echo "a: hyperfine -N, one compile of $HIT_SRC (the command make runs, -MMD -MP -MF included);"
    echo "   runs: $(for t in "${ORDER[@]}"; do printf '%s=%s ' "$t" "${HIT_RUNS_DONE[$t]:-}"; done)(plain gcc is the uncached compile, for reference)"
    echo "b: make clean + make with a warm cache, $REPS_WARM reps, wall s: $(for t in "${CACHERS[@]}"; do printf '%s=[%s] ' "$t" "${WARM_ALL[$t]% }"; done)"
    echo "   CPU s: $(for t in "${CACHERS[@]}"; do printf '%s=[%s] ' "$t" "${WARM_CPU_ALL[$t]% }"; done)"
    echo "c: empty cache + make, $REPS_COLD reps, wall s: $(for t in "${ORDER[@]}"; do printf '%s=[%s] ' "$t" "${COLD_ALL[$t]% }"; done)"
    echo "   CPU s: $(for t in "${ORDER[@]}"; do printf '%s=[%s] ' "$t" "${COLD_CPU_ALL[$t]% }"; done)"
    [[ -z ${NOOP:-} ]] || echo "   floor: a no-op make (parse-time compiler probes, nothing to build) takes ${NOOP} s with plain gcc"
    echo "CPU = user+sys of make's process tree plus the tool's server/daemon (medians); it is far less"
    echo "sensitive than wall time to other work on the machine."
    echo
    echo "ratios (medians; lower is better):"
    line() { printf '  %-26s %8s   %s\n' "$1" "$2" "${3:-}"; }
    if want hpcc; then
        want ccache && line "hpcc hit / ccache hit" "$(ratio "${HIT_MEDIAN[hpcc]}" "${HIT_MEDIAN[ccache]}")" "target <= 0.5"
        want ccache && line "hpcc warm / ccache warm" "$(ratio "${WARM[hpcc]}" "${WARM[ccache]}")" "target <= 0.7"
        want plain && line "hpcc cold / plain" "$(ratio "${COLD[hpcc]}" "${COLD[plain]}")" "target <= 1.03"
        want plain && line "hpcc cold / plain, CPU" "$(ratio "${COLD_CPU[hpcc]}" "${COLD_CPU[plain]}")"
        want ccache && line "hpcc warm / ccache, CPU" "$(ratio "${WARM_CPU[hpcc]}" "${WARM_CPU[ccache]}")"
        want sccache && line "hpcc hit / sccache hit" "$(ratio "${HIT_MEDIAN[hpcc]}" "${HIT_MEDIAN[sccache]}")"
        want sccache && line "hpcc warm / sccache warm" "$(ratio "${WARM[hpcc]}" "${WARM[sccache]}")"
    fi
    if want sccache; then
        want ccache && line "sccache hit / ccache hit" "$(ratio "${HIT_MEDIAN[sccache]}" "${HIT_MEDIAN[ccache]}")"
        want ccache && line "sccache warm / ccache warm" "$(ratio "${WARM[sccache]}" "${WARM[ccache]}")"
        want plain && line "sccache cold / plain" "$(ratio "${COLD[sccache]}" "${COLD[plain]}")"
        want plain && line "sccache cold / plain, CPU" "$(ratio "${COLD_CPU[sccache]}" "${COLD_CPU[plain]}")"
    fi
    if want ccache && want plain; then
        line "ccache cold / plain" "$(ratio "${COLD[ccache]}" "${COLD[plain]}")"
        line "ccache cold / plain, CPU" "$(ratio "${COLD_CPU[ccache]}" "${COLD_CPU[plain]}")"
        line "ccache warm / plain cold" "$(ratio "${WARM[ccache]}" "${COLD[plain]}")"
    fi
    echo
    echo "cache counters over the $REPS_WARM warm rebuilds ($((REPS_WARM * OBJS)) objects built):"
    for t in "${CACHERS[@]}"; do printf '  %-8s %s\n' "$t" "$(cut -d' ' -f4- <<<"${STATS[$t]}")"; done
    echo "cache counters over the hit-latency runs:"
    for t in "${CACHERS[@]}"; do printf '  %-8s %s\n' "$t" "$(cut -d' ' -f4- <<<"${STATS[$t.hit]:-}")"; done
    if want ccache; then
        echo "ccache settings (defaults): $(ccache -p | awk '$2 ~ /^(direct_mode|depend_mode|run_second_cpp|compiler_check|hash_dir|sloppiness|inode_cache)$/ { printf "%s=%s ", $2, $4 }')"
    fi
    if ((${#WARN[@]})); then
        echo
        for w in "${WARN[@]}"; do echo "WARNING: $w"; done
    fi
} >"$W/report.txt"

mkdir -p "$(dirname "$RESULTS")"
cp "$W/report.txt" "$RESULTS"
echo
cat "$W/report.txt"
echo
echo "(written to ${RESULTS#"$REPO"/})"
