/*
 * The S3 client (see s3.h and docs/s3.md). libcurl signs every request
 * (CURLOPT_AWS_SIGV4, "aws:amz:<region>:<service>"); this file builds what
 * libcurl 7.88 signs as given: the path (object keys percent-encoded, '/'
 * kept), the query (encoded and sorted, "name=" for empty values) and
 * x-amz-content-sha256 (libcurl uses a provided value as the payload hash,
 * and cannot hash a body it does not hold). Every header we pass is signed
 * by libcurl; "Name:" lines, which only remove a header libcurl would add,
 * are not. Secrets live in the client only, are handed to libcurl as
 * user name and password, and are wiped when the client is freed.
 */
#include "s3.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "digest.h"
#include "fs.h"
#include "http.h"

#ifndef HPCC_VERSION
#define HPCC_VERSION "0"
#endif

#define S3_QUERY_PAIRS_MAX 64
#define S3_URL_MAX 8192
#define S3_DEFAULT_TIMEOUT_MS 30000
#define S3_DEFAULT_BACKOFF_MS 100
#define S3_BACKOFF_CAP_MS 5000
#define S3_SECRET_MAX 4096

struct s3_client {
	pthread_mutex_t lock;
	CURL *curl;
	char *scheme;        /* "http" or "https" */
	char *host;          /* host[:port] of the endpoint */
	char *bucket;
	char *prefix;        /* "" when none */
	char *region;
	char *service;
	char *sigv4;         /* "aws:amz:<region>:<service>" */
	char *connect_to;
	char *fixed_amz_date;
	bool path_style;
	bool is_s3;
	int timeout_ms;
	int retries;
	int backoff_ms;
	int64_t last_mtime;  /* Last-Modified of the last answer, -1 when none (under lock) */
	/* Secrets: wiped on free. */
	char *access_key;
	char *secret_key;
	char *session_token;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_result = CURLE_FAILED_INIT;

static void global_init(void)
{
	global_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

DEFINE_CLEANUP_FUNC(struct curl_slist, curl_slist_free_all)

static void free_secret(char *s)
{
	if (!s)
		return;
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}

/* ---- Encoding ---- */

static bool is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
	       c == '_' || c == '~';
}

int s3_uri_encode(const char *s, bool encode_slash, struct buf *out)
{
	static const char hex[] = "0123456789ABCDEF";
	if (!s || !out)
		return -EINVAL;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (is_unreserved(c) || (c == '/' && !encode_slash)) {
			buf_append_char(out, (char)c);
		} else {
			char e[3] = { '%', hex[c >> 4], hex[c & 15] };
			buf_append(out, e, 3);
		}
	}
	return out->error;
}

struct query_pair {
	char *name;
	char *value;
};

static int pair_compare(const void *a, const void *b)
{
	const struct query_pair *x = a, *y = b;
	int r = strcmp(x->name, y->name);
	return r ? r : strcmp(x->value, y->value);
}

int s3_canonical_query(const char *const *pairs, struct buf *out)
{
	if (!out)
		return -EINVAL;
	if (!pairs)
		return out->error;
	size_t n = 0;
	for (; pairs[2 * n]; n++) {
		if (!pairs[2 * n + 1])
			return -EINVAL;
		if (n >= S3_QUERY_PAIRS_MAX)
			return -E2BIG;
	}
	struct query_pair p[S3_QUERY_PAIRS_MAX];
	int r = 0;
	size_t done = 0;
	for (; done < n; done++) {
		_cleanup_buf_ struct buf name, value;
		buf_init(&name, S3_URL_MAX);
		buf_init(&value, S3_URL_MAX);
		r = s3_uri_encode(pairs[2 * done], true, &name);
		if (r >= 0)
			r = s3_uri_encode(pairs[2 * done + 1], true, &value);
		if (r < 0)
			break;
		p[done].name = buf_steal(&name);
		p[done].value = buf_steal(&value);
	}
	if (r >= 0) {
		/* Sorted by code point of the encoded strings, as SigV4 says. */
		qsort(p, n, sizeof(p[0]), pair_compare);
		for (size_t i = 0; i < n; i++)
			buf_printf(out, "%s%s=%s", i ? "&" : "", p[i].name, p[i].value);
		r = out->error;
	}
	for (size_t i = 0; i < done; i++) {
		free(p[i].name);
		free(p[i].value);
	}
	return r;
}

/* ---- Configuration and credentials ---- */

static bool valid_host(const char *h)
{
	if (!*h || strlen(h) > 255)
		return false;
	for (const char *p = h; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
		      *p == '-' || *p == ':' || *p == '[' || *p == ']'))
			return false;
	return true;
}

/* Virtual-host style puts the bucket in a DNS name: lower case, digits,
 * '.', '-', 3 to 63 bytes. Path style also takes upper case and '_'. */
static bool valid_bucket(const char *b, bool path_style)
{
	size_t n = strlen(b);
	if (n < (path_style ? 1 : 3) || n > (path_style ? 255 : 63))
		return false;
	for (const char *p = b; *p; p++) {
		bool ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' ||
			  (path_style && ((*p >= 'A' && *p <= 'Z') || *p == '_'));
		if (!ok)
			return false;
	}
	return true;
}

