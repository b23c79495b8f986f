/*
 * Unit tests for the VMM spawner process (src/worker/spawner.c), with
 * /bin/sleep as the "VMM" (needs root; skipped otherwise):
 *   - the spawner runs with CapEff = CapBnd = e1, NO_NEW_PRIVS and no fd
 *     but 0-3;
 *   - it refuses uid 0, a uid outside the range, a uid in use, another
 *     binary, an id that is not "vm-<digits>" (a path), a spawn before the
 *     create, an oversized message, garbage and a lying length, and keeps
 *     serving after each (and after SIGTERM and SIGINT);
 *   - a good VM: run dir 2770 of the VM's uid and the worker's group, the
 *     VMM runs as that uid, its exit is reported with its status, destroy
 *     removes the run dir; a file the worker wrote there (Firecracker's
 *     config) is given to the VM's uid;
 *   - stopping the client kills the VMMs; so does killing the spawner.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fs.h"
#include "spawner.h"
#include "testutil.h"

#define UID0 1900000000u
#define VM_GID 65534u
#define WORKER_GID 4242u

struct fixture {
	char *tmpdir, *run_base;
	struct spawner *sp;
};

static int setup(void **state)
{
	alarm(60);
	struct fixture *f = calloc(1, sizeof(*f));
	void *dir = NULL;
	if (!f || testutil_setup_tmpdir(&dir) < 0)
		return -1;
	f->tmpdir = dir;
	if (chmod(f->tmpdir, 0755) < 0 || asprintf(&f->run_base, "%s/vms", f->tmpdir) < 0 || mkdir(f->run_base, 0711) < 0)
		return -1;
	*state = f;
	if (geteuid() != 0)
		return 0;
	/* A leftover of a previous worker, removed at start. */
	char *old = NULL;
	if (asprintf(&old, "%s/vm-000009", f->run_base) < 0 || mkdir(old, 0700) < 0)
		return -1;
	free(old);
	struct spawner_config c = {
		.binary = "/bin/sleep", .run_base = f->run_base, .vm_uid = UID0, .n_uids = 4, .vm_gid = VM_GID,
		.worker_gid = WORKER_GID, .max_vms = 2, .seccomp = true,
	};
	struct error err = { 0 };
	if (spawner_start(&c, &f->sp, &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	spawner_stop(f->sp);
	void *dir = f->tmpdir;
	testutil_teardown_tmpdir(&dir);
	free(f->run_base);
	free(f);
	return 0;
}

static void status_field(pid_t pid, const char *name, char *out, size_t size)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *fp = fopen(path, "r");
	out[0] = '\0';
	while (fp && fgets(line, sizeof(line), fp))
		if (strncmp(line, name, strlen(name)) == 0 && line[strlen(name)] == ':') {
			snprintf(out, size, "%s", line + strlen(name) + 1);
			out[strcspn(out, "\n")] = '\0';
			memmove(out, out + strspn(out, " \t"), strlen(out + strspn(out, " \t")) + 1);
		}
	if (fp)
		fclose(fp);
}

static bool alive(pid_t pid)
{
	char path[64], state[64];
	snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	if (access(path, F_OK) < 0)
		return false;
	status_field(pid, "State", state, sizeof(state));
	return state[0] != 'Z' && state[0] != '\0';
}

static bool gone_within(pid_t pid, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		if (!alive(pid))
			return true;
		usleep(10000);
	}
	return !alive(pid);
}

static struct strv sleep_argv(const char *bin)
{
	struct strv a = { 0 };
	assert_int_equal(strv_push(&a, bin), 0);
	assert_int_equal(strv_push(&a, "30"), 0);
	return a;
}

static void test_process(void **state)
{
	struct fixture *f = *state;
	if (geteuid() != 0)
		skip();
	pid_t pid = spawner_pid(f->sp);
	/* A round trip first: the spawner has set itself up and swept. */
	int st = 0;
	assert_true(spawner_exited(f->sp, "vm-000001", &st));
	char v[128];
	/* CHOWN 0, KILL 5, SETGID 6, SETUID 7. */
	status_field(pid, "CapEff", v, sizeof(v));
	assert_string_equal(v, "00000000000000e1");
	status_field(pid, "CapBnd", v, sizeof(v));
	assert_string_equal(v, "00000000000000e1");
	status_field(pid, "NoNewPrivs", v, sizeof(v));
	assert_string_equal(v, "1");
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	assert_non_null(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.') {
			assert_true(strtol(e->d_name, NULL, 10) <= 3);
			n++;
		}
	closedir(d);
	assert_int_equal(n, 4);
	/* The leftover run dir is gone. */
	char *old = NULL;
	assert_true(asprintf(&old, "%s/vm-000009", f->run_base) > 0);
	assert_int_equal(access(old, F_OK), -1);
	free(old);
}

