/*
 * Unit tests for the OAuth2 client (src/client/oauth.c) against a token
 * endpoint played by an in-test HTTP server (http_testserver.h): the
 * password grant and what it sends, invalid_grant and other refusals,
 * malformed and oversized answers, refresh with and without a new refresh
 * token, the token file (mode 0600 in a 0700 directory, atomic replacement,
 * refusal of files others can read, caps, malformed JSON), its default
 * path, oauth_access_token (valid, expiring, refused, unreachable IdP, two
 * processes refreshing at once, a save that fails), the session lock
 * against a logout or a login during a refresh, writers that ignore it,
 * unsafe directories and lock files, and, when node and the test IdP's modules
 * are there, the same grants against tests/idp/idp.js (RS256 and ES256).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "config.h"
#include "fs.h"
#include "http_testserver.h"
#include "oauth.h"
#include "testutil.h"

#define NOW INT64_C(1700000000)

enum idp_mode {
	IDP_NORMAL,
	IDP_NO_REFRESH,       /* answers carry no refresh_token */
	IDP_HUGE_TOKEN,       /* access token of huge_len bytes */
	IDP_NOT_JSON,
	IDP_MAC_TYPE,         /* token_type mac */
	IDP_NO_EXPIRES_JWT,   /* no expires_in; a JWT access token with exp */
	IDP_HTTP_500,
	IDP_INVALID_CLIENT,
	IDP_HUGE_ANSWER,      /* an answer over 64 KiB */
	IDP_SLOW,             /* waits 300 ms before answering */
	IDP_SERVER_ERROR,     /* 503 with an OAuth2 error body */
};

/* A token endpoint: user alice, password "s3cret word&=", one-time refresh tokens. */
struct idp {
	struct testserver server;
	pthread_mutex_t lock;
	enum idp_mode mode;
	size_t huge_len;
	unsigned counter;        /* tokens issued */
	unsigned grants, refreshes;
	char current_refresh[64];
	char last_body[4096];
};

static const char *form_value(const char *body, const char *name, char *out, size_t size)
{
	size_t n = strlen(name);
	for (const char *p = body; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
		if (strncmp(p, name, n) == 0 && p[n] == '=') {
			size_t len = strcspn(p + n + 1, "&");
			snprintf(out, size, "%.*s", (int)len, p + n + 1);
			return out;
		}
	}
	return NULL;
}

static enum testserver_action idp_handler(const struct testserver_request *req, struct buf *out, void *userdata)
{
	struct idp *idp = userdata;
	pthread_mutex_lock(&idp->lock);
	snprintf(idp->last_body, sizeof(idp->last_body), "%s", req->body);
	char grant[64] = "", user[64] = "", pass[64] = "", refresh[64] = "";
	form_value(req->body, "grant_type", grant, sizeof(grant));
	form_value(req->body, "username", user, sizeof(user));
	form_value(req->body, "password", pass, sizeof(pass));
	form_value(req->body, "refresh_token", refresh, sizeof(refresh));
	enum idp_mode mode = idp->mode;
	bool ok = false;
	if (strcmp(grant, "password") == 0) {
		idp->grants++;
		ok = strcmp(user, "alice") == 0 && strcmp(pass, "s3cret%20word%26%3D") == 0;
	} else if (strcmp(grant, "refresh_token") == 0) {
		idp->refreshes++;
		ok = idp->current_refresh[0] && strcmp(refresh, idp->current_refresh) == 0;
	}
	if (mode == IDP_SLOW) {
		pthread_mutex_unlock(&idp->lock);
		nanosleep(&(struct timespec){ .tv_nsec = 300 * 1000 * 1000 }, NULL);
		pthread_mutex_lock(&idp->lock);
	}
	if (mode == IDP_SERVER_ERROR) {
		testserver_reply(out, 503, "application/json", "{\"error\":\"temporarily_unavailable\"}");
	} else if (mode == IDP_HTTP_500) {
		testserver_reply(out, 500, "text/html", "<html>oops</html>");
	} else if (mode == IDP_INVALID_CLIENT) {
		testserver_reply(out, 401, "application/json",
				 "{\"error\":\"invalid_client\",\"error_description\":\"Unknown client\\nid\"}");
	} else if (!ok) {
		testserver_reply(out, 400, "application/json",
				 "{\"error\":\"invalid_grant\",\"error_description\":\"Invalid username or password\"}");
	} else if (mode == IDP_NOT_JSON) {
		testserver_reply(out, 200, "text/html", "<html>welcome</html>");
	} else if (mode == IDP_HUGE_ANSWER) {
		struct buf b;
		buf_init(&b, 0);
		buf_printf(&b, "{\"access_token\":\"x\",\"token_type\":\"Bearer\",\"pad\":\"");
		for (int i = 0; i < 70000; i++)
			buf_append_char(&b, 'p');
		buf_append_str(&b, "\"}");
		testserver_reply(out, 200, "application/json", b.data);
		buf_free(&b);
	} else {
		unsigned n = ++idp->counter;
		struct buf b;
		buf_init(&b, 0);
		if (mode == IDP_HUGE_TOKEN) {
			buf_append_str(&b, "{\"access_token\":\"");
			for (size_t i = 0; i < idp->huge_len; i++)
				buf_append_char(&b, 'a');
			buf_append_str(&b, "\",");
		} else if (mode == IDP_NO_EXPIRES_JWT) {
			/* {"alg":"none"} . {"sub":"alice","exp":1700000777} . sig */
			buf_printf(&b, "{\"access_token\":\"eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6MTcwMDAwMDc3N30.c2ln\",");
		} else {
			buf_printf(&b, "{\"access_token\":\"at-%u\",", n);
		}
		buf_printf(&b, "\"token_type\":\"%s\"", mode == IDP_MAC_TYPE ? "mac" : "bearer");
		if (mode != IDP_NO_EXPIRES_JWT)
			buf_printf(&b, ",\"expires_in\":600");
		if (mode != IDP_NO_REFRESH) {
			snprintf(idp->current_refresh, sizeof(idp->current_refresh), "rt-%u", n);
			buf_printf(&b, ",\"refresh_token\":\"%s\"", idp->current_refresh);
		}
		buf_append_str(&b, ",\"scope\":\"openid\"}");
		testserver_reply(out, 200, "application/json", b.data);
		buf_free(&b);
	}
	pthread_mutex_unlock(&idp->lock);
	return TESTSERVER_ANSWER;
}

