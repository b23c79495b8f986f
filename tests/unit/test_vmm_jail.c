/*
 * Unit tests for the VMM jail (src/vmm/seccomp.c, src/vmm/cgroup.c,
 * src/worker/privilege.c), with a stand-in VMM (jail_probe.c) spawned by
 * the real vmm_spawn_jailed:
 *   - each forbidden syscall (a network socket, ptrace, unshare, clone with
 *     a new user namespace, mount, bpf, keyctl, a personality change) kills
 *     the VMM with SIGSYS, and this process carries on spawning the next;
 *   - a program doing what VMMs do (Unix socket, threads, the personality
 *     query; clone3 answered ENOSYS) runs to completion under the same
 *     filter and cgroup; AF_VSOCK passes only with allow_vsock;
 *   - the VMM's /proc status shows NoNewPrivs 1 and Seccomp 2;
 *   - with root and cgroups (v1 here), the VMM runs in hpcc-<pid>/<vm> of
 *     every hierarchy, with the memory, pids and CPU limits asked; a pids
 *     limit stops its threads; the groups are gone after removal;
 *   - a root without cgroup hierarchies is refused with a reason;
 *   - privilege_drop leaves exactly the kept capabilities, in the bounding
 *     set too, with NO_NEW_PRIVS, and an execve as root gains nothing.
 * Tests that need root are skipped otherwise.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fs.h"
#include "privilege.h"
#include "testutil.h"
#include "vmm.h"
#include "vmm_jail.h"

#define TEST_TIMEOUT_SECONDS 60
#define NOBODY 65534

struct fixture {
	char *tmpdir, *run_dir, *probe;
};

static char *join(const char *a, const char *b)
{
	char *p = NULL;
	assert_true(asprintf(&p, "%s/%s", a, b) > 0);
	return p;
}

static int setup(void **state)
{
	alarm(TEST_TIMEOUT_SECONDS);
	struct fixture *f = calloc(1, sizeof(*f));
	void *dir = NULL;
	if (!f || testutil_setup_tmpdir(&dir) < 0)
		return -1;
	f->tmpdir = dir;
	if (chmod(f->tmpdir, 0755) < 0)
		return -1;
	f->run_dir = join(f->tmpdir, "run");
	if (mkdir(f->run_dir, 0700) < 0 || (geteuid() == 0 && chown(f->run_dir, NOBODY, NOBODY) < 0))
		return -1;
	const char *build = getenv("HPCC_TEST_BUILDDIR");
	f->probe = join(build ? build : ".", "tests/unit/jail_probe");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	void *dir = f->tmpdir;
	testutil_teardown_tmpdir(&dir);
	free(f->run_dir);
	free(f->probe);
	free(f);
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct vmm_jail jail_for(const struct vmm_cgroup *cg, bool vsock)
{
	bool root = geteuid() == 0;
	return (struct vmm_jail){ .uid = root ? NOBODY : getuid(), .gid = root ? NOBODY : getgid(), .cgroup = cg,
				  .seccomp = true, .allow_vsock = vsock };
}

static void spawn_probe(struct fixture *f, const char *action, const struct vmm_jail *jail, struct vmm_process *p)
{
	_cleanup_strv_ struct strv argv = { 0 };
	assert_int_equal(strv_push(&argv, f->probe), 0);
	assert_int_equal(strv_push(&argv, action), 0);
	struct error e = { 0 };
	if (vmm_spawn_jailed(&argv, f->run_dir, jail, p, &e) < 0)
		fail_msg("spawn %s: %s", action, e.msg);
}

/* Waits (bounded) for the probe and returns its wait status. */
static int wait_probe(struct vmm_process *p)
{
	int status = -1;
	int64_t deadline = now_ms() + 10000;
	while (!vmm_exited(p, &status)) {
		if (now_ms() > deadline)
			fail_msg("the probe (pid %d) did not exit", (int)p->pid);
		usleep(5000);
	}
	return status;
}

static int run_probe(struct fixture *f, const char *action, const struct vmm_jail *jail)
{
	struct vmm_process p = { 0 };
	spawn_probe(f, action, jail, &p);
	return wait_probe(&p);
}

