#!/usr/bin/env bash
# Build the hpcc test toolchain image: a Debian bookworm minbase root with gcc
# and libc6-dev, trimmed of what a compiler never reads, written as an OCI
# image layout (one gzip layer) that `hpcc image import` turns into the
# squashfs root of the compile microVMs (docs/images.md).
#
# Usage: guest/build-toolchain-image.sh [OUT]
#   OUT  optional: also copy the finished layout to the directory OUT.
#
# The layout is cached in
#   ${HPCC_CACHE_ROOT:-/var/cache/hpcc-dev}/guest/toolchain-<hash>/oci
# where <hash> = SHA-256 of (this script, suite, packages, architecture).
# Package versions come from the mirror at build time and are not part of the
# key: the image's own identity is its manifest digest. The layout path is the
# last and only line on stdout; a second run with the same inputs only prints
# it. Progress goes to stderr. The mirror is read from this machine's apt
# configuration at run time, so no host name is written into the repository.
set -euo pipefail

prog=build-toolchain-image.sh
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }
log() { printf '%s: %s\n' "$prog" "$*" >&2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
script="$here/$(basename "${BASH_SOURCE[0]}")"
cache_root=${HPCC_CACHE_ROOT:-/var/cache/hpcc-dev}

suite=bookworm
variant=minbase
# gcc + libc6-dev is what a C compile needs; g++ would add ~60 MB for tests
# that do not use it.
packages=gcc,libc6-dev
arch=amd64
# Every file's mtime is clamped to this (2023-06-10, bookworm's release), so
# files that debootstrap writes carry no build time.
epoch=${SOURCE_DATE_EPOCH:-1686355200}

[ $# -le 1 ] || die "usage: $prog [OUT]"

key=$( {
    printf 'script %s\n' "$(sha256sum <"$script" | cut -d' ' -f1)"
    printf 'suite %s variant %s packages %s arch %s epoch %s\n' "$suite" "$variant" "$packages" "$arch" "$epoch"
} | sha256sum | cut -d' ' -f1)

guest_cache="$cache_root/guest"
dest="$guest_cache/toolchain-$key"

finish() { # copy to OUT when asked, then print the layout path
    if [ -n "${out:-}" ]; then
        mkdir -p "$out" || die "cannot create $out"
        cp -a "$dest/oci/." "$out/" || die "cannot copy the layout to $out"
    fi
    printf '%s\n' "$dest/oci"
    exit 0
}
out=${1:-}
[ -f "$dest/oci/index.json" ] && finish

mkdir -p "$guest_cache" || die "cannot create $guest_cache"
exec 9>"$guest_cache/.toolchain-$key.lock" || die "cannot open lock file in $guest_cache"
if ! flock -n 9; then
    log "another build of toolchain-$key is running; waiting for it"
    flock 9 || die "cannot lock $guest_cache/.toolchain-$key.lock"
fi
[ -f "$dest/oci/index.json" ] && finish # built by the run we waited for

[ "$(id -u)" -eq 0 ] || die "debootstrap needs root"
if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends debootstrap >&2; then
        apt-get update >&2 || die "apt-get update failed"
        apt-get install -y --no-install-recommends debootstrap >&2 || die "apt-get install debootstrap failed"
    fi
fi

# The Debian mirror this machine's apt uses for $suite (deb822 .sources
# first, then the one-line sources.list format).
mirror_url() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk -v suite="$suite" '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uri != "") { print uri; found = 1; exit }
                types = ""; suites = ""; uri = ""
            }
            /^[ \t]*$/ { flush(); next }
            /^Types:/ { sub(/^Types:[ \t]*/, ""); types = $0 }
            /^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0 }
            /^URIs:/ { sub(/^URIs:[ \t]*/, ""); split($0, u, /[ \t]+/); uri = u[1] }
            END { if (!found) flush() }' "$f"
    done | head -n 1
    local list
    for list in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$list" ] || continue
        # deb [options] URI SUITE COMPONENTS...
        sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$list" |
            awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2; exit }'
    done | head -n 1
}
mirror=$(mirror_url | head -n 1)
[ -n "$mirror" ] || die "no apt source for $suite in /etc/apt (sources.list.d/*.sources or sources.list)"

