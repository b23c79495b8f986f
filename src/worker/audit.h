/*
 * The worker's audit log (DESIGN §5): one row per compile the worker
 * answers by Execute, appended to an append-only TSV and made durable
 * (fdatasync) before the answer goes out. Each row ends with the SHA-256 of
 * the row before it, so a removed or edited row breaks the chain. This is
 * the writer; inspecting, verifying and reproducing rows are `hpcc audit`,
 * `hpcc inspect` and `hpcc reproduce` (docs/audit.md).
 *
 * Columns: time image_digest source_digest flags output_digest tenant
 * worker vm duration_ms exit action_digest cache prev_row_hash. Fields are
 * escaped (backslash, tab, newline, CR as \\ \t \n \r, other control bytes
 * as \xNN), so a row is one line and prints safely on a terminal.
 */
#pragma once

#include <stdint.h>

#include "error.h"

#define AUDIT_ROW_MAX (1024 * 1024)
/* The flags column's share of a row (escaping may take 4 bytes per byte);
 * a longer command is refused. */
#define AUDIT_FLAGS_MAX (AUDIT_ROW_MAX / 4 - 4096)

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

struct audit_log;

/* Opens (creates, 0600) the log and reads the hash of its last row. */
int audit_open(const char *path, struct audit_log **ret, struct error *err);
/* Appends one row and fdatasyncs it. Thread-safe. */
int audit_append(struct audit_log *l, const struct audit_row *row, struct error *err);
void audit_close(struct audit_log *l);
