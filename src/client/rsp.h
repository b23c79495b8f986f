/*
 * Response files ("@file" arguments), expanded the way GCC and Clang do:
 * whitespace separates arguments, single and double quotes group, a
 * backslash escapes any character, nested files are read relative to the
 * compile's cwd, and a missing file stays a literal argument. Everything is
 * capped: per-file size and nesting depth (args.h), and the number of files
 * and total bytes read for one command line.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "args.h"
#include "strv.h"

struct rsp_state {
	const char *cwd;
	bool keep_empty;  /* GCC keeps '' as an empty argument; Clang 14 drops it */
	size_t n_files;
	size_t n_bytes;
};

/* Appends arg to out, or the arguments of the file "@name" names
 * (recursively). Returns 0, 1 with *reason set when the command must run
 * untouched, or a negative errno. */
int rsp_expand(struct rsp_state *st, const char *arg, unsigned depth, struct strv *out, enum args_reason *reason);
