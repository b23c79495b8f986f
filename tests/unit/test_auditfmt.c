/*
 * Unit tests for the audit log format (src/common/auditfmt.c): escaping
 * survives a round trip through a row, the row parser accepts a good row
 * and refuses each kind of bad one, digest-prefix matching, the bounded
 * line reader, and the verifier: an intact log (one file or segments) is
 * OK, and each kind of tampering (an edited column of every kind, a removed
 * first/middle/last-but-one row, an inserted row with a correct prev before
 * or after the real one, a replayed copy of a row, two swapped rows, a
 * missing sealed segment, a tampered or cut seal, rows after a seal, a bad
 * header, an overlong line) is reported once, as exactly that kind;
 * adjacent edited rows are each named; a v1 file is verified as v1.
 * Segment names have exactly 12 digits and are listed in seq order.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auditfmt.h"
#include "buf.h"
#include "digest.h"
#include "testutil.h"

#define ZEROS "0000000000000000000000000000000000000000000000000000000000000000"
#define D(c) "sha256:" c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c \
	c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c

#define NROWS_MAX 64

static void hash_hex(const char *line, char out[65])
{
	struct digest d;
	assert_int_equal(digest_bytes(line, strlen(line), &d), 0);
	digest_to_hex(&d, out);
}

/* One v2 row; columns given as an array so that tests can change one. */
static char *row_from(char *const cols[AUDIT_NCOLS])
{
	struct buf b;
	buf_init(&b, AUDIT_ROW_MAX);
	for (size_t i = 0; i < AUDIT_NCOLS; i++) {
		if (i)
			assert_int_equal(buf_append_char(&b, '\t'), 0);
		assert_int_equal(buf_append_str(&b, cols[i]), 0);
	}
	return buf_steal(&b);
}

static void default_cols(char *cols[AUDIT_NCOLS], uint64_t seq, const char *prev, char *seqbuf, char *action)
{
	snprintf(seqbuf, 24, "%llu", (unsigned long long)seq);
	snprintf(action, 80, "sha256:%064llx", (unsigned long long)seq);
	char *c[AUDIT_NCOLS] = { "2026-12-05T06:00:00.000001Z", D("1"), D("2"), "gcc -c a.c -o a.o", D("3"), "alpha", "w1",
				 "unsafe-local", "42", "0", action, "store", seqbuf, (char *)prev };
	memcpy(cols, c, sizeof(c));
}

static char *make_row(uint64_t seq, const char *prev)
{
	char seqbuf[24], action[80];
	char *cols[AUDIT_NCOLS];
	default_cols(cols, seq, prev, seqbuf, action);
	return row_from(cols);
}

/* A chained log of n rows from seq first (prev: the hash before it). */
struct log {
	char *rows[NROWS_MAX];
	size_t n;
};

static void make_log(struct log *l, size_t n, uint64_t first, const char *prev_in)
{
	char prev[65];
	memcpy(prev, prev_in, 65);
	l->n = n;
	for (size_t i = 0; i < n; i++) {
		l->rows[i] = make_row(first + i, prev);
		hash_hex(l->rows[i], prev);
	}
}

static void log_free(struct log *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->rows[i]);
	l->n = 0;
}

/* The text of a file: the header, rows [from, to), a seal if asked. */
static char *file_text(const struct log *l, size_t from, size_t to, bool header, bool seal)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	if (header)
		assert_int_equal(buf_printf(&b, "%s\n", audit_header_line()), 0);
	for (size_t i = from; i < to; i++)
		assert_int_equal(buf_printf(&b, "%s\n", l->rows[i]), 0);
	if (seal) {
		struct audit_parsed first, last;
		assert_int_equal(audit_parse_row(l->rows[from], strlen(l->rows[from]), &first, NULL), 0);
		assert_int_equal(audit_parse_row(l->rows[to - 1], strlen(l->rows[to - 1]), &last, NULL), 0);
		struct audit_seal s = { .rows = to - from, .first_seq = first.seq, .last_seq = last.seq };
		memcpy(s.last_hash, last.hash, 65);
		assert_int_equal(audit_seal_format(&s, &b), 0);
		assert_int_equal(buf_append_char(&b, '\n'), 0);
		audit_parsed_free(&first);
		audit_parsed_free(&last);
	}
	return buf_steal(&b);
}