static bool valid_token(const char *s)
{
	size_t n = strnlen(s, S3_SECRET_MAX + 1);
	if (n == 0 || n > S3_SECRET_MAX)
		return false;
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return false;
	return true;
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
		s[--n] = '\0';
	return s;
}

/* Reads [profile] of an ini credentials file into c. The buffer is sized
 * once, so no copy of a secret is left behind by a realloc, and wiped. */
static int credentials_from_file(struct s3_client *c, const char *path, const char *profile, struct error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		int r = -errno;
		return error_set(err, r == -ENOENT ? -ENOKEY : r, "no S3 credentials: not in the config nor the environment, and cannot open %s", path);
	}
	struct stat st;
	if (fstat(fd, &st) < 0)
		return error_set(err, -errno, "cannot stat %s", path);
	if (!S_ISREG(st.st_mode))
		return error_set(err, -EINVAL, "%s is not a regular file", path);
	if (st.st_mode & 077)
		return error_set(err, -EPERM, "%s is readable by others (mode %03o): chmod 600 it", path,
				 (unsigned)(st.st_mode & 0777));
	_cleanup_buf_ struct buf b;
	buf_init(&b, S3_CREDENTIALS_FILE_MAX + 1);
	int r = buf_reserve(&b, S3_CREDENTIALS_FILE_MAX + 1);
	if (r >= 0)
		r = fs_read_fd(fd, S3_CREDENTIALS_FILE_MAX, &b);
	if (r < 0) {
		if (b.data)
			OPENSSL_cleanse(b.data, b.alloc);
		return error_set(err, r, "cannot read %s", path);
	}
	bool in_section = false;
	char *ak = NULL, *sk = NULL, *tok = NULL;
	for (char *line = b.data; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		char *t = trim(line);
		line = nl ? nl + 1 : NULL;
		if (*t == '#' || *t == ';' || !*t)
			continue;
		if (*t == '[') {
			char *end = strchr(t, ']');
			if (end) {
				*end = '\0';
				in_section = strcmp(trim(t + 1), profile) == 0;
			}
			continue;
		}
		char *eq = strchr(t, '=');
		if (!in_section || !eq)
			continue;
		*eq = '\0';
		char *name = trim(t), *value = trim(eq + 1);
		if (strcmp(name, "aws_access_key_id") == 0)
			ak = value;
		else if (strcmp(name, "aws_secret_access_key") == 0)
			sk = value;
		else if (strcmp(name, "aws_session_token") == 0)
			tok = value;
	}
	r = 0;
	if (!ak || !sk)
		r = error_set(err, -ENOKEY, "no aws_access_key_id and aws_secret_access_key in [%s] of %s", profile, path);
	else if (!valid_token(ak) || !valid_token(sk) || (tok && !valid_token(tok)))
		r = error_set(err, -EINVAL, "malformed credentials in [%s] of %s", profile, path);
	else if (!(c->access_key = strdup(ak)) || !(c->secret_key = strdup(sk)) ||
		 (tok && !(c->session_token = strdup(tok))))
		r = error_set(err, -ENOMEM, "out of memory");
	OPENSSL_cleanse(b.data, b.alloc);
	return r;
}

static int load_credentials(struct s3_client *c, const struct s3_config *cfg, struct error *err)
{
	const char *ak = cfg->access_key, *sk = cfg->secret_key, *tok = cfg->session_token;
	const char *source = "the config";
	if (!ak && !sk) {
		ak = getenv("AWS_ACCESS_KEY_ID");
		sk = getenv("AWS_SECRET_ACCESS_KEY");
		tok = getenv("AWS_SESSION_TOKEN");
		source = "the environment";
		if (tok && !*tok)
			tok = NULL;
		if (!ak || !sk || !*ak || !*sk) {
			const char *path = cfg->credentials_file;
			_cleanup_free_ char *home_path = NULL;
			if (!path)
				path = getenv("AWS_SHARED_CREDENTIALS_FILE");
			if (!path || !*path) {
				const char *home = getenv("HOME");
				if (!home || !*home)
					return error_set(err, -ENOKEY, "no S3 credentials and no HOME to find ~/.aws/credentials");
				if (asprintf(&home_path, "%s/.aws/credentials", home) < 0)
					return error_set(err, -ENOMEM, "out of memory");
				path = home_path;
			}
			const char *profile = getenv("AWS_PROFILE");
			return credentials_from_file(c, path, profile && *profile ? profile : "default", err);
		}
	}
	if (!ak || !sk)
		return error_set(err, -EINVAL, "S3 config: access_key and secret_key go together");
	if (!valid_token(ak) || !valid_token(sk) || (tok && !valid_token(tok)))
		return error_set(err, -EINVAL, "malformed S3 credentials in %s", source);
	if (!(c->access_key = strdup(ak)) || !(c->secret_key = strdup(sk)) || (tok && !(c->session_token = strdup(tok))))
		return error_set(err, -ENOMEM, "out of memory");
	return 0;
}

