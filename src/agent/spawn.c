/*
 * A compiler run's processes, from the first to the last. Each live exec
 * owns a compile uid (a slot); its child enters its own session, gets
 * /dev/null as stdin and two pipes as stdout/stderr, chroots into the
 * compilers' root, drops to that uid, moves into <staging>/root/<cwd>,
 * sets resource limits and a lower priority and looks the bare command
 * name up in the pinned PATH. Each step that fails is reported to the
 * agent through a close-on-exec status pipe, so "the agent could not run
 * it" (an error result) stays apart from the command's own exit status.
 * At the end of the run every process of the uid is killed, whatever its
 * session or process group, and the slot is free again only once none is
 * left: nothing a run starts can outlive its exec.
 */
#include "agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Compilers run below the agent's priority: with many runs busy, PID 1
 * must still keep the host stream moving. */
#define CHILD_NICE 10

enum spawn_stage {
	STAGE_SETSID = 1,
	STAGE_STDIO,
	STAGE_CHROOT,
	STAGE_CREDENTIALS,
	STAGE_CHDIR,
	STAGE_RLIMIT,
	STAGE_EXEC,
};

struct spawn_failure {
	int stage;
	int err;
};

struct child_args {
	const char *root, *workdir;
	char **argv, **envp;
	uid_t uid;
	int devnull, out_w, err_w, status_w;
};

/* Resource limits of a compiler run (the timeout bounds CPU time). */
static const struct {
	int resource;
	rlim_t value;
} child_limits[] = {
	{ RLIMIT_CORE, 0 },      /* no core dumps in the staging directory */
	{ RLIMIT_NOFILE, 4096 }, /* gcc, ld and LTO need a few hundred at most */
	{ RLIMIT_NPROC, 1024 },  /* per uid, so per exec: no fork bomb */
};

static int child_status_fd = -1;

static _Noreturn void child_fail(int stage, int err)
{
	struct spawn_failure f = { .stage = stage, .err = err };

	if (write(child_status_fd, &f, sizeof(f)) < 0) {
		/* nothing left to tell anyone */
	}
	_exit(127);
}

static void close_from(int lowest)
{
	if (close_range((unsigned)lowest, ~0u, 0) == 0)
		return;
	for (int fd = lowest; fd < 65536; fd++)
		close(fd);
}

static _Noreturn void child_main(const struct child_args *c)
{
	const char *path = AGENT_PATH;
	sigset_t none;
	int saved = ENOENT;

	child_status_fd = c->status_w;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	umask(022);
	if (setsid() < 0)
		child_fail(STAGE_SETSID, errno);
	/* fds 0-2 are always open in the agent, so every fd below is >= 3. */
	if (dup2(c->devnull, 0) < 0 || dup2(c->out_w, 1) < 0 || dup2(c->err_w, 2) < 0)
		child_fail(STAGE_STDIO, errno);
	if (c->status_w != 3) {
		if (dup3(c->status_w, 3, O_CLOEXEC) < 0)
			child_fail(STAGE_STDIO, errno);
		child_status_fd = 3;
	}
	close_from(4);
	if (chroot(c->root) < 0)
		child_fail(STAGE_CHROOT, errno);
	if (setgroups(0, NULL) < 0 || setgid((gid_t)c->uid) < 0 || setuid(c->uid) < 0)
		child_fail(STAGE_CREDENTIALS, errno);
	if (chdir(c->workdir) < 0)
		child_fail(STAGE_CHDIR, errno);
	for (size_t i = 0; i < ARRAY_SIZE(child_limits); i++) {
		struct rlimit rl = { .rlim_cur = child_limits[i].value, .rlim_max = child_limits[i].value };
		if (setrlimit(child_limits[i].resource, &rl) < 0)
			child_fail(STAGE_RLIMIT, errno);
	}
	if (setpriority(PRIO_PROCESS, 0, CHILD_NICE) < 0)
		child_fail(STAGE_RLIMIT, errno);
	/* execvpe() would search the agent's own PATH; search the pinned one. */
	while (*path) {
		const char *colon = strchr(path, ':');
		size_t n = colon ? (size_t)(colon - path) : strlen(path);
		char file[4096 + 256];

		if (snprintf(file, sizeof(file), "%.*s/%s", (int)n, path, c->argv[0]) < (int)sizeof(file)) {
			execve(file, c->argv, c->envp);
			if (errno != ENOENT && errno != ENOTDIR && errno != EACCES) {
				saved = errno;
				break;
			}
			if (errno == EACCES)
				saved = EACCES;
		}
		path += n + (colon ? 1 : 0);
	}
	child_fail(STAGE_EXEC, saved);
}

