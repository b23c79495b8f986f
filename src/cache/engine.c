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
#include "engine.h"

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

#define MANIFEST_MAX_CANDIDATES 32
#define MANIFEST_MAX_SIZE ((size_t)64 << 20)
#define RESULT_MAX_SIZE ((size_t)768 << 20)
#define INFLIGHT_WAIT_SECONDS 600
#define PROFILE_DIR_MAX_FILES 20000
#define RSP_THRESHOLD (96 * 1024)

struct inflight {
	struct digest key;
	struct inflight *next;
};

struct engine {
	char *dir;
	char *tmp_dir;
	char *stats_path;
	struct store store;
	struct memo *memo;
	uint64_t max_size;
	bool disabled;

	pthread_mutex_t lock;         /* guards pending, known_size, inflight */
	pthread_cond_t inflight_done;
	struct stats pending;
	int64_t known_size;           /* cache size as of the last flush */
	struct inflight *inflight;
};

struct engine_job {
	struct compile_args args;
	struct toolchain tc;
	char *cwd;
	char *root;                   /* NULL without a project root */
	char *compiler_path;
	struct digest base_digest;
	struct digest direct_key;
	struct buf base;              /* the base encoding, reused for the action key */
	char *dep_tmp;                /* where the compiler writes its full -MD list */
	char *rsp_tmp;                /* a response file for an over-long command */
	struct timespec started;
	bool prefix_map;
	bool allow_time_macros;       /* SOURCE_DATE_EPOCH is set */
	bool inflight_registered;
};

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

static void engine_add(struct engine *e, const struct stats *delta)
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

/* Replaces the suffix of a file name (after its last '.', if the '.' is in
 * the last path component) with ext, as GCC names auxiliary outputs. */
static char *replace_suffix(const char *path, const char *ext)
{
	const char *base = path_basename(path);
	const char *dot = strrchr(base, '.');
	size_t n = dot ? (size_t)(dot - path) : strlen(path);
	char *out = NULL;
	if (asprintf(&out, "%.*s%s", (int)n, path, ext) < 0)
		return NULL;
	return out;
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

char *engine_cache_dir(const struct config *cfg);
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
	pthread_cond_init(&e->inflight_done, NULL);
	uint64_t level = 1;
	config_get_u64(cfg, CONFIG_CACHE_MAX_SIZE, &e->max_size);
	config_get_u64(cfg, CONFIG_CACHE_COMPRESSION_LEVEL, &level);
	config_get_bool(cfg, CONFIG_CACHE_DISABLE, &e->disabled);
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
	memo_free(e->memo);
	free(e->dir);
	free(e->tmp_dir);
	free(e->stats_path);
	pthread_mutex_destroy(&e->lock);
	pthread_cond_destroy(&e->inflight_done);
	free(e);
}

int engine_flush(struct engine *e)
{
	pthread_mutex_lock(&e->lock);
	struct stats delta = e->pending;
	e->pending = (struct stats){ 0 };
	e->known_size += delta.v[STAT_CACHE_SIZE];
	int64_t size = e->known_size;
	pthread_mutex_unlock(&e->lock);
	int r = stats_add_file(e->stats_path, &delta);
	if (r < 0) {
		/* Keep the counts for the next attempt. */
		engine_add(e, &delta);
		return r;
	}
	if (e->max_size > 0 && size > (int64_t)e->max_size) {
		uint64_t left, files, evicted;
		r = store_cleanup(&e->store, e->max_size / 10 * 9, &left, &files, &evicted);
		if (r < 0)
			return r;
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
	}
	return r;
}

/* ---- keys ------------------------------------------------------------- */

/* Appends a path to a key encoding: as written when relative (the cwd is
 * part of the key), root-relative when under the project root, absolute
 * otherwise; a tag byte keeps the three apart. */
static int key_add_path(struct buf *b, const char *root, const char *path)
{
	if (path[0] != '/') {
		buf_append_char(b, 'L');
		return buf_append_lp_str(b, path);
	}
	_cleanup_free_ char *norm = path_normalize(path);
	if (!norm)
		return -ENOMEM;
	const char *rel = root ? path_under(norm, root) : NULL;
	buf_append_char(b, rel ? 'R' : 'A');
	return buf_append_lp_str(b, rel ? rel : norm);
}

/* Digests what -fprofile-use reads: a file, every regular file of a
 * directory, or the compiler's default profile name. */
