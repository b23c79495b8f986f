/*
 * Unit tests for configuration loading (src/common/config.c): defaults, the
 * INI file (explicit, $HPCC_CONFIG, XDG and HOME locations), environment
 * overrides, and the error messages, which must name the file and line or the
 * environment variable on one line. Each test starts from an environment
 * without any HPCC_* variable and with HOME and XDG_CONFIG_HOME pointing into
 * a fresh temporary directory.
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

#include "config.h"


static void clear_env(void)
{
	for (int k = 0; k < CONFIG_N_KEYS; k++)
		unsetenv(config_key_env(k));
	unsetenv("HPCC_CONFIG");
}

static int setup(void **state)
{
	char tmpl[] = "/tmp/hpcc-test-config-XXXXXX";
	char *dir = mkdtemp(tmpl);
	if (!dir)
		return -1;
	*state = strdup(dir);
	if (!*state)
		return -1;
	clear_env();
	setenv("HOME", dir, 1);
	char *xdg = NULL;
	if (asprintf(&xdg, "%s/xdg", dir) < 0)
		return -1;
	setenv("XDG_CONFIG_HOME", xdg, 1);
	free(xdg);
	return 0;
}

static int teardown(void **state)
{
	clear_env();
	testutil_rm_rf(*state);
	free(*state);
	return 0;
}

static char *tmp_path(void **state, const char *name)
{
	char *p = NULL;
	assert_true(asprintf(&p, "%s/%s", (const char *)*state, name) > 0);
	return p;
}

static char *write_config(void **state, const char *name, const char *text)
{
	char *path = tmp_path(state, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(close(fd), 0);
	return path;
}

static void assert_all_null(const struct config *c)
{
	for (int k = 0; k < CONFIG_N_KEYS; k++)
		assert_null(c->values[k]);
	assert_null(c->file);
}

static void assert_one_line(const struct error *err)
{
	assert_true(err->code < 0);
	assert_null(strchr(err->msg, '\n'));
	assert_null(strchr(err->msg, '\r'));
}

/* --- defaults and sources --- */

static void test_key_table(void **state)
{
	assert_string_equal(config_key_name(CONFIG_CACHE_DIR), "cache.dir");
	assert_string_equal(config_key_env(CONFIG_CACHE_DIR), "HPCC_DIR");
	assert_string_equal(config_key_name(CONFIG_CACHE_MAX_SIZE), "cache.max_size");
	assert_string_equal(config_key_env(CONFIG_CACHE_MAX_SIZE), "HPCC_MAX_SIZE");
	assert_string_equal(config_key_name(CONFIG_DAEMON_ENABLED), "daemon.enabled");
	assert_string_equal(config_key_env(CONFIG_DAEMON_ENABLED), "HPCC_DAEMON");
	assert_string_equal(config_key_name(CONFIG_LOG_LEVEL), "log.level");
	assert_string_equal(config_key_env(CONFIG_LOG_LEVEL), "HPCC_LOG_LEVEL");
	for (int k = 0; k < CONFIG_N_KEYS; k++) {
		assert_non_null(config_key_name(k));
		assert_non_null(strchr(config_key_name(k), '.'));
		assert_memory_equal(config_key_env(k), "HPCC_", 5);
	}
}

