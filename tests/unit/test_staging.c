/*
 * Unit tests for the per-exec staging directory (src/worker/staging.c):
 * nested writes with exact modes, refusal of every unsafe path spelling
 * (parent parts, absolute, empty parts, "." parts, NUL, oversize paths and
 * names, duplicates), symlinks planted inside root/ that neither a write nor
 * a read follows, reads that refuse anything but a regular file within the
 * cap, removal of trees a compiler may leave (read-only and unsearchable
 * directories, symlinks to the outside, deep nesting), and the start-up sweep.
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
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"
#include "staging.h"
#include "testutil.h"

static char *join(const char *a, const char *b)
{
	char *p = NULL;
	assert_true(asprintf(&p, "%s/%s", a ? a : "", b ? b : "") > 0);
	return p;
}

static struct staging *make_staging(const char *tmpdir)
{
	char *base = join(tmpdir, "base/nested");
	struct staging *s = NULL;
	struct error err = { 0 };
	assert_int_equal(staging_create(base, &s, &err), 0);
	free(base);
	return s;
}

static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

static void write_host_file(const char *path, const char *text)
{
	assert_int_equal(fs_write_atomic(path, text, strlen(text), 0644, false), 0);
}

static void test_create_layout(void **state)
{
	struct staging *s = make_staging(*state);
	const char *root = staging_root(s), *tmp = staging_tmp(s);
	assert_int_equal(root[0], '/');
	assert_int_equal(tmp[0], '/');
	assert_non_null(strstr(root, "/exec-"));
	assert_string_equal(path_basename(root), "root");
	assert_string_equal(path_basename(tmp), "tmp");
	struct stat st;
	char *dir = strdup(root);
	*strrchr(dir, '/') = '\0';
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(stat(root, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(stat(tmp, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	staging_destroy(s);
	assert_false(exists(dir));
	free(dir);
	staging_destroy(NULL);
}

static void test_write_nested(void **state)
{
	struct staging *s = make_staging(*state);
	struct error err = { 0 };
	assert_int_equal(staging_write_file(s, "a/b/c.txt", "hello", 5, false, &err), 0);
	assert_int_equal(staging_write_file(s, "a/b/run.sh", "#!/bin/sh\n", 10, true, &err), 0);
	assert_int_equal(staging_write_file(s, "top.c", "", 0, false, &err), 0);
	assert_int_equal(staging_mkdir(s, "out/obj", &err), 0);
	assert_int_equal(staging_mkdir(s, "out/obj", &err), 0);
	assert_int_equal(staging_mkdir(s, "", &err), 0);
	assert_int_equal(staging_mkdir(s, ".", &err), 0);

	char *p = join(staging_root(s), "a/b/c.txt");
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	free(p);
	p = join(staging_root(s), "a/b/run.sh");
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0755);
	free(p);
	p = join(staging_root(s), "out/obj");
	assert_int_equal(stat(p, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	free(p);

	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(staging_read_file(s, "a/b/c.txt", 5, &b, &err), 0);
	assert_int_equal(b.len, 5);
	assert_string_equal(b.data, "hello");
	assert_int_equal(staging_read_file(s, "top.c", 100, &b, &err), 0);
	assert_int_equal(b.len, 0);
	assert_non_null(b.data);
	buf_free(&b);

	int fd = -1;
	assert_int_equal(staging_open_dir(s, "a/b", &fd, &err), 0);
	assert_true(fd > 2);
	assert_int_equal(faccessat(fd, "c.txt", R_OK, 0), 0);
	close(fd);
	assert_int_equal(staging_open_dir(s, "", &fd, &err), 0);
	assert_int_equal(faccessat(fd, "a/b/c.txt", R_OK, 0), 0);
	close(fd);
	assert_int_equal(staging_open_dir(s, "missing", &fd, &err), -ENOENT);
	assert_int_equal(staging_open_dir(s, "a/b/c.txt", &fd, &err), -ENOTDIR);
	staging_destroy(s);
}

static void test_refuses_unsafe_paths(void **state)
{
	struct staging *s = make_staging(*state);
	char *long_path = malloc(5001);
	memset(long_path, 'a', 5000);
	for (int i = 100; i < 5000; i += 100)
		long_path[i] = '/';
	long_path[5000] = '\0';
	char long_name[STAGING_NAME_MAX + 2];
	memset(long_name, 'n', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	const char *bad[] = { "../x", "/etc/passwd", "a//b", "a/./b", "a/../b", "", "..", ".", "./a", "a/",
			      "a/b/..", long_path, long_name };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct error err = { 0 };
		assert_false(staging_relpath_ok(bad[i], strlen(bad[i])));
		assert_int_equal(staging_write_file(s, bad[i], "x", 1, false, &err), -EINVAL);
		assert_int_equal(err.code, -EINVAL);
		assert_non_null(strstr(err.msg, "unsafe"));
		struct buf b;
		buf_init(&b, 0);
		assert_int_equal(staging_read_file(s, bad[i], 10, &b, NULL), -EINVAL);
		buf_free(&b);
		if (strcmp(bad[i], "") != 0 && strcmp(bad[i], ".") != 0) {
			int fd = -1;
			assert_int_equal(staging_mkdir(s, bad[i], NULL), -EINVAL);
			assert_int_equal(staging_open_dir(s, bad[i], &fd, NULL), -EINVAL);
		}
	}
	assert_int_equal(staging_write_file(s, NULL, "x", 1, false, NULL), -EINVAL);
	/* A NUL inside the path, as a length-aware caller would pass it. */
	assert_false(staging_relpath_ok("a\0b", 3));
	assert_false(staging_relpath_ok("a/b\0", 4));
	assert_true(staging_relpath_ok("a/b", 3));
	assert_true(staging_relpath_ok("a/.hidden/..b/c..", 17));
	/* The limits themselves are accepted. */
	char edge[STAGING_NAME_MAX + 1];
	memset(edge, 'e', STAGING_NAME_MAX);
	edge[STAGING_NAME_MAX] = '\0';
	assert_true(staging_relpath_ok(edge, STAGING_NAME_MAX));
	assert_int_equal(staging_write_file(s, edge, "x", 1, false, NULL), 0);
	long_path[STAGING_PATH_MAX] = '\0';
	assert_true(staging_relpath_ok(long_path, STAGING_PATH_MAX));
	assert_false(staging_relpath_ok(long_path, STAGING_PATH_MAX + 1));
	free(long_path);
	/* Nothing landed next to root/. */
	char *x = join(staging_root(s), "../x");
	assert_false(exists(x));
	free(x);
	staging_destroy(s);
}

