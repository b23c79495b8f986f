/*
 * The wrapper (see wrapper.h). On a hit it connects to the daemon, sends the
 * command, writes the outputs it gets back and replays the compiler's
 * messages: no hashing, no cache I/O and no process start of its own. On a
 * miss it runs the compile itself, so the compiler stays in the build's
 * process tree (job server, signals, limits), then reports to the daemon,
 * which stores the result. Without a daemon it does the same in-process.
 *
 * The rule above all: hpcc never fails a build the plain compiler passes.
 * Before the compile has run, every failure execs the real compiler with the
 * original arguments; after a RUN, a lost daemon means running it again.
 */
#include "wrapper.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "ansi.h"
#include "compiler.h"
#include "config.h"
#include "engine.h"
#include "fs.h"
#include "ipc.h"
#include "log.h"
#include "proc.h"
#include "server.h"

#define SELF_EXE "/proc/self/exe"
#define DAEMON_START_WAIT_MS 3000
/* A reply may wait for an identical compile in flight (the daemon bounds
 * that wait at 600 s); past this the daemon counts as lost. */
#define REPLY_TIMEOUT_MS (900 * 1000)

struct wrapper {
	struct strv trash;       /* replaced outputs, to unlink after we are done */
	int argc;
	char **argv;             /* as given; argv[0] the compiler's name */
	char *compiler;          /* the real compiler's path */
	struct config cfg;
	bool cfg_loaded;
	char *cwd;
	struct strv env;
	mode_t umask;
};

static const char *const env_names[] = { ENGINE_ENV_NAMES };

/* Runs the real compiler with the user's own arguments, replacing us. */
static int exec_real(struct wrapper *w)
{
	if (!w->compiler) {
		fprintf(stderr, "hpcc: %s: compiler not found in PATH\n", w->argv[0]);
		return 127;
	}
	_cleanup_strv_ struct strv argv = { 0 };
	if (strv_push(&argv, w->compiler) < 0 || strv_extend(&argv, w->argv + 1, (size_t)w->argc - 1) < 0) {
		fprintf(stderr, "hpcc: out of memory\n");
		return 1;
	}
	proc_exec(argv.v);
	fprintf(stderr, "hpcc: cannot run %s: %s\n", w->compiler, strerror(errno));
	return 127;
}

/* Counts a fallback when no daemon will: straight into the stats file. With
 * a configuration that could not be read, in the cache that HPCC_DIR or the
 * default names. */
static void count_locally(struct wrapper *w, enum stat_counter c)
{
	_cleanup_free_ char *dir = w->cfg_loaded ? engine_cache_dir(&w->cfg) : engine_fallback_cache_dir();
	_cleanup_free_ char *path = NULL;
	if (!dir || asprintf(&path, "%s/stats", dir) < 0 || fs_mkdir_p(dir, 0700) < 0)
		return;
	struct stats delta = { 0 };
	delta.v[c] = 1;
	(void)stats_add_file(path, &delta);
}

static int write_output(struct wrapper *w, const char *path, const void *data, size_t n)
{
	/* 0666 through the umask, as the compiler would create it. */
	char *old = NULL;
	int r = fs_replace(path, data, n, 0666, &old);
	if (r < 0)
		log_warn("writing %s: %s", path, strerror(-r));
	if (old) {
		/* Absolute, so that the daemon (another cwd) can remove it. */
		char *abs = old[0] == '/' ? strdup(old) : path_join(w->cwd, old);
		if (!abs || strv_push_take(&w->trash, abs) < 0)
			unlink(old);
		free(old);
	}
	return r;
}

/* Unlinking a replaced output can take milliseconds on ext4; the daemon does
 * it after we exit. Without a daemon (fd < 0) we do it ourselves. */