static int key_add_profile(struct buf *b, const struct engine_job *job, struct memo *memo)
{
	const struct compile_args *a = &job->args;
	_cleanup_free_ char *path = NULL;
	if (a->profile_path)
		path = path_join(job->cwd, a->profile_path);
	else if (job->tc.family == FAMILY_CLANG)
		path = path_join(job->cwd, "default.profdata");
	else {
		_cleanup_free_ char *gcda = replace_suffix(a->output, ".gcda");
		path = gcda ? path_join(job->cwd, gcda) : NULL;
	}
	if (!path)
		return -ENOMEM;
	buf_append_lp_str(b, "profile");
	struct stat st;
	if (stat(path, &st) < 0) {
		buf_append_lp_str(b, "absent");
		return 0;
	}
	if (S_ISREG(st.st_mode)) {
		struct file_digest fd;
		int r = memo_digest(memo, path, &fd);
		if (r < 0)
			return r;
		return buf_append_lp(b, fd.digest.b, DIGEST_LEN);
	}
	/* A directory: names and digests of its regular files, sorted. */
	struct dirent **list = NULL;
	int n = scandir(path, &list, NULL, alphasort);
	if (n < 0)
		return negative_errno();
	int r = n > PROFILE_DIR_MAX_FILES ? -E2BIG : 0;
	for (int i = 0; i < n; i++) {
		if (r == 0 && list[i]->d_name[0] != '.') {
			_cleanup_free_ char *f = path_join(path, list[i]->d_name);
			struct file_digest fd;
			if (f && memo_digest(memo, f, &fd) == 0) {
				buf_append_lp_str(b, list[i]->d_name);
				buf_append_lp(b, fd.digest.b, DIGEST_LEN);
			}
		}
		free(list[i]);
	}
	free(list);
	return r;
}

static bool env_lookup(const struct engine_request *req, const char *name, const char **ret)
{
	size_t n = strlen(name);
	for (size_t i = 0; i < req->n_env; i++)
		if (strncmp(req->env[i], name, n) == 0 && req->env[i][n] == '=') {
			*ret = req->env[i] + n + 1;
			return true;
		}
	return false;
}

static int build_base(struct engine *e, const struct engine_request *req, struct engine_job *job)
{
	const struct compile_args *a = &job->args;
	struct buf *b = &job->base;
	buf_init(b, 16 << 20);
	buf_append_lp_str(b, "hpcc-key-v1");
	buf_append_lp(b, job->tc.id.b, DIGEST_LEN);
	buf_append_u64(b, job->tc.family);
	buf_append_u64(b, a->lang);
	buf_append_u64(b, a->n_key_args);
	for (size_t i = 0; i < a->n_key_args; i++) {
		buf_append_lp_str(b, a->key_args[i].flag);
		if (a->key_args[i].path)
			key_add_path(b, job->root, a->key_args[i].path);
		else
			buf_append_char(b, '-');
		buf_append_lp_str(b, a->key_args[i].suffix ? a->key_args[i].suffix : "");
	}
	buf_append_lp_str(b, "cwd");
	key_add_path(b, job->root, job->cwd);
	buf_append_lp_str(b, "source");
	key_add_path(b, job->root, a->source);
	buf_append_lp_str(b, "output");
	key_add_path(b, job->root, a->output);
	buf_append_u64(b, a->split_dwarf);
	buf_append_u64(b, a->coverage);
	if (a->coverage || a->profile_arcs) {
		/* Coverage objects embed the absolute .gcda path, which no prefix
		 * map rewrites: such results are tied to their directory. */
		_cleanup_free_ char *abs_out = path_join(job->cwd, a->output);
		buf_append_lp_str(b, job->cwd);
		buf_append_lp_str(b, abs_out ? abs_out : "");
	}
	buf_append_u64(b, job->root && req->prefix_map);
	for (size_t i = 0; i < req->n_env; i++)
		buf_append_lp_str(b, req->env[i]);
	if (a->march_native) {
		struct digest nd;
		int r = compiler_native_digest(job->compiler_path, &nd);
		if (r < 0)
			return r;
		buf_append_lp(b, nd.b, DIGEST_LEN);
	}
	if (a->profile_use) {
		int r = key_add_profile(b, job, e->memo);
		if (r < 0)
			return r;
	}
	/* A buffer that hit its cap fails every later append: check once. */
	if (b->len >= b->max - 1)
		return -E2BIG;
	return digest_bytes(b->data, b->len, &job->base_digest);
}

static int key_derive(const struct engine_job *job, const char *what, const struct digest *d, struct digest *ret)
{
	_cleanup_hasher_ struct hasher h = { 0 };
	int r = hasher_init(&h);
	if (r < 0)
		return r;
	uint8_t tag[64];
	size_t n = strlen(what);
	memcpy(tag, what, n);
	hasher_update(&h, job->base_digest.b, DIGEST_LEN);
	hasher_update(&h, tag, n);
	hasher_update(&h, d->b, DIGEST_LEN);
	return hasher_final(&h, ret);
}

