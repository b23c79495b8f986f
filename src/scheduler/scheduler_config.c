/*
 * scheduler.ini parsing (see scheduler_config.h and docs/scheduler.md): a
 * fixed set of keys, so that a misspelt key is an error, and every value
 * checked here so that the service never meets a malformed tenant.
 */
#include "scheduler_config.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "digest.h"
#include "fs.h"
#include "oauth.h"
#include "token.h"

#define SCHEDULER_CONFIG_MAX (256 * 1024)
#define SCHEDULER_LINE_MAX 199  /* inih reads lines into 200 bytes */

struct parse_state {
	struct scheduler_config *c;
	char *base;  /* directory of the file */
	struct error *err;
	struct strv seen;  /* "section.key" of single-valued keys already set */
};

/* A key given twice would silently take its last value (a pasted line can
 * change an issuer that way): every key but images is single-valued. */
static int once(struct parse_state *st, const char *name)
{
	for (size_t i = 0; i < st->seen.n; i++)
		if (strcmp(st->seen.v[i], name) == 0)
			return error_set(st->err, -EINVAL, "%s is set twice", name);
	return strv_push(&st->seen, name) < 0 ? -ENOMEM : 0;
}

/* http(s)://host... with printable bytes only; plain http only when allowed. */
static bool url_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > SCHEDULER_URL_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
			return false;
	return strncmp(s, "https://", 8) == 0 || strncmp(s, "http://", 7) == 0;
}

static int set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = strdup(v);
	return *dst ? 0 : -ENOMEM;
}

static int set_path(struct parse_state *st, char **dst, const char *v)
{
	free(*dst);
	*dst = v[0] == '/' ? strdup(v) : path_join(st->base, v);
	return *dst ? 0 : -ENOMEM;
}

static int set_uint(struct parse_state *st, const char *name, const char *v, uint64_t min, uint64_t max,
		    unsigned *ret)
{
	uint64_t x;
	if (config_parse_size(v, &x) < 0 || x < min || x > max)
		return error_set(st->err, -EINVAL, "%s: '%s' is not a number from %llu to %llu", name, v,
				 (unsigned long long)min, (unsigned long long)max);
	*ret = (unsigned)x;
	return 0;
}

static int set_bool(struct parse_state *st, const char *name, const char *v, bool *ret)
{
	if (config_parse_bool(v, ret) < 0)
		return error_set(st->err, -EINVAL, "%s: '%s' is not a boolean", name, v);
	return 0;
}

static struct scheduler_tenant *tenant_get(struct parse_state *st, const char *id)
{
	struct scheduler_config *c = st->c;
	for (size_t i = 0; i < c->n_tenants; i++)
		if (strcmp(c->tenants[i].id, id) == 0)
			return &c->tenants[i];
	if (c->n_tenants >= SCHEDULER_MAX_TENANTS) {
		error_set(st->err, -E2BIG, "more than %d tenants", SCHEDULER_MAX_TENANTS);
		return NULL;
	}
	struct scheduler_tenant *v = realloc(c->tenants, (c->n_tenants + 1) * sizeof(*v));
	if (!v)
		return NULL;
	c->tenants = v;
	struct scheduler_tenant *t = &v[c->n_tenants];
	*t = (struct scheduler_tenant){ .sticky = true };
	if (!(t->id = strdup(id)))
		return NULL;
	c->n_tenants++;
	return t;
}

