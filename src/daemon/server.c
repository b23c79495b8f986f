/*
 * The daemon (see server.h). Start-up is race-free under `make -j`: many
 * wrappers may try to start a daemon at once; each candidate takes an flock
 * on <socket>.lock first, and only the holder removes a stale socket and
 * binds, so exactly one serves and the rest exit quietly.
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "engine.h"
#include "fs.h"
#include "ipc.h"
#include "log.h"

#define REQUEST_TIMEOUT_MS 10000
#define REQUEST_MAX ((size_t)16 << 20)
#define DONE_MAX (ENGINE_MAX_CAPTURE * 2 + (1 << 20))
#define MAX_CONNECTIONS 1024
/* A compile may run for long, but not for ever: a wrapper that keeps its
 * socket open without reporting is dropped after this. */
#define JOB_TIMEOUT_MS (4 * 3600 * 1000)

struct daemon_state {
	struct engine *engine;
	char binary_id[96];
	atomic_int active;
	atomic_bool stop;
	atomic_long last_activity;
	time_t started;
	atomic_ulong requests;
};

struct conn {
	struct daemon_state *d;
	int fd;
};

static const struct daemon_remote *remote_mode;
static const char *binary_path = "/proc/self/exe";

void daemon_set_remote(const struct daemon_remote *remote) { remote_mode = remote; }
void daemon_set_binary_path(const char *path) { binary_path = path; }

static char *socket_path_for(const struct config *cfg)
{
	_cleanup_free_ char *dir = engine_cache_dir(cfg);
	return dir ? ipc_socket_path(dir, config_get(cfg, CONFIG_DAEMON_SOCKET)) : NULL;
}

static int reply_compile(int fd, const struct engine_result *res)
{
	Hpcc__Local__CompileReply rep = HPCC__LOCAL__COMPILE_REPLY__INIT;
	Hpcc__Local__OutputFile *files = calloc(res->n_outputs + 1, sizeof(*files));
	Hpcc__Local__OutputFile **ptrs = calloc(res->n_outputs + 1, sizeof(*ptrs));
	if (!files || !ptrs) {
		free(files);
		free(ptrs);
		return -ENOMEM;
	}
	switch (res->action) {
	case ENGINE_HIT:
		rep.action = HPCC__LOCAL__COMPILE_REPLY__ACTION__HIT;
		break;
	case ENGINE_RUN:
		rep.action = HPCC__LOCAL__COMPILE_REPLY__ACTION__RUN;
		break;
	default:
		rep.action = HPCC__LOCAL__COMPILE_REPLY__ACTION__FALLBACK;
	}
	for (size_t i = 0; i < res->n_outputs; i++) {
		hpcc__local__output_file__init(&files[i]);
		files[i].path = res->outputs[i].path;
		files[i].data.data = (uint8_t *)res->outputs[i].data.data;
		files[i].data.len = res->outputs[i].data.len;
		ptrs[i] = &files[i];
	}
	rep.n_outputs = res->n_outputs;
	rep.outputs = ptrs;
	rep.stdout_data.data = (uint8_t *)res->out.data;
	rep.stdout_data.len = res->out.len;
	rep.stderr_data.data = (uint8_t *)res->err.data;
	rep.stderr_data.len = res->err.len;
	rep.color = res->color;
	rep.n_run_argv = res->run_argv.n;
	rep.run_argv = res->run_argv.v;
	rep.reason = (char *)(res->reason ? res->reason : "");
	Hpcc__Local__Envelope env = HPCC__LOCAL__ENVELOPE__INIT;
	env.msg_case = HPCC__LOCAL__ENVELOPE__MSG_COMPILE_REPLY;
	env.compile_reply = &rep;
	int r = ipc_send(fd, &env);
	free(files);
	free(ptrs);
	return r;
}

static int reply_done(int fd, struct output_file *outs, size_t n)
{
	Hpcc__Local__JobDoneReply rep = HPCC__LOCAL__JOB_DONE_REPLY__INIT;
	Hpcc__Local__OutputFile files[4];
	Hpcc__Local__OutputFile *ptrs[4];
	if (n > ARRAY_SIZE(files))
		return -E2BIG;
	for (size_t i = 0; i < n; i++) {
		hpcc__local__output_file__init(&files[i]);
		files[i].path = outs[i].path;
		files[i].data.data = (uint8_t *)outs[i].data.data;
		files[i].data.len = outs[i].data.len;
		ptrs[i] = &files[i];
	}
	rep.n_outputs = n;
	rep.outputs = ptrs;
	Hpcc__Local__Envelope env = HPCC__LOCAL__ENVELOPE__INIT;
	env.msg_case = HPCC__LOCAL__ENVELOPE__MSG_DONE_REPLY;
	env.done_reply = &rep;
	return ipc_send(fd, &env);
}

