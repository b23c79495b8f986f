/*
 * Unit tests for worker.ini parsing (src/worker/worker_config.c): a file
 * with every key gives exactly those values, with relative file names
 * resolved against the file's own directory (also when the file itself is
 * named by a relative path); optional keys take their documented defaults;
 * every kind of mistake (unknown key or section, bad number or boolean, a
 * missing required key, a syntax error, an oversized or missing file, a
 * line longer than the INI reader's buffer) is refused with a message that
 * names the key or the line, and leaves nothing allocated; and
 * worker_config_serves matches image digests exactly. Each test writes its
 * files into its own temporary directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "fs.h"
#include "worker_config.h"

#define IMG_A "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define IMG_B "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
#define IMG_C "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

/* The required keys, each on its own line, in the [worker] section. */
#define REQUIRED_ID "id = w1\n"
#define REQUIRED_LISTEN "listen = 127.0.0.1:7070\n"
#define REQUIRED_DIR "dir = state\n"
#define REQUIRED_CERT "cert = tls/cert.pem\n"
#define REQUIRED_KEY "key = /etc/hpcc/key.pem\n"
#define REQUIRED_TOKEN_KEY "token_key = routing.pub\n"
#define REQUIRED_IMAGES "images = " IMG_A "\n"
#define REQUIRED                                                                                      \
	REQUIRED_ID REQUIRED_LISTEN REQUIRED_DIR REQUIRED_CERT REQUIRED_KEY REQUIRED_TOKEN_KEY      \
		REQUIRED_IMAGES

/* Writes name under dir; returns the malloc'd path. */
static char *write_file(const char *dir, const char *name, const char *text, size_t n)
{
	char *path = NULL;
	assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
	assert_int_equal(fs_write_atomic(path, text, n, 0600, false), 0);
	return path;
}

static char *write_ini(const char *dir, const char *text) { return write_file(dir, "worker.ini", text, strlen(text)); }

static char *in_dir(const char *dir, const char *name)
{
	char *p = NULL;
	assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
	return p;
}

static void assert_zeroed(const struct worker_config *c)
{
	assert_null(c->path);
	assert_null(c->id);
	assert_null(c->listen);
	assert_null(c->dir);
	assert_null(c->cert_file);
	assert_null(c->key_file);
	assert_null(c->token_key_file);
	assert_null(c->runtime);
	assert_null(c->search_path);
	assert_int_equal(c->images.n, 0);
}

/* Loads text as worker.ini and expects a refusal whose message holds each
 * of the given substrings (NULL-terminated). */
static void expect_error(const char *dir, const char *text, ...)
{
	_cleanup_free_ char *path = write_ini(dir, text);
	struct worker_config c;
	struct error err = { 0 };
	int r = worker_config_load(path, &c, &err);
	if (r >= 0) {
		worker_config_free(&c);
		fail_msg("accepted:\n%s", text);
	}
	if (err.code != r)
		fail_msg("returned %d but err.code is %d (%s)", r, err.code, err.msg);
	va_list ap;
	va_start(ap, text);
	for (const char *want; (want = va_arg(ap, const char *));)
		if (!strstr(err.msg, want)) {
			va_end(ap);
			fail_msg("the message '%s' does not mention '%s'; file:\n%s", err.msg, want, text);
		}
	va_end(ap);
	assert_zeroed(&c);
	worker_config_free(&c);  /* harmless on a zeroed config */
}

