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
