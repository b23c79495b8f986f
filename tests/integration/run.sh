#!/usr/bin/env bash
# Runs every integration test script (test_*.sh) against $HPCC, each with a
# time limit, and passes their "ok"/"not ok" lines through.
set -uo pipefail
cd "$(dirname "$0")"
: "${HPCC:?set HPCC to the hpcc binary}"
export HPCC
status=0
for t in test_*.sh; do
  [ -n "${ONLY:-}" ] && [[ "$t" != *"$ONLY"* ]] && continue
  timeout 600 bash "$t"
  s=$?
  if [ $s != 0 ]; then
    echo "not ok - $t exited with status $s"
    status=1
  fi
done
exit $status
