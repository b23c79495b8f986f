/*
 * The microVM pool (see vm_pool.h). One mutex guards the VM list; a VM is
 * BOOTING (its VMM spawned or about to be, slots reserved by the execs that
 * wait for it), READY (agent said hello) or DEAD (to be torn down). The
 * manager thread spawns VMMs on request (so that their parent-death signal
 * is tied to a thread that lives as long as the pool), retires idle and old
 * VMs, notices VMMs that died, and tears DEAD VMs down once no exec uses
 * them. Teardown (SIGKILL + reap, close the stream, remove the run dir)
 * happens outside the lock.
 */
#include "vm_pool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fs.h"
#include "image_store.h"
#include "log.h"
#include "macro.h"
#include "privilege.h"
#include "spawner.h"

#define VM_ID_MAX 32
#define CONSOLE_TAIL 600

enum vm_state { VM_BOOTING, VM_READY, VM_DEAD };

struct vm {
	char id[VM_ID_MAX];
	char *tenant, *image;
	char *rootfs;        /* the image's squashfs */
	int slot;            /* uid slot (uid_base + slot), -1 without a uid range */
	uid_t uid;
	gid_t gid;
	char *run_dir;
	struct vmm_process proc;
	struct vmm_cgroup cgroup; /* n == 0: none */
	struct agent_conn *conn;
	enum vm_state state;
	unsigned slots;      /* execs at once once ready */
	unsigned active;     /* execs running or waiting for this VM */
	bool spawn_requested, spawn_done;
	bool show_console;   /* log the console's tail at teardown (a failure) */
	bool exit_logged;    /* how the VMM ended is in the log already */
	int spawn_error;
	char spawn_msg[256];
	int64_t created_ms, last_used_ms;
	struct vm *next;
};

struct vm_pool {
	struct vm_pool_config cfg;
	char *binary, *kernel, *initrd, *accel, *run_base, *images_dir; /* owned copies */
	pthread_mutex_t lock;
	pthread_cond_t cond;         /* VM state changes, slots freed, spawn results */
	pthread_cond_t manager_cond; /* spawn requests, shutdown */
	pthread_t manager;
	bool manager_started, stopping;
	bool exiting;                /* vm_pool_free: the manager tears everything down and returns */
	struct vm *vms;
	unsigned long next_id;
	bool *slot_used;             /* 2 x max_vms entries, with a uid range */
	bool cgroup_warned;          /* a VM ran without its cgroup (logged once) */
	bool drop_reported;          /* the manager has reduced its privileges (or failed to) */
	int drop_result;
	struct error drop_error;
	struct vm_pool_stats stats;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void deadline_ts(int64_t ms, struct timespec *ts)
{
	ts->tv_sec = ms / 1000;
	ts->tv_nsec = (ms % 1000) * 1000000;
}

/* The last bytes of a VM's console, for the log when it failed. */
static void log_console_tail(const struct vm *vm)
{
	/* The run dir belongs to the VMM's user: the file may be anything
	 * (a FIFO would block a plain open). Called without the pool lock. */
	_cleanup_free_ char *path = path_join(vm->run_dir, "console.log");
	_cleanup_close_ int fd = path ? open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) : -1;
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return;
	char tail[CONSOLE_TAIL + 1];
	off_t off = st.st_size > CONSOLE_TAIL ? st.st_size - CONSOLE_TAIL : 0;
	ssize_t n = pread(fd, tail, CONSOLE_TAIL, off);
	if (n <= 0)
		return;
	tail[n] = '\0';
	for (ssize_t i = 0; i < n; i++)
		if (tail[i] == '\n' || tail[i] == '\r')
			tail[i] = '|';
	log_warn("%s console (last %zd bytes): %s", vm->id, n, tail);
}

/* Tears one VM down. True when nothing of it runs any more: its uid slot
 * may then go to another VM. A process the VMM forked that left its
 * process group (setsid) survives vmm_kill: it is found by the VM's
 * cgroup, and by its uid when the VM has one of its own (with a spawner,
 * the spawner does all of this). */
