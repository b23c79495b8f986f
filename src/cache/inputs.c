/*
 * What a compile read: the compiler's own -MD list, parsed, each file
 * digested (through the daemon's memo), classified as a system header or
 * not (for -MMD), and checked for writes during the compile and for time
 * macros, either of which makes the result unfit to store.
 */
#include "engine_private.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "depfile.h"
#include "fs.h"
#include "log.h"

void inputs_free(struct dep_info *d, size_t n)
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

int inputs_collect(struct engine *e, struct engine_job *job, struct dep_info **ret, size_t *ret_n,
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
	r = inputs_from_list(e, job, df.deps.v, df.deps.n, false, ret, ret_n, ret_refuse);
	depfile_free(&df);
	return r;
}

int inputs_from_list(struct engine *e, struct engine_job *job, char *const *spelled, size_t n_spelled,
		     bool image_headers, struct dep_info **ret, size_t *ret_n, enum stat_counter *ret_refuse)
{
	if (n_spelled == 0)
		return -EBADMSG;
	struct dep_info *deps = calloc(n_spelled, sizeof(*deps));
	_cleanup_strv_ struct strv sysdirs = { 0 }, flags = { 0 };
	int r = deps ? system_flags_for(job, &flags) : -ENOMEM;
	if (r == 0 && compiler_system_dirs(job->compiler_path, job->args.lang, flags.v, flags.n, &sysdirs) < 0)
		log_warn("cannot list the system include directories of %s", job->compiler_path);
	size_t n = 0;
	for (size_t i = 0; r == 0 && i < n_spelled; i++, n++) {
		struct dep_info *d = &deps[i];
		d->spelled = strdup(spelled[i]);
		_cleanup_free_ char *abs = path_join(job->cwd, spelled[i]);
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
		if ((r = memo_digest(e->memo, abs, &d->fd)) < 0) {
			/* A header from a worker's image need not exist here: the
			 * image digest stands for it in the key. */
			if (image_headers && !d->rooted) {
				r = 0;
				continue;
			}
			break;
		}
		if (changed_since(&d->fd.st, &job->started))
			*ret_refuse = STAT_UNCACHEABLE_MODIFIED_DURING_COMPILE;
		else if (d->fd.timestamp_macro || (d->fd.time_macros && !job->allow_time_macros))
			*ret_refuse = STAT_UNCACHEABLE_TIME_MACROS;
	}
	if (r < 0) {
		inputs_free(deps, n);
		return r;
	}
	*ret = deps;
	*ret_n = n;
	return 0;
}