void s3_client_free(struct s3_client *c)
{
	if (!c)
		return;
	if (c->curl)
		curl_easy_cleanup(c->curl);
	pthread_mutex_destroy(&c->lock);
	free(c->scheme);
	free(c->host);
	free(c->bucket);
	free(c->prefix);
	free(c->region);
	free(c->service);
	free(c->sigv4);
	free(c->connect_to);
	free(c->fixed_amz_date);
	free_secret(c->access_key);
	free_secret(c->secret_key);
	free_secret(c->session_token);
	free(c);
}

DEFINE_CLEANUP_FUNC(struct s3_client, s3_client_free)

static bool valid_region(const char *r)
{
	if (!*r || strlen(r) > 64)
		return false;
	for (const char *p = r; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
			return false;
	return true;
}

static bool valid_amz_date(const char *d)
{
	if (strlen(d) != 16 || d[8] != 'T' || d[15] != 'Z')
		return false;
	for (int i = 0; i < 15; i++)
		if (i != 8 && (d[i] < '0' || d[i] > '9'))
			return false;
	return true;
}

bool s3_default_path_style(const char *endpoint) { return !endpoint || !strstr(endpoint, ".amazonaws.com"); }

int s3_client_new(const struct s3_config *cfg, struct s3_client **ret, struct error *err)
{
	if (!cfg || !ret || !cfg->endpoint || !cfg->region || !cfg->bucket)
		return error_set(err, -EINVAL, "S3 config: endpoint, region and bucket are required");
	const char *e = cfg->endpoint, *hoststart;
	bool https;
	if (strncasecmp(e, "https://", 8) == 0) {
		https = true;
		hoststart = e + 8;
	} else if (strncasecmp(e, "http://", 7) == 0) {
		https = false;
		hoststart = e + 7;
	} else {
		return error_set(err, -EINVAL, "S3 endpoint %.200s: only http:// and https:// are allowed", e);
	}
	size_t hostlen = strlen(hoststart);
	if (hostlen > 0 && hoststart[hostlen - 1] == '/')
		hostlen--;
	_cleanup_free_ char *host = strndup(hoststart, hostlen);
	if (!host)
		return error_set(err, -ENOMEM, "out of memory");
	if (!valid_host(host))
		return error_set(err, -EINVAL, "S3 endpoint %.200s: want scheme://host[:port] and nothing else", e);
	if (!valid_bucket(cfg->bucket, cfg->path_style))
		return error_set(err, -EINVAL, "S3 bucket name %.100s is not valid%s", cfg->bucket,
				 cfg->path_style ? "" : " for virtual-host style");
	if (!valid_region(cfg->region))
		return error_set(err, -EINVAL, "S3 region %.100s is not valid", cfg->region);
	const char *service = cfg->service ? cfg->service : "s3";
	if (!valid_region(service))
		return error_set(err, -EINVAL, "SigV4 service %.100s is not valid", service);
	const char *prefix = cfg->prefix ? cfg->prefix : "";
	if (strlen(prefix) >= S3_KEY_MAX)
		return error_set(err, -EINVAL, "S3 prefix longer than %d bytes", S3_KEY_MAX - 1);
	if (cfg->timeout_ms < 0 || cfg->timeout_ms > S3_TIMEOUT_MAX_MS || cfg->retries < 0 ||
	    cfg->retries > S3_RETRIES_MAX || cfg->backoff_ms < 0 || cfg->backoff_ms > S3_BACKOFF_CAP_MS)
		return error_set(err, -EINVAL, "S3 config: timeout_ms, retries or backoff_ms out of range");
	if (cfg->fixed_amz_date && !valid_amz_date(cfg->fixed_amz_date))
		return error_set(err, -EINVAL, "S3 config: fixed_amz_date is not YYYYMMDDTHHMMSSZ");

	_cleanup_(s3_client_freep) struct s3_client *c = calloc(1, sizeof(*c));
	if (!c)
		return error_set(err, -ENOMEM, "out of memory");
	pthread_mutex_init(&c->lock, NULL);
	c->path_style = cfg->path_style;
	c->is_s3 = strcmp(service, "s3") == 0;
	c->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : S3_DEFAULT_TIMEOUT_MS;
	c->retries = cfg->retries;
	c->backoff_ms = cfg->backoff_ms ? cfg->backoff_ms : S3_DEFAULT_BACKOFF_MS;
	c->scheme = strdup(https ? "https" : "http");
	c->host = TAKE_PTR(host);
	c->bucket = strdup(cfg->bucket);
	c->prefix = strdup(prefix);
	c->region = strdup(cfg->region);
	c->service = strdup(service);
	if (asprintf(&c->sigv4, "aws:amz:%s:%s", cfg->region, service) < 0)
		c->sigv4 = NULL;
	c->connect_to = cfg->connect_to ? strdup(cfg->connect_to) : NULL;
	c->fixed_amz_date = cfg->fixed_amz_date ? strdup(cfg->fixed_amz_date) : NULL;
	if (!c->scheme || !c->bucket || !c->prefix || !c->region || !c->service || !c->sigv4 ||
	    (cfg->connect_to && !c->connect_to) || (cfg->fixed_amz_date && !c->fixed_amz_date))
		return error_set(err, -ENOMEM, "out of memory");
	int r = load_credentials(c, cfg, err);
	if (r < 0)
		return r;
	pthread_once(&global_once, global_init);
	if (global_result != CURLE_OK)
		return error_set(err, -EIO, "libcurl failed to initialise (%s)", curl_easy_strerror(global_result));
	c->curl = curl_easy_init();
	if (!c->curl)
		return error_set(err, -ENOMEM, "out of memory creating a libcurl handle");
	*ret = TAKE_PTR(c);
	return 0;
}

/* ---- One signed request ---- */

struct sink {
	CURL *curl;
	struct buf *body;
	size_t max;
	bool overflow;
};

/* A 2xx body is capped at max (overflow aborts the transfer); any other
 * body is only read for its error code: its first S3_ERROR_BODY_MAX bytes
 * are kept and the rest dropped. */
static size_t write_cb(char *data, size_t size, size_t nmemb, void *userdata)
{
	struct sink *s = userdata;
	size_t n = size * nmemb;
	long status = 0;
	curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status > 299) {
		size_t room = s->body->len < S3_ERROR_BODY_MAX ? S3_ERROR_BODY_MAX - s->body->len : 0;
		buf_append(s->body, data, n < room ? n : room);
		return n;
	}
	curl_off_t announced = -1;
	if (s->body->len == 0 && curl_easy_getinfo(s->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced) == CURLE_OK &&
	    announced > 0 && (uint64_t)announced > s->max) {
		s->overflow = true;
		return 0;
	}
	if (n > s->max - s->body->len || buf_append(s->body, data, n) < 0) {
		s->overflow = true;
		return 0;  /* aborts the transfer with CURLE_WRITE_ERROR */
	}
	return n;
}