static bool vm_destroy(struct vm_pool *p, struct vm *vm)
{
	agent_conn_close(vm->conn);
	if (p->cfg.spawner) {
		/* Kill, reap, cgroup and run dir: the spawner's. */
		bool clean = !vm->run_dir || spawner_destroy(p->cfg.spawner, vm->id);
		free(vm->tenant);
		free(vm->image);
		free(vm->rootfs);
		free(vm->run_dir);
		free(vm);
		return clean;
	}
	vmm_kill(&vm->proc);
	bool clean = vm->proc.pid <= 0;
	if (vmm_cgroup_kill_all(&vm->cgroup) < 0)
		clean = false;
	if (vm->slot >= 0 && geteuid() == 0 && !vmm_kill_uid(vm->uid))
		clean = false;
	/* Only once the VMM is reaped: a group with a task cannot go. */
	if (vm->proc.pid <= 0)
		vmm_cgroup_remove(&vm->cgroup);
	if (!clean)
		log_error("%s: processes of its VMM (uid %u) survived SIGKILL; its uid is not given to another VM",
			  vm->id, (unsigned)vm->uid);
	if (vm->run_dir)
		vmm_remove_run_dir(vm->run_dir);
	free(vm->tenant);
	free(vm->image);
	free(vm->rootfs);
	free(vm->run_dir);
	free(vm);
	return clean;
}

/* Moves every DEAD VM that no exec uses off the list into *ret. */
static void collect_dead_locked(struct vm_pool *p, struct vm **ret)
{
	for (struct vm **pp = &p->vms; *pp;) {
		struct vm *vm = *pp;
		if (vm->state == VM_DEAD && vm->active == 0 && (!vm->spawn_requested || vm->spawn_done)) {
			*pp = vm->next;
			vm->next = *ret;
			*ret = vm;
		} else
			pp = &vm->next;
	}
}

/* Tears the VMs down, then gives their uid slots back. Called without
 * the lock. */
static void destroy_list(struct vm_pool *p, struct vm *list)
{
	while (list) {
		struct vm *next = list->next;
		int slot = list->slot;
		if (list->show_console)
			log_console_tail(list);
		log_info("%s: torn down (tenant %s)", list->id, list->tenant);
		if (vm_destroy(p, list) && slot >= 0) {
			pthread_mutex_lock(&p->lock);
			p->slot_used[slot] = false;
			pthread_mutex_unlock(&p->lock);
		}
		list = next;
	}
}

/* How a VMM ended, in one line; a seccomp kill is named as such: the VMM
 * tried a syscall that no VMM needs (a compromised VMM, or a new VMM
 * version that needs the filter revisited). */
static void log_vmm_exit(const struct vm *vm, int status)
{
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS)
		log_warn("%s: the VMM was killed by its seccomp filter (SIGSYS: a forbidden syscall)", vm->id);
	else if (WIFSIGNALED(status))
		log_warn("%s: the VMM was killed by signal %d", vm->id, WTERMSIG(status));
	else
		log_warn("%s: the VMM exited (status %d)", vm->id, WEXITSTATUS(status));
}

static void kill_vm_locked(struct vm_pool *p, struct vm *vm, const char *why)
{
	if (vm->state == VM_DEAD)
		return;
	if (why)
		log_info("%s: %s", vm->id, why);
	vm->state = VM_DEAD;
	if (vm->conn)
		agent_conn_shutdown(vm->conn);
	pthread_cond_broadcast(&p->cond);
	pthread_cond_signal(&p->manager_cond);
}

/* Spawns vm's VMM in its cgroup (when the pool has cgroups) and under the
 * seccomp filter. Called by the manager thread with the lock held. */
/* The run dir, made by the manager thread because it alone keeps
 * CAP_CHOWN. As root: the VM's uid owns it, group root with the
 * set-group-id bit (2770), so that what the VMM creates there (its
 * sockets) is group root's too: the worker's other threads, without
 * CAP_DAC_OVERRIDE, enter, connect and clean up through the group. No VMM
 * runs with gid 0, so no other VMM gets in. chmod first: it needs to own
 * the directory. Split (spawner.h), the spawner makes it, with the worker
 * user's group instead of root, and the VM's cgroup with it. */
