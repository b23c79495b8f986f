/*
 * Per-tenant JWKS cache (see jwks_cache.h). Readers take a reference to the
 * current key set under a short mutex and verify without it; a fetch runs
 * without the lock (one per tenant at a time) and swaps the set in. Each key
 * set carries the tokens verified with it (SHA-256 of the token -> claims):
 * a ring in insertion order, so the oldest goes first when it is full, with
 * an open-addressing index (linear probing) on the digest. Since it belongs
 * to the key set, a refetch starts with an empty one.
 */
#include "jwks_cache.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "digest.h"
#include "http.h"
#include "log.h"

/* One verified token: what jwt_verify returned for it but iss, which is the tenant's issuer. */
struct verified {
	uint8_t digest[DIGEST_LEN];  /* SHA-256 of the token */
	int64_t exp, nbf, iat;
	char alg[sizeof(((struct jwt_claims *)0)->alg)];
	char kid[sizeof(((struct jwt_claims *)0)->kid)];
	char sub[sizeof(((struct jwt_claims *)0)->sub)];
};

struct verified_cache {
	pthread_mutex_t lock;  /* guards everything below */
	struct verified *v;    /* ring of cap entries: n of them from head on, oldest first */
	uint32_t *index;       /* 2 * cap buckets: 0 empty, else ring slot + 1 */
	size_t cap, head, n;
};

struct keyset {
	atomic_int refs;
	struct jwks *jwks;
	struct verified_cache verified;
};

struct tenant_keys {
	pthread_mutex_t lock;  /* guards everything below */
	struct keyset *current;
	int64_t fetched_at;    /* last successful fetch (monotonic ms), 0: never */
	int64_t attempted_at;  /* last attempt, successful or not (monotonic ms) */
	bool fetching;
	char *jwks_url;        /* configured or discovered */
	char *token_url;
};

struct jwks_cache {
	const struct scheduler_config *cfg;
	struct tenant_keys *t;
	atomic_uint_fast64_t fetches, failures;
	atomic_uint_fast64_t token_hits, token_verifies;
	atomic_bool stopping;     /* the prefetch stops between tenants */
	int64_t (*clock)(void);   /* fetch times: monotonic_ms, or a test's clock in seconds */
};

static void keyset_unref(struct keyset *k)
{
	if (k && atomic_fetch_sub(&k->refs, 1) == 1) {
		jwks_free(k->jwks);
		free(k->verified.v);
		free(k->verified.index);
		pthread_mutex_destroy(&k->verified.lock);
		free(k);
	}
}

/* ---- tokens verified with one key set ---- */

static size_t bucket_of(const struct verified_cache *vc, const uint8_t digest[DIGEST_LEN])
{
	uint64_t h;
	memcpy(&h, digest, sizeof(h));  /* a SHA-256: any 8 bytes are uniform */
	return (size_t)h & (2 * vc->cap - 1);
}

/* The bucket that holds ring slot i's entry. */
static size_t bucket_find(const struct verified_cache *vc, size_t slot)
{
	size_t mask = 2 * vc->cap - 1, b = bucket_of(vc, vc->v[slot].digest);
	while (vc->index[b] != slot + 1)
		b = (b + 1) & mask;
	return b;
}

/* Empties bucket b and moves later entries of its probe run back, so no lookup stops short (no tombstones). */
static void bucket_clear(struct verified_cache *vc, size_t b)
{
	size_t mask = 2 * vc->cap - 1;
	for (size_t j = b;;) {
		vc->index[b] = 0;
		for (;;) {
			j = (j + 1) & mask;
			if (!vc->index[j])
				return;
			size_t home = bucket_of(vc, vc->v[vc->index[j] - 1].digest);
			/* The entry at j may move to b unless its home lies cyclically in (b, j]. */
			bool stays = b <= j ? (home > b && home <= j) : (home > b || home <= j);
			if (!stays) {
				vc->index[b] = vc->index[j];
				b = j;
				break;
			}
		}
	}
}

static void bucket_put(struct verified_cache *vc, size_t slot)
{
	size_t mask = 2 * vc->cap - 1, b = bucket_of(vc, vc->v[slot].digest);
	while (vc->index[b])
		b = (b + 1) & mask;
	vc->index[b] = (uint32_t)slot + 1;
}

