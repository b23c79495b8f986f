/*
 * JWT access-token verification (see jwt.h and docs/jwt.md): a JWKS parser
 * that turns every RSA and P-256 key into an EVP_PKEY once, and a verifier
 * for compact JWS tokens signed with RS256 or ES256. The verifier reads the
 * token in the order that keeps unauthenticated bytes away from everything
 * but the strictest parsers: size cap, character set and shape, the header
 * (alg, crit, key sources, typ, kid), key selection, the signature, and only
 * then the claims. Nothing in the token chooses a key beyond naming a kid of
 * the JWKS, and the key's type fixes the algorithm. A parsed key set is never
 * written again, so threads share it without locks. OpenSSL's per-thread
 * error queue is left as each entry point found it, as in token.c.
 */
#include "jwt.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include "base64url.h"

#define KID_SIZE 128          /* sizeof(struct jwt_claims.kid) */
#define REASON_SIZE 96
#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS 8192
#define RSA_MAX_BYTES (RSA_MAX_BITS / 8)
#define P256_COORD_SIZE 32
#define ES256_SIG_SIZE 64
#define ECDSA_DER_MAX 80      /* 72 for P-256: SEQUENCE of two INTEGERs of up to 33 bytes */

enum jwt_alg { ALG_RS256, ALG_ES256 };
static const char *const alg_names[] = { [ALG_RS256] = "RS256", [ALG_ES256] = "ES256" };

struct jwk {
	EVP_PKEY *pkey;
	enum jwt_alg alg;    /* the one algorithm the key serves, fixed by its kty */
	size_t sig_size;     /* RS256: the modulus in bytes; ES256: 64 */
	char kid[KID_SIZE];  /* "" when the key has none */
};

/* An entry of the document that is not a usable key, kept so that a token
 * that names it gets a message saying why. */
struct jwk_skipped {
	char kid[KID_SIZE];
	char why[REASON_SIZE];
	bool signing;        /* an RSA or EC key for signatures: takes part in the duplicate kid check */
	bool malformed;
};

struct jwks {
	size_t n_keys, n_skipped;
	struct jwk keys[JWKS_MAX_KEYS];
	struct jwk_skipped skipped[JWKS_MAX_KEYS];
};

/* The three parts of a compact JWS; the signing input is header "." payload. */
struct parts {
	const char *header, *payload, *signature;
	size_t header_len, payload_len, signature_len;
	size_t signing_input_len;
};

struct header {
	enum jwt_alg alg;
	char kid[KID_SIZE];  /* "" when the token has none */
};

DEFINE_CLEANUP_FUNC(EVP_PKEY, EVP_PKEY_free)
DEFINE_CLEANUP_FUNC(EVP_PKEY_CTX, EVP_PKEY_CTX_free)
DEFINE_CLEANUP_FUNC(EVP_MD_CTX, EVP_MD_CTX_free)
DEFINE_CLEANUP_FUNC(OSSL_PARAM_BLD, OSSL_PARAM_BLD_free)
DEFINE_CLEANUP_FUNC(OSSL_PARAM, OSSL_PARAM_free)
DEFINE_CLEANUP_FUNC(BIGNUM, BN_free)
DEFINE_CLEANUP_FUNC(ECDSA_SIG, ECDSA_SIG_free)

/* Restores OpenSSL's error queue at scope exit (see the file comment). */
static void openssl_error_scope_end(int *mark)
{
	ERR_pop_to_mark();
}
#define OPENSSL_ERROR_SCOPE _cleanup_(openssl_error_scope_end) _unused_ int openssl_mark_ = ERR_set_mark()

/* --- small parsers --- */


static bool printable_ascii(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

/* Nesting depth of arrays and objects, counted outside strings. jansson's
 * own limit (2048) recurses that deep; nothing we read needs more than a few
 * levels, so anything deeper is refused before parsing. Malformed JSON is
 * left to the parser. */
static bool json_depth_ok(const char *s, size_t n, int max)
{
	int depth = 0;
	bool in_string = false, escaped = false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (in_string) {
			if (escaped)
				escaped = false;
			else if (c == '\\')
				escaped = true;
			else if (c == '"')
				in_string = false;
		} else if (c == '"') {
			in_string = true;
		} else if (c == '{' || c == '[') {
			if (++depth > max)
				return false;
		} else if (c == '}' || c == ']') {
			depth--;
		}
	}
	return true;
}

