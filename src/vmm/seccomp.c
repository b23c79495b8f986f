/*
 * The seccomp filter every VMM runs under (see vmm_jail.h). It is our own
 * layer, below QEMU's "-sandbox on" (which QEMU stacks on top after it has
 * set itself up) and below whatever Firecracker installs: a VMM that a
 * guest took over still cannot reach the kernel's most dangerous entry
 * points, open a network socket, or leave its namespaces. It is a
 * deny-list, not an allow-list, because it must hold for two VMMs and
 * their libraries (QEMU alone has userfaultfd-free migration code and
 * several thread pools) without breaking on their next release;
 * every entry is a syscall that no VMM needs to run a guest.
 *
 * The program is classic BPF built by the parent into a caller's buffer,
 * so that the child only hands a pointer to the kernel between fork and
 * execve. Anything outside the list is allowed; a denied call kills the
 * whole process (SECCOMP_RET_KILL_PROCESS): a VMM that tries one is
 * compromised and must not carry on.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "vmm_jail.h"

#if defined(__x86_64__)
#define NATIVE_ARCH AUDIT_ARCH_X86_64
#define X32_SYSCALL_BIT 0x40000000u
#elif defined(__aarch64__)
#define NATIVE_ARCH AUDIT_ARCH_AARCH64
#else
#error "vmm seccomp filter: add this architecture's AUDIT_ARCH value"
#endif

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

/* The low 32 bits of argument n: the int arguments we compare. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ARG_LO(n) (offsetof(struct seccomp_data, args[n]))
#else
#define ARG_LO(n) (offsetof(struct seccomp_data, args[n]) + 4)
#endif

/* The syscalls that kill a VMM, each with why no VMM needs it. */
static const int denied[] = {
	/* Reading or writing another process's memory, or its fds: the
	 * classic way from one compromised VMM into another. */
	__NR_ptrace, __NR_process_vm_readv, __NR_process_vm_writev,
#ifdef __NR_pidfd_getfd
	__NR_pidfd_getfd,
#endif
	__NR_kcmp,
	/* The file system namespace: a VMM opens the paths it was given,
	 * it never mounts, pivots or changes its root. */
	__NR_mount, __NR_umount2, __NR_pivot_root, __NR_chroot,
#ifdef __NR_fsopen
	__NR_fsopen, __NR_fsconfig, __NR_fsmount, __NR_fspick, __NR_move_mount, __NR_open_tree,
#endif
#ifdef __NR_mount_setattr
	__NR_mount_setattr,
#endif
	/* New or foreign namespaces (user namespaces are kernel attack
	 * surface handed to an unprivileged user); clone's namespace flags
	 * are checked below. */
	__NR_unshare, __NR_setns,
	/* Replacing the kernel, or loading code into it. */
	__NR_kexec_load,
#ifdef __NR_kexec_file_load
	__NR_kexec_file_load,
#endif
	__NR_init_module, __NR_finit_module, __NR_delete_module,
	/* eBPF programs and performance counters: large kernel attack
	 * surface and side channels, used by no VMM. */
	__NR_bpf, __NR_perf_event_open,
	/* The kernel keyring (shared per user: the VMM users hold nothing
	 * there, and keyctl has a long record of kernel bugs). */
	__NR_keyctl, __NR_add_key, __NR_request_key,
	/* Host administration: reboot, swap, process accounting, quotas,
	 * the kernel log, terminal hang-up. */
	__NR_reboot, __NR_swapon, __NR_swapoff, __NR_acct, __NR_quotactl, __NR_syslog, __NR_vhangup,
	/* The host clock: a guest's time is the VMM's emulation, never the
	 * host's setting. */
	__NR_settimeofday, __NR_clock_settime, __NR_clock_adjtime, __NR_adjtimex,
#if defined(__x86_64__)
	/* Raw I/O ports of the host (KVM emulates the guest's). */
	__NR_iopl, __NR_ioperm,
	/* Obsolete calls that only widen the attack surface. */
	__NR_uselib, __NR__sysctl, __NR_create_module, __NR_get_kernel_syms, __NR_query_module,
	__NR_nfsservctl, __NR_lookup_dcookie,
#endif
	/* userfaultfd: the tool of choice to win kernel races; QEMU uses
	 * it only for postcopy migration, which the worker never does. */
	__NR_userfaultfd,
	/* File handles bypass path permissions (the "shocker" escape). */
	__NR_open_by_handle_at, __NR_name_to_handle_at,
	/* Watching the whole file system. */
	__NR_fanotify_init,
};

/* clone() flags that make new namespaces: as unshare(). */
#define CLONE_NAMESPACE_FLAGS                                                                                  \
	(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP)

#define STMT(code, k) ((struct sock_filter)BPF_STMT((code), (k)))
#define JUMP(code, k, jt, jf) ((struct sock_filter)BPF_JUMP((code), (k), (jt), (jf)))

int vmm_seccomp_build(bool allow_vsock, struct sock_filter *buf, size_t cap, size_t *ret_len)
{
	size_t n = 0;
#define EMIT(insn)                                       \
	do {                                             \
		if (n >= cap)                            \
			return -ENOBUFS;                 \
		buf[n++] = (insn);                       \
	} while (0)
	/* A foreign architecture (a 32-bit syscall entry on a 64-bit host)
	 * has other syscall numbers: every check below would be wrong. */
	EMIT(STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
	EMIT(JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_ARCH, 1, 0));
	EMIT(STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
	EMIT(STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
#ifdef X32_SYSCALL_BIT
	/* x32 numbers share the x86-64 architecture value: refuse them all. */
	EMIT(JUMP(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1));
	EMIT(STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
#endif
	for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
		EMIT(JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)denied[i], 0, 1));
		EMIT(STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
	}
	/* socket(): Unix sockets only (and vsock for Firecracker, whose
	 * guest channel it is). The VMM never opens a network socket: no
	 * driver gives the guest a network device, and a VMM that tries is
	 * compromised. */
	EMIT(JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, allow_vsock ? 5 : 4));
	EMIT(STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(0)));
	EMIT(JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, allow_vsock ? 2 : 1, 0));
	if (allow_vsock)
		EMIT(JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_VSOCK, 1, 0));
	EMIT(STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
	EMIT(STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
	/* clone(): threads and children, but no new namespaces. */
	EMIT(JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 4));
	EMIT(STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(0)));
	EMIT(JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_NAMESPACE_FLAGS, 0, 1));
	EMIT(STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
	EMIT(STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
#ifdef __NR_clone3
	/* clone3() passes its flags in memory, out of a filter's reach:
	 * "not implemented" makes the C library fall back to clone(). */
	EMIT(JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1));
	EMIT(STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)));
#endif
#ifdef __NR_io_uring_setup
	/* io_uring: its requests (IORING_OP_SOCKET among them) never pass
	 * through this filter, so a ring would open the sockets refused
	 * above. "Not implemented" makes QEMU use its thread pool and ppoll
	 * instead; without a ring, io_uring_enter and _register do nothing. */
	EMIT(JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1));
	EMIT(STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)));
#endif
	/* personality(): the query (0xffffffff) and PER_LINUX only; other
	 * personalities turn off address-space randomisation or change how
	 * the kernel reads memory maps. */
	EMIT(JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_personality, 0, 5));
	EMIT(STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(0)));
	EMIT(JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0xffffffffu, 2, 0));
	EMIT(JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0));
	EMIT(STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
	EMIT(STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
	EMIT(STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
#undef EMIT
	*ret_len = n;
	return 0;
}
