/*
 * Compiler command-line analysis for the GCC and Clang families: decides
 * whether a command is a cacheable single-source compile and, if it is,
 * splits it into what enters the cache key, what is run on a miss, and what
 * the outputs and extra inputs are. It reads response files but nothing else
 * from the file system, and never runs anything.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "family.h"
#include "strv.h"

/* One argument as it enters the cache key. For an argument that names a
 * file or directory (-I dir, -Idir, -include f, --sysroot=d, -fprofile-use=p,
 * ...) path holds the path alone, so that the key can make it root-relative;
 * flag then holds the option spelling that goes with it ("-I", "--sysroot=").
 * For anything else path and suffix are NULL and flag is the whole argument.
 *
 * flag + path + suffix, concatenated, is always one argument equivalent to
 * what was written: a separate form becomes the joined one ("-I" "d" ->
 * {"-I", "d"}, "--sysroot" "d" -> {"--sysroot=", "d"}). suffix is only used
 * by the prefix maps, whose OLD part is the path and whose "=NEW" part is
 * text that goes into the object as it is:
 * -ffile-prefix-map=OLD=NEW -> {"-ffile-prefix-map=", "OLD", "=NEW"}
 * (likewise -fdebug-, -fmacro-, -fprofile- and -fcoverage-prefix-map=). */
struct key_arg {
	char *flag;
	char *path;
	char *suffix;
};

struct dep_target {
	char *name;
	bool quote;  /* -MQ (make-quoted) rather than -MT (verbatim) */
};

struct compile_args {
	enum compiler_family family;
	enum source_language lang;
	char *source;            /* the source file as given */
	char *output;            /* -o as given, or the default ("a.c" -> "a.o") */
	bool output_given;       /* -o was on the command line */

	/* The dependency file the user asked for (none, -MD or -MMD). */
	enum dep_mode dep_mode;
	char *dep_mf;            /* -MF path, NULL if not given */
	char *dep_wp_path;       /* path of -Wp,-MD,path or -Wp,-MMD,path; NULL otherwise */
	struct dep_target *dep_targets;  /* -MT / -MQ in order */
	size_t n_dep_targets;
	bool dep_phony;          /* -MP */

	/* Further outputs of the same compile. */
	bool split_dwarf;        /* -gsplit-dwarf: a .dwo beside the object */
	bool coverage;           /* --coverage or -ftest-coverage: a .gcno */
	/* --coverage, -fprofile-arcs or -fprofile-generate[=dir]: no extra file
	 * at compile time, but the object embeds the absolute path of its .gcda
	 * (derived from the output's absolute path), so the key must not be
	 * shared between different output locations. */
	bool profile_arcs;

	/* Further inputs: -fprofile-use. */
	bool profile_use;        /* any -fprofile-use form was given */
	char *profile_path;      /* its path (file or directory), NULL for the bare flag */

	enum color_mode color;   /* last -f[no-]diagnostics-color[=...] */
	bool march_native;       /* -march=native, -mcpu=native or -mtune=native */

	/* Arguments in order, response files expanded, without: the source,
	 * -o and its value, every dependency-file option (-MD -MMD -MF -MT -MQ
	 * -MP and the -Wp,-M* forms), -c, and the diagnostics-color options. */
	struct key_arg *key_args;
	size_t n_key_args;

	/* What to run on a miss: argv[1..] of the real compiler, response files
	 * expanded, with every dependency-file option removed (the caller adds
	 * its own) and everything else (-c, -o, source, color) kept in place. */
	struct strv run_args;
};

/* Stable names for the reasons a command is not cached; each is a stats counter. */
#define ARGS_REASON_LIST(X)                                                          \
	X(NOT_COMPILE, "not-compile")             /* no -c: linking or a driver query */ \
	X(PREPROCESS_ONLY, "preprocess-only")     /* -E, or -M/-MM without -MD */        \
	X(ASSEMBLY_OUTPUT, "assembly-output")     /* -S */                               \
	X(SYNTAX_ONLY, "syntax-only")             /* -fsyntax-only */                    \
	X(NO_SOURCE, "no-source")                                                         \
	X(MULTIPLE_SOURCES, "multiple-sources")                                           \
	X(STDIN, "stdin")                         /* source "-" */                       \
	X(OUTPUT_STDOUT, "output-stdout")         /* -o - */                             \
	X(SAVE_TEMPS, "save-temps")                                                       \
	X(PCH, "pch")                             /* creating or using a precompiled header */ \
	X(LANGUAGE, "language")                   /* not C, C++ or assembler-with-cpp */ \
	X(MULTIPLE_ARCH, "multiple-arch")         /* several -arch */                     \
	X(UNSUPPORTED_OPTION, "unsupported-option") /* -B, -specs=, -wrapper, -fplugin=, ... */ \
	X(BAD_RESPONSE_FILE, "bad-response-file") /* unreadable, too large or too deep */

enum args_reason {
#define X(name, str) ARGS_REASON_##name,
	ARGS_REASON_LIST(X)
#undef X
	ARGS_REASON_N
};

const char *args_reason_name(enum args_reason reason);

/* Response files: at most this many bytes each, this deep, this many args. */
#define ARGS_RSP_MAX_SIZE (1024 * 1024)
#define ARGS_RSP_MAX_DEPTH 8

/* Parses argv (argv[0] is the compiler as invoked; argc counts it). Response
 * files "@file" are read relative to cwd. Returns 0 and fills *ret for a
 * cacheable compile; returns 1 and sets *ret_reason when the command must
 * run untouched; a negative errno on allocation failure. */
int args_parse(int argc, char *const *argv, const char *cwd, enum compiler_family family,
	       struct compile_args *ret, enum args_reason *ret_reason);
void compile_args_free(struct compile_args *a);

/* Guesses the family from the compiler's name ("clang", "clang++-14",
 * "x86_64-linux-gnu-gcc-12", "cc" ...); cc/c++ count as GCC here, the
 * caller refines them from the version output. */
enum compiler_family args_family_from_name(const char *name);
