/*
 * File system helpers: capped reads, atomic writes (temporary file plus
 * rename, so a reader sees the old file or the new one and never half of
 * one), directory creation, and lexical path handling for the project root.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "buf.h"
#include "error.h"

/* Reads at most max bytes; -EFBIG when the file is larger. */
int fs_read_file(const char *path, size_t max, struct buf *out);
int fs_read_fd(int fd, size_t max, struct buf *out);
/* A whole (text) file as a malloc'd NUL-terminated string of at most max bytes
 * (TLS certificates and keys): NULL and err ("path: reason") on failure. */
char *fs_read_text(const char *path, size_t max, struct error *err);
int fs_write_all(int fd, const void *data, size_t n);
/* Writes data to path through a temporary file in the same directory and a
 * rename; with sync, fsyncs the file first. mode is subject to the umask. */
int fs_write_atomic(const char *path, const void *data, size_t n, mode_t mode, bool sync);
/* Writes a build output. Like fs_write_atomic(sync=false), but made cheap
 * for files that nobody reads while they are written:
 * - when path already holds exactly data, it only gets a fresh mtime;
 * - an existing file is renamed aside first, since ext4 (auto_da_alloc)
 *   flushes data synchronously when a rename replaces a file, and freeing
 *   its blocks can take milliseconds more: the old file's new name is
 *   returned in *ret_old (NULL if none) for the caller to unlink later.
 * path is briefly absent between the two renames. */
int fs_replace(const char *path, const void *data, size_t n, mode_t mode, char **ret_old);
int fs_mkdir_p(const char *path, mode_t mode);
/* fsyncs a directory, so that a rename or unlink in it survives a crash
 * (fsyncing a file does not make its new name durable). */
int fs_fsync_dir(const char *path);
/* Moves fd above the standard streams, close-on-exec (a process started
 * with one of them closed could get a file there, and a child's dup2 onto
 * 0-2 would clobber it). Returns the new fd, or -1 with errno. fd < 0 is
 * passed through. */
int fd_above_stdio(int fd);
/* Opens a fresh temporary file "<prefix>.<random>.tmp"; ret_path is malloc'd. */
int fs_mkstemp(const char *prefix, mode_t mode, char **ret_path);

/* Lexically normalises an absolute or relative path: removes "." parts,
 * repeated slashes and "x/.." pairs (without following symlinks). */
char *path_normalize(const char *path);
/* Joins dir and name (name absolute → name alone), then normalises. */
char *path_join(const char *dir, const char *name);
/* When path (absolute, normalised) lies under root, returns the relative
 * rest ("." for root itself); NULL otherwise. */
const char *path_under(const char *path, const char *root);
/* True for a relative path with no "..", no empty part and no NUL. */
bool path_is_safe_relative(const char *path, size_t len);
/* Finds the nearest ancestor of dir (inclusive) that holds name. */
char *path_find_upwards(const char *dir, const char *name);
const char *path_basename(const char *path);
/* Replaces the suffix after the last '.' of the last component with ext
 * (adds ext when there is none), as GCC names auxiliary outputs. */
char *path_replace_suffix(const char *path, const char *ext);
