/*
 * Unit tests for the audit log writer and search (src/worker/audit.c):
 * rows have the format's 14 columns with seq and chain, fields are escaped,
 * ret_line is the stored line; 8 threads appending at once leave a log
 * that verifies, with contiguous seqs and no torn line (also while it
 * rotates); rotation by size (many sealed 0400 segments that verify as one
 * log) and by age (a test clock, also across a reopen); crash recovery
 * (a torn tail, a current.tsv that ends in a seal, sealed and chmod'ed,
 * empty, or missing), a reopened log continues seq and chain; an oversized
 * row is refused whole; and audit_search keeps tenants apart, matches any
 * digest prefix, and returns the last max matches.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "buf.h"
#include "digest.h"
#include "fs.h"
#include "testutil.h"

static const struct audit_row row_template = {
	.image = "sha256:1111111111111111111111111111111111111111111111111111111111111111",
	.source_digest = "sha256:2222222222222222222222222222222222222222222222222222222222222222",
	.flags = "gcc -O2 -c a.c -o a.o",
	.output_digest = "sha256:3333333333333333333333333333333333333333333333333333333333333333",
	.tenant = "alpha",
	.worker = "w1",
	.vm = "vm-000001@qemu-tcg",
	.duration_ms = 42,
	.exit_code = 0,
	.action_digest = "sha256:4444444444444444444444444444444444444444444444444444444444444444",
	.cache = "store",
};

static char *audit_dir(void **state)
{
	char *p = NULL;
	assert_true(asprintf(&p, "%s/audit", (char *)*state) > 0);
	return p;
}

/* The log in dir, opened with o (the test fails if it cannot be). */
static struct audit_log *open_log(const char *dir, const struct audit_options *o)
{
	struct audit_log *l = NULL;
	struct error err = { 0 };
	if (audit_open(dir, o, &l, &err) < 0)
		fail_msg("audit_open %s: %s", dir, err.msg);
	return l;
}

static char *in(const char *dir, const char *name)
{
	char *p = NULL;
	assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
	return p;
}