static int reply_command(int fd, int code, const char *text)
{
	Hpcc__Local__CommandReply rep = HPCC__LOCAL__COMMAND_REPLY__INIT;
	rep.code = code;
	rep.text = (char *)text;
	Hpcc__Local__Envelope env = HPCC__LOCAL__ENVELOPE__INIT;
	env.msg_case = HPCC__LOCAL__ENVELOPE__MSG_COMMAND_REPLY;
	env.command_reply = &rep;
	return ipc_send(fd, &env);
}

/* After a reply, the wrapper may hand over replaced outputs to unlink (see
 * wrapper.c): only names that fs_replace makes are accepted. */
static void take_trash(int fd)
{
	ipc_envelope *env = NULL;
	if (ipc_recv(fd, 2000, 1 << 20, &env) < 0)
		return;
	if (env->msg_case == HPCC__LOCAL__ENVELOPE__MSG_COMMAND && strcmp(env->command->name, "unlink") == 0) {
		for (size_t i = 0; i < env->command->n_args && i < 16; i++) {
			const char *p = env->command->args[i];
			size_t n = strlen(p);
			if (p[0] == '/' && n > 8 && strcmp(p + n - 8, ".tmp.old") == 0 && !strstr(p, "/../"))
				unlink(p);
		}
	}
	ipc_envelope_free(env);
}

static void handle_compile(struct daemon_state *d, int fd, const Hpcc__Local__CompileRequest *req)
{
	struct engine_request er = {
		.argc = (int)req->n_argv,
		.argv = req->argv,
		.compiler_path = req->compiler_path,
		.cwd = req->cwd,
		.env = req->env,
		.n_env = req->n_env,
		.stderr_is_tty = req->stderr_is_tty,
		.prefix_map = req->prefix_map,
		.disable = req->disable,
		.remote_image = remote_mode ? remote_mode->image : NULL,
	};
	if (req->binary_id[0] && strcmp(req->binary_id, d->binary_id) != 0) {
		/* hpcc was rebuilt or upgraded since this daemon started: make way
		 * for a daemon of the new binary. */
		Hpcc__Local__CompileReply rep = HPCC__LOCAL__COMPILE_REPLY__INIT;
		rep.action = HPCC__LOCAL__COMPILE_REPLY__ACTION__RESTART;
		Hpcc__Local__Envelope env = HPCC__LOCAL__ENVELOPE__INIT;
		env.msg_case = HPCC__LOCAL__ENVELOPE__MSG_COMPILE_REPLY;
		env.compile_reply = &rep;
		log_info("a client from another hpcc binary (%s): exiting", req->binary_id);
		atomic_store(&d->stop, true);
		(void)ipc_send(fd, &env);
		return;
	}
	struct engine_result res;
	if (req->n_argv == 0 || !req->cwd[0] || req->cwd[0] != '/' || !req->compiler_path[0]) {
		res = (struct engine_result){ .action = ENGINE_FALLBACK, .reason = "bad-request" };
		engine_count(d->engine, STAT_FALLBACK_INTERNAL);
	} else if (engine_lookup(d->engine, &er, &res) < 0) {
		res = (struct engine_result){ .action = ENGINE_FALLBACK, .reason = "internal-error" };
		engine_count(d->engine, STAT_FALLBACK_INTERNAL);
	}
	if (res.action == ENGINE_RUN && remote_mode && engine_job_is_remote(res.job))
		remote_mode->compile(remote_mode->ctx, d->engine, &res);
	int r = reply_compile(fd, &res);
	/* The wrapper has its answer: now store what a worker sent. */
	engine_run_deferred(d->engine, &res);
	if (res.action != ENGINE_RUN || r < 0) {
		if (res.job)
			engine_abandon(d->engine, res.job);
		bool hit = res.action == ENGINE_HIT && r == 0;
		engine_result_free(&res);
		if (hit)
			take_trash(fd);
		return;
	}
	struct engine_job *job = TAKE_PTR(res.job);
	engine_result_free(&res);
	/* The compile runs in the wrapper; wait as long as it takes (bounded),
	 * but not past the wrapper's death (the socket then closes). */
	ipc_envelope *env = NULL;
	r = ipc_recv(fd, JOB_TIMEOUT_MS, DONE_MAX, &env);
	if (r < 0 || env->msg_case != HPCC__LOCAL__ENVELOPE__MSG_DONE) {
		ipc_envelope_free(env);
		engine_abandon(d->engine, job);
		return;
	}
	const Hpcc__Local__JobDone *done = env->done;
	struct buf out = { .data = (char *)done->stdout_data.data, .len = done->stdout_data.len };
	struct buf err = { .data = (char *)done->stderr_data.data, .len = done->stderr_data.len };
	struct output_file *outs = NULL;
	size_t n = 0;
	r = engine_complete(d->engine, job, done->wait_status, &out, &err, done->output_passed, &outs, &n);
	ipc_envelope_free(env);
	if (r == 0 && reply_done(fd, outs, n) == 0)
		take_trash(fd);
	/* On failure the connection closes without a reply: the wrapper then
	 * recompiles untouched, which is always correct. */
	output_files_free(outs, n);
}