static void test_full_config(void **state)
{
	const char *dir = *state;
	_cleanup_free_ char *path = write_ini(dir,
		"; a worker with every key\n"
		"[worker]\n"
		"id = worker-7\n"
		"listen = 0.0.0.0:7443\n"
		"dir = state/../var\n"
		"cert = tls/cert.pem\n"
		"key = /etc/hpcc/key.pem\n"
		"token_key = routing.pub\n"
		"images = " IMG_A ", " IMG_B "\n"
		"images = " IMG_C "\n"
		"max_calls = 32\n"
		"\n"
		"[cache]\n"
		"max_size = 2G\n"
		"[limits]\n"
		"max_blob = 128M\n"
		"max_message = 200MiB\n"
		"exec_timeout = 120\n"
		"[runtime]\n"
		"kind = unsafe-local\n"
		"allow_unsafe_local = yes\n"
		"search_path = /opt/gcc/bin:/usr/bin\n"
		"max_parallel = 4\n");
	struct worker_config c;
	struct error err = { 0 };
	int r = worker_config_load(path, &c, &err);
	if (r < 0)
		fail_msg("refused: %s", err.msg);
	_cleanup_free_ char *var = in_dir(dir, "var");
	_cleanup_free_ char *cert = in_dir(dir, "tls/cert.pem");
	_cleanup_free_ char *token_key = in_dir(dir, "routing.pub");
	assert_string_equal(c.path, path);
	assert_string_equal(c.id, "worker-7");
	assert_string_equal(c.listen, "0.0.0.0:7443");
	assert_string_equal(c.dir, var);
	assert_string_equal(c.cert_file, cert);
	assert_string_equal(c.key_file, "/etc/hpcc/key.pem");
	assert_string_equal(c.token_key_file, token_key);
	assert_int_equal(c.images.n, 3);
	assert_string_equal(c.images.v[0], IMG_A);
	assert_string_equal(c.images.v[1], IMG_B);
	assert_string_equal(c.images.v[2], IMG_C);
	assert_int_equal(c.max_calls, 32);
	assert_int_equal(c.max_size, (uint64_t)2 << 30);
	assert_int_equal(c.max_blob, (uint64_t)128 << 20);
	assert_int_equal(c.max_message, (uint64_t)200 << 20);
	assert_int_equal(c.exec_timeout, 120);
	assert_string_equal(c.runtime, "unsafe-local");
	assert_true(c.allow_unsafe_local);
	assert_string_equal(c.search_path, "/opt/gcc/bin:/usr/bin");
	assert_int_equal(c.max_parallel, 4);
	worker_config_free(&c);
	assert_zeroed(&c);
}

/* A configuration named by a relative path: its directory is taken from
 * the current directory, and file names in it are relative to that. */
static void test_relative_config_path(void **state)
{
	const char *dir = *state;
	_cleanup_free_ char *sub = in_dir(dir, "conf");
	assert_int_equal(fs_mkdir_p(sub, 0700), 0);
	_cleanup_free_ char *path = write_ini(sub, "[worker]\n" REQUIRED);
	_cleanup_free_ char *old = getcwd(NULL, 0);
	assert_non_null(old);
	assert_int_equal(chdir(dir), 0);
	struct worker_config c;
	struct error err = { 0 };
	int r = worker_config_load("conf/worker.ini", &c, &err);
	assert_int_equal(chdir(old), 0);
	if (r < 0)
		fail_msg("refused: %s", err.msg);
	_cleanup_free_ char *state_dir = in_dir(sub, "state");
	_cleanup_free_ char *token_key = in_dir(sub, "routing.pub");
	assert_string_equal(c.path, path);
	assert_string_equal(c.dir, state_dir);
	assert_string_equal(c.token_key_file, token_key);
	worker_config_free(&c);
}

static void test_defaults(void **state)
{
	const char *dir = *state;
	_cleanup_free_ char *path = write_ini(dir, "[worker]\n" REQUIRED);
	struct worker_config c;
	struct error err = { 0 };
	int r = worker_config_load(path, &c, &err);
	if (r < 0)
		fail_msg("refused: %s", err.msg);
	assert_string_equal(c.id, "w1");
	assert_string_equal(c.listen, "127.0.0.1:7070");
	assert_int_equal(c.images.n, 1);
	assert_int_equal(c.max_calls, 64);
	assert_int_equal(c.max_size, (uint64_t)10 << 30);
	assert_int_equal(c.max_blob, (uint64_t)256 << 20);
	assert_int_equal(c.max_message, (uint64_t)300 << 20);
	assert_int_equal(c.exec_timeout, 600);
	assert_string_equal(c.runtime, "unsafe-local");
	assert_false(c.allow_unsafe_local);
	assert_string_equal(c.search_path, "/usr/local/bin:/usr/bin:/bin");
	assert_int_equal(c.max_parallel, 0);
	worker_config_free(&c);
}

static void test_unknown_keys(void **state)
{
	const char *dir = *state;
	expect_error(dir, "[worker]\n" REQUIRED "colour = red\n", "worker.colour", "line 9", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "[bogus]\nx = 1\n", "bogus.x", "line 10", NULL);
	expect_error(dir, "[cache]\nmax_calls = 3\n[worker]\n" REQUIRED, "cache.max_calls", "line 2", NULL);
	expect_error(dir, "id = w0\n[worker]\n" REQUIRED, "line 1", NULL);
	/* Keys are case-sensitive. */
	expect_error(dir, "[worker]\n" REQUIRED "Max_Calls = 3\n", "Max_Calls", NULL);
}

