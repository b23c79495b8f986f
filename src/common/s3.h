/*
 * A small S3 client over libcurl, for the worker's shared S3 tier: GET, PUT,
 * HEAD and DELETE of whole objects and ListObjectsV2, signed with AWS
 * Signature Version 4 by libcurl itself (CURLOPT_AWS_SIGV4). What libcurl
 * leaves to the caller is done here: the query string is built sorted and
 * RFC 3986-encoded (libcurl 7.88 signs it as given), object keys are
 * encoded, and x-amz-content-sha256 is computed here from the body. Path
 * style (http://host/bucket/key) for custom endpoints, virtual-host style
 * (https://bucket.host/key) for AWS. Every request is bounded in time and in
 * the size of the answer; 5xx, 429 and transport errors are retried a
 * bounded number of times with exponential backoff, 4xx never. Credentials
 * come from the config, else the environment, else a credentials file
 * (mode 0600 or stricter); they never appear in messages. hpccd only.
 * A client is thread-safe: its calls are serialised on one libcurl handle
 * (which keeps the connection alive); use one client per thread to run
 * requests in parallel. docs/s3.md has the internals.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "error.h"

#define S3_KEY_MAX 1024               /* S3's own limit on an object key, in bytes */
#define S3_LIST_MAX_KEYS 1000         /* S3's page size; a page with more is refused */
#define S3_LIST_RESPONSE_MAX (4u << 20)
#define S3_ERROR_BODY_MAX (64u << 10) /* what is read of a non-2xx answer */
#define S3_RETRIES_MAX 10
#define S3_TIMEOUT_MAX_MS (10 * 60 * 1000)
#define S3_CREDENTIALS_FILE_MAX (64u << 10)

struct s3_config {
	/* "https://s3.eu-west-1.amazonaws.com" or "http://127.0.0.1:4569": a
	 * scheme, a host and an optional port, nothing else. */
	const char *endpoint;
	const char *region;         /* "us-east-1"; required */
	const char *bucket;         /* required (a DNS-safe name when !path_style) */
	const char *prefix;         /* prepended to every key ("" or NULL for none) */
	bool path_style;            /* true: host/bucket/key; false: bucket.host/key */
	/* NULL: the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
	 * AWS_SESSION_TOKEN), else credentials_file. Copied, wiped on free. */
	const char *access_key, *secret_key, *session_token;
	/* NULL: $AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials; the
	 * section is $AWS_PROFILE, else "default". */
	const char *credentials_file;
	int timeout_ms;             /* per attempt; 0 = 30 s */
	int retries;                /* extra attempts on 5xx/429/transport errors, 0..S3_RETRIES_MAX */
	int backoff_ms;             /* first wait before a retry, doubled each time, capped at 5 s; 0 = 100 ms */
	/* The SigV4 service name; NULL = "s3". x-amz-content-sha256 is sent
	 * only for "s3" (other services do not know it): tests use "service"
	 * to check the published AWS test-suite vectors. */
	const char *service;
	/* A CURLOPT_CONNECT_TO entry ("host:port:addr:port"): connect there
	 * while signing for and naming the endpoint's host. NULL = none. */
	const char *connect_to;
	/* Tests only: the X-Amz-Date to sign with ("20150830T123600Z"), which
	 * libcurl then uses instead of the clock. NULL = the clock. */
	const char *fixed_amz_date;
};

struct s3_client;

/* The addressing style an endpoint gets unless told otherwise: virtual-host
 * style for AWS (*.amazonaws.com), path style for everything else. */
bool s3_default_path_style(const char *endpoint);

/* -EINVAL for a bad config, -ENOKEY when no credentials are found, -EPERM
 * for a credentials file readable by others. */
int s3_client_new(const struct s3_config *cfg, struct s3_client **ret, struct error *err);
void s3_client_free(struct s3_client *c);

/*
 * Object operations; key is relative to the configured prefix, 1..S3_KEY_MAX
 * bytes, no NUL. Each returns 0 or a negative errno with a message that names
 * the bucket and key and never credentials:
 *   -ENOENT     404 (no such key or bucket)
 *   -EACCES     403
 *   -EFBIG      the object is larger than max (s3_get)
 *   -EAGAIN     5xx or 429 on every attempt
 *   -ETIMEDOUT, -ECONNREFUSED, -EHOSTUNREACH  transport, on every attempt
 *   -EIO        any other answer; -EBADMSG a list answer that does not parse
 */
int s3_get(struct s3_client *c, const char *key, size_t max, struct buf *body, struct error *err);
int s3_put(struct s3_client *c, const char *key, const void *data, size_t n, struct error *err);
int s3_head(struct s3_client *c, const char *key, uint64_t *ret_size, struct error *err);
/* The same, with the object's Last-Modified (seconds since the epoch, -1
 * when the answer has none) in *ret_mtime (NULL: not wanted). */
int s3_get_mtime(struct s3_client *c, const char *key, size_t max, struct buf *body, int64_t *ret_mtime,
		 struct error *err);
int s3_head_mtime(struct s3_client *c, const char *key, uint64_t *ret_size, int64_t *ret_mtime, struct error *err);
/* Deleting a missing key succeeds, as S3 answers 204 either way. */
int s3_delete(struct s3_client *c, const char *key, struct error *err);

struct s3_object {
	char *key;          /* relative to the configured prefix */
	uint64_t size;
	int64_t mtime;      /* LastModified, seconds since the epoch (UTC) */
};

struct s3_list_page {
	struct s3_object *objects;
	size_t n_objects;
	char *next_token;   /* NULL on the last page */
};

/* One ListObjectsV2 page of the keys under prefix (relative to the
 * configured one; NULL or "" for all); continuation is NULL or the
 * next_token of the previous page. */
int s3_list(struct s3_client *c, const char *prefix, const char *continuation, struct s3_list_page *ret,
	    struct error *err);
void s3_list_page_free(struct s3_list_page *p);

/*
 * A raw signed request, which the operations above are made of: exposed for
 * the tests (the AWS vectors) and for calls this module does not wrap.
 * path is encoded already and starts with '/'; it is the path on the host
 * (which is bucket.host in virtual-host style, so the bucket is not in it
 * then). query: name, value, ..., NULL (raw; encoded and sorted here) or
 * NULL. headers: "Name: value" strings, NULL-terminated, or NULL. The
 * answer's status goes to *ret_status and at most max_response bytes of its
 * body to response; 5xx/429/transport errors are retried like the others.
 */
struct s3_request {
	const char *method;          /* GET, PUT, POST, HEAD, DELETE */
	const char *path;
	const char *const *query;
	const char *const *headers;
	const void *body;
	size_t body_len;
	size_t max_response;
};
int s3_request(struct s3_client *c, const struct s3_request *req, struct buf *response, long *ret_status,
	       uint64_t *ret_content_length, struct error *err);

/* Helpers, exposed for tests. */
/* Appends s percent-encoded per RFC 3986 (unreserved kept, %XX upper case);
 * '/' kept unless encode_slash. */
int s3_uri_encode(const char *s, bool encode_slash, struct buf *out);
/* Appends the canonical query of pairs (name, value, ..., NULL): each name
 * and value encoded, sorted by encoded name then value, "name=" for an
 * empty value, joined with '&'. At most 64 pairs (-E2BIG). */
int s3_canonical_query(const char *const *pairs, struct buf *out);
