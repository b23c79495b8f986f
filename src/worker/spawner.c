/*
 * The VMM spawner process and its client (see spawner.h). The spawner is
 * single-threaded: it reads one request, reaps whichever of its children
 * have ended, acts, and answers. Everything a request carries is checked
 * here, against the copy of the configuration taken at fork.
 */
#include "spawner.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fs.h"
#include "log.h"
#include "macro.h"
#include "privilege.h"
#include "vmm.h"

#define SPAWNER_MAGIC 0x68707370u /* "hpsp" */
#define SPAWNER_FD 3

enum { OP_CREATE = 1, OP_SPAWN, OP_STATUS, OP_DESTROY };

struct request {
	uint32_t magic;
	uint32_t op;
	char vm_id[SPAWNER_ID_MAX];
	uint32_t uid;
	uint32_t argc;
	uint32_t args_len; /* bytes after the header: argc NUL-terminated strings */
};

struct reply {
	int32_t error;    /* 0 or a negative errno */
	int32_t pid;
	int32_t exited;
	int32_t status;
	char msg[256];    /* the error, or why a VM runs without its cgroup */
};

/* ---- the spawner process ---- */

struct hvm {
	bool used, spawned, exited, destroyed;
	char id[SPAWNER_ID_MAX];
	uid_t uid;
	int status;
	struct vmm_process proc;
	struct vmm_cgroup cg;
	bool has_cg;
	char *run_dir;
};

struct helper {
	struct spawner_config cfg; /* strings below are the helper's copies */
	struct hvm *vms;
	unsigned n_vms;
};

static bool vm_id_ok(const char *id, size_t field)
{
	size_t n = strnlen(id, field);
	if (n == field || n < 4 || n > 23 || strncmp(id, "vm-", 3) != 0)
		return false;
	return strspn(id + 3, "0123456789") == n - 3;
}

static struct hvm *find_vm(struct helper *h, const char *id)
{
	for (unsigned i = 0; i < h->n_vms; i++)
		if (h->vms[i].used && strcmp(h->vms[i].id, id) == 0)
			return &h->vms[i];
	return NULL;
}

static void forget_vm(struct hvm *vm)
{
	if (vm->proc.pid <= 0)
		vmm_cgroup_remove(&vm->cg);
	if (vm->run_dir)
		vmm_remove_run_dir(vm->run_dir);
	free(vm->run_dir);
	memset(vm, 0, sizeof(*vm));
	for (unsigned i = 0; i < VMM_CGROUP_DIRS; i++)
		vm->cg.procs_fd[i] = -1;
}

/* Reaps every child that has ended; a destroyed VM whose VMM was stuck
 * goes once it is reaped. */
static void reap_all(struct helper *h)
{
	for (unsigned i = 0; i < h->n_vms; i++) {
		struct hvm *vm = &h->vms[i];
		if (!vm->used || !vm->spawned || vm->exited)
			continue;
		int status = 0;
		if (vmm_exited(&vm->proc, &status)) {
			vm->exited = true;
			vm->status = status;
			if (vm->destroyed)
				forget_vm(vm);
		}
	}
}