static int make_run_dir(struct vm_pool *p, struct vm *vm, struct error *err)
{
	if (p->cfg.spawner) {
		char msg[256] = "";
		int r = spawner_create(p->cfg.spawner, vm->id, vm->uid, msg, err);
		if (r == 0 && msg[0]) {
			p->stats.cgroup_failures++;
			if (!p->cgroup_warned)
				log_warn("%s: runs without a cgroup: %s", vm->id, msg);
			p->cgroup_warned = true;
		}
		return r;
	}
	int r = mkdir(vm->run_dir, 0700) < 0 ? -errno : 0;
	if (r == 0 && geteuid() == 0 && (chmod(vm->run_dir, 02770) < 0 || chown(vm->run_dir, vm->uid, 0) < 0))
		r = -errno;
	if (r < 0)
		return error_set(err, r, "cannot create %s: %s", vm->run_dir, strerror(-r));
	return 0;
}

static int spawn_jailed(struct vm_pool *p, struct vm *vm, const struct strv *argv, struct error *err)
{
	int r;
	if (p->cfg.spawner)
		return spawner_spawn(p->cfg.spawner, vm->id, argv, &vm->proc.pid, err);
	struct vmm_jail jail = {
		.uid = vm->uid,
		.gid = vm->gid,
		.seccomp = p->cfg.seccomp,
		/* Firecracker's guest channel is vsock; QEMU's is a Unix socket. */
		.allow_vsock = strcmp(p->cfg.vmm->name, "firecracker") == 0,
	};
	if (p->cfg.cgroups) {
		struct error cerr = { 0 };
		r = vmm_cgroup_create(p->cfg.cgroups, vm->id, &p->cfg.limits, &vm->cgroup, &cerr);
		if (r < 0 && p->cfg.cgroup_required)
			return error_set(err, r, "%s (cgroup = required)", cerr.msg);
		if (r < 0) {
			p->stats.cgroup_failures++;
			if (!p->cgroup_warned)
				log_warn("%s: runs without a cgroup: %s", vm->id, cerr.msg);
			p->cgroup_warned = true;
		} else
			jail.cgroup = &vm->cgroup;
	}
	r = vmm_spawn_jailed(argv, vm->run_dir, &jail, &vm->proc, err);
	vmm_cgroup_close_fds(&vm->cgroup);
	if (r < 0)
		vmm_cgroup_remove(&vm->cgroup);
	return r;
}