/* A JSON object from outside: depth-capped, one value per member name (a
 * second "iss" or "alg" would let two parsers see two different tokens),
 * nothing after it, no NUL inside strings, valid UTF-8 (jansson's defaults). */
static int json_object_parse(const void *data, size_t n, const char *what, json_t **ret, struct error *err)
{
	if (!json_depth_ok(data, n, JWT_JSON_MAX_DEPTH))
		return error_set(err, -EBADMSG, "%s nests arrays or objects deeper than %d levels", what, JWT_JSON_MAX_DEPTH);
	json_error_t jerr;
	json_t *j = json_loadb(data, n, JSON_REJECT_DUPLICATES, &jerr);
	if (!j)
		return error_set(err, -EBADMSG, "%s is not valid JSON (%s)", what, jerr.text);
	if (!json_is_object(j)) {
		json_decref(j);
		return error_set(err, -EBADMSG, "%s is not a JSON object", what);
	}
	*ret = j;
	return 0;
}

/* Copies a JSON string into a fixed field: false when it does not fit or is
 * not printable ASCII (a value is refused rather than cut). */
static bool string_copy(char *dst, size_t size, const json_t *v)
{
	const char *s = json_string_value(v);
	size_t len = json_string_length(v);
	if (!s || len >= size || !printable_ascii(s, len))
		return false;
	memcpy(dst, s, len);
	dst[len] = '\0';
	return true;
}

static bool string_is(const json_t *v, const char *want)
{
	const char *s = json_string_value(v);
	return s && json_string_length(v) == strlen(want) && memcmp(s, want, json_string_length(v)) == 0;
}

/* A kid: 1..127 bytes of printable ASCII, in a token or in a JWKS. */
static bool kid_copy(char kid[KID_SIZE], const json_t *v)
{
	return json_is_string(v) && json_string_length(v) > 0 && string_copy(kid, KID_SIZE, v);
}

/* --- keys --- */

static bool skip(char *why, size_t size, const char *fmt, ...) _printf_(3, 4);
static bool skip(char *why, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, size, fmt, ap);
	va_end(ap);
	error_printable(why);
	return false;
}

/* Decodes a Base64urlUInt member (RFC 7518 §2) into buf, dropping leading
 * zero bytes that some libraries emit (the value is the same). */
static bool uint_member(const json_t *jwk, const char *name, uint8_t *buf, size_t cap, const uint8_t **ret,
			size_t *ret_len)
{
	const json_t *v = json_object_get(jwk, name);
	size_t len;
	if (!json_is_string(v) || json_string_length(v) == 0 ||
	    base64url_decode(json_string_value(v), json_string_length(v), buf, cap, &len) < 0)
		return false;
	size_t start = 0;
	while (start < len && buf[start] == 0)
		start++;
	*ret = buf + start;
	*ret_len = len - start;
	return true;
}

static EVP_PKEY *pkey_from_params(const char *type, OSSL_PARAM_BLD *bld)
{
	_cleanup_(OSSL_PARAM_freep) OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	_cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	EVP_PKEY *pkey = NULL;
	if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		return NULL;
	return pkey;
}

/* false with why filled for a malformed key; -ENOMEM-like failures of
 * OpenSSL also land there, which only costs that key. */
static bool rsa_key(const json_t *jwk, struct jwk *k, char *why, size_t size)
{
	uint8_t nbuf[RSA_MAX_BYTES + 1], ebuf[8];
	const uint8_t *n, *e;
	size_t n_len, e_len;
	if (!uint_member(jwk, "n", nbuf, sizeof(nbuf), &n, &n_len) || n_len == 0)
		return skip(why, size, "RSA modulus n is missing, empty, over %d bits or not strict base64url",
			    RSA_MAX_BITS);
	int bits = (int)n_len * 8 - (__builtin_clz(n[0]) - 24);
	if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS)
		return skip(why, size, "RSA modulus of %d bits (%d to %d allowed)", bits, RSA_MIN_BITS, RSA_MAX_BITS);
	if (!(n[n_len - 1] & 1))
		return skip(why, size, "RSA modulus is even");
	if (!uint_member(jwk, "e", ebuf, sizeof(ebuf), &e, &e_len) || e_len == 0 || e_len > 4)
		return skip(why, size, "RSA exponent e is missing, zero, over 32 bits or not strict base64url");
	uint32_t ev = 0;
	for (size_t i = 0; i < e_len; i++)
		ev = ev << 8 | e[i];
	if (ev < 65537 || !(ev & 1))
		return skip(why, size, "RSA exponent %" PRIu32 " (odd, 65537 to 2^32-1 allowed)", ev);

	_cleanup_(BN_freep) BIGNUM *bn_n = BN_bin2bn(n, (int)n_len, NULL);
	_cleanup_(BN_freep) BIGNUM *bn_e = BN_bin2bn(e, (int)e_len, NULL);
	_cleanup_(OSSL_PARAM_BLD_freep) OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	if (!bn_n || !bn_e || !bld || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) != 1 ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) != 1)
		return skip(why, size, "out of memory building the RSA key");
	k->pkey = pkey_from_params("RSA", bld);
	if (!k->pkey)
		return skip(why, size, "OpenSSL refuses the RSA key");
	k->alg = ALG_RS256;
	k->sig_size = n_len;
	return true;
}

