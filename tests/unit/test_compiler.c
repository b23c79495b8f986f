/*
 * Unit tests for the real-compiler facts (src/client/compiler.c): the PATH
 * lookup that must never find hpcc itself (same inode, or a symlink to a
 * binary named hpcc*), toolchain identity (stable, distinct per compiler,
 * family from --version, changed by the binary or its version text), the
 * system include directories, and the -march=native digest. Uses the
 * host's /usr/bin/gcc, /usr/bin/clang when present, and small /bin/sh
 * scripts standing in for compilers.
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
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compiler.h"

#define GCC "/usr/bin/gcc"
#define CLANG "/usr/bin/clang"

struct fixture {
	char *dir;
	char *saved_path;
};


static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char tmpl[] = "/tmp/hpcc-test-compiler-XXXXXX";
	if (!f || !mkdtemp(tmpl) || !(f->dir = strdup(tmpl)))
		return -1;
	const char *p = getenv("PATH");
	f->saved_path = p ? strdup(p) : NULL;
	compiler_forget();
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	if (f->saved_path)
		setenv("PATH", f->saved_path, 1);
	else
		unsetenv("PATH");
	testutil_rm_rf(f->dir);
	free(f->saved_path);
	free(f->dir);
	free(f);
	compiler_forget();
	return 0;
}

static char *path_in(const struct fixture *f, const char *name)
{
	char *p = NULL;
	assert_true(asprintf(&p, "%s/%s", f->dir, name) > 0);
	return p;
}

static void make_dir(const struct fixture *f, const char *name)
{
	_cleanup_free_ char *p = path_in(f, name);
	assert_int_equal(mkdir(p, 0755), 0);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	assert_true(fd >= 0);
	size_t n = strlen(text);
	assert_int_equal(write(fd, text, n), (ssize_t)n);
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(close(fd), 0);
}

/* A stand-in compiler: prints version on --version and exits with code. */
static char *make_script(const struct fixture *f, const char *name, const char *version, int code)
{
	char *p = path_in(f, name);
	_cleanup_free_ char *text = NULL;
	assert_true(asprintf(&text, "#!/bin/sh\ncase \"$1\" in --version) echo '%s';; esac\nexit %d\n", version, code) > 0);
	write_file(p, text, 0755);
	return p;
}

/* Sets PATH to the fixture's subdirectories (and other entries) in order. */
static void set_path(const struct fixture *f, const char *const *entries, size_t n)
{
	char buf[4096] = "";
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		int w = entries[i][0] == '/' || entries[i][0] == '\0' ?
				snprintf(buf + len, sizeof(buf) - len, "%s%s", i ? ":" : "", entries[i]) :
				snprintf(buf + len, sizeof(buf) - len, "%s%s/%s", i ? ":" : "", f->dir, entries[i]);
		assert_true(w > 0 && (size_t)w < sizeof(buf) - len);
		len += (size_t)w;
	}
	assert_int_equal(setenv("PATH", buf, 1), 0);
}

