/*
 * Unit tests for the VM pool (src/worker/vm_pool.c) with a fake VMM: a VMM
 * driver whose "VM" is this test binary re-executed as a fake guest (it
 * listens on the run dir's agent socket, says hello and answers execs over
 * the real framing), spawned by the real vmm_spawn as uid 65534. Checked:
 * warm reuse, one VM per tenant, the per-tenant cap (a second exec waits for
 * the busy VM; with a bounded wait, -EDQUOT after it), the total cap (an idle VM of another tenant makes room),
 * idle teardown, a VM that crashes mid-exec (retried once on a fresh VM, a
 * second crash reported), a guest that never says hello, that freeing
 * the pool kills every VMM, and that with a uid range each VM has its own uid;
 * with root and cgroups, the jail: each VMM in its own cgroup (removed with
 * the VM), NO_NEW_PRIVS and seccomp, a 2770 run dir of group root, and the
 * manager thread ("vm-pool") reduced to CHOWN, KILL, SETGID, SETUID.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent.pb-c.h"
#include "frame.h"
#include "fs.h"
#include "privilege.h"
#include "testutil.h"
#include "vm_pool.h"
#include "vmm_driver.h"

#define IMAGE "sha256:abababababababababababababababababababababababababababababababab"

static char self_copy[4096]; /* this binary, copied where uid 65534 can run it */
static char marker_dir[4096];
static const char *guest_mode = "good";

/* ---- the fake guest (a separate process) ---------------------------------- */

static void guest_send(int fd, Hpcc__V1__AgentFrame *f)
{
	size_t len = hpcc__v1__agent_frame__get_packed_size(f);
	uint8_t *b = malloc(len + 1);
	hpcc__v1__agent_frame__pack(f, b);
	if (frame_write(fd, b, len) < 0)
		_exit(3);
	free(b);
}

static int fake_guest(const char *sock, const char *mode, const char *markers)
{
	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock);
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0)
		return 2;
	int fd = accept(l, NULL, NULL);
	if (fd < 0)
		return 2;
	if (strcmp(mode, "nohello") == 0)
		for (;;)
			pause();
	Hpcc__V1__AgentHello h = HPCC__V1__AGENT_HELLO__INIT;
	h.version = "fake";
	h.vcpus = 1;
	h.network_ok = true;
	Hpcc__V1__AgentFrame f = HPCC__V1__AGENT_FRAME__INIT;
	f.kind_case = HPCC__V1__AGENT_FRAME__KIND_HELLO;
	f.hello = &h;
	guest_send(fd, &f);
	for (;;) {
		uint8_t *b = NULL;
		size_t len = 0;
		if (frame_read(fd, FRAME_MAX_DEFAULT, &b, &len) < 0)
			return 0;
		Hpcc__V1__AgentFrame *in = hpcc__v1__agent_frame__unpack(NULL, len, b);
		free(b);
		if (!in || in->kind_case != HPCC__V1__AGENT_FRAME__KIND_HEADER)
			return 4;
		const char *what = in->header->n_argv > 1 ? in->header->argv[1] : "";
		if (strcmp(what, "crash") == 0)
			_exit(9);
		if (strcmp(what, "crash-once") == 0) {
			char m[4096];
			snprintf(m, sizeof(m), "%s/crashed", markers);
			int mfd = open(m, O_WRONLY | O_CREAT | O_EXCL, 0644);
			if (mfd >= 0)
				_exit(9);
		}
		if (strcmp(what, "sleep") == 0)
			usleep(400000);
		if (strcmp(what, "escape") == 0) {
			/* A child that leaves the VMM's process group, as a
			 * compromised VMM's would, and says where it is. */
			pid_t c = fork();
			if (c == 0) {
				setsid();
				for (;;)
					pause();
			}
			char m[4096], v[32];
			snprintf(m, sizeof(m), "%s/escaped", markers);
			snprintf(v, sizeof(v), "%d\n", (int)c);
			int mfd = open(m, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			if (mfd >= 0) {
				(void)!write(mfd, v, strlen(v));
				close(mfd);
			}
		}
		char pid[32];
		snprintf(pid, sizeof(pid), "%d", (int)getpid());
		Hpcc__V1__StdioChunk s = HPCC__V1__STDIO_CHUNK__INIT;
		s.fd = 1;
		s.data.data = (uint8_t *)pid;
		s.data.len = strlen(pid);
		Hpcc__V1__AgentFrame o = HPCC__V1__AGENT_FRAME__INIT;
		o.exec_id = in->exec_id;
		o.kind_case = HPCC__V1__AGENT_FRAME__KIND_STDIO;
		o.stdio = &s;
		guest_send(fd, &o);
		Hpcc__V1__ExecResult r = HPCC__V1__EXEC_RESULT__INIT;
		o.kind_case = HPCC__V1__AGENT_FRAME__KIND_RESULT;
		o.result = &r;
		guest_send(fd, &o);
		hpcc__v1__agent_frame__free_unpacked(in, NULL);
	}
}

