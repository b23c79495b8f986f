/*
 * Facts about the real compiler: where it is (masquerade lookup along PATH,
 * skipping hpcc itself), its identity for local cache keys (digest of the
 * binary plus its version text), its system include directories (to tell
 * which headers -MMD leaves out), and what -march=native means on this host.
 * All answers are memoised by the compiler binary's stat, process-wide.
 */
#pragma once

#include <stdbool.h>

#include "digest.h"
#include "family.h"
#include "strv.h"

/* Finds name (a bare name) along PATH, skipping every candidate that is hpcc
 * itself (same inode as self_exe) or is named "hpcc". */
char *compiler_find(const char *name, const char *self_exe);

/* True when path is hpcc itself: the same file as self_exe, or a symlink
 * that resolves to a file named hpcc*. Running it as "the compiler" would
 * recurse without end. */
bool compiler_is_hpcc(const char *path, const char *self_exe);

struct toolchain {
	struct digest id;
	enum compiler_family family;
};

int compiler_identify(const char *path, struct toolchain *ret);
/* The system include directories for lang with the given options (those of
 * the user's that change the search list: --sysroot, -isysroot, -nostdinc,
 * -target ...), as absolute normalised paths. */
int compiler_system_dirs(const char *path, enum source_language lang, char *const *flags, size_t n_flags,
			 struct strv *ret);
/* A digest of what -march=native (and -mtune/-mcpu=native) expand to. */
int compiler_native_digest(const char *path, struct digest *ret);
/* Drops every memoised answer (tests). */
void compiler_forget(void);
