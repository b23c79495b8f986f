/*
 * The per-user daemon: one process per cache directory, listening on a Unix
 * socket (0600, peer uid checked with SO_PEERCRED), a thread per wrapper
 * connection, the engine with its digest memo shared between them, counters
 * flushed every second, and an exit after an idle period.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "error.h"

/* Remote mode, installed by hpccd (the daemon binary that links grpc)
 * before daemon_run: misses that a worker can compile go to compile(). */
struct engine;
struct engine_result;
struct digest;
struct daemon_remote {
	const struct digest *image;  /* the toolchain image of every remote job */
	/* Called with a RUN result whose job is remote. Leaves *res a RUN (the
	 * wrapper compiles locally) or turns it into a HIT (job consumed). */
	void (*compile)(void *ctx, struct engine *e, struct engine_result *res);
	void *ctx;
	/* Text for `hpcc daemon status`. */
	void (*status)(void *ctx, char *out, size_t n);
	/* `hpcc inspect` and `hpcc reproduce` through the worker: 0 or a
	 * -errno, and *ret_text (malloc'd) either way. */
	int (*command)(void *ctx, const char *name, char *const *args, size_t n, char **ret_text);
};
void daemon_set_remote(const struct daemon_remote *remote);
/* The binary whose identity a daemon compares with its wrappers' (default
 * /proc/self/exe): hpccd names its sibling hpcc. */
void daemon_set_binary_path(const char *path);

/* Runs the daemon in the foreground until stopped or idle. */
int daemon_run(const struct config *cfg, struct error *err);
/* Starts a detached daemon and waits (at most timeout_ms) for it to say how
 * start-up went: 0 when it listens, -EAGAIN when it quit because another
 * daemon serves (connect to that one), another -errno when it failed. */
int daemon_spawn(const char *self_exe, int timeout_ms, struct error *err);
/* Connects to the daemon of this cache dir; -ENOENT/-ECONNREFUSED if none. */
int daemon_connect(const struct config *cfg, int *ret_fd);
/* Identifies the running hpcc binary (device, inode, mtime), so that a
 * daemon can tell that the wrapper talking to it is another build. */
void daemon_binary_id(char *out, size_t n);
/* Sends a command (stats, status, stop, zero) and returns its reply text. */
int daemon_command(const struct config *cfg, const char *name, char **ret_text);
/* The same with arguments, a reply wait of timeout_ms and replies up to
 * 32 MiB (hpcc inspect, hpcc reproduce). */
int daemon_command_args(const struct config *cfg, const char *name, char **args, size_t n_args, int timeout_ms,
			char **ret_text);
