#!/usr/bin/env bash
# Runs every integration test script (test_*.sh) against $HPCC, each with a
# time limit, and passes their "ok"/"not ok" lines through.
set -uo pipefail
cd "$(dirname "$0")"
: "${HPCC:?set HPCC to the hpcc binary}"
export HPCC
status=0
# test_microvm.sh first: on a fresh machine it builds the guest kernel and
# the toolchain image (cached), which test_fault_matrix.sh's microVM cases
# then find; they skip rather than build them.
tests=()
[ -f test_microvm.sh ] && tests+=(test_microvm.sh)
for t in test_*.sh; do [ "$t" = test_microvm.sh ] || tests+=("$t"); done
for t in "${tests[@]}"; do
  [ -n "${ONLY:-}" ] && [[ "$t" != *"$ONLY"* ]] && continue
  if [ -n "${SANITIZER_LOG_DIR:-}" ]; then
    # Detached processes (daemons, workers) have no stderr: each test's
    # sanitizer reports go to files named after it.
    ASAN_OPTIONS="${ASAN_OPTIONS:-}:log_path=$SANITIZER_LOG_DIR/${t%.sh}.asan" \
    UBSAN_OPTIONS="${UBSAN_OPTIONS:-}:log_path=$SANITIZER_LOG_DIR/${t%.sh}.ubsan" \
      timeout 600 bash "$t"
  else
    timeout 600 bash "$t"
  fi
  s=$?
  if [ $s != 0 ]; then
    echo "not ok - $t exited with status $s"
    status=1
  fi
done
exit $status