struct fixture {
	char *dir;
	struct idp idp;
	char *endpoint;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	void *dir = NULL;
	if (!f || testutil_setup_tmpdir(&dir) < 0)
		return -1;
	f->dir = dir;
	pthread_mutex_init(&f->idp.lock, NULL);
	if (testserver_start(&f->idp.server, idp_handler, &f->idp) < 0)
		return -1;
	f->endpoint = testserver_url(&f->idp.server, "/token");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	testserver_stop(&f->idp.server);
	pthread_mutex_destroy(&f->idp.lock);
	void *dir = f->dir;
	testutil_teardown_tmpdir(&dir);
	free(f->endpoint);
	free(f);
	return 0;
}

static void idp_set(struct fixture *f, enum idp_mode mode)
{
	pthread_mutex_lock(&f->idp.lock);
	f->idp.mode = mode;
	pthread_mutex_unlock(&f->idp.lock);
}

static struct oauth_session new_session(struct fixture *f)
{
	struct oauth_session s = {
		.tenant = strdup("acme"),
		.scheduler = strdup("sched.example:7443"),
		.issuer = strdup("http://issuer.example"),
		.token_endpoint = strdup(f->endpoint),
		.client_id = strdup("hpcc-cli"),
		.scope = strdup("openid hpcc"),
		.audience = strdup("hpcc-scheduler"),
		.username = strdup("alice"),
	};
	return s;
}

static char *path_in(struct fixture *f, const char *name)
{
	char *p = NULL;
	assert_true(asprintf(&p, "%s/%s", f->dir, name) > 0);
	return p;
}

static void logged_in(struct fixture *f, struct oauth_session *s)
{
	*s = new_session(f);
	assert_int_equal(oauth_password_grant(s, "s3cret word&=", NOW, NULL), 0);
}

/* --- grants --- */

static void test_grant_ok(void **state)
{
	struct fixture *f = *state;
	_cleanup_oauth_session_ struct oauth_session s = new_session(f);
	struct error err = { 0 };
	assert_int_equal(oauth_password_grant(&s, "s3cret word&=", NOW, &err), 0);
	assert_non_null(s.access_token);
	assert_true(strncmp(s.access_token, "at-", 3) == 0);
	assert_non_null(s.refresh_token);
	assert_true(strncmp(s.refresh_token, "rt-", 3) == 0);
	assert_int_equal(s.expires_at, NOW + 600);
	assert_string_equal(f->idp.last_body, "grant_type=password&username=alice&password=s3cret%20word%26%3D"
					      "&client_id=hpcc-cli&scope=openid%20hpcc&audience=hpcc-scheduler");
}

static void test_invalid_grant(void **state)
{
	struct fixture *f = *state;
	_cleanup_oauth_session_ struct oauth_session s = new_session(f);
	struct error err = { 0 };
	assert_int_equal(oauth_password_grant(&s, "wrong", NOW, &err), -EACCES);
	assert_string_equal(err.msg, "the IdP refused the username or password (invalid_grant)");
	assert_null(s.access_token);
	assert_null(s.refresh_token);
	/* The password appears in no message. */
	error_clear(&err);
	assert_int_equal(oauth_password_grant(&s, "hunter2", NOW, &err), -EACCES);
	assert_null(strstr(err.msg, "hunter2"));
}