/* ---- in-flight merging ------------------------------------------------- */

/* Registers key as being compiled, or, when someone else already compiles
 * it, waits for them (bounded) and returns 1 so the caller looks again. */
static int inflight_enter(struct engine *e, const struct digest *key)
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

static void inflight_leave(struct engine *e, const struct digest *key)
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

static void job_free(struct engine *e, struct engine_job *job)
{
	if (!job)
		return;
	if (job->inflight_registered)
		inflight_leave(e, &job->direct_key);
	if (job->dep_tmp)
		unlink(job->dep_tmp);
	if (job->rsp_tmp)
		unlink(job->rsp_tmp);
	free(job->rsp_tmp);
	compile_args_free(&job->args);
	buf_free(&job->base);
	free(job->cwd);
	free(job->root);
	free(job->compiler_path);
	free(job->dep_tmp);
	free(job);
}

void engine_abandon(struct engine *e, struct engine_job *job) { job_free(e, job); }

/* ---- hits --------------------------------------------------------------- */

static char *input_path(const struct engine_job *job, const char *path, bool rooted)
{
	if (!rooted)
		return strdup(path);
	if (!job->root)
		return NULL;
	return path_join(job->root, path);
}

/* True when every input of the candidate still has the recorded digest. */
static bool candidate_matches(struct engine *e, const struct engine_job *job, const Hpcc__Local__ManifestCandidate *c)
{
	for (size_t i = 0; i < c->n_inputs; i++) {
		const Hpcc__Local__ManifestInput *in = c->inputs[i];
		if (in->digest.len != DIGEST_LEN)
			return false;
		_cleanup_free_ char *p = input_path(job, in->path, in->rooted);
		struct file_digest fd;
		if (!p || memo_digest(e->memo, p, &fd) < 0 || memcmp(fd.digest.b, in->digest.data, DIGEST_LEN) != 0)
			return false;
	}
	return true;
}

static int add_output(struct engine_result *ret, const char *path, const void *data, size_t n)
{
	struct output_file *o = realloc(ret->outputs, (ret->n_outputs + 1) * sizeof(*o));
	if (!o)
		return -ENOMEM;
	ret->outputs = o;
	struct output_file *f = &o[ret->n_outputs];
	*f = (struct output_file){ .path = strdup(path) };
	buf_init(&f->data, n + 1);
	if (!f->path || buf_append(&f->data, data, n) < 0) {
		free(f->path);
		buf_free(&f->data);
		return -ENOMEM;
	}
	ret->n_outputs++;
	return 0;
}

static const char *output_name_for(const struct compile_args *a, int kind, char **tmp)
{
	switch (kind) {
	case HPCC__LOCAL__RESULT_ENTRY__KIND__DWO:
		return *tmp = replace_suffix(a->output, ".dwo");
	case HPCC__LOCAL__RESULT_ENTRY__KIND__GCNO:
		return *tmp = replace_suffix(a->output, ".gcno");
	default:
		return a->output;
	}
}

/* Renders the user's dependency file from an entry's dependency list. */
static int render_depfile(const struct engine_job *job, Hpcc__Local__Dep **deps, size_t n, struct engine_result *ret)
{
	if (job->args.dep_mode == DEP_NONE)
		return 0;
	struct strv spelled = { 0 };
	bool *sys = calloc(n ? n : 1, sizeof(bool));
	int r = sys ? 0 : -ENOMEM;
	for (size_t i = 0; r == 0 && i < n; i++) {
		char *p = input_path(job, deps[i]->path, deps[i]->rooted);
		r = strv_push_take(&spelled, p);
		sys[i] = deps[i]->system;
	}
	_cleanup_buf_ struct buf text;
	buf_init(&text, DEPFILE_MAX_SIZE);
	_cleanup_free_ char *path = NULL;
	if (r == 0)
		r = depfile_render(&job->args, spelled.v, sys, spelled.n, &text, &path);
	if (r == 0)
		r = add_output(ret, path, text.data, text.len);
	strv_free(&spelled);
	free(sys);
	return r;
}

