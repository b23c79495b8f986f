/*
 * HTTP over libcurl (see http.h). One easy handle per call keeps the calls
 * independent across threads; connection reuse would save a TLS handshake
 * per token refresh, which happens a few times an hour, so it is not worth
 * a shared cache. What is set on every handle, and why:
 * - only http and https, for the request and for redirects (which are not
 *   followed anyway): a URL from a scheduler's answer must not make us read
 *   file:// or talk to other protocols;
 * - no signals (CURLOPT_NOSIGNAL): hpccd is multi-threaded and libcurl's
 *   alarm()-based DNS timeout would hit a random thread;
 * - no Accept-Encoding: an answer is never decompressed, so the cap on
 *   max_bytes is the cap on memory;
 * - TLS peer and host verification on, whatever the environment says;
 * - no proxy for plain http URLs, whatever http_proxy or ALL_PROXY say:
 *   libcurl would send the request, a password grant included, to the
 *   proxy in clear text (hpcc allows plain http only to loopback token
 *   endpoints, which a proxy has no business seeing); https URLs may still
 *   go through a proxy, in a CONNECT tunnel that TLS protects end to end.
 * Nothing here logs bodies or form fields: they hold passwords and tokens.
 */
#include "http.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#ifndef HPCC_VERSION
#define HPCC_VERSION "0"
#endif

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_result = CURLE_FAILED_INIT;

static void global_init(void)
{
	global_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

DEFINE_CLEANUP_FUNC(CURL, curl_easy_cleanup)
DEFINE_CLEANUP_FUNC(struct curl_slist, curl_slist_free_all)

/* The URL for messages: no user info, no query string, no fragment (they
 * may hold credentials), at most 200 bytes. */
static void url_for_message(const char *url, char out[256])
{
	const char *start = url;
	const char *scheme_end = strstr(url, "://");
	size_t prefix = 0;
	if (scheme_end) {
		prefix = (size_t)(scheme_end + 3 - url);
		const char *host = scheme_end + 3;
		size_t authority = strcspn(host, "/?#");
		const char *at = memchr(host, '@', authority);
		if (at)
			start = at + 1;
		else
			start = host;
	}
	size_t rest = strcspn(start, "?#");
	int n = snprintf(out, 256, "%.*s%.*s", (int)(prefix < 16 ? prefix : 16), url, (int)(rest < 200 ? rest : 200),
			 start);
	if (n > 0)
		error_printable(out);
}

struct sink {
	struct buf *body;
	size_t max;
	bool overflow;
};

static size_t write_cb(char *data, size_t size, size_t nmemb, void *userdata)
{
	struct sink *s = userdata;
	size_t n = size * nmemb;
	if (n > s->max - s->body->len) {
		s->overflow = true;
		return 0;  /* aborts the transfer with CURLE_WRITE_ERROR */
	}
	if (buf_append(s->body, data, n) < 0) {
		s->overflow = true;
		return 0;
	}
	return n;
}

int http_curl_error(int code, bool overflow, size_t max, const char *where, const char *detail, struct error *err)
{
	CURLcode rc = (CURLcode)code;
	const char *why = detail && detail[0] ? detail : curl_easy_strerror(rc);
	switch (rc) {
	case CURLE_WRITE_ERROR:
	case CURLE_FILESIZE_EXCEEDED:
		if (overflow || rc == CURLE_FILESIZE_EXCEEDED)
			return error_set(err, -EFBIG, "the answer of %s is larger than %zu bytes", where, max);
		break;
	case CURLE_UNSUPPORTED_PROTOCOL:
		return error_set(err, -EPROTONOSUPPORT, "%s: only http and https URLs are allowed", where);
	case CURLE_OPERATION_TIMEDOUT:
		return error_set(err, -ETIMEDOUT, "%s did not answer in time (%s)", where, why);
	case CURLE_COULDNT_CONNECT:
		return error_set(err, -ECONNREFUSED, "cannot connect to %s (%s)", where, why);
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return error_set(err, -EHOSTUNREACH, "cannot resolve the host of %s (%s)", where, why);
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
		return error_set(err, -EKEYREJECTED, "the TLS certificate of %s did not verify (%s)", where, why);
	case CURLE_OUT_OF_MEMORY:
		return error_set(err, -ENOMEM, "out of memory talking to %s", where);
	case CURLE_URL_MALFORMAT:
		return error_set(err, -EINVAL, "malformed URL %s", where);
	default:
		break;
	}
	return error_set(err, -EIO, "request to %s failed (%s)", where, why);
}

static int map_error(CURLcode rc, const struct sink *sink, const char *url, const char *detail, struct error *err)
{
	char where[256];
	url_for_message(url, where);
	return http_curl_error(rc, sink->overflow, sink->max, where, detail, err);
}

static bool scheme_allowed(const char *url)
{
	return strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0;
}

/* form: NULL for a GET, else the encoded form (len bytes) to POST. */
static int perform(const char *url, const char *form, size_t form_len, size_t max_bytes, int timeout_ms,
		   struct buf *body, long *ret_status, struct error *err)
{
	if (!url || !body || !ret_status || max_bytes == 0 || timeout_ms <= 0 || timeout_ms > HTTP_TIMEOUT_MAX_MS)
		return error_set(err, -EINVAL, "invalid HTTP request arguments");
	if (strnlen(url, HTTP_URL_MAX + 1) > HTTP_URL_MAX)
		return error_set(err, -ENAMETOOLONG, "URL longer than %d bytes", HTTP_URL_MAX);
	if (!scheme_allowed(url)) {
		char where[256];
		url_for_message(url, where);
		return error_set(err, -EPROTONOSUPPORT, "%s: only http and https URLs are allowed", where);
	}
	pthread_once(&global_once, global_init);
	if (global_result != CURLE_OK)
		return error_set(err, -EIO, "libcurl failed to initialise (%s)", curl_easy_strerror(global_result));

	_cleanup_(curl_easy_cleanupp) CURL *h = curl_easy_init();
	if (!h)
		return error_set(err, -ENOMEM, "out of memory creating an HTTP request");
	_cleanup_(curl_slist_free_allp) struct curl_slist *headers = curl_slist_append(NULL, "Accept: application/json");
	if (!headers)
		return error_set(err, -ENOMEM, "out of memory creating an HTTP request");

	buf_reset(body);
	struct sink sink = { .body = body, .max = max_bytes };
	char detail[CURL_ERROR_SIZE] = "";
	bool ok = curl_easy_setopt(h, CURLOPT_URL, url) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max_bytes) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, detail) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_USERAGENT, "hpcc/" HPCC_VERSION) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers) == CURLE_OK;
	if (ok && strncasecmp(url, "http://", 7) == 0)
		ok = curl_easy_setopt(h, CURLOPT_PROXY, "") == CURLE_OK;
	if (ok && form) {
		/* POSTFIELDS itself does not copy, but libcurl appends a body this
		 * small (under 64 KiB) to its request buffer with the headers and
		 * frees that unwiped: the wipe of the form in http_post_form
		 * removes our copy only (docs/auth.md says what is wiped). */
		ok = curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)form_len) == CURLE_OK &&
		     curl_easy_setopt(h, CURLOPT_POSTFIELDS, form) == CURLE_OK;
	}
	if (!ok)
		return error_set(err, -EIO, "libcurl refused an option (built without http or https?)");

	CURLcode rc = curl_easy_perform(h);
	if (rc != CURLE_OK) {
		error_printable(detail);
		int r = map_error(rc, &sink, url, detail, err);
		buf_reset(body);
		return r;
	}
	long status = 0;
	if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status < 100 || status > 999)
		return error_set(err, -EIO, "no HTTP status in the answer");
	*ret_status = status;
	return 0;
}