static void test_defaults(void **state)
{
	struct config c;
	struct error err = { 0 };
	assert_int_equal(config_load(&c, NULL, &err), 0);
	assert_int_equal(err.code, 0);
	assert_null(c.file);
	assert_null(config_get(&c, CONFIG_CACHE_DIR));
	assert_string_equal(config_get(&c, CONFIG_CACHE_MAX_SIZE), "5G");
	assert_string_equal(config_get(&c, CONFIG_CACHE_COMPRESSION_LEVEL), "1");
	assert_string_equal(config_get(&c, CONFIG_CACHE_DIRECT_MODE), "true");
	assert_string_equal(config_get(&c, CONFIG_CACHE_DISABLE), "false");
	assert_string_equal(config_get(&c, CONFIG_CACHE_PREFIX_MAP), "true");
	assert_string_equal(config_get(&c, CONFIG_DAEMON_ENABLED), "true");
	assert_string_equal(config_get(&c, CONFIG_DAEMON_IDLE_TIMEOUT), "600");
	assert_null(config_get(&c, CONFIG_DAEMON_SOCKET));
	assert_null(config_get(&c, CONFIG_LOG_FILE));
	assert_string_equal(config_get(&c, CONFIG_LOG_LEVEL), "warn");

	uint64_t v = 0;
	bool b = false;
	assert_int_equal(config_get_u64(&c, CONFIG_CACHE_MAX_SIZE, &v), 0);
	assert_int_equal(v, UINT64_C(5) << 30);
	assert_int_equal(config_get_u64(&c, CONFIG_DAEMON_IDLE_TIMEOUT, &v), 0);
	assert_int_equal(v, 600);
	assert_int_equal(config_get_bool(&c, CONFIG_CACHE_DIRECT_MODE, &b), 0);
	assert_true(b);
	assert_int_equal(config_get_bool(&c, CONFIG_CACHE_DISABLE, &b), 0);
	assert_false(b);
	/* Unset values say so. */
	assert_int_equal(config_get_u64(&c, CONFIG_CACHE_DIR, &v), -ENOENT);
	assert_int_equal(config_get_bool(&c, CONFIG_LOG_FILE, &b), -ENOENT);
	config_free(&c);
	assert_all_null(&c);
	config_free(&c);
}

static void test_no_home(void **state)
{
	unsetenv("HOME");
	unsetenv("XDG_CONFIG_HOME");
	struct config c;
	struct error err = { 0 };
	assert_int_equal(config_load(&c, NULL, &err), 0);
	assert_null(c.file);
	assert_string_equal(config_get(&c, CONFIG_CACHE_MAX_SIZE), "5G");
	config_free(&c);
}

static const char sample[] = "; hpcc settings\n"
			     "[cache]\n"
			     "dir = /var/cache/hpcc\n"
			     "max_size = 10G\n"
			     "direct_mode = false\n"
			     "compression_level = 3  ; inline comment\n"
			     "\n"
			     "[daemon]\n"
			     "idle_timeout=30\n"
			     "# another comment\n"
			     "[log]\n"
			     "level = debug\n"
			     "file = /tmp/hpcc.log\n";

static void assert_sample(const struct config *c)
{
	assert_string_equal(config_get(c, CONFIG_CACHE_DIR), "/var/cache/hpcc");
	assert_string_equal(config_get(c, CONFIG_CACHE_MAX_SIZE), "10G");
	assert_string_equal(config_get(c, CONFIG_CACHE_DIRECT_MODE), "false");
	assert_string_equal(config_get(c, CONFIG_CACHE_COMPRESSION_LEVEL), "3");
	assert_string_equal(config_get(c, CONFIG_DAEMON_IDLE_TIMEOUT), "30");
	assert_string_equal(config_get(c, CONFIG_LOG_LEVEL), "debug");
	assert_string_equal(config_get(c, CONFIG_LOG_FILE), "/tmp/hpcc.log");
	/* untouched keys keep their defaults */
	assert_string_equal(config_get(c, CONFIG_CACHE_DISABLE), "false");
	assert_string_equal(config_get(c, CONFIG_DAEMON_ENABLED), "true");
	assert_null(config_get(c, CONFIG_DAEMON_SOCKET));
}

static void test_file_explicit(void **state)
{
	_cleanup_free_ char *path = write_config(state, "explicit.ini", sample);
	struct config c;
	struct error err = { 0 };
	assert_int_equal(config_load(&c, path, &err), 0);
	assert_int_equal(err.code, 0);
	assert_sample(&c);
	assert_string_equal(c.file, path);
	bool b = true;
	assert_int_equal(config_get_bool(&c, CONFIG_CACHE_DIRECT_MODE, &b), 0);
	assert_false(b);
	config_free(&c);
}

