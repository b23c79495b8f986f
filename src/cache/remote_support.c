/*
 * The engine's side of remote mode (DESIGN.md §2, §3). The daemon's remote
 * client (src/daemon/remote.c) drives a RUN job through these: a dependency
 * scan that lists what the compile reads (the compiler's own -M, so the
 * list is exact), then either storing what the worker answered under the
 * job's image-keyed entries, or, when anything remote failed, re-keying the
 * job by the local compiler so that a local compile never lands under an
 * image's key.
 */
#include "engine_private.h"

#include <errno.h>
#include <string.h>
#include <sys/wait.h>

#include "fs.h"
#include "log.h"
#include "proc.h"

#define SCAN_CAPTURE_MAX ((size_t)1 << 20)

void engine_deps_free(struct dep_info *d, size_t n) { inputs_free(d, n); }

/* The command without -c and -o: a scan writes the dependency list (and,
 * with -E, the preprocessed source to stdout). */
static int scan_argv(const struct engine_job *job, bool preprocess, struct strv *ret)
{
	const struct strv *run = &job->args.run_args;
	int r = strv_push(ret, job->compiler_path);
	for (size_t i = 0; r == 0 && i < run->n; i++) {
		const char *a = run->v[i];
		if (strcmp(a, "-c") == 0)
			continue;
		if (strcmp(a, "-o") == 0 && i + 1 < run->n) {
			i++;
			continue;
		}
		if (strncmp(a, "-o", 2) == 0 && strcmp(a + 2, job->args.output) == 0)
			continue;
		r = strv_push(ret, a);
	}
	if (r == 0 && ((r = strv_push(ret, preprocess ? "-E" : "-M")) < 0 ||
		       (preprocess && (r = strv_push(ret, "-MD")) < 0) || (r = strv_push(ret, "-MF")) < 0))
		return r;
	return r < 0 ? r : strv_push(ret, job->dep_tmp);
}

int engine_remote_scan(struct engine *e, struct engine_job *job, struct buf *ret_pp, struct dep_info **ret,
		       size_t *ret_n, enum stat_counter *ret_refuse)
{
	_cleanup_strv_ struct strv argv = { 0 };
	int r = scan_argv(job, ret_pp != NULL, &argv);
	if (r < 0)
		return r;
	struct proc_result pr = { 0 };
	/* The scan runs where the compile would, since relative paths are the
	 * user's; the chdir happens in the child, as the daemon's threads
	 * share one cwd. */
	r = proc_run_capture_in(argv.v, job->cwd, ret_pp ? ENGINE_MAX_OUTPUT : SCAN_CAPTURE_MAX, &pr);
	if (r < 0) {
		proc_result_free(&pr);
		return r;
	}
	bool ok = WIFEXITED(pr.status) && WEXITSTATUS(pr.status) == 0 && !pr.out_passed;
	if (ok && ret_pp) {
		buf_free(ret_pp);
		*ret_pp = pr.out;
		pr.out = (struct buf){ 0 };
	}
	proc_result_free(&pr);
	if (!ok) {
		/* The compile itself will fail the same way: let the compiler
		 * say so locally, in its words. */
		*ret_refuse = STAT_UNCACHEABLE_COMPILE_FAILED;
		return 1;
	}
	enum stat_counter refuse = STAT_N;
	r = inputs_collect(e, job, ret, ret_n, &refuse);
	if (r < 0)
		return r;
	if (refuse != STAT_N) {
		inputs_free(*ret, *ret_n);
		*ret = NULL;
		*ret_n = 0;
		*ret_refuse = refuse;
		return 1;
	}
	return 0;
}

int engine_remote_fallback(struct engine *e, struct engine_job *job, struct engine_result *ret)
{
	if (!job->remote)
		return 0;
	if (job->inflight_registered) {
		engine_inflight_leave(e, &job->direct_key);
		job->inflight_registered = false;
	}
	job->remote = false;
	_cleanup_free_ char *src = path_join(job->cwd, job->args.source);
	struct file_digest sd;
	int r = !src ? -ENOMEM : memo_digest(e->memo, src, &sd);
	if (r == 0)
		r = keys_build_base(e, job);
	if (r == 0)
		r = keys_derive(job, "direct", &sd.digest, &job->direct_key);
	if (r < 0) {
		/* The keys still name the image: compile locally, store nothing. */
		job->no_store = true;
		return 0;
	}
	struct engine_result hit = { 0 };
	if (results_try_hit(e, job, &hit) == 0) {
		hit.color = ret->color;
		engine_count(e, STAT_DIRECT_HIT);
		engine_job_free(e, job);
		*ret = hit;
		return 1;
	}
	engine_result_free(&hit);
	if (engine_inflight_enter(e, &job->direct_key) == 0)
		job->inflight_registered = true;
	return 0;
}

struct engine_deferred {
	struct engine_job *job;
	struct dep_info *deps;
	size_t n;
	struct buf object, dwo, out, err;
	bool has_dwo;
};

static void deferred_free(struct engine *e, struct engine_deferred *d)
{
	if (!d)
		return;
	engine_job_free(e, d->job);
	inputs_free(d->deps, d->n);
	buf_free(&d->object);
	buf_free(&d->dwo);
	buf_free(&d->out);
	buf_free(&d->err);
	free(d);
}

int engine_remote_store(struct engine *e, struct engine_job *job, struct dep_info **deps, size_t *n,
			struct buf *object, struct buf *dwo, struct buf *out, struct buf *err, struct engine_result *ret)
{
	bool color = ret->color;
	struct engine_deferred *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	*ret = (struct engine_result){ .color = color };
	int r = results_serve_memory(job, *deps, *n, object, dwo, out, err, ret);
	if (r < 0) {
		free(d);
		engine_result_free(ret);
		ret->color = color;
		return r;
	}
	/* Everything the store needs moves into the deferred work. */
	*d = (struct engine_deferred){ .job = job, .deps = *deps, .n = *n, .object = *object, .out = *out,
				       .err = *err, .has_dwo = dwo != NULL };
	if (dwo) {
		d->dwo = *dwo;
		*dwo = (struct buf){ 0 };
	}
	*object = *out = *err = (struct buf){ 0 };
	*deps = NULL;
	*n = 0;
	ret->deferred = d;
	return 0;
}

void engine_run_deferred(struct engine *e, struct engine_result *res)
{
	struct engine_deferred *d = TAKE_PTR(res->deferred);
	if (!d)
		return;
	enum stat_counter refuse = STAT_N;
	const struct buf *mem[2] = { &d->object, d->has_dwo ? &d->dwo : NULL };
	int r = results_store(e, d->job, d->deps, d->n, &d->out, &d->err, mem, &refuse);
	if (r < 0 || refuse != STAT_N) {
		log_warn("storing the remote result of %s: %s", d->job->args.source,
			 r < 0 ? strerror(-r) : stats_name(refuse));
		engine_count(e, r < 0 ? STAT_FALLBACK_STORE_ERROR : refuse);
	}
	deferred_free(e, d);
}
