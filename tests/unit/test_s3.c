/*
 * Unit tests for the S3 client (src/common/s3.c) against the in-test HTTP
 * server (http_testserver.h): the encoding of keys and query strings, the
 * published AWS SigV4 test-suite vectors and the S3 documentation's signing
 * examples (libcurl signs; the server captures the Authorization header,
 * which must equal the vector's), then GET, PUT, HEAD, DELETE and
 * ListObjectsV2 in both addressing styles, caps, status mapping, retries
 * with backoff, timeouts and where credentials come from and do not go.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "digest.h"
#include "http_testserver.h"
#include "s3.h"
#include "testutil.h"

#define MAX_SEEN 16
#define SECRET "SECRETKEY123/secret+part"

struct seen_request {
	char method[16];
	char target[1024];
	char *head;
	char *body;
	size_t body_len;
};

struct fixture {
	struct testserver server;
	pthread_mutex_t lock;
	struct seen_request seen[MAX_SEEN];
	size_t n_seen;
	/* Scripted statuses for the next requests, then the default routes. */
	int statuses[8];
	size_t n_statuses, next_status;
	const char *object;      /* the body of a GET */
	const char *list_xml;    /* the body of a list */
	char host[64];
};

static enum testserver_action handler(const struct testserver_request *req, struct buf *out, void *userdata)
{
	struct fixture *f = userdata;
	pthread_mutex_lock(&f->lock);
	if (f->n_seen < MAX_SEEN) {
		struct seen_request *s = &f->seen[f->n_seen++];
		memcpy(s->method, req->method, sizeof(s->method));
		memcpy(s->target, req->target, sizeof(s->target));
		s->head = strdup(req->head);
		s->body = strdup(req->body);  /* the server's copy stops at a NUL */
		s->body_len = req->body_len;
	}
	int status = 0;
	if (f->next_status < f->n_statuses)
		status = f->statuses[f->next_status++];
	pthread_mutex_unlock(&f->lock);