static void test_file_from_hpcc_config(void **state)
{
	_cleanup_free_ char *path = write_config(state, "env.ini", sample);
	setenv("HPCC_CONFIG", path, 1);
	struct config c;
	struct error err = { 0 };
	assert_int_equal(config_load(&c, NULL, &err), 0);
	assert_sample(&c);
	assert_string_equal(c.file, path);
	config_free(&c);

	/* An explicit path beats $HPCC_CONFIG. */
	_cleanup_free_ char *other = write_config(state, "other.ini", "[cache]\nmax_size = 7K\n");
	assert_int_equal(config_load(&c, other, &err), 0);
	assert_string_equal(config_get(&c, CONFIG_CACHE_MAX_SIZE), "7K");
	assert_string_equal(c.file, other);
	config_free(&c);
}

static void test_file_from_xdg_and_home(void **state)
{
	_cleanup_free_ char *xdg_dir = tmp_path(state, "xdg/hpcc");
	_cleanup_free_ char *home_dir = tmp_path(state, ".config/hpcc");
	char *mk = tmp_path(state, "xdg");
	assert_int_equal(mkdir(mk, 0755), 0);
	free(mk);
	mk = tmp_path(state, ".config");
	assert_int_equal(mkdir(mk, 0755), 0);
	free(mk);
	assert_int_equal(mkdir(xdg_dir, 0755), 0);
	assert_int_equal(mkdir(home_dir, 0755), 0);
	_cleanup_free_ char *xdg_file = write_config(state, "xdg/hpcc/hpcc.ini", "[cache]\nmax_size = 1K\n");
	_cleanup_free_ char *home_file = write_config(state, ".config/hpcc/hpcc.ini", "[cache]\nmax_size = 2K\n");

	struct config c;
	struct error err = { 0 };
	assert_int_equal(config_load(&c, NULL, &err), 0);
	assert_string_equal(config_get(&c, CONFIG_CACHE_MAX_SIZE), "1K");
	assert_string_equal(c.file, xdg_file);
	config_free(&c);

	unsetenv("XDG_CONFIG_HOME");
	assert_int_equal(config_load(&c, NULL, &err), 0);
	assert_string_equal(config_get(&c, CONFIG_CACHE_MAX_SIZE), "2K");
	assert_string_equal(c.file, home_file);
	config_free(&c);

	/* An empty XDG_CONFIG_HOME counts as unset. */
	setenv("XDG_CONFIG_HOME", "", 1);
	assert_int_equal(config_load(&c, NULL, &err), 0);
	assert_string_equal(config_get(&c, CONFIG_CACHE_MAX_SIZE), "2K");
	config_free(&c);
}

static void test_env_beats_file(void **state)
{
	_cleanup_free_ char *path = write_config(state, "f.ini", sample);
	setenv("HPCC_CONFIG", path, 1);
	setenv("HPCC_MAX_SIZE", "1G", 1);
	setenv("HPCC_DIRECT_MODE", "yes", 1);
	setenv("HPCC_DIR", "/env/dir", 1);
	setenv("HPCC_SOCKET", "/run/hpcc.sock", 1);
	struct config c;
	struct error err = { 0 };
	assert_int_equal(config_load(&c, NULL, &err), 0);
	assert_string_equal(config_get(&c, CONFIG_CACHE_MAX_SIZE), "1G");
	assert_string_equal(config_get(&c, CONFIG_CACHE_DIRECT_MODE), "yes");
	assert_string_equal(config_get(&c, CONFIG_CACHE_DIR), "/env/dir");
	assert_string_equal(config_get(&c, CONFIG_DAEMON_SOCKET), "/run/hpcc.sock");
	/* the file still applies where the environment is silent */
	assert_string_equal(config_get(&c, CONFIG_LOG_LEVEL), "debug");
	uint64_t v;
	assert_int_equal(config_get_u64(&c, CONFIG_CACHE_MAX_SIZE, &v), 0);
	assert_int_equal(v, UINT64_C(1) << 30);
	config_free(&c);

	unsetenv("HPCC_MAX_SIZE");
	assert_int_equal(config_load(&c, NULL, &err), 0);
	assert_string_equal(config_get(&c, CONFIG_CACHE_MAX_SIZE), "10G");
	config_free(&c);
}