/* The lines of a file (at most max, each under 4096 bytes). */
static size_t read_lines(const char *path, char lines[][4096], size_t max)
{
	struct buf b;
	buf_init(&b, 64 << 20);
	assert_int_equal(fs_read_file(path, 64 << 20, &b), 0);
	size_t n = 0, start = 0;
	for (size_t i = 0; i < b.len; i++)
		if (b.data[i] == '\n') {
			assert_true(i - start < 4096);
			if (n < max) {
				memcpy(lines[n], b.data + start, i - start);
				lines[n][i - start] = '\0';
			}
			n++;
			start = i + 1;
		}
	assert_int_equal(start, b.len); /* the file ends with a whole line */
	buf_free(&b);
	return n;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Verifies dir as hpcc audit verify does; returns the number of files. */
static size_t verify_dir(const char *dir, struct audit_verify_summary *ret)
{
	char *names[4096];
	size_t n = 0;
	bool current = false;
	DIR *d = opendir(dir);
	assert_non_null(d);
	for (struct dirent *e; (e = readdir(d));) {
		uint64_t s;
		if (audit_segment_name_parse(e->d_name, &s) == 0) {
			assert_true(n < 4096);
			names[n++] = strdup(e->d_name);
		} else if (strcmp(e->d_name, "current.tsv") == 0)
			current = true;
		else
			assert_true(e->d_name[0] == '.');   /* nothing else in the directory */
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp_str);
	if (current)
		names[n++] = strdup("current.tsv");
	struct audit_verifier *v = NULL;
	assert_int_equal(audit_verifier_new(true, &v), 0);
	for (size_t i = 0; i < n; i++) {
		char *path = in(dir, names[i]);
		int fd = open(path, O_RDONLY);
		assert_true(fd >= 0);
		struct audit_reader r;
		assert_int_equal(audit_reader_init(&r, fd), 0);
		assert_int_equal(audit_verifier_begin_file(v, path), 0);
		const char *line;
		size_t len;
		while (audit_reader_next(&r, &line, &len) > 0)
			audit_verifier_line(v, line, len);
		assert_int_equal(r.torn, 0);
		audit_verifier_end_file(v, r.torn);
		audit_reader_free(&r);
		close(fd);
		free(path);
		free(names[i]);
	}
	*ret = *audit_verifier_finish(v);
	audit_verifier_free(v);
	for (size_t i = 0; i < ret->n_shown; i++)
		print_message("  %s: %s\n", audit_problem_kind_name(ret->shown[i].kind), ret->shown[i].msg);
	for (size_t i = 0; i < ret->n_notes; i++)
		print_message("  note: %s\n", ret->notes[i]);
	return n;
}

static void assert_intact(const char *dir, uint64_t rows)
{
	struct audit_verify_summary s;
	verify_dir(dir, &s);
	assert_int_equal(s.problems, 0);
	assert_int_equal(s.rows, rows);
	if (rows) {
		assert_int_equal(s.first_seq, 1);
		assert_int_equal(s.last_seq, rows);
	}
}

static size_t columns(const char *line)
{
	size_t n = 1;
	for (; *line; line++)
		n += *line == '\t';
	return n;
}

static void test_rows_and_chain(void **state)
{
	char *dir = audit_dir(state);
	struct audit_log *l = NULL;
	struct error err = { 0 };
	assert_int_equal(audit_open(dir, NULL, &l, &err), 0);
	struct stat st;
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	struct audit_row row = row_template;
	char *written[3];
	assert_int_equal(audit_append(l, &row, &written[0], &err), 0);
	row.flags = "gcc -DX=\"a\tb\" -c\nnew line \\ back \x1b[31m";
	row.cache = "hit";
	assert_int_equal(audit_append(l, &row, &written[1], &err), 0);
	audit_close(l);
	/* Reopened: seq and chain continue. */
	assert_int_equal(audit_open(dir, NULL, &l, &err), 0);
	row.exit_code = 1;
	row.cache = "miss";
	row.output_digest = NULL;
	assert_int_equal(audit_append(l, &row, &written[2], &err), 0);
	audit_close(l);

	char *cur = in(dir, "current.tsv");
	assert_int_equal(stat(cur, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	static char lines[8][4096];
	assert_int_equal(read_lines(cur, lines, 8), 4);
	assert_string_equal(lines[0], audit_header_line());
	for (int i = 0; i < 3; i++) {
		assert_int_equal(columns(lines[i + 1]), 14);
		assert_string_equal(written[i], lines[i + 1]);   /* ret_line is the stored line */
		struct audit_parsed p;
		assert_int_equal(audit_parse_row(lines[i + 1], strlen(lines[i + 1]), &p, NULL), 0);
		assert_int_equal(p.seq, (uint64_t)i + 1);
		audit_parsed_free(&p);
		free(written[i]);
	}
	assert_non_null(strstr(lines[1], "\tvm-000001@qemu-tcg\t42\t0\t"));
	assert_non_null(strstr(lines[1], "\tstore\t1\t0000000000000000000000000000000000000000000000000000000000000000"));
	assert_non_null(strstr(lines[2], "gcc -DX=\"a\\tb\" -c\\nnew line \\\\ back \\x1b[31m"));
	assert_non_null(strstr(lines[3], "\t-\talpha\t")); /* no output: "-" */
	assert_non_null(strstr(lines[3], "\tmiss\t3\t"));
	/* The time column is ISO 8601 UTC with microseconds. */
	assert_int_equal(strcspn(lines[3], "\t"), 27);
	assert_intact(dir, 3);
	free(cur);
	free(dir);
}

static void append_rows(const char *dir, const struct audit_options *o, int n);

/* ---- concurrency ------------------------------------------------------- */

enum { THREADS = 8, ROWS_EACH = 200 };

struct worker_arg {
	struct audit_log *l;
	int id;
	int failures;
};

static void *append_many(void *p)
{
	struct worker_arg *a = p;
	char tenant[16];
	snprintf(tenant, sizeof(tenant), "t%d", a->id);
	for (int i = 0; i < ROWS_EACH; i++) {
		struct audit_row row = row_template;
		row.tenant = tenant;
		row.duration_ms = i;
		struct error err = { 0 };
		if (audit_append(a->l, &row, NULL, &err) < 0)
			a->failures++;
	}
	return NULL;
}

static void run_threads(const char *dir, const struct audit_options *o)
{
	struct audit_log *l = NULL;
	struct error err = { 0 };
	assert_int_equal(audit_open(dir, o, &l, &err), 0);
	pthread_t t[THREADS];
	struct worker_arg args[THREADS];
	for (int i = 0; i < THREADS; i++) {
		args[i] = (struct worker_arg){ .l = l, .id = i };
		assert_int_equal(pthread_create(&t[i], NULL, append_many, &args[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(args[i].failures, 0);
	}
	/* Every row counted; concurrent appenders shared syncs (group
	 * commit), so never more syncs than rows, and at least one. */
	struct audit_stats st;
	audit_get_stats(l, &st);
	assert_int_equal(st.rows, THREADS * ROWS_EACH);
	assert_true(st.syncs >= 1 && st.syncs <= st.rows);
	assert_true(st.append_us > 0);
	audit_close(l);
	/* verify_dir checks seq contiguity, the chain, and that every file
	 * ends with a whole line. */
	assert_intact(dir, THREADS * ROWS_EACH);
}

static void test_concurrent_appenders(void **state)
{
	char *dir = audit_dir(state);
	run_threads(dir, NULL);
	/* Every thread's rows are all there. */
	char *cur = in(dir, "current.tsv");
	static char lines[THREADS * ROWS_EACH + 2][4096];
	assert_int_equal(read_lines(cur, lines, THREADS * ROWS_EACH + 2), THREADS * ROWS_EACH + 1);
	int per[THREADS] = { 0 };
	for (size_t i = 1; i <= THREADS * ROWS_EACH; i++) {
		int id = -1;
		assert_non_null(strstr(lines[i], "\tt"));
		sscanf(strstr(lines[i], "\tt") + 2, "%d", &id);
		assert_true(id >= 0 && id < THREADS);
		per[id]++;
	}
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(per[i], ROWS_EACH);
	free(cur);
	free(dir);
}

/* The rotation decision is re-made after waiting for a sync in progress,
 * so the appenders that found current.tsv full during one sync rotate it
 * once, not once each: every sealed segment is about full. */
static void test_concurrent_with_rotation(void **state)
{
	enum { SEGMENT_SIZE = 20000 };
	char *dir = audit_dir(state);
	struct audit_options o = { .segment_size = SEGMENT_SIZE };
	run_threads(dir, &o);
	struct audit_verify_summary s;
	size_t files = verify_dir(dir, &s);
	assert_true(files > 20);
	DIR *d = opendir(dir);
	assert_non_null(d);
	size_t sealed = 0;
	for (struct dirent *e; (e = readdir(d));) {
		uint64_t first;
		if (audit_segment_name_parse(e->d_name, &first) < 0)
			continue;
		sealed++;
		char *path = in(dir, e->d_name);
		struct stat st;
		assert_int_equal(stat(path, &st), 0);
		if (st.st_size < SEGMENT_SIZE / 2) {
			print_message("%s holds %lld bytes, under half of segment_size\n", e->d_name, (long long)st.st_size);
			fail();
		}
		free(path);
	}
	closedir(d);
	assert_int_equal(sealed, files - 1);
	free(dir);
}

/* 8 threads append while the first rotation fails after its seal was
 * synced (the segment name is taken by a directory, so rename fails): the
 * seal's fdatasync covered every row before it, so every row in the file
 * was reported written, and only rows that are not in it failed. Repeated,
 * since whether an appender is waiting at that moment is up to the
 * scheduler. */
static void *append_until_failure(void *p)
{
	struct worker_arg *a = p;
	for (int i = 0; i < ROWS_EACH; i++) {
		struct audit_row row = row_template;
		struct error err = { 0 };
		if (audit_append(a->l, &row, NULL, &err) < 0) {
			a->failures++;
			break;
		}
		a->id++;   /* rows reported written */
	}
	return NULL;
}

static void test_rotation_failure_after_seal(void **state)
{
	for (int trial = 0; trial < 30; trial++) {
		char *dir = audit_dir(state);
		testutil_rm_rf(dir);
		struct audit_options o = { .segment_size = 8192 };
		struct audit_log *l = open_log(dir, &o);
		char *seg = in(dir, "segment-000000000001.tsv");
		assert_int_equal(mkdir(seg, 0700), 0);
		pthread_t t[THREADS];
		struct worker_arg args[THREADS];
		for (int i = 0; i < THREADS; i++) {
			args[i] = (struct worker_arg){ .l = l };
			assert_int_equal(pthread_create(&t[i], NULL, append_until_failure, &args[i]), 0);
		}
		int reported = 0;
		for (int i = 0; i < THREADS; i++) {
			pthread_join(t[i], NULL);
			assert_int_equal(args[i].failures, 1);
			reported += args[i].id;
		}
		audit_close(l);
		/* current.tsv: the header, the rows, the seal. */
		char *cur = in(dir, "current.tsv");
		static char lines[64][4096];
		size_t n = read_lines(cur, lines, 64);
		struct audit_seal seal;
		assert_int_equal(audit_seal_parse(lines[n - 1], strlen(lines[n - 1]), &seal), 0);
		if ((int)seal.rows != reported) {
			print_message("trial %d: %llu rows sealed, %d reported written\n", trial,
				      (unsigned long long)seal.rows, reported);
			fail();
		}
		/* Once the name is free, a reopen finishes the rotation. */
		assert_int_equal(rmdir(seg), 0);
		append_rows(dir, &o, 1);
		assert_intact(dir, seal.rows + 1);
		free(cur);
		free(seg);
		free(dir);
	}
}

/* ---- rotation ---------------------------------------------------------- */

static void test_rotation_by_size(void **state)
{
	char *dir = audit_dir(state);
	struct audit_options o = { .segment_size = 4096 };
	struct audit_log *l = open_log(dir, &o);
	struct error err = { 0 };
	struct audit_row row = row_template;
	for (int i = 0; i < 100; i++)
		assert_int_equal(audit_append(l, &row, NULL, &err), 0);
	audit_close(l);
	struct audit_verify_summary s;
	size_t files = verify_dir(dir, &s);
	assert_int_equal(s.problems, 0);
	assert_int_equal(s.rows, 100);
	assert_true(files > 5);
	/* Each sealed segment: read-only, under the size plus its seal, named
	 * after its first row, ending in a seal that says so. */
	DIR *d = opendir(dir);
	size_t sealed = 0;
	for (struct dirent *e; (e = readdir(d));) {
		uint64_t first;
		if (audit_segment_name_parse(e->d_name, &first) < 0)
			continue;
		sealed++;
		char *path = in(dir, e->d_name);
		struct stat st;
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(st.st_mode & 0777, 0400);
		assert_true(st.st_size <= 4096 + 200);
		static char lines[64][4096];
		size_t n = read_lines(path, lines, 64);
		struct audit_seal seal;
		assert_int_equal(audit_seal_parse(lines[n - 1], strlen(lines[n - 1]), &seal), 0);
		assert_int_equal(seal.first_seq, first);
		assert_int_equal(seal.rows, n - 2);
		free(path);
	}
	closedir(d);
	assert_int_equal(sealed, files - 1);
	char *cur = in(dir, "current.tsv");
	struct stat st;
	assert_int_equal(stat(cur, &st), 0);
	assert_true(st.st_size <= 4096);
	free(cur);
	free(dir);
}

static int64_t fake_now;
static int64_t fake_clock(void) { return fake_now; }

static void test_rotation_by_age(void **state)
{
	char *dir = audit_dir(state);
	fake_now = (int64_t)1765000000 * 1000000;
	struct audit_options o = { .segment_age_s = 60, .now_us = fake_clock };
	struct audit_log *l = open_log(dir, &o);
	struct error err = { 0 };
	struct audit_row row = row_template;
	for (int i = 0; i < 3; i++)
		assert_int_equal(audit_append(l, &row, NULL, &err), 0);
	fake_now += 60 * 1000000;  /* exactly the age: not yet older */
	assert_int_equal(audit_append(l, &row, NULL, &err), 0);
	char *seg1 = in(dir, "segment-000000000001.tsv");
	assert_int_equal(access(seg1, F_OK), -1);
	fake_now += 1;
	assert_int_equal(audit_append(l, &row, NULL, &err), 0);   /* seq 5 starts a new segment */
	assert_int_equal(access(seg1, F_OK), 0);
	audit_close(l);
	/* Reopened: the age of current.tsv's first row (seq 5) is read back. */
	fake_now += 30 * 1000000;
	assert_int_equal(audit_open(dir, &o, &l, &err), 0);
	assert_int_equal(audit_append(l, &row, NULL, &err), 0);
	char *seg5 = in(dir, "segment-000000000005.tsv");
	assert_int_equal(access(seg5, F_OK), -1);
	fake_now += 31 * 1000000;
	assert_int_equal(audit_append(l, &row, NULL, &err), 0);   /* seq 7 */
	assert_int_equal(access(seg5, F_OK), 0);
	audit_close(l);
	assert_intact(dir, 7);
	static char lines[8][4096];
	assert_int_equal(read_lines(seg1, lines, 8), 6);   /* header, 4 rows, seal */
	free(seg1);
	free(seg5);
	free(dir);
}

/* ---- crash recovery ---------------------------------------------------- */

static void append_rows(const char *dir, const struct audit_options *o, int n)
{
	struct audit_log *l = NULL;
	struct error err = { 0 };
	assert_int_equal(audit_open(dir, o, &l, &err), 0);
	struct audit_row row = row_template;
	for (int i = 0; i < n; i++)
		assert_int_equal(audit_append(l, &row, NULL, &err), 0);
	audit_close(l);
}

static void append_text(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void test_torn_tail(void **state)
{
	char *dir = audit_dir(state);
	append_rows(dir, NULL, 2);
	char *cur = in(dir, "current.tsv");
	append_text(cur, "2026-12-04T00:00:00.000000Z\tsha256:half");
	append_rows(dir, NULL, 1);
	assert_intact(dir, 3);
	free(cur);
	free(dir);
}

/* A crash after the seal line was written: with the chmod done or not. */
static void test_sealed_current(void **state)
{
	for (int chmodded = 0; chmodded < 2; chmodded++) {
		char *dir = audit_dir(state);
		testutil_rm_rf(dir);
		append_rows(dir, NULL, 3);
		char *cur = in(dir, "current.tsv");
		static char lines[8][4096];
		assert_int_equal(read_lines(cur, lines, 8), 4);
		struct audit_parsed last;
		assert_int_equal(audit_parse_row(lines[3], strlen(lines[3]), &last, NULL), 0);
		struct audit_seal seal = { .rows = 3, .first_seq = 1, .last_seq = 3 };
		memcpy(seal.last_hash, last.hash, 65);
		audit_parsed_free(&last);
		struct buf b;
		buf_init(&b, 4096);
		assert_int_equal(audit_seal_format(&seal, &b), 0);
		assert_int_equal(buf_append_char(&b, '\n'), 0);
		append_text(cur, b.data);
		buf_free(&b);
		if (chmodded)
			assert_int_equal(chmod(cur, 0400), 0);
		append_rows(dir, NULL, 2);
		char *seg = in(dir, "segment-000000000001.tsv");
		struct stat st;
		assert_int_equal(stat(seg, &st), 0);
		assert_int_equal(st.st_mode & 0777, 0400);
		assert_int_equal(read_lines(cur, lines, 8), 3);   /* header, seq 4 and 5 */
		assert_non_null(strstr(lines[1], "\tstore\t4\t"));
		assert_intact(dir, 5);
		free(seg);
		free(cur);
		free(dir);
	}
}

/* A crash before the new current.tsv got its header, or before it was
 * created at all: seq and chain continue from the sealed segment. */
static void test_empty_or_missing_current(void **state)
{
	char *dir = audit_dir(state);
	struct audit_options o = { .segment_size = 4096 };
	append_rows(dir, &o, 30);
	char *cur = in(dir, "current.tsv");
	/* Drop what current.tsv holds, as if the rotation had just happened. */
	static char lines[64][4096];
	size_t n = read_lines(cur, lines, 64);
	uint64_t in_current = n - 1;
	assert_true(in_current > 0);
	assert_int_equal(truncate(cur, 0), 0);
	append_rows(dir, &o, 1);
	assert_int_equal(read_lines(cur, lines, 64), 2);
	struct audit_parsed p;
	assert_int_equal(audit_parse_row(lines[1], strlen(lines[1]), &p, NULL), 0);
	assert_int_equal(p.seq, 30 - in_current + 1);
	audit_parsed_free(&p);
	/* Missing: the same. */
	assert_int_equal(unlink(cur), 0);
	append_rows(dir, &o, 1);
	assert_int_equal(read_lines(cur, lines, 64), 2);
	assert_int_equal(audit_parse_row(lines[1], strlen(lines[1]), &p, NULL), 0);
	assert_int_equal(p.seq, 30 - in_current + 1);
	audit_parsed_free(&p);
	/* Half a header (a crash while writing it). */
	assert_int_equal(truncate(cur, 10), 0);
	append_rows(dir, &o, 1);
	assert_int_equal(read_lines(cur, lines, 64), 2);
	assert_string_equal(lines[0], audit_header_line());
	free(cur);
	free(dir);
}

static void test_foreign_current_refused(void **state)
{
	char *dir = audit_dir(state);
	assert_int_equal(mkdir(dir, 0700), 0);
	char *cur = in(dir, "current.tsv");
	assert_int_equal(fs_write_atomic(cur, "not an audit log\n", 17, 0600, false), 0);
	struct audit_log *l = NULL;
	struct error err = { 0 };
	assert_int_equal(audit_open(dir, NULL, &l, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "header"));
	free(cur);
	free(dir);
}

static void test_oversize_row_refused(void **state)
{
	char *dir = audit_dir(state);
	struct audit_log *l = NULL;
	struct error err = { 0 };
	assert_int_equal(audit_open(dir, NULL, &l, &err), 0);
	char *huge = malloc(AUDIT_ROW_MAX + 10);
	memset(huge, 'a', AUDIT_ROW_MAX + 9);
	huge[AUDIT_ROW_MAX + 9] = '\0';
	struct audit_row row = row_template;
	row.flags = huge;
	assert_int_equal(audit_append(l, &row, NULL, &err), -E2BIG);
	/* Just under the cap is fine. */
	huge[AUDIT_ROW_MAX - 1000] = '\0';
	assert_int_equal(audit_append(l, &row, NULL, &err), 0);
	audit_close(l);
	free(huge);
	assert_intact(dir, 1);
	free(dir);
}

/* ---- search ------------------------------------------------------------ */

static void test_search(void **state)
{
	char *dir = audit_dir(state);
	struct audit_options o = { .segment_size = 4096 };
	struct audit_log *l = open_log(dir, &o);
	struct error err = { 0 };
	char actions[40][80], outputs[40][80];
	char *lines[40];
	for (int i = 0; i < 40; i++) {
		struct audit_row row = row_template;
		row.tenant = i % 2 ? "beta" : "alpha";
		snprintf(actions[i], sizeof(actions[i]), "sha256:a%063x", i);
		snprintf(outputs[i], sizeof(outputs[i]), "sha256:b%063x", i);
		row.action_digest = actions[i];
		row.output_digest = outputs[i];
		assert_int_equal(audit_append(l, &row, &lines[i], &err), 0);
	}
	struct strv found = { 0 };
	bool truncated = true;
	/* The action of one of beta's rows: never shown to alpha. */
	assert_int_equal(audit_search(dir, "alpha", actions[7] + 7, 10, &found, &truncated, &err), 0);
	assert_int_equal(found.n, 0);
	assert_false(truncated);
	assert_int_equal(audit_search(dir, "beta", actions[7] + 7, 10, &found, &truncated, &err), 0);
	assert_int_equal(found.n, 1);
	assert_string_equal(found.v[0], lines[7]);
	strv_free(&found);
	/* The output digest, "sha256:"-prefixed and in capitals. */
	char upper[80];
	snprintf(upper, sizeof(upper), "SHA256:B%063X", 12);
	assert_int_equal(audit_search(dir, "alpha", upper, 10, &found, &truncated, &err), 0);
	assert_int_equal(found.n, 1);
	assert_string_equal(found.v[0], lines[12]);
	strv_free(&found);
	/* The row's own hash. */
	struct audit_parsed p;
	assert_int_equal(audit_parse_row(lines[20], strlen(lines[20]), &p, NULL), 0);
	char prefix[12];
	memcpy(prefix, p.hash, 10);
	prefix[10] = '\0';
	audit_parsed_free(&p);
	assert_int_equal(audit_search(dir, "alpha", prefix, 10, &found, &truncated, &err), 0);
	assert_int_equal(found.n, 1);
	assert_string_equal(found.v[0], lines[20]);
	strv_free(&found);
	/* The image all rows share: the last 3 of alpha's 20, in log order. */
	assert_int_equal(audit_search(dir, "alpha", "1111", 3, &found, &truncated, &err), 0);
	assert_int_equal(found.n, 3);
	assert_true(truncated);
	assert_string_equal(found.v[0], lines[34]);
	assert_string_equal(found.v[1], lines[36]);
	assert_string_equal(found.v[2], lines[38]);
	strv_free(&found);
	assert_int_equal(audit_search(dir, "alpha", "1111", 20, &found, &truncated, &err), 0);
	assert_int_equal(found.n, 20);
	assert_false(truncated);
	assert_string_equal(found.v[0], lines[0]);   /* from the first sealed segment on */
	strv_free(&found);
	/* A malformed line is skipped, a short prefix refused. */
	char *cur = in(dir, "current.tsv");
	append_text(cur, "garbage\tline\n");
	assert_int_equal(audit_search(dir, "alpha", "1111", 100, &found, &truncated, &err), 0);
	assert_int_equal(found.n, 20);
	strv_free(&found);
	assert_int_equal(audit_search(dir, "alpha", "111", 100, &found, &truncated, &err), -EINVAL);
	audit_close(l);
	for (int i = 0; i < 40; i++)
		free(lines[i]);
	free(cur);
	free(dir);
}

/* AuditRows reads the newest AUDIT_SEARCH_SEGMENTS sealed segments and
 * current.tsv, not every segment ever written: a row in an older segment
 * is not returned, one in the oldest segment still read is. */
static void test_search_bound(void **state)
{
	char *dir = audit_dir(state);
	struct audit_options o = { .segment_size = 4096 };
	struct audit_log *l = open_log(dir, &o);
	struct error err = { 0 };
	enum { ROWS = 300 };
	static char actions[ROWS][80];
	uint64_t seq_of_row_in[ROWS];
	for (int i = 0; i < ROWS; i++) {
		struct audit_row row = row_template;
		snprintf(actions[i], sizeof(actions[i]), "sha256:c%063x", i);
		row.action_digest = actions[i];
		char *line = NULL;
		assert_int_equal(audit_append(l, &row, &line, &err), 0);
		struct audit_parsed p;
		assert_int_equal(audit_parse_row(line, strlen(line), &p, NULL), 0);
		seq_of_row_in[i] = p.seq;
		audit_parsed_free(&p);
		free(line);
	}
	audit_close(l);
	uint64_t *seqs = NULL;
	size_t n = 0;
	bool current = false;
	assert_int_equal(audit_list_segments(dir, &seqs, &n, &current), 0);
	assert_true(current);
	assert_true(n > AUDIT_SEARCH_SEGMENTS + 2);
	uint64_t oldest_read = seqs[n - AUDIT_SEARCH_SEGMENTS];
	struct strv found = { 0 };
	bool truncated;
	/* Row 0, in the first segment: out of reach. */
	assert_int_equal(audit_search(dir, "alpha", actions[0] + 7, 10, &found, &truncated, &err), 0);
	assert_int_equal(found.n, 0);
	/* The last row of the newest segment not read, and the first of the oldest read. */
	for (int i = 0; i < ROWS; i++) {
		if (seq_of_row_in[i] != oldest_read - 1 && seq_of_row_in[i] != oldest_read)
			continue;
		assert_int_equal(audit_search(dir, "alpha", actions[i] + 7, 10, &found, &truncated, &err), 0);
		assert_int_equal(found.n, seq_of_row_in[i] == oldest_read ? 1 : 0);
		strv_free(&found);
	}
	/* And the newest row, in current.tsv. */
	assert_int_equal(audit_search(dir, "alpha", actions[ROWS - 1] + 7, 10, &found, &truncated, &err), 0);
	assert_int_equal(found.n, 1);
	strv_free(&found);
	free(seqs);
	free(dir);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, testutil_setup_tmpdir, testutil_teardown_tmpdir)
	const struct CMUnitTest tests[] = {
		T(test_rows_and_chain),
		T(test_concurrent_appenders),
		T(test_concurrent_with_rotation),
		T(test_rotation_failure_after_seal),
		T(test_rotation_by_size),
		T(test_rotation_by_age),
		T(test_torn_tail),
		T(test_sealed_current),
		T(test_empty_or_missing_current),
		T(test_foreign_current_refused),
		T(test_oversize_row_refused),
		T(test_search),
		T(test_search_bound),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