static bool transport_retryable(int r)
{
	return r == -ETIMEDOUT || r == -ECONNREFUSED || r == -EHOSTUNREACH || r == -EIO;
}

static int build_url(struct s3_client *c, const struct s3_request *req, struct buf *url)
{
	buf_printf(url, "%s://", c->scheme);
	if (!c->path_style)
		buf_printf(url, "%s.", c->bucket);
	buf_printf(url, "%s%s", c->host, req->path);
	if (req->query && req->query[0]) {
		buf_append_char(url, '?');
		int r = s3_canonical_query(req->query, url);
		if (r < 0)
			return r;
	}
	return url->error;
}

static int build_headers(struct s3_client *c, const struct s3_request *req, struct curl_slist **ret)
{
	_cleanup_(curl_slist_free_allp) struct curl_slist *l = NULL;
	char line[256];
#define ADD(s)                                              \
	do {                                                \
		struct curl_slist *n_ = curl_slist_append(l, s); \
		if (!n_)                                    \
			return -ENOMEM;                     \
		l = n_;                                     \
	} while (0)
	if (c->is_s3) {
		struct digest d;
		char hex[DIGEST_HEX_LEN + 1];
		int r = digest_bytes(req->body ? req->body : "", req->body_len, &d);
		if (r < 0)
			return r;
		digest_to_hex(&d, hex);
		snprintf(line, sizeof(line), "x-amz-content-sha256: %s", hex);
		ADD(line);
	}
	if (c->fixed_amz_date) {
		snprintf(line, sizeof(line), "X-Amz-Date: %s", c->fixed_amz_date);
		ADD(line);
	}
	if (c->session_token) {
		_cleanup_free_ char *t = NULL;
		if (asprintf(&t, "x-amz-security-token: %s", c->session_token) < 0)
			return -ENOMEM;
		struct curl_slist *n = curl_slist_append(l, t);
		OPENSSL_cleanse(t, strlen(t));
		if (!n)
			return -ENOMEM;
		l = n;
	}
	for (size_t i = 0; req->headers && req->headers[i]; i++) {
		ADD(req->headers[i]);
	}
#undef ADD
	*ret = TAKE_PTR(l);
	return 0;
}