static bool ec_key(const json_t *jwk, struct jwk *k, char *why, size_t size)
{
	/* The uncompressed point: 0x04 || x || y, each coordinate exactly 32
	 * bytes as RFC 7518 §6.2.1.2 demands (no leading zeros dropped). */
	uint8_t point[1 + 2 * P256_COORD_SIZE] = { 0x04 };
	const char *names[] = { "x", "y" };
	for (size_t i = 0; i < 2; i++) {
		const json_t *v = json_object_get(jwk, names[i]);
		size_t len = 0;
		if (!json_is_string(v) || base64url_decode(json_string_value(v), json_string_length(v),
							   point + 1 + i * P256_COORD_SIZE, P256_COORD_SIZE, &len) < 0 ||
		    len != P256_COORD_SIZE)
			return skip(why, size, "EC coordinate %s is missing, not strict base64url or not 32 bytes", names[i]);
	}
	_cleanup_(OSSL_PARAM_BLD_freep) OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	if (!bld || OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) != 1 ||
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)) != 1)
		return skip(why, size, "out of memory building the EC key");
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *pkey = pkey_from_params("EC", bld);
	if (!pkey)
		return skip(why, size, "EC point is not on P-256");
	/* fromdata decodes the point; the full public check (on the curve, not
	 * the point at infinity, of the group's order) is the documented one. */
	_cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	if (!ctx || EVP_PKEY_public_check(ctx) != 1)
		return skip(why, size, "EC point is not on P-256");
	k->pkey = TAKE_PTR(pkey);
	k->alg = ALG_ES256;
	k->sig_size = ES256_SIG_SIZE;
	return true;
}

enum jwk_result { JWK_USABLE, JWK_UNSUPPORTED, JWK_MALFORMED };

/* Reads one JWKS entry. s->kid and s->signing are filled in every case;
 * s->why for anything but a usable key. */
static enum jwk_result jwk_parse(const json_t *jwk, struct jwk *k, struct jwk_skipped *s)
{
	char *why = s->why;
	size_t size = sizeof(s->why);
	const json_t *kid = json_object_get(jwk, "kid");
	if (kid && !kid_copy(s->kid, kid)) {
		skip(why, size, "kid is not a string of 1 to %d printable ASCII bytes", KID_SIZE - 1);
		return JWK_MALFORMED;
	}
	const json_t *kty = json_object_get(jwk, "kty");
	if (!json_is_string(kty)) {
		skip(why, size, "kty is missing or not a string");
		return JWK_MALFORMED;
	}
	bool rsa = string_is(kty, "RSA"), ec = string_is(kty, "EC");
	if (!rsa && !ec) {
		skip(why, size, "kty '%.16s' is not supported", json_string_value(kty));
		return JWK_UNSUPPORTED;
	}
	const json_t *use = json_object_get(jwk, "use");
	if (use && !json_is_string(use)) {
		skip(why, size, "use is not a string");
		return JWK_MALFORMED;
	}
	if (use && !string_is(use, "sig")) {
		skip(why, size, "use is '%.16s', not sig", json_string_value(use));
		return JWK_UNSUPPORTED;
	}
	s->signing = true;
	const json_t *ops = json_object_get(jwk, "key_ops");
	if (ops) {
		bool verify = false;
		size_t i;
		const json_t *op;
		if (!json_is_array(ops)) {
			skip(why, size, "key_ops is not an array");
			return JWK_MALFORMED;
		}
		json_array_foreach(ops, i, op) {
			if (!json_is_string(op)) {
				skip(why, size, "key_ops holds a value that is not a string");
				return JWK_MALFORMED;
			}
			verify = verify || string_is(op, "verify");
		}
		if (!verify) {
			skip(why, size, "key_ops does not include verify");
			return JWK_UNSUPPORTED;
		}
	}
	const json_t *alg = json_object_get(jwk, "alg");
	if (alg && !json_is_string(alg)) {
		skip(why, size, "alg is not a string");
		return JWK_MALFORMED;
	}
	if (alg && !string_is(alg, rsa ? "RS256" : "ES256")) {
		skip(why, size, "alg is '%.16s'; only %s is accepted for %s keys", json_string_value(alg),
		     rsa ? "RS256" : "ES256", rsa ? "RSA" : "EC");
		return JWK_UNSUPPORTED;
	}
	/* A published private key is compromised: whoever read the JWKS can
	 * sign. The key is refused rather than used for its public half. */
	static const char *const private_members[] = { "d", "p", "q", "dp", "dq", "qi", "oth" };
	for (size_t i = 0; i < ARRAY_SIZE(private_members); i++)
		if (json_object_get(jwk, private_members[i])) {
			skip(why, size, "the key holds private parameter %s: it is compromised", private_members[i]);
			return JWK_MALFORMED;
		}
	if (ec) {
		const json_t *crv = json_object_get(jwk, "crv");
		if (!json_is_string(crv)) {
			skip(why, size, "EC crv is missing or not a string");
			return JWK_MALFORMED;
		}
		if (!string_is(crv, "P-256")) {
			skip(why, size, "EC curve '%.16s' is not supported (only P-256)", json_string_value(crv));
			return JWK_UNSUPPORTED;
		}
	}
	if (!(rsa ? rsa_key(jwk, k, why, size) : ec_key(jwk, k, why, size)))
		return JWK_MALFORMED;
	memcpy(k->kid, s->kid, KID_SIZE);
	return JWK_USABLE;
}

