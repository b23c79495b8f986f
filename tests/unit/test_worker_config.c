/*
 * Unit tests for worker.ini parsing (src/worker/worker_config.c): a file
 * with every key gives exactly those values, with relative file names
 * resolved against the file's own directory (also when the file itself is
 * named by a relative path); optional keys take their documented defaults;
 * every kind of mistake (unknown key or section, bad number or boolean, a
 * missing required key, a syntax error, an oversized or missing file, a
 * line longer than the INI reader's buffer) is refused with a message that
 * names the key or the line, and leaves nothing allocated;
 * worker_config_serves matches image digests exactly; and the [scheduler]
 * section: addresses and pins (one for all, or one each), the worker token
 * file (mode 0600, size, one line), the advertised address (refused for a
 * wildcard listen address without advertise), and token_key becoming
 * optional. Then the [s3] section (the shared tier): every key loaded and
 * handed to the S3 client and the budgets, path style chosen from the
 * endpoint, and a missing required key, a paranoid cache without [s3], a
 * local one with it, a bad tenant_budget or a bad duration refused;
 * worker_config_parse_duration; and the [audit] section (its four keys,
 * their defaults, and bad sizes, durations and booleans). Each test writes
 * its files into its own temporary directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "fs.h"
#include "s3.h"
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
	assert_int_equal(c->sched_addresses.n, 0);
	assert_int_equal(c->sched_pins.n, 0);
	assert_null(c->sched_token_file);
	assert_null(c->sched_worker_token);
	assert_null(c->advertise);
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

/* ---- [scheduler] -------------------------------------------------------- */

#define PIN_A "sha256:" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define PIN_B "sha256:" "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define WORKER_TOKEN "worker-token-0123456789"
/* [worker] without token_key: the schedulers hand the key out. */
#define SCHED_WORKER "[worker]\n" REQUIRED_ID REQUIRED_LISTEN REQUIRED_DIR REQUIRED_CERT REQUIRED_KEY REQUIRED_IMAGES

static void write_token(const char *dir, const char *text, mode_t mode)
{
	_cleanup_free_ char *path = write_file(dir, "worker.token", text, strlen(text));
	assert_int_equal(chmod(path, mode), 0);
}

static void test_scheduler_section(void **state)
{
	const char *dir = *state;
	write_token(dir, WORKER_TOKEN "\n", 0600);
	_cleanup_free_ char *path = write_ini(dir, SCHED_WORKER
		"[scheduler]\n"
		"address = sched1.example.com:7443, 10.0.0.2:7443\n"
		"address = [fd00::3]:7443\n"
		"pin = " PIN_A "\n"
		"worker_token_file = worker.token\n");
	struct worker_config c;
	struct error err = { 0 };
	if (worker_config_load(path, &c, &err) < 0)
		fail_msg("%s", err.msg);
	assert_null(c.token_key_file);
	assert_int_equal(c.sched_addresses.n, 3);
	assert_string_equal(c.sched_addresses.v[0], "sched1.example.com:7443");
	assert_string_equal(c.sched_addresses.v[1], "10.0.0.2:7443");
	assert_string_equal(c.sched_addresses.v[2], "[fd00::3]:7443");
	/* One pin stands for every replica. */
	assert_int_equal(c.sched_pins.n, 3);
	for (size_t i = 0; i < 3; i++)
		assert_string_equal(c.sched_pins.v[i], PIN_A);
	_cleanup_free_ char *token_path = in_dir(dir, "worker.token");
	assert_string_equal(c.sched_token_file, token_path);
	assert_string_equal(c.sched_worker_token, WORKER_TOKEN);  /* the newline is gone */
	/* listen is a concrete address: it is what clients dial. */
	assert_string_equal(c.advertise, "127.0.0.1:7070");
	worker_config_free(&c);
	assert_null(c.sched_worker_token);

	/* One pin per address, in order; and token_key may stay. */
	_cleanup_free_ char *path2 = write_ini(dir, "[worker]\n" REQUIRED
		"[scheduler]\naddress = a:1 b:2\npin = " PIN_A ", " PIN_B "\nworker_token_file = worker.token\n"
		"advertise = build1.example.com:7443\n");
	if (worker_config_load(path2, &c, &err) < 0)
		fail_msg("%s", err.msg);
	assert_string_equal(c.sched_pins.v[0], PIN_A);
	assert_string_equal(c.sched_pins.v[1], PIN_B);
	assert_non_null(c.token_key_file);
	assert_string_equal(c.advertise, "build1.example.com:7443");
	worker_config_free(&c);

	/* Without [scheduler], token_key is still required. */
	expect_error(dir, SCHED_WORKER, "token_key", NULL);
}

