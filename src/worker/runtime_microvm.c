/*
 * The "microvm" runtime: every compile runs in a microVM of the VM pool,
 * pinned to the requesting tenant and image (DESIGN §6). The worker has
 * already staged the inputs in its own staging directory and checked the
 * command; this runtime ships the staged inputs to the guest's agent, waits
 * for the result, and writes the files the guest sent back into the same
 * staging directory, so the rest of the worker reads outputs exactly as
 * after a local run. The guest sees the same absolute staging path as the
 * host, so a prefix map built from staging_root() means the same inside.
 *
 * open() picks the accelerator: KVM where it can run guests; TCG (software
 * emulation, ~30x slower) only when worker.ini sets allow_tcg. The audit
 * row's vm column names the VM and the accelerator that ran each exec.
 */
#include "runtime.h"
#include "privilege.h"
#include "runtime_microvm.h"
#include "spawner.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fs.h"
#include "log.h"
#include "macro.h"
#include "vm_pool.h"
#include "vmm.h"
#include "vmm_jail.h"
#include "worker_config.h"

#define MICROVM_MAX_INPUTS 65536   /* the agent's own limit */
#define MICROVM_STAGING_MAX 256     /* the agent's limit on the staging path */

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

struct microvm {
	struct vm_pool *pool;
	struct vmm_cgroups *cgroups;
	struct spawner *spawner; /* split (spawner.h); it owns the cgroups then */
};

/* Where the cgroup hierarchies are mounted; tests point it elsewhere
 * (HPCC_TEST_CGROUP_ROOT) to see a host without usable cgroups. */
static const char *cgroup_root(void)
{
	const char *test = getenv("HPCC_TEST_CGROUP_ROOT");
	return test && test[0] == '/' ? test : "/sys/fs/cgroup";
}

/* The worker's cgroup for its VMs ([microvm] cgroup): NULL when off, or
 * when unavailable under auto (one warning); an error under required. */
static int open_cgroups(const struct worker_config *w, struct vmm_cgroups **ret, struct error *err)
{
	*ret = NULL;
	if (w->vm_cgroup == WORKER_CGROUP_OFF) {
		log_info("microvm: [microvm] cgroup = off: VMMs run without memory, pids and CPU limits");
		return 0;
	}
	char name[32];
	snprintf(name, sizeof(name), "hpcc-%d", (int)getpid());
	struct error cerr = { 0 };
	int r = geteuid() == 0 ? vmm_cgroups_open(cgroup_root(), name, ret, &cerr)
			       : error_set(&cerr, -EPERM, "the worker does not run as root");
	if (r == 0)
		return 0;
	if (w->vm_cgroup == WORKER_CGROUP_REQUIRED)
		return error_set(err, r, "[microvm] cgroup = required, but no cgroup can be made for VMMs: %s", cerr.msg);
	log_warn("microvm: VMMs run without a cgroup (no memory, pids and CPU limits): %s", cerr.msg);
	return 0;
}

static int mv_open(const struct runtime_config *cfg, void **ret_state, struct error *err);

/* The runtime as runtime_microvm_prepare opened it, until the worker's
 * open takes it (a worker has one runtime). */
static void *prepared_state;
static bool prepared;

int runtime_microvm_prepare(const struct worker_config *w, struct error *err)
{
	if (strcmp(w->runtime, "microvm") != 0 || prepared)
		return 0;
	struct runtime_config rc = { .worker = w, .allow_unsafe_local = w->allow_unsafe_local,
				     .search_path = w->search_path, .max_parallel = w->max_parallel };
	int r = mv_open(&rc, &prepared_state, err);
	/* Only now: mv_open must not take a state that is not there yet. */
	prepared = r == 0;
	return r;
}

/* Checks, as the VM user, that the VMM will be able to open what it needs:
 * a worker directory that the user cannot traverse otherwise only shows up
 * as a boot failure with a message in a console log. */
