/*
 * Unit tests for jwks_cache.c's verified-token cache: each tenant's keys come
 * from a test HTTP server (http_testserver.h), tokens are ES256 (fast to
 * make), and the counters say whether a verify was answered from the cache
 * or checked in full. They cover: a second use is a hit with the same
 * claims; a cached token expires at the same second as a fresh verify would
 * say, and its nbf and iat hold as well; a token of tenant A never answers
 * for tenant B; a refetch of the keys drops the cache (a removed key's
 * tokens are refused at once); and the bound (oldest first out, the index
 * intact after many evictions).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include "http_testserver.h"
#include "jwks_cache.h"

#define NOW INT64_C(1800000000)
#define SKEW 60
#define MAX_AGE 600

static struct {
	struct testserver idp;
	EVP_PKEY *key_a, *key_a2, *key_b;
	pthread_mutex_t lock;
	bool a_rotated;  /* /a/jwks serves key_a2 alone instead of key_a */
	struct scheduler_config cfg;
	struct scheduler_tenant tenants[2];
	char *urls[2];
} fx;

static void b64url(const uint8_t *in, size_t n, char *out)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
		out[o++] = t[v >> 18 & 63];
		out[o++] = t[v >> 12 & 63];
		if (i + 1 < n)
			out[o++] = t[v >> 6 & 63];
		if (i + 2 < n)
			out[o++] = t[v & 63];
	}
	out[o] = '\0';
}

static void coord(EVP_PKEY *key, const char *name, char out[64])
{
	BIGNUM *bn = NULL;
	uint8_t b[32];
	assert_int_equal(EVP_PKEY_get_bn_param(key, name, &bn), 1);
	assert_int_equal(BN_bn2binpad(bn, b, 32), 32);
	BN_free(bn);
	b64url(b, 32, out);
}

static void jwk_append(struct buf *b, EVP_PKEY *key, const char *kid)
{
	char x[64], y[64];
	coord(key, OSSL_PKEY_PARAM_EC_PUB_X, x);
	coord(key, OSSL_PKEY_PARAM_EC_PUB_Y, y);
	buf_printf(b, "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"}", kid, x, y);
}

static enum testserver_action serve_jwks(const struct testserver_request *req, struct buf *response, void *userdata)
{
	struct buf doc;
	buf_init(&doc, 4096);
	pthread_mutex_lock(&fx.lock);
	buf_printf(&doc, "{\"keys\":[");
	if (strcmp(req->target, "/a/jwks") == 0)
		jwk_append(&doc, fx.a_rotated ? fx.key_a2 : fx.key_a, fx.a_rotated ? "a2" : "a");
	else
		jwk_append(&doc, fx.key_b, "b");
	buf_printf(&doc, "]}");
	pthread_mutex_unlock(&fx.lock);
	testserver_reply(response, 200, "application/json", doc.data);
	buf_free(&doc);
	return TESTSERVER_ANSWER;
}

/* An ES256 token of issuer iss signed by key with kid, with extra claims (",\"nbf\":..."). */
static char *token(EVP_PKEY *key, const char *kid, const char *iss, int64_t exp, const char *extra)
{
	static unsigned serial;
	char header[128], claims[512], h64[256], c64[768];
	snprintf(header, sizeof(header), "{\"alg\":\"ES256\",\"kid\":\"%s\"}", kid);
	snprintf(claims, sizeof(claims), "{\"iss\":\"%s\",\"aud\":\"hpcc\",\"sub\":\"alice\",\"exp\":%lld,\"jti\":\"%u\"%s}",
		 iss, (long long)exp, serial++, extra);
	b64url((const uint8_t *)header, strlen(header), h64);
	b64url((const uint8_t *)claims, strlen(claims), c64);
	struct buf t;
	buf_init(&t, 4096);
	buf_printf(&t, "%s.%s", h64, c64);
	uint8_t der[80], raw[64];
	size_t der_len = sizeof(der);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	assert_non_null(ctx);
	assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key), 1);
	assert_int_equal(EVP_DigestSign(ctx, der, &der_len, (const uint8_t *)t.data, t.len), 1);
	EVP_MD_CTX_free(ctx);
	const uint8_t *p = der;
	ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
	assert_non_null(sig);
	assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(sig), raw, 32), 32);
	assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(sig), raw + 32, 32), 32);
	ECDSA_SIG_free(sig);
	char s64[128];
	b64url(raw, sizeof(raw), s64);
	buf_printf(&t, ".%s", s64);
	return buf_steal(&t);
}

/* The cache times its fetches on its own clock; here that clock follows the `now` of each call. */
static int64_t fake_now;
static int64_t fake_clock(void) { return fake_now; }

static int verify(struct jwks_cache *c, size_t tenant, const char *tok, int64_t now, struct jwt_claims *ret)
{
	fake_now = now;
	struct error err = { 0 };
	return jwks_cache_verify(c, tenant, tok, strlen(tok), now, ret, &err);
}