static void handle_command(struct daemon_state *d, int fd, const Hpcc__Local__Command *cmd)
{
	if (strcmp(cmd->name, "stop") == 0) {
		engine_flush(d->engine);
		reply_command(fd, 0, "stopping");
		atomic_store(&d->stop, true);
		return;
	}
	if (strcmp(cmd->name, "flush") == 0) {
		int r = engine_flush(d->engine);
		reply_command(fd, r, r < 0 ? strerror(-r) : "flushed");
		return;
	}
	if (strcmp(cmd->name, "status") == 0) {
		uint64_t hits = 0, misses = 0, entries = 0;
		memo_counters(engine_memo(d->engine), &hits, &misses, &entries);
		char text[2048];
		int len = snprintf(text, sizeof(text),
			 "pid %d\ncache_dir %s\nuptime %lds\nrequests %lu\nactive %d\nmemo_entries %lu\nmemo_hits %lu\nmemo_misses %lu\n",
			 (int)getpid(), engine_dir(d->engine), (long)(time(NULL) - d->started),
			 atomic_load(&d->requests), atomic_load(&d->active) - 1, (unsigned long)entries,
			 (unsigned long)hits, (unsigned long)misses);
		if (remote_mode && remote_mode->status && len > 0 && (size_t)len < sizeof(text))
			remote_mode->status(remote_mode->ctx, text + len, sizeof(text) - (size_t)len);
		else if (len > 0 && (size_t)len < sizeof(text))
			snprintf(text + len, sizeof(text) - (size_t)len, "remote off\n");
		reply_command(fd, 0, text);
		return;
	}
	if (strcmp(cmd->name, "inspect") == 0 || strcmp(cmd->name, "reproduce") == 0) {
		if (!remote_mode || !remote_mode->command) {
			reply_command(fd, -ENOTCONN, "this daemon has no remote worker (remote.worker or remote.scheduler)");
			return;
		}
		char *text = NULL;
		int r = remote_mode->command(remote_mode->ctx, cmd->name, cmd->args, cmd->n_args, &text);
		reply_command(fd, r, text ? text : "out of memory");
		free(text);
		return;
	}
	reply_command(fd, -EINVAL, "unknown command");
}

void daemon_binary_id(char *out, size_t n)
{
	struct stat st;
	if (stat(binary_path, &st) < 0)
		snprintf(out, n, "unknown");
	else
		snprintf(out, n, "%lx:%lx:%lld.%09ld", (unsigned long)st.st_dev, (unsigned long)st.st_ino,
			 (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
}

static void *conn_thread(void *arg)
{
	struct conn *c = arg;
	struct daemon_state *d = c->d;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.uid == getuid()) {
		ipc_envelope *env = NULL;
		if (ipc_recv(c->fd, REQUEST_TIMEOUT_MS, REQUEST_MAX, &env) == 0) {
			atomic_fetch_add(&d->requests, 1);
			if (env->msg_case == HPCC__LOCAL__ENVELOPE__MSG_COMPILE)
				handle_compile(d, c->fd, env->compile);
			else if (env->msg_case == HPCC__LOCAL__ENVELOPE__MSG_COMMAND)
				handle_command(d, c->fd, env->command);
		}
		ipc_envelope_free(env);
	} else
		log_warn("refused a connection from uid %d", (int)cred.uid);
	close(c->fd);
	atomic_store(&d->last_activity, (long)time(NULL));
	atomic_fetch_sub(&d->active, 1);
	free(c);
	return NULL;
}

static void *flush_thread(void *arg)
{
	struct daemon_state *d = arg;
	for (unsigned tick = 1; !atomic_load(&d->stop); tick++) {
		/* Short naps so that a stop is noticed quickly; flush every second. */
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);
		if (tick % 10)
			continue;
		int r = engine_flush(d->engine);
		if (r < 0)
			log_warn("flushing counters: %s", strerror(-r));
	}
	return NULL;
}

