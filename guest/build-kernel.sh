#!/usr/bin/env bash
# Build the hpcc guest kernel (uncompressed ELF vmlinux) from Debian's
# linux-source-6.1 package: `make tinyconfig` + guest/kernel.fragment.
#
# Usage: guest/build-kernel.sh [OUT_DIR]
#   OUT_DIR  optional build directory (source tree, .config, build.log); kept
#            after the run. Default: a temporary directory removed on exit.
#
# The result is cached in
#   ${HPCC_CACHE_ROOT:-/var/cache/hpcc-dev}/guest/kernel-<hash>/vmlinux
# where <hash> = SHA-256 of (kernel.fragment, this script, linux-source-6.1
# package version). The path is the only thing printed on stdout; a second run
# with the same inputs only prints it. Progress goes to stderr.
set -euo pipefail

prog=build-kernel.sh
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }
log() { printf '%s: %s\n' "$prog" "$*" >&2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
script="$here/$(basename "${BASH_SOURCE[0]}")"
fragment="$here/kernel.fragment"
src_pkg=linux-source-6.1
src_tarball=/usr/src/linux-source-6.1.tar.xz
cache_root=${HPCC_CACHE_ROOT:-/var/cache/hpcc-dev}

[ $# -le 1 ] || die "usage: $prog [OUT_DIR]"
[ -r "$fragment" ] || die "missing config fragment $fragment"

pkg_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

# Install the packages in "$@" that are missing (Debian, needs root).
ensure_pkgs() {
    local missing=() p
    for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing packages (run as root or install them): ${missing[*]}"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
        apt-get update >&2 || die "apt-get update failed"
        apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
            || die "apt-get install failed: ${missing[*]}"
    fi
}

# The source package version is part of the cache key, so it must be present
# even on the fast path.
ensure_pkgs "$src_pkg"
src_version=$(dpkg-query -W -f='${Version}' "$src_pkg") || die "cannot read $src_pkg version"

key=$( {
    printf 'fragment %s\n' "$(sha256sum <"$fragment" | cut -d' ' -f1)"
    printf 'script %s\n' "$(sha256sum <"$script" | cut -d' ' -f1)"
    printf '%s %s\n' "$src_pkg" "$src_version"
} | sha256sum | cut -d' ' -f1)

guest_cache="$cache_root/guest"
dest="$guest_cache/kernel-$key"
if [ -f "$dest/vmlinux" ]; then
    printf '%s\n' "$dest/vmlinux"
    exit 0
fi

mkdir -p "$guest_cache" || die "cannot create $guest_cache"
exec 9>"$guest_cache/.kernel-$key.lock" || die "cannot open lock file in $guest_cache"
if ! flock -n 9; then
    log "another build of kernel-$key is running; waiting for it"
    flock 9 || die "cannot lock $guest_cache/.kernel-$key.lock"
fi
if [ -f "$dest/vmlinux" ]; then # built by the run we waited for
    printf '%s\n' "$dest/vmlinux"
    exit 0
fi

ensure_pkgs gcc make libc6-dev flex bison bc libelf-dev libssl-dev cpio xz-utils zstd
[ -r "$src_tarball" ] || die "$src_tarball not found (is $src_pkg installed?)"

if [ $# -eq 1 ]; then
    work=$1
    mkdir -p "$work" || die "cannot create $work"
    work=$(cd "$work" && pwd)
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/hpcc-kernel.XXXXXX")
    trap 'rm -rf "$work"' EXIT
fi

start=$(date +%s)
tree="$work/linux-source-6.1"
buildlog="$work/build.log"
: >"$buildlog"
rm -rf "$tree"
log "unpacking $src_tarball ($src_pkg $src_version) into $work"
tar -xJf "$src_tarball" -C "$work" || die "cannot unpack $src_tarball"
[ -d "$tree" ] || die "unexpected tarball layout: $tree missing"

# Deterministic build metadata (DESIGN §4): no host name, user or wall clock.
export KBUILD_BUILD_USER=hpcc KBUILD_BUILD_HOST=hpcc
KBUILD_BUILD_TIMESTAMP=$(date -u -d "@${SOURCE_DATE_EPOCH:-0}" '+%a %b %e %H:%M:%S UTC %Y')
export KBUILD_BUILD_TIMESTAMP

run() { # run CMD... in the tree, output to build.log, one-line error on failure
    if ! (cd "$tree" && "$@") >>"$buildlog" 2>&1; then
        tail -n 30 "$buildlog" >&2
        die "'$*' failed (full log: $buildlog)"
    fi
}

log "configuring: tinyconfig + $(basename "$fragment")"
run make tinyconfig
run scripts/kconfig/merge_config.sh -m .config "$fragment"
run make olddefconfig

# Every option the fragment sets must have survived olddefconfig unchanged
# (a dependency missing from the fragment silently drops it).
missing=()
while IFS= read -r line; do
    case "$line" in
        CONFIG_*=*) grep -qxF -- "$line" "$tree/.config" || missing+=("$line") ;;
        "# CONFIG_"*" is not set")
            opt=${line#\# }; opt=${opt%% *}
            if grep -q "^$opt=" "$tree/.config"; then missing+=("$line"); fi ;;
    esac
done <"$fragment"
if [ ${#missing[@]} -gt 0 ]; then
    die "options from $(basename "$fragment") not in final .config (unmet dependencies?): ${missing[*]}"
fi

log "building vmlinux with $(nproc) jobs (log: $buildlog)"
run make -j"$(nproc)" vmlinux
[ -f "$tree/vmlinux" ] || die "build finished without $tree/vmlinux"

tmp="$guest_cache/.kernel-$key.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
cp "$tree/vmlinux" "$tmp/vmlinux"
cp "$tree/.config" "$tmp/config"
printf '%s %s\n' "$src_pkg" "$src_version" >"$tmp/source-version"
rm -rf "$dest"
mv "$tmp" "$dest" || die "cannot store kernel in $dest"
log "built in $(( $(date +%s) - start ))s, $(stat -c %s "$dest/vmlinux") bytes"
printf '%s\n' "$dest/vmlinux"
