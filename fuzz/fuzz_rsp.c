/*
 * Response files (src/client/rsp.c): the input after its first byte is
 * written to "in.rsp" in a directory of this process, which is the
 * compile's cwd, and "@in.rsp" is expanded as args_parse expands each
 * argument; the first byte's low bit picks GCC's handling of empty
 * arguments or Clang's. A file may name itself ("@in.rsp"), so the depth,
 * file-count and byte caps are exercised as well as the tokenizer.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs.h"
#include "rsp.h"
#include "strv.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64], file[80];

static void cleanup(void)
{
	unlink(file);
	rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "/tmp/fuzz-rsp-%d", (int)getpid());
		snprintf(file, sizeof(file), "%s/in.rsp", dir);
		if (mkdir(dir, 0700) < 0 && access(dir, W_OK) < 0)
			abort();
		atexit(cleanup);
	}
	if (size == 0)
		return 0;
	bool keep_empty = data[0] & 1;
	data++, size--;

	fuzz_write_file(file, data, size);

	struct rsp_state st = { .cwd = dir, .keep_empty = keep_empty };
	struct strv out = { 0 };
	enum args_reason reason;
	(void)rsp_expand(&st, "@in.rsp", 0, &out, &reason);
	strv_free(&out);
	return 0;
}