static int check_access_as(uid_t uid, gid_t gid, const char *const *paths, const int *modes, size_t n,
			   struct error *err)
{
	if (geteuid() != 0)
		return 0;
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return error_set(err, -errno, "pipe: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0) {
		close(pipefd[0]);
		close(pipefd[1]);
		return error_set(err, -errno, "fork: %s", strerror(errno));
	}
	if (pid == 0) {
		unsigned char bad = 0xfd; /* could not become the user */
		if (setgroups(0, NULL) == 0 && setgid(gid) == 0 && setuid(uid) == 0) {
			bad = 0xff;
			for (size_t i = 0; i < n; i++)
				if (access(paths[i], modes[i]) < 0) {
					bad = (unsigned char)i;
					break;
				}
		}
		if (write(pipefd[1], &bad, 1) != 1)
			_exit(2);
		_exit(0);
	}
	close(pipefd[1]);
	unsigned char bad = 0xfe;
	ssize_t got;
	while ((got = read(pipefd[0], &bad, 1)) < 0 && errno == EINTR)
		;
	close(pipefd[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (got != 1 || bad == 0xfe || bad == 0xfd)
		return error_set(err, -EIO, "could not check file access as the VM user (uid %u)", (unsigned)uid);
	if (bad != 0xff)
		return error_set(err, -EACCES, "the VM user (uid %u) cannot %s %s: make it and its parent directories "
				 "reachable (see docs/microvm.md)", (unsigned)uid,
				 modes[bad] & W_OK ? "open read-write" : modes[bad] & X_OK ? "enter or run" : "read",
				 paths[bad]);
	return 0;
}

static int mv_open(const struct runtime_config *cfg, void **ret_state, struct error *err)
{
	if (prepared) {
		/* Opened by runtime_microvm_prepare, with this worker.ini. */
		*ret_state = TAKE_PTR(prepared_state);
		prepared = false;
		return 0;
	}
	const struct worker_config *w = cfg->worker;
	if (!w || !w->kernel || !w->initrd)
		return error_set(err, -EINVAL, "the microvm runtime needs [microvm] kernel and initrd");
	const struct vmm_ops *vmm = vmm_find(w->vmm);
	if (!vmm)
		return error_set(err, -EINVAL, "unknown VMM \"%s\"", w->vmm);
	const char *accel = NULL;
	int r = vmm_pick_accel(w->accel, w->allow_tcg, &accel, err);
	if (r < 0)
		return r;
	uid_t uid = getuid();
	gid_t gid = getgid();
	/* Started as root (this process may become [worker] user below). */
	bool root = geteuid() == 0;
	if (root) {
		struct passwd pw, *found = NULL;
		char pwbuf[4096];
		if (getpwnam_r(w->vm_user, &pw, pwbuf, sizeof(pwbuf), &found) != 0 || !found)
			return error_set(err, -ENOENT, "[microvm] user \"%s\" does not exist", w->vm_user);
		if (pw.pw_uid == 0)
			return error_set(err, -EPERM, "[microvm] user \"%s\" is root: VMMs run unprivileged", w->vm_user);
		uid = pw.pw_uid;
		gid = pw.pw_gid;
		if (w->vm_uid_base > 0) {
			/* Checked with the range's first uid and the user's
			 * group, which every VM of the range keeps. */
			uid = (uid_t)w->vm_uid_base;
		}
	}
	_cleanup_free_ char *run_base = path_join(w->dir, "vms");
	_cleanup_free_ char *staging = path_join(w->dir, "staging/exec-XXXXXX/root");
	if (!run_base || !staging)
		return error_set(err, -ENOMEM, "out of memory");
	/* The guest rebuilds the host's staging path and accepts only short,
	 * plain ones: refuse here rather than fail every exec. */
	if (strlen(staging) > MICROVM_STAGING_MAX ||
	    strspn(staging, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-/") != strlen(staging))
		return error_set(err, -EINVAL, "the worker directory %s is too long or has characters other than "
				 "letters, digits, '.', '_', '-' for the microVM runtime", w->dir);
	if ((r = fs_mkdir_p(run_base, 0711)) < 0)
		return error_set(err, r, "cannot create %s: %s", run_base, strerror(-r));
	/* With KVM, the VMM opens /dev/kvm as that user too (through its
	 * primary group: supplementary groups are dropped at spawn). */
	bool kvm = strcmp(accel, "kvm") == 0;
	const char *paths[] = { w->vmm_binary, w->kernel, w->initrd, w->images_dir, run_base, "/dev/kvm" };
	const int modes[] = { X_OK, R_OK, R_OK, X_OK, X_OK, R_OK | W_OK };
	if ((r = check_access_as(uid, gid, paths, modes, ARRAY_SIZE(paths) - (kvm ? 0 : 1), err)) < 0)
		return r;
	struct vmm_cgroups *cgroups = NULL;
	if ((r = open_cgroups(w, &cgroups, err)) < 0)
		return r;
	struct vmm_cgroup_limits limits = {
		.memory_bytes = w->vm_cgroup_memory ? w->vm_cgroup_memory :
			((uint64_t)w->memory_mib + WORKER_VMM_OVERHEAD_MIB) << 20,
		.pids_max = w->vm_cgroup_pids,
		.cpu_percent = 100 * (w->vm_cgroup_cpus ? w->vm_cgroup_cpus : w->vcpus),
	};
	/* Split by process (spawner.h) when root has a [worker] user to
	 * become: the spawner is forked now, with one thread, then this
	 * process becomes that user before the pool's thread starts. */
	uid_t worker_uid = 0;
	gid_t worker_gid = 0;
	struct spawner *spawner = NULL;
	bool had_cgroups = cgroups != NULL;
	if ((r = privilege_worker_user(w, &worker_uid, &worker_gid, err)) < 0) {
		vmm_cgroups_close(cgroups);
		return r;
	}
	if (r > 0) {
		struct spawner_config sc = {
			.binary = w->vmm_binary,
			.run_base = run_base,
			.vm_uid = w->vm_uid_base > 0 ? (uid_t)w->vm_uid_base : uid,
			.n_uids = w->vm_uid_base > 0 ? 2 * w->max_vms : 1,
			.vm_gid = gid,
			.worker_gid = worker_gid,
			.max_vms = w->max_vms,
			.cgroups = cgroups,
			.limits = limits,
			.cgroup_required = w->vm_cgroup == WORKER_CGROUP_REQUIRED,
			.seccomp = w->vm_seccomp,
			.allow_vsock = strcmp(vmm->name, "firecracker") == 0,
		};
		if ((r = spawner_start(&sc, &spawner, err)) < 0) {
			vmm_cgroups_close(cgroups);
			return r;
		}
		cgroups = NULL; /* the spawner's now */
		if ((r = privilege_become_worker(w, err)) < 0) {
			spawner_stop(spawner);
			return r;
		}
		log_info("microvm: split by process: the VMM spawner (pid %d) keeps SETUID, SETGID, KILL, CHOWN; this "
			 "process runs as %s", (int)spawner_pid(spawner), w->worker_user);
	}
	struct vm_pool_config pc = {
		.cgroups = cgroups,
		.limits = limits,
		.cgroup_required = w->vm_cgroup == WORKER_CGROUP_REQUIRED,
		.seccomp = w->vm_seccomp,
		/* Only the pool's manager thread keeps capabilities (and only
		 * when the worker runs as root: a user has none to drop). */
		.manager_caps_set = root && !spawner,
		.spawner = spawner,
		.manager_caps = privilege_microvm_caps(),
		.vmm = vmm,
		.binary = w->vmm_binary,
		.kernel = w->kernel,
		.initrd = w->initrd,
		.accel = accel,
		.sandbox = w->sandbox,
		.uid = uid,
		.gid = gid,
		.uid_base = root ? (uid_t)w->vm_uid_base : 0,
		.vcpus = w->vcpus,
		.memory_mib = w->memory_mib,
		.max_vms = w->max_vms,
		.max_vms_per_tenant = w->max_vms_per_tenant,
		.idle_timeout_s = w->vm_idle_timeout,
		.max_age_s = w->vm_max_age,
		.boot_timeout_s = w->boot_timeout,
		.tenant_wait_ms = w->vm_wait * 1000,
		.run_base = run_base,
		.images_dir = w->images_dir,
	};
	struct microvm *m = calloc(1, sizeof(*m));
	if (!m) {
		vmm_cgroups_close(cgroups);
		spawner_stop(spawner);
		return error_set(err, -ENOMEM, "out of memory");
	}
	m->cgroups = cgroups;
	m->spawner = spawner;
	if ((r = vm_pool_new(&pc, &m->pool, err)) < 0) {
		vmm_cgroups_close(cgroups);
		spawner_stop(spawner);
		free(m);
		return r;
	}
	if (had_cgroups)
		log_info("microvm: each VMM runs in its own cgroup%s%s%s: memory %llu MiB, pids %u, CPU %u%%",
			 cgroups ? " (" : "", cgroups ? vmm_cgroups_version(cgroups) : "", cgroups ? ")" : "", (unsigned long long)(limits.memory_bytes >> 20), limits.pids_max,
			 limits.cpu_percent);
	if (!w->vm_seccomp)
		log_warn("microvm: [microvm] seccomp = false: VMMs run without hpcc's seccomp filter");
	if (strcmp(accel, "tcg") == 0)
		log_warn("microvm: running guests under TCG software emulation (allow_tcg = true): about 30x slower "
			 "than KVM; for tests and demos only");
	if (w->vm_uid_base > 0 && root)
		log_info("microvm: %s with %s, %u vCPUs and %u MiB per VM, at most %u VMs (%u per tenant), VM n runs as "
			 "uid %u+n", vmm->name, accel, w->vcpus, w->memory_mib, w->max_vms, w->max_vms_per_tenant,
			 w->vm_uid_base);
	else
		log_info("microvm: %s with %s, %u vCPUs and %u MiB per VM, at most %u VMs (%u per tenant), VMs run as "
			 "uid %u", vmm->name, accel, w->vcpus, w->memory_mib, w->max_vms, w->max_vms_per_tenant,
			 (unsigned)uid);
	*ret_state = m;
	return 0;
}

/* Writes one file the guest sent back into the host's staging directory. */
static int write_back(struct staging *s, const struct agent_output_file *f, struct error *err)
{
	if (strncmp(f->path, "root/", 5) == 0)
		return staging_write_file(s, f->path + 5, f->data.data, f->data.len, false, err);
	if (strncmp(f->path, "tmp/", 4) == 0)
		return staging_write_tmp(s, f->path + 4, f->data.data, f->data.len, err);
	return error_set(err, -EPROTO, "an output outside root/ and tmp/");
}

static int copy_capped(struct buf *dst, const struct buf *src, size_t max, bool *truncated)
{
	size_t n = src->len;
	if (n > max) {
		n = max;
		*truncated = true;
	}
	buf_init(dst, max ? max : 1);
	return n ? buf_append(dst, src->data, n) : 0;
}

static int mv_exec(void *state, const struct runtime_exec *x, struct runtime_result *ret, struct error *err)
{
	struct microvm *m = state;
	int r = runtime_check_exec(x, err);
	if (r < 0)
		return r;
	if (!x->tenant || !x->image || x->n_inputs > MICROVM_MAX_INPUTS)
		return error_set(err, -EINVAL, "a microVM exec needs a tenant, an image and at most %d inputs",
				 MICROVM_MAX_INPUTS);
	size_t n_outputs = 0;
	while (x->outputs && x->outputs[n_outputs])
		n_outputs++;
	/* The staged inputs go to the guest as they are in staging. */
	struct buf *data = calloc(x->n_inputs ? x->n_inputs : 1, sizeof(*data));
	struct agent_input *in = calloc(x->n_inputs ? x->n_inputs : 1, sizeof(*in));
	char **paths = calloc(x->n_inputs ? x->n_inputs : 1, sizeof(*paths));
	if (!data || !in || !paths)
		r = error_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; r == 0 && i < x->n_inputs; i++) {
		buf_init(&data[i], SIZE_MAX / 2);
		if ((r = staging_read_file(x->staging, x->inputs[i].path, SIZE_MAX / 2, &data[i], err)) < 0)
			break;
		if (asprintf(&paths[i], "root/%s", x->inputs[i].path) < 0) {
			paths[i] = NULL;
			r = error_set(err, -ENOMEM, "out of memory");
			break;
		}
		in[i] = (struct agent_input){ .path = paths[i], .data = data[i].data, .size = data[i].len,
					      .executable = x->inputs[i].executable };
	}
	struct agent_exec_reply reply = { 0 };
	char vm[VM_NAME_MAX] = "";
	if (r == 0) {
		struct agent_exec_request rq = {
			.argv = x->argv,
			.env = x->env,
			.staging = staging_dir(x->staging),
			.cwd = x->cwd ? x->cwd : "",
			.timeout_ms = (unsigned)x->timeout_ms,
			.max_output = x->max_stdout + x->max_stderr + n_outputs * x->max_output_file,
			.outputs = x->outputs,
			.inputs = in,
			.n_inputs = x->n_inputs,
		};
		int64_t t0 = now_us();
		r = vm_pool_exec(m->pool, x->tenant, x->image, &rq, &reply, vm, err);
		/* What the VM costs on top of the compiler itself: staging in the
		 * guest, the stream both ways, and (when cold) the boot. */
		if (r == 0)
			log_info("%s: exec took %lld us, the compiler %lld us in the guest, overhead %lld us", vm,
				 (long long)(now_us() - t0), (long long)reply.duration_us,
				 (long long)(now_us() - t0 - reply.duration_us));
	}
	for (size_t i = 0; data && i < x->n_inputs; i++)
		buf_free(&data[i]);
	for (size_t i = 0; paths && i < x->n_inputs; i++)
		free(paths[i]);
	free(data);
	free(in);
	free(paths);
	if (r < 0)
		return r;
	if (reply.error) {
		r = error_set(err, -ENOEXEC, "%s could not run the command: %.300s", vm, reply.error);
		agent_exec_reply_free(&reply);
		return r;
	}
	struct runtime_result res = { .exit_code = reply.exit_code, .timed_out = reply.timed_out,
				      .duration_us = reply.duration_us };
	/* Outputs over the guest's budget were not sent: not a result to keep. */
	res.stderr_truncated = reply.output_truncated;
	if (copy_capped(&res.out, &reply.out, x->max_stdout, &res.stdout_truncated) < 0 ||
	    copy_capped(&res.err, &reply.err, x->max_stderr, &res.stderr_truncated) < 0)
		r = error_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; r == 0 && i < reply.n_files; i++) {
		if (reply.files[i].data.len > x->max_output_file)
			r = error_set(err, -EFBIG, "%s: output %s over the size cap", vm, reply.files[i].path);
		else
			r = write_back(x->staging, &reply.files[i], err);
	}
	snprintf(res.vm, sizeof(res.vm), "%s", vm);
	agent_exec_reply_free(&reply);
	if (r < 0) {
		runtime_result_free(&res);
		return r;
	}
	*ret = res;
	return 0;
}

static void mv_close(void *state)
{
	struct microvm *m = state;
	if (!m)
		return;
	vm_pool_free(m->pool);
	spawner_stop(m->spawner);
	vmm_cgroups_close(m->cgroups);
	free(m);
}

static void mv_interrupt(void *state)
{
	struct microvm *m = state;
	if (m)
		vm_pool_interrupt(m->pool);
}

static void mv_list_vms(void *state, void (*fn)(const char *tenant, const char *image, void *userdata), void *userdata)
{
	struct microvm *m = state;
	if (m)
		vm_pool_list_active(m->pool, fn, userdata);
}

const struct runtime_ops runtime_microvm = {
	.name = "microvm",
	.open = mv_open,
	.exec = mv_exec,
	.close = mv_close,
	.interrupt = mv_interrupt,
	.list_vms = mv_list_vms,
};
