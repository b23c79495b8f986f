/*
 * Statistics counters: what `hpcc stats` shows. Counters live in one text
 * file in the cache directory ("name value" lines), updated under an flock
 * by read-add-write, so in-process wrappers and the daemon can all add to it.
 * The daemon batches its increments in memory and flushes them now and then.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "args.h"
#include "buf.h"

/* Outcomes that are not hits or misses: commands hpcc ran untouched on
 * purpose (uncacheable) and hpcc failures it recovered from (fallback). */
#define STATS_UNCACHEABLE_EXTRA(X)                                             \
	X(TIME_MACROS, "time-macros")           /* __DATE__ etc. without SOURCE_DATE_EPOCH */ \
	X(MODIFIED_DURING_COMPILE, "modified-during-compile")                   \
	X(COMPILE_FAILED, "compile-failed")     /* non-zero exit: not cached */ \
	X(OUTPUT_TOO_LARGE, "output-too-large")                                 \
	X(MISSING_OUTPUT, "missing-output")                                     \
	X(DISABLED, "disabled")                 /* HPCC_DISABLE */

#define STATS_FALLBACK_LIST(X)                                                 \
	X(DAEMON_UNREACHABLE, "daemon-unreachable")                             \
	X(DAEMON_LOST, "daemon-lost")           /* the daemon went away mid-compile */ \
	X(CONFIG_ERROR, "config-error")                                         \
	X(COMPILER_NOT_FOUND, "compiler-not-found")                             \
	X(COMPILER_IDENTITY, "compiler-identity")                               \
	X(DEP_FILE, "dependency-file")          /* the compiler's .d was unusable */ \
	X(STORE_ERROR, "store-error")                                           \
	X(REMOTE_UNREACHABLE, "remote-unreachable") /* worker down, TLS or pin failure */ \
	X(REMOTE_TIMEOUT, "remote-timeout")                                     \
	X(REMOTE_REFUSED, "remote-refused")     /* token, tenant, limits, bad request */ \
	X(REMOTE_QUOTA, "remote-quota")         /* over a tenant quota of the worker ([limits]) */ \
	X(REMOTE_ERROR, "remote-error")         /* a bad reply or a worker fault */ \
	X(REMOTE_TOKEN, "remote-token")         /* no usable token file */        \
	X(INTERNAL, "internal-error")

enum stat_counter {
	STAT_DIRECT_HIT,
	STAT_MISS,
	STAT_MERGED,          /* waited for an identical in-flight compile */
#define X(name, str) STAT_UNCACHEABLE_##name,
	ARGS_REASON_LIST(X)
	STATS_UNCACHEABLE_EXTRA(X)
#undef X
#define X(name, str) STAT_FALLBACK_##name,
	STATS_FALLBACK_LIST(X)
#undef X
	STAT_REMOTE_HIT,      /* answered by the worker's action cache (one round trip) */
	STAT_REMOTE_EXECUTED, /* a miss compiled on the worker */
	STAT_REMOTE_COMPILE_FAILED, /* failed on the worker: compiled again locally */
	STAT_REMOTE_LOCAL_ONLY, /* not sent: no project root, -march=native, ... */
	STAT_REMOTE_BLOBS_UPLOADED,
	STAT_REMOTE_BYTES_UPLOADED, /* on the wire, compressed */
	STAT_CORRUPT_ENTRIES,
	STAT_FILES_STORED,
	STAT_EVICTED_FILES,
	STAT_CLEANUPS,
	STAT_CACHE_SIZE,      /* bytes on disk, maintained by the store */
	STAT_CACHE_FILES,
	STAT_N
};

#define STAT_FIRST_UNCACHEABLE STAT_UNCACHEABLE_NOT_COMPILE
#define STAT_LAST_UNCACHEABLE STAT_UNCACHEABLE_DISABLED
#define STAT_FIRST_FALLBACK STAT_FALLBACK_DAEMON_UNREACHABLE
#define STAT_LAST_FALLBACK STAT_FALLBACK_INTERNAL

struct stats {
	int64_t v[STAT_N];
};

const char *stats_name(enum stat_counter c);
static inline enum stat_counter stats_uncacheable_counter(enum args_reason r)
{
	return (enum stat_counter)(STAT_UNCACHEABLE_NOT_COMPILE + r);
}

/* Adds delta to the file's counters (creating it), under an exclusive flock. */
int stats_add_file(const char *path, const struct stats *delta);
int stats_read_file(const char *path, struct stats *ret);
/* Zeroes every counter except the cache size and file count. */
int stats_zero_file(const char *path);
/* Human-readable or JSON rendering. */
int stats_format(const struct stats *s, bool json, uint64_t max_size, const char *dir, struct buf *out);
bool stats_is_empty(const struct stats *s);