/* Another signing key of the set with this kid, among usable and skipped ones. */
static bool kid_taken(const struct jwks *set, const char *kid)
{
	for (size_t i = 0; i < set->n_keys; i++)
		if (strcmp(set->keys[i].kid, kid) == 0)
			return true;
	for (size_t i = 0; i < set->n_skipped; i++)
		if (set->skipped[i].signing && strcmp(set->skipped[i].kid, kid) == 0)
			return true;
	return false;
}

int jwks_parse(const char *json, size_t n, struct jwks **ret, struct error *err)
{
	OPENSSL_ERROR_SCOPE;
	if (!json || !ret)
		return error_set(err, -EINVAL, "no JWKS document");
	if (n > JWKS_MAX_SIZE)
		return error_set(err, -E2BIG, "JWKS is %zu bytes, more than the %d allowed", n, JWKS_MAX_SIZE);
	_cleanup_(json_decrefp) json_t *doc = NULL;
	int r = json_object_parse(json, n, "JWKS", &doc, err);
	if (r < 0)
		return r;
	const json_t *array = json_object_get(doc, "keys");
	if (!json_is_array(array))
		return error_set(err, -EBADMSG, "JWKS has no keys array");
	if (json_array_size(array) > JWKS_MAX_KEYS)
		return error_set(err, -E2BIG, "JWKS has %zu keys, more than the %d allowed", json_array_size(array),
				 JWKS_MAX_KEYS);
	_cleanup_(jwks_freep) struct jwks *set = calloc(1, sizeof(*set));
	if (!set)
		return error_set(err, -ENOMEM, "out of memory parsing the JWKS");
	size_t i;
	const json_t *entry;
	json_array_foreach(array, i, entry) {
		if (!json_is_object(entry))
			return error_set(err, -EBADMSG, "JWKS entry %zu is not an object", i);
		struct jwk k = { 0 };
		struct jwk_skipped s = { 0 };
		enum jwk_result result = jwk_parse(entry, &k, &s);
		/* Two signing keys with one kid leave the choice of key to
		 * whichever comes first; refuse rather than guess. */
		if (s.signing && s.kid[0] && kid_taken(set, s.kid)) {
			EVP_PKEY_free(k.pkey);
			return error_set(err, -EBADMSG, "JWKS has two signing keys with kid '%s'", s.kid);
		}
		if (result == JWK_USABLE) {
			set->keys[set->n_keys++] = k;
		} else {
			s.malformed = result == JWK_MALFORMED;
			set->skipped[set->n_skipped++] = s;
		}
	}
	*ret = TAKE_PTR(set);
	return 0;
}

void jwks_free(struct jwks *keys)
{
	if (!keys)
		return;
	for (size_t i = 0; i < keys->n_keys; i++)
		EVP_PKEY_free(keys->keys[i].pkey);
	free(keys);
}