static void test_forbidden_kills(void **state)
{
	struct fixture *f = *state;
	static const char *const forbidden[] = { "socket-inet", "socket-netlink", "ptrace", "unshare", "clone-newuser",
						 "mount", "bpf", "personality", "keyctl", "vsock", "x32", "int80" };
	struct vmm_jail jail = jail_for(NULL, false);
	for (size_t i = 0; i < sizeof(forbidden) / sizeof(forbidden[0]); i++) {
		int status = run_probe(f, forbidden[i], &jail);
		if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGSYS)
			fail_msg("%s: status 0x%x, not killed by SIGSYS", forbidden[i], status);
	}
	/* The same calls without the filter return (exit 10): the kills
	 * above are the filter's. */
	jail.seccomp = false;
	int status = run_probe(f, "socket-inet", &jail);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 10);
}

static void test_allowed_runs(void **state)
{
	struct fixture *f = *state;
	struct vmm_jail jail = jail_for(NULL, false);
	int status = run_probe(f, "ok", &jail);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* Firecracker's flavour lets vsock through. */
	jail.allow_vsock = true;
	status = run_probe(f, "vsock", &jail);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* The plain vmm_spawn jails too. */
	_cleanup_strv_ struct strv argv = { 0 };
	assert_int_equal(strv_push(&argv, f->probe), 0);
	assert_int_equal(strv_push(&argv, "socket-inet"), 0);
	struct vmm_process p = { 0 };
	struct error e = { 0 };
	assert_int_equal(vmm_spawn(&argv, f->run_dir, jail.uid, jail.gid, &p, &e), 0);
	status = wait_probe(&p);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS);
}

/* The value of a "Name:\t..." line of /proc/<pid>/status, or "". */
static void status_field(pid_t pid, const char *name, char *out, size_t size)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	struct error e = { 0 };
	_cleanup_free_ char *text = fs_read_text(path, 1 << 16, &e);
	out[0] = '\0';
	assert_non_null(text);
	size_t n = strlen(name);
	for (char *line = text; line && *line;) {
		char *end = strchr(line, '\n');
		if (end)
			*end = '\0';
		if (strncmp(line, name, n) == 0 && line[n] == ':') {
			snprintf(out, size, "%s", line + n + 1 + strspn(line + n + 1, " \t"));
			return;
		}
		line = end ? end + 1 : NULL;
	}
}

static void test_status_shows_filter(void **state)
{
	struct fixture *f = *state;
	struct vmm_jail jail = jail_for(NULL, false);
	struct vmm_process p = { 0 };
	spawn_probe(f, "sleep", &jail, &p);
	char v[64];
	/* The fields appear once execve has happened: wait for the comm. */
	for (int i = 0; i < 200; i++) {
		status_field(p.pid, "Name", v, sizeof(v));
		if (strcmp(v, "jail_probe") == 0)
			break;
		usleep(5000);
	}
	status_field(p.pid, "NoNewPrivs", v, sizeof(v));
	assert_string_equal(v, "1");
	status_field(p.pid, "Seccomp", v, sizeof(v));
	assert_string_equal(v, "2");
	vmm_kill(&p);
}

static void test_seccomp_build(void **state)
{
	(void)state;
	struct sock_filter buf[VMM_SECCOMP_MAX];
	size_t n = 0, n_vsock = 0;
	assert_int_equal(vmm_seccomp_build(false, buf, VMM_SECCOMP_MAX, &n), 0);
	assert_int_equal(vmm_seccomp_build(true, buf, VMM_SECCOMP_MAX, &n_vsock), 0);
	assert_int_equal(n_vsock, n + 1);
	assert_int_equal(vmm_seccomp_build(false, buf, n - 1, &n), -ENOBUFS);
	print_message("seccomp filter: %zu instructions\n", n_vsock);
}

static bool have_v1_cgroups(void)
{
	struct stat st;
	return geteuid() == 0 && stat("/sys/fs/cgroup/memory/cgroup.procs", &st) == 0 &&
	       stat("/sys/fs/cgroup/pids/cgroup.procs", &st) == 0;
}