static int serve_hit(struct engine *e, struct engine_job *job, const struct digest *action, struct engine_result *ret)
{
	_cleanup_buf_ struct buf payload;
	buf_init(&payload, RESULT_MAX_SIZE + 1);
	struct stats delta = { 0 };
	int r = store_get(&e->store, STORE_RESULT, action, RESULT_MAX_SIZE, &payload, &delta);
	engine_add(e, &delta);
	if (r < 0)
		return r;
	Hpcc__Local__ResultEntry *entry = hpcc__local__result_entry__unpack(NULL, payload.len, (uint8_t *)payload.data);
	if (!entry) {
		/* The digest matched but the content does not parse: an entry
		 * from an incompatible writer. Drop it. */
		store_remove(&e->store, STORE_RESULT, action, &delta);
		engine_count(e, STAT_CORRUPT_ENTRIES);
		return -ENOENT;
	}
	r = 0;
	for (size_t i = 0; r == 0 && i < entry->n_files; i++) {
		_cleanup_free_ char *tmp = NULL;
		const char *name = output_name_for(&job->args, entry->files[i]->kind, &tmp);
		r = name ? add_output(ret, name, entry->files[i]->data.data, entry->files[i]->data.len) : -ENOMEM;
	}
	if (r == 0)
		r = render_depfile(job, entry->deps, entry->n_deps, ret);
	if (r == 0) {
		buf_init(&ret->out, ENGINE_MAX_CAPTURE + 1);
		buf_init(&ret->err, ENGINE_MAX_CAPTURE + 1);
		if (buf_append(&ret->out, entry->stdout_data.data, entry->stdout_data.len) < 0 ||
		    buf_append(&ret->err, entry->stderr_data.data, entry->stderr_data.len) < 0)
			r = -ENOMEM;
	}
	hpcc__local__result_entry__free_unpacked(entry, NULL);
	if (r < 0) {
		output_files_free(ret->outputs, ret->n_outputs);
		ret->outputs = NULL;
		ret->n_outputs = 0;
		return r;
	}
	ret->action = ENGINE_HIT;
	return 0;
}

/* Looks the direct key up: 0 and a filled result on a hit, -ENOENT on a miss. */
static int try_hit(struct engine *e, struct engine_job *job, struct engine_result *ret)
{
	_cleanup_buf_ struct buf payload;
	buf_init(&payload, MANIFEST_MAX_SIZE + 1);
	struct stats delta = { 0 };
	int r = store_get(&e->store, STORE_MANIFEST, &job->direct_key, MANIFEST_MAX_SIZE, &payload, &delta);
	engine_add(e, &delta);
	if (r < 0)
		return r;
	Hpcc__Local__Manifest *m = hpcc__local__manifest__unpack(NULL, payload.len, (uint8_t *)payload.data);
	if (!m) {
		store_remove(&e->store, STORE_MANIFEST, &job->direct_key, &delta);
		engine_count(e, STAT_CORRUPT_ENTRIES);
		return -ENOENT;
	}
	r = -ENOENT;
	/* Newest candidates are last and the likeliest to match. */
	for (size_t i = m->n_candidates; i-- > 0 && r == -ENOENT;) {
		const Hpcc__Local__ManifestCandidate *c = m->candidates[i];
		if (c->action_digest.len != DIGEST_LEN || !candidate_matches(e, job, c))
			continue;
		struct digest action;
		memcpy(action.b, c->action_digest.data, DIGEST_LEN);
		r = serve_hit(e, job, &action, ret);
	}
	hpcc__local__manifest__free_unpacked(m, NULL);
	return r;
}

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

static int prepare_run(struct engine *e, struct engine_job *job, struct engine_result *ret)
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