/* Called with vc->lock held. */
static const struct verified *verified_find(const struct verified_cache *vc, const uint8_t digest[DIGEST_LEN])
{
	if (!vc->cap)
		return NULL;
	size_t mask = 2 * vc->cap - 1;
	for (size_t b = bucket_of(vc, digest); vc->index[b]; b = (b + 1) & mask) {
		const struct verified *e = &vc->v[vc->index[b] - 1];
		if (memcmp(e->digest, digest, DIGEST_LEN) == 0)
			return e;
	}
	return NULL;
}

/* Doubles the ring (up to JWKS_VERIFIED_MAX), oldest entry first again, and rebuilds the index. */
static int verified_grow(struct verified_cache *vc)
{
	size_t cap = vc->cap ? vc->cap * 2 : JWKS_VERIFIED_MIN;
	struct verified *v = malloc(cap * sizeof(*v));
	uint32_t *index = calloc(2 * cap, sizeof(*index));
	if (!v || !index) {
		free(v);
		free(index);
		return -ENOMEM;
	}
	for (size_t i = 0; i < vc->n; i++)
		v[i] = vc->v[(vc->head + i) % vc->cap];
	free(vc->v);
	free(vc->index);
	vc->v = v;
	vc->index = index;
	vc->cap = cap;
	vc->head = 0;
	for (size_t i = 0; i < vc->n; i++)
		bucket_put(vc, i);
	return 0;
}

/* Remembers a token that jwt_verify just accepted; when full, the oldest one makes room. */
static void verified_add(struct verified_cache *vc, const uint8_t digest[DIGEST_LEN], const struct jwt_claims *jc)
{
	pthread_mutex_lock(&vc->lock);
	size_t slot = SIZE_MAX;
	if (verified_find(vc, digest)) {
		/* Another thread verified it at the same time. */
	} else if (vc->n < vc->cap || (vc->cap < JWKS_VERIFIED_MAX && verified_grow(vc) == 0)) {
		slot = (vc->head + vc->n++) % vc->cap;
	} else if (vc->cap) {
		/* Full: the new entry takes the oldest one's slot, which becomes the ring's tail. */
		slot = vc->head;
		bucket_clear(vc, bucket_find(vc, slot));
		vc->head = (vc->head + 1) % vc->cap;
	}
	if (slot != SIZE_MAX) {
		struct verified *e = &vc->v[slot];
		memcpy(e->digest, digest, DIGEST_LEN);
		e->exp = jc->exp, e->nbf = jc->nbf, e->iat = jc->iat;
		memcpy(e->alg, jc->alg, sizeof(e->alg));
		memcpy(e->kid, jc->kid, sizeof(e->kid));
		memcpy(e->sub, jc->sub, sizeof(e->sub));
		bucket_put(vc, slot);
	}
	pthread_mutex_unlock(&vc->lock);
}

int jwks_cache_new(const struct scheduler_config *cfg, struct jwks_cache **ret)
{
	struct jwks_cache *c = calloc(1, sizeof(*c));
	if (!c || !(c->t = calloc(cfg->n_tenants ? cfg->n_tenants : 1, sizeof(*c->t)))) {
		free(c);
		return -ENOMEM;
	}
	c->cfg = cfg;
	for (size_t i = 0; i < cfg->n_tenants; i++) {
		pthread_mutex_init(&c->t[i].lock, NULL);
		const struct scheduler_tenant *t = &cfg->tenants[i];
		if ((t->jwks_url && !(c->t[i].jwks_url = strdup(t->jwks_url))) ||
		    (t->token_url && !(c->t[i].token_url = strdup(t->token_url)))) {
			jwks_cache_free(c);
			return -ENOMEM;
		}
	}
	*ret = c;
	return 0;
}

void jwks_cache_free(struct jwks_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->cfg->n_tenants; i++) {
		keyset_unref(c->t[i].current);
		free(c->t[i].jwks_url);
		free(c->t[i].token_url);
		pthread_mutex_destroy(&c->t[i].lock);
	}
	free(c->t);
	free(c);
}

