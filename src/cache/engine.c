/*
 * The cache engine (see engine.h). Keys follow DESIGN.md §2:
 *
 *   base    = toolchain identity, family, language, canonical arguments,
 *             cwd / source / output (root-relative under a project root),
 *             prefix-map injection, relevant environment, -march=native
 *             expansion, profile inputs
 *   direct  = H(base, source digest)          -> manifest of input sets
 *   action  = H(base, input manifest digest)  -> result entry
 *
 * The input manifest lists every file the compiler read (its own -MD
 * output) with its digest, so a later compile revalidates a manifest
 * candidate by digests alone (memoised by stat in the daemon) and never runs
 * the preprocessor. Paths under the project root are root-relative in every
 * key, and the compile gets -ffile-prefix-map=<root>=., so two checkouts at
 * different paths share entries and produce identical objects.
 */
#include "engine_private.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "args.h"
#include "compiler.h"
#include "depfile.h"
#include "fs.h"
#include "local.pb-c.h"
#include "log.h"

#define INFLIGHT_WAIT_SECONDS 600
#define RSP_THRESHOLD (96 * 1024)

/* ---- small helpers ---------------------------------------------------- */

void output_files_free(struct output_file *f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(f[i].path);
		buf_free(&f[i].data);
	}
	free(f);
}

void engine_result_free(struct engine_result *r)
{
	/* Deferred work is the caller's to run (engine_run_deferred); a result
	 * freed with it still pending would leak its job. */
	assert(!r->deferred);
	output_files_free(r->outputs, r->n_outputs);
	buf_free(&r->out);
	buf_free(&r->err);
	strv_free(&r->run_argv);
	*r = (struct engine_result){ 0 };
}

void engine_count(struct engine *e, enum stat_counter c)
{
	pthread_mutex_lock(&e->lock);
	e->pending.v[c]++;
	pthread_mutex_unlock(&e->lock);
}

void engine_add(struct engine *e, const struct stats *delta)
{
	pthread_mutex_lock(&e->lock);
	for (int i = 0; i < STAT_N; i++)
		e->pending.v[i] += delta->v[i];
	pthread_mutex_unlock(&e->lock);
}

const char *engine_dir(const struct engine *e) { return e->dir; }
struct memo *engine_memo(struct engine *e) { return e->memo; }

static int fallback(struct engine *e, struct engine_result *ret, enum stat_counter c)
{
	engine_count(e, c);
	ret->action = ENGINE_FALLBACK;
	ret->reason = stats_name(c);
	return 0;
}

/* ---- setup ------------------------------------------------------------ */

static char *default_cache_dir(void)
{
	const char *xdg = getenv("XDG_CACHE_HOME");
	const char *home = getenv("HOME");
	char *p = NULL;
	if (xdg && xdg[0] == '/') {
		if (asprintf(&p, "%s/hpcc", xdg) < 0)
			return NULL;
	} else if (home && home[0] == '/') {
		if (asprintf(&p, "%s/.cache/hpcc", home) < 0)
			return NULL;
	} else if (asprintf(&p, "/tmp/hpcc-cache-%u", (unsigned)getuid()) < 0)
		return NULL;
	return p;
}

char *engine_fallback_cache_dir(void)
{
	const char *d = getenv("HPCC_DIR");
	if (d && d[0] == '/')
		return path_normalize(d);
	return default_cache_dir();
}

char *engine_cache_dir(const struct config *cfg)
{
	const char *d = config_get(cfg, CONFIG_CACHE_DIR);
	if (d && *d) {
		if (d[0] == '/')
			return path_normalize(d);
		_cleanup_free_ char *cwd = getcwd(NULL, 0);
		return cwd ? path_join(cwd, d) : NULL;
	}
	return default_cache_dir();
}