static void feed(struct audit_verifier *v, const char *name, const char *text)
{
	assert_int_equal(audit_verifier_begin_file(v, name), 0);
	const char *p = text;
	for (const char *nl; (nl = strchr(p, '\n')); p = nl + 1)
		audit_verifier_line(v, p, (size_t)(nl - p));
	audit_verifier_end_file(v, strlen(p));
}

static struct audit_verify_summary sum;

/* Verifies files given as name, text pairs (NULL-terminated). */
static const struct audit_verify_summary *verify(bool whole, ...)
{
	struct audit_verifier *v = NULL;
	assert_int_equal(audit_verifier_new(whole, &v), 0);
	va_list ap;
	va_start(ap, whole);
	for (const char *name; (name = va_arg(ap, const char *));)
		feed(v, name, va_arg(ap, const char *));
	va_end(ap);
	sum = *audit_verifier_finish(v);
	audit_verifier_free(v);
	return &sum;
}

static void print_problems(const struct audit_verify_summary *s)
{
	for (size_t i = 0; i < s->n_shown; i++)
		print_message("  %s: %s\n", audit_problem_kind_name(s->shown[i].kind), s->shown[i].msg);
}

/* Exactly one problem, of this kind, whose message holds text. */
static void assert_one(const struct audit_verify_summary *s, enum audit_problem_kind kind, const char *text)
{
	if (s->problems != 1 || s->shown[0].kind != kind || !strstr(s->shown[0].msg, text)) {
		print_message("expected one %s problem with '%s', got %llu:\n", audit_problem_kind_name(kind), text,
			      (unsigned long long)s->problems);
		print_problems(s);
		fail();
	}
}

/* ---- rows ---------------------------------------------------------------- */

static void test_escape_round_trip(void **state)
{
	(void)state;
	const char *nasty = "gcc -DX=\"a\tb\" -c\nnew line \\ back \x1b[31m\r\x7f end";
	struct buf b;
	buf_init(&b, 4096);
	assert_int_equal(audit_escape_append(&b, nasty), 0);
	assert_string_equal(b.data, "gcc -DX=\"a\\tb\" -c\\nnew line \\\\ back \\x1b[31m\\r\\x7f end");
	char seqbuf[24], action[80];
	char *cols[AUDIT_NCOLS];
	default_cols(cols, 1, ZEROS, seqbuf, action);
	cols[AUDIT_COL_FLAGS] = b.data;
	char *line = row_from(cols);
	struct audit_parsed p;
	struct error err = { 0 };
	assert_int_equal(audit_parse_row(line, strlen(line), &p, &err), 0);
	assert_string_equal(p.col[AUDIT_COL_FLAGS], nasty);
	assert_string_equal(p.col[AUDIT_COL_TENANT], "alpha");
	assert_int_equal(p.seq, 1);
	char h[65];
	hash_hex(line, h);
	assert_string_equal(p.hash, h);
	audit_parsed_free(&p);
	free(line);
	/* NULL and empty are "-". */
	buf_reset(&b);
	assert_int_equal(audit_escape_append(&b, NULL), 0);
	assert_int_equal(audit_escape_append(&b, ""), 0);
	assert_string_equal(b.data, "--");
	buf_free(&b);
	/* The header names the 14 columns in order. */
	const char *hdr = audit_header_line();
	assert_true(strncmp(hdr, "#hpcc-audit v2\ttime\timage_digest\t", 33) == 0);
	assert_non_null(strstr(hdr, "\tcache\tseq\tprev_row_hash"));
	assert_string_equal(audit_col_names[AUDIT_COL_SEQ], "seq");
}