static void test_keys_case_insensitive(void **state)
{
	_cleanup_free_ char *path = write_config(state, "case.ini", "[CACHE]\nMax_Size = 3G\n");
	struct config c;
	struct error err = { 0 };
	assert_int_equal(config_load(&c, path, &err), 0);
	assert_string_equal(config_get(&c, CONFIG_CACHE_MAX_SIZE), "3G");
	config_free(&c);
}

static void test_long_value(void **state)
{
	/* A value well inside inih's line limit is kept whole. */
	char text[256];
	char value[151];
	memset(value, 'v', 150);
	value[150] = '\0';
	snprintf(text, sizeof(text), "[cache]\ndir = /%s\n", value);
	_cleanup_free_ char *path = write_config(state, "long.ini", text);
	struct config c;
	struct error err = { 0 };
	assert_int_equal(config_load(&c, path, &err), 0);
	assert_int_equal(strlen(config_get(&c, CONFIG_CACHE_DIR)), 151);
	assert_string_equal(config_get(&c, CONFIG_CACHE_DIR) + 1, value);
	config_free(&c);
}

/* --- errors --- */

static void test_unknown_key(void **state)
{
	_cleanup_free_ char *path = write_config(state, "unknown.ini", "[cache]\nmax_size = 1G\nbogus = 1\nalso_bogus = 2\n");
	struct config c;
	struct error err = { 0 };
	assert_int_equal(config_load(&c, path, &err), -EINVAL);
	assert_int_equal(err.code, -EINVAL);
	char want[600];
	snprintf(want, sizeof(want), "%s:3: unknown setting 'cache.bogus'", path);
	assert_string_equal(err.msg, want);
	/* A failed load leaves nothing behind; freeing it again is harmless. */
	assert_all_null(&c);
	config_free(&c);
}

static void test_unknown_key_outside_section(void **state)
{
	_cleanup_free_ char *path = write_config(state, "nosection.ini", "max_size = 1G\n");
	struct config c;
	struct error err = { 0 };
	assert_int_equal(config_load(&c, path, &err), -EINVAL);
	char want[600];
	snprintf(want, sizeof(want), "%s:1: unknown setting '.max_size'", path);
	assert_string_equal(err.msg, want);
}

static void test_unknown_section(void **state)
{
	_cleanup_free_ char *path = write_config(state, "section.ini", "\n\n[cash]\ndir = /x\n");
	struct config c;
	struct error err = { 0 };
	assert_int_equal(config_load(&c, path, &err), -EINVAL);
	char want[600];
	snprintf(want, sizeof(want), "%s:4: unknown setting 'cash.dir'", path);
	assert_string_equal(err.msg, want);
}

static void test_syntax_error(void **state)
{
	/* The first failing line is reported, whatever its kind. */
	_cleanup_free_ char *a = write_config(state, "syntax1.ini", "[cache]\nthis line has no equals sign\nmax_size = 1G\nbogus = 1\n");
	struct config c;
	struct error err = { 0 };
	assert_int_equal(config_load(&c, a, &err), -EINVAL);
	char want[600];
	snprintf(want, sizeof(want), "%s:2: syntax error", a);
	assert_string_equal(err.msg, want);

	_cleanup_free_ char *b = write_config(state, "syntax2.ini", "[cache]\nbogus = 1\n[unterminated\n");
	error_clear(&err);
	assert_int_equal(config_load(&c, b, &err), -EINVAL);
	snprintf(want, sizeof(want), "%s:2: unknown setting 'cache.bogus'", b);
	assert_string_equal(err.msg, want);

	_cleanup_free_ char *d = write_config(state, "syntax3.ini", "[cache]\nmax_size = 1G\n[unterminated\n");
	error_clear(&err);
	assert_int_equal(config_load(&c, d, &err), -EINVAL);
	snprintf(want, sizeof(want), "%s:3: syntax error", d);
	assert_string_equal(err.msg, want);
	assert_all_null(&c);
}

