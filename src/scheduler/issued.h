/*
 * Routing tokens the scheduler signed recently, for reuse: the same access
 * token asking Route again for the same (tenant, image) and getting the same
 * worker gets the token it was given at most ISSUED_REUSE_S ago, instead of
 * a fresh Ed25519 signature (a third of a Route's CPU). The holder already
 * has that token, so nothing is handed out that was not; many daemons that
 * share one sign-in (CI jobs) then cost one signature a minute. Keys are a
 * SHA-256 over tenant, image, worker and the access token, so only the exact
 * access token finds an entry. Bounded (direct-mapped), thread-safe.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "digest.h"

#define ISSUED_SLOTS 4096
#define ISSUED_REUSE_S 60

struct issued_cache;

int issued_new(struct issued_cache **ret);
void issued_free(struct issued_cache *c);
int issued_key(const char *tenant, const char *image, const char *worker_id, const char *access_token,
	       struct digest *ret);
/* 1 and the token appended to ret_token (and its expiry in *ret_expires) when one was issued for key at most
 * ISSUED_REUSE_S before now and expires no later than max_expires; 0 otherwise. */
int issued_get(struct issued_cache *c, const struct digest *key, int64_t now, int64_t max_expires,
	       struct buf *ret_token, int64_t *ret_expires);
void issued_put(struct issued_cache *c, const struct digest *key, const void *token, size_t n, int64_t issued_at,
		int64_t expires_at);