static void assert_found(char *got, const char *want)
{
	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

/* --- compiler_find --- */

/* self/hpcc is "us"; real/gcc links to the host's gcc. */
static char *make_self_and_real(const struct fixture *f)
{
	make_dir(f, "self");
	make_dir(f, "real");
	char *self = make_script(f, "self/hpcc", "hpcc 0.1", 0);
	_cleanup_free_ char *real = path_in(f, "real/gcc");
	assert_int_equal(symlink(GCC, real), 0);
	return self;
}

static void test_find_skips_same_inode(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *self = make_self_and_real(f);
	_cleanup_free_ char *real = path_in(f, "real/gcc");
	make_dir(f, "hard");
	make_dir(f, "soft");
	_cleanup_free_ char *hard = path_in(f, "hard/gcc");
	_cleanup_free_ char *soft = path_in(f, "soft/gcc");
	assert_int_equal(link(self, hard), 0);
	assert_int_equal(symlink(self, soft), 0);

	/* A hard link has no name to go by: only the inode gives it away. */
	const char *const entries[] = { "hard", "soft", "real" };
	set_path(f, entries, 3);
	assert_found(compiler_find("gcc", self), real);
	/* Self given by another of its names: still the same inode. */
	assert_found(compiler_find("gcc", hard), real);
	/* Without knowing self, the hard link is taken (it is not named hpcc). */
	assert_found(compiler_find("gcc", NULL), hard);
	/* The symlink alone names hpcc, so it is skipped even then. */
	const char *const soft_first[] = { "soft", "real" };
	set_path(f, soft_first, 2);
	assert_found(compiler_find("gcc", NULL), real);

	/* Nothing but ourselves: not found. */
	const char *const only_self[] = { "hard", "soft", "self" };
	set_path(f, only_self, 3);
	assert_null(compiler_find("gcc", self));
	assert_null(compiler_find("hpcc", self));
}

static void test_find_skips_symlink_to_hpcc(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *self = make_self_and_real(f);
	_cleanup_free_ char *real = path_in(f, "real/gcc");
	/* Another hpcc (another inode), e.g. a second installed version. */
	make_dir(f, "other");
	_cleanup_free_ char *other = make_script(f, "other/hpcc-0.2", "hpcc 0.2", 0);
	make_dir(f, "link");
	_cleanup_free_ char *link1 = path_in(f, "link/gcc");
	assert_int_equal(symlink("../other/hpcc-0.2", link1), 0);
	/* Through a chain of symlinks with innocent names. */
	make_dir(f, "chain");
	make_dir(f, "mid");
	_cleanup_free_ char *mid = path_in(f, "mid/cc");
	_cleanup_free_ char *chain = path_in(f, "chain/gcc");
	assert_int_equal(symlink(other, mid), 0);
	assert_int_equal(symlink(mid, chain), 0);

	const char *const entries[] = { "link", "chain", "real" };
	set_path(f, entries, 3);
	assert_found(compiler_find("gcc", self), real);
	assert_found(compiler_find("gcc", NULL), real);
}

static void test_find_skips_unusable(void **state)
{
	struct fixture *f = *state;
	make_dir(f, "noexec");
	make_dir(f, "isdir");
	make_dir(f, "isdir/gcc");
	make_dir(f, "dangling");
	_cleanup_free_ char *noexec = path_in(f, "noexec/gcc");
	write_file(noexec, "#!/bin/sh\n", 0644);
	_cleanup_free_ char *dangling = path_in(f, "dangling/gcc");
	assert_int_equal(symlink("/nonexistent/gcc", dangling), 0);
	/* Empty entries are skipped, not taken as the cwd. */
	const char *const entries[] = { "noexec", "", "isdir", "dangling", "/nonexistent-dir", GCC "-not-a-dir",
					 "/usr/bin" };
	set_path(f, entries, ARRAY_SIZE(entries));
	assert_found(compiler_find("gcc", NULL), GCC);
}

static void test_find_host_gcc(void **state)
{
	struct fixture *f = *state;
	const char *const entries[] = { "/usr/bin" };
	set_path(f, entries, 1);
	assert_found(compiler_find("gcc", NULL), GCC);
	assert_null(compiler_find("no-such-compiler-hpcc-test", NULL));

	/* Without PATH: the default list. */
	struct stat st;
	if (stat("/usr/local/bin/gcc", &st) == 0)
		skip();
	assert_int_equal(unsetenv("PATH"), 0);
	assert_found(compiler_find("gcc", NULL), GCC);
	assert_int_equal(setenv("PATH", "", 1), 0);
	assert_found(compiler_find("gcc", NULL), GCC);
}

/* --- identity --- */

static void test_identify_gcc_stable(void **state)
{
	struct toolchain a, b, c;
	assert_int_equal(compiler_identify(GCC, &a), 0);
	assert_int_equal(a.family, FAMILY_GCC);
	assert_false(digest_is_zero(&a.id));
	assert_int_equal(compiler_identify(GCC, &b), 0);
	assert_true(digest_equal(&a.id, &b.id));
	/* Computed afresh, it is the same: nothing in it varies by run. */
	compiler_forget();
	assert_int_equal(compiler_identify(GCC, &c), 0);
	assert_true(digest_equal(&a.id, &c.id));
	assert_int_equal(c.family, FAMILY_GCC);
}

static void test_identify_clang(void **state)
{
	struct stat st;
	if (stat(CLANG, &st) != 0)
		skip();
	struct toolchain g, c1, c2;
	assert_int_equal(compiler_identify(GCC, &g), 0);
	assert_int_equal(compiler_identify(CLANG, &c1), 0);
	assert_int_equal(c1.family, FAMILY_CLANG);
	assert_false(digest_equal(&g.id, &c1.id));
	compiler_forget();
	assert_int_equal(compiler_identify(CLANG, &c2), 0);
	assert_true(digest_equal(&c1.id, &c2.id));
}

static void test_identify_scripts(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *g = make_script(f, "fake-gcc", "fake-gcc (GCC) 12.2.0", 0);
	_cleanup_free_ char *c = make_script(f, "fake-cc", "Ubuntu clang version 14.0.0", 0);
	struct toolchain tg, tc, t2;
	assert_int_equal(compiler_identify(g, &tg), 0);
	assert_int_equal(tg.family, FAMILY_GCC);
	assert_int_equal(compiler_identify(c, &tc), 0);
	assert_int_equal(tc.family, FAMILY_CLANG);
	assert_false(digest_equal(&tg.id, &tc.id));

	/* A new version text (a wrapper script retargeted) changes the id,
	 * without compiler_forget: the binary's stat changed. */
	free(make_script(f, "fake-gcc", "fake-gcc (GCC) 13.1.0 and a longer text", 0));
	assert_int_equal(compiler_identify(g, &t2), 0);
	assert_false(digest_equal(&tg.id, &t2.id));

	/* The same content at another path is the same identity. */
	_cleanup_free_ char *copy = make_script(f, "copy-gcc", "fake-gcc (GCC) 13.1.0 and a longer text", 0);
	struct toolchain t3;
	assert_int_equal(compiler_identify(copy, &t3), 0);
	assert_true(digest_equal(&t2.id, &t3.id));
}

/* The version text counts apart from the binary: a driver script that runs
 * whatever compiler a file names gets a new identity when that changes. */
static void test_identify_version_text(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *version = path_in(f, "version.txt");
	write_file(version, "fake-gcc (GCC) 12.2.0\n", 0644);
	_cleanup_free_ char *script = path_in(f, "driver-gcc");
	_cleanup_free_ char *text = NULL;
	assert_true(asprintf(&text, "#!/bin/sh\ncat '%s'\n", version) > 0);
	write_file(script, text, 0755);
	struct toolchain a, b;
	assert_int_equal(compiler_identify(script, &a), 0);
	write_file(version, "fake-gcc (GCC) 13.1.0\n", 0644);
	/* Answers are memoised by the script's stat, which did not change. */
	compiler_forget();
	assert_int_equal(compiler_identify(script, &b), 0);
	assert_false(digest_equal(&a.id, &b.id));
	assert_int_equal(b.family, FAMILY_GCC);
}

static void test_identify_errors(void **state)
{
	struct fixture *f = *state;
	struct toolchain t;
	_cleanup_free_ char *missing = path_in(f, "missing-cc");
	assert_int_equal(compiler_identify(missing, &t), -ENOENT);
	_cleanup_free_ char *failing = make_script(f, "failing-cc", "x", 1);
	assert_int_equal(compiler_identify(failing, &t), -ENOEXEC);
	/* A failure is not memoised as a success later. */
	assert_int_equal(compiler_identify(failing, &t), -ENOEXEC);
	assert_true(compiler_identify(f->dir, &t) < 0);
}

/* --- system directories --- */

static bool strv_contains(const struct strv *s, const char *want)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i], want) == 0)
			return true;
	return false;
}