static void *manager_main(void *arg)
{
	struct vm_pool *p = arg;
	/* This thread spawns, signals and reaps the VMMs: it keeps what that
	 * takes, every other thread of the worker keeps nothing (privilege.h). */
	if (p->cfg.manager_caps_set) {
		/* vm_pool_new waits for this: a manager that kept every
		 * capability must not serve (nor share memory with the
		 * client-facing threads). */
		struct error e = { 0 };
		int r = privilege_drop(p->cfg.manager_caps, &e);
		pthread_mutex_lock(&p->lock);
		p->drop_result = r;
		p->drop_error = e;
		p->drop_reported = true;
		pthread_cond_broadcast(&p->cond);
		pthread_mutex_unlock(&p->lock);
		if (r < 0)
			return NULL;
	}
	pthread_mutex_lock(&p->lock);
	while (!p->exiting) {
		struct timespec ts;
		deadline_ts(now_ms() + 1000, &ts);
		pthread_cond_timedwait(&p->manager_cond, &p->lock, &ts);
		int64_t now = now_ms();
		for (struct vm *vm = p->vms; vm; vm = vm->next) {
			if (vm->spawn_requested && !vm->spawn_done && p->stopping) {
				vm->spawn_done = true;
				vm->spawn_error = -ESHUTDOWN;
				snprintf(vm->spawn_msg, sizeof(vm->spawn_msg), "the worker is stopping");
				pthread_cond_broadcast(&p->cond);
				continue;
			}
			if (vm->spawn_requested && !vm->spawn_done) {
				/* vmm_spawn only forks and execs: quick enough to
				 * hold the lock, and nothing else may spawn. */
				struct error err = { 0 };
				_cleanup_strv_ struct strv argv = { 0 };
				struct vmm_config vc = {
					.binary = p->binary, .kernel = p->kernel, .initrd = p->initrd, .rootfs = vm->rootfs,
					.run_dir = vm->run_dir, .accel = p->accel, .vcpus = p->cfg.vcpus,
					.memory_mib = p->cfg.memory_mib, .vm_id = vm->id, .sandbox = p->cfg.sandbox,
				};
				int r = vmm_config_check(&vc, p->cfg.vmm, &err);
				if (r == 0)
					r = make_run_dir(p, vm, &err);
				if (r == 0)
					r = p->cfg.vmm->build(&vc, &argv, &err);
				if (r == 0)
					r = spawn_jailed(p, vm, &argv, &err);
				vm->spawn_done = true;
				vm->spawn_error = r;
				snprintf(vm->spawn_msg, sizeof(vm->spawn_msg), "%.200s", r < 0 ? err.msg : "");
				pthread_cond_broadcast(&p->cond);
				continue;
			}
			if (vm->state == VM_DEAD)
				continue;
			int status = 0;
			bool ended = p->cfg.spawner ? vm->proc.pid > 0 && spawner_exited(p->cfg.spawner, vm->id, &status)
						    : vm->proc.pid > 0 && vmm_exited(&vm->proc, &status);
			if (ended) {
				vm->proc.pid = 0;
				p->stats.broken++;
				if (!vm->exit_logged)
					log_vmm_exit(vm, status);
				vm->exit_logged = true;
				vm->show_console = true;
				kill_vm_locked(p, vm, NULL);
				continue;
			}
			if (vm->state == VM_READY && vm->active == 0) {
				if (now - vm->last_used_ms >= (int64_t)p->cfg.idle_timeout_s * 1000) {
					p->stats.retired_idle++;
					kill_vm_locked(p, vm, "idle: tearing it down");
				} else if (now - vm->created_ms >= (int64_t)p->cfg.max_age_s * 1000)
					kill_vm_locked(p, vm, "reached its maximum age: tearing it down");
			}
		}
		struct vm *dead = NULL;
		collect_dead_locked(p, &dead);
		if (dead) {
			pthread_mutex_unlock(&p->lock);
			destroy_list(p, dead);
			pthread_mutex_lock(&p->lock);
			/* Room under the caps for whoever waits. */
			pthread_cond_broadcast(&p->cond);
		}
	}
	/* vm_pool_free: no exec runs any more (the worker stopped its server
	 * first). The VMs go here, in the thread that may signal their VMMs. */
	struct vm *all = p->vms;
	p->vms = NULL;
	pthread_mutex_unlock(&p->lock);
	destroy_list(p, all);
	return NULL;
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

int vm_pool_new(const struct vm_pool_config *cfg, struct vm_pool **ret, struct error *err)
{
	if (!cfg->vmm || !cfg->binary || !cfg->kernel || !cfg->initrd || !cfg->accel || !cfg->run_base ||
	    !cfg->images_dir || cfg->max_vms < 1 || cfg->max_vms_per_tenant < 1 || cfg->vcpus < 1 ||
	    cfg->boot_timeout_s < 1)
		return error_set(err, -EINVAL, "incomplete VM pool configuration");
	int r = fs_mkdir_p(cfg->run_base, 0711);
	if (r < 0)
		return error_set(err, r, "cannot create %s: %s", cfg->run_base, strerror(-r));
	/* Leftover run dirs of a previous worker (its VMMs died with it);
	 * split, the spawner removes them when it starts. */
	DIR *d = cfg->spawner ? NULL : opendir(cfg->run_base);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)))
			if (strncmp(e->d_name, "vm-", 3) == 0) {
				_cleanup_free_ char *sub = path_join(cfg->run_base, e->d_name);
				if (sub)
					vmm_remove_run_dir(sub);
			}
		closedir(d);
	}
	struct vm_pool *p = calloc(1, sizeof(*p));
	if (!p)
		return error_set(err, -ENOMEM, "out of memory");
	p->cfg = *cfg;
	p->binary = dup_or_null(cfg->binary);
	p->kernel = dup_or_null(cfg->kernel);
	p->initrd = dup_or_null(cfg->initrd);
	p->accel = dup_or_null(cfg->accel);
	p->run_base = dup_or_null(cfg->run_base);
	p->images_dir = dup_or_null(cfg->images_dir);
	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cond, &ca);
	pthread_cond_init(&p->manager_cond, &ca);
	pthread_condattr_destroy(&ca);
	if (cfg->uid_base > 0)
		p->slot_used = calloc(2 * (size_t)cfg->max_vms, sizeof(*p->slot_used));
	if (!p->binary || !p->kernel || !p->initrd || !p->accel || !p->run_base || !p->images_dir ||
	    (cfg->uid_base > 0 && !p->slot_used)) {
		vm_pool_free(p);
		return error_set(err, -ENOMEM, "out of memory");
	}
	/* The manager takes no signal (SIGTERM is the worker's signal
	 * thread's), whatever the creating thread's mask: it may be started
	 * before `hpcc worker` blocks them (runtime_microvm_prepare). */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&p->manager, NULL, manager_main, p);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		vm_pool_free(p);
		return error_set(err, -r, "starting the VM pool thread: %s", strerror(r));
	}
	p->manager_started = true;
	(void)pthread_setname_np(p->manager, "vm-pool");
	if (cfg->manager_caps_set) {
		pthread_mutex_lock(&p->lock);
		while (!p->drop_reported)
			pthread_cond_wait(&p->cond, &p->lock);
		r = p->drop_result;
		pthread_mutex_unlock(&p->lock);
		if (r < 0) {
			(void)error_set(err, r, "VM pool: %s", p->drop_error.msg);
			vm_pool_free(p);
			return r;
		}
	}
	*ret = p;
	return 0;
}