static void test_bad_numbers(void **state)
{
	const char *dir = *state;
	expect_error(dir, "[worker]\n" REQUIRED "max_calls = ten\n", "max_calls", "ten", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "max_calls = 5000\n", "max_calls", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "max_calls = -1\n", "max_calls", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "max_calls =\n", "max_calls", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "[cache]\nmax_size = 10Q\n", "cache.max_size", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "[cache]\nmax_size = 99999999999999999999\n", "max_size", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "[limits]\nmax_blob = 2G\n", "limits.max_blob", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "[limits]\nmax_message = 1.5M\n", "limits.max_message", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "[limits]\nexec_timeout = 100000\n", "limits.exec_timeout", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "[runtime]\nmax_parallel = 2000\n", "runtime.max_parallel", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "[runtime]\nmax_parallel = 4 cpus\n", "runtime.max_parallel", NULL);
}

static void test_bad_boolean(void **state)
{
	const char *dir = *state;
	expect_error(dir, "[worker]\n" REQUIRED "[runtime]\nallow_unsafe_local = maybe\n",
		     "runtime.allow_unsafe_local", "maybe", "line 10", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "[runtime]\nallow_unsafe_local =\n", "allow_unsafe_local", NULL);

	/* Every spelling of a boolean that is accepted. */
	static const char *const yes[] = { "1", "true", "yes", "on", "TRUE", "On" };
	static const char *const no[] = { "0", "false", "no", "off", "False" };
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]) + sizeof(no) / sizeof(no[0]); i++) {
		bool want = i < sizeof(yes) / sizeof(yes[0]);
		const char *v = want ? yes[i] : no[i - sizeof(yes) / sizeof(yes[0])];
		char text[1024];
		snprintf(text, sizeof(text), "[worker]\n" REQUIRED "[runtime]\nallow_unsafe_local = %s\n", v);
		_cleanup_free_ char *path = write_ini(dir, text);
		struct worker_config c;
		struct error err = { 0 };
		if (worker_config_load(path, &c, &err) < 0)
			fail_msg("'%s' refused: %s", v, err.msg);
		if (c.allow_unsafe_local != want)
			fail_msg("'%s' read as %d", v, c.allow_unsafe_local);
		worker_config_free(&c);
	}
}

static void test_missing_required(void **state)
{
	const char *dir = *state;
	static const struct {
		const char *key;
		const char *line;
	} required[] = {
		{ "id", REQUIRED_ID },         { "listen", REQUIRED_LISTEN },       { "dir", REQUIRED_DIR },
		{ "cert", REQUIRED_CERT },     { "key", REQUIRED_KEY },             { "token_key", REQUIRED_TOKEN_KEY },
		{ "images", REQUIRED_IMAGES },
	};
	for (size_t skip = 0; skip < sizeof(required) / sizeof(required[0]); skip++) {
		char text[2048] = "[worker]\n";
		for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
			if (i != skip)
				strncat(text, required[i].line, sizeof(text) - strlen(text) - 1);
		expect_error(dir, text, required[skip].key, NULL);
	}
	/* An images key without any image is no image at all. */
	expect_error(dir,
		     "[worker]\n" REQUIRED_ID REQUIRED_LISTEN REQUIRED_DIR REQUIRED_CERT REQUIRED_KEY
			     REQUIRED_TOKEN_KEY "images = , \n",
		     "images", NULL);
	/* The required keys in another section do not count. */
	expect_error(dir, "[cache]\n" REQUIRED, "cache.id", NULL);
	expect_error(dir, "", "required", NULL);
}

static void test_syntax_error(void **state)
{
	const char *dir = *state;
	expect_error(dir, "[worker]\n" REQUIRED "this line has no equals sign\n", "line 9", NULL);
	expect_error(dir, "[worker\n" REQUIRED, "line 1", NULL);
}

/* The file's size cap is 64 KiB: at it, accepted; one byte over, refused
 * before anything is parsed. */
static void test_file_size(void **state)
{
	const char *dir = *state;
	const size_t cap = 64 * 1024;
	char *text = malloc(cap + 2);
	assert_non_null(text);
	static const char head[] = "[worker]\n" REQUIRED;
	memcpy(text, head, sizeof(head) - 1);
	size_t n = sizeof(head) - 1;
	/* Comment lines fill the rest, each well under the INI line limit. */
	while (n < cap) {
		size_t line = cap - n < 80 ? cap - n : 80;
		text[n] = ';';
		memset(text + n + 1, 'x', line - 1);
		text[n + line - 1] = '\n';
		n += line;
	}
	assert_int_equal(n, cap);
	text[n] = '\0';
	_cleanup_free_ char *path = write_file(dir, "worker.ini", text, cap);
	struct worker_config c;
	struct error err = { 0 };
	int r = worker_config_load(path, &c, &err);
	if (r < 0)
		fail_msg("a file of exactly %zu bytes is refused: %s", cap, err.msg);
	worker_config_free(&c);

	text[cap] = '\n';
	text[cap + 1] = '\0';
	free(path);
	path = write_file(dir, "worker.ini", text, cap + 1);
	memset(&err, 0, sizeof(err));
	assert_true(worker_config_load(path, &c, &err) < 0);
	assert_non_null(strstr(err.msg, "too large"));
	assert_non_null(strstr(err.msg, path));
	assert_zeroed(&c);
	free(text);
}

