/*
 * Configuration loading (see config.h): one table lists every key with its
 * section, environment variable and default; the INI file is parsed by inih
 * from a capped in-memory copy.
 */
#include "config.h"

#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "fs.h"
#include "log.h"

struct config_def {
	const char *name;  /* section.key */
	const char *env;
	const char *def;
};

static const struct config_def defs[CONFIG_N_KEYS] = {
	[CONFIG_CACHE_DIR] = { "cache.dir", "HPCC_DIR", NULL },
	[CONFIG_CACHE_MAX_SIZE] = { "cache.max_size", "HPCC_MAX_SIZE", "5G" },
	[CONFIG_CACHE_COMPRESSION_LEVEL] = { "cache.compression_level", "HPCC_COMPRESSION_LEVEL", "1" },
	[CONFIG_CACHE_DIRECT_MODE] = { "cache.direct_mode", "HPCC_DIRECT_MODE", "true" },
	[CONFIG_CACHE_DISABLE] = { "cache.disable", "HPCC_DISABLE", "false" },
	[CONFIG_CACHE_PREFIX_MAP] = { "cache.prefix_map", "HPCC_PREFIX_MAP", "true" },
	[CONFIG_DAEMON_ENABLED] = { "daemon.enabled", "HPCC_DAEMON", "true" },
	[CONFIG_DAEMON_IDLE_TIMEOUT] = { "daemon.idle_timeout", "HPCC_DAEMON_IDLE_TIMEOUT", "600" },
	[CONFIG_DAEMON_SOCKET] = { "daemon.socket", "HPCC_SOCKET", NULL },
	[CONFIG_REMOTE_WORKER] = { "remote.worker", "HPCC_REMOTE_WORKER", NULL },
	[CONFIG_REMOTE_PIN] = { "remote.pin", "HPCC_REMOTE_PIN", NULL },
	[CONFIG_REMOTE_TENANT] = { "remote.tenant", "HPCC_REMOTE_TENANT", NULL },
	[CONFIG_REMOTE_IMAGE] = { "remote.image", "HPCC_REMOTE_IMAGE", NULL },
	[CONFIG_REMOTE_TOKEN_FILE] = { "remote.token_file", "HPCC_REMOTE_TOKEN_FILE", NULL },
	[CONFIG_REMOTE_MODE] = { "remote.mode", "HPCC_REMOTE_MODE", "cas" },
	[CONFIG_REMOTE_TIMEOUT] = { "remote.timeout", "HPCC_REMOTE_TIMEOUT", "300" },
	[CONFIG_REMOTE_COMPRESSION_LEVEL] = { "remote.compression_level", "HPCC_REMOTE_COMPRESSION_LEVEL", "3" },
	/* With a scheduler, the worker, its pin and the routing token come from Route answers. */
	[CONFIG_REMOTE_SCHEDULER] = { "remote.scheduler", "HPCC_REMOTE_SCHEDULER", NULL },
	[CONFIG_REMOTE_SCHEDULER_PIN] = { "remote.scheduler_pin", "HPCC_REMOTE_SCHEDULER_PIN", NULL },
	/* The OAuth2 token file of `hpcc login` (default: <cache dir>/auth/<tenant>.json). */
	[CONFIG_REMOTE_AUTH_FILE] = { "remote.auth_file", "HPCC_REMOTE_AUTH_FILE", NULL },
	/* Trusted mode only (docs/s3.md): the daemon reads and writes the
	 * shared tier itself when the scheduler says the tenant is trusted;
	 * for a paranoid tenant these settings are refused. */
	[CONFIG_S3_ENDPOINT] = { "s3.endpoint", "HPCC_S3_ENDPOINT", NULL },
	[CONFIG_S3_REGION] = { "s3.region", "HPCC_S3_REGION", "us-east-1" },
	[CONFIG_S3_BUCKET] = { "s3.bucket", "HPCC_S3_BUCKET", NULL },
	[CONFIG_S3_PREFIX] = { "s3.prefix", "HPCC_S3_PREFIX", NULL },
	[CONFIG_S3_PATH_STYLE] = { "s3.path_style", "HPCC_S3_PATH_STYLE", NULL },
	[CONFIG_S3_CREDENTIALS_FILE] = { "s3.credentials_file", "HPCC_S3_CREDENTIALS_FILE", NULL },
	[CONFIG_S3_TIMEOUT_MS] = { "s3.timeout_ms", "HPCC_S3_TIMEOUT_MS", "2000" },
	[CONFIG_LOG_FILE] = { "log.file", "HPCC_LOG_FILE", NULL },
	[CONFIG_LOG_LEVEL] = { "log.level", "HPCC_LOG_LEVEL", "warn" },
};

