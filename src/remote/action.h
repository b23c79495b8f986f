/*
 * Remote actions (DESIGN.md §2): the canonical encoding of an Action and its
 * digest, which client and worker compute alike; the checks a worker makes
 * on an action from outside before it touches anything; and the command line
 * that a worker runs for it. Blobs: zstd per blob, with bounded unpacking.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "digest.h"
#include "error.h"
#include "remote.pb-c.h"
#include "strv.h"

#define ACTION_MAX_INPUTS 100000
#define ACTION_MAX_ARGS 10000
#define ACTION_MAX_PATH 4096
#define BLOB_MAX_SIZE ((size_t)256 << 20)   /* one input or output file, uncompressed */

/* SHA-256 of the versioned, length-prefixed encoding of every field. */
int action_digest(const Hpcc__V1__Action *a, struct digest *ret);
/* The direct key: H(command, image, mode, source path and digest), so that
 * a client finds the worker's direct candidates without knowing its inputs. */
int action_direct_key(const Hpcc__V1__Action *a, const char *source, const struct digest *source_digest,
		      struct digest *ret);
/* A command path (source or output) as a root-relative path. */
char *action_rooted_path(const Hpcc__V1__Command *c, const Hpcc__V1__Arg *a);
/* The checks of a worker: image digest form, compiler name, argument kinds
 * and paths (rooted paths safe and relative, relative paths that stay in
 * the root, outputs in the root), inputs sorted and unique with safe paths,
 * 32-byte digests and capped sizes, the environment. */
int action_check(const Hpcc__V1__Action *a, struct error *err);
/* Joins a PATH_ROOTED path to root, keeps the others as written. */
int action_arg_string(const Hpcc__V1__Arg *arg, const char *root, char **ret);
/* argv of the compile without the flags a worker adds: compiler, args,
 * -x <language> (the preprocessed one in that mode), -c, source, -o output. */
int action_argv(const Hpcc__V1__Command *c, bool preprocessed, const char *root, struct strv *ret);
/* The output paths relative to the root: the object, then the .dwo. */
int action_output_paths(const Hpcc__V1__Command *c, struct strv *ret);
/* True when a protobuf message re-encodes to exactly the bytes received
 * (no embedded NUL in strings, which protobuf-c would cut; no odd
 * encodings) and holds no unknown field at any depth (protobuf-c keeps
 * those and would store them along). Workers refuse anything else. */
bool action_canonical(const ProtobufCMessage *m, size_t received);

/* Fills a Blob from bytes: digest, size, and one zstd frame at level in
 * storage (which must outlive the Blob). */
int blob_pack(const void *data, size_t n, int level, Hpcc__V1__Blob *ret, struct buf *storage);
/* Unpacks a Blob from outside: decompression bounded by max and by the
 * announced size, then size and digest checked. */
int blob_unpack(const Hpcc__V1__Blob *b, size_t max, struct buf *ret, struct error *err);
