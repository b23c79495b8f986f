/*
 * Unit tests for JWT verification (src/common/jwt.c): RSA-2048 and P-256
 * keys made here with OpenSSL, a JWKS built from their public halves, and
 * tokens signed here (RS256 with EVP_DigestSign, ES256 turned from DER into
 * r || s), so that the verifier is checked against the formats as specified
 * and not against an issuer of its own. Then every refusal: encodings,
 * headers (alg none, HS256 with the RSA key as secret, crit, keys carried in
 * the token), key selection (kid, algorithm confusion, ambiguity), signatures,
 * claims and their times, JWKS documents and their skipped keys; the RFC 7515
 * A.2 and A.3 examples as third-party vectors; and threads sharing one set.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "jwt.h"

#define NOW INT64_C(1700000000)
#define ISS "https://idp.example.com/realms/acme"
#define AUD "hpcc"
#define SKEW 60

static const struct jwt_expect want = { .issuer = ISS, .audience = AUD, .now = NOW, .skew = SKEW };

/* Keys made once for the whole group; strings kept until the end. */
static struct {
	EVP_PKEY *rsa, *rsa_other, *rsa_small, *ec, *ec_other;
	struct jwks *keys;   /* rsa as "rsa-1", ec as "ec-1" */
	char *kept[8192];
	size_t n_kept;
} fx;

/* --- helpers --- */

static char *keep(char *s)
{
	assert_non_null(s);
	assert_true(fx.n_kept < ARRAY_SIZE(fx.kept));
	fx.kept[fx.n_kept++] = s;
	return s;
}

static char *fmt(const char *f, ...) _printf_(1, 2);
static char *fmt(const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	char *s = NULL;
	assert_true(vasprintf(&s, f, ap) >= 0);
	va_end(ap);
	return keep(s);
}

static char *b64(const void *data, size_t n)
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	const uint8_t *p = data;
	char *s = malloc(n / 3 * 4 + 5);
	assert_non_null(s);
	size_t o = 0, i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		for (int k = 3; k >= 0; k--)
			s[o++] = alphabet[v >> (6 * k) & 63];
	}
	if (n - i == 1) {
		s[o++] = alphabet[p[i] >> 2];
		s[o++] = alphabet[(p[i] & 3) << 4];
	} else if (n - i == 2) {
		s[o++] = alphabet[p[i] >> 2];
		s[o++] = alphabet[(p[i] & 3) << 4 | p[i + 1] >> 4];
		s[o++] = alphabet[(p[i + 1] & 15) << 2];
	}
	s[o] = '\0';
	return keep(s);
}

static char *b64s(const char *s) { return b64(s, strlen(s)); }

static char *bn_b64(EVP_PKEY *key, const char *param, int pad)
{
	BIGNUM *bn = NULL;
	assert_int_equal(EVP_PKEY_get_bn_param(key, param, &bn), 1);
	uint8_t buf[1024];
	int len = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
	assert_true(len > 0);
	BN_free(bn);
	return b64(buf, (size_t)len);
}

/* One JWK: the public half of key, with kid (NULL: none) and extra members
 * (",..." or ""). */
static char *jwk(EVP_PKEY *key, const char *kid, const char *extra)
{
	char *kid_member = kid ? fmt("\"kid\":\"%s\",", kid) : "";
	if (EVP_PKEY_is_a(key, "RSA"))
		return fmt("{%s\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"%s}", kid_member,
			   bn_b64(key, OSSL_PKEY_PARAM_RSA_N, 0), bn_b64(key, OSSL_PKEY_PARAM_RSA_E, 0), extra);
	return fmt("{%s\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"%s}", kid_member,
		   bn_b64(key, OSSL_PKEY_PARAM_EC_PUB_X, 32), bn_b64(key, OSSL_PKEY_PARAM_EC_PUB_Y, 32), extra);
}

static struct jwks *parse_ok(const char *doc)
{
	struct jwks *keys = NULL;
	struct error err = { 0 };
	int r = jwks_parse(doc, strlen(doc), &keys, &err);
	if (r != 0)
		print_message("jwks_parse: %d %s\n", r, err.msg);
	assert_int_equal(r, 0);
	assert_non_null(keys);
	return keys;
}

static void parse_refused(const char *doc, size_t n, int code, const char *needle)
{
	struct jwks *keys = (struct jwks *)&fx; /* must stay untouched */
	struct error err = { 0 };
	int r = jwks_parse(doc, n, &keys, &err);
	if (r != code)
		print_message("jwks_parse: %d %s\n", r, err.msg);
	assert_int_equal(r, code);
	assert_ptr_equal(keys, (struct jwks *)&fx);
	if (needle && !strstr(err.msg, needle))
		print_message("message: %s\n", err.msg);
	if (needle)
		assert_non_null(strstr(err.msg, needle));
}

/* The JWS signature of input by key: RS256 for RSA, ES256 (r || s) for EC. */
static size_t sign_raw(EVP_PKEY *key, const char *input, uint8_t sig[1024])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	assert_non_null(ctx);
	assert_int_equal(EVP_DigestSignInit_ex(ctx, NULL, "SHA256", NULL, NULL, key, NULL), 1);
	uint8_t der[1024];
	size_t len = sizeof(der);
	assert_int_equal(EVP_DigestSign(ctx, der, &len, (const uint8_t *)input, strlen(input)), 1);
	EVP_MD_CTX_free(ctx);
	if (EVP_PKEY_is_a(key, "RSA")) {
		memcpy(sig, der, len);
		return len;
	}
	const uint8_t *p = der;
	ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)len);
	assert_non_null(es);
	const BIGNUM *r, *s;
	ECDSA_SIG_get0(es, &r, &s);
	assert_int_equal(BN_bn2binpad(r, sig, 32), 32);
	assert_int_equal(BN_bn2binpad(s, sig + 32, 32), 32);
	ECDSA_SIG_free(es);
	return 64;
}

static char *signing_input(const char *header, const char *claims) { return fmt("%s.%s", b64s(header), b64s(claims)); }

static char *token_signed(EVP_PKEY *key, const char *header, const char *claims)
{
	char *input = signing_input(header, claims);
	uint8_t sig[1024];
	size_t len = sign_raw(key, input, sig);
	return fmt("%s.%s", input, b64(sig, len));
}

#define HDR_RS "{\"alg\":\"RS256\",\"kid\":\"rsa-1\",\"typ\":\"JWT\"}"
#define HDR_ES "{\"alg\":\"ES256\",\"kid\":\"ec-1\",\"typ\":\"JWT\"}"

/* The usual claims with extra members (",..." or ""). */
static char *claims_with(const char *extra)
{
	return fmt("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"alice\",\"exp\":%" PRId64 ",\"iat\":%" PRId64 "%s}",
		   NOW + 300, NOW - 10, extra);
}

static char *rs_token(const char *claims) { return token_signed(fx.rsa, HDR_RS, claims); }

static int verify_with(const struct jwks *keys, const char *token, const struct jwt_expect *w, struct jwt_claims *c,
		       struct error *err)
{
	return jwt_verify(keys, token, strlen(token), w, c, err);
}

/* No part of the token shows up in a message. */
static void assert_no_token_in(const char *msg, const char *token)
{
	const char *part = token;
	while (*part) {
		size_t len = strcspn(part, ".");
		if (len >= 12) {
			char probe[13];
			memcpy(probe, part, 12);
			probe[12] = '\0';
			assert_null(strstr(msg, probe));
		}
		part += len + (part[len] == '.');
	}
}

static void refused_with(const struct jwks *keys, const char *token, size_t n, const struct jwt_expect *w, int code,
			 const char *needle)
{
	struct error err = { 0 };
	struct jwt_claims c, before;
	memset(&c, 0x5a, sizeof(c));
	before = c;
	int r = jwt_verify(keys, token, n, w, &c, &err);
	if (r != code || (needle && !strstr(err.msg, needle)))
		print_message("jwt_verify: %d (want %d) %s\n", r, code, err.msg);
	assert_int_equal(r, code);
	assert_int_equal(err.code, code);
	if (needle)
		assert_non_null(strstr(err.msg, needle));
	/* ret_ is written only on success. */
	assert_memory_equal(&c, &before, sizeof(c));
	if (n == strlen(token))
		assert_no_token_in(err.msg, token);
}

