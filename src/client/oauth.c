/*
 * OAuth2 for hpcc (see oauth.h and docs/auth.md): the password and
 * refresh_token grants over http.c, the parsing of token endpoint answers
 * (every field typed and capped; OAuth2 error answers turned into one clear
 * line), the token file (JSON, 0600, written atomically, refused when others
 * can read it or could change its directory), the session lock that a
 * refresh, a login and a logout take in turn, and oauth_access_token, which
 * refreshes under that lock.
 * Passwords are wiped as soon as the request is sent; tokens are wiped when
 * a session is cleared. Messages name fields and IdP error codes, never
 * their secret values.
 */
#include "oauth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/crypto.h>

#include "base64url.h"
#include "buf.h"
#include "config.h"
#include "engine.h"
#include "fs.h"
#include "http.h"
#include "log.h"
#include "token.h"

#define EXPIRES_IN_MAX INT64_C(315360000)  /* ten years: anything longer is nonsense */
#define OAUTH_ERROR_CODE_MAX 64
#define OAUTH_ERROR_DESCRIPTION_MAX 200


/* Frees a string that may hold a secret, wiping it first. */
static void secret_free(char *s)
{
	if (!s)
		return;
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}

static void secret_freep(char **s) { secret_free(*s); }
#define _cleanup_secret_ _cleanup_(secret_freep)

static void secret_buf_freep(struct buf *b)
{
	if (b->data)
		OPENSSL_cleanse(b->data, b->alloc);
	buf_free(b);
}

void oauth_session_clear(struct oauth_session *s)
{
	if (!s)
		return;
	free(s->tenant);
	free(s->scheduler);
	free(s->issuer);
	free(s->token_endpoint);
	free(s->client_id);
	free(s->scope);
	free(s->audience);
	free(s->username);
	secret_free(s->access_token);
	secret_free(s->refresh_token);
	*s = (struct oauth_session){ 0 };
}

bool oauth_tenant_is_valid(const char *t) { return t && token_name_valid(t); }

/* RFC 6749 VSCHAR (0x20-0x7e) for tokens; any text without control
 * characters for the other fields (they are printed). */
static bool text_is_clean(const char *s, size_t n, bool token)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f || (token && c > 0x7e))
			return false;
	}
	return true;
}

/*
 * Copies obj[key] to *out (malloc'd): a string of at most max bytes, no NUL,
 * clean as above. A missing key or null gives NULL, or an error when
 * required. code is the errno for a malformed field; what names the source.
 */
static int get_string(json_t *obj, const char *key, size_t max, bool required, bool token, int code,
		      const char *what, char **out, struct error *err)
{
	json_t *v = json_object_get(obj, key);
	if (!v || json_is_null(v)) {
		if (required)
			return error_set(err, code, "%s has no %s", what, key);
		*out = NULL;
		return 0;
	}
	if (!json_is_string(v))
		return error_set(err, code, "%s: %s is not a string", what, key);
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);
	/* An oversized token in an IdP's answer is -E2BIG (oauth.h); in a
	 * token file it is one more way of being malformed. */
	if (n > max)
		return error_set(err, token && code == -EPROTO ? -E2BIG : code, "%s: %s is longer than %zu bytes", what,
				 key, max);
	if (strlen(s) != n || !text_is_clean(s, n, token))
		return error_set(err, code, "%s: %s holds control characters", what, key);
	if (required && n == 0)
		return error_set(err, code, "%s: %s is empty", what, key);
	char *copy = strndup(s, n);
	if (!copy)
		return error_set(err, -ENOMEM, "out of memory");
	*out = copy;
	return 0;
}

/* --- token endpoint answers --- */


/* The exp claim of a JWT access token, read without verifying anything: it
 * only serves to know when to refresh, for IdPs that send no expires_in. */
