#!/usr/bin/env bash
# hpcc image import/list/rm through the real binaries (docs/images.md): a
# small OCI layout made here with tar, gzip and sha256sum is imported (the
# digest on stdout is its manifest digest; a second import writes nothing),
# its squashfs holds the merged layers without whiteouts, and list and rm
# see it. A tampered layer, hostile entries, a cap from worker.ini, and
# archives with a member name near PATH_MAX or a 50 GiB sparse member are
# refused with one line and leave nothing behind. When the cached test
# toolchain layout exists (guest/build-toolchain-image.sh; never built
# here), it is imported too and must hold gcc.
. "$(dirname "$0")/lib.sh"

command -v tar2sqfs >/dev/null && command -v sqfs2tar >/dev/null || {
  echo "ok - $TEST_NAME: # SKIP squashfs-tools-ng not installed"; exit 0; }

IMAGES="$WORK/images"

# blob FILE LAYOUT: stores FILE as a blob, prints "<hex> <size>".
blob() {
  local hex size
  hex=$(sha256sum <"$1" | cut -d' ' -f1)
  size=$(wc -c <"$1")
  mkdir -p "$2/blobs/sha256"
  cp "$1" "$2/blobs/sha256/$hex"
  echo "$hex $size"
}

# layout DIR ROOT1 ROOT2: an OCI layout with a gzip layer of ROOT1 and a
# plain layer of ROOT2; prints the manifest digest.
layout() {
  local dir=$1 l1 s1 d1 l2 s2 d2 c cs m ms
  mkdir -p "$dir"
  tar --sort=name --numeric-owner --format=pax --mtime=@1700000000 -C "$2" -cf "$WORK/l1.tar" .
  tar --sort=name --numeric-owner --format=pax --mtime=@1700000000 -C "$3" -cf "$WORK/l2.tar" .
  d1=$(sha256sum <"$WORK/l1.tar" | cut -d' ' -f1)
  d2=$(sha256sum <"$WORK/l2.tar" | cut -d' ' -f1)
  gzip -n <"$WORK/l1.tar" >"$WORK/l1.tar.gz"
  read -r l1 s1 < <(blob "$WORK/l1.tar.gz" "$dir")
  read -r l2 s2 < <(blob "$WORK/l2.tar" "$dir")
  cat >"$WORK/config.json" <<EOF
{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:$d1","sha256:$d2"]}}
EOF
  read -r c cs < <(blob "$WORK/config.json" "$dir")
  cat >"$WORK/manifest.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
 "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$c","size":$cs},
 "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:$l1","size":$s1},
           {"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:$l2","size":$s2}]}
EOF
  read -r m ms < <(blob "$WORK/manifest.json" "$dir")
  cat >"$dir/index.json" <<EOF
{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",
 "digest":"sha256:$m","size":$ms,"platform":{"architecture":"amd64","os":"linux"}}]}
EOF
  echo '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
  echo "sha256:$m"
}

# The image: usr/bin/cc (setuid in the tar), etc/gone removed by a whiteout.
r1="$WORK/r1" r2="$WORK/r2"
mkdir -p "$r1/usr/bin" "$r1/etc" "$r2/etc" "$r2/usr/lib"
printf '#!/bin/sh\necho cc\n' >"$r1/usr/bin/cc"
chmod 4755 "$r1/usr/bin/cc"
ln -s cc "$r1/usr/bin/gcc"
echo gone >"$r1/etc/gone"
echo kept >"$r1/etc/kept"
: >"$r2/etc/.wh.gone"
echo lib >"$r2/usr/lib/libx.a"
want=$(layout "$WORK/oci" "$r1" "$r2")