static uint64_t hits0, verifies0;

/* Hits and full verifies since the last call (or since cache_new). */
static void counts_since(struct jwks_cache *c, uint64_t want_hits, uint64_t want_verifies)
{
	uint64_t hits, verifies;
	jwks_cache_token_counts(c, &hits, &verifies);
	assert_int_equal(hits - hits0, want_hits);
	assert_int_equal(verifies - verifies0, want_verifies);
	hits0 = hits;
	verifies0 = verifies;
}

static struct jwks_cache *cache_new(void)
{
	pthread_mutex_lock(&fx.lock);
	fx.a_rotated = false;
	pthread_mutex_unlock(&fx.lock);
	struct jwks_cache *c = NULL;
	assert_int_equal(jwks_cache_new(&fx.cfg, &c), 0);
	jwks_cache_set_clock(c, fake_clock);
	hits0 = verifies0 = 0;
	counts_since(c, 0, 0);
	return c;
}

static int group_setup(void **state)
{
	pthread_mutex_init(&fx.lock, NULL);
	fx.key_a = EVP_EC_gen("P-256");
	fx.key_a2 = EVP_EC_gen("P-256");
	fx.key_b = EVP_EC_gen("P-256");
	if (!fx.key_a || !fx.key_a2 || !fx.key_b || testserver_start(&fx.idp, serve_jwks, NULL) < 0)
		return -1;
	const char *ids[] = { "a", "b" };
	for (int i = 0; i < 2; i++) {
		fx.urls[i] = testserver_url(&fx.idp, i == 0 ? "/a/jwks" : "/b/jwks");
		fx.tenants[i] = (struct scheduler_tenant){ .id = (char *)ids[i],
							   .issuer = (char *)(i == 0 ? "https://idp-a" : "https://idp-b"),
							   .jwks_url = fx.urls[i], .token_url = fx.urls[i],
							   .audience = (char *)"hpcc" };
	}
	fx.cfg = (struct scheduler_config){ .clock_skew = SKEW, .jwks_max_age = MAX_AGE, .jwks_min_interval = 10,
					    .allow_insecure_idp = true, .tenants = fx.tenants, .n_tenants = 2 };
	return 0;
}

static int group_teardown(void **state)
{
	testserver_stop(&fx.idp);
	EVP_PKEY_free(fx.key_a);
	EVP_PKEY_free(fx.key_a2);
	EVP_PKEY_free(fx.key_b);
	free(fx.urls[0]);
	free(fx.urls[1]);
	return 0;
}

static void test_hit_same_claims(void **state)
{
	struct jwks_cache *c = cache_new();
	char *t = token(fx.key_a, "a", "https://idp-a", NOW + 300, ",\"iat\":1799999990");
	struct jwt_claims first, second;
	assert_int_equal(verify(c, 0, t, NOW, &first), 0);
	counts_since(c, 0, 1);
	memset(&second, 0x55, sizeof(second));
	assert_int_equal(verify(c, 0, t, NOW + 1, &second), 0);
	counts_since(c, 1, 0);
	assert_memory_equal(&first, &second, sizeof(first));
	assert_string_equal(second.iss, "https://idp-a");
	assert_string_equal(second.sub, "alice");
	assert_string_equal(second.kid, "a");
	assert_string_equal(second.alg, "ES256");
	assert_int_equal(second.exp, NOW + 300);

	/* One byte more or less is another token: not a hit, and refused. */
	char *flip = t + strlen(t) - 10;  /* inside the signature */
	*flip = *flip == 'A' ? 'B' : 'A';
	assert_int_equal(verify(c, 0, t, NOW, NULL), -EACCES);
	counts_since(c, 0, 1);
	free(t);
	jwks_cache_free(c);
}

/* A cached token's times hold exactly as jwt_verify checks them. */
static void test_times(void **state)
{
	struct jwks_cache *c = cache_new();
	int64_t exp = NOW + 100;
	char *t = token(fx.key_a, "a", "https://idp-a", exp, "");
	assert_int_equal(verify(c, 0, t, NOW, NULL), 0);
	assert_int_equal(verify(c, 0, t, exp + SKEW - 1, NULL), 0);
	counts_since(c, 1, 1);
	assert_int_equal(verify(c, 0, t, exp + SKEW, NULL), -EKEYEXPIRED);
	assert_int_equal(verify(c, 0, t, exp + SKEW + 50, NULL), -EKEYEXPIRED);
	counts_since(c, 0, 2);
	free(t);

	/* Not before: accepted once at its edge, then asked about an earlier moment (the clock went back). */
	char extra[64];
	snprintf(extra, sizeof(extra), ",\"nbf\":%lld", (long long)(NOW + 200));
	t = token(fx.key_a, "a", "https://idp-a", NOW + 400, extra);
	assert_int_equal(verify(c, 0, t, NOW + 200 - SKEW, NULL), 0);
	assert_int_equal(verify(c, 0, t, NOW + 200 - SKEW - 1, NULL), -EACCES);
	counts_since(c, 0, 2);
	free(t);

	snprintf(extra, sizeof(extra), ",\"iat\":%lld", (long long)(NOW + 10));
	t = token(fx.key_a, "a", "https://idp-a", NOW + 400, extra);
	assert_int_equal(verify(c, 0, t, NOW + 10 - SKEW, NULL), 0);
	assert_int_equal(verify(c, 0, t, NOW + 10 - SKEW - 1, NULL), -EACCES);
	assert_int_equal(verify(c, 0, t, NOW + 10 - SKEW, NULL), 0);
	counts_since(c, 1, 2);
	free(t);
	jwks_cache_free(c);
}

