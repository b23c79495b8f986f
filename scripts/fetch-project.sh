#!/usr/bin/env bash
# fetch-project.sh NAME DEST — get a real C project's source for the demo and
# the benchmarks, from Debian's source archive (`apt-get source`), never vendored.
#
#   NAME  Debian source package (default: libzstd)
#   DEST  directory to create; it receives a fresh copy of the unpacked tree
#
# The unpacked tree is cached under ${HPCC_CACHE_ROOT:-/var/cache/hpcc-dev}/projects/
# as NAME-<version>, so a second call only copies (no network, no apt); once a
# version is cached it is kept (delete the directory to fetch a newer one).
# Prints the path of DEST on stdout; progress goes to stderr.
#
# Why libzstd is the default project:
#   * `make -C lib libzstd.a` builds it with nothing but make and a C compiler:
#     no configure step, no generated headers, no extra -dev packages;
#   * lib/ has 39 C files (common/, compress/, decompress/, dictBuilder/,
#     deprecated/, legacy/); the default static build compiles 32 of them, from
#     0.1 s to 18 s each at -O3, plus one preprocessed assembly file
#     (decompress/huf_decompress_amd64.S): 33 objects;
#   * its Makefile compiles with `-MMD -MP -MF` dependency files, as most real
#     build systems do, so a cache must reproduce .d files correctly;
#   * the source is a fixed Debian version (bookworm: 1.5.4+dfsg2-5; the
#     security archive lists a +deb12u1 source it does not serve here, so the
#     newest version that downloads is used), so numbers are comparable
#     between runs and machines;
#   * with the default flags (-O3, legacy v05-v07 on) `make -j2` takes ~45 s:
#     long enough for the cold/warm ratios to mean something, short enough to
#     repeat 3-5 times per tool.
# Rejected: lua5.4 — Debian's 0001-build-system.patch turns its Makefile into a
# libtool build (`make -C src a` fails without libtool), and it has ~33 files
# without dependency files.
set -euo pipefail

die() { echo "fetch-project: $*" >&2; exit 1; }
log() { echo "fetch-project: $*" >&2; }

NAME=${1:-libzstd}
DEST=${2:-}
[[ -n $DEST ]] || die "usage: $0 NAME DEST"
[[ $NAME =~ ^[a-z0-9][a-z0-9.+-]+$ ]] || die "bad source package name: $NAME"

ROOT=${HPCC_CACHE_ROOT:-/var/cache/hpcc-dev}/projects
SOURCES=/etc/apt/sources.list.d/debian.sources

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# Fast path: any cached tree for NAME (newest version first) — no apt at all.
cached_tree() {
    local d
    d=$(find "$ROOT" -mindepth 1 -maxdepth 1 -type d -name "$NAME-[0-9]*" 2>/dev/null | sort -V | tail -n1)
    [[ -n $d && -f $d/.hpcc-fetch-complete ]] && echo "$d"
    return 0
}

has_source() { [[ -n $(apt-cache showsrc "$NAME" 2>/dev/null) ]]; }

ensure_deb_src() {
    has_source && return 0
    local changed=
    if ! grep -Eqs '^Types:.*deb-src' /etc/apt/sources.list.d/*.sources \
       && ! grep -Eqs '^deb-src ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list; then
        if [[ ! -f $SOURCES ]] || ! grep -q '^Types: deb$' "$SOURCES"; then
            die "no deb-src source configured and $SOURCES is not in the expected format"
        fi
        log "enabling deb-src in $SOURCES"
        as_root sed -i 's/^Types: deb$/Types: deb deb-src/' "$SOURCES"
        changed=1
    fi
    if [[ -n $changed ]] || ! compgen -G '/var/lib/apt/lists/*_Sources*' >/dev/null; then
        log "apt-get update"
        as_root apt-get update -qq >&2 || die "apt-get update failed"
    fi
    has_source || die "no source package named $NAME in the configured archives"
}

ensure_dpkg_dev() {
    command -v dpkg-source >/dev/null 2>&1 && return 0
    log "installing dpkg-dev"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dpkg-dev >&2 \
        || die "cannot install dpkg-dev"
}

tree=$(cached_tree)
if [[ -z $tree ]]; then
    ensure_deb_src
    ensure_dpkg_dev
    # Every version the archive lists, newest first: the security archive may
    # list a newer source than it actually serves, so fall back to older ones.
    mapfile -t versions < <(apt-cache showsrc "$NAME" | awk '/^Version:/ {print $2}' | sort -Vru)
    [[ ${#versions[@]} -gt 0 ]] || die "cannot find a version for $NAME"
    as_root mkdir -p "$ROOT"
    work=$(mktemp -d "$ROOT/.fetch-$NAME.XXXXXX")
    trap 'rm -rf "$work" "$work.log"' EXIT
    # Let apt's sandbox user write there (avoids the "unsandboxed" warning).
    if id _apt >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then chown _apt "$work"; fi
    version=
    for v in "${versions[@]}"; do
        log "apt-get source $NAME=$v"
        if (cd "$work" && apt-get source -qq --only-source "$NAME=$v" >"$work.log" 2>&1); then
            version=$v
            break
        fi
        log "  not available ($(grep -m1 -oE "[0-9]{3} +Not Found" "$work.log" || echo failed)), trying an older version"
        find "$work" -mindepth 1 -delete
    done
    rm -f "$work.log"
    [[ -n $version ]] || die "apt-get source $NAME failed for every version: ${versions[*]}"
    upstream=${version#*:}        # strip an epoch
    tree=$ROOT/$NAME-$upstream
    src=$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -n1)
    [[ -n $src ]] || die "apt-get source produced no directory"
    touch "$src/.hpcc-fetch-complete"
    rm -rf "$tree"
    mv "$src" "$tree"
    rm -rf "$work"
    trap - EXIT
    log "cached in $tree"
fi

if [[ -e $DEST ]]; then
    [[ -d $DEST ]] || die "$DEST exists and is not a directory"
    [[ -z $(ls -A "$DEST") ]] || die "$DEST exists and is not empty"
fi
mkdir -p "$DEST"
cp -a "$tree/." "$DEST/"
rm -f "$DEST/.hpcc-fetch-complete"
cd "$DEST" && pwd