static bool url_allowed(const struct jwks_cache *c, const char *url)
{
	if (strlen(url) > SCHEDULER_URL_MAX)
		return false;
	for (const char *p = url; *p; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
			return false;
	return strncmp(url, "https://", 8) == 0 || (c->cfg->allow_insecure_idp && strncmp(url, "http://", 7) == 0);
}

/* The discovery document: its issuer must be ours; jwks_uri and token_endpoint are taken from it. */
static int discover(struct jwks_cache *c, size_t i, char **ret_jwks, char **ret_token, struct error *err)
{
	const struct scheduler_tenant *t = &c->cfg->tenants[i];
	char url[SCHEDULER_URL_MAX + 64];
	size_t n = strlen(t->issuer);
	snprintf(url, sizeof(url), "%.*s/.well-known/openid-configuration", (int)(n && t->issuer[n - 1] == '/' ? n - 1 : n),
		 t->issuer);
	_cleanup_buf_ struct buf body;
	buf_init(&body, DISCOVERY_MAX_SIZE + 1);
	long status = 0;
	int r = http_get(url, DISCOVERY_MAX_SIZE, JWKS_FETCH_TIMEOUT_MS, &body, &status, err);
	if (r < 0)
		return r;
	if (status != 200)
		return error_set(err, -EAGAIN, "tenant %s: discovery %s answered HTTP %ld", t->id, url, status);
	json_error_t je;
	json_t *doc = json_loadb(body.data, body.len, JSON_REJECT_DUPLICATES, &je);
	const char *iss = doc ? json_string_value(json_object_get(doc, "issuer")) : NULL;
	const char *jwks = doc ? json_string_value(json_object_get(doc, "jwks_uri")) : NULL;
	const char *tok = doc ? json_string_value(json_object_get(doc, "token_endpoint")) : NULL;
	if (!iss || !jwks)
		r = error_set(err, -EBADMSG, "tenant %s: discovery document lacks issuer or jwks_uri", t->id);
	else if (strcmp(iss, t->issuer) != 0)
		r = error_set(err, -EACCES, "tenant %s: discovery names issuer '%.80s', configured '%.80s'", t->id, iss,
			      t->issuer);
	else if (!url_allowed(c, jwks) || (tok && !url_allowed(c, tok)))
		r = error_set(err, -EACCES, "tenant %s: discovery gives a URL that is not allowed", t->id);
	else if (!(*ret_jwks = strdup(jwks)) || (tok && !(*ret_token = strdup(tok))))
		r = error_set(err, -ENOMEM, "out of memory");
	json_decref(doc);
	return r;
}

/*
 * One fetch for tenant i, called with the tenant's lock held; drops it while
 * the network is used. Only one fetch per tenant runs at a time; a caller
 * that finds one running returns -EAGAIN at once.
 */
static int fetch_locked(struct jwks_cache *c, size_t i, int64_t now, struct error *err)
{
	struct tenant_keys *tk = &c->t[i];
	const struct scheduler_tenant *t = &c->cfg->tenants[i];
	if (tk->fetching)
		return error_set(err, -EAGAIN, "tenant %s: keys are being fetched", t->id);
	tk->fetching = true;
	tk->attempted_at = now;
	_cleanup_free_ char *jwks_url = tk->jwks_url ? strdup(tk->jwks_url) : NULL;
	bool need_discovery = !tk->jwks_url || (!t->token_url && !tk->token_url);
	pthread_mutex_unlock(&tk->lock);

	int r = 0;
	_cleanup_free_ char *found_jwks = NULL, *found_token = NULL;
	if (need_discovery) {
		/* Discovery gives the JWKS URL when none is configured, and the token endpoint
		 * for GetTenantIdP when token_url is not set (even with jwks_url set). */
		struct error derr = { 0 };
		int dr = discover(c, i, &found_jwks, &found_token, &derr);
		if (dr < 0 && !jwks_url)
			r = error_set(err, dr, "%s", derr.msg);
		else if (dr < 0)
			log_warn("scheduler: %s (the token endpoint stays unknown)", derr.msg);
		else if (!jwks_url && !(jwks_url = strdup(found_jwks)))
			r = error_set(err, -ENOMEM, "out of memory");
	}
	struct jwks *keys = NULL;
	if (r == 0 && !jwks_url)
		r = error_set(err, -ENOMEM, "out of memory");
	if (r == 0) {
		_cleanup_buf_ struct buf body;
		buf_init(&body, JWKS_MAX_SIZE + 1);
		long status = 0;
		r = http_get(jwks_url, JWKS_MAX_SIZE, JWKS_FETCH_TIMEOUT_MS, &body, &status, err);
		if (r == 0 && status != 200)
			r = error_set(err, -EAGAIN, "tenant %s: JWKS %.200s answered HTTP %ld", t->id, jwks_url, status);
		if (r == 0)
			r = jwks_parse(body.data, body.len, &keys, err);
	}
	struct keyset *ks = NULL;
	if (r == 0 && !(ks = calloc(1, sizeof(*ks)))) {
		jwks_free(keys);
		r = error_set(err, -ENOMEM, "out of memory");
	}

	pthread_mutex_lock(&tk->lock);
	tk->fetching = false;
	if (found_jwks && !tk->jwks_url)
		tk->jwks_url = TAKE_PTR(found_jwks);
	if (found_token && !tk->token_url)
		tk->token_url = TAKE_PTR(found_token);
	if (r < 0) {
		atomic_fetch_add(&c->failures, 1);
		return r;
	}
	atomic_init(&ks->refs, 1);
	ks->jwks = keys;
	pthread_mutex_init(&ks->verified.lock, NULL);
	keyset_unref(tk->current);
	tk->current = ks;
	tk->fetched_at = now;
	atomic_fetch_add(&c->fetches, 1);
	log_info("scheduler: tenant %s: %zu signing keys fetched", t->id, jwks_count(keys));
	return 0;
}

/* Milliseconds on a clock that never steps back (never 0): fetch times are not
 * fooled by a wall clock set back, which would stop refetches for as long. */
static int64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 1;
}

