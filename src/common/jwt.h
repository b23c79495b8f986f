/*
 * Verification of OAuth2 access tokens (JWTs, RFC 7519) that a tenant's own
 * identity provider issues, against that tenant's JWKS (RFC 7517). Only the
 * compact JWS form (RFC 7515) with RS256 or ES256 is accepted; keys come from
 * the JWKS alone, never from the token. A JWKS is parsed once into OpenSSL
 * keys and is then immutable, so many threads may verify against it at once.
 * Every rule and its reason: docs/jwt.md.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define JWT_MAX_SIZE (16 * 1024)      /* cap on a compact JWS from outside */
#define JWKS_MAX_SIZE (256 * 1024)    /* cap on a JWKS document */
#define JWKS_MAX_KEYS 64
#define JWT_JSON_MAX_DEPTH 16         /* nesting of arrays and objects in a header, claims or JWKS */
#define JWT_AUD_MAX 16                /* elements of an "aud" array */
#define JWT_SKEW_MAX 86400            /* largest jwt_expect.skew accepted (seconds) */
#define JWT_TIME_MAX INT64_C(253402300799) /* 9999-12-31T23:59:59Z: largest exp, nbf or iat */

struct jwks;                          /* a parsed, immutable key set; thread-safe to read */

/* Parses a JWKS document of at most JWKS_MAX_SIZE bytes (-E2BIG beyond, and
 * beyond JWKS_MAX_KEYS entries). Keys that cannot serve RS256 or ES256 are
 * skipped, malformed RSA and EC keys too (see jwks_skipped); two signature
 * keys with one kid make the whole document -EBADMSG. A document without a
 * usable key parses (jwks_count() == 0): every verify then gives -ENOKEY. */
int jwks_parse(const char *json, size_t n, struct jwks **ret, struct error *err);
void jwks_free(struct jwks *keys);    /* accepts NULL */
size_t jwks_count(const struct jwks *keys);   /* usable keys */
/* RSA and EC keys of the document that were skipped as malformed (bad
 * base64url, off-curve point, small modulus, private parameters, ...); the
 * first one's reason goes to why ("" when none; why may be NULL). Entries
 * skipped as merely unsupported (kty oct or OKP, another curve, use enc, an
 * alg other than RS256/ES256) are not counted. For the scheduler's log after
 * a fetch; a token naming any skipped kid gets the reason in its -ENOKEY. */
size_t jwks_skipped(const struct jwks *keys, char *why, size_t size);
DEFINE_CLEANUP_FUNC(struct jwks, jwks_free)
#define _cleanup_jwks_ _cleanup_(jwks_freep)

struct jwt_expect {
	const char *issuer;    /* exact match of "iss" (required) */
	const char *audience;  /* "aud" string, or one element of an "aud" array; NULL = not checked (tests only) */
	int64_t now;           /* Unix seconds */
	int64_t skew;          /* seconds of clock skew allowed on exp, nbf, iat */
};

struct jwt_claims {
	char alg[8];           /* "RS256" / "ES256" */
	char kid[128];
	char iss[512];
	char sub[256];         /* "" when absent */
	int64_t exp, nbf, iat; /* 0 when absent (exp is required) */
};

/* The kid of a token's header without verifying anything ("" when none): the caller uses it to
 * decide whether to refetch a JWKS. The header goes through every check that jwt_verify applies
 * to it (so a token that can never verify gives its error here and causes no refetch);
 * -ERANGE when the kid does not fit size. */
int jwt_header_kid(const char *token, size_t n, char *kid, size_t size, struct error *err);
/* 0 and *ret filled when verified. Errors: -E2BIG over JWT_MAX_SIZE, -EBADMSG malformed,
 * -EKEYREJECTED alg not allowed, -ENOKEY no key in the set for the token's kid (the caller may
 * refetch the JWKS and try once more), -EACCES signature or a claim does not match,
 * -EKEYEXPIRED expired. err gets one line that names the failing check, never the token. */
int jwt_verify(const struct jwks *keys, const char *token, size_t n, const struct jwt_expect *want,
	       struct jwt_claims *ret, struct error *err);