int exec_spawn_failure(int status_fd, char *why, size_t why_len)
{
	static const char *const what[] = {
		[STAGE_SETSID] = "start a session",
		[STAGE_STDIO] = "set up stdin, stdout and stderr",
		[STAGE_CHROOT] = "enter the image root",
		[STAGE_CREDENTIALS] = "switch to the compile user",
		[STAGE_CHDIR] = "enter the working directory",
		[STAGE_RLIMIT] = "set resource limits and priority",
		[STAGE_EXEC] = "run the command",
	};
	struct spawn_failure f;
	ssize_t n;

	if (status_fd < 0)
		return 0;
	n = read(status_fd, &f, sizeof(f));
	if (n != (ssize_t)sizeof(f))
		return 0;
	if (f.stage < STAGE_SETSID || f.stage > STAGE_EXEC)
		f.stage = STAGE_EXEC;
	snprintf(why, why_len, "cannot %s: %s", what[f.stage], strerror(f.err));
	return 1;
}

static char *join_env(const char *key, const char *value)
{
	char *s = NULL;
	return asprintf(&s, "%s=%s", key, value) < 0 ? NULL : s;
}

static void free_strv(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -errno : 0;
}

int exec_spawn(struct agent *a, struct exec *e, char *why, size_t why_len)
{
	const Hpcc__V1__ExecHeader *h = e->h;
	struct child_args c = { .root = a->root, .uid = e->uid, .devnull = -1 };
	int outp[2] = { -1, -1 }, errp[2] = { -1, -1 }, stp[2] = { -1, -1 };
	char *workdir = NULL, *tmp = NULL, **envp = NULL;
	bool in_root = h->cwd[0] == '\0' || strcmp(h->cwd, ".") == 0;
	const char *sde = h->n_env ? h->env[0] + strlen("SOURCE_DATE_EPOCH=") : "0";
	int r = -ENOMEM;
	pid_t pid;

	if (asprintf(&workdir, "%s/root%s%s", h->staging, in_root ? "" : "/", in_root ? "" : h->cwd) < 0)
		workdir = NULL;
	if (asprintf(&tmp, "%s/tmp", h->staging) < 0)
		tmp = NULL;
	envp = calloc(8, sizeof(*envp));
	if (!workdir || !tmp || !envp)
		goto out;
	envp[0] = join_env("PATH", AGENT_PATH);
	envp[1] = join_env("LC_ALL", "C");
	envp[2] = join_env("TZ", "UTC");
	envp[3] = join_env("HOME", tmp);
	envp[4] = join_env("TMPDIR", tmp);
	envp[5] = join_env("SOURCE_DATE_EPOCH", sde);
	for (int i = 0; i < 6; i++)
		if (!envp[i])
			goto out;
	/* argv is NULL-terminated: protobuf-c allocates exactly n_argv. */
	c.argv = calloc(h->n_argv + 1, sizeof(*c.argv));
	if (!c.argv)
		goto out;
	memcpy(c.argv, h->argv, h->n_argv * sizeof(*c.argv));
	c.envp = envp;
	c.workdir = workdir;

	if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 || pipe2(stp, O_CLOEXEC) < 0 ||
	    (c.devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0) {
		r = -errno;
		snprintf(why, why_len, "cannot create the pipes of a run: %s", strerror(-r));
		goto out;
	}
	c.out_w = outp[1];
	c.err_w = errp[1];
	c.status_w = stp[1];
	pid = fork();
	if (pid < 0) {
		r = -errno;
		snprintf(why, why_len, "cannot fork: %s", strerror(-r));
		goto out;
	}
	if (pid == 0)
		child_main(&c);

	e->pid = pid;
	e->start_us = agent_now_us();
	e->deadline_us = e->start_us + (int64_t)e->timeout_ms * 1000;
	e->state = EXEC_RUNNING;
	e->procs = PROCS_RAN;
	a->n_running++;
	e->out_fd = TAKE_FD(outp[0]);
	e->err_fd = TAKE_FD(errp[0]);
	e->status_fd = TAKE_FD(stp[0]);
	set_nonblock(e->out_fd);
	set_nonblock(e->err_fd);
	set_nonblock(e->status_fd);
	r = 0;
out:
	if (r == -ENOMEM)
		snprintf(why, why_len, "out of memory");
	for (int i = 0; i < 2; i++) {
		closep(&outp[i]);
		closep(&errp[i]);
		closep(&stp[i]);
	}
	closep(&c.devnull);
	free(c.argv);
	free_strv(envp);
	free(workdir);
	free(tmp);
	return r;
}

int slots_init(struct agent *a)
{
	a->n_slots = a->vcpus * AGENT_LIVE_PER_VCPU;
	a->slots = calloc(a->n_slots, sizeof(*a->slots));
	return a->slots ? 0 : -ENOMEM;
}

/* The lowest free slot: live execs never outnumber the slots, so only
 * stuck slots can make this fail. */
int slot_take(struct agent *a, struct exec *e)
{
	for (unsigned i = 0; i < a->n_slots; i++)
		if (a->slots[i] == SLOT_FREE) {
			a->slots[i] = SLOT_USED;
			e->slot = (int)i;
			e->uid = a->uid_base + i;
			return 0;
		}
	return -EBUSY;
}

