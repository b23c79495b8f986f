/*
 * The worker's audit log format, v2 (DESIGN §5, docs/audit.md), shared by
 * the writer (src/worker/audit.c) and `hpcc audit verify`: one row per line,
 * 14 tab-separated escaped columns, the last two being the row's sequence
 * number and the SHA-256 of the previous row's bytes, so that a removed,
 * inserted, reordered or edited row breaks the chain. Each segment file
 * starts with a header line; a sealed segment ends with a seal line.
 *
 * This file has the row parser, the escaping, digest-prefix matching, a
 * bounded line reader, and the verifier: a state machine fed one line at a
 * time that says which kind of tampering broke the chain where. It needs
 * neither grpc nor threads, so the client links it and it can be fuzzed.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "error.h"

#define AUDIT_FORMAT_VERSION 2
#define AUDIT_ROW_MAX (1024 * 1024)           /* one row's bytes, newline excluded */
/* The flags column's share of a row (escaping may take 4 bytes per byte);
 * a longer command is refused. */
#define AUDIT_FLAGS_MAX (AUDIT_ROW_MAX / 4 - 4096)

enum audit_col {
	AUDIT_COL_TIME,
	AUDIT_COL_IMAGE,
	AUDIT_COL_SOURCE,
	AUDIT_COL_FLAGS,
	AUDIT_COL_OUTPUT,
	AUDIT_COL_TENANT,
	AUDIT_COL_WORKER,
	AUDIT_COL_VM,
	AUDIT_COL_DURATION,
	AUDIT_COL_EXIT,
	AUDIT_COL_ACTION,
	AUDIT_COL_CACHE,
	AUDIT_COL_SEQ,
	AUDIT_COL_PREV,
	AUDIT_NCOLS
};

extern const char *const audit_col_names[AUDIT_NCOLS];   /* "time", "image_digest", ... */

struct audit_parsed {
	char *col[AUDIT_NCOLS];             /* unescaped, NUL-terminated; "-" stays "-" */
	uint64_t seq;                       /* 0 for a v1 row (which has no seq column) */
	char hash[65];                      /* this row's hash: hex SHA-256 of the raw line */
};

/* Parses one v2 row (line without its newline; len <= AUDIT_ROW_MAX): 0, or
 * -EINVAL with a one-line reason in err. Checks column count, digests' shape
 * (sha256:<64 hex> or "-"), numbers, cache value (hit|miss|store), prev hex. */
int audit_parse_row(const char *line, size_t len, struct audit_parsed *ret, struct error *err);
/* The same for a v1 row (13 columns, no seq: col[AUDIT_COL_SEQ] is NULL). */
int audit_parse_row_v1(const char *line, size_t len, struct audit_parsed *ret, struct error *err);
void audit_parsed_free(struct audit_parsed *p);
/* Appends s escaped as a field ("-" for NULL or empty): backslash, tab,
 * newline and CR as \\ \t \n \r, other control bytes and DEL as \xNN. */
int audit_escape_append(struct buf *b, const char *s);
/* Whether any of the row's digests (image, source, output, action, or the
 * row's own hash) starts with prefix; prefix is hex, optionally
 * "sha256:"-prefixed, case-insensitive, at least 4 hex digits (shorter: false). */
bool audit_row_matches(const struct audit_parsed *p, const char *prefix);
/* Whether prefix is one that audit_row_matches can match. */
bool audit_prefix_valid(const char *prefix);
/* The header line (without newline). */
const char *audit_header_line(void);

/* The seal line that ends a sealed segment:
 * "#sealed\trows=N\tfirst_seq=A\tlast_seq=B\tlast_hash=<hex>". */
struct audit_seal {
	uint64_t rows, first_seq, last_seq;
	char last_hash[65];
};
#define AUDIT_SEAL_PREFIX "#sealed\t"
int audit_seal_format(const struct audit_seal *s, struct buf *b);
int audit_seal_parse(const char *line, size_t len, struct audit_seal *ret);
/* A sealed segment is named "segment-<first seq, exactly 12 digits>.tsv",
 * so that names sort as seqs do and one seq has one name; a log does not
 * rotate past seq AUDIT_SEGMENT_SEQ_MAX. */
