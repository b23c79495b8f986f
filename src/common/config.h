/*
 * Client configuration: built-in defaults, then the INI file, then HPCC_*
 * environment variables, each later source overriding the earlier ones. The
 * set of keys is a fixed table (config.c), so a misspelt key in a file is an
 * error that names the line rather than a silently ignored setting.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

enum config_key {
	CONFIG_CACHE_DIR,
	CONFIG_CACHE_MAX_SIZE,
	CONFIG_CACHE_COMPRESSION_LEVEL,
	CONFIG_CACHE_DIRECT_MODE,
	CONFIG_CACHE_DISABLE,
	CONFIG_CACHE_PREFIX_MAP,
	CONFIG_DAEMON_ENABLED,
	CONFIG_DAEMON_IDLE_TIMEOUT,
	CONFIG_DAEMON_SOCKET,
	CONFIG_REMOTE_WORKER,
	CONFIG_REMOTE_PIN,
	CONFIG_REMOTE_TENANT,
	CONFIG_REMOTE_IMAGE,
	CONFIG_REMOTE_TOKEN_FILE,
	CONFIG_REMOTE_MODE,
	CONFIG_REMOTE_TIMEOUT,
	CONFIG_REMOTE_COMPRESSION_LEVEL,
	CONFIG_REMOTE_SCHEDULER,
	CONFIG_REMOTE_SCHEDULER_PIN,
	CONFIG_REMOTE_AUTH_FILE,
	CONFIG_S3_ENDPOINT,
	CONFIG_S3_REGION,
	CONFIG_S3_BUCKET,
	CONFIG_S3_PREFIX,
	CONFIG_S3_PATH_STYLE,
	CONFIG_S3_CREDENTIALS_FILE,
	CONFIG_S3_TIMEOUT_MS,
	CONFIG_LOG_FILE,
	CONFIG_LOG_LEVEL,
	CONFIG_N_KEYS
};

struct config {
	char *values[CONFIG_N_KEYS];
	char *file;  /* the file that was read, or NULL */
};

#define CONFIG_MAX_FILE_SIZE (64 * 1024)

/* Loads defaults, the file at path (NULL: $HPCC_CONFIG or the XDG default;
 * a missing default file is fine) and the environment. */
int config_load(struct config *c, const char *path, struct error *err);
void config_free(struct config *c);
const char *config_get(const struct config *c, enum config_key key);
const char *config_key_name(enum config_key key);
const char *config_key_env(enum config_key key);
int config_get_bool(const struct config *c, enum config_key key, bool *ret);
int config_get_u64(const struct config *c, enum config_key key, uint64_t *ret);
/* Sizes: a number with an optional K, M, G or T suffix (powers of 1024). */
int config_parse_size(const char *s, uint64_t *ret);
int config_parse_bool(const char *s, bool *ret);