void slot_release(struct agent *a, struct exec *e)
{
	if (e->slot < 0)
		return;
	if (e->procs == PROCS_STUCK) {
		a->slots[e->slot] = SLOT_STUCK;
		agent_log("exec %llu: uid %u keeps a process that ignored SIGKILL; it is never used again",
			  (unsigned long long)e->id, (unsigned)e->uid);
	} else
		a->slots[e->slot] = SLOT_FREE;
	e->slot = -1;
}

static void sleep_us(long us)
{
	struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000 };
	nanosleep(&ts, NULL);
}

/* SIGKILLs every process of uid from a helper that runs as uid, so that
 * kill(-1) reaches exactly the processes of that user (an agent that
 * picked pids from /proc could hit a reused pid). kill(-1) holds the task
 * list while it signals, and fork() gives up when a SIGKILL is pending
 * once it holds that list, so no child of a killed process slips through.
 * kill(-1) tells nothing about what is left (it also counts processes it
 * may not signal), which is why uid_alive() checks. 0, or -errno if the
 * helper could not run: a process of uid can SIGKILL the helper too, and
 * the caller tries again. */
static int uid_kill_all(uid_t uid)
{
	int64_t end = agent_now_us() + (int64_t)AGENT_STOP_WAIT_MS * 1000;
	int status = 0;
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		/* Real, effective and saved uid all become uid, and every
		 * capability goes: the helper can signal uid's processes
		 * and nothing else. */
		if (setgroups(0, NULL) < 0 || setgid((gid_t)uid) < 0 || setuid(uid) < 0)
			_exit(2);
		for (int i = 0; i < 3; i++)
			kill(-1, SIGKILL);
		_exit(0);
	}
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			break;
		if (r < 0 && errno != EINTR)
			return -errno;
		if (agent_now_us() > end) {
			kill(pid, SIGKILL);
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
			return -ETIMEDOUT;
		}
		sleep_us(100);
	}
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -ECHILD;
}

/* From /proc/<pid>/status: 1 if the process runs (is not a zombie) with
 * uid as one of its real, effective, saved or file system uids. */
static int proc_runs_as(int proc_fd, const char *pid, uid_t uid)
{
	char path[32], buf[2048], *state, *uids, *threads;
	unsigned long u[4], n_threads = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/status", pid);
	fd = openat(proc_fd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0; /* gone */
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	state = strstr(buf, "\nState:\t");
	uids = strstr(buf, "\nUid:\t");
	threads = strstr(buf, "\nThreads:\t");
	if (!state || !uids || sscanf(uids + 6, "%lu %lu %lu %lu", &u[0], &u[1], &u[2], &u[3]) != 4)
		return 0;
	if (threads)
		sscanf(threads + 10, "%lu", &n_threads);
	/* A zombie is dead (the agent, its parent, reaps it), unless it is
	 * a thread group leader whose other threads still run. */
	if ((state[8] == 'Z' || state[8] == 'X') && n_threads <= 1)
		return 0;
	for (int i = 0; i < 4; i++)
		if (u[i] == uid)
			return 1;
	return 0;
}

/* 1 if a process of uid still runs, 0 if none does, -errno without /proc.
 * A process that exists during the whole scan is seen; after the kill no
 * new one can appear, so a scan that sees none means none is left. */
static int uid_alive(uid_t uid)
{
	int fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *de;
	DIR *d;
	int found = 0;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		int r = -errno;
		close(fd);
		return r;
	}
	while (!found && (de = readdir(d)) != NULL)
		if (de->d_name[0] >= '1' && de->d_name[0] <= '9' && strspn(de->d_name, "0123456789") == strlen(de->d_name))
			found = proc_runs_as(dirfd(d), de->d_name, uid);
	closedir(d);
	return found;
}

int exec_stop_processes(struct exec *e)
{
	int64_t end = agent_now_us() + (int64_t)AGENT_STOP_WAIT_MS * 1000;
	long pause_us = 200;

	if (e->procs != PROCS_RAN)
		return e->procs == PROCS_STUCK ? -ETIMEDOUT : 0;
	for (;;) {
		int killed = uid_kill_all(e->uid);
		int alive = uid_alive(e->uid);

		/* Without /proc (it is always mounted, in the guest as on a
		 * test host) the helper's success has to do. */
		if (alive == 0 || (alive < 0 && killed == 0)) {
			e->procs = PROCS_NONE;
			return 0;
		}
		if (agent_now_us() > end) {
			agent_log("exec %llu: processes of uid %u still run after SIGKILL", (unsigned long long)e->id,
				  (unsigned)e->uid);
			e->procs = PROCS_STUCK;
			return -ETIMEDOUT;
		}
		/* Killed processes need a moment to exit. */
		sleep_us(pause_us);
		if (pause_us < 20000)
			pause_us *= 2;
	}
}