int engine_new(const struct config *cfg, bool use_memo, struct engine **ret, struct error *err)
{
	struct engine *e = calloc(1, sizeof(*e));
	if (!e)
		return error_set(err, -ENOMEM, "out of memory");
	pthread_mutex_init(&e->lock, NULL);
	pthread_mutex_init(&e->flush_lock, NULL);
	pthread_rwlock_init(&e->store_lock, NULL);
	pthread_cond_init(&e->inflight_done, NULL);
	uint64_t level = 1;
	config_get_u64(cfg, CONFIG_CACHE_MAX_SIZE, &e->max_size);
	config_get_u64(cfg, CONFIG_CACHE_COMPRESSION_LEVEL, &level);
	e->dir = engine_cache_dir(cfg);
	int r = -ENOMEM;
	if (!e->dir || asprintf(&e->tmp_dir, "%s/tmp", e->dir) < 0 || asprintf(&e->stats_path, "%s/stats", e->dir) < 0)
		goto fail;
	if ((r = fs_mkdir_p(e->dir, 0700)) < 0 || (r = fs_mkdir_p(e->tmp_dir, 0700)) < 0) {
		error_set(err, r, "cache directory %s: %s", e->dir, strerror(-r));
		goto fail;
	}
	if ((r = store_init(&e->store, e->dir, e->max_size, (int)level)) < 0) {
		error_set(err, r, "cache directory %s: %s", e->dir, strerror(-r));
		goto fail;
	}
	if (use_memo && !(e->memo = memo_new())) {
		r = -ENOMEM;
		goto fail;
	}
	/* Explain records are a diagnosis aid: without them, compiles go on. */
	if ((r = explain_open(e->dir, e->max_size, &e->explain)) < 0)
		log_warn("explain records cannot be kept in %s/explain: %s", e->dir, strerror(-r));
	struct stats cur;
	if (stats_read_file(e->stats_path, &cur) == 0)
		e->known_size = cur.v[STAT_CACHE_SIZE];
	*ret = e;
	return 0;
fail:
	if (!err || !err->code)
		error_set(err, r, "cannot set up the cache: %s", strerror(-r));
	engine_free(e);
	return r;
}

void engine_free(struct engine *e)
{
	if (!e)
		return;
	store_free(&e->store);
	explain_free(e->explain);
	memo_free(e->memo);
	free(e->dir);
	free(e->tmp_dir);
	free(e->stats_path);
	pthread_mutex_destroy(&e->lock);
	pthread_mutex_destroy(&e->flush_lock);
	pthread_rwlock_destroy(&e->store_lock);
	pthread_cond_destroy(&e->inflight_done);
	free(e);
}

/* A flush asked for by `hpcc stats` must not return while another flush
 * still holds counts it took but has not written: hence flush_lock. */
static int engine_flush_locked(struct engine *e);

int engine_flush(struct engine *e)
{
	pthread_mutex_lock(&e->flush_lock);
	int r = engine_flush_locked(e);
	pthread_mutex_unlock(&e->flush_lock);
	return r;
}