static void test_line_too_long(void **state)
{
	/* inih reads lines in pieces of a fixed size; a longer line must be an
	 * error, not parsed as several lines. */
	size_t n = 1000;
	char *text = malloc(n + 64);
	assert_non_null(text);
	int off = snprintf(text, n + 64, "[cache]\nmax_size = 1G\ndir = /");
	memset(text + off, 'd', n);
	memcpy(text + off + n, "\n", 2);
	_cleanup_free_ char *path = write_config(state, "toolong.ini", text);
	free(text);
	struct config c;
	struct error err = { 0 };
	assert_int_equal(config_load(&c, path, &err), -EINVAL);
	char want[600];
	snprintf(want, sizeof(want), "%s:3: line too long", path);
	assert_string_equal(err.msg, want);
	assert_all_null(&c);
}

static void test_line_too_long_ending_in_comment(void **state)
{
	/* The tail of an over-long line would read as a comment on its own;
	 * the truncated value must still not be accepted. */
	char text[600];
	int off = snprintf(text, sizeof(text), "[cache]\ndir = /");
	memset(text + off, 'd', 195);
	snprintf(text + off + 195, sizeof(text) - (size_t)off - 195, ";%0300d\n", 0);
	_cleanup_free_ char *path = write_config(state, "comment.ini", text);
	struct config c;
	struct error err = { 0 };
	assert_int_equal(config_load(&c, path, &err), -EINVAL);
	char want[600];
	snprintf(want, sizeof(want), "%s:2: line too long", path);
	assert_string_equal(err.msg, want);
}

static void test_bad_bool_env(void **state)
{
	setenv("HPCC_DIRECT_MODE", "maybe", 1);
	struct config c;
	struct error err = { 0 };
	assert_int_equal(config_load(&c, NULL, &err), -EINVAL);
	assert_string_equal(err.msg, "cache.direct_mode (HPCC_DIRECT_MODE): not a boolean: 'maybe'");
	assert_one_line(&err);
	assert_all_null(&c);

	unsetenv("HPCC_DIRECT_MODE");
	setenv("HPCC_DAEMON", "", 1);
	error_clear(&err);
	assert_int_equal(config_load(&c, NULL, &err), -EINVAL);
	assert_string_equal(err.msg, "daemon.enabled (HPCC_DAEMON): not a boolean: ''");
}

static void test_bad_size_env(void **state)
{
	setenv("HPCC_MAX_SIZE", "12X", 1);
	struct config c;
	struct error err = { 0 };
	assert_int_equal(config_load(&c, NULL, &err), -EINVAL);
	assert_string_equal(err.msg, "cache.max_size (HPCC_MAX_SIZE): not a number: '12X'");
	assert_one_line(&err);

	/* A newline in the value does not break the message into two lines. */
	setenv("HPCC_MAX_SIZE", "1\nG", 1);
	error_clear(&err);
	assert_int_equal(config_load(&c, NULL, &err), -EINVAL);
	assert_string_equal(err.msg, "cache.max_size (HPCC_MAX_SIZE): not a number: '1 G'");
	assert_one_line(&err);

	unsetenv("HPCC_MAX_SIZE");
	setenv("HPCC_DAEMON_IDLE_TIMEOUT", "-5", 1);
	error_clear(&err);
	assert_int_equal(config_load(&c, NULL, &err), -EINVAL);
	assert_string_equal(err.msg, "daemon.idle_timeout (HPCC_DAEMON_IDLE_TIMEOUT): not a number: '-5'");
}

static void test_bad_value_in_file(void **state)
{
	_cleanup_free_ char *path = write_config(state, "bad.ini", "[cache]\ndisable = perhaps\n");
	struct config c;
	struct error err = { 0 };
	assert_int_equal(config_load(&c, path, &err), -EINVAL);
	assert_string_equal(err.msg, "cache.disable (HPCC_DISABLE): not a boolean: 'perhaps'");
	/* The environment can repair a bad file value. */
	setenv("HPCC_DISABLE", "off", 1);
	error_clear(&err);
	assert_int_equal(config_load(&c, path, &err), 0);
	bool b = true;
	assert_int_equal(config_get_bool(&c, CONFIG_CACHE_DISABLE, &b), 0);
	assert_false(b);
	config_free(&c);
}

