/*
 * Unit tests for the HTTP client (src/common/http.c) against a tiny
 * HTTP/1.1 server on a thread (http_testserver.h): a plain 200, a body over
 * the cap with and without Content-Length, a server that never answers, a
 * redirect that must not be followed, schemes other than http(s), the form
 * encoding of POST fields, refused connections, messages that keep
 * query strings out, and plain http that ignores a proxy in the environment.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>
#include <time.h>

#include "http.h"
#include "http_testserver.h"

struct seen {
	char method[16];
	char target[1024];
	char *head;
	char *body;
};

static void seen_clear(struct seen *s)
{
	free(s->head);
	free(s->body);
	memset(s, 0, sizeof(*s));
}

static void remember(struct seen *seen, const struct testserver_request *req)
{
	seen_clear(seen);
	memcpy(seen->method, req->method, sizeof(seen->method));
	memcpy(seen->target, req->target, sizeof(seen->target));
	seen->head = strdup(req->head);
	seen->body = strdup(req->body);
}

static enum testserver_action handler(const struct testserver_request *req, struct buf *out, void *userdata)
{
	remember(userdata, req);
	const char *t = req->target;
	if (strncmp(t, "/hello", 6) == 0) {
		testserver_reply(out, 200, "text/plain", "hello, world");
	} else if (strcmp(t, "/big") == 0) {
		/* Announced: curl can refuse before reading. */
		buf_printf(out, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n");
		for (int i = 0; i < 100000; i++)
			buf_append_char(out, 'x');
	} else if (strcmp(t, "/big-unannounced") == 0) {
		/* No length: the body ends when the connection does. */
		buf_printf(out, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
		for (int i = 0; i < 100000; i++)
			buf_append_char(out, 'y');
	} else if (strcmp(t, "/hang") == 0) {
		return TESTSERVER_HANG;
	} else if (strcmp(t, "/redirect") == 0) {
		buf_printf(out, "HTTP/1.1 302 Found\r\nLocation: /hello\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
	} else if (strcmp(t, "/form") == 0) {
		testserver_reply(out, 200, "text/plain", "ok");
	} else if (strcmp(t, "/bad") == 0) {
		testserver_reply(out, 400, "application/json", "{\"error\":\"invalid_request\"}");
	} else {
		testserver_reply(out, 404, "text/plain", "no");
	}
	return TESTSERVER_ANSWER;
}

struct fixture {
	struct testserver server;
	struct seen seen;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f || testserver_start(&f->server, handler, &f->seen) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	testserver_stop(&f->server);
	seen_clear(&f->seen);
	free(f);
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_get_200(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *url = testserver_url(&f->server, "/hello?x=1");
	_cleanup_buf_ struct buf body;
	buf_init(&body, 0);
	buf_append_str(&body, "stale");
	long status = 0;
	struct error err = { 0 };
	assert_int_equal(http_get(url, 1024, 5000, &body, &status, &err), 0);
	assert_int_equal(status, 200);
	assert_string_equal(body.data, "hello, world");
	assert_int_equal(body.len, 12);
	assert_string_equal(f->seen.method, "GET");
	assert_string_equal(f->seen.target, "/hello?x=1");
	assert_non_null(strcasestr(f->seen.head, "\r\nAccept: application/json"));
	/* No compressed answers: the cap is the cap on memory. */
	assert_null(strcasestr(f->seen.head, "Accept-Encoding"));
}

static void test_status_returned(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *url = testserver_url(&f->server, "/bad");
	_cleanup_buf_ struct buf body;
	buf_init(&body, 0);
	long status = 0;
	assert_int_equal(http_get(url, 1024, 5000, &body, &status, NULL), 0);
	assert_int_equal(status, 400);
	assert_string_equal(body.data, "{\"error\":\"invalid_request\"}");
}

static void test_cap_exceeded(void **state)
{
	struct fixture *f = *state;
	static const char *const paths[] = { "/big", "/big-unannounced" };
	for (size_t i = 0; i < 2; i++) {
		_cleanup_free_ char *url = testserver_url(&f->server, paths[i]);
		_cleanup_buf_ struct buf body;
		buf_init(&body, 0);
		long status = -1;
		struct error err = { 0 };
		assert_int_equal(http_get(url, 1000, 5000, &body, &status, &err), -EFBIG);
		assert_int_equal(err.code, -EFBIG);
		assert_non_null(strstr(err.msg, "larger than 1000 bytes"));
		assert_int_equal(status, -1);  /* written only on success */
		assert_int_equal(body.len, 0);
	}
	/* Exactly at the cap is fine. */
	_cleanup_free_ char *url = testserver_url(&f->server, "/hello");
	_cleanup_buf_ struct buf body;
	buf_init(&body, 0);
	long status = 0;
	assert_int_equal(http_get(url, 12, 5000, &body, &status, NULL), 0);
	assert_int_equal(http_get(url, 11, 5000, &body, &status, NULL), -EFBIG);
}

static void test_timeout(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *url = testserver_url(&f->server, "/hang");
	_cleanup_buf_ struct buf body;
	buf_init(&body, 0);
	long status = 0;
	struct error err = { 0 };
	int64_t start = now_ms();
	assert_int_equal(http_get(url, 1024, 300, &body, &status, &err), -ETIMEDOUT);
	int64_t took = now_ms() - start;
	assert_true(took >= 250);
	assert_true(took < 3000);
	assert_non_null(strstr(err.msg, "did not answer in time"));
}

static void test_redirect_not_followed(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *url = testserver_url(&f->server, "/redirect");
	_cleanup_buf_ struct buf body;
	buf_init(&body, 0);
	long status = 0;
	unsigned before = testserver_requests(&f->server);
	assert_int_equal(http_get(url, 1024, 5000, &body, &status, NULL), 0);
	assert_int_equal(status, 302);
	assert_int_equal(body.len, 0);
	assert_int_equal(testserver_requests(&f->server), before + 1);
	assert_string_equal(f->seen.target, "/redirect");
}

static void test_scheme_refused(void **state)
{
	static const char *const urls[] = { "file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1/",
					    "127.0.0.1:80/x", "dict://127.0.0.1/", "" };
	for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
		_cleanup_buf_ struct buf body;
		buf_init(&body, 0);
		long status = 0;
		struct error err = { 0 };
		assert_int_equal(http_get(urls[i], 1024, 1000, &body, &status, &err), -EPROTONOSUPPORT);
		assert_non_null(strstr(err.msg, "only http and https"));
		const char *const fields[] = { "a", "b", NULL };
		assert_int_equal(http_post_form(urls[i], fields, 1024, 1000, &body, &status, NULL), -EPROTONOSUPPORT);
	}
}

static void test_post_form_encoding(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *url = testserver_url(&f->server, "/form");
	const char *const fields[] = {
		"grant_type", "password",
		"username", "al ice+bob@example.com",
		"password", "p&ss=w%rd/?\xc3\xa9~._-",
		"empty", "",
		NULL,
	};
	_cleanup_buf_ struct buf body;
	buf_init(&body, 0);
	long status = 0;
	assert_int_equal(http_post_form(url, fields, 1024, 5000, &body, &status, NULL), 0);
	assert_int_equal(status, 200);
	assert_string_equal(body.data, "ok");
	assert_string_equal(f->seen.method, "POST");
	assert_string_equal(f->seen.body, "grant_type=password&username=al%20ice%2Bbob%40example.com"
					  "&password=p%26ss%3Dw%25rd%2F%3F%C3%A9~._-&empty=");
	assert_non_null(strcasestr(f->seen.head, "\r\nContent-Type: application/x-www-form-urlencoded"));

	/* A field without a value is a caller's bug, refused before sending. */
	const char *const odd[] = { "a", NULL, NULL };
	unsigned before = testserver_requests(&f->server);
	assert_int_equal(http_post_form(url, odd, 1024, 5000, &body, &status, NULL), -EINVAL);
	assert_int_equal(testserver_requests(&f->server), before);
}

static void test_form_too_large(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *url = testserver_url(&f->server, "/form");
	/* 30000 characters that each encode to 3 bytes: 90000 > 64 KiB. */
	_cleanup_free_ char *value = malloc(30001);
	memset(value, ' ', 30000);
	value[30000] = '\0';
	const char *const fields[] = { "v", value, NULL };
	_cleanup_buf_ struct buf body;
	buf_init(&body, 0);
	long status = 0;
	assert_int_equal(http_post_form(url, fields, 1024, 5000, &body, &status, NULL), -E2BIG);
}

static void test_refused_and_bad_args(void **state)
{
	struct fixture *f = *state;
	/* A port nobody listens on: bind one, close it. */
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	char url[128];
	snprintf(url, sizeof(url), "http://user:hunter2@127.0.0.1:%d/token?secret=sesame#frag", ntohs(a.sin_port));
	_cleanup_buf_ struct buf body;
	buf_init(&body, 0);
	long status = 0;
	struct error err = { 0 };
	assert_int_equal(http_get(url, 1024, 5000, &body, &status, &err), -ECONNREFUSED);
	/* Messages name the server, never credentials or the query. */
	assert_non_null(strstr(err.msg, "127.0.0.1"));
	assert_null(strstr(err.msg, "hunter2"));
	assert_null(strstr(err.msg, "sesame"));

	_cleanup_free_ char *ok = testserver_url(&f->server, "/hello");
	assert_int_equal(http_get(ok, 1024, 0, &body, &status, NULL), -EINVAL);
	assert_int_equal(http_get(ok, 0, 1000, &body, &status, NULL), -EINVAL);
	assert_int_equal(http_get(NULL, 1024, 1000, &body, &status, NULL), -EINVAL);
	assert_int_equal(http_post_form(ok, NULL, 1024, 1000, &body, &status, NULL), -EINVAL);
	_cleanup_free_ char *longurl = malloc(HTTP_URL_MAX + 100);
	snprintf(longurl, HTTP_URL_MAX + 100, "http://127.0.0.1/%0*d", HTTP_URL_MAX, 0);
	assert_int_equal(http_get(longurl, 1024, 1000, &body, &status, NULL), -ENAMETOOLONG);
}

static enum testserver_action proxy_handler(const struct testserver_request *req, struct buf *out, void *userdata)
{
	(void)req;
	(void)userdata;
	testserver_reply(out, 200, "application/json", "{\"from\":\"proxy\"}");
	return TESTSERVER_ANSWER;
}

/* Saves an environment variable and sets (or, with NULL, unsets) it. */
static char *env_swap(const char *name, const char *value)
{
	const char *old = getenv(name);
	char *saved = old ? strdup(old) : NULL;
	if (value)
		setenv(name, value, 1);
	else
		unsetenv(name);
	return saved;
}

/* A plain http form (a password grant to a loopback IdP) must not go to a
 * proxy named in the environment: it would cross to it in clear text. */
static void test_http_ignores_proxy_env(void **state)
{
	struct fixture *f = *state;
	struct testserver proxy;
	assert_int_equal(testserver_start(&proxy, proxy_handler, NULL), 0);
	char proxy_url[64];
	snprintf(proxy_url, sizeof(proxy_url), "http://127.0.0.1:%d", proxy.port);
	static const char *const names[] = { "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY" };
	char *saved[ARRAY_SIZE(names)];
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		saved[i] = env_swap(names[i], strstr(names[i], "no_") || strstr(names[i], "NO_") ? NULL : proxy_url);

	_cleanup_free_ char *url = testserver_url(&f->server, "/form");
	const char *const fields[] = { "grant_type", "password", "password", "hunter2", NULL };
	_cleanup_buf_ struct buf body;
	buf_init(&body, 0);
	long status = 0;
	struct error err = { 0 };
	unsigned before = testserver_requests(&f->server);
	int r = http_post_form(url, fields, 1024, 5000, &body, &status, &err);
	unsigned proxied = testserver_requests(&proxy);

	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		free(env_swap(names[i], saved[i]));
		free(saved[i]);
	}
	testserver_stop(&proxy);
	assert_int_equal(r, 0);
	assert_int_equal(proxied, 0);
	assert_int_equal(testserver_requests(&f->server), before + 1);
	assert_int_equal(status, 200);
	assert_string_equal(f->seen.body, "grant_type=password&password=hunter2");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_get_200),
		cmocka_unit_test(test_status_returned),
		cmocka_unit_test(test_cap_exceeded),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_redirect_not_followed),
		cmocka_unit_test(test_scheme_refused),
		cmocka_unit_test(test_post_form_encoding),
		cmocka_unit_test(test_form_too_large),
		cmocka_unit_test(test_refused_and_bad_args),
		cmocka_unit_test(test_http_ignores_proxy_env),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