static void test_parse_refusals(void **state)
{
	(void)state;
	static const struct {
		enum audit_col col;
		const char *value;
		const char *reason;
	} bad[] = {
		{ AUDIT_COL_TIME, "2026-12-05 06:00:00", "time" },
		{ AUDIT_COL_IMAGE, "sha256:1234", "image_digest" },
		{ AUDIT_COL_SOURCE, "md5:" "0123456789abcdef0123456789abcdef", "source_digest" },
		{ AUDIT_COL_OUTPUT, D("A"), "output_digest" },
		{ AUDIT_COL_ACTION, "", "empty" },
		{ AUDIT_COL_DURATION, "12ms", "duration" },
		{ AUDIT_COL_DURATION, "-5", "duration" },
		{ AUDIT_COL_EXIT, "x", "exit" },
		{ AUDIT_COL_CACHE, "maybe", "cache" },
		{ AUDIT_COL_SEQ, "0", "seq" },
		{ AUDIT_COL_SEQ, "12a", "seq" },
		{ AUDIT_COL_PREV, "1234", "prev_row_hash" },
		{ AUDIT_COL_PREV, "ABCDEF0000000000000000000000000000000000000000000000000000000000", "prev_row_hash" },
		{ AUDIT_COL_FLAGS, "bad escape \\q", "escape" },
		{ AUDIT_COL_FLAGS, "nul \\x00", "escape" },
		{ AUDIT_COL_FLAGS, "raw \x1b control", "control" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char seqbuf[24], action[80];
		char *cols[AUDIT_NCOLS];
		default_cols(cols, 3, ZEROS, seqbuf, action);
		cols[bad[i].col] = (char *)bad[i].value;
		char *line = row_from(cols);
		struct audit_parsed p;
		struct error err = { 0 };
		assert_int_equal(audit_parse_row(line, strlen(line), &p, &err), -EINVAL);
		if (!strstr(err.msg, bad[i].reason)) {
			print_message("case %zu: '%s' does not name %s\n", i, err.msg, bad[i].reason);
			fail();
		}
		free(line);
	}
	/* Too few and too many columns; a v1 row is not a v2 row. */
	char *line = make_row(1, ZEROS);
	struct audit_parsed p;
	struct error err = { 0 };
	char *cut = strrchr(line, '\t');
	assert_int_equal(audit_parse_row(line, (size_t)(cut - line), &p, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "13 columns"));
	assert_int_equal(audit_parse_row_v1(line, strlen(line), &p, NULL), -EINVAL);
	/* The v1 reader takes 13 columns, prev last. */
	char *seq = cut - 2; /* "\t1\t<prev>": drop the seq column */
	assert_int_equal(seq[0], '\t');
	memmove(seq, seq + 2, strlen(seq + 2) + 1);
	assert_int_equal(audit_parse_row_v1(line, strlen(line), &p, NULL), 0);
	assert_string_equal(p.col[AUDIT_COL_PREV], ZEROS);
	assert_null(p.col[AUDIT_COL_SEQ]);
	assert_int_equal(p.seq, 0);
	audit_parsed_free(&p);
	free(line);
}

static void test_matches(void **state)
{
	(void)state;
	char *line = make_row(7, ZEROS);
	struct audit_parsed p;
	assert_int_equal(audit_parse_row(line, strlen(line), &p, NULL), 0);
	assert_true(audit_row_matches(&p, "1111"));                 /* image */
	assert_true(audit_row_matches(&p, "sha256:2222"));          /* source */
	assert_true(audit_row_matches(&p, "SHA256:3333333"));       /* output, any case */
	assert_true(audit_row_matches(&p, "00000000000000"));       /* action sha256:000...07 */
	char prefix[16];
	memcpy(prefix, p.hash, 6);
	prefix[6] = '\0';
	for (char *c = prefix; *c; c++)
		if (*c >= 'a' && *c <= 'f')
			*c = (char)(*c - 'a' + 'A');
	assert_true(audit_row_matches(&p, prefix));                 /* the row's own hash, uppercase */
	assert_false(audit_row_matches(&p, "111"));                 /* too short */
	assert_false(audit_row_matches(&p, "4444"));                /* no such digest */
	assert_false(audit_row_matches(&p, "11g1"));                /* not hex */
	assert_false(audit_row_matches(&p, "sha256:"));
	assert_false(audit_prefix_valid("abc"));
	assert_true(audit_prefix_valid("abcd"));
	audit_parsed_free(&p);
	free(line);
}

static void test_reader(void **state)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/lines", (char *)*state);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	size_t big = AUDIT_ROW_MAX + 100000;
	char *long_line = malloc(big);
	memset(long_line, 'x', big);
	assert_int_equal(write(fd, "one\n", 4), 4);
	assert_int_equal(write(fd, long_line, big), (ssize_t)big);
	assert_int_equal(write(fd, "\ntwo\ntorn", 9), 9);
	free(long_line);
	lseek(fd, 0, SEEK_SET);
	struct audit_reader r;
	assert_int_equal(audit_reader_init(&r, fd), 0);
	const char *line;
	size_t len;
	assert_int_equal(audit_reader_next(&r, &line, &len), 1);
	assert_int_equal(len, 3);
	assert_memory_equal(line, "one", 3);
	assert_int_equal(audit_reader_next(&r, &line, &len), 1);
	assert_null(line);
	assert_int_equal(len, big);
	assert_int_equal(audit_reader_next(&r, &line, &len), 1);
	assert_memory_equal(line, "two", 3);
	assert_int_equal(audit_reader_next(&r, &line, &len), 0);
	assert_int_equal(r.torn, 4);
	audit_reader_free(&r);
	close(fd);
}

