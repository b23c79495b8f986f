# Sourced by the bench scripts (audit.sh, remote.sh, s3.sh): strict mode,
# messages, where the repository and the hpcc binaries are, and two checks.
set -euo pipefail
die() { echo "bench: error: $*" >&2; exit 1; }
say() { echo "bench: $*" >&2; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HPCC=${HPCC:-$REPO/build/hpcc}
HPCCD="$(dirname "$HPCC")/hpccd"
[ -x "$HPCC" ] && [ -x "$HPCCD" ] || die "build hpcc and hpccd first (make build)"

# bench_need TOOL...: dies naming the first one missing.
bench_need() {
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null || die "$t is missing (scripts/deps.sh bench installs it)"
  done
}
# bench_clean_env REGEX: unsets the environment variables whose names match
# ^(REGEX), so that every tool runs with its defaults.
bench_clean_env() {
  local v
  while read -r v; do unset "$v"; done < <(compgen -e | grep -E "^($1)" || true)
}