int engine_lookup(struct engine *e, const struct engine_request *req, struct engine_result *ret)
{
	*ret = (struct engine_result){ 0 };
	if (e->disabled)
		return fallback(e, ret, STAT_UNCACHEABLE_DISABLED);
	const char *v;
	if (env_lookup(req, "DEPENDENCIES_OUTPUT", &v) || env_lookup(req, "SUNPRO_DEPENDENCIES", &v))
		return fallback(e, ret, STAT_UNCACHEABLE_UNSUPPORTED_OPTION);

	struct engine_job *job = calloc(1, sizeof(*job));
	if (!job)
		return fallback(e, ret, STAT_FALLBACK_INTERNAL);
	int r = compiler_identify(req->compiler_path, &job->tc);
	if (r < 0) {
		job_free(e, job);
		return fallback(e, ret, STAT_FALLBACK_COMPILER_IDENTITY);
	}
	enum args_reason reason;
	r = args_parse(req->argc, req->argv, req->cwd, job->tc.family, &job->args, &reason);
	if (r != 0) {
		job_free(e, job);
		return fallback(e, ret, r > 0 ? stats_uncacheable_counter(reason) : STAT_FALLBACK_INTERNAL);
	}
	job->cwd = path_normalize(req->cwd);
	job->compiler_path = strdup(req->compiler_path);
	job->root = path_find_upwards(req->cwd, ".hpcc");
	job->prefix_map = req->prefix_map;
	job->allow_time_macros = env_lookup(req, "SOURCE_DATE_EPOCH", &v);
	ret->color = wants_color(&job->args, req->stderr_is_tty);
	if (!job->cwd || !job->compiler_path || build_base(e, req, job) < 0) {
		job_free(e, job);
		return fallback(e, ret, STAT_FALLBACK_INTERNAL);
	}
	_cleanup_free_ char *src = path_join(job->cwd, job->args.source);
	struct file_digest sd;
	if (!src || memo_digest(e->memo, src, &sd) < 0) {
		/* A missing source: let the compiler say so, in its words. */
		job_free(e, job);
		return fallback(e, ret, STAT_UNCACHEABLE_NO_SOURCE);
	}
	key_derive(job, "direct", &sd.digest, &job->direct_key);

	for (int attempt = 0; attempt < 2; attempt++) {
		r = try_hit(e, job, ret);
		if (r == 0) {
			engine_count(e, attempt ? STAT_MERGED : STAT_DIRECT_HIT);
			if (attempt)
				engine_count(e, STAT_DIRECT_HIT);
			job_free(e, job);
			return 0;
		}
		if (attempt == 1)
			break;
		r = inflight_enter(e, &job->direct_key);
		if (r == 0) {
			job->inflight_registered = true;
			break;
		}
		if (r < 0)
			break;
		/* Someone else compiled this meanwhile: look again. */
	}
	if (prepare_run(e, job, ret) < 0) {
		engine_result_free(ret);
		job_free(e, job);
		return fallback(e, ret, STAT_FALLBACK_INTERNAL);
	}
	clock_gettime(CLOCK_REALTIME, &job->started);
	ret->action = ENGINE_RUN;
	ret->job = job;
	return 0;
}

/* ---- storing a result -------------------------------------------------- */

struct dep_info {
	char *spelled;      /* as in the compiler's .d */
	char *canonical;    /* root-relative or absolute, normalised */
	bool rooted;
	bool system;
	struct file_digest fd;
};

static void dep_infos_free(struct dep_info *d, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(d[i].spelled);
		free(d[i].canonical);
	}
	free(d);
}

static int64_t ts_ns(const struct timespec *t) { return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec; }

static bool changed_since(const struct stat *st, const struct timespec *t)
{
	/* File times come from the kernel's coarse clock, which may lag the
	 * clock we read by a tick: count anything from 20 ms before the start
	 * as written during the compile. */
	int64_t start = ts_ns(t) - 20 * 1000000;
	return ts_ns(&st->st_mtim) >= start || ts_ns(&st->st_ctim) >= start;
}

static int dep_cmp(const void *a, const void *b)
{
	const struct dep_info *x = *(const struct dep_info *const *)a, *y = *(const struct dep_info *const *)b;
	if (x->rooted != y->rooted)
		return x->rooted ? -1 : 1;
	return strcmp(x->canonical, y->canonical);
}

/* The input manifest digest: sorted (path, digest) pairs, duplicates once. */
static int manifest_digest(struct dep_info *deps, size_t n, struct digest *ret)
{
	_cleanup_free_ struct dep_info **sorted = calloc(n ? n : 1, sizeof(*sorted));
	if (!sorted)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		sorted[i] = &deps[i];
	qsort(sorted, n, sizeof(*sorted), dep_cmp);
	_cleanup_buf_ struct buf enc;
	buf_init(&enc, 64 << 20);
	buf_append_lp_str(&enc, "hpcc-inputs-v1");
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && dep_cmp(&sorted[i - 1], &sorted[i]) == 0)
			continue;
		buf_append_char(&enc, sorted[i]->rooted ? 'R' : 'A');
		buf_append_lp_str(&enc, sorted[i]->canonical);
		if (buf_append_lp(&enc, sorted[i]->fd.digest.b, DIGEST_LEN) < 0)
			return -E2BIG;
	}
	return digest_bytes(enc.data, enc.len, ret);
}

static int system_flags_for(const struct engine_job *job, struct strv *ret)
{
	/* Only the options that change the compiler's search list. */
	static const char *const affecting[] = { "--sysroot", "-isysroot", "-nostdinc", "-nostdinc++", "-target",
						 "--target", "-isystem", "-idirafter", "-stdlib", "-m32", "-m64",
						 "-mx32" };
	const struct compile_args *a = &job->args;
	for (size_t i = 0; i < a->n_key_args; i++) {
		const char *f = a->key_args[i].flag;
		for (size_t k = 0; k < ARRAY_SIZE(affecting); k++) {
			if (strncmp(f, affecting[k], strlen(affecting[k])) != 0)
				continue;
			int r;
			if (a->key_args[i].path) {
				_cleanup_free_ char *abs = path_join(job->cwd, a->key_args[i].path);
				if (!abs)
					return -ENOMEM;
				size_t fl = strlen(f);
				r = fl > 0 && f[fl - 1] == '=' ? strv_pushf(ret, "%s%s", f, abs) :
								 (strv_push(ret, f) < 0 ? -ENOMEM : strv_push(ret, abs));
			} else
				r = strv_push(ret, f);
			if (r < 0)
				return r;
			break;
		}
	}
	return 0;
}

