/*
 * Explain records (docs/explain.md): what `hpcc explain OBJECT` reads to say
 * why a compile did not hit. The engine notes every result it serves or
 * stores (a local hit, a stored miss, a worker's result) in one record per
 * object path: the latest compile and the one it is compared with, each with
 * its toolchain, key flags, and every input with its digest. The contents of
 * the project's inputs are kept once each (by digest), so that a report can
 * show the first changed line. Everything lives under <cache dir>/explain/,
 * in the local store's file format (checked header, zstd, atomic writes),
 * and is bounded by its own size cap with oldest-first eviction.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "digest.h"
#include "local.pb-c.h"

#define EXPLAIN_RECORD_MAX ((size_t)8 << 20)   /* one record, unpacked */
#define EXPLAIN_BLOB_MAX ((size_t)4 << 20)     /* a larger input's content is not kept */
#define EXPLAIN_MAX_INPUTS 20000               /* per entry; the rest is left out */
#define EXPLAIN_MIN_CAP ((uint64_t)16 << 20)
/* A record known to say "hit of these inputs" is not read again for this
 * long (it is never rewritten for another such hit). */
#define EXPLAIN_HIT_REFRESH_SECONDS 60

struct explain;
struct engine_job;
struct dep_info;

/* The size cap for a cache of max_size bytes (0: unlimited): 5%, at least
 * EXPLAIN_MIN_CAP. */
uint64_t explain_cap(uint64_t max_size);
int explain_open(const char *cache_dir, uint64_t max_size, struct explain **ret);
void explain_free(struct explain *x);
/* Evicts oldest-first when over the cap; scan: measure the size when it is
 * not known yet (the daemon's first flush). */
int explain_maintain(struct explain *x, bool scan);

/* ---- engine hooks (never fail the compile: errors are logged) ---- */
/* A local hit of the candidate whose inputs are c's; object: the bytes served. */
void explain_note_hit(struct explain *x, const struct engine_job *job, const struct digest *action,
		      const Hpcc__Local__ManifestCandidate *c, const struct buf *object);
/* A result stored: compiled here (remote false) or a worker's (remote true). */
void explain_note_store(struct explain *x, const struct engine_job *job, const struct digest *action,
			const struct dep_info *deps, size_t n, const struct buf *object, bool remote);

/* ---- readers (hpcc explain, tests) ---- */
/* The key of an object's record: SHA-256 of its absolute, normalised path. */
int explain_record_key(const char *object_abs, struct digest *ret);
/* The record file's path (for tests and messages). */
char *explain_record_path(const char *cache_dir, const char *object_abs);
/* 0 and the record; -ENOENT none; -EBADMSG a damaged record (removed). */
int explain_load(const char *cache_dir, const char *object_abs, Hpcc__Local__ExplainRecord **ret);
/* A kept input's content: 0, -ENOENT (never kept, or evicted). */
int explain_blob_get(const char *cache_dir, const struct digest *d, struct buf *ret);

/* ---- the report (src/client/explain.c) ---- */
/* Renders what differs between the record's entries for object (made
 * absolute against the cwd) into out: 0 when a report was written, -ENOENT
 * no record, -EBADMSG a damaged one; out then holds the one-line reason. */
int explain_report(const char *cache_dir, const char *object, bool json, struct buf *out);