static void refused(const char *token, int code, const char *needle)
{
	refused_with(fx.keys, token, strlen(token), &want, code, needle);
}

static struct jwt_claims accepted_with(const struct jwks *keys, const char *token, const struct jwt_expect *w)
{
	struct error err = { 0 };
	struct jwt_claims c;
	int r = verify_with(keys, token, w, &c, &err);
	if (r != 0)
		print_message("jwt_verify: %d %s\n", r, err.msg);
	assert_int_equal(r, 0);
	assert_int_equal(err.code, 0);
	return c;
}

static struct jwt_claims accepted(const char *token) { return accepted_with(fx.keys, token, &want); }

static int group_setup(void **state)
{
	fx.rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	fx.rsa_other = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	fx.rsa_small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	fx.ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	fx.ec_other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (!fx.rsa || !fx.rsa_other || !fx.rsa_small || !fx.ec || !fx.ec_other)
		return -1;
	char *doc = fmt("{\"keys\":[%s,%s]}", jwk(fx.rsa, "rsa-1", ""), jwk(fx.ec, "ec-1", ""));
	struct error err = { 0 };
	return jwks_parse(doc, strlen(doc), &fx.keys, &err);
}

static int group_teardown(void **state)
{
	jwks_free(fx.keys);
	EVP_PKEY_free(fx.rsa);
	EVP_PKEY_free(fx.rsa_other);
	EVP_PKEY_free(fx.rsa_small);
	EVP_PKEY_free(fx.ec);
	EVP_PKEY_free(fx.ec_other);
	for (size_t i = 0; i < fx.n_kept; i++)
		free(fx.kept[i]);
	return 0;
}

/* --- valid tokens --- */

static void test_rs256_valid(void **state)
{
	assert_int_equal(jwks_count(fx.keys), 2);
	struct jwt_claims c = accepted(rs_token(claims_with(",\"nbf\":1699999990,\"scope\":\"openid\"")));
	assert_string_equal(c.alg, "RS256");
	assert_string_equal(c.kid, "rsa-1");
	assert_string_equal(c.iss, ISS);
	assert_string_equal(c.sub, "alice");
	assert_int_equal(c.exp, NOW + 300);
	assert_int_equal(c.iat, NOW - 10);
	assert_int_equal(c.nbf, NOW - 10);
	/* ret may be NULL. */
	const char *t = rs_token(claims_with(""));
	assert_int_equal(jwt_verify(fx.keys, t, strlen(t), &want, NULL, NULL), 0);
}

static void test_es256_valid(void **state)
{
	const char *claims = fmt("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%" PRId64 "}", NOW + 60);
	/* ECDSA signatures differ every time: several, so that r or s with
	 * leading zero bytes come up now and then. */
	for (int i = 0; i < 20; i++) {
		struct jwt_claims c = accepted(token_signed(fx.ec, HDR_ES, claims));
		assert_string_equal(c.alg, "ES256");
		assert_string_equal(c.kid, "ec-1");
		assert_string_equal(c.sub, "");
		assert_int_equal(c.exp, NOW + 60);
		assert_int_equal(c.nbf, 0);
		assert_int_equal(c.iat, 0);
	}
}