static void drop_trash(struct wrapper *w, int fd)
{
	if (w->trash.n == 0)
		return;
	if (fd >= 0) {
		Hpcc__Local__Command cmd = HPCC__LOCAL__COMMAND__INIT;
		cmd.name = (char *)"unlink";
		cmd.n_args = w->trash.n;
		cmd.args = w->trash.v;
		Hpcc__Local__Envelope env = HPCC__LOCAL__ENVELOPE__INIT;
		env.msg_case = HPCC__LOCAL__ENVELOPE__MSG_COMMAND;
		env.command = &cmd;
		if (ipc_send(fd, &env) == 0)
			return;
	}
	for (size_t i = 0; i < w->trash.n; i++)
		unlink(w->trash.v[i]);
}

static void print_stream(int fd, const void *data, size_t n, bool strip)
{
	if (n == 0)
		return;
	if (!strip) {
		(void)fs_write_all(fd, data, n);
		return;
	}
	struct buf b;
	buf_init(&b, n + 1);
	if (buf_append(&b, data, n) == 0) {
		ansi_strip(&b);
		(void)fs_write_all(fd, b.data, b.len);
	}
	buf_free(&b);
}

/* Runs the rewritten compile; fills res (captured output). */
static int run_compile(char *const *argv, struct proc_result *res)
{
	return proc_run_capture(argv, NULL, ENGINE_MAX_CAPTURE, true, res);
}

/* Whether a failed RUN failed on a file that hpcc added to the command (the
 * dependency file after its -MF, a response file), both in the cache's tmp
 * directory: the compiler names the file in its error, as GCC does on a
 * full disk ("closing dependency file ...: No space left on device"). The
 * failure is then hpcc's, and the user's command must run untouched. */
static bool failed_on_own_file(const struct wrapper *w, char *const *run_argv, const struct proc_result *res)
{
	/* Output that already went to the terminal cannot be taken back: a
	 * second run would show it twice. */
	if (res->out_passed || res->err_passed)
		return false;
	const struct buf *err = &res->err;
	for (size_t i = 1; run_argv[i]; i++) {
		const char *path = NULL;
		if (strcmp(run_argv[i], "-MF") == 0)
			path = run_argv[i + 1];
		else if (strncmp(run_argv[i], "-MF", 3) == 0)
			path = run_argv[i] + 3;
		else if (run_argv[i][0] == '@')
			path = run_argv[i] + 1;
		if (!path || strlen(path) < 8)
			continue;
		bool users = false;
		for (int k = 1; k < w->argc && !users; k++)
			users = strstr(w->argv[k], path) != NULL;
		if (!users && memmem(err->data, err->len, path, strlen(path)))
			return true;
	}
	return false;
}

/* Prints a finished RUN's output, honouring what passed through already. */
static void print_run(const struct proc_result *res, bool color)
{
	if (!res->out_passed)
		print_stream(1, res->out.data, res->out.len, false);
	if (!res->err_passed)
		print_stream(2, res->err.data, res->err.len, !color);
}

/* What GCC's -fdiagnostics-color=auto looks at: a terminal, and a TERM
 * that is set and not "dumb". */
static bool stderr_takes_color(void)
{
	const char *term = getenv("TERM");
	return term && *term && strcmp(term, "dumb") != 0 && isatty(2);
}

static void collect_env(struct wrapper *w)
{
	for (size_t i = 0; i < ARRAY_SIZE(env_names); i++) {
		const char *v = getenv(env_names[i]);
		if (v)
			(void)strv_pushf(&w->env, "%s=%s", env_names[i], v);
	}
}

/* ---- through the daemon ----------------------------------------------- */

static int connect_or_spawn(struct wrapper *w, int *ret_fd)
{
	int r = daemon_connect(&w->cfg, ret_fd);
	if (r == 0)
		return 0;
	if (r != -ENOENT && r != -ECONNREFUSED)
		return r;
	struct error err = { 0 };
	r = daemon_spawn(SELF_EXE, DAEMON_START_WAIT_MS, &err);
	if (r == 0)
		return daemon_connect(&w->cfg, ret_fd);
	if (r != -EAGAIN)
		return r;
	/* Another wrapper's daemon is starting (make -j): wait for it. */
	for (int waited = 0; waited < DAEMON_START_WAIT_MS; waited += 2) {
		struct timespec ts = { 0, 2 * 1000 * 1000 };
		nanosleep(&ts, NULL);
		if (daemon_connect(&w->cfg, ret_fd) == 0)
			return 0;
	}
	return -ETIMEDOUT;
}

