#!/usr/bin/env bash
# Boot the real guest: the hpcc guest kernel, the agent's initramfs and a
# small squashfs image under QEMU (-M microvm, TCG, -smp 2), then play the
# worker over QEMU's virtio-serial chardev socket with test_agent's guest
# mode (HPCC_TEST_AGENT_SOCKET): wait for the hello, run execs of a static
# test program that reports what it sees (user, groups, priority, hostname,
# cwd, tmpfs staging only its uid can enter, no /proc, no /dev/shm, a /tmp
# it cannot write, read-only image, /dev nodes, closed fds, no AF_INET), get
# its output file back, check a timeout, a staging path through an image
# symlink (refused), a process left in a session of its own (it must not
# reach a concurrent exec's input and must be dead once its exec ended),
# then close the stream and expect the VM to power itself off. Prints `ok - ...` / `not ok - ...` lines and
# the measured times; exits non-zero on any failure.
#
# Usage: guest/agent-boot-test.sh [BUILD_DIR]
#   BUILD_DIR  meson build directory holding hpcc-agent (static) and
#              tests/unit/test_agent; default: build
# Environment: HPCC_AGENT, HPCC_AGENT_DRIVER (override those two paths),
#   HPCC_VMLINUX (default: the path guest/build-kernel.sh prints),
#   HPCC_BOOT_TEST_TIMEOUT (seconds for the whole run, default 180),
#   HPCC_BOOT_TEST_CONNECT_DELAY (seconds before the driver connects, default
#   0: the agent must wait for a host that connects late),
#   HPCC_BOOT_TEST_IMAGE (a squashfs toolchain image with gcc: a second boot
#   compiles a C file with it and compares the object with a plain gcc -c),
#   KEEP_WORK=1 keeps the work directory.
#
# Not part of `make check`: the end-to-end microVM test owns that.
set -uo pipefail

prog=agent-boot-test
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }
log() { printf '%s: %s\n' "$prog" "$*" >&2; }
fails=0
ok() { echo "ok - $prog: $*"; }
not_ok() { echo "not ok - $prog: $*"; fails=$((fails + 1)); }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=${1:-build}
agent=${HPCC_AGENT:-$build/hpcc-agent}
driver=${HPCC_AGENT_DRIVER:-$build/tests/unit/test_agent}
timeout_s=${HPCC_BOOT_TEST_TIMEOUT:-180}
smp=2