static int tenant_key(struct parse_state *st, const char *id, const char *key, const char *value)
{
	char name[160];
	snprintf(name, sizeof(name), "tenant %s.%s", id, key);
	if (!token_name_valid(id))
		return error_set(st->err, -EINVAL, "[tenant %.64s]: a tenant id is 1 to 64 of [A-Za-z0-9._-]", id);
	struct scheduler_tenant *t = tenant_get(st, id);
	if (!t)
		return st->err->code ? st->err->code : -ENOMEM;
	int r;
	if (strcmp(key, "images") != 0 && (r = once(st, name)) < 0)
		return r;
	char **url = strcmp(key, "issuer") == 0 ? &t->issuer : strcmp(key, "jwks_url") == 0 ? &t->jwks_url :
		     strcmp(key, "token_url") == 0 ? &t->token_url : NULL;
	if (url) {
		if (!url_valid(value))
			return error_set(st->err, -EINVAL, "%s: '%.80s' is not an http(s) URL", name, value);
		return set_str(url, value);
	}
	if (strcmp(key, "audience") == 0 || strcmp(key, "client_id") == 0 || strcmp(key, "scope") == 0) {
		size_t n = strlen(value);
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)value[i] < ' ' || (unsigned char)value[i] >= 0x7f)
				return error_set(st->err, -EINVAL, "%s: not printable ASCII", name);
		if (n == 0 || n > 255)
			return error_set(st->err, -EINVAL, "%s: 1 to 255 characters", name);
		return set_str(key[0] == 'a' ? &t->audience : key[0] == 'c' ? &t->client_id : &t->scope, value);
	}
	if (strcmp(key, "images") == 0) {
		/* Space- or comma-separated; the key may repeat (inih's lines are short). */
		_cleanup_free_ char *copy = strdup(value);
		if (!copy)
			return -ENOMEM;
		char *save = NULL;
		for (char *tok = strtok_r(copy, " ,\t", &save); tok; tok = strtok_r(NULL, " ,\t", &save)) {
			if (!token_image_digest_valid(tok))
				return error_set(st->err, -EINVAL, "%s: '%.80s' is not sha256:<64 lowercase hex>", name,
						 tok);
			if (!scheduler_tenant_allows(t, tok) && strv_push(&t->images, tok) < 0)
				return -ENOMEM;
		}
		return 0;
	}
	if (strcmp(key, "sticky") == 0)
		return set_bool(st, name, value, &t->sticky);
	if (strcmp(key, "cache_mode") == 0) {
		if (strcmp(value, "paranoid") != 0 && strcmp(value, "trusted") != 0)
			return error_set(st->err, -EINVAL, "%s: '%.32s' is not paranoid or trusted", name, value);
		return set_str(&t->cache_mode, value);
	}
	return error_set(st->err, -EINVAL, "unknown setting %s", name);
}

static int handler(void *user, const char *section, const char *key, const char *value)
{
	struct parse_state *st = user;
	struct scheduler_config *c = st->c;
	char name[160];
	snprintf(name, sizeof(name), "%s.%s", section, key);
	int r;
	if (strncmp(section, "tenant ", 7) == 0)
		r = tenant_key(st, section + 7, key, value);
	else if (strcmp(section, "scheduler") == 0 && (r = once(st, name)) < 0)
		;
	else if (strcmp(name, "scheduler.listen") == 0)
		r = set_str(&c->listen, value);
	else if (strcmp(name, "scheduler.cert") == 0)
		r = set_path(st, &c->cert_file, value);
	else if (strcmp(name, "scheduler.key") == 0)
		r = set_path(st, &c->key_file, value);
	else if (strcmp(name, "scheduler.signing_key") == 0)
		r = set_path(st, &c->signing_key_file, value);
	else if (strcmp(name, "scheduler.worker_token_file") == 0)
		r = set_path(st, &c->worker_token_file, value);
	else if (strcmp(name, "scheduler.heartbeat_interval_ms") == 0)
		r = set_uint(st, name, value, 100, 600000, &c->heartbeat_interval_ms);
	else if (strcmp(name, "scheduler.token_ttl") == 0)
		r = set_uint(st, name, value, 10, TOKEN_MAX_TTL, &c->token_ttl);
	else if (strcmp(name, "scheduler.clock_skew") == 0)
		r = set_uint(st, name, value, 0, 600, &c->clock_skew);
	else if (strcmp(name, "scheduler.jwks_max_age") == 0)
		r = set_uint(st, name, value, 10, 86400, &c->jwks_max_age);
	else if (strcmp(name, "scheduler.jwks_min_interval") == 0)
		r = set_uint(st, name, value, 1, 3600, &c->jwks_min_interval);
	else if (strcmp(name, "scheduler.max_calls") == 0)
		r = set_uint(st, name, value, 1, 4096, &c->max_calls);
	else if (strcmp(name, "scheduler.allow_insecure_idp") == 0)
		r = set_bool(st, name, value, &c->allow_insecure_idp);
	else if (strncmp(section, "tenant", 6) == 0)
		r = error_set(st->err, -EINVAL, "[%.64s]: tenant sections are written [tenant ID]", section);
	else
		r = error_set(st->err, -EINVAL, "unknown setting %s", name);
	if (r == -ENOMEM)
		error_set(st->err, r, "out of memory");
	return r == 0;
}

