/*
 * Unit tests for the statistics file (src/cache/stats.c): adding and reading
 * back, exact sums when several processes add at once (the flock must
 * serialise them), zeroing that keeps the size counters, damaged files that
 * must parse as far as they can, and the human and JSON renderings.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "fs.h"
#include "stats.h"

struct fixture {
	char *dir;
	char *path;  /* <dir>/stats */
};


static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char tmpl[] = "/tmp/hpcc-test-stats-XXXXXX";
	if (!f || !mkdtemp(tmpl) || !(f->dir = strdup(tmpl)) || asprintf(&f->path, "%s/stats", f->dir) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	testutil_rm_rf(f->dir);
	free(f->dir);
	free(f->path);
	free(f);
	return 0;
}

static void write_text(const char *path, const char *text, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, n), (ssize_t)n);
	assert_int_equal(close(fd), 0);
}

static void test_names(void **state)
{
	assert_string_equal(stats_name(STAT_DIRECT_HIT), "direct_hit");
	assert_string_equal(stats_name(STAT_CACHE_SIZE), "cache_size");
	assert_string_equal(stats_name(STAT_FALLBACK_DAEMON_LOST), "fallback.daemon-lost");
	assert_string_equal(stats_name(STAT_UNCACHEABLE_TIME_MACROS), "uncacheable.time-macros");
	assert_string_equal(stats_name(STAT_N), "?");
	/* Every counter has a distinct name. */
	for (int i = 0; i < STAT_N; i++)
		for (int j = i + 1; j < STAT_N; j++)
			assert_string_not_equal(stats_name(i), stats_name(j));
}

static void test_missing_file_reads_zero(void **state)
{
	struct fixture *f = *state;
	struct stats s;
	memset(&s, 0x55, sizeof(s));
	assert_int_equal(stats_read_file(f->path, &s), 0);
	assert_true(stats_is_empty(&s));
}

static void test_add_read_round_trip(void **state)
{
	struct fixture *f = *state;
	struct stats d = { 0 };
	d.v[STAT_DIRECT_HIT] = 3;
	d.v[STAT_MISS] = 4;
	d.v[STAT_FALLBACK_INTERNAL] = 1;
	d.v[STAT_CACHE_SIZE] = 123456789012LL;
	d.v[STAT_CACHE_FILES] = 42;
	assert_int_equal(stats_add_file(f->path, &d), 0);
	assert_int_equal(stats_add_file(f->path, &d), 0);

	struct stats s;
	assert_int_equal(stats_read_file(f->path, &s), 0);
	for (int i = 0; i < STAT_N; i++)
		assert_int_equal(s.v[i], 2 * d.v[i]);

	/* Negative deltas subtract; a counter never goes below zero. */
	struct stats down = { 0 };
	down.v[STAT_CACHE_FILES] = -40;
	down.v[STAT_MISS] = -100;
	assert_int_equal(stats_add_file(f->path, &down), 0);
	assert_int_equal(stats_read_file(f->path, &s), 0);
	assert_int_equal(s.v[STAT_CACHE_FILES], 44);
	assert_int_equal(s.v[STAT_MISS], 0);
	assert_int_equal(s.v[STAT_DIRECT_HIT], 6);

	/* The file is "name value" lines, one per counter. */
	struct buf text;
	buf_init(&text, 1 << 20);
	assert_int_equal(fs_read_file(f->path, 1 << 20, &text), 0);
	assert_non_null(strstr(text.data, "direct_hit 6\n"));
	assert_non_null(strstr(text.data, "cache_size 246913578024\n"));
	int lines = 0;
	for (size_t i = 0; i < text.len; i++)
		lines += text.data[i] == '\n';
	assert_int_equal(lines, STAT_N);
	buf_free(&text);

	/* An empty delta does not even create the file. */
	struct stats none = { 0 };
	_cleanup_free_ char *other = NULL;
	assert_true(asprintf(&other, "%s/other", f->dir) > 0);
	assert_int_equal(stats_add_file(other, &none), 0);
	struct stat st;
	assert_int_equal(stat(other, &st), -1);
}

#define N_PROCS 8
#define N_ADDS 200

