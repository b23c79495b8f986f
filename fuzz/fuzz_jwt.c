/*
 * JWKS documents and JWT access tokens (src/common/jwt.c): the input up to
 * its first NUL byte is a JWKS, parsed with jwks_parse as the scheduler
 * parses a tenant's fetched key set; what follows is a token, which goes
 * through jwt_header_kid and jwt_verify as an access token from a client
 * does. The seeds are RFC 7515's RS256 and ES256 examples (iss "joe"),
 * which verify at the fixed time used here, so the claim checks are reached
 * too. Forging a signature over a new signing input is out of reach of a
 * fuzzer (it cannot compute SHA-256 through uninstrumented OpenSSL, let
 * alone sign), so a token that verifies with any other header or payload
 * means the verifier accepted garbage: that traps.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "error.h"
#include "jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The signing inputs (header "." payload) of the RFC 7515 A.2 and A.3 tokens. */
#define RFC_CLAIMS "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
static const char *const signed_inputs[] = {
	"eyJhbGciOiJSUzI1NiJ9." RFC_CLAIMS,
	"eyJhbGciOiJFUzI1NiJ9." RFC_CLAIMS,
};

static void check_accepted(const char *token, size_t n)
{
	const char *dot = memchr(token, '.', n);
	const char *dot2 = dot ? memchr(dot + 1, '.', n - (size_t)(dot + 1 - token)) : NULL;
	if (!dot2)
		__builtin_trap();
	size_t len = (size_t)(dot2 - token);
	for (size_t i = 0; i < sizeof(signed_inputs) / sizeof(signed_inputs[0]); i++)
		if (strlen(signed_inputs[i]) == len && memcmp(signed_inputs[i], token, len) == 0)
			return;
	__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	const char *nul = memchr(text, '\0', size);
	size_t jwks_len = nul ? (size_t)(nul - text) : size;
	const char *token = nul ? nul + 1 : text + size;
	size_t token_len = nul ? size - jwks_len - 1 : 0;

	struct error err = { 0 };
	char kid[128];
	(void)jwt_header_kid(token, token_len, kid, sizeof(kid), &err);

	struct jwks *keys = NULL;
	if (jwks_parse(text, jwks_len, &keys, &err) < 0)
		return 0;
	char why[96];
	(void)jwks_count(keys);
	(void)jwks_skipped(keys, why, sizeof(why));

	/* As the scheduler checks a tenant's tokens, then without an audience
	 * (as the RFC examples have none). */
	const struct jwt_expect wants[] = {
		{ .issuer = "joe", .audience = "https://hpcc.example", .now = 1300819000, .skew = 60 },
		{ .issuer = "joe", .audience = NULL, .now = 1300819000, .skew = 0 },
	};
	for (size_t i = 0; i < sizeof(wants) / sizeof(wants[0]); i++) {
		struct jwt_claims claims;
		if (jwt_verify(keys, token, token_len, &wants[i], &claims, &err) == 0)
			check_accepted(token, token_len);
	}
	jwks_free(keys);
	return 0;
}
