/*
 * Unit tests for the file system helpers (src/common/fs.c): the lexical path
 * functions against tables of cases, the safety check for relative paths
 * that come from outside, capped reads, atomic writes (content, mode, no
 * temporary left behind, clean failure) and directory creation.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "fs.h"

/* --- temporary directory per test --- */


static char *tmp_path(void **state, const char *name)
{
	char *p = NULL;
	assert_true(asprintf(&p, "%s/%s", (const char *)*state, name) > 0);
	return p;
}

static void write_plain(const char *path, const void *data, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, n), (ssize_t)n);
	assert_int_equal(close(fd), 0);
}

/* Number of entries in a directory, without "." and "..". */
static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

/* --- lexical paths --- */

static void test_path_normalize(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ ".", "." },
		{ "/", "/" },
		{ "//", "/" },
		{ "a/./b", "a/b" },
		{ "a//b/", "a/b" },
		{ "a/../..", ".." },
		{ "/..", "/" },
		{ "/../..", "/" },
		{ "../a/../b", "../b" },
		{ "/a/b/../../c", "/c" },
		{ "a/b/..", "a" },
		{ "a/..", "." },
		{ "", "." },
		{ "./", "." },
		{ "././a/.", "a" },
		{ "..", ".." },
		{ "../..", "../.." },
		{ "../../a/..", "../.." },
		{ "a/b/c/../../../../d", "../d" },
		{ "/a/./b/.", "/a/b" },
		{ "/a//b//", "/a/b" },
		{ "/a/b/../..", "/" },
		{ "/a/b/../../..", "/" },
		{ "...", "..." },
		{ "a/.../b", "a/.../b" },
		{ "..a/b..", "..a/b.." },
		{ ".a/./.b", ".a/.b" },
		{ "/usr/include/../lib/./x.h", "/usr/lib/x.h" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *got = path_normalize(cases[i].in);
		assert_non_null(got);
		if (strcmp(got, cases[i].out) != 0)
			fail_msg("path_normalize(\"%s\") = \"%s\", want \"%s\"", cases[i].in, got, cases[i].out);
		free(got);
	}
}