# Import, twice.
got=$("$HPCC" image import --dir "$IMAGES" "$WORK/oci" 2>"$WORK/err1")
check "import prints the manifest digest" [ "$got" = "$want" ]
hex=${want#sha256:}
check "squashfs and metadata are 0644" \
  [ "$(command stat -c %a "$IMAGES/$hex.sqsh" "$IMAGES/$hex.json" | tr '\n' ' ')" = "644 644 " ]
grep -q '"source": "oci-layout"' "$IMAGES/$hex.json" && ok "metadata names the source kind" \
  || not_ok "metadata: $(cat "$IMAGES/$hex.json")"
cp "$IMAGES/$hex.sqsh" "$WORK/first.sqsh"
got=$("$HPCC" image import --dir "$IMAGES" "$WORK/oci" 2>"$WORK/err2")
check "a second import exits 0 with the same digest" [ "$got" = "$want" ]
grep -q 'already imported' "$WORK/err2" && ok "a second import says it is already there" \
  || not_ok "second import said: $(cat "$WORK/err2")"
"$HPCC" image rm --dir "$IMAGES" "$want" 2>/dev/null
"$HPCC" image import --dir "$IMAGES" "$WORK/oci" >/dev/null 2>&1
same "$WORK/first.sqsh" "$IMAGES/$hex.sqsh" "a re-import gives a byte-identical squashfs"

# Content.
sqfs2tar "$IMAGES/$hex.sqsh" 2>/dev/null | tar -tvf - >"$WORK/listing"
grep -q ' usr/bin/cc$' "$WORK/listing" && grep -q 'usr/bin/gcc -> cc' "$WORK/listing" \
  && grep -q ' usr/lib/libx.a$' "$WORK/listing" && grep -q ' etc/kept$' "$WORK/listing" \
  && ok "the squashfs holds both layers" || not_ok "listing: $(cat "$WORK/listing")"
grep -q 'etc/gone\|\.wh\.' "$WORK/listing" && not_ok "whiteouts or what they hide are in the image" \
  || ok "whiteouts applied and absent"
grep ' usr/bin/cc$' "$WORK/listing" | grep -q '^-rwxr-xr-x' && ok "the setuid bit is dropped" \
  || not_ok "cc: $(grep ' usr/bin/cc$' "$WORK/listing")"

# list and rm.
"$HPCC" image list --dir "$IMAGES" >"$WORK/list"
[ "$(wc -l <"$WORK/list")" = 1 ] && grep -q "^$want " "$WORK/list" && ok "list shows the image" \
  || not_ok "list: $(cat "$WORK/list")"
"$HPCC" image list --dir "$IMAGES" --json >"$WORK/list.json"
grep -q "\"digest\": \"$want\"" "$WORK/list.json" && ok "list --json" || not_ok "list --json: $(cat "$WORK/list.json")"
"$HPCC" image rm --dir "$IMAGES" "$want" 2>/dev/null
check "rm removes both files" [ ! -e "$IMAGES/$hex.sqsh" -a ! -e "$IMAGES/$hex.json" ]
check "list is empty after rm" [ -z "$("$HPCC" image list --dir "$IMAGES")" ]
"$HPCC" image rm --dir "$IMAGES" "$want" 2>"$WORK/err"
s=$?
[ $s = 1 ] && grep -q 'not imported' "$WORK/err" && ok "rm of a missing image fails" \
  || not_ok "rm missing: status $s, $(cat "$WORK/err")"
"$HPCC" image rm --dir "$IMAGES" sha256:1234 2>"$WORK/err"
s=$?
[ $s != 0 ] && grep -q 'not an image digest' "$WORK/err" && ok "rm refuses a malformed digest" \
  || not_ok "rm malformed: status $s, $(cat "$WORK/err")"

# refused DESCRIPTION SOURCE WORD [ARGS...]: exit 1, one line naming WORD,
# and an empty images directory.
refused() {
  local what=$1 src=$2 word=$3 dir="$WORK/refused" s
  shift 3
  rm -rf "$dir"
  "$HPCC" image import --dir "$dir" "$@" "$src" >"$WORK/out" 2>"$WORK/err"
  s=$?
  if [ $s = 1 ] && [ "$(wc -l <"$WORK/err")" = 1 ] && grep -q -- "$word" "$WORK/err" && [ ! -s "$WORK/out" ] \
    && [ -z "$(ls -A "$dir" 2>/dev/null)" ]; then
    ok "$what is refused"
  else
    not_ok "$what: status $s, stderr: $(cat "$WORK/err"), left: $(ls -A "$dir" 2>/dev/null)"
  fi
}

cp -a "$WORK/oci" "$WORK/bad"
layer=$(ls -S "$WORK/bad/blobs/sha256" | head -1)
printf 'X' | dd of="$WORK/bad/blobs/sha256/$layer" bs=1 seek=700 conv=notrunc 2>/dev/null
refused "a tampered layer" "$WORK/bad" "digest mismatch"

mkdir -p "$WORK/h1/x"
echo evil >"$WORK/h1/x/passwd"
tar -P --transform='s|^x/passwd$|/etc/passwd|' -C "$WORK/h1" -cf "$WORK/abs.tar" x/passwd 2>/dev/null
tar -tf "$WORK/abs.tar" >"$WORK/abs.list" 2>/dev/null
grep -q '^/etc/passwd$' "$WORK/abs.list" || not_ok "could not make an absolute entry"
refused_layout() { # DESCRIPTION TAR WORD: the tar as the only layer
  local d="$WORK/hl" l s c cs m ms
  rm -rf "$d"
  read -r l s < <(blob "$2" "$d")
  printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$l" >"$WORK/c.json"
  read -r c cs < <(blob "$WORK/c.json" "$d")
  printf '{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$c" "$cs" "$l" "$s" >"$WORK/m.json"
  read -r m ms < <(blob "$WORK/m.json" "$d")
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s}]}' \
    "$m" "$ms" >"$d/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$d/oci-layout"
  refused "$1" "$d" "$3"
}
refused_layout "an absolute entry" "$WORK/abs.tar" "absolute path"
tar -P --transform='s|^x/passwd$|x/../../etc/passwd|' -C "$WORK/h1" -cf "$WORK/dotdot.tar" x/passwd 2>/dev/null
refused_layout "a '..' entry" "$WORK/dotdot.tar" "'..' component"
mkdir -p "$WORK/h3"
ln -s /etc "$WORK/h3/a"
echo x >"$WORK/h1/passwd"
tar -C "$WORK/h3" -cf "$WORK/sym.tar" a
tar -C "$WORK/h1" --transform='s|^passwd$|a/passwd|' -rf "$WORK/sym.tar" passwd
refused_layout "an entry below a symlink" "$WORK/sym.tar" "below the symlink a"

