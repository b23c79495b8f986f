/*
 * Compiler command lines (src/client/args.c, src/client/rsp.c): the input
 * after its first byte is split into arguments at NUL bytes or newlines;
 * the first byte picks argv[0] and with it the family, as the daemon's
 * engine and the worker's action check call args_parse on a command from
 * outside. A cacheable result is then rendered as the dependency file the
 * command asks for (depfile_render), as a hit does. Response files are read
 * relative to a directory that does not exist, so "@name" stays literal
 * unless it names an absolute path.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "buf.h"
#include "depfile.h"
#include "strv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const drivers[] = { "gcc", "g++", "clang", "clang++", "cc", "x86_64-linux-gnu-gcc-12",
				       "clang++-14", "c++" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	const char *argv0 = drivers[data[0] % (sizeof(drivers) / sizeof(drivers[0]))];
	/* The family follows the name, except that the top bit flips it, as
	 * the version output can refine cc/c++ either way. */
	enum compiler_family family = args_family_from_name(argv0);
	if (data[0] & 0x80)
		family = family == FAMILY_GCC ? FAMILY_CLANG : FAMILY_GCC;
	data++, size--;

	struct strv argv = { 0 };
	if (strv_push(&argv, argv0) < 0)
		goto out;
	size_t start = 0;
	for (size_t i = 0; i <= size; i++) {
		if (i < size && data[i] != '\0' && data[i] != '\n')
			continue;
		char *arg = strndup((const char *)data + start, i - start);
		if (!arg || strv_push_take(&argv, arg) < 0)
			goto out;
		start = i + 1;
	}

	struct compile_args a = { 0 };
	enum args_reason reason;
	int r = args_parse((int)argv.n, argv.v, "/nonexistent-hpcc-fuzz", family, &a, &reason);
	if (r == 0) {
		if (a.dep_mode != DEP_NONE && a.source) {
			char *deps[] = { a.source, "a.h", "dir with space/b#$.h", "/usr/include/stdio.h" };
			bool is_system[] = { false, false, false, true };
			struct buf text = { .max = BUF_DEFAULT_MAX };
			char *path = NULL;
			if (depfile_render(&a, deps, is_system, 4, &text, &path) == 0)
				free(path);
			buf_free(&text);
		}
		compile_args_free(&a);
	} else if (r == 1) {
		(void)args_reason_name(reason);
	}
out:
	strv_free(&argv);
	return 0;
}