static int engine_flush_locked(struct engine *e)
{
	pthread_mutex_lock(&e->lock);
	struct stats delta = e->pending;
	e->pending = (struct stats){ 0 };
	e->known_size += delta.v[STAT_CACHE_SIZE];
	int64_t size = e->known_size;
	pthread_mutex_unlock(&e->lock);
	/* The daemon's engine (the one with a memo) measures explain/ once and
	 * trims it when over its cap; a wrapper's own engine, alive for one
	 * compile, leaves that to the daemon. */
	int r = e->explain ? explain_maintain(e->explain, e->memo != NULL) : 0;
	if (r < 0)
		log_warn("explain records: cleanup: %s", strerror(-r));
	r = stats_add_file(e->stats_path, &delta);
	if (r < 0) {
		/* Keep the counts for the next attempt. */
		engine_add(e, &delta);
		return r;
	}
	if (e->max_size > 0 && size > (int64_t)e->max_size) {
		/* No store runs during the scan, and the deltas of those that ran
		 * since the counts above are written first: the absolute counts
		 * the scan finds then replace everything before them. */
		pthread_rwlock_wrlock(&e->store_lock);
		pthread_mutex_lock(&e->lock);
		delta = e->pending;
		e->pending = (struct stats){ 0 };
		pthread_mutex_unlock(&e->lock);
		if ((r = stats_add_file(e->stats_path, &delta)) < 0) {
			engine_add(e, &delta);
			pthread_rwlock_unlock(&e->store_lock);
			return r;
		}
		uint64_t left, files, evicted;
		r = store_cleanup(&e->store, e->max_size / 10 * 9, &left, &files, &evicted);
		if (r < 0) {
			pthread_rwlock_unlock(&e->store_lock);
			return r;
		}
		struct stats cur, fix = { 0 };
		if (stats_read_file(e->stats_path, &cur) == 0) {
			fix.v[STAT_CACHE_SIZE] = (int64_t)left - cur.v[STAT_CACHE_SIZE];
			fix.v[STAT_CACHE_FILES] = (int64_t)files - cur.v[STAT_CACHE_FILES];
		}
		fix.v[STAT_CLEANUPS] = 1;
		fix.v[STAT_EVICTED_FILES] = (int64_t)evicted;
		r = stats_add_file(e->stats_path, &fix);
		pthread_mutex_lock(&e->lock);
		e->known_size = (int64_t)left;
		pthread_mutex_unlock(&e->lock);
		pthread_rwlock_unlock(&e->store_lock);
	}
	return r;
}

/* ---- in-flight merging ------------------------------------------------- */

/* Registers key as being compiled, or, when someone else already compiles
 * it, waits for them (bounded) and returns 1 so the caller looks again. */
int engine_inflight_enter(struct engine *e, const struct digest *key)
{
	pthread_mutex_lock(&e->lock);
	bool waited = false;
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += INFLIGHT_WAIT_SECONDS;
	for (;;) {
		struct inflight *f = e->inflight;
		while (f && !digest_equal(&f->key, key))
			f = f->next;
		if (!f)
			break;
		waited = true;
		if (pthread_cond_timedwait(&e->inflight_done, &e->lock, &deadline) == ETIMEDOUT)
			break;
	}
	int r = 1;
	if (!waited) {
		struct inflight *f = calloc(1, sizeof(*f));
		if (f) {
			f->key = *key;
			f->next = e->inflight;
			e->inflight = f;
			r = 0;
		} else
			r = -ENOMEM;
	}
	pthread_mutex_unlock(&e->lock);
	return r;
}

void engine_inflight_leave(struct engine *e, const struct digest *key)
{
	pthread_mutex_lock(&e->lock);
	for (struct inflight **p = &e->inflight; *p; p = &(*p)->next) {
		if (digest_equal(&(*p)->key, key)) {
			struct inflight *f = *p;
			*p = f->next;
			free(f);
			break;
		}
	}
	pthread_cond_broadcast(&e->inflight_done);
	pthread_mutex_unlock(&e->lock);
}

void engine_job_free(struct engine *e, struct engine_job *job)
{
	if (!job)
		return;
	if (job->inflight_registered)
		engine_inflight_leave(e, &job->direct_key);
	if (job->dep_tmp)
		unlink(job->dep_tmp);
	if (job->rsp_tmp)
		unlink(job->rsp_tmp);
	free(job->rsp_tmp);
	compile_args_free(&job->args);
	strv_free(&job->env);
	free(job->cwd);
	free(job->root);
	free(job->compiler_path);
	free(job->dep_tmp);
	free(job);
}

void engine_abandon(struct engine *e, struct engine_job *job) { engine_job_free(e, job); }

/* ---- lookups ----------------------------------------------------------- */

static bool wants_color(const struct compile_args *a, bool tty)
{
	return a->color == COLOR_ALWAYS || (a->color == COLOR_AUTO && tty);
}

