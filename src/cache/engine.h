/*
 * The cache engine: everything between "here is a compiler command" and
 * "here are its outputs", independent of transport. The daemon calls it from
 * its connection threads; a wrapper with no daemon calls it in-process. A
 * lookup either hits (outputs, stdout and stderr to replay), asks the caller
 * to run a rewritten command (a miss: the compile runs in the caller's own
 * process, so make's job server, signals and limits apply to it as usual),
 * or says to run the real compiler untouched (uncacheable or an hpcc fault,
 * already counted). After a run, engine_complete stores the result.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "config.h"
#include "memo.h"
#include "stats.h"
#include "store.h"
#include "strv.h"
#include "digest.h"

/* The environment variables that change what a compile produces; the
 * wrapper sends these (and only these) with each request. */
#define ENGINE_ENV_NAMES                                                                            \
	"CPATH", "C_INCLUDE_PATH", "CPLUS_INCLUDE_PATH", "OBJC_INCLUDE_PATH", "OBJCPLUS_INCLUDE_PATH", \
		"GCC_EXEC_PREFIX", "COMPILER_PATH", "SOURCE_DATE_EPOCH", "LANG", "LC_ALL", "LC_CTYPE",     \
		"LC_MESSAGES", "GCC_COMPARE_DEBUG", "DEPENDENCIES_OUTPUT", "SUNPRO_DEPENDENCIES", "GCC_COLORS"

#define ENGINE_MAX_OUTPUT ((size_t)256 << 20)   /* one output file */
#define ENGINE_MAX_CAPTURE ((size_t)8 << 20)    /* stdout or stderr of one compile */

struct engine;
struct engine_job;

struct engine_request {
	int argc;
	char *const *argv;          /* argv[0]: the compiler as invoked */
	const char *compiler_path;  /* the real compiler */
	const char *cwd;
	char *const *env;           /* NAME=VALUE, of ENGINE_ENV_NAMES */
	size_t n_env;
	bool stderr_is_tty;         /* a terminal that takes colour (TERM set, not "dumb") */
	bool prefix_map;
	bool disable;               /* HPCC_DISABLE of this command */
	/* Remote mode (the daemon with a [remote] worker): the toolchain is this
	 * image, and a miss that can be compiled remotely comes back as RUN with
	 * engine_job_is_remote() true. NULL: local only. */
	const struct digest *remote_image;
};

struct output_file {
	char *path;                 /* relative to the request's cwd, or absolute */
	struct buf data;
};

enum engine_action { ENGINE_FALLBACK, ENGINE_HIT, ENGINE_RUN };

struct engine_result {
	enum engine_action action;
	struct output_file *outputs;  /* HIT: every output, .d included */
	size_t n_outputs;
	struct buf out, err;          /* HIT: what the compiler printed */
	bool color;                   /* keep colour escapes when printing stderr */
	struct strv run_argv;         /* RUN: the command to run instead */
	struct engine_job *job;       /* RUN: pass to engine_complete or engine_abandon */
	const char *reason;           /* FALLBACK: the counter's name */
	/* HIT from a remote result: storing it locally, left for after the
	 * reply (engine_run_deferred), so the wrapper does not wait for it. */
	struct engine_deferred *deferred;
};

int engine_new(const struct config *cfg, bool use_memo, struct engine **ret, struct error *err);
/* The cache directory cfg names (absolute), or the default one. */
char *engine_cache_dir(const struct config *cfg);
/* The cache directory from HPCC_DIR or the default, for when the
 * configuration itself could not be read. */
char *engine_fallback_cache_dir(void);
void engine_free(struct engine *e);

int engine_lookup(struct engine *e, const struct engine_request *req, struct engine_result *ret);
/* Stores what a RUN produced; *ret_outputs are files the caller must still
 * write (the user's dependency file). Frees the job. A negative return means
 * the caller cannot trust what it has: it must run the real compiler again. */
int engine_complete(struct engine *e, struct engine_job *job, int wait_status, const struct buf *out,
		    const struct buf *err, bool passed, struct output_file **ret_outputs, size_t *ret_n);
/* The caller gave up on a RUN (the wrapper went away): frees the job. */
void engine_abandon(struct engine *e, struct engine_job *job);
void engine_result_free(struct engine_result *r);
void output_files_free(struct output_file *f, size_t n);

/* ---- remote mode (src/daemon/remote.c drives these) ---- */
bool engine_job_is_remote(const struct engine_job *job);
/* Runs the compiler's dependency scan (-M; with ret_pp, -E -MD and the
 * preprocessed source into *ret_pp) for a remote job and digests what it
 * lists; 1 with *ret_refuse set when the job must not be cached (then
 * compile locally, as engine_complete would refuse it anyway). */
struct dep_info;
int engine_remote_scan(struct engine *e, struct engine_job *job, struct buf *ret_pp, struct dep_info **ret,
		       size_t *ret_n, enum stat_counter *ret_refuse);
void engine_deps_free(struct dep_info *d, size_t n);
/* The remote side failed: the job goes back to a local toolchain key. 1 and
 * a HIT in *ret (the job is freed) when that key is cached; 0 when the
 * caller should run the RUN it already has (the job stays valid). */
int engine_remote_fallback(struct engine *e, struct engine_job *job, struct engine_result *ret);
/* A remote result: fills *ret as a HIT (outputs, .d, stdout, stderr) and
 * attaches the storing of it under the job's keys as ret->deferred. object
 * and the others are taken over (emptied), and so are *deps (set to NULL).
 * On success the job belongs to ret; on failure it stays with the caller,
 * who compiles locally. */
int engine_remote_store(struct engine *e, struct engine_job *job, struct dep_info **deps, size_t *n,
			struct buf *object, struct buf *dwo, struct buf *out, struct buf *err, struct engine_result *ret);
/* Runs (and frees) what a result left for after the reply. */
void engine_run_deferred(struct engine *e, struct engine_result *r);

void engine_count(struct engine *e, enum stat_counter c);
/* Writes pending counters to the stats file, and evicts if over size. */
int engine_flush(struct engine *e);
const char *engine_dir(const struct engine *e);
struct memo *engine_memo(struct engine *e);
