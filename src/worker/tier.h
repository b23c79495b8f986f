/*
 * The worker's shared tier (DESIGN.md §6, §9; docs/s3.md): S3 behind the
 * worker's own disk. Reads go through on a local miss, are checked against
 * everything the key says (src/common/s3obj.h) and a damaged object is
 * deleted and reported as a miss (only damage deletes: a reader's own
 * failure, or an object larger than it takes, is a plain miss). Writes go behind, from a bounded queue
 * drained by background threads, so a compile's answer never waits for S3.
 * An object read from S3 whose age is over a day is written again (a hit
 * refreshes its age at most once a day; local hits do the same through
 * tier_touch). When S3 fails (timeout, refused, 5xx, 403), the tier is
 * skipped for a while: every call answers "miss" at once and writes are
 * dropped, so an outage costs compiles nothing but sharing.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "digest.h"
#include "error.h"
#include "s3.h"
#include "s3obj.h"

#define TIER_REFRESH_AGE_S 86400        /* a hit rewrites an object older than this */
#define TIER_DOWN_MS 10000              /* after a failure, S3 is skipped this long */
#define TIER_QUEUE_MAX_BYTES (64u << 20) /* write-behind: bytes waiting */
#define TIER_QUEUE_MAX 4096             /* write-behind: objects waiting */
#define TIER_OBJECT_MAX ((size_t)2 << 30) /* the plain size no read goes past */

struct tier_config {
	struct s3_config s3;
	unsigned connections;   /* S3 connections (clients); 0 = 4 */
	int down_ms;            /* 0 = TIER_DOWN_MS */
	int level;              /* zstd level of objects; 0 = 3 */
};

struct tier_stats {
	uint64_t hits, misses, corrupt, errors, skipped;
	uint64_t puts, put_errors, dropped, refreshed;
	uint64_t bytes_read, bytes_written;
};

struct tier;

int tier_open(const struct tier_config *cfg, struct tier **ret, struct error *err);
/* Waits up to a few seconds for queued writes, then stops. */
void tier_close(struct tier *t);

/* 0 and the plain bytes (at most max) in ret, or -ENOENT: not there, damaged
 * (and deleted), S3 down or failing. Never blocks past the client timeout. */
int tier_get(struct tier *t, enum s3obj_kind kind, const char *tenant, const struct digest *key, size_t max,
	     struct buf *ret);
/* Queues a write of the plain bytes (copied); dropped and counted when the queue is full or S3 is down. */
void tier_put(struct tier *t, enum s3obj_kind kind, const char *tenant, const struct digest *key, const void *data,
	      size_t n);
/* A local hit of a result (other kinds are ignored): at most once a day per
 * object (remembered in memory), check its age in S3 and write it again
 * when it is missing or over a day old. */
void tier_touch(struct tier *t, enum s3obj_kind kind, const char *tenant, const struct digest *key, const void *data,
		size_t n);
/* The object was just read from S3 (inside another one): no refresh for a day. */
void tier_note_fresh(struct tier *t, enum s3obj_kind kind, const char *tenant, const struct digest *key);
/* Waits until the write queue is empty (at most timeout_ms); -ETIMEDOUT otherwise. */
int tier_flush(struct tier *t, int timeout_ms);
void tier_get_stats(struct tier *t, struct tier_stats *ret);
/* One line for logs and status: "s3 hits N misses N ...". */
void tier_format_stats(const struct tier_stats *s, char *out, size_t n);