/* ---- the fake VMM driver ---------------------------------------------------- */

static int fake_build(const struct vmm_config *c, struct strv *ret_argv, struct error *err)
{
	int r;
	if ((r = strv_push(ret_argv, self_copy)) < 0 || (r = strv_push(ret_argv, "--fake-guest")) < 0 ||
	    (r = strv_pushf(ret_argv, "%s/agent.sock", c->run_dir)) < 0 || (r = strv_push(ret_argv, guest_mode)) < 0 ||
	    (r = strv_push(ret_argv, marker_dir)) < 0)
		return error_set(err, r, "out of memory");
	return 0;
}

static int fake_connect(const struct vmm_config *c, int timeout_ms, int *ret_fd, struct error *err)
{
	return vmm_unix_connect(c->run_dir, "agent.sock", ret_fd, err);
}

static const struct vmm_ops fake_vmm = { .name = "fake", .build = fake_build, .connect = fake_connect };

/* ---- tests ------------------------------------------------------------------- */

struct fixture {
	char *dir;
	struct vm_pool *pool;
	struct vm_pool_config cfg;
	char run_base[4096], images[4096];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (testutil_setup_tmpdir((void **)&f->dir) < 0)
		return -1;
	chmod(f->dir, 0711);
	snprintf(f->run_base, sizeof(f->run_base), "%s/vms", f->dir);
	snprintf(f->images, sizeof(f->images), "%s/images", f->dir);
	snprintf(marker_dir, sizeof(marker_dir), "%s/markers", f->dir);
	mkdir(f->images, 0755);
	mkdir(marker_dir, 0777);
	chmod(marker_dir, 0777);
	char img[4200];
	snprintf(img, sizeof(img), "%s/%s.sqsh", f->images, IMAGE + 7);
	int fd = open(img, O_WRONLY | O_CREAT, 0644);
	close(fd);
	snprintf(img, sizeof(img), "%s/%s.json", f->images, IMAGE + 7);
	fd = open(img, O_WRONLY | O_CREAT, 0644);
	close(fd);
	f->cfg = (struct vm_pool_config){
		.vmm = &fake_vmm, .binary = "/bin/true", .kernel = "/boot/vmlinux", .initrd = "/boot/initrd",
		.accel = "kvm", .sandbox = true, .uid = 65534, .gid = 65534, .vcpus = 1, .memory_mib = 256,
		.max_vms = 4, .max_vms_per_tenant = 2, .idle_timeout_s = 300, .max_age_s = 3600, .boot_timeout_s = 5,
		.run_base = f->run_base, .images_dir = f->images,
	};
	guest_mode = "good";
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	vm_pool_free(f->pool);
	testutil_rm_rf(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

static void start(struct fixture *f)
{
	struct error err = { 0 };
	assert_int_equal(vm_pool_new(&f->cfg, &f->pool, &err), 0);
}

/* Runs one exec; returns the serving guest's pid (or a negative errno). */
static int run(struct fixture *f, const char *tenant, const char *what, char vm[VM_NAME_MAX])
{
	const char *argv[] = { "gcc", what, NULL };
	struct agent_exec_request rq = { .argv = argv, .staging = "/s/exec-1", .timeout_ms = 4000, .max_output = 64 };
	struct agent_exec_reply reply;
	struct error err = { 0 };
	char name[VM_NAME_MAX] = "";
	int r = vm_pool_exec(f->pool, tenant, IMAGE, &rq, &reply, name, &err);
	if (vm)
		snprintf(vm, VM_NAME_MAX, "%s", name);
	if (r < 0) {
		print_message("exec %s for %s: %s\n", what, tenant, err.msg);
		return r;
	}
	char buf[32] = "";
	snprintf(buf, sizeof(buf), "%.*s", (int)reply.out.len, reply.out.data ? reply.out.data : "");
	agent_exec_reply_free(&reply);
	return (int)strtol(buf, NULL, 10);
}

static bool alive(int pid)
{
	return kill(pid, 0) == 0;
}

/* Gone, or a zombie that init has not reaped yet: killed either way. */
static bool dead(int pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *fp = fopen(path, "re");
	if (!fp)
		return true;
	char line[512] = "";
	bool z = fgets(line, sizeof(line), fp) && strstr(line, ") Z ");
	fclose(fp);
	return z;
}

/* The pid the fake guest's "escape" child wrote, or -1. */
static int escaped_pid(void)
{
	char path[4200], v[32] = "";
	snprintf(path, sizeof(path), "%s/escaped", marker_dir);
	FILE *fp = fopen(path, "re");
	if (!fp)
		return -1;
	if (!fgets(v, sizeof(v), fp))
		v[0] = '\0';
	fclose(fp);
	return v[0] ? (int)strtol(v, NULL, 10) : -1;
}

static void test_reuse_and_tenants(void **state)
{
	struct fixture *f = *state;
	start(f);
	char vm[VM_NAME_MAX];
	int a1 = run(f, "alpha", "x", vm), a2 = run(f, "alpha", "x", NULL), b1 = run(f, "beta", "x", NULL);
	assert_true(a1 > 0 && b1 > 0);
	assert_int_equal(a1, a2);      /* warm reuse */
	assert_int_not_equal(a1, b1);  /* never shared across tenants */
	assert_string_equal(vm, "vm-000001@fake-kvm");
	struct vm_pool_stats s;
	vm_pool_get_stats(f->pool, &s);
	assert_int_equal(s.boots, 2);
	assert_int_equal(s.vms, 2);
	/* Freeing the pool kills every VMM. */
	vm_pool_free(f->pool);
	f->pool = NULL;
	assert_false(alive(a1));
	assert_false(alive(b1));
}

struct job {
	struct fixture *f;
	int pid;
};

static void *job_main(void *arg)
{
	struct job *j = arg;
	j->pid = run(j->f, "alpha", "sleep", NULL);
	return NULL;
}

static void test_tenant_cap_waits(void **state)
{
	struct fixture *f = *state;
	f->cfg.max_vms_per_tenant = 1;
	start(f);
	struct job j[3] = { { f }, { f }, { f } };
	pthread_t t[3];
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&t[i], NULL, job_main, &j[i]), 0);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	/* One VM with one vCPU served all three, one after the other. */
	assert_true(j[0].pid > 0);
	assert_int_equal(j[1].pid, j[0].pid);
	assert_int_equal(j[2].pid, j[0].pid);
	struct vm_pool_stats s;
	vm_pool_get_stats(f->pool, &s);
	assert_int_equal(s.boots, 1);
}

