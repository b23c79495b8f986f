/*
 * Unit tests for routing tokens (src/common/token.c): issue and verify round
 * trips, each claim check with its message, lifetimes and clock skew, tokens
 * crafted here with protobuf-c and OpenSSL directly (so that the verifier is
 * checked against the format as specified, not against its own issuer),
 * tampering, truncation and garbage, key files (modes, wrong key types,
 * encrypted keys), base64url in both directions, token files, and a fixed
 * vector made with the RFC 8032 test 1 key.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "token.h"
#include "token.pb-c.h"

#define NOW INT64_C(1700000000)
#define IMAGE_A "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define IMAGE_B "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
/* Written out here rather than taken from token.h, so that the test pins
 * the format: the context, one NUL, then the claims. */
static const char context[] = "hpcc-routing-token-v1";

/* RFC 8032 §7.1, TEST 1. */
static const char rfc_secret_hex[] = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
static const char rfc_public_hex[] = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

/* --- helpers --- */

static char *tmp_path(void **state, const char *name)
{
	char *p = NULL;
	assert_true(asprintf(&p, "%s/%s", (const char *)*state, name) > 0);
	return p;
}

static void unhex(const char *hex, uint8_t *out, size_t n)
{
	assert_int_equal(strlen(hex), 2 * n);
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
}

static struct token_claims make_claims(const char *tenant, const char *image, const char *worker, int64_t issued,
				       int64_t ttl)
{
	struct token_claims c = { .issued_at = issued, .expires_at = issued + ttl };
	snprintf(c.tenant, sizeof(c.tenant), "%s", tenant);
	snprintf(c.image_digest, sizeof(c.image_digest), "%s", image);
	snprintf(c.worker_id, sizeof(c.worker_id), "%s", worker);
	return c;
}

static struct token_claims default_claims(void) { return make_claims("acme", IMAGE_A, "worker-1", NOW, 300); }

static const struct token_expect default_expect = { "acme", IMAGE_A, "worker-1" };

static struct token_key *new_key(void)
{
	struct token_key *k = NULL;
	assert_int_equal(token_key_generate(&k), 0);
	assert_non_null(k);
	return k;
}

static EVP_PKEY *rfc_private_pkey(void)
{
	uint8_t raw[32];
	unhex(rfc_secret_hex, raw, sizeof(raw));
	EVP_PKEY *pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, raw, sizeof(raw));
	assert_non_null(pkey);
	return pkey;
}

static EVP_PKEY *rfc_public_pkey(void)
{
	uint8_t raw[32];
	unhex(rfc_public_hex, raw, sizeof(raw));
	EVP_PKEY *pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, sizeof(raw));
	assert_non_null(pkey);
	return pkey;
}

/* Writes pkey as PKCS#8 PEM (optionally encrypted) with exactly mode. */
static void write_private_pem(EVP_PKEY *pkey, const char *path, mode_t mode, const char *passphrase)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	FILE *f = fdopen(fd, "w");
	assert_non_null(f);
	int ok = passphrase ? PEM_write_PKCS8PrivateKey(f, pkey, EVP_aes_256_cbc(), NULL, 0, NULL, (void *)passphrase)
			    : PEM_write_PKCS8PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL);
	assert_int_equal(ok, 1);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static void write_public_pem(EVP_PKEY *pkey, const char *path)
{
	FILE *f = fopen(path, "we");
	assert_non_null(f);
	assert_int_equal(PEM_write_PUBKEY(f, pkey), 1);
	assert_int_equal(fclose(f), 0);
}

static char *public_pem_string(EVP_PKEY *pkey)
{
	BIO *bio = BIO_new(BIO_s_mem());
	assert_non_null(bio);
	assert_int_equal(PEM_write_bio_PUBKEY(bio, pkey), 1);
	char *data = NULL;
	long len = BIO_get_mem_data(bio, &data);
	char *s = strndup(data, (size_t)len);
	BIO_free(bio);
	assert_non_null(s);
	return s;
}

