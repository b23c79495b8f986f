/*
 * The "unsafe-local" runtime: runs the host's compiler directly in the
 * staging root. It isolates nothing (the compiler reads whatever the worker's
 * user can read, so a hostile source can #include a host file), which is why
 * open() refuses unless worker.ini enables it explicitly; it exists for
 * trusted setups and for tests. What it does guarantee: only compiler names
 * from a fixed grammar run, looked up in absolute directories only; the
 * environment is exactly the one built here; output capture, CPU time, file
 * size and wall time are bounded; everything the compiler starts is killed
 * and reaped before exec() returns; at most max_parallel compiles run at once.
 *
 * Children are started with fork+execve rather than posix_spawn because the
 * rlimits must be in place before the compiler runs, and posix_spawn cannot
 * set them; between fork and execve the child calls only async-signal-safe
 * functions on data prepared by the parent, as the worker is multi-threaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fs.h"
#include "log.h"
#include "macro.h"
#include "proc.h"
#include "runtime.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#define UNSAFE_LOCAL_MAX_PARALLEL 1024
#define UNSAFE_LOCAL_MAX_EXTRA_ENV 4
/* How long the output pipes are still drained after a timeout kill, for
 * whatever the group wrote before it died. */
#define KILL_GRACE_US (1000 * 1000)
/* Without a pidfd, how often the child's state is polled. */
#define EXIT_POLL_MS 10

struct unsafe_local {
	char *search_path;
	char *path_env; /* "PATH=<search_path>" */
	int max_parallel;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* on CLOCK_MONOTONIC, for deadlines */
	int running;
};

/* Everything the child needs, prepared by the parent so that the child
 * allocates nothing between fork and execve. */
struct child_setup {
	const char *path;
	char *const *argv;
	char *const *envp;
	int stdin_fd, stdout_fd, stderr_fd, cwd_fd, status_fd; /* all >= 3 */
	struct rlimit cpu, fsize, core;
	pid_t parent;
};

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void ul_close(void *state)
{
	struct unsafe_local *u = state;
	if (!u)
		return;
	pthread_cond_destroy(&u->cond);
	pthread_mutex_destroy(&u->lock);
	free(u->search_path);
	free(u->path_env);
	free(u);
}

static int ul_open(const struct runtime_config *cfg, void **ret_state, struct error *err)
{
	if (!cfg || !cfg->allow_unsafe_local)
		return error_set(err, -EPERM, "the unsafe-local runtime runs compilers on the host without isolation; "
				 "set allow_unsafe_local = true in worker.ini to use it");
	const char *search_path = cfg->search_path ? cfg->search_path : RUNTIME_DEFAULT_SEARCH_PATH;
	if (!runtime_search_path_ok(search_path))
		return error_set(err, -EINVAL, "the compiler search path \"%.200s\" must list absolute, normalised "
				 "directories", search_path);
	int max_parallel = cfg->max_parallel;
	if (max_parallel < 0 || max_parallel > UNSAFE_LOCAL_MAX_PARALLEL)
		return error_set(err, -EINVAL, "max_parallel %d is out of range (0..%d)", max_parallel,
				 UNSAFE_LOCAL_MAX_PARALLEL);
	if (max_parallel == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		max_parallel = n > 0 && n <= UNSAFE_LOCAL_MAX_PARALLEL ? (int)n : 1;
	}

	struct unsafe_local *u = calloc(1, sizeof(*u));
	if (!u)
		return error_set(err, -ENOMEM, "out of memory");
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&u->cond, &attr);
	pthread_condattr_destroy(&attr);
	pthread_mutex_init(&u->lock, NULL);
	u->max_parallel = max_parallel;
	u->search_path = strdup(search_path);
	if (!u->search_path || asprintf(&u->path_env, "PATH=%s", search_path) < 0) {
		u->path_env = NULL;
		ul_close(u);
		return error_set(err, -ENOMEM, "out of memory");
	}
	log_warn("runtime unsafe-local: compilers run on this host without isolation");
	*ret_state = u;
	return 0;
}

/* Waits for one of the max_parallel slots until deadline_us (monotonic). */
static int slot_acquire(struct unsafe_local *u, int64_t deadline_us)
{
	struct timespec ts = { .tv_sec = deadline_us / 1000000, .tv_nsec = (deadline_us % 1000000) * 1000 };
	int r = 0;
	pthread_mutex_lock(&u->lock);
	while (u->running >= u->max_parallel) {
		if (pthread_cond_timedwait(&u->cond, &u->lock, &ts) == ETIMEDOUT && u->running >= u->max_parallel) {
			r = -ETIMEDOUT;
			break;
		}
	}
	if (r == 0)
		u->running++;
	pthread_mutex_unlock(&u->lock);
	return r;
}

