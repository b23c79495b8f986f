/*
 * The worker's audit log (DESIGN §5, docs/audit.md): one row for every
 * answer the worker gives to a compile (an Execute, a Probe that sends a
 * result, a Reproduce), appended and made durable (fdatasync) before the
 * answer goes out. Each row carries its sequence number and the SHA-256
 * of the row before it, so a removed, inserted, reordered or edited row
 * breaks the chain (`hpcc audit verify`). The row format is auditfmt.h's.
 *
 * The log is a directory: current.tsv, the live segment, and sealed
 * segments segment-<first seq>.tsv (read-only, each ending in a seal line).
 * current.tsv is sealed and renamed when it grows past segment_size bytes
 * or its first row is older than segment_age; the chain and the sequence
 * continue into the next segment. Concurrent appenders share one
 * fdatasync (group commit).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auditfmt.h"
#include "error.h"
#include "strv.h"

struct audit_row {
	const char *image;          /* sha256:<hex> */
	const char *source_digest;  /* sha256:<hex> or "-" */
	const char *flags;          /* the command, root-relative */
	const char *output_digest;  /* sha256:<hex> of the object, or "-" */
	const char *tenant;
	const char *worker;
	const char *vm;             /* "unsafe-local", "vm-000001@qemu-tcg" */
	int64_t duration_ms;
	int exit_code;
	const char *action_digest;  /* sha256:<hex> */
	const char *cache;          /* "hit", "miss" (ran, not stored) or "store" (ran and stored) */
};

#define AUDIT_SEGMENT_SIZE_DEFAULT ((uint64_t)64 << 20)
#define AUDIT_SEGMENT_AGE_DEFAULT 86400

struct audit_options {
	uint64_t segment_size;      /* 0: AUDIT_SEGMENT_SIZE_DEFAULT */
	int64_t segment_age_s;      /* 0: AUDIT_SEGMENT_AGE_DEFAULT */
	/* Tests only: the clock, in microseconds since the epoch (NULL: CLOCK_REALTIME). */
	int64_t (*now_us)(void);
};

struct audit_log;

/* dir: the audit directory (created 0700 if missing). Recovers from a
 * crash: cuts a torn last line, finishes a sealed current.tsv, writes a
 * missing header, and continues seq and chain from the last row. */
int audit_open(const char *dir, const struct audit_options *o, struct audit_log **ret, struct error *err);
/* Appends one row, durable on return. ret_line (may be NULL): the row as
 * written, without newline, malloc'd (the caller frees). Thread-safe.
 * After a failed fdatasync every later append fails. */
int audit_append(struct audit_log *l, const struct audit_row *row, char **ret_line, struct error *err);
void audit_close(struct audit_log *l);

/* Since open: rows appended, fdatasyncs run for them (fewer than rows when
 * concurrent appends share one), and the time appenders spent in
 * audit_append, from building the row to its sync (what an answer waits). */
struct audit_stats {
	uint64_t rows, syncs, append_us;
};
void audit_get_stats(struct audit_log *l, struct audit_stats *ret);
/* Sealed segments that audit_search reads, the newest ones. */
#define AUDIT_SEARCH_SEGMENTS 16

/* Rows of `tenant` in dir's newest AUDIT_SEARCH_SEGMENTS sealed segments
 * and current.tsv, in log order, matching prefix (audit_row_matches); at
 * most max rows — the LAST max matches, *ret_truncated set when more
 * matched. Lines as stored. Any token holder can ask (AuditRows), so the
 * work is bounded: rows older than the newest 16 segments are found with
 * hpcc audit verify / grep on the worker, not through here. Reads files
 * with a bounded line length; a malformed line is skipped. Safe to call
 * while another thread appends (read what is there). -EINVAL for a prefix
 * that is not at least 4 hex digits. */
int audit_search(const char *dir, const char *tenant, const char *prefix, size_t max, struct strv *ret_lines,
		 bool *ret_truncated, struct error *err);