const char *config_key_name(enum config_key key) { return defs[key].name; }
const char *config_key_env(enum config_key key) { return defs[key].env; }

static int config_set(struct config *c, enum config_key key, const char *value)
{
	char *copy = value ? strdup(value) : NULL;
	if (value && !copy)
		return -ENOMEM;
	free(c->values[key]);
	c->values[key] = copy;
	return 0;
}

/*
 * inih as distributions build it does not pass line numbers to handlers (that
 * needs INI_HANDLER_LINENO when the library itself is compiled), so the text
 * is fed through our own reader, which counts lines. inih reads at most a
 * fixed number of bytes per line and would parse the rest of a longer line as
 * a line of its own; the reader refuses such a line instead.
 */
struct ini_state {
	struct config *c;
	const char *path;
	const char *next;     /* the text not yet handed to inih */
	int line;             /* the line inih is parsing */
	int long_line;        /* the first line too long for inih, or 0 */
	int handler_line;     /* the line of handler_err, or 0 */
	struct error handler_err;
};

static char *config_ini_reader(char *str, int num, void *stream)
{
	struct ini_state *st = stream;
	if (!*st->next || st->long_line)
		return NULL;
	size_t n = strcspn(st->next, "\n");
	if (st->next[n] == '\n')
		n++;
	st->line++;
	if (num < 2 || n > (size_t)num - 1) {
		st->long_line = st->line;
		return NULL;
	}
	memcpy(str, st->next, n);
	str[n] = '\0';
	st->next += n;
	return str;
}

static int config_ini_handler(void *user, const char *section, const char *name, const char *value)
{
	struct ini_state *st = user;
	char full[256];
	snprintf(full, sizeof(full), "%s.%s", section, name);
	for (int k = 0; k < CONFIG_N_KEYS; k++) {
		if (strcasecmp(defs[k].name, full) == 0) {
			if (config_set(st->c, k, value) < 0) {
				if (!st->handler_line)
					st->handler_line = st->line;
				error_set(&st->handler_err, -ENOMEM, "out of memory");
				return 0;
			}
			return 1;
		}
	}
	if (!st->handler_line)
		st->handler_line = st->line;
	error_set(&st->handler_err, -EINVAL, "%s:%d: unknown setting '%s'", st->path, st->line, full);
	return 0;
}

static char *config_default_path(void)
{
	const char *p = getenv("HPCC_CONFIG");
	if (p && *p)
		return strdup(p);
	char *out = NULL;
	const char *xdg = getenv("XDG_CONFIG_HOME");
	const char *home = getenv("HOME");
	if (xdg && *xdg) {
		if (asprintf(&out, "%s/hpcc/hpcc.ini", xdg) < 0)
			return NULL;
	} else if (home && *home) {
		if (asprintf(&out, "%s/.config/hpcc/hpcc.ini", home) < 0)
			return NULL;
	}
	return out;
}

