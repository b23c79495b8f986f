/*
 * The local store: one file per entry under <dir>/store/<hh>/, each a small
 * header (magic, version, kind, payload size, SHA-256 of the payload) and a
 * zstd frame. Writes go through a temporary file and a rename, so concurrent
 * wrappers never see half an entry; every read checks size and digest, and a
 * corrupt entry is removed and reported as a miss. A hit refreshes the file's
 * mtime, which is what LRU eviction sorts by.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"
#include "digest.h"
#include "stats.h"

/* Local cache: results and manifests. Worker: blobs (CAS, keyed by their
 * own digest), action results (keyed by the action digest) and the actions
 * it ran, retained for `hpcc reproduce` (keyed by the action digest). */
enum store_kind { STORE_RESULT = 'r', STORE_MANIFEST = 'm', STORE_BLOB = 'b', STORE_ACTION = 'a', STORE_COMMAND = 'c' };

#define STORE_MAX_PAYLOAD ((size_t)1 << 30)

struct store {
	char *dir;          /* the cache directory */
	char *store_dir;    /* <dir>/store */
	uint64_t max_size;
	int level;
};

int store_init(struct store *s, const char *dir, uint64_t max_size, int level);
void store_free(struct store *s);

/* Reads an entry's payload: 0, -ENOENT (miss, including a corrupt entry that
 * was removed: then delta's corrupt counter moves), or another -errno. */
int store_get(const struct store *s, enum store_kind kind, const struct digest *key, size_t max,
	      struct buf *payload, struct stats *delta);
int store_put(const struct store *s, enum store_kind kind, const struct digest *key, const void *payload,
	      size_t n, struct stats *delta);
/* Whether an entry exists (a stat; its content is checked when read). */
bool store_contains(const struct store *s, enum store_kind kind, const struct digest *key);
int store_remove(const struct store *s, enum store_kind kind, const struct digest *key, struct stats *delta);
/* Evicts least recently used entries until the store holds at most target
 * bytes; sets *ret_size and *ret_files to what remains (exact, from a scan). */
int store_cleanup(const struct store *s, uint64_t target, uint64_t *ret_size, uint64_t *ret_files,
		  uint64_t *ret_evicted);
/* The same, but entries used (read or written) at or after keep_after are
 * never evicted, even when that leaves the store over target: a worker
 * retains the inputs of the compiles it audited ([audit] retain). */
int store_cleanup_keep(const struct store *s, uint64_t target, time_t keep_after, uint64_t *ret_size,
		       uint64_t *ret_files, uint64_t *ret_evicted);
