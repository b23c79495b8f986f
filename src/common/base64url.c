/* Strict base64url without padding (see base64url.h). */
#include "base64url.h"

#include <errno.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int base64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

void base64url_encode(const void *in, size_t n, char *out)
{
	const uint8_t *p = in;
	size_t o = 0, i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		out[o++] = alphabet[v >> 18 & 63];
		out[o++] = alphabet[v >> 12 & 63];
		out[o++] = alphabet[v >> 6 & 63];
		out[o++] = alphabet[v & 63];
	}
	if (n - i > 0) {
		uint32_t v = (uint32_t)p[i] << 16 | (n - i == 2 ? (uint32_t)p[i + 1] << 8 : 0);
		out[o++] = alphabet[v >> 18 & 63];
		out[o++] = alphabet[v >> 12 & 63];
		if (n - i == 2)
			out[o++] = alphabet[v >> 6 & 63];
	}
	out[o] = '\0';
}

int base64url_decode(const char *s, size_t len, uint8_t *out, size_t cap, size_t *ret_len)
{
	/* One character alone carries only 6 bits: no encoder produces it. */
	if (len % 4 == 1)
		return -EBADMSG;
	size_t want = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
	if (want > cap)
		return -E2BIG;
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		int v = base64url_value((unsigned char)s[i]);
		if (v < 0)
			return -EBADMSG;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* The bits left over must be zero, so that each byte string has exactly one text form. */
	if (acc != 0)
		return -EBADMSG;
	*ret_len = o;
	return 0;
}