static int do_create(struct helper *h, const struct request *rq, struct reply *rp)
{
	uid_t uid = rq->uid;
	bool in_range = uid >= h->cfg.vm_uid && uid - h->cfg.vm_uid < h->cfg.n_uids;
	if (uid == 0 || !in_range)
		return -EPERM;
	if (find_vm(h, rq->vm_id))
		return -EEXIST;
	struct hvm *vm = NULL;
	for (unsigned i = 0; i < h->n_vms; i++) {
		if (h->vms[i].used && h->cfg.n_uids > 1 && h->vms[i].uid == uid)
			return -EADDRINUSE; /* two live VMMs never share a uid */
		if (!h->vms[i].used && !vm)
			vm = &h->vms[i];
	}
	if (!vm)
		return -EBUSY;
	char *dir = path_join(h->cfg.run_base, rq->vm_id);
	if (!dir)
		return -ENOMEM;
	/* The VM's uid owns it, the worker's group with the set-group-id bit
	 * (2770): what the VMM creates there (sockets, with umask 007) is the
	 * worker's group's too. No VMM runs with that group. */
	int r = mkdir(dir, 0700) < 0 ? -errno : 0;
	if (r == 0 && (chmod(dir, 02770) < 0 || chown(dir, uid, h->cfg.worker_gid) < 0)) {
		r = -errno;
		(void)rmdir(dir);
	}
	if (r < 0) {
		snprintf(rp->msg, sizeof(rp->msg), "cannot create %.200s: %s", dir, strerror(-r));
		free(dir);
		return r;
	}
	*vm = (struct hvm){ .used = true, .uid = uid, .run_dir = dir };
	snprintf(vm->id, sizeof(vm->id), "%s", rq->vm_id);
	for (unsigned i = 0; i < VMM_CGROUP_DIRS; i++)
		vm->cg.procs_fd[i] = -1;
	if (h->cfg.cgroups) {
		struct error cerr = { 0 };
		r = vmm_cgroup_create(h->cfg.cgroups, vm->id, &h->cfg.limits, &vm->cg, &cerr);
		snprintf(rp->msg, sizeof(rp->msg), "%.250s", r < 0 ? cerr.msg : "");
		if (r < 0 && h->cfg.cgroup_required) {
			forget_vm(vm);
			return r;
		}
		vm->has_cg = r == 0;
	}
	return 0;
}

/* What the worker wrote into the run dir for the VMM (Firecracker's
 * config file, mode 0600) becomes the VM's: plain files with one link
 * only, never following a symlink. */
static void give_files(const struct hvm *vm, gid_t gid)
{
	DIR *d = opendir(vm->run_dir);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		struct stat st;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
		    st.st_nlink == 1 && st.st_uid != vm->uid)
			(void)fchownat(dirfd(d), e->d_name, vm->uid, gid, AT_SYMLINK_NOFOLLOW);
	}
	if (d)
		closedir(d);
}

static int do_spawn(struct helper *h, const struct request *rq, const char *args, struct reply *rp)
{
	struct hvm *vm = find_vm(h, rq->vm_id);
	if (!vm || vm->spawned || vm->destroyed)
		return -ENOENT;
	if (rq->argc < 1 || rq->argc > SPAWNER_ARGS_MAX || rq->args_len == 0 || args[rq->args_len - 1] != '\0')
		return -EINVAL;
	_cleanup_strv_ struct strv argv = { 0 };
	size_t off = 0;
	for (uint32_t i = 0; i < rq->argc; i++) {
		if (off >= rq->args_len)
			return -EINVAL;
		size_t n = strlen(args + off);
		if (strv_push(&argv, args + off) < 0)
			return -ENOMEM;
		off += n + 1;
	}
	if (off != rq->args_len || strcmp(argv.v[0], h->cfg.binary) != 0)
		return -EINVAL;
	struct vmm_jail jail = {
		.uid = vm->uid,
		.gid = h->cfg.vm_gid,
		.cgroup = vm->has_cg ? &vm->cg : NULL,
		.seccomp = h->cfg.seccomp,
		.allow_vsock = h->cfg.allow_vsock,
	};
	give_files(vm, h->cfg.worker_gid);
	struct error err = { 0 };
	int r = vmm_spawn_jailed(&argv, vm->run_dir, &jail, &vm->proc, &err);
	vmm_cgroup_close_fds(&vm->cg);
	if (r < 0) {
		vmm_cgroup_remove(&vm->cg);
		vm->has_cg = false;
		snprintf(rp->msg, sizeof(rp->msg), "%.250s", err.msg);
		return r;
	}
	vm->spawned = true;
	rp->pid = vm->proc.pid;
	/* The worker reads the console's tail when a VM fails. */
	_cleanup_free_ char *console = path_join(vm->run_dir, "console.log");
	if (console)
		(void)fchmodat(AT_FDCWD, console, 0640, 0);
	return 0;
}

