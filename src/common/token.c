/*
 * Routing tokens (see token.h and docs/tokens.md): Ed25519 keys in PEM
 * files, issuing (pack the claims, sign "context NUL claims", pack the
 * envelope), verification in the order that keeps unauthenticated bytes
 * away from everything but the protobuf envelope parser (size cap, envelope,
 * signature, then the claims), base64url for token files, and the
 * permission checks on files that hold secrets. OpenSSL's per-thread error
 * queue is left as each entry point found it, since TLS code elsewhere in
 * the process reads that queue.
 */
#include "token.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "base64url.h"
#include "fs.h"
#include "token.pb-c.h"

struct token_key {
	EVP_PKEY *pkey;
	bool has_private;
};

/* sizeof counts the terminating NUL, which is part of what is signed. */
static const char signing_context[] = TOKEN_SIGNING_CONTEXT;
#define CONTEXT_SIZE sizeof(signing_context)

DEFINE_CLEANUP_FUNC(EVP_PKEY, EVP_PKEY_free)
DEFINE_CLEANUP_FUNC(EVP_MD_CTX, EVP_MD_CTX_free)
DEFINE_CLEANUP_FUNC(BIO, BIO_free)

static void routing_token_freep(Hpcc__V1__RoutingToken **t)
{
	if (*t)
		hpcc__v1__routing_token__free_unpacked(*t, NULL);
}

static void routing_claims_freep(Hpcc__V1__RoutingClaims **c)
{
	if (*c)
		hpcc__v1__routing_claims__free_unpacked(*c, NULL);
}

/* A buffer that held key material is wiped before it is freed. */
static void secret_buf_freep(struct buf *b)
{
	if (b->data)
		OPENSSL_cleanse(b->data, b->alloc);
	buf_free(b);
}

/* Restores OpenSSL's error queue at scope exit (see the file comment). */
static void openssl_error_scope_end(int *mark)
{
	ERR_pop_to_mark();
}
#define OPENSSL_ERROR_SCOPE _cleanup_(openssl_error_scope_end) _unused_ int openssl_mark_ = ERR_set_mark()

static const char *openssl_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *s = e ? ERR_reason_error_string(e) : NULL;
	return s ? s : "no detail";
}

/* OpenSSL would ask on the terminal for the passphrase of an encrypted key;
 * hpcc never prompts, so an encrypted key simply fails to load. */
static int no_passphrase(char *buf, int size, int rwflag, void *userdata)
{
	return -1;
}

/* --- keys --- */

static int key_wrap(EVP_PKEY **pkey, bool has_private, struct token_key **ret)
{
	struct token_key *k = malloc(sizeof(*k));
	if (!k)
		return -ENOMEM;
	*k = (struct token_key){ .pkey = TAKE_PTR(*pkey), .has_private = has_private };
	*ret = k;
	return 0;
}

int token_key_generate(struct token_key **ret)
{
	OPENSSL_ERROR_SCOPE;
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (!pkey)
		return -EIO;
	return key_wrap(&pkey, true, ret);
}

void token_key_free(struct token_key *k)
{
	if (!k)
		return;
	EVP_PKEY_free(k->pkey);
	free(k);
}

bool token_key_has_private(const struct token_key *k) { return k && k->has_private; }

/* Parses one PEM key; what names the source in messages ("key file x"). */
static int key_parse_pem(const char *pem, size_t n, bool want_private, const char *what, struct token_key **ret,
			 struct error *err)
{
	if (!pem)
		return error_set(err, -EINVAL, "no %s", what);
	if (n > TOKEN_KEY_FILE_MAX)
		return error_set(err, -E2BIG, "%s is larger than %d bytes", what, TOKEN_KEY_FILE_MAX);
	/* A verifier needs only the public half; refusing the private one here
	 * keeps signing keys from being copied onto every worker. */
	if (!want_private && memmem(pem, n, "PRIVATE KEY-----", 16))
		return error_set(err, -EINVAL, "%s holds a private key; a verifier needs only the public key", what);
	_cleanup_(BIO_freep) BIO *bio = BIO_new_mem_buf(pem, (int)n);
	if (!bio)
		return error_set(err, -ENOMEM, "out of memory reading %s", what);
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *pkey = want_private ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL)
								: PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
	if (!pkey)
		return error_set(err, -EBADMSG, "%s does not hold an unencrypted PEM %s key (%s)", what,
				 want_private ? "PKCS#8 private" : "SubjectPublicKeyInfo public", openssl_reason());
	if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_ED25519) {
		const char *type = EVP_PKEY_get0_type_name(pkey);
		return error_set(err, -EKEYREJECTED, "%s holds a %s key, not Ed25519", what, type ? type : "unknown");
	}
	int r = key_wrap(&pkey, want_private, ret);
	if (r < 0)
		return error_set(err, r, "out of memory reading %s", what);
	return 0;
}