/* Writes args to a response file when the command line would be too long
 * to exec (a build that used @file for that reason would otherwise fail). */
static int maybe_use_response_file(struct engine *e, struct engine_job *job, struct strv *argv)
{
	size_t total = 0;
	for (size_t i = 1; i < argv->n; i++)
		total += strlen(argv->v[i]) + 1;
	if (total < RSP_THRESHOLD)
		return 0;
	_cleanup_buf_ struct buf text;
	buf_init(&text, 64 << 20);
	for (size_t i = 1; i < argv->n; i++) {
		for (const char *p = argv->v[i]; *p; p++) {
			if (strchr(" \t\n\r\f\v'\"\\", *p))
				buf_append_char(&text, '\\');
			buf_append_char(&text, *p);
		}
		buf_append_char(&text, '\n');
	}
	_cleanup_free_ char *prefix = NULL, *path = NULL;
	if (asprintf(&prefix, "%s/args", e->tmp_dir) < 0)
		return -ENOMEM;
	_cleanup_close_ int fd = fs_mkstemp(prefix, 0600, &path);
	if (fd < 0)
		return fd;
	int r = fs_write_all(fd, text.data, text.len);
	if (r < 0)
		return r;
	struct strv short_argv = { 0 };
	if ((r = strv_push(&short_argv, argv->v[0])) < 0 || (r = strv_pushf(&short_argv, "@%s", path)) < 0) {
		strv_free(&short_argv);
		return r;
	}
	strv_free(argv);
	*argv = short_argv;
	/* The file is removed with the job's other temporaries. */
	job->rsp_tmp = TAKE_PTR(path);
	return 0;
}

int engine_prepare_run(struct engine *e, struct engine_job *job, struct engine_result *ret)
{
	_cleanup_free_ char *prefix = NULL;
	if (asprintf(&prefix, "%s/dep", e->tmp_dir) < 0)
		return -ENOMEM;
	int fd = fs_mkstemp(prefix, 0600, &job->dep_tmp);
	if (fd < 0)
		return fd;
	close(fd);
	struct strv *argv = &ret->run_argv;
	int r;
	if ((r = strv_push(argv, job->compiler_path)) < 0 ||
	    (r = strv_extend(argv, job->args.run_args.v, job->args.run_args.n)) < 0 ||
	    (r = strv_push(argv, "-MD")) < 0 || (r = strv_push(argv, "-MF")) < 0 ||
	    (r = strv_push(argv, job->dep_tmp)) < 0)
		return r;
	if (job->root && job->prefix_map && (r = strv_pushf(argv, "-ffile-prefix-map=%s=.", job->root)) < 0)
		return r;
	/* Colour always, so the stored stderr serves terminals too; the
	 * printer strips it where the user gets no colour. */
	r = strv_push(argv, job->tc.family == FAMILY_CLANG ? "-fcolor-diagnostics" : "-fdiagnostics-color=always");
	if (r < 0)
		return r;
	return maybe_use_response_file(e, job, argv);
}

/* A path of the command resolves inside the project root. */
static bool path_inside_root(const struct engine_job *job, const char *path)
{
	if (path[0] == '/')
		return true;  /* absolute: under the root (rooted) or from the image */
	_cleanup_free_ char *abs = path_join(job->cwd, path);
	_cleanup_free_ char *norm = abs ? path_normalize(abs) : NULL;
	return norm && path_under(norm, job->root) != NULL;
}

/* Why a job cannot compile remotely, or NULL. -march=native means this
 * CPU, profiles and coverage name files beside the output, and paths that
 * leave the project root (or compiler search-path variables) name files
 * that the worker never gets. */