static void test_refusals(void **state)
{
	struct fixture *f = *state;
	if (geteuid() != 0)
		skip();
	struct error err = { 0 };
	assert_int_equal(spawner_create(f->sp, "vm-000001", 0, NULL, &err), -EPERM);
	assert_int_equal(spawner_create(f->sp, "vm-000001", UID0 + 4, NULL, &err), -EPERM);
	assert_int_equal(spawner_create(f->sp, "vm-000001", UID0 - 1, NULL, &err), -EPERM);
	assert_int_equal(spawner_create(f->sp, "../../etc", UID0, NULL, &err), -EINVAL);
	assert_int_equal(spawner_create(f->sp, "vm-1/x", UID0, NULL, &err), -EINVAL);
	assert_int_equal(spawner_create(f->sp, "vm-", UID0, NULL, &err), -EINVAL);
	_cleanup_strv_ struct strv a = sleep_argv("/bin/sleep");
	pid_t pid = 0;
	assert_int_equal(spawner_spawn(f->sp, "vm-000001", &a, &pid, &err), -ENOENT);
	/* Garbage, an oversized message, a length that lies. */
	char junk[64];
	memset(junk, 0x5a, sizeof(junk));
	assert_int_equal(spawner_raw(f->sp, junk, sizeof(junk), &err), -EINVAL);
	assert_int_equal(spawner_raw(f->sp, junk, 3, &err), -EINVAL);
	char *big = calloc(1, SPAWNER_MSG_MAX + 100);
	assert_non_null(big);
	assert_int_equal(spawner_raw(f->sp, big, SPAWNER_MSG_MAX + 100, &err), -EMSGSIZE);
	free(big);
	/* A well-formed create whose args_len claims bytes that are not there. */
	struct { uint32_t magic, op; char id[SPAWNER_ID_MAX]; uint32_t uid, argc, args_len; } rq = {
		0x68707370u, 1, "vm-000001", UID0, 0, 100 };
	assert_int_equal(spawner_raw(f->sp, &rq, sizeof(rq), &err), -EINVAL);
	/* Another binary, a command line not NUL-terminated. */
	assert_int_equal(spawner_create(f->sp, "vm-000001", UID0, NULL, &err), 0);
	assert_int_equal(spawner_create(f->sp, "vm-000001", UID0 + 1, NULL, &err), -EEXIST);
	assert_int_equal(spawner_create(f->sp, "vm-000002", UID0, NULL, &err), -EADDRINUSE);
	_cleanup_strv_ struct strv sh = sleep_argv("/bin/sh");
	assert_int_equal(spawner_spawn(f->sp, "vm-000001", &sh, &pid, &err), -EINVAL);
	char msg[sizeof(rq) + 4];
	rq.op = 2;
	rq.argc = 1;
	rq.args_len = 4;
	memcpy(msg, &rq, sizeof(rq));
	memcpy(msg + sizeof(rq), "/bin", 4);
	assert_int_equal(spawner_raw(f->sp, msg, sizeof(msg), &err), -EINVAL);
	/* A SIGTERM or SIGINT (a Ctrl-C to the group) is the worker's business. */
	kill(spawner_pid(f->sp), SIGTERM);
	kill(spawner_pid(f->sp), SIGINT);
	usleep(50000);
	/* Still serving: the right binary starts. */
	assert_int_equal(spawner_spawn(f->sp, "vm-000001", &a, &pid, &err), 0);
	assert_true(pid > 0);
	assert_false(spawner_exited(f->sp, "vm-000001", NULL));
	spawner_destroy(f->sp, "vm-000001");
	assert_true(gone_within(pid, 2000));
}