static int attempt(struct s3_client *c, const struct s3_request *req, const char *url, struct curl_slist *headers,
		   const char *where, struct buf *response, long *ret_status, uint64_t *ret_length, struct error *err)
{
	CURL *h = c->curl;
	curl_easy_reset(h);
	buf_reset(response);
	struct sink sink = { .curl = h, .body = response, .max = req->max_response };
	char detail[CURL_ERROR_SIZE] = "";
	bool head = strcmp(req->method, "HEAD") == 0, get = strcmp(req->method, "GET") == 0;
	bool ok = curl_easy_setopt(h, CURLOPT_URL, url) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->timeout_ms) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, detail) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_USERAGENT, "hpcc/" HPCC_VERSION) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_AWS_SIGV4, c->sigv4) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_USERNAME, c->access_key) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_PASSWORD, c->secret_key) == CURLE_OK &&
		  curl_easy_setopt(h, CURLOPT_FILETIME, 1L) == CURLE_OK;
	if (ok && strcmp(c->scheme, "http") == 0)
		ok = curl_easy_setopt(h, CURLOPT_PROXY, "") == CURLE_OK;
	if (ok) {
		if (head)
			ok = curl_easy_setopt(h, CURLOPT_NOBODY, 1L) == CURLE_OK;
		else if (get)
			ok = curl_easy_setopt(h, CURLOPT_HTTPGET, 1L) == CURLE_OK;
		else if (strcmp(req->method, "PUT") == 0 || strcmp(req->method, "POST") == 0)
			ok = curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len) == CURLE_OK &&
			     curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? req->body : "") == CURLE_OK &&
			     (strcmp(req->method, "PUT") != 0 ||
			      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT") == CURLE_OK);
		else
			ok = curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method) == CURLE_OK;
	}
	if (!ok)
		return error_set(err, -EIO, "libcurl refused an option (built without http, https or SigV4?)");
	/* libcurl does not copy this list: it lives until perform returns. */
	struct curl_slist connect_to = { .data = c->connect_to, .next = NULL };
	if (c->connect_to && curl_easy_setopt(h, CURLOPT_CONNECT_TO, &connect_to) != CURLE_OK)
		return error_set(err, -EIO, "libcurl refused CURLOPT_CONNECT_TO");
	CURLcode rc = curl_easy_perform(h);
	curl_easy_setopt(h, CURLOPT_CONNECT_TO, NULL);
	if (rc != CURLE_OK) {
		error_printable(detail);
		buf_reset(response);
		return http_curl_error(rc, sink.overflow, sink.max, where, detail, err);
	}
	long status = 0;
	if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status < 100 || status > 999)
		return error_set(err, -EIO, "%s: no HTTP status in the answer", where);
	curl_off_t length = -1;
	if (ret_length && curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length) == CURLE_OK && length >= 0)
		*ret_length = (uint64_t)length;
	/* Last-Modified, parsed by libcurl (-1 when absent). */
	curl_off_t mtime = -1;
	c->last_mtime = curl_easy_getinfo(h, CURLINFO_FILETIME_T, &mtime) == CURLE_OK ? (int64_t)mtime : -1;
	*ret_status = status;
	return 0;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int request_locked(struct s3_client *c, const struct s3_request *req, const char *where, struct buf *response,
			  long *ret_status, uint64_t *ret_length, struct error *err)
{
	if (!req->method || !req->path || req->path[0] != '/' || req->max_response == 0 ||
	    (req->body_len && !req->body))
		return error_set(err, -EINVAL, "%s: invalid S3 request arguments", where);
	_cleanup_buf_ struct buf url;
	buf_init(&url, S3_URL_MAX);
	int r = build_url(c, req, &url);
	if (r < 0)
		return error_set(err, r, "%s: cannot build the URL", where);
	_cleanup_(curl_slist_free_allp) struct curl_slist *headers = NULL;
	r = build_headers(c, req, &headers);
	if (r < 0)
		return error_set(err, r, "%s: cannot build the headers", where);
	int delay = c->backoff_ms;
	for (int i = 0;; i++) {
		struct error e = { 0 };
		long status = 0;
		uint64_t length = 0;
		r = attempt(c, req, url.data, headers, where, response, &status, &length, &e);
		bool retry = r < 0 ? transport_retryable(r) : (status >= 500 || status == 429);
		if (!retry || i >= c->retries) {
			if (r < 0)
				return error_set(err, r, "%s", e.msg);
			*ret_status = status;
			if (ret_length)
				*ret_length = length;
			return 0;
		}
		sleep_ms(delay);
		delay = delay * 2 > S3_BACKOFF_CAP_MS ? S3_BACKOFF_CAP_MS : delay * 2;
	}
}

int s3_request(struct s3_client *c, const struct s3_request *req, struct buf *response, long *ret_status,
	       uint64_t *ret_content_length, struct error *err)
{
	if (!c || !req || !response || !ret_status)
		return error_set(err, -EINVAL, "invalid S3 request arguments");
	char where[160];
	snprintf(where, sizeof(where), "S3 %s %.100s", req->method ? req->method : "?", req->path ? req->path : "?");
	pthread_mutex_lock(&c->lock);
	int r = request_locked(c, req, where, response, ret_status, ret_content_length, err);
	pthread_mutex_unlock(&c->lock);
	return r;
}

/* ---- Object operations ---- */