static unsigned count_tenant_locked(struct vm_pool *p, const char *tenant, unsigned *ret_total)
{
	unsigned n = 0, total = 0;
	for (struct vm *vm = p->vms; vm; vm = vm->next) {
		total++;
		if (strcmp(vm->tenant, tenant) == 0)
			n++;
	}
	*ret_total = total;
	return n;
}

/* A VM with a free slot for (tenant, image): ready, or booting with room in
 * what it will offer. */
static struct vm *find_slot_locked(struct vm_pool *p, const char *tenant, const char *image)
{
	for (struct vm *vm = p->vms; vm; vm = vm->next) {
		if (vm->state == VM_DEAD || strcmp(vm->tenant, tenant) != 0 || strcmp(vm->image, image) != 0)
			continue;
		unsigned room = vm->state == VM_READY ? vm->slots : p->cfg.vcpus;
		if (vm->active < room)
			return vm;
	}
	return NULL;
}

static struct vm *new_vm_locked(struct vm_pool *p, const char *tenant, const char *image, const char *rootfs,
				struct error *err)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	if (!vm) {
		error_set(err, -ENOMEM, "out of memory");
		return NULL;
	}
	snprintf(vm->id, sizeof(vm->id), "vm-%06lu", ++p->next_id);
	vm->slot = -1;
	for (unsigned i = 0; i < VMM_CGROUP_DIRS; i++)
		vm->cgroup.procs_fd[i] = -1;
	vm->uid = p->cfg.uid;
	vm->gid = p->cfg.gid;
	if (p->slot_used) {
		/* A slot frees only once its VMM is reaped (destroy_list), so
		 * two live VMMs never share a uid. Twice max_vms slots: VMs on
		 * their way out still hold theirs. */
		for (unsigned i = 0; i < 2 * p->cfg.max_vms && vm->slot < 0; i++)
			if (!p->slot_used[i]) {
				p->slot_used[i] = true;
				vm->slot = (int)i;
			}
		if (vm->slot < 0) {
			free(vm);
			error_set(err, -EBUSY, "no free VM uid");
			return NULL;
		}
		vm->uid = p->cfg.uid_base + (uid_t)vm->slot;
		/* The group stays the user's primary group (say "kvm", for /dev/kvm):
		 * isolation between VMMs comes from the uid, and run dirs are 0700. */
		vm->gid = p->cfg.gid;
	}
	vm->tenant = strdup(tenant);
	vm->image = strdup(image);
	vm->rootfs = strdup(rootfs);
	vm->run_dir = path_join(p->run_base, vm->id);
	vm->state = VM_BOOTING;
	vm->created_ms = vm->last_used_ms = now_ms();
	if (!vm->tenant || !vm->image || !vm->rootfs || !vm->run_dir) {
		if (vm->slot >= 0)
			p->slot_used[vm->slot] = false;
		free(vm->tenant);
		free(vm->image);
		free(vm->rootfs);
		free(vm->run_dir);
		free(vm);
		error_set(err, -ENOMEM, "out of memory");
		return NULL;
	}
	vm->next = p->vms;
	p->vms = vm;
	return vm;
}