static void test_refuses_duplicate(void **state)
{
	struct staging *s = make_staging(*state);
	struct error err = { 0 };
	assert_int_equal(staging_write_file(s, "d/a.h", "first", 5, false, &err), 0);
	assert_int_equal(staging_write_file(s, "d/a.h", "second", 6, false, &err), -EEXIST);
	assert_non_null(strstr(err.msg, "d/a.h"));
	/* A file where a directory is needed, and the other way round. */
	assert_int_equal(staging_write_file(s, "d/a.h/b", "x", 1, false, NULL), -ENOTDIR);
	assert_int_equal(staging_write_file(s, "d", "x", 1, false, NULL), -EEXIST);
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(staging_read_file(s, "d/a.h", 100, &b, NULL), 0);
	assert_string_equal(b.data, "first");
	buf_free(&b);
	staging_destroy(s);
}

static void test_symlinks_not_followed(void **state)
{
	struct staging *s = make_staging(*state);
	char *outside = join(*state, "outside");
	assert_int_equal(mkdir(outside, 0755), 0);
	char *secret = join(outside, "secret");
	write_host_file(secret, "host secret");

	/* A compiler (or a second exec) planted these inside root/. */
	char *dirlink = join(staging_root(s), "link");
	char *filelink = join(staging_root(s), "f");
	char *dangling = join(staging_root(s), "dangling");
	char *missing = join(outside, "created-through-link");
	assert_int_equal(symlink(outside, dirlink), 0);
	assert_int_equal(symlink(secret, filelink), 0);
	assert_int_equal(symlink(missing, dangling), 0);

	struct error err = { 0 };
	int r = staging_write_file(s, "link/x", "x", 1, false, &err);
	assert_true(r == -ELOOP || r == -ENOTDIR);
	assert_non_null(strstr(err.msg, "symlink"));
	char *x = join(outside, "x");
	assert_false(exists(x));
	assert_true(staging_mkdir(s, "link/sub", NULL) < 0);
	char *sub = join(outside, "sub");
	assert_false(exists(sub));
	assert_int_equal(staging_write_file(s, "f", "overwritten", 11, false, NULL), -EEXIST);
	assert_int_equal(staging_write_file(s, "dangling", "x", 1, false, NULL), -EEXIST);
	assert_false(exists(missing));
	int fd = -1;
	r = staging_open_dir(s, "link", &fd, NULL);
	assert_true(r == -ELOOP || r == -ENOTDIR);

	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(staging_read_file(s, "f", 100, &b, NULL), -ELOOP);
	r = staging_read_file(s, "link/secret", 100, &b, NULL);
	assert_true(r == -ELOOP || r == -ENOTDIR);
	assert_int_equal(b.len, 0);
	buf_free(&b);

	/* The host file is untouched, and removal does not reach it. */
	buf_init(&b, 0);
	assert_int_equal(fs_read_file(secret, 100, &b), 0);
	assert_string_equal(b.data, "host secret");
	buf_free(&b);
	staging_destroy(s);
	assert_true(exists(secret));
	assert_true(exists(outside));
	free(outside);
	free(secret);
	free(dirlink);
	free(filelink);
	free(dangling);
	free(missing);
	free(x);
	free(sub);
}

