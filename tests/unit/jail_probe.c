/*
 * A stand-in VMM for the jail tests (test_vmm_jail.c, test_microvm.sh): it
 * does one thing the VMM seccomp filter forbids or allows, then exits or
 * execs. The action is argv[1], or, when argv[1] is not an action (the
 * worker passes a VMM's command line), the first line of "<this
 * program>.mode". Exit codes: 0 done, 2 usage, 3 a pids limit stopped
 * thread creation, 4 an allowed call failed unexpectedly, 10 the
 * forbidden call returned (the filter did not kill us).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static void *idle(void *arg)
{
	(void)arg;
	pause();
	return NULL;
}

static int run(const char *action, char **rest)
{
	if (strcmp(action, "ok") == 0) {
		/* What every VMM does: Unix sockets, threads, the personality
		 * query; clone3 must say ENOSYS (the C library falls back). */
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		pthread_t t;
		if (fd < 0 || pthread_create(&t, NULL, idle, NULL) != 0 || personality(0xffffffff) < 0)
			return 4;
#ifdef SYS_clone3
		if (syscall(SYS_clone3, NULL, 0) != -1 || errno != ENOSYS)
			return 4;
#endif
		/* io_uring_setup must say ENOSYS too: a ring's requests would
		 * bypass the filter. */
#ifdef SYS_io_uring_setup
		if (syscall(SYS_io_uring_setup, 1, NULL) != -1 || errno != ENOSYS)
			return 5;
#endif
		return 0;
	}
	if (strcmp(action, "sleep") == 0) {
		pause();
		return 0;
	}
	if (strncmp(action, "threads=", 8) == 0) {
		/* Starts that many threads; 3 when the pids limit refuses one. */
		long n = strtol(action + 8, NULL, 10);
		for (long i = 0; i < n; i++) {
			pthread_t t;
			if (pthread_create(&t, NULL, idle, NULL) != 0)
				return 3;
		}
		return 0;
	}
	if (strcmp(action, "exec") == 0) {
		/* The real VMM with the command line we were given. */
		if (!rest[0])
			return 2;
		execv("/usr/bin/qemu-system-x86_64", rest - 1);
		return 4;
	}
	if (strcmp(action, "vsock") == 0)
		return socket(AF_VSOCK, SOCK_STREAM, 0) >= 0 || errno != EPERM ? 0 : 4;
	/* Forbidden: each returns only if the filter let it through. */
	if (strcmp(action, "socket-inet") == 0)
		(void)socket(AF_INET, SOCK_STREAM, 0);
	else if (strcmp(action, "socket-netlink") == 0)
		(void)socket(AF_NETLINK, SOCK_RAW, 0);
	else if (strcmp(action, "ptrace") == 0)
		(void)ptrace(PTRACE_TRACEME, 0, NULL, NULL);
	else if (strcmp(action, "unshare") == 0)
		(void)unshare(CLONE_NEWUSER);
	else if (strcmp(action, "clone-newuser") == 0)
		(void)syscall(SYS_clone, (long)(CLONE_NEWUSER | SIGCHLD), 0L, 0L, 0L, 0L);
	else if (strcmp(action, "mount") == 0)
		(void)mount("none", "/tmp", "tmpfs", 0, NULL);
	else if (strcmp(action, "bpf") == 0)
		(void)syscall(SYS_bpf, 0, NULL, 0);
	else if (strcmp(action, "personality") == 0)
		(void)personality(ADDR_NO_RANDOMIZE);
	else if (strcmp(action, "keyctl") == 0)
		(void)syscall(SYS_keyctl, 0, 0, 0, 0, 0);
#if defined(__x86_64__)
	else if (strcmp(action, "x32") == 0)
		(void)syscall(0x40000000L | SYS_getpid); /* the x32 ABI's getpid */
	else if (strcmp(action, "int80") == 0) {
		/* The i386 ABI's getpid (20) through int $0x80: another arch. */
		long r;
		__asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
		(void)r;
	}
#endif
	else
		return 2;
	return 10;
}

int main(int argc, char **argv)
{
	static const char *const actions[] = { "ok", "sleep", "exec", "vsock", "socket-inet", "socket-netlink",
						"ptrace", "unshare", "clone-newuser", "mount", "bpf", "personality",
						"keyctl", "x32", "int80" };
	if (argc >= 2) {
		for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
			if (strcmp(argv[1], actions[i]) == 0)
				return run(argv[1], argv + 2);
		if (strncmp(argv[1], "threads=", 8) == 0)
			return run(argv[1], argv + 2);
	}
	/* Run by a worker as its VMM: the action comes from a file. */
	char self[4096], path[4200], mode[64] = "";
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return 2;
	self[n] = '\0';
	snprintf(path, sizeof(path), "%s.mode", self);
	FILE *f = fopen(path, "re");
	if (!f || !fgets(mode, sizeof(mode), f))
		return 2;
	fclose(f);
	mode[strcspn(mode, "\n")] = '\0';
	return run(mode, argv + 1);
}