size_t jwks_count(const struct jwks *keys) { return keys ? keys->n_keys : 0; }

size_t jwks_skipped(const struct jwks *keys, char *why, size_t size)
{
	size_t count = 0;
	if (why && size > 0)
		why[0] = '\0';
	for (size_t i = 0; keys && i < keys->n_skipped; i++) {
		const struct jwk_skipped *s = &keys->skipped[i];
		if (!s->malformed)
			continue;
		if (count++ == 0 && why && size > 0)
			snprintf(why, size, "key %zu%s%s%s: %s", i, s->kid[0] ? " '" : "", s->kid, s->kid[0] ? "'" : "",
				 s->why);
	}
	return count;
}

/* --- the token --- */

/* Size cap, then every byte in the base64url alphabet or '.', exactly two
 * dots and three non-empty parts. */
static int token_split(const char *token, size_t n, struct parts *p, struct error *err)
{
	if (n > JWT_MAX_SIZE)
		return error_set(err, -E2BIG, "token is %zu bytes, more than the %d allowed", n, JWT_MAX_SIZE);
	if (!token || n == 0)
		return error_set(err, -EBADMSG, "token is empty");
	size_t dots[2], ndots = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)token[i];
		if (c == '.') {
			if (ndots == 2)
				return error_set(err, -EBADMSG, "token has more than three parts (only compact JWS is accepted)");
			dots[ndots++] = i;
		} else if (base64url_value(c) < 0) {
			return error_set(err, -EBADMSG, "token has byte 0x%02x at offset %zu, outside base64url and '.'", c, i);
		}
	}
	if (ndots != 2)
		return error_set(err, -EBADMSG, "token has %zu parts, not the three of a compact JWS", ndots + 1);
	*p = (struct parts){
		.header = token,
		.header_len = dots[0],
		.payload = token + dots[0] + 1,
		.payload_len = dots[1] - dots[0] - 1,
		.signature = token + dots[1] + 1,
		.signature_len = n - dots[1] - 1,
		.signing_input_len = dots[1],
	};
	if (p->header_len == 0 || p->payload_len == 0 || p->signature_len == 0)
		return error_set(err, -EBADMSG, "token has an empty %s", p->header_len == 0 ? "header" :
							     p->payload_len == 0 ? "payload" : "signature");
	return 0;
}

/* Decodes one part into a fresh buffer (a token is capped, so the buffer is). */
static int part_decode(const char *s, size_t len, const char *what, uint8_t **ret, size_t *ret_len, struct error *err)
{
	size_t cap = len / 4 * 3 + 2;
	_cleanup_free_ uint8_t *buf = malloc(cap);
	if (!buf)
		return error_set(err, -ENOMEM, "out of memory decoding the token %s", what);
	if (base64url_decode(s, len, buf, cap, ret_len) < 0)
		return error_set(err, -EBADMSG, "token %s is not strict base64url", what);
	*ret = TAKE_PTR(buf);
	return 0;
}

/* Media types compare without case (RFC 7515 §4.1.9 and RFC 2045);
 * "application/" may be left out. RFC 9068 names at+jwt for access tokens;
 * plain JWT is what most providers still send. */
static bool typ_allowed(const json_t *typ)
{
	static const char *const allowed[] = { "JWT", "at+jwt", "application/at+jwt" };
	const char *s = json_string_value(typ);
	for (size_t i = 0; i < ARRAY_SIZE(allowed); i++)
		if (json_string_length(typ) == strlen(allowed[i]) && strcasecmp(s, allowed[i]) == 0)
			return true;
	return false;
}