/* ---- the verifier ------------------------------------------------------ */

static void test_verify_intact(void **state)
{
	(void)state;
	struct log l;
	make_log(&l, 10, 1, ZEROS);
	char *text = file_text(&l, 0, 10, true, false);
	const struct audit_verify_summary *s = verify(true, "d/current.tsv", text, NULL);
	print_problems(s);
	assert_int_equal(s->problems, 0);
	assert_int_equal(s->rows, 10);
	assert_int_equal(s->first_seq, 1);
	assert_int_equal(s->last_seq, 10);
	char h[65];
	hash_hex(l.rows[9], h);
	assert_string_equal(s->last_hash, h);
	/* A torn last line is a note, not a failure. */
	char *torn = NULL;
	assert_true(asprintf(&torn, "%s2026-12-05T06:00", text) > 0);
	s = verify(true, "d/current.tsv", torn, NULL);
	assert_int_equal(s->problems, 0);
	assert_int_equal(s->n_notes, 1);
	assert_non_null(strstr(s->notes[0], "unfinished"));
	free(torn);
	free(text);
	log_free(&l);
}

/* Row 5 (file line 6) with one column changed to another valid value. */
static void test_verify_edited(void **state)
{
	(void)state;
	static const struct {
		enum audit_col col;
		const char *value;
	} edits[] = {
		{ AUDIT_COL_TIME, "2026-12-05T06:00:00.000002Z" },
		{ AUDIT_COL_IMAGE, D("9") },
		{ AUDIT_COL_SOURCE, "-" },
		{ AUDIT_COL_FLAGS, "gcc -c evil.c -o a.o" },
		{ AUDIT_COL_OUTPUT, D("8") },
		{ AUDIT_COL_TENANT, "beta" },
		{ AUDIT_COL_WORKER, "w2" },
		{ AUDIT_COL_VM, "vm-000002@qemu-kvm" },
		{ AUDIT_COL_DURATION, "1" },
		{ AUDIT_COL_EXIT, "1" },
		{ AUDIT_COL_ACTION, D("7") },
		{ AUDIT_COL_CACHE, "hit" },
		{ AUDIT_COL_SEQ, "50" },
		{ AUDIT_COL_PREV, "1111111111111111111111111111111111111111111111111111111111111111" },
	};
	for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		struct log l;
		make_log(&l, 10, 1, ZEROS);
		struct audit_parsed p;
		assert_int_equal(audit_parse_row(l.rows[4], strlen(l.rows[4]), &p, NULL), 0);
		char *cols[AUDIT_NCOLS];
		memcpy(cols, p.col, sizeof(cols));
		cols[edits[i].col] = (char *)edits[i].value;
		free(l.rows[4]);
		l.rows[4] = row_from(cols);
		audit_parsed_free(&p);
		char *text = file_text(&l, 0, 10, true, false);
		const struct audit_verify_summary *s = verify(true, "d/current.tsv", text, NULL);
		print_message("edit of %s:\n", audit_col_names[edits[i].col]);
		assert_one(s, AUDIT_PROBLEM_EDITED, "d/current.tsv:6 (seq ");
		free(text);
		log_free(&l);
	}
	/* An edit that leaves no valid row. */
	struct log l;
	make_log(&l, 10, 1, ZEROS);
	l.rows[4][strlen(l.rows[4]) - 70] = 'Z';  /* inside the action digest */
	char *text = file_text(&l, 0, 10, true, false);
	assert_one(verify(true, "d/current.tsv", text, NULL), AUDIT_PROBLEM_INVALID, "d/current.tsv:6 is not a valid row");
	free(text);
	log_free(&l);
}