/* The S3 error code of an error answer (<Code>NoSuchKey</Code>), or "". */
static void error_code(const struct buf *body, char out[64])
{
	out[0] = '\0';
	if (!body->data)
		return;
	const char *s = strstr(body->data, "<Code>");
	if (!s)
		return;
	s += 6;
	size_t n = 0;
	while (n < 63 && ((s[n] >= 'A' && s[n] <= 'Z') || (s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') ||
			  s[n] == '.'))
		n++;
	if (strncmp(s + n, "</Code>", 7) != 0)
		return;
	memcpy(out, s, n);
	out[n] = '\0';
}

static int status_error(long status, const struct buf *body, const char *where, struct error *err)
{
	char code[64];
	error_code(body, code);
	const char *sep = code[0] ? ", " : "";
	if (status == 404)
		return error_set(err, -ENOENT, "%s: not found (404%s%s)", where, sep, code);
	if (status == 403)
		return error_set(err, -EACCES, "%s: access denied (403%s%s)", where, sep, code);
	if (status >= 500 || status == 429)
		return error_set(err, -EAGAIN, "%s: the server is unavailable (%ld%s%s)", where, status, sep, code);
	return error_set(err, -EIO, "%s: unexpected answer (%ld%s%s)", where, status, sep, code);
}

/* The path of an object: /bucket/prefix+key (path style) or /prefix+key,
 * encoded with '/' kept. */
static int object_path(struct s3_client *c, const char *key, struct buf *path, char *where, size_t where_size,
		       const char *op, struct error *err)
{
	snprintf(where, where_size, "S3 %s s3://%s/%s%.200s", op, c->bucket, c->prefix, key ? key : "");
	error_printable(where);
	if (!key || !*key)
		return error_set(err, -EINVAL, "%s: empty key", where);
	if (strlen(c->prefix) + strnlen(key, S3_KEY_MAX + 1) > S3_KEY_MAX)
		return error_set(err, -ENAMETOOLONG, "%s: key longer than %d bytes", where, S3_KEY_MAX);
	buf_append_char(path, '/');
	if (c->path_style) {
		s3_uri_encode(c->bucket, true, path);
		buf_append_char(path, '/');
	}
	s3_uri_encode(c->prefix, false, path);
	int r = s3_uri_encode(key, false, path);
	if (r < 0)
		return error_set(err, r, "%s: cannot encode the key", where);
	return 0;
}

static int object_call(struct s3_client *c, const char *op, const char *key, const char *const *headers,
		       const void *data, size_t n, size_t max,
		       struct buf *response, long *ret_status, uint64_t *ret_length, int64_t *ret_mtime, char *where,
		       size_t where_size, struct error *err)
{
	if (!c)
		return error_set(err, -EINVAL, "invalid S3 arguments");
	_cleanup_buf_ struct buf path;
	buf_init(&path, S3_URL_MAX);
	int r = object_path(c, key, &path, where, where_size, op, err);
	if (r < 0)
		return r;
	struct s3_request req = { .method = op, .path = path.data, .headers = headers, .body = data, .body_len = n,
				  .max_response = max };
	pthread_mutex_lock(&c->lock);
	c->last_mtime = -1;
	r = request_locked(c, &req, where, response, ret_status, ret_length, err);
	if (ret_mtime)
		*ret_mtime = c->last_mtime;
	pthread_mutex_unlock(&c->lock);
	return r;
}

int s3_get(struct s3_client *c, const char *key, size_t max, struct buf *body, struct error *err)
{
	return s3_get_mtime(c, key, max, body, NULL, err);
}

int s3_get_mtime(struct s3_client *c, const char *key, size_t max, struct buf *body, int64_t *ret_mtime,
		 struct error *err)
{
	if (!body || max == 0)
		return error_set(err, -EINVAL, "invalid S3 GET arguments");
	char where[512];
	long status = 0;
	int r = object_call(c, "GET", key, NULL, NULL, 0, max, body, &status, NULL, ret_mtime, where, sizeof(where), err);
	if (r < 0)
		return r;
	if (status != 200) {
		r = status_error(status, body, where, err);
		buf_reset(body);
		return r;
	}
	return 0;
}

int s3_put(struct s3_client *c, const char *key, const void *data, size_t n, struct error *err)
{
	if (n && !data)
		return error_set(err, -EINVAL, "invalid S3 PUT arguments");
	/* Signed, like every header we pass: without it libcurl would send
	 * its form type for a body given as POSTFIELDS, and S3 would keep it. */
	static const char *const put_headers[] = { "Content-Type: application/octet-stream", NULL };
	char where[512];
	long status = 0;
	_cleanup_buf_ struct buf response;
	buf_init(&response, S3_ERROR_BODY_MAX);
	int r = object_call(c, "PUT", key, put_headers, data, n, S3_ERROR_BODY_MAX, &response, &status, NULL, NULL, where,
			    sizeof(where), err);
	if (r < 0)
		return r;
	return status / 100 == 2 ? 0 : status_error(status, &response, where, err);
}

int s3_head(struct s3_client *c, const char *key, uint64_t *ret_size, struct error *err)
{
	return s3_head_mtime(c, key, ret_size, NULL, err);
}

int s3_head_mtime(struct s3_client *c, const char *key, uint64_t *ret_size, int64_t *ret_mtime, struct error *err)
{
	char where[512];
	long status = 0;
	uint64_t length = 0;
	_cleanup_buf_ struct buf response;
	buf_init(&response, S3_ERROR_BODY_MAX);
	int r = object_call(c, "HEAD", key, NULL, NULL, 0, S3_ERROR_BODY_MAX, &response, &status, &length, ret_mtime,
			    where, sizeof(where), err);
	if (r < 0)
		return r;
	if (status != 200)
		return status_error(status, &response, where, err);
	if (ret_size)
		*ret_size = length;
	return 0;
}

int s3_delete(struct s3_client *c, const char *key, struct error *err)
{
	char where[512];
	long status = 0;
	_cleanup_buf_ struct buf response;
	buf_init(&response, S3_ERROR_BODY_MAX);
	int r = object_call(c, "DELETE", key, NULL, NULL, 0, S3_ERROR_BODY_MAX, &response, &status, NULL, NULL, where,
			    sizeof(where), err);
	if (r < 0)
		return r;
	return status / 100 == 2 ? 0 : status_error(status, &response, where, err);
}

/* ---- ListObjectsV2 ---- */

/* The text of <name>...</name> in [s, end), entity-decoded into a new
 * string of at most max bytes; NULL in *ret when absent. -EBADMSG for
 * anything malformed. */
static int element_text(const char *s, const char *end, const char *name, size_t max, char **ret)
{
	char open[40], close[40];
	snprintf(open, sizeof(open), "<%s>", name);
	snprintf(close, sizeof(close), "</%s>", name);
	*ret = NULL;
	const char *a = memmem(s, (size_t)(end - s), open, strlen(open));
	if (!a)
		return 0;
	a += strlen(open);
	const char *b = memmem(a, (size_t)(end - a), close, strlen(close));
	if (!b)
		return -EBADMSG;
	_cleanup_buf_ struct buf out;
	buf_init(&out, max);
	for (const char *p = a; p < b;) {
		if (*p == '<')
			return -EBADMSG;
		if (*p != '&') {
			buf_append_char(&out, *p++);
			continue;
		}
		const char *semi = memchr(p, ';', (size_t)(b - p));
		if (!semi || semi - p > 10)
			return -EBADMSG;
		size_t len = (size_t)(semi - p + 1);
		if (len == 5 && memcmp(p, "&amp;", 5) == 0)
			buf_append_char(&out, '&');
		else if (len == 4 && memcmp(p, "&lt;", 4) == 0)
			buf_append_char(&out, '<');
		else if (len == 4 && memcmp(p, "&gt;", 4) == 0)
			buf_append_char(&out, '>');
		else if (len == 6 && memcmp(p, "&quot;", 6) == 0)
			buf_append_char(&out, '"');
		else if (len == 6 && memcmp(p, "&apos;", 6) == 0)
			buf_append_char(&out, '\'');
		else if (len > 3 && p[1] == '#') {
			bool hex = p[2] == 'x';
			unsigned long cp = 0;
			const char *q = p + (hex ? 3 : 2);
			if (q == semi)
				return -EBADMSG;
			for (; q < semi; q++) {
				int d = (*q >= '0' && *q <= '9') ? *q - '0' :
					(hex && *q >= 'a' && *q <= 'f') ? *q - 'a' + 10 :
					(hex && *q >= 'A' && *q <= 'F') ? *q - 'A' + 10 : -1;
				if (d < 0)
					return -EBADMSG;
				cp = cp * (hex ? 16 : 10) + (unsigned long)d;
				if (cp > 0x10FFFF)
					return -EBADMSG;
			}
			if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF))
				return -EBADMSG;
			char u[4];
			size_t un;
			if (cp < 0x80) {
				u[0] = (char)cp;
				un = 1;
			} else if (cp < 0x800) {
				u[0] = (char)(0xC0 | (cp >> 6));
				u[1] = (char)(0x80 | (cp & 0x3F));
				un = 2;
			} else if (cp < 0x10000) {
				u[0] = (char)(0xE0 | (cp >> 12));
				u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
				u[2] = (char)(0x80 | (cp & 0x3F));
				un = 3;
			} else {
				u[0] = (char)(0xF0 | (cp >> 18));
				u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
				u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
				u[3] = (char)(0x80 | (cp & 0x3F));
				un = 4;
			}
			buf_append(&out, u, un);
		} else {
			return -EBADMSG;
		}
		p = semi + 1;
	}
	if (out.error < 0)
		return -EBADMSG;
	if (memchr(out.data ? out.data : "", '\0', out.len))
		return -EBADMSG;
	*ret = buf_steal(&out);
	return 0;
}

