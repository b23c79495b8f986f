/* Helpers shared by the fuzz targets (header-only: scripts/fuzz.sh links
 * each target from its one .c file). */
#pragma once

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Replaces path with the input's bytes; a failure to write aborts, since
 * the target would then test nothing. */
static inline void fuzz_write_file(const char *path, const uint8_t *data, size_t size)
{
	FILE *f = fopen(path, "we");
	if (!f)
		abort();
	if (size > 0 && fwrite(data, 1, size, f) != size)
		abort();
	if (fclose(f) != 0)
		abort();
}
