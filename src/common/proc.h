/*
 * Running child processes: the real compiler on a miss or a fallback, and
 * short queries such as `cc --version`. Captured output is capped; a child
 * that writes more than the cap has the rest passed through (or dropped, for
 * queries) and the capture is marked incomplete.
 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "buf.h"

struct proc_result {
	int status;          /* wait status as from waitpid */
	struct buf out;      /* captured stdout */
	struct buf err;      /* captured stderr */
	/* A capture hit its cap: what it held was written to our own stdout or
	 * stderr, the rest passed through, and the buffer was emptied. */
	bool out_passed;
	bool err_passed;
};

void proc_result_free(struct proc_result *r);

/* Runs argv[0] (a path) with argv, capturing stdout and stderr up to cap
 * bytes each; stdin is inherited. envp NULL means the current environment.
 * With passthrough, an overflowing stream goes on to fd 1 or 2; without, the
 * excess is dropped and *_passed is still set. */
int proc_run_capture(char *const *argv, char *const *envp, size_t cap, bool passthrough, struct proc_result *ret);
/* The same without passthrough, run in directory cwd (the caller's own
 * cwd is left alone, so threads may do this at once). */
int proc_run_capture_in(char *const *argv, const char *cwd, size_t cap, struct proc_result *ret);
/* The exit code a shell would report for a wait status. */
int proc_exit_code(int status);
/* Replaces the current process with argv (path in argv[0]); returns on failure only. */
int proc_exec(char *const *argv);