static void test_concurrent_adds(void **state)
{
	struct fixture *f = *state;
	pid_t pids[N_PROCS];
	for (int p = 0; p < N_PROCS; p++) {
		pids[p] = fork();
		assert_true(pids[p] >= 0);
		if (pids[p] == 0) {
			struct stats d = { 0 };
			d.v[STAT_DIRECT_HIT] = 1;
			d.v[STAT_MISS] = 2;
			d.v[STAT_CACHE_SIZE] = p + 1;
			int bad = 0;
			for (int i = 0; i < N_ADDS; i++)
				bad += stats_add_file(f->path, &d) != 0;
			_exit(bad ? 1 : 0);
		}
	}
	for (int p = 0; p < N_PROCS; p++) {
		int status;
		assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	struct stats s;
	assert_int_equal(stats_read_file(f->path, &s), 0);
	assert_int_equal(s.v[STAT_DIRECT_HIT], N_PROCS * N_ADDS);
	assert_int_equal(s.v[STAT_MISS], 2 * N_PROCS * N_ADDS);
	assert_int_equal(s.v[STAT_CACHE_SIZE], N_ADDS * N_PROCS * (N_PROCS + 1) / 2);
	assert_int_equal(s.v[STAT_CORRUPT_ENTRIES], 0);
}

static void test_zero_keeps_size(void **state)
{
	struct fixture *f = *state;
	struct stats d = { 0 };
	for (int i = 0; i < STAT_N; i++)
		d.v[i] = i + 10;
	assert_int_equal(stats_add_file(f->path, &d), 0);
	assert_int_equal(stats_zero_file(f->path), 0);
	struct stats s;
	assert_int_equal(stats_read_file(f->path, &s), 0);
	for (int i = 0; i < STAT_N; i++) {
		if (i == STAT_CACHE_SIZE || i == STAT_CACHE_FILES)
			assert_int_equal(s.v[i], i + 10);
		else
			assert_int_equal(s.v[i], 0);
	}
	/* Zeroing a cache with no stats file yet works too. */
	assert_int_equal(unlink(f->path), 0);
	assert_int_equal(stats_zero_file(f->path), 0);
	assert_int_equal(stats_read_file(f->path, &s), 0);
	assert_true(stats_is_empty(&s));
}

static void test_damaged_file(void **state)
{
	struct fixture *f = *state;
	char longline[600];
	memset(longline, 'x', sizeof(longline));
	memcpy(longline, "files_stored ", 13);
	longline[sizeof(longline) - 1] = '\0';
	_cleanup_free_ char *text = NULL;
	int n = asprintf(&text,
			 "garbage without a value\n"
			 "miss 5\n"
			 "\n"
			 "direct_hit 99999999999999999999999999\n"   /* overflows int64 */
			 "cleanups -\n"
			 "evicted_files 12abc\n"
			 "unknown_counter 3\n"
			 "%s\n"
			 "\xff\xfe binary \x01\n"
			 "cache_files 9223372036854775807\n"
			 "corrupt_entries 4",                         /* no final newline */
			 longline);
	assert_true(n > 0);
	write_text(f->path, text, (size_t)n);
	struct stats s;
	assert_int_equal(stats_read_file(f->path, &s), 0);
	assert_int_equal(s.v[STAT_MISS], 5);
	assert_int_equal(s.v[STAT_DIRECT_HIT], 0);
	assert_int_equal(s.v[STAT_CLEANUPS], 0);
	assert_int_equal(s.v[STAT_EVICTED_FILES], 0);
	assert_int_equal(s.v[STAT_FILES_STORED], 0);
	assert_int_equal(s.v[STAT_CACHE_FILES], INT64_MAX);
	assert_int_equal(s.v[STAT_CORRUPT_ENTRIES], 4);

	/* Adding to a damaged file rewrites it clean. */
	struct stats d = { 0 };
	d.v[STAT_MISS] = 1;
	assert_int_equal(stats_add_file(f->path, &d), 0);
	assert_int_equal(stats_read_file(f->path, &s), 0);
	assert_int_equal(s.v[STAT_MISS], 6);
	assert_int_equal(s.v[STAT_CORRUPT_ENTRIES], 4);
	struct buf clean;
	buf_init(&clean, 1 << 20);
	assert_int_equal(fs_read_file(f->path, 1 << 20, &clean), 0);
	assert_null(strstr(clean.data, "garbage"));
	assert_null(strstr(clean.data, "unknown_counter"));
	buf_free(&clean);

	/* A huge value plus a delta saturates rather than overflowing. */
	write_text(f->path, "cache_size 9223372036854775807\nmiss 1\n", 38);
	struct stats up = { 0 };
	up.v[STAT_CACHE_SIZE] = 1000;
	up.v[STAT_MISS] = 1;
	assert_int_equal(stats_add_file(f->path, &up), 0);
	assert_int_equal(stats_read_file(f->path, &s), 0);
	assert_int_equal(s.v[STAT_CACHE_SIZE], INT64_MAX);
	assert_int_equal(s.v[STAT_MISS], 2);

	/* Nothing but garbage, and an empty file. */
	write_text(f->path, "\0\0\0\n\n\n   \n", 10);
	assert_int_equal(stats_read_file(f->path, &s), 0);
	assert_true(stats_is_empty(&s));
	write_text(f->path, "", 0);
	assert_int_equal(stats_read_file(f->path, &s), 0);
	assert_true(stats_is_empty(&s));
}

/* An empty stats file (a crash between create and write, or a user's
 * truncation) reads as all zeros, whatever the heap held before: the read
 * buffer must be NUL-terminated even when nothing was read into it. */
static void test_empty_file_after_heap_reuse(void **state)
{
	struct fixture *f = *state;
	write_text(f->path, "", 0);
	for (int round = 0; round < 4; round++) {
		/* Leave counter-like text in freed memory of the size a read
		 * buffer takes, so that a missing terminator shows. */
		size_t sizes[] = { 64 * 1024 + 2, 64 * 1024 + 1, 65536, 256 };
		char *junk = malloc(sizes[round]);
		assert_non_null(junk);
		for (size_t i = 0; i + 7 <= sizes[round]; i += 7)
			memcpy(junk + i, "miss 5\n", 7);
		junk[sizes[round] - 1] = '\0';
		free(junk);
		struct stats s;
		assert_int_equal(stats_read_file(f->path, &s), 0);
		assert_int_equal(s.v[STAT_MISS], 0);
		assert_true(stats_is_empty(&s));
	}
}

/* A stats file that grew past the read cap (garbage appended by something
 * else) must not stop counting for good. */
static void test_oversized_file(void **state)
{
	struct fixture *f = *state;
	size_t n = 80 * 1024;
	char *text = malloc(n);
	assert_non_null(text);
	memset(text, '#', n);
	memcpy(text, "miss 7\n", 7);
	text[n - 1] = '\n';
	write_text(f->path, text, n);
	free(text);
	struct stats d = { 0 };
	d.v[STAT_DIRECT_HIT] = 1;
	assert_int_equal(stats_add_file(f->path, &d), 0);
	struct stats s;
	assert_int_equal(stats_read_file(f->path, &s), 0);
	assert_int_equal(s.v[STAT_DIRECT_HIT], 1);
	/* What was readable is kept, and the file is back to its normal size. */
	assert_int_equal(s.v[STAT_MISS], 7);
	struct stat st;
	assert_int_equal(stat(f->path, &st), 0);
	assert_true(st.st_size < 4096);

	/* Reading alone (hpcc stats) works on such a file too. */
	text = malloc(n);
	assert_non_null(text);
	memset(text, 'z', n);
	memcpy(text, "cleanups 3\n", 11);
	write_text(f->path, text, n);
	free(text);
	assert_int_equal(stats_read_file(f->path, &s), 0);
	assert_int_equal(s.v[STAT_CLEANUPS], 3);
	assert_int_equal(s.v[STAT_MISS], 0);
}

/* The value of "key": in JSON text, or fails. */
static int64_t json_int(const char *json, const char *key)
{
	_cleanup_free_ char *needle = NULL;
	assert_true(asprintf(&needle, "\n  \"%s\": ", key) > 0);
	const char *p = strstr(json, needle);
	if (!p)
		fail_msg("no \"%s\" in JSON", key);
	p += strlen(needle);
	char *end;
	errno = 0;
	long long v = strtoll(p, &end, 10);
	assert_int_equal(errno, 0);
	assert_true(end > p && (*end == ',' || *end == '\n'));
	return v;
}

static struct stats sample_stats(void)
{
	struct stats s = { 0 };
	s.v[STAT_DIRECT_HIT] = 3;
	s.v[STAT_MISS] = 1;
	s.v[STAT_UNCACHEABLE_TIME_MACROS] = 2;
	s.v[STAT_UNCACHEABLE_DISABLED] = 5;
	s.v[STAT_FALLBACK_DAEMON_LOST] = 7;
	s.v[STAT_FALLBACK_INTERNAL] = 11;
	s.v[STAT_FILES_STORED] = 13;
	s.v[STAT_CACHE_SIZE] = 2048;
	s.v[STAT_CACHE_FILES] = 17;
	return s;
}

static void test_format_human(void **state)
{
	struct stats s = sample_stats();
	struct buf out;
	buf_init(&out, 1 << 20);
	assert_true(stats_format(&s, false, (uint64_t)1 << 30, "/var/cache/x", &out) >= 0);
	const char *t = out.data;
	assert_non_null(strstr(t, "Cache directory                /var/cache/x\n"));
	assert_non_null(strstr(t, "Cacheable calls                4\n"));
	assert_non_null(strstr(t, "  Hits                         3 (75.0 %)\n"));
	assert_non_null(strstr(t, "  Misses                       1\n"));
	assert_non_null(strstr(t, "Uncacheable calls              7\n"));
	assert_non_null(strstr(t, "  time-macros                  2\n"));
	assert_non_null(strstr(t, "  disabled                     5\n"));
	assert_non_null(strstr(t, "Fallbacks (hpcc errors)        18\n"));
	assert_non_null(strstr(t, "  daemon-lost                  7\n"));
	assert_non_null(strstr(t, "  internal-error               11\n"));
	assert_non_null(strstr(t, "Files stored                   13\n"));
	assert_non_null(strstr(t, "Cache size                     2.0 KiB of 1.0 GiB (17 files)\n"));
	/* Zero counters in the detail lists are left out. */
	assert_null(strstr(t, "compile-failed"));
	assert_null(strstr(t, "Merged"));
	assert_null(strstr(t, "Corrupt"));
	buf_free(&out);

	/* No lookups: a zero rate, not a division by zero. */
	struct stats empty = { 0 };
	buf_init(&out, 1 << 20);
	assert_true(stats_format(&empty, false, 500, "/c", &out) >= 0);
	assert_non_null(strstr(out.data, "  Hits                         0 (0.0 %)\n"));
	assert_non_null(strstr(out.data, "Cache size                     0 B of 500 B (0 files)\n"));
	buf_free(&out);
}

static void test_format_json(void **state)
{
	struct stats s = sample_stats();
	struct buf out;
	buf_init(&out, 1 << 20);
	assert_true(stats_format(&s, true, (uint64_t)5 << 30, "/tmp/a \"q\" \\b", &out) >= 0);
	const char *t = out.data;
	assert_true(t[0] == '{');
	assert_string_equal(t + out.len - 3, "\n}\n");
	assert_non_null(strstr(t, "\"cache_dir\": \"/tmp/a \\\"q\\\" \\\\b\",\n"));
	assert_non_null(strstr(t, "\"hit_rate\": 75.00,\n"));
	assert_int_equal(json_int(t, "max_size"), (int64_t)5 << 30);
	assert_int_equal(json_int(t, "uncacheable"), 7);
	assert_int_equal(json_int(t, "fallback"), 18);
	assert_int_equal(json_int(t, "direct_hit"), 3);
	assert_int_equal(json_int(t, "miss"), 1);
	assert_int_equal(json_int(t, "uncacheable.time-macros"), 2);
	assert_int_equal(json_int(t, "fallback.daemon-lost"), 7);
	assert_int_equal(json_int(t, "files_stored"), 13);
	assert_int_equal(json_int(t, "cache_size"), 2048);
	assert_int_equal(json_int(t, "cache_files"), 17);
	/* Every counter appears, zero or not. */
	for (int i = 0; i < STAT_N; i++)
		assert_int_equal(json_int(t, stats_name(i)), s.v[i]);
	buf_free(&out);

	/* Control characters in the directory are dropped, not emitted raw. */
	buf_init(&out, 1 << 20);
	assert_true(stats_format(&s, true, 1, "/a\nb\tc", &out) >= 0);
	assert_non_null(strstr(out.data, "\"cache_dir\": \"/abc\",\n"));
	buf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test_setup_teardown(test_missing_file_reads_zero, setup, teardown),
		cmocka_unit_test_setup_teardown(test_add_read_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_adds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zero_keeps_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_file_after_heap_reuse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oversized_file, setup, teardown),
		cmocka_unit_test(test_format_human),
		cmocka_unit_test(test_format_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
