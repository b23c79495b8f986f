#!/usr/bin/env bash
# Installs the Debian packages hpcc needs to build and test, when missing.
# Usage: scripts/deps.sh [build|check|bench]  (each set includes the ones before)
set -euo pipefail

build_pkgs=(gcc make meson ninja-build pkg-config libzstd-dev libssl-dev libinih-dev
  protobuf-c-compiler libprotobuf-c-dev libcmocka-dev libgrpc-dev libarchive-dev libjansson-dev
  libcurl4-openssl-dev)
check_pkgs=(clang libclang-rt-14-dev dpkg-dev qemu-system-x86 squashfs-tools-ng debootstrap cpio iproute2)
bench_pkgs=(ccache sccache hyperfine redis-server distcc)

want=("${build_pkgs[@]}")
case "${1:-build}" in
  build) ;;
  check) want+=("${check_pkgs[@]}") ;;
  bench|demo) want+=("${check_pkgs[@]}" "${bench_pkgs[@]}") ;;
  *) echo "deps.sh: unknown set '$1' (build, check, bench)" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# The test servers' node modules (tests/idp, tests/s3), for the sets that run tests.
npm_deps() { case "${1:-build}" in check|bench|demo) "$(dirname "$0")/npm-deps.sh" >/dev/null && "$(dirname "$0")/npm-deps.sh" "$(dirname "$0")/../tests/s3" >/dev/null ;; esac; }
# The unprivileged user a worker started as root runs as ([worker] user,
# docs/isolation.md); the tests' microVM workers use it.
worker_user() {
  case "${1:-build}" in check|bench|demo) ;; *) return 0 ;; esac
  id hpcc-worker >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] || { echo "deps.sh: no user hpcc-worker (run as root to create it)" >&2; return 0; }
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin hpcc-worker
}
worker_user "${1:-build}"
((${#missing[@]} == 0)) && { npm_deps "${1:-build}"; exit 0; }

if [ "$(id -u)" != 0 ]; then
  echo "deps.sh: missing packages: ${missing[*]} (run as root, or install them)" >&2
  exit 1
fi
echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
npm_deps "${1:-build}"