static int config_load_values(struct config *c, const char *path, struct error *err)
{
	for (int k = 0; k < CONFIG_N_KEYS; k++)
		if (config_set(c, k, defs[k].def) < 0)
			return error_set(err, -ENOMEM, "out of memory");
	bool explicit = path != NULL || (getenv("HPCC_CONFIG") && *getenv("HPCC_CONFIG"));
	_cleanup_free_ char *file = path ? strdup(path) : config_default_path();
	if (!file && explicit)
		return error_set(err, -ENOMEM, "out of memory");
	if (file) {
		_cleanup_buf_ struct buf text;
		buf_init(&text, CONFIG_MAX_FILE_SIZE + 1);
		int r = fs_read_file(file, CONFIG_MAX_FILE_SIZE, &text);
		if (r == -ENOENT && !explicit) {
			/* No file is the normal case. */
		} else if (r == -EFBIG) {
			return error_set(err, r, "%s: larger than %d bytes", file, CONFIG_MAX_FILE_SIZE);
		} else if (r < 0) {
			return error_set(err, r, "%s: %s", file, strerror(-r));
		} else {
			struct ini_state st = { .c = c, .path = file, .next = text.data ? text.data : "" };
			/* inih returns the first line that failed, whether by syntax or
			 * in the handler; a too-long line stops the reading, so any
			 * earlier failure comes first. */
			int line = ini_parse_stream(config_ini_reader, &st, config_ini_handler, &st);
			if (line != 0 && line == st.handler_line)
				return error_set(err, st.handler_err.code, "%s", st.handler_err.msg);
			if (line != 0)
				return error_set(err, -EINVAL, "%s:%d: syntax error", file, line);
			if (st.long_line)
				return error_set(err, -EINVAL, "%s:%d: line too long", file, st.long_line);
			c->file = TAKE_PTR(file);
		}
	}
	for (int k = 0; k < CONFIG_N_KEYS; k++) {
		const char *v = getenv(defs[k].env);
		if (v && config_set(c, k, v) < 0)
			return error_set(err, -ENOMEM, "out of memory");
	}
	/* Validate typed values now, so a bad one is reported once, clearly. */
	static const enum config_key bools[] = { CONFIG_CACHE_DIRECT_MODE, CONFIG_CACHE_DISABLE,
						 CONFIG_CACHE_PREFIX_MAP, CONFIG_DAEMON_ENABLED };
	for (size_t i = 0; i < ARRAY_SIZE(bools); i++) {
		bool b;
		if (config_get_bool(c, bools[i], &b) < 0)
			return error_set(err, -EINVAL, "%s (%s): not a boolean: '%s'", defs[bools[i]].name,
					 defs[bools[i]].env, c->values[bools[i]]);
	}
	static const enum config_key nums[] = { CONFIG_CACHE_MAX_SIZE, CONFIG_CACHE_COMPRESSION_LEVEL,
						CONFIG_DAEMON_IDLE_TIMEOUT };
	for (size_t i = 0; i < ARRAY_SIZE(nums); i++) {
		uint64_t v;
		if (config_get_u64(c, nums[i], &v) < 0)
			return error_set(err, -EINVAL, "%s (%s): not a number: '%s'", defs[nums[i]].name,
					 defs[nums[i]].env, c->values[nums[i]]);
	}
	uint64_t level;
	config_get_u64(c, CONFIG_CACHE_COMPRESSION_LEVEL, &level);
	if (level > 19)
		return error_set(err, -EINVAL, "cache.compression_level: %" PRIu64 " is above 19", level);
	if (c->values[CONFIG_LOG_LEVEL] && log_level_parse(c->values[CONFIG_LOG_LEVEL]) < 0)
		return error_set(err, -EINVAL, "log.level: '%s' is not error, warn, info or debug",
				 c->values[CONFIG_LOG_LEVEL]);
	return 0;
}

int config_load(struct config *c, const char *path, struct error *err)
{
	*c = (struct config){ 0 };
	/* A failed load leaves nothing to free, so that a caller that only
	 * reports the error does not leak. */
	int r = config_load_values(c, path, err);
	if (r < 0)
		config_free(c);
	return r;
}

void config_free(struct config *c)
{
	for (int k = 0; k < CONFIG_N_KEYS; k++) {
		free(c->values[k]);
		c->values[k] = NULL;
	}
	free(c->file);
	c->file = NULL;
}

const char *config_get(const struct config *c, enum config_key key) { return c->values[key]; }

int config_parse_bool(const char *s, bool *ret)
{
	static const char *const yes[] = { "1", "true", "yes", "on" }, *const no[] = { "0", "false", "no", "off" };
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*ret = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*ret = false;
			return 0;
		}
	}
	return -EINVAL;
}

int config_get_bool(const struct config *c, enum config_key key, bool *ret)
{
	return c->values[key] ? config_parse_bool(c->values[key], ret) : -ENOENT;
}

int config_parse_size(const char *s, uint64_t *ret)
{
	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	unsigned shift = 0;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default: break;
	}
	if (shift && *end == 'i')
		end++;
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end)
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*ret = (uint64_t)v << shift;
	return 0;
}

int config_get_u64(const struct config *c, enum config_key key, uint64_t *ret)
{
	return c->values[key] ? config_parse_size(c->values[key], ret) : -ENOENT;
}