/* Boots vm (BOOTING, one slot reserved by the caller): run dir, spawn by
 * the manager thread, connect, hello. Called without the lock. */
static int boot_vm(struct vm_pool *p, struct vm *vm, struct error *err)
{
	int64_t start = now_ms();
	int r;
	pthread_mutex_lock(&p->lock);
	vm->spawn_requested = true;
	pthread_cond_signal(&p->manager_cond);
	while (!vm->spawn_done && !p->stopping)
		pthread_cond_wait(&p->cond, &p->lock);
	r = !vm->spawn_done ? -ESHUTDOWN : vm->spawn_error;
	if (r < 0)
		error_set(err, r, "starting the VMM: %s", vm->spawn_done ? vm->spawn_msg : "the worker is stopping");
	pthread_mutex_unlock(&p->lock);
	if (r < 0)
		return r;
	struct vmm_config vc = { .run_dir = vm->run_dir, .vm_id = vm->id };
	int64_t deadline = start + (int64_t)p->cfg.boot_timeout_s * 1000;
	int fd = -1;
	for (;;) {
		struct error cerr = { 0 };
		r = p->cfg.vmm->connect(&vc, (int)(deadline - now_ms() > 0 ? deadline - now_ms() : 1), &fd, &cerr);
		if (r == 0)
			break;
		/* The manager thread reaps VMMs too: look under the lock. */
		/* Only a look: reaping (and killing what the VMM left in its
		 * group) is the manager's, the thread with CAP_KILL. */
		int status = 0;
		pthread_mutex_lock(&p->lock);
		bool gone = vm->state == VM_DEAD ||
			    (p->cfg.spawner ? spawner_exited(p->cfg.spawner, vm->id, &status)
					    : vmm_peek_exited(&vm->proc, &status));
		if (gone && vm->state != VM_DEAD && vm->proc.pid > 0 && !vm->exit_logged) {
			log_vmm_exit(vm, status);
			vm->exit_logged = true;
		}
		pthread_mutex_unlock(&p->lock);
		if (r != -EAGAIN || now_ms() >= deadline || gone)
			return error_set(err, r == -EAGAIN ? -ETIMEDOUT : r, "connecting to the VM: %s",
					 cerr.code ? cerr.msg : "the VMM did not open its socket");
		usleep(10000);
	}
	/* All VMMs run as one user: the socket must be this VM's own VMM's,
	 * not one that another (compromised) VMM bound in its place. */
	struct ucred peer;
	socklen_t peer_len = sizeof(peer);
	pthread_mutex_lock(&p->lock);
	pid_t pid = vm->proc.pid;
	pthread_mutex_unlock(&p->lock);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &peer_len) < 0 || peer.pid != pid) {
		close(fd);
		return error_set(err, -EPERM, "the agent socket belongs to process %d, not to this VM's VMM (%d)",
				 (int)peer.pid, (int)pid);
	}
	struct agent_hello_info hello;
	struct agent_conn *conn = NULL;
	int left = (int)(deadline - now_ms());
	if ((r = agent_conn_open(fd, left > 0 ? left : 1, &conn, &hello, err)) < 0)
		return r;
	pthread_mutex_lock(&p->lock);
	if (vm->state == VM_DEAD) {
		/* Killed while booting (its VMM died, or the worker stops). */
		pthread_mutex_unlock(&p->lock);
		agent_conn_close(conn);
		return error_set(err, -ECONNRESET, "the VM died while booting");
	}
	vm->conn = conn;
	vm->slots = hello.vcpus < p->cfg.vcpus ? hello.vcpus : p->cfg.vcpus;
	vm->state = VM_READY;
	vm->last_used_ms = now_ms();
	p->stats.boots++;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	log_info("%s: ready for tenant %s in %lld ms (agent %s, %u vCPUs, %s)", vm->id, vm->tenant,
		 (long long)(now_ms() - start), hello.version, hello.vcpus, p->accel);
	return 0;
}