[ $# -le 1 ] || die "usage: $0 [BUILD_DIR]"
[ -x "$agent" ] || die "agent not found: $agent"
[ -x "$driver" ] || die "test driver not found: $driver"
for c in qemu-system-x86_64 gensquashfs gcc; do
    command -v "$c" >/dev/null || die "$c not found (apt-get install qemu-system-x86 squashfs-tools-ng gcc)"
done
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || die "static libc missing (apt-get install libc6-dev)"
vmlinux=${HPCC_VMLINUX:-$("$here/build-kernel.sh")} || die "guest/build-kernel.sh failed"
[ -f "$vmlinux" ] || die "kernel not found: $vmlinux"
initrd=$("$here/build-initramfs.sh" "$agent") || die "guest/build-initramfs.sh failed"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hpcc-agent-boot.XXXXXX")
qpid=
cleanup() {
    [ -n "$qpid" ] && kill "$qpid" 2>/dev/null
    if [ -n "${KEEP_WORK:-}" ] || [ "$fails" -ne 0 ]; then log "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

# The image's one program: reports what a compiler would see, one fact a
# line, and writes the requested output file.
cat >"$tmp/prog.c" <<'EOF'
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

static const char *env(const char *k) { const char *v = getenv(k); return v ? v : "(unset)"; }

int main(int argc, char **argv)
{
    char buf[4096], path[4200];
    ssize_t n = -1;
    struct statfs sf;
    struct timespec t0, t1;
    int ok;

    /* Before this program opens anything: only 0-2 may be open. */
    int fds_closed = fcntl(3, F_GETFD) < 0 && fcntl(4, F_GETFD) < 0 && fcntl(5, F_GETFD) < 0;
    int fd;

    if (argc == 2 && strcmp(argv[1], "--sleep") == 0) {
        sleep(60);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "--true") == 0)
        return 0;
    if (argc == 3 && strcmp(argv[1], "--daemon") == 0) {
        /* Leaves a process in a session of its own that, a second
         * later, tries to overwrite another exec's file; prints its pid. */
        pid_t pid = fork();
        if (pid == 0) {
            setsid();
            sleep(1);
            fd = open(argv[2], O_WRONLY | O_TRUNC);
            if (fd >= 0 && write(fd, "tampered\n", 9) != 9)
                return 1;
            for (;;)
                pause();
        }
        printf("%d\n", (int)pid);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "--cat-later") == 0) {
        sleep(2);
        fd = open("in.txt", O_RDONLY);
        n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
        buf[n > 0 ? n : 0] = '\0';
        printf("input=%s", buf);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "--check-straggler") == 0) {
        /* Another exec's process: kill() says EPERM while it exists
         * (also as a zombie the agent has not reaped yet). */
        pid_t pid = (pid_t)strtol(argv[2], NULL, 10);
        for (int i = 0; i < 100; i++) {
            if (pid > 1 && kill(pid, 0) < 0 && errno == ESRCH) {
                puts("straggler-gone");
                return 0;
            }
            usleep(10000);
        }
        puts("straggler-alive");
        return 0;
    }
    if (argc != 2)
        return 2;
    if (fds_closed)
        puts("fds-closed");
    printf("uid=%d gid=%d groups=%d\n", (int)getuid(), (int)getgid(), getgroups(0, NULL));
    printf("nice=%d\n", getpriority(PRIO_PROCESS, 0));
    {
        /* The staging directory is root's (0711); root/ and tmp/ are
         * this uid's alone (0700). */
        struct stat top, here, tmp;
        if (stat("..", &top) == 0 && stat(".", &here) == 0 && stat("../tmp", &tmp) == 0 && top.st_uid == 0 &&
            (top.st_mode & 07777) == 0711 && here.st_uid == getuid() && (here.st_mode & 07777) == 0700 &&
            tmp.st_uid == getuid() && (tmp.st_mode & 07777) == 0700)
            puts("staging-private");
    }
    fd = open("in.txt", O_RDONLY);
    if (fd >= 0)
        n = read(fd, buf, sizeof(buf) - 1);
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    buf[n > 0 ? n : 0] = '\0';
    printf("input=%s\n", buf);
    gethostname(buf, sizeof(buf));
    printf("hostname=%s\n", buf);
    if (access("/proc/self", F_OK) != 0)
        puts("no-proc");
    if (access("/image", F_OK) != 0 && access("/merged", F_OK) != 0 && access("/init", F_OK) != 0)
        puts("chrooted");
    if (open("/etc/hpcc-image", O_WRONLY) < 0 && (errno == EACCES || errno == EROFS))
        puts("image-readonly");
    fd = open("/dev/null", O_WRONLY);
    ok = fd >= 0 && write(fd, "x", 1) == 1;
    /* The first read of /dev/urandom waits for the kernel's CRNG. */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    fd = open("/dev/urandom", O_RDONLY);
    ok = ok && fd >= 0 && read(fd, buf, 16) == 16;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("urandom-ms=%ld\n", (long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000));
    fd = open("/dev/zero", O_RDONLY);
    ok = ok && fd >= 0 && read(fd, buf, 16) == 16 && buf[0] == 0;
    if (ok)
        puts("devnull-ok");
    if (getcwd(buf, sizeof(buf)))
        printf("cwd=%s\n", buf);
    if (statfs(".", &sf) == 0 && sf.f_type == 0x01021994)
        puts("staging-tmpfs");
    if (read(0, buf, 1) == 0)
        puts("stdin-empty");
    if (socket(AF_INET, SOCK_STREAM, 0) < 0)
        puts("no-inet");
    snprintf(path, sizeof(path), "%s/t", env("TMPDIR"));
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd >= 0 && write(fd, "t", 1) == 1)
        puts("tmpdir-ok");
    /* No place every compile user may write: not /tmp, not /dev/shm. */
    fd = open("/tmp/t", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 && errno == EACCES)
        puts("tmp-readonly");
    if (access("/dev/shm", F_OK) != 0)
        puts("no-shm");
    printf("env PATH=%s LC_ALL=%s TZ=%s HOME=%s SOURCE_DATE_EPOCH=%s\n", env("PATH"), env("LC_ALL"), env("TZ"),
           env("HOME"), env("SOURCE_DATE_EPOCH"));
    fflush(stdout);
    fd = open(argv[1], O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0 || write(fd, "written in the guest\n", 21) != 21)
        return 1;
    return close(fd) == 0 ? 0 : 1;
}
EOF
mkdir -p "$tmp/img"
gcc -static -Os -Wall -Werror -o "$tmp/img/hpcc-test-prog" "$tmp/prog.c" || die "cannot compile the test program"
printf 'image file\n' >"$tmp/img/hpcc-image"
cat >"$tmp/pack" <<'EOF'
dir /usr 0755 0 0
dir /usr/bin 0755 0 0
file /usr/bin/hpcc-test-prog 0755 0 0 hpcc-test-prog
dir /etc 0755 0 0
file /etc/hpcc-image 0644 0 0 hpcc-image
dir /tmp 01777 0 0
dir /dev 0755 0 0
slink /evil 0777 0 0 /etc
EOF
gensquashfs -q -c gzip -F "$tmp/pack" -D "$tmp/img" "$tmp/root.sqsh" >/dev/null || die "gensquashfs failed"