static void test_typ(void **state)
{
	const char *claims = claims_with("");
	const char *good[] = { "JWT", "at+jwt", "application/at+jwt", "AT+JWT", "jwt", "Application/At+JWT" };
	for (size_t i = 0; i < ARRAY_SIZE(good); i++)
		accepted(token_signed(fx.rsa, fmt("{\"alg\":\"RS256\",\"kid\":\"rsa-1\",\"typ\":\"%s\"}", good[i]), claims));
	accepted(token_signed(fx.rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa-1\"}", claims));
	accepted(token_signed(fx.ec, "{\"typ\":\"at+jwt\",\"kid\":\"ec-1\",\"alg\":\"ES256\"}", claims));
	/* Other kinds of tokens the same provider signs are not access tokens. */
	const char *bad[] = { "dpop+jwt", "logout+jwt", "JWS", "at+jwt ", "", "application/jwt+at" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		refused(token_signed(fx.rsa, fmt("{\"alg\":\"RS256\",\"kid\":\"rsa-1\",\"typ\":\"%s\"}", bad[i]), claims),
			-EACCES, "typ");
	refused(token_signed(fx.rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa-1\",\"typ\":7}", claims), -EBADMSG, "typ");
}

static void test_aud(void **state)
{
	const char *base = fmt("\"iss\":\"" ISS "\",\"exp\":%" PRId64, NOW + 300);
	accepted(rs_token(fmt("{%s,\"aud\":[\"other\",\"" AUD "\"]}", base)));
	accepted(rs_token(fmt("{%s,\"aud\":[\"" AUD "\"]}", base)));
	refused(rs_token(fmt("{%s,\"aud\":[\"other\",\"hpcc2\"]}", base)), -EACCES, "aud does not include 'hpcc'");
	refused(rs_token(fmt("{%s,\"aud\":[]}", base)), -EACCES, "aud");
	refused(rs_token(fmt("{%s,\"aud\":\"other\"}", base)), -EACCES, "aud does not include");
	refused(rs_token(fmt("{%s,\"aud\":\"HPCC\"}", base)), -EACCES, "aud");
	refused(rs_token(fmt("{%s,\"aud\":\"hpc\"}", base)), -EACCES, "aud");
	refused(rs_token(fmt("{%s}", base)), -EACCES, "no aud claim");
	/* The form is checked whether or not an audience is expected. */
	struct jwt_expect any = want;
	any.audience = NULL;
	accepted_with(fx.keys, rs_token(fmt("{%s}", base)), &any);
	accepted_with(fx.keys, rs_token(fmt("{%s,\"aud\":\"x\"}", base)), &any);
	const char *malformed[] = { "[\"hpcc\",1]", "7", "{\"hpcc\":true}", "null", "[[\"hpcc\"]]",
				    "[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\",\"j\",\"k\",\"l\",\"m\",\"n\",\"o\",\"p\",\"hpcc\"]" };
	for (size_t i = 0; i < ARRAY_SIZE(malformed); i++) {
		const char *t = rs_token(fmt("{%s,\"aud\":%s}", base, malformed[i]));
		refused(t, -EBADMSG, "aud");
		refused_with(fx.keys, t, strlen(t), &any, -EBADMSG, "aud");
	}
	/* Sixteen is the cap, not one less. */
	accepted(rs_token(fmt("{%s,\"aud\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\",\"j\",\"k\",\"l\",\"m\",\"n\",\"o\",\"hpcc\"]}",
			      base)));
}

/* --- times --- */

static char *timed(int64_t exp, const char *extra)
{
	return rs_token(fmt("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%" PRId64 "%s}", exp, extra));
}

static void test_expired(void **state)
{
	refused(timed(NOW - 3600, ""), -EKEYEXPIRED, "expired 3600 s ago");
	/* Within the skew it passes; at exp + skew it is over. */
	accepted(timed(NOW - SKEW + 1, ""));
	refused(timed(NOW - SKEW, ""), -EKEYEXPIRED, "expired");
	struct jwt_expect strict = want;
	strict.skew = 0;
	accepted_with(fx.keys, timed(NOW + 1, ""), &strict);
	const char *t = timed(NOW, "");
	refused_with(fx.keys, t, strlen(t), &strict, -EKEYEXPIRED, "expired 0 s ago");
	/* A fraction of a second counts against the token: exp rounds down. */
	t = rs_token(fmt("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%" PRId64 ".9}", NOW));
	refused_with(fx.keys, t, strlen(t), &strict, -EKEYEXPIRED, "expired");
	accepted_with(fx.keys, rs_token(fmt("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%" PRId64 ".5}", NOW + 1)),
		      &strict);
	accepted_with(fx.keys, rs_token(fmt("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1.7e9}")), &(struct jwt_expect){
		.issuer = ISS, .audience = AUD, .now = 1699999999, .skew = 0 });
}

static void test_not_before(void **state)
{
	refused(timed(NOW + 600, fmt(",\"nbf\":%" PRId64, NOW + 300)), -EACCES, "nbf");
	accepted(timed(NOW + 600, fmt(",\"nbf\":%" PRId64, NOW + SKEW)));
	refused(timed(NOW + 600, fmt(",\"nbf\":%" PRId64, NOW + SKEW + 1)), -EACCES, "not valid for another 61 s");
	/* nbf rounds up. */
	refused(timed(NOW + 600, fmt(",\"nbf\":%" PRId64 ".25", NOW + SKEW)), -EACCES, "nbf");
	accepted(timed(NOW + 600, fmt(",\"nbf\":%" PRId64 ".0", NOW + SKEW)));
}

static void test_issued_in_future(void **state)
{
	refused(timed(NOW + 600, fmt(",\"iat\":%" PRId64, NOW + SKEW + 1)), -EACCES, "iat");
	refused(timed(NOW + 600, fmt(",\"iat\":%" PRId64, NOW + 500)), -EACCES, "issued 500 s in the future");
	accepted(timed(NOW + 600, fmt(",\"iat\":%" PRId64, NOW + SKEW)));
	refused(timed(NOW + 600, fmt(",\"iat\":%" PRId64 ".5", NOW + SKEW)), -EACCES, "iat");
}

static void test_time_forms(void **state)
{
	const char *base = "\"iss\":\"" ISS "\",\"aud\":\"" AUD "\"";
	refused(rs_token(fmt("{%s}", base)), -EBADMSG, "no exp");
	refused(rs_token(fmt("{%s,\"exp\":null}", base)), -EBADMSG, "exp");
	const char *bad[] = { "\"1800000000\"", "true", "-1", "-0.5", "253402300800", "1e300", "[1800000000]",
			      "9223372036854775807" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		refused(rs_token(fmt("{%s,\"exp\":%s}", base, bad[i])), -EBADMSG, "exp is not a number");
		refused(rs_token(fmt("{%s,\"exp\":1800000000,\"nbf\":%s}", base, bad[i])), -EBADMSG, "nbf");
		refused(rs_token(fmt("{%s,\"exp\":1800000000,\"iat\":%s}", base, bad[i])), -EBADMSG, "iat");
	}
	/* jansson refuses numbers it cannot hold; they are malformed too. */
	refused(rs_token(fmt("{%s,\"exp\":1e400}", base)), -EBADMSG, "JSON");
	refused(rs_token(fmt("{%s,\"exp\":99999999999999999999}", base)), -EBADMSG, "JSON");
	struct jwt_claims c = accepted(rs_token(fmt("{%s,\"exp\":253402300799}", base)));
	assert_int_equal(c.exp, JWT_TIME_MAX);
}

/* --- claims --- */

static void test_issuer(void **state)
{
	const char *rest = fmt("\"aud\":\"" AUD "\",\"exp\":%" PRId64, NOW + 300);
	refused(rs_token(fmt("{\"iss\":\"https://evil.example.com\",%s}", rest)), -EACCES,
		"iss 'https://evil.example.com' is not");
	refused(rs_token(fmt("{\"iss\":\"" ISS "/\",%s}", rest)), -EACCES, "iss");
	refused(rs_token(fmt("{\"iss\":\"HTTPS://idp.example.com/realms/acme\",%s}", rest)), -EACCES, "iss");
	refused(rs_token(fmt("{%s}", rest)), -EBADMSG, "no iss");
	refused(rs_token(fmt("{\"iss\":[\"" ISS "\"],%s}", rest)), -EBADMSG, "iss");
	refused(rs_token(fmt("{\"iss\":\"https://idp.example.com/\\u0000x\",%s}", rest)), -EBADMSG, "JSON");
	refused(rs_token(fmt("{\"iss\":\"" ISS "\\n\",%s}", rest)), -EBADMSG, "iss");
	char long_iss[600];
	memset(long_iss, 'a', sizeof(long_iss) - 1);
	long_iss[sizeof(long_iss) - 1] = '\0';
	const char *t = rs_token(fmt("{\"iss\":\"%s\",%s}", long_iss, rest));
	refused_with(fx.keys, t, strlen(t), &(struct jwt_expect){ .issuer = long_iss, .audience = AUD, .now = NOW },
		     -EBADMSG, "iss");
	long_iss[511] = '\0';
	accepted_with(fx.keys, rs_token(fmt("{\"iss\":\"%s\",%s}", long_iss, rest)),
		      &(struct jwt_expect){ .issuer = long_iss, .audience = AUD, .now = NOW });
}

static void test_subject(void **state)
{
	const char *rest = fmt("\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%" PRId64, NOW + 300);
	char sub[300];
	memset(sub, 's', sizeof(sub) - 1);
	sub[255] = '\0';
	struct jwt_claims c = accepted(rs_token(fmt("{%s,\"sub\":\"%s\"}", rest, sub)));
	assert_string_equal(c.sub, sub);
	/* Too long for the field: refused, never cut. */
	sub[255] = 's';
	sub[256] = '\0';
	refused(rs_token(fmt("{%s,\"sub\":\"%s\"}", rest, sub)), -EBADMSG, "sub");
	refused(rs_token(fmt("{%s,\"sub\":42}", rest)), -EBADMSG, "sub");
	refused(rs_token(fmt("{%s,\"sub\":\"a\\u0007b\"}", rest)), -EBADMSG, "sub");
	refused(rs_token(fmt("{%s,\"sub\":\"caf\\u00e9\"}", rest)), -EBADMSG, "sub");
}

static void test_claims_form(void **state)
{
	refused(rs_token("[1,2]"), -EBADMSG, "claims is not a JSON object");
	refused(rs_token("\"iss\""), -EBADMSG, "claims");
	refused(rs_token("{\"iss\":"), -EBADMSG, "claims is not valid JSON");
	refused(rs_token(fmt("%s x", claims_with(""))), -EBADMSG, "claims is not valid JSON");
	refused(rs_token(fmt("%s{}", claims_with(""))), -EBADMSG, "claims is not valid JSON");
	/* Whitespace around the object is JSON. */
	accepted(rs_token(fmt("\r\n %s \n", claims_with(""))));
}

static void test_claims_duplicates(void **state)
{
	/* Two parsers that keep different duplicates would disagree. */
	refused(rs_token(fmt("{\"iss\":\"https://evil.example.com\",\"iss\":\"" ISS "\",\"aud\":\"" AUD
			     "\",\"exp\":%" PRId64 "}", NOW + 300)),
		-EBADMSG, "duplicate");
	refused(rs_token(fmt("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%" PRId64 ",\"exp\":%" PRId64 "}", NOW - 10,
			     NOW + 300)),
		-EBADMSG, "duplicate");
	refused(rs_token(claims_with(",\"x\":{\"a\":1,\"a\":2}")), -EBADMSG, "duplicate");
	/* Nesting is capped before jansson recurses. */
	char deep[JWT_JSON_MAX_DEPTH + 1] = "", close[JWT_JSON_MAX_DEPTH + 1] = "";
	memset(deep, '[', JWT_JSON_MAX_DEPTH);
	memset(close, ']', JWT_JSON_MAX_DEPTH);
	refused(rs_token(claims_with(fmt(",\"x\":%s%s", deep, close))), -EBADMSG, "deeper");
	accepted(rs_token(claims_with(fmt(",\"x\":%.*s%.*s", JWT_JSON_MAX_DEPTH - 1, deep, JWT_JSON_MAX_DEPTH - 1, close))));
	/* Brackets inside strings do not count. */
	accepted(rs_token(claims_with(",\"x\":\"[[[[[[[[[[[[[[[[[[[[[[\\\"[[[[[\"")));
}

/* --- algorithms and keys --- */

static void test_alg_none(void **state)
{
	const char *claims = claims_with("");
	/* The unsecured form: an empty signature. */
	refused(fmt("%s.%s.", b64s("{\"alg\":\"none\"}"), b64s(claims)), -EBADMSG, "empty signature");
	/* With some signature, alg none is refused by name. */
	const char *names[] = { "none", "None", "NONE", "HS256", "HS384", "HS512", "PS256", "RS384", "RS512", "ES384",
				"ES512", "EdDSA", "rs256", "RS256 ", "", "RS2560" };
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		const char *t = token_signed(fx.rsa, fmt("{\"alg\":\"%s\",\"kid\":\"rsa-1\"}", names[i]), claims);
		refused(t, -EKEYREJECTED, "not allowed");
		/* jwt_header_kid refuses it too: no refetch for such a token. */
		char kid[128];
		assert_int_equal(jwt_header_kid(t, strlen(t), kid, sizeof(kid), NULL), -EKEYREJECTED);
	}
	refused(token_signed(fx.rsa, "{\"kid\":\"rsa-1\"}", claims), -EBADMSG, "no alg");
	refused(token_signed(fx.rsa, "{\"alg\":null,\"kid\":\"rsa-1\"}", claims), -EBADMSG, "no alg");
	refused(token_signed(fx.rsa, "{\"alg\":[\"RS256\"],\"kid\":\"rsa-1\"}", claims), -EBADMSG, "alg");
}