/* A reference to the tenant's current keys, fetching first when there are none or they are old. */
static struct keyset *keys_get(struct jwks_cache *c, size_t i, bool force, struct error *err)
{
	struct tenant_keys *tk = &c->t[i];
	/* Milliseconds: whole seconds would let two fetches come barely over one second apart. */
	int64_t now = c->clock ? c->clock() * 1000 : monotonic_ms();
	pthread_mutex_lock(&tk->lock);
	bool old = !tk->current || now - tk->fetched_at >= (int64_t)c->cfg->jwks_max_age * 1000;
	/* A failed or forced fetch is repeated only after jwks_min_interval. */
	bool may = tk->attempted_at == 0 || now - tk->attempted_at >= (int64_t)c->cfg->jwks_min_interval * 1000;
	struct error fetch_err = { 0 };
	if ((old || force) && may && !tk->fetching && fetch_locked(c, i, now, &fetch_err) < 0) {
		log_warn("scheduler: %s", fetch_err.msg);
		if (!tk->current)
			error_set(err, -EAGAIN, "%s", fetch_err.msg);
	}
	struct keyset *ks = tk->current;
	if (ks)
		atomic_fetch_add(&ks->refs, 1);
	else if (!err->code)
		error_set(err, -EAGAIN, "tenant %s: no signing keys yet (IdP unreachable?)", c->cfg->tenants[i].id);
	pthread_mutex_unlock(&tk->lock);
	return ks;
}

void jwks_cache_prefetch(struct jwks_cache *c)
{
	for (size_t i = 0; i < c->cfg->n_tenants; i++) {
		struct error err = { 0 };
		if (atomic_load(&c->stopping))
			break;
		keyset_unref(keys_get(c, i, false, &err));
	}
}

/*
 * A token verified with this key set before, whose times still hold as jwt_verify checks them, to the
 * second: a cached token stops being accepted at the very moment it would stop verifying. Everything else
 * jwt_verify checks depends only on the token's bytes, the key set and the tenant's issuer and audience,
 * which are the same as when it was verified. false: verify it in full (which also gives the error).
 */
static bool verified_get(struct verified_cache *vc, const uint8_t digest[DIGEST_LEN], const struct jwt_expect *want,
			 struct jwt_claims *ret)
{
	pthread_mutex_lock(&vc->lock);
	const struct verified *e = verified_find(vc, digest);
	bool ok = e && want->now < e->exp + want->skew && e->nbf <= want->now + want->skew &&
		  e->iat <= want->now + want->skew;
	if (ok && ret) {
		*ret = (struct jwt_claims){ .exp = e->exp, .nbf = e->nbf, .iat = e->iat };
		memcpy(ret->alg, e->alg, sizeof(ret->alg));
		memcpy(ret->kid, e->kid, sizeof(ret->kid));
		memcpy(ret->sub, e->sub, sizeof(ret->sub));
		/* jwt_verify accepted the token only because its iss is exactly this. */
		snprintf(ret->iss, sizeof(ret->iss), "%s", want->issuer);
	}
	pthread_mutex_unlock(&vc->lock);
	return ok;
}