/* Finds or starts a VM for (tenant, image) and reserves one slot in it. */
static int acquire(struct vm_pool *p, const char *tenant, const char *image, const char *rootfs, int64_t deadline,
		   struct vm **ret, struct error *err)
{
	int64_t tenant_deadline = p->cfg.tenant_wait_ms ? now_ms() + p->cfg.tenant_wait_ms : deadline;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		if (p->stopping) {
			pthread_mutex_unlock(&p->lock);
			return error_set(err, -ESHUTDOWN, "the worker is stopping");
		}
		struct vm *vm = find_slot_locked(p, tenant, image);
		if (vm) {
			vm->active++;
			while (vm->state == VM_BOOTING)
				pthread_cond_wait(&p->cond, &p->lock);
			if (vm->state == VM_READY) {
				pthread_mutex_unlock(&p->lock);
				*ret = vm;
				return 0;
			}
			/* It died while booting: look again. */
			vm->active--;
			pthread_cond_signal(&p->manager_cond);
			continue;
		}
		unsigned total = 0, mine = count_tenant_locked(p, tenant, &total);
		if (mine < p->cfg.max_vms_per_tenant && total >= p->cfg.max_vms) {
			/* Room for this tenant, none in total: retire an idle VM of
			 * another pair. */
			for (struct vm *v = p->vms; v; v = v->next)
				if (v->state == VM_READY && v->active == 0) {
					kill_vm_locked(p, v, "idle, retired to make room");
					break;
				}
		}
		if (mine < p->cfg.max_vms_per_tenant && total < p->cfg.max_vms) {
			vm = new_vm_locked(p, tenant, image, rootfs, err);
			if (!vm) {
				pthread_mutex_unlock(&p->lock);
				return err->code;
			}
			vm->active = 1;
			pthread_mutex_unlock(&p->lock);
			int r = boot_vm(p, vm, err);
			pthread_mutex_lock(&p->lock);
			if (r < 0) {
				p->stats.boot_failures++;
				log_warn("%s: boot failed: %s", vm->id, err->msg);
				vm->show_console = true;
				vm->active--;
				kill_vm_locked(p, vm, NULL);
				pthread_mutex_unlock(&p->lock);
				return r;
			}
			pthread_mutex_unlock(&p->lock);
			*ret = vm;
			return 0;
		}
		/* At the tenant's own cap, the wait is bounded by vm_wait: then
		 * the client is told to come back (and compiles locally). */
		bool capped = mine >= p->cfg.max_vms_per_tenant;
		int64_t until = capped && tenant_deadline < deadline ? tenant_deadline : deadline;
		struct timespec ts;
		deadline_ts(until, &ts);
		if (pthread_cond_timedwait(&p->cond, &p->lock, &ts) == ETIMEDOUT) {
			pthread_mutex_unlock(&p->lock);
			if (until < deadline)
				return error_set(err, -EDQUOT, "tenant %s: VM quota %u VMs per tenant reached, all busy for "
						 "%u s; retry in a few seconds", tenant, p->cfg.max_vms_per_tenant,
						 p->cfg.tenant_wait_ms / 1000);
			return error_set(err, -EBUSY, "no VM slot for tenant %s within the exec's timeout", tenant);
		}
	}
}