static void write_plain(const char *path, const void *data, size_t n, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, n), (ssize_t)n);
	assert_int_equal(close(fd), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static mode_t file_mode(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & 07777;
}

/* Packs claims, signs context NUL claims with OpenSSL directly and packs the
 * envelope: a token made without token.c, as a foreign issuer would. */
static void craft_token(EVP_PKEY *pkey, const Hpcc__V1__RoutingClaims *claims, struct buf *out)
{
	size_t clen = hpcc__v1__routing_claims__get_packed_size(claims);
	uint8_t *msg = malloc(sizeof(context) + clen);
	assert_non_null(msg);
	memcpy(msg, context, sizeof(context));
	hpcc__v1__routing_claims__pack(claims, msg + sizeof(context));
	uint8_t sig[64];
	size_t siglen = sizeof(sig);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	assert_non_null(ctx);
	assert_int_equal(EVP_DigestSignInit(ctx, NULL, NULL, NULL, pkey), 1);
	assert_int_equal(EVP_DigestSign(ctx, sig, &siglen, msg, sizeof(context) + clen), 1);
	EVP_MD_CTX_free(ctx);
	Hpcc__V1__RoutingToken t = HPCC__V1__ROUTING_TOKEN__INIT;
	t.claims.data = msg + sizeof(context);
	t.claims.len = clen;
	t.signature.data = sig;
	t.signature.len = siglen;
	size_t n = hpcc__v1__routing_token__get_packed_size(&t);
	uint8_t *packed = malloc(n);
	assert_non_null(packed);
	hpcc__v1__routing_token__pack(&t, packed);
	buf_reset(out);
	assert_int_equal(buf_append(out, packed, n), 0);
	free(packed);
	free(msg);
}

static uint8_t test_nonce[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };

/* Protobuf claims that are valid unless a test changes them. */
static Hpcc__V1__RoutingClaims raw_claims(int64_t issued, int64_t expires)
{
	Hpcc__V1__RoutingClaims c = HPCC__V1__ROUTING_CLAIMS__INIT;
	c.tenant = "acme";
	c.image_digest = IMAGE_A;
	c.worker_id = "worker-1";
	c.issued_at = issued;
	c.expires_at = expires;
	c.nonce.data = test_nonce;
	c.nonce.len = sizeof(test_nonce);
	c.key_id = "rfc8032";
	return c;
}

static int verify_default(const struct token_key *pub, const struct buf *t, int64_t now, struct error *err)
{
	error_clear(err);
	return token_verify(pub, t->data, t->len, &default_expect, now, NULL, err);
}

/* --- issue and verify --- */

static void test_round_trip(void **state)
{
	struct token_key *k = new_key();
	struct token_claims c = default_claims();
	struct buf t, t2;
	buf_init(&t, 0);
	buf_init(&t2, 0);
	assert_int_equal(token_issue(k, &c, &t), 0);
	assert_true(t.len > 100 && t.len <= TOKEN_MAX_SIZE);

	struct token_claims got;
	memset(&got, 0x55, sizeof(got));
	struct error err = { 0 };
	assert_int_equal(token_verify(k, t.data, t.len, &default_expect, NOW, &got, &err), 0);
	assert_int_equal(err.code, 0);
	assert_string_equal(got.tenant, "acme");
	assert_string_equal(got.image_digest, IMAGE_A);
	assert_string_equal(got.worker_id, "worker-1");
	assert_int_equal(got.issued_at, NOW);
	assert_int_equal(got.expires_at, NOW + 300);
	/* An empty key_id is filled with the key's own id. */
	char id[TOKEN_NAME_MAX + 1];
	assert_int_equal(token_key_id(k, id), 0);
	assert_int_equal(strlen(id), strlen("ed25519-") + 16);
	assert_string_equal(got.key_id, id);

	/* The last second of validity, and no expectations at all. */
	assert_int_equal(token_verify(k, t.data, t.len, NULL, NOW + 299, NULL, &err), 0);
	struct token_expect partial = { .tenant = "acme" };
	assert_int_equal(token_verify(k, t.data, t.len, &partial, NOW, NULL, &err), 0);

	/* The nonce makes every token distinct; a given key_id is kept. */
	snprintf(c.key_id, sizeof(c.key_id), "scheduler-2024");
	assert_int_equal(token_issue(k, &c, &t2), 0);
	assert_false(t.len == t2.len && memcmp(t.data, t2.data, t.len) == 0);
	assert_int_equal(token_verify(k, t2.data, t2.len, &default_expect, NOW, &got, &err), 0);
	assert_string_equal(got.key_id, "scheduler-2024");

	/* A key loaded as public only verifies too. */
	char *pem = NULL;
	assert_int_equal(token_key_public_pem(k, &pem), 0);
	struct token_key *pub = NULL;
	assert_int_equal(token_key_from_public_pem(pem, strlen(pem), &pub), 0);
	assert_false(token_key_has_private(pub));
	assert_true(token_key_has_private(k));
	assert_int_equal(token_verify(pub, t.data, t.len, &default_expect, NOW, NULL, &err), 0);
	/* ...but cannot sign. */
	buf_reset(&t2);
	assert_int_equal(token_issue(pub, &c, &t2), -EINVAL);
	assert_int_equal(t2.len, 0);

	free(pem);
	token_key_free(pub);
	token_key_free(k);
	token_key_free(NULL);
	buf_free(&t);
	buf_free(&t2);
}

static void test_claim_mismatch(void **state)
{
	struct token_key *k = new_key();
	struct token_claims c = make_claims("b", IMAGE_B, "w2", NOW, 60);
	struct buf t;
	buf_init(&t, 0);
	assert_int_equal(token_issue(k, &c, &t), 0);
	struct error err = { 0 };
	struct token_claims got = { .tenant = "untouched" };

	struct token_expect e = { "a", IMAGE_B, "w2" };
	assert_int_equal(token_verify(k, t.data, t.len, &e, NOW, &got, &err), -EACCES);
	assert_int_equal(err.code, -EACCES);
	assert_string_equal(err.msg, "token is for tenant 'b', not 'a'");
	assert_string_equal(got.tenant, "untouched");

	e = (struct token_expect){ "b", IMAGE_A, "w2" };
	error_clear(&err);
	assert_int_equal(token_verify(k, t.data, t.len, &e, NOW, &got, &err), -EACCES);
	assert_string_equal(err.msg, "token is for image '" IMAGE_B "', not '" IMAGE_A "'");

	e = (struct token_expect){ "b", IMAGE_B, "w1" };
	error_clear(&err);
	assert_int_equal(token_verify(k, t.data, t.len, &e, NOW, &got, &err), -EACCES);
	assert_string_equal(err.msg, "token is for worker 'w2', not 'w1'");

	/* Comparison is exact: no case folding, no prefixes. */
	e = (struct token_expect){ "B", IMAGE_B, "w2" };
	assert_int_equal(token_verify(k, t.data, t.len, &e, NOW, NULL, NULL), -EACCES);
	e = (struct token_expect){ "b", IMAGE_B, "w" };
	assert_int_equal(token_verify(k, t.data, t.len, &e, NOW, NULL, NULL), -EACCES);

	e = (struct token_expect){ "b", IMAGE_B, "w2" };
	assert_int_equal(token_verify(k, t.data, t.len, &e, NOW, &got, NULL), 0);
	assert_string_equal(got.tenant, "b");
	token_key_free(k);
	buf_free(&t);
}

static void test_expired(void **state)
{
	struct token_key *k = new_key();
	struct token_claims c = default_claims();
	struct buf t;
	buf_init(&t, 0);
	assert_int_equal(token_issue(k, &c, &t), 0);
	struct error err = { 0 };
	assert_int_equal(verify_default(k, &t, NOW + 300, &err), -EKEYEXPIRED);
	assert_string_equal(err.msg, "token expired 0 s ago");
	assert_int_equal(verify_default(k, &t, NOW + 312, &err), -EKEYEXPIRED);
	assert_string_equal(err.msg, "token expired 12 s ago");
	assert_int_equal(verify_default(k, &t, INT64_MAX, &err), -EKEYEXPIRED);
	token_key_free(k);
	buf_free(&t);
}

static void test_issued_in_future(void **state)
{
	struct token_key *k = new_key();
	struct token_claims c = make_claims("acme", IMAGE_A, "worker-1", NOW + 30, 60);
	struct buf t;
	buf_init(&t, 0);
	assert_int_equal(token_issue(k, &c, &t), 0);
	struct error err = { 0 };
	/* Within the tolerated skew... */
	assert_int_equal(verify_default(k, &t, NOW, &err), 0);
	/* ...and beyond it. */
	assert_int_equal(verify_default(k, &t, NOW - 1, &err), -EACCES);
	assert_string_equal(err.msg, "token was issued 31 s in the future (more than 30 s of clock skew)");
	assert_int_equal(verify_default(k, &t, NOW - 86400, &err), -EACCES);
	assert_non_null(strstr(err.msg, "in the future"));
	assert_int_equal(verify_default(k, &t, INT64_MIN, &err), -EACCES);
	token_key_free(k);
	buf_free(&t);
}

static void test_ttl_at_issue(void **state)
{
	struct token_key *k = new_key();
	struct buf t;
	buf_init(&t, 0);
	struct token_claims c = make_claims("acme", IMAGE_A, "worker-1", NOW, 301);
	assert_int_equal(token_issue(k, &c, &t), -EINVAL);
	c = make_claims("acme", IMAGE_A, "worker-1", NOW, 0);
	assert_int_equal(token_issue(k, &c, &t), -EINVAL);
	c = make_claims("acme", IMAGE_A, "worker-1", NOW, -5);
	assert_int_equal(token_issue(k, &c, &t), -EINVAL);
	c.issued_at = INT64_MIN;
	c.expires_at = INT64_MAX;
	assert_int_equal(token_issue(k, &c, &t), -EINVAL);
	assert_int_equal(t.len, 0);
	c = make_claims("acme", IMAGE_A, "worker-1", NOW, 1);
	assert_int_equal(token_issue(k, &c, &t), 0);
	token_key_free(k);
	buf_free(&t);
}

static void test_ttl_at_verify(void **state)
{
	EVP_PKEY *pkey = rfc_private_pkey();
	char *pem = public_pem_string(pkey);
	struct token_key *pub = NULL;
	assert_int_equal(token_key_from_public_pem(pem, strlen(pem), &pub), 0);
	struct buf t;
	buf_init(&t, 0);
	struct error err = { 0 };

	/* The crafted path itself is sound: a 300 s token verifies. */
	Hpcc__V1__RoutingClaims rc = raw_claims(NOW, NOW + 300);
	craft_token(pkey, &rc, &t);
	assert_int_equal(verify_default(pub, &t, NOW, &err), 0);

	rc = raw_claims(NOW, NOW + 301);
	craft_token(pkey, &rc, &t);
	assert_int_equal(verify_default(pub, &t, NOW, &err), -EACCES);
	assert_string_equal(err.msg, "token lives 301 s, more than the 300 s allowed");

	rc = raw_claims(1, INT64_MAX);
	craft_token(pkey, &rc, &t);
	assert_int_equal(verify_default(pub, &t, NOW, &err), -EACCES);

	EVP_PKEY_free(pkey);
	free(pem);
	token_key_free(pub);
	buf_free(&t);
}

/* Claims that carry a valid signature but break the format are refused. */
static void test_signed_malformed_claims(void **state)
{
	EVP_PKEY *pkey = rfc_private_pkey();
	char *pem = public_pem_string(pkey);
	struct token_key *pub = NULL;
	assert_int_equal(token_key_from_public_pem(pem, strlen(pem), &pub), 0);
	struct buf t;
	buf_init(&t, 0);
	struct error err = { 0 };
	static const char long_name[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"; /* 65 */
	uint8_t short_nonce[8] = { 0 };

	static const struct {
		const char *field, *tenant, *image, *worker, *key_id;
		int64_t issued, expires;
		bool short_nonce;
	} cases[] = {
		{ "tenant", "", IMAGE_A, "w", "k", NOW, NOW + 1, false },
		{ "tenant", "..", IMAGE_A, "w", "k", NOW, NOW + 1, false },
		{ "tenant", "a/b", IMAGE_A, "w", "k", NOW, NOW + 1, false },
		{ "tenant", "a b", IMAGE_A, "w", "k", NOW, NOW + 1, false },
		{ "tenant", long_name, IMAGE_A, "w", "k", NOW, NOW + 1, false },
		{ "image_digest", "a", "sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "w", "k", NOW,
		  NOW + 1, false },
		{ "image_digest", "a", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "w", "k", NOW, NOW + 1,
		  false },
		{ "image_digest", "a", IMAGE_A "0", "w", "k", NOW, NOW + 1, false },
		{ "image_digest", "a", "sha256:abc", "w", "k", NOW, NOW + 1, false },
		{ "worker_id", "a", IMAGE_A, ".hidden", "k", NOW, NOW + 1, false },
		{ "key_id", "a", IMAGE_A, "w", "", NOW, NOW + 1, false },
		{ "issued_at", "a", IMAGE_A, "w", "k", 0, NOW + 1, false },
		{ "expires_at", "a", IMAGE_A, "w", "k", NOW, NOW, false },
		{ "nonce", "a", IMAGE_A, "w", "k", NOW, NOW + 1, true },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		Hpcc__V1__RoutingClaims rc = raw_claims(cases[i].issued, cases[i].expires);
		rc.tenant = (char *)cases[i].tenant;
		rc.image_digest = (char *)cases[i].image;
		rc.worker_id = (char *)cases[i].worker;
		rc.key_id = (char *)cases[i].key_id;
		if (cases[i].short_nonce) {
			rc.nonce.data = short_nonce;
			rc.nonce.len = sizeof(short_nonce);
		}
		craft_token(pkey, &rc, &t);
		error_clear(&err);
		assert_int_equal(token_verify(pub, t.data, t.len, NULL, NOW, NULL, &err), -EBADMSG);
		char want[128];
		snprintf(want, sizeof(want), "token claim %s is malformed", cases[i].field);
		assert_string_equal(err.msg, want);
	}

	/* Signed bytes that are no RoutingClaims at all. */
	uint8_t msg[sizeof(context) + 3];
	memcpy(msg, context, sizeof(context));
	memcpy(msg + sizeof(context), "\xff\xff\xff", 3);
	uint8_t sig[64];
	size_t siglen = sizeof(sig);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	assert_int_equal(EVP_DigestSignInit(ctx, NULL, NULL, NULL, pkey), 1);
	assert_int_equal(EVP_DigestSign(ctx, sig, &siglen, msg, sizeof(msg)), 1);
	EVP_MD_CTX_free(ctx);
	Hpcc__V1__RoutingToken rt = HPCC__V1__ROUTING_TOKEN__INIT;
	rt.claims.data = msg + sizeof(context);
	rt.claims.len = 3;
	rt.signature.data = sig;
	rt.signature.len = siglen;
	uint8_t packed[128];
	size_t n = hpcc__v1__routing_token__pack(&rt, packed);
	error_clear(&err);
	assert_int_equal(token_verify(pub, packed, n, NULL, NOW, NULL, &err), -EBADMSG);
	assert_string_equal(err.msg, "token claims do not parse");

	EVP_PKEY_free(pkey);
	free(pem);
	token_key_free(pub);
	buf_free(&t);
}

static void test_issue_rejects_bad_claims(void **state)
{
	struct token_key *k = new_key();
	struct buf t;
	buf_init(&t, 0);
	/* (Names that are too long are tried below: make_claims would cut them.) */
	const char *bad_names[] = { "", ".", "..", ".x", "a/b", "a b", "a\tb", "\xc3\xa4", "a:b", "a@b" };
	for (size_t i = 0; i < ARRAY_SIZE(bad_names); i++) {
		struct token_claims c = make_claims(bad_names[i], IMAGE_A, "w", NOW, 60);
		assert_int_equal(token_issue(k, &c, &t), -EINVAL);
		c = make_claims("a", IMAGE_A, bad_names[i], NOW, 60);
		assert_int_equal(token_issue(k, &c, &t), -EINVAL);
		c = make_claims("a", IMAGE_A, "w", NOW, 60);
		snprintf(c.key_id, sizeof(c.key_id), "%s", bad_names[i]);
		if (bad_names[i][0] != '\0')  /* empty means "the key's id" */
			assert_int_equal(token_issue(k, &c, &t), -EINVAL);
	}
	struct token_claims c = make_claims("a", "sha256:ABCDEF", "w", NOW, 60);
	assert_int_equal(token_issue(k, &c, &t), -EINVAL);
	c = make_claims("a", "sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "w", NOW, 60);
	assert_int_equal(token_issue(k, &c, &t), -EINVAL);
	/* A name of exactly 64 characters with every allowed kind is fine. */
	c = make_claims("A-z_0.9aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", IMAGE_A, "w", NOW, 60);
	assert_int_equal(strlen(c.tenant), 64);
	/* Fields that are not terminated inside their arrays are refused. */
	assert_int_equal(token_issue(k, &c, &t), 0);
	memset(c.tenant, 'a', sizeof(c.tenant));
	assert_int_equal(token_issue(k, &c, &t), -EINVAL);
	c = make_claims("a", IMAGE_A, "w", NOW, 60);
	memset(c.key_id, 'k', sizeof(c.key_id));
	assert_int_equal(token_issue(k, &c, &t), -EINVAL);
	assert_int_equal(token_issue(NULL, &c, &t), -EINVAL);
	token_key_free(k);
	buf_free(&t);
}

/* --- tampering and hostile input --- */

static void test_tampered_claims(void **state)
{
	struct token_key *k = new_key();
	struct token_claims c = default_claims();
	struct buf t, t2;
	buf_init(&t, 0);
	buf_init(&t2, 0);
	assert_int_equal(token_issue(k, &c, &t), 0);

	/* Change one byte of the claims (inside the tenant name) and re-pack:
	 * the envelope is well-formed, only the signature can notice. */
	Hpcc__V1__RoutingToken *rt = hpcc__v1__routing_token__unpack(NULL, t.len, (const uint8_t *)t.data);
	assert_non_null(rt);
	uint8_t *at = memmem(rt->claims.data, rt->claims.len, "acme", 4);
	assert_non_null(at);
	at[0] = 'b';
	uint8_t packed[TOKEN_MAX_SIZE];
	size_t n = hpcc__v1__routing_token__pack(rt, packed);
	struct error err = { 0 };
	assert_int_equal(token_verify(k, packed, n, NULL, NOW, NULL, &err), -EACCES);
	assert_string_equal(err.msg, "token signature does not verify");
	hpcc__v1__routing_token__free_unpacked(rt, NULL);

	/* Every single-bit change anywhere in the token is refused. */
	for (size_t i = 0; i < t.len; i++) {
		for (int bit = 0; bit < 8; bit++) {
			buf_reset(&t2);
			assert_int_equal(buf_append(&t2, t.data, t.len), 0);
			t2.data[i] ^= (char)(1 << bit);
			assert_true(token_verify(k, t2.data, t2.len, &default_expect, NOW, NULL, NULL) < 0);
		}
	}
	token_key_free(k);
	buf_free(&t);
	buf_free(&t2);
}

static void test_tampered_signature(void **state)
{
	struct token_key *k = new_key();
	struct token_claims c = default_claims();
	struct buf t;
	buf_init(&t, 0);
	assert_int_equal(token_issue(k, &c, &t), 0);
	Hpcc__V1__RoutingToken *rt = hpcc__v1__routing_token__unpack(NULL, t.len, (const uint8_t *)t.data);
	assert_non_null(rt);
	uint8_t packed[TOKEN_MAX_SIZE];
	struct error err = { 0 };

	rt->signature.data[0] ^= 1;
	size_t n = hpcc__v1__routing_token__pack(rt, packed);
	assert_int_equal(token_verify(k, packed, n, NULL, NOW, NULL, &err), -EACCES);
	assert_string_equal(err.msg, "token signature does not verify");
	rt->signature.data[0] ^= 1;

	/* All zeros, and a signature of the wrong length. */
	uint8_t saved[64];
	memcpy(saved, rt->signature.data, 64);
	memset(rt->signature.data, 0, 64);
	n = hpcc__v1__routing_token__pack(rt, packed);
	assert_int_equal(token_verify(k, packed, n, NULL, NOW, NULL, NULL), -EACCES);
	memcpy(rt->signature.data, saved, 64);
	rt->signature.len = 63;
	n = hpcc__v1__routing_token__pack(rt, packed);
	error_clear(&err);
	assert_int_equal(token_verify(k, packed, n, NULL, NOW, NULL, &err), -EBADMSG);
	assert_string_equal(err.msg, "token lacks claims or an Ed25519 signature");
	rt->signature.len = 64;

	/* Unchanged, re-packed: still the same bytes, still valid. */
	n = hpcc__v1__routing_token__pack(rt, packed);
	assert_int_equal(n, t.len);
	assert_int_equal(token_verify(k, packed, n, NULL, NOW, NULL, NULL), 0);
	hpcc__v1__routing_token__free_unpacked(rt, NULL);
	token_key_free(k);
	buf_free(&t);
}

static void test_other_key(void **state)
{
	struct token_key *k = new_key(), *other = new_key();
	struct token_claims c = default_claims();
	struct buf t;
	buf_init(&t, 0);
	assert_int_equal(token_issue(k, &c, &t), 0);
	struct error err = { 0 };
	assert_int_equal(verify_default(other, &t, NOW, &err), -EACCES);
	assert_string_equal(err.msg, "token signature does not verify");
	assert_int_equal(token_verify(NULL, t.data, t.len, NULL, NOW, NULL, NULL), -EINVAL);

	/* A signature over the claims alone (no context) is refused too. */
	EVP_PKEY *pkey = rfc_private_pkey();
	char *pem = public_pem_string(pkey);
	struct token_key *pub = NULL;
	assert_int_equal(token_key_from_public_pem(pem, strlen(pem), &pub), 0);
	Hpcc__V1__RoutingClaims rc = raw_claims(NOW, NOW + 60);
	uint8_t claims[512];
	size_t clen = hpcc__v1__routing_claims__pack(&rc, claims);
	uint8_t sig[64];
	size_t siglen = sizeof(sig);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	assert_int_equal(EVP_DigestSignInit(ctx, NULL, NULL, NULL, pkey), 1);
	assert_int_equal(EVP_DigestSign(ctx, sig, &siglen, claims, clen), 1);
	EVP_MD_CTX_free(ctx);
	Hpcc__V1__RoutingToken rt = HPCC__V1__ROUTING_TOKEN__INIT;
	rt.claims.data = claims;
	rt.claims.len = clen;
	rt.signature.data = sig;
	rt.signature.len = siglen;
	uint8_t packed[TOKEN_MAX_SIZE];
	size_t n = hpcc__v1__routing_token__pack(&rt, packed);
	assert_int_equal(token_verify(pub, packed, n, NULL, NOW, NULL, NULL), -EACCES);

	EVP_PKEY_free(pkey);
	free(pem);
	token_key_free(pub);
	token_key_free(k);
	token_key_free(other);
	buf_free(&t);
}

static void test_malformed_input(void **state)
{
	struct token_key *k = new_key();
	struct token_claims c = default_claims();
	struct buf t;
	buf_init(&t, 0);
	assert_int_equal(token_issue(k, &c, &t), 0);
	struct error err = { 0 };

	/* Every truncation, including the empty token. */
	for (size_t n = 0; n < t.len; n++) {
		error_clear(&err);
		int r = token_verify(k, t.data, n, &default_expect, NOW, NULL, &err);
		assert_true(r == -EBADMSG || r == -EACCES);
		assert_int_equal(err.code, r);
	}
	error_clear(&err);
	assert_int_equal(token_verify(k, NULL, 0, NULL, NOW, NULL, &err), -EBADMSG);
	assert_string_equal(err.msg, "token is empty");

	/* Garbage of many sizes. */
	uint8_t junk[TOKEN_MAX_SIZE + 1];
	for (int round = 0; round < 200; round++) {
		size_t n = 1 + (size_t)round * 5 % TOKEN_MAX_SIZE;
		assert_int_equal(RAND_bytes(junk, (int)n), 1);
		assert_true(token_verify(k, junk, n, NULL, NOW, NULL, NULL) < 0);
	}
	memset(junk, 0, sizeof(junk));
	assert_true(token_verify(k, junk, 100, NULL, NOW, NULL, NULL) < 0);

	/* Oversize is refused before anything is parsed. */
	error_clear(&err);
	assert_int_equal(token_verify(k, junk, TOKEN_MAX_SIZE + 1, NULL, NOW, NULL, &err), -E2BIG);
	assert_string_equal(err.msg, "token is 1025 bytes, more than the 1024 allowed");
	assert_int_equal(token_verify(k, junk, SIZE_MAX, NULL, NOW, NULL, NULL), -E2BIG);

	/* A valid token with an extra field, or with a field repeated, is not
	 * the canonical encoding and is refused although it is signed. */
	struct buf t2;
	buf_init(&t2, 0);
	assert_int_equal(buf_append(&t2, t.data, t.len), 0);
	assert_int_equal(buf_append(&t2, "\x18\x01", 2), 0);  /* field 3, varint 1 */
	error_clear(&err);
	assert_int_equal(token_verify(k, t2.data, t2.len, NULL, NOW, NULL, &err), -EBADMSG);
	assert_string_equal(err.msg, "token is not encoded canonically");
	buf_reset(&t2);
	assert_int_equal(buf_append(&t2, t.data, t.len), 0);
	assert_int_equal(buf_append(&t2, t.data, t.len), 0);  /* every field twice */
	assert_int_equal(token_verify(k, t2.data, t2.len, NULL, NOW, NULL, NULL), -EBADMSG);

	/* An envelope with no claims. */
	Hpcc__V1__RoutingToken rt = HPCC__V1__ROUTING_TOKEN__INIT;
	uint8_t sig[64] = { 0 };
	rt.signature.data = sig;
	rt.signature.len = sizeof(sig);
	uint8_t packed[128];
	size_t n = hpcc__v1__routing_token__pack(&rt, packed);
	assert_int_equal(token_verify(k, packed, n, NULL, NOW, NULL, NULL), -EBADMSG);

	token_key_free(k);
	buf_free(&t);
	buf_free(&t2);
}

/* Entry points leave OpenSSL's per-thread error queue as they found it. */
static void test_openssl_error_queue(void **state)
{
	ERR_clear_error();
	struct token_key *k = new_key();
	uint8_t junk[64] = { 0x0a, 0x01, 0x00, 0x12, 0x40 };
	struct token_key *pub = NULL;
	const char *pem = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
	assert_true(token_key_from_public_pem(pem, strlen(pem), &pub) < 0);
	assert_true(token_verify(k, junk, sizeof(junk), NULL, NOW, NULL, NULL) < 0);
	assert_int_equal(ERR_peek_error(), 0);
	token_key_free(k);
}

/* --- keys --- */

static void test_key_files(void **state)
{
	char *priv_path = tmp_path(state, "signing.pem"), *pub_path = tmp_path(state, "signing.pub");
	mode_t old_umask = umask(022);
	struct token_key *k = new_key();
	struct error err = { 0 };
	assert_int_equal(token_key_save_private(k, priv_path, &err), 0);
	assert_int_equal(token_key_save_public(k, pub_path, &err), 0);
	assert_int_equal(file_mode(priv_path), 0600);
	assert_int_equal(file_mode(pub_path), 0644);

	struct token_key *priv = NULL, *pub = NULL;
	assert_int_equal(token_key_load_file(priv_path, true, &priv, &err), 0);
	assert_int_equal(token_key_load_file(pub_path, false, &pub, &err), 0);
	assert_true(token_key_has_private(priv));
	assert_false(token_key_has_private(pub));
	char id1[TOKEN_NAME_MAX + 1], id2[TOKEN_NAME_MAX + 1], id3[TOKEN_NAME_MAX + 1];
	assert_int_equal(token_key_id(k, id1), 0);
	assert_int_equal(token_key_id(priv, id2), 0);
	assert_int_equal(token_key_id(pub, id3), 0);
	assert_string_equal(id1, id2);
	assert_string_equal(id1, id3);

	/* The loaded private key signs what the loaded public key verifies. */
	struct token_claims c = default_claims();
	struct buf t;
	buf_init(&t, 0);
	assert_int_equal(token_issue(priv, &c, &t), 0);
	assert_int_equal(token_verify(pub, t.data, t.len, &default_expect, NOW, NULL, &err), 0);

	/* The file the public key came from matches token_key_public_pem. */
	char *pem = NULL;
	assert_int_equal(token_key_public_pem(k, &pem), 0);
	assert_non_null(strstr(pem, "-----BEGIN PUBLIC KEY-----"));
	FILE *f = fopen(pub_path, "re");
	char file_pem[1024] = { 0 };
	assert_true(fread(file_pem, 1, sizeof(file_pem) - 1, f) > 0);
	fclose(f);
	assert_string_equal(pem, file_pem);
	free(pem);

	/* A public key file cannot sign, nor be saved as a private key. */
	struct token_key *wrong = NULL;
	error_clear(&err);
	assert_int_equal(token_key_load_file(pub_path, true, &wrong, &err), -EPERM);  /* 0644 first */
	assert_int_equal(chmod(pub_path, 0600), 0);
	error_clear(&err);
	assert_int_equal(token_key_load_file(pub_path, true, &wrong, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "PKCS#8 private"));
	assert_null(wrong);
	error_clear(&err);
	assert_int_equal(token_key_save_private(pub, priv_path, &err), -EINVAL);
	/* A private key where a public one is wanted: refused, since workers
	 * should never hold the signing key. */
	error_clear(&err);
	assert_int_equal(token_key_load_file(priv_path, false, &wrong, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "holds a private key"));

	/* Modes: group or others may not touch a private key file. */
	assert_int_equal(chmod(priv_path, 0644), 0);
	error_clear(&err);
	assert_int_equal(token_key_load_file(priv_path, true, &wrong, &err), -EPERM);
	assert_non_null(strstr(err.msg, "mode 0644"));
	assert_null(wrong);
	assert_int_equal(chmod(priv_path, 0640), 0);
	assert_int_equal(token_key_load_file(priv_path, true, &wrong, NULL), -EPERM);
	assert_int_equal(chmod(priv_path, 0604), 0);
	assert_int_equal(token_key_load_file(priv_path, true, &wrong, NULL), -EPERM);
	assert_int_equal(chmod(priv_path, 0400), 0);
	assert_int_equal(token_key_load_file(priv_path, true, &wrong, NULL), 0);
	token_key_free(wrong);
	wrong = NULL;

	/* Saving again replaces the file atomically and keeps mode 0600. */
	assert_int_equal(chmod(priv_path, 0644), 0);
	assert_int_equal(token_key_save_private(k, priv_path, &err), 0);
	assert_int_equal(file_mode(priv_path), 0600);

	/* Missing, a directory, oversize, not PEM. */
	char *missing = tmp_path(state, "missing.pem"), *big = tmp_path(state, "big.pem");
	error_clear(&err);
	assert_int_equal(token_key_load_file(missing, true, &wrong, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "missing.pem"));
	assert_int_equal(token_key_load_file(*state, false, &wrong, NULL), -EINVAL);
	char *blob = malloc(TOKEN_KEY_FILE_MAX + 1);
	memset(blob, 'A', TOKEN_KEY_FILE_MAX + 1);
	write_plain(big, blob, TOKEN_KEY_FILE_MAX + 1, 0600);
	assert_int_equal(token_key_load_file(big, true, &wrong, NULL), -E2BIG);
	write_plain(big, blob, 100, 0600);
	assert_int_equal(token_key_load_file(big, true, &wrong, NULL), -EBADMSG);
	assert_int_equal(token_key_load_file(big, false, &wrong, NULL), -EBADMSG);
	write_plain(big, "", 0, 0600);
	assert_int_equal(token_key_load_file(big, false, &wrong, NULL), -EBADMSG);
	assert_int_equal(token_key_from_public_pem(blob, TOKEN_KEY_FILE_MAX + 1, &wrong), -E2BIG);
	assert_int_equal(token_key_from_public_pem(blob, 100, &wrong), -EBADMSG);
	assert_int_equal(token_key_from_public_pem("", 0, &wrong), -EBADMSG);
	assert_null(wrong);

	umask(old_umask);
	free(blob);
	free(missing);
	free(big);
	free(priv_path);
	free(pub_path);
	token_key_free(k);
	token_key_free(priv);
	token_key_free(pub);
	buf_free(&t);
}

static void test_wrong_key_type(void **state)
{
	char *priv_path = tmp_path(state, "other.pem"), *pub_path = tmp_path(state, "other.pub");
	EVP_PKEY *keys[] = {
		EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"),
		EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048),
		EVP_PKEY_Q_keygen(NULL, NULL, "X25519"),
		EVP_PKEY_Q_keygen(NULL, NULL, "ED448"),
	};
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		assert_non_null(keys[i]);
		write_private_pem(keys[i], priv_path, 0600, NULL);
		write_public_pem(keys[i], pub_path);
		struct token_key *k = NULL;
		struct error err = { 0 };
		assert_int_equal(token_key_load_file(priv_path, true, &k, &err), -EKEYREJECTED);
		assert_non_null(strstr(err.msg, "not Ed25519"));
		error_clear(&err);
		assert_int_equal(token_key_load_file(pub_path, false, &k, &err), -EKEYREJECTED);
		assert_non_null(strstr(err.msg, "not Ed25519"));
		char *pem = public_pem_string(keys[i]);
		assert_int_equal(token_key_from_public_pem(pem, strlen(pem), &k), -EKEYREJECTED);
		assert_null(k);
		free(pem);
		EVP_PKEY_free(keys[i]);
	}
	free(priv_path);
	free(pub_path);
}

static void test_encrypted_key_refused(void **state)
{
	char *path = tmp_path(state, "encrypted.pem");
	EVP_PKEY *pkey = rfc_private_pkey();
	write_private_pem(pkey, path, 0600, "secret");
	struct token_key *k = NULL;
	struct error err = { 0 };
	/* No prompt: the load fails at once. */
	assert_int_equal(token_key_load_file(path, true, &k, &err), -EBADMSG);
	assert_null(k);
	/* The unencrypted form of the same key loads. */
	write_private_pem(pkey, path, 0600, NULL);
	assert_int_equal(token_key_load_file(path, true, &k, &err), 0);
	token_key_free(k);
	EVP_PKEY_free(pkey);
	free(path);
}

/* --- the fixed vector --- */

/* The whole token for the claims below, signed with the RFC 8032 test 1 key
 * and the nonce 01..10. Ed25519 and the protobuf encoding are both
 * deterministic, so any change to the format shows up here. */
static const char rfc_token_hex[] =
	"0a80010a0461636d6512477368613235363a6161616161616161616161616161616161616161616161616161616161616161"
	"61616161616161616161616161616161616161616161616161616161616161611a08776f726b65722d312080e2cfaa0628ac"
	"e4cfaa0632100102030405060708090a0b0c0d0e0f103a07726663383033321240ae8675fb3923f35a9a73f72e0d74c2ab40"
	"03ca73f98cd59264ab161377efbec563318b5b6d18b7967dac58bf3315ff216891d7675c472167c567f031f0e1b50a";

static void test_rfc8032_vector(void **state)
{
	char *path = tmp_path(state, "rfc.pem");
	EVP_PKEY *secret = rfc_private_pkey(), *public = rfc_public_pkey();
	write_private_pem(secret, path, 0600, NULL);
	struct token_key *priv = NULL, *pub = NULL;
	assert_int_equal(token_key_load_file(path, true, &priv, NULL), 0);
	char *pem = public_pem_string(public);
	assert_int_equal(token_key_from_public_pem(pem, strlen(pem), &pub), 0);
	/* The secret key's public half is the RFC's public key. */
	char id_priv[TOKEN_NAME_MAX + 1], id_pub[TOKEN_NAME_MAX + 1];
	assert_int_equal(token_key_id(priv, id_priv), 0);
	assert_int_equal(token_key_id(pub, id_pub), 0);
	assert_string_equal(id_priv, id_pub);

	struct token_claims c = make_claims("acme", IMAGE_A, "worker-1", NOW, 300);
	snprintf(c.key_id, sizeof(c.key_id), "rfc8032");
	struct buf t, t2;
	buf_init(&t, 0);
	buf_init(&t2, 0);
	assert_int_equal(token_issue_with_nonce(priv, &c, test_nonce, &t), 0);
	assert_int_equal(token_issue_with_nonce(priv, &c, test_nonce, &t2), 0);
	assert_memory_equal(t.data, t2.data, t.len);

	/* The verifier accepts it with the RFC's public key... */
	struct token_claims got;
	assert_int_equal(token_verify(pub, t.data, t.len, &default_expect, NOW, &got, NULL), 0);
	assert_string_equal(got.key_id, "rfc8032");

	/* ...and so does OpenSSL alone, over context NUL claims, and the
	 * claims are exactly what the protobuf definition says. */
	Hpcc__V1__RoutingToken *rt = hpcc__v1__routing_token__unpack(NULL, t.len, (const uint8_t *)t.data);
	assert_non_null(rt);
	assert_int_equal(rt->signature.len, 64);
	uint8_t msg[sizeof(context) + TOKEN_MAX_SIZE];
	memcpy(msg, context, sizeof(context));
	memcpy(msg + sizeof(context), rt->claims.data, rt->claims.len);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, public), 1);
	assert_int_equal(EVP_DigestVerify(ctx, rt->signature.data, 64, msg, sizeof(context) + rt->claims.len), 1);
	EVP_MD_CTX_free(ctx);
	Hpcc__V1__RoutingClaims *rc = hpcc__v1__routing_claims__unpack(NULL, rt->claims.len, rt->claims.data);
	assert_non_null(rc);
	assert_string_equal(rc->tenant, "acme");
	assert_string_equal(rc->image_digest, IMAGE_A);
	assert_string_equal(rc->worker_id, "worker-1");
	assert_int_equal(rc->issued_at, NOW);
	assert_int_equal(rc->expires_at, NOW + 300);
	assert_int_equal(rc->nonce.len, 16);
	assert_memory_equal(rc->nonce.data, test_nonce, 16);
	assert_string_equal(rc->key_id, "rfc8032");
	hpcc__v1__routing_claims__free_unpacked(rc, NULL);
	hpcc__v1__routing_token__free_unpacked(rt, NULL);

	/* The exact bytes. */
	char *hex = malloc(2 * t.len + 1);
	for (size_t i = 0; i < t.len; i++)
		snprintf(hex + 2 * i, 3, "%02x", (uint8_t)t.data[i]);
	if (strcmp(hex, rfc_token_hex) != 0)
		print_message("token: %s\n", hex);
	assert_string_equal(hex, rfc_token_hex);
	free(hex);

	EVP_PKEY_free(secret);
	EVP_PKEY_free(public);
	free(pem);
	free(path);
	token_key_free(priv);
	token_key_free(pub);
	buf_free(&t);
	buf_free(&t2);
}

