/*
 * Dependency files (src/client/depfile.c): the input is the .d file the
 * compiler wrote for hpcc's own -MD -MF, which the cache (src/cache/inputs.c)
 * and the worker (src/worker/service.c) parse with depfile_parse.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "depfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The callers read the file into a buffer that is NUL-terminated;
	 * this copy is too, and no larger, so ASan sees any read beyond. */
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	struct depfile d;
	if (depfile_parse(text, size, &d) == 0)
		depfile_free(&d);
	free(text);
	return 0;
}