static void release(struct vm_pool *p, struct vm *vm, bool broken, const char *why)
{
	pthread_mutex_lock(&p->lock);
	vm->active--;
	vm->last_used_ms = now_ms();
	if (broken) {
		p->stats.broken++;
		log_warn("%s: %s; tearing it down", vm->id, why);
		kill_vm_locked(p, vm, NULL);
	}
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

int vm_pool_exec(struct vm_pool *p, const char *tenant, const char *image, const struct agent_exec_request *rq,
		 struct agent_exec_reply *ret, char vm_name[VM_NAME_MAX], struct error *err)
{
	_cleanup_free_ char *rootfs = NULL;
	int r = image_store_path(p->images_dir, image, &rootfs, err);
	if (r < 0)
		return r;
	int64_t deadline = now_ms() + rq->timeout_ms;
	for (int attempt = 0; attempt < 2; attempt++) {
		struct error e = { 0 };
		struct vm *vm = NULL;
		if (attempt > 0) {
			pthread_mutex_lock(&p->lock);
			p->stats.retries++;
			pthread_mutex_unlock(&p->lock);
		}
		r = acquire(p, tenant, image, rootfs, deadline, &vm, &e);
		if (r == 0) {
			r = agent_conn_exec(vm->conn, rq, ret, &e);
			if (r == 0)
				snprintf(vm_name, VM_NAME_MAX, "%s@%s-%s", vm->id, p->cfg.vmm->name, p->accel);
			release(p, vm, r < 0 && r != -EINVAL, e.msg);
		}
		if (r == 0)
			return 0;
		*err = e;
		if (r == -EINVAL || r == -EBUSY || r == -EDQUOT || r == -ESHUTDOWN)
			break;
		if (attempt == 0)
			log_warn("exec for tenant %s failed (%s); retrying once on a fresh VM", tenant, e.msg);
	}
	return r;
}

void vm_pool_get_stats(struct vm_pool *p, struct vm_pool_stats *ret)
{
	pthread_mutex_lock(&p->lock);
	struct vm_pool_stats s = p->stats;
	s.vms = s.ready = s.booting = s.busy_slots = 0;
	for (struct vm *vm = p->vms; vm; vm = vm->next) {
		s.vms++;
		s.ready += vm->state == VM_READY;
		s.booting += vm->state == VM_BOOTING;
		s.busy_slots += vm->active;
	}
	pthread_mutex_unlock(&p->lock);
	*ret = s;
}

void vm_pool_list_active(struct vm_pool *p, void (*fn)(const char *tenant, const char *image, void *userdata),
			 void *userdata)
{
	pthread_mutex_lock(&p->lock);
	for (struct vm *vm = p->vms; vm; vm = vm->next)
		if (vm->state != VM_DEAD)
			fn(vm->tenant, vm->image, userdata);
	pthread_mutex_unlock(&p->lock);
}

void vm_pool_interrupt(struct vm_pool *p)
{
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	for (struct vm *vm = p->vms; vm; vm = vm->next)
		kill_vm_locked(p, vm, NULL);
	pthread_cond_broadcast(&p->cond);
	pthread_cond_broadcast(&p->manager_cond);
	pthread_mutex_unlock(&p->lock);
}

void vm_pool_free(struct vm_pool *p)
{
	if (!p)
		return;
	vm_pool_interrupt(p);
	pthread_mutex_lock(&p->lock);
	p->exiting = true;
	pthread_cond_broadcast(&p->manager_cond);
	pthread_mutex_unlock(&p->lock);
	if (p->manager_started)
		pthread_join(p->manager, NULL);
	/* Whatever the manager did not tear down (it never started). */
	struct vm *list = p->vms;
	p->vms = NULL;
	destroy_list(p, list);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	pthread_cond_destroy(&p->manager_cond);
	free(p->slot_used);
	free(p->binary);
	free(p->kernel);
	free(p->initrd);
	free(p->accel);
	free(p->run_base);
	free(p->images_dir);
	free(p);
}