static char *hs256_token(const char *header, const char *claims, const void *secret, size_t secret_len)
{
	char *input = signing_input(header, claims);
	uint8_t mac[32];
	size_t len = 0;
	assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, secret, secret_len, (const uint8_t *)input,
				  strlen(input), mac, sizeof(mac), &len));
	return fmt("%s.%s", input, b64(mac, len));
}

static void test_hs256_key_confusion(void **state)
{
	/* The classic attack: HMAC keyed with the public RSA key, which a
	 * library that lets the token pick the algorithm would accept. */
	const char *claims = claims_with("");
	BIGNUM *n = NULL;
	assert_int_equal(EVP_PKEY_get_bn_param(fx.rsa, OSSL_PKEY_PARAM_RSA_N, &n), 1);
	uint8_t modulus[256];
	assert_int_equal(BN_bn2bin(n, modulus), 256);
	BN_free(n);
	refused(hs256_token("{\"alg\":\"HS256\",\"kid\":\"rsa-1\"}", claims, modulus, sizeof(modulus)), -EKEYREJECTED,
		"HS256");
	refused(hs256_token("{\"alg\":\"HS256\"}", claims, modulus, sizeof(modulus)), -EKEYREJECTED, "HS256");
	BIO *bio = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_PUBKEY(bio, fx.rsa), 1);
	char *pem = NULL;
	long pem_len = BIO_get_mem_data(bio, &pem);
	refused(hs256_token("{\"alg\":\"HS256\",\"kid\":\"rsa-1\"}", claims, pem, (size_t)pem_len), -EKEYREJECTED, "HS256");
	BIO_free(bio);
}

static void test_algorithm_confusion(void **state)
{
	const char *claims = claims_with("");
	/* An RS256 token naming the EC key, and the other way round. */
	refused(token_signed(fx.rsa, "{\"alg\":\"RS256\",\"kid\":\"ec-1\"}", claims), -EKEYREJECTED,
		"does not fit key 'ec-1'");
	refused(token_signed(fx.ec, "{\"alg\":\"ES256\",\"kid\":\"rsa-1\"}", claims), -EKEYREJECTED,
		"does not fit key 'rsa-1'");
	/* The token's own key material is never used. */
	const char *own = jwk(fx.rsa_other, "rsa-1", "");
	refused(token_signed(fx.rsa_other, fmt("{\"alg\":\"RS256\",\"kid\":\"rsa-1\",\"jwk\":%s}", own), claims),
		-EKEYREJECTED, "carries jwk");
	refused(token_signed(fx.rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa-1\",\"jku\":\"https://evil.example.com/jwks\"}",
			     claims),
		-EKEYREJECTED, "carries jku");
	refused(token_signed(fx.rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa-1\",\"x5u\":\"https://evil.example.com/c.pem\"}",
			     claims),
		-EKEYREJECTED, "carries x5u");
	/* x5c and x5t are ignored, neither used nor refused. */
	accepted(token_signed(fx.rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa-1\",\"x5c\":[\"MIIB\"],\"x5t\":\"abc\"}", claims));
}

static void test_header_form(void **state)
{
	const char *claims = claims_with("");
	refused(token_signed(fx.rsa, "{\"alg\":\"RS256\",\"alg\":\"none\",\"kid\":\"rsa-1\"}", claims), -EBADMSG,
		"duplicate");
	refused(token_signed(fx.rsa, "{\"alg\":\"none\",\"kid\":\"rsa-1\",\"alg\":\"RS256\"}", claims), -EBADMSG,
		"duplicate");
	refused(token_signed(fx.rsa, "[\"RS256\"]", claims), -EBADMSG, "header is not a JSON object");
	refused(token_signed(fx.rsa, "{\"alg\":\"RS256\"", claims), -EBADMSG, "header is not valid JSON");
	refused(token_signed(fx.rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa-1\"} x", claims), -EBADMSG, "JSON");
	refused(token_signed(fx.rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa-1\",\"crit\":[\"exp\"],\"exp\":1}", claims),
		-EKEYREJECTED, "crit");
	refused(token_signed(fx.rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa-1\",\"crit\":[]}", claims), -EKEYREJECTED, "crit");
	refused(token_signed(fx.rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa-1\",\"b64\":false,\"crit\":[\"b64\"]}", claims),
		-EKEYREJECTED, "crit");
	/* kid: 1 to 127 printable ASCII bytes. */
	refused(token_signed(fx.rsa, "{\"alg\":\"RS256\",\"kid\":\"\"}", claims), -EBADMSG, "kid");
	refused(token_signed(fx.rsa, "{\"alg\":\"RS256\",\"kid\":5}", claims), -EBADMSG, "kid");
	refused(token_signed(fx.rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa-1\\n\"}", claims), -EBADMSG, "kid");
	char kid[200];
	memset(kid, 'k', sizeof(kid) - 1);
	kid[128] = '\0';
	refused(token_signed(fx.rsa, fmt("{\"alg\":\"RS256\",\"kid\":\"%s\"}", kid), claims), -EBADMSG, "kid");
	kid[127] = '\0';
	refused(token_signed(fx.rsa, fmt("{\"alg\":\"RS256\",\"kid\":\"%s\"}", kid), claims), -ENOKEY, "no key");
}

static void test_signature_tampered(void **state)
{
	const char *claims = claims_with("");
	const char *tokens[] = { rs_token(claims), token_signed(fx.ec, HDR_ES, claims) };
	for (size_t t = 0; t < ARRAY_SIZE(tokens); t++) {
		/* Flip one bit of the decoded signature: re-encode. */
		const char *dot = strrchr(tokens[t], '.');
		char *input = fmt("%.*s", (int)(dot - tokens[t]), tokens[t]);
		uint8_t sig[1024];
		EVP_PKEY *key = t == 0 ? fx.rsa : fx.ec;
		size_t len = sign_raw(key, input, sig);
		for (size_t bit = 0; bit < len * 8; bit += len * 8 / 7) {
			sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			refused(fmt("%s.%s", input, b64(sig, len)), -EACCES, "signature does not verify");
			sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		}
		accepted(fmt("%s.%s", input, b64(sig, len)));
		/* Another payload under the same signature. */
		char *other = fmt("%s.%s.%s", b64s(t == 0 ? HDR_RS : HDR_ES), b64s(claims_with(",\"admin\":true")), dot + 1);
		refused(other, -EACCES, "signature does not verify");
	}
}

static void test_signature_other_key(void **state)
{
	const char *claims = claims_with("");
	refused(token_signed(fx.rsa_other, HDR_RS, claims), -EACCES, "does not verify with RS256 key 'rsa-1'");
	refused(token_signed(fx.ec_other, HDR_ES, claims), -EACCES, "does not verify with ES256 key 'ec-1'");
}

static void test_signature_sizes(void **state)
{
	const char *claims = claims_with("");
	char *input = signing_input(HDR_ES, claims);
	uint8_t sig[1024];
	size_t len = sign_raw(fx.ec, input, sig);
	assert_int_equal(len, 64);
	refused(fmt("%s.%s", input, b64(sig, 63)), -EBADMSG, "63 bytes, not the 64");
	sig[64] = 0;
	refused(fmt("%s.%s", input, b64(sig, 65)), -EBADMSG, "65 bytes");
	/* The DER form OpenSSL produces is not a JWS signature. */
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	assert_int_equal(EVP_DigestSignInit_ex(ctx, NULL, "SHA256", NULL, NULL, fx.ec, NULL), 1);
	uint8_t der[128];
	size_t der_len = sizeof(der);
	assert_int_equal(EVP_DigestSign(ctx, der, &der_len, (const uint8_t *)input, strlen(input)), 1);
	EVP_MD_CTX_free(ctx);
	refused(fmt("%s.%s", input, b64(der, der_len)), -EBADMSG, "not the 64");
	/* r = 0 and s = 0: no signature. */
	memset(sig, 0, 64);
	refused(fmt("%s.%s", input, b64(sig, 64)), -EACCES, "does not verify");
	/* RS256: exactly the modulus size. */
	input = signing_input(HDR_RS, claims);
	len = sign_raw(fx.rsa, input, sig);
	assert_int_equal(len, 256);
	refused(fmt("%s.%s", input, b64(sig, 255)), -EBADMSG, "255 bytes, not the 256");
	refused(fmt("%s.%s", input, b64(sig + 1, 255)), -EBADMSG, "255 bytes");
	uint8_t big[1100];
	memset(big, 1, sizeof(big));
	refused(fmt("%s.%s", input, b64(big, sizeof(big))), -EBADMSG, "signature is over");
}