static int collect_deps(struct engine *e, struct engine_job *job, struct dep_info **ret, size_t *ret_n,
			enum stat_counter *ret_refuse)
{
	_cleanup_buf_ struct buf text;
	buf_init(&text, DEPFILE_MAX_SIZE + 1);
	int r = fs_read_file(job->dep_tmp, DEPFILE_MAX_SIZE, &text);
	if (r < 0)
		return r;
	struct depfile df = { 0 };
	r = depfile_parse(text.data ? text.data : "", text.len, &df);
	if (r < 0)
		return r;
	if (df.deps.n == 0) {
		depfile_free(&df);
		return -EBADMSG;
	}
	struct dep_info *deps = calloc(df.deps.n, sizeof(*deps));
	_cleanup_strv_ struct strv sysdirs = { 0 }, flags = { 0 };
	r = deps ? system_flags_for(job, &flags) : -ENOMEM;
	if (r == 0 && compiler_system_dirs(job->compiler_path, job->args.lang, flags.v, flags.n, &sysdirs) < 0)
		log_warn("cannot list the system include directories of %s", job->compiler_path);
	size_t n = 0;
	for (size_t i = 0; r == 0 && i < df.deps.n; i++, n++) {
		struct dep_info *d = &deps[i];
		d->spelled = strdup(df.deps.v[i]);
		_cleanup_free_ char *abs = path_join(job->cwd, df.deps.v[i]);
		if (!d->spelled || !abs) {
			r = -ENOMEM;
			break;
		}
		const char *rel = job->root ? path_under(abs, job->root) : NULL;
		d->rooted = rel != NULL;
		d->canonical = strdup(rel ? rel : abs);
		if (!d->canonical) {
			r = -ENOMEM;
			break;
		}
		for (size_t k = 0; k < sysdirs.n && !d->system; k++)
			d->system = path_under(abs, sysdirs.v[k]) != NULL;
		if ((r = memo_digest(e->memo, abs, &d->fd)) < 0)
			break;
		if (changed_since(&d->fd.st, &job->started))
			*ret_refuse = STAT_UNCACHEABLE_MODIFIED_DURING_COMPILE;
		else if (d->fd.time_macros && !job->allow_time_macros)
			*ret_refuse = STAT_UNCACHEABLE_TIME_MACROS;
	}
	depfile_free(&df);
	if (r < 0) {
		dep_infos_free(deps, n);
		return r;
	}
	*ret = deps;
	*ret_n = n;
	return 0;
}

/* Reads one output file of the compile, capped. */
static int read_output(const struct engine_job *job, const char *name, struct buf *ret)
{
	_cleanup_free_ char *abs = path_join(job->cwd, name);
	if (!abs)
		return -ENOMEM;
	buf_init(ret, ENGINE_MAX_OUTPUT + 1);
	return fs_read_file(abs, ENGINE_MAX_OUTPUT, ret);
}