/* With [limits] vm_wait (tenant_wait_ms), a tenant whose VMs are all busy
 * waits that long, then gets -EDQUOT naming the cap; another tenant is
 * served meanwhile, and the tenant again once its VM is free. */
static void test_tenant_cap_bounded_wait(void **state)
{
	struct fixture *f = *state;
	f->cfg.max_vms_per_tenant = 1;
	f->cfg.tenant_wait_ms = 100;
	start(f);
	struct job j = { f };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, job_main, &j), 0);
	struct vm_pool_stats s = { 0 };
	for (int i = 0; i < 400 && s.busy_slots == 0; i++) {
		usleep(10000);
		vm_pool_get_stats(f->pool, &s);
	}
	assert_int_equal(s.busy_slots, 1);
	const char *argv[] = { "gcc", "x", NULL };
	struct agent_exec_request rq = { .argv = argv, .staging = "/s/exec-1", .timeout_ms = 4000, .max_output = 64 };
	struct agent_exec_reply reply;
	struct error err = { 0 };
	char name[VM_NAME_MAX] = "";
	assert_int_equal(vm_pool_exec(f->pool, "alpha", IMAGE, &rq, &reply, name, &err), -EDQUOT);
	assert_non_null(strstr(err.msg, "tenant alpha: VM quota 1 VMs per tenant reached"));
	assert_true(run(f, "beta", "x", NULL) > 0);
	pthread_join(t, NULL);
	assert_true(j.pid > 0);
	assert_int_equal(run(f, "alpha", "x", NULL), j.pid);
}