/* True when /proc/<pid>/cgroup has a line ending in suffix for controller. */
static bool in_cgroup(pid_t pid, const char *controller, const char *suffix)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	struct error e = { 0 };
	_cleanup_free_ char *text = fs_read_text(path, 1 << 16, &e);
	if (!text)
		return false;
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2)
			continue;
		*c2 = '\0';
		size_t ls = strlen(c2 + 1), ss = strlen(suffix);
		if (strstr(c1 + 1, controller) && ls >= ss && strcmp(c2 + 1 + ls - ss, suffix) == 0)
			return true;
	}
	return false;
}

static void test_cgroup_v1(void **state)
{
	struct fixture *f = *state;
	if (!have_v1_cgroups())
		skip();
	char name[32], vm_suffix[64];
	snprintf(name, sizeof(name), "hpcc-%d", (int)getpid());
	struct vmm_cgroups *g = NULL;
	struct error e = { 0 };
	if (vmm_cgroups_open("/sys/fs/cgroup", name, &g, &e) < 0)
		fail_msg("cgroups: %s", e.msg);
	/* This host's v2 hierarchy has no controllers (FACTS): v1. */
	print_message("cgroups: %s\n", vmm_cgroups_version(g));
	struct vmm_cgroup_limits limits = { .memory_bytes = 300u << 20, .pids_max = 20, .cpu_percent = 150 };
	struct vmm_cgroup cg;
	if (vmm_cgroup_create(g, "vm-test", &limits, &cg, &e) < 0)
		fail_msg("cgroup: %s", e.msg);
	char v[64];
	assert_int_equal(vmm_cgroup_read(&cg, "memory.limit_in_bytes", v, sizeof(v)), 0);
	assert_string_equal(v, "314572800");
	assert_int_equal(vmm_cgroup_read(&cg, "pids.max", v, sizeof(v)), 0);
	assert_string_equal(v, "20");
	if (vmm_cgroup_read(&cg, "cpu.cfs_quota_us", v, sizeof(v)) == 0)
		assert_string_equal(v, "150000");

	struct vmm_jail jail = jail_for(&cg, false);
	struct vmm_process p = { 0 };
	spawn_probe(f, "sleep", &jail, &p);
	vmm_cgroup_close_fds(&cg);
	snprintf(vm_suffix, sizeof(vm_suffix), "/%s/vm-test", name);
	assert_true(in_cgroup(p.pid, "memory", vm_suffix));
	assert_true(in_cgroup(p.pid, "pids", vm_suffix));
	assert_int_equal(vmm_cgroup_read(&cg, "pids.current", v, sizeof(v)), 0);
	assert_string_equal(v, "1");
	vmm_kill(&p);

	/* A harmless program runs to completion under filter and cgroup. */
	struct vmm_cgroup cg2;
	assert_int_equal(vmm_cgroup_create(g, "vm-ok", &limits, &cg2, &e), 0);
	jail.cgroup = &cg2;
	int status = run_probe(f, "ok", &jail);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	vmm_cgroup_remove(&cg2);
	/* ... and one that wants more threads than pids.max is stopped. */
	assert_int_equal(vmm_cgroup_create(g, "vm-pids", &limits, &cg2, &e), 0);
	status = run_probe(f, "threads=50", &jail);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 3);
	vmm_cgroup_remove(&cg2);

	_cleanup_free_ char *dir = strdup(cg.dirs[0]);
	vmm_cgroup_remove(&cg);
	vmm_cgroup_remove(&cg); /* idempotent */
	struct stat st;
	assert_int_equal(stat(dir, &st), -1);
	char *slash = strrchr(dir, '/');
	*slash = '\0';
	assert_int_equal(stat(dir, &st), 0); /* the worker's group stays... */
	vmm_cgroups_close(g);
	assert_int_equal(stat(dir, &st), -1); /* ...until closed */
}