	if (strstr(req->target, "/hang"))
		return TESTSERVER_HANG;
	if (status == 0 && strstr(req->target, "missing"))
		status = 404;
	if (status == 0)
		status = strcmp(req->method, "DELETE") == 0 ? 204 : 200;
	if (status != 200 && status != 204) {
		const char *code = status == 404 ? "NoSuchKey" : status == 403 ? "AccessDenied" : "SlowDown";
		char xml[256];
		snprintf(xml, sizeof(xml), "<?xml version=\"1.0\"?><Error><Code>%s</Code><Message>m</Message></Error>", code);
		if (strcmp(req->method, "HEAD") == 0)
			buf_printf(out, "HTTP/1.1 %d X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status);
		else
			testserver_reply(out, status, "application/xml", xml);
	} else if (strcmp(req->method, "HEAD") == 0) {
		buf_printf(out, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nConnection: close\r\n\r\n");
	} else if (status == 204) {
		buf_printf(out, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
	} else if (strcmp(req->method, "GET") == 0 && strstr(req->target, "list-type=2")) {
		testserver_reply(out, 200, "application/xml", f->list_xml ? f->list_xml : "");
	} else if (strcmp(req->method, "GET") == 0) {
		testserver_reply(out, 200, "application/octet-stream", f->object ? f->object : "hello, world");
	} else {
		testserver_reply(out, 200, "application/xml", "");
	}
	return TESTSERVER_ANSWER;
}

static void seen_clear(struct fixture *f)
{
	pthread_mutex_lock(&f->lock);
	for (size_t i = 0; i < f->n_seen; i++) {
		free(f->seen[i].head);
		free(f->seen[i].body);
	}
	memset(f->seen, 0, sizeof(f->seen));
	f->n_seen = 0;
	f->n_statuses = f->next_status = 0;
	pthread_mutex_unlock(&f->lock);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	pthread_mutex_init(&f->lock, NULL);
	if (testserver_start(&f->server, handler, f) < 0)
		return -1;
	snprintf(f->host, sizeof(f->host), "127.0.0.1:%d", f->server.port);
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	unsetenv("AWS_SESSION_TOKEN");
	unsetenv("AWS_PROFILE");
	unsetenv("AWS_SHARED_CREDENTIALS_FILE");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	testserver_stop(&f->server);
	seen_clear(f);
	pthread_mutex_destroy(&f->lock);
	free(f);
	return 0;
}

/* The value of header name (case-insensitive) in a captured head, copied. */
static char *header_value(const char *head, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = strstr(head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
		if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') {
			const char *v = p + 3 + n;
			while (*v == ' ')
				v++;
			return strndup(v, strcspn(v, "\r\n"));
		}
	}
	return NULL;
}

static char *encode(const char *s, bool slash)
{
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(s3_uri_encode(s, slash, &b), 0);
	return buf_steal(&b);
}

static char *canonical(const char *const *pairs)
{
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(s3_canonical_query(pairs, &b), 0);
	return buf_steal(&b);
}

static void test_uri_encode(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		bool slash;
		const char *out;
	} cases[] = {
		{ "AZaz09-._~", true, "AZaz09-._~" },
		{ "a b+c=d", true, "a%20b%2Bc%3Dd" },
		{ "dir/sub/file.o", false, "dir/sub/file.o" },
		{ "dir/sub", true, "dir%2Fsub" },
		{ "\xe1\x88\xb4", true, "%E1%88%B4" },
		{ "caf\xc3\xa9 %!*'()", false, "caf%C3%A9%20%25%21%2A%27%28%29" },
		{ "", true, "" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		_cleanup_free_ char *got = encode(cases[i].in, cases[i].slash);
		assert_string_equal(got, cases[i].out);
	}
}

static void test_canonical_query(void **state)
{
	(void)state;
	const char *a[] = { "prefix", "a b/c", "list-type", "2", "continuation-token", "x+y=", NULL };
	_cleanup_free_ char *q = canonical(a);
	assert_string_equal(q, "continuation-token=x%2By%3D&list-type=2&prefix=a%20b%2Fc");
	/* Empty values keep their '='; equal names sort by value. */
	const char *b[] = { "delete", "", "Param1", "value2", "Param1", "Value1", NULL };
	_cleanup_free_ char *q2 = canonical(b);
	assert_string_equal(q2, "Param1=Value1&Param1=value2&delete=");
	/* Sorted by the encoded name: "%E1..." sorts before letters, '~' after. */
	const char *c[] = { "~t", "1", "\xe1\x88\xb4", "2", "b", "3", NULL };
	_cleanup_free_ char *q3 = canonical(c);
	assert_string_equal(q3, "%E1%88%B4=2&b=3&~t=1");
	_cleanup_free_ char *q4 = canonical((const char *const[]){ NULL });
	assert_string_equal(q4, "");
	struct buf d;
	buf_init(&d, 0);
	assert_int_equal(s3_canonical_query((const char *const[]){ "name", NULL, NULL }, &d), -EINVAL);
	buf_free(&d);
}

/* ---- Vectors ---- */

struct vector {
	const char *name;
	const char *method;
	const char *path;
	const char *query[7];
	const char *headers[3];
	const char *body;
	const char *signed_headers;
	const char *signature;
};

#define UNRESERVED "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#define STS_TOKEN                                                                                               \
	"AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflf" \
	"KD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlR" \
	"d8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3" \
	"iSIlTJabIQwj2ICCR/oLxBA=="

/* aws-sig-v4-test-suite: AKIDEXAMPLE, us-east-1, service "service",
 * 20150830T123600Z, host example.amazonaws.com. */
static const struct vector suite[] = {
	{ "get-vanilla", "GET", "/", { NULL }, { NULL }, NULL, "host;x-amz-date",
	  "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31" },
	{ "get-vanilla-query-order-key-case", "GET", "/", { "Param2", "value2", "Param1", "value1", NULL }, { NULL },
	  NULL, "host;x-amz-date", "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500" },
	{ "get-vanilla-query-order-key", "GET", "/", { "Param1", "value2", "Param1", "Value1", NULL }, { NULL }, NULL,
	  "host;x-amz-date", "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1" },
	{ "get-vanilla-empty-query-key", "GET", "/", { "Param1", "value1", NULL }, { NULL }, NULL, "host;x-amz-date",
	  "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb" },
	{ "get-vanilla-query-unreserved", "GET", "/", { UNRESERVED, UNRESERVED, NULL }, { NULL }, NULL,
	  "host;x-amz-date", "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197" },
	{ "get-vanilla-utf8-query", "GET", "/", { "\xe1\x88\xb4", "bar", NULL }, { NULL }, NULL, "host;x-amz-date",
	  "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04" },
	{ "get-utf8", "GET", "/%E1%88%B4", { NULL }, { NULL }, NULL, "host;x-amz-date",
	  "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85" },
	{ "get-space", "GET", "/example%20space/", { NULL }, { NULL }, NULL, "host;x-amz-date",
	  "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741" },
	{ "get-unreserved", "GET", "/" UNRESERVED, { NULL }, { NULL }, NULL, "host;x-amz-date",
	  "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f" },
	{ "post-vanilla", "POST", "/", { NULL }, { NULL }, NULL, "host;x-amz-date",
	  "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b" },
	{ "post-vanilla-query", "POST", "/", { "Param1", "value1", NULL }, { NULL }, NULL, "host;x-amz-date",
	  "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11" },
	{ "post-header-value-case", "POST", "/", { NULL }, { "My-Header1: VALUE1", NULL }, NULL,
	  "host;my-header1;x-amz-date", "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d" },
	{ "post-x-www-form-urlencoded", "POST", "/", { NULL }, { "Content-Type: application/x-www-form-urlencoded", NULL },
	  "Param1=value1", "content-type;host;x-amz-date",
	  "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a" },
};

static void check_vector(struct fixture *f, struct s3_client *c, const struct vector *v, const char *credential)
{
	seen_clear(f);
	_cleanup_buf_ struct buf response;
	buf_init(&response, 0);
	long status = 0;
	struct error err = { 0 };
	struct s3_request req = { .method = v->method, .path = v->path, .query = v->query, .headers = v->headers,
				  .body = v->body, .body_len = v->body ? strlen(v->body) : 0, .max_response = 4096 };
	int r = s3_request(c, &req, &response, &status, NULL, &err);
	if (r < 0)
		fail_msg("%s: %s", v->name, err.msg);
	assert_int_equal(f->n_seen, 1);
	_cleanup_free_ char *authz = header_value(f->seen[0].head, "Authorization");
	assert_non_null(authz);
	char want[512];
	snprintf(want, sizeof(want), "AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=%s, Signature=%s", credential,
		 v->signed_headers, v->signature);
	if (strcmp(authz, want) != 0)
		fail_msg("%s:\n got  %s\n want %s\nhead:\n%s", v->name, authz, want, f->seen[0].head);
}

static void test_sigv4_suite(void **state)
{
	struct fixture *f = *state;
	char connect_to[128];
	snprintf(connect_to, sizeof(connect_to), "example.amazonaws.com:80:127.0.0.1:%d", f->server.port);
	struct s3_config cfg = { .endpoint = "http://example.amazonaws.com", .region = "us-east-1", .bucket = "b",
				 .path_style = true, .access_key = "AKIDEXAMPLE",
				 .secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", .service = "service",
				 .connect_to = connect_to, .fixed_amz_date = "20150830T123600Z", .timeout_ms = 5000 };
	struct s3_client *c = NULL;
	assert_int_equal(s3_client_new(&cfg, &c, NULL), 0);
	for (size_t i = 0; i < ARRAY_SIZE(suite); i++)
		check_vector(f, c, &suite[i], "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request");
	s3_client_free(c);

	/* post-sts-header-before: the session token is sent and signed. */
	cfg.session_token = STS_TOKEN;
	assert_int_equal(s3_client_new(&cfg, &c, NULL), 0);
	static const struct vector sts = { "post-sts-header-before", "POST", "/", { NULL }, { NULL }, NULL,
					   "host;x-amz-date;x-amz-security-token",
					   "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead" };
	check_vector(f, c, &sts, "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request");
	_cleanup_free_ char *token = header_value(f->seen[0].head, "x-amz-security-token");
	assert_string_equal(token, STS_TOKEN);
	s3_client_free(c);
}

/* The S3 API reference's header-signing examples (service s3, our own
 * x-amz-content-sha256, virtual-host style). */
static void test_sigv4_s3_examples(void **state)
{
	struct fixture *f = *state;
	char connect_to[128];
	snprintf(connect_to, sizeof(connect_to), "examplebucket.s3.amazonaws.com:80:127.0.0.1:%d", f->server.port);
	struct s3_config cfg = { .endpoint = "http://s3.amazonaws.com", .region = "us-east-1", .bucket = "examplebucket",
				 .access_key = "AKIAIOSFODNN7EXAMPLE",
				 .secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", .connect_to = connect_to,
				 .fixed_amz_date = "20130524T000000Z", .timeout_ms = 5000 };
	struct s3_client *c = NULL;
	assert_int_equal(s3_client_new(&cfg, &c, NULL), 0);
	static const struct vector examples[] = {
		{ "GET Object", "GET", "/test.txt", { NULL }, { "Range: bytes=0-9", NULL }, NULL,
		  "host;range;x-amz-content-sha256;x-amz-date",
		  "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41" },
		{ "PUT Object", "PUT", "/test%24file.text", { NULL },
		  { "Date: Fri, 24 May 2013 00:00:00 GMT", "x-amz-storage-class: REDUCED_REDUNDANCY", NULL },
		  "Welcome to Amazon S3.", "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
		  "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd" },
		{ "GET Bucket Lifecycle", "GET", "/", { "lifecycle", "", NULL }, { NULL }, NULL,
		  "host;x-amz-content-sha256;x-amz-date",
		  "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543" },
		{ "Get Bucket (List Objects)", "GET", "/", { "prefix", "J", "max-keys", "2", NULL }, { NULL }, NULL,
		  "host;x-amz-content-sha256;x-amz-date",
		  "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(examples); i++) {
		check_vector(f, c, &examples[i], "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request");
		_cleanup_free_ char *host = header_value(f->seen[0].head, "Host");
		assert_string_equal(host, "examplebucket.s3.amazonaws.com");
	}
	/* The PUT example's payload hash is the published one. */
	check_vector(f, c, &examples[1], "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request");
	_cleanup_free_ char *sha = header_value(f->seen[0].head, "x-amz-content-sha256");
	assert_string_equal(sha, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
	assert_string_equal(f->seen[0].body, "Welcome to Amazon S3.");
	assert_string_equal(f->seen[0].target, "/test%24file.text");
	s3_client_free(c);
}

/* ---- Operations ---- */

static struct s3_client *client(struct fixture *f, bool path_style, int retries, int timeout_ms)
{
	static char endpoint[64], connect_to[128];
	struct s3_config cfg = { .region = "eu-west-1", .bucket = "bkt", .prefix = "pre/", .path_style = path_style,
				 .access_key = "AKTEST", .secret_key = SECRET, .timeout_ms = timeout_ms,
				 .retries = retries, .backoff_ms = 20 };
	if (path_style) {
		snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d/", f->server.port);
	} else {
		snprintf(endpoint, sizeof(endpoint), "http://s3.example.com");
		snprintf(connect_to, sizeof(connect_to), "bkt.s3.example.com:80:127.0.0.1:%d", f->server.port);
		cfg.connect_to = connect_to;
	}
	cfg.endpoint = endpoint;
	struct s3_client *c = NULL;
	struct error err = { 0 };
	if (s3_client_new(&cfg, &c, &err) < 0)
		fail_msg("%s", err.msg);
	return c;
}

static void assert_signed_s3_request(const struct seen_request *s, const char *body_sha, const char *extra_signed)
{
	char want[256];
	snprintf(want, sizeof(want), "/eu-west-1/s3/aws4_request, SignedHeaders=%shost;x-amz-content-sha256;x-amz-date, ",
		 extra_signed);
	_cleanup_free_ char *authz = header_value(s->head, "Authorization");
	_cleanup_free_ char *sha = header_value(s->head, "x-amz-content-sha256");
	_cleanup_free_ char *date = header_value(s->head, "x-amz-date");
	assert_non_null(authz);
	assert_non_null(date);
	assert_int_equal(strlen(date), 16);
	assert_non_null(strstr(authz, "AWS4-HMAC-SHA256 Credential=AKTEST/"));
	if (!strstr(authz, want))
		fail_msg("got %s, want %s", authz, want);
	assert_string_equal(sha, body_sha);
	assert_null(strstr(s->head, "SECRETKEY"));
}

#define EMPTY_SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static void test_get_path_style(void **state)
{
	struct fixture *f = *state;
	seen_clear(f);
	struct s3_client *c = client(f, true, 0, 5000);
	_cleanup_buf_ struct buf body;
	buf_init(&body, 0);
	struct error err = { 0 };
	assert_int_equal(s3_get(c, "dir/a b+c~=.txt", 1024, &body, &err), 0);
	assert_string_equal(body.data, "hello, world");
	assert_int_equal(f->n_seen, 1);
	assert_string_equal(f->seen[0].method, "GET");
	assert_string_equal(f->seen[0].target, "/bkt/pre/dir/a%20b%2Bc~%3D.txt");
	_cleanup_free_ char *host = header_value(f->seen[0].head, "Host");
	assert_string_equal(host, f->host);
	assert_signed_s3_request(&f->seen[0], EMPTY_SHA, "");
	/* Dot segments are part of a key, not squashed by libcurl. */
	assert_int_equal(s3_get(c, "a/../b/./c", 1024, &body, &err), 0);
	assert_string_equal(f->seen[1].target, "/bkt/pre/a/../b/./c");
	s3_client_free(c);
}

static void test_get_virtual_host(void **state)
{
	struct fixture *f = *state;
	seen_clear(f);
	struct s3_client *c = client(f, false, 0, 5000);
	_cleanup_buf_ struct buf body;
	buf_init(&body, 0);
	struct error err = { 0 };
	assert_int_equal(s3_get(c, "k\xc3\xa9y", 1024, &body, &err), 0);
	assert_string_equal(f->seen[0].target, "/pre/k%C3%A9y");
	_cleanup_free_ char *host = header_value(f->seen[0].head, "Host");
	assert_string_equal(host, "bkt.s3.example.com");
	assert_signed_s3_request(&f->seen[0], EMPTY_SHA, "");
	s3_client_free(c);
}

static void test_get_caps_and_statuses(void **state)
{
	struct fixture *f = *state;
	seen_clear(f);
	struct s3_client *c = client(f, true, 3, 5000);
	_cleanup_buf_ struct buf body;
	buf_init(&body, 0);
	struct error err = { 0 };
	assert_int_equal(s3_get(c, "k", 5, &body, &err), -EFBIG);
	assert_int_equal(body.len, 0);
	assert_int_equal(s3_get(c, "k", 12, &body, NULL), 0);  /* exactly at the cap */
	error_clear(&err);
	/* A 404 is -ENOENT even with a cap smaller than its body, and not retried. */
	seen_clear(f);
	assert_int_equal(s3_get(c, "missing", 5, &body, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "NoSuchKey"));
	assert_non_null(strstr(err.msg, "s3://bkt/pre/missing"));
	assert_int_equal(f->n_seen, 1);
	s3_client_free(c);
}

static void test_put_head_delete(void **state)
{
	struct fixture *f = *state;
	seen_clear(f);
	struct s3_client *c = client(f, true, 0, 5000);
	struct error err = { 0 };
	static const char data[] = "some object bytes";
	assert_int_equal(s3_put(c, "obj/1", data, sizeof(data) - 1, &err), 0);
	assert_string_equal(f->seen[0].method, "PUT");
	assert_string_equal(f->seen[0].target, "/bkt/pre/obj/1");
	assert_int_equal(f->seen[0].body_len, sizeof(data) - 1);
	assert_string_equal(f->seen[0].body, data);
	struct digest d;
	char hex[DIGEST_HEX_LEN + 1];
	digest_bytes(data, sizeof(data) - 1, &d);
	digest_to_hex(&d, hex);
	assert_signed_s3_request(&f->seen[0], hex, "content-type;");
	_cleanup_free_ char *type = header_value(f->seen[0].head, "Content-Type");
	assert_string_equal(type, "application/octet-stream");
	/* An empty object. */
	assert_int_equal(s3_put(c, "empty", NULL, 0, &err), 0);
	assert_int_equal(f->seen[1].body_len, 0);
	assert_signed_s3_request(&f->seen[1], EMPTY_SHA, "content-type;");

	uint64_t size = 0;
	assert_int_equal(s3_head(c, "obj/1", &size, &err), 0);
	assert_int_equal(size, 1234);
	assert_string_equal(f->seen[2].method, "HEAD");
	assert_signed_s3_request(&f->seen[2], EMPTY_SHA, "");
	size = 7;
	assert_int_equal(s3_head(c, "missing", &size, &err), -ENOENT);
	assert_int_equal(size, 7);

	assert_int_equal(s3_delete(c, "obj/1", &err), 0);
	assert_string_equal(f->seen[4].method, "DELETE");
	assert_string_equal(f->seen[4].target, "/bkt/pre/obj/1");
	assert_signed_s3_request(&f->seen[4], EMPTY_SHA, "");
	s3_client_free(c);
}

static void test_bad_keys(void **state)
{
	struct fixture *f = *state;
	seen_clear(f);
	struct s3_client *c = client(f, true, 0, 5000);
	_cleanup_buf_ struct buf body;
	buf_init(&body, 0);
	assert_int_equal(s3_get(c, "", 10, &body, NULL), -EINVAL);
	char long_key[S3_KEY_MAX + 1];
	memset(long_key, 'k', sizeof(long_key) - 1);
	long_key[S3_KEY_MAX] = '\0';
	assert_int_equal(s3_put(c, long_key, "x", 1, NULL), -ENAMETOOLONG);  /* the prefix counts */
	assert_int_equal(f->n_seen, 0);
	s3_client_free(c);
}

static const char list_page[] =
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	"<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
	"<Name>bkt</Name><Prefix>pre/sub</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys>"
	"<IsTruncated>true</IsTruncated>"
	"<Contents><Key>pre/sub/a&amp;b &lt;1&gt; &#x263A;</Key><LastModified>2009-10-12T17:50:30.000Z</LastModified>"
	"<ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag><Size>434234</Size><StorageClass>STANDARD</StorageClass></Contents>"
	"<Contents><Key>pre/sub/c</Key><LastModified>2024-02-29T00:00:01Z</LastModified><Size>0</Size></Contents>"
	"<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>"
	"</ListBucketResult>";

static void test_list(void **state)
{
	struct fixture *f = *state;
	seen_clear(f);
	f->list_xml = list_page;
	struct s3_client *c = client(f, true, 0, 5000);
	struct s3_list_page page = { 0 };
	struct error err = { 0 };
	assert_int_equal(s3_list(c, "sub", "tok/en+=", &page, &err), 0);
	assert_string_equal(f->seen[0].target, "/bkt?continuation-token=tok%2Fen%2B%3D&list-type=2&prefix=pre%2Fsub");
	assert_signed_s3_request(&f->seen[0], EMPTY_SHA, "");
	assert_int_equal(page.n_objects, 2);
	assert_string_equal(page.objects[0].key, "sub/a&b <1> \xe2\x98\xba");
	assert_int_equal(page.objects[0].size, 434234);
	assert_int_equal(page.objects[0].mtime, 1255369830);
	assert_string_equal(page.objects[1].key, "sub/c");
	assert_int_equal(page.objects[1].size, 0);
	assert_int_equal(page.objects[1].mtime, 1709164801);
	assert_string_equal(page.next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
	s3_list_page_free(&page);

	/* Virtual-host style lists at "/"; the last page has no token. */
	s3_client_free(c);
	c = client(f, false, 0, 5000);
	f->list_xml = "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>";
	assert_int_equal(s3_list(c, NULL, NULL, &page, &err), 0);
	assert_string_equal(f->seen[1].target, "/?list-type=2&prefix=pre%2F");
	assert_int_equal(page.n_objects, 0);
	assert_null(page.next_token);
	s3_list_page_free(&page);

	/* Malformed answers are refused, not half-read. */
	static const char *const bad[] = {
		"<html>not a list</html>",
		"<ListBucketResult><Contents><Key>pre/x</Key><Size>1</Size>",
		"<ListBucketResult><Contents><Key>other/x</Key><Size>1</Size></Contents></ListBucketResult>",
		"<ListBucketResult><Contents><Key>pre/x</Key><Size>-1</Size></Contents></ListBucketResult>",
		"<ListBucketResult><Contents><Key>pre/&bogus;</Key><Size>1</Size></Contents></ListBucketResult>",
		"<ListBucketResult><Contents><Key>pre/&#0;</Key><Size>1</Size></Contents></ListBucketResult>",
		"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
		"<ListBucketResult><Contents><Key>pre/x</Key><Size>1</Size><LastModified>yesterday</LastModified></Contents></ListBucketResult>",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		f->list_xml = bad[i];
		struct error e = { 0 };
		page = (struct s3_list_page){ 0 };
		assert_int_equal(s3_list(c, NULL, NULL, &page, &e), -EBADMSG);
		assert_int_equal(page.n_objects, 0);
	}
	s3_client_free(c);
	f->list_xml = NULL;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void script(struct fixture *f, const int *statuses, size_t n)
{
	seen_clear(f);
	pthread_mutex_lock(&f->lock);
	memcpy(f->statuses, statuses, n * sizeof(int));
	f->n_statuses = n;
	f->next_status = 0;
	pthread_mutex_unlock(&f->lock);
}

static void test_retries(void **state)
{
	struct fixture *f = *state;
	struct s3_client *c = client(f, true, 2, 5000);
	_cleanup_buf_ struct buf body;
	buf_init(&body, 0);
	struct error err = { 0 };

	/* 503, 429, then success: three requests, backoff 20 then 40 ms. */
	script(f, (const int[]){ 503, 429 }, 2);
	int64_t start = now_ms();
	assert_int_equal(s3_get(c, "k", 1024, &body, &err), 0);
	assert_true(now_ms() - start >= 60);
	assert_string_equal(body.data, "hello, world");
	assert_int_equal(f->n_seen, 3);

	/* Unavailable on every attempt: -EAGAIN after 1 + retries requests. */
	script(f, (const int[]){ 503, 503, 503, 503 }, 4);
	assert_int_equal(s3_put(c, "k", "x", 1, &err), -EAGAIN);
	assert_int_equal(f->n_seen, 3);
	assert_non_null(strstr(err.msg, "503"));

	/* A 403 is final: one request, and the secret is not in the message. */
	script(f, (const int[]){ 403 }, 1);
	error_clear(&err);
	assert_int_equal(s3_get(c, "k", 1024, &body, &err), -EACCES);
	assert_int_equal(f->n_seen, 1);
	assert_non_null(strstr(err.msg, "AccessDenied"));
	assert_null(strstr(err.msg, "SECRETKEY"));
	assert_null(strstr(err.msg, "AKTEST"));
	s3_client_free(c);
}

static void test_timeout_and_refused(void **state)
{
	struct fixture *f = *state;
	seen_clear(f);
	struct s3_client *c = client(f, true, 1, 300);
	_cleanup_buf_ struct buf body;
	buf_init(&body, 0);
	struct error err = { 0 };
	int64_t start = now_ms();
	assert_int_equal(s3_get(c, "hang", 1024, &body, &err), -ETIMEDOUT);
	int64_t took = now_ms() - start;
	assert_true(took >= 600);   /* two attempts of 300 ms */
	assert_true(took < 4000);
	assert_int_equal(f->n_seen, 2);
	assert_null(strstr(err.msg, "SECRETKEY"));
	s3_client_free(c);

	/* Nothing listening: -ECONNREFUSED, after the retries. */
	struct s3_config cfg = { .endpoint = "http://127.0.0.1:1", .region = "us-east-1", .bucket = "bkt",
				 .path_style = true, .access_key = "AKTEST", .secret_key = SECRET, .timeout_ms = 2000 };
	assert_int_equal(s3_client_new(&cfg, &c, NULL), 0);
	error_clear(&err);
	assert_int_equal(s3_head(c, "k", NULL, &err), -ECONNREFUSED);
	assert_null(strstr(err.msg, "SECRETKEY"));
	s3_client_free(c);
}

static void test_config_refused(void **state)
{
	(void)state;
	struct s3_client *c = NULL;
	struct error err = { 0 };
	static const char *const endpoints[] = { "ftp://x", "http://user:pw@host", "http://host/path", "http://h?q",
						 "s3.amazonaws.com", "http://" };
	for (size_t i = 0; i < ARRAY_SIZE(endpoints); i++) {
		struct s3_config cfg = { .endpoint = endpoints[i], .region = "us-east-1", .bucket = "bkt",
					 .access_key = "A", .secret_key = "S" };
		assert_int_equal(s3_client_new(&cfg, &c, NULL), -EINVAL);
	}
	struct s3_config cfg = { .endpoint = "https://s3.amazonaws.com", .region = "us-east-1", .bucket = "Bad_Bucket",
				 .access_key = "A", .secret_key = "S" };
	assert_int_equal(s3_client_new(&cfg, &c, &err), -EINVAL);  /* not a DNS name */
	cfg.path_style = true;
	assert_int_equal(s3_client_new(&cfg, &c, NULL), 0);
	s3_client_free(c);
	cfg.retries = S3_RETRIES_MAX + 1;
	assert_int_equal(s3_client_new(&cfg, &c, NULL), -EINVAL);
	cfg.retries = 0;
	cfg.secret_key = NULL;
	assert_int_equal(s3_client_new(&cfg, &c, NULL), -EINVAL);
	s3_client_free(NULL);
}

static void test_credentials_sources(void **state)
{
	struct fixture *f = *state;
	char dir[] = "/tmp/hpcc-s3-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[128];
	snprintf(path, sizeof(path), "%s/credentials", dir);
	char endpoint[64];
	snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d", f->server.port);
	struct s3_config cfg = { .endpoint = endpoint, .region = "us-east-1", .bucket = "bkt", .path_style = true,
				 .credentials_file = path, .timeout_ms = 5000 };
	struct s3_client *c = NULL;
	struct error err = { 0 };
	_cleanup_buf_ struct buf body;
	buf_init(&body, 0);

	/* Nothing anywhere. */
	assert_int_equal(s3_client_new(&cfg, &c, &err), -ENOKEY);

	/* The environment. */
	setenv("AWS_ACCESS_KEY_ID", "ENVKEY", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "ENVSECRET", 1);
	setenv("AWS_SESSION_TOKEN", "ENVTOKEN", 1);
	assert_int_equal(s3_client_new(&cfg, &c, NULL), 0);
	seen_clear(f);
	assert_int_equal(s3_get(c, "k", 1024, &body, NULL), 0);
	_cleanup_free_ char *authz = header_value(f->seen[0].head, "Authorization");
	assert_non_null(strstr(authz, "Credential=ENVKEY/"));
	assert_non_null(strstr(authz, "x-amz-security-token"));
	_cleanup_free_ char *tok = header_value(f->seen[0].head, "x-amz-security-token");
	assert_string_equal(tok, "ENVTOKEN");
	assert_null(strstr(f->seen[0].head, "ENVSECRET"));
	s3_client_free(c);
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	unsetenv("AWS_SESSION_TOKEN");

	/* A file: refused while others can read it, then the profile's keys. */
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("# test\n[default]\naws_access_key_id = DEFKEY\naws_secret_access_key = DEFSECRET\n\n"
	      "[other]\r\naws_access_key_id=OTHERKEY\r\naws_secret_access_key=OTHERSECRET\r\n", fp);
	fclose(fp);
	chmod(path, 0644);
	error_clear(&err);
	assert_int_equal(s3_client_new(&cfg, &c, &err), -EPERM);
	assert_null(strstr(err.msg, "DEFSECRET"));
	chmod(path, 0600);
	assert_int_equal(s3_client_new(&cfg, &c, NULL), 0);
	seen_clear(f);
	assert_int_equal(s3_get(c, "k", 1024, &body, NULL), 0);
	_cleanup_free_ char *authz2 = header_value(f->seen[0].head, "Authorization");
	assert_non_null(strstr(authz2, "Credential=DEFKEY/"));
	assert_null(strstr(authz2, "security-token"));
	s3_client_free(c);
	setenv("AWS_PROFILE", "other", 1);
	assert_int_equal(s3_client_new(&cfg, &c, NULL), 0);
	seen_clear(f);
	assert_int_equal(s3_get(c, "k", 1024, &body, NULL), 0);
	_cleanup_free_ char *authz3 = header_value(f->seen[0].head, "Authorization");
	assert_non_null(strstr(authz3, "Credential=OTHERKEY/"));
	s3_client_free(c);
	setenv("AWS_PROFILE", "absent", 1);
	error_clear(&err);
	assert_int_equal(s3_client_new(&cfg, &c, &err), -ENOKEY);
	assert_null(strstr(err.msg, "SECRET"));
	unsetenv("AWS_PROFILE");

	/* The config wins over both. */
	setenv("AWS_ACCESS_KEY_ID", "ENVKEY", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "ENVSECRET", 1);
	cfg.access_key = "CFGKEY";
	cfg.secret_key = "CFGSECRET";
	assert_int_equal(s3_client_new(&cfg, &c, NULL), 0);
	seen_clear(f);
	assert_int_equal(s3_get(c, "k", 1024, &body, NULL), 0);
	_cleanup_free_ char *authz4 = header_value(f->seen[0].head, "Authorization");
	assert_non_null(strstr(authz4, "Credential=CFGKEY/"));
	s3_client_free(c);
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	testutil_rm_rf(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uri_encode),
		cmocka_unit_test(test_canonical_query),
		cmocka_unit_test_setup_teardown(test_sigv4_suite, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sigv4_s3_examples, setup, teardown),
		cmocka_unit_test_setup_teardown(test_get_path_style, setup, teardown),
		cmocka_unit_test_setup_teardown(test_get_virtual_host, setup, teardown),
		cmocka_unit_test_setup_teardown(test_get_caps_and_statuses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_head_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_and_refused, setup, teardown),
		cmocka_unit_test(test_config_refused),
		cmocka_unit_test_setup_teardown(test_credentials_sources, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