static int parse_u64(const char *s, uint64_t *ret)
{
	if (!*s || strlen(s) > 20)
		return -EBADMSG;
	uint64_t v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EBADMSG;
		if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return -EBADMSG;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*ret = v;
	return 0;
}

/* "2009-10-12T17:50:30.000Z" (fraction optional) to seconds, UTC. */
static int parse_time(const char *s, int64_t *ret)
{
	int f[6];
	static const int width[6] = { 4, 2, 2, 2, 2, 2 };
	static const char after[6] = { '-', '-', 'T', ':', ':', 0 };
	const char *p = s;
	for (int i = 0; i < 6; i++) {
		f[i] = 0;
		for (int j = 0; j < width[i]; j++, p++) {
			if (*p < '0' || *p > '9')
				return -EBADMSG;
			f[i] = f[i] * 10 + (*p - '0');
		}
		if (after[i] && *p++ != after[i])
			return -EBADMSG;
	}
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -EBADMSG;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (strcmp(p, "Z") != 0 || f[1] < 1 || f[1] > 12 || f[2] < 1 || f[2] > 31 || f[3] > 23 || f[4] > 59 || f[5] > 60)
		return -EBADMSG;
	struct tm tm = { .tm_year = f[0] - 1900, .tm_mon = f[1] - 1, .tm_mday = f[2], .tm_hour = f[3], .tm_min = f[4], .tm_sec = f[5] };
	*ret = (int64_t)timegm(&tm);
	return 0;
}

