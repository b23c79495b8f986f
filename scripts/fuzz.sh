#!/usr/bin/env bash
# scripts/fuzz.sh — builds the libFuzzer targets (fuzz/fuzz_*.c) with clang,
# AddressSanitizer and UBSan, then runs each: first over its regression
# inputs (fuzz/regressions/<target>/, crashes found earlier and fixed), then
# for FUZZ_SECONDS from its seed corpus (fuzz/corpus/<target>/, taken from
# the tests). A crash leaves its input in $FUZZ_OUT/<target>/ and fails.
# Knobs: FUZZ_SECONDS (60), FUZZ_BUILD (build-fuzz), FUZZ_OUT
# (build-fuzz/findings), ONLY (a substring of target names).
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
SECONDS_EACH=${FUZZ_SECONDS:-60}
B=${FUZZ_BUILD:-build-fuzz}
OUT=${FUZZ_OUT:-$B/findings}
die() { echo "fuzz: error: $*" >&2; exit 2; }
command -v clang >/dev/null || die "clang is missing (scripts/deps.sh check installs it)"
[[ $SECONDS_EACH =~ ^[1-9][0-9]*$ ]] || die "FUZZ_SECONDS must be a positive integer"

# The project's libraries, instrumented for coverage and the sanitizers.
if [ ! -f "$B/build.ninja" ]; then
  mkdir -p "$B"
  CC=clang meson setup "$B" -Db_sanitize=address,undefined -Db_lundef=false -Dstatic_wrapper=false \
    -Dwerror=false -Dc_args=-fsanitize=fuzzer-no-link >"$B/fuzz-setup.log" 2>&1 ||
    { tail -n 20 "$B/fuzz-setup.log" >&2; die "meson setup failed"; }
fi
ninja -C "$B" libhpcc-core-dyn.a libhpcc-net.a >"$B/fuzz-libs.log" 2>&1 ||
  { tail -n 20 "$B/fuzz-libs.log" >&2; die "building the libraries failed"; }
INC=()
for d in src src/common src/client src/cache src/daemon src/rpc src/remote src/worker src/image src/agent src/vmm src/scheduler; do
  INC+=("-I$d")
done
LIBS=$(pkg-config --libs grpc libcrypto libssl libzstd inih libprotobuf-c libarchive jansson libcurl)

status=0 built=()
mkdir -p "$B/fuzzers" "$OUT"
for src in fuzz/fuzz_*.c; do
  t=$(basename "$src" .c)
  [ -n "${ONLY:-}" ] && [[ "$t" != *"$ONLY"* ]] && continue
  # The agent is a program of its own, not in the libraries: its target
  # links its sources (main renamed away).
  extra=()
  [ "$t" = fuzz_agent ] && extra=(-Dmain=hpcc_agent_main -DHPCC_VERSION=\"fuzz\" src/agent/*.c)
  if ! clang -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    "${INC[@]}" "-I$B" "$src" "${extra[@]}" "$B/libhpcc-net.a" "$B/libhpcc-core-dyn.a" $LIBS -lm -lpthread \
    -o "$B/fuzzers/$t" >"$B/fuzzers/$t.log" 2>&1; then
    cat "$B/fuzzers/$t.log" >&2
    echo "not ok - fuzz: $t does not build"
    status=1
    continue
  fi
  built+=("$t")
done

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for t in "${built[@]}"; do
  reg="fuzz/regressions/$t" seeds="fuzz/corpus/$t" work="$OUT/$t"
  mkdir -p "$work/corpus" "$seeds"
  if [ -d "$reg" ] && compgen -G "$reg/*" >/dev/null; then
    if "$B/fuzzers/$t" -runs=0 "$reg"/* >"$work/regressions.log" 2>&1; then
      echo "ok - fuzz: $t: $(ls "$reg" | wc -l) regression inputs pass"
    else
      tail -n 30 "$work/regressions.log" >&2
      echo "not ok - fuzz: $t: a regression input fails again"
      status=1
      continue
    fi
  fi
  # -print_funcs=0: libFuzzer would start llvm-symbolizer to name newly
  # covered functions, and fuzz_agent's serve loop waits for every child of
  # the process (2 s each input) as the agent waits for its compiles.
  "$B/fuzzers/$t" -max_total_time="$SECONDS_EACH" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_funcs=0 \
    -artifact_prefix="$work/" -print_final_stats=1 "$work/corpus" "$seeds" >"$work/run.log" 2>&1
  s=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/run.log" | tail -n 1)
  if [ $s = 0 ]; then
    echo "ok - fuzz: $t: ${runs:-?} executions in ${SECONDS_EACH} s, no crash"
  else
    tail -n 40 "$work/run.log" >&2
    echo "not ok - fuzz: $t: crashed (input in $work/; add it to $reg/ once fixed)"
    status=1
  fi
done
exit $status
