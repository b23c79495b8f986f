/*
 * Routing tokens: short-lived Ed25519-signed claims that let one client send
 * compiles for one tenant and one toolchain image to one worker. The
 * scheduler (for now an operator's key) issues them; the worker verifies one
 * on every call and checks every claim against what the call asks for. A
 * token is the serialized hpcc.v1.RoutingToken message; on the client it is
 * kept in a token file as one line of base64url. See docs/tokens.md.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "digest.h"
#include "error.h"

#define TOKEN_MAX_SIZE 1024          /* cap on an encoded token from outside */
#define TOKEN_MAX_TTL 300            /* seconds */
#define TOKEN_CLOCK_SKEW 30          /* seconds tolerated on issued_at in the future */
#define TOKEN_NONCE_SIZE 16
#define TOKEN_SIGNATURE_SIZE 64      /* Ed25519 */
/* The signature covers this context, one NUL byte, then the claims bytes, so
 * that a signature made for anything else with the same key never verifies. */
#define TOKEN_SIGNING_CONTEXT "hpcc-routing-token-v1"
#define TOKEN_NAME_MAX 64            /* tenant, worker id, key id */
#define TOKEN_TEXT_MAX 1366          /* base64url length of TOKEN_MAX_SIZE bytes */
#define TOKEN_FILE_MAX 4096          /* cap on a token file */
#define TOKEN_KEY_FILE_MAX 16384     /* cap on a PEM key file or string */

struct token_claims {
	char tenant[TOKEN_NAME_MAX + 1];         /* [A-Za-z0-9._-]{1,64}, not starting with '.' */
	char image_digest[DIGEST_STR_LEN + 1];   /* "sha256:<64 lowercase hex>" */
	char worker_id[TOKEN_NAME_MAX + 1];      /* same charset as tenant */
	int64_t issued_at, expires_at;           /* Unix seconds */
	char key_id[TOKEN_NAME_MAX + 1];         /* same charset; token_issue fills an empty one */
};

/* [A-Za-z0-9._-]{1,TOKEN_NAME_MAX}, not starting with '.': tenants, worker ids, key ids. */
bool token_name_valid(const char *s);
/* "sha256:" and 64 lowercase hex digits: one spelling per image. */
bool token_image_digest_valid(const char *s);

/* An Ed25519 key (an EVP_PKEY inside), private or public only. */
struct token_key;

int token_key_generate(struct token_key **ret);
/* Reads a PEM key file of at most TOKEN_KEY_FILE_MAX bytes: a PKCS#8 private
 * key when want_private, a SubjectPublicKeyInfo public key otherwise (a
 * private key file is refused there, so that private keys do not spread to
 * workers). -EKEYREJECTED for a key that is not Ed25519, -EPERM for a private
 * key file that group or others may access, -EBADMSG for anything that does
 * not parse (an encrypted key included: nothing ever prompts). */
int token_key_load_file(const char *path, bool want_private, struct token_key **ret, struct error *err);
/* Writes PKCS#8 PEM, mode 0600, atomically; -EINVAL for a public-only key. */
int token_key_save_private(const struct token_key *k, const char *path, struct error *err);
/* Writes SubjectPublicKeyInfo PEM, mode 0644, atomically. */
int token_key_save_public(const struct token_key *k, const char *path, struct error *err);
/* The public half as a malloc'd, NUL-terminated SubjectPublicKeyInfo PEM. */
int token_key_public_pem(const struct token_key *k, char **ret_pem);
/* Parses a public key PEM (the scheduler will hand workers its key this
 * way): -E2BIG past TOKEN_KEY_FILE_MAX, -EBADMSG, -EKEYREJECTED as above. */
int token_key_from_public_pem(const char *pem, size_t n, struct token_key **ret);
bool token_key_has_private(const struct token_key *k);
/* "ed25519-" and 16 hex digits of the SHA-256 of the raw public key: a
 * stable name for a key, used as the key_id claim unless one is given. */
int token_key_id(const struct token_key *k, char ret_id[TOKEN_NAME_MAX + 1]);
void token_key_free(struct token_key *k);
DEFINE_CLEANUP_FUNC(struct token_key, token_key_free)
#define _cleanup_token_key_ _cleanup_(token_key_freep)

/* Signs claims and appends the token to ret_token; fills the nonce itself
 * (16 bytes from RAND_bytes). -EINVAL for a public-only key, a malformed
 * claim, or expires_at - issued_at outside 1..TOKEN_MAX_TTL. */
int token_issue(const struct token_key *priv, const struct token_claims *c, struct buf *ret_token);
/* token_issue with a given nonce: for tests (deterministic vectors) only. */
int token_issue_with_nonce(const struct token_key *priv, const struct token_claims *c,
			   const uint8_t nonce[TOKEN_NONCE_SIZE], struct buf *ret_token);

/* What the verifier demands; NULL fields are not checked (but tenant, image
 * and worker are always given by the worker). */
struct token_expect {
	const char *tenant;
	const char *image_digest;
	const char *worker_id;
};

/* Verifies the signature first (over the exact claims bytes), then parses the
 * claims and checks them: every field well-formed, expires_at - issued_at
 * <= TOKEN_MAX_TTL, expires_at > now, issued_at <= now + TOKEN_CLOCK_SKEW,
 * and each expect field equal. Errors: -E2BIG oversize; -EBADMSG malformed
 * (the envelope must also be exactly as token_issue encodes it); -EACCES
 * bad signature, lifetime too long, issued in the future, or a claim that
 * does not match; -EKEYEXPIRED expired. err gets one line that names the
 * failed claim. ret_claims (may be NULL) is written only on success. */
int token_verify(const struct token_key *pub, const void *token, size_t n, const struct token_expect *expect,
		 int64_t now, struct token_claims *ret_claims, struct error *err);

/* base64url without padding, for token files. Encoding takes at most
 * TOKEN_MAX_SIZE bytes (-E2BIG). Decoding is strict: -EBADMSG for an empty
 * text, a character outside [A-Za-z0-9_-] (padding and whitespace
 * included), a length of 1 mod 4 or non-zero unused bits; -E2BIG past
 * TOKEN_TEXT_MAX characters. Decoded bytes are appended to ret_token. */
int token_encode_text(const void *token, size_t n, char **ret_text);
int token_decode_text(const char *text, struct buf *ret_token);

/* Reads a token file: one line of base64url, one trailing newline allowed,
 * at most TOKEN_FILE_MAX bytes (-EFBIG). -EPERM when group or others may
 * access the file. The decoded token is appended to ret_token. */
int token_read_file(const char *path, struct buf *ret_token, struct error *err);
/* Writes a token file (mode 0600, atomically, with a trailing newline). */
int token_write_file(const char *path, const void *token, size_t n, struct error *err);