int jwks_cache_verify(struct jwks_cache *c, size_t i, const char *token, size_t n, int64_t now,
		      struct jwt_claims *ret, struct error *err)
{
	const struct scheduler_tenant *t = &c->cfg->tenants[i];
	struct jwt_expect want = { .issuer = t->issuer, .audience = t->audience, .now = now,
				   .skew = c->cfg->clock_skew };
	struct keyset *ks = keys_get(c, i, false, err);
	if (!ks)
		return -EAGAIN;
	/* Only what jwt_verify could accept goes through the cache; the rest gets jwt_verify's own error. */
	struct digest d;
	bool cacheable = n <= JWT_MAX_SIZE && now >= 0 && now <= JWT_TIME_MAX && want.skew >= 0 &&
			 want.skew <= JWT_SKEW_MAX && digest_bytes(token, n, &d) == 0;
	if (cacheable && verified_get(&ks->verified, d.b, &want, ret)) {
		keyset_unref(ks);
		atomic_fetch_add(&c->token_hits, 1);
		return 0;
	}
	atomic_fetch_add(&c->token_verifies, 1);
	struct error verr = { 0 };
	struct jwt_claims jc;
	int r = jwt_verify(ks->jwks, token, n, &want, &jc, &verr);
	if (r == -ENOKEY) {
		/* A key the IdP added since we fetched (rotation): fetch again, at a bounded rate. */
		struct error ferr = { 0 };
		keyset_unref(ks);
		ks = keys_get(c, i, true, &ferr);
		if (ks) {
			error_clear(&verr);
			r = jwt_verify(ks->jwks, token, n, &want, &jc, &verr);
		}
	}
	/* Into the cache of the key set that verified it: if a refetch replaced that set meanwhile, the
	 * entry goes with it. */
	if (r == 0 && cacheable)
		verified_add(&ks->verified, d.b, &jc);
	keyset_unref(ks);
	if (r < 0)
		return error_set(err, r, "%s", verr.msg);
	if (ret)
		*ret = jc;
	return 0;
}

int jwks_cache_token_url(struct jwks_cache *c, size_t i, char *ret, size_t size, struct error *err)
{
	struct tenant_keys *tk = &c->t[i];
	pthread_mutex_lock(&tk->lock);
	bool have = tk->token_url != NULL;
	pthread_mutex_unlock(&tk->lock);
	if (!have) {
		struct error ignored = { 0 };
		keyset_unref(keys_get(c, i, true, &ignored));
	}
	pthread_mutex_lock(&tk->lock);
	int r = 0;
	if (!tk->token_url)
		r = error_set(err, -EAGAIN, "tenant %s: token endpoint unknown (IdP discovery failed)",
			      c->cfg->tenants[i].id);
	else if (strlen(tk->token_url) >= size)
		r = error_set(err, -E2BIG, "tenant %s: token endpoint too long", c->cfg->tenants[i].id);
	else
		memcpy(ret, tk->token_url, strlen(tk->token_url) + 1);
	pthread_mutex_unlock(&tk->lock);
	return r;
}

void jwks_cache_token_counts(struct jwks_cache *c, uint64_t *ret_hits, uint64_t *ret_verifies)
{
	if (ret_hits)
		*ret_hits = atomic_load(&c->token_hits);
	if (ret_verifies)
		*ret_verifies = atomic_load(&c->token_verifies);
}

void jwks_cache_counts(struct jwks_cache *c, uint64_t *ret_fetches, uint64_t *ret_failures)
{
	if (ret_fetches)
		*ret_fetches = atomic_load(&c->fetches);
	if (ret_failures)
		*ret_failures = atomic_load(&c->failures);
}

void jwks_cache_stop_prefetch(struct jwks_cache *c) { atomic_store(&c->stopping, true); }

void jwks_cache_set_clock(struct jwks_cache *c, int64_t (*clock)(void)) { c->clock = clock; }
