/*
 * Each tenant's signing keys, fetched from that tenant's own IdP and cached:
 * the JWKS URL from the configuration or from the IdP's discovery document
 * (<issuer>/.well-known/openid-configuration, whose issuer must be the one
 * configured). Keys are fetched again when older than jwks_max_age, and
 * at once for a token whose kid is unknown, but at most once per
 * jwks_min_interval per tenant, so that tokens with made-up kids cannot
 * make the scheduler hammer an IdP. A token is only ever checked with the
 * keys, issuer and audience of the tenant that the request names.
 *
 * Tokens that verified are remembered per tenant, with the key set that
 * verified them (SHA-256 of the token -> its claims), so that a client's
 * next Routes with the same token skip the signature check and the JSON;
 * their times (exp, nbf, iat with the clock skew) are checked on every use
 * exactly as jwt_verify checks them. At most JWKS_VERIFIED_MAX tokens per
 * tenant (the oldest goes first), and none survive a refetch of the keys.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "jwt.h"
#include "scheduler_config.h"

#define JWKS_FETCH_TIMEOUT_MS 5000
#define DISCOVERY_MAX_SIZE (64 * 1024)
/* Verified tokens remembered per tenant (about 480 bytes each, so under 2 MB); room grows from the minimum. */
#define JWKS_VERIFIED_MAX 4096
#define JWKS_VERIFIED_MIN 64

struct jwks_cache;

/* cfg must outlive the cache. Nothing is fetched yet. */
int jwks_cache_new(const struct scheduler_config *cfg, struct jwks_cache **ret);
void jwks_cache_free(struct jwks_cache *c);
/* Fetches every tenant's keys once (start-up); failures are logged, not fatal: the IdP may come later. */
void jwks_cache_prefetch(struct jwks_cache *c);
/* Tests: the clock that times fetches (seconds, never stepping back; default CLOCK_MONOTONIC). */
void jwks_cache_set_clock(struct jwks_cache *c, int64_t (*clock)(void));
/* Makes a running prefetch stop before its next tenant (shutdown). */
void jwks_cache_stop_prefetch(struct jwks_cache *c);
/*
 * Verifies an access token for tenant (an index into cfg->tenants):
 * jwt_verify's return values, plus -EAGAIN when the tenant's keys could not
 * be fetched. err says why, in one line, without the token.
 */
int jwks_cache_verify(struct jwks_cache *c, size_t tenant, const char *token, size_t n, int64_t now,
		      struct jwt_claims *ret, struct error *err);
/* The token endpoint clients use: the configured token_url, else discovery's token_endpoint. */
int jwks_cache_token_url(struct jwks_cache *c, size_t tenant, char *ret, size_t size, struct error *err);
/* Routes answered from the verified-token cache, and full jwt_verify runs, so far, all tenants (tests, stats). */
void jwks_cache_token_counts(struct jwks_cache *c, uint64_t *ret_hits, uint64_t *ret_verifies);
/* Successful and failed JWKS fetches so far, all tenants (tests, stats). */
void jwks_cache_counts(struct jwks_cache *c, uint64_t *ret_fetches, uint64_t *ret_failures);
