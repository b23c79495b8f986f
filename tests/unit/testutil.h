/*
 * Helpers shared by the unit tests: temporary directories that are removed
 * with everything in them. Header-only, so every test binary stays one file.
 */
#pragma once

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static inline int testutil_remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Removes dir and everything below it, without following symlinks. */
static inline void testutil_rm_rf(const char *dir)
{
	nftw(dir, testutil_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* cmocka group/test setup: *state becomes a fresh /tmp directory (malloc'd). */
static inline int testutil_setup_tmpdir(void **state)
{
	char tmpl[] = "/tmp/hpcc-unit-XXXXXX";
	char *dir = mkdtemp(tmpl);
	if (!dir)
		return -1;
	*state = strdup(dir);
	return *state ? 0 : -1;
}

static inline int testutil_teardown_tmpdir(void **state)
{
	testutil_rm_rf(*state);
	free(*state);
	return 0;
}