static void test_kid_selection(void **state)
{
	const char *claims = claims_with("");
	refused(token_signed(fx.rsa, "{\"alg\":\"RS256\",\"kid\":\"rsa-2\"}", claims), -ENOKEY, "no key in the JWKS has kid 'rsa-2'");
	refused(token_signed(fx.rsa, "{\"alg\":\"RS256\",\"kid\":\"RSA-1\"}", claims), -ENOKEY, "kid");
	/* No kid: the one key of the alg's type is used. */
	accepted(token_signed(fx.rsa, "{\"alg\":\"RS256\"}", claims));
	accepted(token_signed(fx.ec, "{\"alg\":\"ES256\"}", claims));
	/* Two RSA keys and no kid: refused, no guessing. */
	struct jwks *two = parse_ok(fmt("{\"keys\":[%s,%s,%s]}", jwk(fx.rsa, "rsa-1", ""), jwk(fx.rsa_other, "rsa-2", ""),
					jwk(fx.ec, NULL, "")));
	assert_int_equal(jwks_count(two), 3);
	const char *t = token_signed(fx.rsa, "{\"alg\":\"RS256\"}", claims);
	refused_with(two, t, strlen(t), &want, -EACCES, "2 RS256 keys: the key is ambiguous");
	accepted_with(two, token_signed(fx.rsa_other, "{\"alg\":\"RS256\",\"kid\":\"rsa-2\"}", claims), &want);
	accepted_with(two, token_signed(fx.ec, "{\"alg\":\"ES256\"}", claims), &want);
	/* A kid that only the token has finds nothing, even with one key. */
	t = token_signed(fx.ec, "{\"alg\":\"ES256\",\"kid\":\"ec-1\"}", claims);
	refused_with(two, t, strlen(t), &want, -ENOKEY, "kid 'ec-1'");
	jwks_free(two);
	/* No key of that type at all. */
	struct jwks *rsa_only = parse_ok(fmt("{\"keys\":[%s]}", jwk(fx.rsa, "rsa-1", "")));
	t = token_signed(fx.ec, "{\"alg\":\"ES256\"}", claims);
	refused_with(rsa_only, t, strlen(t), &want, -ENOKEY, "no ES256 key");
	jwks_free(rsa_only);
	/* An empty set parses, and nothing verifies. */
	struct jwks *none = parse_ok("{\"keys\":[]}");
	assert_int_equal(jwks_count(none), 0);
	t = rs_token(claims);
	refused_with(none, t, strlen(t), &want, -ENOKEY, "kid 'rsa-1'");
	jwks_free(none);
}

/* --- encodings --- */

