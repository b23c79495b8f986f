/*
 * worker.ini (see docs/worker.md): where the worker listens, its identity
 * and TLS files, the key that verifies routing tokens, the images it
 * serves, store budgets, limits, and its runtime. Relative file names are
 * relative to the directory of the configuration file.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "strv.h"

struct worker_config {
	char *path;              /* the file that was read */
	char *id;
	char *listen;
	char *dir;               /* state: stores, staging */
	char *cert_file, *key_file;
	char *token_key_file;    /* Ed25519 public key (PEM) */
	struct strv images;      /* "sha256:<hex>" the worker serves */
	unsigned max_calls;
	uint64_t max_size;       /* per tenant */
	uint64_t max_blob;       /* one file, uncompressed */
	uint64_t max_message;    /* one gRPC message */
	unsigned exec_timeout;   /* seconds */
	char *runtime;           /* "unsafe-local" */
	bool allow_unsafe_local;
	char *search_path;
	int max_parallel;
};

int worker_config_load(const char *path, struct worker_config *ret, struct error *err);
void worker_config_free(struct worker_config *c);
bool worker_config_serves(const struct worker_config *c, const char *image);