static void test_read_refusals(void **state)
{
	struct staging *s = make_staging(*state);
	assert_int_equal(staging_write_file(s, "obj/a.o", "0123456789", 10, false, NULL), 0);
	char *fifo = join(staging_root(s), "obj/fifo");
	assert_int_equal(mkfifo(fifo, 0644), 0);

	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(buf_append_str(&b, "kept"), 0);
	struct error err = { 0 };
	assert_int_equal(staging_read_file(s, "obj", 100, &b, &err), -EISDIR);
	assert_non_null(strstr(err.msg, "directory"));
	/* A FIFO is refused without blocking on it. */
	assert_int_equal(staging_read_file(s, "obj/fifo", 100, &b, NULL), -EINVAL);
	assert_int_equal(staging_read_file(s, "obj/missing", 100, &b, NULL), -ENOENT);
	assert_int_equal(staging_read_file(s, "obj/a.o", 9, &b, NULL), -EFBIG);
	/* Failures leave the buffer as it was. */
	assert_string_equal(b.data, "kept");
	assert_int_equal(staging_read_file(s, "obj/a.o", 10, &b, NULL), 0);
	assert_int_equal(b.len, 10);
	assert_string_equal(b.data, "0123456789");
	buf_free(&b);
	/* The buffer's own cap holds too. */
	buf_init(&b, 4);
	assert_int_equal(staging_read_file(s, "obj/a.o", 100, &b, NULL), -EFBIG);
	buf_free(&b);
	free(fifo);
	staging_destroy(s);
}

static void test_destroy_hostile_tree(void **state)
{
	struct staging *s = make_staging(*state);
	char *dir = strdup(staging_root(s));
	*strrchr(dir, '/') = '\0';
	assert_int_equal(staging_write_file(s, "ro/sub/file", "x", 1, false, NULL), 0);
	assert_int_equal(staging_write_file(s, "noperm/file", "x", 1, false, NULL), 0);
	/* Deeper than the removal's own depth cap, to exercise the move up. */
	char deep[2 * 100];
	for (int i = 0; i < 100; i++) {
		deep[2 * i] = 'd';
		deep[2 * i + 1] = '/';
	}
	deep[sizeof(deep) - 1] = '\0';
	assert_int_equal(staging_mkdir(s, deep, NULL), 0);
	char *fifo = join(staging_root(s), "fifo");
	assert_int_equal(mkfifo(fifo, 0600), 0);
	char *ro = join(staging_root(s), "ro");
	char *ro_sub = join(staging_root(s), "ro/sub");
	char *noperm = join(staging_root(s), "noperm");
	assert_int_equal(chmod(ro_sub, 0500), 0);
	assert_int_equal(chmod(ro, 0500), 0);
	assert_int_equal(chmod(noperm, 0), 0);
	assert_int_equal(chmod(staging_root(s), 0500), 0);
	char *tmpfile_path = join(staging_tmp(s), "cc123.s");
	write_host_file(tmpfile_path, "tmp");
	staging_destroy(s);
	assert_false(exists(dir));
	free(dir);
	free(fifo);
	free(ro);
	free(ro_sub);
	free(noperm);
	free(tmpfile_path);
}

static void test_sweep(void **state)
{
	char *base = join(*state, "sweep");
	assert_int_equal(staging_sweep(base), 0);  /* missing: nothing to do */
	struct staging *a = NULL, *b = NULL;
	assert_int_equal(staging_create(base, &a, NULL), 0);
	assert_int_equal(staging_create(base, &b, NULL), 0);
	assert_int_equal(staging_write_file(a, "x/y/z.o", "o", 1, false, NULL), 0);
	char *ro = join(staging_root(b), "ro");
	assert_int_equal(mkdir(ro, 0500), 0);
	char *keep = join(base, "keep-me");
	write_host_file(keep, "k");
	char *keep_dir = join(base, "cas");
	assert_int_equal(mkdir(keep_dir, 0700), 0);
	/* A symlink named like a leftover must not be followed. */
	char *victim = join(*state, "victim");
	assert_int_equal(mkdir(victim, 0700), 0);
	char *victim_file = join(victim, "file");
	write_host_file(victim_file, "v");
	char *exec_link = join(base, "exec-link");
	assert_int_equal(symlink(victim, exec_link), 0);

	assert_int_equal(staging_sweep(base), 2);
	char *a_root = strdup(staging_root(a));
	assert_false(exists(a_root));
	assert_true(exists(keep));
	assert_true(exists(keep_dir));
	assert_true(exists(victim_file));
	assert_true(exists(exec_link));
	assert_int_equal(staging_sweep(base), 0);
	/* Destroying what a sweep already removed is harmless. */
	staging_destroy(a);
	staging_destroy(b);
	free(a_root);
	free(base);
	free(ro);
	free(keep);
	free(keep_dir);
	free(victim);
	free(victim_file);
	free(exec_link);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, testutil_setup_tmpdir, testutil_teardown_tmpdir)
	const struct CMUnitTest tests[] = {
		T(test_create_layout),
		T(test_write_nested),
		T(test_refuses_unsafe_paths),
		T(test_refuses_duplicate),
		T(test_symlinks_not_followed),
		T(test_read_refusals),
		T(test_destroy_hostile_tree),
		T(test_sweep),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