static void test_compression_level_range(void **state)
{
	struct config c;
	struct error err = { 0 };
	setenv("HPCC_COMPRESSION_LEVEL", "19", 1);
	assert_int_equal(config_load(&c, NULL, &err), 0);
	config_free(&c);
	setenv("HPCC_COMPRESSION_LEVEL", "20", 1);
	assert_int_equal(config_load(&c, NULL, &err), -EINVAL);
	assert_string_equal(err.msg, "cache.compression_level: 20 is above 19");
	assert_all_null(&c);
}

static void test_log_level(void **state)
{
	struct config c;
	struct error err = { 0 };
	setenv("HPCC_LOG_LEVEL", "DEBUG", 1);
	assert_int_equal(config_load(&c, NULL, &err), 0);
	config_free(&c);
	setenv("HPCC_LOG_LEVEL", "verbose", 1);
	assert_int_equal(config_load(&c, NULL, &err), -EINVAL);
	assert_string_equal(err.msg, "log.level: 'verbose' is not error, warn, info or debug");
}

static void test_file_too_large(void **state)
{
	/* A file of exactly the limit is read; one byte more is refused. */
	size_t n = CONFIG_MAX_FILE_SIZE;
	char *text = malloc(n + 2);
	assert_non_null(text);
	memset(text, '\n', n + 1);
	memcpy(text, "[cache]\nmax_size = 4K\n", 22);
	text[n] = '\0';
	_cleanup_free_ char *ok = write_config(state, "limit.ini", text);
	text[n] = '\n';
	text[n + 1] = '\0';
	_cleanup_free_ char *big = write_config(state, "big.ini", text);
	free(text);

	struct config c;
	struct error err = { 0 };
	assert_int_equal(config_load(&c, ok, &err), 0);
	assert_string_equal(config_get(&c, CONFIG_CACHE_MAX_SIZE), "4K");
	config_free(&c);

	assert_int_equal(config_load(&c, big, &err), -EFBIG);
	char want[600];
	snprintf(want, sizeof(want), "%s: larger than 65536 bytes", big);
	assert_string_equal(err.msg, want);
	assert_all_null(&c);
}

static void test_missing_explicit_file(void **state)
{
	_cleanup_free_ char *path = tmp_path(state, "missing.ini");
	struct config c;
	struct error err = { 0 };
	assert_int_equal(config_load(&c, path, &err), -ENOENT);
	char want[600];
	snprintf(want, sizeof(want), "%s: No such file or directory", path);
	assert_string_equal(err.msg, want);
	assert_all_null(&c);

	/* $HPCC_CONFIG is just as explicit. */
	setenv("HPCC_CONFIG", path, 1);
	error_clear(&err);
	assert_int_equal(config_load(&c, NULL, &err), -ENOENT);
	assert_string_equal(err.msg, want);

	/* An empty $HPCC_CONFIG is not: the (missing) default applies. */
	setenv("HPCC_CONFIG", "", 1);
	error_clear(&err);
	assert_int_equal(config_load(&c, NULL, &err), 0);
	assert_null(c.file);
	config_free(&c);
}

static void test_missing_default_file(void **state)
{
	struct config c;
	struct error err = { 0 };
	assert_int_equal(config_load(&c, NULL, &err), 0);
	assert_int_equal(err.code, 0);
	assert_null(c.file);
	config_free(&c);
}

static void test_config_is_directory(void **state)
{
	struct config c;
	struct error err = { 0 };
	assert_int_equal(config_load(&c, *state, &err), -EISDIR);
	char want[600];
	snprintf(want, sizeof(want), "%s: Is a directory", (const char *)*state);
	assert_string_equal(err.msg, want);
}

static void test_null_error(void **state)
{
	/* The error report is optional. */
	_cleanup_free_ char *path = write_config(state, "u.ini", "[cache]\nbogus = 1\n");
	struct config c;
	assert_int_equal(config_load(&c, path, NULL), -EINVAL);
	_cleanup_free_ char *syntax = write_config(state, "s.ini", "[cache]\nnonsense\n");
	assert_int_equal(config_load(&c, syntax, NULL), -EINVAL);
	setenv("HPCC_DISABLE", "x", 1);
	assert_int_equal(config_load(&c, NULL, NULL), -EINVAL);
}

