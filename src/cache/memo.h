/*
 * The daemon's digest memo: file path -> SHA-256, valid while the file's
 * (device, inode, size, mtime, ctime) are unchanged. A file modified within
 * the last second is never memoised, since a second write in the same
 * timestamp tick would go unnoticed. Thread-safe; bounded in entries.
 */
#pragma once

#include <stdbool.h>
#include <sys/stat.h>

#include "digest.h"

#define MEMO_MAX_ENTRIES (1u << 20)
#define MEMO_MAX_FILE_SIZE ((uint64_t)1 << 31)

struct memo;

struct memo *memo_new(void);
void memo_free(struct memo *m);

struct file_digest {
	struct digest digest;
	bool time_macros;      /* __DATE__ or __TIME__ */
	bool timestamp_macro;  /* __TIMESTAMP__ */
	struct stat st;     /* the stat the digest belongs to */
};

/* Digests path, from the memo when its stat matches (m may be NULL: then it
 * always reads the file). Counts memo hits for tests and `daemon status`. */
int memo_digest(struct memo *m, const char *path, struct file_digest *ret);
void memo_counters(struct memo *m, uint64_t *ret_hits, uint64_t *ret_misses, uint64_t *ret_entries);
