/*
 * Objects of the shared S3 tier (DESIGN.md §9, docs/s3.md): their keys and
 * their bytes. Keys, under the configured prefix:
 *
 *   v1/<tenant>/ac/<hh>/<action digest>    an ActionResult
 *   v1/<tenant>/cas/<hh>/<blob digest>     a blob
 *   v1/<tenant>/dm/<hh>/<direct key>       a DirectManifest (direct mode)
 *
 * (<hh> the first two hex digits, so listings and eviction can go by
 * shards). An object is a header and one zstd frame:
 *
 *   "HPCCS3O1" | kind (1) | tenant length (1) | tenant | key (32) |
 *   SHA-256 of the plain bytes (32) | plain size (8, big-endian) | zstd
 *
 * Everything in the header is checked on every read against what the
 * reader asked for: an object copied under another key, another kind or
 * another tenant's prefix, truncated, or with flipped bits is refused
 * (-EBADMSG), and the reader treats it as a miss and deletes it. For a
 * blob the key is the plain bytes' digest itself.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "digest.h"

enum s3obj_kind {
	S3OBJ_AC = 1,     /* action results, by action digest */
	S3OBJ_CAS = 2,    /* blobs, by their own digest */
	S3OBJ_DM = 3,     /* direct manifests, by direct key */
};

#define S3OBJ_MAGIC "HPCCS3O1"
#define S3OBJ_TENANT_MAX 64
#define S3OBJ_HEADER_MAX (8 + 1 + 1 + S3OBJ_TENANT_MAX + 32 + 32 + 8)
/* v1/ + tenant + /cas/hh/ + 64 hex */
#define S3OBJ_KEY_MAX (3 + S3OBJ_TENANT_MAX + 8 + DIGEST_HEX_LEN + 1)

/* "ac", "cas", "dm"; NULL for anything else. */
const char *s3obj_kind_name(enum s3obj_kind kind);
/* A tenant name as routing tokens carry it (token_name_valid), and not NULL. */
bool s3obj_tenant_ok(const char *tenant);
/* The key (relative to the client's prefix) into out[S3OBJ_KEY_MAX]; -EINVAL for a bad tenant or kind. */
int s3obj_key(enum s3obj_kind kind, const char *tenant, const struct digest *key, char out[S3OBJ_KEY_MAX]);
/* The tenant prefix "v1/<tenant>/" into out[S3OBJ_KEY_MAX]. */
int s3obj_tenant_prefix(const char *tenant, char out[S3OBJ_KEY_MAX]);
/* Parses a key made by s3obj_key (relative to the prefix): its kind,
 * tenant (into tenant[S3OBJ_TENANT_MAX + 1]) and digest; -EINVAL for any
 * other key. */
int s3obj_parse_key(const char *s, enum s3obj_kind *ret_kind, char *tenant, struct digest *ret_key);

/* Appends the object for plain bytes (data, n) to out (reset first). For
 * S3OBJ_CAS, key must be the digest of the bytes (-EBADMSG otherwise). */
int s3obj_encode(enum s3obj_kind kind, const char *tenant, const struct digest *key, const void *data, size_t n,
		 int level, struct buf *out);
/* Checks an object against what was asked for and appends its plain bytes
 * (at most max) to out (reset first): -EBADMSG for any mismatch or damage,
 * -EFBIG when the plain bytes would exceed max or out's cap, other errors
 * (-ENOMEM) for the reader's own failures. Only -EBADMSG says the object is bad. */
int s3obj_decode(enum s3obj_kind kind, const char *tenant, const struct digest *key, const void *obj, size_t n,
		 size_t max, struct buf *out);
