/*
 * Unit tests for the audit log writer (src/worker/audit.c): rows have the
 * design's 13 columns, fields are escaped so that a row stays one line and
 * carries no terminal control byte,
 * each row carries the SHA-256 of the row before it (zeros for the first),
 * a reopened log continues the chain, and a torn last line left by a crash
 * is cut off before the next row is written.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* Splits the file into lines; returns how many (at most max). */
static size_t read_lines(const char *path, char lines[][4096], size_t max)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	assert_int_equal(fs_read_file(path, 1 << 20, &b), 0);
	size_t n = 0, start = 0;
	for (size_t i = 0; i < b.len && n < max; i++)
		if (b.data[i] == '\n') {
			assert_true(i - start < 4096);
			memcpy(lines[n], b.data + start, i - start);
			lines[n][i - start] = '\0';
			n++;
			start = i + 1;
		}
	assert_int_equal(start, b.len); /* the file ends with a whole line */
	buf_free(&b);
	return n;
}

static const char *last_column(const char *line)
{
	return strrchr(line, '\t') + 1;
}

static size_t columns(const char *line)
{
	size_t n = 1;
	for (; *line; line++)
		n += *line == '\t';
	return n;
}

static void assert_chained(const char *prev_line, const char *line)
{
	struct digest d;
	char hex[DIGEST_HEX_LEN + 1];
	assert_int_equal(digest_bytes(prev_line, strlen(prev_line), &d), 0);
	digest_to_hex(&d, hex);
	assert_string_equal(last_column(line), hex);
}

static void test_rows_and_chain(void **state)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/audit.tsv", (char *)*state);
	struct audit_log *l = NULL;
	struct error err = { 0 };
	assert_int_equal(audit_open(path, &l, &err), 0);
	struct audit_row row = row_template;
	assert_int_equal(audit_append(l, &row, &err), 0);
	row.flags = "gcc -DX=\"a\tb\" -c\nnew line \\ back \x1b[31m";
	row.cache = "hit";
	assert_int_equal(audit_append(l, &row, &err), 0);
	audit_close(l);
	/* Reopened: the chain continues. */
	assert_int_equal(audit_open(path, &l, &err), 0);
	row.exit_code = 1;
	row.cache = "miss";
	row.output_digest = NULL;
	assert_int_equal(audit_append(l, &row, &err), 0);
	audit_close(l);

	static char lines[8][4096];
	assert_int_equal(read_lines(path, lines, 8), 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(columns(lines[i]), 13);
	char zeros[DIGEST_HEX_LEN + 1];
	memset(zeros, '0', DIGEST_HEX_LEN);
	zeros[DIGEST_HEX_LEN] = '\0';
	assert_string_equal(last_column(lines[0]), zeros);
	assert_chained(lines[0], lines[1]);
	assert_chained(lines[1], lines[2]);
	assert_non_null(strstr(lines[0], "\tvm-000001@qemu-tcg\t42\t0\t"));
	assert_non_null(strstr(lines[1], "gcc -DX=\"a\\tb\" -c\\nnew line \\\\ back \\x1b[31m"));
	assert_non_null(strstr(lines[2], "\t-\talpha\t")); /* no output: "-" */
	assert_non_null(strstr(lines[2], "\tmiss\t"));
	/* The time column is ISO 8601 UTC with microseconds. */
	assert_int_equal(strlen(strtok_r(lines[2], "\t", &(char *){ NULL })), 27);
}

static void test_torn_tail(void **state)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/torn.tsv", (char *)*state);
	struct audit_log *l = NULL;
	struct error err = { 0 };
	struct audit_row row = row_template;
	assert_int_equal(audit_open(path, &l, &err), 0);
	assert_int_equal(audit_append(l, &row, &err), 0);
	audit_close(l);
	int fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "2026-12-04T00:00:00.000000Z\tsha256:half", 39), 39);
	close(fd);
	assert_int_equal(audit_open(path, &l, &err), 0);
	assert_int_equal(audit_append(l, &row, &err), 0);
	audit_close(l);
	static char lines[8][4096];
	assert_int_equal(read_lines(path, lines, 8), 2);
	assert_chained(lines[0], lines[1]);
}

static void test_oversize_row_refused(void **state)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/big.tsv", (char *)*state);
	struct audit_log *l = NULL;
	struct error err = { 0 };
	assert_int_equal(audit_open(path, &l, &err), 0);
	char *huge = malloc(AUDIT_ROW_MAX + 10);
	memset(huge, 'a', AUDIT_ROW_MAX + 9);
	huge[AUDIT_ROW_MAX + 9] = '\0';
	struct audit_row row = row_template;
	row.flags = huge;
	assert_int_equal(audit_append(l, &row, &err), -E2BIG);
	audit_close(l);
	free(huge);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 0); /* nothing partial */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_rows_and_chain, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_torn_tail, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_oversize_row_refused, testutil_setup_tmpdir,
						testutil_teardown_tmpdir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