static int header_read(const char *token, size_t n, struct parts *p, struct header *h, struct error *err)
{
	int r = token_split(token, n, p, err);
	if (r < 0)
		return r;
	_cleanup_free_ uint8_t *raw = NULL;
	size_t raw_len;
	r = part_decode(p->header, p->header_len, "header", &raw, &raw_len, err);
	if (r < 0)
		return r;
	_cleanup_(json_decrefp) json_t *obj = NULL;
	r = json_object_parse(raw, raw_len, "token header", &obj, err);
	if (r < 0)
		return r;

	const json_t *alg = json_object_get(obj, "alg");
	if (!json_is_string(alg))
		return error_set(err, -EBADMSG, "token header has no alg string");
	if (string_is(alg, "RS256"))
		h->alg = ALG_RS256;
	else if (string_is(alg, "ES256"))
		h->alg = ALG_ES256;
	else
		return error_set(err, -EKEYREJECTED, "token alg '%.16s' is not allowed (only RS256 and ES256)",
				 json_string_value(alg));
	/* crit lists extensions the verifier must understand; we implement none. */
	if (json_object_get(obj, "crit"))
		return error_set(err, -EKEYREJECTED, "token header has crit; no JWS extension is supported");
	/* A token must not choose its own key: only the tenant's JWKS does. */
	static const char *const key_sources[] = { "jku", "x5u", "jwk" };
	for (size_t i = 0; i < ARRAY_SIZE(key_sources); i++)
		if (json_object_get(obj, key_sources[i]))
			return error_set(err, -EKEYREJECTED, "token header carries %s; keys come only from the tenant's JWKS",
					 key_sources[i]);
	const json_t *typ = json_object_get(obj, "typ");
	if (typ && !json_is_string(typ))
		return error_set(err, -EBADMSG, "token typ is not a string");
	if (typ && !typ_allowed(typ))
		return error_set(err, -EACCES, "token typ '%.32s' is not an access token type (JWT or at+jwt)",
				 json_string_value(typ));
	h->kid[0] = '\0';
	const json_t *kid = json_object_get(obj, "kid");
	if (kid && !kid_copy(h->kid, kid))
		return error_set(err, -EBADMSG, "token kid is not a string of 1 to %d printable ASCII bytes", KID_SIZE - 1);
	return 0;
}

static int key_select(const struct jwks *keys, const struct header *h, const struct jwk **ret, struct error *err)
{
	const char *alg = alg_names[h->alg];
	if (h->kid[0]) {
		for (size_t i = 0; i < keys->n_keys; i++) {
			const struct jwk *k = &keys->keys[i];
			if (strcmp(k->kid, h->kid) != 0)
				continue;
			/* The key's type fixes the algorithm: an RS256 token
			 * cannot name an EC key, nor an ES256 token an RSA key. */
			if (k->alg != h->alg)
				return error_set(err, -EKEYREJECTED, "token alg %s does not fit key '%s', a key for %s", alg,
						 h->kid, alg_names[k->alg]);
			*ret = k;
			return 0;
		}
		for (size_t i = 0; i < keys->n_skipped; i++)
			if (strcmp(keys->skipped[i].kid, h->kid) == 0)
				return error_set(err, -ENOKEY, "the JWKS key with kid '%s' was skipped: %s", h->kid,
						 keys->skipped[i].why);
		return error_set(err, -ENOKEY, "no key in the JWKS has kid '%s'", h->kid);
	}
	/* Without a kid, a key is chosen only when no other could be meant. */
	const struct jwk *found = NULL;
	size_t count = 0;
	for (size_t i = 0; i < keys->n_keys; i++)
		if (keys->keys[i].alg == h->alg) {
			found = &keys->keys[i];
			count++;
		}
	if (count == 0)
		return error_set(err, -ENOKEY, "token has no kid and the JWKS has no %s key", alg);
	if (count > 1)
		return error_set(err, -EACCES, "token has no kid and the JWKS has %zu %s keys: the key is ambiguous", count,
				 alg);
	*ret = found;
	return 0;
}

/* JWS ES256 signatures are r || s, 32 bytes each (RFC 7518 §3.4); OpenSSL
 * wants an ECDSA-Sig-Value in DER. */
static int ecdsa_raw_to_der(const uint8_t raw[ES256_SIG_SIZE], uint8_t der[ECDSA_DER_MAX], size_t *ret_len)
{
	_cleanup_(ECDSA_SIG_freep) ECDSA_SIG *sig = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(raw, ES256_SIG_SIZE / 2, NULL);
	BIGNUM *s = BN_bin2bn(raw + ES256_SIG_SIZE / 2, ES256_SIG_SIZE / 2, NULL);
	if (!sig || !r || !s || ECDSA_SIG_set0(sig, r, s) != 1) {
		BN_free(r);
		BN_free(s);
		return -ENOMEM;
	}
	int len = i2d_ECDSA_SIG(sig, NULL);
	if (len <= 0 || len > ECDSA_DER_MAX)
		return -EIO;
	uint8_t *out = der;
	if (i2d_ECDSA_SIG(sig, &out) != len)
		return -EIO;
	*ret_len = (size_t)len;
	return 0;
}

/* SHA-256, fetched once: naming it per verify makes OpenSSL look it up in its method store every time. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

/* A failed fetch falls back to the built-in method rather than disabling every check until restart. */
static void sha256_fetch(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (!sha256_md)
		sha256_md = (EVP_MD *)EVP_sha256();
}