static void test_scheduler_bad_addresses_and_pins(void **state)
{
	const char *dir = *state;
	write_token(dir, WORKER_TOKEN "\n", 0600);
#define TOK "worker_token_file = worker.token\n"
	expect_error(dir, SCHED_WORKER "[scheduler]\naddress = sched1\npin = " PIN_A "\n" TOK, "address", "sched1", NULL);
	expect_error(dir, SCHED_WORKER "[scheduler]\naddress = sched1:0\npin = " PIN_A "\n" TOK, "address", NULL);
	expect_error(dir, SCHED_WORKER "[scheduler]\naddress = sched1:70000\npin = " PIN_A "\n" TOK, "address", NULL);
	expect_error(dir, SCHED_WORKER "[scheduler]\naddress = user@sched1:7000\npin = " PIN_A "\n" TOK, "address", NULL);
	expect_error(dir, SCHED_WORKER "[scheduler]\naddress = ::1:7000\npin = " PIN_A "\n" TOK, "address", NULL);
	expect_error(dir, SCHED_WORKER "[scheduler]\naddress = a:1 b:1 c:1 d:1 e:1 f:1 g:1 h:1 i:1\npin = " PIN_A "\n" TOK,
		     "at most 8", NULL);
	/* The pin: required, sha256 and 64 hex digits, one or one per address. */
	expect_error(dir, SCHED_WORKER "[scheduler]\naddress = s:1\n" TOK, "pin is required", NULL);
	expect_error(dir, SCHED_WORKER "[scheduler]\naddress = s:1\npin = sha256:abcd\n" TOK, "pin", "sha256:abcd", NULL);
	expect_error(dir, SCHED_WORKER "[scheduler]\naddress = s:1\npin = md5:" PIN_A "\n" TOK, "pin", NULL);
	expect_error(dir, SCHED_WORKER "[scheduler]\naddress = s:1\npin = " PIN_A "0\n" TOK, "pin", NULL);
	expect_error(dir, SCHED_WORKER "[scheduler]\naddress = s:1\npin = sha256:"
		     "gggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg\n" TOK, "pin", NULL);
	expect_error(dir, SCHED_WORKER "[scheduler]\naddress = a:1 b:1 c:1\npin = " PIN_A " " PIN_B "\n" TOK,
		     "one per address", NULL);
	/* Scheduler keys without an address. */
	expect_error(dir, "[worker]\n" REQUIRED "[scheduler]\npin = " PIN_A "\n", "need an address", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "[scheduler]\nadvertise = h:1\n", "need an address", NULL);
	expect_error(dir, SCHED_WORKER "[scheduler]\naddress = s:1\npin = " PIN_A "\n" TOK "colour = blue\n",
		     "scheduler.colour", NULL);
#undef TOK
}