static void test_total_cap_retires_idle(void **state)
{
	struct fixture *f = *state;
	f->cfg.max_vms = 1;
	f->cfg.max_vms_per_tenant = 1;
	start(f);
	int a = run(f, "alpha", "x", NULL);
	int b = run(f, "beta", "x", NULL);
	assert_true(a > 0 && b > 0 && a != b);
	usleep(1500000); /* the manager tears the retired VM down */
	assert_false(alive(a));
	assert_true(alive(b));
}

static void test_idle_teardown(void **state)
{
	struct fixture *f = *state;
	f->cfg.idle_timeout_s = 1;
	start(f);
	int a = run(f, "alpha", "x", NULL);
	assert_true(a > 0);
	usleep(3000000);
	struct vm_pool_stats s;
	vm_pool_get_stats(f->pool, &s);
	assert_int_equal(s.vms, 0);
	assert_int_equal(s.retired_idle, 1);
	assert_false(alive(a));
	/* The next exec boots a fresh VM. */
	assert_true(run(f, "alpha", "x", NULL) > 0);
}

static void test_crash_retried_once(void **state)
{
	struct fixture *f = *state;
	start(f);
	/* Crashes the first time only: the retry on a fresh VM succeeds. */
	int pid = run(f, "alpha", "crash-once", NULL);
	assert_true(pid > 0);
	struct vm_pool_stats s;
	vm_pool_get_stats(f->pool, &s);
	assert_int_equal(s.retries, 1);
	assert_int_equal(s.boots, 2);
	/* Crashes every time: reported after one retry. */
	assert_true(run(f, "alpha", "crash", NULL) < 0);
	vm_pool_get_stats(f->pool, &s);
	assert_int_equal(s.retries, 2);
	/* The pool still works. */
	assert_true(run(f, "alpha", "x", NULL) > 0);
}

static void test_no_hello(void **state)
{
	struct fixture *f = *state;
	f->cfg.boot_timeout_s = 1;
	guest_mode = "nohello";
	start(f);
	assert_int_equal(run(f, "alpha", "x", NULL), -ETIMEDOUT);
	struct vm_pool_stats s;
	vm_pool_get_stats(f->pool, &s);
	assert_int_equal(s.boot_failures, 2);
}

