/*
 * The worker's per-exec staging directory. Each compile a client sends gets a
 * fresh <base>/exec-XXXXXX/ with root/ (the project root as the compiler
 * sees it: inputs are written there, outputs read back from there) and tmp/
 * (TMPDIR and HOME for the compiler). Every relative path here comes from a
 * client or from a compiler that may be hostile, so every access walks the
 * path one component at a time with openat and O_NOFOLLOW below a directory
 * fd for root/: nothing can reach outside root/, whatever symlinks the
 * compiler or a manifest planted.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "error.h"

/* Caps on a relative path from outside: the whole path and each component. */
#define STAGING_PATH_MAX 4096
#define STAGING_NAME_MAX 255

struct staging;

/* Creates <base_dir>/exec-XXXXXX/ (0700) with a root/ and a tmp/ inside;
 * base_dir is created if missing. The paths are absolute and canonical, so
 * that a prefix map built from staging_root() matches what the compiler sees. */
int staging_create(const char *base_dir, struct staging **ret, struct error *err);
const char *staging_root(const struct staging *s);  /* absolute path of root/ */
const char *staging_tmp(const struct staging *s);   /* absolute path of tmp/ (TMPDIR for the compiler) */
const char *staging_dir(const struct staging *s);   /* absolute path of exec-XXXXXX/ (holds root/ and tmp/) */

/* True when path (len bytes, which may hold a NUL) is acceptable below root/:
 * path_is_safe_relative, no "." component, at most STAGING_PATH_MAX bytes and
 * components of at most STAGING_NAME_MAX bytes. */
bool staging_relpath_ok(const char *path, size_t len);

/* Writes one input file at relpath under root/, creating parent directories
 * (0755). An existing file is refused with -EEXIST (a manifest that lists one
 * path twice); the mode is exactly 0644, or 0755 when executable. */
int staging_write_file(struct staging *s, const char *relpath, const void *data, size_t n, bool executable,
		       struct error *err);
/* Writes a file the worker itself named (one component of [A-Za-z0-9._-])
 * in tmp/, refusing an existing entry; a runtime that ran the compiler
 * elsewhere (a microVM) brings the dependency list back this way. */
int staging_write_tmp(struct staging *s, const char *name, const void *data, size_t n, struct error *err);
/* mkdir -p under root/ with the same checks; "" or "." is root/ itself. */
int staging_mkdir(struct staging *s, const char *relpath, struct error *err);
/* Opens an existing directory under root/ ("" or "." is root/ itself) with
 * the same walk; *ret_fd is O_RDONLY|O_DIRECTORY|O_CLOEXEC. The runtime uses
 * it to give the compiler its working directory without a path lookup. */
int staging_open_dir(struct staging *s, const char *relpath, int *ret_fd, struct error *err);
/* Reads a regular file (not a symlink, a directory, a FIFO or a device) under
 * root/ into ret, at most max bytes (-EFBIG beyond; ret's own cap applies
 * too). ret must be initialised; on success its contents are replaced (its
 * cap kept), on failure it is left as it was. */
int staging_read_file(struct staging *s, const char *relpath, size_t max, struct buf *ret, struct error *err);
/* Removes the whole directory tree without following symlinks (the compiler
 * may have left anything there: read-only directories, FIFOs, symlinks, deep
 * nesting). Accepts NULL. */
void staging_destroy(struct staging *s);
/* Removes leftover exec-* directories under base_dir (after a crash); called
 * at worker start, before any exec. Returns how many it removed, or a
 * negative errno; a missing base_dir counts as empty. */
int staging_sweep(const char *base_dir);
