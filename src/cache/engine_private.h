/*
 * What the engine's files share and nobody else sees: the engine and job
 * structures, and the functions of keys.c (cache keys), inputs.c (what a
 * compile read) and results.c (manifests and result entries).
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include "args.h"
#include "compiler.h"
#include "engine.h"
#include "explain.h"
#include "local.pb-c.h"

#define MANIFEST_MAX_CANDIDATES 32
#define MANIFEST_MAX_SIZE ((size_t)64 << 20)
#define RESULT_MAX_SIZE ((size_t)768 << 20)
#define PROFILE_DIR_MAX_FILES 20000

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

	pthread_mutex_t flush_lock;   /* one flush at a time, start to end */
	/* Stores (with their counter deltas) hold it shared; an eviction scan
	 * holds it exclusively, so that a file the scan counts never has its
	 * delta counted again afterwards. */
	pthread_rwlock_t store_lock;
	pthread_mutex_t lock;         /* guards pending, known_size, inflight */
	pthread_cond_t inflight_done;
	struct stats pending;
	int64_t known_size;           /* cache size as of the last flush */
	struct inflight *inflight;
	struct explain *explain;      /* NULL when explain records cannot be kept */
};

struct engine_job {
	struct compile_args args;
	struct toolchain tc;
	char *cwd;
	char *root;                   /* NULL without a project root */
	char *compiler_path;
	struct digest base_digest;
	struct digest source_digest;
	struct digest direct_key;
	char *dep_tmp;                /* where the compiler writes its full -MD list */
	char *rsp_tmp;                /* a response file for an over-long command */
	struct timespec started;
	bool prefix_map;
	struct strv env;              /* the request's NAME=VALUE list (ENGINE_ENV_NAMES) */
	bool allow_time_macros;       /* SOURCE_DATE_EPOCH is set */
	bool inflight_registered;
	bool remote;                  /* keyed by remote_image, may compile remotely */
	bool no_store;                /* a local compile whose keys could not be made local */
	struct digest remote_image;
	/* A worker's result came from its cache (set by src/daemon/remote.c
	 * before engine_remote_store), for explain records. */
	bool remote_hit;
};

/* One file the compiler read, from its dependency output. */
struct dep_info {
	char *spelled;      /* as in the compiler's .d */
	char *canonical;    /* root-relative or absolute, normalised */
	bool rooted;
	bool system;
	struct file_digest fd;
};

void engine_add(struct engine *e, const struct stats *delta);

/* engine.c */
int engine_prepare_run(struct engine *e, struct engine_job *job, struct engine_result *ret);
void engine_job_free(struct engine *e, struct engine_job *job);
int engine_inflight_enter(struct engine *e, const struct digest *key);
void engine_inflight_leave(struct engine *e, const struct digest *key);

/* keys.c */
bool keys_env_lookup(const struct engine_request *req, const char *name, const char **ret);
/* Fills job->base_digest from the request and parsed args. */
int keys_build_base(struct engine *e, struct engine_job *job);
/* H(base digest, what, d): the direct key ("direct", source digest) and the
 * action digest ("action", input manifest digest). */
int keys_derive(const struct engine_job *job, const char *what, const struct digest *d, struct digest *ret);
/* The input manifest digest: sorted (canonical path, digest) pairs. */
int keys_inputs_digest(struct dep_info *deps, size_t n, bool rooted_only, struct digest *ret);

/* inputs.c */
/* Reads the compiler's dependency list and digests every file in it; sets
 * *ret_refuse (else left alone) when the result must not be stored. */
int inputs_collect(struct engine *e, struct engine_job *job, struct dep_info **ret, size_t *ret_n,
		   enum stat_counter *ret_refuse);
/* The same from a list of paths as the compiler spelled them; with
 * image_headers, files outside the root that do not exist here are kept
 * without a digest (a worker's image had them). */
int inputs_from_list(struct engine *e, struct engine_job *job, char *const *spelled, size_t n_spelled,
		     bool image_headers, struct dep_info **ret, size_t *ret_n, enum stat_counter *ret_refuse);
void inputs_free(struct dep_info *d, size_t n);

/* results.c */
/* Renders the user's dependency file into ret's outputs (if one was asked for). */
int results_render_depfile(const struct engine_job *job, char *const *spelled, const bool *is_system, size_t n,
			   struct engine_result *ret);
/* A HIT result from a result in memory (a remote one, just stored). */
int results_serve_memory(const struct engine_job *job, const struct dep_info *deps, size_t n, const struct buf *object,
			 const struct buf *dwo, const struct buf *out, const struct buf *err, struct engine_result *ret);
/* 0 and a filled HIT result, or -ENOENT. */
int results_try_hit(struct engine *e, struct engine_job *job, struct engine_result *ret);
/* mem_outputs: NULL to read the outputs from disk (a local compile), else
 * the object and the .dwo (a remote compile). */
int results_store(struct engine *e, struct engine_job *job, struct dep_info *deps, size_t n, const struct buf *out,
		  const struct buf *err, const struct buf *const *mem_outputs, enum stat_counter *ret_refuse);