# boot NAME IMAGE [DRIVER_ENV...]: boots IMAGE, runs the driver against the
# VM's channel with DRIVER_ENV, waits for the power-off. Leaves
# $tmp/NAME.console.log and $tmp/NAME.driver.log, and sets drc (driver
# status), qrc (QEMU status), off (the VM stopped by itself), start_ms and
# end_ms.
boot() {
    local name=$1 image=$2 sock="$tmp/$1.sock"
    shift 2
    log "$name: booting $vmlinux with $initrd and $image, -smp $smp (TCG)"
    start_ms=$(date +%s%3N)
    timeout "$timeout_s" qemu-system-x86_64 \
        -M microvm,acpi=off -accel tcg -cpu max -m 512 -smp "$smp" \
        -nodefaults -no-user-config -nographic -serial stdio -nic none -no-reboot \
        -drive if=none,id=rd,file="$image",format=raw,readonly=on -device virtio-blk-device,drive=rd \
        -device virtio-serial-device \
        -chardev socket,id=c0,path="$sock",server=on,wait=off \
        -device virtserialport,chardev=c0,name=hpcc.0 \
        -kernel "$vmlinux" -initrd "$initrd" \
        -append "console=ttyS0 reboot=t panic=-1 quiet hpcc.channel=virtio:hpcc.0 hpcc.vm=agent-boot-test" \
        </dev/null >"$tmp/$name.console.raw" 2>"$tmp/$name.qemu.err" &
    qpid=$!
    sleep "${HPCC_BOOT_TEST_CONNECT_DELAY:-0}"
    env HPCC_TEST_AGENT_SOCKET="$sock" "$@" timeout "$timeout_s" "$driver" >"$tmp/$name.driver.log" 2>&1
    drc=$?
    # The stream is closed: the agent powers the VM off on its own.
    off=false
    for _ in $(seq 1 300); do
        if ! kill -0 "$qpid" 2>/dev/null; then off=true; break; fi
        sleep 0.1
    done
    end_ms=$(date +%s%3N)
    if ! $off; then kill "$qpid" 2>/dev/null; fi
    wait "$qpid" 2>/dev/null
    qrc=$?
    qpid=
    tr -d '\r' <"$tmp/$name.console.raw" >"$tmp/$name.console.log"
    sed "s/^/# $name console: /" "$tmp/$name.console.log"
    sed "s/^/# $name driver: /" "$tmp/$name.driver.log"
    [ -s "$tmp/$name.qemu.err" ] && sed "s/^/# $name qemu: /" "$tmp/$name.qemu.err"
    return 0
}

# check_shutdown NAME: the VM powered itself off and cleaned up after itself.
check_shutdown() {
    local name=$1
    if $off && [ "$qrc" -eq 0 ] && grep -q 'the host closed the channel; powering off' "$tmp/$name.console.log"; then
        ok "$name: the VM powered off after the host closed the stream (QEMU exited 0, $((end_ms - start_ms)) ms in all)"
    else
        not_ok "$name: the VM did not power off cleanly (QEMU status $qrc)"
    fi
    if grep -qE 'cannot (unmount|remove) staging' "$tmp/$name.console.log"; then
        not_ok "$name: the agent could not clean up a staging directory"
    else
        ok "$name: every staging directory unmounted and removed"
    fi
}

boot guest "$tmp/root.sqsh"
log=$tmp/guest.driver.log
hello_ms=$(sed -n 's/^# hello-realtime-ms //p' "$log")
hello_uptime=$(sed -n 's/.*hello at uptime \([0-9.]*\) s.*/\1/p' "$tmp/guest.console.log")
exec_line=$(sed -n 's/^# exec: //p' "$log")
trivial_line=$(sed -n 's/^# trivial exec: //p' "$log" | tr '\n' ';' | sed 's/;$//; s/;/; /g')
urandom_ms=$(sed -n 's/^urandom-ms=//p' "$log" | head -n1)
if [ "$drc" -eq 0 ] && grep -q 'PASSED.*1 test' "$log"; then
    ok "hello, exec with input and output, timeout, symlinked staging refused, same staging reused, leftover process killed and kept out of a concurrent exec"
else
    not_ok "the guest driver failed (status $drc)"
fi
if [ -n "$hello_ms" ]; then
    ok "boot to hello: $((hello_ms - start_ms)) ms wall clock from QEMU start (guest uptime ${hello_uptime:-?} s)"
else
    not_ok "no hello"
fi
[ -n "$exec_line" ] && ok "first exec: $exec_line (of which ${urandom_ms:-?} ms reading /dev/urandom)"
[ -n "$trivial_line" ] && ok "trivial exec (program exits at once): $trivial_line"
check_shutdown guest

# With a real toolchain image (a squashfs holding gcc, e.g. one that
# `hpcc image import` wrote): gcc in the guest equals a plain gcc here.
if [ -n "${HPCC_BOOT_TEST_IMAGE:-}" ]; then
    [ -f "$HPCC_BOOT_TEST_IMAGE" ] || die "image not found: $HPCC_BOOT_TEST_IMAGE"
    boot gcc "$HPCC_BOOT_TEST_IMAGE" HPCC_TEST_AGENT_GCC=1
    log=$tmp/gcc.driver.log
    if [ "$drc" -eq 0 ] && grep -q 'PASSED.*1 test' "$log"; then
        ok "gcc: $(sed -n 's/^# gcc -O2 -g -c in the guest: //p' "$log"); the object equals a plain gcc -c here"
    else
        not_ok "gcc: the guest compile failed (status $drc)"
    fi
    check_shutdown gcc
fi
[ "$fails" -eq 0 ]