static int64_t jwt_exp_unverified(const char *token)
{
	const char *dot1 = strchr(token, '.');
	const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	if (!dot2)
		return 0;
	size_t n = (size_t)(dot2 - dot1 - 1);
	if (n == 0 || n > OAUTH_TOKEN_MAX)
		return 0;
	_cleanup_free_ uint8_t *raw = malloc(n);
	size_t o = 0;
	if (!raw || base64url_decode(dot1 + 1, n, raw, n, &o) < 0)
		return 0;
	_cleanup_(json_decrefp) json_t *claims = json_loadb((const char *)raw, o, JSON_REJECT_DUPLICATES, NULL);
	json_t *exp = claims ? json_object_get(claims, "exp") : NULL;
	return json_is_integer(exp) ? json_integer_value(exp) : 0;
}

/* An OAuth2 error answer (RFC 6749 §5.2) as one line in err. */
static int error_answer(const struct buf *body, long status, bool refresh, struct error *err)
{
	_cleanup_(json_decrefp) json_t *root = json_loadb(body->data, body->len, JSON_REJECT_DUPLICATES, NULL);
	json_t *code_json = root ? json_object_get(root, "error") : NULL;
	const char *code = json_is_string(code_json) ? json_string_value(code_json) : NULL;
	/* error is %x20-21 / %x23-5B / %x5D-7E: anything else is not OAuth2. */
	bool valid = code && code[0] && strlen(code) <= OAUTH_ERROR_CODE_MAX && text_is_clean(code, strlen(code), true) &&
		     !strpbrk(code, "\"\\");
	if (!valid)
		return error_set(err, refresh && (status == 400 || status == 401) ? -EKEYEXPIRED : -EPROTO,
				 "the IdP answered HTTP %ld without an OAuth2 error", status);
	/* A 5xx is the IdP's failure, not a verdict on the credentials: the
	 * session is not over, and a refresh may be tried again later. */
	if (status >= 500)
		return error_set(err, -EPROTO, "the IdP failed (HTTP %ld, %s)", status, code);
	if (refresh)
		return error_set(err, -EKEYEXPIRED, "the IdP refused the refresh token (%s)", code);
	if (strcmp(code, "invalid_grant") == 0)
		return error_set(err, -EACCES, "the IdP refused the username or password (invalid_grant)");
	json_t *desc_json = json_object_get(root, "error_description");
	const char *desc = json_is_string(desc_json) ? json_string_value(desc_json) : NULL;
	if (desc && desc[0])
		return error_set(err, -EACCES, "the IdP refused the sign-in (%s): %.*s", code, OAUTH_ERROR_DESCRIPTION_MAX,
				 desc);
	return error_set(err, -EACCES, "the IdP refused the sign-in (%s)", code);
}

/* Parses a successful answer; on success replaces s's tokens. */
static int token_answer(const struct buf *body, int64_t now, bool keep_refresh, struct oauth_session *s,
			struct error *err)
{
	static const char what[] = "the IdP's token answer";
	json_error_t jerr;
	_cleanup_(json_decrefp) json_t *root = json_loadb(body->data, body->len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root || !json_is_object(root))
		return error_set(err, -EPROTO, "%s is not a JSON object", what);
	_cleanup_secret_ char *access = NULL;
	_cleanup_secret_ char *refresh = NULL;
	_cleanup_free_ char *type = NULL;
	int r = get_string(root, "access_token", OAUTH_TOKEN_MAX, true, true, -EPROTO, what, &access, err);
	if (r < 0)
		return r;
	r = get_string(root, "refresh_token", OAUTH_TOKEN_MAX, false, true, -EPROTO, what, &refresh, err);
	if (r < 0)
		return r;
	r = get_string(root, "token_type", 64, true, true, -EPROTO, what, &type, err);
	if (r < 0)
		return r;
	/* Case-insensitive (RFC 6749 §5.1, §7.1). */
	if (strcasecmp(type, "Bearer") != 0)
		return error_set(err, -EPROTO, "%s: token_type is %s, not Bearer", what, type);
	int64_t expires_at;
	json_t *in = json_object_get(root, "expires_in");
	if (in && !json_is_null(in)) {
		if (!json_is_integer(in) || json_integer_value(in) <= 0 || json_integer_value(in) > EXPIRES_IN_MAX)
			return error_set(err, -EPROTO, "%s: expires_in is not a number of seconds", what);
		expires_at = now + json_integer_value(in);
	} else {
		int64_t exp = jwt_exp_unverified(access);
		expires_at = exp > now && exp - now <= EXPIRES_IN_MAX ? exp : now + OAUTH_DEFAULT_LIFETIME;
	}
	if (refresh && !refresh[0])
		secret_free(TAKE_PTR(refresh));
	secret_free(s->access_token);
	s->access_token = TAKE_PTR(access);
	if (refresh || !keep_refresh) {
		secret_free(s->refresh_token);
		s->refresh_token = TAKE_PTR(refresh);
	}
	s->expires_at = expires_at;
	return 0;
}