static void test_verify_removed(void **state)
{
	(void)state;
	static const struct {
		size_t index;
		const char *text;
	} cases[] = {
		{ 0, "before d/current.tsv:2 (seq 1..1 missing)" },
		{ 4, "before d/current.tsv:6 (seq 5..5 missing)" },
		{ 8, "before d/current.tsv:10 (seq 9..9 missing)" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct log l;
		make_log(&l, 10, 1, ZEROS);
		free(l.rows[cases[i].index]);
		memmove(&l.rows[cases[i].index], &l.rows[cases[i].index + 1], (9 - cases[i].index) * sizeof(char *));
		l.n = 9;
		char *text = file_text(&l, 0, 9, true, false);
		assert_one(verify(true, "d/current.tsv", text, NULL), AUDIT_PROBLEM_REMOVED, cases[i].text);
		free(text);
		log_free(&l);
	}
	/* Two adjacent rows removed: one message for both. */
	struct log l;
	make_log(&l, 10, 1, ZEROS);
	free(l.rows[4]);
	free(l.rows[5]);
	memmove(&l.rows[4], &l.rows[6], 4 * sizeof(char *));
	l.n = 8;
	char *text = file_text(&l, 0, 8, true, false);
	assert_one(verify(true, "d/current.tsv", text, NULL), AUDIT_PROBLEM_REMOVED, "2 row(s) removed before d/current.tsv:6 (seq 5..6");
	free(text);
	log_free(&l);
}

static void test_verify_inserted(void **state)
{
	(void)state;
	struct log l;
	make_log(&l, 10, 1, ZEROS);
	/* A forged row after row 4 that records row 4's hash and seq 5: it
	 * links correctly itself; only the row after it betrays it. */
	char prev[65];
	hash_hex(l.rows[3], prev);
	char seqbuf[24], action[80];
	char *cols[AUDIT_NCOLS];
	default_cols(cols, 5, prev, seqbuf, action);
	cols[AUDIT_COL_OUTPUT] = D("e");
	char *forged = row_from(cols);
	memmove(&l.rows[5], &l.rows[4], 6 * sizeof(char *));
	l.rows[4] = forged;
	l.n = 11;
	char *text = file_text(&l, 0, 11, true, false);
	assert_one(verify(true, "d/current.tsv", text, NULL), AUDIT_PROBLEM_INSERTED,
		   "row at d/current.tsv:6 (seq 5) was inserted: the chain goes around it");
	free(text);
	/* The same with a wrong prev in the forged row. */
	free(l.rows[4]);
	cols[AUDIT_COL_PREV] = "2222222222222222222222222222222222222222222222222222222222222222";
	l.rows[4] = row_from(cols);
	text = file_text(&l, 0, 11, true, false);
	assert_one(verify(true, "d/current.tsv", text, NULL), AUDIT_PROBLEM_INSERTED, "d/current.tsv:6 (seq 5) was inserted");
	free(text);
	/* The forged row (right prev) after the real one: the next row chains
	 * after the real one, so the forged one is named, and nothing else. */
	free(l.rows[4]);
	cols[AUDIT_COL_PREV] = prev;
	l.rows[4] = l.rows[5];
	l.rows[5] = row_from(cols);
	text = file_text(&l, 0, 11, true, false);
	assert_one(verify(true, "d/current.tsv", text, NULL), AUDIT_PROBLEM_INSERTED,
		   "row at d/current.tsv:7 (seq 5) was inserted: the chain goes around it");
	free(text);
	/* With no row after the two, either may be the forged one: both named. */
	text = file_text(&l, 0, 6, true, false);
	assert_one(verify(true, "d/current.tsv", text, NULL), AUDIT_PROBLEM_INSERTED,
		   "row at d/current.tsv:6 or at d/current.tsv:7 (both seq 5) was inserted: both chain after line 5");
	free(text);
	log_free(&l);
}

/* A replayed row: an earlier line appended again, later or right after
 * itself, is a copy, not a reordering. */
static void test_verify_replayed(void **state)
{
	(void)state;
	struct log l;
	make_log(&l, 10, 1, ZEROS);
	char *text = file_text(&l, 0, 10, true, false);
	char *later = NULL;
	assert_true(asprintf(&later, "%s%s\n", text, l.rows[2]) > 0);
	assert_one(verify(true, "d/current.tsv", later, NULL), AUDIT_PROBLEM_INSERTED,
		   "row at d/current.tsv:12 (seq 3) was inserted: a copy of the row at d/current.tsv:4");
	free(later);
	free(text);
	char *dup = strdup(l.rows[4]);
	memmove(&l.rows[5], &l.rows[4], 6 * sizeof(char *));
	l.rows[4] = dup;
	l.n = 11;
	text = file_text(&l, 0, 11, true, false);
	assert_one(verify(true, "d/current.tsv", text, NULL), AUDIT_PROBLEM_INSERTED,
		   "row at d/current.tsv:7 (seq 5) was inserted: a copy of the row at d/current.tsv:6");
	free(text);
	log_free(&l);
}

/* Adjacent edited rows: every one is named, once. */
static void test_verify_adjacent_edits(void **state)
{
	(void)state;
	for (size_t count = 2; count <= 4; count++) {
		struct log l;
		make_log(&l, 10, 1, ZEROS);
		for (size_t i = 4; i < 4 + count; i++)
			memcpy(strstr(l.rows[i], "alpha"), "alphb", 5);
		char *text = file_text(&l, 0, 10, true, false);
		const struct audit_verify_summary *s = verify(true, "d/current.tsv", text, NULL);
		print_problems(s);
		assert_int_equal(s->problems, count);
		assert_int_equal(s->kind_count[AUDIT_PROBLEM_EDITED], count);
		for (size_t i = 4; i < 4 + count; i++) {
			char want[64];
			snprintf(want, sizeof(want), "d/current.tsv:%zu (seq %zu) was edited", i + 2, i + 1);
			bool found = false;
			for (size_t j = 0; j < s->n_shown; j++)
				found |= strstr(s->shown[j].msg, want) != NULL;
			if (!found) {
				print_message("%zu adjacent edits: no '%s'\n", count, want);
				fail();
			}
		}
		free(text);
		log_free(&l);
	}
}

/* Segment names: exactly 12 digits, built in one place, listed in seq order. */
static void test_segment_names(void **state)
{
	char name[AUDIT_SEGMENT_NAME_MAX];
	audit_segment_name(1, name);
	assert_string_equal(name, "segment-000000000001.tsv");
	audit_segment_name(AUDIT_SEGMENT_SEQ_MAX, name);
	assert_string_equal(name, "segment-999999999999.tsv");
	uint64_t seq = 0;
	assert_int_equal(audit_segment_name_parse("d/segment-000000004711.tsv", &seq), 0);
	assert_int_equal(seq, 4711);
	/* A 13-digit name would be read back under another name: refused. */
	assert_int_equal(audit_segment_name_parse("segment-0000000000001.tsv", &seq), -EINVAL);
	assert_int_equal(audit_segment_name_parse("segment-1000000000000.tsv", &seq), -EINVAL);
	assert_int_equal(audit_segment_name_parse("segment-00000000001.tsv", &seq), -EINVAL);
	assert_int_equal(audit_segment_name_parse("segment-000000000000.tsv", &seq), -EINVAL);
	assert_int_equal(audit_segment_name_parse("segment-000000000001.tsv.bak", &seq), -EINVAL);

	const char *dir = *state;
	static const char *const files[] = { "segment-000000000021.tsv", "segment-000000000001.tsv", "current.tsv",
					     "segment-000000000011.tsv", "segment-0000000000031.tsv", "notes.txt" };
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		assert_true(fd >= 0);
		close(fd);
	}
	uint64_t *seqs = NULL;
	size_t n = 0;
	bool current = false;
	assert_int_equal(audit_list_segments(dir, &seqs, &n, &current), 0);
	assert_int_equal(n, 3);
	assert_int_equal(seqs[0], 1);
	assert_int_equal(seqs[1], 11);
	assert_int_equal(seqs[2], 21);
	assert_true(current);
	free(seqs);
	char missing[4096];
	snprintf(missing, sizeof(missing), "%s/none", dir);
	assert_int_equal(audit_list_segments(missing, &seqs, &n, &current), -ENOENT);
}

