#!/usr/bin/env bash
# Runs every test: the build with -Werror, the banned-call check, the unit
# tests, the integration tests, then unit and integration tests again under
# AddressSanitizer and UBSan, then every libFuzzer target for a few seconds.
# Ends with one line "N passed, N failed" and a
# non-zero exit status when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."

passed=0
failed=0
failures=()
note() { printf '\n=== %s\n' "$*"; }
record() { # name status
  if [ "$2" = 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$1"); fi
}
# meson test prints "Ok: N" and "Fail: N"; add those to the totals.
count_meson() { # name logfile status
  local ok fail
  ok=$(sed -n 's/^Ok: *\([0-9]*\).*/\1/p' "$2" | tail -1)
  fail=$(sed -n 's/^Fail: *\([0-9]*\).*/\1/p' "$2" | tail -1)
  if [ -z "$ok" ]; then record "$1" 1; return; fi
  passed=$((passed + ok)); failed=$((failed + ${fail:-0}))
  [ "${fail:-0}" = 0 ] && [ "$3" = 0 ] || failures+=("$1")
}
# Integration scripts print "ok - ..." / "not ok - ..." lines.
count_tap() { # name logfile status
  local ok fail
  ok=$(grep -c '^ok - ' "$2")
  fail=$(grep -c '^not ok - ' "$2")
  passed=$((passed + ok)); failed=$((failed + fail))
  if [ "$fail" != 0 ] || [ "$3" != 0 ]; then
    failures+=("$1")
    [ "$fail" = 0 ] && failed=$((failed + 1))
  fi
}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

note "build (-Werror)"
make --no-print-directory build >"$logs/build" 2>&1
st=$?; record build $st
[ $st = 0 ] || tail -40 "$logs/build"

note "banned calls"
scripts/check-banned.sh; record banned-calls $?

if [ $st = 0 ]; then
  note "unit tests"
  meson test -C build --print-errorlogs >"$logs/unit" 2>&1; s=$?
  grep -E '^ *[0-9]+/[0-9]+ ' "$logs/unit" | grep -v ' OK ' ; grep -E '^(Ok|Fail):' "$logs/unit"
  [ $s = 0 ] || tail -60 "$logs/unit"
  count_meson unit "$logs/unit" $s

  note "integration tests"
  HPCC="$PWD/build/hpcc" tests/integration/run.sh 2>&1 | tee "$logs/integ"; s=${PIPESTATUS[0]}
  count_tap integration "$logs/integ" $s
fi

note "sanitizer build (address, undefined)"
make --no-print-directory asan-build >"$logs/asan-build" 2>&1; st=$?
record asan-build $st
[ $st = 0 ] || tail -40 "$logs/asan-build"
if [ $st = 0 ]; then
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  meson test -C build-asan --print-errorlogs >"$logs/asan-unit" 2>&1; s=$?
  grep -E '^(Ok|Fail):' "$logs/asan-unit"
  [ $s = 0 ] || tail -60 "$logs/asan-unit"
  count_meson asan-unit "$logs/asan-unit" $s
  # Daemons and workers run detached, their stderr nowhere: every process
  # writes its sanitizer reports to files, and any file is a failure.
  # Kept after the run (build-asan/sanitizer-reports/<test>.asan.<pid>).
  reports="$PWD/build-asan/sanitizer-reports"
  rm -rf "$reports"; mkdir -p "$reports"
  SANITIZER_LOG_DIR="$reports" HPCC="$PWD/build-asan/hpcc" HPCC_TEST_QUICK=1 \
    tests/integration/run.sh >"$logs/asan-integ" 2>&1; s=$?
  grep -E '^not ok' "$logs/asan-integ"; grep -cE '^ok' "$logs/asan-integ" | sed 's/^/asan integration ok: /'
  count_tap asan-integration "$logs/asan-integ" $s
  if compgen -G "$reports/*" >/dev/null; then
    echo "sanitizer reports from detached processes (kept in $reports):"
    for f in "$reports"/*; do
      echo "--- $(basename "$f")"
      # The report's headline, its stacks' own frames, and the summary.
      grep -E 'ERROR:|SUMMARY:|runtime error|^ *#[0-9]+ .*(src|tests)/|allocated by|freed by|previously' "$f" | head -n 60
    done
    record sanitizer-reports 1
  else
    record sanitizer-reports 0
  fi
fi

note "fuzzing (libFuzzer; each target over its regression inputs, then ${CHECK_FUZZ_SECONDS:-3} s)"
FUZZ_SECONDS=${CHECK_FUZZ_SECONDS:-3} scripts/fuzz.sh >"$logs/fuzz" 2>&1; s=$?
grep -E '^(not )?ok - ' "$logs/fuzz"
[ $s = 0 ] || tail -40 "$logs/fuzz"
count_tap fuzz "$logs/fuzz" $s

echo
# CI shows only the end of this output: repeat what failed, briefly.
if ((${#failures[@]})); then
  for f in unit asan-unit; do
    [ -f "$logs/$f" ] && grep -E '^ *[0-9]+/[0-9]+ .*(FAIL|TIMEOUT|ERROR)' "$logs/$f" | awk '!seen[$0]++' | sed "s/^/$f: /" | head -5
    [ -f "$logs/$f" ] && grep -E '^\[  FAILED  \] [a-z_]|ERROR: AddressSanitizer|runtime error' "$logs/$f" | awk '!seen[$0]++' | sed "s/^/$f: /" | head -5
  done
  for f in integ asan-integ fuzz; do
    [ -f "$logs/$f" ] && grep -E '^not ok' "$logs/$f" | sed "s/^/$f: /" | cut -c1-200 | head -5
  done
  [ -n "${reports:-}" ] && compgen -G "$reports/*" >/dev/null &&
    for r in "$reports"/*; do
      echo "sanitizer: $(basename "$r"): $(grep -m1 -E 'ERROR:|runtime error' "$r" | cut -c1-150)"
      grep -m3 -E '^ *#[0-9]+ .*(src|tests)/' "$r" | sed 's/^ */    /' | cut -c1-160
    done | head -12
  echo "failed: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