static void test_cgroup_stale_swept(void **state)
{
	(void)state;
	if (!have_v1_cgroups())
		skip();
	/* A group of a worker that is gone (a pid that cannot exist) and its
	 * VM groups go when the next worker opens. The paths come from a
	 * group made and removed through the API, then made again by hand, as
	 * a worker that died would have left them. */
	struct vmm_cgroups *g = NULL;
	struct error e = { 0 };
	assert_int_equal(vmm_cgroups_open("/sys/fs/cgroup", "hpcc-2147483000", &g, &e), 0);
	struct vmm_cgroup cg;
	struct vmm_cgroup_limits limits = { .memory_bytes = 200u << 20, .pids_max = 64 };
	assert_int_equal(vmm_cgroup_create(g, "vm-old", &limits, &cg, &e), 0);
	char dirs[VMM_CGROUP_DIRS][512];
	unsigned n = cg.n;
	for (unsigned i = 0; i < n; i++)
		snprintf(dirs[i], sizeof(dirs[i]), "%s", cg.dirs[i]);
	_cleanup_free_ char *stale = strdup(cg.dirs[0]);
	vmm_cgroup_remove(&cg);
	vmm_cgroups_close(g);
	for (unsigned i = 0; i < n; i++) {
		char parent[sizeof(dirs[i])];
		memcpy(parent, dirs[i], sizeof(parent));
		*strrchr(parent, '/') = '\0';
		assert_int_equal(mkdir(parent, 0755), 0);
		assert_int_equal(mkdir(dirs[i], 0755), 0);
	}
	struct stat st;
	assert_int_equal(stat(stale, &st), 0);
	char name[32];
	snprintf(name, sizeof(name), "hpcc-%d", (int)getpid());
	assert_int_equal(vmm_cgroups_open("/sys/fs/cgroup", name, &g, &e), 0);
	assert_int_equal(stat(stale, &st), -1);
	vmm_cgroups_close(g);
}

static void test_cgroup_unavailable(void **state)
{
	struct fixture *f = *state;
	struct vmm_cgroups *g = NULL;
	struct error e = { 0 };
	int r = vmm_cgroups_open(f->tmpdir, "hpcc-1", &g, &e);
	assert_int_equal(r, -ENODEV);
	assert_null(g);
	print_message("without cgroups: %s\n", e.msg);
	assert_non_null(strstr(e.msg, "v2"));
	assert_non_null(strstr(e.msg, "v1 memory"));
}

static void test_privilege_drop(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	int pipefd[2];
	assert_int_equal(pipe(pipefd), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct error e = { 0 };
		char out[512] = "";
		char eff[64], bnd[64], nnp[64], after[64] = "";
		if (privilege_drop(privilege_microvm_caps(), &e) < 0) {
			snprintf(out, sizeof(out), "error %.400s", e.msg);
		} else {
			status_field(getpid(), "CapEff", eff, sizeof(eff));
			status_field(getpid(), "CapBnd", bnd, sizeof(bnd));
			status_field(getpid(), "NoNewPrivs", nnp, sizeof(nnp));
			/* An execve as root gains nothing (SECBIT_NOROOT). */
			int p2[2];
			if (pipe(p2) == 0) {
				pid_t c = fork();
				if (c == 0) {
					dup2(p2[1], 1);
					execl("/bin/sh", "sh", "-c", "grep ^CapEff: /proc/self/status", (char *)NULL);
					_exit(127);
				}
				close(p2[1]);
				ssize_t n = read(p2[0], after, sizeof(after) - 1);
				after[n > 0 ? n : 0] = '\0';
				after[strcspn(after, "\n")] = '\0';
				waitpid(c, NULL, 0);
			}
			snprintf(out, sizeof(out), "%s|%s|%s|%s", eff, bnd, nnp, after);
		}
		(void)!write(pipefd[1], out, strlen(out));
		_exit(0);
	}
	close(pipefd[1]);
	char got[512];
	ssize_t n = read(pipefd[0], got, sizeof(got) - 1);
	close(pipefd[0]);
	waitpid(pid, NULL, 0);
	assert_true(n > 0);
	got[n] = '\0';
	/* CHOWN 0, KILL 5, SETGID 6, SETUID 7. */
	assert_string_equal(got, "00000000000000e1|00000000000000e1|1|CapEff:\t0000000000000000");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_seccomp_build),
		T(test_forbidden_kills),
		T(test_allowed_runs),
		T(test_status_shows_filter),
		T(test_cgroup_v1),
		T(test_cgroup_stale_swept),
		T(test_cgroup_unavailable),
		T(test_privilege_drop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
