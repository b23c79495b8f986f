/*
 * SHA-256 digests (OpenSSL EVP), written "sha256:<hex>" as OCI does. Every
 * cache key, file identity and entry check in hpcc is one of these.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define DIGEST_LEN 32
#define DIGEST_HEX_LEN 64
#define DIGEST_PREFIX "sha256:"
#define DIGEST_STR_LEN (sizeof(DIGEST_PREFIX) - 1 + DIGEST_HEX_LEN)

struct digest {
	uint8_t b[DIGEST_LEN];
};

struct hasher {
	void *ctx;  /* EVP_MD_CTX */
};

int hasher_init(struct hasher *h);
int hasher_update(struct hasher *h, const void *data, size_t n);
int hasher_final(struct hasher *h, struct digest *ret);
void hasher_free(struct hasher *h);
static inline void hasher_freep(struct hasher *h) { hasher_free(h); }
#define _cleanup_hasher_ _cleanup_(hasher_freep)

int digest_bytes(const void *data, size_t n, struct digest *ret);

/* What digest_file noticed while reading, for callers that care. */
struct file_scan {
	bool time_macros;  /* __DATE__ or __TIME__ appear (SOURCE_DATE_EPOCH pins them) */
	bool timestamp_macro;  /* __TIMESTAMP__ appears: the file's mtime, pinned by nothing */
	uint64_t size;
};

/* Digests a regular file of at most max bytes; scan may be NULL. */
int digest_file(const char *path, uint64_t max, struct digest *ret, struct file_scan *scan);
int digest_fd(int fd, uint64_t max, struct digest *ret, struct file_scan *scan);

/* hex must hold DIGEST_HEX_LEN + 1 bytes; str DIGEST_STR_LEN + 1. */
void digest_to_hex(const struct digest *d, char *hex);
void digest_to_string(const struct digest *d, char *str);
/* Accepts "sha256:<64 hex>" or the 64 hex digits alone, in either case. */
int digest_parse(const char *s, struct digest *ret);
bool digest_equal(const struct digest *a, const struct digest *b);
bool digest_is_zero(const struct digest *d);
