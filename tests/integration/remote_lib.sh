# Helpers for the remote tests (sourced after lib.sh): a real worker on
# loopback over TLS (hpcc worker, runtime unsafe-local), routing tokens
# signed with its key, and the client settings that point a daemon at it.
HPCCD="$(dirname "$HPCC")/hpccd"
IMAGE=$("$HPCCD" worker host-image)
WORKER_PID=

# start_worker DIR [ID] [ALLOW_UNSAFE]: initialises (once) and starts a worker.
start_worker() {
  local dir=$1 id=${2:-w1} allow=${3:-true}
  if [ ! -f "$dir/worker.ini" ]; then
    local flag=--allow-unsafe-local
    [ "$allow" = true ] || flag=
    "$HPCC" worker init "$dir" --id "$id" --listen 127.0.0.1:0 --signing-key "$dir.signing.pem" $flag \
      >"$dir.init" 2>&1 || return 1
  fi
  # As root, the worker runs as hpcc-worker ([worker] user, docs/isolation.md)
  # when that user exists (scripts/deps.sh check makes it).
  if [ "$(id -u)" = 0 ] && id hpcc-worker >/dev/null 2>&1 && ! grep -q '^user = hpcc-worker' "$dir/worker.ini"; then
    sed -i 's/^\[worker\]$/[worker]\nuser = hpcc-worker/' "$dir/worker.ini"
    chown hpcc-worker "$dir/key.pem"
    chmod o+x "$WORK" "$dir"
  fi
  rm -f "$dir/port"
  HPCC_LOG_FILE="$dir/worker.log" HPCC_LOG_LEVEL=info "$HPCC" worker --config "$dir/worker.ini" \
    --port-file "$dir/port" >>"$dir/worker.out" 2>&1 &
  WORKER_PID=$!
  for _ in $(seq 100); do [ -s "$dir/port" ] && break; sleep 0.05; done
  [ -s "$dir/port" ] || return 1
  WORKER_PORT=$(cat "$dir/port")
  WORKER_PIN=$(sed -n 's/^certificate pin *//p' "$dir.init")
}
stop_worker() {
  [ -n "$WORKER_PID" ] && kill "$WORKER_PID" 2>/dev/null && wait "$WORKER_PID" 2>/dev/null
  WORKER_PID=
}

# issue DIR TENANT OUT [extra token-issue options]
issue() {
  local dir=$1 tenant=$2 out=$3; shift 3
  "$HPCC" token issue --key "$dir.signing.pem" --tenant "$tenant" --image "$IMAGE" \
    --worker "$(sed -n 's/^id = //p' "$dir/worker.ini")" --out "$out" "$@"
}

# use_remote TENANT TOKEN_FILE [PIN]: points the client at the running worker.
use_remote() {
  export HPCC_REMOTE_WORKER="127.0.0.1:$WORKER_PORT" HPCC_REMOTE_PIN="${3:-$WORKER_PIN}" \
    HPCC_REMOTE_TENANT="$1" HPCC_REMOTE_IMAGE="$IMAGE" HPCC_REMOTE_TOKEN_FILE="$2"
}
no_remote() { unset HPCC_REMOTE_WORKER HPCC_REMOTE_PIN HPCC_REMOTE_TENANT HPCC_REMOTE_IMAGE HPCC_REMOTE_TOKEN_FILE; }

# stored_files DIR: files in the worker's stores (to see that nothing was stored).
stored_files() { find "$1/state/tenants" -type f 2>/dev/null | wc -l; }

# fresh_cache NAME: a new client cache (and so a new daemon with the current settings).
fresh_cache() {
  "$HPCC" daemon stop >/dev/null 2>&1
  export HPCC_DIR="$WORK/cache-$1"
}

# ---- servers and fault helpers shared by the fault matrix ---------------------
# (test_fault_matrix.sh; the older scripts keep their own copies.)
REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# flip_byte FILE OFFSET: inverts one byte in place.
flip_byte() {
  local b; b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  printf "\\$(printf %03o $((255 - b)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# audit_rows WORKER_DIR: the rows of the worker's audit log (sealed segments,
# then current.tsv), without the header and seal lines.
audit_rows() { cat "$1"/state/audit/segment-*.tsv "$1/state/audit/current.tsv" 2>/dev/null | grep -v '^#'; }

# start_test_s3 DATA_DIR PORT_FILE [PORT]: s3rver behind the harness's SigV4
# check (tests/s3/s3.js), bucket hpcc, key AKWORKER / worker-secret. Sets S3_PID.
start_test_s3() {
  local modules
  modules=$("$REPO_DIR/scripts/npm-deps.sh" "$REPO_DIR/tests/s3" 2>>"$WORK/npm-s3.log") || return 1
  rm -f "$2.new"
  NODE_PATH=$modules node "$REPO_DIR/tests/s3/s3.js" --port "${3:-0}" --port-file "$2.new" --dir "$1" \
    --bucket hpcc --access-key AKWORKER --secret-key worker-secret >>"$WORK/s3.log" 2>&1 &
  S3_PID=$!
  wait_file "$2.new" && mv "$2.new" "$2"
}

# start_test_idp PORT_FILE USER:PASSWORD [PORT]: the test IdP (tests/idp/idp.js,
# RS256, audience hpcc, 600 s tokens). Sets IDP_PID.
start_test_idp() {
  local modules
  modules=$("$REPO_DIR/scripts/npm-deps.sh" 2>>"$WORK/npm.log") || return 1
  rm -f "$1"
  NODE_PATH=$modules node "$REPO_DIR/tests/idp/idp.js" --port "${3:-0}" --port-file "$1" --alg RS256 \
    --audience hpcc --user "$2" --expires-in 600 >>"$WORK/idp.log" 2>&1 &
  IDP_PID=$!
  wait_file "$1"
}

# start_test_scheduler DIR: runs `hpcc scheduler` on DIR/scheduler.ini (made by
# `hpcc scheduler init`), logging to DIR.log. Sets SCHED_PID and SCHED_PORT.
start_test_scheduler() {
  rm -f "$1/port"
  HPCC_LOG_FILE="$1.log" HPCC_LOG_LEVEL=info "$HPCC" scheduler --config "$1/scheduler.ini" \
    --port-file "$1/port" >>"$1.out" 2>&1 &
  SCHED_PID=$!
  wait_file "$1/port" && SCHED_PORT=$(cat "$1/port")
}
