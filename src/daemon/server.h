/*
 * The per-user daemon: one process per cache directory, listening on a Unix
 * socket (0600, peer uid checked with SO_PEERCRED), a thread per wrapper
 * connection, the engine with its digest memo shared between them, counters
 * flushed every second, and an exit after an idle period.
 */
#pragma once

#include <stdbool.h>

#include "config.h"
#include "error.h"

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