static void test_verify_swapped(void **state)
{
	(void)state;
	struct log l;
	make_log(&l, 10, 1, ZEROS);
	char *t = l.rows[4];
	l.rows[4] = l.rows[5];
	l.rows[5] = t;
	char *text = file_text(&l, 0, 10, true, false);
	assert_one(verify(true, "d/current.tsv", text, NULL), AUDIT_PROBLEM_REORDERED,
		   "rows reordered: seq 6 at d/current.tsv:6 chains after line 7");
	free(text);
	log_free(&l);
}

/* 30 rows: segment 1..10, segment 11..20 (both sealed), current 21..30. */
static void test_verify_segments(void **state)
{
	(void)state;
	struct log l;
	make_log(&l, 30, 1, ZEROS);
	char *s1 = file_text(&l, 0, 10, true, true), *s2 = file_text(&l, 10, 20, true, true);
	char *cur = file_text(&l, 20, 30, true, false);
	const char *n1 = "d/segment-000000000001.tsv", *n2 = "d/segment-000000000011.tsv", *nc = "d/current.tsv";
	const struct audit_verify_summary *s = verify(true, n1, s1, n2, s2, nc, cur, NULL);
	print_problems(s);
	assert_int_equal(s->problems, 0);
	assert_int_equal(s->rows, 30);
	assert_int_equal(s->files, 3);
	assert_int_equal(s->last_seq, 30);

	/* A missing sealed segment, in the middle and at the start. */
	assert_one(verify(true, n1, s1, nc, cur, NULL), AUDIT_PROBLEM_REMOVED,
		   "seq 11..20 missing before d/current.tsv:2: a sealed segment, or the first rows of this file, were removed");
	char *s3 = file_text(&l, 20, 30, true, true);
	const char *n3 = "d/segment-000000000021.tsv";
	assert_one(verify(true, n1, s1, n3, s3, NULL), AUDIT_PROBLEM_SEGMENT_MISSING,
		   "seq 11..20 missing before d/segment-000000000021.tsv: a sealed segment was removed");
	assert_one(verify(true, n2, s2, nc, cur, NULL), AUDIT_PROBLEM_SEGMENT_MISSING, "first segment(s) were removed");

	/* A single segment is verified from where it starts: a note only. */
	s = verify(false, n2, s2, NULL);
	assert_int_equal(s->problems, 0);
	assert_int_equal(s->n_notes, 1);
	assert_non_null(strstr(s->notes[0], "starts at seq 11"));

	/* A tampered seal. */
	char *bad = strdup(s1);
	*strstr(bad, "rows=10") = 'R';
	s = verify(true, n1, bad, n2, s2, NULL);
	assert_one(s, AUDIT_PROBLEM_SEAL, "the seal line at d/segment-000000000001.tsv:12 does not parse");
	free(bad);
	bad = strdup(s1);
	memcpy(strstr(bad, "rows=10"), "rows=09", 7);
	assert_one(verify(true, n1, bad, n2, s2, NULL), AUDIT_PROBLEM_SEAL, "does not match the segment: it says rows=9");
	free(bad);
	/* The last row of a sealed segment edited: only the seal knew its hash. */
	bad = strdup(s1);
	char *row10 = strstr(bad, "\t10\t");
	while (row10[-1] != '\n')
		row10--;
	char *tenant = strstr(row10, "alpha");
	memcpy(tenant, "alphb", 5);
	assert_one(verify(true, n1, bad, n2, s2, nc, cur, NULL), AUDIT_PROBLEM_EDITED,
		   "d/segment-000000000001.tsv:11 (seq 10) was edited");
	free(bad);

	/* A sealed segment cut short (its last rows and seal gone). */
	char *cut = file_text(&l, 0, 8, true, false);
	s = verify(true, n1, cut, n2, s2, NULL);
	print_problems(s);
	assert_int_equal(s->problems, 2);
	assert_int_equal(s->kind_count[AUDIT_PROBLEM_SEAL], 1);
	assert_non_null(strstr(s->shown[0].msg, "has no seal line"));
	assert_int_equal(s->kind_count[AUDIT_PROBLEM_REMOVED], 1);
	free(cut);

	/* Rows after a seal. */
	char *after = NULL;
	assert_true(asprintf(&after, "%s%s\n", s1, l.rows[10]) > 0);
	assert_one(verify(true, n1, after, NULL), AUDIT_PROBLEM_AFTER_SEAL, "1 line(s) after the seal line at d/segment-000000000001.tsv:12");
	free(after);

	free(s1);
	free(s2);
	free(s3);
	free(cur);
	log_free(&l);
}