/* A daemon started by daemon_spawn tells its starter how start-up went
 * through a pipe named by HPCC_DAEMON_READY_FD: 'R' ready, 'E' failed. A
 * daemon that quits because another one serves already says nothing; the
 * starter then connects to that one. */
static void report_ready(char what)
{
	const char *v = getenv("HPCC_DAEMON_READY_FD");
	if (!v)
		return;
	char *end;
	long fd = strtol(v, &end, 10);
	if (*end || fd < 3 || fd > 65535)
		return;
	(void)!write((int)fd, &what, 1);
	close((int)fd);
	unsetenv("HPCC_DAEMON_READY_FD");
}

static volatile sig_atomic_t got_signal;
static void on_signal(int sig) { got_signal = sig; }

static int bind_socket(const char *path, struct error *err)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(addr.sun_path))
		return error_set(err, -ENAMETOOLONG, "socket path too long: %s", path);
	memcpy(addr.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return error_set(err, negative_errno(), "socket: %s", strerror(errno));
	unlink(path);
	mode_t old = umask(0077);
	int r = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
	umask(old);
	if (r < 0 || chmod(path, 0600) < 0 || listen(fd, 512) < 0) {
		r = negative_errno();
		close(fd);
		return error_set(err, r, "cannot listen on %s: %s", path, strerror(-r));
	}
	return fd;
}

int daemon_run(const struct config *cfg, struct error *err)
{
	_cleanup_free_ char *path = socket_path_for(cfg);
	if (!path) {
		report_ready('E');
		return error_set(err, -ENOMEM, "out of memory");
	}
	_cleanup_free_ char *dir = strdup(path);
	if (!dir)
		return error_set(err, -ENOMEM, "out of memory");
	*strrchr(dir, '/') = '\0';
	int r = fs_mkdir_p(dir, 0700);
	if (r < 0) {
		report_ready('E');
		return error_set(err, r, "%s: %s", dir, strerror(-r));
	}
	struct stat st;
	if (stat(dir, &st) < 0 || st.st_uid != getuid() || (st.st_mode & 0077)) {
		report_ready('E');
		return error_set(err, -EPERM, "%s must be a directory of ours with mode 0700", dir);
	}
	_cleanup_free_ char *lock_path = NULL;
	if (asprintf(&lock_path, "%s.lock", path) < 0)
		return error_set(err, -ENOMEM, "out of memory");
	_cleanup_close_ int lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lock < 0) {
		report_ready('E');
		return error_set(err, negative_errno(), "%s: %s", lock_path, strerror(errno));
	}
	if (flock(lock, LOCK_EX | LOCK_NB) < 0)
		return error_set(err, -EALREADY, "a daemon already serves %s", path);

	struct daemon_state d = { .started = time(NULL) };
	daemon_binary_id(d.binary_id, sizeof(d.binary_id));
	r = engine_new(cfg, true, &d.engine, err);
	if (r < 0) {
		report_ready('E');
		return r;
	}
	_cleanup_close_ int lfd = bind_socket(path, err);
	if (lfd < 0) {
		report_ready('E');
		engine_free(d.engine);
		return lfd;
	}
	report_ready('R');
	uint64_t idle = 600;
	config_get_u64(cfg, CONFIG_DAEMON_IDLE_TIMEOUT, &idle);
	atomic_store(&d.last_activity, (long)time(NULL));
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	pthread_t flusher;
	pthread_create(&flusher, NULL, flush_thread, &d);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	log_info("daemon %d serving %s on %s", (int)getpid(), engine_dir(d.engine), path);

	while (!atomic_load(&d.stop) && !got_signal) {
		struct pollfd pfd = { lfd, POLLIN, 0 };
		int n = poll(&pfd, 1, 100);
		if (n == 0) {
			long quiet = (long)time(NULL) - atomic_load(&d.last_activity);
			if (idle > 0 && atomic_load(&d.active) == 0 && quiet >= (long)idle)
				break;
			continue;
		}
		if (n < 0)
			continue;
		int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (cfd < 0)
			continue;
		atomic_store(&d.last_activity, (long)time(NULL));
		struct conn *c = malloc(sizeof(*c));
		if (!c || atomic_load(&d.active) >= MAX_CONNECTIONS) {
			free(c);
			close(cfd);
			continue;
		}
		*c = (struct conn){ &d, cfd };
		atomic_fetch_add(&d.active, 1);
		pthread_t t;
		if (pthread_create(&t, &attr, conn_thread, c) != 0) {
			atomic_fetch_sub(&d.active, 1);
			close(cfd);
			free(c);
		}
	}
	/* Stop accepting first, so a wrapper that comes now starts a new daemon
	 * (or compiles in-process) instead of waiting on us. */
	unlink(path);
	close(TAKE_FD(lfd));
	/* The socket is gone: a new daemon may take over at once, while we
	 * finish the connections we have. */
	close(TAKE_FD(lock));
	atomic_store(&d.stop, true);
	pthread_join(flusher, NULL);
	for (int i = 0; i < 600 && atomic_load(&d.active) > 0; i++) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	engine_flush(d.engine);
	log_info("daemon %d exiting", (int)getpid());
	/* Connection threads may still hold the engine; the process exit frees it. */
	if (atomic_load(&d.active) == 0)
		engine_free(d.engine);
	return 0;
}