int token_key_load_file(const char *path, bool want_private, struct token_key **ret, struct error *err)
{
	OPENSSL_ERROR_SCOPE;
	/* O_NONBLOCK so that a FIFO put in the key's place cannot hang us; it
	 * changes nothing for the regular file that is required. */
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		int r = negative_errno();
		return error_set(err, r, "cannot open key file %s: %s", path, strerror(-r));
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int r = negative_errno();
		return error_set(err, r, "cannot stat key file %s: %s", path, strerror(-r));
	}
	if (!S_ISREG(st.st_mode))
		return error_set(err, -EINVAL, "key file %s is not a regular file", path);
	/* As ssh does: a signing key that others can read is no longer a secret. */
	if (want_private && (st.st_mode & (S_IRWXG | S_IRWXO)))
		return error_set(err, -EPERM, "private key file %s is accessible by group or others (mode %04o); chmod 600 it",
				 path, (unsigned)(st.st_mode & 07777));
	_cleanup_(secret_buf_freep) struct buf pem;
	buf_init(&pem, TOKEN_KEY_FILE_MAX + 1);
	int r = fs_read_fd(fd, TOKEN_KEY_FILE_MAX, &pem);
	if (r == -EFBIG)
		return error_set(err, -E2BIG, "key file %s is larger than %d bytes", path, TOKEN_KEY_FILE_MAX);
	if (r < 0)
		return error_set(err, r, "cannot read key file %s: %s", path, strerror(-r));
	_cleanup_free_ char *what = NULL;
	if (asprintf(&what, "key file %s", path) < 0)
		return error_set(err, -ENOMEM, "out of memory reading key file %s", path);
	return key_parse_pem(pem.data, pem.len, want_private, what, ret, err);
}

int token_key_from_public_pem(const char *pem, size_t n, struct token_key **ret)
{
	OPENSSL_ERROR_SCOPE;
	return key_parse_pem(pem, n, false, "public key PEM", ret, NULL);
}

/* Writes the PEM that write_pem put into bio to path, atomically. */
static int save_bio(BIO *bio, const char *path, mode_t mode, const char *what, struct error *err)
{
	char *data = NULL;
	long len = BIO_get_mem_data(bio, &data);
	if (len <= 0 || !data)
		return error_set(err, -EIO, "cannot encode the %s key", what);
	int r = fs_write_atomic(path, data, (size_t)len, mode, true);
	if (r < 0)
		return error_set(err, r, "cannot write %s key file %s: %s", what, path, strerror(-r));
	return 0;
}

int token_key_save_private(const struct token_key *k, const char *path, struct error *err)
{
	OPENSSL_ERROR_SCOPE;
	if (!k || !k->has_private)
		return error_set(err, -EINVAL, "cannot save %s: the key has no private half", path);
	/* Secure memory is wiped when it is freed. */
	_cleanup_(BIO_freep) BIO *bio = BIO_new(BIO_s_secmem());
	if (!bio)
		return error_set(err, -ENOMEM, "out of memory saving %s", path);
	if (PEM_write_bio_PKCS8PrivateKey(bio, k->pkey, NULL, NULL, 0, NULL, NULL) != 1)
		return error_set(err, -EIO, "cannot encode the private key (%s)", openssl_reason());
	return save_bio(bio, path, 0600, "private", err);
}