static int signature_check(const struct jwk *k, const struct parts *p, struct error *err)
{
	uint8_t sig[RSA_MAX_BYTES];
	size_t len = 0;
	int r = base64url_decode(p->signature, p->signature_len, sig, sizeof(sig), &len);
	if (r == -EBADMSG)
		return error_set(err, -EBADMSG, "token signature is not strict base64url");
	if (r < 0 || len != k->sig_size)
		return error_set(err, -EBADMSG, "token signature is %s%zu bytes, not the %zu of %s with this key",
				 r < 0 ? "over " : "", r < 0 ? sizeof(sig) : len, k->sig_size, alg_names[k->alg]);
	const uint8_t *data = sig;
	uint8_t der[ECDSA_DER_MAX];
	if (k->alg == ALG_ES256) {
		r = ecdsa_raw_to_der(sig, der, &len);
		if (r < 0)
			return error_set(err, r, "cannot convert the ES256 signature to DER");
		data = der;
	}
	pthread_once(&sha256_once, sha256_fetch);
	_cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	if (!ctx || !sha256_md || EVP_DigestVerifyInit(ctx, &pctx, sha256_md, NULL, k->pkey) != 1)
		return error_set(err, -EIO, "cannot set up %s verification", alg_names[k->alg]);
	/* PKCS #1 v1.5 is OpenSSL's default for RSA; say so, so that a changed
	 * default can never turn RS256 into something else. */
	if (k->alg == ALG_RS256 && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1)
		return error_set(err, -EIO, "cannot set up RS256 verification");
	if (EVP_DigestVerify(ctx, data, len, (const uint8_t *)p->header, p->signing_input_len) != 1)
		return error_set(err, -EACCES, "token signature does not verify with %s key%s%s%s", alg_names[k->alg],
				 k->kid[0] ? " '" : "", k->kid, k->kid[0] ? "'" : "");
	return 0;
}

/* A NumericDate (RFC 7519 §2): an integer or real JSON number in
 * 0..JWT_TIME_MAX. Fractions round towards the stricter side: exp down,
 * nbf and iat up. 0 when absent, 1 when present, -EBADMSG otherwise. */
static int time_member(const json_t *claims, const char *name, bool round_up, int64_t *ret)
{
	const json_t *v = json_object_get(claims, name);
	if (!v)
		return 0;
	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);
		if (i < 0 || i > JWT_TIME_MAX)
			return -EBADMSG;
		*ret = (int64_t)i;
		return 1;
	}
	if (json_is_real(v)) {
		double d = json_real_value(v);
		if (!isfinite(d) || d < 0 || d > (double)JWT_TIME_MAX)
			return -EBADMSG;
		int64_t t = (int64_t)d;
		if (round_up && (double)t < d)
			t++;
		*ret = t;
		return 1;
	}
	return -EBADMSG;
}

/* "aud" is one string or an array of at most JWT_AUD_MAX strings (RFC 7519
 * §4.1.3); -EBADMSG for anything else, else whether want is among them. */
static int audience_has(const json_t *aud, const char *want, bool *ret)
{
	if (json_is_string(aud)) {
		*ret = want && string_is(aud, want);
		return 0;
	}
	if (!json_is_array(aud) || json_array_size(aud) > JWT_AUD_MAX)
		return -EBADMSG;
	size_t i;
	const json_t *v;
	*ret = false;
	json_array_foreach(aud, i, v) {
		if (!json_is_string(v))
			return -EBADMSG;
		if (want && string_is(v, want))
			*ret = true;
	}
	return 0;
}

static int claims_check(const uint8_t *raw, size_t raw_len, const struct jwt_expect *want, struct jwt_claims *out,
			struct error *err)
{
	_cleanup_(json_decrefp) json_t *c = NULL;
	int r = json_object_parse(raw, raw_len, "token claims", &c, err);
	if (r < 0)
		return r;