static void test_verify_v1(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 1 << 20);
	char prev[65] = ZEROS;
	char *rows[5];
	for (int i = 0; i < 5; i++) {
		char seqbuf[24], action[80];
		char *cols[AUDIT_NCOLS];
		default_cols(cols, (uint64_t)i + 1, prev, seqbuf, action);
		cols[AUDIT_COL_SEQ] = prev;  /* 13 columns: prev in the seq slot, then dropped */
		struct buf r;
		buf_init(&r, AUDIT_ROW_MAX);
		for (size_t c = 0; c < AUDIT_NCOLS - 1; c++)
			assert_int_equal(buf_printf(&r, "%s%s", c ? "\t" : "", cols[c]), 0);
		rows[i] = buf_steal(&r);
		hash_hex(rows[i], prev);
		assert_int_equal(buf_printf(&b, "%s\n", rows[i]), 0);
	}
	const struct audit_verify_summary *s = verify(false, "state/audit.tsv", b.data, NULL);
	print_problems(s);
	assert_int_equal(s->problems, 0);
	assert_true(s->v1);
	assert_int_equal(s->rows, 5);
	/* An edit: a chain break, without a kind. */
	strstr(b.data, "alpha")[4] = 'b';
	assert_one(verify(false, "state/audit.tsv", b.data, NULL), AUDIT_PROBLEM_BREAK, "the chain breaks at state/audit.tsv:2");
	for (int i = 0; i < 5; i++)
		free(rows[i]);
	buf_free(&b);
}