static void test_image_not_imported(void **state)
{
	struct fixture *f = *state;
	start(f);
	const char *argv[] = { "gcc", NULL };
	struct agent_exec_request rq = { .argv = argv, .staging = "/s/e", .timeout_ms = 1000, .max_output = 64 };
	struct agent_exec_reply reply;
	struct error err = { 0 };
	char vm[VM_NAME_MAX];
	assert_int_equal(vm_pool_exec(f->pool, "alpha",
				      "sha256:cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd", &rq, &reply, vm,
				      &err),
			 -ENOENT);
	assert_int_equal(vm_pool_exec(f->pool, "alpha", "sha256:../../etc", &rq, &reply, vm, &err), -EINVAL);
}

static unsigned uid_of(int pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	FILE *f = fopen(path, "r");
	unsigned uid = 0;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Uid: %u", &uid) == 1)
			break;
	if (f)
		fclose(f);
	return uid;
}

/* With a uid range, every VM runs as its own uid. */
static void test_uid_range(void **state)
{
	struct fixture *f = *state;
	if (geteuid() != 0)
		skip();
	f->cfg.uid_base = 1900000000;
	start(f);
	int a = run(f, "alpha", "x", NULL), b = run(f, "beta", "x", NULL);
	assert_true(a > 0 && b > 0);
	unsigned ua = uid_of(a), ub = uid_of(b);
	assert_true(ua >= 1900000000u && ua < 1900000000u + 2 * f->cfg.max_vms);
	assert_true(ub >= 1900000000u && ub < 1900000000u + 2 * f->cfg.max_vms);
	assert_int_not_equal(ua, ub);
	/* A process that left the VMM's process group (no cgroup here) is
	 * found by the VM's uid and killed with it: the uid's next VM, maybe
	 * another tenant's, finds nothing of the last one. */
	int vmm = run(f, "gamma", "escape", NULL);
	assert_true(vmm > 0);
	int esc = escaped_pid();
	assert_true(esc > 0 && !dead(esc));
	assert_int_equal((int)uid_of(esc), (int)uid_of(vmm));
	vm_pool_free(f->pool);
	f->pool = NULL;
	for (int i = 0; i < 200 && !dead(esc); i++)
		usleep(10000);
	assert_true(dead(vmm));
	assert_true(dead(esc));
}

/* The first line of a /proc file that starts with key, value only; "" if none. */
static void proc_field(const char *path, const char *key, char *out, size_t size)
{
	out[0] = '\0';
	FILE *fp = fopen(path, "re");
	char line[512];
	size_t n = strlen(key);
	while (fp && fgets(line, sizeof(line), fp))
		if (strncmp(line, key, n) == 0) {
			char *v = line + n + strspn(line + n, ": \t");
			v[strcspn(v, "\n")] = '\0';
			snprintf(out, size, "%s", v);
			break;
		}
	if (fp)
		fclose(fp);
}

/* With root and cgroups: the jail the pool puts around each VMM (its own
 * cgroup, NO_NEW_PRIVS and the seccomp filter, a 2770 run dir of group
 * root), the manager thread reduced to the four capabilities, and the
 * VM's cgroup removed once the pool is freed. */