/* --- parsers --- */

static void test_parse_size(void **state)
{
	static const struct {
		const char *in;
		int r;
		uint64_t v;
	} cases[] = {
		{ "0", 0, 0 },
		{ "7", 0, 7 },
		{ "5G", 0, UINT64_C(5) << 30 },
		{ "1K", 0, 1024 },
		{ "1k", 0, 1024 },
		{ "2KB", 0, 2048 },
		{ "10MiB", 0, UINT64_C(10) << 20 },
		{ "10m", 0, UINT64_C(10) << 20 },
		{ "3T", 0, UINT64_C(3) << 40 },
		{ "100B", 0, 100 },
		{ "18446744073709551615", 0, UINT64_MAX },
		{ "16777215T", 0, UINT64_C(16777215) << 40 },
		{ "x", -EINVAL, 0 },
		{ "1Q", -EINVAL, 0 },
		{ "", -EINVAL, 0 },
		{ "G", -EINVAL, 0 },
		{ "-1", -EINVAL, 0 },
		{ "+1", -EINVAL, 0 },
		{ " 1", -EINVAL, 0 },
		{ "1 ", -EINVAL, 0 },
		{ "1 K", -EINVAL, 0 },
		{ "1.5G", -EINVAL, 0 },
		{ "1i", -EINVAL, 0 },
		{ "1KiBB", -EINVAL, 0 },
		{ "1GG", -EINVAL, 0 },
		{ "18446744073709551616", -EINVAL, 0 },
		{ "99999999999999999999999", -EINVAL, 0 },
		{ "16777216T", -ERANGE, 0 },
		{ "17179869184G", -ERANGE, 0 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		uint64_t v = 0xdeadbeef;
		int r = config_parse_size(cases[i].in, &v);
		if (r != cases[i].r)
			fail_msg("config_parse_size(\"%s\") = %d, want %d", cases[i].in, r, cases[i].r);
		if (r == 0 && v != cases[i].v)
			fail_msg("config_parse_size(\"%s\") gave %llu", cases[i].in, (unsigned long long)v);
		if (r < 0 && v != 0xdeadbeef)
			fail_msg("config_parse_size(\"%s\") wrote its result on failure", cases[i].in);
	}
	uint64_t v;
	assert_int_equal(config_parse_size(NULL, &v), -EINVAL);
}

static void test_parse_bool(void **state)
{
	static const char *const yes[] = { "1", "true", "TRUE", "yes", "Yes", "on", "ON" };
	static const char *const no[] = { "0", "false", "False", "no", "NO", "off", "Off" };
	static const char *const bad[] = { "", "2", "y", "n", "truee", " true", "true ", "enabled" };
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		bool b = false;
		assert_int_equal(config_parse_bool(yes[i], &b), 0);
		assert_true(b);
	}
	for (size_t i = 0; i < ARRAY_SIZE(no); i++) {
		bool b = true;
		assert_int_equal(config_parse_bool(no[i], &b), 0);
		assert_false(b);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		bool b = true;
		if (config_parse_bool(bad[i], &b) != -EINVAL)
			fail_msg("config_parse_bool(\"%s\") accepted", bad[i]);
		assert_true(b);
	}
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_table),
		T(test_defaults),
		T(test_no_home),
		T(test_file_explicit),
		T(test_file_from_hpcc_config),
		T(test_file_from_xdg_and_home),
		T(test_env_beats_file),
		T(test_keys_case_insensitive),
		T(test_long_value),
		T(test_unknown_key),
		T(test_unknown_key_outside_section),
		T(test_unknown_section),
		T(test_syntax_error),
		T(test_line_too_long),
		T(test_line_too_long_ending_in_comment),
		T(test_bad_bool_env),
		T(test_bad_size_env),
		T(test_bad_value_in_file),
		T(test_compression_level_range),
		T(test_log_level),
		T(test_file_too_large),
		T(test_missing_explicit_file),
		T(test_missing_default_file),
		T(test_config_is_directory),
		T(test_null_error),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_bool),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
