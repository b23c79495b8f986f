#!/usr/bin/env bash
# Boot the hpcc guest kernel under QEMU (-M microvm, TCG) with a trivial
# initramfs and check what the guest sees.
#
# Usage: guest/boot-test.sh [VMLINUX]
#   VMLINUX  kernel to boot; default: the path printed by guest/build-kernel.sh
#            (which builds it first if it is not cached).
#
# The initramfs holds only /init, a static C program that mounts
# devtmpfs/proc/sysfs and prints its uptime, the kernel release, the number of
# CPUs online and the entries of /sys/class/net. Passes if the console shows
# the release of VMLINUX, "cpus 2" and "net: lo" (nothing but the loopback).
#
# Stopping the VM: with `-M microvm,acpi=off` there is no power-off device, so
# reboot(RB_POWER_OFF) only halts the CPUs ("reboot: System halted") and QEMU
# keeps running. /init therefore uses reboot(RB_AUTOBOOT); with `reboot=t`
# (triple fault) and QEMU's -no-reboot the VMM exits at once. `panic=-1` makes
# a crashing /init end the run too.
set -euo pipefail

prog=boot-test.sh
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }
log() { printf '%s: %s\n' "$prog" "$*" >&2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
timeout_s=${HPCC_BOOT_TEST_TIMEOUT:-60}
smp=2

[ $# -le 1 ] || die "usage: $prog [VMLINUX]"
if [ $# -eq 1 ]; then
    vmlinux=$1
else
    vmlinux=$("$here/build-kernel.sh") || die "guest/build-kernel.sh failed"
fi
[ -f "$vmlinux" ] || die "kernel not found: $vmlinux"

need() { # need COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    [ "$(id -u)" -eq 0 ] || die "$1 not found (install $2)"
    log "installing $2"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$2" >&2 \
        || die "apt-get install $2 failed"
}
need qemu-system-x86_64 qemu-system-x86
need gcc gcc
need cpio cpio
need gzip gzip
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need /usr/lib/x86_64-linux-gnu/libc.a libc6-dev

# The release the kernel will report, from its banner.
release=$(grep -a -o -m1 'Linux version [^ ]*' "$vmlinux" | head -n1 | cut -d' ' -f3)
[ -n "$release" ] || die "no 'Linux version' banner in $vmlinux"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hpcc-boot.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/init.c" <<'EOF'
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

int main(void)
{
    char up[64] = "?";
    struct utsname u;
    DIR *d;
    struct dirent *e;
    int fd, n;

    mkdir("/dev", 0755);
    mkdir("/proc", 0755);
    mkdir("/sys", 0755);
    mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
    mount("proc", "/proc", "proc", 0, NULL);
    mount("sysfs", "/sys", "sysfs", 0, NULL);

    fd = open("/proc/uptime", O_RDONLY);
    if (fd >= 0) {
        n = read(fd, up, sizeof up - 1);
        up[n > 0 ? n : 0] = '\0';
        close(fd);
        char *sp = strchr(up, ' ');
        if (sp)
            *sp = '\0';
    }
    fd = open("/dev/console", O_WRONLY);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    uname(&u);
    printf("uptime %s\n", up);
    printf("release %s\n", u.release);
    printf("cpus %ld\n", sysconf(_SC_NPROCESSORS_ONLN));
    printf("net:");
    if ((d = opendir("/sys/class/net")) != NULL) {
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.')
                printf(" %s", e->d_name);
        closedir(d);
    }
    printf("\n");
    printf("ports:");
    if ((d = opendir("/sys/class/virtio-ports")) != NULL) {
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.')
                printf(" %s", e->d_name);
        closedir(d);
    }
    printf("\n");
    fflush(stdout);
    sync();
    /* See the header of boot-test.sh: power-off would only halt here. */
    reboot(RB_AUTOBOOT);
    reboot(RB_POWER_OFF);
    return 1;
}
EOF
gcc -static -Os -Wall -Werror -o "$tmp/init" "$tmp/init.c" || die "cannot compile init.c"
mkdir "$tmp/root"
cp "$tmp/init" "$tmp/root/init"
(cd "$tmp/root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet --reproducible) \
    | gzip -9n >"$tmp/initrd.gz" || die "cannot build the initramfs"

log "booting $vmlinux ($release) with -smp $smp, timeout ${timeout_s}s"
start=$(date +%s.%N)
set +e
timeout "$timeout_s" qemu-system-x86_64 \
    -M microvm,acpi=off -accel tcg -cpu max -m 512 -smp "$smp" \
    -nodefaults -no-user-config -nographic -serial stdio -nic none -no-reboot \
    -device virtio-serial-device \
    -chardev socket,id=c0,path="$tmp/ch.sock",server=on,wait=off \
    -device virtserialport,chardev=c0,name=hpcc.0 \
    -kernel "$vmlinux" -initrd "$tmp/initrd.gz" \
    -append "console=ttyS0 reboot=t panic=-1 quiet" \
    </dev/null >"$tmp/console.raw" 2>"$tmp/qemu.err"
rc=$?
set -e
end=$(date +%s.%N)
tr -d '\r' <"$tmp/console.raw" >"$tmp/console.log"
sed 's/^/console: /' "$tmp/console.log" >&2
[ -s "$tmp/qemu.err" ] && sed 's/^/qemu: /' "$tmp/qemu.err" >&2
total=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')

[ "$rc" -ne 124 ] || die "QEMU did not exit within ${timeout_s}s"
[ "$rc" -eq 0 ] || die "QEMU exited with status $rc"
fail=()
grep -qxF "release $release" "$tmp/console.log" || fail+=("release $release")
grep -qxF "cpus $smp" "$tmp/console.log" || fail+=("cpus $smp")
grep -qxF "net: lo" "$tmp/console.log" || fail+=("net: lo")
[ ${#fail[@]} -eq 0 ] || die "console lacks: $(printf '"%s" ' "${fail[@]}")"

uptime=$(sed -n 's/^uptime //p' "$tmp/console.log")
printf '%s: PASS release %s, cpus %s, net: lo; /init at guest uptime %ss, total run %ss\n' \
    "$prog" "$release" "$smp" "$uptime" "$total"