static const char *remote_ineligible(const struct engine_request *req, const struct engine_job *job)
{
	const struct compile_args *a = &job->args;
	if (!job->root)
		return "no project root (hpcc init)";
	if (!req->prefix_map)
		return "prefix_map is off";
	if (a->march_native)
		return "-march=native names this CPU";
	if (a->profile_use || a->profile_arcs || a->coverage)
		return "profile or coverage files live beside the output";

	for (size_t i = 0; i < req->n_env; i++) {
		const char *v = req->env[i];
		if (strncmp(v, "SOURCE_DATE_EPOCH=", 18) != 0 && strncmp(v, "LANG=", 5) != 0 &&
		    strncmp(v, "LC_", 3) != 0 && strncmp(v, "GCC_COLORS=", 11) != 0)
			return "a compiler search-path variable is set";
	}
	if (!path_under(job->cwd, job->root))
		return "the working directory is outside the project root";
	if (!path_inside_root(job, a->source) || !path_inside_root(job, a->output) ||
	    (a->source[0] == '/' && !path_under(a->source, job->root)) ||
	    (a->output[0] == '/' && !path_under(a->output, job->root)))
		return "the source or the output is outside the project root";
	for (size_t i = 0; i < a->n_key_args; i++)
		if (a->key_args[i].path && !path_inside_root(job, a->key_args[i].path))
			return "an argument names a path outside the project root";
	return NULL;
}

/* Whether a worker can compile this job from the manifest alone (see
 * remote_ineligible for what keeps a job local). */
static bool remote_eligible(const struct engine_request *req, const struct engine_job *job)
{
	const char *why = remote_ineligible(req, job);
	if (why)
		log_debug("%s compiles locally: %s", job->args.source, why);
	return why == NULL;
}

bool engine_job_is_remote(const struct engine_job *job) { return job && job->remote; }

int engine_lookup(struct engine *e, const struct engine_request *req, struct engine_result *ret)
{
	*ret = (struct engine_result){ 0 };
	if (req->disable)
		return fallback(e, ret, STAT_UNCACHEABLE_DISABLED);
	const char *v;
	if (keys_env_lookup(req, "DEPENDENCIES_OUTPUT", &v) || keys_env_lookup(req, "SUNPRO_DEPENDENCIES", &v))
		return fallback(e, ret, STAT_UNCACHEABLE_UNSUPPORTED_OPTION);

	struct engine_job *job = calloc(1, sizeof(*job));
	if (!job)
		return fallback(e, ret, STAT_FALLBACK_INTERNAL);
	int r = compiler_identify(req->compiler_path, &job->tc);
	if (r < 0) {
		engine_job_free(e, job);
		return fallback(e, ret, STAT_FALLBACK_COMPILER_IDENTITY);
	}
	enum args_reason reason;
	r = args_parse(req->argc, req->argv, req->cwd, job->tc.family, &job->args, &reason);
	if (r != 0) {
		engine_job_free(e, job);
		return fallback(e, ret, r > 0 ? stats_uncacheable_counter(reason) : STAT_FALLBACK_INTERNAL);
	}
	job->cwd = path_normalize(req->cwd);
	job->compiler_path = strdup(req->compiler_path);
	job->root = path_find_upwards(req->cwd, ".hpcc");
	job->prefix_map = req->prefix_map;
	job->allow_time_macros = keys_env_lookup(req, "SOURCE_DATE_EPOCH", &v);
	ret->color = wants_color(&job->args, req->stderr_is_tty);
	if (req->remote_image && job->cwd) {
		job->remote = remote_eligible(req, job);
		job->remote_image = *req->remote_image;
	}
	if (!job->cwd || !job->compiler_path || strv_extend(&job->env, req->env, req->n_env) < 0 ||
	    keys_build_base(e, job) < 0) {
		engine_job_free(e, job);
		return fallback(e, ret, STAT_FALLBACK_INTERNAL);
	}
	_cleanup_free_ char *src = path_join(job->cwd, job->args.source);
	struct file_digest sd;
	if (!src || memo_digest(e->memo, src, &sd) < 0) {
		/* A missing source: let the compiler say so, in its words. */
		engine_job_free(e, job);
		return fallback(e, ret, STAT_UNCACHEABLE_NO_SOURCE);
	}
	job->source_digest = sd.digest;
	if (keys_derive(job, "direct", &sd.digest, &job->direct_key) < 0) {
		engine_job_free(e, job);
		return fallback(e, ret, STAT_FALLBACK_INTERNAL);
	}

	for (int attempt = 0; attempt < 2; attempt++) {
		r = results_try_hit(e, job, ret);
		if (r == 0) {
			engine_count(e, attempt ? STAT_MERGED : STAT_DIRECT_HIT);
			if (attempt)
				engine_count(e, STAT_DIRECT_HIT);
			engine_job_free(e, job);
			return 0;
		}
		if (attempt == 1)
			break;
		r = engine_inflight_enter(e, &job->direct_key);
		if (r == 0) {
			job->inflight_registered = true;
			break;
		}
		if (r < 0)
			break;
		/* Someone else compiled this meanwhile: look again. */
	}
	if (engine_prepare_run(e, job, ret) < 0) {
		engine_result_free(ret);
		engine_job_free(e, job);
		return fallback(e, ret, STAT_FALLBACK_INTERNAL);
	}
	clock_gettime(CLOCK_REALTIME, &job->started);
	if (req->remote_image && !job->remote)
		engine_count(e, STAT_REMOTE_LOCAL_ONLY);
	ret->action = ENGINE_RUN;
	ret->job = job;
	return 0;
}