static int send_request(struct wrapper *w, int fd)
{
	Hpcc__Local__CompileRequest req = HPCC__LOCAL__COMPILE_REQUEST__INIT;
	bool prefix_map = true;
	config_get_bool(&w->cfg, CONFIG_CACHE_PREFIX_MAP, &prefix_map);
	req.n_argv = (size_t)w->argc;
	req.argv = w->argv;
	req.compiler_path = w->compiler;
	req.cwd = w->cwd;
	req.n_env = w->env.n;
	req.env = w->env.v;
	req.umask = w->umask;
	bool disable = false;
	config_get_bool(&w->cfg, CONFIG_CACHE_DISABLE, &disable);
	req.stderr_is_tty = stderr_takes_color();
	req.prefix_map = prefix_map;
	req.disable = disable;
	char id[96];
	daemon_binary_id(id, sizeof(id));
	req.binary_id = id;
	Hpcc__Local__Envelope env = HPCC__LOCAL__ENVELOPE__INIT;
	env.msg_case = HPCC__LOCAL__ENVELOPE__MSG_COMPILE;
	env.compile = &req;
	return ipc_send(fd, &env);
}

/* Asks the daemon; retries once with a fresh daemon when the running one
 * belongs to another hpcc binary (it exits when told so). */
static int ask_daemon(struct wrapper *w, int *ret_fd, ipc_envelope **ret_env)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		int fd = -1;
		int r = connect_or_spawn(w, &fd);
		if (r < 0) {
			log_warn("no daemon (%s): compiling in-process", strerror(-r));
			return -EAGAIN;
		}
		ipc_envelope *env = NULL;
		if (send_request(w, fd) < 0 || ipc_recv(fd, REPLY_TIMEOUT_MS, IPC_MAX_MESSAGE, &env) < 0 ||
		    env->msg_case != HPCC__LOCAL__ENVELOPE__MSG_COMPILE_REPLY) {
			ipc_envelope_free(env);
			close(fd);
			return -EIO;
		}
		if (env->compile_reply->action != HPCC__LOCAL__COMPILE_REPLY__ACTION__RESTART) {
			*ret_fd = fd;
			*ret_env = env;
			return 0;
		}
		ipc_envelope_free(env);
		close(fd);
		/* Give the old daemon a moment to let go of the socket. */
		for (int i = 0; i < 200 && daemon_connect(&w->cfg, &fd) == 0; i++) {
			close(fd);
			usleep(5000);
		}
	}
	return -EIO;
}