/* The port of an authority, after its ':': 1 to 5 digits. */
static bool port_is_valid(const char *p, size_t n)
{
	if (n == 0 || n > 5)
		return false;
	for (size_t i = 0; i < n; i++)
		if (p[i] < '0' || p[i] > '9')
			return false;
	return true;
}

/* A loopback host, matched whole: a dotted-quad IPv4 literal in 127.0.0.0/8,
 * exactly "localhost", or exactly "[::1]". A prefix test would let
 * 127.attacker.example or localhost.evil.example through to DNS. */
static bool host_is_loopback(const char *host, size_t n)
{
	if (n == 5 && memcmp(host, "[::1]", 5) == 0)
		return true;
	if (n == 9 && strncasecmp(host, "localhost", 9) == 0)
		return true;
	char text[INET_ADDRSTRLEN];
	struct in_addr a;
	if (n == 0 || n >= sizeof(text))
		return false;
	memcpy(text, host, n);
	text[n] = '\0';
	/* inet_pton takes only four decimal parts, none of inet_aton's
	 * shorthands (127.1, 0x7f.0.0.1) that a resolver might read otherwise. */
	return inet_pton(AF_INET, text, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

bool oauth_endpoint_is_allowed(const char *url)
{
	if (!url)
		return false;
	if (strncasecmp(url, "https://", 8) == 0)
		return true;
	if (strncasecmp(url, "http://", 7) != 0)
		return false;
	/* The authority ends where the path, query or fragment starts; what
	 * is allowed is host, or host:port, and nothing else (no user info). */
	const char *authority = url + 7;
	size_t n = strcspn(authority, "/?#");
	size_t host_len;
	if (authority[0] == '[') {
		const char *close = memchr(authority, ']', n);
		host_len = close ? (size_t)(close - authority) + 1 : n;
	} else {
		const char *colon = memchr(authority, ':', n);
		host_len = colon ? (size_t)(colon - authority) : n;
	}
	if (host_len < n && (authority[host_len] != ':' || !port_is_valid(authority + host_len + 1, n - host_len - 1)))
		return false;
	return host_is_loopback(authority, host_len);
}

static int token_request(struct oauth_session *s, const char *const *fields, int64_t now, bool refresh,
			 struct error *err)
{
	if (!s->token_endpoint || !s->client_id)
		return error_set(err, -EINVAL, "no token endpoint or client id for tenant %s", s->tenant ? s->tenant : "?");
	/* A password must not cross a network in clear text. */
	if (!oauth_endpoint_is_allowed(s->token_endpoint))
		return error_set(err, -EPROTONOSUPPORT, "the token endpoint must be an https URL (http only on loopback)");
	_cleanup_(secret_buf_freep) struct buf body;
	buf_init(&body, OAUTH_RESPONSE_MAX + 1);
	long status = 0;
	struct error herr = { 0 };
	int r = http_post_form(s->token_endpoint, fields, OAUTH_RESPONSE_MAX, OAUTH_HTTP_TIMEOUT_MS, &body, &status,
			       &herr);
	if (r == -EFBIG)
		return error_set(err, -EPROTO, "the IdP's token answer is larger than %d bytes", OAUTH_RESPONSE_MAX);
	if (r < 0)
		return error_set(err, r, "cannot reach the IdP: %s", herr.msg);
	if (status != 200)
		return error_answer(&body, status, refresh, err);
	return token_answer(&body, now, refresh, s, err);
}

static bool is_set(const char *s) { return s && s[0]; }

int oauth_password_grant(struct oauth_session *s, const char *password, int64_t now, struct error *err)
{
	if (!s || !is_set(s->username) || !password)
		return error_set(err, -EINVAL, "a username and a password are needed");
	const char *fields[16];
	size_t n = 0;
	fields[n++] = "grant_type";
	fields[n++] = "password";
	fields[n++] = "username";
	fields[n++] = s->username;
	fields[n++] = "password";
	fields[n++] = password;
	fields[n++] = "client_id";
	fields[n++] = s->client_id ? s->client_id : "";
	if (is_set(s->scope)) {
		fields[n++] = "scope";
		fields[n++] = s->scope;
	}
	if (is_set(s->audience)) {
		fields[n++] = "audience";
		fields[n++] = s->audience;
	}
	fields[n] = NULL;
	return token_request(s, fields, now, false, err);
}

int oauth_refresh(struct oauth_session *s, int64_t now, struct error *err)
{
	if (!s || !is_set(s->refresh_token))
		return error_set(err, -ENOKEY, "no refresh token");
	const char *fields[12];
	size_t n = 0;
	fields[n++] = "grant_type";
	fields[n++] = "refresh_token";
	fields[n++] = "refresh_token";
	fields[n++] = s->refresh_token;
	fields[n++] = "client_id";
	fields[n++] = s->client_id ? s->client_id : "";
	if (is_set(s->audience)) {
		fields[n++] = "audience";
		fields[n++] = s->audience;
	}
	fields[n] = NULL;
	return token_request(s, fields, now, true, err);
}

/* --- the token file --- */

static int parent_dir(const char *path, char **ret)
{
	const char *slash = strrchr(path, '/');
	char *d = slash == path ? strdup("/") : slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
	if (!d)
		return -ENOMEM;
	*ret = d;
	return 0;
}

/*
 * Refuses the directory of a token file when someone else could change
 * what is in it, as ssh does with ~/.ssh: whoever may create, rename or
 * delete entries there could swap the token file for one of their own
 * session, or create and hold its lock file so that no refresh ever runs.
 * The directory must be owned by the caller (or root, who can do all that
 * anyway) and not be writable by group or others.
 */
static int check_dir(const char *dir, struct error *err)
{
	struct stat st;
	if (stat(dir, &st) < 0) {
		int r = negative_errno();
		return error_set(err, r, "cannot stat %s, the token file's directory: %s", dir, strerror(-r));
	}
	if (!S_ISDIR(st.st_mode))
		return error_set(err, -ENOTDIR, "%s, the token file's directory, is not a directory", dir);
	if ((st.st_uid != geteuid() && st.st_uid != 0) || (st.st_mode & (S_IWGRP | S_IWOTH)))
		return error_set(err, -EPERM,
				 "unsafe directory %s for the token file (owner uid %u, mode %04o): it must belong to you "
				 "and be writable by you alone (chmod 700 it)",
				 dir, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
	return 0;
}

static int check_parent_dir(const char *path, struct error *err)
{
	_cleanup_free_ char *dir = NULL;
	if (parent_dir(path, &dir) < 0)
		return error_set(err, -ENOMEM, "out of memory");
	return check_dir(dir, err);
}

int oauth_session_load(const char *path, struct oauth_session *ret, struct error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		int r = negative_errno();
		if (r == -ENOENT)
			return error_set(err, r, "not logged in: run hpcc login (no token file %s)", path);
		return error_set(err, r, "cannot open token file %s: %s", path, strerror(-r));
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int r = negative_errno();
		return error_set(err, r, "cannot stat token file %s: %s", path, strerror(-r));
	}
	if (!S_ISREG(st.st_mode))
		return error_set(err, -EINVAL, "token file %s is not a regular file", path);
	int r = check_parent_dir(path, err);
	if (r < 0)
		return r;
	if (st.st_uid != geteuid())
		return error_set(err, -EPERM, "token file %s belongs to uid %u, not to you", path, (unsigned)st.st_uid);
	/* It holds a refresh token, good for hours or days: keep it private. */
	if (st.st_mode & (S_IRWXG | S_IRWXO))
		return error_set(err, -EPERM, "token file %s is accessible by group or others (mode %04o); chmod 600 it",
				 path, (unsigned)(st.st_mode & 07777));
	_cleanup_(secret_buf_freep) struct buf text;
	buf_init(&text, OAUTH_FILE_MAX + 1);
	/* Reserved once, so that growing it leaves no copies of tokens behind. */
	if (buf_reserve(&text, st.st_size > 0 && st.st_size <= OAUTH_FILE_MAX ? (size_t)st.st_size + 1 : 1) < 0)
		return error_set(err, -ENOMEM, "out of memory reading %s", path);
	r = fs_read_fd(fd, OAUTH_FILE_MAX, &text);
	if (r == -EFBIG)
		return error_set(err, -EFBIG, "token file %s is larger than %d bytes", path, OAUTH_FILE_MAX);
	if (r < 0)
		return error_set(err, r, "cannot read token file %s: %s", path, strerror(-r));
	_cleanup_(json_decrefp) json_t *root = json_loadb(text.data, text.len, JSON_REJECT_DUPLICATES, NULL);
	if (!root || !json_is_object(root))
		return error_set(err, -EBADMSG, "token file %s is not a JSON object", path);
	_cleanup_free_ char *what = NULL;
	if (asprintf(&what, "token file %s", path) < 0)
		return error_set(err, -ENOMEM, "out of memory");
	_cleanup_oauth_session_ struct oauth_session s = { 0 };
	struct {
		const char *key;
		char **out;
		size_t max;
		bool required, token;
	} fields[] = {
		{ "tenant", &s.tenant, OAUTH_TENANT_MAX, true, false },
		{ "issuer", &s.issuer, OAUTH_FIELD_MAX, false, false },
		{ "token_endpoint", &s.token_endpoint, OAUTH_FIELD_MAX, true, false },
		{ "client_id", &s.client_id, OAUTH_FIELD_MAX, true, false },
		{ "scope", &s.scope, OAUTH_FIELD_MAX, false, false },
		{ "audience", &s.audience, OAUTH_FIELD_MAX, false, false },
		{ "scheduler", &s.scheduler, OAUTH_FIELD_MAX, false, false },
		{ "username", &s.username, OAUTH_FIELD_MAX, false, false },
		{ "access_token", &s.access_token, OAUTH_TOKEN_MAX, true, true },
		{ "refresh_token", &s.refresh_token, OAUTH_TOKEN_MAX, false, true },
	};
	for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
		r = get_string(root, fields[i].key, fields[i].max, fields[i].required, fields[i].token, -EBADMSG, what,
			       fields[i].out, err);
		if (r < 0)
			return r;
	}
	if (!oauth_tenant_is_valid(s.tenant))
		return error_set(err, -EBADMSG, "%s: tenant is not a valid tenant name", what);
	json_t *exp = json_object_get(root, "expires_at");
	if (!json_is_integer(exp))
		return error_set(err, -EBADMSG, "%s has no expires_at", what);
	s.expires_at = json_integer_value(exp);
	*ret = s;
	s = (struct oauth_session){ 0 };
	return 0;
}

static int set_string(json_t *obj, const char *key, const char *value)
{
	return json_object_set_new(obj, key, value ? json_string(value) : json_null()) == 0 ? 0 : -ENOMEM;
}

int oauth_session_save(const char *path, const struct oauth_session *s, struct error *err)
{
	if (!s || !oauth_tenant_is_valid(s->tenant) || !s->access_token)
		return error_set(err, -EINVAL, "cannot save an incomplete session to %s", path);
	_cleanup_(json_decrefp) json_t *root = json_object();
	if (!root)
		return error_set(err, -ENOMEM, "out of memory");
	int r = 0;
	const struct {
		const char *key, *value;
	} fields[] = {
		{ "tenant", s->tenant },
		{ "issuer", s->issuer },
		{ "token_endpoint", s->token_endpoint },
		{ "client_id", s->client_id },
		{ "scope", s->scope },
		{ "audience", s->audience },
		{ "scheduler", s->scheduler },
		{ "access_token", s->access_token },
		{ "refresh_token", s->refresh_token },
	};
	for (size_t i = 0; i < ARRAY_SIZE(fields) && r == 0; i++)
		r = set_string(root, fields[i].key, fields[i].value);
	if (r == 0)
		r = json_object_set_new(root, "expires_at", json_integer(s->expires_at)) == 0 ? 0 : -ENOMEM;
	if (r == 0)
		r = set_string(root, "username", s->username);
	if (r < 0)
		return error_set(err, r, "out of memory");
	_cleanup_secret_ char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	if (!text)
		return error_set(err, -ENOMEM, "out of memory encoding the token file");
	_cleanup_free_ char *dir = NULL;
	if (parent_dir(path, &dir) < 0)
		return error_set(err, -ENOMEM, "out of memory");
	r = fs_mkdir_p(dir, 0700);
	if (r < 0)
		return error_set(err, r, "cannot create directory %s: %s", dir, strerror(-r));
	r = check_dir(dir, err);
	if (r < 0)
		return r;
	/* The newline is written separately so that the secret text is not copied. */
	size_t len = strlen(text);
	_cleanup_(secret_buf_freep) struct buf out;
	buf_init(&out, OAUTH_FILE_MAX + 2);
	if (buf_reserve(&out, len + 2) < 0)
		return error_set(err, -E2BIG, "the session does not fit in %d bytes", OAUTH_FILE_MAX);
	buf_append(&out, text, len);
	buf_append_char(&out, '\n');
	/* Synced, the file and then the directory that holds its new name: a
	 * refresh token that an IdP rotated exists only here. */
	r = fs_write_atomic(path, out.data, out.len, 0600, true);
	if (r < 0)
		return error_set(err, r, "cannot write token file %s: %s", path, strerror(-r));
	r = fs_fsync_dir(dir);
	if (r < 0)
		return error_set(err, r, "cannot sync directory %s after writing the token file: %s", dir, strerror(-r));
	return 0;
}

static char *lock_path(const char *path)
{
	char *p = NULL;
	return asprintf(&p, "%s.lock", path) < 0 ? NULL : p;
}

/* Takes an exclusive flock on fd, waiting at most OAUTH_LOCK_TIMEOUT_MS. */
static int lock_wait(int fd)
{
	for (int waited = 0;; waited += 20) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK && errno != EINTR)
			return negative_errno();
		if (waited >= OAUTH_LOCK_TIMEOUT_MS)
			return -ETIMEDOUT;
		nanosleep(&(struct timespec){ .tv_nsec = 20 * 1000 * 1000 }, NULL);
	}
}

