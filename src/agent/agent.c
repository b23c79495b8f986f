/*
 * hpcc-agent's entry point. As PID 1 it is the guest's init (boot.c);
 * otherwise it offers two modes for host-side tests: --check-network runs
 * the network check alone (in a network namespace of the test's making),
 * and --serve-unix serves one Unix socket connection exactly as the guest
 * serves its channel, with a host directory as the compilers' root and no
 * mounts, network check, hostname or power-off.
 */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TEST_ACCEPT_MS 60000

void agent_log(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n = snprintf(buf, sizeof(buf), "hpcc-agent: ");

	va_start(ap, fmt);
	vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	n = (int)strlen(buf);
	buf[n++] = '\n';
	if (write(2, buf, (size_t)n) < 0) {
		/* the console is all there is */
	}
}

int64_t agent_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void agent_raise_nofile(void)
{
	struct rlimit rl;

	/* Live execs hold a few fds each (staging, pipes, the output being
	 * sent); the default soft limit of 1024 would run out first. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int usage(void)
{
	fprintf(stderr, "usage: hpcc-agent                       (as PID 1 in the guest)\n"
			"       hpcc-agent --check-network [--sysfs DIR]\n"
			"       hpcc-agent --serve-unix SOCKET --root DIR [--vcpus N] [--uid-base UID]\n");
	return 2;
}

/* The agent's children get fds 0-2 as they are; make sure they exist. */
static void stdio_ensure(void)
{
	for (int i = 0; i < 3; i++)
		if (fcntl(i, F_GETFD) < 0) {
			int fd = open("/dev/null", O_RDWR);
			if (fd >= 0 && fd != i) {
				dup2(fd, i);
				close(fd);
			}
		}
}

static int cmd_check_network(int argc, char **argv)
{
	const char *sysfs = "/sys";
	char names[512];
	int r;

	if (argc == 4 && strcmp(argv[2], "--sysfs") == 0)
		sysfs = argv[3];
	else if (argc != 2)
		return usage();
	r = netcheck_run(sysfs, names, sizeof(names));
	if (r == 0)
		printf("network ok: only lo\n");
	else if (r > 0)
		printf("network refused: interface(s) besides lo: %s\n", names);
	else
		printf("network check failed: %s/class/net: %s\n", sysfs, strerror(-r));
	return r == 0 ? 0 : r > 0 ? 1 : 2;
}

static int cmd_serve_unix(int argc, char **argv)
{
	struct agent a = { .boot = false, .sigfd = -1, .chan = -1, .root_fd = -1, .uid_base = AGENT_UID_BASE };
	const char *socket_path = NULL;
	char why[512];
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int r;

	a.vcpus = cpus > 0 && cpus < 1024 ? (unsigned)cpus : 1;
	for (int i = 1; i < argc; i++) {
		if (i + 1 >= argc)
			return usage();
		if (strcmp(argv[i], "--serve-unix") == 0)
			socket_path = argv[++i];
		else if (strcmp(argv[i], "--root") == 0)
			a.root = argv[++i];
		else if (strcmp(argv[i], "--vcpus") == 0) {
			char *end;
			unsigned long n;
			errno = 0;
			n = strtoul(argv[++i], &end, 10);
			if (errno || *end || end == argv[i] || n < 1 || n > 256)
				return usage();
			a.vcpus = (unsigned)n;
		} else if (strcmp(argv[i], "--uid-base") == 0) {
			/* Every process of these uids is killed at the end of
			 * a run: on a shared host, pick a range nothing else
			 * uses (the tests take one per agent). */
			char *end;
			unsigned long n;
			errno = 0;
			n = strtoul(argv[++i], &end, 10);
			if (errno || *end || end == argv[i] || n < 1000 || n > 2000000000ul)
				return usage();
			a.uid_base = (uid_t)n;
		} else
			return usage();
	}
	if (!socket_path || !a.root || a.root[0] != '/')
		return usage();
	stdio_ensure();
	umask(0);
	signal(SIGPIPE, SIG_IGN);
	/* Orphans of a compiler come back to the agent, as they would to
	 * PID 1 in the guest. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	agent_raise_nofile();
	a.root_fd = open(a.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (a.root_fd < 0) {
		agent_log("cannot open root %s: %s", a.root, strerror(errno));
		return 2;
	}
	if (channel_open_unix(socket_path, TEST_ACCEPT_MS, &a.chan, why, sizeof(why)) < 0) {
		agent_log("%s", why);
		return 2;
	}
	r = agent_serve(&a);
	close(a.chan);
	close(a.root_fd);
	if (r < 0) {
		agent_log("stopping: %s", a.fatal);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (getpid() == 1)
		boot_main();
	if (argc >= 2 && strcmp(argv[1], "--check-network") == 0)
		return cmd_check_network(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "--serve-unix") == 0)
		return cmd_serve_unix(argc, argv);
	if (argc == 2 && strcmp(argv[1], "--version") == 0) {
		printf("hpcc-agent %s\n", HPCC_VERSION);
		return 0;
	}
	return usage();
}