static void slot_release(struct unsafe_local *u)
{
	pthread_mutex_lock(&u->lock);
	u->running--;
	pthread_cond_signal(&u->cond);
	pthread_mutex_unlock(&u->lock);
}

/* Finds name in the search path: the first regular, executable file. */
static int find_compiler(const char *search_path, const char *name, char **ret_path)
{
	for (const char *p = search_path;;) {
		const char *colon = strchr(p, ':');
		int n = (int)(colon ? (size_t)(colon - p) : strlen(p));
		char *path = NULL;
		if (asprintf(&path, "%.*s/%s", n, p, name) < 0)
			return -ENOMEM;
		struct stat st;
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && faccessat(AT_FDCWD, path, X_OK, AT_EACCESS) == 0) {
			*ret_path = path;
			return 0;
		}
		free(path);
		if (!colon)
			return -ENOENT;
		p = colon + 1;
	}
}

/* The limit wanted, lowered to what this process may grant (an unprivileged
 * worker cannot raise a hard limit). */
static struct rlimit clamp_limit(int resource, rlim_t want)
{
	struct rlimit cur, r = { want, want };
	if (getrlimit(resource, &cur) == 0 && cur.rlim_max != RLIM_INFINITY && cur.rlim_max < want)
		r.rlim_cur = r.rlim_max = cur.rlim_max;
	return r;
}


static int pipe_above_stdio(int p[2])
{
	if (pipe2(p, O_CLOEXEC) < 0)
		return negative_errno();
	p[0] = fd_above_stdio(p[0]);
	p[1] = fd_above_stdio(p[1]);
	if (p[0] < 0 || p[1] < 0) {
		int r = negative_errno();
		if (p[0] >= 0)
			close(p[0]);
		if (p[1] >= 0)
			close(p[1]);
		return r;
	}
	return 0;
}

/* Runs in the child between fork and execve: async-signal-safe calls only. */
static _Noreturn void child_run(const struct child_setup *c)
{
	/* A group of its own, so that a timeout kills the driver and all it
	 * started (cc1, as, ld) with one kill. */
	if (setpgid(0, 0) < 0)
		goto fail;
	/* If the worker dies, the compile must not outlive it. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != c->parent)
		goto fail;
	/* Ignored signals (the worker ignores SIGPIPE) and the blocked mask
	 * survive execve: give the compiler the defaults. */
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	for (int sig = 1; sig < NSIG; sig++)
		(void)sigaction(sig, &dfl, NULL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (dup2(c->stdin_fd, 0) < 0 || dup2(c->stdout_fd, 1) < 0 || dup2(c->stderr_fd, 2) < 0)
		goto fail;
	if (fchdir(c->cwd_fd) < 0)
		goto fail;
	umask(022);
	if (setrlimit(RLIMIT_CPU, &c->cpu) < 0 || setrlimit(RLIMIT_FSIZE, &c->fsize) < 0 ||
	    setrlimit(RLIMIT_CORE, &c->core) < 0)
		goto fail;
	/* Our fds are O_CLOEXEC; this also covers any that another part of the
	 * process opened without it. Best effort: older kernels lack the flag. */
	(void)close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
	execve(c->path, c->argv, c->envp);
fail:;
	int e = errno;
	(void)!write(c->status_fd, &e, sizeof(e));
	_exit(127);
}

/* Reads what is ready on *fd into b, keeping at most cap bytes; closes *fd
 * at end of stream. */
static void drain(int *fd, struct buf *b, size_t cap, bool *truncated)
{
	char tmp[65536];
	ssize_t n = read(*fd, tmp, sizeof(tmp));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		close(*fd);
		*fd = -1;
		return;
	}
	size_t room = cap > b->len ? cap - b->len : 0;
	size_t keep = (size_t)n < room ? (size_t)n : room;
	if (keep > 0 && buf_append(b, tmp, keep) < 0)
		keep = 0;
	if (keep < (size_t)n)
		*truncated = true;
}

static bool child_exited(pid_t pid)
{
	siginfo_t si = { 0 };
	/* WNOWAIT: the zombie keeps its pid, and so its process group id,
	 * reserved until the final kill of the group is done. */
	return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid;
}