#define AUDIT_SEGMENT_SEQ_MAX 999999999999ULL
#define AUDIT_SEGMENT_NAME_MAX 32   /* "segment-" 12 digits ".tsv" NUL is 25 */
/* The name of the segment that starts at first_seq (1..AUDIT_SEGMENT_SEQ_MAX). */
void audit_segment_name(uint64_t first_seq, char out[AUDIT_SEGMENT_NAME_MAX]);
/* A segment name (or a path ending in one): 0 and the seq, or -EINVAL. */
int audit_segment_name_parse(const char *name, uint64_t *ret_first_seq);
#define AUDIT_CURRENT_NAME "current.tsv"
#define AUDIT_SEGMENTS_MAX 10000000   /* segments listed in one directory */
/* The sealed segments in dir, by first seq ascending (*ret_seqs malloc'd,
 * NULL when there are none), and whether dir holds current.tsv. 0 or a
 * negative errno (-E2BIG past AUDIT_SEGMENTS_MAX). */
int audit_list_segments(const char *dir, uint64_t **ret_seqs, size_t *ret_n, bool *ret_has_current);

/* A bounded line reader: a line longer than AUDIT_ROW_MAX is skipped and
 * reported, so no input makes it hold more than one row in memory. */
struct audit_reader {
	int fd;
	char *buf;
	size_t start, end, cap;
	bool eof;
	size_t torn;   /* at the end: bytes after the last newline */
};
int audit_reader_init(struct audit_reader *r, int fd);
/* 1 and the next line (without newline; *ret_line is NULL for a line
 * longer than AUDIT_ROW_MAX, *ret_len then its length), 0 at the end,
 * or a negative errno. The line is valid until the next call. */
int audit_reader_next(struct audit_reader *r, const char **ret_line, size_t *ret_len);
void audit_reader_free(struct audit_reader *r);

/* The verifier (hpcc audit verify): files are given in log order, their
 * lines one by one. Each problem found gets one message naming the file,
 * the line and the seq, and a kind, so that tests and tools can tell an
 * inserted row from an edited one. */
enum audit_problem_kind {
	AUDIT_PROBLEM_EDITED,          /* a row's bytes changed */
	AUDIT_PROBLEM_INVALID,         /* a line that is not a row (edited?) */
	AUDIT_PROBLEM_REMOVED,         /* rows missing inside a file */
	AUDIT_PROBLEM_INSERTED,        /* a row the chain goes around */
	AUDIT_PROBLEM_REORDERED,       /* a row that chains after a row other than its predecessor */
	AUDIT_PROBLEM_SEGMENT_MISSING, /* a whole sealed segment (or the log's start) absent */
	AUDIT_PROBLEM_SEAL,            /* a seal that does not match its segment, or is missing */
	AUDIT_PROBLEM_AFTER_SEAL,      /* lines after a seal line */
	AUDIT_PROBLEM_HEADER,          /* no header line, or an unknown version */
	AUDIT_PROBLEM_BREAK,           /* a v1 file's chain broke (v1 rows have no seq to say how) */
	AUDIT_PROBLEM_KINDS
};

#define AUDIT_VERIFY_SHOWN_MAX 20      /* problems kept with their message */
#define AUDIT_VERIFY_NOTES_MAX 8
#define AUDIT_VERIFY_MAP_MAX 100000    /* rows remembered for reorder detection */

struct audit_problem {
	enum audit_problem_kind kind;
	char msg[320];
};

struct audit_verify_summary {
	uint64_t rows, files, first_seq, last_seq;
	char last_hash[65];             /* the last row's hash ("" with no rows) */
	bool v1;                        /* a v1 file was verified (no seq) */
	uint64_t problems;              /* all of them; the first ones are in shown */
	uint64_t kind_count[AUDIT_PROBLEM_KINDS];
	struct audit_problem shown[AUDIT_VERIFY_SHOWN_MAX];
	size_t n_shown;
	char notes[AUDIT_VERIFY_NOTES_MAX][320]; /* remarks that are not failures */
	size_t n_notes;
};

struct audit_verifier;
/* whole_log: the files are a whole log directory, which starts at seq 1;
 * otherwise a single file whose first row may start anywhere. */
int audit_verifier_new(bool whole_log, struct audit_verifier **ret);
void audit_verifier_free(struct audit_verifier *v);
/* name: for messages, and its basename says the file's role
 * (segment-<seq>.tsv, current.tsv, anything else: a lone file). */
int audit_verifier_begin_file(struct audit_verifier *v, const char *name);
/* One line without its newline; line NULL when it was longer than
 * AUDIT_ROW_MAX (len its length). */
void audit_verifier_line(struct audit_verifier *v, const char *line, size_t len);
/* torn: bytes after the file's last newline. */
void audit_verifier_end_file(struct audit_verifier *v, size_t torn);
/* After the last file: settles what was pending. */
const struct audit_verify_summary *audit_verifier_finish(struct audit_verifier *v);
const char *audit_problem_kind_name(enum audit_problem_kind k);