void s3_list_page_free(struct s3_list_page *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_objects; i++)
		free(p->objects[i].key);
	free(p->objects);
	free(p->next_token);
	memset(p, 0, sizeof(*p));
}

static int parse_list(const struct s3_client *c, const char *xml, size_t len, struct s3_list_page *page)
{
	const char *end = xml + len;
	const char *root = strstr(xml, "<ListBucketResult");
	if (!root)
		return -EBADMSG;
	size_t prefix_len = strlen(c->prefix);
	const char *p = root;
	for (;;) {
		const char *a = memmem(p, (size_t)(end - p), "<Contents>", 10);
		if (!a)
			break;
		const char *b = memmem(a, (size_t)(end - a), "</Contents>", 11);
		if (!b)
			return -EBADMSG;
		if (page->n_objects >= S3_LIST_MAX_KEYS)
			return -EBADMSG;
		_cleanup_free_ char *key = NULL, *size = NULL, *mtime = NULL;
		int r = element_text(a, b, "Key", S3_KEY_MAX, &key);
		if (r >= 0)
			r = element_text(a, b, "Size", 32, &size);
		if (r >= 0)
			r = element_text(a, b, "LastModified", 64, &mtime);
		if (r < 0)
			return r;
		if (!key || !size || strncmp(key, c->prefix, prefix_len) != 0 || !key[prefix_len])
			return -EBADMSG;
		struct s3_object o = { 0 };
		if (parse_u64(size, &o.size) < 0 || (mtime && parse_time(mtime, &o.mtime) < 0))
			return -EBADMSG;
		if (!page->objects) {
			page->objects = calloc(S3_LIST_MAX_KEYS, sizeof(*page->objects));
			if (!page->objects)
				return -ENOMEM;
		}
		o.key = strdup(key + prefix_len);
		if (!o.key)
			return -ENOMEM;
		page->objects[page->n_objects++] = o;
		p = b + 11;
	}
	_cleanup_free_ char *truncated = NULL, *token = NULL;
	int r = element_text(root, end, "IsTruncated", 16, &truncated);
	if (r >= 0)
		r = element_text(root, end, "NextContinuationToken", S3_KEY_MAX * 2, &token);
	if (r < 0)
		return r;
	if (truncated && strcmp(truncated, "true") == 0) {
		if (!token || !*token)
			return -EBADMSG;
		page->next_token = TAKE_PTR(token);
	} else if (truncated && strcmp(truncated, "false") != 0) {
		return -EBADMSG;
	}
	return 0;
}

int s3_list(struct s3_client *c, const char *prefix, const char *continuation, struct s3_list_page *ret,
	    struct error *err)
{
	if (!c || !ret)
		return error_set(err, -EINVAL, "invalid S3 list arguments");
	char where[512];
	snprintf(where, sizeof(where), "S3 list s3://%s/%s%.200s", c->bucket, c->prefix, prefix ? prefix : "");
	error_printable(where);
	_cleanup_free_ char *full = NULL;
	if (asprintf(&full, "%s%s", c->prefix, prefix ? prefix : "") < 0)
		return error_set(err, -ENOMEM, "out of memory");
	if (strlen(full) > S3_KEY_MAX || (continuation && strlen(continuation) > 2 * S3_KEY_MAX))
		return error_set(err, -ENAMETOOLONG, "%s: prefix or continuation token too long", where);
	const char *query[] = { "list-type", "2", "prefix", full, continuation ? "continuation-token" : NULL,
				continuation, NULL };
	_cleanup_buf_ struct buf path, response;
	buf_init(&path, S3_URL_MAX);
	buf_init(&response, S3_LIST_RESPONSE_MAX);
	/* Path style lists at /bucket, virtual-host style at /. */
	buf_append_char(&path, '/');
	if (c->path_style)
		s3_uri_encode(c->bucket, true, &path);
	if (path.error < 0)
		return error_set(err, path.error, "out of memory");
	struct s3_request req = { .method = "GET", .path = path.data, .query = query,
				  .max_response = S3_LIST_RESPONSE_MAX };
	long status = 0;
	pthread_mutex_lock(&c->lock);
	int r = request_locked(c, &req, where, &response, &status, NULL, err);
	pthread_mutex_unlock(&c->lock);
	if (r < 0)
		return r;
	if (status != 200)
		return status_error(status, &response, where, err);
	struct s3_list_page page = { 0 };
	r = parse_list(c, response.data ? response.data : "", response.len, &page);
	if (r < 0) {
		s3_list_page_free(&page);
		if (r == -ENOMEM)
			return error_set(err, r, "%s: out of memory", where);
		return error_set(err, -EBADMSG, "%s: the answer is not a ListObjectsV2 result this client accepts", where);
	}
	*ret = page;
	return 0;
}