/* Collects the child's output until it has exited and the pipes are closed,
 * or until the deadline; then kills its group and reaps it. */
static void supervise(pid_t pid, int out_fd, int err_fd, const struct runtime_exec *x, int64_t start,
		      struct runtime_result *res)
{
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	struct pollfd pfd[3] = { { out_fd, POLLIN, 0 }, { err_fd, POLLIN, 0 }, { pidfd, POLLIN, 0 } };
	bool exited = false;
	int64_t stop_at = start + (int64_t)x->timeout_ms * 1000;
	for (;;) {
		if (exited && pfd[0].fd < 0 && pfd[1].fd < 0)
			break;
		int64_t now = now_us();
		if (now >= stop_at) {
			if (!exited && !res->timed_out && child_exited(pid)) {
				/* It finished just in time: not a timeout. */
				exited = true;
				pfd[2].fd = -1;
				(void)kill(-pid, SIGKILL);
				continue;
			}
			if (exited || res->timed_out)
				break; /* a process outside the group holds a pipe, or a kill is slow */
			res->timed_out = true;
			(void)kill(-pid, SIGKILL);
			stop_at = now + KILL_GRACE_US;
			continue;
		}
		int64_t wait_ms = (stop_at - now + 999) / 1000;
		if (!exited && pidfd < 0 && wait_ms > EXIT_POLL_MS)
			wait_ms = EXIT_POLL_MS;
		int n = poll(pfd, 3, (int)(wait_ms > 60000 ? 60000 : wait_ms));
		if (n < 0 && errno != EINTR)
			break;
		if (n > 0 && pfd[0].fd >= 0 && pfd[0].revents)
			drain(&pfd[0].fd, &res->out, x->max_stdout, &res->stdout_truncated);
		if (n > 0 && pfd[1].fd >= 0 && pfd[1].revents)
			drain(&pfd[1].fd, &res->err, x->max_stderr, &res->stderr_truncated);
		if (!exited && (pidfd < 0 || (n > 0 && pfd[2].revents)) && child_exited(pid)) {
			exited = true;
			pfd[2].fd = -1;
			/* The driver is done: whatever it left running in its group
			 * (a daemonised helper) must not outlive the exec. */
			(void)kill(-pid, SIGKILL);
		}
	}
	if (!exited)
		(void)kill(-pid, SIGKILL);
	for (int i = 0; i < 2; i++)
		if (pfd[i].fd >= 0)
			close(pfd[i].fd);
	if (pidfd >= 0)
		close(pidfd);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	res->exit_code = proc_exit_code(status);
	res->duration_us = now_us() - start;
	snprintf(res->vm, sizeof(res->vm), "unsafe-local");
}

static void close_pair(int p[2])
{
	for (int i = 0; i < 2; i++)
		if (p[i] >= 0) {
			close(p[i]);
			p[i] = -1;
		}
}

/* Starts the compiler described by c and supervises it until it is reaped.
 * Takes ownership of nothing; the caller holds an exec slot. */
static int run_child(struct child_setup *c, const struct runtime_exec *x, struct runtime_result *ret,
		     struct error *err)
{
	int out_pipe[2] = { -1, -1 }, err_pipe[2] = { -1, -1 }, status_pipe[2] = { -1, -1 };
	int r;
	if ((r = pipe_above_stdio(out_pipe)) < 0 || (r = pipe_above_stdio(err_pipe)) < 0 ||
	    (r = pipe_above_stdio(status_pipe)) < 0) {
		close_pair(out_pipe);
		close_pair(err_pipe);
		return error_set(err, r, "cannot create a pipe: %s", strerror(-r));
	}
	c->stdout_fd = out_pipe[1];
	c->stderr_fd = err_pipe[1];
	c->status_fd = status_pipe[1];

	int64_t start = now_us();
	pid_t pid = fork();
	if (pid == 0)
		child_run(c);
	int fork_errno = errno;
	close(out_pipe[1]);
	close(err_pipe[1]);
	close(status_pipe[1]);
	if (pid < 0) {
		close(out_pipe[0]);
		close(err_pipe[0]);
		close(status_pipe[0]);
		return error_set(err, -fork_errno, "cannot fork: %s", strerror(fork_errno));
	}
	/* Also from this side, so that a kill of the group cannot miss a child
	 * that has not run its own setpgid yet (fails harmlessly after execve). */
	(void)setpgid(pid, pid);