static void test_missing_file(void **state)
{
	const char *dir = *state;
	_cleanup_free_ char *path = in_dir(dir, "nonexistent.ini");
	struct worker_config c;
	struct error err = { 0 };
	assert_int_equal(worker_config_load(path, &c, &err), -ENOENT);
	assert_non_null(strstr(err.msg, path));
	assert_zeroed(&c);

	/* A directory is not a configuration file. */
	memset(&err, 0, sizeof(err));
	assert_true(worker_config_load(dir, &c, &err) < 0);
	assert_true(err.msg[0] != '\0');
	assert_zeroed(&c);
}

/* libinih reads a file through a fixed line buffer (200 bytes in Debian's
 * build). Three images on one line, an ordinary way to write the key, are
 * longer than that: the line must be read whole, or refused with a message
 * that names it, but never cut into a truncated digest and a bogus line. */
static void test_long_line(void **state)
{
	const char *dir = *state;
	static const char text[] = "[worker]\n"
				   "images = " IMG_A ", " IMG_B ", " IMG_C "\n" REQUIRED_ID REQUIRED_LISTEN
				   REQUIRED_DIR REQUIRED_CERT REQUIRED_KEY REQUIRED_TOKEN_KEY;
	char *path = write_ini(dir, text);
	struct worker_config c;
	struct error err = { 0 };
	int r = worker_config_load(path, &c, &err);
	free(path);  /* before any failure, which leaves by longjmp */
	if (r < 0) {
		if (!strstr(err.msg, "line 2"))
			fail_msg("a 226-byte line 2 is refused with a message that does not name it: %s", err.msg);
		return;
	}
	bool whole = c.images.n == 3 && worker_config_serves(&c, IMG_A) && worker_config_serves(&c, IMG_B) &&
		     worker_config_serves(&c, IMG_C);
	size_t n = c.images.n;
	worker_config_free(&c);
	if (!whole)
		fail_msg("the long images line was read as %zu images, not the three it lists", n);
}

/* The same buffer limit with a long comment: its tail must not be read as
 * a setting of its own. */
static void test_long_comment_line(void **state)
{
	const char *dir = *state;
	char text[2048];
	char comment[300];
	memset(comment, 'c', sizeof(comment));
	memcpy(comment + sizeof(comment) - 30, " so allow_unsafe_local = yes", 28);
	comment[sizeof(comment) - 2] = '\0';
	snprintf(text, sizeof(text), "[worker]\n" REQUIRED "[runtime]\n; %s\n", comment);
	char *path = write_ini(dir, text);
	struct worker_config c;
	struct error err = { 0 };
	int r = worker_config_load(path, &c, &err);
	free(path);  /* before any failure, which leaves by longjmp */
	if (r < 0) {
		if (!strstr(err.msg, "line 10"))
			fail_msg("a long comment on line 10 is refused with a message that does not name it: %s",
				 err.msg);
		return;
	}
	bool enabled = c.allow_unsafe_local;
	worker_config_free(&c);
	if (enabled)
		fail_msg("the tail of a comment line enabled allow_unsafe_local");
}

static void test_serves(void **state)
{
	const char *dir = *state;
	_cleanup_free_ char *path = write_ini(dir, "[worker]\n" REQUIRED "images = " IMG_B "\n");
	struct worker_config c;
	struct error err = { 0 };
	int r = worker_config_load(path, &c, &err);
	if (r < 0)
		fail_msg("refused: %s", err.msg);
	assert_true(worker_config_serves(&c, IMG_A));
	assert_true(worker_config_serves(&c, IMG_B));
	assert_false(worker_config_serves(&c, IMG_C));
	assert_false(worker_config_serves(&c, ""));
	assert_false(worker_config_serves(&c, "sha256:0123456789abcdef"));
	assert_false(worker_config_serves(&c, IMG_A "0"));
	assert_false(worker_config_serves(&c, "SHA256:0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"));
	assert_false(worker_config_serves(&c, IMG_A + strlen("sha256:")));
	worker_config_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_full_config, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_relative_config_path, testutil_setup_tmpdir,
						testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_defaults, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_unknown_keys, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_bad_numbers, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_bad_boolean, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_missing_required, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_syntax_error, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_file_size, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_missing_file, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_long_line, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_long_comment_line, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_serves, testutil_setup_tmpdir, testutil_teardown_tmpdir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
