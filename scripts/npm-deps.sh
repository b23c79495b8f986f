#!/usr/bin/env bash
# npm-deps.sh [DIR] — installs the node modules of a test server (default:
# tests/idp, the OAuth2 test IdP) with `npm ci`, and prints the path of the
# node_modules directory on stdout; progress goes to stderr.
#
# The modules are cached under ${HPCC_CACHE_ROOT:-/var/cache/hpcc-dev}/npm/<hash>/
# where <hash> is the SHA-256 of DIR's package.json and package-lock.json, so a
# second run with the same lock file is instant and needs no network; a changed
# lock file gets a directory of its own. Nothing is written into the source
# tree: tests run node with NODE_PATH=<printed path>.
#
# When npm is missing, Debian's nodejs and npm are installed with apt-get
# (as root). The test IdP needs node >= 20.19 (oauth2-mock-server 8.x).
set -euo pipefail

die() { echo "npm-deps: $*" >&2; exit 1; }
log() { echo "npm-deps: $*" >&2; }

here=$(cd "$(dirname "$0")/.." && pwd)
DIR=${1:-$here/tests/idp}
[[ -f $DIR/package.json && -f $DIR/package-lock.json ]] || die "$DIR has no package.json and package-lock.json"

hash=$(cat "$DIR/package.json" "$DIR/package-lock.json" | sha256sum | cut -c1-16)
ROOT=${HPCC_CACHE_ROOT:-/var/cache/hpcc-dev}/npm
dest=$ROOT/$hash

# Fast path: a complete earlier install (the marker is written last).
if [[ -f $dest/.hpcc-npm-complete ]]; then
    echo "$dest/node_modules"
    exit 0
fi

if ! command -v npm >/dev/null; then
    [[ $(id -u) -eq 0 ]] || die "npm is missing (install Debian's nodejs and npm, or run as root)"
    log "installing nodejs npm"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

mkdir -p "$ROOT"
# Two runs at once (make -j, two CI jobs) must not install into one
# directory together: the second waits for the first and then finds its work.
exec 9>"$ROOT/.lock-$hash"
flock 9
if [[ -f $dest/.hpcc-npm-complete ]]; then
    echo "$dest/node_modules"
    exit 0
fi

# Installed in a scratch directory and renamed into place, so that an
# interrupted install never looks complete.
tmp=$(mktemp -d "$ROOT/.tmp-$hash.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cp "$DIR/package.json" "$DIR/package-lock.json" "$tmp/"
log "npm ci in $tmp (for $DIR)"
(cd "$tmp" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2) || die "npm ci failed for $DIR"
touch "$tmp/.hpcc-npm-complete"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "$dest/node_modules"