static int handle(struct helper *h, const char *buf, ssize_t len, bool truncated, struct reply *rp)
{
	struct request rq;
	if (truncated)
		return -EMSGSIZE;
	if (len < (ssize_t)sizeof(rq))
		return -EINVAL;
	memcpy(&rq, buf, sizeof(rq));
	if (rq.magic != SPAWNER_MAGIC || !vm_id_ok(rq.vm_id, sizeof(rq.vm_id)) ||
	    rq.args_len != (size_t)len - sizeof(rq) || (rq.op != OP_SPAWN && (rq.argc || rq.args_len)))
		return -EINVAL;
	reap_all(h);
	struct hvm *vm;
	switch (rq.op) {
	case OP_CREATE:
		return do_create(h, &rq, rp);
	case OP_SPAWN:
		return do_spawn(h, &rq, buf + sizeof(rq), rp);
	case OP_STATUS:
		vm = find_vm(h, rq.vm_id);
		rp->exited = !vm || !vm->spawned || vm->exited || vm->destroyed;
		rp->status = vm ? vm->status : 0;
		return 0;
	case OP_DESTROY:
		/* rp->status 0: nothing of the VM runs any more, its uid may
		 * go to another VM; 1: something survived SIGKILL. */
		vm = find_vm(h, rq.vm_id);
		if (!vm || vm->destroyed)
			return 0;
		vm->destroyed = true;
		if (vm->spawned && !vm->exited)
			vmm_kill(&vm->proc);
		/* What the VMM forked and moved out of its process group: in
		 * its cgroup, and of its uid when VMs have one each. */
		bool clean = vm->proc.pid <= 0;
		if (vm->has_cg && vmm_cgroup_kill_all(&vm->cg) < 0)
			clean = false;
		if (vm->spawned && h->cfg.n_uids > 1 && !vmm_kill_uid(vm->uid))
			clean = false;
		rp->status = clean ? 0 : 1;
		if (vm->proc.pid > 0)
			return 0; /* stuck: reaped (and forgotten) later */
		forget_vm(vm);
		return 0;
	default:
		return -EINVAL;
	}
}