	/* The status pipe closes on a successful execve, or carries errno. It
	 * can stay open longer while a child that another thread forked at the
	 * same moment has not reached its own execve: bounded by the deadline,
	 * after which supervise() kills the compile. */
	int child_errno = 0;
	ssize_t n = -1;
	struct pollfd sp = { status_pipe[0], POLLIN, 0 };
	int64_t wait_ms = (int64_t)x->timeout_ms;
	while (poll(&sp, 1, (int)wait_ms) < 0 && errno == EINTR)
		wait_ms = (start + (int64_t)x->timeout_ms * 1000 - now_us()) / 1000;
	if (sp.revents)
		while ((n = read(status_pipe[0], &child_errno, sizeof(child_errno))) < 0 && errno == EINTR)
			;
	close(status_pipe[0]);
	if (n == (ssize_t)sizeof(child_errno)) {
		int status;
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		close(out_pipe[0]);
		close(err_pipe[0]);
		r = child_errno > 0 ? -child_errno : -EIO;
		return error_set(err, r, "cannot start %s: %s", c->path, strerror(-r));
	}

	struct runtime_result res = { 0 };
	buf_init(&res.out, x->max_stdout);
	buf_init(&res.err, x->max_stderr);
	supervise(pid, out_pipe[0], err_pipe[0], x, start, &res);
	/* Callers may use the captures as C strings even when empty. */
	if (buf_append(&res.out, "", 0) < 0 || buf_append(&res.err, "", 0) < 0) {
		runtime_result_free(&res);
		return error_set(err, -ENOMEM, "out of memory");
	}
	*ret = res;
	return 0;
}

static int ul_exec(void *state, const struct runtime_exec *x, struct runtime_result *ret, struct error *err)
{
	struct unsafe_local *u = state;
	int r = runtime_check_exec(x, err);
	if (r < 0)
		return r;
	_cleanup_free_ char *path = NULL;
	r = find_compiler(u->search_path, x->argv[0], &path);
	if (r < 0)
		return error_set(err, r, "compiler \"%s\" not found in %.200s", x->argv[0], u->search_path);
	_cleanup_close_ int cwd_fd = -1;
	r = staging_open_dir(x->staging, x->cwd ? x->cwd : "", &cwd_fd, err);
	if (r < 0)
		return r;
	cwd_fd = fd_above_stdio(cwd_fd);
	if (cwd_fd < 0)
		return error_set(err, negative_errno(), "cannot duplicate the working directory fd");
	_cleanup_close_ int null_fd = fd_above_stdio(open("/dev/null", O_RDONLY | O_CLOEXEC));
	if (null_fd < 0)
		return error_set(err, negative_errno(), "cannot open /dev/null");

	/* The whole environment: nothing of the worker's own leaks in. */
	_cleanup_free_ char *home = NULL, *tmpdir = NULL;
	if (asprintf(&home, "HOME=%s", staging_tmp(x->staging)) < 0 ||
	    asprintf(&tmpdir, "TMPDIR=%s", staging_tmp(x->staging)) < 0)
		return error_set(err, -ENOMEM, "out of memory");
	char *envp[] = { u->path_env, (char *)"LC_ALL=C", (char *)"TZ=UTC", home, tmpdir,
			 x->env && x->env[0] ? (char *)x->env[0] : NULL, NULL };

	struct child_setup c = {
		.path = path,
		.argv = (char *const *)x->argv,
		.envp = envp,
		.stdin_fd = null_fd,
		.stdout_fd = -1,
		.stderr_fd = -1,
		.cwd_fd = cwd_fd,
		.status_fd = -1,
		/* CPU seconds per process; the wall-clock deadline is separate. */
		.cpu = clamp_limit(RLIMIT_CPU, (rlim_t)(x->timeout_ms / 1000 + 1)),
		.fsize = clamp_limit(RLIMIT_FSIZE, (rlim_t)1 << 30),
		.core = { 0, 0 },
		.parent = getpid(),
	};

	r = slot_acquire(u, now_us() + (int64_t)x->timeout_ms * 1000);
	if (r < 0)
		return error_set(err, r, "no free exec slot within %d ms (max_parallel %d)", x->timeout_ms,
				 u->max_parallel);
	r = run_child(&c, x, ret, err);
	slot_release(u);
	return r;
}

const struct runtime_ops runtime_unsafe_local = {
	.name = "unsafe-local",
	.open = ul_open,
	.exec = ul_exec,
	.close = ul_close,
};