static int via_daemon(struct wrapper *w)
{
	_cleanup_close_ int fd = -1;
	ipc_envelope *env = NULL;
	int r = ask_daemon(w, &fd, &env);
	if (r == -EAGAIN)
		return r;
	if (r < 0) {
		count_locally(w, STAT_FALLBACK_DAEMON_UNREACHABLE);
		return exec_real(w);
	}
	const Hpcc__Local__CompileReply *rep = env->compile_reply;
	if (rep->action == HPCC__LOCAL__COMPILE_REPLY__ACTION__HIT) {
		for (size_t i = 0; i < rep->n_outputs; i++) {
			if (write_output(w, rep->outputs[i]->path, rep->outputs[i]->data.data, rep->outputs[i]->data.len) < 0) {
				ipc_envelope_free(env);
				count_locally(w, STAT_FALLBACK_INTERNAL);
				return exec_real(w);
			}
		}
		print_stream(1, rep->stdout_data.data, rep->stdout_data.len, false);
		print_stream(2, rep->stderr_data.data, rep->stderr_data.len, !rep->color);
		int code = rep->exit_code;
		ipc_envelope_free(env);
		drop_trash(w, fd);
		return code;
	}
	if (rep->action != HPCC__LOCAL__COMPILE_REPLY__ACTION__RUN || rep->n_run_argv == 0) {
		ipc_envelope_free(env);
		return exec_real(w);
	}
	bool color = rep->color;
	/* protobuf-c's string arrays are not NULL-terminated: copy into an argv. */
	_cleanup_strv_ struct strv run_argv = { 0 };
	struct proc_result res;
	r = strv_extend(&run_argv, rep->run_argv, rep->n_run_argv);
	ipc_envelope_free(env);
	if (r == 0)
		r = run_compile(run_argv.v, &res);
	if (r < 0) {
		/* Could not even start the compiler: let exec report it. */
		return exec_real(w);
	}
	if (proc_exit_code(res.status) != 0 && failed_on_own_file(w, run_argv.v, &res)) {
		/* The daemon sees the connection close and drops the job. */
		proc_result_free(&res);
		count_locally(w, STAT_FALLBACK_STORE_ERROR);
		return exec_real(w);
	}
	Hpcc__Local__JobDone done = HPCC__LOCAL__JOB_DONE__INIT;
	done.wait_status = res.status;
	done.stdout_data.data = (uint8_t *)res.out.data;
	done.stdout_data.len = res.out.len;
	done.stderr_data.data = (uint8_t *)res.err.data;
	done.stderr_data.len = res.err.len;
	done.output_passed = res.out_passed || res.err_passed;
	Hpcc__Local__Envelope denv = HPCC__LOCAL__ENVELOPE__INIT;
	denv.msg_case = HPCC__LOCAL__ENVELOPE__MSG_DONE;
	denv.done = &done;
	ipc_envelope *drep = NULL;
	int code = proc_exit_code(res.status);
	if (ipc_send(fd, &denv) < 0 || ipc_recv(fd, REPLY_TIMEOUT_MS, IPC_MAX_MESSAGE, &drep) < 0 ||
	    drep->msg_case != HPCC__LOCAL__ENVELOPE__MSG_DONE_REPLY) {
		ipc_envelope_free(drep);
		if (code != 0) {
			/* A failed compile writes no dependency file anyway. */
			print_run(&res, color);
			proc_result_free(&res);
			return code;
		}
		/* The daemon went away after the compile: the dependency file
		 * it would have rendered is missing, so compile again plainly. */
		proc_result_free(&res);
		count_locally(w, STAT_FALLBACK_DAEMON_LOST);
		return exec_real(w);
	}
	for (size_t i = 0; i < drep->done_reply->n_outputs; i++) {
		const Hpcc__Local__OutputFile *o = drep->done_reply->outputs[i];
		if (write_output(w, o->path, o->data.data, o->data.len) < 0) {
			ipc_envelope_free(drep);
			proc_result_free(&res);
			count_locally(w, STAT_FALLBACK_INTERNAL);
			return exec_real(w);
		}
	}
	ipc_envelope_free(drep);
	print_run(&res, color);
	proc_result_free(&res);
	drop_trash(w, fd);
	return code;
}

/* ---- in-process --------------------------------------------------------- */