int oauth_session_lock(const char *path, struct error *err)
{
	if (!path)
		return error_set(err, -EINVAL, "invalid arguments");
	_cleanup_free_ char *dir = NULL;
	_cleanup_free_ char *lock = lock_path(path);
	if (!lock || parent_dir(path, &dir) < 0)
		return error_set(err, -ENOMEM, "out of memory");
	int r = fs_mkdir_p(dir, 0700);
	if (r < 0)
		return error_set(err, r, "cannot create directory %s: %s", dir, strerror(-r));
	r = check_dir(dir, err);
	if (r < 0)
		return r;
	_cleanup_close_ int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (fd < 0) {
		r = negative_errno();
		return error_set(err, r, "cannot open lock file %s: %s", lock, strerror(-r));
	}
	/* The directory check keeps others out; this one also covers a lock
	 * file left from before the directory was made private. */
	struct stat st;
	if (fstat(fd, &st) < 0) {
		r = negative_errno();
		return error_set(err, r, "cannot stat lock file %s: %s", lock, strerror(-r));
	}
	if (!S_ISREG(st.st_mode) || st.st_uid != geteuid())
		return error_set(err, -EPERM, "lock file %s is not a regular file of yours (owner uid %u); remove it", lock,
				 (unsigned)st.st_uid);
	r = lock_wait(fd);
	if (r == -ETIMEDOUT)
		return error_set(err, r, "cannot lock %s: another process has held it for more than %d s", lock,
				 OAUTH_LOCK_TIMEOUT_MS / 1000);
	if (r < 0)
		return error_set(err, r, "cannot lock %s: %s", lock, strerror(-r));
	return TAKE_FD(fd);
}