int http_get(const char *url, size_t max_bytes, int timeout_ms, struct buf *body, long *ret_status,
	     struct error *err)
{
	return perform(url, NULL, 0, max_bytes, timeout_ms, body, ret_status, err);
}

static bool is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
	       c == '_' || c == '~';
}

static size_t encoded_len(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += is_unreserved((unsigned char)*s) ? 1 : 3;
	return n;
}

static char *encode_into(char *o, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (is_unreserved(c)) {
			*o++ = (char)c;
		} else {
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	return o;
}

int http_post_form(const char *url, const char *const *fields, size_t max_bytes, int timeout_ms, struct buf *body,
		   long *ret_status, struct error *err)
{
	if (!fields)
		return error_set(err, -EINVAL, "invalid HTTP request arguments");
	/* Measured first and allocated once: growing the buffer would leave
	 * copies of a password in freed memory. */
	size_t total = 0;
	for (size_t i = 0; fields[i]; i += 2) {
		if (!fields[i + 1])
			return error_set(err, -EINVAL, "form field %s has no value", fields[i]);
		size_t name_len = strnlen(fields[i], HTTP_FORM_MAX + 1), value_len = strnlen(fields[i + 1], HTTP_FORM_MAX + 1);
		if (name_len > HTTP_FORM_MAX || value_len > HTTP_FORM_MAX)
			return error_set(err, -E2BIG, "form larger than %d bytes", HTTP_FORM_MAX);
		total += (i ? 1 : 0) + encoded_len(fields[i]) + 1 + encoded_len(fields[i + 1]);
		if (total > HTTP_FORM_MAX)
			return error_set(err, -E2BIG, "form larger than %d bytes", HTTP_FORM_MAX);
	}
	char *form = malloc(total + 1);
	if (!form)
		return error_set(err, -ENOMEM, "out of memory encoding a form");
	char *o = form;
	for (size_t i = 0; fields[i]; i += 2) {
		if (i)
			*o++ = '&';
		o = encode_into(o, fields[i]);
		*o++ = '=';
		o = encode_into(o, fields[i + 1]);
	}
	*o = '\0';
	int r = perform(url, form, total, max_bytes, timeout_ms, body, ret_status, err);
	OPENSSL_cleanse(form, total + 1);
	free(form);
	return r;
}