static void test_vm_life(void **state)
{
	struct fixture *f = *state;
	if (geteuid() != 0)
		skip();
	struct error err = { 0 };
	char msg[256];
	assert_int_equal(spawner_create(f->sp, "vm-000003", UID0 + 2, msg, &err), 0);
	assert_string_equal(msg, "");
	char *dir = NULL;
	assert_true(asprintf(&dir, "%s/vm-000003", f->run_base) > 0);
	struct stat st;
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 02770);
	assert_int_equal(st.st_uid, UID0 + 2);
	assert_int_equal(st.st_gid, WORKER_GID);
	/* A config file the worker wrote there becomes the VM's. */
	char *conf = NULL;
	assert_true(asprintf(&conf, "%s/config.json", dir) > 0);
	assert_int_equal(fs_write_atomic(conf, "{}", 2, 0600, false), 0);
	_cleanup_strv_ struct strv a = sleep_argv("/bin/sleep");
	pid_t pid = 0;
	assert_int_equal(spawner_spawn(f->sp, "vm-000003", &a, &pid, &err), 0);
	assert_int_equal(stat(conf, &st), 0);
	assert_int_equal(st.st_uid, UID0 + 2);
	free(conf);
	char v[128];
	status_field(pid, "Uid", v, sizeof(v));
	assert_int_equal(strtoul(v, NULL, 10), UID0 + 2);
	status_field(pid, "NoNewPrivs", v, sizeof(v));
	assert_string_equal(v, "1");
	/* Its exit (by a signal) is reported with the status. */
	kill(pid, SIGTERM);
	int status = 0;
	bool ended = false;
	for (int i = 0; i < 200 && !ended; i++) {
		ended = spawner_exited(f->sp, "vm-000003", &status);
		if (!ended)
			usleep(10000);
	}
	assert_true(ended);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
	spawner_destroy(f->sp, "vm-000003");
	assert_int_equal(access(dir, F_OK), -1);
	free(dir);
	/* Stopping the client kills the VMMs it left. */
	assert_int_equal(spawner_create(f->sp, "vm-000004", UID0 + 3, NULL, &err), 0);
	assert_int_equal(spawner_spawn(f->sp, "vm-000004", &a, &pid, &err), 0);
	pid_t helper = spawner_pid(f->sp);
	spawner_stop(f->sp);
	f->sp = NULL;
	assert_true(gone_within(pid, 2000));
	assert_false(alive(helper));
}

static void test_spawner_killed(void **state)
{
	struct fixture *f = *state;
	if (geteuid() != 0)
		skip();
	struct error err = { 0 };
	_cleanup_strv_ struct strv a = sleep_argv("/bin/sleep");
	pid_t pid = 0;
	assert_int_equal(spawner_create(f->sp, "vm-000005", UID0, NULL, &err), 0);
	assert_int_equal(spawner_spawn(f->sp, "vm-000005", &a, &pid, &err), 0);
	kill(spawner_pid(f->sp), SIGKILL);
	assert_true(gone_within(pid, 2000));
	/* The client sees a dead spawner: an error, no hang. */
	assert_true(spawner_exited(f->sp, "vm-000005", NULL));
	assert_true(spawner_create(f->sp, "vm-000006", UID0 + 1, NULL, &err) < 0);
}

/* A VMM that forks a child which leaves its process group (setsid), as a
 * compromised VMM's would: destroying the VM kills the child too (by the
 * VM's own uid; no cgroups here), so the uid's next VM finds nothing. */
static void test_escaped_child_killed(void **state)
{
	struct fixture *f = *state;
	if (geteuid() != 0)
		skip();
	struct spawner_config c = {
		.binary = "/bin/sh", .run_base = f->run_base, .vm_uid = UID0, .n_uids = 4, .vm_gid = VM_GID,
		.worker_gid = WORKER_GID, .max_vms = 2, .seccomp = true,
	};
	struct spawner *sp = NULL;
	struct error err = { 0 };
	if (spawner_start(&c, &sp, &err) < 0)
		fail_msg("%s", err.msg);
	char *dir = NULL, *mark = NULL, *script = NULL;
	assert_true(asprintf(&dir, "%s/vm-000007", f->run_base) > 0);
	assert_true(asprintf(&mark, "%s/escaped", dir) > 0);
	assert_true(asprintf(&script, "setsid sleep 30 </dev/null >/dev/null 2>&1 & echo $! >%s; exec sleep 30", mark) > 0);
	struct strv a = { 0 };
	assert_int_equal(strv_push(&a, "/bin/sh"), 0);
	assert_int_equal(strv_push(&a, "-c"), 0);
	assert_int_equal(strv_push(&a, script), 0);
	assert_int_equal(spawner_create(sp, "vm-000007", UID0 + 1, NULL, &err), 0);
	pid_t pid = 0;
	assert_int_equal(spawner_spawn(sp, "vm-000007", &a, &pid, &err), 0);
	pid_t esc = 0;
	for (int i = 0; i < 300 && esc <= 0; i++) {
		FILE *fp = fopen(mark, "r");
		int v = 0;
		if (fp && fscanf(fp, "%d", &v) == 1)
			esc = v;
		if (fp)
			fclose(fp);
		if (esc <= 0)
			usleep(10000);
	}
	assert_true(esc > 0 && alive(esc));
	assert_int_not_equal(getsid(esc), getsid(pid));
	assert_true(spawner_destroy(sp, "vm-000007"));
	assert_true(gone_within(pid, 2000));
	assert_true(gone_within(esc, 2000));
	strv_free(&a);
	free(script);
	free(mark);
	free(dir);
	spawner_stop(sp);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_process),
		T(test_refusals),
		T(test_vm_life),
		T(test_escaped_child_killed),
		T(test_spawner_killed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