int oauth_session_remove(const char *path, struct error *err)
{
	if (!path)
		return error_set(err, -EINVAL, "invalid arguments");
	struct stat st;
	if (lstat(path, &st) < 0 && errno == ENOENT)
		return 0;  /* nothing to do, and no directory or lock file to create */
	/* Under the lock, so that a refresh in flight finishes (and saves)
	 * first instead of writing the session back after we removed it. */
	_cleanup_close_ int lock = oauth_session_lock(path, err);
	if (lock < 0)
		return lock;
	if (unlink(path) < 0) {
		int r = negative_errno();
		if (r == -ENOENT)
			return 0;
		return error_set(err, r, "cannot remove token file %s: %s", path, strerror(-r));
	}
	/* The lock file stays: removing it while another process waits on it
	 * would let a third one lock a new file of the same name, and both
	 * would think they hold the lock. It is empty. */
	_cleanup_free_ char *dir = NULL;
	if (parent_dir(path, &dir) == 0)
		(void)fs_fsync_dir(dir);
	return 1;
}

int oauth_session_path(const struct config *cfg, const char *tenant, char **ret_path, struct error *err)
{
	const char *file = config_get(cfg, CONFIG_REMOTE_AUTH_FILE);
	char *p = NULL;
	if (file && file[0]) {
		if (file[0] == '/') {
			p = path_normalize(file);
		} else {
			_cleanup_free_ char *cwd = getcwd(NULL, 0);
			p = cwd ? path_join(cwd, file) : NULL;
		}
	} else {
		if (!oauth_tenant_is_valid(tenant))
			return error_set(err, -EINVAL, "tenant name '%.64s' is not [A-Za-z0-9._-]{1,64}", tenant ? tenant : "");
		_cleanup_free_ char *cache = engine_cache_dir(cfg);
		if (cache && asprintf(&p, "%s/auth/%s.json", cache, tenant) < 0)
			p = NULL;
	}
	if (!p)
		return error_set(err, -ENOMEM, "out of memory");
	*ret_path = p;
	return 0;
}

