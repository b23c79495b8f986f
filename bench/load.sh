#!/usr/bin/env bash
# bench/load.sh — load on one worker and one scheduler (issue 8): runs
# tests/integration/test_load.sh at a larger scale and prints its figures:
# compiles in flight, how many the worker executed, served as hits or refused
# as busy (those compile locally), wall-clock time of each wave, the peak
# RSS, threads and fds of the worker and the scheduler, and idle connections.
#
# Knobs (environment): LOAD_DAEMONS (8), LOAD_PER_DAEMON (50): compiles in
# flight = their product; LOAD_IDLE (1000) idle connections per server;
# HPCC (default build/hpcc); RESULTS (default bench/results/load.txt).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export HPCC=${HPCC:-$REPO/build/hpcc}
export LOAD_DAEMONS=${LOAD_DAEMONS:-8} LOAD_PER_DAEMON=${LOAD_PER_DAEMON:-50} LOAD_IDLE=${LOAD_IDLE:-1000}
RESULTS=${RESULTS:-$REPO/bench/results/load.txt}
[ -x "$HPCC" ] || { echo "bench: error: no hpcc at $HPCC (make build)" >&2; exit 1; }
ulimit -n 8192 2>/dev/null || true
out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "bench: load: $LOAD_DAEMONS daemons x $LOAD_PER_DAEMON compiles at once, $LOAD_IDLE idle connections per server" >&2
bash "$REPO/tests/integration/test_load.sh" >"$out" 2>&1 || true
{
  echo "load ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores): $LOAD_DAEMONS daemons x $LOAD_PER_DAEMON compiles in flight"
  sed -n 's/^# load: /  /p' "$out"
  echo "  checks: $(grep -c '^ok - ' "$out") passed, $(grep -c '^not ok - ' "$out") failed"
  grep '^not ok - ' "$out" | sed 's/^/  /' || true
} | tee "$RESULTS"
! grep -q '^not ok - ' "$out"