static void test_path_join(void **state)
{
	static const struct {
		const char *dir, *name, *out;
	} cases[] = {
		{ "/a", "b", "/a/b" },
		{ "/a/", "b/", "/a/b" },
		{ "/a", "/b", "/b" },
		{ "/a/b", "../c", "/a/c" },
		{ "/a", "../..", "/" },
		{ "/", "x", "/x" },
		{ "/a", "", "/a" },
		{ "/a", ".", "/a" },
		{ "a", "b", "a/b" },
		{ "a", "../..", ".." },
		{ "", "x", "x" },
		{ "", "", "." },
		{ "/proj/build", "./obj/../src/main.c", "/proj/build/src/main.c" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *got = path_join(cases[i].dir, cases[i].name);
		assert_non_null(got);
		if (strcmp(got, cases[i].out) != 0)
			fail_msg("path_join(\"%s\", \"%s\") = \"%s\", want \"%s\"", cases[i].dir, cases[i].name, got,
				 cases[i].out);
		free(got);
	}
}

static void test_path_under(void **state)
{
	static const struct {
		const char *path, *root, *rest;  /* rest NULL: not under */
	} cases[] = {
		{ "/x", "/x", "." },
		{ "/x/y", "/x", "y" },
		{ "/x/y/z", "/x", "y/z" },
		{ "/xy", "/x", NULL },
		{ "/x.y", "/x", NULL },
		{ "/", "/x", NULL },
		{ "/y/x", "/x", NULL },
		{ "/x", "/x/y", NULL },
		{ "/", "/", "." },
		{ "/a", "/", "a" },
		{ "/a/b", "/", "a/b" },
		{ "a", "/", NULL },
		{ "", "/", NULL },
		{ "/home/u/proj/src/a.c", "/home/u/proj", "src/a.c" },
		{ "/home/u/project/a.c", "/home/u/proj", NULL },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const char *got = path_under(cases[i].path, cases[i].root);
		if (!cases[i].rest) {
			if (got)
				fail_msg("path_under(\"%s\", \"%s\") = \"%s\", want NULL", cases[i].path,
					 cases[i].root, got);
			continue;
		}
		if (!got || strcmp(got, cases[i].rest) != 0)
			fail_msg("path_under(\"%s\", \"%s\") = \"%s\", want \"%s\"", cases[i].path, cases[i].root,
				 got ? got : "(null)", cases[i].rest);
	}
	/* The rest points into path, not into a copy. */
	const char *p = "/x/y";
	assert_ptr_equal(path_under(p, "/x"), p + 3);
	assert_ptr_equal(path_under(p, "/"), p + 1);
}

static void test_path_is_safe_relative(void **state)
{
	static const struct {
		const char *path;
		bool safe;
	} cases[] = {
		{ "", false },
		{ "/a", false },
		{ "/", false },
		{ "a/../b", false },
		{ "..", false },
		{ "../a", false },
		{ "a/..", false },
		{ "a//b", false },
		{ "a/", false },
		{ "//a", false },
		{ "a", true },
		{ "a/b", true },
		{ "a/b/c.o", true },
		/* "." and ".x" stay inside; only ".." climbs. */
		{ ".", true },
		{ "./a", true },
		{ "...", true },
		{ "..a", true },
		{ "a..", true },
		{ ".hidden/x", true },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		if (path_is_safe_relative(cases[i].path, strlen(cases[i].path)) != cases[i].safe)
			fail_msg("path_is_safe_relative(\"%s\") != %d", cases[i].path, cases[i].safe);

	/* An embedded NUL is refused when len covers it... */
	assert_false(path_is_safe_relative("a\0b", 3));
	assert_false(path_is_safe_relative("a\0", 2));
	assert_false(path_is_safe_relative("\0", 1));
	/* ...and len, not the NUL, bounds the check. */
	assert_true(path_is_safe_relative("a\0b", 1));
	assert_true(path_is_safe_relative("ab/..", 2));
	assert_false(path_is_safe_relative("ab/..", 3));
	assert_false(path_is_safe_relative("ab/..", 5));
}

static void test_path_basename(void **state)
{
	assert_string_equal(path_basename("a/b"), "b");
	assert_string_equal(path_basename("/x/y/z.c"), "z.c");
	assert_string_equal(path_basename("b"), "b");
	assert_string_equal(path_basename("a/"), "");
	assert_string_equal(path_basename("/"), "");
}

/* --- reads --- */

static void test_read_file(void **state)
{
	_cleanup_free_ char *path = tmp_path(state, "f");
	char data[100];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)i;
	write_plain(path, data, sizeof(data));

	_cleanup_buf_ struct buf b;
	buf_init(&b, 0);
	assert_int_equal(fs_read_file(path, 100, &b), 0);
	assert_int_equal(b.len, 100);
	assert_memory_equal(b.data, data, 100);
	assert_int_equal(b.data[100], '\0');

	buf_reset(&b);
	assert_int_equal(fs_read_file(path, 99, &b), -EFBIG);
	assert_int_equal(fs_read_file(path, 0, &b), -EFBIG);

	/* fs_read_file's max wins over a smaller buffer cap, which is then
	 * restored. */
	struct buf small;
	buf_init(&small, 10);
	assert_int_equal(fs_read_file(path, 1000, &small), 0);
	assert_int_equal(small.len, 100);
	assert_int_equal(small.max, 10);
	buf_free(&small);
}

static void test_read_file_empty_and_errors(void **state)
{
	_cleanup_free_ char *path = tmp_path(state, "empty");
	write_plain(path, "", 0);
	_cleanup_buf_ struct buf b;
	buf_init(&b, 0);
	assert_int_equal(fs_read_file(path, 0, &b), 0);
	assert_int_equal(b.len, 0);
	assert_int_equal(fs_read_file(path, 10, &b), 0);
	assert_int_equal(b.len, 0);

	assert_int_equal(fs_read_file(*state, 10, &b), -EISDIR);
	_cleanup_free_ char *missing = tmp_path(state, "missing");
	assert_int_equal(fs_read_file(missing, 10, &b), -ENOENT);
	_cleanup_free_ char *under_file = tmp_path(state, "empty/x");
	assert_int_equal(fs_read_file(under_file, 10, &b), -ENOTDIR);
}

static void test_read_file_large(void **state)
{
	/* Several reads, with the cap exactly at the size. */
	size_t n = 300 * 1024 + 3;
	char *data = malloc(n);
	assert_non_null(data);
	for (size_t i = 0; i < n; i++)
		data[i] = (char)(i % 251);
	_cleanup_free_ char *path = tmp_path(state, "large");
	write_plain(path, data, n);
	_cleanup_buf_ struct buf b;
	buf_init(&b, 0);
	assert_int_equal(fs_read_file(path, n, &b), 0);
	assert_int_equal(b.len, n);
	assert_memory_equal(b.data, data, n);
	buf_reset(&b);
	assert_int_equal(fs_read_file(path, n - 1, &b), -EFBIG);
	buf_reset(&b);
	assert_int_equal(fs_read_file(path, SIZE_MAX, &b), 0);
	assert_int_equal(b.len, n);

	/* fs_read_fd with an unbounded max must not wrap max + 1 to zero. */
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	struct buf c;
	buf_init(&c, 0);
	assert_int_equal(fs_read_fd(fd, SIZE_MAX, &c), 0);
	close(fd);
	assert_int_equal(c.len, n);
	assert_memory_equal(c.data, data, n);
	buf_free(&c);
	free(data);
}

static void test_read_device_capped(void **state)
{
	/* A character device has no size to check up front; the cap still
	 * stops an endless stream. */
	_cleanup_buf_ struct buf b;
	buf_init(&b, 0);
	assert_int_equal(fs_read_file("/dev/zero", 1000, &b), -EFBIG);
	buf_reset(&b);
	assert_int_equal(fs_read_file("/dev/null", 1000, &b), 0);
	assert_int_equal(b.len, 0);
}

static void test_read_fd_pipe(void **state)
{
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(write(p[1], "0123456789abcdefghij", 20), 20);
	close(p[1]);
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(fs_read_fd(p[0], 19, &b), -EFBIG);
	close(p[0]);
	buf_free(&b);

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(write(p[1], "0123456789abcdefghij", 20), 20);
	close(p[1]);
	buf_init(&b, 0);
	assert_int_equal(fs_read_fd(p[0], 20, &b), 0);
	close(p[0]);
	assert_int_equal(b.len, 20);
	assert_string_equal(b.data, "0123456789abcdefghij");
	buf_free(&b);
}

static void test_read_fd_buffer_cap(void **state)
{
	/* The buffer's own cap applies to fs_read_fd: data that fits is read
	 * in full, more is -EFBIG. */
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(write(p[1], "12345", 5), 5);
	close(p[1]);
	struct buf b;
	buf_init(&b, 10);
	assert_int_equal(fs_read_fd(p[0], 100, &b), 0);
	close(p[0]);
	assert_int_equal(b.len, 5);
	assert_string_equal(b.data, "12345");
	buf_free(&b);

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(write(p[1], "0123456789abcdefghij", 20), 20);
	close(p[1]);
	buf_init(&b, 10);
	assert_int_equal(fs_read_fd(p[0], 100, &b), -EFBIG);
	close(p[0]);
	assert_true(b.len <= 10);
	buf_free(&b);
}

/* --- writes --- */

static void test_write_all(void **state)
{
	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(fs_write_all(p[1], "hello", 5), 0);
	assert_int_equal(fs_write_all(p[1], "", 0), 0);
	close(p[1]);
	char got[16] = { 0 };
	assert_int_equal(read(p[0], got, sizeof(got)), 5);
	assert_string_equal(got, "hello");
	close(p[0]);
	assert_int_equal(fs_write_all(-1, "x", 1), -EBADF);
}

static void test_write_atomic_content(void **state)
{
	_cleanup_free_ char *path = tmp_path(state, "out");
	assert_int_equal(fs_write_atomic(path, "first", 5, 0644, false), 0);
	_cleanup_buf_ struct buf b;
	buf_init(&b, 0);
	assert_int_equal(fs_read_file(path, 100, &b), 0);
	assert_string_equal(b.data, "first");

	/* Replacing an existing file, with fsync. */
	assert_int_equal(fs_write_atomic(path, "second!", 7, 0644, true), 0);
	buf_reset(&b);
	assert_int_equal(fs_read_file(path, 100, &b), 0);
	assert_int_equal(b.len, 7);
	assert_string_equal(b.data, "second!");

	/* Empty content gives an empty file. */
	assert_int_equal(fs_write_atomic(path, "", 0, 0644, false), 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 0);

	/* Only the target is left: no temporary files. */
	assert_int_equal(count_entries(*state), 1);
}

static void test_write_atomic_mode(void **state)
{
	_cleanup_free_ char *a = tmp_path(state, "a"), *b = tmp_path(state, "b"), *c = tmp_path(state, "c");
	mode_t old = umask(022);
	assert_int_equal(fs_write_atomic(a, "x", 1, 0666, false), 0);
	umask(077);
	assert_int_equal(fs_write_atomic(b, "x", 1, 0644, false), 0);
	umask(0);
	assert_int_equal(fs_write_atomic(c, "x", 1, 0640, false), 0);
	umask(old);
	struct stat st;
	assert_int_equal(stat(a, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_int_equal(stat(b, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(stat(c, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
}

static void test_write_atomic_fails_cleanly(void **state)
{
	/* A regular file used as a directory fails for every user, root
	 * included. */
	_cleanup_free_ char *file = tmp_path(state, "file");
	write_plain(file, "keep", 4);
	_cleanup_free_ char *under = tmp_path(state, "file/out");
	assert_int_equal(fs_write_atomic(under, "x", 1, 0644, false), -ENOTDIR);
	_cleanup_free_ char *missing = tmp_path(state, "nodir/out");
	assert_int_equal(fs_write_atomic(missing, "x", 1, 0644, false), -ENOENT);
	assert_int_equal(count_entries(*state), 1);

	/* The target is a directory: the rename fails, and the temporary file
	 * written before it is removed. */
	_cleanup_free_ char *dir = tmp_path(state, "dir");
	assert_int_equal(mkdir(dir, 0755), 0);
	assert_int_equal(fs_write_atomic(dir, "x", 1, 0644, false), -EISDIR);
	assert_int_equal(count_entries(*state), 2);
	assert_int_equal(count_entries(dir), 0);
}

static void test_write_atomic_unwritable_dir(void **state)
{
	if (geteuid() == 0)
		skip();  /* root ignores directory permissions */
	_cleanup_free_ char *dir = tmp_path(state, "ro");
	assert_int_equal(mkdir(dir, 0500), 0);
	_cleanup_free_ char *path = tmp_path(state, "ro/out");
	int r = fs_write_atomic(path, "x", 1, 0644, false);
	int entries = count_entries(dir);
	chmod(dir, 0700);
	assert_int_equal(r, -EACCES);
	assert_int_equal(entries, 0);
}

static void test_mkstemp(void **state)
{
	_cleanup_free_ char *prefix = tmp_path(state, "obj.o");
	char *p1 = NULL, *p2 = NULL;
	mode_t old = umask(022);
	int fd1 = fs_mkstemp(prefix, 0644, &p1);
	int fd2 = fs_mkstemp(prefix, 0644, &p2);
	umask(old);
	assert_true(fd1 >= 0);
	assert_true(fd2 >= 0);
	assert_string_not_equal(p1, p2);
	/* "<prefix>.<16 hex digits>.tmp" */
	size_t pl = strlen(prefix);
	assert_int_equal(strlen(p1), pl + 1 + 16 + 4);
	assert_memory_equal(p1, prefix, pl);
	assert_int_equal(p1[pl], '.');
	for (size_t i = pl + 1; i < pl + 17; i++)
		assert_non_null(strchr("0123456789abcdef", p1[i]));
	assert_string_equal(p1 + pl + 17, ".tmp");
	assert_true(fcntl(fd1, F_GETFD) & FD_CLOEXEC);
	struct stat st;
	assert_int_equal(fstat(fd1, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	close(fd1);
	close(fd2);
	free(p1);
	free(p2);

	char *p3 = (char *)"untouched";
	_cleanup_free_ char *bad = tmp_path(state, "nodir/x");
	assert_int_equal(fs_mkstemp(bad, 0644, &p3), -ENOENT);
	assert_string_equal(p3, "untouched");
}

/* --- directories --- */

static void test_mkdir_p(void **state)
{
	_cleanup_free_ char *deep = tmp_path(state, "a/b/c/d");
	mode_t old = umask(022);
	assert_int_equal(fs_mkdir_p(deep, 0777), 0);
	umask(old);
	struct stat st;
	assert_int_equal(stat(deep, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0755);
	_cleanup_free_ char *mid = tmp_path(state, "a/b");
	assert_int_equal(stat(mid, &st), 0);
	assert_true(S_ISDIR(st.st_mode));

	/* Existing directories are fine, with or without a trailing slash. */
	assert_int_equal(fs_mkdir_p(deep, 0777), 0);
	assert_int_equal(fs_mkdir_p(mid, 0777), 0);
	_cleanup_free_ char *slash = tmp_path(state, "a/b/e/");
	assert_int_equal(fs_mkdir_p(slash, 0777), 0);
	_cleanup_free_ char *e = tmp_path(state, "a/b/e");
	assert_int_equal(stat(e, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(fs_mkdir_p("/", 0777), 0);
}

static void test_mkdir_p_relative(void **state)
{
	int cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(cwd >= 0);
	assert_int_equal(chdir(*state), 0);
	int r = fs_mkdir_p("x/y/z", 0755);
	struct stat st;
	int s = stat("x/y/z", &st);
	assert_int_equal(fchdir(cwd), 0);
	close(cwd);
	assert_int_equal(r, 0);
	assert_int_equal(s, 0);
	assert_true(S_ISDIR(st.st_mode));
}

static void test_mkdir_p_not_a_directory(void **state)
{
	_cleanup_free_ char *file = tmp_path(state, "file");
	write_plain(file, "x", 1);
	/* A regular file is in the way: not a directory, however created. */
	assert_int_equal(fs_mkdir_p(file, 0755), -ENOTDIR);
	_cleanup_free_ char *under = tmp_path(state, "file/sub/dir");
	assert_int_equal(fs_mkdir_p(under, 0755), -ENOTDIR);
	_cleanup_free_ char *under1 = tmp_path(state, "file/sub");
	assert_int_equal(fs_mkdir_p(under1, 0755), -ENOTDIR);
	/* A symlink to a directory is a directory. */
	_cleanup_free_ char *dir = tmp_path(state, "dir"), *link = tmp_path(state, "link");
	assert_int_equal(mkdir(dir, 0755), 0);
	assert_int_equal(symlink(dir, link), 0);
	assert_int_equal(fs_mkdir_p(link, 0755), 0);
}

static void test_find_upwards(void **state)
{
	_cleanup_free_ char *deep = tmp_path(state, "a/b/c");
	assert_int_equal(fs_mkdir_p(deep, 0755), 0);
	_cleanup_free_ char *marker = tmp_path(state, "a/.marker");
	write_plain(marker, "", 0);
	_cleanup_free_ char *a = tmp_path(state, "a");
	_cleanup_free_ char *want = path_normalize(a);

	char *got = path_find_upwards(deep, ".marker");
	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);

	/* The start directory itself counts. */
	got = path_find_upwards(a, ".marker");
	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);

	/* A non-normalised start is normalised first. */
	_cleanup_free_ char *messy = tmp_path(state, "a/b/./c/..//");
	got = path_find_upwards(messy, ".marker");
	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);

	/* Nearest wins. */
	_cleanup_free_ char *marker2 = tmp_path(state, "a/b/.marker");
	write_plain(marker2, "", 0);
	_cleanup_free_ char *b = tmp_path(state, "a/b");
	_cleanup_free_ char *want_b = path_normalize(b);
	got = path_find_upwards(deep, ".marker");
	assert_non_null(got);
	assert_string_equal(got, want_b);
	free(got);

	/* Found at the root of the file system. */
	got = path_find_upwards(deep, "tmp");
	assert_non_null(got);
	assert_string_equal(got, "/");
	free(got);

	assert_null(path_find_upwards(deep, "hpcc-test-no-such-marker-7f3a9c"));
	assert_null(path_find_upwards("/", "hpcc-test-no-such-marker-7f3a9c"));
	/* A relative start has no defined ancestors. */
	assert_null(path_find_upwards("a/b", ".marker"));
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, testutil_setup_tmpdir, testutil_teardown_tmpdir)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path_normalize),
		cmocka_unit_test(test_path_join),
		cmocka_unit_test(test_path_under),
		cmocka_unit_test(test_path_is_safe_relative),
		cmocka_unit_test(test_path_basename),
		T(test_read_file),
		T(test_read_file_empty_and_errors),
		T(test_read_file_large),
		cmocka_unit_test(test_read_device_capped),
		cmocka_unit_test(test_read_fd_pipe),
		cmocka_unit_test(test_read_fd_buffer_cap),
		cmocka_unit_test(test_write_all),
		T(test_write_atomic_content),
		T(test_write_atomic_mode),
		T(test_write_atomic_fails_cleanly),
		T(test_write_atomic_unwritable_dir),
		T(test_mkstemp),
		T(test_mkdir_p),
		T(test_mkdir_p_relative),
		T(test_mkdir_p_not_a_directory),
		T(test_find_upwards),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