static void assert_normalised_absolute(const struct strv *s)
{
	for (size_t i = 0; i < s->n; i++) {
		const char *d = s->v[i];
		assert_true(d[0] == '/');
		assert_null(strstr(d, "//"));
		assert_null(strstr(d, "/./"));
		assert_null(strstr(d, "/../"));
		size_t n = strlen(d);
		assert_true(n == 1 || d[n - 1] != '/');
		assert_null(strchr(d, ' '));
	}
}

static void test_system_dirs_gcc(void **state)
{
	_cleanup_strv_ struct strv c = { 0 };
	assert_int_equal(compiler_system_dirs(GCC, LANG_C, NULL, 0, &c), 0);
	assert_true(c.n >= 2);
	assert_true(strv_contains(&c, "/usr/include"));
	assert_normalised_absolute(&c);
	for (size_t i = 0; i < c.n; i++)
		assert_null(strstr(c.v[i], "c++"));

	/* Asked again (memoised), the same list. */
	_cleanup_strv_ struct strv again = { 0 };
	assert_int_equal(compiler_system_dirs(GCC, LANG_C, NULL, 0, &again), 0);
	assert_int_equal(again.n, c.n);
	for (size_t i = 0; i < c.n; i++)
		assert_string_equal(again.v[i], c.v[i]);

	/* C++ adds the library's headers. */
	_cleanup_strv_ struct strv cxx = { 0 };
	assert_int_equal(compiler_system_dirs(GCC, LANG_CXX, NULL, 0, &cxx), 0);
	assert_true(cxx.n > c.n);
	assert_true(strv_contains(&cxx, "/usr/include"));
	bool has_cxx = false;
	for (size_t i = 0; i < cxx.n; i++)
		has_cxx |= strstr(cxx.v[i], "c++") != NULL;
	assert_true(has_cxx);

	/* Flags that change the search list change the answer. */
	char *nostdinc[] = { (char *)"-nostdinc" };
	_cleanup_strv_ struct strv none = { 0 };
	assert_int_equal(compiler_system_dirs(GCC, LANG_C, nostdinc, 1, &none), 0);
	assert_false(strv_contains(&none, "/usr/include"));
	assert_true(none.n < c.n);
}