int daemon_connect(const struct config *cfg, int *ret_fd)
{
	_cleanup_free_ char *path = socket_path_for(cfg);
	if (!path)
		return -ENOMEM;
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	memcpy(addr.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return negative_errno();
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int r = negative_errno();
		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

int daemon_spawn(const char *self_exe, int timeout_ms, struct error *err)
{
	int ready[2];
	if (pipe2(ready, O_CLOEXEC) < 0)
		return error_set(err, negative_errno(), "pipe: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0) {
		int r = negative_errno();
		close(ready[0]);
		close(ready[1]);
		return error_set(err, r, "fork: %s", strerror(-r));
	}
	if (pid == 0) {
		/* Detach: new session, second fork, no inherited stdio. */
		setsid();
		if (fork() != 0)
			_exit(0);
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			dup2(null, 2);
		}
		/* Close everything else the build handed us (job-server pipes);
		 * keep the readiness pipe, without O_CLOEXEC, at a known number. */
		if (dup2(ready[1], 3) < 0 || fcntl(3, F_SETFD, 0) < 0)
			_exit(127);
		for (int fd = 4; fd < 1024; fd++)
			close(fd);
		char fdstr[16];
		snprintf(fdstr, sizeof(fdstr), "%d", 3);
		setenv("HPCC_DAEMON_READY_FD", fdstr, 1);
		char *argv[] = { (char *)"hpcc", (char *)"daemon", (char *)"run", NULL };
		execv(self_exe, argv);
		_exit(127);
	}
	close(ready[1]);
	int status;
	waitpid(pid, &status, 0);
	/* 'R': listening. 'E': it failed (no point in waiting). End of file
	 * without a byte: another daemon won the race, or the exec failed. */
	char what = 0;
	struct pollfd pfd = { ready[0], POLLIN, 0 };
	int r = poll(&pfd, 1, timeout_ms);
	if (r > 0 && read(ready[0], &what, 1) != 1)
		what = 0;
	close(ready[0]);
	if (r == 0)
		return error_set(err, -ETIMEDOUT, "the daemon did not start within %d ms", timeout_ms);
	if (what == 'E')
		return error_set(err, -EIO, "the daemon could not start (set HPCC_LOG_FILE to see why)");
	return what == 'R' ? 0 : -EAGAIN;
}

int daemon_command(const struct config *cfg, const char *name, char **ret_text)
{
	return daemon_command_args(cfg, name, NULL, 0, 30000, ret_text);
}

int daemon_command_args(const struct config *cfg, const char *name, char **args, size_t n_args, int timeout_ms,
			char **ret_text)
{
	_cleanup_close_ int fd = -1;
	int r = daemon_connect(cfg, &fd);
	if (r < 0)
		return r;
	Hpcc__Local__Command cmd = HPCC__LOCAL__COMMAND__INIT;
	cmd.name = (char *)name;
	cmd.args = args;
	cmd.n_args = n_args;
	Hpcc__Local__Envelope env = HPCC__LOCAL__ENVELOPE__INIT;
	env.msg_case = HPCC__LOCAL__ENVELOPE__MSG_COMMAND;
	env.command = &cmd;
	if ((r = ipc_send(fd, &env)) < 0)
		return r;
	ipc_envelope *rep = NULL;
	if ((r = ipc_recv(fd, timeout_ms, (size_t)32 << 20, &rep)) < 0)
		return r;
	if (rep->msg_case != HPCC__LOCAL__ENVELOPE__MSG_COMMAND_REPLY) {
		ipc_envelope_free(rep);
		return -EBADMSG;
	}
	r = rep->command_reply->code;
	if (ret_text)
		*ret_text = strdup(rep->command_reply->text);
	ipc_envelope_free(rep);
	return r;
}