static int in_process(struct wrapper *w)
{
	struct error err = { 0 };
	struct engine *e = NULL;
	if (engine_new(&w->cfg, false, &e, &err) < 0) {
		log_warn("in-process cache unavailable: %s", err.msg);
		count_locally(w, STAT_FALLBACK_STORE_ERROR);
		return exec_real(w);
	}
	bool prefix_map = true;
	config_get_bool(&w->cfg, CONFIG_CACHE_PREFIX_MAP, &prefix_map);
	struct engine_request req = {
		.argc = w->argc,
		.argv = w->argv,
		.compiler_path = w->compiler,
		.cwd = w->cwd,
		.env = w->env.v,
		.n_env = w->env.n,
		.stderr_is_tty = stderr_takes_color(),
		.prefix_map = prefix_map,
	};
	config_get_bool(&w->cfg, CONFIG_CACHE_DISABLE, &req.disable);
	struct engine_result res;
	int code = -1;
	if (engine_lookup(e, &req, &res) < 0)
		res = (struct engine_result){ .action = ENGINE_FALLBACK };
	if (res.action == ENGINE_HIT) {
		code = 0;
		for (size_t i = 0; i < res.n_outputs && code == 0; i++)
			if (write_output(w, res.outputs[i].path, res.outputs[i].data.data, res.outputs[i].data.len) < 0) {
				engine_count(e, STAT_FALLBACK_INTERNAL);
				code = -1;
			}
		if (code == 0) {
			print_stream(1, res.out.data, res.out.len, false);
			print_stream(2, res.err.data, res.err.len, !res.color);
		}
	} else if (res.action == ENGINE_RUN) {
		struct proc_result pr;
		struct engine_job *job = TAKE_PTR(res.job);
		if (run_compile(res.run_argv.v, &pr) < 0) {
			engine_abandon(e, job);
		} else if (proc_exit_code(pr.status) != 0 && failed_on_own_file(w, res.run_argv.v, &pr)) {
			engine_abandon(e, job);
			engine_count(e, STAT_FALLBACK_STORE_ERROR);
			proc_result_free(&pr);
		} else {
			struct output_file *outs = NULL;
			size_t n = 0;
			int r = engine_complete(e, job, pr.status, &pr.out, &pr.err, pr.out_passed || pr.err_passed, &outs, &n);
			for (size_t i = 0; r == 0 && i < n; i++)
				r = write_output(w, outs[i].path, outs[i].data.data, outs[i].data.len);
			output_files_free(outs, n);
			if (r == 0 || proc_exit_code(pr.status) != 0) {
				print_run(&pr, res.color);
				code = proc_exit_code(pr.status);
			}
			proc_result_free(&pr);
		}
	}
	engine_result_free(&res);
	engine_flush(e);
	engine_free(e);
	drop_trash(w, -1);
	return code >= 0 ? code : exec_real(w);
}

/* ---- entry ---------------------------------------------------------------- */

/* The real compiler for name: a path is taken as is unless it is hpcc itself
 * (a masquerade link called by its full path, as CMake does), in which case
 * the name is looked up along PATH like a bare one. */
static char *resolve_compiler(const char *name)
{
	if (strchr(name, '/') && !compiler_is_hpcc(name, SELF_EXE))
		return access(name, X_OK) == 0 ? strdup(name) : NULL;
	return compiler_find(path_basename(name), SELF_EXE);
}

static void wrapper_free(struct wrapper *w)
{
	free(w->compiler);
	free(w->cwd);
	strv_free(&w->env);
	strv_free(&w->trash);
	if (w->cfg_loaded)
		config_free(&w->cfg);
	log_close();
}

static int wrapper_run(struct wrapper *w)
{
	w->compiler = resolve_compiler(w->argv[0]);
	if (!w->compiler) {
		fprintf(stderr, "hpcc: %s: compiler not found in PATH\n", w->argv[0]);
		return 127;
	}
	struct error err = { 0 };
	if (config_load(&w->cfg, NULL, &err) < 0) {
		/* Say it once, clearly, and build anyway. */
		fprintf(stderr, "hpcc: warning: %s; compiling without the cache\n", err.msg);
		count_locally(w, STAT_FALLBACK_CONFIG_ERROR);
		return exec_real(w);
	}
	w->cfg_loaded = true;
	const char *log_file = config_get(&w->cfg, CONFIG_LOG_FILE);
	int level = log_level_parse(config_get(&w->cfg, CONFIG_LOG_LEVEL));
	log_open(log_file, level < 0 ? LOG_WARN : (enum log_level)level);
	w->cwd = getcwd(NULL, 0);
	if (!w->cwd) {
		count_locally(w, STAT_FALLBACK_INTERNAL);
		return exec_real(w);
	}
	w->umask = umask(0);
	umask(w->umask);
	collect_env(w);
	bool use_daemon = true;
	config_get_bool(&w->cfg, CONFIG_DAEMON_ENABLED, &use_daemon);
	int code = -EAGAIN;
	if (use_daemon)
		code = via_daemon(w);
	if (code == -EAGAIN)
		code = in_process(w);
	return code;
}

int wrapper_main(int argc, char **argv)
{
	struct wrapper w = { .argc = argc, .argv = argv };
	int code = wrapper_run(&w);
	wrapper_free(&w);
	return code;
}