static void test_jail(void **state)
{
	struct fixture *f = *state;
	struct stat st;
	if (geteuid() != 0 || stat("/sys/fs/cgroup/memory/cgroup.procs", &st) < 0)
		skip();
	char name[32];
	snprintf(name, sizeof(name), "hpcc-%d", (int)getpid());
	struct vmm_cgroups *g = NULL;
	struct error e = { 0 };
	if (vmm_cgroups_open("/sys/fs/cgroup", name, &g, &e) < 0)
		fail_msg("cgroups: %s", e.msg);
	f->cfg.cgroups = g;
	f->cfg.limits = (struct vmm_cgroup_limits){ .memory_bytes = 256u << 20, .pids_max = 64, .cpu_percent = 100 };
	f->cfg.seccomp = true;
	f->cfg.manager_caps_set = true;
	f->cfg.manager_caps = privilege_microvm_caps();
	start(f);
	char vm[VM_NAME_MAX];
	/* "escape": the VMM forks a child that leaves its process group. */
	int pid = run(f, "alpha", "escape", vm);
	assert_true(pid > 0);
	int esc = escaped_pid();
	assert_true(esc > 0 && !dead(esc));
	char path[512], v[256], want[256];
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	proc_field(path, "NoNewPrivs", v, sizeof(v));
	assert_string_equal(v, "1");
	proc_field(path, "Seccomp:", v, sizeof(v));
	assert_string_equal(v, "2");
	snprintf(path, sizeof(path), "/proc/%d/cgroup", pid);
	char vm_id[VM_NAME_MAX];
	snprintf(vm_id, sizeof(vm_id), "%s", vm);
	vm_id[strcspn(vm_id, "@")] = '\0';
	snprintf(want, sizeof(want), "/%s/%s", name, vm_id);
	_cleanup_free_ char *cg = fs_read_text(path, 1 << 16, &e);
	assert_non_null(cg);
	assert_non_null(strstr(cg, want));
	char run_dir[4200];
	snprintf(run_dir, sizeof(run_dir), "%s/%s", f->run_base, vm_id);
	assert_int_equal(stat(run_dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 02770);
	assert_int_equal(st.st_gid, 0);
	assert_int_equal(st.st_uid, 65534);
	/* The manager thread ("vm-pool") keeps CHOWN, KILL, SETGID, SETUID. */
	bool found = false;
	DIR *d = opendir("/proc/self/task");
	assert_non_null(d);
	for (struct dirent *de; (de = readdir(d)) && !found;) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", de->d_name);
		_cleanup_free_ char *comm = fs_read_text(path, 64, &e);
		if (!comm || strcmp(comm, "vm-pool\n") != 0)
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/status", de->d_name);
		proc_field(path, "CapEff", v, sizeof(v));
		assert_string_equal(v, "00000000000000e1");
		found = true;
	}
	closedir(d);
	assert_true(found);
	/* Freed: the VMM is gone, and its cgroup with it (the pids one; the
	 * group's path is the same in every hierarchy below ours). */
	char *line = strstr(cg, ":pids:");
	assert_non_null(line);
	line += strlen(":pids:");
	line[strcspn(line, "\n")] = '\0';
	char group[512];
	snprintf(group, sizeof(group), "/sys/fs/cgroup/pids%s", line);
	assert_int_equal(stat(group, &st), 0);
	vm_pool_free(f->pool);
	f->pool = NULL;
	assert_false(alive(pid));
	/* The escaped child was in the VM's cgroup: killed with it (it shares
	 * uid 65534 with every VMM here, so only the cgroup finds it), and
	 * the group could go. */
	assert_true(dead(esc));
	assert_int_equal(stat(group, &st), -1);
	vmm_cgroups_close(g);
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "--fake-guest") == 0)
		return fake_guest(argv[2], argv[3], argv[4]);
	/* Copy this binary where uid 65534 can run it (the build tree may sit
	 * in a directory that user cannot enter). */
	char tmpl[] = "/tmp/hpcc-vmpool-bin-XXXXXX";
	char *bindir = mkdtemp(tmpl);
	assert_non_null(bindir);
	chmod(bindir, 0755);
	snprintf(self_copy, sizeof(self_copy), "%s/fake-guest", bindir);
	struct buf b;
	buf_init(&b, 64 << 20);
	if (fs_read_file("/proc/self/exe", 64 << 20, &b) < 0 ||
	    fs_write_atomic(self_copy, b.data, b.len, 0755, false) < 0)
		return 1;
	buf_free(&b);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_reuse_and_tenants, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tenant_cap_waits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tenant_cap_bounded_wait, setup, teardown),
		cmocka_unit_test_setup_teardown(test_total_cap_retires_idle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_teardown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_retried_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_hello, setup, teardown),
		cmocka_unit_test_setup_teardown(test_image_not_imported, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uid_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_jail, setup, teardown),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);
	testutil_rm_rf(bindir);
	return r;
}