start=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/var/tmp}/hpcc-toolchain.XXXXXX")
cleanup() {
    # debootstrap may leave proc or sys mounted when it fails half way.
    umount -R "$work/root/proc" 2>/dev/null || true
    umount -R "$work/root/sys" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
root="$work/root"

log "debootstrap --variant=$variant --include=$packages $suite (mirror from apt configuration)"
if ! debootstrap --variant="$variant" --arch="$arch" --include="$packages" "$suite" "$root" "$mirror" \
    >"$work/debootstrap.log" 2>&1; then
    tail -n 20 "$work/debootstrap.log" >&2
    die "debootstrap failed"
fi
t_boot=$(date +%s)
log "debootstrap took $((t_boot - start))s, root is $(du -sm "$root" | cut -f1) MB"

# What a compiler never reads (lto-dump is a 32 MB standalone tool that gcc
# never runs; lto1, which -flto needs, stays). /dev is emptied: device nodes have no place
# in an image (hpcc image import refuses them); the guest mounts devtmpfs.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
    "$root"/var/lib/dpkg/*-old "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/usr/share/locale/* "$root"/usr/share/lintian "$root"/usr/share/bug "$root"/var/log/* \
    "$root"/var/cache/ldconfig/aux-cache "$root"/dev/* "$root"/run/* "$root"/tmp/* "$root"/var/tmp/* \
    "$root"/debootstrap "$root"/usr/bin/*lto-dump*
: >"$root/etc/machine-id"
[ -x "$root/usr/bin/gcc" ] || die "gcc missing from the root"
log "trimmed root is $(du -sm "$root" | cut -f1) MB"

# One deterministic layer: sorted names, numeric owners, mtimes clamped, no
# atime/ctime in pax headers, gzip without name or time.
blobs="$work/oci/blobs/sha256"
mkdir -p "$blobs"
tar --sort=name --numeric-owner --format=pax \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --mtime="@$epoch" --clamp-mtime -C "$root" -cf "$work/layer.tar" . \
    || die "tar of the root failed"
diff_id=$(sha256sum <"$work/layer.tar" | cut -d' ' -f1)
tar_bytes=$(stat -c %s "$work/layer.tar")
gzip -n -6 <"$work/layer.tar" >"$work/layer.tar.gz" || die "gzip failed"
rm -f "$work/layer.tar"
layer=$(sha256sum <"$work/layer.tar.gz" | cut -d' ' -f1)
layer_size=$(stat -c %s "$work/layer.tar.gz")
mv "$work/layer.tar.gz" "$blobs/$layer"

put_blob() { # JSON text on stdin → blob; prints "<hex> <size>"
    local tmp="$work/blob.json" hex
    cat >"$tmp"
    hex=$(sha256sum <"$tmp" | cut -d' ' -f1)
    mv "$tmp" "$blobs/$hex"
    printf '%s %s\n' "$hex" "$(stat -c %s "$blobs/$hex")"
}
created=$(date -u -d "@$epoch" '+%Y-%m-%dT%H:%M:%SZ')
read -r config config_size < <(printf '%s' "{\"architecture\":\"$arch\",\"os\":\"linux\",\"created\":\"$created\",\
\"config\":{\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"]},\
\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$diff_id\"]},\
\"history\":[{\"created\":\"$created\",\"created_by\":\"$prog: debootstrap --variant=$variant --include=$packages $suite\"}]}" | put_blob)
read -r manifest manifest_size < <(printf '%s' "{\"schemaVersion\":2,\
\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$config\",\"size\":$config_size},\
\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$layer\",\"size\":$layer_size}]}" | put_blob)
printf '%s' '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\
\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$manifest\",\
\"size\":$manifest_size,\"platform\":{\"architecture\":\"$arch\",\"os\":\"linux\"},\
\"annotations\":{\"org.opencontainers.image.ref.name\":\"$suite-gcc\"}}]}" >"$work/oci/index.json"

tmp="$guest_cache/.toolchain-$key.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
mv "$work/oci" "$tmp/oci"
printf 'sha256:%s\n' "$manifest" >"$tmp/digest"
rm -rf "$dest"
mv "$tmp" "$dest" || die "cannot store the layout in $dest"
log "built in $(( $(date +%s) - start ))s: tar $tar_bytes bytes, gzip layer $layer_size bytes, manifest sha256:$manifest"
finish