int token_key_save_public(const struct token_key *k, const char *path, struct error *err)
{
	OPENSSL_ERROR_SCOPE;
	if (!k)
		return error_set(err, -EINVAL, "cannot save %s: no key", path);
	_cleanup_(BIO_freep) BIO *bio = BIO_new(BIO_s_mem());
	if (!bio)
		return error_set(err, -ENOMEM, "out of memory saving %s", path);
	if (PEM_write_bio_PUBKEY(bio, k->pkey) != 1)
		return error_set(err, -EIO, "cannot encode the public key (%s)", openssl_reason());
	return save_bio(bio, path, 0644, "public", err);
}

int token_key_public_pem(const struct token_key *k, char **ret_pem)
{
	OPENSSL_ERROR_SCOPE;
	if (!k)
		return -EINVAL;
	_cleanup_(BIO_freep) BIO *bio = BIO_new(BIO_s_mem());
	if (!bio)
		return -ENOMEM;
	if (PEM_write_bio_PUBKEY(bio, k->pkey) != 1)
		return -EIO;
	char *data = NULL;
	long len = BIO_get_mem_data(bio, &data);
	if (len <= 0 || !data)
		return -EIO;
	char *pem = strndup(data, (size_t)len);
	if (!pem)
		return -ENOMEM;
	*ret_pem = pem;
	return 0;
}

int token_key_id(const struct token_key *k, char ret_id[TOKEN_NAME_MAX + 1])
{
	OPENSSL_ERROR_SCOPE;
	if (!k)
		return -EINVAL;
	uint8_t raw[32];
	size_t len = sizeof(raw);
	if (EVP_PKEY_get_raw_public_key(k->pkey, raw, &len) != 1 || len != sizeof(raw))
		return -EIO;
	struct digest d;
	int r = digest_bytes(raw, len, &d);
	if (r < 0)
		return r;
	char hex[DIGEST_HEX_LEN + 1];
	digest_to_hex(&d, hex);
	snprintf(ret_id, TOKEN_NAME_MAX + 1, "ed25519-%.16s", hex);
	return 0;
}

/* --- claims --- */