/* Every tenant complete and consistent; http:// only where allowed. */
static int check_tenants(const struct scheduler_config *c, struct error *err)
{
	for (size_t i = 0; i < c->n_tenants; i++) {
		const struct scheduler_tenant *t = &c->tenants[i];
		const char *missing = !t->issuer ? "issuer" : !t->audience ? "audience" : !t->client_id ? "client_id" :
				      !t->images.n ? "images" : NULL;
		if (missing)
			return error_set(err, -EINVAL, "%s: [tenant %s] %s is required", c->path, t->id, missing);
		const char *urls[] = { t->issuer, t->jwks_url, t->token_url };
		for (size_t k = 0; k < 3; k++) {
			if (!urls[k] || strncmp(urls[k], "http://", 7) != 0)
				continue;
			if (!c->allow_insecure_idp)
				return error_set(err, -EINVAL,
						 "%s: [tenant %s] %.80s is plain http (allow_insecure_idp = true for tests only)",
						 c->path, t->id, urls[k]);
			/* Keys fetched in clear from anywhere else could be swapped on the way. */
			if (!oauth_endpoint_is_allowed(urls[k]))
				return error_set(err, -EINVAL, "%s: [tenant %s] %.80s: plain http only to a loopback host",
						 c->path, t->id, urls[k]);
		}
		/* Nothing in a token names our tenant: two tenants that trust the same
		 * issuer for the same audience would accept each other's users. */
		for (size_t j = 0; j < i; j++)
			if (strcmp(c->tenants[j].issuer, t->issuer) == 0 && strcmp(c->tenants[j].audience, t->audience) == 0)
				return error_set(err, -EINVAL,
						 "%s: [tenant %s] and [tenant %s] have the same issuer and audience: each "
						 "tenant needs its own audience (or IdP), or their users could use both",
						 c->path, c->tenants[j].id, t->id);
	}
	return 0;
}