/* ---- storing a result -------------------------------------------------- */

int engine_complete(struct engine *e, struct engine_job *job, int wait_status, const struct buf *out,
		    const struct buf *err, bool passed, struct output_file **ret_outputs, size_t *ret_n)
{
	*ret_outputs = NULL;
	*ret_n = 0;
	if (!WIFEXITED(wait_status) || WEXITSTATUS(wait_status) != 0) {
		/* A failed compile is not cached; its .d is not written either,
		 * as GCC removes it on failure. */
		engine_count(e, STAT_UNCACHEABLE_COMPILE_FAILED);
		engine_job_free(e, job);
		return 0;
	}
	struct dep_info *deps = NULL;
	size_t n = 0;
	enum stat_counter refuse = STAT_N;
	int r = inputs_collect(e, job, &deps, &n, &refuse);
	if (r < 0) {
		log_warn("dependency file of %s: %s", job->args.source, strerror(-r));
		engine_count(e, STAT_FALLBACK_DEP_FILE);
		engine_job_free(e, job);
		return r;
	}
	if (passed)
		refuse = STAT_UNCACHEABLE_OUTPUT_TOO_LARGE;
	if (job->no_store)
		refuse = STAT_FALLBACK_INTERNAL;
	if (refuse == STAT_N) {
		r = results_store(e, job, deps, n, out, err, NULL, &refuse);
		if (r < 0) {
			log_warn("storing %s: %s", job->args.source, strerror(-r));
			refuse = STAT_FALLBACK_STORE_ERROR;
		}
	}
	engine_count(e, refuse == STAT_N ? STAT_MISS : refuse);

	/* The user's dependency file, as on a hit. */
	struct engine_result res = { 0 };
	_cleanup_free_ char **spelled = calloc(n ? n : 1, sizeof(char *));
	_cleanup_free_ bool *sys = calloc(n ? n : 1, sizeof(bool));
	r = spelled && sys ? 0 : -ENOMEM;
	for (size_t i = 0; r == 0 && i < n; i++) {
		spelled[i] = deps[i].spelled;
		sys[i] = deps[i].system;
	}
	if (r == 0)
		r = results_render_depfile(job, spelled, sys, n, &res);
	inputs_free(deps, n);
	engine_job_free(e, job);
	if (r < 0) {
		engine_result_free(&res);
		engine_count(e, STAT_FALLBACK_DEP_FILE);
		return r;
	}
	*ret_outputs = res.outputs;
	*ret_n = res.n_outputs;
	return 0;
}