/* [A-Za-z0-9._-]{1,64}, not starting with '.' (so never "." or ".."). */
bool token_name_valid(const char *s)
{
	size_t n = strnlen(s, TOKEN_NAME_MAX + 1);
	if (n == 0 || n > TOKEN_NAME_MAX || s[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return false;
	}
	return true;
}

/* "sha256:" and 64 lowercase hex digits: one spelling per image, so that
 * comparing strings compares images. */
bool token_image_digest_valid(const char *s)
{
	size_t prefix = strlen(DIGEST_PREFIX);
	if (strncmp(s, DIGEST_PREFIX, prefix) != 0)
		return false;
	s += prefix;
	for (size_t i = 0; i < DIGEST_HEX_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return s[DIGEST_HEX_LEN] == '\0';
}

/* Returns the name of the first malformed claim, or NULL. The lifetime
 * limit is checked by the callers, which answer it differently. */
static const char *claims_malformed(const char *tenant, const char *image_digest, const char *worker_id,
				    const char *key_id, int64_t issued_at, int64_t expires_at)
{
	if (!token_name_valid(tenant))
		return "tenant";
	if (!token_image_digest_valid(image_digest))
		return "image_digest";
	if (!token_name_valid(worker_id))
		return "worker_id";
	if (!token_name_valid(key_id))
		return "key_id";
	if (issued_at <= 0)
		return "issued_at";
	if (expires_at <= issued_at)
		return "expires_at";
	return NULL;
}

/* --- signing --- */

static int ed25519_sign(EVP_PKEY *pkey, const uint8_t *msg, size_t n, uint8_t sig[TOKEN_SIGNATURE_SIZE])
{
	_cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx)
		return -ENOMEM;
	size_t len = TOKEN_SIGNATURE_SIZE;
	if (EVP_DigestSignInit_ex(ctx, NULL, NULL, NULL, NULL, pkey, NULL) != 1 ||
	    EVP_DigestSign(ctx, sig, &len, msg, n) != 1 || len != TOKEN_SIGNATURE_SIZE)
		return -EIO;
	return 0;
}

/* Ed25519 (RFC 8032, "pure": no pre-hash) over context NUL claims. */
static bool signature_verifies(EVP_PKEY *pkey, const uint8_t *claims, size_t n, const uint8_t *sig)
{
	uint8_t msg[CONTEXT_SIZE + TOKEN_MAX_SIZE];
	if (n > TOKEN_MAX_SIZE)
		return false;
	memcpy(msg, signing_context, CONTEXT_SIZE);
	memcpy(msg + CONTEXT_SIZE, claims, n);
	_cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	return ctx && EVP_DigestVerifyInit_ex(ctx, NULL, NULL, NULL, NULL, pkey, NULL) == 1 &&
	       EVP_DigestVerify(ctx, sig, TOKEN_SIGNATURE_SIZE, msg, CONTEXT_SIZE + n) == 1;
}

int token_issue_with_nonce(const struct token_key *priv, const struct token_claims *c,
			   const uint8_t nonce[TOKEN_NONCE_SIZE], struct buf *ret_token)
{
	OPENSSL_ERROR_SCOPE;
	if (!priv || !priv->has_private || !c)
		return -EINVAL;
	char key_id[TOKEN_NAME_MAX + 1];
	if (c->key_id[0] == '\0') {
		int r = token_key_id(priv, key_id);
		if (r < 0)
			return r;
	} else {
		size_t n = strnlen(c->key_id, sizeof(c->key_id));
		if (n >= sizeof(key_id))
			return -EINVAL;
		memcpy(key_id, c->key_id, n + 1);
	}
	if (claims_malformed(c->tenant, c->image_digest, c->worker_id, key_id, c->issued_at, c->expires_at))
		return -EINVAL;
	/* issued_at > 0 and expires_at > issued_at, so this cannot overflow. */
	if (c->expires_at - c->issued_at > TOKEN_MAX_TTL)
		return -EINVAL;

	/* protobuf-c wants mutable pointers but only reads them when packing. */
	Hpcc__V1__RoutingClaims claims = HPCC__V1__ROUTING_CLAIMS__INIT;
	claims.tenant = (char *)c->tenant;
	claims.image_digest = (char *)c->image_digest;
	claims.worker_id = (char *)c->worker_id;
	claims.issued_at = c->issued_at;
	claims.expires_at = c->expires_at;
	claims.nonce.data = (uint8_t *)nonce;
	claims.nonce.len = TOKEN_NONCE_SIZE;
	claims.key_id = key_id;

	/* The field caps bound the claims to about 300 bytes; the checks below
	 * are there so that a future field cannot silently overflow. */
	uint8_t msg[CONTEXT_SIZE + TOKEN_MAX_SIZE];
	size_t claims_len = hpcc__v1__routing_claims__get_packed_size(&claims);
	if (claims_len > TOKEN_MAX_SIZE - TOKEN_SIGNATURE_SIZE - 16)
		return -E2BIG;
	memcpy(msg, signing_context, CONTEXT_SIZE);
	hpcc__v1__routing_claims__pack(&claims, msg + CONTEXT_SIZE);
	uint8_t sig[TOKEN_SIGNATURE_SIZE];
	int r = ed25519_sign(priv->pkey, msg, CONTEXT_SIZE + claims_len, sig);
	if (r < 0)
		return r;

	Hpcc__V1__RoutingToken token = HPCC__V1__ROUTING_TOKEN__INIT;
	token.claims.data = msg + CONTEXT_SIZE;
	token.claims.len = claims_len;
	token.signature.data = sig;
	token.signature.len = sizeof(sig);
	uint8_t out[TOKEN_MAX_SIZE];
	size_t len = hpcc__v1__routing_token__get_packed_size(&token);
	if (len > sizeof(out))
		return -E2BIG;
	hpcc__v1__routing_token__pack(&token, out);
	return buf_append(ret_token, out, len);
}

int token_issue(const struct token_key *priv, const struct token_claims *c, struct buf *ret_token)
{
	OPENSSL_ERROR_SCOPE;
	uint8_t nonce[TOKEN_NONCE_SIZE];
	if (RAND_bytes(nonce, sizeof(nonce)) != 1)
		return -EIO;
	return token_issue_with_nonce(priv, c, nonce, ret_token);
}

/* --- verification --- */

/* Only one encoding of a token is accepted: no unknown or repeated fields,
 * the fields in order. Tokens then cannot be altered without changing
 * what was signed, so the bytes can serve as an identity (logs, caches). */
static bool envelope_is_canonical(const Hpcc__V1__RoutingToken *t, const void *token, size_t n)
{
	uint8_t again[TOKEN_MAX_SIZE];
	if (t->base.n_unknown_fields != 0 || hpcc__v1__routing_token__get_packed_size(t) != n || n > sizeof(again))
		return false;
	hpcc__v1__routing_token__pack(t, again);
	return memcmp(again, token, n) == 0;
}

static int check_expect(const char *what, const char *have, const char *want, struct error *err)
{
	if (!want || strcmp(have, want) == 0)
		return 0;
	return error_set(err, -EACCES, "token is for %s '%s', not '%s'", what, have, want);
}

int token_verify(const struct token_key *pub, const void *token, size_t n, const struct token_expect *expect,
		 int64_t now, struct token_claims *ret_claims, struct error *err)
{
	OPENSSL_ERROR_SCOPE;
	if (!pub)
		return error_set(err, -EINVAL, "no key to verify the token with");
	if (n > TOKEN_MAX_SIZE)
		return error_set(err, -E2BIG, "token is %zu bytes, more than the %d allowed", n, TOKEN_MAX_SIZE);
	if (n == 0 || !token)
		return error_set(err, -EBADMSG, "token is empty");

	_cleanup_(routing_token_freep) Hpcc__V1__RoutingToken *t = hpcc__v1__routing_token__unpack(NULL, n, token);
	if (!t)
		return error_set(err, -EBADMSG, "token is not a RoutingToken message");
	if (t->claims.len == 0 || t->signature.len != TOKEN_SIGNATURE_SIZE)
		return error_set(err, -EBADMSG, "token lacks claims or an Ed25519 signature");
	if (!envelope_is_canonical(t, token, n))
		return error_set(err, -EBADMSG, "token is not encoded canonically");

	/* Nothing in the claims is looked at before the signature holds. */
	if (!signature_verifies(pub->pkey, t->claims.data, t->claims.len, t->signature.data))
		return error_set(err, -EACCES, "token signature does not verify");

	_cleanup_(routing_claims_freep) Hpcc__V1__RoutingClaims *c =
		hpcc__v1__routing_claims__unpack(NULL, t->claims.len, t->claims.data);
	if (!c)
		return error_set(err, -EBADMSG, "token claims do not parse");
	const char *bad = claims_malformed(c->tenant, c->image_digest, c->worker_id, c->key_id, c->issued_at,
					   c->expires_at);
	if (!bad && c->nonce.len != TOKEN_NONCE_SIZE)
		bad = "nonce";
	if (bad)
		return error_set(err, -EBADMSG, "token claim %s is malformed", bad);

	/* Well-formed times are positive and ordered: no overflow below. */
	int64_t ttl = c->expires_at - c->issued_at;
	if (ttl > TOKEN_MAX_TTL)
		return error_set(err, -EACCES, "token lives %" PRId64 " s, more than the %d s allowed", ttl, TOKEN_MAX_TTL);
	if (c->expires_at <= now)
		return error_set(err, -EKEYEXPIRED, "token expired %" PRId64 " s ago", now - c->expires_at);
	/* A token from the future means a wrong clock somewhere; a little skew
	 * between scheduler and worker is normal and tolerated. */
	int64_t ahead;
	if (__builtin_sub_overflow(c->issued_at, now, &ahead))
		ahead = INT64_MAX;
	if (ahead > TOKEN_CLOCK_SKEW)
		return error_set(err, -EACCES, "token was issued %" PRId64 " s in the future (more than %d s of clock skew)",
				 ahead, TOKEN_CLOCK_SKEW);

	if (expect) {
		int r = check_expect("tenant", c->tenant, expect->tenant, err);
		if (r == 0)
			r = check_expect("image", c->image_digest, expect->image_digest, err);
		if (r == 0)
			r = check_expect("worker", c->worker_id, expect->worker_id, err);
		if (r < 0)
			return r;
	}

	if (ret_claims) {
		/* The lengths were checked above, so every copy fits. */
		struct token_claims out = { .issued_at = c->issued_at, .expires_at = c->expires_at };
		snprintf(out.tenant, sizeof(out.tenant), "%s", c->tenant);
		snprintf(out.image_digest, sizeof(out.image_digest), "%s", c->image_digest);
		snprintf(out.worker_id, sizeof(out.worker_id), "%s", c->worker_id);
		snprintf(out.key_id, sizeof(out.key_id), "%s", c->key_id);
		*ret_claims = out;
	}
	return 0;
}

/* --- text form: base64url (RFC 4648 §5, no padding) --- */

int token_encode_text(const void *token, size_t n, char **ret_text)
{
	if (n > TOKEN_MAX_SIZE)
		return -E2BIG;
	char *s = malloc(base64url_encoded_size(n) + 1);
	if (!s)
		return -ENOMEM;
	base64url_encode(token, n, s);
	*ret_text = s;
	return 0;
}

int token_decode_text(const char *text, struct buf *ret_token)
{
	size_t len = strnlen(text, TOKEN_TEXT_MAX + 1);
	if (len > TOKEN_TEXT_MAX)
		return -E2BIG;
	if (len == 0)
		return -EBADMSG;
	uint8_t out[TOKEN_MAX_SIZE];
	size_t o = 0;
	int r = base64url_decode(text, len, out, sizeof(out), &o);
	if (r < 0)
		return r == -E2BIG ? -E2BIG : -EBADMSG;
	return buf_append(ret_token, out, o);
}

/* --- token files --- */

int token_read_file(const char *path, struct buf *ret_token, struct error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		int r = negative_errno();
		return error_set(err, r, "cannot open token file %s: %s", path, strerror(-r));
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int r = negative_errno();
		return error_set(err, r, "cannot stat token file %s: %s", path, strerror(-r));
	}
	if (!S_ISREG(st.st_mode))
		return error_set(err, -EINVAL, "token file %s is not a regular file", path);
	/* A token is a bearer credential for five minutes: keep it private. */
	if (st.st_mode & (S_IRWXG | S_IRWXO))
		return error_set(err, -EPERM, "token file %s is accessible by group or others (mode %04o); chmod 600 it",
				 path, (unsigned)(st.st_mode & 07777));
	_cleanup_(secret_buf_freep) struct buf text;
	buf_init(&text, TOKEN_FILE_MAX + 1);
	int r = fs_read_fd(fd, TOKEN_FILE_MAX, &text);
	if (r == -EFBIG)
		return error_set(err, -EFBIG, "token file %s is larger than %d bytes", path, TOKEN_FILE_MAX);
	if (r < 0)
		return error_set(err, r, "cannot read token file %s: %s", path, strerror(-r));
	size_t len = text.len;
	if (len > 0 && text.data[len - 1] == '\n')
		text.data[--len] = '\0';
	if (len == 0)
		return error_set(err, -EBADMSG, "token file %s is empty", path);
	if (strlen(text.data) != len)
		return error_set(err, -EBADMSG, "token file %s holds a NUL byte", path);
	r = token_decode_text(text.data, ret_token);
	if (r == -E2BIG)
		return error_set(err, r, "token in %s is larger than %d bytes", path, TOKEN_MAX_SIZE);
	if (r < 0)
		return error_set(err, r, "token file %s does not hold one line of base64url", path);
	return 0;
}

int token_write_file(const char *path, const void *token, size_t n, struct error *err)
{
	_cleanup_free_ char *text = NULL;
	int r = token_encode_text(token, n, &text);
	if (r < 0)
		return error_set(err, r, "cannot encode a token of %zu bytes", n);
	size_t len = strlen(text);
	text[len] = '\n';  /* replaces the NUL: the file holds one line */
	/* No fsync: a token lost in a crash is simply fetched again. */
	r = fs_write_atomic(path, text, len + 1, 0600, false);
	if (r < 0)
		return error_set(err, r, "cannot write token file %s: %s", path, strerror(-r));
	return 0;
}