int scheduler_config_load(const char *path, struct scheduler_config *c, struct error *err)
{
	*c = (struct scheduler_config){
		.heartbeat_interval_ms = 5000,
		.token_ttl = TOKEN_MAX_TTL,
		.clock_skew = 60,
		.jwks_max_age = 600,
		.jwks_min_interval = 10,
		.max_calls = 256,
	};
	_cleanup_buf_ struct buf text;
	buf_init(&text, SCHEDULER_CONFIG_MAX + 1);
	int r = fs_read_file(path, SCHEDULER_CONFIG_MAX, &text);
	if (r < 0)
		return error_set(err, r, "%s: %s", path, r == -EFBIG ? "file too large" : strerror(-r));
	_cleanup_free_ char *abs = path[0] == '/' ? strdup(path) : NULL;
	if (!abs) {
		_cleanup_free_ char *cwd = getcwd(NULL, 0);
		abs = cwd ? path_join(cwd, path) : NULL;
	}
	char *slash = abs ? strrchr(abs, '/') : NULL;
	if (!slash)
		return error_set(err, -ENOMEM, "out of memory");
	if (!(c->path = strdup(abs)))
		return error_set(err, -ENOMEM, "out of memory");
	int lineno = 1;
	for (const char *p = text.data; *p; lineno++) {
		size_t n = strcspn(p, "\n");
		size_t lead = strspn(p, " \t");
		/* inih joins an indented line to the value above it: "issuer = x" then an
		 * indented "https://evil" would silently become the issuer. */
		bool indented = lead > 0 && lead < n && p[lead] != ';' && p[lead] != '#' && p[lead] != '\r';
		if (n >= SCHEDULER_LINE_MAX || indented) {
			error_set(err, -EINVAL, "%s line %d: %s", path, lineno,
				  indented ? "indented (write every key at the start of its line)" :
					     "longer than 198 bytes (repeat the key instead)");
			scheduler_config_free(c);
			return -EINVAL;
		}
		p += n + (p[n] == '\n');
	}
	struct parse_state st = { .c = c, .err = err, .base = strndup(abs, slash == abs ? 1 : (size_t)(slash - abs)) };
	if (!st.base) {
		scheduler_config_free(c);
		return error_set(err, -ENOMEM, "out of memory");
	}
	int line = ini_parse_string(text.data, handler, &st);
	free(st.base);
	strv_free(&st.seen);
	if (line != 0) {
		if (!err->code)
			error_set(err, -EINVAL, "%s: syntax error on line %d", path, line);
		else {
			struct error e2 = { 0 };
			error_set(&e2, err->code, "%s line %d: %s", path, line, err->msg);
			*err = e2;
		}
		scheduler_config_free(c);
		return -EINVAL;
	}
	const char *missing = !c->listen ? "listen" : !c->cert_file ? "cert" : !c->key_file ? "key" :
			      !c->signing_key_file ? "signing_key" : !c->worker_token_file ? "worker_token_file" : NULL;
	if (missing) {
		error_set(err, -EINVAL, "%s: [scheduler] %s is required", path, missing);
		scheduler_config_free(c);
		return -EINVAL;
	}
	if (c->n_tenants == 0) {
		error_set(err, -EINVAL, "%s: no [tenant ID] section", path);
		scheduler_config_free(c);
		return -EINVAL;
	}
	if ((r = check_tenants(c, err)) < 0) {
		scheduler_config_free(c);
		return r;
	}
	for (size_t i = 0; i < c->n_tenants; i++)
		if (!c->tenants[i].cache_mode && set_str(&c->tenants[i].cache_mode, "paranoid") < 0) {
			scheduler_config_free(c);
			return error_set(err, -ENOMEM, "out of memory");
		}
	return 0;
}

void scheduler_config_free(struct scheduler_config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_tenants; i++) {
		struct scheduler_tenant *t = &c->tenants[i];
		free(t->id);
		free(t->issuer);
		free(t->jwks_url);
		free(t->token_url);
		free(t->audience);
		free(t->client_id);
		free(t->scope);
		strv_free(&t->images);
		free(t->cache_mode);
	}
	free(c->tenants);
	free(c->path);
	free(c->listen);
	free(c->cert_file);
	free(c->key_file);
	free(c->signing_key_file);
	free(c->worker_token_file);
	*c = (struct scheduler_config){ 0 };
}

const struct scheduler_tenant *scheduler_config_tenant(const struct scheduler_config *c, const char *id)
{
	for (size_t i = 0; i < c->n_tenants; i++)
		if (strcmp(c->tenants[i].id, id) == 0)
			return &c->tenants[i];
	return NULL;
}

bool scheduler_tenant_allows(const struct scheduler_tenant *t, const char *image)
{
	for (size_t i = 0; i < t->images.n; i++)
		if (strcmp(t->images.v[i], image) == 0)
			return true;
	return false;
}
