/*
 * Runtimes: how the worker runs one compiler command in a staging directory.
 * Each runtime is one ops table (open a per-worker state, run one exec, close
 * it); the worker picks one by name from worker.ini and records that name in
 * the audit row. The first, "unsafe-local", runs the host's compiler directly
 * and isolates nothing; the microVM runtimes come later behind the same ops.
 * What a runtime receives comes from a client: the compiler name, the
 * environment and the working directory are all checked here, and every wait
 * and every captured byte is bounded.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "error.h"
#include "staging.h"

#define RUNTIME_DEFAULT_SEARCH_PATH "/usr/local/bin:/usr/bin:/bin"
#define RUNTIME_COMPILER_NAME_MAX 64

struct worker_config;

struct runtime_config {
	const struct worker_config *worker; /* the whole worker.ini (the microVM runtime reads [microvm]) */
	bool allow_unsafe_local;  /* worker.ini must say so explicitly */
	const char *search_path;  /* absolute directories where compilers are looked up; NULL = the default */
	int max_parallel;         /* execs at once (0 = number of CPUs) */
};

struct runtime_input {
	const char *path;             /* relative to the staging root */
	bool executable;
};

struct runtime_exec {
	/* argv[0]: the compiler's bare name ("gcc", "g++-12", "clang++",
	 * "x86_64-linux-gnu-gcc-12"); NULL-terminated. The runtime adds no flag:
	 * the caller builds the whole command, prefix maps included. */
	const char *const *argv;
	/* Extra NAME=VALUE, NULL-terminated or NULL. Only SOURCE_DATE_EPOCH
	 * (decimal digits) is accepted; anything else is refused with -EINVAL. */
	const char *const *env;
	struct staging *staging;
	const char *cwd;              /* relative to the staging root, safe, must exist; "" or "." = the root */
	int timeout_ms;               /* > 0; also bounds the wait for a free slot */
	size_t max_stdout, max_stderr; /* caps on captured output (excess dropped, *_truncated set) */
	/* For runtimes that run the compiler away from the host's staging
	 * directory (a microVM): who asks, the image, which staged files to
	 * ship (root-relative, already in staging) and which files to bring
	 * back ("root/..." or "tmp/<name>", relative to staging_dir()); the
	 * runtime writes those back into staging before it returns. */
	const char *tenant;
	const char *image;            /* "sha256:<hex>" */
	const struct runtime_input *inputs;
	size_t n_inputs;
	const char *const *outputs;   /* NULL-terminated, or NULL */
	size_t max_output_file;       /* cap per output file */
};


struct runtime_result {
	int exit_code;  /* the compiler's exit code, or 128+signal */
	bool timed_out; /* killed at the deadline; exit_code is then 128+SIGKILL */
	bool stdout_truncated, stderr_truncated;
	struct buf out, err;
	int64_t duration_us;
	char vm[96];    /* the audit row's vm column: "unsafe-local", or "<vm id> (qemu, tcg)" */
};

void runtime_result_free(struct runtime_result *r);

/* exec() returns 0 whenever the compiler ran, whatever its exit code or a
 * timeout; a negative errno means hpcc could not run it (bad request, missing
 * compiler, no slot in time, out of resources). *ret is written only on 0. */
struct runtime_ops {
	const char *name; /* what the audit row's vm column names: "unsafe-local" */
	int (*open)(const struct runtime_config *cfg, void **ret_state, struct error *err);
	int (*exec)(void *state, const struct runtime_exec *x, struct runtime_result *ret, struct error *err);
	void (*close)(void *state); /* accepts NULL; no exec may be running */
	/* Optional: makes running and waiting execs return an error at once
	 * (the worker's shutdown grace period is over). Any thread. */
	void (*interrupt)(void *state);
	/* Optional: calls fn for each VM that is up, with its tenant and image
	 * (the scheduler's heartbeat lists them). fn must only copy. */
	void (*list_vms)(void *state, void (*fn)(const char *tenant, const char *image, void *userdata),
			 void *userdata);
};

const struct runtime_ops *runtime_find(const char *name); /* NULL if unknown */

/* True if name is an accepted compiler name: an optional target triple prefix
 * "[a-z0-9_]+-[a-z0-9_]+-[a-z0-9_]+(-[a-z0-9_]+)?-", then gcc|g++|cc|c++|
 * clang|clang++, then an optional "-<version: digits and dots>"; no slash, at
 * most RUNTIME_COMPILER_NAME_MAX bytes. */
bool runtime_compiler_name_ok(const char *name);

/* True if every entry of a colon-separated search path is an absolute,
 * normalised directory name (a relative entry would be looked up in the
 * staging directory, where the client decides what "gcc" is). */
bool runtime_search_path_ok(const char *search_path);

/* True if entry is an accepted extra environment entry (see runtime_exec). */
bool runtime_env_entry_ok(const char *entry);

/* The checks every runtime makes on a request before running anything:
 * argv present, an accepted compiler name, a positive timeout, at most one
 * accepted environment entry. */
int runtime_check_exec(const struct runtime_exec *x, struct error *err);

extern const struct runtime_ops runtime_unsafe_local;
extern const struct runtime_ops runtime_microvm;