/* --- access tokens for the daemon --- */

static pthread_mutex_t access_lock = PTHREAD_MUTEX_INITIALIZER;

static void mutex_unlockp(pthread_mutex_t **m)
{
	if (*m)
		pthread_mutex_unlock(*m);
}

static int return_token(const struct oauth_session *s, char **ret_token, struct error *err)
{
	char *t = strdup(s->access_token);
	if (!t)
		return error_set(err, -ENOMEM, "out of memory");
	*ret_token = t;
	return 0;
}

static bool same_text(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/*
 * After a refresh, before saving it: is the token file still the session
 * that was refreshed? hpcc login and logout take the lock, so they cannot
 * have changed it meanwhile; an hpcc that does not (an older version), or
 * a person, can. 1: unchanged (still holding the refresh token just spent),
 * save. 0: changed, but to a session of the same user and tenant: use the
 * new access token this once and leave the file alone. An error, the
 * file untouched, otherwise: -ENOENT when the file is gone or holds
 * another user's session, whose access token is not ours to hand out.
 */
static int check_unchanged(const char *path, const struct oauth_session *s, const char *spent, struct error *err)
{
	_cleanup_oauth_session_ struct oauth_session now_in_file = { 0 };
	struct error lerr = { 0 };
	int r = oauth_session_load(path, &now_in_file, &lerr);
	if (r == -ENOENT)
		return error_set(err, r, "not logged in: run hpcc login (logged out during a token refresh)");
	if (r < 0)
		return error_set(err, r, "%s", lerr.msg);
	if (!same_text(now_in_file.tenant, s->tenant) || !same_text(now_in_file.username, s->username))
		return error_set(err, -ENOENT, "not logged in as %s any more: run hpcc login (the session changed during a "
					       "token refresh)",
				 s->username ? s->username : "before");
	return same_text(now_in_file.refresh_token, spent) && same_text(now_in_file.token_endpoint, s->token_endpoint) &&
	       same_text(now_in_file.client_id, s->client_id);
}

int oauth_access_token_at(const char *path, int64_t min_valid_s, int64_t now, char **ret_token,
			  struct error *err)
{
	if (!path || !ret_token || min_valid_s < 0)
		return error_set(err, -EINVAL, "invalid arguments");
	pthread_mutex_lock(&access_lock);
	_cleanup_(mutex_unlockp) pthread_mutex_t *locked = &access_lock;

	_cleanup_oauth_session_ struct oauth_session s = { 0 };
	int r = oauth_session_load(path, &s, err);
	if (r < 0)
		return r;
	if (s.expires_at - now >= min_valid_s)
		return return_token(&s, ret_token, err);

	/* Another process may be refreshing: wait for it, then look again. */
	_cleanup_close_ int lock = oauth_session_lock(path, err);
	if (lock < 0)
		return lock;
	oauth_session_clear(&s);
	r = oauth_session_load(path, &s, err);
	if (r < 0)
		return r;
	if (s.expires_at - now >= min_valid_s)
		return return_token(&s, ret_token, err);
	if (!is_set(s.refresh_token))
		return error_set(err, -EKEYEXPIRED, "session expired: run hpcc login (the IdP gave no refresh token)");

	bool still_valid = s.expires_at > now;
	_cleanup_secret_ char *spent = strdup(s.refresh_token);
	if (!spent)
		return error_set(err, -ENOMEM, "out of memory");
	struct error rerr = { 0 };
	r = oauth_refresh(&s, now, &rerr);
	if (r == -EKEYEXPIRED)
		return error_set(err, r, "session expired: run hpcc login (%s)", rerr.msg);
	if (r < 0) {
		/* The IdP is unreachable for now; a short token beats none. */
		if (still_valid)  /* oauth_refresh changed nothing in s */
			return return_token(&s, ret_token, err);
		return error_set(err, r, "cannot refresh the access token: %s", rerr.msg);
	}
	r = check_unchanged(path, &s, spent, err);
	if (r < 0)
		return r;
	if (r == 0)
		return return_token(&s, ret_token, err);
	struct error serr = { 0 };
	r = oauth_session_save(path, &s, &serr);
	if (r < 0)
		/* The IdP may have rotated the refresh token, and the file keeps the
		 * spent one: the session ends when this access token expires. Still
		 * better than ending it now by returning no token. */
		log_warn("oauth: the refreshed session is not saved, so it ends when its access token expires (%s)",
			 serr.msg);
	return return_token(&s, ret_token, err);
}

int oauth_access_token(const char *path, int64_t min_valid_s, char **ret_token, struct error *err)
{
	return oauth_access_token_at(path, min_valid_s, (int64_t)time(NULL), ret_token, err);
}