static _Noreturn void helper_main(struct helper *h)
{
	static char buf[SPAWNER_MSG_MAX];
	/* Leftover run dirs of a previous worker (its VMMs died with it). */
	DIR *d = opendir(h->cfg.run_base);
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (vm_id_ok(e->d_name, strlen(e->d_name) + 1)) {
			_cleanup_free_ char *sub = path_join(h->cfg.run_base, e->d_name);
			if (sub)
				vmm_remove_run_dir(sub);
		}
	if (d)
		closedir(d);
	for (;;) {
		struct iovec iov = { buf, sizeof(buf) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n = recvmsg(SPAWNER_FD, &mh, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		struct reply rp;
		memset(&rp, 0, sizeof(rp));
		rp.error = handle(h, buf, n, (mh.msg_flags & MSG_TRUNC) != 0, &rp);
		if (rp.error < 0 && !rp.msg[0])
			snprintf(rp.msg, sizeof(rp.msg), "the VMM spawner refused the request: %s", strerror(-rp.error));
		if (send(SPAWNER_FD, &rp, sizeof(rp), MSG_NOSIGNAL) < 0)
			break;
	}
	/* The worker is gone or stopping: so are its VMs. */
	for (unsigned i = 0; i < h->n_vms; i++)
		if (h->vms[i].used) {
			vmm_kill(&h->vms[i].proc);
			forget_vm(&h->vms[i]);
		}
	vmm_cgroups_close(h->cfg.cgroups);
	_exit(0);
}

/* In the child: the descriptors, the death signal, the privileges. */
static void helper_setup(int sock, const struct spawner_config *cfg, pid_t parent)
{
	(void)prctl(PR_SET_NAME, "vmm-spawner", 0, 0, 0);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* A Ctrl-C to the process group is the worker's to handle: the
	 * spawner goes when the worker closes the socket (or dies). The VMMs
	 * get default dispositions back (vmm.c). */
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	/* 0, 1: /dev/null; 2: the worker's log (or /dev/null); 3: the socket. */
	if (null_fd < 0 || dup2(sock, 1000) < 0 || log_move_fd(1001) < 0 ||
	    dup2(null_fd, 0) < 0 || dup2(null_fd, 1) < 0 || dup2(null_fd, 2) < 0 ||
	    log_move_fd(2) < 0 || dup2(1000, SPAWNER_FD) < 0)
		_exit(1);
	if (syscall(SYS_close_range, SPAWNER_FD + 1, ~0u, 0) < 0)
		for (int fd = SPAWNER_FD + 1; fd < 1024; fd++)
			(void)close(fd);
	/* Its only group besides root's: the worker's, the run dirs' group. */
	gid_t groups[1] = { cfg->worker_gid };
	struct error err = { 0 };
	if (setgroups(1, groups) < 0 || privilege_drop(privilege_microvm_caps(), &err) < 0) {
		log_error("vmm-spawner: %s", err.code ? err.msg : strerror(errno));
		_exit(1);
	}
	/* Last: a change of credentials may clear it. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != parent)
		_exit(1);
}

static char *dup_str(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* ---- the client ---- */

struct spawner {
	int fd;
	pid_t pid;
	pthread_mutex_t lock; /* one request at a time */
};

int spawner_start(const struct spawner_config *cfg, struct spawner **ret, struct error *err)
{
	if (!cfg->binary || !cfg->run_base || cfg->vm_uid == 0 || cfg->n_uids == 0 || cfg->max_vms == 0 ||
	    cfg->vm_gid == cfg->worker_gid)
		return error_set(err, -EINVAL, "the VMM spawner: incomplete configuration (the VM user's group must "
				 "not be the worker user's)");
	struct spawner *s = calloc(1, sizeof(*s));
	if (!s)
		return error_set(err, -ENOMEM, "out of memory");
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		free(s);
		return error_set(err, -errno, "the VMM spawner: socketpair: %s", strerror(errno));
	}
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(sv[0]);
		close(sv[1]);
		free(s);
		return error_set(err, -e, "the VMM spawner: fork: %s", strerror(e));
	}
	if (pid == 0) {
		close(sv[0]);
		helper_setup(sv[1], cfg, parent);
		static struct helper h;
		h.cfg = *cfg;
		h.cfg.binary = dup_str(cfg->binary);
		h.cfg.run_base = dup_str(cfg->run_base);
		h.n_vms = 2 * cfg->max_vms + 2;
		h.vms = calloc(h.n_vms, sizeof(*h.vms));
		if (!h.cfg.binary || !h.cfg.run_base || !h.vms)
			_exit(1);
		for (unsigned i = 0; i < h.n_vms; i++)
			for (unsigned j = 0; j < VMM_CGROUP_DIRS; j++)
				h.vms[i].cg.procs_fd[j] = -1;
		helper_main(&h);
	}
	close(sv[1]);
	s->fd = sv[0];
	s->pid = pid;
	pthread_mutex_init(&s->lock, NULL);
	*ret = s;
	return 0;
}

pid_t spawner_pid(const struct spawner *s)
{
	return s ? s->pid : 0;
}

void spawner_stop(struct spawner *s)
{
	if (!s)
		return;
	close(s->fd);
	int status;
	while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR)
		;
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* One request, one reply. */
static int call(struct spawner *s, const void *msg, size_t len, struct reply *rp, struct error *err)
{
	memset(rp, 0, sizeof(*rp));
	pthread_mutex_lock(&s->lock);
	ssize_t n = send(s->fd, msg, len, MSG_NOSIGNAL);
	if (n == (ssize_t)len)
		while ((n = recv(s->fd, rp, sizeof(*rp), 0)) < 0 && errno == EINTR)
			;
	int e = errno;
	pthread_mutex_unlock(&s->lock);
	if (n != (ssize_t)sizeof(*rp))
		return error_set(err, n < 0 ? -e : -EPIPE, "the VMM spawner does not answer: %s",
				 n < 0 ? strerror(e) : "it exited");
	rp->msg[sizeof(rp->msg) - 1] = '\0';
	if (rp->error < 0)
		return error_set(err, rp->error, "%s", rp->msg);
	return 0;
}

static int simple(struct spawner *s, uint32_t op, const char *vm_id, uid_t uid, struct reply *rp, struct error *err)
{
	struct request rq = { .magic = SPAWNER_MAGIC, .op = op, .uid = uid };
	if (strlen(vm_id) >= sizeof(rq.vm_id))
		return error_set(err, -EINVAL, "a VM id too long");
	snprintf(rq.vm_id, sizeof(rq.vm_id), "%s", vm_id);
	return call(s, &rq, sizeof(rq), rp, err);
}

int spawner_create(struct spawner *s, const char *vm_id, uid_t uid, char cgroup_msg[256], struct error *err)
{
	struct reply rp;
	int r = simple(s, OP_CREATE, vm_id, uid, &rp, err);
	if (r == 0 && cgroup_msg)
		snprintf(cgroup_msg, 256, "%s", rp.msg);
	return r;
}

int spawner_spawn(struct spawner *s, const char *vm_id, const struct strv *argv, pid_t *ret_pid, struct error *err)
{
	struct request rq = { .magic = SPAWNER_MAGIC, .op = OP_SPAWN, .argc = (uint32_t)argv->n };
	if (strlen(vm_id) >= sizeof(rq.vm_id) || argv->n > SPAWNER_ARGS_MAX)
		return error_set(err, -E2BIG, "the VMM's command line is over the spawner's limits");
	snprintf(rq.vm_id, sizeof(rq.vm_id), "%s", vm_id);
	_cleanup_free_ char *msg = malloc(SPAWNER_MSG_MAX);
	if (!msg)
		return error_set(err, -ENOMEM, "out of memory");
	size_t len = sizeof(rq);
	for (size_t i = 0; i < argv->n; i++) {
		size_t n = strlen(argv->v[i]) + 1;
		if (len + n > SPAWNER_MSG_MAX)
			return error_set(err, -E2BIG, "the VMM's command line is over %d bytes", SPAWNER_MSG_MAX);
		memcpy(msg + len, argv->v[i], n);
		len += n;
	}
	rq.args_len = (uint32_t)(len - sizeof(rq));
	memcpy(msg, &rq, sizeof(rq));
	struct reply rp;
	int r = call(s, msg, len, &rp, err);
	if (r == 0)
		*ret_pid = rp.pid;
	return r;
}

bool spawner_exited(struct spawner *s, const char *vm_id, int *ret_status)
{
	struct reply rp;
	struct error err = { 0 };
	if (simple(s, OP_STATUS, vm_id, 0, &rp, &err) < 0)
		return true; /* no spawner: no VMM either (it died with it) */
	if (rp.exited && ret_status)
		*ret_status = rp.status;
	return rp.exited != 0;
}

bool spawner_destroy(struct spawner *s, const char *vm_id)
{
	struct reply rp = { 0 };
	struct error err = { 0 };
	if (simple(s, OP_DESTROY, vm_id, 0, &rp, &err) < 0) {
		log_warn("%s: %s", vm_id, err.msg);
		return false;
	}
	if (rp.status != 0)
		log_error("%s: processes of its VMM survived SIGKILL; its uid is not given to another VM", vm_id);
	return rp.status == 0;
}

int spawner_raw(struct spawner *s, const void *msg, size_t len, struct error *err)
{
	struct reply rp;
	return call(s, msg, len, &rp, err);
}