# Docker archives: the layout as an OCI archive, with one more member whose
# name (4080 bytes) would put its staged path past PATH_MAX; a 50 GiB sparse
# member in 10 KB, which counts at its apparent size.
long=$(printf 'n%.0s' $(seq 254))
long="$long/$long/$long/$long/$long/$long/$long/$long/$long/$long/$long/$long/$long/$long/$long/${long}n"
echo x >"$WORK/short"
tar -C "$WORK/oci" -cf "$WORK/long.tar" .
tar -C "$WORK" --transform="s|^short\$|$long|" -rf "$WORK/long.tar" short
tar -tf "$WORK/long.tar" | grep -q "^${long}\$" || not_ok "could not make a 4080-byte member name"
refused "a member name near PATH_MAX" "$WORK/long.tar" "name longer than"
mkdir -p "$WORK/sp"
truncate -s 50G "$WORK/sp/big"
tar -S --format=pax -C "$WORK/sp" -cf "$WORK/sparse.tar" big
rm -f "$WORK/sp/big"
refused "a 50 GiB sparse member" "$WORK/sparse.tar" "members larger than"

# Caps from worker.ini ([images] max_size), and --max-entries.
mkdir -p "$WORK/w"
cat >"$WORK/w/worker.ini" <<EOF
[worker]
id = w1
listen = 127.0.0.1:0
dir = state
cert = cert.pem
key = key.pem
token_key = routing.pub
images = $want
[images]
max_size = 16
EOF
"$HPCC" image import --config "$WORK/w/worker.ini" "$WORK/oci" >/dev/null 2>"$WORK/err"
s=$?
[ $s = 1 ] && grep -q 'size cap' "$WORK/err" && [ -z "$(ls -A "$WORK/w/state/images" 2>/dev/null)" ] \
  && ok "worker.ini's image max_size applies" || not_ok "config cap: status $s, $(cat "$WORK/err")"
got=$("$HPCC" image import --config "$WORK/w/worker.ini" --max-size 1M "$WORK/oci" 2>/dev/null)
[ "$got" = "$want" ] && [ -f "$WORK/w/state/images/$hex.sqsh" ] \
  && ok "--config imports into <dir>/images; --max-size overrides" || not_ok "config import: '$got'"
refused "more entries than --max-entries" "$WORK/oci" "entry cap" --max-entries 3

# Usage errors.
"$HPCC" image >/dev/null 2>&1
check "hpcc image alone is a usage error" [ $? = 2 ]
"$HPCC" image import --dir "$IMAGES" >/dev/null 2>&1
check "import without a source is a usage error" [ $? = 2 ]
(unset HPCC_WORKER_CONFIG; "$HPCC" image list >/dev/null 2>"$WORK/err")
s=$?
[ $s = 2 ] && grep -q 'give --dir' "$WORK/err" && ok "no images directory is a usage error" \
  || not_ok "no dir: status $s"
refused "a missing source" "$WORK/nothing" "No such file"

# The cached test toolchain, when a previous build left it.
cache_root=${HPCC_CACHE_ROOT:-/var/cache/hpcc-dev}
tc=$(ls -td "$cache_root"/guest/toolchain-*/oci 2>/dev/null | head -n 1)
if [ -n "$tc" ] && [ -f "$tc/index.json" ]; then
  start=$(date +%s.%N)
  digest=$("$HPCC" image import --dir "$WORK/tc" "$tc" 2>"$WORK/err")
  s=$?
  took=$(echo "$(date +%s.%N) - $start" | bc)
  rdsquashfs -l /usr/bin "$WORK/tc/${digest#sha256:}.sqsh" >"$WORK/tc.list" 2>/dev/null
  if [ $s = 0 ] && grep -q ' gcc -> ' "$WORK/tc.list"; then
    ok "the toolchain image imports in ${took}s and holds usr/bin/gcc"
  else
    not_ok "toolchain import: status $s, $(cat "$WORK/err")"
  fi
  # An interrupted import leaves nothing.
  rm -rf "$WORK/tc2"
  "$HPCC" image import --dir "$WORK/tc2" "$tc" >/dev/null 2>"$WORK/err" &
  pid=$!
  sleep 1
  kill -INT $pid
  wait $pid
  s=$?
  [ $s != 0 ] && [ -z "$(ls -A "$WORK/tc2" 2>/dev/null)" ] && ok "an interrupted import leaves nothing" \
    || not_ok "interrupt: status $s, left: $(ls -A "$WORK/tc2" 2>/dev/null)"
else
  ok "# SKIP no cached toolchain layout (guest/build-toolchain-image.sh)"
fi
exit $((T_FAILS > 0))