static int update_manifest(struct engine *e, struct engine_job *job, struct dep_info *deps, size_t n,
			   const struct digest *action, struct stats *delta)
{
	_cleanup_buf_ struct buf payload;
	buf_init(&payload, MANIFEST_MAX_SIZE + 1);
	Hpcc__Local__Manifest *old = NULL;
	if (store_get(&e->store, STORE_MANIFEST, &job->direct_key, MANIFEST_MAX_SIZE, &payload, delta) == 0)
		old = hpcc__local__manifest__unpack(NULL, payload.len, (uint8_t *)payload.data);
	size_t keep = old ? old->n_candidates : 0;
	size_t skip = keep >= MANIFEST_MAX_CANDIDATES ? keep - MANIFEST_MAX_CANDIDATES + 1 : 0;
	Hpcc__Local__Manifest m = HPCC__LOCAL__MANIFEST__INIT;
	_cleanup_free_ Hpcc__Local__ManifestCandidate **cands = calloc(keep - skip + 1, sizeof(*cands));
	_cleanup_free_ Hpcc__Local__ManifestInput *inputs = calloc(n ? n : 1, sizeof(*inputs));
	_cleanup_free_ Hpcc__Local__ManifestInput **input_ptrs = calloc(n ? n : 1, sizeof(*input_ptrs));
	int r = cands && inputs && input_ptrs ? 0 : -ENOMEM;
	Hpcc__Local__ManifestCandidate fresh = HPCC__LOCAL__MANIFEST_CANDIDATE__INIT;
	if (r == 0) {
		for (size_t i = skip; i < keep; i++) {
			/* An identical candidate (same action) is replaced by the new one. */
			const ProtobufCBinaryData *ad = &old->candidates[i]->action_digest;
			if (ad->len == DIGEST_LEN && memcmp(ad->data, action->b, DIGEST_LEN) == 0)
				continue;
			cands[m.n_candidates++] = old->candidates[i];
		}
		for (size_t i = 0; i < n; i++) {
			hpcc__local__manifest_input__init(&inputs[i]);
			inputs[i].path = deps[i].canonical;
			inputs[i].rooted = deps[i].rooted;
			inputs[i].digest.data = deps[i].fd.digest.b;
			inputs[i].digest.len = DIGEST_LEN;
			input_ptrs[i] = &inputs[i];
		}
		fresh.n_inputs = n;
		fresh.inputs = input_ptrs;
		fresh.action_digest.data = (uint8_t *)action->b;
		fresh.action_digest.len = DIGEST_LEN;
		cands[m.n_candidates++] = &fresh;
		m.candidates = cands;
		size_t len = hpcc__local__manifest__get_packed_size(&m);
		_cleanup_free_ uint8_t *packed = len <= MANIFEST_MAX_SIZE ? malloc(len ? len : 1) : NULL;
		if (!packed)
			r = len > MANIFEST_MAX_SIZE ? -EFBIG : -ENOMEM;
		else {
			hpcc__local__manifest__pack(&m, packed);
			r = store_put(&e->store, STORE_MANIFEST, &job->direct_key, packed, len, delta);
		}
	}
	if (old)
		hpcc__local__manifest__free_unpacked(old, NULL);
	return r;
}

static int store_result(struct engine *e, struct engine_job *job, struct dep_info *deps, size_t n,
			const struct buf *out, const struct buf *err, enum stat_counter *ret_refuse)
{
	struct digest inputs, action;
	int r = manifest_digest(deps, n, &inputs);
	if (r < 0)
		return r;
	key_derive(job, "action", &inputs, &action);

	struct { int kind; bool wanted; } kinds[] = {
		{ HPCC__LOCAL__RESULT_ENTRY__KIND__OBJECT, true },
		{ HPCC__LOCAL__RESULT_ENTRY__KIND__DWO, job->args.split_dwarf },
		{ HPCC__LOCAL__RESULT_ENTRY__KIND__GCNO, job->args.coverage },
	};
	struct buf data[ARRAY_SIZE(kinds)] = { 0 };
	Hpcc__Local__ResultEntry__File files[ARRAY_SIZE(kinds)];
	Hpcc__Local__ResultEntry__File *file_ptrs[ARRAY_SIZE(kinds)];
	Hpcc__Local__Dep *dep_msgs = calloc(n ? n : 1, sizeof(*dep_msgs));
	Hpcc__Local__Dep **dep_ptrs = calloc(n ? n : 1, sizeof(*dep_ptrs));
	Hpcc__Local__ResultEntry entry = HPCC__LOCAL__RESULT_ENTRY__INIT;
	uint8_t *packed = NULL;
	size_t total = 0;
	r = dep_msgs && dep_ptrs ? 0 : -ENOMEM;
	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(kinds); i++) {
		if (!kinds[i].wanted)
			continue;
		_cleanup_free_ char *tmp = NULL;
		const char *name = output_name_for(&job->args, kinds[i].kind, &tmp);
		r = name ? read_output(job, name, &data[i]) : -ENOMEM;
		if (r == -ENOENT)
			*ret_refuse = STAT_UNCACHEABLE_MISSING_OUTPUT;
		else if (r == -EFBIG || (total += data[i].len) > ENGINE_MAX_OUTPUT)
			*ret_refuse = STAT_UNCACHEABLE_OUTPUT_TOO_LARGE;
		if (r < 0 || *ret_refuse != STAT_N)
			break;
		hpcc__local__result_entry__file__init(&files[entry.n_files]);
		files[entry.n_files].kind = kinds[i].kind;
		files[entry.n_files].data.data = (uint8_t *)data[i].data;
		files[entry.n_files].data.len = data[i].len;
		file_ptrs[entry.n_files] = &files[entry.n_files];
		entry.n_files++;
	}
	if (r == 0 && *ret_refuse == STAT_N) {
		entry.files = file_ptrs;
		for (size_t i = 0; i < n; i++) {
			hpcc__local__dep__init(&dep_msgs[i]);
			/* Spelled paths under the root lose the root, so that another
			 * checkout renders its own. */
			const char *rel = NULL;
			if (job->root && deps[i].spelled[0] == '/') {
				_cleanup_free_ char *norm = path_normalize(deps[i].spelled);
				rel = norm && strcmp(norm, deps[i].spelled) == 0 ? path_under(deps[i].spelled, job->root) : NULL;
			}
			dep_msgs[i].path = (char *)(rel ? rel : deps[i].spelled);
			dep_msgs[i].rooted = rel != NULL;
			dep_msgs[i].system = deps[i].system;
			dep_ptrs[i] = &dep_msgs[i];
		}
		entry.n_deps = n;
		entry.deps = dep_ptrs;
		entry.stdout_data.data = (uint8_t *)out->data;
		entry.stdout_data.len = out->len;
		entry.stderr_data.data = (uint8_t *)err->data;
		entry.stderr_data.len = err->len;
		entry.created = (int64_t)time(NULL);
		size_t len = hpcc__local__result_entry__get_packed_size(&entry);
		packed = len <= RESULT_MAX_SIZE ? malloc(len ? len : 1) : NULL;
		if (!packed)
			r = len > RESULT_MAX_SIZE ? -EFBIG : -ENOMEM;
		else {
			struct stats delta = { 0 };
			hpcc__local__result_entry__pack(&entry, packed);
			/* The result first, then the manifest that points at it: a
			 * reader never finds a manifest whose result is missing
			 * because of us. */
			r = store_put(&e->store, STORE_RESULT, &action, packed, len, &delta);
			if (r == 0)
				r = update_manifest(e, job, deps, n, &action, &delta);
			engine_add(e, &delta);
		}
	}
	free(packed);
	free(dep_msgs);
	free(dep_ptrs);
	for (size_t i = 0; i < ARRAY_SIZE(kinds); i++)
		buf_free(&data[i]);
	return r;
}