static void test_verify_bad_lines(void **state)
{
	(void)state;
	struct log l;
	make_log(&l, 4, 1, ZEROS);
	/* No header. */
	char *text = file_text(&l, 0, 4, false, false);
	assert_one(verify(true, "d/current.tsv", text, NULL), AUDIT_PROBLEM_HEADER, "no header line");
	free(text);
	/* An unknown version. */
	char *v3 = NULL;
	assert_true(asprintf(&v3, "#hpcc-audit v3\tx\n%s\n", l.rows[0]) > 0);
	assert_one(verify(true, "d/current.tsv", v3, NULL), AUDIT_PROBLEM_HEADER, "unknown format version");
	free(v3);
	/* An overlong line in place of row 2: reported, then the chain resumes. */
	struct audit_verifier *v = NULL;
	assert_int_equal(audit_verifier_new(true, &v), 0);
	assert_int_equal(audit_verifier_begin_file(v, "d/current.tsv"), 0);
	audit_verifier_line(v, audit_header_line(), strlen(audit_header_line()));
	audit_verifier_line(v, l.rows[0], strlen(l.rows[0]));
	audit_verifier_line(v, NULL, AUDIT_ROW_MAX + 5);
	audit_verifier_line(v, l.rows[2], strlen(l.rows[2]));
	audit_verifier_line(v, l.rows[3], strlen(l.rows[3]));
	audit_verifier_end_file(v, 0);
	const struct audit_verify_summary *s = audit_verifier_finish(v);
	assert_one(s, AUDIT_PROBLEM_INVALID, "d/current.tsv:3 is not a valid row (edited?): longer than");
	audit_verifier_free(v);
	/* Many problems: all counted, 20 kept. */
	struct log big;
	make_log(&big, 60, 1, ZEROS);
	for (size_t i = 1; i < 60; i += 2)
		big.rows[i][0] = 'X';   /* every other row invalid */
	text = file_text(&big, 0, 60, true, false);
	s = verify(true, "d/current.tsv", text, NULL);
	assert_int_equal(s->problems, 30);
	assert_int_equal(s->n_shown, AUDIT_VERIFY_SHOWN_MAX);
	free(text);
	log_free(&big);
	log_free(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape_round_trip),
		cmocka_unit_test(test_parse_refusals),
		cmocka_unit_test(test_matches),
		cmocka_unit_test_setup_teardown(test_reader, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test(test_verify_intact),
		cmocka_unit_test(test_verify_edited),
		cmocka_unit_test(test_verify_removed),
		cmocka_unit_test(test_verify_inserted),
		cmocka_unit_test(test_verify_swapped),
		cmocka_unit_test(test_verify_replayed),
		cmocka_unit_test(test_verify_adjacent_edits),
		cmocka_unit_test_setup_teardown(test_segment_names, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test(test_verify_segments),
		cmocka_unit_test(test_verify_v1),
		cmocka_unit_test(test_verify_bad_lines),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