/* --- base64url and token files --- */

static void assert_encodes(const char *raw, size_t n, const char *want)
{
	char *text = NULL;
	assert_int_equal(token_encode_text(raw, n, &text), 0);
	assert_string_equal(text, want);
	free(text);
	if (n == 0)
		return;
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(token_decode_text(want, &b), 0);
	assert_int_equal(b.len, n);
	assert_memory_equal(b.data, raw, n);
	buf_free(&b);
}

static void test_base64url(void **state)
{
	/* RFC 4648 §10, without padding. */
	assert_encodes("", 0, "");
	assert_encodes("f", 1, "Zg");
	assert_encodes("fo", 2, "Zm8");
	assert_encodes("foo", 3, "Zm9v");
	assert_encodes("foob", 4, "Zm9vYg");
	assert_encodes("fooba", 5, "Zm9vYmE");
	assert_encodes("foobar", 6, "Zm9vYmFy");
	/* The URL-safe characters where standard base64 has '+' and '/'. */
	assert_encodes("\xfb\xff", 2, "-_8");
	assert_encodes("\xfb\xef\xbe", 3, "----");
	assert_encodes("\xff\xff\xff", 3, "____");

	/* Round trips of random bytes of every length up to the cap. */
	uint8_t raw[TOKEN_MAX_SIZE + 1];
	assert_int_equal(RAND_bytes(raw, sizeof(raw)), 1);
	for (size_t n = 1; n <= TOKEN_MAX_SIZE; n += (n < 70 ? 1 : 37)) {
		char *text = NULL;
		assert_int_equal(token_encode_text(raw, n, &text), 0);
		assert_int_equal(strlen(text), (4 * n + 2) / 3);
		struct buf b;
		buf_init(&b, 0);
		assert_int_equal(token_decode_text(text, &b), 0);
		assert_int_equal(b.len, n);
		assert_memory_equal(b.data, raw, n);
		buf_free(&b);
		free(text);
	}
	char *text = NULL;
	assert_int_equal(token_encode_text(raw, TOKEN_MAX_SIZE, &text), 0);
	assert_int_equal(strlen(text), TOKEN_TEXT_MAX);
	free(text);
	assert_int_equal(token_encode_text(raw, TOKEN_MAX_SIZE + 1, &text), -E2BIG);

	/* Strict decoding. */
	const char *bad[] = {
		"",          /* no token */
		"Zg==",      /* padding */
		"Zm9vYg=",   /* padding */
		"Zm9v+",     /* standard alphabet */
		"Zm9/",      /* standard alphabet */
		"Zm9vY",     /* 1 mod 4 */
		"Z",         /* 1 mod 4 */
		"Zh",        /* unused bits set */
		"Zm9",       /* unused bits set */
		"Zm 9v",     /* whitespace */
		"Zm9v\n",    /* newline */
		"Zm9v.",
		"Zm9v\xc3\xa9",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct buf b;
		buf_init(&b, 0);
		assert_int_equal(token_decode_text(bad[i], &b), -EBADMSG);
		assert_int_equal(b.len, 0);
		buf_free(&b);
	}
	char *huge = malloc(TOKEN_TEXT_MAX + 2);
	memset(huge, 'A', TOKEN_TEXT_MAX + 1);
	huge[TOKEN_TEXT_MAX + 1] = '\0';
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(token_decode_text(huge, &b), -E2BIG);
	huge[TOKEN_TEXT_MAX] = '\0';  /* exactly at the cap: 1024 zero bytes */
	assert_int_equal(token_decode_text(huge, &b), 0);
	assert_int_equal(b.len, TOKEN_MAX_SIZE);
	buf_free(&b);
	free(huge);
}