static void test_scheduler_token_file(void **state)
{
	const char *dir = *state;
	const char *ini = SCHED_WORKER "[scheduler]\naddress = s:1\npin = " PIN_A "\nworker_token_file = worker.token\n";
	/* Required with an address; a missing file is named. */
	expect_error(dir, SCHED_WORKER "[scheduler]\naddress = s:1\npin = " PIN_A "\n", "worker_token_file is required",
		     NULL);
	expect_error(dir, ini, "worker_token_file", "worker.token", "No such file", NULL);
	/* Group or others may read it: refused, like a private key. */
	write_token(dir, WORKER_TOKEN "\n", 0640);
	expect_error(dir, ini, "worker.token", "chmod 600", NULL);
	{
		_cleanup_free_ char *path = write_ini(dir, ini);
		struct worker_config c;
		struct error err = { 0 };
		assert_int_equal(worker_config_load(path, &c, &err), -EPERM);
	}
	write_token(dir, WORKER_TOKEN "\n", 0604);
	expect_error(dir, ini, "chmod 600", NULL);
	/* Empty, short, two lines, a space, a control byte: one line of printable ASCII. */
	write_token(dir, "", 0600);
	expect_error(dir, ini, "shorter than 16", NULL);
	write_token(dir, "short\n", 0600);
	expect_error(dir, ini, "shorter than 16", NULL);
	write_token(dir, WORKER_TOKEN "\n" WORKER_TOKEN "\n", 0600);
	expect_error(dir, ini, "one line", NULL);
	write_token(dir, "worker token with spaces\n", 0600);
	expect_error(dir, ini, "one line", NULL);
	write_token(dir, WORKER_TOKEN "\r\n", 0600);
	expect_error(dir, ini, "one line", NULL);
	/* At most 4 KiB. */
	char big[WORKER_TOKEN_FILE_MAX + 2];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	write_token(dir, big, 0600);
	expect_error(dir, ini, "larger than 4096", NULL);
	big[WORKER_TOKEN_FILE_MAX - 1] = '\n';
	big[WORKER_TOKEN_FILE_MAX] = '\0';
	write_token(dir, big, 0600);
	_cleanup_free_ char *path = write_ini(dir, ini);
	struct worker_config c;
	struct error err = { 0 };
	if (worker_config_load(path, &c, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(strlen(c.sched_worker_token), WORKER_TOKEN_FILE_MAX - 1);
	worker_config_free(&c);
	/* A directory in its place. */
	_cleanup_free_ char *token_path = in_dir(dir, "worker.token");
	assert_int_equal(unlink(token_path), 0);
	assert_int_equal(mkdir(token_path, 0700), 0);
	expect_error(dir, ini, "not a regular file", NULL);
	assert_int_equal(rmdir(token_path), 0);
}

static void test_scheduler_advertise(void **state)
{
	const char *dir = *state;
	write_token(dir, WORKER_TOKEN "\n", 0600);
#define SCHED "[scheduler]\naddress = s:1\npin = " PIN_A "\nworker_token_file = worker.token\n"
#define WORKER_LISTEN(l) "[worker]\n" REQUIRED_ID "listen = " l "\n" REQUIRED_DIR REQUIRED_CERT REQUIRED_KEY REQUIRED_IMAGES
	/* A wildcard listen address tells clients nothing: advertise is required. */
	expect_error(dir, WORKER_LISTEN("0.0.0.0:7070") SCHED, "advertise is required", "0.0.0.0:7070", NULL);
	expect_error(dir, WORKER_LISTEN("[::]:7070") SCHED, "advertise is required", NULL);
	expect_error(dir, WORKER_LISTEN("[::0]:7070") SCHED, "advertise is required", NULL);
	expect_error(dir, WORKER_LISTEN(":7070") SCHED, "advertise is required", NULL);
	expect_error(dir, WORKER_LISTEN("unix:/run/hpcc.sock") SCHED, "advertise is required", NULL);
	/* An advertised address must be one that can be dialled. */
	expect_error(dir, WORKER_LISTEN("0.0.0.0:7070") SCHED "advertise = 0.0.0.0:7070\n", "advertise", NULL);
	expect_error(dir, WORKER_LISTEN("0.0.0.0:7070") SCHED "advertise = [::]:7070\n", "advertise", NULL);
	expect_error(dir, WORKER_LISTEN("0.0.0.0:7070") SCHED "advertise = build1\n", "advertise", "build1", NULL);
	expect_error(dir, WORKER_LISTEN("0.0.0.0:7070") SCHED "advertise = b/1:7070\n", "advertise", NULL);
	static const struct {
		const char *ini, *advertise;
	} ok[] = {
		{ WORKER_LISTEN("0.0.0.0:7070") SCHED "advertise = build1.example.com:7070\n", "build1.example.com:7070" },
		{ WORKER_LISTEN("[::]:7070") SCHED "advertise = [2001:db8::7]:7070\n", "[2001:db8::7]:7070" },
		{ WORKER_LISTEN("10.1.2.3:7070") SCHED, "10.1.2.3:7070" },
		{ WORKER_LISTEN("[::1]:7070") SCHED, "[::1]:7070" },
		/* Port 0: the worker puts the port it bound in its place. */
		{ WORKER_LISTEN("127.0.0.1:0") SCHED, "127.0.0.1:0" },
		{ WORKER_LISTEN("0.0.0.0:0") SCHED "advertise = build1:0\n", "build1:0" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		_cleanup_free_ char *path = write_ini(dir, ok[i].ini);
		struct worker_config c;
		struct error err = { 0 };
		if (worker_config_load(path, &c, &err) < 0)
			fail_msg("%s\n%s", err.msg, ok[i].ini);
		assert_string_equal(c.advertise, ok[i].advertise);
		worker_config_free(&c);
	}
#undef SCHED
#undef WORKER_LISTEN
}

static void test_hostport(void **state)
{
	(void)state;
	char host[WORKER_HOSTPORT_MAX + 1];
	unsigned port = 1;
	assert_int_equal(worker_config_split_hostport("example.com:443", host, &port), 0);
	assert_string_equal(host, "example.com");
	assert_int_equal(port, 443);
	assert_int_equal(worker_config_split_hostport("[fe80::1]:0", host, &port), 0);
	assert_string_equal(host, "fe80::1");
	assert_int_equal(port, 0);
	static const char *const bad[] = { "", ":1", "h", "h:", "h:x", "h:65536", "h:-1", "[::1:1", "[]:1",
					   "a b:1", "h:1 ", "h_1:1", "[::1]x:1", "h:123456" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (worker_config_split_hostport(bad[i], host, &port) != -EINVAL)
			fail_msg("'%s' accepted", bad[i]);
	char longer[WORKER_HOSTPORT_MAX + 8];
	memset(longer, 'a', sizeof(longer));
	memcpy(longer + sizeof(longer) - 6, ":7070", 6);
	assert_int_equal(worker_config_split_hostport(longer, host, &port), -EINVAL);
	assert_true(worker_config_host_is_wildcard("0.0.0.0"));
	assert_true(worker_config_host_is_wildcard("::"));
	assert_true(worker_config_host_is_wildcard("0:0::0"));
	assert_true(worker_config_host_is_wildcard(""));
	assert_false(worker_config_host_is_wildcard("127.0.0.1"));
	assert_false(worker_config_host_is_wildcard("::1"));
	assert_false(worker_config_host_is_wildcard("localhost"));
}

/* ---- [s3] ----------------------------------------------------------------- */

#define S3_MINIMAL "[s3]\nendpoint = http://127.0.0.1:9000\nregion = eu-west-1\nbucket = hpcc-cache\n"

static void test_s3_section(void **state)
{
	const char *dir = *state;
	_cleanup_free_ char *path = write_ini(dir, "[worker]\n" REQUIRED "cache_mode = paranoid\n"
		"[s3]\n"
		"endpoint = http://127.0.0.1:9000\n"
		"region = eu-west-1\n"
		"bucket = hpcc-cache\n"
		"prefix = team/\n"
		"credentials_file = aws/credentials\n"
		"path_style = yes\n"
		"timeout_ms = 5000\n"
		"retries = 3\n"
		"connections = 8\n"
		"max_size = 20G\n"
		"max_age = 30d\n"
		"gc_interval = 1h\n"
		"tenant_budget = alice 5G 7d\n"
		"tenant_budget = bob 0 0\n");
	struct worker_config c;
	struct error err = { 0 };
	if (worker_config_load(path, &c, &err) < 0)
		fail_msg("refused: %s", err.msg);
	_cleanup_free_ char *credentials = in_dir(dir, "aws/credentials");
	assert_true(c.s3);
	assert_string_equal(c.cache_mode, "paranoid");
	assert_string_equal(c.s3_credentials_file, credentials);
	assert_int_equal(c.s3_connections, 8);
	assert_int_equal(c.s3_max_size, (uint64_t)20 << 30);
	assert_int_equal(c.s3_max_age, 30 * 86400);
	assert_int_equal(c.s3_gc_interval, 3600);
	assert_int_equal(c.s3_tenant_budgets.n, 2);
	struct s3_config sc;
	assert_int_equal(worker_config_s3(&c, &sc), 0);
	assert_string_equal(sc.endpoint, "http://127.0.0.1:9000");
	assert_string_equal(sc.region, "eu-west-1");
	assert_string_equal(sc.bucket, "hpcc-cache");
	assert_string_equal(sc.prefix, "team/");
	assert_string_equal(sc.credentials_file, credentials);
	assert_true(sc.path_style);
	assert_int_equal(sc.timeout_ms, 5000);
	assert_int_equal(sc.retries, 3);
	/* Never from worker.ini: the environment or the credentials file. */
	assert_null(sc.access_key);
	assert_null(sc.secret_key);
	uint64_t size = 1, age = 1;
	worker_config_s3_budget(&c, "alice", &size, &age);
	assert_int_equal(size, (uint64_t)5 << 30);
	assert_int_equal(age, 7 * 86400);
	worker_config_s3_budget(&c, "bob", &size, &age);
	assert_int_equal(size, 0);
	assert_int_equal(age, 0);
	worker_config_s3_budget(&c, "carol", &size, &age);
	assert_int_equal(size, (uint64_t)20 << 30);
	assert_int_equal(age, 30 * 86400);
	worker_config_s3_budget(&c, "alic", &size, &age);   /* names match whole */
	assert_int_equal(size, (uint64_t)20 << 30);
	worker_config_free(&c);
	assert_null(c.s3_endpoint);
	assert_int_equal(c.s3_tenant_budgets.n, 0);

	/* The least: paranoid by default, path style from the endpoint, no budgets. */
	_cleanup_free_ char *path2 = write_ini(dir, "[worker]\n" REQUIRED S3_MINIMAL);
	if (worker_config_load(path2, &c, &err) < 0)
		fail_msg("refused: %s", err.msg);
	assert_string_equal(c.cache_mode, "paranoid");
	assert_true(c.s3_path_style);
	assert_int_equal(c.s3_gc_interval, 0);
	worker_config_s3_budget(&c, "alice", &size, &age);
	assert_int_equal(size, 0);
	assert_int_equal(age, 0);
	worker_config_free(&c);
	_cleanup_free_ char *path3 = write_ini(dir, "[worker]\n" REQUIRED
		"[s3]\nendpoint = https://s3.eu-west-1.amazonaws.com\nregion = eu-west-1\nbucket = hpcc-cache\n");
	if (worker_config_load(path3, &c, &err) < 0)
		fail_msg("refused: %s", err.msg);
	assert_false(c.s3_path_style);
	worker_config_free(&c);

	/* Without [s3]: a local cache and no S3 settings. */
	_cleanup_free_ char *path4 = write_ini(dir, "[worker]\n" REQUIRED);
	if (worker_config_load(path4, &c, &err) < 0)
		fail_msg("refused: %s", err.msg);
	assert_false(c.s3);
	assert_string_equal(c.cache_mode, "local");
	assert_int_equal(worker_config_s3(&c, &sc), -ENOENT);
	worker_config_free(&c);
}

static void test_s3_refused(void **state)
{
	const char *dir = *state;
	expect_error(dir, "[worker]\n" REQUIRED "[s3]\nendpoint = http://127.0.0.1:9000\nregion = eu-west-1\n",
		     "[s3] bucket is required", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "[s3]\nregion = eu-west-1\nbucket = b\n", "endpoint", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "cache_mode = paranoid\n", "paranoid", "[s3]", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "cache_mode = local\n" S3_MINIMAL, "local", "[s3]", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "cache_mode = shared\n", "worker.cache_mode", "shared", NULL);
	expect_error(dir, "[worker]\n" REQUIRED S3_MINIMAL "colour = blue\n", "s3.colour", NULL);
	expect_error(dir, "[worker]\n" REQUIRED S3_MINIMAL "retries = 11\n", "s3.retries", NULL);
	expect_error(dir, "[worker]\n" REQUIRED S3_MINIMAL "timeout_ms = 99\n", "s3.timeout_ms", NULL);
	expect_error(dir, "[worker]\n" REQUIRED S3_MINIMAL "connections = 0\n", "s3.connections", NULL);
	expect_error(dir, "[worker]\n" REQUIRED S3_MINIMAL "max_size = lots\n", "s3.max_size", NULL);
	/* The S3 client's own checks run at load time. */
	expect_error(dir, "[worker]\n" REQUIRED "[s3]\nendpoint = ftp://h\nregion = r\nbucket = b\n", "[s3]", NULL);

	static const char *const bad_budgets[] = {
		"alice 20G", "alice 20G 14x", "alice 20X 1d", "alice 1 1 extra", ".hidden 1 1", "a/b 1 1",
		"alice -1 1d", "",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad_budgets); i++) {
		char ini[512];
		snprintf(ini, sizeof(ini), "[worker]\n" REQUIRED S3_MINIMAL "tenant_budget = %s\n", bad_budgets[i]);
		expect_error(dir, ini, "s3.tenant_budget", NULL);
	}
	static const char *const bad_durations[] = { "3w", "1.5h", "-1", "", "d", "10 d", "200000d", "soon" };
	for (size_t i = 0; i < ARRAY_SIZE(bad_durations); i++) {
		char ini[512];
		snprintf(ini, sizeof(ini), "[worker]\n" REQUIRED S3_MINIMAL "max_age = %s\n", bad_durations[i]);
		expect_error(dir, ini, "s3.max_age", "not a duration", NULL);
		snprintf(ini, sizeof(ini), "[worker]\n" REQUIRED S3_MINIMAL "gc_interval = %s\n", bad_durations[i]);
		expect_error(dir, ini, "s3.gc_interval", "not a duration", NULL);
	}
}

static void test_parse_duration(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		uint64_t out;
	} good[] = {
		{ "30d", 30 * 86400 }, { "12h", 12 * 3600 }, { "15m", 900 }, { "90s", 90 }, { "42", 42 },
		{ "0", 0 }, { "0d", 0 }, { "007m", 420 }, { "36500d", (uint64_t)36500 * 86400 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		uint64_t v = 12345;
		if (worker_config_parse_duration(good[i].in, &v) < 0)
			fail_msg("'%s' refused", good[i].in);
		assert_int_equal(v, good[i].out);
	}
	static const char *const bad[] = {
		"", "s", "d", "1w", "1.5h", "-1", "+1", " 1", "1 ", "1d2h", "1D", "0x10",
		"36501d",                       /* more than a hundred years */
		"18446744073709551616",         /* 2^64 */
		"99999999999999999999d",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		uint64_t v = 12345;
		if (worker_config_parse_duration(bad[i], &v) != -EINVAL)
			fail_msg("'%s' accepted", bad[i]);
		assert_int_equal(v, 12345);   /* untouched */
	}
}

/* [audit]: every key read, the defaults, and each bad value refused. */
static void test_audit_section(void **state)
{
	const char *dir = *state;
	_cleanup_free_ char *path = write_ini(dir, "[worker]\n" REQUIRED);
	struct worker_config c;
	struct error err = { 0 };
	if (worker_config_load(path, &c, &err) < 0)
		fail_msg("refused: %s", err.msg);
	assert_int_equal(c.audit_segment_size, (uint64_t)64 << 20);
	assert_int_equal(c.audit_segment_age, 86400);
	assert_int_equal(c.audit_retain, 7 * 86400);
	assert_true(c.audit_enabled);
	worker_config_free(&c);

	_cleanup_free_ char *path2 = write_ini(dir, "[worker]\n" REQUIRED "[audit]\nsegment_size = 8M\nsegment_age = 12h\n"
					       "retain = 30d\nenabled = false\n");
	if (worker_config_load(path2, &c, &err) < 0)
		fail_msg("refused: %s", err.msg);
	assert_int_equal(c.audit_segment_size, (uint64_t)8 << 20);
	assert_int_equal(c.audit_segment_age, 12 * 3600);
	assert_int_equal(c.audit_retain, 30 * 86400);
	assert_false(c.audit_enabled);
	worker_config_free(&c);

	_cleanup_free_ char *path3 = write_ini(dir, "[worker]\n" REQUIRED "[audit]\nsegment_size = 4096\nsegment_age = 90\n");
	if (worker_config_load(path3, &c, &err) < 0)
		fail_msg("refused: %s", err.msg);
	assert_int_equal(c.audit_segment_size, 4096);
	assert_int_equal(c.audit_segment_age, 90);
	worker_config_free(&c);

	expect_error(dir, "[worker]\n" REQUIRED "[audit]\nsegment_size = 4095\n", "audit.segment_size", "4096", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "[audit]\nsegment_size = big\n", "audit.segment_size", "big", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "[audit]\nsegment_age = 1w\n", "audit.segment_age", "1w", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "[audit]\nsegment_age = 0\n", "audit.segment_age", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "[audit]\nretain = -1d\n", "audit.retain", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "[audit]\nretain =\n", "audit.retain", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "[audit]\nenabled = maybe\n", "audit.enabled", "maybe", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "[audit]\nsegment_count = 3\n", "unknown setting audit.segment_count", NULL);
}

/* [limits] quotas: defaults, values, tenant lines, and one error naming the key. */
static void test_limits_quotas(void **state)
{
	const char *dir = *state;
	_cleanup_free_ char *path = write_ini(dir, "[worker]\n" REQUIRED);
	struct worker_config c;
	struct error err = { 0 };
	if (worker_config_load(path, &c, &err) < 0)
		fail_msg("refused: %s", err.msg);
	assert_int_equal(c.upload_quota, (uint64_t)8 << 30);
	assert_int_equal(c.upload_window, 60);
	assert_int_equal(c.max_execs_per_tenant, 0);
	assert_int_equal(c.cas_quota, 0);
	assert_int_equal(c.vm_wait, 10);
	assert_int_equal(c.tenant_limits.n, 0);
	worker_config_free(&c);

	_cleanup_free_ char *path2 = write_ini(dir, "[worker]\n" REQUIRED "[limits]\nupload_quota = 64M\nupload_window = 2m\n"
					       "max_execs_per_tenant = 3\ncas_quota = 1G\nvm_wait = 0\n"
					       "tenant = alpha upload_quota=1M cas_quota=0\ntenant = beta max_execs_per_tenant=1\n");
	if (worker_config_load(path2, &c, &err) < 0)
		fail_msg("refused: %s", err.msg);
	assert_int_equal(c.upload_quota, (uint64_t)64 << 20);
	assert_int_equal(c.upload_window, 120);
	assert_int_equal(c.max_execs_per_tenant, 3);
	assert_int_equal(c.cas_quota, (uint64_t)1 << 30);
	assert_int_equal(c.vm_wait, 0);
	assert_int_equal(c.tenant_limits.n, 2);
	assert_string_equal(c.tenant_limits.v[1], "beta max_execs_per_tenant=1");
	worker_config_free(&c);

	expect_error(dir, "[worker]\n" REQUIRED "[limits]\nupload_quota = lots\n", "limits.upload_quota", "lots", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "[limits]\nupload_window = 0\n", "limits.upload_window", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "[limits]\nupload_window = 2d\n", "limits.upload_window", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "[limits]\nmax_execs_per_tenant = -1\n", "limits.max_execs_per_tenant", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "[limits]\ncas_quota = 1X\n", "limits.cas_quota", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "[limits]\nvm_wait = soon\n", "limits.vm_wait", "soon", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "[limits]\ntenant = alpha uploads=1M\n", "limits.tenant", "uploads", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "[limits]\ntenant = alpha cas_quota=big\n", "limits.tenant", "cas_quota",
		     "big", NULL);
	expect_error(dir, "[worker]\n" REQUIRED "[limits]\ntenant = ../x cas_quota=1G\n", "limits.tenant", NULL);
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
		cmocka_unit_test_setup_teardown(test_scheduler_section, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_scheduler_bad_addresses_and_pins, testutil_setup_tmpdir,
						testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_scheduler_token_file, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_scheduler_advertise, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test(test_hostport),
		cmocka_unit_test_setup_teardown(test_s3_section, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_s3_refused, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test_setup_teardown(test_audit_section, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_limits_quotas, testutil_setup_tmpdir, testutil_teardown_tmpdir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
