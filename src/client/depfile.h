/*
 * Make-style dependency files. hpcc always has the compiler write the full
 * dependency list to a file of its own, then writes the file the user asked
 * for itself, both on a miss and on a hit, in the exact format and with the
 * exact targets that GCC or Clang would have used. That is what lets two
 * checkouts at different paths share one cache entry and still each get a
 * .d file that is byte-identical to a plain compile's.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "args.h"
#include "buf.h"
#include "family.h"
#include "strv.h"

#define DEPFILE_MAX_SIZE (16 * 1024 * 1024)

/* The first rule of a dependency file: targets and prerequisites, with make
 * quoting undone. */
struct depfile {
	struct strv targets;
	struct strv deps;
};

/* Parses text (as written by gcc -MD or clang -MD); -EBADMSG when malformed. */
int depfile_parse(const char *text, size_t len, struct depfile *ret);
void depfile_free(struct depfile *d);

/* Renders the dependency file that `args` asks for (args->dep_mode != DEP_NONE)
 * as its compiler family would write it: deps[0] is the main source, then
 * every header in first-seen order, as the compiler spelled them (absolute or
 * relative to the compile's cwd); is_system[i] marks the headers that -MMD
 * leaves out. Sets *ret_path to the file's path relative to the compile's
 * cwd (or absolute), as the compiler would choose it. */
int depfile_render(const struct compile_args *args, char *const *deps, const bool *is_system, size_t n,
		   struct buf *out, char **ret_path);
