#!/usr/bin/env bash
# warm-zlib.sh — the warm-rebuild comparison on a second real project whose
# Makefile runs no compiler probes at parse time: zlib from Debian's source
# archive, `./configure --static` once, then `make clean; make -j2 libz.a`
# timed by hyperfine for ccache and hpcc with a warm cache (and plain gcc for
# reference). bench/run.sh's libzstd numbers include ~0.4 s of probes that
# no cache can serve; here the rebuild is nearly all cache hits.
# Usage: bench/warm-zlib.sh   (HPCC=path overrides build/hpcc; RUNS=N)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HPCC=${HPCC:-$REPO/build/hpcc}
RUNS=${RUNS:-20}
for c in make gcc ccache hyperfine; do command -v "$c" >/dev/null || { echo "warm-zlib: needs $c (make bench installs it)" >&2; exit 1; }; done
[ -x "$HPCC" ] || { echo "warm-zlib: $HPCC not found: run 'make build'" >&2; exit 1; }

W=$(mktemp -d "${TMPDIR:-/tmp}/hpcc-warm-zlib.XXXXXX")
cleanup() { HPCC_DIR=$W/hpcc "$HPCC" daemon stop >/dev/null 2>&1 || true; rm -rf "$W"; }
trap cleanup EXIT
while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^(HPCC_|CCACHE_)' || true)
export HPCC_CONFIG=$W/hpcc.ini CCACHE_CONFIGPATH=$W/ccache.conf
: >"$HPCC_CONFIG"; : >"$CCACHE_CONFIGPATH"

P=$("$REPO/scripts/fetch-project.sh" zlib "$W/zlib")
cd "$P"
(CC=gcc ./configure --static >/dev/null)
"$HPCC" init >/dev/null
n=$(make -n libz.a CC=gcc | grep -c -- ' -c ' || true)
echo "warm-zlib: zlib $(sed -n 's/^#define ZLIB_VERSION "\(.*\)"/\1/p' zlib.h), make -j2 libz.a, $n compiles"

# Warm each cache with two builds, then time make clean + make.
export CCACHE_DIR=$W/ccache HPCC_DIR=$W/hpcc
for cc in "ccache gcc" "$HPCC gcc"; do
  for _ in 1 2; do make -s clean >/dev/null; make -s -j2 libz.a CC="$cc" >/dev/null; done
done
hyperfine -N -w 2 -r "$RUNS" --prepare 'make -s clean' \
  -n plain "make -s -j2 libz.a CC=gcc" \
  -n ccache "make -s -j2 libz.a CC='ccache gcc'" \
  -n hpcc "make -s -j2 libz.a CC='$HPCC gcc'" \
  --export-json "$W/warm.json" | grep -E 'Time|±|^Benchmark' || true
ccache -s 2>/dev/null | grep -iE 'hits|misses' | head -3 | sed 's/^/ccache: /'
"$HPCC" stats | sed -n '2,4p' | sed 's/^/hpcc: /'
python3 - "$W/warm.json" <<'PY' 2>/dev/null || true
import json, sys
r = {x["command"]: x["median"] for x in json.load(open(sys.argv[1]))["results"]}
print(f"medians: plain {r['plain']*1000:.1f} ms, ccache {r['ccache']*1000:.1f} ms, hpcc {r['hpcc']*1000:.1f} ms")
print(f"hpcc warm / ccache warm = {r['hpcc']/r['ccache']:.3f} (target <= 0.7)")
PY
