/*
 * base64url (RFC 4648 §5) without padding, strict: one text form per byte
 * string. Used for routing-token files, JWT parts and JWK members.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* The value of one base64url character, or -1 for anything else (padding, whitespace, '+', '/'). */
int base64url_value(unsigned char c);
/* Characters needed for n bytes (no padding, no NUL). */
static inline size_t base64url_encoded_size(size_t n) { return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0); }
/* Writes base64url_encoded_size(n) characters and a NUL to out. */
void base64url_encode(const void *in, size_t n, char *out);
/* Decodes len characters of s into out (room for cap bytes): -EBADMSG for a
 * character outside the alphabet, a length of 1 mod 4 or non-zero unused low
 * bits in the last character; -E2BIG when the result would pass cap. */
int base64url_decode(const char *s, size_t len, uint8_t *out, size_t cap, size_t *ret_len);