static void test_other_refusals(void **state)
{
	struct fixture *f = *state;
	static const struct {
		enum idp_mode mode;
		int code;
		const char *msg;
	} cases[] = {
		{ IDP_INVALID_CLIENT, -EACCES, "the IdP refused the sign-in (invalid_client): Unknown client id" },
		{ IDP_HTTP_500, -EPROTO, "the IdP answered HTTP 500 without an OAuth2 error" },
		{ IDP_NOT_JSON, -EPROTO, "the IdP's token answer is not a JSON object" },
		{ IDP_MAC_TYPE, -EPROTO, "the IdP's token answer: token_type is mac, not Bearer" },
		{ IDP_HUGE_ANSWER, -EPROTO, "the IdP's token answer is larger than 65536 bytes" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		idp_set(f, cases[i].mode);
		_cleanup_oauth_session_ struct oauth_session s = new_session(f);
		struct error err = { 0 };
		assert_int_equal(oauth_password_grant(&s, "s3cret word&=", NOW, &err), cases[i].code);
		assert_string_equal(err.msg, cases[i].msg);
		assert_null(s.access_token);
	}
	idp_set(f, IDP_NORMAL);
}

static void test_expiry_from_jwt(void **state)
{
	struct fixture *f = *state;
	idp_set(f, IDP_NO_EXPIRES_JWT);
	_cleanup_oauth_session_ struct oauth_session s = new_session(f);
	assert_int_equal(oauth_password_grant(&s, "s3cret word&=", NOW, NULL), 0);
	assert_int_equal(s.expires_at, INT64_C(1700000777));
	/* Neither expires_in nor a usable exp: the default lifetime. */
	oauth_session_clear(&s);
	s = new_session(f);
	assert_int_equal(oauth_password_grant(&s, "s3cret word&=", INT64_C(1800000000), NULL), 0);
	assert_int_equal(s.expires_at, INT64_C(1800000000) + OAUTH_DEFAULT_LIFETIME);
	idp_set(f, IDP_NORMAL);
}

static void test_oversized_token(void **state)
{
	struct fixture *f = *state;
	idp_set(f, IDP_HUGE_TOKEN);
	f->idp.huge_len = OAUTH_TOKEN_MAX + 1;
	_cleanup_oauth_session_ struct oauth_session s = new_session(f);
	struct error err = { 0 };
	assert_int_equal(oauth_password_grant(&s, "s3cret word&=", NOW, &err), -E2BIG);
	assert_non_null(strstr(err.msg, "access_token is longer than 16384 bytes"));
	assert_null(s.access_token);
	f->idp.huge_len = OAUTH_TOKEN_MAX;
	assert_int_equal(oauth_password_grant(&s, "s3cret word&=", NOW, NULL), 0);
	assert_int_equal(strlen(s.access_token), OAUTH_TOKEN_MAX);
	idp_set(f, IDP_NORMAL);
}

static void test_refresh(void **state)
{
	struct fixture *f = *state;
	_cleanup_oauth_session_ struct oauth_session s = { 0 };
	logged_in(f, &s);
	_cleanup_free_ char *old_access = strdup(s.access_token);
	_cleanup_free_ char *old_refresh = strdup(s.refresh_token);
	assert_int_equal(oauth_refresh(&s, NOW + 100, NULL), 0);
	assert_string_not_equal(s.access_token, old_access);
	assert_string_not_equal(s.refresh_token, old_refresh);
	assert_int_equal(s.expires_at, NOW + 100 + 600);
	char expect[256];
	snprintf(expect, sizeof(expect), "grant_type=refresh_token&refresh_token=%s&client_id=hpcc-cli&audience=hpcc-scheduler",
		 old_refresh);
	assert_string_equal(f->idp.last_body, expect);
	/* The old refresh token was spent (rotation): refused, session over. */
	free(s.refresh_token);
	s.refresh_token = strdup(old_refresh);
	struct error err = { 0 };
	assert_int_equal(oauth_refresh(&s, NOW + 200, &err), -EKEYEXPIRED);
	assert_string_equal(err.msg, "the IdP refused the refresh token (invalid_grant)");
	/* An IdP in trouble does not end the session. */
	idp_set(f, IDP_SERVER_ERROR);
	error_clear(&err);
	assert_int_equal(oauth_refresh(&s, NOW + 200, &err), -EPROTO);
	assert_string_equal(err.msg, "the IdP failed (HTTP 503, temporarily_unavailable)");
	idp_set(f, IDP_NORMAL);
	/* No refresh token at all. */
	free(s.refresh_token);
	s.refresh_token = NULL;
	assert_int_equal(oauth_refresh(&s, NOW, NULL), -ENOKEY);
}

static void test_refresh_keeps_refresh_token(void **state)
{
	struct fixture *f = *state;
	_cleanup_oauth_session_ struct oauth_session s = { 0 };
	logged_in(f, &s);
	_cleanup_free_ char *old_access = strdup(s.access_token);
	_cleanup_free_ char *old_refresh = strdup(s.refresh_token);
	idp_set(f, IDP_NO_REFRESH);
	assert_int_equal(oauth_refresh(&s, NOW, NULL), 0);
	assert_string_not_equal(s.access_token, old_access);
	assert_string_equal(s.refresh_token, old_refresh);
	/* A password grant without one leaves none (a new session). */
	assert_int_equal(oauth_password_grant(&s, "s3cret word&=", NOW, NULL), 0);
	assert_null(s.refresh_token);
	idp_set(f, IDP_NORMAL);
}

/* --- the token file --- */

static void test_file_roundtrip_and_mode(void **state)
{
	struct fixture *f = *state;
	_cleanup_oauth_session_ struct oauth_session s = { 0 };
	logged_in(f, &s);
	_cleanup_free_ char *path = path_in(f, "cache/auth/acme.json");
	mode_t old_umask = umask(0);  /* the file must be 0600 even so */
	assert_int_equal(oauth_session_save(path, &s, NULL), 0);
	umask(old_umask);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	_cleanup_free_ char *dir = path_in(f, "cache/auth");
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);

	_cleanup_oauth_session_ struct oauth_session t = { 0 };
	assert_int_equal(oauth_session_load(path, &t, NULL), 0);
	assert_string_equal(t.tenant, "acme");
	assert_string_equal(t.scheduler, "sched.example:7443");
	assert_string_equal(t.issuer, "http://issuer.example");
	assert_string_equal(t.token_endpoint, f->endpoint);
	assert_string_equal(t.client_id, "hpcc-cli");
	assert_string_equal(t.scope, "openid hpcc");
	assert_string_equal(t.audience, "hpcc-scheduler");
	assert_string_equal(t.username, "alice");
	assert_string_equal(t.access_token, s.access_token);
	assert_string_equal(t.refresh_token, s.refresh_token);
	assert_int_equal(t.expires_at, s.expires_at);

	/* Group or other bits, any of them: refused, with the fix in the message. */
	static const mode_t loose[] = { 0640, 0604, 0620, 0602, 0610, 0601 };
	for (size_t i = 0; i < ARRAY_SIZE(loose); i++) {
		assert_int_equal(chmod(path, loose[i]), 0);
		struct error err = { 0 };
		struct oauth_session u = { 0 };
		assert_int_equal(oauth_session_load(path, &u, &err), -EPERM);
		assert_non_null(strstr(err.msg, "chmod 600"));
		assert_null(u.access_token);
	}
	assert_int_equal(chmod(path, 0600), 0);
	oauth_session_clear(&t);
	assert_int_equal(oauth_session_load(path, &t, NULL), 0);
	oauth_session_clear(&t);

	/* A directory in its place. */
	struct error err = { 0 };
	assert_int_equal(oauth_session_load(dir, &t, &err), -EINVAL);
}

