/*
 * A small HTTP client over libcurl, for the OAuth2 token calls of hpccd (and
 * whatever else there needs one request and one capped answer): GET, and
 * POST of an application/x-www-form-urlencoded form. Only http and https
 * URLs, redirects never followed, TLS always verified against the system's
 * CAs, plain http never sent through a proxy (an https request may go
 * through one set in the environment, in a CONNECT tunnel), every call bounded in time and in the size of what it accepts. Bodies
 * are never logged: token requests carry passwords and tokens. Thread-safe:
 * each call uses an easy handle of its own. hpccd only (the static wrapper
 * does not link libcurl).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "error.h"

#define HTTP_URL_MAX 4096           /* longer URLs are refused (-ENAMETOOLONG) */
#define HTTP_FORM_MAX (64 * 1024)   /* cap on an encoded form (-E2BIG) */
#define HTTP_TIMEOUT_MAX_MS (10 * 60 * 1000)

/*
 * Each returns 0 once an answer arrived, whatever its status: *ret_status
 * gets the HTTP status (a 302 is returned as such, not followed) and body
 * (reset first) holds at most max_bytes bytes of it. Errors, each with a
 * one-line message that names the URL without its query string:
 *   -EINVAL            bad arguments (timeout_ms outside 1..HTTP_TIMEOUT_MAX_MS,
 *                      max_bytes 0, a field name or value NULL)
 *   -ENAMETOOLONG      URL longer than HTTP_URL_MAX
 *   -EPROTONOSUPPORT   a scheme other than http or https
 *   -EFBIG             the answer was longer than max_bytes (the transfer is
 *                      aborted as soon as that is known)
 *   -ETIMEDOUT         no complete answer within timeout_ms (connect included)
 *   -ECONNREFUSED, -EHOSTUNREACH  the server could not be reached
 *   -EKEYREJECTED      the server's TLS certificate did not verify
 *   -EIO, -ENOMEM      anything else
 */
int http_get(const char *url, size_t max_bytes, int timeout_ms, struct buf *body, long *ret_status,
	     struct error *err);
/* A failed libcurl transfer (a CURLcode) as the negative errno above and one line naming where
 * (a URL already stripped of secrets); overflow: the write callback stopped it past max bytes.
 * For other libcurl users (the S3 client), so that failures read and map alike. */
int http_curl_error(int code, bool overflow, size_t max, const char *where, const char *detail, struct error *err);
/* fields: name, value, name, value, ..., NULL. Names and values are
 * percent-encoded here; the encoded form is wiped from memory after the call
 * (it may hold a password). libcurl's own copy of it, in its request
 * buffer, is freed without wiping. */
int http_post_form(const char *url, const char *const *fields, size_t max_bytes, int timeout_ms, struct buf *body,
		   long *ret_status, struct error *err);