static void test_tenants_apart(void **state)
{
	struct jwks_cache *c = cache_new();
	char *t = token(fx.key_a, "a", "https://idp-a", NOW + 300, "");
	assert_int_equal(verify(c, 0, t, NOW, NULL), 0);
	assert_int_equal(verify(c, 0, t, NOW, NULL), 0);
	counts_since(c, 1, 1);
	/* Tenant b has no key "a": refused, checked in full, every time. */
	assert_int_equal(verify(c, 1, t, NOW, NULL), -ENOKEY);
	assert_int_equal(verify(c, 1, t, NOW, NULL), -ENOKEY);
	counts_since(c, 0, 2);
	free(t);
	jwks_cache_free(c);
}

/* A refetch starts an empty cache: once the IdP dropped key a, its tokens are refused even if cached. */
static void test_refetch_drops(void **state)
{
	struct jwks_cache *c = cache_new();
	char *t = token(fx.key_a, "a", "https://idp-a", NOW + 3600, "");
	assert_int_equal(verify(c, 0, t, NOW, NULL), 0);
	assert_int_equal(verify(c, 0, t, NOW + MAX_AGE - 1, NULL), 0);
	counts_since(c, 1, 1);
	pthread_mutex_lock(&fx.lock);
	fx.a_rotated = true;
	pthread_mutex_unlock(&fx.lock);
	uint64_t fetches0, fetches;
	jwks_cache_counts(c, &fetches0, NULL);
	assert_int_equal(verify(c, 0, t, NOW + MAX_AGE, NULL), -ENOKEY);
	jwks_cache_counts(c, &fetches, NULL);
	assert_true(fetches > fetches0);
	counts_since(c, 0, 1);
	char *t2 = token(fx.key_a2, "a2", "https://idp-a", NOW + 3600, "");
	assert_int_equal(verify(c, 0, t2, NOW + MAX_AGE, NULL), 0);
	assert_int_equal(verify(c, 0, t2, NOW + MAX_AGE, NULL), 0);
	counts_since(c, 1, 1);
	free(t);
	free(t2);
	jwks_cache_free(c);
}

/* At most JWKS_VERIFIED_MAX per tenant, oldest out first, the index intact after many evictions. */
static void test_bound(void **state)
{
	struct jwks_cache *c = cache_new();
	size_t n = 3 * JWKS_VERIFIED_MAX;
	char **t = calloc(n, sizeof(*t));
	assert_non_null(t);
	for (size_t i = 0; i < n; i++) {
		t[i] = token(fx.key_b, "b", "https://idp-b", NOW + 3600, "");
		assert_int_equal(verify(c, 1, t[i], NOW, NULL), 0);
	}
	counts_since(c, 0, n);
	/* The newest JWKS_VERIFIED_MAX are all there; looking them up changes nothing. */
	for (size_t i = n - JWKS_VERIFIED_MAX; i < n; i++)
		assert_int_equal(verify(c, 1, t[i], NOW, NULL), 0);
	counts_since(c, JWKS_VERIFIED_MAX, 0);
	/* The one before them is gone; verifying it again pushes out the oldest, which is then gone too. */
	assert_int_equal(verify(c, 1, t[n - JWKS_VERIFIED_MAX - 1], NOW, NULL), 0);
	counts_since(c, 0, 1);
	assert_int_equal(verify(c, 1, t[n - JWKS_VERIFIED_MAX], NOW, NULL), 0);
	counts_since(c, 0, 1);
	assert_int_equal(verify(c, 1, t[n - 1], NOW, NULL), 0);
	counts_since(c, 1, 0);
	for (size_t i = 0; i < n; i++)
		free(t[i]);
	free(t);
	jwks_cache_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hit_same_claims),
		cmocka_unit_test(test_times),
		cmocka_unit_test(test_tenants_apart),
		cmocka_unit_test(test_refetch_drops),
		cmocka_unit_test(test_bound),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