static void test_encoding(void **state)
{
	const char *good = rs_token(claims_with(""));
	accepted(good);
	size_t n = strlen(good);
	const char *dot1 = strchr(good, '.'), *dot2 = strrchr(good, '.');
	/* Characters to add to a part to make its length 1 mod 4. */
	int header_extra = (int)((5 - (size_t)(dot1 - good) % 4) % 4), sig_extra = (int)((5 - strlen(dot2 + 1) % 4) % 4);
	header_extra = header_extra ? header_extra : 4;
	sig_extra = sig_extra ? sig_extra : 4;
	struct {
		const char *token;
		int code;
		const char *needle;
	} cases[] = {
		{ fmt("%s=", good), -EBADMSG, "0x3d" },
		{ fmt("%.*s=%s", (int)(dot1 - good), good, dot1), -EBADMSG, "0x3d" },
		{ fmt("%s.%s", good, "AAAA"), -EBADMSG, "more than three parts" },
		{ fmt("%.*s", (int)(dot2 - good), good), -EBADMSG, "2 parts" },
		{ fmt("%s.", good), -EBADMSG, "more than three parts" },
		{ fmt(".%s", dot1 + 1), -EBADMSG, "empty header" },
		{ fmt("%.*s.%s", (int)(dot1 - good), good, dot2), -EBADMSG, "empty payload" },
		{ fmt("%.*s.", (int)(dot2 - good), good), -EBADMSG, "empty signature" },
		{ "..", -EBADMSG, "empty header" },
		{ fmt(" %s", good), -EBADMSG, "0x20" },
		{ fmt("%s\n", good), -EBADMSG, "0x0a" },
		{ fmt("%.*s %s", 10, good, good + 10), -EBADMSG, "offset 10" },
		{ fmt("%.*s+%s", 10, good, good + 11), -EBADMSG, "0x2b" },
		{ fmt("%.*s/%s", 10, good, good + 11), -EBADMSG, "0x2f" },
		{ fmt("%.*s\xc3\xa9%s", 10, good, good + 12), -EBADMSG, "0xc3" },
		{ fmt("Bearer %s", good), -EBADMSG, "0x20" },
		/* A part of 1 mod 4 characters carries 6 bits: no encoder makes it. */
		{ fmt("%.*s%.*s%s", (int)(dot1 - good), good, header_extra, "AAAA", dot1), -EBADMSG,
		  "header is not strict base64url" },
		{ fmt("%s%.*s", good, sig_extra, "AAAA"), -EBADMSG, "signature is not strict base64url" },
		{ fmt("%sAAAA", good), -EBADMSG, "signature is 259 bytes, not the 256" },
		{ fmt("%.*sA%s", (int)(dot2 - good), good, dot2), -EACCES, "signature does not verify" },
		{ "", -EBADMSG, "empty" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		refused(cases[i].token, cases[i].code, cases[i].needle);
	/* A NUL inside: n says where the token ends, not the NUL. */
	char *nul = fmt("%s", good);
	nul[20] = '\0';
	refused_with(fx.keys, nul, n, &want, -EBADMSG, "0x00");
	/* Unused bits set in the last character of the signature (256 bytes:
	 * 342 characters, the last carrying 2 bits and 4 unused). */
	char *bits = fmt("%s", good);
	char *last = bits + n - 1;
	const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	int v = (int)(strchr(alphabet, *last) - alphabet);
	assert_int_equal(v & 15, 0);
	*last = alphabet[v | 1];
	refused(bits, -EBADMSG, "signature is not strict base64url");
	/* The same in the header: {"alg":"RS256"} and a space are 16 bytes,
	 * 22 characters, the last with 4 unused bits. */
	const char *hdr = b64s("{\"alg\":\"RS256\"} ");
	assert_int_equal(strlen(hdr), 22);
	v = (int)(strchr(alphabet, hdr[21]) - alphabet);
	assert_int_equal(v & 15, 0);
	accepted(token_signed(fx.rsa, "{\"alg\":\"RS256\"} ", claims_with("")));
	char *hdr_bits = fmt("%.21s%c%s", hdr, alphabet[v | 1], dot1);
	refused(hdr_bits, -EBADMSG, "header is not strict base64url");
}

static void test_oversize(void **state)
{
	char *big = malloc(JWT_MAX_SIZE + 2);
	assert_non_null(big);
	memset(big, 'A', JWT_MAX_SIZE + 1);
	big[JWT_MAX_SIZE + 1] = '\0';
	/* Refused by size before anything is looked at. */
	refused_with(fx.keys, big, JWT_MAX_SIZE + 1, &want, -E2BIG, "16385 bytes");
	char kid[128];
	assert_int_equal(jwt_header_kid(big, JWT_MAX_SIZE + 1, kid, sizeof(kid), NULL), -E2BIG);
	refused_with(fx.keys, big, SIZE_MAX, &want, -E2BIG, "more than");
	free(big);
	/* A token just under the cap verifies. */
	const char *head = b64s(HDR_RS);
	size_t sig_chars = 342, fixed = strlen(head) + 2 + sig_chars;
	size_t payload_chars = (JWT_MAX_SIZE - fixed) / 4 * 4;
	size_t claims_len = payload_chars / 4 * 3;
	char *filler = malloc(claims_len);
	const char *start = claims_with(",\"pad\":\"");
	size_t start_len = strlen(start) - 1; /* without the closing brace */
	memcpy(filler, start, start_len);
	memset(filler + start_len, 'p', claims_len - start_len - 2);
	memcpy(filler + claims_len - 2, "\"}", 2);
	char *claims = fmt("%.*s", (int)claims_len, filler);
	free(filler);
	const char *t = rs_token(claims);
	assert_true(strlen(t) <= JWT_MAX_SIZE);
	assert_true(strlen(t) > JWT_MAX_SIZE - 8);
	accepted(t);
}

/* --- the header alone --- */

static void test_header_kid(void **state)
{
	char kid[128];
	struct error err = { 0 };
	const char *t = rs_token(claims_with(""));
	assert_int_equal(jwt_header_kid(t, strlen(t), kid, sizeof(kid), &err), 0);
	assert_string_equal(kid, "rsa-1");
	t = token_signed(fx.rsa, "{\"alg\":\"RS256\"}", claims_with(""));
	memset(kid, 'x', sizeof(kid));
	assert_int_equal(jwt_header_kid(t, strlen(t), kid, sizeof(kid), &err), 0);
	assert_string_equal(kid, "");
	/* Nothing is verified: a kid nobody knows and a bad signature. */
	t = fmt("%s.%s.AAAA", b64s("{\"alg\":\"ES256\",\"kid\":\"rotated-2024\"}"), b64s("{}"));
	assert_int_equal(jwt_header_kid(t, strlen(t), kid, sizeof(kid), &err), 0);
	assert_string_equal(kid, "rotated-2024");
	assert_int_equal(jwt_header_kid(t, strlen(t), kid, 12, &err), -ERANGE);
	assert_int_equal(jwt_header_kid(t, strlen(t), kid, 13, &err), 0);
	assert_int_equal(jwt_header_kid(t, strlen(t), kid, 0, NULL), -EINVAL);
	/* Every header check applies. */
	t = fmt("%s.%s.AAAA", b64s("{\"alg\":\"ES256\",\"kid\":\"k\",\"jku\":\"https://x\"}"), b64s("{}"));
	assert_int_equal(jwt_header_kid(t, strlen(t), kid, sizeof(kid), NULL), -EKEYREJECTED);
	t = fmt("%s.%s.AAAA", b64s("{\"alg\":\"ES256\",\"kid\":\"k\",\"kid\":\"j\"}"), b64s("{}"));
	assert_int_equal(jwt_header_kid(t, strlen(t), kid, sizeof(kid), NULL), -EBADMSG);
	t = fmt("%s.%s", b64s("{\"alg\":\"ES256\",\"kid\":\"k\"}"), b64s("{}"));
	assert_int_equal(jwt_header_kid(t, strlen(t), kid, sizeof(kid), NULL), -EBADMSG);
}

/* --- JWKS documents --- */

static void test_jwks_form(void **state)
{
	const char *docs[] = { "[]", "\"keys\"", "", "{", "{\"keys\":{}}", "{\"keys\":null}", "{\"key\":[]}",
			       "{\"keys\":[1]}", "{\"keys\":[[]]}", "{\"keys\":[],\"keys\":[]}", "{\"keys\":[]} {}" };
	for (size_t i = 0; i < ARRAY_SIZE(docs); i++)
		parse_refused(docs[i], strlen(docs[i]), -EBADMSG, "JWKS");
	const char *deep = "{\"keys\":[{\"a\":[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]}]}";
	parse_refused(deep, strlen(deep), -EBADMSG, "deeper");
	struct jwks *keys = NULL;
	assert_int_equal(jwks_parse(NULL, 0, &keys, NULL), -EINVAL);
	jwks_free(NULL);
	assert_int_equal(jwks_count(NULL), 0);

	/* Caps: bytes, then keys. */
	char *big = malloc(JWKS_MAX_SIZE + 1);
	memset(big, ' ', JWKS_MAX_SIZE + 1);
	memcpy(big, "{\"keys\":[]}", 11);
	parse_refused(big, JWKS_MAX_SIZE + 1, -E2BIG, "262145 bytes");
	keys = NULL;
	assert_int_equal(jwks_parse(big, JWKS_MAX_SIZE, &keys, NULL), 0);
	jwks_free(keys);
	free(big);
	char *many = fmt("{\"keys\":[%s", "{\"kty\":\"oct\",\"k\":\"AA\"}");
	for (int i = 1; i < JWKS_MAX_KEYS; i++)
		many = fmt("%s,{\"kty\":\"oct\",\"k\":\"AA\"}", many);
	keys = parse_ok(fmt("%s]}", many));
	assert_int_equal(jwks_count(keys), 0);
	jwks_free(keys);
	char *too_many = fmt("%s,%s]}", many, jwk(fx.rsa, "rsa-1", ""));
	parse_refused(too_many, strlen(too_many), -E2BIG, "65 keys");
}

/* The set parses with rsa-1 usable and the entry skipped; a token naming
 * the skipped kid gets -ENOKEY with why. Returns what jwks_skipped said. */
static size_t skipped_entry(const char *entry, const char *kid, const char *why_needle, char *why, size_t size)
{
	struct jwks *keys = parse_ok(fmt("{\"keys\":[%s,%s]}", entry, jwk(fx.rsa, "rsa-1", "")));
	assert_int_equal(jwks_count(keys), 1);
	accepted_with(keys, rs_token(claims_with("")), &want);
	size_t n = jwks_skipped(keys, why, size);
	const char *t = token_signed(fx.rsa, fmt("{\"alg\":\"RS256\",\"kid\":\"%s\"}", kid), claims_with(""));
	refused_with(keys, t, strlen(t), &want, -ENOKEY, "was skipped");
	refused_with(keys, t, strlen(t), &want, -ENOKEY, why_needle);
	jwks_free(keys);
	return n;
}

static void test_jwks_skipped(void **state)
{
	char why[256];
	/* Malformed RSA and EC keys: skipped and counted. */
	assert_int_equal(skipped_entry(jwk(fx.rsa_small, "small", ""), "small", "1024 bits", why, sizeof(why)), 1);
	assert_non_null(strstr(why, "key 0 'small': RSA modulus of 1024 bits"));
	/* A point off the curve: y + 1 (mod nothing: just another number). */
	BIGNUM *y = NULL;
	assert_int_equal(EVP_PKEY_get_bn_param(fx.ec, OSSL_PKEY_PARAM_EC_PUB_Y, &y), 1);
	assert_int_equal(BN_add_word(y, 1), 1);
	uint8_t ybuf[32];
	assert_int_equal(BN_bn2binpad(y, ybuf, 32), 32);
	BN_free(y);
	const char *off = fmt("{\"kid\":\"off\",\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}",
			      bn_b64(fx.ec, OSSL_PKEY_PARAM_EC_PUB_X, 32), b64(ybuf, 32));
	assert_int_equal(skipped_entry(off, "off", "not on P-256", why, sizeof(why)), 1);
	/* Coordinates of the wrong length, even when the number is right. */
	const char *x = bn_b64(fx.ec, OSSL_PKEY_PARAM_EC_PUB_X, 32), *yy = bn_b64(fx.ec, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
	uint8_t x33[33] = { 0 };
	BIGNUM *xb = NULL;
	assert_int_equal(EVP_PKEY_get_bn_param(fx.ec, OSSL_PKEY_PARAM_EC_PUB_X, &xb), 1);
	assert_int_equal(BN_bn2binpad(xb, x33 + 1, 32), 32);
	BN_free(xb);
	assert_int_equal(skipped_entry(fmt("{\"kid\":\"x33\",\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}",
					   b64(x33, 33), yy),
				       "x33", "32 bytes", why, sizeof(why)),
			 1);
	/* Too short: a leading zero dropped, as some encoders of numbers do. */
	assert_int_equal(skipped_entry(fmt("{\"kid\":\"x31\",\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}",
					   b64(x33 + 2, 31), yy),
				       "x31", "coordinate x is missing, not strict base64url or not 32 bytes", why, sizeof(why)),
			 1);
	assert_int_equal(skipped_entry(fmt("{\"kid\":\"noy\",\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\"}", x), "noy",
				       "coordinate y", why, sizeof(why)),
			 1);
	assert_int_equal(skipped_entry(fmt("{\"kid\":\"nocrv\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", x, yy), "nocrv",
				       "crv", why, sizeof(why)),
			 1);
	/* The point at infinity has no affine form; all zeros is off the curve. */
	uint8_t zero[32] = { 0 };
	assert_int_equal(skipped_entry(fmt("{\"kid\":\"zero\",\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}",
					   b64(zero, 32), b64(zero, 32)),
				       "zero", "not on P-256", why, sizeof(why)),
			 1);
	/* RSA: bad base64url, small exponents, an even modulus, private parts. */
	const char *n = bn_b64(fx.rsa_other, OSSL_PKEY_PARAM_RSA_N, 0);
	assert_int_equal(skipped_entry(fmt("{\"kid\":\"pad\",\"kty\":\"RSA\",\"n\":\"%s=\",\"e\":\"AQAB\"}", n), "pad",
				       "modulus n", why, sizeof(why)),
			 1);
	assert_int_equal(skipped_entry(fmt("{\"kid\":\"e3\",\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"Aw\"}", n), "e3",
				       "exponent 3", why, sizeof(why)),
			 1);
	assert_int_equal(skipped_entry(fmt("{\"kid\":\"e0\",\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AA\"}", n), "e0",
				       "exponent e", why, sizeof(why)),
			 1);
	assert_int_equal(skipped_entry(fmt("{\"kid\":\"even\",\"kty\":\"RSA\",\"n\":\"%.340sAA\",\"e\":\"AQAB\"}", n),
				       "even", "even", why, sizeof(why)),
			 1);
	assert_int_equal(skipped_entry(jwk(fx.rsa_other, "priv", ",\"d\":\"AQAB\""), "priv", "private parameter d", why,
				       sizeof(why)),
			 1);
	assert_int_equal(skipped_entry(fmt("{\"kid\":\"nokty\",\"n\":\"%s\",\"e\":\"AQAB\"}", n), "nokty", "kty", why,
				       sizeof(why)),
			 1);
	/* A leading zero byte in n is tolerated (the same number). */
	BIGNUM *nb = NULL;
	assert_int_equal(EVP_PKEY_get_bn_param(fx.rsa_other, OSSL_PKEY_PARAM_RSA_N, &nb), 1);
	uint8_t n257[257] = { 0 };
	assert_int_equal(BN_bn2binpad(nb, n257 + 1, 256), 256);
	BN_free(nb);
	struct jwks *keys = parse_ok(fmt("{\"keys\":[{\"kid\":\"z\",\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AAEAAQ\"}]}",
					 b64(n257, 257)));
	assert_int_equal(jwks_count(keys), 1);
	accepted_with(keys, token_signed(fx.rsa_other, "{\"alg\":\"RS256\",\"kid\":\"z\"}", claims_with("")), &want);
	jwks_free(keys);

	/* Unsupported entries: skipped, not counted as malformed. */
	struct {
		const char *entry, *kid, *needle;
	} unsupported[] = {
		{ "{\"kid\":\"hmac\",\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}", "hmac", "kty 'oct'" },
		{ "{\"kid\":\"ed\",\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}",
		  "ed", "kty 'OKP'" },
		{ fmt("{\"kid\":\"p384\",\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"%s\",\"y\":\"%s\"}", x, yy), "p384",
		  "curve 'P-384'" },
		{ jwk(fx.rsa_other, "enc", ",\"use\":\"enc\""), "enc", "use is 'enc'" },
		{ jwk(fx.rsa_other, "rs512", ",\"alg\":\"RS512\""), "rs512", "alg is 'RS512'" },
		{ jwk(fx.rsa_other, "ps256", ",\"alg\":\"PS256\""), "ps256", "alg is 'PS256'" },
		{ jwk(fx.ec_other, "ecrs", ",\"alg\":\"RS256\""), "ecrs", "alg is 'RS256'" },
		{ jwk(fx.rsa_other, "ops", ",\"key_ops\":[\"encrypt\"]"), "ops", "key_ops" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(unsupported); i++)
		assert_int_equal(skipped_entry(unsupported[i].entry, unsupported[i].kid, unsupported[i].needle, why,
					       sizeof(why)),
				 0);
	assert_string_equal(why, "");

	/* use sig, key_ops with verify and a matching alg are all fine. */
	keys = parse_ok(fmt("{\"keys\":[%s,%s]}", jwk(fx.rsa, "rsa-1", ",\"use\":\"sig\",\"alg\":\"RS256\""),
			    jwk(fx.ec, "ec-1", ",\"key_ops\":[\"verify\"],\"alg\":\"ES256\",\"use\":\"sig\"")));
	assert_int_equal(jwks_count(keys), 2);
	assert_int_equal(jwks_skipped(keys, NULL, 0), 0);
	accepted_with(keys, rs_token(claims_with("")), &want);
	accepted_with(keys, token_signed(fx.ec, HDR_ES, claims_with("")), &want);
	jwks_free(keys);
	/* Malformed entries count in order. */
	keys = parse_ok(fmt("{\"keys\":[%s,%s,%s]}", jwk(fx.rsa_small, NULL, ""), off, jwk(fx.rsa, "rsa-1", "")));
	assert_int_equal(jwks_skipped(keys, why, sizeof(why)), 2);
	assert_non_null(strstr(why, "key 0: RSA modulus of 1024 bits"));
	jwks_free(keys);
}

static void test_jwks_duplicate_kid(void **state)
{
	const char *doc = fmt("{\"keys\":[%s,%s]}", jwk(fx.rsa, "same", ""), jwk(fx.ec, "same", ""));
	parse_refused(doc, strlen(doc), -EBADMSG, "two signing keys with kid 'same'");
	doc = fmt("{\"keys\":[%s,%s]}", jwk(fx.rsa, "same", ""), jwk(fx.rsa, "same", ""));
	parse_refused(doc, strlen(doc), -EBADMSG, "kid 'same'");
	/* A malformed key with the same kid makes the choice ambiguous too. */
	doc = fmt("{\"keys\":[%s,%s]}", jwk(fx.rsa_small, "same", ""), jwk(fx.rsa, "same", ""));
	parse_refused(doc, strlen(doc), -EBADMSG, "kid 'same'");
	doc = fmt("{\"keys\":[%s,%s]}", jwk(fx.rsa, "same", ""), jwk(fx.rsa_other, "same", ",\"alg\":\"RS512\""));
	parse_refused(doc, strlen(doc), -EBADMSG, "kid 'same'");
	/* Keys that are not for signatures may share a kid (RFC 7517 §4.5). */
	struct jwks *keys = parse_ok(fmt("{\"keys\":[%s,%s,{\"kid\":\"same\",\"kty\":\"oct\",\"k\":\"AA\"}]}",
					 jwk(fx.rsa, "same", ""), jwk(fx.rsa_other, "same", ",\"use\":\"enc\"")));
	assert_int_equal(jwks_count(keys), 1);
	accepted_with(keys, token_signed(fx.rsa, "{\"alg\":\"RS256\",\"kid\":\"same\"}", claims_with("")), &want);
	jwks_free(keys);
	/* Keys without a kid do not collide. */
	keys = parse_ok(fmt("{\"keys\":[%s,%s]}", jwk(fx.rsa, NULL, ""), jwk(fx.rsa_other, NULL, "")));
	assert_int_equal(jwks_count(keys), 2);
	jwks_free(keys);
	/* A malformed kid. */
	keys = parse_ok(fmt("{\"keys\":[%s,%s]}", jwk(fx.rsa, "rsa-1", ""), jwk(fx.rsa_other, "bad\\u0001kid", "")));
	assert_int_equal(jwks_count(keys), 1);
	char why[256];
	assert_int_equal(jwks_skipped(keys, why, sizeof(why)), 1);
	assert_non_null(strstr(why, "kid is not a string"));
	jwks_free(keys);
}

/* --- RFC 7515 appendix A: someone else's tokens --- */

static const char rfc_claims_b64[] =
	"eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";

static const char rfc_a2_jwks[] =
	"{\"keys\":[{\"kty\":\"RSA\",\"n\":\"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPM"
	"EzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KX"
	"BdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs9"
	"1kzk2PAcDTW9gb54h4FRWyuXpoQ\",\"e\":\"AQAB\"}]}";

static const char rfc_a2_signature[] =
	"cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZ"
	"cAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-"
	"eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";

static const char rfc_a3_jwks[] = "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\","
				  "\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
				  "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}]}";

static const char rfc_a3_signature[] = "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";

static void rfc_vector(const char *jwks_doc, const char *header_b64, const char *signature, const char *alg)
{
	const struct jwt_expect joe = { .issuer = "joe", .audience = NULL, .now = 1300819000, .skew = 0 };
	struct jwks *keys = parse_ok(jwks_doc);
	assert_int_equal(jwks_count(keys), 1);
	const char *t = fmt("%s.%s.%s", header_b64, rfc_claims_b64, signature);
	struct jwt_claims c = accepted_with(keys, t, &joe);
	assert_string_equal(c.alg, alg);
	assert_string_equal(c.kid, "");
	assert_string_equal(c.iss, "joe");
	assert_string_equal(c.sub, "");
	assert_int_equal(c.exp, 1300819380);
	/* Its exp is 2011-03-22T18:43:00Z. */
	struct jwt_expect later = joe;
	later.now = 1300819380;
	refused_with(keys, t, strlen(t), &later, -EKEYEXPIRED, "expired 0 s ago");
	later.now = 1300819379;
	accepted_with(keys, t, &later);
	/* It is not for our issuer, nor for any audience. */
	refused_with(keys, t, strlen(t), &(struct jwt_expect){ .issuer = "jo", .now = joe.now }, -EACCES, "iss");
	refused_with(keys, t, strlen(t), &(struct jwt_expect){ .issuer = "joe", .audience = AUD, .now = joe.now }, -EACCES,
		     "no aud");
	/* A change of one character in the claims breaks it. */
	char *tampered = fmt("%s", t);
	char *claims = strchr(tampered, '.') + 1;
	claims[3] = claims[3] == 'A' ? 'B' : 'A';
	refused_with(keys, tampered, strlen(tampered), &joe, -EACCES, "signature does not verify");
	jwks_free(keys);
}

static void test_rfc7515_a2_rs256(void **state)
{
	rfc_vector(rfc_a2_jwks, "eyJhbGciOiJSUzI1NiJ9", rfc_a2_signature, "RS256");
}

static void test_rfc7515_a3_es256(void **state)
{
	rfc_vector(rfc_a3_jwks, "eyJhbGciOiJFUzI1NiJ9", rfc_a3_signature, "ES256");
	/* The RSA example's signature under the EC key, and the other way round. */
	struct jwks *keys = parse_ok(rfc_a3_jwks);
	const char *t = fmt("eyJhbGciOiJSUzI1NiJ9.%s.%s", rfc_claims_b64, rfc_a2_signature);
	refused_with(keys, t, strlen(t), &(struct jwt_expect){ .issuer = "joe", .now = 1300819000 }, -ENOKEY,
		     "no RS256 key");
	jwks_free(keys);
}

/* --- threads --- */

#define THREADS 4
#define ROUNDS 200

struct thread_work {
	const char *good_rs, *good_es, *bad;
	int failures;
};

static void *verify_loop(void *arg)
{
	struct thread_work *w = arg;
	for (int i = 0; i < ROUNDS; i++) {
		const char *t = i % 3 == 0 ? w->good_es : i % 3 == 1 ? w->good_rs : w->bad;
		struct jwt_claims c;
		struct error err = { 0 };
		int r = jwt_verify(fx.keys, t, strlen(t), &want, &c, &err);
		int expect = t == w->bad ? -EACCES : 0;
		if (r != expect || (r == 0 && strcmp(c.alg, t == w->good_es ? "ES256" : "RS256") != 0))
			w->failures++;
	}
	return NULL;
}

static void test_threads(void **state)
{
	const char *claims = claims_with("");
	pthread_t threads[THREADS];
	struct thread_work work[THREADS];
	for (int i = 0; i < THREADS; i++) {
		work[i] = (struct thread_work){ .good_rs = rs_token(claims), .good_es = token_signed(fx.ec, HDR_ES, claims),
						.bad = token_signed(fx.rsa_other, HDR_RS, claims) };
		assert_int_equal(pthread_create(&threads[i], NULL, verify_loop, &work[i]), 0);
	}
	int failures = 0;
	for (int i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(threads[i], NULL), 0);
		failures += work[i].failures;
	}
	assert_int_equal(failures, 0);
}

/* --- arguments and OpenSSL's error queue --- */

static void test_arguments(void **state)
{
	const char *t = rs_token(claims_with(""));
	refused_with(NULL, t, strlen(t), &want, -EINVAL, NULL);
	refused_with(fx.keys, t, strlen(t), NULL, -EINVAL, NULL);
	refused_with(fx.keys, t, strlen(t), &(struct jwt_expect){ .audience = AUD, .now = NOW }, -EINVAL, NULL);
	refused_with(fx.keys, t, strlen(t), &(struct jwt_expect){ .issuer = ISS, .now = NOW, .skew = -1 }, -EINVAL, "skew");
	refused_with(fx.keys, t, strlen(t), &(struct jwt_expect){ .issuer = ISS, .now = NOW, .skew = JWT_SKEW_MAX + 1 },
		     -EINVAL, "skew");
	refused_with(fx.keys, t, strlen(t), &(struct jwt_expect){ .issuer = ISS, .now = -5 }, -EINVAL, "time");
	accepted_with(fx.keys, t, &(struct jwt_expect){ .issuer = ISS, .audience = AUD, .now = NOW, .skew = JWT_SKEW_MAX });
	/* The first error is kept: a caller's earlier message survives. */
	struct error err = { 0 };
	error_set(&err, -EIO, "earlier");
	assert_int_equal(jwt_verify(fx.keys, "x", 1, &want, NULL, &err), -EBADMSG);
	assert_string_equal(err.msg, "earlier");
}

static void test_openssl_error_queue(void **state)
{
	ERR_clear_error();
	ERR_raise_data(ERR_LIB_USER, 42, "mark");
	unsigned long before = ERR_peek_last_error();
	const char *claims = claims_with("");
	refused(token_signed(fx.rsa_other, HDR_RS, claims), -EACCES, NULL);
	refused(token_signed(fx.ec_other, HDR_ES, claims), -EACCES, NULL);
	accepted(rs_token(claims));
	struct jwks *keys = NULL;
	const char *doc = fmt("{\"keys\":[{\"kid\":\"zero\",\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}]}",
			      b64("\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 32),
			      b64("\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 32));
	assert_int_equal(jwks_parse(doc, strlen(doc), &keys, NULL), 0);
	assert_int_equal(jwks_count(keys), 0);
	jwks_free(keys);
	assert_int_equal(ERR_peek_last_error(), before);
	ERR_clear_error();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rs256_valid),
		cmocka_unit_test(test_es256_valid),
		cmocka_unit_test(test_typ),
		cmocka_unit_test(test_aud),
		cmocka_unit_test(test_expired),
		cmocka_unit_test(test_not_before),
		cmocka_unit_test(test_issued_in_future),
		cmocka_unit_test(test_time_forms),
		cmocka_unit_test(test_issuer),
		cmocka_unit_test(test_subject),
		cmocka_unit_test(test_claims_form),
		cmocka_unit_test(test_claims_duplicates),
		cmocka_unit_test(test_alg_none),
		cmocka_unit_test(test_hs256_key_confusion),
		cmocka_unit_test(test_algorithm_confusion),
		cmocka_unit_test(test_header_form),
		cmocka_unit_test(test_signature_tampered),
		cmocka_unit_test(test_signature_other_key),
		cmocka_unit_test(test_signature_sizes),
		cmocka_unit_test(test_kid_selection),
		cmocka_unit_test(test_encoding),
		cmocka_unit_test(test_oversize),
		cmocka_unit_test(test_header_kid),
		cmocka_unit_test(test_jwks_form),
		cmocka_unit_test(test_jwks_skipped),
		cmocka_unit_test(test_jwks_duplicate_kid),
		cmocka_unit_test(test_rfc7515_a2_rs256),
		cmocka_unit_test(test_rfc7515_a3_es256),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_arguments),
		cmocka_unit_test(test_openssl_error_queue),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