	/* First the form of every claim we read, so that a malformed token is
	 * reported as such whatever its values. */
	const json_t *iss = json_object_get(c, "iss");
	if (!iss)
		return error_set(err, -EBADMSG, "token has no iss claim");
	if (!string_copy(out->iss, sizeof(out->iss), iss))
		return error_set(err, -EBADMSG, "token iss is not a string of at most %zu printable ASCII bytes",
				 sizeof(out->iss) - 1);
	const json_t *sub = json_object_get(c, "sub");
	if (sub && !string_copy(out->sub, sizeof(out->sub), sub))
		return error_set(err, -EBADMSG, "token sub is not a string of at most %zu printable ASCII bytes",
				 sizeof(out->sub) - 1);
	const json_t *aud = json_object_get(c, "aud");
	bool aud_match = false;
	if (aud && audience_has(aud, want->audience, &aud_match) < 0)
		return error_set(err, -EBADMSG, "token aud is not a string or an array of at most %d strings", JWT_AUD_MAX);
	r = time_member(c, "exp", false, &out->exp);
	if (r == 0)
		return error_set(err, -EBADMSG, "token has no exp claim");
	struct {
		const char *name;
		int r;
	} times[] = {
		{ "exp", r },
		{ "nbf", time_member(c, "nbf", true, &out->nbf) },
		{ "iat", time_member(c, "iat", true, &out->iat) },
	};
	for (size_t i = 0; i < ARRAY_SIZE(times); i++)
		if (times[i].r < 0)
			return error_set(err, -EBADMSG, "token %s is not a number of seconds from 0 to %" PRId64, times[i].name,
					 JWT_TIME_MAX);

	/* Then the values. */
	if (strcmp(out->iss, want->issuer) != 0)
		return error_set(err, -EACCES, "token iss '%.128s' is not the tenant's issuer '%.128s'", out->iss,
				 want->issuer);
	if (want->audience && !aud)
		return error_set(err, -EACCES, "token has no aud claim; '%.128s' is required", want->audience);
	if (want->audience && !aud_match)
		return error_set(err, -EACCES, "token aud does not include '%.128s'", want->audience);
	/* Bounded above (JWT_TIME_MAX, JWT_SKEW_MAX), so nothing overflows. */
	if (want->now >= out->exp + want->skew)
		return error_set(err, -EKEYEXPIRED, "token expired %" PRId64 " s ago (%" PRId64 " s of clock skew allowed)",
				 want->now - out->exp, want->skew);
	if (out->nbf > want->now + want->skew)
		return error_set(err, -EACCES, "token is not valid for another %" PRId64 " s (nbf; %" PRId64
				 " s of clock skew allowed)", out->nbf - want->now, want->skew);
	if (out->iat > want->now + want->skew)
		return error_set(err, -EACCES, "token was issued %" PRId64 " s in the future (iat; %" PRId64
				 " s of clock skew allowed)", out->iat - want->now, want->skew);
	return 0;
}

int jwt_header_kid(const char *token, size_t n, char *kid, size_t size, struct error *err)
{
	if (!kid || size == 0)
		return error_set(err, -EINVAL, "no room for the kid");
	struct parts p;
	struct header h;
	int r = header_read(token, n, &p, &h, err);
	if (r < 0)
		return r;
	size_t len = strlen(h.kid);
	if (len >= size)
		return error_set(err, -ERANGE, "token kid is longer than %zu bytes", size - 1);
	memcpy(kid, h.kid, len + 1);
	return 0;
}

int jwt_verify(const struct jwks *keys, const char *token, size_t n, const struct jwt_expect *want,
	       struct jwt_claims *ret, struct error *err)
{
	OPENSSL_ERROR_SCOPE;
	if (!keys || !want || !want->issuer)
		return error_set(err, -EINVAL, "no key set or no expected issuer to verify the token against");
	if (want->now < 0 || want->now > JWT_TIME_MAX || want->skew < 0 || want->skew > JWT_SKEW_MAX)
		return error_set(err, -EINVAL, "the time (%" PRId64 ") or the clock skew (%" PRId64 " s) is out of range",
				 want->now, want->skew);
	struct parts p;
	struct header h;
	int r = header_read(token, n, &p, &h, err);
	if (r < 0)
		return r;
	const struct jwk *k = NULL;
	r = key_select(keys, &h, &k, err);
	if (r < 0)
		return r;
	r = signature_check(k, &p, err);
	if (r < 0)
		return r;

	/* Nothing in the payload is read before the signature holds. */
	_cleanup_free_ uint8_t *raw = NULL;
	size_t raw_len;
	r = part_decode(p.payload, p.payload_len, "payload", &raw, &raw_len, err);
	if (r < 0)
		return r;
	struct jwt_claims out = { 0 };
	r = claims_check(raw, raw_len, want, &out, err);
	if (r < 0)
		return r;
	memcpy(out.alg, alg_names[h.alg], strlen(alg_names[h.alg]) + 1);
	memcpy(out.kid, h.kid, sizeof(out.kid));
	if (ret)
		*ret = out;
	return 0;
}
