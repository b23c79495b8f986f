#!/usr/bin/env bash
# Build the hpcc guest initramfs: an uncompressed newc cpio holding /init
# (the statically linked hpcc-agent, mode 0755), /dev/console (char 5,1: the
# kernel opens it as the agent's stdin/stdout/stderr) and the empty
# directories the agent mounts on (/dev /proc /sys /image /rw /merged).
#
# Usage: guest/build-initramfs.sh AGENT [OUT_DIR]
#   AGENT    the hpcc-agent binary; refused unless statically linked
#   OUT_DIR  optional: also copy initrd.cpio there
#
# The archive is reproducible (sorted names, mtime 0, owner 0:0,
# `cpio --reproducible`) and cached in
#   ${HPCC_CACHE_ROOT:-/var/cache/hpcc-dev}/guest/initrd-<hash>/initrd.cpio
# where <hash> = SHA-256 of (agent binary, this script). The path of the
# cached archive (or of the copy in OUT_DIR) is the only thing printed on
# stdout. Creating the device node needs root (or fakeroot).
set -euo pipefail

prog=build-initramfs.sh
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }
log() { printf '%s: %s\n' "$prog" "$*" >&2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
script="$here/$(basename "${BASH_SOURCE[0]}")"
cache_root=${HPCC_CACHE_ROOT:-/var/cache/hpcc-dev}

[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: $prog AGENT [OUT_DIR]"
agent=$1
out_dir=${2:-}
[ -f "$agent" ] || die "agent binary not found: $agent"
command -v cpio >/dev/null || die "cpio not found (apt-get install cpio)"
command -v readelf >/dev/null || die "readelf not found (apt-get install binutils)"

# The initramfs holds nothing but the agent: a dynamic binary would find
# no loader and no libc, and the kernel would panic on the missing /init.
[ "$(head -c 4 "$agent" | od -An -c | tr -d ' ')" = '177ELF' ] || die "$agent is not an ELF binary"
if readelf -lW "$agent" 2>/dev/null | grep -q 'Requesting program interpreter'; then
    die "$agent is dynamically linked (it needs a program interpreter); build it without sanitizers"
fi
if readelf -dW "$agent" 2>/dev/null | grep -q '(NEEDED)'; then
    die "$agent needs shared libraries"
fi

key=$( {
    printf 'agent %s\n' "$(sha256sum <"$agent" | cut -d' ' -f1)"
    printf 'script %s\n' "$(sha256sum <"$script" | cut -d' ' -f1)"
} | sha256sum | cut -d' ' -f1)
dest="$cache_root/guest/initrd-$key"

finish() {
    if [ -n "$out_dir" ]; then
        mkdir -p "$out_dir" || die "cannot create $out_dir"
        cp "$dest/initrd.cpio" "$out_dir/initrd.cpio"
        printf '%s\n' "$(cd "$out_dir" && pwd)/initrd.cpio"
    else
        printf '%s\n' "$dest/initrd.cpio"
    fi
    exit 0
}
[ -f "$dest/initrd.cpio" ] && finish

use_fakeroot=false
if [ "$(id -u)" -ne 0 ]; then
    command -v fakeroot >/dev/null || die "creating /dev/console needs root or fakeroot"
    use_fakeroot=true
fi

mkdir -p "$cache_root/guest" || die "cannot create $cache_root/guest"
tmp=$(mktemp -d "$cache_root/guest/.initrd-$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
root="$tmp/root"
mkdir -p "$root"
for d in dev proc sys image rw merged; do
    mkdir -m 0755 "$root/$d"
done
cp "$agent" "$root/init"
chmod 0755 "$root/init"
chmod 0755 "$root"
build() {
    mknod "$root/dev/console" c 5 1
    chmod 0600 "$root/dev/console"
    find "$root" -exec touch -h -d @0 {} +
    (cd "$root" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
        cpio -o -0 -H newc --reproducible --owner=0:0 --quiet) >"$tmp/initrd.cpio"
}
if $use_fakeroot; then
    # Everything that must see the fake device node and owners runs
    # inside one fakeroot session.
    fakeroot bash -c "set -euo pipefail; root='$root' tmp='$tmp'; $(declare -f build); build" \
        || die "cannot build the archive"
else
    build || die "cannot build the archive"
fi
[ -s "$tmp/initrd.cpio" ] || die "empty archive"
mkdir -p "$tmp/out"
mv "$tmp/initrd.cpio" "$tmp/out/initrd.cpio"
if ! mv -T "$tmp/out" "$dest" 2>/dev/null; then
    [ -f "$dest/initrd.cpio" ] || die "cannot store the archive in $dest"
fi
log "built $dest/initrd.cpio ($(stat -c %s "$dest/initrd.cpio") bytes)"
finish