static void test_token_file(void **state)
{
	char *path = tmp_path(state, "token");
	struct token_key *k = new_key();
	struct token_claims c = default_claims();
	struct buf t, got;
	buf_init(&t, 0);
	buf_init(&got, 0);
	assert_int_equal(token_issue(k, &c, &t), 0);
	struct error err = { 0 };

	mode_t old_umask = umask(0);
	assert_int_equal(token_write_file(path, t.data, t.len, &err), 0);
	umask(old_umask);
	assert_int_equal(file_mode(path), 0600);
	assert_int_equal(token_read_file(path, &got, &err), 0);
	assert_int_equal(got.len, t.len);
	assert_memory_equal(got.data, t.data, t.len);
	assert_int_equal(token_verify(k, got.data, got.len, &default_expect, NOW, NULL, &err), 0);

	/* The file is one line of base64url. */
	char *text = NULL;
	assert_int_equal(token_encode_text(t.data, t.len, &text), 0);
	FILE *f = fopen(path, "re");
	char line[4096] = { 0 };
	assert_non_null(fgets(line, sizeof(line), f));
	fclose(f);
	assert_int_equal(strlen(line), strlen(text) + 1);
	assert_memory_equal(line, text, strlen(text));
	assert_int_equal(line[strlen(text)], '\n');

	/* Without the newline it reads the same. */
	write_plain(path, text, strlen(text), 0600);
	buf_reset(&got);
	assert_int_equal(token_read_file(path, &got, &err), 0);
	assert_int_equal(got.len, t.len);

	/* Permissions. */
	const mode_t open_modes[] = { 0644, 0640, 0604, 0660, 0620 };
	for (size_t i = 0; i < ARRAY_SIZE(open_modes); i++) {
		assert_int_equal(chmod(path, open_modes[i]), 0);
		error_clear(&err);
		assert_int_equal(token_read_file(path, &got, &err), -EPERM);
		assert_non_null(strstr(err.msg, "accessible by group or others"));
	}
	assert_int_equal(chmod(path, 0400), 0);
	assert_int_equal(token_read_file(path, &got, NULL), 0);

	/* Content that is not one line of base64url. */
	struct {
		const char *data;
		size_t n;
		int want;
	} cases[] = {
		{ "", 0, -EBADMSG },
		{ "\n", 1, -EBADMSG },
		{ "Zm9v\n\n", 6, -EBADMSG },
		{ "Zm9v\r\n", 6, -EBADMSG },
		{ "Zm9v\nZm9v\n", 10, -EBADMSG },
		{ "Zm9v\0Zm9v", 9, -EBADMSG },
		{ " Zm9v", 5, -EBADMSG },
		{ "Zg==\n", 5, -EBADMSG },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		write_plain(path, cases[i].data, cases[i].n, 0600);
		buf_reset(&got);
		error_clear(&err);
		assert_int_equal(token_read_file(path, &got, &err), cases[i].want);
		assert_int_equal(got.len, 0);
		assert_non_null(strstr(err.msg, path));
	}
	/* Caps: a text longer than any token, a file longer than 4 KiB. */
	char *big = malloc(TOKEN_FILE_MAX + 1);
	memset(big, 'A', TOKEN_FILE_MAX + 1);
	write_plain(path, big, TOKEN_TEXT_MAX + 4, 0600);
	assert_int_equal(token_read_file(path, &got, NULL), -E2BIG);
	write_plain(path, big, TOKEN_FILE_MAX + 1, 0600);
	assert_int_equal(token_read_file(path, &got, NULL), -EFBIG);
	/* Not a regular file, or missing. */
	assert_int_equal(token_read_file(*state, &got, NULL), -EINVAL);
	char *missing = tmp_path(state, "nope");
	assert_int_equal(token_read_file(missing, &got, NULL), -ENOENT);

	free(missing);
	free(big);
	free(text);
	free(path);
	token_key_free(k);
	buf_free(&t);
	buf_free(&got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_claim_mismatch),
		cmocka_unit_test(test_expired),
		cmocka_unit_test(test_issued_in_future),
		cmocka_unit_test(test_ttl_at_issue),
		cmocka_unit_test(test_ttl_at_verify),
		cmocka_unit_test(test_signed_malformed_claims),
		cmocka_unit_test(test_issue_rejects_bad_claims),
		cmocka_unit_test(test_tampered_claims),
		cmocka_unit_test(test_tampered_signature),
		cmocka_unit_test(test_other_key),
		cmocka_unit_test(test_malformed_input),
		cmocka_unit_test(test_openssl_error_queue),
		cmocka_unit_test_setup_teardown(test_key_files, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_wrong_key_type, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_encrypted_key_refused, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_rfc8032_vector, testutil_setup_tmpdir, testutil_teardown_tmpdir),
		cmocka_unit_test(test_base64url),
		cmocka_unit_test_setup_teardown(test_token_file, testutil_setup_tmpdir, testutil_teardown_tmpdir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