static void test_system_dirs_clang(void **state)
{
	struct stat st;
	if (stat(CLANG, &st) != 0)
		skip();
	_cleanup_strv_ struct strv c = { 0 };
	assert_int_equal(compiler_system_dirs(CLANG, LANG_C, NULL, 0, &c), 0);
	assert_true(strv_contains(&c, "/usr/include"));
	assert_normalised_absolute(&c);
}

static void test_system_dirs_errors(void **state)
{
	struct fixture *f = *state;
	_cleanup_strv_ struct strv s = { 0 };
	_cleanup_free_ char *missing = path_in(f, "missing-cc");
	assert_int_equal(compiler_system_dirs(missing, LANG_C, NULL, 0, &s), -ENOENT);
	_cleanup_free_ char *failing = make_script(f, "failing-cc", "x", 1);
	assert_int_equal(compiler_system_dirs(failing, LANG_C, NULL, 0, &s), -ENOEXEC);
	/* A compiler that prints no search list has no system directories. */
	_cleanup_free_ char *quiet = make_script(f, "quiet-cc", "x", 0);
	assert_int_equal(compiler_system_dirs(quiet, LANG_C, NULL, 0, &s), 0);
	assert_int_equal(s.n, 0);
}

/* --- -march=native --- */

static void test_native_digest(void **state)
{
	struct digest a, b;
	assert_int_equal(compiler_native_digest(GCC, &a), 0);
	assert_false(digest_is_zero(&a));
	assert_int_equal(compiler_native_digest(GCC, &b), 0);
	assert_true(digest_equal(&a, &b));
	struct fixture *f = *state;
	_cleanup_free_ char *failing = make_script(f, "failing-cc", "x", 1);
	assert_int_equal(compiler_native_digest(failing, &b), -ENOEXEC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_find_skips_same_inode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_find_skips_symlink_to_hpcc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_find_skips_unusable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_find_host_gcc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_identify_gcc_stable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_identify_clang, setup, teardown),
		cmocka_unit_test_setup_teardown(test_identify_scripts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_identify_version_text, setup, teardown),
		cmocka_unit_test_setup_teardown(test_identify_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_system_dirs_gcc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_system_dirs_clang, setup, teardown),
		cmocka_unit_test_setup_teardown(test_system_dirs_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_native_digest, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
