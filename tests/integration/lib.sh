# Shared helpers for the integration tests (sourced). Each test runs the real
# hpcc binary ($HPCC) against a private cache directory and compares what it
# produces with a plain compile, byte for byte, in the style of ccache's suites.
set -uo pipefail

: "${HPCC:?set HPCC to the hpcc binary}"
TEST_NAME=$(basename "$0" .sh)
WORK=$(mktemp -d "/tmp/hpcc-${TEST_NAME}.XXXXXX")
export HPCC_DIR="$WORK/cache"
export HPCC_LOG_FILE="$WORK/hpcc.log" HPCC_LOG_LEVEL=debug
unset XDG_RUNTIME_DIR HPCC_CONFIG HPCC_DISABLE HPCC_DAEMON HPCC_MAX_SIZE CCACHE_DIR
export HPCC_CONFIG="$WORK/none.ini"   # an explicit, empty config file
: >"$HPCC_CONFIG"
T_FAILS=0

cleanup() {
  "$HPCC" daemon stop >/dev/null 2>&1 || true
  if [ "$T_FAILS" = 0 ] && [ -z "${KEEP_WORK:-}" ]; then rm -rf "$WORK"; else echo "# kept $WORK"; fi
}
trap cleanup EXIT

ok() { echo "ok - $TEST_NAME: $*"; }
not_ok() { echo "not ok - $TEST_NAME: $*"; T_FAILS=$((T_FAILS + 1)); }
check() { # description command...
  local d=$1; shift
  if "$@"; then ok "$d"; else not_ok "$d"; fi
}

# wait_file FILE: until it exists and is not empty (10 s); for servers' port files.
wait_file() { for _ in $(seq 200); do [ -s "$1" ] && return 0; sleep 0.05; done; return 1; }
wait_log() { # FILE PATTERN [TRIES of 0.05 s, default 200]: until FILE has a line matching PATTERN
  for _ in $(seq "${3:-200}"); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1
}

# stat NAME: the counter's value from `hpcc stats --json`.
stat() {
  "$HPCC" stats --json | sed -n "s/^  \"$1\": \\([0-9]*\\).*/\\1/p"
}
expect_stat() { # name value [description]
  local got; got=$(stat "$1")
  if [ "$got" = "$2" ]; then ok "${3:-$1 = $2}"; else not_ok "${3:-$1}: expected $2, got '$got'"; fi
}
zero_stats() { "$HPCC" stats --zero >/dev/null; }

# counts: "miss=M hit=H uncacheable=U fallback=F" from hpcc stats --json.
counts() {
  "$HPCC" stats --json | awk -F'[": ,]+' '
    $2 == "miss" { m = $3 } $2 == "direct_hit" { h = $3 }
    $2 == "uncacheable" { u = $3 } $2 == "fallback" { f = $3 }
    END { printf "miss=%s hit=%s uncacheable=%s fallback=%s", m, h, u, f }'
}
expect_counts() { # description miss hit [uncacheable, default 0]; never a fallback
  local want="miss=$2 hit=$3 uncacheable=${4:-0} fallback=0" got
  got=$(counts)
  if [ "$got" = "$want" ]; then ok "$1 ($want)"; else not_ok "$1: expected $want, got $got"; fi
}

# same FILE1 FILE2 [description]: byte-identical.
same() {
  if cmp -s "$1" "$2"; then ok "${3:-$1 == $2}"; else not_ok "${3:-$1 == $2} (files differ)"; fi
}

# plain_and_cached DIR ARGS...: compiles ARGS in DIR once plainly into
# DIR/plain/ and twice through hpcc (miss, then hit), keeping every output.
# Outputs are named by the caller's -o; dependency files by the caller too.
new_project() { # name → prints the path of a fresh directory marked as a project root
  local d="$WORK/$1"; mkdir -p "$d"; (cd "$d" && "$HPCC" init >/dev/null); echo "$d"
}