static void test_file_atomic(void **state)
{
	struct fixture *f = *state;
	_cleanup_oauth_session_ struct oauth_session s = { 0 };
	logged_in(f, &s);
	_cleanup_free_ char *path = path_in(f, "atomic/acme.json");
	assert_int_equal(oauth_session_save(path, &s, NULL), 0);
	/* A second name for the old file: an in-place write would change it. */
	_cleanup_free_ char *link_path = path_in(f, "atomic/old-link");
	assert_int_equal(link(path, link_path), 0);
	struct stat before;
	assert_int_equal(stat(path, &before), 0);
	_cleanup_free_ char *old_token = strdup(s.access_token);
	assert_int_equal(oauth_refresh(&s, NOW, NULL), 0);
	assert_int_equal(oauth_session_save(path, &s, NULL), 0);
	struct stat after;
	assert_int_equal(stat(path, &after), 0);
	assert_true(before.st_ino != after.st_ino);
	_cleanup_oauth_session_ struct oauth_session old = { 0 }, now = { 0 };
	assert_int_equal(oauth_session_load(link_path, &old, NULL), 0);
	assert_string_equal(old.access_token, old_token);
	assert_int_equal(oauth_session_load(path, &now, NULL), 0);
	assert_string_equal(now.access_token, s.access_token);
	/* No temporary files left behind. */
	_cleanup_free_ char *dir = path_in(f, "atomic");
	DIR *d = opendir(dir);
	assert_non_null(d);
	int entries = 0;
	for (struct dirent *e; (e = readdir(d));)
		if (e->d_name[0] != '.')
			entries++;
	closedir(d);
	assert_int_equal(entries, 2);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	assert_int_equal(fs_write_atomic(path, text, strlen(text), mode, false), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static void test_file_malformed(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *path = path_in(f, "bad.json");
	static const char *const bad[] = {
		"",
		"not json",
		"[1,2]",
		"{\"tenant\":\"acme\"}",
		/* a duplicate key */
		"{\"tenant\":\"acme\",\"tenant\":\"other\",\"token_endpoint\":\"http://x/t\",\"client_id\":\"c\","
		"\"access_token\":\"a\",\"expires_at\":1}",
		/* tenant that would escape a directory */
		"{\"tenant\":\"../x\",\"token_endpoint\":\"http://x/t\",\"client_id\":\"c\",\"access_token\":\"a\",\"expires_at\":1}",
		/* expires_at not a number */
		"{\"tenant\":\"acme\",\"token_endpoint\":\"http://x/t\",\"client_id\":\"c\",\"access_token\":\"a\",\"expires_at\":\"1\"}",
		/* a control character in a token */
		"{\"tenant\":\"acme\",\"token_endpoint\":\"http://x/t\",\"client_id\":\"c\",\"access_token\":\"a\\nb\",\"expires_at\":1}",
		/* a NUL inside a string */
		"{\"tenant\":\"acme\",\"token_endpoint\":\"http://x/t\",\"client_id\":\"c\",\"access_token\":\"a\\u0000b\",\"expires_at\":1}",
		/* a number where a string belongs */
		"{\"tenant\":\"acme\",\"token_endpoint\":\"http://x/t\",\"client_id\":7,\"access_token\":\"a\",\"expires_at\":1}",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		write_file(path, bad[i], 0600);
		struct oauth_session s = { 0 };
		struct error err = { 0 };
		assert_int_equal(oauth_session_load(path, &s, &err), -EBADMSG);
		assert_non_null(strstr(err.msg, path));
	}
	/* Minimal but valid. */
	write_file(path,
		   "{\"tenant\":\"acme\",\"token_endpoint\":\"http://x/t\",\"client_id\":\"c\",\"access_token\":\"a\","
		   "\"refresh_token\":null,\"expires_at\":1,\"future_field\":[1]}",
		   0600);
	_cleanup_oauth_session_ struct oauth_session s = { 0 };
	assert_int_equal(oauth_session_load(path, &s, NULL), 0);
	assert_null(s.refresh_token);
	assert_null(s.username);

	/* Over the cap. */
	_cleanup_free_ char *big = malloc(OAUTH_FILE_MAX + 2);
	memset(big, ' ', OAUTH_FILE_MAX + 1);
	big[OAUTH_FILE_MAX + 1] = '\0';
	write_file(path, big, 0600);
	struct oauth_session t = { 0 };
	assert_int_equal(oauth_session_load(path, &t, NULL), -EFBIG);
	/* A token over 16 KiB in a file. */
	struct buf b;
	buf_init(&b, 0);
	buf_append_str(&b, "{\"tenant\":\"acme\",\"token_endpoint\":\"http://x/t\",\"client_id\":\"c\",\"expires_at\":1,"
			   "\"access_token\":\"");
	for (int i = 0; i < OAUTH_TOKEN_MAX + 1; i++)
		buf_append_char(&b, 'a');
	buf_append_str(&b, "\"}");
	write_file(path, b.data, 0600);
	buf_free(&b);
	assert_int_equal(oauth_session_load(path, &t, NULL), -EBADMSG);
}

static void test_not_logged_in(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *path = path_in(f, "nobody/acme.json");
	struct oauth_session s = { 0 };
	struct error err = { 0 };
	assert_int_equal(oauth_session_load(path, &s, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "not logged in: run hpcc login"));
	error_clear(&err);
	char *token = NULL;
	assert_int_equal(oauth_access_token(path, 60, &token, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "not logged in: run hpcc login"));
	assert_null(token);
	/* Logging out twice is fine. */
	assert_int_equal(oauth_session_remove(path, NULL), 0);
}

static void test_remove(void **state)
{
	struct fixture *f = *state;
	_cleanup_oauth_session_ struct oauth_session s = { 0 };
	logged_in(f, &s);
	_cleanup_free_ char *path = path_in(f, "rm/acme.json");
	assert_int_equal(oauth_session_save(path, &s, NULL), 0);
	assert_int_equal(oauth_session_remove(path, NULL), 1);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(oauth_session_remove(path, NULL), 0);
}

static void test_session_path(void **state)
{
	struct config cfg = { 0 };
	cfg.values[CONFIG_CACHE_DIR] = "/var/tmp/hpcc-cache//x/..";
	char *p = NULL;
	assert_int_equal(oauth_session_path(&cfg, "acme", &p, NULL), 0);
	assert_string_equal(p, "/var/tmp/hpcc-cache/auth/acme.json");
	free(p);
	static const char *const bad[] = { "", "../x", ".hidden", "a/b", "a b",
					   "x123456789012345678901234567890123456789012345678901234567890123456" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct error err = { 0 };
		assert_int_equal(oauth_session_path(&cfg, bad[i], &p, &err), -EINVAL);
	}
	assert_int_equal(oauth_session_path(&cfg, NULL, &p, NULL), -EINVAL);
	cfg.values[CONFIG_REMOTE_AUTH_FILE] = "/etc/../home/u/tok.json";
	assert_int_equal(oauth_session_path(&cfg, "acme", &p, NULL), 0);
	assert_string_equal(p, "/home/u/tok.json");
	free(p);
	assert_true(oauth_tenant_is_valid("acme-1.prod_2"));
}

static void test_endpoint_allowed(void **state)
{
	struct fixture *f = *state;
	static const char *const ok[] = { "https://idp.example/token", "HTTPS://idp.example:8443/t",
					  "http://127.0.0.1:8080/token", "http://localhost:80/t", "http://localhost",
					  "http://[::1]:99/t", "http://127.45.6.7/t", "http://LOCALHOST/t",
					  "http://127.0.0.1?x=1", "http://[::1]", "http://localhost#f" };
	/* Loopback must be the whole host, not a prefix of a DNS name. */
	static const char *const bad[] = { "http://idp.example/token", "http://127.0.0.1@evil.example/t",
					   "http://localhost.evil.example/t", "ftp://127.0.0.1/t", "file:///etc/passwd", "",
					   "http://127.attacker.example/token", "http://127.0.0.1.nip.io.evil.example/token",
					   "http://[::1].x/t", "http://[::1]x/t", "http://localhost./t", "http://localhostx/t",
					   "http://127.1/t", "http://0x7f.0.0.1/t", "http://128.0.0.1/t", "http://127.0.0.1:/t",
					   "http://127.0.0.1:80x/t", "http://127.0.0.1:123456/t", "http://u:p@localhost/t",
					   "http://[::2]/t", "http:///t", "http://127.0.0.1%2e/t" };
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		if (!oauth_endpoint_is_allowed(ok[i]))
			fail_msg("%s refused", ok[i]);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		if (oauth_endpoint_is_allowed(bad[i]))
			fail_msg("%s allowed", bad[i]);
	}
	/* The grant refuses before sending the password. */
	_cleanup_oauth_session_ struct oauth_session s = new_session(f);
	free(s.token_endpoint);
	s.token_endpoint = strdup("http://idp.example/token");
	unsigned before = testserver_requests(&f->idp.server);
	struct error err = { 0 };
	assert_int_equal(oauth_password_grant(&s, "s3cret word&=", NOW, &err), -EPROTONOSUPPORT);
	assert_non_null(strstr(err.msg, "https"));
	assert_int_equal(testserver_requests(&f->idp.server), before);
}

/* --- oauth_access_token --- */

static char *saved_session(struct fixture *f, const char *name, int64_t expires_at)
{
	struct oauth_session s = { 0 };
	logged_in(f, &s);
	s.expires_at = expires_at;
	char *path = path_in(f, name);
	assert_int_equal(oauth_session_save(path, &s, NULL), 0);
	oauth_session_clear(&s);
	return path;
}

static void test_access_token_valid(void **state)
{
	struct fixture *f = *state;
	int64_t now = time(NULL);
	_cleanup_free_ char *path = saved_session(f, "valid.json", now + 3600);
	_cleanup_oauth_session_ struct oauth_session s = { 0 };
	assert_int_equal(oauth_session_load(path, &s, NULL), 0);
	unsigned before = testserver_requests(&f->idp.server);
	_cleanup_free_ char *token = NULL;
	assert_int_equal(oauth_access_token(path, 60, &token, NULL), 0);
	assert_string_equal(token, s.access_token);
	assert_int_equal(testserver_requests(&f->idp.server), before);
}

static void test_access_token_refreshed(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *path = saved_session(f, "expiring.json", NOW + 10);
	_cleanup_oauth_session_ struct oauth_session s = { 0 };
	assert_int_equal(oauth_session_load(path, &s, NULL), 0);
	unsigned refreshes = f->idp.refreshes;
	_cleanup_free_ char *token = NULL;
	assert_int_equal(oauth_access_token_at(path, 60, NOW, &token, NULL), 0);
	assert_string_not_equal(token, s.access_token);
	assert_int_equal(f->idp.refreshes, refreshes + 1);
	/* Saved: the next call needs no IdP. */
	_cleanup_oauth_session_ struct oauth_session t = { 0 };
	assert_int_equal(oauth_session_load(path, &t, NULL), 0);
	assert_string_equal(t.access_token, token);
	assert_int_equal(t.expires_at, NOW + 600);
	assert_string_not_equal(t.refresh_token, s.refresh_token);
	assert_string_equal(t.username, "alice");
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	_cleanup_free_ char *again = NULL;
	assert_int_equal(oauth_access_token_at(path, 60, NOW, &again, NULL), 0);
	assert_string_equal(again, token);
	assert_int_equal(f->idp.refreshes, refreshes + 1);
}

static void test_access_token_session_expired(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *path = saved_session(f, "revoked.json", NOW + 10);
	/* Another login spends the refresh token in the file. */
	_cleanup_oauth_session_ struct oauth_session other = { 0 };
	logged_in(f, &other);
	char *token = NULL;
	struct error err = { 0 };
	assert_int_equal(oauth_access_token_at(path, 60, NOW, &token, &err), -EKEYEXPIRED);
	assert_non_null(strstr(err.msg, "session expired: run hpcc login"));
	assert_null(token);
	/* Without a refresh token. */
	_cleanup_oauth_session_ struct oauth_session s = { 0 };
	assert_int_equal(oauth_session_load(path, &s, NULL), 0);
	free(s.refresh_token);
	s.refresh_token = NULL;
	assert_int_equal(oauth_session_save(path, &s, NULL), 0);
	error_clear(&err);
	assert_int_equal(oauth_access_token_at(path, 60, NOW, &token, &err), -EKEYEXPIRED);
	assert_non_null(strstr(err.msg, "session expired: run hpcc login"));
}

static void test_access_token_idp_down(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *path = saved_session(f, "down.json", NOW + 30);
	_cleanup_oauth_session_ struct oauth_session s = { 0 };
	assert_int_equal(oauth_session_load(path, &s, NULL), 0);
	/* An endpoint nobody listens on. */
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	free(s.token_endpoint);
	assert_true(asprintf(&s.token_endpoint, "http://127.0.0.1:%d/token", ntohs(a.sin_port)) > 0);
	assert_int_equal(oauth_session_save(path, &s, NULL), 0);
	/* Still valid for 30 s: that token rather than none. */
	_cleanup_free_ char *token = NULL;
	assert_int_equal(oauth_access_token_at(path, 60, NOW, &token, NULL), 0);
	assert_string_equal(token, s.access_token);
	/* Expired: the transport error. */
	struct error err = { 0 };
	char *none = NULL;
	assert_int_equal(oauth_access_token_at(path, 60, NOW + 31, &none, &err), -ECONNREFUSED);
	assert_non_null(strstr(err.msg, "cannot refresh the access token"));
	assert_null(none);
}

/* Two processes find the token expiring at once; the IdP takes each
 * refresh token once. The file lock must make the second one reread. */
static void test_access_token_two_processes(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *path = saved_session(f, "race.json", NOW + 10);
	unsigned refreshes = f->idp.refreshes;
	idp_set(f, IDP_SLOW);
	pid_t pids[2];
	for (int i = 0; i < 2; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			char *token = NULL;
			struct error err = { 0 };
			int r = oauth_access_token_at(path, 60, NOW, &token, &err);
			if (r < 0)
				fprintf(stderr, "child %d: %s\n", i, err.msg);
			_exit(r == 0 ? 0 : 1);
		}
	}
	for (int i = 0; i < 2; i++) {
		int status = 0;
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	idp_set(f, IDP_NORMAL);
	assert_int_equal(f->idp.refreshes, refreshes + 1);
}

/* --- the session lock: login, logout and a refresh in flight --- */

struct refresher {
	const char *path;
	int r;
	char *token;
	struct error err;
};

static void *refresher_run(void *arg)
{
	struct refresher *rf = arg;
	rf->r = oauth_access_token_at(rf->path, 60, NOW, &rf->token, &rf->err);
	return NULL;
}

static unsigned idp_refreshes(struct fixture *f)
{
	pthread_mutex_lock(&f->idp.lock);
	unsigned n = f->idp.refreshes;
	pthread_mutex_unlock(&f->idp.lock);
	return n;
}

/* Starts a refresh of path on a thread, against the slow IdP, and returns
 * once the IdP has its request: the refresh is then in flight for 300 ms. */
static void refresh_in_flight(struct fixture *f, struct refresher *rf, pthread_t *thread)
{
	idp_set(f, IDP_SLOW);
	unsigned before = idp_refreshes(f);
	assert_int_equal(pthread_create(thread, NULL, refresher_run, rf), 0);
	for (int i = 0; i < 500 && idp_refreshes(f) == before; i++)
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
	assert_int_equal(idp_refreshes(f), before + 1);
}

static void refresh_join(struct fixture *f, pthread_t thread)
{
	assert_int_equal(pthread_join(thread, NULL), 0);
	idp_set(f, IDP_NORMAL);
}

/* A session of another user, as hpcc login would write it. */
static void save_other_session(struct fixture *f, const char *path, const char *user, const char *access)
{
	_cleanup_oauth_session_ struct oauth_session s = new_session(f);
	free(s.username);
	s.username = strdup(user);
	s.access_token = strdup(access);
	s.refresh_token = strdup("other-refresh");
	s.expires_at = NOW + 3600;
	assert_int_equal(oauth_session_save(path, &s, NULL), 0);
}

static void assert_file_holds(const char *path, const char *user, const char *access)
{
	_cleanup_oauth_session_ struct oauth_session s = { 0 };
	assert_int_equal(oauth_session_load(path, &s, NULL), 0);
	assert_string_equal(s.username, user);
	assert_string_equal(s.access_token, access);
}

/* hpcc logout while the daemon refreshes: the refresh must not write the
 * session back once the logout removed it. */
static void test_logout_during_refresh(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *path = saved_session(f, "logout-race/acme.json", NOW + 10);
	struct refresher rf = { .path = path };
	pthread_t t;
	refresh_in_flight(f, &rf, &t);
	/* The logout waits for the refresh to finish, then removes its result. */
	assert_int_equal(oauth_session_remove(path, NULL), 1);
	refresh_join(f, t);
	assert_int_equal(rf.r, 0);
	free(rf.token);
	assert_int_equal(access(path, F_OK), -1);
	char *token = NULL;
	assert_int_equal(oauth_access_token_at(path, 60, NOW, &token, NULL), -ENOENT);
	/* The lock file stays (removing it is not safe) and still locks. */
	_cleanup_free_ char *lock_file = NULL;
	assert_true(asprintf(&lock_file, "%s.lock", path) > 0);
	assert_int_equal(access(lock_file, F_OK), 0);
	int lock = oauth_session_lock(path, NULL);
	assert_true(lock >= 0);
	close(lock);
}

/* hpcc login as bob while the daemon refreshes alice's session: bob's
 * session must be what the file holds in the end. */
static void test_login_during_refresh(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *path = saved_session(f, "login-race/acme.json", NOW + 10);
	struct refresher rf = { .path = path };
	pthread_t t;
	refresh_in_flight(f, &rf, &t);
	/* What hpcc login does around its save. */
	struct error err = { 0 };
	int lock = oauth_session_lock(path, &err);
	assert_true(lock >= 0);
	save_other_session(f, path, "bob", "bob-access");
	close(lock);
	refresh_join(f, t);
	assert_int_equal(rf.r, 0);
	free(rf.token);
	assert_file_holds(path, "bob", "bob-access");
}

/* Writers that ignore the lock (an older hpcc, a person): the refresh
 * rereads the file before saving and leaves a changed one alone. */
static void test_lockless_writer_during_refresh(void **state)
{
	struct fixture *f = *state;
	struct refresher rf = { 0 };
	pthread_t t;

	/* Removed: not logged in any more. */
	_cleanup_free_ char *gone = saved_session(f, "lockless/gone.json", NOW + 10);
	rf = (struct refresher){ .path = gone };
	refresh_in_flight(f, &rf, &t);
	assert_int_equal(unlink(gone), 0);
	refresh_join(f, t);
	assert_int_equal(rf.r, -ENOENT);
	assert_non_null(strstr(rf.err.msg, "not logged in"));
	assert_null(rf.token);
	assert_int_equal(access(gone, F_OK), -1);

	/* Another user's session: alice's new token is not handed out. */
	_cleanup_free_ char *bob = saved_session(f, "lockless/bob.json", NOW + 10);
	rf = (struct refresher){ .path = bob };
	refresh_in_flight(f, &rf, &t);
	save_other_session(f, bob, "bob", "bob-access");
	refresh_join(f, t);
	assert_int_equal(rf.r, -ENOENT);
	assert_non_null(strstr(rf.err.msg, "not logged in as alice"));
	assert_null(rf.token);
	assert_file_holds(bob, "bob", "bob-access");

	/* The same user logged in again: the new token serves this once, the
	 * file keeps the new login. */
	_cleanup_free_ char *again = saved_session(f, "lockless/again.json", NOW + 10);
	rf = (struct refresher){ .path = again };
	refresh_in_flight(f, &rf, &t);
	save_other_session(f, again, "alice", "alice-relogin");
	refresh_join(f, t);
	assert_int_equal(rf.r, 0);
	assert_true(strncmp(rf.token, "at-", 3) == 0);
	free(rf.token);
	assert_file_holds(again, "alice", "alice-relogin");
}

/* The refresh worked but the file cannot be written (here: a file size
 * limit of 16 bytes): the new access token is returned all the same. */
static void test_refresh_save_fails(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *path = saved_session(f, "nosave/acme.json", NOW + 10);
	_cleanup_oauth_session_ struct oauth_session before = { 0 };
	assert_int_equal(oauth_session_load(path, &before, NULL), 0);
	unsigned refreshes = idp_refreshes(f);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		signal(SIGXFSZ, SIG_IGN);
		struct rlimit limit = { .rlim_cur = 16, .rlim_max = 16 };
		if (setrlimit(RLIMIT_FSIZE, &limit) < 0)
			_exit(3);
		char *token = NULL;
		struct error err = { 0 };
		int r = oauth_access_token_at(path, 60, NOW, &token, &err);
		if (r < 0)
			fprintf(stderr, "child: %s\n", err.msg);
		_exit(r < 0 ? 1 : strncmp(token, "at-", 3) == 0 && strcmp(token, before.access_token) != 0 ? 0 : 2);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(idp_refreshes(f), refreshes + 1);
	/* Nothing was written: the file holds the old session, and no
	 * temporary file is left. */
	assert_file_holds(path, "alice", before.access_token);
	_cleanup_free_ char *dir = path_in(f, "nosave");
	DIR *d = opendir(dir);
	assert_non_null(d);
	for (struct dirent *e; (e = readdir(d));)
		assert_null(strstr(e->d_name, ".tmp"));
	closedir(d);
}

/* A token file's directory that others could write, or that is not ours,
 * is refused by load, save, lock, logout and the refresh, as is a lock file
 * of another user. */
static void test_unsafe_directory(void **state)
{
	struct fixture *f = *state;
	_cleanup_oauth_session_ struct oauth_session s = { 0 };
	logged_in(f, &s);
	s.expires_at = NOW + 10;
	static const mode_t modes[] = { 0770, 0730, 0707, 01777 };
	for (size_t i = 0; i < ARRAY_SIZE(modes) + 1; i++) {
		bool foreign = i == ARRAY_SIZE(modes);
		if (foreign && geteuid() != 0)
			break;  /* making a directory of another user needs root */
		char name[64];
		snprintf(name, sizeof(name), "unsafe-%zu", i);
		_cleanup_free_ char *dir = path_in(f, name);
		_cleanup_free_ char *path = NULL;
		assert_true(asprintf(&path, "%s/acme.json", dir) > 0);
		assert_int_equal(oauth_session_save(path, &s, NULL), 0);
		if (foreign)
			assert_int_equal(chown(dir, 65534, 65534), 0);
		else
			assert_int_equal(chmod(dir, modes[i]), 0);

		struct error err = { 0 };
		assert_int_equal(oauth_session_save(path, &s, &err), -EPERM);
		assert_non_null(strstr(err.msg, "unsafe directory"));
		error_clear(&err);
		_cleanup_oauth_session_ struct oauth_session t = { 0 };
		assert_int_equal(oauth_session_load(path, &t, &err), -EPERM);
		assert_non_null(strstr(err.msg, "unsafe directory"));
		assert_int_equal(oauth_session_lock(path, NULL), -EPERM);
		assert_int_equal(oauth_session_remove(path, NULL), -EPERM);
		char *token = NULL;
		assert_int_equal(oauth_access_token_at(path, 60, NOW, &token, NULL), -EPERM);
		assert_int_equal(access(path, F_OK), 0);
		assert_int_equal(chown(dir, geteuid(), getegid()), 0);
		assert_int_equal(chmod(dir, 0700), 0);
	}
	if (geteuid() != 0)
		return;
	/* A lock file of another user, in a directory that is fine. */
	_cleanup_free_ char *path = path_in(f, "foreign-lock/acme.json");
	assert_int_equal(oauth_session_save(path, &s, NULL), 0);
	_cleanup_free_ char *lock_file = NULL;
	assert_true(asprintf(&lock_file, "%s.lock", path) > 0);
	int fd = open(lock_file, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	assert_true(fd >= 0);
	assert_int_equal(fchown(fd, 65534, 65534), 0);
	close(fd);
	struct error err = { 0 };
	assert_int_equal(oauth_session_lock(path, &err), -EPERM);
	assert_non_null(strstr(err.msg, "lock file"));
	char *token = NULL;
	assert_int_equal(oauth_access_token_at(path, 60, NOW, &token, NULL), -EPERM);
}

/* --- against tests/idp/idp.js --- */

struct node_idp {
	pid_t pid;
	int port;
};

static bool system_has_no_node(void)
{
	const char *path = getenv("PATH");
	_cleanup_free_ char *copy = strdup(path ? path : "/usr/bin:/bin");
	for (char *save = NULL, *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		char exe[4096];
		snprintf(exe, sizeof(exe), "%s/node", d);
		if (access(exe, X_OK) == 0)
			return false;
	}
	return true;
}

/* Starts idp.js; false (the test is skipped) without node or its modules. */
static bool node_idp_start(struct fixture *f, const char *alg, struct node_idp *ret)
{
	const char *src = getenv("HPCC_TEST_SRCDIR");
	if (!src || system_has_no_node())
		return false;
	_cleanup_free_ char *script = NULL, *deps = NULL, *port_file = path_in(f, alg);
	assert_true(asprintf(&script, "%s/tests/idp/idp.js", src) > 0);
	assert_true(asprintf(&deps, "%s/scripts/npm-deps.sh", src) > 0);
	/* The modules: NODE_PATH, else what npm-deps.sh prints (it is
	 * instant once installed; without them the test is skipped). */
	_cleanup_free_ char *modules = NULL;
	if (getenv("NODE_PATH")) {
		modules = strdup(getenv("NODE_PATH"));
	} else {
		int pipefd[2];
		assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
		pid_t pid = fork();
		if (pid == 0) {
			dup2(pipefd[1], 1);
			int null = open("/dev/null", O_WRONLY);
			dup2(null, 2);
			execl("/bin/bash", "bash", deps, (char *)NULL);
			_exit(127);
		}
		close(pipefd[1]);
		struct buf out;
		buf_init(&out, 4096);
		fs_read_fd(pipefd[0], 4096, &out);
		close(pipefd[0]);
		int status = 0;
		waitpid(pid, &status, 0);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || out.len == 0) {
			buf_free(&out);
			return false;
		}
		while (out.len && out.data[out.len - 1] == '\n')
			out.data[--out.len] = '\0';
		modules = buf_steal(&out);
	}
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		setenv("NODE_PATH", modules, 1);
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		execlp("node", "node", script, "--port", "0", "--port-file", port_file, "--alg", alg, "--audience",
		       "hpcc-scheduler", "--user", "alice:s3cret word&=", "--expires-in", "120", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 200; i++) {  /* 10 s */
		struct buf text;
		buf_init(&text, 64);
		if (fs_read_file(port_file, 64, &text) == 0 && text.len > 0) {
			ret->port = (int)strtol(text.data, NULL, 10);
			ret->pid = pid;
			buf_free(&text);
			return true;
		}
		buf_free(&text);
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid)
			return false;
		nanosleep(&(struct timespec){ .tv_nsec = 50 * 1000 * 1000 }, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	fail_msg("idp.js did not start within 10 s");
	return false;
}

static void node_idp_stop(struct node_idp *n)
{
	kill(n->pid, SIGTERM);
	waitpid(n->pid, NULL, 0);
}

static void against_node_idp(void **state, const char *alg)
{
	struct fixture *f = *state;
	struct node_idp n = { 0 };
	if (!node_idp_start(f, alg, &n)) {
		print_message("node or the test IdP's modules are missing: skipped\n");
		skip();
	}
	_cleanup_oauth_session_ struct oauth_session s = new_session(f);
	free(s.token_endpoint);
	assert_true(asprintf(&s.token_endpoint, "http://127.0.0.1:%d/token", n.port) > 0);
	int64_t now = time(NULL);
	struct error err = { 0 };
	assert_int_equal(oauth_password_grant(&s, "wrong", now, &err), -EACCES);
	assert_string_equal(err.msg, "the IdP refused the username or password (invalid_grant)");
	assert_null(s.access_token);
	error_clear(&err);
	assert_int_equal(oauth_password_grant(&s, "s3cret word&=", now, &err), 0);
	assert_int_equal(s.expires_at, now + 120);
	assert_non_null(s.refresh_token);
	assert_int_equal(strncmp(s.access_token, "eyJ", 3), 0);  /* a JWT */
	_cleanup_free_ char *path = path_in(f, "node-idp.json");
	s.expires_at = now + 5;  /* expiring: oauth_access_token refreshes */
	assert_int_equal(oauth_session_save(path, &s, NULL), 0);
	_cleanup_free_ char *token = NULL;
	assert_int_equal(oauth_access_token(path, 60, &token, &err), 0);
	assert_string_not_equal(token, s.access_token);
	/* The spent refresh token is refused: rotation. */
	assert_int_equal(oauth_refresh(&s, now, &err), -EKEYEXPIRED);
	node_idp_stop(&n);
}

static void test_node_idp_rs256(void **state) { against_node_idp(state, "RS256"); }
static void test_node_idp_es256(void **state) { against_node_idp(state, "ES256"); }

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grant_ok),
		cmocka_unit_test(test_invalid_grant),
		cmocka_unit_test(test_other_refusals),
		cmocka_unit_test(test_expiry_from_jwt),
		cmocka_unit_test(test_oversized_token),
		cmocka_unit_test(test_refresh),
		cmocka_unit_test(test_refresh_keeps_refresh_token),
		cmocka_unit_test(test_file_roundtrip_and_mode),
		cmocka_unit_test(test_file_atomic),
		cmocka_unit_test(test_file_malformed),
		cmocka_unit_test(test_not_logged_in),
		cmocka_unit_test(test_remove),
		cmocka_unit_test(test_session_path),
		cmocka_unit_test(test_endpoint_allowed),
		cmocka_unit_test(test_access_token_valid),
		cmocka_unit_test(test_access_token_refreshed),
		cmocka_unit_test(test_access_token_session_expired),
		cmocka_unit_test(test_access_token_idp_down),
		cmocka_unit_test(test_access_token_two_processes),
		cmocka_unit_test(test_logout_during_refresh),
		cmocka_unit_test(test_login_during_refresh),
		cmocka_unit_test(test_lockless_writer_during_refresh),
		cmocka_unit_test(test_refresh_save_fails),
		cmocka_unit_test(test_unsafe_directory),
		cmocka_unit_test(test_node_idp_rs256),
		cmocka_unit_test(test_node_idp_es256),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