int engine_complete(struct engine *e, struct engine_job *job, int wait_status, const struct buf *out,
		    const struct buf *err, bool passed, struct output_file **ret_outputs, size_t *ret_n)
{
	*ret_outputs = NULL;
	*ret_n = 0;
	if (!WIFEXITED(wait_status) || WEXITSTATUS(wait_status) != 0) {
		/* A failed compile is not cached; its .d is not written either,
		 * as GCC removes it on failure. */
		engine_count(e, STAT_UNCACHEABLE_COMPILE_FAILED);
		job_free(e, job);
		return 0;
	}
	struct dep_info *deps = NULL;
	size_t n = 0;
	enum stat_counter refuse = STAT_N;
	int r = collect_deps(e, job, &deps, &n, &refuse);
	if (r < 0) {
		log_warn("dependency file of %s: %s", job->args.source, strerror(-r));
		engine_count(e, STAT_FALLBACK_DEP_FILE);
		job_free(e, job);
		return r;
	}
	if (passed)
		refuse = STAT_UNCACHEABLE_OUTPUT_TOO_LARGE;
	if (refuse == STAT_N) {
		r = store_result(e, job, deps, n, out, err, &refuse);
		if (r < 0) {
			log_warn("storing %s: %s", job->args.source, strerror(-r));
			refuse = STAT_FALLBACK_STORE_ERROR;
		}
	}
	engine_count(e, refuse == STAT_N ? STAT_MISS : refuse);

	/* The user's dependency file, as on a hit. */
	struct engine_result res = { 0 };
	if (job->args.dep_mode != DEP_NONE) {
		_cleanup_free_ char **spelled = calloc(n, sizeof(char *));
		_cleanup_free_ bool *sys = calloc(n, sizeof(bool));
		r = spelled && sys ? 0 : -ENOMEM;
		for (size_t i = 0; r == 0 && i < n; i++) {
			spelled[i] = deps[i].spelled;
			sys[i] = deps[i].system;
		}
		_cleanup_buf_ struct buf text;
		buf_init(&text, DEPFILE_MAX_SIZE);
		_cleanup_free_ char *path = NULL;
		if (r == 0)
			r = depfile_render(&job->args, spelled, sys, n, &text, &path);
		if (r == 0)
			r = add_output(&res, path, text.data, text.len);
	}
	dep_infos_free(deps, n);
	job_free(e, job);
	if (r < 0) {
		engine_result_free(&res);
		engine_count(e, STAT_FALLBACK_DEP_FILE);
		return r;
	}
	*ret_outputs = res.outputs;
	*ret_n = res.n_outputs;
	return 0;
}
